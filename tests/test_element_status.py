"""READ ELEMENT STATUS: build/parse round trip and hostile replies."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from tapeflow.scsi.element_status import (
    Element,
    ElementType,
    build_element_status,
    parse_element_status,
)

barcodes = st.text(alphabet="ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789", min_size=1, max_size=16)


@st.composite
def element_lists(draw):
    out = []
    addr = 0
    for etype in (
        ElementType.TRANSPORT,
        ElementType.STORAGE,
        ElementType.IMPORT_EXPORT,
        ElementType.DRIVE,
    ):
        for _ in range(draw(st.integers(0, 6))):
            addr += draw(st.integers(1, 50))
            full = draw(st.booleans())
            out.append(
                Element(
                    etype,
                    addr,
                    full=full,
                    barcode=draw(barcodes) if full else None,
                    source_address=draw(st.one_of(st.none(), st.integers(0, 0xFFFF))),
                )
            )
    return out


@given(element_lists(), st.booleans())
def test_round_trip(elements, voltag) -> None:
    data = build_element_status(elements, voltag=voltag, alloc_len=1 << 20)
    got = parse_element_status(data)
    if not voltag:
        elements = [Element(e.type, e.address, e.full, None, e.source_address) for e in elements]
    assert got == elements


@given(element_lists(), st.integers(0, 400))
def test_truncated_reply_parses_a_prefix(elements, cut) -> None:
    data = build_element_status(elements, voltag=True, alloc_len=cut)
    got = parse_element_status(data)
    assert got == elements[: len(got)]


@given(st.binary(max_size=300))
def test_garbage_never_hangs(raw) -> None:
    parse_element_status(raw)


def test_zero_descriptor_length_does_not_loop() -> None:
    header = bytes([0, 0, 0, 1, 0, 0, 0, 20])
    page = bytes([2, 0x80, 0, 0, 0, 0, 0, 12]) + bytes(12)
    assert parse_element_status(header + page) == []


def test_descriptor_shorter_than_declared() -> None:
    # the page declares 52-byte descriptors but the device sends 48 per element
    els = [Element(ElementType.STORAGE, 1000 + i, True, f"T{i:05d}L9") for i in range(3)]
    data = bytearray(build_element_status(els, voltag=True, alloc_len=4096))
    data[10:12] = (52).to_bytes(2, "big")
    got = parse_element_status(bytes(data))
    assert [(e.address, e.barcode) for e in got] == [(1000 + i, f"T{i:05d}L9") for i in range(3)]
