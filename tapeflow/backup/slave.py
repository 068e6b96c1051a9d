"""One slave job: lease a drive and a cartridge, write one source as one session, release both.

Runs in any thread or process. Leases are flocks (released even on kill -9), every lease is
released and the drive unloaded on every path (but a slave of a keep-loaded job that ended
well leaves its cartridge in the drive for the next slave, which writes it without a reload;
the master unloads at the job's end), and the catalog's DuckDB file is never touched here:
rows go to the session's own Parquet file for the master to register.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import replace
from pathlib import Path

import pyarrow as pa
import pyarrow.ipc as ipc

from tapeflow.backup.model import KnownTape, Pool, SlaveResult, SlaveSpec, TapeUse
from tapeflow.backup.sources import walk
from tapeflow.catalog.rows import write_session_rows
from tapeflow.library import Inventory, Library
from tapeflow.library.errors import LibraryError
from tapeflow.library.groups import get_group
from tapeflow.library.leases import Lease, LeaseBoard
from tapeflow.library.media import bring_home, import_new_media
from tapeflow.scsi.sense import EndOfData, FilemarkDetected, IllegalRequest, IncorrectLength
from tapeflow.scsi.tape import TapeDrive
from tapeflow.tapefmt import (
    BlankTape,
    ForeignTape,
    SessionInfo,
    SessionResult,
    SessionWriter,
    read_label,
)
from tapeflow.tapefmt import write_label as format_tape
from tapeflow.tapefmt.label import PROBE_LENGTH
from tapeflow.tapefmt.reader import goto_session
from tapeflow.tapefmt.session import global_info

log = logging.getLogger(__name__)

MEDIA_POLL = 1.0  # seconds between looks at the mail slots while a slave waits for media
LEVEL_NUMBER = {"full": 0, "differential": 1, "incremental": 2}


class NoWritableCartridge(LibraryError):
    """No cartridge of the pool is free, labelled for it (or blank) and not full; `reasons`
    says, per barcode, why each one was not written (a media request for the operator)."""

    def __init__(self, message: str, pool: str = "", reasons: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.pool = pool
        self.reasons = dict(reasons or {})


class SlaveFailed(Exception):
    """The slave stopped; `result` says what it had done (tapes used, files written)."""

    def __init__(self, message: str, result: SlaveResult) -> None:
        super().__init__(message)
        self.result = result


def pool_candidates(
    lib: Library, pool: Pool, unusable: tuple[str, ...], inventory: Inventory | None = None
) -> list[str]:
    """Barcodes in storage slots that belong to `pool` (and its library group), in slot order."""
    fits = _pool_filter(lib, pool, unusable)
    return [
        slot.barcode
        for slot in (inventory or lib.inventory()).slots
        if slot.full and slot.barcode and fits(slot.barcode, slot.number)
    ]


def parked_candidates(
    lib: Library, pool: Pool, unusable: tuple[str, ...], inventory: Inventory
) -> dict[str, int]:
    """Cartridges of `pool` left loaded in online drives (by an earlier slave that kept its
    cartridge for the next one, or by a killed job), by barcode: their drive numbers. Their
    home slot decides whether they belong to the pool's slots or library group."""
    fits = _pool_filter(lib, pool, unusable)
    return {
        d.barcode: d.number
        for d in inventory.drives
        if d.full and d.online and d.barcode and fits(d.barcode, d.source_slot)
    }


def _pool_filter(
    lib: Library, pool: Pool, unusable: tuple[str, ...]
) -> Callable[[str, int | None], bool]:
    """Whether a cartridge (barcode, home slot number) may be written for `pool`."""
    group = get_group(lib.state_dir, pool.group) if pool.group else None

    def fits(barcode: str, slot: int | None) -> bool:
        if barcode in unusable or barcode.startswith("CLN"):
            return False
        if group is not None and (slot is None or slot not in group):
            return False
        if pool.barcodes and barcode not in pool.barcodes:
            return False
        return not pool.slots or (slot is not None and pool.slots[0] <= slot <= pool.slots[1])

    return fits


class Mounter:
    """Loads pool cartridges into one leased drive (own, then expired, blank, scratch); it
    relabels only what the master's MediaPlan allows: never a cartridge with unexpired data."""

    def __init__(
        self,
        lib: Library,
        board: LeaseBoard,
        drive: int,
        spec: SlaveSpec,
        on_media_request: Callable[[NoWritableCartridge], None] | None = None,
    ) -> None:
        self.lib, self.board, self.drive_no, self.spec = lib, board, drive, spec
        self.on_media_request = on_media_request
        self.media_requested = False  # on_media_request was called (the job waited for media)
        self.holder = f"job {spec.job_id} subjob {spec.subjob}"
        self.tried: set[str] = set(spec.unusable) | set(spec.media.unusable)
        self.skipped: dict[str, str] = {}  # barcode -> why this slave did not write it
        self.lease: Lease | None = None
        self.handle: TapeDrive | None = None
        self.barcode: str | None = None
        self.labelled: list[str] = []  # given a new label from BOT: blank, expired or scratch
        self.parked: dict[str, int] = {}  # candidates loaded in other drives: their drive

    def _candidates(self) -> list[str]:
        """The pool's cartridges (appendable, expired, others; slot order within each, then
        those left loaded in idle drives), then scratch cartridges anywhere the pool may
        reach. The loaded ones come after those in slots because they are their drives' next
        slaves' to write without a reload; fetching one is a move like any other."""
        media, pool = self.spec.media, self.spec.pool
        appendable, scratch = set(media.appendable), set(media.scratch)
        recycle = {barcode: i for i, barcode in enumerate(media.reusable)}

        def rank(barcode: str) -> tuple[int, int]:
            if barcode in appendable:
                return (0, 0)
            if barcode in recycle:
                return (1, recycle[barcode])
            return (3, 0) if barcode in scratch else (2, 0)

        inventory = self.lib.inventory()
        self.parked = {
            barcode: drive
            for barcode, drive in parked_candidates(
                self.lib, pool, tuple(self.tried), inventory
            ).items()
            if drive != self.drive_no
        }
        in_slots = pool_candidates(self.lib, pool, tuple(self.tried), inventory)
        ordered = sorted(in_slots + list(self.parked), key=lambda b: (*rank(b), b in self.parked))
        if pool.scratch is not None and scratch:
            wider = replace(pool, barcodes=(), slots=None)  # same library group, any slot
            seen = set(ordered)
            ordered += [
                barcode
                for barcode in pool_candidates(self.lib, wider, tuple(self.tried), inventory)
                if barcode in scratch and barcode not in seen
            ]
        return ordered

    def _loaded_here(self) -> TapeDrive | None:
        """The cartridge already in this drive (kept by the job's previous slave on it, or left
        by a killed job), opened if this slave may write it: no unload and reload. Anything
        else found there is unloaded."""
        inventory = self.lib.inventory()
        here = next(d for d in inventory.drives if d.number == self.drive_no)
        if not here.full:
            return None
        barcode = here.barcode or ""
        fits = _pool_filter(self.lib, self.spec.pool, tuple(self.tried))
        lease = (
            self.board.try_media(barcode, self.holder) if fits(barcode, here.source_slot) else None
        )
        if lease is not None:
            self.tried.add(barcode)
            handle = self._take(barcode, lease)
            if handle is not None:
                log.info(
                    "drive %d: %s still loaded: written without a reload", self.drive_no, barcode
                )
            return handle
        left = self.lib.clear(self.drive_no)
        log.info("drive %d held %s, not for this slave: unloaded", self.drive_no, left)
        return None

    def mount(self) -> TapeDrive:
        """Load the next usable cartridge; returns an open handle positioned anywhere.

        With none left, waits up to `spec.media_wait` seconds for new cartridges in a mail
        slot (asking for them once through `on_media_request`), imports them and goes on."""
        handle = self._loaded_here()
        if handle is not None:
            return handle
        deadline = time.monotonic() + self.spec.media_wait
        while True:
            handle = self._mount_one()
            if handle is not None:
                return handle
            shortage = self._nothing_writable()
            if time.monotonic() >= deadline:
                raise shortage
            if not self.media_requested:
                self.media_requested = True
                log.warning(
                    "%s; waiting up to %.0f s for new media", shortage, self.spec.media_wait
                )
                if self.on_media_request is not None:
                    self.on_media_request(shortage)
            while time.monotonic() < deadline:
                time.sleep(min(MEDIA_POLL, max(deadline - time.monotonic(), 0)))
                # imported here, or by someone else meanwhile (the inventory flow): look again
                if import_new_media(self.lib) or self._candidates():
                    break

    def _mount_one(self) -> TapeDrive | None:
        """Try every candidate once; the open handle of the first usable one, else None."""
        for barcode in self._candidates():
            self.tried.add(barcode)
            lease = self.board.try_media(barcode, self.holder)
            if lease is None:
                self.skipped[barcode] = "in use by another slave"
                continue
            try:
                if barcode in self.parked:  # under its lease: no one else moves it meanwhile
                    bring_home(self.lib, self.board, barcode, self.holder, wait=0.0)
                self.lib.load(self.drive_no, barcode=barcode)
            except LibraryError as exc:
                lease.release()  # moved away between inventory and load, or its drive is busy
                self.skipped[barcode] = f"could not be loaded ({exc})"
                continue
            handle = self._take(barcode, lease)
            if handle is not None:
                return handle
        return None

    def _take(self, barcode: str, lease: Lease) -> TapeDrive | None:
        """Open the cartridge loaded in this drive under its `lease`; it becomes this slave's
        when usable, else it is ejected and its lease released (on an error too)."""
        with ExitStack() as undo:
            undo.callback(lease.release)
            undo.callback(self.lib.unload, self.drive_no)
            handle = self.lib.open_drive(self.drive_no)
            undo.callback(handle.close)
            if self._usable(handle, barcode):
                undo.pop_all()
                self.lease, self.handle, self.barcode = lease, handle, barcode
                return handle
        return None

    def _skip(self, barcode: str, why: str) -> bool:
        self.skipped[barcode] = why
        log.info("%s: %s: skipped", barcode, why)
        return False

    def _usable(self, handle: TapeDrive, barcode: str) -> bool:
        """Whether this slave may write the loaded cartridge; labels it when that is safe."""
        pool, media = self.spec.pool, self.spec.media
        try:
            handle.set_block_size(0, compression=self.spec.compression)
        except IllegalRequest:
            if self.spec.compression:
                raise  # asked for and refused: say so
            # a drive without a data compression page (tgt) refuses to be told "off"
            handle.set_block_size(0)
        if handle.mode().write_protected:
            return self._skip(barcode, "write-protected")
        try:
            label = read_label(handle)
        except BlankTape:
            if barcode in media.protected:
                return self._skip(
                    barcode,
                    f"reads blank but the catalog records data on it kept until "
                    f"{media.protected[barcode]}: not written, scan it",
                )
            self._relabel(handle, barcode, "blank")
            return True
        except ForeignTape as exc:
            return self._skip(barcode, f"holds a foreign tape ({exc}): never overwritten")
        if label.pool == pool.name:
            return self._own(handle, barcode)
        if barcode in media.protected:
            return self._skip(
                barcode, f"pool {label.pool!r}, data kept until {media.protected[barcode]}"
            )
        if label.pool == pool.scratch or barcode in media.appendable:
            written = self._written(handle)
            if written:
                return self._skip(barcode, f"labelled for pool {label.pool!r} and {written}")
            self._relabel(handle, barcode, f"taken from pool {label.pool!r}")
            return True
        return self._skip(barcode, f"belongs to pool {label.pool!r}")

    def _own(self, handle: TapeDrive, barcode: str) -> bool:
        """A cartridge labelled for this pool: recycle it if expired, else append to it."""
        media = self.spec.media
        known = media.reusable.get(barcode)
        if known is not None and barcode not in media.protected:
            changed = self._changed(handle, known)
            if changed:
                return self._skip(
                    barcode, f"expired in the catalog, but {changed}: left for the next job"
                )
            self._relabel(handle, barcode, "expired: recycled")
            return True
        if not self.spec.pool.append:
            written = self._written(handle)
            if written:
                return self._skip(barcode, f"{written} and the pool writes one per cartridge")
        return True

    def _relabel(self, handle: TapeDrive, barcode: str, why: str) -> None:
        """Overwrite from BOT with this pool's label (callers checked that this is allowed)."""
        format_tape(handle, barcode, barcode, self.spec.pool.name, force=True)
        self.labelled.append(barcode)
        log.info("%s labelled for pool %s (%s)", barcode, self.spec.pool.name, why)

    @staticmethod
    def _tape_files(handle: TapeDrive) -> tuple[int, int | None]:
        """(tape files before end-of-data, EOD block number when the drive reports it)."""
        handle.end_of_data()
        pos = handle.position()
        if pos.file is not None:
            return pos.file, pos.block
        handle.rewind()  # no file number reported: count the filemarks
        files = 0
        while True:
            try:
                handle.space_filemarks(1)
            except EndOfData:
                return files, None
            files += 1

    def _written(self, handle: TapeDrive) -> str | None:
        """Why the tape is more than a label (a sentence), or None when it holds only that."""
        files, block = self._tape_files(handle)
        if files > 1 or (block is not None and block > files + 1):
            return f"holds {max(files - 1, 1)} session(s)"
        return None

    def _changed(self, handle: TapeDrive, known: KnownTape) -> str | None:
        """How the tape differs from what the catalog knew (a sentence), or None when it still
        ends with the catalog's last session and holds nothing after it."""
        files, _ = self._tape_files(handle)
        if files != known.files:
            return f"it holds {files} tape files, not the {known.files} the catalog knows"
        if known.last_session is None:
            return self._written(handle)
        goto_session(handle, files - 1)
        try:
            info = global_info(handle.read(PROBE_LENGTH))
        except (EndOfData, FilemarkDetected, IncorrectLength) as exc:
            return f"its last tape file does not start with a session ({type(exc).__name__})"
        found = info.session_id if info else None
        if found != known.last_session:
            return f"its last tape file holds {found or 'no session'}, not {known.last_session}"
        return None

    def _nothing_writable(self) -> NoWritableCartridge:
        """The error that says, cartridge by cartridge, why none could be written."""
        pool = self.spec.pool
        reasons = dict(self.skipped)
        catalog_reasons = {**dict.fromkeys(self.spec.unusable, "full"), **self.spec.media.unusable}
        for barcode in pool_candidates(self.lib, pool, ()):
            if barcode not in reasons and barcode in catalog_reasons:
                reasons[barcode] = catalog_reasons[barcode]
        listing = "; ".join(f"{b}: {why}" for b, why in sorted(reasons.items()))
        scratch = f", label blanks into scratch pool {pool.scratch!r}" if pool.scratch else ""
        return NoWritableCartridge(
            f"pool {pool.name!r}: no free, writable cartridge left"
            f"{' (' + listing + ')' if listing else ' (none of its cartridges is in the library)'}"
            f". Insert blank cartridges{scratch} or wait until one expires",
            pool=pool.name,
            reasons=reasons,
        )

    def unmount(self, *, keep: bool = False) -> None:
        """Close, unload (unless `keep`: left loaded for the job's next slave on this drive)
        and release the current cartridge (each step even if one fails)."""
        with ExitStack() as stack:
            if self.lease is not None:
                stack.callback(self.lease.release)
            if self.barcode is not None and not keep:
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


@contextmanager
def mounted(
    spec: SlaveSpec,
    result: SlaveResult,
    holder: str,
    *,
    on_media_request: Callable[[NoWritableCartridge], None] | None = None,
    drive_timeout: float = 24 * 3600,
) -> Iterator[tuple[TapeDrive, Mounter]]:
    """Lease a drive of `spec.library`, mount a writable cartridge of the pool and yield it;
    on every path unmount and release both, and note drive, times and labels in `result`."""
    lib = Library(spec.library)
    board = LeaseBoard(lib.state_dir)
    with lib, board.drive(lib.online_drives(), holder, drive_timeout) as lease:
        result.drive, result.started = int(lease.key), time.time()
        mounter = Mounter(lib, board, result.drive, spec, on_media_request)
        keep = False
        try:
            yield mounter.mount(), mounter
            keep = _keep_loaded(spec, result)
        finally:
            result.labelled = mounter.labelled
            mounter.unmount(keep=keep)
            result.ended = time.time()
            result.seconds = result.ended - result.started


def _keep_loaded(spec: SlaveSpec, result: SlaveResult) -> bool:
    """Whether a slave that ended well leaves its cartridge loaded: the job asked for it (its
    master unloads at the end) and the next slave may append to it (the pool appends, and the
    cartridge did not reach early warning). Loading, threading and unloading a real cartridge
    take a minute or two, every slave."""
    last = result.tapes[-1] if result.tapes else None
    return spec.keep_loaded and spec.pool.append and last is not None and not last.full


def write_file_session(
    handle: TapeDrive,
    mounter: Mounter,
    info: SessionInfo,
    add: Callable[[SessionWriter], None],
    result: SlaveResult,
    on_files: Callable[[int], None] | None = None,
) -> pa.Table:
    """Write one pax session (spanning through `mounter`); fills `result`, returns the rows."""
    files = 0

    def batch_done(batch: pa.RecordBatch) -> None:
        nonlocal files
        files += batch.num_rows
        if on_files is not None:
            on_files(files)

    with SessionWriter(
        handle,
        info,
        barcode=mounter.barcode,
        next_cartridge=mounter.next_cartridge,
        on_batch=batch_done,
    ) as writer:
        add(writer)
        session = writer.close()
    result.warnings = list(session.warnings)
    result.files, result.bytes = session.members, session.stream_bytes
    result.tapes = tape_uses(session)
    return session.table()


def run_slave(
    spec: SlaveSpec,
    *,
    deleted_rows: pa.Table | None = None,
    on_progress: Callable[[int], None] | None = None,
    on_media_request: Callable[[NoWritableCartridge], None] | None = None,
    drive_timeout: float = 24 * 3600,
) -> SlaveResult:
    """Write `spec.source` as one session; raises SlaveFailed (with what was done) on error."""
    result = SlaveResult(spec.session_id, spec.subjob, spec.source.name, "failed")
    holder = f"job {spec.job_id} subjob {spec.subjob}"
    try:
        with mounted(
            spec, result, holder, on_media_request=on_media_request, drive_timeout=drive_timeout
        ) as (handle, mounter):
            info = SessionInfo(
                session_id=spec.session_id,
                job_id=spec.job_id,
                source=spec.source.name,
                kind="files",
                level=LEVEL_NUMBER[spec.level],
            )
            paths = _paths(spec)
            rows = write_file_session(
                handle, mounter, info, lambda w: w.add_paths(paths), result, on_progress
            )
            if deleted_rows is not None and deleted_rows.num_rows:
                rows = pa.concat_tables([rows, deleted_rows.cast(rows.schema)])
            write_session_rows(Path(spec.files_dir), spec.session_id, rows)
            result.state = "complete"
    except Exception as exc:
        result.error = f"{type(exc).__name__}: {exc}"
        raise SlaveFailed(
            f"subjob {spec.subjob} ({spec.source.name}): {result.error}", result
        ) from exc
    return result


def tape_uses(session: SessionResult) -> list[TapeUse]:
    """Each cartridge's part of a written session."""
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
