"""FAT12/16/32 parser against images made by mkfs.fat + mtools and read by The Sleuth Kit: the
same paths, TSK inode numbers, sectors, sizes and times; hostile images fail typed and fast."""

from __future__ import annotations

import io
import random
import re
import struct
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tapeflow.fs import fat_layout as L
from tapeflow.fs.errors import BadBootSector, CorruptStructure, FsError, UnknownFilesystem
from tapeflow.fs.fat import FatVolume
from tapeflow.fs.fat_table import FatTable
from tapeflow.fs.model import Extent, FsEntry, coalesce
from tests import fatimages as F

MTIME = datetime(2021, 3, 4, 5, 6, 8, tzinfo=UTC)  # even seconds: FAT keeps 2 s units
FAST = 2.0  # seconds a hostile image may take to be refused


def _bytes(seed: int, n: int) -> bytes:
    return random.Random(seed).randbytes(n)


def standard_tree() -> dict[str, bytes]:
    """Names and shapes FAT parsers get wrong: LFN, unicode, NT case flags, empties, depth."""
    files: dict[str, bytes] = {
        "hello.txt": b"hello\n",
        "EMPTY.TXT": b"",
        "empty file with a long name.dat": b"",
        "lower.TXT": b"base lower, ext upper\n",  # short name + NT flag 0x08
        "UP.txt": b"base upper, ext lower\n",  # short name + NT flag 0x10
        "readme.md": b"all lower\n",  # short name + 0x18
        "MixedCase.Txt": b"needs an LFN\n",
        "UPPER.TXT": b"plain 8.3\n",
        "été.txt": b"accent\n",
        "über/Größe.bin": _bytes(1, 3000),
        "日本/日本語のファイル名.txt": "日本語\n".encode(),
        "a very long file name with spaces, commas and more than 13 characters.text": b"x",
        ("n" * 120) + ".txt": b"120-char name\n",
        # names differing only in case (FAT folds case within a directory, so in three)
        "case1/Data.bin": b"1",
        "case2/DATA.BIN": b"2",
        "case3/data.bin": b"3",
        "blob.bin": _bytes(2, 50_000),
        "exactly_one_sector.bin": _bytes(3, 512),
    }
    deep = "/".join(f"d{i:02d}" for i in range(1, 21))
    files[f"{deep}/leaf.txt"] = b"twenty levels down\n"
    for i in range(40):  # 4 slots each: several clusters of directory entries
        files[f"bigdir/entry with a long name {i:03d}.txt"] = f"{i}\n".encode()
    return files


def fragment(img: Path, work: Path, cluster: int) -> bytes:
    """Write 10 files of 3 clusters, delete every other one, then write a 12-cluster file
    `big.bin` that must fill the holes; returns its content."""
    work.mkdir(parents=True, exist_ok=True)
    names = []
    for i in range(10):
        (work / f"frag{i}.bin").write_bytes(_bytes(100 + i, 3 * cluster - 7))
        names.append(work / f"frag{i}.bin")
    for p in names:
        F.mcopy(img, p)
    F.mdel(img, *(f"frag{i}.bin" for i in (1, 3, 5, 7)))
    with open(img, "r+b") as fh:  # FAT32: forget mtools' next-free hint so it reuses holes
        boot = L.BOOT_SECTOR_32.parse(fh.read(512))
        if boot.bpb.fat_size_16 == 0:
            pos = boot.fat32.fs_info_sector * boot.bpb.bytes_per_sector
            fh.seek(pos)
            info = L.FSINFO.parse(fh.read(512))
            assert info.lead_signature == L.FSINFO_LEAD
            info.next_free = 0xFFFFFFFF
            fh.seek(pos)
            fh.write(L.FSINFO.build(info))
    big = _bytes(99, 12 * cluster - 100)
    (work / "big.bin").write_bytes(big)
    F.mcopy(img, work / "big.bin")
    return big


# (bits, image KiB, mkfs.fat options)
GEOMETRY = {
    12: (4000, ("-n", "SMALL12")),
    16: (20480, ("-n", "MEDIUM16")),
    32: (40000, ("-s", "1", "-n", "LARGE32")),
}


class Built:
    """One populated image and what was written to it."""

    def __init__(self, img: Path, files: dict[str, bytes]) -> None:
        self.img = img
        self.files = files
        self.tsk = F.fls(img)
        with open(img, "rb") as fh:
            self.vol = FatVolume.open(fh)
            self.entries = list(self.vol.entries())
            self.used = self.vol.used_runs()
            self.unowned = self.vol.unowned_runs()
            self.content = {p: self.vol.read_file(self.by_path[p]) for p in files}

    @property
    def by_path(self) -> dict[str, FsEntry]:
        return {e.path: e for e in self.entries}


_BUILT: dict[int, Built] = {}


def _build(bits: int, tmp_path_factory: pytest.TempPathFactory) -> Built:
    """The standard tree plus a fragmented file on a FAT`bits` image (built once per module)."""
    if bits in _BUILT:
        return _BUILT[bits]
    size, opts = GEOMETRY[bits]
    tmp = tmp_path_factory.mktemp(f"fat{bits}")
    img = F.mkfs(tmp / "vol.img", bits, size, *opts)
    files = standard_tree()
    F.write_tree(tmp / "src", files, MTIME.timestamp())
    for child in sorted((tmp / "src").iterdir()):
        F.mcopy(img, child)
    with open(img, "rb") as fh:
        cluster = FatVolume.open(fh).info.cluster_size
    files["big.bin"] = fragment(img, tmp / "frag", cluster)
    for i in (0, 2, 4, 6, 8, 9):
        files[f"frag{i}.bin"] = (tmp / "frag" / f"frag{i}.bin").read_bytes()
    _BUILT[bits] = Built(img, files)
    return _BUILT[bits]


@pytest.fixture(scope="module", params=[12, 16, 32], ids=["fat12", "fat16", "fat32"])
def built(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Built:
    return _build(request.param, tmp_path_factory)


@pytest.fixture(scope="module")
def built32(tmp_path_factory: pytest.TempPathFactory) -> Built:
    return _build(32, tmp_path_factory)


def sectors_of(vol: FatVolume, entry: FsEntry) -> list[int]:
    """Sector addresses our extents cover, in file order."""
    info = vol.info
    per = info.cluster_size // info.sector_size
    out = []
    for x in entry.extents:
        assert x.lcn is not None
        first = (info.cluster_base + x.lcn * info.cluster_size) // info.sector_size
        out.extend(range(first, first + x.length * per))
    return out


# ------------------------------------------------------------------------ against TSK


def test_kind_geometry_and_label_match_fsstat(built: Built) -> None:
    text = F.run("fsstat", built.img)
    info = built.vol.info
    assert re.search(r"^File System Type: (FAT\d+)", text, re.M)[1].lower() == info.kind  # type: ignore[index]
    assert int(re.search(r"^Volume ID: (0x[0-9a-f]+)", text, re.M)[1], 16) == info.serial  # type: ignore[index]
    label = re.search(r"^Volume Label \(Root Directory\): (.*)$", text, re.M)[1].strip()  # type: ignore[index]
    assert label == info.label
    assert int(re.search(r"^Sector Size: (\d+)", text, re.M)[1]) == info.sector_size  # type: ignore[index]
    assert int(re.search(r"^Cluster Size: (\d+)", text, re.M)[1]) == info.cluster_size  # type: ignore[index]
    first = int(re.search(r"Cluster Area: (\d+) - (\d+)", text)[1])  # type: ignore[index]
    assert info.cluster_offset(2) == first * info.sector_size
    last = int(re.search(r"Total Cluster Range: 2 - (\d+)", text)[1])  # type: ignore[index]
    assert info.total_clusters == last + 1
    assert info.size == built.img.stat().st_size


def tsk_view(path: str, tsk_path: str) -> str:
    """Our path as TSK prints it. The one deliberate difference: in a name that is only an 8.3
    short name, TSK prints each non-ASCII character as '^' ("été.txt" stored as "ÉTÉ.TXT" plus
    the NT lower-case flag, no LFN, is "^t^.txt" to TSK); we decode code page 437 as Windows and
    Linux do."""
    ours = path.split("/")
    theirs = tsk_path.split("/")
    if len(ours) != len(theirs):
        return path
    return "/".join(
        t if t != o and re.sub(r"[^\x00-\x7f]", "^", o) == t else o
        for o, t in zip(ours, theirs, strict=True)
    )


def test_paths_types_and_inodes_match_fls(built: Built) -> None:
    by_inode = {t.inode: t for t in built.tsk.values()}
    assert {e.inode for e in built.entries} == set(by_inode)
    assert len({e.inode for e in built.entries}) == len(built.entries)
    for e in built.entries:
        tsk = by_inode[e.inode]
        assert (tsk_view(e.path, tsk.path), e.type) == (tsk.path, tsk.type)
    # everything we wrote is there under its exact (case-preserved, unicode) name
    assert set(built.files) <= {e.path for e in built.entries}
    differing = {e.path for e in built.entries if e.path != by_inode[e.inode].path}
    assert differing == {"été.txt", "über", "über/Größe.bin"}


def test_parents_come_before_children(built: Built) -> None:
    seen = {""}
    for e in built.entries:
        parent = e.path.rpartition("/")[0]
        assert parent in seen, e.path
        if e.type == "dir":
            seen.add(e.path)
    assert any(e.path.count("/") == 20 for e in built.entries)  # d01/.../d20/leaf.txt


def test_extents_sizes_and_times_match_istat(built: Built) -> None:
    vol = built.vol
    for e in built.entries:
        tsk = F.istat(built.img, e.inode)
        ours = sectors_of(vol, e)
        listed = [s for s in tsk.sectors if s]
        if e.type == "file":
            assert tsk.size == e.size, e.path
            # istat lists size // sector_size + 1 sectors (one more than needed when the size
            # is a whole number of sectors), then zeros to the end of the last cluster
            assert len(tsk.sectors) == len(ours), e.path
            assert listed == ours[: min(e.size // vol.info.sector_size + 1, len(ours))], e.path
        else:
            assert listed == ours, e.path
            assert tsk.size == len(ours) * vol.info.sector_size
        assert (e.mtime, e.atime) == (tsk.written, tsk.accessed), e.path
        assert e.crtime is not None and tsk.created is not None
        assert e.crtime.replace(microsecond=0) == tsk.created.replace(microsecond=0), e.path
        assert e.ctime is None and e.resident is None


def test_content_size_and_mtime(built: Built) -> None:
    by_path = built.by_path
    for path, data in built.files.items():
        entry = by_path[path]
        assert built.content[path] == data, path
        assert entry.size == len(data)
        assert entry.type == "file"
        if not path.startswith(("big", "frag")):
            assert entry.mtime == MTIME, path
        assert entry.atime is not None  # FAT keeps the access date only
        assert entry.atime.time() == datetime.min.time()


def test_fragmented_file_has_several_extents(built: Built) -> None:
    big = built.by_path["big.bin"]
    assert len(big.extents) >= 3
    vcn = 0
    for x in big.extents:
        assert x.vcn == vcn and x.length > 0
        vcn += x.length
    assert vcn * built.vol.info.cluster_size >= big.size
    lcns = [x.lcn for x in big.extents]
    assert len(set(lcns)) == len(lcns)


def test_multi_cluster_directory(built: Built) -> None:
    bigdir = built.by_path["bigdir"]
    assert sum(x.length for x in bigdir.extents) > 1
    names = [e.path for e in built.entries if e.path.startswith("bigdir/")]
    assert sorted(names) == [f"bigdir/entry with a long name {i:03d}.txt" for i in range(40)]
    inodes = [e.inode for e in built.entries if e.path.startswith("bigdir/")]
    assert inodes == sorted(inodes)  # slot order


def test_used_runs_cover_exactly_the_tree(built: Built) -> None:
    vol = built.vol
    covered: set[int] = set()
    for e in built.entries:
        for x in e.extents:
            assert x.lcn is not None
            clusters = set(range(x.lcn, x.lcn + x.length))
            assert not covered & clusters, f"{e.path} shares clusters"
            covered |= clusters
    used = {c for start, n in built.used for c in range(start, start + n)}
    assert built.used == coalesce(built.used)
    extra = used - covered
    assert covered <= used
    if vol.kind == "fat32":  # the root directory's own chain
        root = F.istat(built.img, 2).sectors
        per = vol.info.cluster_size // vol.info.sector_size
        root_clusters = {
            (s * vol.info.sector_size - vol.info.cluster_base) // vol.info.cluster_size
            for s in root[::per]
        }
        assert extra == root_clusters
    else:
        assert extra == set()
    assert built.unowned == []


# ------------------------------------------------------------------- more real images


def test_many_small_files(tmp_path: Path) -> None:
    img = F.mkfs(tmp_path / "many.img", 16, 20480)
    files = {
        f"dir{d}/file_{i:04d}.txt": f"{d}:{i}\n".encode() for d in range(6) for i in range(100)
    }
    files.update({f"ROOT{i:03d}.TXT": b"r" for i in range(200)})  # fills the fixed FAT16 root
    F.write_tree(tmp_path / "src", files, MTIME.timestamp())
    for child in sorted((tmp_path / "src").iterdir()):
        F.mcopy(img, child)
    with open(img, "rb") as fh:
        vol = FatVolume.open(fh)
        entries = list(vol.entries())
        assert {e.path: e.inode for e in entries} == {p: t.inode for p, t in F.fls(img).items()}
        by_path = {e.path: e for e in entries}
        for path, data in files.items():
            assert vol.read_file(by_path[path]) == data
        for e in entries[::50]:
            tsk = F.istat(img, e.inode)
            listed = [s for s in tsk.sectors if s]
            ours = sectors_of(vol, e)
            assert len(tsk.sectors) == len(ours) and listed == ours[: len(listed)], e.path


@pytest.mark.parametrize(("bits", "sector", "size_kib"), [(12, 4096, 8192), (16, 2048, 16384)])
def test_large_sectors_number_slots_like_tsk(
    tmp_path: Path, bits: int, sector: int, size_kib: int
) -> None:
    """TSK numbers slots per sector: 64 or 128 of them per sector here, not 16."""
    img = F.mkfs(tmp_path / "big-sector.img", bits, size_kib, "-S", str(sector), "-s", "1")
    files = {f"sub/file number {i:02d}.txt": _bytes(i, 300 * i) for i in range(30)}
    files["ROOT.TXT"] = b"root"
    F.write_tree(tmp_path / "src", files, MTIME.timestamp())
    for child in sorted((tmp_path / "src").iterdir()):
        F.mcopy(img, child)
    with open(img, "rb") as fh:
        vol = FatVolume.open(fh)
        assert (vol.kind, vol.info.sector_size) == (f"fat{bits}", sector)
        entries = list(vol.entries())
        assert {e.path: e.inode for e in entries} == {p: t.inode for p, t in F.fls(img).items()}
        for e in entries[::5]:
            tsk = F.istat(img, e.inode)
            listed = [s for s in tsk.sectors if s]
            assert listed == sectors_of(vol, e)[: len(listed)], e.path
            if e.type == "file":
                assert vol.read_file(e) == files[e.path]


def test_volume_inside_a_larger_image(tmp_path: Path, built_small: Path) -> None:
    raw = built_small.read_bytes()
    pad = 1 << 20
    with open(built_small, "rb") as fh:
        plain = [(e.path, e.inode, e.extents) for e in FatVolume.open(fh).entries()]
    image = io.BytesIO(b"\xaa" * pad + raw + b"\x55" * 4096)
    vol = FatVolume.open(image, offset=pad)
    entries = list(vol.entries())
    assert [(e.path, e.inode, e.extents) for e in entries] == plain
    assert vol.read_file(next(e for e in entries if e.path == "hello.txt")) == b"hello\n"


@pytest.fixture
def built_small(tmp_path: Path) -> Path:
    """A small FAT12 image with LFNs, a subdirectory and a 3-cluster file."""
    img = F.mkfs(tmp_path / "small.img", 12, 1024, "-s", "1", "-n", "TINY")
    files = {
        "hello.txt": b"hello\n",
        "Long File Name.txt": b"lfn\n",
        "sub/inner file.bin": _bytes(7, 1400),
        "sub/deeper/x.txt": b"x",
    }
    F.write_tree(tmp_path / "src", files, MTIME.timestamp())
    for child in sorted((tmp_path / "src").iterdir()):
        F.mcopy(img, child)
    return img


def _slot_offset(raw: bytes | bytearray, inode: int) -> int:
    """Byte offset of the directory slot TSK numbers `inode` (the numbering is linear)."""
    boot = L.BOOT_SECTOR_32.parse(bytes(raw[:512]))
    bpb = boot.bpb
    fat_size = bpb.fat_size_16 or boot.fat32.fat_size_32
    first_data = bpb.reserved_sectors + bpb.num_fats * fat_size
    return first_data * bpb.bytes_per_sector + (inode - 3) * L.DIR_ENTRY_SIZE


def _set_fat(raw: bytearray, vol: FatVolume, cluster: int, value: int) -> None:
    """Write FAT entry `cluster` in every FAT copy of the image bytes."""
    bpb = L.BPB.parse(bytes(raw[:36]))
    fat_size = bpb.fat_size_16 or L.BOOT_SECTOR_32.parse(bytes(raw[:512])).fat32.fat_size_32
    for n in range(bpb.num_fats):
        base = (bpb.reserved_sectors + n * fat_size) * bpb.bytes_per_sector
        if vol.kind == "fat12":
            pos = base + cluster * 3 // 2
            pair = raw[pos] | raw[pos + 1] << 8
            pair = (pair & 0xF000) | value if cluster % 2 == 0 else (pair & 0x000F) | value << 4
            raw[pos : pos + 2] = pair.to_bytes(2, "little")
        elif vol.kind == "fat16":
            struct.pack_into("<H", raw, base + 2 * cluster, value)
        else:
            struct.pack_into("<I", raw, base + 4 * cluster, value)


def _open(raw: bytes | bytearray) -> FatVolume:
    return FatVolume.open(io.BytesIO(bytes(raw)))


def _walk_all(vol: FatVolume) -> list[FsEntry]:
    entries = list(vol.entries())
    for e in entries:
        vol.read_file(e)
    vol.used_runs()
    vol.unowned_runs()
    return entries


def test_lost_chain_is_unowned(built_small: Path) -> None:
    raw = bytearray(built_small.read_bytes())
    vol = _open(raw)
    inner = next(e for e in vol.entries() if e.path == "sub/inner file.bin")
    raw[_slot_offset(raw, inner.inode)] = L.SLOT_FREE  # drop the name, keep the FAT chain
    vol = _open(raw)
    assert "sub/inner file.bin" not in {e.path for e in vol.entries()}
    assert vol.unowned_runs() == [(x.lcn, x.length) for x in inner.extents]
    assert vol.used_runs() == _open(built_small.read_bytes()).used_runs()


def test_lfn_checksum_mismatch_falls_back_to_short_name(built_small: Path, tmp_path: Path) -> None:
    raw = bytearray(built_small.read_bytes())
    vol = _open(raw)
    entry = next(e for e in vol.entries() if e.path == "Long File Name.txt")
    pos = _slot_offset(raw, entry.inode)
    short = L.DIR_ENTRY.parse(bytes(raw[pos : pos + 32]))
    assert short.name == b"LONGFI~1"
    raw[pos + 7] = ord("2")  # LONGFI~2: the LFN slots' checksum no longer matches
    names = {e.path for e in _open(raw).entries()}
    assert "LONGFI~2.TXT" in names and "Long File Name.txt" not in names
    # Known difference: TSK 4.11 never checks the checksum and keeps the stale long name;
    # Windows and Linux show the short name, as we do.
    img = tmp_path / "mismatch.img"
    img.write_bytes(raw)
    assert F.fls(img)["Long File Name.txt"].inode == entry.inode


def test_lfn_with_a_surrogate_pair_matches_fls(built_small: Path, tmp_path: Path) -> None:
    """mtools cannot write characters outside the BMP: rewrite an LFN's slots by hand."""
    raw = bytearray(built_small.read_bytes())
    entry = next(e for e in _open(raw).entries() if e.path == "Long File Name.txt")
    pos = _slot_offset(raw, entry.inode)
    name = "😀 smiling face.txt"  # 19 UTF-16 units: two slots
    units = name.encode("utf-16-le") + b"\0\0" + b"\xff\xff" * 6
    for seq, slot_pos in ((0x42, pos - 64), (0x01, pos - 32)):
        lfn = L.LFN_ENTRY.parse(bytes(raw[slot_pos : slot_pos + 32]))
        assert lfn.seq == seq and lfn.attr == L.ATTR_LFN
        piece = units[26 * ((seq & 0x1F) - 1) :][:26]
        lfn.name1, lfn.name2, lfn.name3 = piece[:10], piece[10:22], piece[22:26]
        raw[slot_pos : slot_pos + 32] = L.LFN_ENTRY.build(lfn)
    img = tmp_path / "emoji.img"
    img.write_bytes(raw)
    ours = {e.inode: e.path for e in _open(raw).entries()}
    assert ours[entry.inode] == name
    assert {t.inode: t.path for t in F.fls(img).values()} == ours


def test_orphan_lfn_slots_do_not_name_the_next_file(built_small: Path) -> None:
    raw = bytearray(built_small.read_bytes())
    vol = _open(raw)
    entry = next(e for e in vol.entries() if e.path == "Long File Name.txt")
    pos = _slot_offset(raw, entry.inode)
    raw[pos] = L.SLOT_FREE  # delete only the short entry: its LFN slots are orphans
    names = {e.path for e in _open(raw).entries()}
    assert "Long File Name.txt" not in names
    assert {"hello.txt", "sub", "sub/inner file.bin", "sub/deeper", "sub/deeper/x.txt"} <= names


# --------------------------------------------------------------------------- hostile


def _refused(raw: bytes | bytearray, error: type[FsError], match: str = "") -> FsError:
    start = time.monotonic()
    with pytest.raises(error, match=match) as caught:
        _walk_all(_open(raw))
    assert time.monotonic() - start < FAST
    return caught.value


@pytest.mark.parametrize("bps", [0, 100, 256, 768, 8192, 0xFFFF])
def test_bad_bytes_per_sector(built_small: Path, bps: int) -> None:
    raw = bytearray(built_small.read_bytes())
    struct.pack_into("<H", raw, 11, bps)
    _refused(raw, BadBootSector, "bytes per sector")


@pytest.mark.parametrize(
    ("offset", "fmt", "value", "match"),
    [
        (13, "<B", 0, "sectors per cluster"),
        (13, "<B", 3, "sectors per cluster"),
        (14, "<H", 0, "reserved"),
        (16, "<B", 0, "no FAT"),
        (19, "<H", 0, "total sector"),  # and total_sectors_32 is 0 on this small volume
        (22, "<H", 0, "FAT size|past the volume"),  # then bytes 36-39 are read as FAT32's
        (22, "<H", 3000, "past the volume"),  # FATs larger than the volume
        (17, "<H", 0, "no root directory"),
        (19, "<H", 4000, "image holds"),  # declares more sectors than the image has
    ],
)
def test_bad_boot_sector_fields(
    built_small: Path, offset: int, fmt: str, value: int, match: str
) -> None:
    raw = bytearray(built_small.read_bytes())
    struct.pack_into(fmt, raw, offset, value)
    _refused(raw, BadBootSector, match)


def test_not_a_fat_volume() -> None:
    with pytest.raises(UnknownFilesystem):
        FatVolume.open(io.BytesIO(bytes(64 * 1024)))
    with pytest.raises(UnknownFilesystem):
        FatVolume.open(io.BytesIO(b"\xeb\x52\x90NTFS    " + bytes(1024)))
    with pytest.raises(UnknownFilesystem):
        FatVolume.open(io.BytesIO(b"\xeb\x3c\x90"))


def _small_and_inner(built_small: Path) -> tuple[bytearray, FatVolume, FsEntry]:
    raw = bytearray(built_small.read_bytes())
    vol = _open(raw)
    inner = next(e for e in vol.entries() if e.path == "sub/inner file.bin")
    assert [x.length for x in inner.extents] == [3]
    return raw, vol, inner


def test_chain_looping_to_itself(built_small: Path) -> None:
    raw, vol, inner = _small_and_inner(built_small)
    first = inner.extents[0].lcn
    assert first is not None
    _set_fat(raw, vol, first + 2, first)
    _refused(raw, CorruptStructure, "loops back")
    _set_fat(raw, vol, first, first)  # a one-cluster cycle
    _refused(raw, CorruptStructure, "loops back")


def test_chain_past_the_last_cluster(built_small: Path) -> None:
    raw, vol, inner = _small_and_inner(built_small)
    first = inner.extents[0].lcn
    assert first is not None
    past = vol.info.total_clusters + 1
    assert past < 0xFF7
    _set_fat(raw, vol, first, past)
    _refused(raw, CorruptStructure, "outside")


@pytest.mark.parametrize(("value", "match"), [(0, "free cluster"), (0xFF7, "bad cluster")])
def test_free_or_bad_cluster_inside_a_chain(built_small: Path, value: int, match: str) -> None:
    raw, vol, inner = _small_and_inner(built_small)
    first = inner.extents[0].lcn
    assert first is not None
    _set_fat(raw, vol, first + 1, value)
    _refused(raw, CorruptStructure, match)


def test_chain_shorter_or_much_longer_than_size(built_small: Path) -> None:
    raw, vol, inner = _small_and_inner(built_small)
    pos = _slot_offset(raw, inner.inode)
    struct.pack_into("<I", raw, pos + 28, 1)  # 1 byte but a 3-cluster chain: tolerated
    vol = _open(raw)
    entry = next(e for e in vol.entries() if e.path == "sub/inner file.bin")
    assert vol.read_file(entry) == _bytes(7, 1400)[:1]
    assert [x.length for x in entry.extents] == [1]
    struct.pack_into("<I", raw, pos + 28, 5000)  # needs 10 clusters, the chain has 3
    _refused(raw, CorruptStructure, "size needs")
    # a chain of 40 clusters for a 1-byte file: far longer than the size allows
    free_from = max(s + n for s, n in vol.used_runs())
    clusters = list(range(free_from, free_from + 40))
    struct.pack_into("<I", raw, pos + 28, 1)
    struct.pack_into("<H", raw, pos + 26, clusters[0])
    for a, b in zip(clusters, clusters[1:], strict=False):
        _set_fat(raw, vol, a, b)
    _set_fat(raw, vol, clusters[-1], 0xFFF)
    _refused(raw, CorruptStructure, "longer than")


def test_directory_loop_to_an_ancestor(built_small: Path) -> None:
    raw = bytearray(built_small.read_bytes())
    vol = _open(raw)
    entries = {e.path: e for e in vol.entries()}
    sub, deeper = entries["sub"], entries["sub/deeper"]
    assert sub.extents[0].lcn is not None
    struct.pack_into("<H", raw, _slot_offset(raw, deeper.inode) + 26, sub.extents[0].lcn)
    _refused(raw, CorruptStructure, "sub/deeper")


def test_fat32_directory_pointing_back_at_the_root(built32: Built) -> None:
    raw = bytearray(built32.img.read_bytes())
    d02 = built32.by_path["d01/d02"]
    pos = _slot_offset(raw, d02.inode)
    struct.pack_into("<H", raw, pos + 26, 2)  # root cluster
    struct.pack_into("<H", raw, pos + 20, 0)
    _refused(raw, CorruptStructure, "d01/d02")


def _dir_entry(name: bytes, attr: int, cluster: int, size: int = 0) -> bytes:
    """A short directory entry built with the layout's declaration (2021-03-04 05:06:08)."""
    date = (2021 - 1980) << 9 | 3 << 5 | 4
    clock = 5 << 11 | 6 << 5 | 4
    return L.DIR_ENTRY.build(
        {
            "name": name[:8].ljust(8),
            "ext": name[8:].ljust(3),
            "attr": attr,
            "nt_flags": 0,
            "create_tenths": 0,
            "create_time": clock,
            "create_date": date,
            "access_date": date,
            "cluster_high": cluster >> 16,
            "write_time": clock,
            "write_date": date,
            "cluster_low": cluster & 0xFFFF,
            "size": size,
        }
    )


def test_absurdly_deep_tree_is_refused(tmp_path: Path) -> None:
    """2,100 nested one-letter directories (crafted): the path outgrows MAX_PATH."""
    img = F.mkfs(tmp_path / "deep.img", 12, 2048, "-s", "1")
    raw = bytearray(img.read_bytes())
    vol = _open(raw)
    depth = 2100
    root = _slot_offset(raw, 3)
    raw[root : root + 32] = _dir_entry(b"A", L.ATTR_DIRECTORY, 2)
    for k in range(depth):
        cluster = 2 + k
        pos = vol.info.cluster_offset(cluster)
        parent = 0 if k == 0 else cluster - 1
        raw[pos : pos + 64] = _dir_entry(b".", L.ATTR_DIRECTORY, cluster) + _dir_entry(
            b"..", L.ATTR_DIRECTORY, parent
        )
        if k + 1 < depth:
            raw[pos + 64 : pos + 96] = _dir_entry(b"A", L.ATTR_DIRECTORY, cluster + 1)
        _set_fat(raw, vol, cluster, 0xFFF)
    err = _refused(raw, CorruptStructure, "path longer than")
    assert "A/A/A" in str(err)
    # the same tree cut to 1,000 levels parses, each level numbered as TSK would
    pos = vol.info.cluster_offset(2 + 999)
    raw[pos + 64 : pos + 96] = bytes(32)
    entries = list(_open(raw).entries())
    assert len(entries) == 1000 and entries[-1].path == "/".join(["A"] * 1000)
    assert entries[1].inode == vol.info.cluster_offset(2) // 32 - _slot_offset(raw, 3) // 32 + 5


def test_truncated_image(built_small: Path) -> None:
    raw = built_small.read_bytes()
    _refused(raw[: len(raw) // 2], BadBootSector, "image holds")


# ---------------------------------------------------------------- property-based tests


class _Mutable:
    """One in-memory image, mutated and restored around each hypothesis example."""

    def __init__(self, raw: bytes) -> None:
        self.raw = raw
        self.buf = io.BytesIO(raw)

    def check(self, mutations: list[tuple[int, int]]) -> None:
        for pos, value in mutations:
            self.buf.seek(pos)
            self.buf.write(bytes([value]))
        try:
            start = time.monotonic()
            try:
                _walk_all(FatVolume.open(self.buf))
            except FsError:
                pass
            assert time.monotonic() - start < FAST
        finally:
            for pos, _ in mutations:
                self.buf.seek(pos)
                self.buf.write(self.raw[pos : pos + 1])


def _hot_regions(raw: bytes) -> list[tuple[int, int]]:
    """Byte ranges where a flipped byte matters: the BPB, the head of the active FAT, the root
    directory and the first slots of every directory."""
    bpb = L.BPB.parse(raw)
    fat = bpb.reserved_sectors * bpb.bytes_per_sector
    vol = FatVolume.open(io.BytesIO(raw))
    regions = [(0, 89), (fat, fat + 4 * 64 - 1)]
    if vol.kind != "fat32":
        root = _slot_offset(raw, 3)
        regions.append((root, root + 511))
    for e in vol.entries():
        if e.type == "dir":
            for x in e.extents:
                assert x.lcn is not None
                regions.append(
                    (vol.info.cluster_offset(x.lcn), vol.info.cluster_offset(x.lcn) + 255)
                )
    return regions


def _mutations(raw: bytes, max_size: int = 12) -> st.SearchStrategy[list[tuple[int, int]]]:
    spots = st.sampled_from(_hot_regions(raw)).flatmap(lambda r: st.integers(*r))
    return st.lists(st.tuples(spots, st.integers(0, 255)), min_size=1, max_size=max_size)


@pytest.fixture(scope="module")
def mutable12(tmp_path_factory: pytest.TempPathFactory) -> _Mutable:
    tmp = tmp_path_factory.mktemp("mut12")
    img = F.mkfs(tmp / "m.img", 12, 512, "-s", "1")
    files = {
        "a.txt": b"a",
        "Long Name Number One.txt": _bytes(8, 900),
        "sub/Deeper Name.bin": _bytes(9, 1500),
        "sub/x/y/z.txt": b"z",
        "é.txt": b"",
    }
    F.write_tree(tmp / "src", files, MTIME.timestamp())
    for child in sorted((tmp / "src").iterdir()):
        F.mcopy(img, child)
    return _Mutable(img.read_bytes())


@pytest.fixture(scope="module")
def mutable32(tmp_path_factory: pytest.TempPathFactory) -> _Mutable:
    tmp = tmp_path_factory.mktemp("mut32")
    img = F.mkfs(tmp / "m.img", 32, 34000, "-s", "1")
    files = {"a.txt": b"a", "Long Name.txt": _bytes(10, 1300), "sub/dir/f.bin": _bytes(11, 700)}
    F.write_tree(tmp / "src", files, MTIME.timestamp())
    for child in sorted((tmp / "src").iterdir()):
        F.mcopy(img, child)
    return _Mutable(img.read_bytes())


_HYPO = settings(
    max_examples=300,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    derandomize=True,
)


@_HYPO
@given(data=st.data())
def test_mutated_fat12_parses_or_fails_typed(mutable12: _Mutable, data: st.DataObject) -> None:
    """Random byte changes in the hot spots of a real FAT12 image: parse, or an FsError."""
    mutable12.check(data.draw(_mutations(mutable12.raw)))


@settings(_HYPO, max_examples=150)
@given(data=st.data())
def test_mutated_fat32_parses_or_fails_typed(mutable32: _Mutable, data: st.DataObject) -> None:
    """The same for FAT32: BPB, FAT head, root and subdirectory clusters."""
    mutable32.check(data.draw(_mutations(mutable32.raw)))


@_HYPO
@given(data=st.data())
def test_mutated_fat12_anywhere_in_the_metadata(mutable12: _Mutable, data: st.DataObject) -> None:
    """Byte changes anywhere from the boot sector to the end of the first data clusters."""
    end = FatVolume.open(io.BytesIO(mutable12.raw)).info.cluster_offset(14)
    spots = st.integers(0, end - 1)
    mutable12.check(data.draw(st.lists(st.tuples(spots, st.integers(0, 255)), max_size=12)))


@_HYPO
@given(slots=st.lists(st.binary(min_size=32, max_size=32), min_size=1, max_size=24))
def test_random_directory_slots(mutable12: _Mutable, slots: list[bytes]) -> None:
    """Whole random 32-byte slots written over the root directory."""
    root = _slot_offset(mutable12.raw, 3)  # the first root directory slot
    mutable12.check([(root + i, b) for i, b in enumerate(b"".join(slots))])


# ------------------------------------------------------------------ layout round trips


u8 = st.integers(0, 0xFF)
u16 = st.integers(0, 0xFFFF)
u32 = st.integers(0, 0xFFFFFFFF)


def _bytes_of(n: int) -> st.SearchStrategy[bytes]:
    return st.binary(min_size=n, max_size=n)


@given(
    st.fixed_dictionaries(
        {
            "name": _bytes_of(8),
            "ext": _bytes_of(3),
            "attr": u8,
            "nt_flags": u8,
            "create_tenths": u8,
            "create_time": u16,
            "create_date": u16,
            "access_date": u16,
            "cluster_high": u16,
            "write_time": u16,
            "write_date": u16,
            "cluster_low": u16,
            "size": u32,
        }
    )
)
def test_dir_entry_round_trip_and_fast_path(fields: dict) -> None:
    raw = L.DIR_ENTRY.build(fields)
    assert len(raw) == 32
    parsed = L.DIR_ENTRY.parse(raw)
    assert {k: parsed[k] for k in fields} == fields
    assert L.DIR_ENTRY_FAST.unpack(raw) == tuple(fields[sub.name] for sub in L.DIR_ENTRY.subcons)


@given(
    st.fixed_dictionaries(
        {
            "seq": u8,
            "name1": _bytes_of(10),
            "attr": u8,
            "type": u8,
            "checksum": u8,
            "name2": _bytes_of(12),
            "first_cluster": u16,
            "name3": _bytes_of(4),
        }
    )
)
def test_lfn_entry_round_trip_and_fast_path(fields: dict) -> None:
    raw = L.LFN_ENTRY.build(fields)
    parsed = L.LFN_ENTRY.parse(raw)
    assert {k: parsed[k] for k in fields} == fields
    assert L.LFN_ENTRY_FAST.unpack(raw) == tuple(fields[sub.name] for sub in L.LFN_ENTRY.subcons)


@given(
    bpb=st.fixed_dictionaries(
        {
            "jump": _bytes_of(3),
            "oem_name": _bytes_of(8),
            "bytes_per_sector": u16,
            "sectors_per_cluster": u8,
            "reserved_sectors": u16,
            "num_fats": u8,
            "root_entries": u16,
            "total_sectors_16": u16,
            "media": u8,
            "fat_size_16": u16,
            "sectors_per_track": u16,
            "num_heads": u16,
            "hidden_sectors": u32,
            "total_sectors_32": u32,
        }
    ),
    fat32=st.fixed_dictionaries(
        {
            "fat_size_32": u32,
            "ext_flags": u16,
            "fs_version": u16,
            "root_cluster": u32,
            "fs_info_sector": u16,
            "backup_boot_sector": u16,
            "reserved": _bytes_of(12),
        }
    ),
    ebpb=st.fixed_dictionaries(
        {
            "drive_number": u8,
            "reserved1": u8,
            "boot_signature": u8,
            "volume_id": u32,
            "volume_label": _bytes_of(11),
            "fs_type": _bytes_of(8),
        }
    ),
)
def test_boot_sector_round_trip(bpb: dict, fat32: dict, ebpb: dict) -> None:
    raw32 = L.BOOT_SECTOR_32.build({"bpb": bpb, "fat32": fat32, "ebpb": ebpb})
    assert len(raw32) == 90
    parsed = L.BOOT_SECTOR_32.parse(raw32)
    assert {k: parsed.bpb[k] for k in bpb} == bpb
    assert {k: parsed.fat32[k] for k in fat32} == fat32
    assert {k: parsed.ebpb[k] for k in ebpb} == ebpb
    raw16 = L.BOOT_SECTOR_16.build({"bpb": bpb, "ebpb": ebpb})
    assert len(raw16) == 62 and raw16[:36] == raw32[:36]
    assert {k: L.BOOT_SECTOR_16.parse(raw16).ebpb[k] for k in ebpb} == ebpb


def test_fsinfo_round_trip_against_mkfs(mutable32: _Mutable) -> None:
    boot = L.BOOT_SECTOR_32.parse(mutable32.raw[:512])
    pos = boot.fat32.fs_info_sector * boot.bpb.bytes_per_sector
    sector = mutable32.raw[pos : pos + 512]
    info = L.FSINFO.parse(sector)
    assert (info.lead_signature, info.struct_signature, info.trail_signature) == (
        L.FSINFO_LEAD,
        L.FSINFO_STRUCT,
        L.FSINFO_TRAIL,
    )
    assert L.FSINFO.build(info) == sector


def test_real_boot_sector_fields(built: Built) -> None:
    raw = built.img.read_bytes()[:512]
    boot = L.BOOT_SECTOR_32.parse(raw)
    text = F.run("fsstat", built.img)
    assert boot.bpb.oem_name.decode() == re.search(r"^OEM Name: (.*)$", text, re.M)[1]  # type: ignore[index]
    assert raw[510:512] == L.SIGNATURE
    fat0 = re.search(r"\* FAT 0: (\d+) - (\d+)", text)
    assert fat0 and int(fat0[1]) == boot.bpb.reserved_sectors


# ------------------------------------------------------------------------ decoders


def test_dos_datetime() -> None:
    date = (2021 - 1980) << 9 | 3 << 5 | 4
    clock = 5 << 11 | 6 << 5 | 4  # 05:06:08
    assert L.dos_datetime(date, clock) == MTIME
    assert L.dos_datetime(date, clock, 150) == MTIME.replace(second=9, microsecond=500_000)
    assert L.dos_datetime(0, clock) is None
    assert L.dos_datetime((2021 - 1980) << 9 | 13 << 5 | 1) is None  # month 13
    assert L.dos_datetime((2021 - 1980) << 9 | 2 << 5 | 29) is None  # 29 Feb 2021
    assert L.dos_datetime((2020 - 1980) << 9 | 2 << 5 | 29) == datetime(2020, 2, 29, tzinfo=UTC)
    assert L.dos_datetime(date, 24 << 11) is None
    assert L.dos_datetime(date, 30) is None  # 60 seconds
    assert L.dos_datetime(date, clock, 200) is None


def test_short_and_long_names() -> None:
    assert L.short_name(b"README  ", b"TXT", 0) == "README.TXT"
    assert L.short_name(b"README  ", b"TXT", L.NT_LOWER_BASE) == "readme.TXT"
    assert L.short_name(b"README  ", b"TXT", L.NT_LOWER_EXT) == "README.txt"
    assert L.short_name(b"NOEXT   ", b"   ", 0x18) == "noext"
    assert L.short_name(b"\x05BC    ", b"   ", 0) == "\u03c3BC"  # 0x05 stands for 0xE5
    assert L.short_name(b"A/B\x01    ", b"   ", 0) == "A^B^"
    units = "Größe 😀.txt".encode("utf-16-le") + b"\0\0" + b"\xff\xff" * 6
    assert L.long_name([units[:26], units[26:]]) == "Größe 😀.txt"
    assert L.long_name(["a/b".encode("utf-16-le")]) == "a^b"
    assert L.lfn_checksum(b"LONGFI~1TXT") == L.lfn_checksum(bytearray(b"LONGFI~1TXT"))
    # reference value computed by hand from the specification's algorithm
    total = 0
    for byte in b"FOO     BAR":
        total = ((total >> 1) | ((total & 1) << 7)) + byte & 0xFF
    assert L.lfn_checksum(b"FOO     BAR") == total


def test_fast_format_refuses_what_it_cannot_express() -> None:
    from construct import GreedyBytes, Int16ub, Struct

    with pytest.raises(TypeError):
        L.fast_format(Struct("x" / Int16ub))
    with pytest.raises(TypeError):
        L.fast_format(Struct("x" / GreedyBytes))
    assert L.fast_format(L.DIR_ENTRY) == "<8s3sBBBHHHHHHHL"


def test_fat_table_decoding_and_runs() -> None:
    """FAT12 packing (two entries per three bytes), FAT32's ignored top nibble, run finding."""
    fat12 = bytes([0xF8, 0xFF, 0xFF, 0x03, 0x40, 0x00, 0xFF, 0x0F, 0x00, 0xF7, 0xFF, 0xFF])
    table = FatTable("fat12", fat12, 7)
    assert list(table.values) == [0xFF8, 0xFFF, 0x003, 0x004, 0xFFF, 0x000, 0xFF7, 0xFFF]
    assert table.allocated_runs() == [(2, 3), (7, 1)]
    owned = bytearray(8)
    owned[2] = owned[3] = 1
    assert table.allocated_runs(owned) == [(4, 1), (7, 1)]
    assert table.chain(2, 3, bytearray(8), "f") == [Extent(0, 2, 3)]
    fat32 = struct.pack("<5I", 0x0FFFFFF8, 0xFFFFFFFF, 0xF0000003, 0x1FFFFFFF, 0)
    table = FatTable("fat32", fat32, 4)
    assert list(table.values) == [0x0FFFFFF8, 0x0FFFFFFF, 3, 0x0FFFFFFF, 0]
    assert table.chain(2, None, bytearray(5), "d") == [Extent(0, 2, 2)]
    assert table.allocated_runs() == [(2, 2)]
    with pytest.raises(CorruptStructure):
        FatTable("fat16", b"\0" * 7, 4)
