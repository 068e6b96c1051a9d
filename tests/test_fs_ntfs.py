"""NTFS parser: real images made by mkntfs / ntfs-3g / ntfscp, checked against The Sleuth Kit
(fls, istat, blkls, fsstat); hostile images; construct round trips; property tests."""

from __future__ import annotations

import io
import math
import struct
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tapeflow.fs.errors import BadBootSector, CorruptStructure, FsError, UnknownFilesystem
from tapeflow.fs.model import FsEntry
from tapeflow.fs.ntfs import NtfsVolume
from tapeflow.fs.ntfs_layout import (
    ALIST_ENTRY,
    AT_ATTRIBUTE_LIST,
    AT_DATA,
    AT_INDEX_ALLOCATION,
    AT_INDEX_ROOT,
    ATTR,
    ATTRIBUTE_LIST_ENTRY,
    BOOT,
    BOOT_SECTOR,
    FILE_HDR,
    FILE_NAME,
    FILE_NAME_WITH_NAME,
    FILE_RECORD_HEADER,
    IBLOCK,
    IENTRY,
    IHDR,
    INDEX_BLOCK_HEADER,
    INDEX_ENTRY_HEADER,
    INDEX_ENTRY_NODE,
    INDEX_HEADER,
    INDEX_ROOT,
    IROOT,
    MAPPING_PAIRS,
    NONRES_TAIL,
    NONRESIDENT_ATTR_HEADER,
    RES_TAIL,
    RESIDENT_ATTR_HEADER,
    STANDARD_INFORMATION,
    UPDATE_SEQUENCE_ARRAY,
    FastStruct,
    apply_fixups,
    decode_runlist,
    encode_runlist,
    fast,
    filetime,
)
from tapeflow.fs.ntfs_lznt1 import decompress
from tapeflow.fs.ntfs_runs import bitmap_runs, subtract_runs
from tests import ntfsimages as imgs

# --- fixtures: real images -------------------------------------------------------------------


@dataclass
class Tree:
    """A built image, opened, with its entries and TSK's answers (istat cached per inode)."""

    built: imgs.Built
    vol: NtfsVolume
    entries: list[FsEntry]
    fls: list[imgs.FlsEntry]
    _istat: dict[int, imgs.IstatData] = field(default_factory=dict)

    def istat(self, inode: int) -> imgs.IstatData:
        if inode not in self._istat:
            self._istat[inode] = imgs.istat(self.built.img, inode)
        return self._istat[inode]

    def entry(self, path: str) -> FsEntry:
        return next(e for e in self.entries if e.path == path)


def _open_tree(built: imgs.Built) -> Iterator[Tree]:
    with open(built.img, "rb") as f:
        vol = NtfsVolume.open(f)
        yield Tree(built, vol, list(vol.entries()), imgs.fls_user_entries(built.img))


# (sector size, cluster size): 512-byte clusters (records span 2 clusters), 64 KiB clusters
# (index block VCNs count 512-byte units), 4 KiB sectors (4 KiB MFT records, 8 fixup strides)
CONFIGS = [(512, 4096), (512, 512), (512, 65536), (4096, 4096)]


@pytest.fixture(scope="module", params=CONFIGS, ids=lambda c: f"s{c[0]}-c{c[1]}")
def tree(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Tree]:
    """The tree image for one (sector, cluster) geometry, opened and listed once per module."""
    sector, cluster = request.param
    built = imgs.build_tree(tmp_path_factory.mktemp("ntfs"), cluster, sector, size_mb=64)
    yield from _open_tree(built)


@pytest.fixture(scope="module")
def mftfrag(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Tree]:
    """The volume whose $MFT continues in an extension record, opened and listed."""
    yield from _open_tree(imgs.build_fragmented_mft(tmp_path_factory.mktemp("ntfs")))


@pytest.fixture(scope="module")
def small(tmp_path_factory: pytest.TempPathFactory) -> imgs.Built:
    """A small volume (1 KiB clusters) used for damage and fuzz tests."""
    return imgs.build_small(tmp_path_factory.mktemp("ntfs"))


@pytest.fixture(scope="module")
def small_bytes(small: imgs.Built) -> bytes:
    """The small volume as bytes, to copy and damage."""
    return small.img.read_bytes()


def _clusters(entry: FsEntry) -> list[int]:
    """The entry's clusters in VCN order, sparse as 0 (istat's notation)."""
    out: list[int] = []
    for x in entry.extents:
        out += [0] * x.length if x.lcn is None else list(range(x.lcn, x.lcn + x.length))
    return out


def _istat_sample(tree: Tree) -> list[FsEntry]:
    """Every file except the bulk ones (one in ten small files, none of many/ and frag/pad/)."""
    out = []
    for e in tree.entries:
        if e.type != "file" or e.path.startswith(("many/", "frag/pad/")):
            continue
        if e.path.startswith("small/") and int(e.path[7:10]) % 10:
            continue
        out.append(e)
    return out


# --- the tree against TSK and against what was written ---------------------------------------


def test_paths_and_inodes_match_fls(tree: Tree) -> None:
    """Our user entries are exactly fls's (filtered as documented in ntfsimages), same inodes."""
    ours = sorted((e.path, e.inode, e.type == "dir") for e in tree.entries)
    theirs = sorted((e.path, e.inode, e.is_dir) for e in tree.fls)
    assert ours == theirs
    assert len(ours) > 600


def test_entries_are_what_was_written(tree: Tree) -> None:
    """Every path written through the mount or ntfscp is there with its type, size, content."""
    expected = tree.built.expected
    assert {e.path for e in tree.entries} == set(expected)
    for e in tree.entries:
        want = expected[e.path]
        if want is None:
            assert e.type == "dir" and e.size == 0 and not e.extents and e.resident is None
            continue
        assert e.type == "file"
        if e.path in tree.built.unchecked_content:
            continue
        assert e.size == len(want), e.path
        assert tree.vol.read_file(e) == want, e.path


def test_names_unicode_long_and_dos(tree: Tree) -> None:
    """Non-ASCII and 255-character names decode; a DOS 8.3 alias is not listed."""
    paths = {e.path for e in tree.entries}
    assert "unicodé 日本/café.txt" in paths and "unicodé 日本/日本語のファイル名.bin" in paths
    assert "L" * 255 in paths and "日" * 85 in paths
    dos = tree.entry("Long File Name.txt")
    names = [ln for ln in imgs.run("istat", tree.built.img, str(dos.inode)).splitlines()]
    assert "Name: LONGFI~1.TXT" in names  # the record really has a DOS name...
    assert not any("LONGFI~1" in p for p in paths)  # ...which entries() skips


def test_hard_link_listed_under_both_names(tree: Tree) -> None:
    """A hard link is one record with two names, each listed."""
    a, b = tree.entry("small/s007.txt"), tree.entry("big/hardlink.txt")
    assert a.inode == b.inode and a.resident == b.resident


def test_parents_come_first(tree: Tree) -> None:
    """entries() yields every directory before anything below it."""
    seen: set[str] = set()
    for e in tree.entries:
        parent = e.path.rpartition("/")[0]
        assert not parent or parent in seen, e.path
        seen.add(e.path)


def test_extents_and_resident_data_match_istat(tree: Tree) -> None:
    """Non-resident: our clusters in VCN order = istat's list (which stops at the file size);
    resident: istat says Resident and our bytes are the content."""
    cs = tree.vol.info.cluster_size
    for e in _istat_sample(tree):
        tsk = tree.istat(e.inode)
        assert tsk.size == e.size, e.path
        if e.resident is not None:
            assert tsk.resident and not e.extents, e.path
            if e.path not in tree.built.unchecked_content:
                assert e.resident == tree.built.expected[e.path]
            continue
        assert not tsk.resident, e.path
        ours = _clusters(e)
        assert len(tsk.clusters) == min(len(ours), math.ceil(e.size / cs)), e.path
        assert ours[: len(tsk.clusters)] == tsk.clusters, e.path


def test_times_match_istat(tree: Tree) -> None:
    """$STANDARD_INFORMATION times, UTC, truncated to microseconds like istat's print."""
    for e in _istat_sample(tree)[:25]:
        t = tree.istat(e.inode).times
        assert (e.crtime, e.mtime, e.ctime, e.atime) == (
            t["Created"],
            t["File Modified"],
            t["MFT Modified"],
            t["Accessed"],
        ), e.path
        assert e.mtime is not None and e.mtime.utcoffset() is not None
        assert abs(time.time() - e.mtime.timestamp()) < 3600


def test_special_files_have_the_structures_they_claim(tree: Tree) -> None:
    """The fixtures really made sparse, $ATTRIBUTE_LIST, fragmented and compressed files."""
    alist = tree.entry("frag/alist.bin")
    assert tree.istat(alist.inode).attribute_list
    pairs = 400 if tree.vol.info.sector_size == 512 else 1700
    assert any(x.lcn is None for x in alist.extents) and len(alist.extents) == 2 * pairs - 1
    assert sum(x.length for x in alist.extents if x.lcn is not None) == pairs
    holes = tree.entry("sparse/holes.bin")
    real = sum(x.length for x in holes.extents if x.lcn is not None)
    assert real * tree.vol.info.cluster_size < holes.size // 10
    if tree.vol.info.cluster_size <= 4096:  # NTFS compresses only up to 4 KiB clusters
        text = tree.entry("comp/text.txt")
        stored = sum(x.length for x in text.extents if x.lcn is not None)
        assert stored * tree.vol.info.cluster_size < text.size // 4


def test_used_runs_match_blkls(tree: Tree) -> None:
    """Set $Bitmap bits = the clusters TSK reports allocated."""
    used = {c for start, n in tree.vol.used_runs() for c in range(start, start + n)}
    assert used == imgs.blkls_allocated(tree.built.img)


def test_every_used_cluster_is_owned_on_tool_made_volumes(tree: Tree) -> None:
    """Real tools leave no allocated cluster without an owning attribute."""
    assert tree.vol.unowned_runs() == []
    assert tree.vol.problems == []


def test_volume_info_matches_fsstat(tree: Tree) -> None:
    """Geometry, label and serial agree with fsstat."""
    stat = dict(
        line.split(": ", 1)
        for line in imgs.run("fsstat", tree.built.img).splitlines()
        if ": " in line
    )
    info = tree.vol.info
    assert (info.kind, info.cluster_base, info.label) == ("ntfs", 0, "TAPEFLOW")
    assert info.cluster_size == int(stat["Cluster Size"])
    assert info.sector_size == int(stat["Sector Size"])
    assert f"0 - {info.total_clusters - 1}" == stat["Total Cluster Range"]
    assert tree.vol.record_size == int(stat["Size of MFT Entries"].split()[0])
    assert tree.vol.index_record_size == int(stat["Size of Index Records"].split()[0])
    assert f"{info.serial:016X}" == stat["Volume Serial Number"]
    assert info.size == (int(stat["Total Sector Range"].split(" - ")[1]) + 1) * info.sector_size


def test_map_is_faster_than_tsk(small: imgs.Built) -> None:
    """Our whole map (names, sizes, times, extents of every file) against TSK doing less: fls
    plus istat for only 30 files (TSK needs one istat per file for extents)."""
    t0 = time.perf_counter()
    with open(small.img, "rb") as f:
        vol = NtfsVolume.open(f)
        entries = list(vol.entries())
    ours = time.perf_counter() - t0
    t0 = time.perf_counter()
    imgs.run("fls", "-r", "-p", small.img)
    for e in entries[:30]:
        imgs.run("istat", small.img, str(e.inode))
    tsk = time.perf_counter() - t0
    assert len(entries) > 190
    assert ours < tsk, (ours, tsk)


def test_fragmented_mft_with_attribute_list(mftfrag: Tree) -> None:
    """$MFT whose runlist continues in extension record 15: our MFT runs = istat 0's clusters,
    and the whole tree (3,400 files) matches fls."""
    tsk = mftfrag.istat(0)
    assert tsk.attribute_list
    mft_clusters = [c for _v, lcn, n in mftfrag.vol.mft_runs for c in range(lcn, lcn + n)]
    assert mft_clusters == tsk.clusters
    assert len(mftfrag.vol.mft_runs) > 100
    ours = sorted((e.path, e.inode, e.type == "dir") for e in mftfrag.entries)
    assert ours == sorted((e.path, e.inode, e.is_dir) for e in mftfrag.fls)
    assert {e.path for e in mftfrag.entries} == set(mftfrag.built.expected)
    for e in mftfrag.entries[::97]:
        if e.type == "file":
            assert mftfrag.vol.read_file(e) == mftfrag.built.expected[e.path]
    assert mftfrag.vol.unowned_runs() == []


def test_file_fragmented_over_free_space_holes(mftfrag: Tree) -> None:
    """A file written into a nearly full volume whose free space is the holes left by deleting
    every other file: fragmented on disk, not sparse."""
    holes = mftfrag.entry("holes.bin")
    assert len(holes.extents) > 20 and all(x.lcn is not None for x in holes.extents)
    assert _clusters(holes) == mftfrag.istat(holes.inode).clusters
    assert mftfrag.vol.read_file(holes) == mftfrag.built.expected["holes.bin"]


def test_large_clusters_negative_sectors_per_cluster(tmp_path: Path) -> None:
    """mkntfs writes 256 KiB clusters as sectors-per-cluster byte 0xF7 (TSK 4.11 cannot open
    such a volume, so this one is checked against what was written only)."""
    built = imgs.build_large_clusters(tmp_path)
    raw = built.img.read_bytes()
    assert raw[0x0D] == 0xF7
    vol = NtfsVolume.open(io.BytesIO(raw))
    assert vol.info.cluster_size == 256 << 10
    entries = list(vol.entries())
    assert {e.path for e in entries} == set(built.expected)
    used = {c for s, n in vol.used_runs() for c in range(s, s + n)}
    for e in entries:
        if e.type == "file":
            assert vol.read_file(e) == built.expected[e.path]
            assert set(_clusters(e)) <= used
    assert vol.unowned_runs() == []


def test_volume_at_an_offset(small_bytes: bytes) -> None:
    """A volume inside a larger image (e.g. a partition) maps the same."""
    plain = NtfsVolume.open(io.BytesIO(small_bytes))
    shifted = NtfsVolume.open(io.BytesIO(bytes(1 << 20) + small_bytes), offset=1 << 20)
    assert [(e.path, e.extents) for e in plain.entries()] == [
        (e.path, e.extents) for e in shifted.entries()
    ]


# --- construct layouts -----------------------------------------------------------------------

LAYOUTS: list[tuple[str, object, FastStruct, bytes]] = [
    ("boot", BOOT_SECTOR, BOOT, b""),
    ("file_record", FILE_RECORD_HEADER, FILE_HDR, b"FILE"),
    ("attr_resident", RESIDENT_ATTR_HEADER, fast(RESIDENT_ATTR_HEADER), b""),
    ("attr_nonresident", NONRESIDENT_ATTR_HEADER, fast(NONRESIDENT_ATTR_HEADER), b""),
    ("std_info", STANDARD_INFORMATION, fast(STANDARD_INFORMATION), b""),
    ("file_name", FILE_NAME, fast(FILE_NAME), b""),
    ("alist_entry", ATTRIBUTE_LIST_ENTRY, ALIST_ENTRY, b""),
    ("index_root", INDEX_ROOT, IROOT, b""),
    ("index_header", INDEX_HEADER, IHDR, b""),
    ("index_block", INDEX_BLOCK_HEADER, IBLOCK, b"INDX"),
    ("index_entry", INDEX_ENTRY_HEADER, IENTRY, b""),
]


@pytest.mark.parametrize("name,layout,reader,magic", LAYOUTS, ids=[x[0] for x in LAYOUTS])
@settings(max_examples=40, deadline=None)
@given(data=st.data())
def test_layout_round_trip_and_fast_reader_agree(
    name: str, layout: object, reader: FastStruct, magic: bytes, data: st.DataObject
) -> None:
    """parse -> build -> parse is stable, and the derived struct reads the same fields."""
    raw = data.draw(st.binary(min_size=reader.size, max_size=reader.size))
    raw = magic + raw[len(magic) :]
    obj = layout.parse(raw)  # type: ignore[attr-defined]
    assert tuple(obj[n] for n in reader.names) == reader.unpack(raw)
    rebuilt = layout.build(obj)  # type: ignore[attr-defined]
    assert len(rebuilt) == reader.size
    assert reader.unpack(rebuilt) == reader.unpack(raw)


def test_tails_agree_with_full_headers() -> None:
    """The resident/non-resident tails are the full headers minus the common part."""
    raw = bytes(range(64))
    assert ATTR.unpack_from(raw) + RES_TAIL.unpack_from(raw, 16) == fast(
        RESIDENT_ATTR_HEADER
    ).unpack_from(raw)
    assert ATTR.unpack_from(raw) + NONRES_TAIL.unpack_from(raw, 16) == fast(
        NONRESIDENT_ATTR_HEADER
    ).unpack_from(raw)


@given(st.text(min_size=0, max_size=255), st.integers(0, 3))
@settings(max_examples=50, deadline=None)
def test_file_name_with_name_round_trip(name: str, namespace: int) -> None:
    """$FILE_NAME with its UTF-16 name builds and parses back."""
    raw_name = name.encode("utf-16-le")[: 255 * 2]
    value = {
        "parent_ref": 5 | 5 << 48,
        "creation_time": 1,
        "modification_time": 2,
        "mft_change_time": 3,
        "access_time": 4,
        "allocated_size": 4096,
        "data_size": 10,
        "file_attributes": 0x20,
        "reparse_or_ea": 0,
        "name_length": len(raw_name) // 2,
        "namespace": namespace,
        "name": raw_name,
    }
    built = FILE_NAME_WITH_NAME.build(value)
    assert len(built) == 66 + len(raw_name)
    assert FILE_NAME_WITH_NAME.parse(built).name == raw_name


def test_real_bytes_parse_with_construct(small: imgs.Built, small_bytes: bytes) -> None:
    """The declarations read real mkntfs/ntfs-3g bytes: boot sector, a FILE record, an INDX."""
    boot = BOOT_SECTOR.parse(small_bytes[:512])
    assert boot.oem_id == b"NTFS    " and boot.signature == 0xAA55
    assert boot.bytes_per_sector * boot.sectors_per_cluster == 1024
    code = boot.clusters_per_mft_record  # clusters, or 2^-code bytes when negative
    assert (code * 1024 if code > 0 else 1 << -code) == 1024
    assert BOOT_SECTOR.build(boot) == small_bytes[:512]
    vol = NtfsVolume.open(io.BytesIO(small_bytes))
    off = vol.mft_runs[0][1] * 1024
    rec = FILE_RECORD_HEADER.parse(small_bytes[off : off + 48])
    assert rec.flags & 1 and rec.bytes_allocated == 1024 and rec.record_number == 0
    usa = UPDATE_SEQUENCE_ARRAY.parse(
        small_bytes[off + rec.usa_offset : off + rec.usa_offset + 2 * rec.usa_count],
        count=rec.usa_count,
    )
    assert len(usa.saved) == 2
    assert small_bytes[off + 510 : off + 512] == struct.pack("<H", usa.usn)
    many = _record_attr(vol, small_bytes, _inode(vol, "many"), AT_INDEX_ALLOCATION)
    lcn = _nonres_runs(small_bytes, many)[0][1]
    block = INDEX_BLOCK_HEADER.parse(small_bytes[lcn * 1024 : lcn * 1024 + 24])
    assert block.index_block_vcn == 0


# --- runlists, fixups, bitmaps, LZNT1 ---------------------------------------------------------


@st.composite
def runlists(draw: st.DrawFn) -> list[tuple[int, int | None, int]]:
    """Runs with random lengths, real or sparse, never mapping a cluster twice."""
    total = 1 << 40
    runs = []
    vcn = 0
    for _ in range(draw(st.integers(0, 40))):
        length = draw(st.integers(1, 1 << draw(st.sampled_from([4, 16, 24]))))  # < 2^32 VCNs
        sparse = draw(st.booleans()) and draw(st.booleans())
        lcn = None if sparse else draw(st.integers(0, total - length))
        runs.append((vcn, lcn, length))
        vcn += length
    # drop overlapping real runs: decode rejects a cluster mapped twice
    real: list[tuple[int, int]] = []
    kept, vcn = [], 0
    for _v, lcn, length in runs:
        if lcn is not None and any(lcn < b + n and b < lcn + length for b, n in real):
            continue
        if lcn is not None:
            real.append((lcn, length))
        kept.append((vcn, lcn, length))
        vcn += length
    return kept


@given(runlists())
@settings(max_examples=200, deadline=None)
def test_runlist_encode_decode_round_trip(runs: list[tuple[int, int | None, int]]) -> None:
    """encode -> decode is the identity, and construct reads the same runs."""
    raw = encode_runlist(runs)
    assert decode_runlist(raw + b"junk", 0, len(raw), 0, 1 << 40) == runs
    pairs = MAPPING_PAIRS.parse(raw)  # the construct declaration reads the same runs
    assert [p.length for p in pairs[:-1]] == [n for _v, _l, n in runs]
    lcn, lcns = 0, []
    for p in pairs[:-1]:
        if p.delta is None:
            lcns.append(None)
        else:
            lcn += p.delta
            lcns.append(lcn)
    assert lcns == [lc for _v, lc, _n in runs]


@given(st.binary(max_size=64), st.integers(0, 1000))
@settings(max_examples=500, deadline=None)
def test_runlist_decoder_only_raises_corrupt(raw: bytes, total: int) -> None:
    """Garbage mapping pairs decode to in-volume runs or raise CorruptStructure."""
    try:
        runs = decode_runlist(raw, 0, len(raw), 0, total)
    except CorruptStructure:
        return
    assert all(lcn is None or 0 <= lcn and lcn + n <= total for _v, lcn, n in runs)


def test_runlist_rejections() -> None:
    """Past-the-end, self-overlapping, unterminated and negative runlists are refused."""
    past_end = encode_runlist([(0, 90, 20)])
    with pytest.raises(CorruptStructure, match="past the volume"):
        decode_runlist(past_end, 0, len(past_end), 0, 100)
    twice = encode_runlist([(0, 10, 5), (5, 12, 5)])
    with pytest.raises(CorruptStructure, match="twice"):
        decode_runlist(twice, 0, len(twice), 0, 100)
    with pytest.raises(CorruptStructure, match="past the end"):
        decode_runlist(b"\x11\x05", 0, 2, 0, 100)  # cut short, no terminator
    negative = b"\x11\xff\x05\x00"  # length -1
    with pytest.raises(CorruptStructure):
        decode_runlist(negative, 0, 4, 0, 100)


def test_fixups_apply_and_detect_torn_writes() -> None:
    """Fixups restore the saved tails and catch a mismatching tail."""
    rec = bytearray(1024)
    rec[0:8] = b"FILE" + struct.pack("<HH", 48, 3)
    rec[48:54] = struct.pack("<HHH", 0x1234, 0xAAAA, 0xBBBB)
    rec[510:512] = rec[1022:1024] = struct.pack("<H", 0x1234)
    good = bytearray(rec)
    assert apply_fixups(good, 0, 1024, 48, 3)
    assert good[510:512] == b"\xaa\xaa" and good[1022:1024] == b"\xbb\xbb"
    torn = bytearray(rec)
    torn[1022] ^= 1
    assert not apply_fixups(torn, 0, 1024, 48, 3)
    assert not apply_fixups(bytearray(rec), 0, 1024, 48, 2)  # count must match the size


@given(st.binary(max_size=300), st.integers(0, 2400))
@settings(max_examples=300, deadline=None)
def test_bitmap_runs_match_bit_by_bit(bitmap: bytes, nbits: int) -> None:
    """The regex-based bitmap scan equals a bit-by-bit reading."""
    expect = [i for i in range(min(nbits, len(bitmap) * 8)) if bitmap[i // 8] >> (i % 8) & 1]
    got = [c for s, n in bitmap_runs(bitmap, nbits) for c in range(s, s + n)]
    assert got == expect


@given(
    st.lists(st.tuples(st.integers(0, 200), st.integers(1, 30)), max_size=12),
    st.lists(st.tuples(st.integers(0, 200), st.integers(1, 30)), max_size=12),
)
def test_subtract_runs(a: list[tuple[int, int]], b: list[tuple[int, int]]) -> None:
    """Run subtraction equals set difference and stays coalesced."""
    from tapeflow.fs.model import coalesce

    ca, cb = coalesce(a), coalesce(b)
    sa = {c for s, n in ca for c in range(s, s + n)}
    sb = {c for s, n in cb for c in range(s, s + n)}
    got = subtract_runs(ca, cb)
    assert {c for s, n in got for c in range(s, s + n)} == sa - sb
    assert got == coalesce(got)


@given(st.binary(max_size=600))
@settings(max_examples=300, deadline=None)
def test_lznt1_on_garbage_only_raises_corrupt(data: bytes) -> None:
    """LZNT1 on random input yields a full unit or CorruptStructure."""
    try:
        out = decompress(data, 16 * 4096)
    except CorruptStructure:
        return
    assert len(out) == 16 * 4096


def test_filetime_edges() -> None:
    """Zero and out-of-range FILETIMEs are None; the Unix epoch converts exactly."""
    assert filetime(0) is None and filetime(2**64 - 1) is None
    epoch = filetime(116444736000000000)
    assert epoch is not None and epoch.timestamp() == 0 and epoch.utcoffset() is not None


# --- hostile images ----------------------------------------------------------------------------


def _inode(vol: NtfsVolume, path: str) -> int:
    return next(e.inode for e in vol.entries() if e.path == path)


def _record_off(vol: NtfsVolume, num: int) -> int:
    pos = num * vol.record_size
    cs = vol.info.cluster_size
    for vcn, lcn, n in vol.mft_runs:
        if vcn * cs <= pos < (vcn + n) * cs:
            assert lcn is not None
            return lcn * cs + pos - vcn * cs
    raise AssertionError("record not mapped")


def _record_attr(vol: NtfsVolume, image: bytes, num: int, atype: int) -> int:
    """Image offset of the first attribute of `atype` in record `num`."""
    off = _record_off(vol, num)
    pos = off + FILE_HDR.unpack_from(image, off)[6]
    while True:
        t, length = ATTR.unpack_from(image, pos)[:2]
        if t == atype:
            return pos
        assert t != 0xFFFFFFFF and length
        pos += length


def _nonres_runs(image: bytes, attr_off: int) -> list[tuple[int, int | None, int]]:
    length = ATTR.unpack_from(image, attr_off)[1]
    lvcn, _h, mpo = NONRES_TAIL.unpack_from(image, attr_off + 16)[:3]
    return decode_runlist(image, attr_off + mpo, attr_off + length, lvcn, 1 << 40)


def _patch(image: bytes, at: int, new: bytes) -> bytes:
    return image[:at] + new + image[at + len(new) :]


def _u16(v: int) -> bytes:
    return struct.pack("<H", v)


def _entries(image: bytes) -> list[FsEntry]:
    return list(NtfsVolume.open(io.BytesIO(image)).entries())


def _root_node_entries(image: bytes, attr_off: int) -> list[tuple[int, int, int]]:
    """(image offset, length, flags) of the entries in a resident $INDEX_ROOT."""
    voff = RES_TAIL.unpack_from(image, attr_off + 16)[1]
    root = attr_off + voff
    eoff, ilen = IHDR.unpack_from(image, root + 16)[:2]
    pos, end = root + 16 + eoff, root + 16 + ilen
    out = []
    while pos < end:
        _ref, elen, _kl, flags = IENTRY.unpack_from(image, pos)
        out.append((pos, elen, flags))
        if flags & 2:
            break
        pos += elen
    return out


def test_not_ntfs_is_unknown_filesystem(small_bytes: bytes) -> None:
    """No NTFS OEM id (zeros, FAT, too short) -> UnknownFilesystem."""
    with pytest.raises(UnknownFilesystem):
        NtfsVolume.open(io.BytesIO(bytes(1 << 20)))
    with pytest.raises(UnknownFilesystem):
        NtfsVolume.open(io.BytesIO(_patch(small_bytes, 3, b"MSDOS5.0")))
    with pytest.raises(UnknownFilesystem):
        NtfsVolume.open(io.BytesIO(small_bytes[:100]))


BAD_BPB = [
    ("bytes_per_sector_1000", 0x0B, _u16(1000)),
    ("bytes_per_sector_0", 0x0B, _u16(0)),
    ("sectors_per_cluster_3", 0x0D, b"\x03"),
    ("sectors_per_cluster_0", 0x0D, b"\x00"),
    ("sectors_per_cluster_2^32", 0x0D, b"\xe0"),
    ("mft_record_code_0", 0x40, b"\x00"),
    ("index_record_3_clusters", 0x44, b"\x03"),
    ("mft_lcn_past_end", 0x30, struct.pack("<Q", 1 << 40)),
    ("total_sectors_past_image", 0x28, struct.pack("<Q", 1 << 30)),
    ("no_signature", 0x1FE, b"\x00\x00"),
]


@pytest.mark.parametrize("name,at,value", BAD_BPB, ids=[b[0] for b in BAD_BPB])
def test_bad_bpb_is_bad_boot_sector(small_bytes: bytes, name: str, at: int, value: bytes) -> None:
    """Each inconsistent BPB field -> BadBootSector."""
    with pytest.raises(BadBootSector):
        NtfsVolume.open(io.BytesIO(_patch(small_bytes, at, value)))


def test_truncated_image_is_bad_boot_sector(small_bytes: bytes) -> None:
    """An image shorter than the volume it declares -> BadBootSector."""
    with pytest.raises(BadBootSector, match="past the end of the image"):
        NtfsVolume.open(io.BytesIO(small_bytes[: len(small_bytes) // 2]))


@pytest.fixture(scope="module")
def small_vol(small_bytes: bytes) -> NtfsVolume:
    """The undamaged small volume, used to locate structures to damage."""
    return NtfsVolume.open(io.BytesIO(small_bytes))


def _hostile_cases() -> dict[str, Callable[[NtfsVolume, bytes], tuple[bytes, str]]]:
    """name -> f(volume, image) -> (damaged image, message the error must match)."""

    def bad_fixup(vol: NtfsVolume, img: bytes) -> tuple[bytes, str]:
        off = _record_off(vol, _inode(vol, "d/inner.bin"))
        return _patch(img, off + 1022, bytes([img[off + 1022] ^ 0xFF])), "fixup"

    def bad_signature(vol: NtfsVolume, img: bytes) -> tuple[bytes, str]:
        return _patch(img, _record_off(vol, _inode(vol, "d/inner.bin")), b"XILE"), "signature"

    def attr_past_record(vol: NtfsVolume, img: bytes) -> tuple[bytes, str]:
        at = _record_attr(vol, img, _inode(vol, "d/inner.bin"), AT_DATA)
        return _patch(img, at + 4, struct.pack("<I", 0x7FF8)), "runs past the record"

    def runlist_past_end(vol: NtfsVolume, img: bytes) -> tuple[bytes, str]:
        at = _record_attr(vol, img, _inode(vol, "d/inner.bin"), AT_DATA)
        mp = at + NONRES_TAIL.unpack_from(img, at + 16)[2]
        lsize, osize = img[mp] & 15, img[mp] >> 4
        return _patch(img, mp + 1 + lsize, b"\xff" * (osize - 1) + b"\x7f"), "past the volume"

    def runlist_maps_twice(vol: NtfsVolume, img: bytes) -> tuple[bytes, str]:
        at = _record_attr(vol, img, _inode(vol, "d/sparse"), AT_DATA)
        mp = at + NONRES_TAIL.unpack_from(img, at + 16)[2]
        pos, real = mp, 0
        while True:  # zero the delta of the second real run: it lands on the first's cluster
            lsize, osize = img[pos] & 15, img[pos] >> 4
            if osize:
                real += 1
                if real == 2:
                    return _patch(img, pos + 1 + lsize, bytes(osize)), "twice"
            pos += 1 + lsize + osize

    def index_loop(vol: NtfsVolume, img: bytes) -> tuple[bytes, str]:
        # many/'s root points to one INDX node whose entries point to the leaves: make one of
        # them point back to that node
        at = _record_attr(vol, img, _inode(vol, "many"), AT_INDEX_ROOT)
        (pos, length, flags), *_ = _root_node_entries(img, at)
        assert flags & INDEX_ENTRY_NODE
        top_vcn = struct.unpack_from("<q", img, pos + length - 8)[0]
        alloc = _record_attr(vol, img, _inode(vol, "many"), AT_INDEX_ALLOCATION)
        lcn = _nonres_runs(img, alloc)[0][1]
        assert lcn is not None and vol.index_record_size >= vol.info.cluster_size
        block = lcn * vol.info.cluster_size + top_vcn * vol.info.cluster_size
        for vcn_at in _indx_child_pointers(img, block, vol.index_record_size):
            if vcn_at % 512 < 502:  # the 8 bytes stay clear of a fixup-protected tail
                return _patch(img, vcn_at, struct.pack("<q", top_vcn)), "index loop"
        raise AssertionError("no patchable child pointer")

    def index_block_misplaced(vol: NtfsVolume, img: bytes) -> tuple[bytes, str]:
        at = _record_attr(vol, img, _inode(vol, "many"), AT_INDEX_ALLOCATION)
        lcn = _nonres_runs(img, at)[0][1]
        assert lcn is not None
        return _patch(img, lcn * 1024 + 16, struct.pack("<q", 77)), "says it is"

    def directory_loop(vol: NtfsVolume, img: bytes) -> tuple[bytes, str]:
        at = _record_attr(vol, img, _inode(vol, "d"), AT_INDEX_ROOT)
        num = _inode(vol, "d")
        seq = FILE_HDR.unpack_from(img, _record_off(vol, num))[4]
        pos = _root_node_entries(img, at)[0][0]  # d/inner.bin now names d itself
        return _patch(img, pos, struct.pack("<Q", num | seq << 48)), "directory loop"

    def alist_names_foreign_record(vol: NtfsVolume, img: bytes) -> tuple[bytes, str]:
        entry = _alist_fragment_entry(vol, img)
        return _patch(img, entry + 16, struct.pack("<Q", 5 | 5 << 48)), "not one of its"

    def alist_names_base_for_fragment(vol: NtfsVolume, img: bytes) -> tuple[bytes, str]:
        num = _inode(vol, "d/sparse")
        seq = FILE_HDR.unpack_from(img, _record_off(vol, num))[4]
        entry = _alist_fragment_entry(vol, img)
        return _patch(img, entry + 16, struct.pack("<Q", num | seq << 48)), "gap|exceeds"

    return {f.__name__: f for f in list(locals().values()) if callable(f)}


def _indx_child_pointers(img: bytes, block: int, size: int) -> list[int]:
    """Image offsets of the child-VCN fields of the entries of the INDX block at `block`."""
    raw = bytearray(img[block : block + size])
    usa_ofs, usa_cnt = IBLOCK.unpack_from(raw)[1:3]
    assert raw[:4] == b"INDX" and apply_fixups(raw, 0, size, usa_ofs, usa_cnt)
    eoff, ilen = IHDR.unpack_from(raw, 24)[:2]
    pos, out = 24 + eoff, []
    while pos < 24 + ilen:
        _ref, elen, _kl, flags = IENTRY.unpack_from(raw, pos)
        if flags & INDEX_ENTRY_NODE:
            out.append(block + pos + elen - 8)
        if flags & 2:
            break
        pos += elen
    return out


def _alist_fragment_entry(vol: NtfsVolume, img: bytes) -> int:
    """Image offset of d/sparse's $ATTRIBUTE_LIST entry for its second $DATA fragment."""
    at = _record_attr(vol, img, _inode(vol, "d/sparse"), AT_ATTRIBUTE_LIST)
    if img[at + 8]:  # non-resident list
        lcn = _nonres_runs(img, at)[0][1]
        assert lcn is not None
        base, size = lcn * 1024, NONRES_TAIL.unpack_from(img, at + 16)[5]
    else:
        size, voff = RES_TAIL.unpack_from(img, at + 16)[:2]
        base = at + voff
    pos = base
    while pos < base + size:
        atype, elen, _nl, _no, lvcn = ALIST_ENTRY.unpack_from(img, pos)[:5]
        if atype == AT_DATA and lvcn > 0:
            return pos
        pos += elen
    raise AssertionError("no second $DATA fragment in the attribute list")


HOSTILE = _hostile_cases()


@pytest.mark.timeout(20)
@pytest.mark.parametrize("case", sorted(HOSTILE))
def test_hostile_image_raises_corrupt_structure(
    small_vol: NtfsVolume, small_bytes: bytes, case: str
) -> None:
    """Each targeted damage -> CorruptStructure naming it, within 2 s."""
    damaged, message = HOSTILE[case](small_vol, small_bytes)
    assert damaged != small_bytes and len(damaged) == len(small_bytes)
    t0 = time.perf_counter()
    with pytest.raises(CorruptStructure, match=message):
        _entries(damaged)
    assert time.perf_counter() - t0 < 2


def test_mft_attribute_list_naming_unreachable_record(mftfrag: Tree) -> None:
    """$MFT's list places VCNs 6396.. in a record that only those VCNs would map."""
    img = mftfrag.built.img.read_bytes()
    vol = mftfrag.vol
    at = _record_attr(vol, img, 0, AT_ATTRIBUTE_LIST)
    lcn = _nonres_runs(img, at)[0][1]
    assert lcn is not None and img[at + 8]
    pos = lcn * 512
    while True:
        atype, elen, _nl, _no, lvcn = ALIST_ENTRY.unpack_from(img, pos)[:5]
        if atype == AT_DATA and lvcn > 0:
            break
        pos += elen
    beyond = vol.mft_records - 5
    damaged = _patch(img, pos + 16, struct.pack("<Q", beyond))
    with pytest.raises(CorruptStructure, match="cannot reach"):
        NtfsVolume.open(io.BytesIO(damaged))


def test_freed_record_leaves_a_stale_entry_and_unowned_clusters(
    small_vol: NtfsVolume, small_bytes: bytes
) -> None:
    """Clear the in-use flag of d/inner.bin's record (its index entry and $Bitmap bits stay):
    entries() skips it as stale, and its clusters become unowned."""
    inner = next(e for e in small_vol.entries() if e.path == "d/inner.bin")
    off = _record_off(small_vol, inner.inode)
    flags = FILE_HDR.unpack_from(small_bytes, off)[7]
    vol = NtfsVolume.open(io.BytesIO(_patch(small_bytes, off + 22, _u16(flags & ~1))))
    assert "d/inner.bin" not in {e.path for e in vol.entries()}
    assert any("d/inner.bin" in p and "stale" in p for p in vol.problems)
    assert vol.unowned_runs() == [(x.lcn, x.length) for x in inner.extents]


def test_set_bit_in_bitmap_without_owner_is_unowned(
    small_vol: NtfsVolume, small_bytes: bytes
) -> None:
    """A $Bitmap bit set for a cluster no attribute maps shows in unowned_runs."""
    used = small_vol.used_runs()
    free_lcn = used[-2][0] + used[-2][1]  # first free cluster after a used run
    at = _record_attr(small_vol, small_bytes, 6, AT_DATA)
    lcn = _nonres_runs(small_bytes, at)[0][1]
    assert lcn is not None
    byte = lcn * 1024 + free_lcn // 8
    damaged = _patch(small_bytes, byte, bytes([small_bytes[byte] | 1 << (free_lcn % 8)]))
    vol = NtfsVolume.open(io.BytesIO(damaged))
    assert vol.unowned_runs() == [(free_lcn, 1)]


# --- fuzzing --------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def fuzz_regions(small_vol: NtfsVolume, small_bytes: bytes) -> list[tuple[int, int]]:
    """(start, length) of the live metadata worth damaging: the boot sector, the used part of
    every in-use MFT record, the INDX blocks of the root and of many/."""
    cs = small_vol.info.cluster_size
    regions = [(0, 512)]
    for num in range(small_vol.mft_records):
        off = _record_off(small_vol, num)
        hdr = FILE_HDR.unpack_from(small_bytes, off)
        if hdr[0] == b"FILE" and hdr[7] & 1:
            regions.append((off, hdr[8]))
    for num in (5, _inode(small_vol, "many")):
        at = _record_attr(small_vol, small_bytes, num, AT_INDEX_ALLOCATION)
        for _v, blcn, n in _nonres_runs(small_bytes, at):
            assert blcn is not None
            regions.extend((blcn * cs + i, 1024) for i in range(0, n * cs, 1024))
    assert len(regions) > 200
    return regions


def _exercise(image: bytes) -> None:
    """Everything a backup does with a volume."""
    vol = NtfsVolume.open(io.BytesIO(image))
    entries = list(vol.entries())
    vol.used_runs()
    vol.unowned_runs()
    for e in entries[:60]:
        if e.type == "file" and e.size <= 1 << 20:
            vol.read_file(e)


VALUES = st.one_of(
    st.binary(min_size=1, max_size=1),
    st.sampled_from([b"\x00\x00", b"\xff\xff", b"\xff\x7f", b"\x00\x80", b"\x01\x00"]),
    st.sampled_from([b"\x00" * 4, b"\xff" * 4, b"\xff\xff\xff\x7f", b"\x00\x00\x00\x80"]),
    st.binary(min_size=2, max_size=8),
)


@pytest.mark.timeout(120)
@settings(
    max_examples=300,
    deadline=3000,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    st.lists(
        st.tuples(st.integers(0, 1 << 16), st.integers(0, 1 << 16), VALUES),
        min_size=1,
        max_size=8,
    )
)
def test_fuzzed_metadata_parses_or_raises_fs_error(
    small_bytes: bytes,
    fuzz_regions: list[tuple[int, int]],
    mutations: list[tuple[int, int, bytes]],
) -> None:
    """Bytes and boundary values written over live metadata (boot sector, in-use MFT records,
    INDX blocks): the map either comes out or an FsError subclass is raised; nothing else, and
    never a hang (deadline)."""
    image = bytearray(small_bytes)
    for region, where, value in mutations:
        start, length = fuzz_regions[region % len(fuzz_regions)]
        at = start + where % length
        image[at : at + len(value)] = value
    try:
        _exercise(bytes(image))
    except FsError:
        pass


@pytest.mark.timeout(60)
@settings(max_examples=150, deadline=3000, suppress_health_check=list(HealthCheck))
@given(st.integers(0, 259), st.integers(0, 1023), st.sampled_from([0, 1, 0x7F, 0x80, 0xFF]))
def test_single_field_extremes_parse_or_raise_fs_error(
    small_bytes: bytes, small_vol: NtfsVolume, record: int, at: int, value: int
) -> None:
    """Boundary values written into one byte of one MFT record."""
    image = bytearray(small_bytes)
    image[_record_off(small_vol, record) + at] = value
    try:
        _exercise(bytes(image))
    except FsError:
        pass
