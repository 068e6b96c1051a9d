"""Serve tapeflow's flows as deployments (UI, `prefect deployment run`, run_deployment).

    python deployments/serve.py [--source NAME=PATH] [--timezone TZ] [--rotation gfs] [--list]

Same as `tapeflow serve`: registers every deployment of deployments/registry.py (on-demand
backup and restore, nightly/weekly and GFS backups, serverless, maintenance) and runs them in
this process's runner until stopped. Cancelling a run from the UI or with
`prefect flow-run cancel` stops its slaves; the catalog marks its sessions partial.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from flows.serve_cli import add_arguments  # noqa: E402


def main(argv: Sequence[str] | None = None) -> int:
    """Parse the serve options, build the deployments and serve them."""
    parser = argparse.ArgumentParser(prog="deployments/serve.py", description=__doc__)
    parser.add_argument("--library", default=None, help="default library of backups/restores")
    parser.add_argument("--catalog", default=None, help="default catalog of backups/restores")
    parser.add_argument("--json", action="store_true", help="--list as JSON")
    add_arguments(parser)
    args = parser.parse_args(argv)
    try:
        return int(args.func(args))
    except ValueError as exc:  # a bad cron, timezone or source: nothing was registered
        print(f"serve: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    raise SystemExit(main())
