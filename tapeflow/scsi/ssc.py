"""SSC (tape) and the SPC commands a tape drive needs, as pyscsi-style CDB classes.

pyscsi 2.1 ships SMC but no tape commands; each class below declares its CDB layout in pyscsi's
`_cdb_bits` notation and, where the device answers with data, a construct layout to decode it.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum

from construct import (
    BitsInteger,
    BitStruct,
    Bytes,
    Flag,
    Int8ub,
    Int16ub,
    Int24ub,
    Int32ub,
    Int64ub,
    Padding,
    Struct,
)

from tapeflow.scsi.command import Command, OpCode, spc, ssc

# Opcodes pyscsi's SSC table lacks.
_LOCATE10 = OpCode("LOCATE_10", 0x2B, {})
_ERASE6 = OpCode("ERASE_6", 0x19, {})
_RESERVE6 = OpCode("RESERVE_6", 0x16, {})
_RELEASE6 = OpCode("RELEASE_6", 0x17, {})


class SpaceCode(IntEnum):
    """What SPACE counts."""

    BLOCKS = 0
    FILEMARKS = 1
    END_OF_DATA = 3


class TestUnitReady(Command):
    """TEST UNIT READY: raises NotReady/NoMedium when the drive can't take commands."""

    __test__ = False  # not a pytest class

    def __init__(self) -> None:
        Command.__init__(self, spc.TEST_UNIT_READY)


class Inquiry(Command):
    """INQUIRY, standard data or a VPD page."""

    _cdb_bits = {
        "opcode": [0xFF, 0],
        "evpd": [0x01, 1],
        "page_code": [0xFF, 2],
        "alloc": [0xFFFF, 3],
    }

    def __init__(self, page: int | None = None, alloc: int = 255) -> None:
        Command.__init__(
            self,
            spc.INQUIRY,
            data_in_len=alloc,
            evpd=int(page is not None),
            page_code=page or 0,
            alloc=alloc,
        )


StandardInquiry = Struct(
    "peripheral" / BitStruct("qualifier" / BitsInteger(3), "device_type" / BitsInteger(5)),
    "rmb" / Int8ub,
    "version" / Int8ub,
    "flags" / Int8ub,
    "additional_length" / Int8ub,
    Padding(3),
    "vendor" / Bytes(8),
    "product" / Bytes(16),
    "revision" / Bytes(4),
)


@dataclass(frozen=True, slots=True)
class InquiryData:
    """What INQUIRY tells about a unit."""

    device_type: int
    vendor: str
    product: str
    revision: str


def parse_inquiry(data: bytes) -> InquiryData:
    """Decode standard INQUIRY data; short replies are padded with blanks."""
    std = StandardInquiry.parse(bytes(data).ljust(36, b" "))

    def text(raw: bytes) -> str:
        return raw.decode("ascii", "replace").strip()

    return InquiryData(
        std.peripheral.device_type, text(std.vendor), text(std.product), text(std.revision)
    )


def parse_unit_serial(data: bytes) -> str:
    """Decode VPD page 0x80 (unit serial number)."""
    raw = bytes(data)
    if len(raw) < 4 or raw[1] != 0x80:
        return ""
    length = min(int.from_bytes(raw[2:4], "big"), len(raw) - 4)
    return raw[4 : 4 + length].decode("ascii", "replace").strip()


class RequestSense(Command):
    """REQUEST SENSE: the sense of the last command (fixed format)."""

    _cdb_bits = {"opcode": [0xFF, 0], "desc": [0x01, 1], "alloc": [0xFF, 4]}

    def __init__(self, alloc: int = 252) -> None:
        Command.__init__(self, spc.REQUEST_SENSE, data_in_len=alloc, desc=0, alloc=alloc)


class Read6(Command):
    """READ(6): one variable block of up to `length` bytes, or `length` fixed blocks."""

    _cdb_bits = {
        "opcode": [0xFF, 0],
        "sili": [0x02, 1],
        "fixed": [0x01, 1],
        "length": [0xFFFFFF, 2],
    }

    def __init__(self, length: int, *, fixed_block: int = 0, sili: bool = False) -> None:
        nbytes = length * fixed_block if fixed_block else length
        Command.__init__(
            self,
            ssc.READ_6,
            data_in_len=nbytes,
            sili=int(sili and not fixed_block),
            fixed=int(bool(fixed_block)),
            length=length,
        )


class Write6(Command):
    """WRITE(6): `data` as one variable block, or as whole fixed blocks."""

    _cdb_bits = {"opcode": [0xFF, 0], "fixed": [0x01, 1], "length": [0xFFFFFF, 2]}

    def __init__(self, data: bytes | memoryview, *, fixed_block: int = 0) -> None:
        if fixed_block and len(data) % fixed_block:
            raise ValueError(f"{len(data)} bytes is not a multiple of the {fixed_block}-byte block")
        length = len(data) // fixed_block if fixed_block else len(data)
        if length > 0xFFFFFF:
            raise ValueError(f"transfer length {length} exceeds WRITE(6)'s 24 bits")
        Command.__init__(
            self, ssc.WRITE_6, data_out=data, fixed=int(bool(fixed_block)), length=length
        )


class WriteFilemarks(Command):
    """WRITE FILEMARKS(6); count 0 flushes the drive's buffer to tape."""

    _cdb_bits = {"opcode": [0xFF, 0], "immed": [0x01, 1], "count": [0xFFFFFF, 2]}

    def __init__(self, count: int = 1) -> None:
        Command.__init__(self, ssc.WRITE_FILEMARKS_6, immed=0, count=count)


class Rewind(Command):
    """REWIND to beginning of partition."""

    _cdb_bits = {"opcode": [0xFF, 0], "immed": [0x01, 1]}

    def __init__(self) -> None:
        Command.__init__(self, ssc.REWIND, immed=0)


class Space6(Command):
    """SPACE(6) over blocks, filemarks or to end-of-data; negative counts go backwards."""

    _cdb_bits = {"opcode": [0xFF, 0], "code": [0x0F, 1], "count": [0xFFFFFF, 2]}

    def __init__(self, count: int, code: SpaceCode = SpaceCode.BLOCKS) -> None:
        if not -(1 << 23) <= count < (1 << 23):
            raise ValueError(f"SPACE count {count} out of 24-bit range")
        Command.__init__(self, ssc.SPACE_6, code=int(code), count=count & 0xFFFFFF)


class Locate16(Command):
    """LOCATE(16) to a logical object identifier (block number counting filemarks)."""

    _cdb_bits = {
        "opcode": [0xFF, 0],
        "dest_type": [0x38, 1],
        "cp": [0x02, 1],
        "partition": [0xFF, 3],
        "lo": [0xFFFFFFFFFFFFFFFF, 4],
    }

    def __init__(self, block: int) -> None:
        if block < 0:
            raise ValueError(f"negative block address {block}")
        Command.__init__(self, ssc.LOCATE_16, dest_type=0, cp=0, partition=0, lo=block)


class Locate10(Command):
    """LOCATE(10): the 32-bit form, for drives without LOCATE(16)."""

    _cdb_bits = {"opcode": [0xFF, 0], "bt": [0x04, 1], "block": [0xFFFFFFFF, 3]}

    def __init__(self, block: int) -> None:
        Command.__init__(self, _LOCATE10, bt=0, block=block)


class ReadPosition(Command):
    """READ POSITION, long form (service action 6): 64-bit block and file numbers."""

    _cdb_bits = {"opcode": [0xFF, 0], "sa": [0x1F, 1], "alloc": [0xFFFF, 7]}

    def __init__(self, long_form: bool = True) -> None:
        alloc = 32 if long_form else 20
        Command.__init__(
            self, ssc.READ_POSITION, data_in_len=alloc, sa=6 if long_form else 0, alloc=alloc
        )


PositionShort = Struct(
    "flags" / BitStruct("bop" / Flag, "eop" / Flag, Padding(3), "bpu" / Flag, Padding(2)),
    "partition" / Int8ub,
    Padding(2),
    "first_block" / Int32ub,
    "last_block" / Int32ub,
    Padding(1),
    "blocks_in_buffer" / Int24ub,
    "bytes_in_buffer" / Int32ub,
)

PositionLong = Struct(
    "flags"
    / BitStruct("bop" / Flag, "eop" / Flag, Padding(2), "mpu" / Flag, "lonu" / Flag, Padding(2)),
    Padding(3),
    "partition" / Int32ub,
    "block" / Int64ub,
    "file" / Int64ub,
    "set" / Int64ub,
)


@dataclass(frozen=True, slots=True)
class Position:
    """Where the tape is: logical block (objects incl. filemarks), file number if known."""

    block: int
    file: int | None
    bop: bool
    eop: bool


def parse_position(data: bytes) -> Position:
    """Decode short (20-byte) or long (32-byte) READ POSITION data."""
    raw = bytes(data)
    if len(raw) >= 32:
        long = PositionLong.parse(raw[:32])
        return Position(long.block, long.file, long.flags.bop, long.flags.eop)
    short = PositionShort.parse(raw.ljust(20, b"\0"))
    return Position(short.first_block, None, short.flags.bop, short.flags.eop)


class LoadUnload(Command):
    """LOAD (thread to beginning) or UNLOAD (rewind and eject for the changer)."""

    _cdb_bits = {"opcode": [0xFF, 0], "immed": [0x01, 1], "load": [0x01, 4]}

    def __init__(self, load: bool) -> None:
        Command.__init__(self, ssc.LOAD_UNLOAD, immed=0, load=int(load))


class Erase(Command):
    """ERASE(6): short writes end-of-data here; long erases to the end of the tape."""

    _cdb_bits = {"opcode": [0xFF, 0], "long": [0x01, 1]}

    def __init__(self, long: bool = False) -> None:
        Command.__init__(self, _ERASE6, long=int(long))


class ReadBlockLimits(Command):
    """READ BLOCK LIMITS: the smallest and largest block the drive accepts."""

    def __init__(self) -> None:
        Command.__init__(self, ssc.READ_BLOCK_LIMITS, data_in_len=6)


BlockLimits = Struct("granularity" / Int8ub, "max_length" / Int24ub, "min_length" / Int16ub)

# --- MODE SENSE / SELECT(6) -------------------------------------------------------------------
MODE_PAGE_COMPRESSION = 0x0F
MODE_PAGE_ALL = 0x3F


class ModeSense6(Command):
    """MODE SENSE(6) with the block descriptor (block size, write protect) and one page."""

    _cdb_bits = {
        "opcode": [0xFF, 0],
        "dbd": [0x08, 1],
        "pc": [0xC0, 2],
        "page": [0x3F, 2],
        "alloc": [0xFF, 4],
    }

    def __init__(self, page: int = MODE_PAGE_COMPRESSION, alloc: int = 255) -> None:
        Command.__init__(
            self, ssc.MODE_SENSE_6, data_in_len=alloc, dbd=0, pc=0, page=page, alloc=alloc
        )


class ModeSelect6(Command):
    """MODE SELECT(6) with page format: sets block size and/or a mode page."""

    _cdb_bits = {"opcode": [0xFF, 0], "pf": [0x10, 1], "length": [0xFF, 4]}

    def __init__(self, data: bytes) -> None:
        Command.__init__(self, ssc.MODE_SELECT_6, data_out=data, pf=1, length=len(data))


ModePageHeader = Struct("page_code" / Int8ub, "page_length" / Int8ub)

ModeHeader6 = Struct(
    "data_length" / Int8ub,
    "medium_type" / Int8ub,
    "device_specific"
    / BitStruct("wp" / Flag, "buffered_mode" / BitsInteger(3), "speed" / BitsInteger(4)),
    "descriptor_length" / Int8ub,
)

BlockDescriptor = Struct(
    "density" / Int8ub,
    "blocks" / Int24ub,
    Padding(1),
    "block_length" / Int24ub,
)

CompressionPage = Struct(
    "page_code" / Int8ub,
    "page_length" / Int8ub,
    "flags" / BitStruct("dce" / Flag, "dcc" / Flag, Padding(6)),
    "flags2" / BitStruct("dde" / Flag, "red" / BitsInteger(2), Padding(5)),
    "compression_algorithm" / Int32ub,
    "decompression_algorithm" / Int32ub,
    Padding(4),
)


@dataclass(frozen=True, slots=True)
class ModeInfo:
    """The drive settings a backup cares about."""

    write_protected: bool
    block_length: int  # 0 = variable
    density: int
    compression: bool | None  # None if the drive has no compression page


def parse_mode_sense(data: bytes) -> ModeInfo:
    """Decode MODE SENSE(6) data: header, optional block descriptor, compression page."""
    raw = bytes(data)
    if len(raw) < 4:
        raise ValueError(f"MODE SENSE reply of {len(raw)} bytes is too short")
    head = ModeHeader6.parse(raw[:4])
    end = min(len(raw), head.data_length + 1)
    pos = 4
    block_length = density = 0
    if head.descriptor_length >= 8 and len(raw) >= 12:
        desc = BlockDescriptor.parse(raw[4:12])
        block_length, density = desc.block_length, desc.density
    pos += head.descriptor_length
    compression: bool | None = None
    while pos + 2 <= end:
        code, length = raw[pos] & 0x3F, raw[pos + 1]
        if code == MODE_PAGE_COMPRESSION and pos + 4 <= end:
            compression = bool(raw[pos + 2] & 0x80)
        pos += 2 + length
    return ModeInfo(bool(head.device_specific.wp), block_length, density, compression)


def build_mode_select(block_length: int, compression: bool | None = None) -> bytes:
    """MODE SELECT(6) parameter list setting the block length and, if given, compression."""
    head = ModeHeader6.build(
        {
            "data_length": 0,
            "medium_type": 0,
            "device_specific": {"wp": False, "buffered_mode": 1, "speed": 0},
            "descriptor_length": 8,
        }
    )
    desc = BlockDescriptor.build({"density": 0, "blocks": 0, "block_length": block_length})
    page = b""
    if compression is not None:
        page = CompressionPage.build(
            {
                "page_code": MODE_PAGE_COMPRESSION,
                "page_length": 14,
                "flags": {"dce": compression, "dcc": True},
                "flags2": {"dde": True, "red": 0},
                "compression_algorithm": 1 if compression else 0,
                "decompression_algorithm": 1,
            }
        )
    return head + desc + page


class Reserve6(Command):
    """RESERVE(6): claim the unit for this initiator (I_T nexus)."""

    def __init__(self) -> None:
        Command.__init__(self, _RESERVE6)


class Release6(Command):
    """RELEASE(6): give the unit back."""

    def __init__(self) -> None:
        Command.__init__(self, _RELEASE6)


class PreventAllowRemoval(Command):
    """PREVENT ALLOW MEDIUM REMOVAL."""

    _cdb_bits = {"opcode": [0xFF, 0], "prevent": [0x03, 4]}

    def __init__(self, prevent: bool) -> None:
        Command.__init__(self, ssc.PREVENT_ALLOW_MEDIUM_REMOVAL, prevent=int(prevent))
