"""Sessions on the embedded library: GNU tar reads them, positions LOCATE, spanning works."""

from __future__ import annotations

import hashlib
import io
import os
import subprocess
import tarfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tapeflow.library import Library, LibrarySpec
from tapeflow.scsi.sense import FilemarkDetected
from tapeflow.scsi.tape import TapeDrive
from tapeflow.tapefmt import (
    SessionInfo,
    SessionReader,
    SessionWriter,
    goto_session,
    read_member_at,
    write_label,
)
from tapeflow.tapefmt.pax import UstarHeader, build_header, parse_header

RECORD = 256 * 1024
LONG = "d" * 120 + "/" + "long-file-name-" * 12 + ".txt"


def make_tree(root: Path) -> None:
    """Long names, a symlink, a hard link, unicode, record-boundary sizes, a sparse file."""
    (root / "dir" / "sub").mkdir(parents=True)
    (root / "a.txt").write_bytes(b"hello\n")
    (root / "dir" / "b.bin").write_bytes(os.urandom(RECORD + 1000))
    (root / "dir" / "edge").write_bytes(b"e" * (RECORD - 512))
    (root / "dir" / "ünïcödé.txt").write_text("unicode")
    (root / "dir" / "sub" / "empty").write_bytes(b"")
    long_path = root / LONG
    long_path.parent.mkdir(parents=True)
    long_path.write_bytes(b"long\n")
    os.symlink("../a.txt", root / "dir" / "link")
    os.link(root / "a.txt", root / "dir" / "hard")
    with open(root / "sparse.img", "wb") as fh:
        fh.truncate(64 << 20)
        fh.seek(10 << 20)
        fh.write(b"middle")
    os.chmod(root / "a.txt", 0o640)
    os.utime(root / "dir" / "edge", ns=(1_600_000_000_123_456_789, 1_600_000_000_123_456_789))


def walk(root: Path) -> dict[str, tuple[str, int, bytes | str, int]]:
    """name -> (kind, mode, content or link target, mtime in µs) for comparing trees."""
    out: dict[str, tuple[str, int, bytes | str, int]] = {}
    for dirpath, dirs, files in os.walk(root):
        for name in dirs + files:
            p = Path(dirpath) / name
            rel = p.relative_to(root).as_posix()
            st = p.lstat()
            if p.is_symlink():
                out[rel] = ("link", 0, os.readlink(p), st.st_mtime_ns // 1000)
            elif p.is_dir():
                out[rel] = ("dir", st.st_mode & 0o7777, b"", st.st_mtime_ns // 1000)
            else:
                digest = hashlib.sha256(p.read_bytes()).hexdigest()
                out[rel] = ("file", st.st_mode & 0o7777, digest, st.st_mtime_ns // 1000)
    return out


@pytest.fixture
def lib(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Library]:
    """An embedded library: 1 drive, 3 small cartridges (16 MiB, early warning at 14 MiB)."""
    from tapeflow.vtl.library import VirtualLibrary

    monkeypatch.setenv("TAPEFLOW_HOME", str(tmp_path / "home"))
    VirtualLibrary.create(
        tmp_path / "vtl",
        drives=1,
        slots=4,
        mail_slots=0,
        cartridges=3,
        capacity=16 << 20,
        early_warning=2 << 20,
        cleaning_cartridges=0,
    )
    with Library(LibrarySpec.parse(f"embedded:{tmp_path / 'vtl'}")) as library:
        yield library


def labeled(lib: Library, slot: int) -> TapeDrive:
    """Load the cartridge of `slot`, format it, return the drive."""
    barcode = lib.load(0, slot=slot)
    drive = lib.open_drive(0)
    write_label(drive, f"test {slot}", barcode, "test")
    return drive


def raw_tape_file(drive: TapeDrive, tape_file: int, out: Path) -> int:
    """Copy one tape file's records into `out` (what `mt fsf N; dd` would do)."""
    goto_session(drive, tape_file)
    records = 0
    with open(out, "wb") as fh:
        while True:
            try:
                block = drive.read(RECORD)
            except FilemarkDetected:
                return records
            assert len(block) == RECORD, "every tape block is exactly one record"
            fh.write(block)
            records += 1


def test_gnu_tar_reads_a_session(lib: Library, tmp_path: Path) -> None:
    """tar -tvf / -xf on the raw tape file give the source tree back, and so does our reader."""
    src = tmp_path / "src"
    make_tree(src)
    drive = labeled(lib, 1)
    try:
        with SessionWriter(drive, SessionInfo("first", job_id="j"), barcode="TF0001L9") as w:
            (w.add_tree(src))
        with SessionWriter(drive, SessionInfo("s-42", job_id="j", source=str(src))) as w:
            w.add_tree(src)
        result = w.close()
        rows = result.table().to_pylist()
        assert {r["tape_file"] for r in rows} == {2}
        assert raw_tape_file(drive, 2, tmp_path / "s.tar") == result.records

        listing = subprocess.run(
            ["tar", "-tvf", str(tmp_path / "s.tar")], capture_output=True, text=True, check=True
        )
        assert listing.stderr == ""
        lines = listing.stdout.splitlines()
        assert len(lines) == len(rows)
        assert any(LONG in line for line in lines)
        assert any("dir/link -> ../a.txt" in line for line in lines)
        assert any("dir/hard link to a.txt" in line for line in lines)
        sizes = {line.split()[2] for line in lines if "sparse.img" in line}
        assert str(64 << 20) in sizes

        out = tmp_path / "gnu"
        out.mkdir()
        subprocess.run(["tar", "-xf", str(tmp_path / "s.tar"), "-C", str(out)], check=True)
        assert walk(out) == walk(src)

        mine = tmp_path / "mine"
        goto_session(drive, 2)
        reader = SessionReader(drive)
        report = reader.extract(mine)
        assert report.skipped == []
        assert reader.info is not None and reader.info.session_id == "s-42"
        assert walk(mine) == walk(src)
        assert os.stat(mine / "a.txt").st_ino == os.stat(mine / "dir" / "hard").st_ino

        # checksums computed while writing match the content
        by_path = {r["path"]: r for r in rows}
        for name in ("a.txt", "dir/b.bin", LONG):
            digest = hashlib.sha256((src / name).read_bytes()).hexdigest()
            assert by_path[name]["checksum"] == f"sha256:{digest}"

        # LOCATE to a recorded position and read only that member
        for name in ("dir/b.bin", LONG, "dir/edge", "sparse.img"):
            row = by_path[name]
            member, data = read_member_at(drive, row["block"], row["offset"])
            assert member.name == name
            assert data == (src / name).read_bytes()
    finally:
        drive.close()


def test_pax_size_and_header_layout(tmp_path: Path) -> None:
    """Forcing the pax 'size' record (as a > 8 GiB file needs) still reads with GNU tar."""
    from tapeflow.tapefmt.memtape import MemoryTape

    src = tmp_path / "src"
    src.mkdir()
    (src / "f.bin").write_bytes(b"x" * 5000)
    tape = MemoryTape()
    with SessionWriter(tape, SessionInfo("p"), pax_size_from=1) as w:
        w.add_tree(src)
    (tmp_path / "p.tar").write_bytes(tape.tape_file(0))
    listing = subprocess.run(
        ["tar", "-tvf", str(tmp_path / "p.tar")], capture_output=True, text=True, check=True
    )
    assert " 5000 " in listing.stdout
    head = build_header(b"n", 0o644, 1, 2, 3, 4, b"0", b"", b"u", b"g")
    parsed = UstarHeader.parse(head)
    assert parsed.name == b"n" and parsed.size == 3 and parsed.uname == b"u"
    assert parse_header(head).mtime == 4


def test_spanning_three_cartridges(lib: Library, tmp_path: Path) -> None:
    """A 30 MiB session on 16 MiB cartridges continues on the next ones and reads back whole."""
    src = tmp_path / "src"
    src.mkdir()
    for i in range(12):
        (src / f"f{i:02d}.bin").write_bytes(os.urandom(3_000_000 + i))
    slots = iter([2, 3])

    def next_cartridge() -> TapeDrive:
        nonlocal drive
        drive.close()
        lib.unload(0)
        drive = labeled(lib, next(slots))
        return drive

    drive = labeled(lib, 1)
    with SessionWriter(
        drive, SessionInfo("span"), barcode="TF0001L9", next_cartridge=next_cartridge
    ) as w:
        w.add_tree(src)
    result = w.close()
    drive.close()
    assert [s.barcode for s in result.segments] == ["TF0001L9", "TF0002L9", "TF0003L9"]
    rows = result.table().to_pylist()
    assert {r["barcode"] for r in rows} == {"TF0001L9", "TF0002L9", "TF0003L9"}

    slot_of = {"TF0001L9": 1, "TF0002L9": 2, "TF0003L9": 3}

    def load(barcode: str) -> TapeDrive:
        lib.unload(0)
        lib.load(0, slot=slot_of[barcode])
        return lib.open_drive(0)

    handles: list[TapeDrive] = []

    def next_part(sequence: int) -> TapeDrive:
        handles[-1].close()
        handles.append(load(result.segments[sequence].barcode))
        return handles[-1]

    handles.append(load("TF0001L9"))
    goto_session(handles[-1], 1)
    report = SessionReader(handles[-1], next_cartridge=next_part).extract(tmp_path / "out")
    assert report.skipped == []
    assert walk(tmp_path / "out") == walk(src)

    # a member whose header is on cartridge 2: LOCATE there and read it (may run onto 3)
    row = next(r for r in rows if r["barcode"] == "TF0002L9")
    handles[-1].close()
    handles.append(load("TF0002L9"))
    member, data = read_member_at(
        handles[-1],
        row["block"],
        row["offset"],
        next_cartridge=next_part,
        session_id="span",
        sequence=1,
    )
    assert data == (src / row["path"]).read_bytes()

    # GNU tar on cartridge 2's part alone: skips the straddling tail, extracts what follows
    handles[-1].close()
    handles.append(load("TF0002L9"))
    raw_tape_file(handles[-1], 1, tmp_path / "part2.tar")
    handles[-1].close()
    part = tmp_path / "part2"
    part.mkdir()
    run = subprocess.run(
        ["tar", "-xf", str(tmp_path / "part2.tar"), "-C", str(part)], capture_output=True, text=True
    )
    assert run.returncode in (0, 2), run.stderr
    whole = [r["path"] for r in rows if r["barcode"] == "TF0002L9"][:-1]
    for name in whole:  # members wholly on this part come out right
        assert (part / name).read_bytes() == (src / name).read_bytes()


def test_volume_overflow_rewrites_the_record(tmp_path: Path) -> None:
    """Without early warning the failed record is written again on the next cartridge."""
    from tapeflow.tapefmt.memtape import MemoryTape

    src = tmp_path / "src"
    src.mkdir()
    for i in range(5):
        (src / f"f{i}").write_bytes(os.urandom(700_000))
    tapes = [MemoryTape(capacity=1 << 20, barcode=f"M{i}") for i in range(8)]
    for t in tapes:
        write_label(t, "m", t.barcode)
    queue = iter(tapes[1:])
    with SessionWriter(
        tapes[0], SessionInfo("ov"), barcode="M0", next_cartridge=lambda: next(queue)
    ) as w:
        w.add_tree(src)
    result = w.close()
    assert len(result.segments) >= 3
    assert any("physical end" in x for x in result.warnings)
    by_code = {t.barcode: t for t in tapes}

    def next_part(sequence: int) -> MemoryTape:
        return by_code[result.segments[sequence].barcode]

    goto_session(tapes[0], 1)
    SessionReader(tapes[0], next_cartridge=next_part).extract(tmp_path / "out")
    assert walk(tmp_path / "out") == walk(src)


def test_unsafe_names_are_reported_not_extracted(tmp_path: Path) -> None:
    """'..', absolute paths, writing through a symlink or linking outside: skipped, reported."""
    from tapeflow.tapefmt.memtape import MemoryTape

    outside = tmp_path / "outside"
    outside.mkdir()
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:

        def add(name: str, kind: bytes = tarfile.REGTYPE, link: str = "", data: bytes = b"x"):
            info = tarfile.TarInfo(name)
            info.type = kind
            info.linkname = link
            info.size = len(data) if kind == tarfile.REGTYPE else 0
            tar.addfile(info, io.BytesIO(data) if kind == tarfile.REGTYPE else None)

        add("ok.txt")
        add("../escape.txt")
        add(str(outside / "abs.txt"))
        add("a/../../escape2.txt")
        add("ln", tarfile.SYMTYPE, str(outside))
        add("ln/through.txt")
        add("hl", tarfile.LNKTYPE, "../outside/x")
        add("ok2.txt")
    tape = MemoryTape()
    data = buf.getvalue()
    data += bytes(-len(data) % RECORD)
    for i in range(0, len(data), RECORD):
        tape.write(data[i : i + RECORD])
    tape.write_filemarks(1)
    goto_session(tape, 0)
    target = tmp_path / "target"
    report = SessionReader(tape).extract(target)
    skipped = {s.name: s.reason for s in report.skipped}
    assert set(skipped) == {
        "../escape.txt",
        str(outside / "abs.txt"),
        "a/../../escape2.txt",
        "ln/through.txt",
        "hl",
    }
    assert "absolute" in skipped[str(outside / "abs.txt")]
    assert "symlink" in skipped["ln/through.txt"]
    assert sorted(report.extracted) == ["ln", "ok.txt", "ok2.txt"]
    assert list(outside.iterdir()) == []
    assert not (tmp_path / "escape.txt").exists() and not (tmp_path / "escape2.txt").exists()
