"""Serverless backups that really freeze their volume: a FAT image on XFS or btrfs is cloned by
reflink and goes on being written while the slave copies it, yet the image and file restores
give the volume as of the freeze. Without reflinks `auto` takes a verified full copy; a source
that insists on a snapshot nothing can take gets no backup (NoSnapshot, nothing changed) unless
it accepts a live copy, which is then reported; split mirrors run the source's own commands."""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from tapeflow.backup.master import prepare_job, record_results
from tapeflow.backup.model import Pool, SlaveResult, Source
from tapeflow.backup.slave import SlaveFailed
from tapeflow.catalog import Catalog
from tapeflow.library import Library, LibrarySpec
from tapeflow.serverless.maps import MapTables, load_maps
from tapeflow.serverless.restore import restore_files
from tapeflow.serverless.restore_job import NoVolumeBackup, restore_volume, volume_session
from tapeflow.serverless.slave import blockmaps_dir, run_serverless_slave
from tapeflow.serverless.volumes import VolumeAccess
from tapeflow.snapshot import NoSnapshot, ReflinkProvider, SnapshotFailed, SnapshotUnsupported
from tapeflow.snapshot.providers import SNAPSHOT_DIR_NAME
from tapeflow.vtl import VirtualLibrary
from tests import fatimages as fat

MB = 1024 * 1024
SEGMENT = 65535 * 512  # one copy segment: the host copies the image a segment at a time
POOL = Pool("p")


@pytest.fixture(autouse=True)
def _home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TAPEFLOW_HOME", str(tmp_path / "home"))


def _random(n: int, seed: str) -> bytes:
    """n reproducible bytes that never repeat within a file (so each can be found by content)."""
    out = bytearray()
    counter = 0
    while len(out) < n:
        out += hashlib.sha256(f"{seed}:{counter}".encode()).digest()
        counter += 1
    return bytes(out[:n])


@dataclass
class Volume:
    """A FAT32 image made with mkfs.fat + mcopy, and what is on it."""

    img: Path
    files: dict[str, bytes]
    target_offset: int  # where target.bin's bytes start in the image

    def sha(self) -> str:
        return hashlib.sha256(self.img.read_bytes()).hexdigest()


def _volume(directory: Path, src: Path) -> Volume:
    """96 MiB FAT32 image in `directory`: a 40 MB filler, so target.bin lies past the first copy
    segment, then target.bin (1 MiB) and docs/keep.txt."""
    directory.mkdir(parents=True)
    files = {
        "filler.bin": _random(40 * MB, "filler"),
        "target.bin": _random(MB, "target"),
        "docs/keep.txt": b"kept as it was at the freeze\n" * 40,
    }
    fat.write_tree(src, files)
    img = fat.mkfs(directory / "vol.img", 32, 96 * 1024)
    for name in ("filler.bin", "target.bin", "docs"):  # in this order: target.bin lies late
        fat.mcopy(img, src / name)
    offset = img.read_bytes().find(files["target.bin"][:4096])
    assert offset > SEGMENT + MB, "target.bin must lie past the first copy segment"
    return Volume(img, files, offset)


@dataclass
class Job:
    """One serverless job run by the core, as the master does: plan, slave, record."""

    catalog: Path
    library: str
    result: SlaveResult
    failure: SlaveFailed | None
    written_at: list[int] = field(default_factory=list)  # stream bytes done when we wrote

    def maps(self) -> tuple[MapTables, str]:
        return load_maps(blockmaps_dir(self.catalog.parent / "files"), self.result.session_id)


def _run(tmp: Path, source: Source, during_copy: Any = None) -> Job:
    """Back `source` up in a fresh embedded library; `during_copy()` runs once, after the first
    copy segment (the image's start is on tape, its end not yet)."""
    lib_dir = tmp / "lib"
    VirtualLibrary.create(lib_dir, drives=1, slots=4)
    catalog, library = tmp / "catalog" / "catalog.duckdb", f"embedded:{lib_dir}"
    specs, _ = prepare_job(
        catalog, "job1", sources=[source], pool=POOL, level="full", library=library
    )
    written: list[int] = []

    def progress(done: int) -> None:
        if during_copy is not None and not written and done >= SEGMENT:
            written.append(done)
            during_copy()

    failure = None
    try:
        result = run_serverless_slave(specs[0], on_progress=progress)
    except SlaveFailed as exc:
        failure, result = exc, exc.result
    record_results(catalog, "job1", POOL, [result], [])
    return Job(catalog, library, result, failure, written)


def _write_during_copy(vol: Volume, src: Path) -> None:
    """What users do to the volume while it is copied: rewrite target.bin in place (not yet
    copied), add a file and delete one (the FAT and root directory: already copied)."""
    with open(vol.img, "r+b") as f:
        f.seek(vol.target_offset)
        f.write(_random(MB, "rewritten"))
    late = src / "late.txt"
    late.write_bytes(b"written during the copy\n" * 100)
    fat.mcopy(vol.img, late)
    fat.run("mdel", "-i", vol.img, "::/docs/keep.txt")


def _live_target(vol: Volume, out: Path) -> bytes:
    """target.bin as the live volume has it now."""
    fat.run("mcopy", "-n", "-i", vol.img, "::/target.bin", out)
    return out.read_bytes()


def _restores_give_the_frozen_volume(job: Job, vol: Volume, frozen: Path, tmp: Path) -> None:
    """Image restore == the image at the freeze (cmp); file restores give the frozen files."""
    restored = tmp / "restored.img"
    restore_volume(job.catalog, job.library, "vol", str(restored))
    cmp = subprocess.run(["cmp", str(frozen), str(restored)], capture_output=True, text=True)
    assert cmp.returncode == 0, cmp.stdout + cmp.stderr
    subprocess.run(["fsck.fat", "-n", str(restored)], check=True, capture_output=True)

    maps, barcode = job.maps()
    assert set(maps.volfiles["path"].to_pylist()) >= {"target.bin", "docs/keep.txt"}
    assert "late.txt" not in maps.volfiles["path"].to_pylist()  # created after the freeze
    with Library(job.library) as lib:
        lib.load(0, barcode=barcode)
        tape = lib.open_drive(0)
        try:
            restore_files(tape, maps, ["target.bin", "docs"], tmp / "files")
        finally:
            tape.close()
            lib.unload(0)
    assert (tmp / "files" / "target.bin").read_bytes() == vol.files["target.bin"]
    assert (tmp / "files" / "docs" / "keep.txt").read_bytes() == vol.files["docs/keep.txt"]


def _backup_while_written(root: Path, tmp: Path, **freeze: Any) -> tuple[Job, Volume]:
    """A volume under `root`, backed up while it is written; checks the writes happened
    mid-copy and that both restores give the volume as of the freeze."""
    vol = _volume(root / tmp.name, tmp / "src")
    frozen = tmp / "frozen.img"
    shutil.copyfile(vol.img, frozen)  # nothing writes it until the copy: this is the freeze
    source = Source("vol", str(vol.img), kind="volume", quiet=0.2, **freeze)
    job = _run(tmp, source, lambda: _write_during_copy(vol, tmp / "src"))
    assert job.failure is None and job.result.state == "complete", job.result.error
    image_bytes = vol.img.stat().st_size
    assert len(job.written_at) == 1 and job.written_at[0] < image_bytes  # mid-copy
    assert _live_target(vol, tmp / "live-target.bin") != vol.files["target.bin"]
    assert subprocess.run(["cmp", "-s", str(frozen), str(vol.img)]).returncode == 1
    assert not (vol.img.parent / SNAPSHOT_DIR_NAME).exists()  # the snapshot was released
    _restores_give_the_frozen_volume(job, vol, frozen, tmp)
    return job, vol


# ---------------------------------------------------------------- point-in-time backups


def test_reflink_freeze_restores_the_volume_as_of_the_freeze(cow_fs: Path, tmp_path: Path) -> None:
    """The live image is copied while written; FIEMAP finds the blocks that stopped sharing
    extents with the clone, and their frozen content follows the image on tape."""
    job, vol = _backup_while_written(cow_fs, tmp_path)
    assert job.result.warnings == [] and job.result.copy_path == "host"
    maps, _ = job.maps()
    cow = [
        (o, n)
        for kind, o, n in zip(
            maps.tapemap["kind"].to_pylist(),
            maps.tapemap["volume_offset"].to_pylist(),
            maps.tapemap["length"].to_pylist(),
            strict=True,
        )
        if kind == "cow"
    ]
    assert any(o <= vol.target_offset < o + n for o, n in cow)  # rewritten: its frozen bytes
    assert any(o < SEGMENT for o, _ in cow)  # the FAT, rewritten after it was copied
    assert sum(n for _, n in cow) < 8 * MB  # only what changed, not the whole image
    shutil.rmtree(vol.img.parent)


def test_without_reflink_auto_freezes_by_a_verified_full_copy(
    plain_xfs: Path, tmp_path: Path
) -> None:
    job, vol = _backup_while_written(plain_xfs, tmp_path)
    (warning,) = job.result.warnings
    assert warning.startswith(f"{vol.img}: xfs at {plain_xfs} has no reflink")
    assert "verified full copy" in warning and "LIVE" not in warning
    maps, _ = job.maps()
    assert "cow" not in maps.tapemap["kind"].to_pylist()  # the copy itself went to tape
    shutil.rmtree(vol.img.parent)


@pytest.mark.parametrize("half", ["file", "block-device"])
def test_split_mirror_by_the_sources_commands(tmp_path: Path, half: str) -> None:
    """mirror_split detaches the half (here: a copy, exported as a loop device for the block
    device case) and prints its path; the slave copies it; mirror_rejoin runs afterwards."""
    events, half_img, dev = tmp_path / "events", tmp_path / "half.img", tmp_path / "half.dev"
    split = (
        f'cp --sparse=always "$TAPEFLOW_VOLUME" {half_img}'
        f' && echo "split $TAPEFLOW_SOURCE" >> {events}'
    )
    rejoin = f"rm -f {half_img} && echo rejoin >> {events}"
    if half == "block-device":
        if os.geteuid() != 0 or shutil.which("losetup") is None:
            pytest.skip("needs root and losetup to export the half as a block device")
        split += f" && losetup -f --show -r {half_img} | tee {dev}"
        rejoin = f"losetup -d $(cat {dev}) && {rejoin}"
    else:
        split += f" && echo {half_img}"
    job, vol = _backup_while_written(
        tmp_path / "live",
        tmp_path,
        snapshot="split-mirror",
        mirror_split=split,
        mirror_rejoin=rejoin,
    )
    assert job.result.warnings == []
    assert events.read_text().split("\n") == ["split vol", "rejoin", ""]
    assert not half_img.exists()


# ---------------------------------------------------------------- no freeze, no backup


def test_a_snapshot_nothing_can_take_means_no_backup_and_no_change(
    plain_xfs: Path, tmp_path: Path
) -> None:
    vol = _volume(plain_xfs / tmp_path.name, tmp_path / "src")
    before = vol.sha()
    source = Source("vol", str(vol.img), kind="volume", quiet=0.2, snapshot="reflink")
    job = _run(tmp_path, source, lambda: pytest.fail("nothing may be copied"))

    assert job.failure is not None and isinstance(job.failure.__cause__, NoSnapshot)
    err = job.failure.__cause__
    assert err.volume == str(vol.img) and err.filesystem == "xfs"
    assert err.why.startswith(f"xfs at {plain_xfs} has no reflink")
    text = str(job.failure)
    for needle in ("NoSnapshot", f"cannot freeze {vol.img}", "Nothing was backed up", "live_copy"):
        assert needle in text
    r = job.result
    assert r.state == "failed" and r.error is not None and r.error.startswith("NoSnapshot")
    assert (r.drive, r.tapes, r.labelled, r.warnings) == (None, [], [], [])  # no drive taken

    assert vol.sha() == before and sorted(os.listdir(vol.img.parent)) == ["vol.img"]
    assert not blockmaps_dir(job.catalog.parent / "files").exists()
    with Catalog(job.catalog, read_only=True) as cat:
        assert [s["state"] for s in cat.sessions(source="vol")] == ["failed"]
        with pytest.raises(NoVolumeBackup):
            volume_session(cat, "vol", None)
    with Library(job.library) as lib:
        inventory = lib.inventory()
        assert all(d.barcode is None for d in inventory.drives)
    shutil.rmtree(vol.img.parent)


def test_live_copy_proceeds_and_says_it_is_not_point_in_time(
    plain_xfs: Path, tmp_path: Path
) -> None:
    """live_copy=True: quiesced, copied live, reported; and rightly so -- what is written
    during a live copy reaches the tape, so the restore is not the volume of any one moment."""
    vol = _volume(plain_xfs / tmp_path.name, tmp_path / "src")
    frozen = tmp_path / "frozen.img"
    shutil.copyfile(vol.img, frozen)
    source = Source(
        "vol", str(vol.img), kind="volume", quiet=0.2, snapshot="reflink", live_copy=True
    )
    job = _run(tmp_path, source, lambda: _write_during_copy(vol, tmp_path / "src"))
    assert job.failure is None and job.result.state == "complete"
    (warning,) = job.result.warnings
    assert warning.startswith(f"LIVE COPY of {vol.img}, not point-in-time: xfs at {plain_xfs}")
    assert "has no reflink" in warning and "quiesced first (0.2 s without writes)" in warning
    assert job.result.to_dict()["warnings"] == [warning]  # what the master and summary get
    with Catalog(job.catalog, read_only=True) as cat:
        assert [s["state"] for s in cat.sessions(source="vol")] == ["complete"]

    restored = tmp_path / "restored.img"
    restore_volume(job.catalog, job.library, "vol", str(restored))
    assert subprocess.run(["cmp", "-s", str(frozen), str(restored)]).returncode == 1
    with open(restored, "rb") as f:
        f.seek(vol.target_offset)
        assert f.read(MB) == _random(MB, "rewritten")  # the write made during the copy
    shutil.rmtree(vol.img.parent)


def test_a_snapshot_refused_only_at_freeze_time_is_no_snapshot_too(
    cow_fs: Path, tmp_path: Path
) -> None:
    """open() checks first, but the snapshot itself may still be refused (here: a snapshot
    directory on another filesystem): NoSnapshot then, or a reported live copy if allowed."""
    img = fat.mkfs(cow_fs / "late-refusal.img", 12, 2_000)
    spec = LibrarySpec.parse(f"embedded:{tmp_path / 'lib'}")
    VirtualLibrary.create(tmp_path / "lib", drives=1, slots=1)
    for live_copy in (False, True):
        source = Source(
            "vol", str(img), kind="volume", quiet=0.1, snapshot="reflink", live_copy=live_copy
        )
        access = VolumeAccess.open(spec, source)
        access.provider = ReflinkProvider(tmp_path / "elsewhere")
        try:
            if not live_copy:
                with pytest.raises(NoSnapshot, match="is not on the filesystem of") as caught:
                    with access.frozen():
                        pytest.fail("a volume that was not frozen must not be read")
                assert caught.value.volume == str(img)
                assert isinstance(caught.value.__cause__, SnapshotUnsupported)
                continue
            with access.frozen() as frozen:
                assert frozen.live and frozen.method == "live" and not frozen.tracks_changes
                assert frozen.device is access.origin
                (warning,) = frozen.warnings
                assert warning.startswith(f"LIVE COPY of {img}, not point-in-time")
        finally:
            access.close()
    assert os.listdir(tmp_path / "elsewhere") == []
    img.unlink()


def test_a_failed_split_is_undone_and_fails_the_backup(tmp_path: Path) -> None:
    fat.write_tree(tmp_path / "src", {"a.txt": b"a\n"})
    img = fat.mkfs(tmp_path / "vol.img", 12, 2_000)
    fat.mcopy(img, tmp_path / "src" / "a.txt")
    events = tmp_path / "events"
    source = Source(
        "vol",
        str(img),
        kind="volume",
        quiet=0.1,
        snapshot="split-mirror",
        mirror_split="echo relative/half.img",
        mirror_rejoin=f"echo rejoin >> {events}",
    )
    job = _run(tmp_path, source)
    assert job.failure is not None and isinstance(job.failure.__cause__, SnapshotFailed)
    assert "not an existing absolute path" in str(job.failure)
    assert events.read_text() == "rejoin\n"  # the partial split was undone
    assert job.result.state == "failed"


# ---------------------------------------------------------------- declaring the freeze


def test_sources_refuse_freeze_settings_that_cannot_work() -> None:
    def volume(**kw: Any) -> Source:
        return Source("v", "/x.img", kind="volume", **kw)

    assert (volume().snapshot, volume().live_copy) == ("auto", False)
    with pytest.raises(ValueError, match="not one of"):
        volume(snapshot="lvm")
    with pytest.raises(ValueError, match="live_copy=True"):
        volume(snapshot="none")
    assert volume(snapshot="none", live_copy=True).live_copy
    with pytest.raises(ValueError, match="needs mirror_split"):
        volume(snapshot="split-mirror", mirror_split="split")
    with pytest.raises(ValueError, match="only apply with snapshot='split-mirror'"):
        volume(mirror_split="split", mirror_rejoin="rejoin")
    with pytest.raises(ValueError, match="volume sources only"):
        Source("d", "/data", live_copy=True)
    with pytest.raises(ValueError, match="live_copy must be true or false"):
        Source.from_dict({"name": "v", "path": "/x.img", "kind": "volume", "live_copy": "no"})
    back = Source.from_dict(
        {"name": "v", "path": "/x.img", "kind": "volume", "snapshot": "reflink", "live_copy": True}
    )
    assert (back.snapshot, back.live_copy) == ("reflink", True)


def test_backup_source_block_carries_the_freeze_settings() -> None:
    from blocks.tape import BackupSource

    block = BackupSource(
        name="v",
        kind="volume",
        path="disk:3",
        snapshot="split-mirror",
        mirror_split="split-it",
        mirror_rejoin="rejoin-it",
        live_copy=True,
    )
    source = block.source()
    assert (source.snapshot, source.mirror_split, source.mirror_rejoin, source.live_copy) == (
        "split-mirror",
        "split-it",
        "rejoin-it",
        True,
    )
    assert BackupSource(name="d", path="/data").source().snapshot == "auto"
