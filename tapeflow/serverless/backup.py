"""One serverless session on tape: the volume's blocks (moved by the copy manager, or by the
host), then the chunks written meanwhile, described as Arrow tables for the catalog. The
caller (serverless/slave.py) freezes the volume and maps its files first.

The image is copied from the live disk while a copy-on-write snapshot records every chunk
written during the copy together with its freeze-time content; that content follows the image
on tape (<volume>.cow) and is laid over it at restore, so what comes back is the volume exactly
as it was at the freeze, though the copy never stopped the volume's users."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Protocol

import pyarrow as pa

from tapeflow.fs.model import VolumeInfo, coalesce
from tapeflow.scsi.device import ScsiDevice
from tapeflow.scsi.sbc import BlockDevice
from tapeflow.scsi.sense import EndOfMedium, VolumeOverflow
from tapeflow.scsi.tape import TapeDrive
from tapeflow.scsi.vpd import unit_designator
from tapeflow.scsi.xcopy import CopyPlan
from tapeflow.serverless import format as fmt
from tapeflow.serverless.copy import CopyOutcome, execute_plan
from tapeflow.serverless.maps import MapTables, build_maps

log = logging.getLogger(__name__)

RECORD_SIZE = 256 * 1024
MODES = ("all", "used")


class FrozenView(Protocol):
    """A point-in-time view of the volume's disk and what changed on the origin since."""

    device: BlockDevice  # reads the frozen content

    def modified_runs(self) -> list[tuple[int, int]]:
        """(offset, length) byte runs of the origin written since the freeze."""
        ...


@dataclass(slots=True)
class ServerlessResult:
    """What a serverless session wrote and where."""

    session_id: str
    tape_file: int
    first_block: int
    record_size: int
    stream_bytes: int
    volume: VolumeInfo
    image_size: int  # bytes of the stored image (the whole partition)
    runs: list[fmt.Run]
    cow_runs: list[fmt.Run]
    copies: list[CopyOutcome] = field(default_factory=list)
    maps: MapTables | None = None
    seconds: float = 0.0
    early_warning: bool = False  # the cartridge is nearly full: the next session goes elsewhere

    @property
    def path(self) -> str:
        """'xcopy' when the copy manager moved every byte, else 'host'."""
        return "xcopy" if all(c.path == "xcopy" for c in self.copies) else "host"


def copy_runs(
    info: VolumeInfo, used: list[tuple[int, int]], mode: str, size: int
) -> list[tuple[int, int]]:
    """Byte runs of the `size`-byte image to store: everything, or what precedes the cluster
    area (boot sector, FATs, root directory), the clusters in use, and what follows the
    cluster area (e.g. NTFS's backup boot sector)."""
    if mode not in MODES:
        raise ValueError(f"unknown serverless mode {mode!r}; use one of {MODES}")
    if mode == "all":
        return [(0, size)]
    first_cluster = info.cluster_offset(0 if info.cluster_base == 0 else 2)
    end_clusters = info.cluster_offset(info.total_clusters)
    runs = [(0, first_cluster)]
    runs += [(info.cluster_offset(lcn), n * info.cluster_size) for lcn, n in used]
    if end_clusters < size:
        runs.append((end_clusters, size - end_clusters))
    out = []
    for start, length in coalesce(runs):
        end = min(start + length, size)
        start, end = start - start % 512, end + (-end % 512)
        if end > start:
            out.append((start, min(end, size) - start))
    return coalesce(out)


def _written(op: Callable[..., None], *args: object) -> bool:
    """Run a tape write; True when it was written in the early-warning zone (not an error)."""
    try:
        op(*args)
    except VolumeOverflow:
        raise
    except EndOfMedium:
        return True
    return False


def write_session(
    *,
    session_id: str,
    job_id: str,
    source: str,
    info: VolumeInfo,
    used: list[tuple[int, int]],
    entries_tables: tuple[pa.Table, pa.Table],
    origin: BlockDevice,
    frozen: FrozenView | None,
    tape: TapeDrive,
    copy_manager: ScsiDevice | None,
    volume_offset: int = 0,
    mode: str = "all",
    record_size: int = RECORD_SIZE,
    progress: Callable[[int], None] | None = None,
) -> ServerlessResult:
    """Write one serverless session of the volume at `volume_offset` on `origin` to `tape`
    (a labelled cartridge, loaded); the caller maps the volume and freezes it beforehand."""
    started = time.monotonic()
    if volume_offset % 512:
        raise ValueError("the volume must start on a 512-byte boundary of its disk")
    created = datetime.now(UTC)
    tape.set_block_size(0)
    tape.end_of_data()
    pos = tape.position()
    xcopy = copy_manager is not None  # designators only matter to a copy manager
    disk_id = unit_designator(origin.dev) if xcopy else None
    tape_id = unit_designator(tape.dev) if xcopy else None
    block = origin.geometry().block_length
    if block != 512:  # runs and pax headers are 512-aligned; larger blocks would cut them
        raise ValueError(f"{source}: {block}-byte disk blocks are not supported (512 only)")
    base_lba = volume_offset // block

    size = origin.geometry().size - volume_offset  # the whole partition: NTFS keeps a backup
    if size < info.size:  # boot sector after its last cluster
        raise ValueError(f"{source}: the disk ({size} bytes) is smaller than the volume it holds")
    runs = copy_runs(info, used, mode, size)
    image_name, cow_name = fmt.member_names(source)
    plan = CopyPlan(disk_id, tape_id, block, record_size)
    info_hdr = fmt.session_info(session_id, job_id, source, record_size, created)
    plan.add_inline(info_hdr.global_header())
    chunks = None if mode == "all" else runs  # the sparse map is the stored runs
    plan.add_inline(fmt.image_member_header(image_name, size, chunks, created))
    stored: list[fmt.Run] = []
    for offset, length in runs:
        at = plan.add_blocks(base_lba + offset // block, length // block)
        stored.append(fmt.Run(offset, length, at))
    plan.add_inline(fmt.filler(plan.stream_bytes, record_size))
    copies = [
        execute_plan(plan, disk=origin, tape=tape, copy_manager=copy_manager, progress=progress)
    ]
    log.info("%s: image copied by %s (%d bytes)", source, copies[0].path, plan.stream_bytes)
    if copies[0].path == "xcopy":
        tape.forget_position()  # the copy manager moved the tape, not this handle

    # Chunks written during the copy: their freeze-time bytes, from the frozen view.
    stream_start = plan.stream_bytes
    early = False
    cow_runs: list[fmt.Run] = []
    if frozen is not None:
        modified = [  # disk offsets -> volume offsets, clipped to the image
            (max(o, 0), min(o + n, size) - max(o, 0))
            for o, n in ((o - volume_offset, n) for o, n in coalesce(frozen.modified_runs()))
            if o + n > 0 and o < size
        ]
        snap_id = unit_designator(frozen.device.dev) if xcopy else None
        plan2 = CopyPlan(snap_id, tape_id, block, record_size)
        plan2.add_inline(fmt.sparse_member_header(cow_name, size, modified, created))
        for offset, length in modified:
            at = plan2.add_blocks(base_lba + offset // block, length // block)
            cow_runs.append(fmt.Run(offset, length, stream_start + at))
        plan2.add_inline(fmt.end_of_archive(stream_start + plan2.stream_bytes, record_size))
        copies.append(execute_plan(plan2, disk=frozen.device, tape=tape, copy_manager=copy_manager))
        if copies[-1].path == "xcopy":
            tape.forget_position()
        if modified:
            log.info(
                "%s: %d chunk run(s) changed during the copy: saved as %s.cow",
                source,
                len(modified),
                source,
            )
        total = stream_start + plan2.stream_bytes
    else:
        tail = fmt.end_of_archive(stream_start, record_size)
        for pos_ in range(0, len(tail), record_size):
            early |= _written(tape.write, tail[pos_ : pos_ + record_size])
        total = stream_start + len(tail)
    early |= _written(tape.write_filemarks, 1)
    early |= any(c.early_warning for c in copies)
    if early:
        log.warning("%s: the cartridge reached its early-warning zone", source)
    result = ServerlessResult(
        session_id=session_id,
        tape_file=pos.file if pos.file is not None else -1,
        first_block=pos.block,
        record_size=record_size,
        stream_bytes=total,
        volume=info,
        image_size=size,
        runs=stored,
        cow_runs=cow_runs,
        copies=copies,
        seconds=time.monotonic() - started,
        early_warning=early,
    )
    result.maps = build_maps(result, entries_tables)
    return result
