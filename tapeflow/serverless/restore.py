"""Restores from a serverless session: single files (only their clusters are read, by LOCATE
to the records that hold them) and whole volumes (the image stream, then the chunks that
changed during the copy), through the copy manager or on the host."""

from __future__ import annotations

import fnmatch
import os
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import pyarrow as pa

from tapeflow.fs.content import compressed_content
from tapeflow.scsi.device import ScsiDevice
from tapeflow.scsi.sbc import BlockDevice
from tapeflow.scsi.tape import TapeDrive
from tapeflow.scsi.vpd import unit_designator
from tapeflow.scsi.xcopy import STREAM_TO_BLOCK, CopyPlan
from tapeflow.serverless.blockfile import ImageBlockDevice
from tapeflow.serverless.copy import CopyOutcome, execute_plan
from tapeflow.serverless.maps import MapTables
from tapeflow.tapefmt.errors import UnsafeMember


@dataclass(slots=True)
class FileRestore:
    """What a file-level restore wrote."""

    files: int = 0
    dirs: int = 0
    bytes: int = 0
    records_read: int = 0


class TapeRanges:
    """Reads stream byte ranges of one session by LOCATE + READ, caching the last record."""

    def __init__(self, tape: TapeDrive, first_block: int, record_size: int) -> None:
        self.tape, self.first_block, self.record_size = tape, first_block, record_size
        self._block: int | None = None  # record index the tape's last read returned
        self._record = b""
        self.records_read = 0

    def _load(self, index: int) -> bytes:
        if index != self._block:
            if self._block is None or index != self._block + 1:
                self.tape.locate(self.first_block + index)
            self._record = self.tape.read(self.record_size)
            self._block = index
            self.records_read += 1
        return self._record

    def read(self, stream_offset: int, length: int) -> bytes:
        out = bytearray()
        while length > 0:
            index, skip = divmod(stream_offset, self.record_size)
            part = self._load(index)[skip : skip + length]
            if not part:
                raise EOFError(f"session stream ends before byte {stream_offset}")
            out += part
            stream_offset += len(part)
            length -= len(part)
        return bytes(out)


def _layers(maps: MapTables) -> list[list[tuple[int, int, int]]]:
    """[(volume_offset, length, stream_offset)] for image runs, then for cow runs."""
    t = maps.tapemap.to_pydict()
    rows = list(zip(t["kind"], t["volume_offset"], t["length"], t["stream_offset"], strict=True))
    return [[(o, n, s) for k, o, n, s in rows if k == kind] for kind in ("image", "cow")]


def read_volume_range(
    reader: TapeRanges, layers: list[list[tuple[int, int, int]]], offset: int, length: int
) -> bytes:
    """Volume bytes [offset, offset+length) as at the freeze: image runs (zeros where none was
    stored), then the chunks that changed during the copy laid over them."""
    out = bytearray(length)
    for runs in layers:
        for start, n, stream in runs:
            lo, hi = max(start, offset), min(start + n, offset + length)
            if lo < hi:
                out[lo - offset : hi - offset] = reader.read(stream + lo - start, hi - lo)
    return bytes(out)


def _safe_target(root: Path, rel: str) -> Path:
    parts = [p for p in rel.split("/") if p not in ("", ".")]
    if not parts or ".." in parts:
        raise UnsafeMember(rel, "refusing to restore outside the target directory")
    return root.joinpath(*parts)


def select_files(maps: MapTables, patterns: Iterable[str], exact: bool = False) -> pa.Table:
    """Rows of the volume's files matching a path, a glob or a directory (with what is below);
    with `exact`, only the paths given."""
    pats = [p.strip("/") for p in patterns]
    paths = maps.volfiles["path"].to_pylist()
    if exact:
        wanted = set(pats)
        return maps.volfiles.filter(pa.array([path in wanted for path in paths]))
    keep = [
        any(
            p == "" or path == p or path.startswith(p + "/") or fnmatch.fnmatchcase(path, p)
            for p in pats
        )
        for path in paths
    ]
    return maps.volfiles.filter(pa.array(keep))


def restore_files(
    tape: TapeDrive,
    maps: MapTables,
    patterns: Iterable[str],
    target: Path,
    *,
    exact: bool = False,
) -> FileRestore:
    """Restore the selected files and directories of the volume under `target`, reading only
    the records that hold their clusters."""
    target = Path(target)
    target.mkdir(parents=True, exist_ok=True)
    first_block = maps.first_block
    chosen = select_files(maps, patterns, exact)
    extents: dict[int, list[tuple[int, int | None, int]]] = {}
    ext = maps.extents.to_pydict()
    wanted = set(chosen["inode"].to_pylist())
    for inode, vcn, lcn, n in zip(ext["inode"], ext["vcn"], ext["lcn"], ext["length"], strict=True):
        if inode in wanted:
            extents.setdefault(inode, []).append((vcn, lcn, n))
    reader = TapeRanges(tape, first_block, maps.record_size)
    layers = _layers(maps)
    geo = maps.geometry
    report = FileRestore()
    rows = sorted(chosen.to_pylist(), key=lambda r: r["path"])
    for row in rows:
        dest = _safe_target(target, row["path"])
        if row["type"] == "dir":
            dest.mkdir(parents=True, exist_ok=True)
            report.dirs += 1
            continue
        dest.parent.mkdir(parents=True, exist_ok=True)
        size = row["size"]
        with open(dest, "wb") as fh:
            runs = sorted(extents.get(row["inode"], []))
            if row["resident"] is not None:
                fh.write(row["resident"][:size])
            elif row["compression_unit"]:

                def clusters(lcn: int, n: int) -> bytes:
                    return read_volume_range(
                        reader, layers, geo.cluster_offset(lcn), n * geo.cluster_size
                    )

                unit = row["compression_unit"]
                fh.write(compressed_content(runs, size, unit, geo.cluster_size, clusters))
            else:
                valid = size if row["initialized"] is None else row["initialized"]
                for vcn, lcn, n in runs:
                    start = vcn * geo.cluster_size
                    if start >= valid:
                        break  # past the valid data: zeros (the truncate below)
                    want = min(n * geo.cluster_size, valid - start)
                    fh.seek(start)
                    if lcn is None:
                        fh.write(bytes(want))
                    else:
                        fh.write(read_volume_range(reader, layers, geo.cluster_offset(lcn), want))
            fh.truncate(size)
        _set_mtime(dest, row["mtime"])
        report.files += 1
        report.bytes += size
    report.records_read = reader.records_read
    return report


def _set_mtime(path: Path, mtime: datetime | None) -> None:
    if mtime is not None:
        ts = mtime.timestamp()
        os.utime(path, (ts, ts))


def image_plan(maps: MapTables, device: BlockDevice, tape: TapeDrive | None) -> CopyPlan:
    """STREAM->BLOCK segments that write the image runs, then the cow runs, onto `device`,
    discarding the headers between them; reads the stream from its start."""
    block = device.geometry().block_length
    if block != 512:
        raise ValueError(f"{block}-byte disk blocks are not supported as a restore target")
    disk_id = None if isinstance(device, ImageBlockDevice) else unit_designator(device.dev)
    tape_id = None if tape is None or disk_id is None else unit_designator(tape.dev)
    plan = CopyPlan(disk_id, tape_id, block, maps.record_size)
    at = 0
    for runs in _layers(maps):
        for offset, length, stream in runs:
            plan.add_discard(stream - at)
            plan.add_blocks(offset // block, length // block, STREAM_TO_BLOCK)
            at = stream + length
    return plan


def restore_image(
    tape: TapeDrive,
    maps: MapTables,
    device: BlockDevice,
    copy_manager: ScsiDevice | None,
) -> CopyOutcome:
    """Write the whole volume back onto `device` (a disk LUN, or an ImageBlockDevice over a
    file already sized to the volume)."""
    if device.geometry().size < maps.image_size:
        raise ValueError(
            f"target holds {device.geometry().size} bytes; the volume needs {maps.image_size}"
        )
    plan = image_plan(maps, device, tape)
    tape.locate(maps.first_block)
    manager = copy_manager if plan.disk is not None else None
    return execute_plan(plan, disk=device, tape=tape, copy_manager=manager)
