"""FAT test images made with the real tools (mkfs.fat, mtools) and The Sleuth Kit's view of them
(fls, istat), for checking tapeflow.fs.fat against an independent implementation."""

from __future__ import annotations

import os
import re
import subprocess
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

# mtools refuses "odd" geometry without SKIP_CHECK; FAT times are local: make local = UTC.
TOOL_ENV = {**os.environ, "MTOOLS_SKIP_CHECK": "1", "TZ": "UTC", "LC_ALL": "C.UTF-8"}


def run(*args: str | Path, stdin: bytes | None = None) -> str:
    """Run a tool with the FAT tool environment; its stdout as text (raises on failure)."""
    done = subprocess.run(
        [str(a) for a in args],
        env=TOOL_ENV,
        input=stdin if stdin is not None else b"",
        capture_output=True,
        check=False,
        timeout=120,
    )
    if done.returncode != 0:
        raise RuntimeError(
            f"{args[0]} failed ({done.returncode}): {done.stderr.decode(errors='replace')}"
        )
    return done.stdout.decode("utf-8", "surrogateescape")


def mkfs(img: Path, bits: int, size_kib: int, *extra: str) -> Path:
    """A fresh FAT`bits` image of `size_kib` KiB (extra mkfs.fat options, e.g. -s 1 -n LABEL)."""
    if img.exists():
        img.unlink()
    run("mkfs.fat", "-F", str(bits), *extra, "-C", img, str(size_kib))
    return img


def mmd(img: Path, *dirs: str) -> None:
    """Create directories (paths relative to the volume root, parents first)."""
    if dirs:
        run("mmd", "-i", img, *(f"::/{d}" for d in dirs))


def mcopy(img: Path, src: Path, dest: str = "") -> None:
    """Copy a local file or a directory tree (recursively) to ::/dest, keeping mtimes."""
    run("mcopy", "-s", "-m", "-i", img, src, f"::/{dest}")


def mdel(img: Path, *paths: str) -> None:
    """Delete files from the volume."""
    run("mdel", "-i", img, *(f"::/{p}" for p in paths))


def write_tree(root: Path, files: dict[str, bytes], mtime: float | None = None) -> None:
    """Create `files` (relative path -> content) under `root`, optionally all with `mtime`."""
    for rel, content in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content)
        if mtime is not None:
            os.utime(path, (mtime, mtime))


@dataclass(frozen=True)
class TskEntry:
    """One allocated name as `fls -r -p -u` lists it."""

    inode: int
    type: str  # "file" | "dir"
    path: str


_FLS_LINE = re.compile(
    r"^(?P<t>[-a-zA-Z])/(?P<m>[-a-zA-Z]) (?:\* )?(?P<inode>\d+)[^:]*:\t(?P<p>.*)$"
)


def fls(img: Path) -> dict[str, TskEntry]:
    """Allocated files and directories per TSK, by path, without TSK's virtual entries ($MBR,
    $FAT1, $FAT2, $OrphanFiles) and the volume label entry."""
    out: dict[str, TskEntry] = {}
    for line in run("fls", "-r", "-p", "-u", img).splitlines():
        m = _FLS_LINE.match(line)
        if not m:
            raise ValueError(f"unexpected fls line {line!r}")
        if m["t"] in "vV" or m["p"].endswith(" (Volume Label Entry)"):
            continue
        kind = "dir" if m["t"] == "d" else "file"
        out[m["p"]] = TskEntry(int(m["inode"]), kind, m["p"])
    return out


@dataclass(frozen=True)
class TskInode:
    """What `istat -z UTC` shows of one FAT directory entry."""

    size: int
    sectors: list[int]  # as listed: the sectors covering the size, then 0 for the rest
    written: datetime | None
    accessed: datetime | None
    created: datetime | None


def _when(text: str, field: str) -> datetime | None:
    m = re.search(rf"^{field}:\t(\d{{4}}-\d\d-\d\d \d\d:\d\d:\d\d)(\.\d+)? \(UTC\)", text, re.M)
    if not m or m[1].startswith("0000"):
        return None
    value = datetime.strptime(m[1], "%Y-%m-%d %H:%M:%S").replace(tzinfo=UTC)
    if m[2]:
        value = value.replace(microsecond=int(m[2][1:7].ljust(6, "0")))
    return value


def istat(img: Path, inode: int) -> TskInode:
    """Parse `istat -z UTC img inode`."""
    text = run("istat", "-z", "UTC", img, str(inode))
    size = int(re.search(r"^Size: (\d+)", text, re.M)[1])  # type: ignore[index]
    tail = text.split("\nSectors:\n", 1)[1] if "\nSectors:\n" in text else ""
    sectors = [int(tok) for tok in tail.split()]
    return TskInode(
        size,
        sectors,
        _when(text, "Written"),
        _when(text, "Accessed"),
        _when(text, "Created"),
    )
