"""Volume label on tape file 0: three 80-byte records in the spirit of ANSI VOL1/HDR1.

Layout (one tape block of 240 bytes, then a filemark):
  VOL1  ANSI-style volume record: 6-char volume id (barcode head), implementation id TAPEFLOW
  TFH1  tapeflow record: magic, format version, created (UTC), full barcode, pool
  TFH2  tapeflow record: the human label (UTF-8, space padded)
All text fields are space padded, as ANSI labels are.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from construct import Adapter, Bytes, Const, Struct

from tapeflow.scsi.sense import EndOfData, FilemarkDetected, IncorrectLength
from tapeflow.scsi.tape import TapeDrive
from tapeflow.tapefmt.errors import BlankTape, ForeignTape, TapeNotBlank, UnsupportedVersion

MAGIC = "TAPEFLOW"
FORMAT_VERSION = 1
LABEL_RECORD = 80
LABEL_BLOCK = 3 * LABEL_RECORD
PROBE_LENGTH = 8 * 1024 * 1024  # largest block we ask for when probing an unknown tape


class SpacePadded(Adapter):  # type: ignore[misc]
    """Fixed-width text field, space padded on build, right-stripped on parse."""

    def __init__(self, length: int, encoding: str = "ascii") -> None:
        super().__init__(Bytes(length))
        self.length = length
        self.encoding = encoding

    def _decode(self, obj: bytes, context: Any, path: Any) -> str:
        return obj.decode(self.encoding, "replace").rstrip(" ")

    def _encode(self, obj: str, context: Any, path: Any) -> bytes:
        raw = obj.encode(self.encoding)
        if len(raw) > self.length:
            raise ValueError(f"{obj!r} is longer than {self.length} bytes")
        return raw.ljust(self.length, b" ")


class Digits(Adapter):  # type: ignore[misc]
    """Unsigned decimal number in a fixed-width, zero-padded ASCII field."""

    def __init__(self, length: int) -> None:
        super().__init__(Bytes(length))
        self.length = length

    def _decode(self, obj: bytes, context: Any, path: Any) -> int:
        text = obj.decode("ascii", "replace").strip()
        if not text.isdigit():
            raise ValueError(f"not a decimal field: {obj!r}")
        return int(text)

    def _encode(self, obj: int, context: Any, path: Any) -> bytes:
        text = f"{obj:0{self.length}d}"
        if len(text) > self.length or obj < 0:
            raise ValueError(f"{obj} does not fit {self.length} digits")
        return text.encode("ascii")


class Timestamp14(Adapter):  # type: ignore[misc]
    """UTC time as 'YYYYMMDDHHMMSS'."""

    def __init__(self) -> None:
        super().__init__(Bytes(14))

    def _decode(self, obj: bytes, context: Any, path: Any) -> datetime:
        return datetime.strptime(obj.decode("ascii"), "%Y%m%d%H%M%S").replace(tzinfo=UTC)

    def _encode(self, obj: datetime, context: Any, path: Any) -> bytes:
        return obj.astimezone(UTC).strftime("%Y%m%d%H%M%S").encode("ascii")


Vol1 = Struct(
    "label_id" / Const(b"VOL1"),
    "volume_id" / SpacePadded(6),
    "accessibility" / SpacePadded(1),
    "reserved1" / SpacePadded(13),
    "implementation_id" / SpacePadded(13),
    "owner" / SpacePadded(14),
    "reserved2" / SpacePadded(28),
    "label_standard" / Const(b"4"),
)

Tfh1 = Struct(
    "label_id" / Const(b"TFH1"),
    "magic" / Const(MAGIC.encode()),
    "format_version" / Digits(4),
    "created" / Timestamp14(),
    "barcode" / SpacePadded(16),
    "pool" / SpacePadded(32),
    "reserved" / SpacePadded(2),
)

Tfh2 = Struct(
    "label_id" / Const(b"TFH2"),
    "label" / SpacePadded(76, "utf-8"),
)

LabelBlock = Struct("vol1" / Vol1, "tfh1" / Tfh1, "tfh2" / Tfh2)
assert Vol1.sizeof() == Tfh1.sizeof() == Tfh2.sizeof() == LABEL_RECORD


@dataclass(frozen=True)
class VolumeLabel:
    """What tape file 0 says about the cartridge."""

    label: str
    barcode: str
    pool: str = ""
    created: datetime = field(default_factory=lambda: datetime.now(UTC).replace(microsecond=0))
    format_version: int = FORMAT_VERSION

    def to_bytes(self) -> bytes:
        """The 240-byte label block."""
        return LabelBlock.build(
            {
                "vol1": {
                    "volume_id": self.barcode[:6],
                    "accessibility": "",
                    "reserved1": "",
                    "implementation_id": MAGIC,
                    "owner": "",
                    "reserved2": "",
                },
                "tfh1": {
                    "format_version": self.format_version,
                    "created": self.created,
                    "barcode": self.barcode,
                    "pool": self.pool,
                    "reserved": "",
                },
                "tfh2": {"label": self.label},
            }
        )

    @classmethod
    def from_bytes(cls, block: bytes) -> VolumeLabel:
        """Parse a label block; ForeignTape when it is not ours."""
        if len(block) < LABEL_BLOCK or not is_tapeflow_label(block):
            raise ForeignTape(f"tape file 0 is not a tapeflow label ({describe_block(block)})")
        try:
            parsed = LabelBlock.parse(block[:LABEL_BLOCK])
        except Exception as exc:  # construct raises many kinds; all mean a damaged label
            raise ForeignTape(f"tapeflow label does not parse: {exc}") from exc
        if parsed.tfh1.format_version > FORMAT_VERSION:
            raise UnsupportedVersion(
                f"label format version {parsed.tfh1.format_version} > {FORMAT_VERSION}"
            )
        return cls(
            label=parsed.tfh2.label,
            barcode=parsed.tfh1.barcode,
            pool=parsed.tfh1.pool,
            created=parsed.tfh1.created,
            format_version=parsed.tfh1.format_version,
        )


def is_tapeflow_label(block: bytes) -> bool:
    """Cheap magic check: VOL1 with implementation id TAPEFLOW and a TFH1 record."""
    return (
        block[:4] == b"VOL1"
        and block[24:37].rstrip(b" ") == MAGIC.encode()
        and block[80:92] == b"TFH1" + MAGIC.encode()
    )


def describe_block(block: bytes) -> str:
    """A short guess of what a foreign first block is, for error messages."""
    if len(block) >= 512 and block[257:262] == b"ustar":
        return f"a tar archive ({len(block)}-byte block)"
    if block[:4] in (b"VOL1", b"HDR1"):
        return "an ANSI label of another application"
    return f"unrecognized {len(block)}-byte block"


def _first_block(drive: TapeDrive) -> bytes | None:
    """Rewind and read tape file 0's first block; None on a blank tape."""
    drive.set_block_size(0)
    drive.rewind()
    try:
        return drive.read(PROBE_LENGTH)
    except EndOfData:
        return None
    except FilemarkDetected as exc:
        raise ForeignTape("tape file 0 is empty (a filemark at the beginning)") from exc
    except IncorrectLength as exc:
        raise ForeignTape(f"first block is larger than {PROBE_LENGTH} bytes") from exc


def read_label(drive: TapeDrive) -> VolumeLabel:
    """Rewind and read the volume label; BlankTape or ForeignTape when there is none of ours."""
    block = _first_block(drive)
    if block is None:
        raise BlankTape("the tape is blank: no volume label")
    return VolumeLabel.from_bytes(block)


def write_label(
    drive: TapeDrive,
    label: str,
    barcode: str,
    pool: str = "",
    *,
    force: bool = False,
    created: datetime | None = None,
) -> VolumeLabel:
    """Format: rewind, write the label block and a filemark; the tape then holds only the label.

    Refuses (TapeNotBlank) when the tape holds anything, ours or foreign, unless force=True.
    """
    if not force:
        block = _first_block(drive)
        if block is not None:
            what = "a tapeflow volume" if is_tapeflow_label(block) else describe_block(block)
            raise TapeNotBlank(f"the tape holds {what}; pass force=True to overwrite")
    volume = VolumeLabel(label, barcode, pool, **({"created": created} if created else {}))
    data = volume.to_bytes()
    drive.set_block_size(0)
    drive.rewind()
    drive.write(data)
    drive.write_filemarks(1)
    return volume
