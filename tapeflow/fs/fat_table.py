"""The file allocation table of a FAT12/16/32 volume: decoded in bulk into one integer per
cluster, then walked chain by chain into extents with every loop bounded."""

from __future__ import annotations

import sys
from array import array

from tapeflow.fs.errors import CorruptStructure
from tapeflow.fs.model import Extent

BITS = {"fat12": 12, "fat16": 16, "fat32": 32}
END_OF_CHAIN = {"fat12": 0xFF8, "fat16": 0xFFF8, "fat32": 0x0FFFFFF8}  # and above
CHAIN_SLACK = 16  # a file's chain may exceed what its size needs by max(needed, this)
_LOW_NIBBLE = bytes(b & 0x0F for b in range(256))  # clears the 4 reserved bits of FAT32 entries


def fat_bytes(kind: str, entries: int) -> int:
    """Bytes of the on-disk FAT that hold `entries` entries."""
    return (entries * BITS[kind] + 7) // 8


class FatTable:
    """One decoded FAT: the value of every entry 0..max_cluster (next cluster, 0 free, `bad`,
    or >= `eoc` for end of chain). `raw` is the start of the on-disk table."""

    def __init__(self, kind: str, raw: bytes, max_cluster: int) -> None:
        n = max_cluster + 1
        if len(raw) < fat_bytes(kind, n):
            raise CorruptStructure(f"FAT holds {len(raw)} bytes, {fat_bytes(kind, n)} needed")
        self.kind = kind
        self.max_cluster = max_cluster
        self.eoc = END_OF_CHAIN[kind]
        self.bad = self.eoc - 1
        self.values = self._decode(kind, raw, n)

    @staticmethod
    def _decode(kind: str, raw: bytes, n: int) -> array:
        """Bulk decode: FAT16/32 through `array` (FAT32's top nibble masked with one
        `bytes.translate`); FAT12 (at most 4086 entries) by a short loop over byte triples."""
        if kind == "fat12":
            padded = bytes(raw[: fat_bytes(kind, n)]) + b"\0\0"
            values = array("I", bytes(4 * n))
            for i in range(0, n, 2):
                k = i * 3 // 2
                pair = padded[k] | padded[k + 1] << 8 | padded[k + 2] << 16
                values[i] = pair & 0xFFF
                if i + 1 < n:
                    values[i + 1] = pair >> 12
            return values
        if kind == "fat16":
            values = array("H", raw[: 2 * n])
        else:
            masked = bytearray(raw[: 4 * n])
            masked[3::4] = masked[3::4].translate(_LOW_NIBBLE)
            values = array("I" if array("I").itemsize == 4 else "L", masked)
        if sys.byteorder == "big":  # pragma: no cover - the tables are little endian
            values.byteswap()
        return values

    def chain(self, start: int, needed: int | None, seen: bytearray, what: str) -> list[Extent]:
        """Extents of the chain from `start`: its first `needed` clusters (all of them when
        None, as for directories). Every cluster walked is marked in `seen`; one met twice is a
        loop or a cross-link. Free/bad/out-of-range links, a chain shorter than `needed` or
        longer than `needed + max(needed, CHAIN_SLACK)` raise CorruptStructure."""
        fat = self.values
        max_cluster = self.max_cluster
        eoc = self.eoc
        limit = max_cluster if needed is None else needed + max(needed, CHAIN_SLACK)
        take = max_cluster + 1 if needed is None else needed
        extents: list[Extent] = []
        vcn = 0
        run_lcn = start
        run_len = 0
        count = 0
        c = start
        while True:
            if c < 2 or c > max_cluster:
                raise CorruptStructure(
                    f"{what}: chain reaches cluster {c}, outside 2..{max_cluster}"
                )
            if seen[c]:
                own = run_lcn <= c < run_lcn + run_len or any(
                    x.lcn is not None and x.lcn <= c < x.lcn + x.length for x in extents
                )
                kind = "loops back to" if own else "is cross-linked at"
                raise CorruptStructure(f"{what}: chain {kind} cluster {c}")
            seen[c] = 1
            if count < take:
                if c == run_lcn + run_len:
                    run_len += 1
                else:
                    extents.append(Extent(vcn, run_lcn, run_len))
                    vcn += run_len
                    run_lcn = c
                    run_len = 1
            count += 1
            nxt = fat[c]
            if nxt >= eoc:
                break
            if nxt == 0:
                raise CorruptStructure(f"{what}: chain runs into a free cluster after {c}")
            if nxt == self.bad:
                raise CorruptStructure(f"{what}: chain runs into a bad cluster after {c}")
            if count >= limit:
                raise CorruptStructure(
                    f"{what}: chain longer than {limit} clusters (its size needs {needed})"
                )
            c = nxt
        if run_len:
            extents.append(Extent(vcn, run_lcn, run_len))
        if needed is not None and count < needed:
            raise CorruptStructure(f"{what}: chain has {count} clusters, its size needs {needed}")
        return extents

    def allocated_runs(self, owned: bytearray | None = None) -> list[tuple[int, int]]:
        """(lcn, length) runs of clusters whose entry is neither free nor bad, leaving out
        those marked in `owned` when given; sorted and coalesced."""
        fat = self.values
        bad = self.bad
        runs: list[tuple[int, int]] = []
        start = -1
        end = self.max_cluster + 1
        for c in range(2, end):
            v = fat[c]
            if v and v != bad and (owned is None or not owned[c]):
                if start < 0:
                    start = c
            elif start >= 0:
                runs.append((start, c - start))
                start = -1
        if start >= 0:
            runs.append((start, end - start))
        return runs
