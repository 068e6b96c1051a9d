"""LZNT1, the compression of NTFS compressed files, for reading their content back.

A compression unit (usually 16 clusters) is stored either raw (all clusters present), not at all
(all sparse: zeros) or LZNT1-compressed into its first clusters. LZNT1 is a sequence of chunks of
at most 4 KiB of output, each a 16-bit header (size - 3 in bits 0-11, bit 15 = compressed) and
either raw bytes or groups of 8 tokens led by a flag byte (bit set = 16-bit back reference whose
offset/length split depends on how much of the chunk has been produced)."""

from __future__ import annotations

from .errors import CorruptStructure

CHUNK = 4096


def _chunk(data: bytes, pos: int, end: int) -> bytearray:
    """Decompress one compressed chunk `data[pos:end]`."""
    out = bytearray()
    while pos < end:  # each flag byte consumes >= 1 input byte
        flags = data[pos]
        pos += 1
        for _ in range(8):
            if pos >= end:
                break
            if flags & 1:
                if pos + 2 > end:
                    raise CorruptStructure("LZNT1 back reference cut short")
                token = data[pos] | data[pos + 1] << 8
                pos += 2
                have = len(out)
                if have == 0:
                    raise CorruptStructure("LZNT1 back reference before any data")
                length_mask, offset_shift, p = 0xFFF, 12, have - 1
                while p >= 0x10:
                    length_mask >>= 1
                    offset_shift -= 1
                    p >>= 1
                length = (token & length_mask) + 3
                back = (token >> offset_shift) + 1
                if back > have or have + length > CHUNK:
                    raise CorruptStructure("LZNT1 back reference out of range")
                src = have - back
                if back >= length:
                    out += out[src : src + length]
                else:  # overlapping copy repeats the last `back` bytes
                    for i in range(length):
                        out.append(out[src + i])
            else:
                out.append(data[pos])
                pos += 1
                if len(out) > CHUNK:
                    raise CorruptStructure("LZNT1 chunk decompresses past 4 KiB")
            flags >>= 1
    return out


def decompress(data: bytes, out_size: int) -> bytes:
    """Decompress LZNT1 `data` into exactly `out_size` bytes (a compression unit): a chunk that
    ends short of 4 KiB is zero-filled, as is the unit after the last chunk."""
    out = bytearray()
    pos = 0
    n = len(data)
    while pos + 2 <= n and len(out) < out_size:  # each chunk consumes >= 3 bytes
        header = data[pos] | data[pos + 1] << 8
        if header == 0:
            break
        size = (header & 0x0FFF) + 1
        pos += 2
        if pos + size > n:
            raise CorruptStructure("LZNT1 chunk runs past the compressed data")
        if header & 0x8000:
            chunk = _chunk(data, pos, pos + size)
        else:
            chunk = bytearray(data[pos : pos + size])
        if len(chunk) < CHUNK:
            chunk += bytes(CHUNK - len(chunk))
        out += chunk
        pos += size
    if len(out) < out_size:
        out += bytes(out_size - len(out))
    return bytes(out[:out_size])
