"""EXTENDED COPY (LID1) between a disk and a tape drive: the parameter list declared with
construct, the commands (EXTENDED COPY, RECEIVE COPY RESULTS), and a CopyPlan that both a copy
manager and the host can execute, byte for byte the same.

A plan writes one stream to tape: inline data (e.g. pax headers) and runs of disk blocks, in
order, cut into tape records of `record_size` bytes. Every segment carries CAT=1 (residue is
carried into the next segment), so records stay full across segment boundaries; a plan must
end on a record boundary (`CopyPlan.pad()` appends zeros)."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field, replace

from construct import (
    Bytes,
    Const,
    ConstructError,
    GreedyRange,
    Int8ub,
    Int16ub,
    Int24ub,
    Int32ub,
    Int64ub,
    Padding,
    Struct,
)

from tapeflow.scsi.command import Command, spc
from tapeflow.scsi.vpd import MAX_XCOPY_DESIGNATOR, Designator

# Descriptor type codes (SPC-4 6.4.5 / 6.4.6).
BLOCK_TO_STREAM = 0x00
STREAM_TO_BLOCK = 0x01
INLINE_TO_STREAM = 0x04
STREAM_TO_DISCARD = 0x06
IDENTIFICATION = 0xE4

DISK_TYPE = 0x00
TAPE_TYPE = 0x01
FIXED_BIT = 0x01  # identification descriptor, sequential access: fixed-block mode

MAX_SEGMENT_BLOCKS = 0xFFFF  # BLOCK DEVICE NUMBER OF BLOCKS is 16 bits

# RECEIVE COPY RESULTS service actions and copy statuses.
COPY_STATUS = 0x00
OPERATING_PARAMETERS = 0x03
STATUS_IN_PROGRESS = 0x00
STATUS_GOOD = 0x01
STATUS_ERROR = 0x02

ParameterListHeader = Struct(
    "list_id" / Int8ub,
    "flags" / Int8ub,  # STR 0x20 | LIST ID USAGE << 3 | PRIORITY
    "cscd_length" / Int16ub,
    Padding(4),
    "segment_length" / Int32ub,
    "inline_length" / Int32ub,
)

IdentificationDescriptor = Struct(  # 32 bytes
    "type" / Const(IDENTIFICATION, Int8ub),
    "b1" / Int8ub,  # LU ID TYPE << 6 | NUL << 5 | peripheral device type
    "relative_port" / Int16ub,
    "designation" / Bytes(20),  # designation descriptor, zero padded
    Padding(4),
    "params_flags" / Int8ub,  # PAD 0x04 (disk); FIXED 0x01 (tape; we send variable-length: 0)
    "block_length" / Int24ub,  # disk block length / stream block length
)

BlockStreamSegment = Struct(  # 0x00 block->stream and 0x01 stream->block, 24 bytes
    "type" / Int8ub,
    "flags" / Int8ub,  # CAT 0x01 (DC applies to block->block segments only)
    "length" / Const(0x14, Int16ub),
    "source" / Int16ub,
    "destination" / Int16ub,
    Padding(1),
    "stream_transfer" / Int24ub,
    Padding(2),
    "blocks" / Int16ub,
    "lba" / Int64ub,
)

DiscardSegment = Struct(  # 0x06 stream -> discard, 16 bytes
    "type" / Const(STREAM_TO_DISCARD, Int8ub),
    "flags" / Int8ub,
    "length" / Const(0x0C, Int16ub),
    "source" / Int16ub,
    Padding(2),
    Padding(1),
    "stream_transfer" / Int24ub,
    "count" / Int32ub,  # bytes to read and drop
)

InlineStreamSegment = Struct(  # 0x04 inline data -> stream, 20 bytes
    "type" / Const(INLINE_TO_STREAM, Int8ub),
    "flags" / Int8ub,
    "length" / Const(0x10, Int16ub),
    Padding(2),
    "destination" / Int16ub,
    Padding(1),
    "stream_transfer" / Int24ub,
    "offset" / Int32ub,  # into the inline data area, a multiple of 4
    "count" / Int32ub,
)

CopyStatusData = Struct(
    "available" / Int32ub,
    "status" / Int8ub,  # HDD 0x80 | copy management status
    "segments_processed" / Int16ub,
    "units" / Int8ub,  # transfer count units: 0 bytes, 1 KiB, 2 MiB, 3 GiB, 4 TiB ...
    "transfer_count" / Int32ub,
)

OperatingParametersData = Struct(
    "available" / Int32ub,
    "snlid" / Int8ub,
    Padding(3),
    "max_cscd" / Int16ub,
    "max_segments" / Int16ub,
    "max_descriptor_list" / Int32ub,
    "max_segment_length" / Int32ub,
    "max_inline" / Int32ub,
    "held_data_limit" / Int32ub,
    "max_stream_transfer" / Int32ub,
    Padding(2),
    "total_concurrent" / Int16ub,
    "max_concurrent" / Int8ub,
    "granularity" / Int8ub,
    "inline_granularity" / Int8ub,
    "held_granularity" / Int8ub,
    Padding(3),
    "implemented_count" / Int8ub,
    "implemented" / GreedyRange(Int8ub),
)

CAT = 0x01


class ExtendedCopy(Command):
    """EXTENDED COPY (LID1) carrying a parameter list."""

    _cdb_bits = {"opcode": [0xFF, 0], "sa": [0x1F, 1], "length": [0xFFFFFFFF, 10]}

    timeout = 3600.0

    def __init__(self, parameters: bytes) -> None:
        Command.__init__(
            self, spc.EXTENDED_COPY, data_out=parameters, sa=0x00, length=len(parameters)
        )


class ReceiveCopyResults(Command):
    """RECEIVE COPY RESULTS (LID1): COPY STATUS or OPERATING PARAMETERS."""

    _cdb_bits = {
        "opcode": [0xFF, 0],
        "sa": [0x1F, 1],
        "list_id": [0xFF, 2],
        "alloc": [0xFFFFFFFF, 10],
    }

    def __init__(self, service_action: int, list_id: int = 0, alloc: int = 1024) -> None:
        Command.__init__(
            self,
            spc.RECEIVE_COPY_RESULTS,
            data_in_len=alloc,
            sa=service_action,
            list_id=list_id,
            alloc=alloc,
        )


@dataclass(frozen=True, slots=True)
class CopyStatus:
    """Outcome of one copy operation as the copy manager reports it."""

    status: int
    segments_processed: int
    transfer_bytes: int

    @classmethod
    def parse(cls, data: bytes) -> CopyStatus:
        """Decode COPY STATUS data (transfer count scaled by its units to bytes)."""
        d = CopyStatusData.parse(data.ljust(CopyStatusData.sizeof(), b"\0"))
        return cls(d.status & 0x7F, d.segments_processed, d.transfer_count << (10 * d.units))


def target_descriptor(designator: Designator, device_type: int, block_length: int) -> bytes:
    """An 0xE4 identification descriptor naming a disk (type 0) or a tape drive (type 1)."""
    if len(designator.value) > MAX_XCOPY_DESIGNATOR:
        raise ValueError(f"designator of {len(designator.value)} bytes does not fit in 0xE4")
    flags = 0x04 if device_type == DISK_TYPE else 0x00  # tape: variable records, no PAD
    return IdentificationDescriptor.build(
        {
            "b1": device_type & 0x1F,
            "relative_port": 0,
            "designation": designator.build().ljust(20, b"\0"),
            "params_flags": flags,
            "block_length": block_length,
        }
    )


@dataclass(frozen=True, slots=True)
class Segment:
    """One step of a plan: `blocks` disk blocks at `lba`, or `inline` bytes, to tape; or
    (restore) tape to `blocks` disk blocks at `lba`, or `discard` tape bytes dropped."""

    kind: int  # BLOCK_TO_STREAM | INLINE_TO_STREAM | STREAM_TO_BLOCK | STREAM_TO_DISCARD
    lba: int = 0
    blocks: int = 0
    inline: bytes = b""
    discard: int = 0

    def length(self, block_length: int) -> int:
        """Stream bytes this segment moves."""
        if self.kind == INLINE_TO_STREAM:
            return len(self.inline)
        if self.kind == STREAM_TO_DISCARD:
            return self.discard
        return self.blocks * block_length


@dataclass(slots=True)
class CopyPlan:
    """Ordered segments between one disk and one tape drive, with the stream's record size."""

    disk: Designator | None  # None: a plan only the host can run (e.g. an image file)
    tape: Designator | None
    block_length: int  # disk logical block length
    record_size: int  # bytes per tape record (stream device transfer length)
    segments: list[Segment] = field(default_factory=list)

    @property
    def stream_bytes(self) -> int:
        """Bytes the plan writes to (or reads from) tape."""
        return sum(s.length(self.block_length) for s in self.segments)

    def add_inline(self, data: bytes) -> int:
        """Append inline bytes to the stream; returns their stream offset."""
        offset = self.stream_bytes
        if data:
            self.segments.append(Segment(INLINE_TO_STREAM, inline=bytes(data)))
        return offset

    def add_blocks(self, lba: int, blocks: int, kind: int = BLOCK_TO_STREAM) -> int:
        """Append a run of disk blocks (split at the 16-bit segment limit); returns the run's
        stream offset."""
        offset = self.stream_bytes
        while blocks > 0:
            n = min(blocks, MAX_SEGMENT_BLOCKS)
            self.segments.append(Segment(kind, lba=lba, blocks=n))
            lba += n
            blocks -= n
        return offset

    def add_discard(self, count: int) -> None:
        """Read and drop `count` stream bytes (restore: skip headers between runs)."""
        if count:
            self.segments.append(Segment(STREAM_TO_DISCARD, discard=count))

    def pad(self) -> None:
        """Zero-fill the stream up to the next record boundary."""
        rest = -self.stream_bytes % self.record_size
        if rest:
            self.add_inline(bytes(rest))

    def batches(self, max_segments: int, max_inline: int) -> Iterator[list[Segment]]:
        """Split the segments into EXTENDED COPY commands within a copy manager's limits.

        Residue is not carried from one command to the next, so every command but the last
        ends on a record boundary: the segment that crosses it is split there."""
        if max_segments < 2:
            raise ValueError("a copy manager must take at least 2 segments per command")
        piece = max(4, (max_inline // 2) & ~3)  # inline data larger than this is cut up
        pending: list[Segment] = []
        for seg in reversed(self.segments):
            if seg.kind == INLINE_TO_STREAM and len(seg.inline) > piece:
                cuts = range(0, len(seg.inline), piece)
                pending += [replace(seg, inline=seg.inline[i : i + piece]) for i in reversed(cuts)]
            else:
                pending.append(seg)
        batch: list[Segment] = []
        offset = inline = 0
        while pending:
            seg = pending.pop()
            size = (len(seg.inline) + 3) & ~3
            full = batch and (len(batch) >= max_segments // 2 or inline + size > max_inline // 2)
            if full and offset % self.record_size == 0:
                yield batch
                batch, inline = [], 0
            elif full:  # finish the current record, splitting this segment at its end
                need = -offset % self.record_size
                if seg.length(self.block_length) > need:
                    seg, rest = self._split(seg, need)
                    pending.append(rest)
                if len(batch) >= max_segments:
                    raise ValueError("cannot align a command to a record within the limits")
            batch.append(seg)
            inline += (len(seg.inline) + 3) & ~3
            offset += seg.length(self.block_length)
        if batch:
            yield batch

    def _split(self, seg: Segment, nbytes: int) -> tuple[Segment, Segment]:
        """Cut `seg` after `nbytes` stream bytes (a whole number of blocks for block runs)."""
        if seg.kind == INLINE_TO_STREAM:
            return replace(seg, inline=seg.inline[:nbytes]), replace(
                seg, inline=seg.inline[nbytes:]
            )
        if seg.kind == STREAM_TO_DISCARD:
            return replace(seg, discard=nbytes), replace(seg, discard=seg.discard - nbytes)
        if nbytes % self.block_length:
            raise ValueError(f"record size is not a multiple of the {self.block_length}-byte block")
        n = nbytes // self.block_length
        return replace(seg, blocks=n), replace(seg, lba=seg.lba + n, blocks=seg.blocks - n)

    def parameter_list(self, segments: list[Segment], list_id: int = 0) -> bytes:
        """The LID1 parameter list for `segments`: disk is CSCD 0, tape CSCD 1."""
        if self.disk is None or self.tape is None:
            raise ValueError("a plan without unit designators can only run on the host")
        cscds = target_descriptor(self.disk, DISK_TYPE, self.block_length) + target_descriptor(
            self.tape, TAPE_TYPE, 0
        )
        seg_bytes = bytearray()
        inline = bytearray()
        for seg in segments:
            if seg.kind == INLINE_TO_STREAM:
                seg_bytes += InlineStreamSegment.build(
                    {
                        "flags": CAT,
                        "destination": 1,
                        "stream_transfer": self.record_size,
                        "offset": len(inline),
                        "count": len(seg.inline),
                    }
                )
                inline += seg.inline
                inline += bytes(-len(inline) % 4)
            elif seg.kind == STREAM_TO_DISCARD:
                seg_bytes += DiscardSegment.build(
                    {
                        "flags": CAT,
                        "source": 1,
                        "stream_transfer": self.record_size,
                        "count": seg.discard,
                    }
                )
            else:
                to_tape = seg.kind == BLOCK_TO_STREAM
                seg_bytes += BlockStreamSegment.build(
                    {
                        "type": seg.kind,
                        "flags": CAT,
                        "source": 0 if to_tape else 1,
                        "destination": 1 if to_tape else 0,
                        "stream_transfer": self.record_size,
                        "blocks": seg.blocks,
                        "lba": seg.lba,
                    }
                )
        head = ParameterListHeader.build(
            {
                "list_id": list_id,
                "flags": 0x00,  # LIST ID USAGE 00b: results held for RECEIVE COPY RESULTS
                "cscd_length": len(cscds),
                "segment_length": len(seg_bytes),
                "inline_length": len(inline),
            }
        )
        return head + cscds + bytes(seg_bytes) + bytes(inline)


class ParameterListError(ValueError):
    """A parameter list the copy manager refuses, with the ASC/ASCQ it answers."""

    def __init__(self, asc: int, ascq: int, message: str) -> None:
        super().__init__(message)
        self.asc, self.ascq = asc, ascq


@dataclass(frozen=True, slots=True)
class Cscd:
    """A decoded 0xE4 copy source/destination descriptor."""

    designator: Designator
    device_type: int
    block_length: int


@dataclass(frozen=True, slots=True)
class ParsedList:
    """What an EXTENDED COPY parameter list asks for."""

    list_id: int
    hold_results: bool
    cscds: list[Cscd]
    segments: list[tuple[int, int, Segment]]  # (source CSCD, destination CSCD, segment)
    record_size: int  # the stream device transfer length all segments share


def parse_parameter_list(data: bytes, max_cscd: int = 16, max_segments: int = 65535) -> ParsedList:
    """Decode a LID1 parameter list defensively; ParameterListError on anything wrong."""
    if len(data) < 16:
        raise ParameterListError(0x1A, 0x00, "parameter list shorter than its header")
    head = ParameterListHeader.parse(data)
    end = 16 + head.cscd_length + head.segment_length + head.inline_length
    if end > len(data):
        raise ParameterListError(0x1A, 0x00, "parameter list shorter than its lengths say")
    if head.cscd_length % 32:
        raise ParameterListError(0x26, 0x00, "CSCD list length is not a multiple of 32")
    if head.cscd_length // 32 > max_cscd:
        raise ParameterListError(0x26, 0x06, f"more than {max_cscd} CSCD descriptors")
    cscds: list[Cscd] = []
    for pos in range(16, 16 + head.cscd_length, 32):
        raw = data[pos : pos + 32]
        if raw[0] != IDENTIFICATION:
            raise ParameterListError(0x26, 0x07, f"CSCD type {raw[0]:#04x} is not supported")
        d = IdentificationDescriptor.parse(raw)
        length = d.designation[3]
        if length > MAX_XCOPY_DESIGNATOR:
            raise ParameterListError(0x26, 0x00, "designator longer than 16 bytes")
        desig = Designator(
            d.designation[0] & 0x0F,
            (d.designation[1] >> 4) & 0x03,
            d.designation[1] & 0x0F,
            bytes(d.designation[4 : 4 + length]),
        )
        if d.b1 & 0x1F == TAPE_TYPE and (d.params_flags & FIXED_BIT or d.block_length):
            # only variable-length mode (FIXED 0, length 0) is implemented; SPC also requires
            # refusing FIXED=0 with a length and FIXED=1 without one
            raise ParameterListError(
                0x26, 0x00, "tape CSCD: only variable-length mode (FIXED=0, no block length)"
            )
        cscds.append(Cscd(desig, d.b1 & 0x1F, d.block_length))
    inline_start = 16 + head.cscd_length + head.segment_length
    inline = data[inline_start : inline_start + head.inline_length]
    segments: list[tuple[int, int, Segment]] = []
    transfers: set[int] = set()
    pos, stop = 16 + head.cscd_length, inline_start
    while pos < stop:
        if len(segments) >= max_segments:
            raise ParameterListError(0x26, 0x08, f"more than {max_segments} segments")
        if pos + 4 > stop:
            raise ParameterListError(0x26, 0x00, "truncated segment descriptor")
        kind, size = data[pos], 4 + int.from_bytes(data[pos + 2 : pos + 4], "big")
        raw = data[pos : pos + size]
        if pos + size > stop:
            raise ParameterListError(0x26, 0x00, "segment descriptor past the segment list")
        try:
            if kind in (BLOCK_TO_STREAM, STREAM_TO_BLOCK) and size == 24:
                d = BlockStreamSegment.parse(raw)
                seg = Segment(kind, lba=d.lba, blocks=d.blocks)
                src, dst = d.source, d.destination
            elif kind == INLINE_TO_STREAM and size == 20:
                d = InlineStreamSegment.parse(raw)
                if d.offset + d.count > len(inline):
                    raise ParameterListError(0x26, 0x0B, "inline segment past the inline data")
                seg = Segment(kind, inline=bytes(inline[d.offset : d.offset + d.count]))
                src, dst = 0xFFFF, d.destination
            elif kind == STREAM_TO_DISCARD and size == 16:
                d = DiscardSegment.parse(raw)
                seg = Segment(kind, discard=d.count)
                src, dst = d.source, 0xFFFF
            else:
                raise ParameterListError(0x26, 0x09, f"segment type {kind:#04x} not supported")
        except ConstructError as exc:
            raise ParameterListError(0x26, 0x00, f"malformed segment: {exc}") from exc
        for index in (src, dst):
            if index != 0xFFFF and index >= len(cscds):
                raise ParameterListError(0x26, 0x00, f"segment names CSCD {index}, not listed")
        transfers.add(d.stream_transfer)
        segments.append((src, dst, seg))
        pos += size
    if len(transfers) > 1 or 0 in transfers:
        raise ParameterListError(0x26, 0x00, "segments must share one non-zero transfer length")
    usage = (head.flags >> 3) & 0x03
    return ParsedList(head.list_id, usage == 0, cscds, segments, min(transfers, default=0))


__all__ = [
    "CopyPlan",
    "CopyStatus",
    "ParameterListError",
    "parse_parameter_list",
    "ExtendedCopy",
    "ReceiveCopyResults",
    "Segment",
    "target_descriptor",
]
