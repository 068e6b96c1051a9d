"""Real NTFS images for the parser's tests, made by real tools, and The Sleuth Kit's view of them.

Images: `mkntfs` formats; files, directories, hard links, sparse, compressed and fragmented files
go through an ntfs-3g FUSE mount (the kernel driver path a user would take); a couple of files
and a named stream go in with `ntfscp` (no mount). `fls` and `istat` give the reference answers.
"""

from __future__ import annotations

import os
import random
import struct
import subprocess
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from tapeflow.testing.ntfs3g import mounted

TOOL_ENV = {**os.environ, "TZ": "UTC", "LC_ALL": "C.UTF-8"}


def run(*args: str | Path) -> str:
    """Run a tool; its stdout (UTF-8). Raises with stderr when it fails."""
    proc = subprocess.run(
        [str(a) for a in args], capture_output=True, env=TOOL_ENV, timeout=120, check=False
    )
    if proc.returncode:
        raise RuntimeError(f"{args[0]} failed ({proc.returncode}): {proc.stderr.decode()}")
    return proc.stdout.decode("utf-8", "surrogateescape")


def mkntfs(
    img: Path, size_mb: int, cluster: int = 4096, sector: int = 512, label: str = ""
) -> Path:
    """A freshly formatted image file of `size_mb` MiB."""
    with open(img, "wb") as f:
        f.truncate(size_mb << 20)
    extra = ["-L", label] if label else []
    run("mkntfs", "-F", "-Q", "-q", "-s", str(sector), "-c", str(cluster), *extra, img)
    return img


def set_compressed(path: Path) -> None:
    """Mark a directory compressed (ntfs-3g's system.ntfs_attrib); new files in it compress."""
    attrib = struct.unpack("<I", os.getxattr(path, "system.ntfs_attrib"))[0]
    os.setxattr(path, "system.ntfs_attrib", struct.pack("<I", attrib | 0x800))


@dataclass
class Built:
    """An image and what was put in it: path -> content (None for a directory)."""

    img: Path
    cluster: int
    expected: dict[str, bytes | None] = field(default_factory=dict)
    unchecked_content: set[str] = field(default_factory=set)  # e.g. symlinks: tool-defined bytes
    special: dict[str, str] = field(default_factory=dict)  # role -> path


def _put(b: Built, root: Path, rel: str, data: bytes) -> None:
    (root / rel).write_bytes(data)
    b.expected[rel] = data


def _mkdir(b: Built, root: Path, rel: str) -> None:
    (root / rel).mkdir()
    b.expected[rel] = None


def build_tree(tmp: Path, cluster: int = 4096, sector: int = 512, size_mb: int = 48) -> Built:
    """The main test volume: every kind of file the parser must map, checked against TSK."""
    rnd = random.Random(cluster * 7 + sector)
    img = mkntfs(tmp / f"tree-{sector}-{cluster}.img", size_mb, cluster, sector, label="TAPEFLOW")
    b = Built(img, cluster)
    with mounted(img, tmp / f"mnt-{sector}-{cluster}") as m:
        # many small files: resident $DATA
        _mkdir(b, m, "small")
        for i in range(120):
            _put(b, m, f"small/s{i:03d}.txt", rnd.randbytes(rnd.randint(0, 700)))
        # non-resident files around cluster boundaries
        _mkdir(b, m, "big")
        for size in (1000, 4095, 4096, 4097, 65536, 100_001, 1 << 20):
            _put(b, m, f"big/b{size}.bin", rnd.randbytes(size))
        os.link(m / "small/s007.txt", m / "big/hardlink.txt")
        b.expected["big/hardlink.txt"] = b.expected["small/s007.txt"]
        _put(b, m, "empty.txt", b"")
        # deep directories, long and non-ASCII names
        deep = "deep"
        _mkdir(b, m, deep)
        for level in range(12):
            deep = f"{deep}/level{level:02d}"
            _mkdir(b, m, deep)
        _put(b, m, f"{deep}/bottom.txt", b"at the bottom\n")
        _mkdir(b, m, "unicodé 日本")
        _put(b, m, "unicodé 日本/café.txt", "é日本".encode() * 50)
        _put(b, m, "unicodé 日本/日本語のファイル名.bin", rnd.randbytes(5000))
        _put(b, m, "L" * 255, b"longest ASCII name")
        _put(b, m, "日" * 85, b"85 CJK characters = 255 UTF-8 bytes, the kernel's limit")
        # a directory big enough for INDX blocks (a two-level $I30 B+tree)
        _mkdir(b, m, "many")
        for i in range(400):
            _put(b, m, f"many/entry-with-a-longish-name-{i:04d}.dat", i.to_bytes(2, "little"))
        # sparse: holes read as zeros and own no clusters
        _mkdir(b, m, "sparse")
        hole = bytearray(3 << 20)
        hole[1_000_000:1_010_000] = rnd.randbytes(10_000)
        hole[-5000:] = rnd.randbytes(5000)
        with open(m / "sparse/holes.bin", "wb") as f:
            f.truncate(len(hole))
            f.seek(1_000_000)
            f.write(hole[1_000_000:1_010_000])
            f.seek(len(hole) - 5000)
            f.write(hole[-5000:])
        b.expected["sparse/holes.bin"] = bytes(hole)
        # fragmented and split across MFT records: clusters at every other VCN, so the runlist
        # outgrows the record and ntfs-3g moves it to extension records ($ATTRIBUTE_LIST)
        _mkdir(b, m, "frag")
        pairs = 400 if sector == 512 else 1700  # 4 KiB sectors: 4 KiB records hold more
        frag = bytearray(cluster * 2 * pairs)
        fd = os.open(m / "frag/alist.bin", os.O_WRONLY | os.O_CREAT, 0o644)
        for i in range(pairs):
            chunk = bytes([1 + i % 250]) * cluster
            os.pwrite(fd, chunk, 2 * i * cluster)
            frag[2 * i * cluster : (2 * i + 1) * cluster] = chunk
        os.close(fd)
        b.expected["frag/alist.bin"] = bytes(frag[: (2 * pairs - 1) * cluster])
        b.special["alist"] = "frag/alist.bin"
        # interleaved appends: a file whose clusters alternate with other files' (ntfs-3g does
        # so on 4 KiB+ clusters; on 512-byte clusters it places new files far apart instead)
        _mkdir(b, m, "frag/pad")
        inter = bytearray()
        fd = os.open(m / "frag/interleaved.bin", os.O_WRONLY | os.O_CREAT, 0o644)
        for i in range(60):
            chunk = rnd.randbytes(cluster)
            os.write(fd, chunk)
            os.fsync(fd)
            inter += chunk
            _put(b, m, f"frag/pad/p{i:03d}", b"p" * max(cluster, 2048))  # non-resident
        os.close(fd)
        b.expected["frag/interleaved.bin"] = bytes(inter)
        # compressed (LZNT1) files; NTFS compresses only with clusters up to 4 KiB
        _mkdir(b, m, "comp")
        set_compressed(m / "comp")
        _put(b, m, "comp/text.txt", b"compress me, tapeflow! " * 20_000)
        _put(b, m, "comp/random.bin", rnd.randbytes(70_000))
        _put(b, m, "comp/mixed.bin", b"a" * 50_000 + rnd.randbytes(30_000) + bytes(100_000) + b"z")
        # a Win32 name with a separate DOS 8.3 name (two $FILE_NAME attributes, two index keys)
        _put(b, m, "Long File Name.txt", b"has a DOS name too")
        os.setxattr(m / "Long File Name.txt", "system.ntfs_dos_name", b"LONGFI~1.TXT")
        b.special["dosname"] = "Long File Name.txt"
        # a named stream (ignored for content) on a file with content
        _put(b, m, "ads.txt", b"main stream")
        os.setxattr(m / "ads.txt", "user.secondary", b"alternate data stream content")
        # a symbolic link (ntfs-3g stores an Interix-style link: a small system file)
        os.symlink("ads.txt", m / "link-to-ads")
        b.expected["link-to-ads"] = b""  # a file; its bytes are ntfs-3g's business
        b.unchecked_content.add("link-to-ads")
        _mkdir(b, m, "empty_dir")
    # ntfscp writes without a mount: a non-resident file, a resident one, a named stream
    src = tmp / f"src-{sector}-{cluster}"
    src.write_bytes(rnd.randbytes(50_000))
    run("ntfscp", "-q", img, src, "/ntfscp-copy.bin")
    b.expected["ntfscp-copy.bin"] = src.read_bytes()
    src.write_bytes(b"small via ntfscp")
    run("ntfscp", "-q", img, src, "/deep/ntfscp-small.txt")
    b.expected["deep/ntfscp-small.txt"] = src.read_bytes()
    src.write_bytes(b"named stream via ntfscp")
    run("ntfscp", "-q", "-N", "viacp", img, src, "/ntfscp-copy.bin")
    return b


def build_fragmented_mft(tmp: Path) -> Built:
    """A volume whose $MFT is so fragmented that its runlist spills into an extension record
    through $ATTRIBUTE_LIST: fill the volume, free every other file, then grow the MFT."""
    img = mkntfs(tmp / "mftfrag.img", 8, cluster=512)
    b = Built(img, 512)
    with mounted(img, tmp / "mnt-mftfrag") as m:
        _mkdir(b, m, "fill")
        n = 0
        try:
            while True:
                (m / f"fill/f{n:05d}").write_bytes(b"x" * 1000)
                n += 1
        except OSError:
            (m / f"fill/f{n:05d}").unlink(missing_ok=True)
        for i in range(n):
            if i % 2 == 0:
                (m / f"fill/f{i:05d}").unlink()
            else:
                b.expected[f"fill/f{i:05d}"] = b"x" * 1000
        # a file that can only go in the holes: fragmented on disk, not sparse
        free = os.statvfs(m).f_bavail * os.statvfs(m).f_frsize
        big = random.Random(3).randbytes(free // 3)
        _put(b, m, "holes.bin", big)
        b.special["fragmented"] = "holes.bin"
        _mkdir(b, m, "tiny")
        k = 0
        try:
            while k < 5000:
                (m / f"tiny/t{k:05d}").write_bytes(b"t")
                b.expected[f"tiny/t{k:05d}"] = b"t"
                k += 1
        except OSError:
            b.expected.pop(f"tiny/t{k:05d}", None)
            (m / f"tiny/t{k:05d}").unlink(missing_ok=True)
    return b


def build_small(tmp: Path) -> Built:
    """A small volume for fuzzing: a few files and a root big enough for an INDX block."""
    rnd = random.Random(5)
    img = mkntfs(tmp / "small.img", 4, cluster=1024)
    b = Built(img, 1024)
    with mounted(img, tmp / "mnt-small") as m:
        for i in range(40):
            _put(b, m, f"file-number-{i:02d}.txt", rnd.randbytes(rnd.randint(0, 3000)))
        _mkdir(b, m, "d")
        _put(b, m, "d/inner.bin", rnd.randbytes(9000))
        fd = os.open(m / "d/sparse", os.O_WRONLY | os.O_CREAT, 0o644)
        sparse = bytearray(2048 * 299 + 1024)
        for i in range(300):  # enough runs to need an $ATTRIBUTE_LIST
            os.pwrite(fd, b"s" * 1024, 2048 * i)
            sparse[2048 * i : 2048 * i + 1024] = b"s" * 1024
        os.close(fd)
        b.expected["d/sparse"] = bytes(sparse)
        b.special["alist"] = "d/sparse"
        _mkdir(b, m, "many")  # INDX blocks below a root node
        for i in range(150):
            _put(b, m, f"many/a-rather-long-file-name-{i:03d}", b"")
    return b


def build_large_clusters(tmp: Path) -> Built:
    """256 KiB clusters: the boot sector encodes sectors per cluster as 0xF7 (2^(256-247))."""
    img = mkntfs(tmp / "large.img", 128, cluster=256 << 10)
    b = Built(img, 256 << 10)
    rnd = random.Random(9)
    with mounted(img, tmp / "mnt-large") as m:
        _mkdir(b, m, "dir")
        _put(b, m, "dir/small.txt", b"resident in a 256 KiB-cluster volume")
        _put(b, m, "dir/big.bin", rnd.randbytes(600_000))
        _put(b, m, "another.bin", rnd.randbytes(300_000))
    return b


# --- The Sleuth Kit --------------------------------------------------------------------------


@dataclass(frozen=True)
class FlsEntry:
    """One `fls -r -p` line: path, inode (first number), directory or not."""

    path: str
    inode: int
    is_dir: bool


def fls_user_entries(img: Path) -> list[FlsEntry]:
    """`fls -r -p`, reduced to user files the way NtfsVolume.entries() defines them: no deleted
    names ('*'), no metafiles (inode < 16) nor anything below $Extend, no $OrphanFiles, no
    '$' names in the root on records below 24 (fls lists the $FILE_NAME that ntfs-3g puts in a
    fragmented $MFT's extension record 16 as "-/r 16: $MFT"), no named streams ("name:stream"
    lines; our test names contain no ':'). Lines typed "-/r" stay: fls prints them for files it
    adds from its parent map when it did not find them in the directory's index (all files of
    INDX-block directories on 64 KiB-cluster volumes, where TSK 4.11 misses the blocks)."""
    out = []
    for line in run("fls", "-r", "-p", img).splitlines():
        meta, _, path = line.partition(":\t")
        parts = meta.split()
        if "*" in parts or parts[0].startswith("V/V"):
            continue
        inode = int(parts[-1].split("-")[0])
        if inode < 16 or path.startswith(("$Extend/", "$OrphanFiles")):
            continue
        if path.startswith("$") and "/" not in path and inode < 24:
            continue  # extension record 16 of a fragmented $MFT, see above
        if ":" in path.rsplit("/", 1)[-1]:
            continue
        out.append(FlsEntry(path, inode, parts[0].endswith("/d")))
    return out


@dataclass
class IstatData:
    """The unnamed $DATA attribute and $STANDARD_INFORMATION times as istat reports them."""

    resident: bool
    size: int
    clusters: list[int]  # sparse clusters print as 0
    times: dict[str, datetime]  # Created, File Modified, MFT Modified, Accessed
    attribute_list: bool


def _tsk_time(text: str) -> datetime:
    """'2026-11-26 06:42:38.488982800 (UTC)' -> datetime truncated to microseconds."""
    stamp = text.split(" (")[0]
    day, _, frac = stamp.partition(".")
    return datetime.strptime(day, "%Y-%m-%d %H:%M:%S").replace(
        microsecond=int(frac[:6].ljust(6, "0")), tzinfo=UTC
    )


def istat(img: Path, inode: int) -> IstatData:
    """Parse `istat IMG INODE`."""
    lines = run("istat", img, str(inode)).splitlines()
    times: dict[str, datetime] = {}
    section = ""
    data: IstatData | None = None
    alist = False
    i = 0
    while i < len(lines):
        line = lines[i]
        if line.endswith("Attribute Values:"):
            section = line
        elif section.startswith("$STANDARD_INFORMATION") and ":\t" in line:
            key, _, value = line.partition(":\t")
            times[key] = _tsk_time(value)
        if line.startswith("Type: $ATTRIBUTE_LIST"):
            alist = True
        if line.startswith("Type: $DATA (128-") and "Name: N/A" in line:
            size = int(line.split("size: ")[1].split()[0])
            resident = "Non-Resident" not in line
            clusters: list[int] = []
            while i + 1 < len(lines) and lines[i + 1].strip() and lines[i + 1].split()[0].isdigit():
                i += 1
                clusters.extend(int(x) for x in lines[i].split())
            data = IstatData(resident, size, clusters, {}, False)
        i += 1
    if data is None:
        raise RuntimeError(f"istat shows no unnamed $DATA for inode {inode}")
    data.times = times
    data.attribute_list = alist
    return data


def blkls_allocated(img: Path) -> set[int]:
    """Clusters TSK considers allocated (`blkls -e -l`)."""
    out = set()
    for line in run("blkls", "-e", "-l", img).splitlines():
        addr, _, alloc = line.partition("|")
        if alloc == "a" and addr.isdigit():
            out.add(int(addr))
    return out
