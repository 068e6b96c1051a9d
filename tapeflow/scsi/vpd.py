"""Device Identification VPD page (0x83): the designators that name a logical unit, used to
point an EXTENDED COPY target descriptor (0xE4) at a disk or a tape drive."""

from __future__ import annotations

from dataclasses import dataclass

from construct import Bytes, Int8ub, Int16ub, Padding, Struct, this

from tapeflow.scsi.command import Command, spc
from tapeflow.scsi.device import ScsiDevice

DEVICE_IDENTIFICATION = 0x83

# Designator types (SPC-4 7.8.6.1).
T10_VENDOR_ID = 0x1
EUI64 = 0x2
NAA = 0x3

VpdPageHeader = Struct("peripheral" / Int8ub, "page" / Int8ub, "length" / Int16ub)

DesignationDescriptor = Struct(
    "code_set" / Int8ub,  # protocol identifier << 4 | code set (1 binary, 2 ASCII, 3 UTF-8)
    "kind" / Int8ub,  # PIV << 7 | association << 4 | designator type
    Padding(1),
    "length" / Int8ub,
    "designator" / Bytes(this.length),
)

# An 0xE4 target descriptor has room for a 20-byte designation descriptor: 4 + 16.
MAX_XCOPY_DESIGNATOR = 16


@dataclass(frozen=True, slots=True)
class Designator:
    """One designation descriptor of a logical unit."""

    code_set: int
    association: int  # 0 = the logical unit itself
    type: int
    value: bytes

    def build(self) -> bytes:
        """The designation descriptor bytes (header + value)."""
        return DesignationDescriptor.build(
            {
                "code_set": self.code_set,
                "kind": (self.association << 4) | self.type,
                "length": len(self.value),
                "designator": self.value,
            }
        )


class DeviceIdentification(Command):
    """INQUIRY for VPD page 0x83."""

    _cdb_bits = {"opcode": [0xFF, 0], "evpd": [0x01, 1], "page": [0xFF, 2], "alloc": [0xFFFF, 3]}

    def __init__(self, alloc: int = 1024) -> None:
        Command.__init__(
            self,
            spc.INQUIRY,
            data_in_len=alloc,
            evpd=1,
            page=DEVICE_IDENTIFICATION,
            alloc=alloc,
        )


def parse_designators(data: bytes) -> list[Designator]:
    """Decode a 0x83 page, tolerating a reply shorter than its declared length."""
    if len(data) < 4:
        return []
    head = VpdPageHeader.parse(data)
    body = data[4 : 4 + head.length]
    out: list[Designator] = []
    pos = 0
    while pos + 4 <= len(body):
        length = body[pos + 3]
        if pos + 4 + length > len(body):
            break
        d = DesignationDescriptor.parse(body[pos : pos + 4 + length])
        out.append(Designator(d.code_set & 0x0F, (d.kind >> 4) & 0x03, d.kind & 0x0F, d.designator))
        pos += 4 + length
    return out


def xcopy_designator(designators: list[Designator]) -> Designator | None:
    """The designator an 0xE4 descriptor should carry: one naming the logical unit that fits
    in 16 bytes, preferring NAA, then EUI-64, then a T10 vendor id."""
    fits = [d for d in designators if d.association == 0 and len(d.value) <= MAX_XCOPY_DESIGNATOR]
    for wanted in (NAA, EUI64, T10_VENDOR_ID):
        for d in fits:
            if d.type == wanted:
                return d
    return None


def unit_designator(dev: ScsiDevice) -> Designator:
    """The XCOPY-usable designator of the unit behind `dev`; ValueError if the unit reports
    none that fits an 0xE4 descriptor."""
    found = xcopy_designator(parse_designators(dev.execute(DeviceIdentification())))
    if found is None:
        raise ValueError(f"{dev.name}: no NAA/EUI-64 designator in VPD 0x83")
    return found
