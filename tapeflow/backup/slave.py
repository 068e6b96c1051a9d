"""One slave job: lease a drive and a cartridge, write one source as one session, release both.

Runs in any thread or process. Leases are flocks (released even on kill -9), the drive is
unloaded and every lease released on every path, and the catalog's DuckDB file is never
touched here: rows go to the session's own Parquet file for the master to register.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from contextlib import ExitStack
from pathlib import Path

import pyarrow as pa
import pyarrow.ipc as ipc

from tapeflow.backup.model import Pool, SlaveResult, SlaveSpec, TapeUse
from tapeflow.backup.sources import walk
from tapeflow.catalog.rows import write_session_rows
from tapeflow.library import Library
from tapeflow.library.errors import LibraryError
from tapeflow.library.leases import Lease, LeaseBoard
from tapeflow.scsi.tape import TapeDrive
from tapeflow.tapefmt import BlankTape, ForeignTape, SessionInfo, SessionWriter, read_label
from tapeflow.tapefmt import write_label as format_tape

log = logging.getLogger(__name__)

LEVEL_NUMBER = {"full": 0, "differential": 1, "incremental": 2}


class NoWritableCartridge(LibraryError):
    """No cartridge of the pool is free, labelled for it (or blank) and not full."""


class SlaveFailed(Exception):
    """The slave stopped; `result` says what it had done (tapes used, files written)."""

    def __init__(self, message: str, result: SlaveResult) -> None:
        super().__init__(message)
        self.result = result


def pool_candidates(lib: Library, pool: Pool, unusable: tuple[str, ...]) -> list[str]:
    """Barcodes in storage slots that belong to `pool`, in slot order."""
    chosen = []
    for slot in lib.inventory().slots:
        if not slot.full or not slot.barcode or slot.barcode in unusable:
            continue
        if slot.barcode.startswith("CLN"):
            continue
        if pool.barcodes and slot.barcode not in pool.barcodes:
            continue
        if pool.slots and not pool.slots[0] <= slot.number <= pool.slots[1]:
            continue
        chosen.append(slot.barcode)
    return chosen


class Mounter:
    """Loads pool cartridges into one leased drive, labelling blank ones, skipping others."""

    def __init__(self, lib: Library, board: LeaseBoard, drive: int, spec: SlaveSpec) -> None:
        self.lib, self.board, self.drive_no, self.spec = lib, board, drive, spec
        self.holder = f"job {spec.job_id} subjob {spec.subjob}"
        self.tried: set[str] = set(spec.unusable)
        self.lease: Lease | None = None
        self.handle: TapeDrive | None = None
        self.barcode: str | None = None
        self.labelled: list[str] = []

    def mount(self) -> TapeDrive:
        """Load the next usable cartridge; returns an open handle positioned anywhere."""
        left = self.lib.clear(self.drive_no)
        if left:
            log.warning("drive %d held %s from an interrupted job: unloaded", self.drive_no, left)
        for barcode in pool_candidates(self.lib, self.spec.pool, tuple(self.tried)):
            self.tried.add(barcode)
            lease = self.board.try_media(barcode, self.holder)
            if lease is None:
                continue  # another slave has it
            try:
                self.lib.load(self.drive_no, barcode=barcode)
            except LibraryError:
                lease.release()  # moved away between inventory and load
                continue
            handle = self.lib.open_drive(self.drive_no)
            if self._usable(handle, barcode):
                self.lease, self.handle, self.barcode = lease, handle, barcode
                return handle
            handle.close()
            self.lib.unload(self.drive_no)
            lease.release()
        raise NoWritableCartridge(
            f"pool {self.spec.pool.name!r}: no free, writable cartridge left "
            f"(tried {sorted(self.tried - set(self.spec.unusable)) or 'none'})"
        )

    def _usable(self, handle: TapeDrive, barcode: str) -> bool:
        handle.set_block_size(0, compression=self.spec.compression)
        if handle.mode().write_protected:
            log.warning("%s is write-protected: skipped", barcode)
            return False
        try:
            label = read_label(handle)
        except BlankTape:
            format_tape(handle, barcode, barcode, self.spec.pool.name)
            self.labelled.append(barcode)
            log.info("labelled blank cartridge %s for pool %s", barcode, self.spec.pool.name)
            return True
        except ForeignTape as exc:
            log.warning("%s holds a foreign tape (%s): skipped, never overwritten", barcode, exc)
            return False
        if label.pool != self.spec.pool.name:
            log.info(
                "%s belongs to pool %r, not %r: skipped", barcode, label.pool, self.spec.pool.name
            )
            return False
        return True

    def unmount(self) -> None:
        """Close, unload and release the current cartridge (each step even if one fails)."""
        with ExitStack() as stack:
            if self.lease is not None:
                stack.callback(self.lease.release)
            if self.barcode is not None:
                stack.callback(self.lib.unload, self.drive_no)
            if self.handle is not None:
                stack.callback(self.handle.close)
        self.lease = self.handle = self.barcode = None

    def next_cartridge(self) -> TapeDrive:
        """Spanning: the current cartridge is full; mount the next one."""
        self.unmount()
        return self.mount()


def _paths(spec: SlaveSpec) -> list[tuple[str, str]]:
    root = Path(spec.source.path)
    if spec.paths_file is None:
        return [(abs_path, rel) for abs_path, rel, _st in walk(spec.source)]
    with ipc.open_file(spec.paths_file) as reader:
        rels = reader.read_all().column("path").to_pylist()
    return [(str(root / rel), rel) for rel in rels]


def run_slave(
    spec: SlaveSpec,
    *,
    deleted_rows: pa.Table | None = None,
    on_progress: Callable[[int], None] | None = None,
    drive_timeout: float = 24 * 3600,
) -> SlaveResult:
    """Write `spec.source` as one session; raises SlaveFailed (with what was done) on error."""
    result = SlaveResult(spec.session_id, spec.subjob, spec.source.name, "failed")
    lib = Library(spec.library)
    board = LeaseBoard(lib.state_dir)
    holder = f"job {spec.job_id} subjob {spec.subjob}"
    try:
        with lib, board.drive(lib.online_drives(), holder, drive_timeout) as drive_lease:
            drive_no = int(drive_lease.key)
            result.drive, result.started = drive_no, time.time()
            mounter = Mounter(lib, board, drive_no, spec)
            try:
                handle = mounter.mount()
                info = SessionInfo(
                    session_id=spec.session_id,
                    job_id=spec.job_id,
                    source=spec.source.name,
                    kind="files",
                    level=LEVEL_NUMBER[spec.level],
                )
                files = 0

                def batch_done(batch: pa.RecordBatch) -> None:
                    nonlocal files
                    files += batch.num_rows
                    if on_progress is not None:
                        on_progress(files)

                with SessionWriter(
                    handle,
                    info,
                    barcode=mounter.barcode,
                    next_cartridge=mounter.next_cartridge,
                    on_batch=batch_done,
                ) as writer:
                    writer.add_paths(_paths(spec))
                    session = writer.close()
                result.warnings = list(session.warnings)
                result.files, result.bytes = session.members, session.stream_bytes
                result.tapes = _tape_uses(session)
                rows = session.table()
                if deleted_rows is not None and deleted_rows.num_rows:
                    rows = pa.concat_tables([rows, deleted_rows.cast(rows.schema)])
                write_session_rows(Path(spec.files_dir), spec.session_id, rows)
                result.state = "complete"
            finally:
                result.labelled = mounter.labelled
                mounter.unmount()
                result.ended = time.time()
                result.seconds = result.ended - result.started
    except Exception as exc:
        result.error = f"{type(exc).__name__}: {exc}"
        raise SlaveFailed(
            f"subjob {spec.subjob} ({spec.source.name}): {result.error}", result
        ) from exc
    return result


def _tape_uses(session) -> list[TapeUse]:  # noqa: ANN001 - tapefmt SessionResult
    segments = session.segments
    uses = []
    for i, seg in enumerate(segments):
        end = segments[i + 1].stream_start if i + 1 < len(segments) else session.stream_bytes
        uses.append(
            TapeUse(
                barcode=seg.barcode or "",
                tape_file=seg.tape_file if seg.tape_file is not None else -1,
                bytes=end - seg.stream_start,
                full=i + 1 < len(segments),
            )
        )
    return uses
