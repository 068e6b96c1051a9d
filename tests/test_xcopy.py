"""EXTENDED COPY: parameter lists (build/parse), the embedded SAN's disk LUNs with
copy-on-write snapshots, its copy manager, and the host path that must leave the same tape."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tapeflow.fs.model import EXTENT_SCHEMA, VOLUME_FILE_SCHEMA, VolumeInfo
from tapeflow.library import Library
from tapeflow.scsi.device import ScsiDevice
from tapeflow.scsi.sbc import BlockDevice
from tapeflow.scsi.sense import CopyAborted, IllegalRequest, WriteProtected
from tapeflow.scsi.vpd import Designator, unit_designator
from tapeflow.scsi.xcopy import (
    BLOCK_TO_STREAM,
    INLINE_TO_STREAM,
    STREAM_TO_BLOCK,
    STREAM_TO_DISCARD,
    CopyPlan,
    ExtendedCopy,
    ParameterListError,
    parse_parameter_list,
)
from tapeflow.serverless.backup import write_session
from tapeflow.serverless.blockfile import ImageBlockDevice
from tapeflow.serverless.restore import restore_image
from tapeflow.tapefmt import write_label
from tapeflow.vtl import VirtualLibrary
from tapeflow.vtl.disk import CHUNK
from tests.tapes import session_bytes

DISK = Designator(1, 0, 3, bytes.fromhex("3123456789abcdef"))
TAPE = Designator(1, 0, 3, bytes.fromhex("3fedcba987654321"))
RECORD = 64 * 1024


@st.composite
def plans(draw: st.DrawFn) -> CopyPlan:
    plan = CopyPlan(DISK, TAPE, 512, draw(st.sampled_from([512, 4096, RECORD])))
    for _ in range(draw(st.integers(1, 40))):
        kind = draw(st.sampled_from([BLOCK_TO_STREAM, INLINE_TO_STREAM, STREAM_TO_DISCARD]))
        if kind == INLINE_TO_STREAM:
            plan.add_inline(draw(st.binary(min_size=1, max_size=700)).ljust(512, b"\0"))
        elif kind == STREAM_TO_DISCARD:
            plan.add_discard(512 * draw(st.integers(1, 300)))
        else:
            plan.add_blocks(draw(st.integers(0, 2**40)), draw(st.integers(1, 300)))
    return plan


@given(plans())
@settings(max_examples=60, deadline=None)
def test_parameter_list_round_trip(plan: CopyPlan) -> None:
    parsed = parse_parameter_list(plan.parameter_list(plan.segments, 7), 16, 100000)
    assert parsed.list_id == 7 and parsed.hold_results
    assert [c.designator for c in parsed.cscds] == [DISK, TAPE]
    assert [c.device_type for c in parsed.cscds] == [0, 1]
    assert [seg for _, _, seg in parsed.segments] == plan.segments
    assert parsed.record_size == plan.record_size


@given(plans(), st.integers(0, 10), st.integers(2048, 8192))
@settings(max_examples=60, deadline=None)
def test_batches_cover_the_stream_and_end_on_records(
    plan: CopyPlan, extra: int, max_inline: int
) -> None:
    # Aligning a command may take one 1-block segment per block of a record: a copy manager
    # must take at least that many more than half its limit.
    max_segments = 2 * (plan.record_size // 512) + 2 + extra
    batches = list(plan.batches(max_segments, max_inline * 4))
    flat = CopyPlan(DISK, TAPE, 512, plan.record_size)
    offset = 0
    for i, batch in enumerate(batches):
        assert len(batch) <= max_segments
        flat.segments.extend(batch)
        offset += sum(s.length(512) for s in batch)
        if i < len(batches) - 1:
            assert offset % plan.record_size == 0
    assert flat.stream_bytes == plan.stream_bytes

    # The same bytes in the same order: expand both to (kind, unit) sequences.
    def units(segs: list) -> list:
        out = []
        for s in segs:
            if s.kind == BLOCK_TO_STREAM:
                out += [(s.kind, s.lba + k) for k in range(s.blocks)]
            elif s.kind == INLINE_TO_STREAM:
                out += [(s.kind, b) for b in s.inline]
            else:
                out += [(s.kind, None)] * s.discard
        return out

    assert units(flat.segments) == units(plan.segments)


def test_bad_parameter_lists_are_refused() -> None:
    plan = CopyPlan(DISK, TAPE, 512, RECORD)
    plan.add_blocks(0, 8)
    good = plan.parameter_list(plan.segments)
    with pytest.raises(ParameterListError) as exc:
        parse_parameter_list(good[:20])
    assert (exc.value.asc, exc.value.ascq) == (0x1A, 0x00)
    bad = bytearray(good)
    bad[16] = 0xE5  # an IPv4 CSCD: not supported
    with pytest.raises(ParameterListError) as exc:
        parse_parameter_list(bytes(bad))
    assert (exc.value.asc, exc.value.ascq) == (0x26, 0x07)
    bad = bytearray(good)
    bad[16 + 64] = 0x02  # block->block segment
    with pytest.raises(ParameterListError) as exc:
        parse_parameter_list(bytes(bad))
    assert (exc.value.asc, exc.value.ascq) == (0x26, 0x09)
    bad = bytearray(good)
    bad[16 + 64 + 7] = 9  # destination CSCD 9 does not exist
    with pytest.raises(ParameterListError):
        parse_parameter_list(bytes(bad))


# --- the embedded SAN ---------------------------------------------------------------------------
@pytest.fixture
def san(tmp_path: Path) -> tuple[VirtualLibrary, Path]:
    vl = VirtualLibrary.create(tmp_path / "lib", drives=2, slots=6)
    image = tmp_path / "vol.img"
    image.write_bytes(os.urandom(2 * 1024 * 1024 + 3 * 512))
    vl.add_disk("vol1", image=image)
    return vl, image


def test_disk_lun_reads_writes_and_refuses_out_of_range(san: tuple) -> None:
    vl, image = san
    disk = BlockDevice(vl.disk("vol1"))
    geo = disk.geometry()
    assert geo.block_length == 512 and geo.size == image.stat().st_size
    assert disk.read(3, 2) == image.read_bytes()[1536:2560]
    disk.write(5, b"\x5a" * 1024)
    assert image.read_bytes()[2560:3584] == b"\x5a" * 1024
    with pytest.raises(IllegalRequest) as exc:
        disk.read(geo.blocks - 1, 2)
    assert exc.value.sense.asc == 0x21
    assert len(unit_designator(disk.dev).value) == 8


def test_snapshot_is_frozen_and_knows_what_changed(san: tuple) -> None:
    vl, image = san
    before = image.read_bytes()
    store = vl.disk_store("vol1")
    snap = store.snapshot()
    disk = BlockDevice(vl.disk("vol1"))
    disk.write(1, b"\x01" * 512)  # chunk 0
    disk.write(CHUNK // 512 * 5 + 6, b"\x02" * 1024)  # the last two blocks of chunk 5
    disk.write(1, b"\x03" * 512)  # chunk 0 again: its freeze-time bytes are kept
    assert store.modified_chunks(snap) == [0, 5]
    frozen = BlockDevice(vl.disk("vol1", snap))
    assert frozen.read(0, len(before) // 512) == before
    assert disk.read(1, 1) == b"\x03" * 512
    with pytest.raises(WriteProtected):
        frozen.write(0, bytes(512))
    store.drop_snapshot(snap)
    assert store.snapshots() == []


def test_copy_manager_announces_3pc_and_refuses_unknown_units(san: tuple) -> None:
    vl, _ = san
    cm = ScsiDevice(vl.copy_manager())
    inquiry = cm.transport.execute(bytes([0x12, 0, 0, 0, 36, 0]), None, 36)
    assert inquiry.data_in[0] & 0x1F == 0x03 and inquiry.data_in[5] & 0x08
    plan = CopyPlan(DISK, TAPE, 512, RECORD)  # designators no unit has
    plan.add_blocks(0, 128)
    with pytest.raises(CopyAborted) as exc:
        cm.execute(ExtendedCopy(plan.parameter_list(plan.segments)))
    assert (exc.value.sense.asc, exc.value.sense.ascq) == (0x0D, 0x02)


class _Frozen:
    def __init__(self, vl: VirtualLibrary, snap: str) -> None:
        self.vl, self.snap = vl, snap
        self.device = BlockDevice(vl.disk("vol1", snap))

    def modified_runs(self) -> list[tuple[int, int]]:
        return [(c * CHUNK, CHUNK) for c in self.vl.disk_store("vol1").modified_chunks(self.snap)]


def _write(vl: VirtualLibrary, lib: Library, drive: int, image: Path, *, xcopy: bool, mode: str):
    size = image.stat().st_size
    info = VolumeInfo("fat16", size, 512, 2048, 0, size // 2048)
    used = [(0, 100), (300, 200)]
    tape = lib.open_drive(drive)
    write_label(tape, f"L{drive}", f"L{drive}", "p")
    snap = vl.disk_store("vol1").snapshot()
    origin = BlockDevice(vl.disk("vol1"))
    try:
        return write_session(
            session_id=f"s{drive}",
            job_id="j",
            source="vol1",
            info=info,
            used=used,
            entries_tables=(VOLUME_FILE_SCHEMA.empty_table(), EXTENT_SCHEMA.empty_table()),
            origin=origin,
            frozen=_Frozen(vl, snap),
            tape=tape,
            copy_manager=ScsiDevice(vl.copy_manager()) if xcopy else None,
            mode=mode,
            record_size=RECORD,
        )
    finally:
        tape.close()


@pytest.mark.parametrize("mode", ["all", "used"])
def test_copy_manager_and_host_write_the_same_tape(san: tuple, tmp_path: Path, mode: str) -> None:
    vl, image = san
    lib = Library(f"embedded:{vl.root}")
    lib.load(0, slot=1)
    lib.load(1, slot=2)
    a = _write(vl, lib, 0, image, xcopy=True, mode=mode)
    b = _write(vl, lib, 1, image, xcopy=False, mode=mode)
    assert (a.path, b.path) == ("xcopy", "host")
    ta, tb = session_bytes(lib, 0, a.tape_file), session_bytes(lib, 1, b.tape_file)
    assert len(ta) == a.stream_bytes and len(ta) % RECORD == 0
    # Only the session id and the creation times differ; sizes and data are the same.
    assert len(ta) == len(tb)
    assert ta[-len(ta) // 2 :] == tb[-len(tb) // 2 :]
    # GNU tar reads the session: the image member is the volume (mode all) or its used part.
    (tmp_path / "x").mkdir()
    (tmp_path / "s.tar").write_bytes(ta)
    subprocess.run(["tar", "-xf", str(tmp_path / "s.tar"), "-C", str(tmp_path / "x")], check=True)
    got = (tmp_path / "x" / "vol1.img").read_bytes()
    want = image.read_bytes()
    if mode == "all":
        assert got == want
    else:
        assert got[: 100 * 2048] == want[: 100 * 2048]
        assert got[300 * 2048 : 500 * 2048] == want[300 * 2048 : 500 * 2048]
        assert got[100 * 2048 : 300 * 2048] == bytes(200 * 2048)


@pytest.mark.parametrize("xcopy", [True, False])
def test_writes_during_the_copy_are_undone_at_restore(
    san: tuple, tmp_path: Path, xcopy: bool
) -> None:
    """The image is read from the live disk; chunks written after the freeze come back with
    their freeze-time content, so the restored volume is the frozen one."""
    vl, image = san
    lib = Library(f"embedded:{vl.root}")
    lib.load(0, slot=1)
    store = vl.disk_store("vol1")
    frozen_bytes = image.read_bytes()
    size = len(frozen_bytes)
    info = VolumeInfo("fat16", size, 512, 2048, 0, size // 2048)
    tape = lib.open_drive(0)
    write_label(tape, "L0", "L0", "p")
    snap = store.snapshot()
    origin = BlockDevice(vl.disk("vol1"))
    # A user writes while the copy runs: emulate with writes between freeze and copy, and a
    # progress hook that writes again in the middle of the copy.
    origin.write(0, b"\xee" * 4096)
    hits = []

    def progress(done: int) -> None:
        if not hits:
            hits.append(done)
            BlockDevice(vl.disk("vol1")).write(2000, b"\xdd" * 2048)

    result = write_session(
        session_id="s",
        job_id="j",
        source="vol1",
        info=info,
        used=[],
        entries_tables=(VOLUME_FILE_SCHEMA.empty_table(), EXTENT_SCHEMA.empty_table()),
        origin=origin,
        frozen=_Frozen(vl, snap),
        tape=tape,
        copy_manager=ScsiDevice(vl.copy_manager()) if xcopy else None,
        mode="all",
        record_size=RECORD,
        progress=progress,
    )
    assert hits and result.cow_runs
    assert image.read_bytes() != frozen_bytes  # the live disk moved on
    target = tmp_path / "restored.img"
    with open(target, "wb") as fh:
        fh.truncate(size)
    dev = ImageBlockDevice(target, writable=True)
    outcome = restore_image(tape, result.maps, dev, None)
    dev.close()
    assert outcome.path == "host"
    assert target.read_bytes() == frozen_bytes
    # The same through the copy manager onto a new disk LUN.
    vl.add_disk("copy", size=size)
    lun = BlockDevice(vl.disk("copy"))
    outcome = restore_image(tape, result.maps, lun, ScsiDevice(vl.copy_manager()))
    assert outcome.path == "xcopy"
    assert lun.read(0, size // 512) == frozen_bytes
    tape.close()
    store.drop_snapshot(snap)


def test_stream_to_block_segment_kinds_parse(san: tuple) -> None:
    plan = CopyPlan(DISK, TAPE, 512, RECORD)
    plan.add_discard(1024)
    plan.add_blocks(10, 4, STREAM_TO_BLOCK)
    parsed = parse_parameter_list(plan.parameter_list(plan.segments))
    assert [(s, d) for s, d, _ in parsed.segments] == [(1, 0xFFFF), (1, 0)]


def test_a_short_disk_read_stops_the_copy(san: tuple, tmp_path: Path) -> None:
    """A disk that returns fewer bytes than asked, without an error, must not shift the stream."""
    from tapeflow.scsi.sbc import ShortTransfer
    from tapeflow.scsi.transport import CommandResult
    from tapeflow.serverless.blockfile import ImageBlockDevice

    vl, image = san
    lun = vl.disk("vol1")

    class Lying:  # answers READ(16) one block short
        def execute(self, cdb: bytes, data_out: object = None, data_in_len: int = 0):
            result = lun.execute(cdb, data_out, data_in_len)
            if cdb[0] == 0x88:
                return CommandResult(result.status, result.data_in[:-512], result.sense)
            return result

        def close(self) -> None:
            lun.close()

    with pytest.raises(ShortTransfer, match="gave"):
        BlockDevice(Lying()).read(0, 8)  # type: ignore[arg-type]
    dev = ImageBlockDevice(image)
    try:
        with pytest.raises(ShortTransfer, match="past its end"):
            dev.read(dev.geometry().blocks - 1, 2)
    finally:
        dev.close()
