"""Sense decoding: round trips, descriptor format, truncated buffers, exception mapping."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from tapeflow.scsi import sense as s


@given(
    key=st.integers(0, 15),
    asc=st.integers(0, 255),
    ascq=st.integers(0, 255),
    info=st.one_of(st.none(), st.integers(-(2**31), 2**31 - 1)),
    fm=st.booleans(),
    eom=st.booleans(),
    ili=st.booleans(),
)
def test_fixed_round_trip(key, asc, ascq, info, fm, eom, ili) -> None:
    raw = s.build_fixed_sense(key, asc, ascq, information=info, filemark=fm, eom=eom, ili=ili)
    got = s.parse_sense(raw)
    assert (got.key, got.asc, got.ascq, got.information) == (key, asc, ascq, info)
    assert (got.filemark, got.eom, got.ili) == (fm, eom, ili)


@given(st.binary(max_size=64))
def test_any_bytes_parse_without_crashing(raw: bytes) -> None:
    got = s.parse_sense(raw)
    assert 0 <= got.key <= 15
    assert isinstance(s.error_for(got), s.ScsiError)


def test_descriptor_format_with_information_and_stream_bits() -> None:
    info = bytes([0x00, 0x0A, 0x80, 0x00]) + (5).to_bytes(8, "big")
    stream = bytes([0x04, 0x02, 0x00, 0x80])  # filemark
    body = info + stream
    raw = bytes([0x72, 0x00, 0x00, 0x01, 0, 0, 0, len(body)]) + body
    got = s.parse_sense(raw)
    assert got.information == 5 and got.filemark and (got.asc, got.ascq) == (0, 1)
    assert isinstance(s.error_for(got), s.FilemarkDetected)


def test_descriptor_declaring_more_than_sent_is_cut() -> None:
    raw = bytes([0x72, 0x02, 0x3A, 0x00, 0, 0, 0, 40, 0x00, 0x0A, 0x80])
    got = s.parse_sense(raw)
    assert got.information is None
    assert isinstance(s.error_for(got), s.NoMedium)


def test_truncated_fixed_sense_keeps_key() -> None:
    raw = s.build_fixed_sense(s.DATA_PROTECT, 0x27, 0)[:8]
    got = s.parse_sense(raw)
    assert got.key == s.DATA_PROTECT and got.asc == 0


def test_mapping_covers_tape_conditions() -> None:
    def err(*a, **k):
        return s.error_for(s.parse_sense(s.build_fixed_sense(*a, **k)))

    assert type(err(0, 0, 1, filemark=True)) is s.FilemarkDetected
    assert type(err(0, 0, 2, eom=True)) is s.EndOfMedium
    assert type(err(0, 0, 4, eom=True)) is s.BeginningOfMedium
    assert type(err(s.VOLUME_OVERFLOW, 0, 2, eom=True)) is s.VolumeOverflow
    assert type(err(s.BLANK_CHECK, 0, 5)) is s.EndOfData
    assert type(err(0, 0, 0, ili=True, information=10)) is s.IncorrectLength
    assert type(err(s.NOT_READY, 0x3A, 0)) is s.NoMedium
    assert type(err(s.NOT_READY, 0x04, 1)) is s.NotReady
    assert type(err(s.DATA_PROTECT, 0x27, 0)) is s.WriteProtected
    assert type(err(s.ILLEGAL_REQUEST, 0x3B, 0x0D)) is s.DestinationFull
    assert type(err(s.ILLEGAL_REQUEST, 0x3B, 0x0E)) is s.SourceEmpty
    assert type(err(s.ILLEGAL_REQUEST, 0x21, 0x01)) is s.InvalidElementAddress
    assert type(err(s.UNIT_ATTENTION, 0x28, 0)) is s.UnitAttention
    assert type(s.error_for(s.parse_sense(b""), status=0x18)) is s.ReservationConflict


def test_message_is_readable() -> None:
    e = s.error_for(s.parse_sense(s.build_fixed_sense(s.NOT_READY, 0x3A, 0)))
    assert str(e) == "NOT READY (02/3A/00): medium not present"
    assert (e.key, e.asc, e.ascq) == (2, 0x3A, 0)
