"""Directory indexes ($I30): the B+tree rooted in $INDEX_ROOT whose child nodes are INDX blocks
of $INDEX_ALLOCATION. Every node is visited once; a child reference to a node already seen (a
loop), a block at the wrong place or with a bad fixup raises CorruptStructure."""

from __future__ import annotations

from .errors import CorruptStructure
from .ntfs_layout import (
    AT_FILE_NAME,
    FNAME,
    IBLOCK,
    IENTRY,
    IHDR,
    INDEX_ENTRY_END,
    INDEX_ENTRY_NODE,
    IROOT,
    NAMESPACE_DOS,
    REF_MASK,
    U64,
    UPDATE_SEQUENCE_STRIDE,
    apply_fixups,
    utf16,
)

# (name, record number, sequence number) of one directory entry
DirEntry = tuple[str, int, int]


def _node_entries(
    buf: bytes | bytearray,
    pos: int,
    end: int,
    dnum: int,
    out: list[DirEntry],
    children: list[int],
) -> None:
    """Collect the entries of one index node in `buf[pos:end]`; child node VCNs go to
    `children`. DOS-namespace (8.3) entries are dropped: the long name has its own entry."""
    while True:  # each pass advances pos by >= 16 bytes inside [pos, end)
        if pos + IENTRY.size > end:
            raise CorruptStructure(f"directory {dnum}: index entries run past their node")
        ref, elen, klen, eflags = IENTRY.unpack_from(buf, pos)
        if elen < IENTRY.size or elen & 7 or pos + elen > end:
            raise CorruptStructure(f"directory {dnum}: index entry of bad length {elen}")
        if eflags & INDEX_ENTRY_NODE:
            if elen < IENTRY.size + 8:
                raise CorruptStructure(f"directory {dnum}: index entry too short for its child")
            children.append(U64.unpack_from(buf, pos + elen - 8)[0])
        if eflags & INDEX_ENTRY_END:
            return
        k = pos + IENTRY.size
        if klen < FNAME.size or IENTRY.size + klen > elen:
            raise CorruptStructure(f"directory {dnum}: index key of bad length {klen}")
        fields = FNAME.unpack_from(buf, k)
        parent, nlen, namespace = fields[0], fields[9], fields[10]
        if FNAME.size + 2 * nlen > klen:
            raise CorruptStructure(f"directory {dnum}: index key name past the key")
        if namespace != NAMESPACE_DOS:
            if parent & REF_MASK != dnum:
                raise CorruptStructure(
                    f"directory {dnum}: index entry names parent {parent & REF_MASK}"
                )
            n = k + FNAME.size
            out.append((utf16(buf[n : n + 2 * nlen]), ref & REF_MASK, ref >> 48))
        pos += elen


def directory_entries(
    dnum: int, root: bytes, alloc: bytearray | None, cluster_size: int
) -> list[DirEntry]:
    """All non-DOS entries of directory `dnum` from its $INDEX_ROOT value and its whole
    $INDEX_ALLOCATION content (None when it has none); fixups are applied to `alloc` in place."""
    if len(root) < IROOT.size + IHDR.size:
        raise CorruptStructure(f"directory {dnum}: $INDEX_ROOT too short")
    indexed_type, _coll, block_size, _cpb = IROOT.unpack_from(root, 0)
    if indexed_type != AT_FILE_NAME:
        raise CorruptStructure(f"directory {dnum}: $I30 indexes attribute {indexed_type:#x}")
    eoff, ilen, _ialloc, _flags = IHDR.unpack_from(root, IROOT.size)
    start = IROOT.size + eoff
    end = IROOT.size + ilen
    if start < IROOT.size + IHDR.size or end > len(root) or start > end:
        raise CorruptStructure(f"directory {dnum}: $INDEX_ROOT header out of range")
    out: list[DirEntry] = []
    children: list[int] = []
    _node_entries(root, start, end, dnum, out, children)
    if not children:
        return out
    if alloc is None:
        raise CorruptStructure(f"directory {dnum}: index has child nodes but no allocation")
    if block_size < UPDATE_SEQUENCE_STRIDE or block_size > 1 << 16 or block_size & (block_size - 1):
        raise CorruptStructure(f"directory {dnum}: bad index block size {block_size}")
    # child VCNs count clusters, or 512-byte units when a block is smaller than a cluster
    unit = cluster_size if block_size >= cluster_size else UPDATE_SEQUENCE_STRIDE
    seen: set[int] = set()
    while children:  # each VCN is accepted once and must name a distinct block of `alloc`
        vcn = children.pop()
        if vcn in seen:
            raise CorruptStructure(f"directory {dnum}: index loop at block VCN {vcn}")
        seen.add(vcn)
        boff = vcn * unit
        if boff % block_size or boff + block_size > len(alloc):
            raise CorruptStructure(f"directory {dnum}: index block VCN {vcn} out of range")
        magic, usa_ofs, usa_cnt, _lsn, block_vcn = IBLOCK.unpack_from(alloc, boff)
        if magic != b"INDX":
            raise CorruptStructure(f"directory {dnum}: index block {vcn} is not INDX")
        if not apply_fixups(alloc, boff, block_size, usa_ofs, usa_cnt):
            raise CorruptStructure(f"directory {dnum}: index block {vcn} fails its fixup check")
        if block_vcn != vcn:
            raise CorruptStructure(f"directory {dnum}: index block {vcn} says it is {block_vcn}")
        h = boff + IBLOCK.size
        eoff, ilen, _ialloc, _flags = IHDR.unpack_from(alloc, h)
        start = h + eoff
        end = h + ilen
        if start < h + IHDR.size or end > boff + block_size or start > end:
            raise CorruptStructure(f"directory {dnum}: index block {vcn} header out of range")
        _node_entries(alloc, start, end, dnum, out, children)
    return out
