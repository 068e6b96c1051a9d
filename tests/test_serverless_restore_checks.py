"""Serverless restores checked against the source without Prefect: an NTFS volume's image restore
is byte-identical ("all") or identical on every allocated cluster ("used"), and a file restore
takes the chunks written during the copy from the copy-on-write overlay, not from the image."""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tapeflow.backup.model import Source
from tapeflow.fs.detect import open_volume
from tapeflow.library import Library, LibrarySpec
from tapeflow.scsi.device import ScsiDevice
from tapeflow.scsi.sbc import BlockDevice
from tapeflow.scsi.tape import TapeDrive
from tapeflow.serverless.blockfile import ImageBlockDevice
from tapeflow.serverless.maps import MapTables
from tapeflow.serverless.restore import (
    TapeRanges,
    read_volume_range,
    restore_files,
    restore_image,
)
from tapeflow.serverless.slave import backup_frozen, backup_volume
from tapeflow.serverless.volumes import VolumeAccess
from tapeflow.tapefmt import write_label
from tapeflow.vtl import VirtualLibrary
from tests import fatimages as fat
from tests import ntfsimages as ntfs

MB = 1024 * 1024
RECORD = 64 * 1024


@pytest.fixture(scope="module")
def ntfs_volume(tmp_path_factory: pytest.TempPathFactory) -> ntfs.Built:
    """An NTFS volume made by mkntfs + ntfs-3g + ntfscp (every kind of file), built once."""
    return ntfs.build_tree(tmp_path_factory.mktemp("ntfs"), size_mb=24)


def _library(tmp: Path, disk: str, image: Path) -> VirtualLibrary:
    """An embedded library with one labelled cartridge in drive 0 and `image` as a disk LUN."""
    vl = VirtualLibrary.create(tmp / "lib", drives=1, slots=4)
    vl.add_disk(disk, image=image)
    return vl


@pytest.fixture
def tapes() -> Iterator[list[TapeDrive]]:
    """Closes the tape handles a test opens (it appends them to the list)."""
    handles: list[TapeDrive] = []
    yield handles
    for handle in handles:
        handle.close()


def _backup(
    vl: VirtualLibrary,
    disk: str,
    mode: str,
    *,
    host: bool = False,
    progress: object = None,
    write_before_copy: bool = False,
) -> tuple[TapeDrive, MapTables, str]:
    """Back up `disk` as one serverless session onto a labelled cartridge in drive 0; returns
    the drive (still loaded), the session's maps and the copy path. `host` leaves the copy
    manager unused, the way a SAN without one (tgt) is copied. `write_before_copy` calls
    `progress(0)` once between the freeze and the copy: the copy-manager path runs the whole
    image in one EXTENDED COPY, so its progress hook only fires after the image is read."""
    lib = Library(f"embedded:{vl.root}")
    lib.load(0, slot=1)
    tape = lib.open_drive(0)
    write_label(tape, "L00001", "L00001", "p")
    access = VolumeAccess.open(
        LibrarySpec.parse(f"embedded:{vl.root}"),
        Source(disk, f"disk:{disk}", kind="volume", mode=mode, quiet=0.1),
        copy_manager=not host,
    )
    session = {
        "session_id": "s1",
        "job_id": "j",
        "source": disk,
        "mode": mode,
        "record_size": RECORD,
        "progress": progress,
    }
    try:
        if write_before_copy:
            with access.frozen() as frozen:
                assert frozen.tracks_changes
                progress(0)  # type: ignore[operator]  # the first write: before the copy
                result = backup_frozen(access, frozen, tape, **session)  # type: ignore[arg-type]
        else:
            result = backup_volume(access, tape, **session)  # type: ignore[arg-type]
    finally:
        access.close()
    assert result.maps is not None
    return tape, result.maps, result.path


def _ntfsfix_clean(img: Path) -> None:
    """ntfsfix --no-action reports the volume consistent (it changes nothing)."""
    done = subprocess.run(
        ["ntfsfix", "--no-action", str(img)], capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "processed successfully" in done.stdout, done.stdout


def _restore_to_file(tape: TapeDrive, maps: MapTables, target: Path) -> str:
    """Image-level restore into a new file of the volume's size (host path); the path taken."""
    with open(target, "wb") as fh:
        fh.truncate(maps.image_size)
    device = ImageBlockDevice(target, writable=True)
    try:
        outcome = restore_image(tape, maps, device, None)
        device.flush()
    finally:
        device.close()
    return outcome.path


def test_ntfs_all_mode_image_restore_is_byte_identical(
    ntfs_volume: ntfs.Built, tmp_path: Path, tapes: list[TapeDrive]
) -> None:
    """Mode "all": the restored image, into a file and onto a LUN by the copy manager, is the
    source volume byte for byte (`cmp`), and ntfsfix finds nothing to fix."""
    tmp = tmp_path
    source = tmp / "ntfs.img"
    shutil.copyfile(ntfs_volume.img, source)
    vl = _library(tmp, "ntfs", source)
    tape, maps, path = _backup(vl, "ntfs", "all")
    tapes.append(tape)
    assert path == "xcopy"
    assert maps.image_size == source.stat().st_size
    assert [k for k in maps.tapemap["kind"].to_pylist()] == ["image"]  # nothing written meanwhile

    restored = tmp / "restored.img"
    assert _restore_to_file(tape, maps, restored) == "host"
    subprocess.run(["cmp", str(source), str(restored)], check=True, capture_output=True)
    _ntfsfix_clean(restored)

    vl.add_disk("copy", size=maps.image_size)
    lun = BlockDevice(vl.disk("copy"))
    try:
        outcome = restore_image(tape, maps, lun, ScsiDevice(vl.copy_manager()))
    finally:
        lun.close()
    assert outcome.path == "xcopy"
    subprocess.run(
        ["cmp", str(source), str(vl.disk_store("copy").image)], check=True, capture_output=True
    )


def test_ntfs_used_mode_image_restore_matches_every_allocated_cluster(
    ntfs_volume: ntfs.Built, tmp_path: Path, tapes: list[TapeDrive]
) -> None:
    """Mode "used": every cluster allocated in $Bitmap (per TSK's blkls and per our parser) and
    the backup boot sector come back identical, free clusters come back as zeros, the volume is
    consistent for ntfsfix and fls lists the same names."""
    tmp = tmp_path
    source = tmp / "ntfs.img"
    shutil.copyfile(ntfs_volume.img, source)
    vl = _library(tmp, "ntfs", source)
    tape, maps, path = _backup(vl, "ntfs", "used")
    tapes.append(tape)
    assert path == "xcopy"
    restored = tmp / "restored.img"
    _restore_to_file(tape, maps, restored)

    want, got = source.read_bytes(), restored.read_bytes()
    assert len(got) == len(want)
    with open(source, "rb") as fh:
        volume = open_volume(fh)
        info, ours = volume.info, volume.used_runs()
    size = info.cluster_size
    tsk = ntfs.blkls_allocated(source)
    ours_set = {lcn + i for lcn, n in ours for i in range(n)}
    assert tsk == ours_set  # two readings of $Bitmap agree
    assert 0 < len(tsk) < info.total_clusters  # the volume has free clusters to skip
    for lcn in sorted(tsk):
        at = info.cluster_offset(lcn)
        assert got[at : at + size] == want[at : at + size], f"allocated cluster {lcn} differs"
    for lcn in range(info.total_clusters):
        if lcn not in tsk:
            at = info.cluster_offset(lcn)
            assert got[at : at + size] == bytes(size), f"free cluster {lcn} is not zero"
    end = info.cluster_offset(info.total_clusters)  # past the clusters: the backup boot sector
    assert got[end:] == want[end:] and len(want) - end >= 512
    stored = sum(n for n in maps.tapemap["length"].to_pylist())
    assert stored < len(want) // 2  # free clusters were not copied

    _ntfsfix_clean(restored)
    names = {e.path for e in ntfs.fls_user_entries(restored)}
    assert names == {e.path for e in ntfs.fls_user_entries(source)}
    assert set(ntfs_volume.expected) <= names


@pytest.fixture
def fat_volume(tmp_path: Path) -> tuple[Path, dict[str, bytes]]:
    """A FAT16 volume (mkfs.fat + mcopy) with a few multi-cluster files."""
    files = {f"big{i}.bin": bytes([65 + i]) * (3 * MB + 123) for i in range(4)}
    files["small.txt"] = b"just a few bytes\n"
    fat.write_tree(tmp_path / "src", files)
    img = fat.mkfs(tmp_path / "vol.img", 16, 32_000)
    for entry in sorted((tmp_path / "src").iterdir()):
        fat.mcopy(img, entry)
    return img, files


def _sector_offset(img: Path, name: str, at: int) -> int:
    """Disk byte offset of the sector holding byte `at` of file `name`, per TSK (fls, istat)."""
    entry = fat.fls(img)[name]
    return fat.istat(img, entry.inode).sectors[at // 512] * 512


@pytest.mark.parametrize("mode", ["all", "used"])
@pytest.mark.parametrize("host", [False, True], ids=["xcopy", "host"])
def test_file_restore_takes_chunks_written_during_the_copy_from_the_overlay(
    fat_volume: tuple[Path, dict[str, bytes]],
    tmp_path: Path,
    tapes: list[TapeDrive],
    mode: str,
    host: bool,
) -> None:
    """Writes to two files after the freeze (before the copy reads them, and from the copy's
    progress hook) leave the live disk changed and the `.cow` member non-empty; a file-level
    restore gives both files as they were at the freeze, and the image alone would not."""
    tmp = tmp_path
    img, files = fat_volume
    vl = _library(tmp, "vol", img)
    early = _sector_offset(img, "big2.bin", 2 * MB + 1000)
    during = _sector_offset(img, "big1.bin", 1 * MB)
    store = vl.disk_store("vol")
    writes: list[int] = []

    def write_after_freeze(done: int) -> None:
        """The volume's user writes while the copy runs: once before the image is read (host
        path: after the first inline header), once on a later progress call."""
        if len(writes) < 2:
            origin = BlockDevice(vl.disk("vol"))
            try:
                at = early if not writes else during
                origin.write(at // 512, b"\xee" * 512)
            finally:
                origin.close()
            writes.append(done)

    tape, maps, path = _backup(
        vl, "vol", mode, host=host, progress=write_after_freeze, write_before_copy=not host
    )
    tapes.append(tape)
    assert path == ("host" if host else "xcopy")
    assert writes, "the progress hook never ran"
    assert store.read(early, 512) == b"\xee" * 512  # the live disk moved on
    kinds = maps.tapemap["kind"].to_pylist()
    assert "cow" in kinds, "no chunk recorded as changed during the copy"

    # The overlay matters: the image runs alone hold the bytes written after the freeze.
    t = maps.tapemap.to_pydict()
    rows = zip(t["kind"], t["volume_offset"], t["length"], t["stream_offset"], strict=True)
    image = [(o, n, s) for k, o, n, s in rows if k == "image"]
    reader = TapeRanges(tape, maps.first_block, maps.record_size)
    assert read_volume_range(reader, [image], early, 512) == b"\xee" * 512

    out = tmp / "out"
    report = restore_files(tape, maps, ["big2.bin", "big1.bin", "small.txt"], out)
    assert report.files == 3
    for name in ("big2.bin", "big1.bin", "small.txt"):
        assert (out / name).read_bytes() == files[name], name
