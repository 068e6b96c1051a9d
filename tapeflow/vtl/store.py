"""One cartridge on disk: metadata, an append-only payload file and a fixed-record object index.

Logical object N is index record N, so LOCATE and READ POSITION are O(1) and spacing over
filemarks is a binary search on the per-record file number. Payload is written before its index
record, so after kill -9 every indexed block is complete; recover() drops torn tail records.
"""

from __future__ import annotations

import json
import os
import zlib
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import NamedTuple

from construct import Int8ul, Int32ul, Int64ul, Padding, Struct

from tapeflow.vtl.errors import CorruptLibraryError, UnknownCartridgeError
from tapeflow.vtl.layout import derive_struct

KIND_BLOCK = 0
KIND_FILEMARK = 1

# What an index record says about one tape object; the CRC below covers exactly these bytes.
IndexRecordBody = Struct(
    "offset" / Int64ul,  # payload offset in `data` (for a filemark: the data end at that point)
    "length" / Int32ul,  # payload length (0 for a filemark)
    "file_number" / Int32ul,  # filemarks before this object = logical file identifier
    "kind" / Int8ul,  # KIND_BLOCK or KIND_FILEMARK
    Padding(3),
)
IndexRecord = Struct(*IndexRecordBody.subcons, "crc" / Int32ul)  # crc32 of the body

_BODY = derive_struct(IndexRecordBody)
_CRC = derive_struct(Struct("crc" / Int32ul))
_RECORD = derive_struct(IndexRecord)
RECORD_SIZE = _RECORD.size  # 24

META_FILE = "meta.json"
DATA_FILE = "data"
INDEX_FILE = "index"


class TapeObject(NamedTuple):
    """One decoded index record."""

    offset: int
    length: int
    file_number: int
    kind: int

    @property
    def is_filemark(self) -> bool:
        return self.kind == KIND_FILEMARK


class Tail(NamedTuple):
    """Where an object written at a position would go: payload offset and its file number."""

    offset: int
    file_number: int


def pack_record(offset: int, length: int, file_number: int, kind: int) -> bytes:
    """Encode one index record (body + crc32 of the body)."""
    body = _BODY.pack(offset, length, file_number, kind)
    return body + _CRC.pack(zlib.crc32(body))


def unpack_record(raw: bytes) -> TapeObject:
    """Decode one index record without checking its CRC (hot path)."""
    offset, length, file_number, kind, _crc = _RECORD.unpack(raw)
    return TapeObject(offset, length, file_number, kind)


def record_is_valid(raw: bytes) -> bool:
    """True when `raw` is a whole record whose CRC matches and whose kind is known."""
    if len(raw) != RECORD_SIZE:
        return False
    body = raw[: _BODY.size]
    (crc,) = _CRC.unpack(raw[_BODY.size :])
    return crc == zlib.crc32(body) and raw[16] in (KIND_BLOCK, KIND_FILEMARK)


@dataclass(slots=True)
class CartridgeMeta:
    """Per-cartridge settings kept in meta.json (small, rewritten atomically)."""

    barcode: str
    capacity: int
    early_warning: int
    write_protect: bool = False
    cleaning: bool = False
    cleaning_uses_left: int = 0

    @classmethod
    def load(cls, directory: Path) -> CartridgeMeta:
        """Read meta.json; a missing directory is UnknownCartridgeError, bad content Corrupt."""
        path = directory / META_FILE
        try:
            raw = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError as exc:
            raise UnknownCartridgeError(f"no cartridge at {directory}") from exc
        except (OSError, ValueError) as exc:
            raise CorruptLibraryError(f"unreadable cartridge metadata {path}: {exc}") from exc
        try:
            meta = cls(
                barcode=str(raw["barcode"]),
                capacity=int(raw["capacity"]),
                early_warning=int(raw["early_warning"]),
                write_protect=bool(raw["write_protect"]),
                cleaning=bool(raw["cleaning"]),
                cleaning_uses_left=int(raw["cleaning_uses_left"]),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise CorruptLibraryError(f"bad cartridge metadata {path}: {exc}") from exc
        if meta.capacity <= 0 or not 0 <= meta.early_warning <= meta.capacity:
            raise CorruptLibraryError(f"bad capacity/early warning in {path}")
        return meta

    def save(self, directory: Path) -> None:
        """Replace meta.json atomically (tmp + fsync + rename)."""
        atomic_write(directory / META_FILE, json.dumps(asdict(self), indent=1).encode())


def atomic_write(path: Path, content: bytes) -> None:
    """Write `content` to `path` so readers see either the old or the new file, never a mix."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        try:
            view = memoryview(content)
            while view:
                view = view[os.write(fd, view) :]
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
    except BaseException:  # no half-written temp file left behind; the error goes on
        tmp.unlink(missing_ok=True)
        raise


class Cartridge:
    """Open payload and index files of one cartridge; all positions are object numbers."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.meta = CartridgeMeta.load(directory)
        self._data = os.open(directory / DATA_FILE, os.O_RDWR)
        try:
            self._index = os.open(directory / INDEX_FILE, os.O_RDWR)
        except OSError:
            os.close(self._data)
            raise

    @classmethod
    def create(cls, directory: Path, meta: CartridgeMeta) -> None:
        """Make a new, blank cartridge directory (fails if it exists)."""
        directory.mkdir(parents=True)
        for name in (DATA_FILE, INDEX_FILE):
            os.close(os.open(directory / name, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644))
        meta.save(directory)

    def close(self) -> None:
        """Close both files (idempotent)."""
        for fd in (self._data, self._index):
            if fd >= 0:
                os.close(fd)
        self._data = self._index = -1

    # --- reading -----------------------------------------------------------------------------
    def count(self) -> int:
        """Number of objects recorded (= end-of-data position); a torn tail record is ignored."""
        return os.fstat(self._index).st_size // RECORD_SIZE

    def object(self, n: int) -> TapeObject:
        """Index record `n` (0 <= n < count)."""
        return unpack_record(os.pread(self._index, RECORD_SIZE, n * RECORD_SIZE))

    def objects(self, n: int, k: int) -> list[TapeObject]:
        """Index records n .. n+k-1 in one read."""
        raw = os.pread(self._index, k * RECORD_SIZE, n * RECORD_SIZE)
        return [TapeObject(*r[:4]) for r in _RECORD.iter_unpack(raw)]

    def tail(self, pos: int, count: int) -> Tail:
        """Payload offset and file number for an object written at `pos` (<= count)."""
        if pos < count:
            obj = self.object(pos)
            return Tail(obj.offset, obj.file_number)
        if count == 0:
            return Tail(0, 0)
        last = self.object(count - 1)
        return Tail(last.offset + last.length, last.file_number + last.is_filemark)

    def file_number(self, pos: int, count: int) -> int:
        """Filemarks before position `pos` (the logical file identifier there)."""
        return self.tail(pos, count).file_number

    def first_file_at_least(self, target: int, lo: int, hi: int) -> int:
        """Smallest n in [lo, hi) whose file number is >= target, else hi (binary search)."""
        while lo < hi:
            mid = (lo + hi) // 2
            if self.object(mid).file_number >= target:
                hi = mid
            else:
                lo = mid + 1
        return lo

    def read(self, offset: int, length: int) -> bytes:
        """Payload bytes [offset, offset+length)."""
        return os.pread(self._data, length, offset)

    def bytes_used(self) -> int:
        """Payload bytes up to end-of-data."""
        return self.tail(self.count(), self.count()).offset

    # --- writing -----------------------------------------------------------------------------
    def truncate(self, pos: int, tail: Tail) -> None:
        """Make `pos` end-of-data: drop index records first, then the payload they referenced."""
        os.ftruncate(self._index, pos * RECORD_SIZE)
        os.ftruncate(self._data, tail.offset)

    def write_blocks(
        self, pos: int, count: int, tail: Tail, payload: memoryview, block_len: int, nblocks: int
    ) -> None:
        """Write `nblocks` blocks of `block_len` bytes at `pos` (truncating after it): payload
        first, then the index records."""
        if pos < count:
            self.truncate(pos, tail)
        written = os.pwrite(self._data, payload, tail.offset)
        while written < len(payload):  # a short write only happens on odd filesystems
            written += os.pwrite(self._data, payload[written:], tail.offset + written)
        if nblocks == 1:
            records = pack_record(tail.offset, block_len, tail.file_number, KIND_BLOCK)
        else:
            records = b"".join(
                pack_record(tail.offset + i * block_len, block_len, tail.file_number, KIND_BLOCK)
                for i in range(nblocks)
            )
        self._write_index(pos, records)

    def write_filemarks(self, pos: int, count: int, tail: Tail, n: int) -> None:
        """Write `n` filemarks at `pos` (truncating after it)."""
        if pos < count:
            self.truncate(pos, tail)
        records = b"".join(
            pack_record(tail.offset, 0, tail.file_number + i, KIND_FILEMARK) for i in range(n)
        )
        self._write_index(pos, records)

    def _write_index(self, pos: int, records: bytes) -> None:
        offset = pos * RECORD_SIZE
        written = os.pwrite(self._index, records, offset)
        while written < len(records):
            written += os.pwrite(self._index, records[written:], offset + written)

    def sync(self) -> None:
        """Flush payload, then index, to stable storage."""
        os.fsync(self._data)
        os.fsync(self._index)

    def recover(self) -> None:
        """Repair after a crash: cut a torn index tail, drop tail records whose CRC is bad or
        whose payload is missing, and cut payload past the last record's end."""
        size = os.fstat(self._index).st_size
        count = size // RECORD_SIZE
        data_size = os.fstat(self._data).st_size
        while count > 0:
            raw = os.pread(self._index, RECORD_SIZE, (count - 1) * RECORD_SIZE)
            if record_is_valid(raw):
                obj = unpack_record(raw)
                if obj.offset + obj.length <= data_size:
                    break
            count -= 1
        if count * RECORD_SIZE != size:
            os.ftruncate(self._index, count * RECORD_SIZE)
        end = self.tail(count, count).offset
        if data_size > end:
            os.ftruncate(self._data, end)
