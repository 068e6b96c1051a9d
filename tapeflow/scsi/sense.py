"""Sense data (fixed 0x70/0x71 and descriptor 0x72/0x73 formats) and the typed errors built from it.

Every CHECK CONDITION becomes one exception class below, carrying key/ASC/ASCQ, the information
field (residue, or blocks not written) and a readable message.
"""

from __future__ import annotations

from dataclasses import dataclass

from construct import (
    BitsInteger,
    BitStruct,
    Bytes,
    Flag,
    GreedyBytes,
    Int8ub,
    Int32ub,
    Padding,
    Struct,
    this,
)

# --- sense keys -------------------------------------------------------------------------------
NO_SENSE = 0x0
RECOVERED_ERROR = 0x1
NOT_READY = 0x2
MEDIUM_ERROR = 0x3
HARDWARE_ERROR = 0x4
ILLEGAL_REQUEST = 0x5
UNIT_ATTENTION = 0x6
DATA_PROTECT = 0x7
BLANK_CHECK = 0x8
COPY_ABORTED = 0xA
ABORTED_COMMAND = 0xB
VOLUME_OVERFLOW = 0xD

KEY_NAMES = {
    0x0: "NO SENSE",
    0x1: "RECOVERED ERROR",
    0x2: "NOT READY",
    0x3: "MEDIUM ERROR",
    0x4: "HARDWARE ERROR",
    0x5: "ILLEGAL REQUEST",
    0x6: "UNIT ATTENTION",
    0x7: "DATA PROTECT",
    0x8: "BLANK CHECK",
    0x9: "VENDOR SPECIFIC",
    0xA: "COPY ABORTED",
    0xB: "ABORTED COMMAND",
    0xD: "VOLUME OVERFLOW",
    0xE: "MISCOMPARE",
}

# (ASC, ASCQ) -> text, for the codes a tape library actually returns.
ASC_NAMES = {
    (0x00, 0x00): "no additional sense information",
    (0x00, 0x01): "filemark detected",
    (0x00, 0x02): "end-of-partition/medium detected",
    (0x00, 0x04): "beginning-of-partition/medium detected",
    (0x00, 0x05): "end-of-data detected",
    (0x04, 0x00): "logical unit not ready, cause not reportable",
    (0x04, 0x01): "logical unit is in process of becoming ready",
    (0x04, 0x02): "logical unit not ready, initializing command required",
    (0x0D, 0x00): "error detected by third party temporary initiator",
    (0x0D, 0x01): "third party device failure",
    (0x0D, 0x02): "copy target device not reachable",
    (0x0D, 0x03): "incorrect copy target device type",
    (0x0D, 0x04): "copy target device data underrun",
    (0x0D, 0x05): "copy target device data overrun",
    (0x14, 0x00): "recorded entity not found",
    (0x14, 0x03): "end-of-data not found",
    (0x1A, 0x00): "parameter list length error",
    (0x20, 0x00): "invalid command operation code",
    (0x21, 0x01): "invalid element address",
    (0x24, 0x00): "invalid field in CDB",
    (0x25, 0x00): "logical unit not supported",
    (0x26, 0x00): "invalid field in parameter list",
    (0x26, 0x06): "too many target descriptors",
    (0x26, 0x07): "unsupported target descriptor type code",
    (0x26, 0x08): "too many segment descriptors",
    (0x26, 0x09): "unsupported segment descriptor type code",
    (0x26, 0x0A): "unexpected inexact segment",
    (0x26, 0x0B): "inline data length exceeded",
    (0x26, 0x0C): "invalid operation for copy source or destination",
    (0x27, 0x00): "write protected",
    (0x28, 0x00): "not ready to ready change, medium may have changed",
    (0x28, 0x01): "import or export element accessed",
    (0x29, 0x00): "power on, reset, or bus device reset occurred",
    (0x30, 0x00): "incompatible medium installed",
    (0x30, 0x03): "cleaning cartridge installed",
    (0x3A, 0x00): "medium not present",
    (0x3B, 0x0D): "medium destination element full",
    (0x3B, 0x0E): "medium source element empty",
    (0x3B, 0x11): "medium magazine not accessible",
    (0x3B, 0x12): "medium magazine removed",
    (0x3F, 0x01): "microcode has been changed",
    (0x44, 0x00): "internal target failure",
    (0x53, 0x02): "medium removal prevented",
    (0x55, 0x06): "auxiliary memory out of space",
}

# --- binary layout ----------------------------------------------------------------------------
FixedSense = Struct(
    "head" / BitStruct("valid" / Flag, "response_code" / BitsInteger(7)),
    "segment" / Int8ub,
    "flags"
    / BitStruct(
        "filemark" / Flag,
        "eom" / Flag,
        "ili" / Flag,
        Padding(1),
        "key" / BitsInteger(4),
    ),
    "information" / Int32ub,
    "additional_length" / Int8ub,
    "command_specific" / Int32ub,
    "asc" / Int8ub,
    "ascq" / Int8ub,
    "fru" / Int8ub,
    "sense_key_specific" / Bytes(3),
    "rest" / GreedyBytes,
)

DescriptorSenseHeader = Struct(
    "response_code" / Int8ub,
    "key" / Int8ub,
    "asc" / Int8ub,
    "ascq" / Int8ub,
    Padding(3),
    "additional_length" / Int8ub,
    "descriptors" / GreedyBytes,
)

SenseDescriptor = Struct(
    "type" / Int8ub,
    "length" / Int8ub,
    "body" / Bytes(this.length),
)


@dataclass(frozen=True, slots=True)
class Sense:
    """Decoded sense data: what every typed error carries."""

    key: int
    asc: int
    ascq: int
    information: int | None = None
    filemark: bool = False
    eom: bool = False
    ili: bool = False
    raw: bytes = b""

    def describe(self) -> str:
        """One readable line, e.g. 'NOT READY (02/3A/00): medium not present'."""
        key = KEY_NAMES.get(self.key, f"key {self.key:#x}")
        text = ASC_NAMES.get((self.asc, self.ascq), f"ASC/ASCQ {self.asc:02X}/{self.ascq:02X}")
        flags = [n for n, on in (("FM", self.filemark), ("EOM", self.eom), ("ILI", self.ili)) if on]
        extra = f" [{' '.join(flags)}]" if flags else ""
        info = f" info={self.information}" if self.information is not None else ""
        return f"{key} ({self.key:02X}/{self.asc:02X}/{self.ascq:02X}): {text}{extra}{info}"


def _signed32(value: int) -> int:
    return value - (1 << 32) if value & 0x80000000 else value


def parse_sense(raw: bytes) -> Sense:
    """Decode fixed or descriptor sense; short or truncated buffers decode as far as they go."""
    data = bytes(raw)
    if not data:
        return Sense(NO_SENSE, 0, 0, raw=data)
    code = data[0] & 0x7F
    if code in (0x70, 0x71):
        padded = data + bytes(max(0, 18 - len(data)))
        fixed = FixedSense.parse(padded)
        info = _signed32(fixed.information) if fixed.head.valid else None
        return Sense(
            key=fixed.flags.key,
            asc=fixed.asc if len(data) > 12 else 0,
            ascq=fixed.ascq if len(data) > 13 else 0,
            information=info,
            filemark=fixed.flags.filemark,
            eom=fixed.flags.eom,
            ili=fixed.flags.ili,
            raw=data,
        )
    if code in (0x72, 0x73):
        padded = data + bytes(max(0, 8 - len(data)))
        head = DescriptorSenseHeader.parse(padded)
        declared = min(head.additional_length, len(head.descriptors))
        body = head.descriptors[:declared]
        info: int | None = None
        filemark = eom = ili = False
        pos = 0
        while pos + 2 <= len(body):
            length = body[pos + 1]
            if pos + 2 + length > len(body):
                break  # the device declared more than it sent
            desc = SenseDescriptor.parse(body[pos : pos + 2 + length])
            if desc.type == 0x00 and len(desc.body) >= 10:  # information
                info = int.from_bytes(desc.body[2:10], "big", signed=True)
            elif desc.type == 0x04 and len(desc.body) >= 2:  # stream commands
                filemark = bool(desc.body[1] & 0x80)
                eom = bool(desc.body[1] & 0x40)
                ili = bool(desc.body[1] & 0x20)
            pos += 2 + length
        return Sense(head.key & 0x0F, head.asc, head.ascq, info, filemark, eom, ili, raw=data)
    return Sense(NO_SENSE, 0, 0, raw=data)


def build_fixed_sense(
    key: int,
    asc: int = 0,
    ascq: int = 0,
    *,
    information: int | None = None,
    filemark: bool = False,
    eom: bool = False,
    ili: bool = False,
) -> bytes:
    """Build 18-byte fixed-format sense (what the embedded library returns)."""
    return FixedSense.build(
        {
            "head": {"valid": information is not None, "response_code": 0x70},
            "segment": 0,
            "flags": {"filemark": filemark, "eom": eom, "ili": ili, "key": key},
            "information": (information or 0) & 0xFFFFFFFF,
            "additional_length": 10,
            "command_specific": 0,
            "asc": asc,
            "ascq": ascq,
            "fru": 0,
            "sense_key_specific": bytes(3),
            "rest": b"",
        }
    )


# --- typed errors -----------------------------------------------------------------------------
class ScsiError(Exception):
    """A command ended in CHECK CONDITION (or another non-GOOD status)."""

    def __init__(self, sense: Sense, message: str | None = None, *, status: int = 0x02) -> None:
        self.sense = sense
        self.status = status
        self.data = b""  # data-in that arrived with the error (e.g. a short block)
        super().__init__(message or sense.describe())

    @property
    def key(self) -> int:
        return self.sense.key

    @property
    def asc(self) -> int:
        return self.sense.asc

    @property
    def ascq(self) -> int:
        return self.sense.ascq

    @property
    def information(self) -> int | None:
        return self.sense.information


class FilemarkDetected(ScsiError):
    """A READ or SPACE crossed a filemark; the tape is positioned after it."""


class EndOfMedium(ScsiError):
    """Early warning: the write succeeded but the cartridge is nearly full. Finish and span."""


class VolumeOverflow(EndOfMedium):
    """Physical end of medium: the data was NOT written (information = blocks not written)."""


class EndOfData(ScsiError):
    """BLANK CHECK: nothing recorded past this point."""


class BeginningOfMedium(ScsiError):
    """A backward SPACE reached the beginning of the tape."""


class IncorrectLength(ScsiError):
    """The block read differs from the length asked for; information = requested - actual."""


class NotReady(ScsiError):
    """The logical unit is not ready."""


class NoMedium(NotReady):
    """No cartridge in the drive."""


class WriteProtected(ScsiError):
    """The cartridge is write-protected."""


class DataProtect(ScsiError):
    """DATA PROTECT other than write protection."""


class MediumError(ScsiError):
    """Unrecoverable read/write error on the medium."""


class HardwareError(ScsiError):
    """The device reports a hardware failure."""


class IllegalRequest(ScsiError):
    """The device refused the CDB or its parameters."""


class InvalidElementAddress(IllegalRequest):
    """SMC: an element address outside the library."""


class DestinationFull(IllegalRequest):
    """SMC: MOVE MEDIUM into an element that is already occupied."""


class SourceEmpty(IllegalRequest):
    """SMC: MOVE MEDIUM from an element that holds nothing."""


class UnitAttention(ScsiError):
    """The device state changed (reset, medium changed); the command was not executed."""


class AbortedCommand(ScsiError):
    """The device aborted the command."""


class CopyAborted(ScsiError):
    """An EXTENDED COPY stopped part way (sense key COPY ABORTED); RECEIVE COPY RESULTS
    says how many segments were done."""


class ReservationConflict(ScsiError):
    """The logical unit is reserved by another initiator (status 0x18)."""


def error_for(sense: Sense, *, status: int = 0x02) -> ScsiError:
    """Map decoded sense (and status) to the most specific exception class."""
    if status == 0x18:
        return ReservationConflict(
            sense, "reservation conflict: the unit is owned by another initiator", status=status
        )
    key, asc, ascq = sense.key, sense.asc, sense.ascq
    cls: type[ScsiError]
    if key == VOLUME_OVERFLOW:
        cls = VolumeOverflow
    elif key == BLANK_CHECK or (asc, ascq) == (0x00, 0x05):
        cls = EndOfData
    elif key in (NO_SENSE, RECOVERED_ERROR) and sense.filemark:
        cls = FilemarkDetected
    elif key in (NO_SENSE, RECOVERED_ERROR) and sense.eom:
        cls = BeginningOfMedium if (asc, ascq) == (0x00, 0x04) else EndOfMedium
    elif key in (NO_SENSE, RECOVERED_ERROR) and sense.ili:
        cls = IncorrectLength
    elif key == NOT_READY:
        cls = NoMedium if asc == 0x3A else NotReady
    elif key == DATA_PROTECT:
        cls = WriteProtected if asc == 0x27 else DataProtect
    elif key == MEDIUM_ERROR:
        cls = MediumError
    elif key == HARDWARE_ERROR:
        cls = HardwareError
    elif key == ILLEGAL_REQUEST:
        cls = {
            (0x21, 0x01): InvalidElementAddress,
            (0x3B, 0x0D): DestinationFull,
            (0x3B, 0x0E): SourceEmpty,
        }.get((asc, ascq), IllegalRequest)
    elif key == UNIT_ATTENTION:
        cls = UnitAttention
    elif key == ABORTED_COMMAND:
        cls = AbortedCommand
    elif key == COPY_ABORTED:
        cls = CopyAborted
    else:
        cls = ScsiError
    return cls(sense, status=status)
