"""tapeflow.snapshot: quiesce timing (injected clock and real writer threads), the probes, FIEMAP
parsing and diffing, the reflink / full-copy / split-mirror providers, and freeze()'s release
guarantees. Reflink is exercised on real XFS and btrfs loop mounts when this host allows it."""

from __future__ import annotations

import inspect
import io
import logging
import os
import shutil
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace
from typing import cast

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tapeflow.snapshot import (
    FreezeTimeout,
    ReflinkProvider,
    Snapshot,
    SnapshotFailed,
    SnapshotReleased,
    SnapshotUnsupported,
    SplitMirrorProvider,
    block_device_probe,
    counter_probe,
    file_probe,
    filesystem_of,
    freeze,
    tree_probe,
    wait_for_quiet,
)
from tapeflow.snapshot import providers as providers_mod
from tapeflow.snapshot.fiemap import (
    EXTENT_SIZE,
    FIEMAP_EXTENT_DATA_INLINE,
    FIEMAP_EXTENT_ENCODED,
    FIEMAP_EXTENT_LAST,
    FIEMAP_EXTENT_SHARED,
    FIEMAP_EXTENT_UNWRITTEN,
    FS_IOC_FIEMAP,
    HEADER_SIZE,
    Extent,
    FiemapExtentStruct,
    FiemapHeader,
    build_request,
    changed_ranges,
    fiemap,
    parse_reply,
    to_block_runs,
)
from tapeflow.snapshot.quiesce import QuiesceProgress, default_poll

KIB = 1024
MIB = 1024 * KIB


class FakeClock:
    """Monotonic clock whose sleep advances it: quiesce timing without waiting."""

    def __init__(self) -> None:
        self.now = 0.0
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        assert seconds >= 0
        self.sleeps.append(seconds)
        self.now += seconds


def _write(path: Path, data: bytes, offset: int = 0) -> None:
    with open(path, "r+b" if path.exists() else "wb") as f:
        f.seek(offset)
        f.write(data)


class Writer(threading.Thread):
    """Appends to a file every `every` seconds until `duration` passes or stop() is called;
    `last_write` is the monotonic time just after the last write reached the file."""

    def __init__(self, path: Path, *, duration: float | None, every: float = 0.01) -> None:
        super().__init__(daemon=True)
        self.path, self.duration, self.every = path, duration, every
        self.halt = threading.Event()
        self.last_write = 0.0
        self.writes = 0

    def run(self) -> None:
        end = None if self.duration is None else time.monotonic() + self.duration
        with open(self.path, "ab", buffering=0) as f:
            while not self.halt.is_set() and (end is None or time.monotonic() < end):
                f.write(b"x" * 100)
                self.last_write = time.monotonic()
                self.writes += 1
                time.sleep(self.every)

    def stop(self) -> None:
        self.halt.set()
        self.join(5)


# ---------------------------------------------------------------- quiesce, injected clock


def test_defaults_are_3s_quiet_80s_timeout_and_poll_is_derived() -> None:
    params = inspect.signature(wait_for_quiet).parameters
    assert params["quiet"].default == 3.0 and params["timeout"].default == 80.0
    params = inspect.signature(freeze).parameters
    assert params["quiet"].default == 3.0 and params["timeout"].default == 80.0
    assert default_poll(3.0) == 0.25
    assert default_poll(0.4) == pytest.approx(0.1)


def test_quiet_reached_when_nothing_writes() -> None:
    clock = FakeClock()
    result = wait_for_quiet(lambda: 42, clock=clock, sleep=clock.sleep)
    assert result.waited == pytest.approx(3.0)
    assert result.writes_seen == 0
    assert result.polls == 13  # first look + one every 0.25 s for 3 s
    assert max(clock.sleeps) <= 0.25
    assert result.marker == 42


def test_quiet_counts_from_the_last_write_seen() -> None:
    clock = FakeClock()
    # the source is written every 0.1 s until t=2.0, then left alone
    result = wait_for_quiet(
        lambda: int(min(clock.now, 2.0) * 10), quiet=1.0, clock=clock, sleep=clock.sleep
    )
    assert result.writes_seen == 8  # the polls at 0.25, 0.5, ..., 2.0 each saw a change
    assert result.waited == pytest.approx(3.0)


def test_never_quiet_raises_freeze_timeout_naming_the_numbers() -> None:
    clock = FakeClock()
    with pytest.raises(FreezeTimeout) as caught:
        wait_for_quiet(lambda: clock.now, clock=clock, sleep=clock.sleep, label="vol.img")
    err = caught.value
    assert err.waited == pytest.approx(80.0)
    assert err.timeout == 80.0 and err.quiet == 3.0
    assert err.last_write_ago <= 0.25
    text = str(err)
    assert "vol.img" in text and "80 s timeout" in text and "quiet for 3 s" in text
    assert "waited 80.00 s" in text and "0.00 s before giving up" in text


def test_on_progress_sees_every_poll() -> None:
    clock = FakeClock()
    seen: list[QuiesceProgress] = []
    result = wait_for_quiet(
        lambda: 1,
        quiet=1.0,
        timeout=5.0,
        poll=0.5,
        clock=clock,
        sleep=clock.sleep,
        on_progress=seen.append,
    )
    assert [p.polls for p in seen] == [1, 2, 3]
    assert seen[-1].quiet_for == pytest.approx(1.0) and result.polls == 3


def test_zero_quiet_returns_at_once_and_bad_arguments_are_refused() -> None:
    clock = FakeClock()
    assert wait_for_quiet(lambda: 0, quiet=0, clock=clock, sleep=clock.sleep).polls == 1
    with pytest.raises(ValueError, match="never fit"):
        wait_for_quiet(lambda: 0, quiet=5, timeout=1)
    with pytest.raises(ValueError, match="positive"):
        wait_for_quiet(lambda: 0, quiet=1, timeout=2, poll=0)
    with pytest.raises(ValueError, match="negative"):
        wait_for_quiet(lambda: 0, quiet=-1)


def test_probe_errors_propagate() -> None:
    def broken() -> object:
        raise PermissionError("no")

    with pytest.raises(PermissionError):
        wait_for_quiet(broken, quiet=0.1, timeout=1)


# ---------------------------------------------------------------- quiesce, real writers


def test_writer_that_stops_is_waited_for_then_quiet(tmp_path: Path) -> None:
    image = tmp_path / "vol.img"
    image.write_bytes(b"")
    writer = Writer(image, duration=0.4)
    writer.start()
    time.sleep(0.05)
    try:
        result = wait_for_quiet(file_probe(image), quiet=0.2, timeout=3.0)
        returned = time.monotonic()
    finally:
        writer.stop()
    assert writer.writes > 10 and result.writes_seen >= 5
    # quiet is measured from the last write (10 ms for the writer's clock read after write())
    assert returned - writer.last_write >= 0.2 - 0.01
    assert returned - writer.last_write < 1.5  # and not much later (generous for loaded CI)


def test_writer_that_never_stops_times_out(tmp_path: Path) -> None:
    image = tmp_path / "vol.img"
    image.write_bytes(b"")
    writer = Writer(image, duration=None, every=0.02)
    writer.start()
    started = time.monotonic()
    try:
        with pytest.raises(FreezeTimeout, match=r"within the 1 s timeout") as caught:
            wait_for_quiet(file_probe(image), quiet=0.2, timeout=1.0)
    finally:
        writer.stop()
    assert 1.0 <= time.monotonic() - started < 2.0
    assert caught.value.writes_seen >= 10 and caught.value.last_write_ago < 0.2
    assert str(image) in str(caught.value)


# ---------------------------------------------------------------- probes


def test_file_probe_sees_writes_truncation_replacement_and_absence(tmp_path: Path) -> None:
    path = tmp_path / "vol.img"
    probe = file_probe(path)
    assert probe() is None
    path.write_bytes(b"a" * 100)
    m1 = probe()
    assert m1 is not None and probe() == m1
    time.sleep(0.02)  # past one timestamp tick on kernels without fine-grained timestamps
    _write(path, b"b", 10)  # same size, content changed
    m2 = probe()
    assert m2 != m1
    os.truncate(path, 50)
    m3 = probe()
    assert m3 != m2
    other = tmp_path / "new.img"
    other.write_bytes(b"a" * 50)
    os.utime(other, ns=(m3[3], m3[3]))  # same size and mtime: only the inode tells
    os.replace(other, path)
    assert probe() != m3
    with pytest.raises(ValueError, match="device"):
        file_probe("/dev/null")


def test_tree_probe_sees_new_modified_and_deleted_files(tmp_path: Path) -> None:
    root = tmp_path / "src"
    (root / "a" / "b").mkdir(parents=True)
    (root / "one").write_bytes(b"1" * 10)
    (root / "a" / "b" / "deep").write_bytes(b"d" * 10)
    outside = tmp_path / "outside"
    outside.mkdir()
    (root / "link").symlink_to(outside)
    probe = tree_probe(root)
    m0 = probe()
    assert m0 is not None and m0.entries == 6 and probe() == m0

    (outside / "ignored").write_bytes(b"x")  # behind a symlink: not followed
    assert probe() == m0

    time.sleep(0.02)
    (root / "a" / "new").write_bytes(b"n")
    m1 = probe()
    assert m1 != m0 and m1.entries == 7

    time.sleep(0.02)
    _write(root / "a" / "b" / "deep", b"D", 3)  # same size, deep in the tree
    m2 = probe()
    assert m2 != m1 and m2.entries == 7 and m2.max_mtime_ns > m1.max_mtime_ns

    time.sleep(0.02)
    (root / "one").unlink()
    m3 = probe()
    assert m3 != m2 and m3.entries == 6

    os.rename(root / "a" / "new", root / "a" / "renamed")
    assert probe() != m3
    assert tree_probe(tmp_path / "missing")() is None


def test_tree_probe_cost_is_bounded(tmp_path: Path) -> None:
    for i in range(10):
        (tmp_path / f"f{i}").write_bytes(b"")
    with pytest.raises(SnapshotUnsupported, match="more than 5 entries"):
        tree_probe(tmp_path, max_entries=5)()
    assert tree_probe(tmp_path, max_entries=11)() is not None


def test_counter_probe_over_a_write_generation() -> None:
    class Lun:
        def __init__(self) -> None:
            self.generation = 0

        def write_generation(self) -> int:
            return self.generation

    lun = Lun()
    probe = counter_probe(lun.write_generation)
    assert "write_generation" in repr(probe)
    clock = FakeClock()

    def tick(seconds: float) -> None:
        clock.sleep(seconds)
        if clock.now < 1.0:
            lun.generation += 1  # the LUN is written during the first second

    result = wait_for_quiet(probe, quiet=0.5, timeout=5, clock=clock, sleep=tick)
    assert result.writes_seen >= 4 and result.waited == pytest.approx(1.5, abs=0.13)
    with pytest.raises(ValueError, match="not a block device"):
        block_device_probe("/dev/null")


# ---------------------------------------------------------------- FIEMAP


def test_fiemap_structs_round_trip_at_the_kernel_abi_sizes() -> None:
    assert (HEADER_SIZE, EXTENT_SIZE) == (32, 56)  # sizeof(struct fiemap / fiemap_extent)
    assert FS_IOC_FIEMAP == (3 << 30) | (HEADER_SIZE << 16) | (ord("f") << 8) | 11
    raw = dict(
        logical=4096,
        physical=1 << 40,
        length=8192,
        reserved64=[0, 0],
        flags=0x2001,
        reserved=bytes(12),
    )
    blob = FiemapExtentStruct.build(raw)
    parsed = FiemapExtentStruct.parse(blob)
    assert len(blob) == EXTENT_SIZE
    assert (parsed.logical, parsed.physical, parsed.length, parsed.flags) == (
        4096,
        1 << 40,
        8192,
        0x2001,
    )
    req = build_request(0, 1 << 20, 1, 2)
    assert len(req) == HEADER_SIZE + 2 * EXTENT_SIZE
    header = FiemapHeader.parse(bytes(req))
    assert (header.start, header.length, header.flags, header.extent_count) == (0, 1 << 20, 1, 2)
    # a reply claiming more extents than the buffer holds is bounded, zero-length ones dropped
    reply = bytearray(req)
    reply[HEADER_SIZE - 12 : HEADER_SIZE - 8] = (99).to_bytes(4, sys.byteorder)
    reply[HEADER_SIZE:] = blob + FiemapExtentStruct.build(raw | {"length": 0})
    extents, last = parse_reply(bytes(reply))
    assert extents == [Extent(4096, 1 << 40, 8192, 0x2001)] and last


def test_fiemap_of_a_real_sparse_file(tmp_path: Path) -> None:
    path = tmp_path / "sparse.img"
    with open(path, "wb") as f:
        f.write(os.urandom(64 * KIB))
        f.seek(4 * MIB)
        f.write(os.urandom(4 * KIB))
    with open(path, "rb") as f:
        extents = fiemap(f.fileno(), batch=1)  # one at a time: exercises continuation
    mapped = sorted((e.logical, e.end) for e in extents)
    assert mapped[0][0] == 0 and mapped[0][1] >= 64 * KIB
    assert any(a <= 4 * MIB < b for a, b in mapped)
    assert not any(a < 2 * MIB < b for a, b in mapped)  # the hole is not mapped
    assert extents[-1].flags & FIEMAP_EXTENT_LAST


def test_changed_ranges_examples() -> None:
    shared = [Extent(0, 1_000_000, 40960)]
    assert changed_ranges(shared, 40960, shared, 40960) == []
    # origin rewrote blocks 2..3 elsewhere (CoW)
    origin = [
        Extent(0, 1_000_000, 8192),
        Extent(8192, 5_000_000, 8192),
        Extent(16384, 1_016_384, 24576),
    ]
    assert changed_ranges(origin, 40960, shared, 40960) == [(8192, 16384)]
    assert to_block_runs([(8192, 16384)], 4096) == [(2, 2)]
    assert to_block_runs([(8192, 16384)], 65536) == [(0, 1)]
    # grew by data past the snapshot's end; a hole past its end is no change
    grown = shared + [Extent(40960, 7_000_000, 4096)]
    assert changed_ranges(grown, 45056, shared, 40960) == [(40960, 45056)]
    assert changed_ranges(shared, 50000, shared, 40960) == []
    # hole punched; unwritten vs written; inline never trusted; encoded only when identical
    assert changed_ranges([Extent(0, 1_000_000, 4096)], 8192, shared, 40960) == [(4096, 8192)]
    unwritten = [Extent(0, 1_000_000, 4096, FIEMAP_EXTENT_UNWRITTEN)]
    assert changed_ranges(unwritten, 4096, shared, 4096) == [(0, 4096)]
    inline = [Extent(0, 0, 100, FIEMAP_EXTENT_DATA_INLINE | FIEMAP_EXTENT_LAST)]
    assert changed_ranges(inline, 100, inline, 100) == [(0, 100)]
    enc = [Extent(0, 9_000_000, 131072, FIEMAP_EXTENT_ENCODED | FIEMAP_EXTENT_SHARED)]
    assert changed_ranges(enc, 131072, enc, 131072) == []
    enc_split = [Extent(0, 9_000_000, 65536, FIEMAP_EXTENT_ENCODED)]
    assert changed_ranges(enc_split, 65536, enc, 131072) == [(0, 65536)]
    with pytest.raises(ValueError):
        to_block_runs([], 0)


FS_BLOCK = 4096


def _extents_of(blocks: list[int | None], split_every: int) -> list[Extent]:
    """Per-block physical numbers (None: hole) -> extents, merging contiguous runs."""
    out: list[Extent] = []
    for i, phys in enumerate(blocks):
        if phys is None:
            continue
        prev = out[-1] if out else None
        if (
            prev is not None
            and prev.end == i * FS_BLOCK
            and prev.physical + prev.length == phys * FS_BLOCK
            and prev.length < split_every * FS_BLOCK
        ):
            out[-1] = Extent(prev.logical, prev.physical, prev.length + FS_BLOCK)
        else:
            out.append(Extent(i * FS_BLOCK, phys * FS_BLOCK, FS_BLOCK))
    return out


block_maps = st.lists(st.one_of(st.none(), st.integers(0, 12)), max_size=24)


@settings(max_examples=300, deadline=None)
@given(
    origin=block_maps,
    snap=block_maps,
    block_size=st.sampled_from([512, 4096, 8192, 65536]),
    split=st.integers(1, 5),
)
def test_changed_ranges_match_a_per_block_model(
    origin: list[int | None], snap: list[int | None], block_size: int, split: int
) -> None:
    osize, ssize = len(origin) * FS_BLOCK, len(snap) * FS_BLOCK
    got = to_block_runs(
        changed_ranges(_extents_of(origin, split), osize, _extents_of(snap, 6 - split), ssize),
        block_size,
    )
    changed_fs = {
        i for i, phys in enumerate(origin) if phys != (snap[i] if i < len(snap) else None)
    }
    want: set[int] = set()
    for i in changed_fs:
        lo, hi = i * FS_BLOCK, (i + 1) * FS_BLOCK
        want.update(range(lo // block_size, -(-hi // block_size)))
    assert {b for first, count in got for b in range(first, first + count)} == want
    assert all(a[0] + a[1] < b[0] for a, b in zip(got, got[1:], strict=False))  # merged, sorted


# ---------------------------------------------------------------- reflink / copy, this disk


def _random_sparse_image(path: Path) -> bytes:
    with open(path, "wb") as f:
        f.write(os.urandom(300 * KIB))
        f.seek(2 * MIB)
        f.write(os.urandom(100 * KIB + 123))
    return path.read_bytes()


def test_reflink_refused_on_a_filesystem_without_reflinks(tmp_path: Path) -> None:
    fs_type, mount_point = filesystem_of(tmp_path)
    if fs_type in ("xfs", "btrfs", "bcachefs", "ocfs2"):
        pytest.skip(f"{tmp_path} is on {fs_type}, which may support reflinks")
    image = tmp_path / "vol.img"
    _random_sparse_image(image)
    with pytest.raises(SnapshotUnsupported) as caught:
        ReflinkProvider().snapshot(image)
    err = caught.value
    assert err.filesystem == fs_type and err.path == str(image)
    text = str(err)
    for needle in (fs_type, mount_point, str(image), "XFS", "SplitMirrorProvider", "allow_copy"):
        assert needle in text
    assert sorted(os.listdir(tmp_path)) == ["vol.img"]  # no clone, no snapshot dir left


def test_allow_copy_makes_a_real_identical_copy_and_says_so(tmp_path: Path) -> None:
    image = tmp_path / "vol.img"
    data = _random_sparse_image(image)
    with ReflinkProvider(allow_copy=True).snapshot(image) as snap:
        assert snap.method in ("copy", "reflink")  # reflink only if tmp is on a CoW filesystem
        assert snap.path is not None and snap.path.read_bytes() == data
        with snap.open() as f:
            assert f.read() == data
        assert snap.size == len(data) and snap.created.utcoffset() is not None
        assert snap.path.stat().st_mode & 0o777 == 0o600
        assert os.stat(snap.path).st_ino != os.stat(image).st_ino
        assert snap.path.stat().st_blocks * 512 < len(data)  # holes stayed holes
        _write(image, b"changed", 0)
        assert snap.path.read_bytes() == data  # a frozen view, not the origin
        if snap.method == "copy":
            assert snap.modified_blocks(4096) is None  # a copy cannot know
        held = snap.path
    assert snap.released and not held.exists() and sorted(os.listdir(tmp_path)) == ["vol.img"]
    with pytest.raises(SnapshotReleased):
        snap.open()


def test_full_copy_fails_when_the_source_is_written_during_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    image = tmp_path / "vol.img"
    _random_sparse_image(image)
    real = providers_mod._copy_data

    def copy_while_written(src_fd: int, dst_fd: int, size: int) -> int:
        n = real(src_fd, dst_fd, size)
        _write(image, b"late write", 100)
        return n

    monkeypatch.setattr(providers_mod, "_copy_data", copy_while_written)
    monkeypatch.setattr(providers_mod.fcntl, "ioctl", _no_reflink)
    with pytest.raises(SnapshotFailed, match="written during the full copy"):
        ReflinkProvider(allow_copy=True).snapshot(image)
    assert sorted(os.listdir(tmp_path)) == ["vol.img"]


def _no_reflink(fd: int, request: int, arg: object = 0, mutate: bool = True) -> object:
    raise OSError(95, "Operation not supported")


def test_full_copy_is_refused_up_front_without_the_space_for_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    image = tmp_path / "vol.img"
    _random_sparse_image(image)
    need = image.stat().st_blocks * 512
    monkeypatch.setattr(providers_mod.fcntl, "ioctl", _no_reflink)
    monkeypatch.setattr(
        providers_mod.os, "statvfs", lambda _path: SimpleNamespace(f_bavail=1, f_frsize=4096)
    )
    for attempt in (
        ReflinkProvider(allow_copy=True).check,
        ReflinkProvider(allow_copy=True).snapshot,
    ):
        with pytest.raises(SnapshotUnsupported) as caught:
            attempt(image)
        assert f"a full copy of {image} needs {need} bytes" in caught.value.reason
        assert caught.value.reason.endswith("has 4096 free")
        assert sorted(os.listdir(tmp_path)) == ["vol.img"]  # no partial copy, no directory


def test_reflink_refuses_what_is_not_an_image_file(tmp_path: Path) -> None:
    with pytest.raises(SnapshotUnsupported, match="not a regular file"):
        ReflinkProvider().snapshot(tmp_path)
    with pytest.raises(SnapshotFailed, match="No such file"):
        ReflinkProvider().snapshot(tmp_path / "missing.img")


# ---------------------------------------------------------------- reflink, real CoW filesystems


def _mount_source(mount_point: Path) -> str:
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        fields, _, tail = line.partition(" - ")
        if fields.split()[4] == str(mount_point):
            return tail.split()[1]
    raise LookupError(mount_point)


def test_reflink_snapshot_is_instant_frozen_and_knows_what_changed(cow_fs: Path) -> None:
    image = cow_fs / "vol.img"
    data = _random_sparse_image(image)
    fs_type, mount_point = filesystem_of(image)
    assert fs_type in ("xfs", "btrfs") and mount_point == str(cow_fs)
    with ReflinkProvider().snapshot(image) as snap:
        assert snap.method == "reflink" and snap.path is not None
        assert snap.path.parent == cow_fs / ".tapeflow-snapshots"
        assert snap.path.read_bytes() == data
        with open(snap.path, "rb") as f:
            assert all(e.flags & FIEMAP_EXTENT_SHARED for e in fiemap(f.fileno()))  # no copy
        assert snap.modified_blocks(4096) == []

        _write(image, b"A" * 10, 8192)  # block 2
        _write(image, b"B" * 9000, 200_000)  # blocks 48..51
        _write(image, b"C", 3 * MIB)  # past the snapshot's end: blocks 768 (+ old tail block)
        assert snap.path.read_bytes() == data  # frozen
        with snap.open() as f:
            assert f.read(20) == data[:20]
        runs = snap.modified_blocks(4096)
        assert runs is not None
        changed = {b for first, count in runs for b in range(first, first + count)}
        assert {2, 48, 49, 50, 51, 768} <= changed
        old_tail = (len(data) - 1) // 4096  # the snapshot's partial last block, now extended
        assert changed <= {2, 48, 49, 50, 51, 768, old_tail}
        runs_mib = snap.modified_blocks(1 << 20) or []
        changed_mib = {b for first, count in runs_mib for b in range(first, first + count)}
        assert {0, 3} <= changed_mib <= {0, 2, 3}
    assert not snap.path.exists() and sorted(os.listdir(cow_fs)) == ["vol.img"]


def test_reflink_across_filesystems_is_refused_or_copied_when_allowed(
    cow_fs: Path, tmp_path: Path
) -> None:
    image = cow_fs / "cross.img"
    data = _random_sparse_image(image)
    elsewhere = tmp_path / "snaps"
    with pytest.raises(SnapshotUnsupported, match="reflinks only work within one filesystem"):
        ReflinkProvider(elsewhere).snapshot(image)
    with ReflinkProvider(elsewhere, allow_copy=True).snapshot(image) as snap:
        assert snap.method == "copy" and snap.path is not None
        assert snap.path.parent == elsewhere and snap.path.read_bytes() == data
    assert elsewhere.is_dir() and os.listdir(elsewhere) == []  # a given dir is kept
    image.unlink()


def test_check_answers_without_snapshotting(cow_fs: Path, plain_xfs: Path, tmp_path: Path) -> None:
    """check() refuses exactly what snapshot() would, and leaves no file behind."""
    for root in (cow_fs, plain_xfs):
        _random_sparse_image(root / "vol.img")
    ReflinkProvider().check(cow_fs / "vol.img")
    assert sorted(os.listdir(cow_fs)) == ["vol.img"]
    with pytest.raises(SnapshotUnsupported) as across:
        ReflinkProvider(tmp_path / "snaps").check(cow_fs / "vol.img")
    assert "is not on the filesystem of" in across.value.reason

    image = plain_xfs / "vol.img"
    with pytest.raises(SnapshotUnsupported) as checked:
        ReflinkProvider().check(image)
    assert checked.value.reason.startswith(f"xfs at {plain_xfs} has no reflink (FICLONE: ")
    assert checked.value.filesystem == "xfs" and "allow_copy=True" in str(checked.value)
    with pytest.raises(SnapshotUnsupported) as taken:
        ReflinkProvider().snapshot(image)
    assert taken.value.reason == checked.value.reason
    ReflinkProvider(allow_copy=True).check(image)  # a full copy would do, and it fits
    assert sorted(os.listdir(plain_xfs)) == ["vol.img"]
    for root in (cow_fs, plain_xfs):
        (root / "vol.img").unlink()


def test_block_device_probe_counts_writes_to_the_loop_device(cow_fs: Path) -> None:
    device = _mount_source(cow_fs)
    probe = block_device_probe(device)
    before = probe()
    with open(cow_fs / "counted", "wb") as f:
        f.write(os.urandom(256 * KIB))
        f.flush()
        os.fsync(f.fileno())
    assert probe() != before
    (cow_fs / "counted").unlink()


def test_freeze_with_reflink_end_to_end(cow_fs: Path) -> None:
    image = cow_fs / "live.img"
    image.write_bytes(b"")
    writer = Writer(image, duration=0.3)
    writer.start()
    try:
        with freeze(file_probe(image), ReflinkProvider(), image, quiet=0.2, timeout=3) as snap:
            assert snap.method == "reflink" and snap.quiesce is not None
            assert snap.quiesce.writes_seen >= 1
            assert snap.path is not None and snap.path.read_bytes() == image.read_bytes()
            assert snap.size == writer.writes * 100
    finally:
        writer.stop()
    assert snap.released
    image.unlink()


# ---------------------------------------------------------------- split mirror


class Mirror:
    """A two-file 'mirror' driven by plain callables; records what happened, in order."""

    def __init__(self, root: Path, data: bytes) -> None:
        self.origin, self.half = root / "origin.img", root / "half.img"
        self.origin.write_bytes(data)
        self.half.write_bytes(data)
        self.split_now = False
        self.events: list[str] = []
        self.fail_split = False
        self.fail_rejoin = False

    def split(self) -> Path:
        self.events.append("split")
        if self.fail_split:
            self.split_now = True  # half-way: it must be undone
            raise OSError("split failed half-way")
        self.split_now = True
        return self.half

    def rejoin(self) -> None:
        self.events.append("rejoin")
        if self.fail_rejoin:
            raise OSError("mirror busy")
        shutil.copyfile(self.origin, self.half)  # resync the detached half
        self.split_now = False

    def provider(self, **kw: Callable[[int], list[tuple[int, int]]]) -> SplitMirrorProvider:
        return SplitMirrorProvider(self.split, self.rejoin, **kw)


def test_split_before_use_rejoin_after(tmp_path: Path) -> None:
    data = os.urandom(64 * KIB)
    mirror = Mirror(tmp_path, data)
    provider = mirror.provider()
    with provider.snapshot("vol0") as snap:
        assert mirror.events == ["split"] and mirror.split_now
        assert snap.method == "split-mirror" and snap.size == len(data)
        _write(mirror.origin, b"new data", 0)  # the source goes on being written
        with snap.open() as f:
            mirror.events.append("read")
            assert f.read() == data
        assert snap.modified_blocks(4096) is None  # no change tracker given
    assert mirror.events == ["split", "read", "rejoin"] and not mirror.split_now
    assert mirror.half.read_bytes() == mirror.origin.read_bytes()
    snap.release()  # idempotent
    assert mirror.events.count("rejoin") == 1


def test_split_mirror_rejoins_when_the_body_raises(tmp_path: Path) -> None:
    mirror = Mirror(tmp_path, b"x" * 4096)
    provider = mirror.provider()
    with pytest.raises(RuntimeError, match="tape jammed"):
        with provider.snapshot("vol0") as snap:
            reader = snap.open()
            raise RuntimeError("tape jammed")
    assert mirror.events == ["split", "rejoin"] and not mirror.split_now
    assert reader.closed  # no reader goes on after the rejoin
    with provider.snapshot("vol0"):  # the provider is free again
        pass
    assert mirror.events == ["split", "rejoin", "split", "rejoin"]


def test_failed_split_is_undone_and_reported(tmp_path: Path) -> None:
    mirror = Mirror(tmp_path, b"x" * 4096)
    mirror.fail_split = True
    with pytest.raises(SnapshotFailed, match="split of the mirror of vol0 failed") as caught:
        mirror.provider().snapshot("vol0")
    assert isinstance(caught.value.__cause__, OSError)
    assert mirror.events == ["split", "rejoin"] and not mirror.split_now


def test_one_split_at_a_time_and_a_failed_rejoin_can_be_retried(tmp_path: Path) -> None:
    mirror = Mirror(tmp_path, b"x" * 4096)
    provider = mirror.provider(changed_blocks=lambda bs: [(0, 4096 // bs)])
    snap = provider.snapshot("vol0")
    assert snap.modified_blocks(512) == [(0, 8)]
    with pytest.raises(SnapshotFailed, match="already split"):
        provider.snapshot("vol0")
    mirror.fail_rejoin = True
    with pytest.raises(SnapshotFailed, match="rejoin of the mirror of vol0 failed"):
        snap.release()
    assert not snap.released and mirror.split_now
    with pytest.raises(SnapshotReleased):
        snap.open()  # the view is no longer trusted while the rejoin is pending
    mirror.fail_rejoin = False
    snap.release()
    assert snap.released and not mirror.split_now
    assert mirror.events == ["split", "rejoin", "rejoin"]


def test_split_may_return_an_opener(tmp_path: Path) -> None:
    frozen = b"frozen view" * 100
    rejoined: list[bool] = []
    provider = SplitMirrorProvider(
        lambda: lambda: io.BytesIO(frozen), lambda: rejoined.append(True)
    )
    with provider.snapshot("lun3") as snap:
        assert snap.path is None and snap.size == len(frozen)
        assert snap.open().read() == frozen
    assert rejoined == [True]
    not_detachable = cast(Callable[[], Path], lambda: 42)
    bad = SplitMirrorProvider(not_detachable, lambda: rejoined.append(True))
    with pytest.raises(SnapshotFailed, match="path or an opener"):
        bad.snapshot("lun3")
    assert rejoined == [True, True]


# ---------------------------------------------------------------- freeze()


def test_freeze_quiesces_then_snapshots_then_releases(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    mirror = Mirror(tmp_path, b"x" * 8192)
    generation = [0]

    def write_generation() -> int:
        mirror.events.append("probe")
        return generation[0]

    caplog.set_level(logging.INFO, logger="tapeflow.snapshot")
    with freeze(
        counter_probe(write_generation), mirror.provider(), "vol0", quiet=0.1, timeout=1
    ) as snap:
        assert isinstance(snap, Snapshot) and snap.quiesce is not None
        assert snap.quiesce.quiet == 0.1 and snap.quiesce.waited >= 0.1
        events = list(mirror.events)
    assert events[-1] == "split" and set(events[:-1]) == {"probe"} and len(events) >= 3
    assert mirror.events[-1] == "rejoin"
    text = caplog.text
    assert "waiting for 0.1 s without writes (timeout 1 s)" in text
    assert "vol0 quiet after" in text and "taken by split-mirror" in text
    assert "released after" in text
    assert all(r.name == "tapeflow.snapshot" for r in caplog.records)


def test_freeze_releases_when_the_body_raises(tmp_path: Path) -> None:
    mirror = Mirror(tmp_path, b"x" * 8192)
    with pytest.raises(KeyError):
        with freeze(lambda: 0, mirror.provider(), "vol0", quiet=0.05, timeout=1) as snap:
            raise KeyError("boom")
    assert mirror.events == ["split", "rejoin"] and snap.released
    image = tmp_path / "img"
    image.write_bytes(b"y" * 5000)
    with pytest.raises(ValueError):
        with freeze(
            file_probe(image), ReflinkProvider(allow_copy=True), image, quiet=0.05, timeout=1
        ) as snap:
            assert snap.path is not None and snap.path.exists()
            raise ValueError("stream failed")
    assert snap.released and not snap.path.exists()


def test_freeze_timeout_takes_no_snapshot(tmp_path: Path) -> None:
    mirror = Mirror(tmp_path, b"x" * 8192)
    with pytest.raises(FreezeTimeout, match="0.3 s timeout"):
        with freeze(time.monotonic_ns, mirror.provider(), "vol0", quiet=0.1, timeout=0.3):
            pytest.fail("body must not run")
    assert mirror.events == []


def test_freeze_reports_a_failed_release(tmp_path: Path) -> None:
    mirror = Mirror(tmp_path, b"x" * 8192)
    with pytest.raises(SnapshotFailed, match="rejoin") as caught:
        with freeze(lambda: 0, mirror.provider(), "vol0", quiet=0.05, timeout=1) as snap:
            mirror.fail_rejoin = True
            raise RuntimeError("body failed too")
    chain: list[BaseException] = []
    exc: BaseException | None = caught.value
    while exc is not None and len(chain) < 10:
        chain.append(exc)
        exc = exc.__cause__ or exc.__context__
    assert any(isinstance(e, RuntimeError) for e in chain)  # neither failure is lost
    mirror.fail_rejoin = False
    snap.release()
    assert snap.released
