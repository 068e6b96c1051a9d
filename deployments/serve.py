"""Serve tapeflow's flows as deployments (UI, `prefect deployment run`, run_deployment).

    python deployments/serve.py

Registers `tapeflow-backup/backup` and `tapeflow-restore/restore` (on demand) and runs them in
this process's runner until stopped. Cancelling a run from the UI or with
`prefect flow-run cancel` stops its slaves; the catalog marks its sessions partial.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from prefect import serve  # noqa: E402

from flows.backup import backup  # noqa: E402
from flows.restore import restore  # noqa: E402


def main() -> None:
    """Build the deployments and serve them."""
    serve(
        backup.to_deployment(name="backup", description="master backup job, on demand"),
        restore.to_deployment(name="restore", description="restore files, on demand"),
        limit=8,
    )


if __name__ == "__main__":
    main()
