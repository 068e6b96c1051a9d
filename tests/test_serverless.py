"""Serverless backup end to end on a real Prefect server: FAT volumes on the embedded SAN's disk
LUNs (copy manager) and in an image file (host path), file-level and image-level restores."""

from __future__ import annotations

import hashlib
import subprocess
from pathlib import Path
from typing import Any

import pytest

from tapeflow.catalog import Catalog
from tapeflow.vtl import VirtualLibrary
from tests import fatimages as fat
from tests import ntfsimages as ntfs
from tests.test_flows import lib_env

pytestmark = pytest.mark.usefixtures("prefect_server")


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _tree(root: Path, seed: int) -> dict[str, bytes]:
    """Files to put on a volume: a big fragmented-to-be file, small ones, long names, depth."""
    rnd = hashlib.sha256(str(seed).encode()).digest()
    files = {
        "big.bin": (rnd * (700_000 // 32 + 1))[:700_000],
        "docs/Long File Name Number One.txt": b"first long name\n" * 50,
        "docs/résumé.txt": "é".encode() * 300,
        "deep/a/b/c/d/e/leaf.dat": rnd * 10,
        "empty.txt": b"",
    }
    files.update({f"many/f{i:03d}.txt": f"file {i} {seed}\n".encode() * (i + 1) for i in range(60)})
    fat.write_tree(root, files)
    return files


def _volume(tmp: Path, name: str, bits: int, size_kib: int, seed: int) -> tuple[Path, dict]:
    src = tmp / f"{name}-src"
    files = _tree(src, seed)
    img = fat.mkfs(tmp / f"{name}.img", bits, size_kib)
    for entry in sorted(src.iterdir()):
        fat.mcopy(img, entry)
    # fragment big.bin: delete every other small file, then rewrite big.bin into the holes
    fat.mdel(img, *(f"many/f{i:03d}.txt" for i in range(0, 60, 2)))
    fat.mdel(img, "big.bin")
    fat.mcopy(img, src / "big.bin")
    for i in range(0, 60, 2):
        del files[f"many/f{i:03d}.txt"]
    return img, files


@pytest.fixture
def base(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    """An embedded library (2 drives) and a small FAT12 image file."""
    monkeypatch.setenv("TAPEFLOW_HOME", str(tmp_path / "home"))
    e = lib_env(tmp_path)
    e["vl"] = VirtualLibrary.create(e["lib_dir"], drives=2, slots=8, mail_slots=1)
    e["plain"], e["files_plain"] = _volume(tmp_path, "plain", 12, 4_000, 3)
    return e


@pytest.fixture
def env(base: dict[str, Any]) -> dict[str, Any]:
    """Plus FAT16 and NTFS volumes on disk LUNs of the SAN and a FAT32 image file."""
    e, tmp_path, vl = base, base["tmp"], base["vl"]
    e["fat16"], e["files16"] = _volume(tmp_path, "fat16", 16, 20_000, 1)
    e["fat32"], e["files32"] = _volume(tmp_path, "fat32", 32, 40_000, 2)
    vl.add_disk("fat16", image=e["fat16"])
    (tmp_path / "ntfs").mkdir()
    e["ntfs"] = ntfs.build_tree(tmp_path / "ntfs", size_mb=24)
    vl.add_disk("ntfs", image=e["ntfs"].img)
    return e


def test_serverless_backup_and_restores(env: dict[str, Any]) -> None:
    from flows.restore import restore
    from flows.serverless import restore_image, serverless_backup

    frozen16 = env["fat16"].read_bytes()
    outcome = serverless_backup(
        volumes=[
            "fat16=disk:fat16",
            {"name": "plain", "path": str(env["plain"])},
            {"name": "fat32", "path": str(env["fat32"]), "mode": "used"},
            {"name": "ntfs", "path": "disk:ntfs", "mode": "used"},
        ],
        library=env["library"],
        catalog=env["catalog"],
        verify=True,  # each session read back whole: a problem would fail the job
    )
    assert outcome["state"] == "complete"
    copy = {row["source"]: row["copy"] for row in outcome["slaves"]}
    assert copy == {"fat16": "xcopy", "plain": "host", "fat32": "host", "ntfs": "xcopy"}

    with Catalog(env["catalog"], read_only=True) as cat:
        kinds = {s["source"]: s["kind"] for s in cat.sessions()}
        assert set(kinds.values()) == {"serverless"}
        found = cat.records("SELECT path, size FROM files WHERE source = 'fat16' AND type = 'file'")
    assert {r["path"]: r["size"] for r in found} == {p: len(c) for p, c in env["files16"].items()}

    # file level: only the file's clusters are read; contents and mtimes come back
    out = env["tmp"] / "files16"
    result = restore(
        source="fat16",
        selection=["big.bin", "docs", "deep/a/b/c/d/e/leaf.dat", "empty.txt"],
        target=str(out),
        library=env["library"],
        catalog=env["catalog"],
    )
    assert result["restored"] >= 5
    for rel in (
        "big.bin",
        "docs/Long File Name Number One.txt",
        "docs/résumé.txt",
        "deep/a/b/c/d/e/leaf.dat",
        "empty.txt",
    ):
        assert (out / rel).read_bytes() == env["files16"][rel], rel
    out32 = env["tmp"] / "files32"
    restore(source="fat32", target=str(out32), library=env["library"], catalog=env["catalog"])
    for rel, content in env["files32"].items():
        assert (out32 / rel).read_bytes() == content, rel

    # NTFS: resident, sparse, compressed, fragmented, hard-linked, unicode names
    built = env["ntfs"]
    outn = env["tmp"] / "filesntfs"
    restore(source="ntfs", target=str(outn), library=env["library"], catalog=env["catalog"])
    for rel, content in built.expected.items():
        if content is None:
            assert (outn / rel).is_dir(), rel
        elif rel not in built.unchecked_content:
            assert (outn / rel).read_bytes() == content, rel
    imgn = env["tmp"] / "ntfs.restored"
    restore_image(source="ntfs", target=str(imgn), library=env["library"], catalog=env["catalog"])
    subprocess.run(["ntfsfix", "--no-action", str(imgn)], check=True, capture_output=True)
    mapped = ntfs.fls_user_entries(imgn)
    assert {e.path for e in mapped} == {e.path for e in ntfs.fls_user_entries(built.img)}

    # image level: byte-identical to the frozen volume, fsck-clean
    img = env["tmp"] / "fat16.restored"
    done = restore_image(
        source="fat16", target=str(img), library=env["library"], catalog=env["catalog"]
    )
    assert done["path"] == "host"  # into a file: the host writes it
    assert img.read_bytes() == frozen16
    subprocess.run(["fsck.fat", "-n", str(img)], check=True, capture_output=True)
    # onto a disk LUN of the SAN: the copy manager writes it
    env["vl"].add_disk("copy", size=len(frozen16))
    done = restore_image(
        source="fat16", target="disk:copy", library=env["library"], catalog=env["catalog"]
    )
    assert done["path"] == "xcopy"
    lun = env["vl"].disk_store("copy")
    assert lun.read(0, len(frozen16)) == frozen16
    # mode "used": metadata and used clusters come back, fsck-clean; files identical
    img32 = env["tmp"] / "fat32.restored"
    restore_image(source="fat32", target=str(img32), library=env["library"], catalog=env["catalog"])
    subprocess.run(["fsck.fat", "-n", str(img32)], check=True, capture_output=True)
    listing = fat.run("mdir", "-/", "-b", "-i", img32)
    assert "big.bin" in listing.lower()


def test_bad_volume_sources_fail_clearly(base: dict[str, Any]) -> None:
    env = base
    from flows.serverless import serverless_backup

    not_fat = env["tmp"] / "zero.img"
    not_fat.write_bytes(bytes(1024 * 1024))
    with pytest.raises(Exception, match="failed") as exc:
        serverless_backup(
            volumes=[f"zero={not_fat}", "gone=disk:nosuchdisk"],
            library=env["library"],
            catalog=env["catalog"],
        )
    text = str(exc.value)
    assert "UnknownFilesystem" in text and "nosuchdisk" in text
    with pytest.raises(ValueError, match="include/exclude"):
        serverless_backup(
            volumes=[{"name": "x", "path": "disk:any", "include": ["*.txt"]}],
            library=env["library"],
            catalog=env["catalog"],
        )


def test_cli_disk_serverless_and_restore_image(
    base: dict[str, Any], capsys: pytest.CaptureFixture
) -> None:
    env = base
    from flows.cli import main

    lib = ["--library", env["library"]]
    assert main(["library", "disk", "add", "v", "--image", str(env["plain"]), *lib]) == 0
    assert "disk v:" in capsys.readouterr().out
    assert main(["library", "disk", "list", *lib]) == 0
    assert "plain.img" in capsys.readouterr().out
    assert main(["library", "disk", "add", "w", *lib]) == 2  # neither --image nor --size-mb
    assert "exactly one" in capsys.readouterr().err
    cat = ["--catalog", env["catalog"]]
    assert main(["serverless", "v=disk:v", "--mode", "used", "--verify", *lib, *cat]) == 0
    assert "by xcopy" in capsys.readouterr().out
    out = env["tmp"] / "v.img"
    assert main(["restore-image", "v", str(out), *lib, *cat]) == 0
    assert "by host" in capsys.readouterr().out
    subprocess.run(["fsck.fat", "-n", str(out)], check=True, capture_output=True)
    assert main(["restore-image", "v", str(out), *lib, *cat]) == 2  # exists: no --overwrite
    assert "exists" in capsys.readouterr().err
    # nothing freezes a volume with --snapshot none: refused, unless a live copy is accepted
    assert main(["serverless", f"live={env['plain']}", "--snapshot", "none", *lib, *cat]) == 2
    assert "live_copy" in capsys.readouterr().err
    argv = ["serverless", f"live={env['plain']}", "--snapshot", "none", "--live-copy"]
    assert main([*argv, *lib, *cat]) == 0
    shown = capsys.readouterr().out
    assert "live             complete" in shown and "warning: LIVE COPY of" in shown
    with Catalog(env["catalog"], read_only=True) as cat_db:  # the job report keeps it too
        logged = cat_db.records("SELECT level, message FROM events WHERE level = 'warning'")
    assert any("LIVE COPY of" in e["message"] for e in logged), logged
