"""SMC READ ELEMENT STATUS data: construct layouts, a defensive parser and a builder.

pyscsi's own parser loops forever on some replies, and devices send descriptors shorter than the
length they declare; this parser is bounded by what actually arrived and never loops on zero
lengths.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum

from construct import Bytes, FlagsEnum, Int8ub, Int16ub, Int24ub, Padding, Struct


class ElementType(IntEnum):
    """SMC element type codes."""

    ALL = 0
    TRANSPORT = 1
    STORAGE = 2
    IMPORT_EXPORT = 3
    DRIVE = 4


# Compiled, with flag bytes as FlagsEnum rather than BitStruct: a library inventory parses
# (and the embedded changer builds) one descriptor per element on every mount and unmount,
# and this is ~6x faster per descriptor (4 us instead of 30 us).
ElementStatusHeader = Struct(
    "first_address" / Int16ub,
    "count" / Int16ub,
    Padding(1),
    "byte_count" / Int24ub,
).compile()

ElementPageHeader = Struct(
    "type" / Int8ub,
    "flags" / FlagsEnum(Int8ub, avoltag=0x40, pvoltag=0x80),
    "descriptor_length" / Int16ub,
    Padding(1),
    "byte_count" / Int24ub,
).compile()

ElementDescriptorBase = Struct(
    "address" / Int16ub,
    "flags"
    / FlagsEnum(
        Int8ub, full=0x01, impexp=0x02, exception=0x04, access=0x08, exenab=0x10, inenab=0x20
    ),
    Padding(1),
    "asc" / Int8ub,
    "ascq" / Int8ub,
    Padding(3),
    "source_flags" / FlagsEnum(Int8ub, invert=0x40, svalid=0x80),
    "source_address" / Int16ub,
).compile()

VolumeTag = Struct(
    "identifier" / Bytes(32),
    Padding(2),
    "sequence" / Int16ub,
).compile()

HEADER_LEN = ElementStatusHeader.sizeof()  # 8
PAGE_HEADER_LEN = ElementPageHeader.sizeof()  # 8
BASE_LEN = ElementDescriptorBase.sizeof()  # 12
VOLTAG_LEN = VolumeTag.sizeof()  # 36


@dataclass(frozen=True, slots=True)
class Element:
    """One changer element as reported by the device."""

    type: ElementType
    address: int
    full: bool = False
    barcode: str | None = None
    source_address: int | None = None
    access: bool = True
    exception: bool = False
    asc: int = 0
    ascq: int = 0
    impexp: bool = False  # import/export: medium was placed by the operator


def parse_element_status(data: bytes) -> list[Element]:
    """Parse READ ELEMENT STATUS data; stops at the end of what arrived, whatever was declared."""
    buf = bytes(data)
    if len(buf) < HEADER_LEN:
        return []
    header = ElementStatusHeader.parse(buf[:HEADER_LEN])
    end = min(len(buf), HEADER_LEN + header.byte_count)
    pos = HEADER_LEN
    elements: list[Element] = []
    while pos + PAGE_HEADER_LEN <= end:
        page = ElementPageHeader.parse(buf[pos : pos + PAGE_HEADER_LEN])
        pos += PAGE_HEADER_LEN
        page_end = min(end, pos + page.byte_count)
        # tgt's reply is 8 bytes short, cutting the last descriptor's volume tag after the
        # identifier: a descriptor counts once its barcode (first 32 tag bytes) is complete.
        needed = BASE_LEN + (32 if page.flags.pvoltag else 0)
        full_size = BASE_LEN + (VOLTAG_LEN if page.flags.pvoltag else 0)
        step = _descriptor_step(page.descriptor_length, page.byte_count, full_size)
        if step < BASE_LEN:
            break  # a zero or too-short descriptor length would loop forever or misparse
        try:
            etype = ElementType(page.type & 0x0F)
        except ValueError:
            pos = page_end
            continue
        while pos + needed <= page_end:  # a descriptor cut short by the allocation is dropped
            desc = buf[pos : min(pos + step, page_end)]
            elements.append(_parse_descriptor(etype, desc, page.flags.pvoltag))
            pos += step
        pos = page_end
    return elements


def _descriptor_step(declared: int, byte_count: int, needed: int) -> int:
    """The real descriptor size: some devices declare more than each descriptor holds, which
    shows as a page byte count that the declared size does not divide but the minimum does."""
    if declared and byte_count % declared and byte_count % needed == 0 and needed < declared:
        return needed
    return declared


def _parse_descriptor(etype: ElementType, desc: bytes, pvoltag: bool) -> Element:
    base = ElementDescriptorBase.parse(desc[:BASE_LEN])
    barcode: str | None = None
    if pvoltag and len(desc) >= BASE_LEN + 32:
        ident = desc[BASE_LEN : BASE_LEN + 32]
        text = ident.split(b"\x00", 1)[0].decode("ascii", "replace").strip()
        barcode = text or None
    return Element(
        type=etype,
        address=base.address,
        full=base.flags.full,
        barcode=barcode if base.flags.full else None,
        source_address=base.source_address if base.source_flags.svalid else None,
        access=base.flags.access,
        exception=base.flags.exception,
        asc=base.asc,
        ascq=base.ascq,
        impexp=base.flags.impexp,
    )


def _build_descriptor(el: Element, voltag: bool) -> bytes:
    raw = ElementDescriptorBase.build(
        {
            "address": el.address,
            "flags": {
                "inenab": el.type == ElementType.IMPORT_EXPORT,
                "exenab": el.type == ElementType.IMPORT_EXPORT,
                "access": el.access,
                "exception": el.exception,
                "impexp": el.impexp,
                "full": el.full,
            },
            "asc": el.asc,
            "ascq": el.ascq,
            "source_flags": {"svalid": el.source_address is not None, "invert": False},
            "source_address": el.source_address or 0,
        }
    )
    if voltag:
        ident = (el.barcode or "").encode("ascii")[:32].ljust(32, b" ") if el.full else bytes(32)
        raw += VolumeTag.build({"identifier": ident, "sequence": 0})
    return raw


def build_element_status(elements: list[Element], *, voltag: bool, alloc_len: int) -> bytes:
    """Build the reply for `elements` (already filtered and ordered), truncated to `alloc_len`.

    Elements are grouped into one page per run of the same type, as devices do.
    """
    pages: list[bytes] = []
    dlen = BASE_LEN + (VOLTAG_LEN if voltag else 0)
    i = 0
    while i < len(elements):
        etype = elements[i].type
        body = b""
        while i < len(elements) and elements[i].type == etype:
            body += _build_descriptor(elements[i], voltag)
            i += 1
        head = ElementPageHeader.build(
            {
                "type": int(etype),
                "flags": {"pvoltag": voltag, "avoltag": False},
                "descriptor_length": dlen,
                "byte_count": len(body),
            }
        )
        pages.append(head + body)
    payload = b"".join(pages)
    header = ElementStatusHeader.build(
        {
            "first_address": elements[0].address if elements else 0,
            "count": len(elements),
            "byte_count": len(payload),
        }
    )
    return (header + payload)[:alloc_len]


# MODE SENSE page 0x1D: where each kind of element starts and how many there are.
ElementAddressPage = Struct(
    "page_code" / Int8ub,
    "page_length" / Int8ub,
    "transport_first" / Int16ub,
    "transport_count" / Int16ub,
    "storage_first" / Int16ub,
    "storage_count" / Int16ub,
    "ie_first" / Int16ub,
    "ie_count" / Int16ub,
    "drive_first" / Int16ub,
    "drive_count" / Int16ub,
    Padding(2),
)

__all__ = [
    "Element",
    "ElementAddressPage",
    "ElementType",
    "build_element_status",
    "parse_element_status",
]
