"""construct declarations of the CDBs the library accepts and the data it returns.

Layouts are compiled once; flag bits stay as whole bytes and are tested with masks in the
handlers (bit-level construct parsing is needlessly slow on the READ/WRITE path).
"""

from __future__ import annotations

from construct import Bytes, Int8ub, Int16ub, Int24sb, Int24ub, Int32ub, Int64ub, Padding, Struct

# --- CDBs -------------------------------------------------------------------------------------
Cdb6 = Struct(  # generic 6-byte CDB: TUR, REWIND, LOAD, ERASE, RESERVE, PREVENT, MODE SENSE ...
    "opcode" / Int8ub,
    "b1" / Int8ub,
    "b2" / Int8ub,
    "b3" / Int8ub,
    "b4" / Int8ub,
    "control" / Int8ub,
).compile()

ReadWrite6 = Struct(  # READ(6), WRITE(6), WRITE FILEMARKS(6): b1 bit0 FIXED/IMMED, bit1 SILI/WSMK
    "opcode" / Int8ub, "flags" / Int8ub, "length" / Int24ub, "control" / Int8ub
).compile()

Space6 = Struct(  # SPACE(6): b1 low nibble = code; count is 24-bit two's complement
    "opcode" / Int8ub, "code" / Int8ub, "count" / Int24sb, "control" / Int8ub
).compile()

Inquiry = Struct(
    "opcode" / Int8ub, "evpd" / Int8ub, "page" / Int8ub, "alloc" / Int16ub, "control" / Int8ub
).compile()

Locate10 = Struct(  # b1: BT 0x04, CP 0x02, IMMED 0x01
    "opcode" / Int8ub,
    "flags" / Int8ub,
    Padding(1),
    "block" / Int32ub,
    Padding(1),
    "partition" / Int8ub,
    "control" / Int8ub,
).compile()

Locate16 = Struct(  # b1: DEST_TYPE bits 3-5, CP 0x02, IMMED 0x01
    "opcode" / Int8ub,
    "flags" / Int8ub,
    "bam" / Int8ub,
    "partition" / Int8ub,
    "identifier" / Int64ub,
    Padding(3),
    "control" / Int8ub,
).compile()

ReadPosition = Struct(
    "opcode" / Int8ub,
    "service_action" / Int8ub,
    Padding(5),
    "alloc" / Int16ub,
    "control" / Int8ub,
).compile()

ReadElementStatus = Struct(  # b1: VOLTAG 0x10, element type in the low nibble
    "opcode" / Int8ub,
    "flags" / Int8ub,
    "start" / Int16ub,
    "count" / Int16ub,
    "b6" / Int8ub,
    "alloc" / Int24ub,
    Padding(1),
    "control" / Int8ub,
).compile()

MoveMedium = Struct(
    "opcode" / Int8ub,
    Padding(1),
    "transport" / Int16ub,
    "source" / Int16ub,
    "destination" / Int16ub,
    Padding(2),
    "invert" / Int8ub,
    "control" / Int8ub,
).compile()

PositionToElement = Struct(
    "opcode" / Int8ub,
    Padding(1),
    "transport" / Int16ub,
    "destination" / Int16ub,
    Padding(2),
    "invert" / Int8ub,
    "control" / Int8ub,
).compile()

# --- data-in / data-out -----------------------------------------------------------------------
StandardInquiryData = Struct(
    "peripheral" / Int8ub,  # qualifier (0) << 5 | device type
    "rmb" / Int8ub,  # 0x80 = removable medium
    "version" / Int8ub,  # 0x06 = SPC-4
    "response_format" / Int8ub,  # 0x02
    "additional_length" / Int8ub,  # bytes after this one (31)
    "flags" / Bytes(3),
    "vendor" / Bytes(8),
    "product" / Bytes(16),
    "revision" / Bytes(4),
)

VpdHeader = Struct("peripheral" / Int8ub, "page" / Int8ub, "length" / Int16ub)

DesignatorHeader = Struct(  # VPD 0x83 designation descriptor header
    "code_set" / Int8ub,  # 0x02 = ASCII
    "type" / Int8ub,  # association << 4 | designator type (1 = T10 vendor ID)
    Padding(1),
    "length" / Int8ub,
)

# Mode pages, block limits and READ POSITION data are declared once, in tapeflow.scsi.ssc.
