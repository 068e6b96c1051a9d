"""Scan and merge as jobs beside backups: cartridges and drives are taken under the library's
leases (tapeflow.maintenance.leased), and the results are turned into JSON-able summaries for
the CLI, flow results and artifacts."""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from tapeflow.catalog import Catalog
from tapeflow.library import Library
from tapeflow.maintenance.compare import CompareResult
from tapeflow.maintenance.errors import BadInput
from tapeflow.maintenance.leased import DEFAULT_TIMEOUT, CartridgeBusy, leased_mounts
from tapeflow.maintenance.merge import MergeResult, merge_scans
from tapeflow.maintenance.progress import ProgressHook, Reporter
from tapeflow.maintenance.scan import MediaScan, ScannedSession, Scanner

LISTED = 200  # paths listed per kind in a comparison summary


@dataclass
class ScanRun:
    """Cartridges scanned (or the one session scanned), and cartridges left out with why."""

    media: list[MediaScan] = field(default_factory=list)
    session: ScannedSession | None = None
    busy: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """JSON summary."""
        return {
            "media": [media_summary(m) for m in self.media],
            "session": session_summary(self.session) if self.session else None,
            "busy": self.busy,
        }


def scan_cartridges(
    library: str | Library,
    barcodes: Iterable[str] | None = None,
    *,
    tape_file: int | None = None,
    drives: int = 1,
    timeout: float = DEFAULT_TIMEOUT,
    on_progress: ProgressHook | None = None,
) -> ScanRun:
    """Scan cartridges (default: every data cartridge; busy ones are skipped and listed), or
    with `tape_file`, the one session there on the single barcode given."""
    chosen = list(barcodes) if barcodes is not None else None
    if tape_file is not None and (chosen is None or len(chosen) != 1):
        raise BadInput("a session scan needs exactly one barcode with its tape file")
    if tape_file is not None and tape_file < 1:
        raise BadInput(f"tape file {tape_file}: sessions start at tape file 1 (0 is the label)")
    if chosen is not None and not chosen:
        raise BadInput("no barcode given")
    lib = library if isinstance(library, Library) else Library(library)
    report = Reporter(on_progress, "scan")
    run = ScanRun()
    try:
        if chosen is not None:
            known = set(lib.inventory().barcodes())
            unknown = [b for b in chosen if b not in known]
            if unknown:
                raise BadInput(f"not in the library: {', '.join(unknown)}")
        with leased_mounts(lib, "scan", chosen or (), drives=drives, timeout=timeout) as mounts:
            scanner = Scanner(lib, mounts=mounts)
            if tape_file is not None:
                assert chosen is not None
                run.session = scanner.scan_session(chosen[0], tape_file)
                return run
            every = chosen if chosen is not None else mounts.library_barcodes()
            for i, barcode in enumerate(every):
                report("scan", items=i, total_items=len(every), path=barcode)
                try:
                    run.media.append(scanner.scan_media(barcode))
                except CartridgeBusy as exc:
                    run.busy.append(f"{barcode}: {exc}")
                finally:
                    mounts.release(barcode)
            report("done", force=True, items=len(every), total_items=len(every))
    finally:
        if not isinstance(library, Library):
            lib.close()
    return run


def merge_cartridges(
    catalog: str | os.PathLike[str],
    library: str | Library,
    barcodes: Iterable[str] | None = None,
    *,
    drives: int = 1,
    timeout: float = DEFAULT_TIMEOUT,
    on_progress: ProgressHook | None = None,
) -> tuple[MergeResult, ScanRun]:
    """Scan cartridges (default all) and merge what they hold into the catalog (created if
    missing: rebuilding a lost catalog from tape is what this is for)."""
    run = scan_cartridges(
        library, barcodes, drives=drives, timeout=timeout, on_progress=on_progress
    )
    with Catalog(Path(catalog)) as cat:
        result = merge_scans(cat, run.media)
    return result, run


def media_summary(scan: MediaScan) -> dict[str, Any]:
    """A cartridge scan as JSON: label, tape files and the sessions with a part on it."""
    label = scan.label
    return {
        "barcode": scan.barcode,
        "status": scan.status,
        "pool": label.pool if label else None,
        "labelled": label.created.isoformat() if label else None,
        "problem": scan.problem,
        "tape_files": [asdict(t) for t in scan.tape_files],
        "sessions": [session_summary(s) for s in scan.sessions],
    }


def session_summary(session: ScannedSession) -> dict[str, Any]:
    """A scanned session as JSON (its rows are not included: use merge for them)."""
    info = session.info
    return {
        "session_id": info.session_id,
        "job_id": info.job_id,
        "source": info.source,
        "kind": info.kind,
        "level": session.level,
        "created": info.created.isoformat(),
        "state": session.state,
        "members": session.members,
        "stream_bytes": session.stream_bytes,
        "problem": session.problem,
        "parts": [
            {
                "barcode": p.barcode,
                "tape_file": p.tape_file,
                "sequence": p.sequence,
                "bytes": p.bytes,
            }
            for p in session.parts
        ],
    }


def merge_summary(result: MergeResult) -> dict[str, Any]:
    """A merge as JSON: what was added, what was skipped."""
    out = asdict(result)
    out["tape_files_added"] = [list(t) for t in result.tape_files_added]
    out["changed"] = result.changed
    return out


def compare_summary(result: CompareResult, listed: int = LISTED) -> dict[str, Any]:
    """A comparison as JSON: counts, and the first `listed` paths of each kind."""
    return {
        "session_id": result.session_id,
        "root": result.root,
        "compared": result.compared,
        "same": result.same,
        "missing": len(result.missing),
        "extra": len(result.extra),
        "different": len(result.different),
        "unreadable": len(result.unreadable),
        "missing_paths": result.missing[:listed],
        "extra_paths": result.extra[:listed],
        "different_paths": [
            {"path": d.path, "fields": list(d.fields)} for d in result.different[:listed]
        ],
        "unreadable_paths": result.unreadable[:listed],
    }
