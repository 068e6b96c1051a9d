"""Volume label: construct round trip, formatting and recognition on the embedded library."""

from __future__ import annotations

import io
import tarfile
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from tapeflow.library import Library, LibrarySpec
from tapeflow.scsi.tape import TapeDrive
from tapeflow.tapefmt import (
    BlankTape,
    ForeignTape,
    TapeNotBlank,
    VolumeLabel,
    read_label,
    write_label,
)
from tapeflow.tapefmt.label import LabelBlock, Vol1
from tapeflow.tapefmt.memtape import MemoryTape


@pytest.fixture
def drive(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[TapeDrive]:
    """A drive of a fresh embedded library with cartridge TF0001L9 loaded."""
    from tapeflow.vtl.library import VirtualLibrary

    monkeypatch.setenv("TAPEFLOW_HOME", str(tmp_path / "home"))
    VirtualLibrary.create(
        tmp_path / "vtl",
        drives=1,
        slots=4,
        mail_slots=0,
        cartridges=2,
        capacity=64 << 20,
        early_warning=4 << 20,
        cleaning_cartridges=0,
    )
    with Library(LibrarySpec.parse(f"embedded:{tmp_path / 'vtl'}")) as lib:
        lib.load(0, slot=1)
        handle = lib.open_drive(0)
        try:
            yield handle
        finally:
            handle.close()


def test_label_round_trip_is_80_byte_records() -> None:
    """Build -> parse gives the same label; records are ANSI-shaped."""
    when = datetime(2024, 5, 6, 7, 8, 9, tzinfo=UTC)
    label = VolumeLabel("Weekly Ω set", "TF0001L9", "weekly", when)
    raw = label.to_bytes()
    assert len(raw) == 240
    assert raw[:4] == b"VOL1" and raw[4:10] == b"TF0001" and raw[79:80] == b"4"
    assert raw[80:84] == b"TFH1" and raw[160:164] == b"TFH2"
    assert VolumeLabel.from_bytes(raw) == label
    parsed = LabelBlock.parse(raw)
    assert parsed.tfh1.created == when and Vol1.build(parsed.vol1) == raw[:80]


def test_format_then_read(drive: TapeDrive) -> None:
    """write_label leaves only the label; read_label gets it back."""
    written = write_label(drive, "daily", "TF0001L9", "pool-a")
    pos = drive.position()
    assert pos.file == 1
    assert read_label(drive) == written


def test_blank_tape(drive: TapeDrive) -> None:
    """A new cartridge has no label."""
    with pytest.raises(BlankTape):
        read_label(drive)


def test_tar_at_bot_is_foreign_and_not_overwritten(drive: TapeDrive) -> None:
    """A tar archive at BOT is recognized as foreign; formatting needs force."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        info = tarfile.TarInfo("hello.txt")
        info.size = 5
        tar.addfile(info, io.BytesIO(b"hello"))
    drive.set_block_size(0)
    drive.rewind()
    drive.write(buf.getvalue().ljust(10240, b"\0"))
    drive.write_filemarks(1)
    with pytest.raises(ForeignTape, match="tar archive"):
        read_label(drive)
    with pytest.raises(TapeNotBlank, match="tar archive"):
        write_label(drive, "x", "TF0001L9")
    write_label(drive, "x", "TF0001L9", force=True)
    assert read_label(drive).label == "x"


def test_relabel_needs_force() -> None:
    """Our own label is not overwritten by accident either."""
    tape = MemoryTape()
    write_label(tape, "a", "TF0001L9")
    with pytest.raises(TapeNotBlank, match="tapeflow volume"):
        write_label(tape, "b", "TF0001L9")
    write_label(tape, "b", "TF0001L9", force=True)
    assert read_label(tape).label == "b"


def test_other_ansi_label_is_foreign() -> None:
    """Someone else's VOL1 is not ours."""
    tape = MemoryTape()
    tape.write(b"VOL1ABC123" + b" " * 70)
    tape.write_filemarks(1)
    with pytest.raises(ForeignTape):
        read_label(tape)
