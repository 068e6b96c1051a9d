"""Stream logic on an in-memory tape: bad input, and random trees written then read back."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tapeflow.tapefmt import (
    CorruptRecord,
    SessionInfo,
    SessionReader,
    SessionWriter,
    TruncatedSession,
    goto_session,
)
from tapeflow.tapefmt.memtape import MemoryTape

RECORD = 256 * 1024
SMALL = 4096  # small records make boundaries frequent in the property test


def write_session(src: Path, record: int = RECORD) -> tuple[MemoryTape, list[dict]]:
    """Write `src` as session 0 of a fresh in-memory tape."""
    tape = MemoryTape()
    with SessionWriter(tape, SessionInfo("t", record_size=record)) as w:
        w.add_tree(src)
    return tape, w.close().table().to_pylist()


def test_truncated_session_names_the_member(tmp_path: Path) -> None:
    """The tape ends inside a member: TruncatedSession says which."""
    src = tmp_path / "src"
    src.mkdir()
    (src / "a").write_bytes(b"a" * 100)
    (src / "big").write_bytes(os.urandom(3 * RECORD))
    tape, _ = write_session(src)
    cut = MemoryTape()
    for block in tape.objects[:2]:
        assert block is not None
        cut.write(block)
    cut.write_filemarks(1)
    goto_session(cut, 0)
    with pytest.raises(TruncatedSession) as err:
        list(SessionReader(cut).members())
    assert err.value.member == "big"


def test_corrupted_header_names_the_block(tmp_path: Path) -> None:
    """A flipped byte in a header: CorruptRecord with the tape block and offset."""
    src = tmp_path / "src"
    src.mkdir()
    (src / "a").write_bytes(os.urandom(RECORD))
    (src / "b").write_bytes(b"b")
    tape, rows = write_session(src)
    row = next(r for r in rows if r["path"] == "b")
    block = bytearray(tape.objects[row["block"]])  # type: ignore[arg-type]
    block[row["offset"] + 5] ^= 0xFF
    tape.objects[row["block"]] = bytes(block)
    goto_session(tape, 0)
    with pytest.raises(CorruptRecord) as err:
        list(SessionReader(tape).members())
    assert err.value.block == row["block"] and err.value.offset == row["offset"]
    assert f"block {row['block']}" in str(err.value)


SIZES = [0, 1, 511, 512, 513, SMALL - 512, SMALL - 1, SMALL, SMALL + 1, RECORD - 1, RECORD]
names = st.text(
    alphabet=st.characters(blacklist_categories=("Cs", "Cc"), blacklist_characters="/\0"),
    min_size=1,
    max_size=40,
).filter(lambda n: n not in (".", "..") and len(n.encode()) <= 200)
trees = st.dictionaries(
    st.lists(names, min_size=1, max_size=4).map(lambda parts: "/".join(parts)),
    st.sampled_from(SIZES),
    min_size=1,
    max_size=8,
)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(tree=trees, record=st.sampled_from([SMALL, RECORD]))
def test_random_trees_round_trip(tree: dict[str, int], record: int) -> None:
    """Unicode and long names, sizes around block and record boundaries: read back equal."""
    with tempfile.TemporaryDirectory() as tmp:
        src = Path(tmp) / "src"
        src.mkdir()
        files: dict[str, bytes] = {}
        for name, size in sorted(tree.items()):
            path = src / name
            if any(p.is_file() for p in [*path.parents]) or path.exists():
                continue  # a name that is a prefix of another: keep the tree consistent
            path.parent.mkdir(parents=True, exist_ok=True)
            data = os.urandom(size)
            path.write_bytes(data)
            files[name] = data
        tape, rows = write_session(src, record)
        assert {r["path"] for r in rows if r["type"] == "file"} == set(files)
        goto_session(tape, 0)
        out = Path(tmp) / "out"
        report = SessionReader(tape).extract(out)
        assert report.skipped == []
        for name, data in files.items():
            assert (out / name).read_bytes() == data
            assert (out / name).stat().st_mtime_ns == (src / name).stat().st_mtime_ns
        for r in rows:  # every recorded position starts a header
            if r["type"] == "file":
                block = tape.objects[r["block"]]
                assert block is not None and len(block) == record


def test_rows_of_odd_names_old_times_and_both_checksums(tmp_path: Path) -> None:
    """Rows keep what the members say: a name that is not UTF-8 is recorded with U+FFFD, an
    mtime before 1970 with a sub-microsecond part is rounded down, small files carry SHA-256
    and large ones BLAKE3, and the fast and the general path agree on positions."""
    import hashlib

    import blake3

    src = tmp_path / "src"
    src.mkdir()
    odd = os.fsdecode(b"caf\xe9.txt")
    (src / odd).write_bytes(b"latin-1 name")
    old = src / "old.txt"
    old.write_bytes(b"before the epoch")
    os.utime(old, ns=(-1_500_000_001, -1_500_000_001))
    big = os.urandom((1 << 20) + 7)
    (src / "big.bin").write_bytes(big)
    for i in range(300):  # enough small files for the fast path's runs
        (src / f"s{i:03d}.txt").write_bytes(b"x" * i)
    tape, rows = write_session(src)
    by = {r["path"]: r for r in rows}
    assert "caf\ufffd.txt" in by
    assert by["old.txt"]["mtime"].timestamp() == pytest.approx(-1.500001, abs=1e-7)  # floor
    assert by["big.bin"]["checksum"] == "blake3:" + blake3.blake3(big).hexdigest()
    assert by["s007.txt"]["checksum"] == "sha256:" + hashlib.sha256(b"x" * 7).hexdigest()
    for r in rows:  # every recorded position starts that member's header
        if r["type"] == "file" and r["path"] != "caf\ufffd.txt":
            block = tape.objects[r["block"]]
            assert block is not None
            name = block[r["offset"] : r["offset"] + 100].split(b"\0", 1)[0]
            assert name in (r["path"].encode(), b"././@PaxHeader")


def test_a_dying_fastpack_helper_loses_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The helper is killed after it took runs: the writer packs them itself, and the session
    still holds every file once, in tree order, with rows pointing at their headers."""
    import signal

    from tapeflow.tapefmt import writer as writer_mod

    src = tmp_path / "src"
    src.mkdir()
    files = {f"f{i:04d}.txt": os.urandom(i % 700) for i in range(1200)}
    for name, data in files.items():
        (src / name).write_bytes(data)
    submitted = {"n": 0}
    original = writer_mod._Helper.submit

    def submit_then_die(self: writer_mod._Helper, entries: list) -> None:
        original(self, entries)
        submitted["n"] += 1
        if submitted["n"] == 2:  # two runs in flight, none answered yet
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait()

    monkeypatch.setattr(writer_mod._Helper, "submit", submit_then_die)
    tape, rows = write_session(src)
    assert submitted["n"] >= 2
    assert [r["path"] for r in rows if r["type"] == "file"] == sorted(files)
    goto_session(tape, 0)
    out = tmp_path / "out"
    report = SessionReader(tape).extract(out)
    assert report.skipped == []
    for name, data in files.items():
        assert (out / name).read_bytes() == data
    for r in rows:
        block = tape.objects[r["block"]]
        assert block is not None
        name = block[r["offset"] : r["offset"] + 100].split(b"\0", 1)[0]
        assert name in (r["path"].encode(), b"././@PaxHeader")
