"""Serverless backup on a SAN without a copy manager: tgt exports the FAT volume as a disk LUN
next to its tape drives; the host executes the same copy plan and the tape says the same.
tgt has no LUN snapshots either: its volume is refused unless the source accepts a live copy."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from tapeflow.backup.model import Source
from tapeflow.library import Library, LibrarySpec
from tapeflow.scsi.device import ScsiDevice
from tapeflow.serverless.slave import backup_volume
from tapeflow.serverless.volumes import VolumeAccess
from tapeflow.snapshot import NoSnapshot
from tapeflow.tapefmt import write_label
from tapeflow.testing.tgt import TgtLibrary
from tapeflow.vtl import VirtualLibrary
from tests import fatimages as fat
from tests.tapes import session_bytes

RECORD = 64 * 1024


def _backup(
    spec: LibrarySpec, lib: Library, path: str, *, live_copy: bool = False
) -> tuple[str, bytes, list[str]]:
    """Label the cartridge in drive 0, back the volume up to it; (copy path, session bytes,
    the freeze's warnings)."""
    access = VolumeAccess.open(
        spec, Source("vol", path, kind="volume", quiet=0.1, live_copy=live_copy)
    )
    tape = lib.open_drive(0)
    warnings: list[str] = []
    try:
        write_label(tape, "V0", "V0", "p")
        result = backup_volume(
            access,
            tape,
            session_id="s1",
            job_id="j1",
            source="vol",
            mode="used",
            record_size=RECORD,
            warnings=warnings,
        )
    finally:
        tape.close()
        access.close()
    assert result.maps is not None and result.maps.volfiles.num_rows > 10
    return result.path, session_bytes(lib, 0, 1), warnings


def test_host_path_on_tgt_writes_what_the_copy_manager_writes(tmp_path: Path) -> None:
    reason = TgtLibrary.available()
    if reason:
        pytest.skip(f"tgt cannot run here: {reason}")
    src = tmp_path / "src"
    fat.write_tree(src, {f"d{i % 4}/f{i:03d}.bin": bytes([i]) * (i * 97) for i in range(80)})
    img = fat.mkfs(tmp_path / "vol.img", 16, 16_000)
    for entry in sorted(src.iterdir()):
        fat.mcopy(img, entry)
    original = img.read_bytes()

    with TgtLibrary(tmp_path / "tgt", drives=1, slots=4, cartridges=2, disks=(img,)) as tgt:
        spec = tgt.spec(f"tgt-{tmp_path.name}")
        assert spec.open_copy_manager() is None  # tgt has no copy manager
        lun = f"disk:{tgt.disk_luns[0]}"
        # nor LUN snapshots: a point-in-time backup is refused before anything is touched
        with pytest.raises(NoSnapshot, match=f"cannot freeze {lun}.*live_copy=True") as refused:
            VolumeAccess.open(spec, Source("vol", lun, kind="volume", quiet=0.1))
        assert refused.value.volume == lun and "no snapshots" in refused.value.why
        with Library(spec) as lib:
            lib.load(0, slot=1)
            # so this test accepts a live copy: nothing writes the LUN while it is copied
            path, on_tgt, warned = _backup(spec, lib, lun, live_copy=True)
    assert path == "host"
    assert len(warned) == 1 and warned[0].startswith(f"LIVE COPY of {lun}, not point-in-time")
    assert "not quiesced" in warned[0]  # tgt gives no write counter to wait on either

    vl = VirtualLibrary.create(tmp_path / "vtl", drives=1, slots=4)
    copy = tmp_path / "copy.img"
    copy.write_bytes(original)
    vl.add_disk("vol", image=copy)
    espec = LibrarySpec.parse(f"embedded:{vl.root}")
    with Library(espec) as lib:
        lib.load(0, slot=1)
        assert isinstance(ScsiDevice(espec.open_copy_manager()), ScsiDevice)
        path, on_vtl, warned = _backup(espec, lib, "disk:vol")
    assert path == "xcopy" and warned == []  # quiesced, then a copy-on-write LUN snapshot

    # Same layout, same volume bytes; only the headers' times differ.
    assert len(on_tgt) == len(on_vtl)
    for data, where in ((on_tgt, "tgt"), (on_vtl, "vtl")):
        out = tmp_path / f"x-{where}"
        out.mkdir()
        (tmp_path / f"{where}.tar").write_bytes(data)
        subprocess.run(["tar", "-xf", str(tmp_path / f"{where}.tar"), "-C", str(out)], check=True)
        restored = (out / "vol.img").read_bytes()
        assert len(restored) == len(original)
        subprocess.run(["fsck.fat", "-n", str(out / "vol.img")], check=True, capture_output=True)
        listing = fat.run("mdir", "-/", "-b", "-i", out / "vol.img")
        assert "f079.bin" in listing.lower()
