"""Read a session back from tape and check every member's checksum (backup `verify`)."""

from __future__ import annotations

from contextlib import ExitStack
from pathlib import Path
from typing import Any

from prefect import get_run_logger, task

from tapeflow.catalog import Catalog, session_media
from tapeflow.library import Library
from tapeflow.library.leases import LeaseBoard
from tapeflow.library.media import bring_home
from tapeflow.maintenance import verify_session


@task(name="verify-session", persist_result=False)
def verify(catalog: str, library: str, session_id: str) -> dict[str, Any]:
    """Lease a drive and the session's cartridges, verify, release; returns the counts."""
    with Catalog(Path(catalog), read_only=True) as cat:
        barcodes = session_media(cat, session_id).column("barcode").to_pylist()
    with Library(library) as lib:
        board = LeaseBoard(lib.state_dir)
        holder = f"verify {session_id}"
        with ExitStack() as held:
            # cartridges first, in a fixed order, then a drive: two verifications sharing a
            # cartridge wait for each other instead of one failing
            for barcode in sorted(set(barcodes)):
                held.enter_context(board.media(barcode, holder))
            drive = held.enter_context(board.drive(lib.online_drives(), holder))
            lib.clear(int(drive.key))
            for barcode in sorted(set(barcodes)):  # kept loaded by a backup's slave: home first
                bring_home(lib, board, barcode, holder)
            with Catalog(Path(catalog), read_only=True) as cat:
                result = verify_session(cat, lib, session_id, drives=[int(drive.key)])
    problems = [f"{p.path}: {p.kind}" for p in result.problems]
    log = get_run_logger()
    log.info(
        "verify %s: %d checked, %d ok, %d problem(s)",
        session_id,
        result.checked,
        result.ok,
        len(problems),
    )
    if result.content_unchecked:
        log.warning(
            "verify %s: serverless session, the content of its %d files has no checksum to "
            "check (the host never read it); its members were read whole and sized",
            session_id,
            result.content_unchecked,
        )
    for line in problems:
        log.error("verify %s: %s", session_id, line)
    return {
        "session_id": session_id,
        "checked": result.checked,
        "content_unchecked": result.content_unchecked,
        "problems": problems,
    }
