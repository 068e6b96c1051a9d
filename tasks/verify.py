"""Read a session back from tape and check every member's checksum (backup `verify`)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from prefect import get_run_logger, task

from tapeflow.catalog import Catalog, session_media
from tapeflow.library import Library
from tapeflow.library.errors import LibraryError
from tapeflow.library.leases import LeaseBoard
from tapeflow.maintenance import verify_session


@task(name="verify-session", persist_result=False)
def verify(catalog: str, library: str, session_id: str) -> dict[str, Any]:
    """Lease a drive and the session's cartridges, verify, release; returns the counts."""
    with Catalog(Path(catalog), read_only=True) as cat:
        barcodes = session_media(cat, session_id).column("barcode").to_pylist()
    with Library(library) as lib:
        board = LeaseBoard(lib.state_dir)
        holder = f"verify {session_id}"
        with board.drive(lib.online_drives(), holder) as drive:
            leases = [board.try_media(b, holder) for b in barcodes]
            try:
                if any(lease is None for lease in leases):
                    raise LibraryError(f"a cartridge of {session_id} is in use: {barcodes}")
                lib.clear(int(drive.key))
                with Catalog(Path(catalog), read_only=True) as cat:
                    result = verify_session(cat, lib, session_id, drives=[int(drive.key)])
            finally:
                for lease in leases:
                    if lease is not None:
                        lease.release()
    problems = [f"{p.path}: {p.kind}" for p in result.problems]
    log = get_run_logger()
    log.info(
        "verify %s: %d checked, %d ok, %d problem(s)",
        session_id,
        result.checked,
        result.ok,
        len(problems),
    )
    for line in problems:
        log.error("verify %s: %s", session_id, line)
    return {"session_id": session_id, "checked": result.checked, "problems": problems}
