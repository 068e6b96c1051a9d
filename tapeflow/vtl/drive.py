"""A tape drive LUN (SSC, peripheral type 0x01) answering CDBs against the cartridge it holds.

Every command runs under the drive's command flock, so handles in any process see one drive:
position, block size and the loaded cartridge live in the drive's mmap'd state file.
"""

from __future__ import annotations

import os
from pathlib import Path

from tapeflow.scsi import ssc
from tapeflow.scsi.sense import (
    BLANK_CHECK,
    DATA_PROTECT,
    ILLEGAL_REQUEST,
    NO_SENSE,
    NOT_READY,
    VOLUME_OVERFLOW,
)
from tapeflow.vtl import cdb
from tapeflow.vtl.config import LibraryPaths
from tapeflow.vtl.lun import (
    INQUIRY,
    REQUEST_SENSE,
    CheckCondition,
    Handler,
    LogicalUnit,
    ReservationConflictStatus,
    invalid_field,
)
from tapeflow.vtl.state import DriveState, FileLock
from tapeflow.vtl.store import Cartridge, CartridgeMeta, Tail
from tapeflow.vtl.throttle import Throttle

MAX_BLOCK = 8 * 1024 * 1024
MAX_TRANSFER = 256 * 1024 * 1024  # largest fixed-mode READ/WRITE we accept in one command
DENSITY_CODE = 0x60  # LTO-9
COMPRESSION_ALGORITHM = 0x01  # ALDC, as LTO drives report

TEST_UNIT_READY = 0x00
REWIND = 0x01
READ_BLOCK_LIMITS = 0x05
READ_6 = 0x08
WRITE_6 = 0x0A
WRITE_FILEMARKS_6 = 0x10
SPACE_6 = 0x11
MODE_SELECT_6 = 0x15
RESERVE_6 = 0x16
RELEASE_6 = 0x17
ERASE_6 = 0x19
MODE_SENSE_6 = 0x1A
LOAD_UNLOAD = 0x1B
PREVENT_ALLOW = 0x1E
LOCATE_10 = 0x2B
READ_POSITION = 0x34
LOCATE_16 = 0x92

NO_RESERVATION_CHECK = frozenset({INQUIRY, REQUEST_SENSE, RELEASE_6})


def new_token() -> int:
    """A random, non-zero initiator identity for one handle."""
    return int.from_bytes(os.urandom(8), "little") >> 1 | 1


def load_cleaning(paths: LibraryPaths, barcode: str) -> None:
    """Loading a cleaning cartridge cleans the drive: one use fewer (under the meta lock)."""
    directory = paths.cartridge(barcode)
    lock = FileLock(directory / "meta.lock")
    try:
        with lock:
            meta = CartridgeMeta.load(directory)
            if meta.cleaning and meta.cleaning_uses_left > 0:
                meta.cleaning_uses_left -= 1
                meta.save(directory)
    finally:
        lock.close()


class DriveHandle(LogicalUnit):
    """One initiator's handle on drive `index` (LUN index + 1)."""

    peripheral_type = 0x01
    removable = True
    product = "VTL LTO-9 DRIVE"

    def __init__(self, paths: LibraryPaths, index: int, serial: str) -> None:
        super().__init__(serial)
        self.index = index
        self._paths = paths
        self._token = new_token()
        self._state = DriveState(paths.drive_state(index))
        self._command_lock = FileLock(paths.drive_command_lock(index))
        self._reserve_lock = FileLock(paths.drive_reserve_lock(index))
        self._cartridge: Cartridge | None = None
        self._generation = -1
        self._prevent = False
        self._throttle = Throttle()
        handlers: dict[int, Handler] = {
            TEST_UNIT_READY: self._test_unit_ready,
            REWIND: self._rewind,
            READ_BLOCK_LIMITS: self._read_block_limits,
            READ_6: self._read,
            WRITE_6: self._write,
            WRITE_FILEMARKS_6: self._write_filemarks,
            SPACE_6: self._space,
            MODE_SELECT_6: self._mode_select,
            RESERVE_6: self._reserve,
            RELEASE_6: self._release,
            ERASE_6: self._erase,
            MODE_SENSE_6: self._mode_sense,
            LOAD_UNLOAD: self._load_unload,
            PREVENT_ALLOW: self._prevent_allow,
            LOCATE_10: self._locate10,
            READ_POSITION: self._read_position,
            LOCATE_16: self._locate16,
        }
        self._handlers.update(handlers)

    # --- plumbing ----------------------------------------------------------------------------
    def _run(
        self, opcode: int, handler: Handler, raw: bytes, out: memoryview | None, alloc: int
    ) -> bytes:
        with self._command_lock:
            if opcode not in NO_RESERVATION_CHECK:
                self._check_reservation()
            return handler(raw, out, alloc)

    def _check_reservation(self) -> None:
        owner = self._state.reserve_owner
        if not owner or owner == self._token:
            return
        if self._reserve_lock.try_acquire():  # the owner died without RELEASE: reservation gone
            self._state.reserve_owner = 0
            self._reserve_lock.release()
            return
        raise ReservationConflictStatus()

    def close(self) -> None:
        """Release our reservation, close the cartridge files and unmap the state."""
        with self._thread_lock:
            if self._closed:
                return
            self._closed = True
            if self._reserve_lock.held:
                with self._command_lock:
                    if self._state.reserve_owner == self._token:
                        self._state.reserve_owner = 0
                    self._reserve_lock.release()
            self._unbind()
            self._reserve_lock.close()
            self._command_lock.close()
            self._state.close()

    def _unbind(self) -> None:
        if self._cartridge is not None:
            self._cartridge.close()
            self._cartridge = None
        self._generation = -1

    def _peek(self) -> Cartridge | None:
        """The loaded cartridge's open files, re-opened if the drive's generation changed."""
        st = self._state
        if not (st.present and st.loaded):
            self._unbind()
            return None
        if self._cartridge is None or self._generation != st.generation:
            self._unbind()
            barcode = st.barcode
            if barcode is None:
                return None
            generation = st.generation
            cartridge = Cartridge(self._paths.cartridge(barcode))
            cartridge.recover()
            self._cartridge, self._generation = cartridge, generation
        return self._cartridge

    def _medium(self) -> Cartridge:
        """The loaded data cartridge, or NOT READY (3A/00 no medium, 30/03 cleaning)."""
        cartridge = self._peek()
        if cartridge is None:
            raise CheckCondition(NOT_READY, 0x3A, 0x00)
        if cartridge.meta.cleaning:
            raise CheckCondition(NOT_READY, 0x30, 0x03)
        return cartridge

    def _writable(self) -> Cartridge:
        cartridge = self._medium()
        if cartridge.meta.write_protect:
            raise CheckCondition(DATA_PROTECT, 0x27, 0x00)
        return cartridge

    def _where(self, cartridge: Cartridge) -> tuple[int, int]:
        """(position, end-of-data); the position never lies past end-of-data."""
        count = cartridge.count()
        return min(self._state.position, count), count

    def _in_early_warning(self, cartridge: Cartridge, offset: int) -> bool:
        return offset > cartridge.meta.capacity - cartridge.meta.early_warning

    # --- simple commands ---------------------------------------------------------------------
    def _test_unit_ready(self, raw: bytes, out: memoryview | None, alloc: int) -> bytes:
        self._medium()
        return b""

    def _rewind(self, raw: bytes, out: memoryview | None, alloc: int) -> bytes:
        self._medium()
        self._state.position = 0
        return b""

    def _read_block_limits(self, raw: bytes, out: memoryview | None, alloc: int) -> bytes:
        return ssc.BlockLimits.build({"granularity": 0, "max_length": MAX_BLOCK, "min_length": 1})

    def _prevent_allow(self, raw: bytes, out: memoryview | None, alloc: int) -> bytes:
        self._prevent = bool(cdb.Cdb6.parse(raw).b4 & 0x03)
        return b""

    def _reserve(self, raw: bytes, out: memoryview | None, alloc: int) -> bytes:
        if cdb.Cdb6.parse(raw).b1 & 0x10:  # third-party reservations are not supported
            raise invalid_field()
        if self._state.reserve_owner == self._token and self._reserve_lock.held:
            return b""
        if not self._reserve_lock.try_acquire():
            raise ReservationConflictStatus()
        self._state.reserve_owner = self._token
        return b""

    def _release(self, raw: bytes, out: memoryview | None, alloc: int) -> bytes:
        if self._state.reserve_owner == self._token:
            self._state.reserve_owner = 0
        if self._reserve_lock.held:
            self._reserve_lock.release()
        return b""  # RELEASE by a non-owner succeeds and changes nothing (SPC-2)

    def _load_unload(self, raw: bytes, out: memoryview | None, alloc: int) -> bytes:
        c = cdb.Cdb6.parse(raw)
        load, eot = bool(c.b4 & 0x01), bool(c.b4 & 0x04)
        st = self._state
        if not st.present:
            raise CheckCondition(NOT_READY, 0x3A, 0x00)
        if load:
            if eot:
                raise invalid_field()
            if not st.loaded:
                barcode = st.barcode
                if barcode is not None:
                    load_cleaning(self._paths, barcode)
                st.loaded = True
                st.bump()
            st.position = 0
            return b""
        if self._prevent:
            raise CheckCondition(ILLEGAL_REQUEST, 0x53, 0x02)
        cartridge = self._peek()
        if cartridge is not None:
            cartridge.sync()
        st.position = 0
        st.loaded = False
        self._unbind()
        return b""

    # --- data --------------------------------------------------------------------------------
    def _read(self, raw: bytes, out: memoryview | None, alloc: int) -> bytes:
        c = cdb.ReadWrite6.parse(raw)
        fixed, sili = bool(c.flags & 0x01), bool(c.flags & 0x02)
        cartridge = self._medium()
        if not fixed:
            if c.length > MAX_BLOCK:
                raise invalid_field()
            return self._read_variable(cartridge, c.length, sili)
        block = self._state.block_size
        if sili or block == 0 or c.length * block > MAX_TRANSFER:
            raise invalid_field()
        return self._read_fixed(cartridge, c.length, block)

    def _read_variable(self, cartridge: Cartridge, length: int, sili: bool) -> bytes:
        if length == 0:
            return b""
        pos, count = self._where(cartridge)
        if pos >= count:
            raise CheckCondition(BLANK_CHECK, 0x00, 0x05, information=length)
        obj = cartridge.object(pos)
        self._state.position = pos + 1
        if obj.is_filemark:
            raise CheckCondition(NO_SENSE, 0x00, 0x01, information=length, filemark=True)
        data = cartridge.read(obj.offset, min(length, obj.length))
        self._throttle.consume(len(data), self._state.speed_limit)
        if obj.length == length or (obj.length < length and sili):
            return data
        raise CheckCondition(NO_SENSE, information=length - obj.length, ili=True, data=data)

    def _read_fixed(self, cartridge: Cartridge, nblocks: int, block: int) -> bytes:
        if nblocks == 0:
            return b""
        pos, count = self._where(cartridge)
        objs = cartridge.objects(pos, min(nblocks, count - pos))
        good = 0
        for obj in objs:
            if obj.is_filemark or obj.length != block:
                break
            good += 1
        data = cartridge.read(objs[0].offset, good * block) if good else b""
        self._throttle.consume(len(data), self._state.speed_limit)
        self._state.position = pos + good
        if good == nblocks:
            return data
        residue = nblocks - good
        if good == len(objs):
            raise CheckCondition(BLANK_CHECK, 0x00, 0x05, information=residue, data=data)
        odd = objs[good]
        self._state.position = pos + good + 1
        if odd.is_filemark:
            raise CheckCondition(
                NO_SENSE, 0x00, 0x01, information=residue, filemark=True, data=data
            )
        data += cartridge.read(odd.offset, min(odd.length, block))
        raise CheckCondition(NO_SENSE, information=residue, ili=True, data=data)

    def _write(self, raw: bytes, out: memoryview | None, alloc: int) -> bytes:
        c = cdb.ReadWrite6.parse(raw)
        fixed = bool(c.flags & 0x01)
        if c.flags & 0x02:
            raise invalid_field()
        cartridge = self._writable()
        if fixed:
            block = self._state.block_size
            if block == 0 or c.length * block > MAX_TRANSFER:
                raise invalid_field()
            nblocks, total = c.length, c.length * block
        else:
            if c.length > MAX_BLOCK:
                raise invalid_field()
            nblocks, block, total = (1 if c.length else 0), c.length, c.length
        if total == 0:
            return b""
        if out is None or len(out) < total:
            raise CheckCondition(ILLEGAL_REQUEST, 0x1A, 0x00)  # less data than the CDB announces
        pos, count = self._where(cartridge)
        tail = cartridge.tail(pos, count)
        room = cartridge.meta.capacity - tail.offset
        fit = nblocks if total <= room else (max(room, 0) // block if fixed else 0)
        if fit:
            self._store(cartridge, pos, count, tail, out[: fit * block], block, fit)
        if fit < nblocks:
            raise CheckCondition(
                VOLUME_OVERFLOW, 0x00, 0x02, eom=True, information=nblocks - fit if fixed else total
            )
        if self._in_early_warning(cartridge, tail.offset + total):
            raise CheckCondition(NO_SENSE, 0x00, 0x02, eom=True, information=0)
        return b""

    def _store(
        self,
        cartridge: Cartridge,
        pos: int,
        count: int,
        tail: Tail,
        payload: memoryview,
        block: int,
        nblocks: int,
    ) -> None:
        cartridge.write_blocks(pos, count, tail, payload, block, nblocks)
        self._state.position = pos + nblocks
        self._throttle.consume(len(payload), self._state.speed_limit)

    def _write_filemarks(self, raw: bytes, out: memoryview | None, alloc: int) -> bytes:
        c = cdb.ReadWrite6.parse(raw)
        if c.flags & 0x02:  # WSMK: setmarks are not supported
            raise invalid_field()
        cartridge = self._writable()
        if c.length:
            pos, count = self._where(cartridge)
            cartridge.write_filemarks(pos, count, cartridge.tail(pos, count), c.length)
            self._state.position = pos + c.length
        cartridge.sync()
        return b""

    def _erase(self, raw: bytes, out: memoryview | None, alloc: int) -> bytes:
        cartridge = self._writable()
        pos, count = self._where(cartridge)
        if pos < count:
            cartridge.truncate(pos, cartridge.tail(pos, count))
        cartridge.sync()
        self._state.position = pos
        return b""

    # --- positioning -------------------------------------------------------------------------
    def _space(self, raw: bytes, out: memoryview | None, alloc: int) -> bytes:
        c = cdb.Space6.parse(raw)
        code = c.code & 0x0F
        cartridge = self._medium()
        pos, count = self._where(cartridge)
        if code == 3:
            self._state.position = count
        elif code not in (0, 1):
            raise invalid_field()
        elif c.count == 0:
            pass
        elif code == 0:
            self._space_blocks(cartridge, pos, count, c.count)
        else:
            self._space_filemarks(cartridge, pos, count, c.count)
        return b""

    def _space_blocks(self, cartridge: Cartridge, pos: int, count: int, n: int) -> None:
        st = self._state
        here = cartridge.file_number(pos, count)
        if n > 0:
            limit = min(pos + n, count)
            if cartridge.file_number(limit, count) > here:  # a filemark lies in the way
                mark = cartridge.first_file_at_least(here + 1, pos, count) - 1
                st.position = mark + 1
                raise CheckCondition(
                    NO_SENSE, 0x00, 0x01, information=n - (mark - pos), filemark=True
                )
            if pos + n <= count:
                st.position = pos + n
                return
            st.position = count
            raise CheckCondition(BLANK_CHECK, 0x00, 0x05, information=n - (count - pos))
        k = -n
        lo = max(pos - k, 0)
        if cartridge.file_number(lo, count) < here:  # a filemark lies behind us
            mark = cartridge.first_file_at_least(here, 0, count) - 1
            st.position = mark  # BOT side of the filemark
            raise CheckCondition(
                NO_SENSE, 0x00, 0x01, information=k - (pos - mark - 1), filemark=True
            )
        if pos - k >= 0:
            st.position = pos - k
            return
        st.position = 0
        raise CheckCondition(NO_SENSE, 0x00, 0x04, information=k - pos, eom=True)

    def _space_filemarks(self, cartridge: Cartridge, pos: int, count: int, n: int) -> None:
        st = self._state
        here = cartridge.file_number(pos, count)
        if n > 0:
            total = cartridge.file_number(count, count)
            if total < here + n:
                st.position = count
                raise CheckCondition(BLANK_CHECK, 0x00, 0x05, information=n - (total - here))
            st.position = cartridge.first_file_at_least(here + n, pos, count)
            return
        k = -n
        if here < k:
            st.position = 0
            raise CheckCondition(NO_SENSE, 0x00, 0x04, information=k - here, eom=True)
        st.position = cartridge.first_file_at_least(here - k + 1, 0, count) - 1

    def _locate_to(self, cartridge: Cartridge, target: int) -> None:
        count = cartridge.count()
        if target > count:
            self._state.position = count
            raise CheckCondition(BLANK_CHECK, 0x00, 0x05)
        self._state.position = target

    def _locate10(self, raw: bytes, out: memoryview | None, alloc: int) -> bytes:
        c = cdb.Locate10.parse(raw)
        if c.flags & 0x02 and c.partition != 0:
            raise invalid_field()
        self._locate_to(self._medium(), c.block)
        return b""

    def _locate16(self, raw: bytes, out: memoryview | None, alloc: int) -> bytes:
        c = cdb.Locate16.parse(raw)
        if c.flags & 0x02 and c.partition != 0:
            raise invalid_field()
        dest_type = (c.flags >> 3) & 0x07
        cartridge = self._medium()
        if dest_type == 0:
            self._locate_to(cartridge, c.identifier)
        elif dest_type == 1:  # logical file identifier: first object after filemark N-1
            count = cartridge.count()
            if c.identifier > cartridge.file_number(count, count):
                self._state.position = count
                raise CheckCondition(BLANK_CHECK, 0x00, 0x05)
            self._state.position = cartridge.first_file_at_least(c.identifier, 0, count)
        elif dest_type == 3:
            self._state.position = cartridge.count()
        else:
            raise invalid_field()
        return b""

    def _read_position(self, raw: bytes, out: memoryview | None, alloc: int) -> bytes:
        c = cdb.ReadPosition.parse(raw)
        action = c.service_action & 0x1F
        if action not in (0, 6):
            raise invalid_field()
        cartridge = self._medium()
        pos, count = self._where(cartridge)
        tail = cartridge.tail(pos, count)
        bop, eop = pos == 0, self._in_early_warning(cartridge, tail.offset)
        if action == 0:
            block = min(pos, 0xFFFFFFFF)
            return ssc.PositionShort.build(
                {
                    "flags": {"bop": bop, "eop": eop, "bpu": pos > 0xFFFFFFFF},
                    "partition": 0,
                    "first_block": block,
                    "last_block": block,
                    "blocks_in_buffer": 0,
                    "bytes_in_buffer": 0,
                }
            )
        data = ssc.PositionLong.build(
            {
                "flags": {"bop": bop, "eop": eop, "mpu": False, "lonu": False},
                "partition": 0,
                "block": pos,
                "file": tail.file_number,
                "set": 0,
            }
        )
        return data[: c.alloc] if c.alloc else data

    # --- mode pages --------------------------------------------------------------------------
    def _mode_sense(self, raw: bytes, out: memoryview | None, alloc: int) -> bytes:
        c = cdb.Cdb6.parse(raw)
        dbd, control, page, subpage = bool(c.b1 & 0x08), c.b2 >> 6, c.b2 & 0x3F, c.b3
        if subpage or page not in (0x00, 0x0F, 0x3F):
            raise invalid_field()
        changeable = control == 1
        st = self._state
        cartridge = self._peek()
        wp = cartridge is not None and cartridge.meta.write_protect
        body = b""
        if not dbd:
            body += ssc.BlockDescriptor.build(
                {
                    "density": 0 if changeable or cartridge is None else DENSITY_CODE,
                    "blocks": 0,
                    "block_length": 0xFFFFFF if changeable else st.block_size,
                }
            )
        bd_len = len(body)
        if page in (0x0F, 0x3F):
            body += ssc.CompressionPage.build(
                {
                    "page_code": ssc.MODE_PAGE_COMPRESSION,
                    "page_length": 0x0E,
                    "flags": {"dce": changeable or st.compression, "dcc": not changeable},
                    "flags2": {"dde": changeable or st.decompression, "red": 0},
                    "compression_algorithm": 0 if changeable else COMPRESSION_ALGORITHM,
                    "decompression_algorithm": 0 if changeable else COMPRESSION_ALGORITHM,
                }
            )
        head = ssc.ModeHeader6.build(
            {
                "data_length": 3 + len(body),
                "medium_type": 0,
                "device_specific": {
                    "wp": wp and not changeable,
                    "buffered_mode": 0 if changeable else 1,
                    "speed": 0,
                },
                "descriptor_length": bd_len,
            }
        )
        return (head + body)[: c.b4]

    def _mode_select(self, raw: bytes, out: memoryview | None, alloc: int) -> bytes:
        c = cdb.Cdb6.parse(raw)
        length = c.b4
        if length == 0:
            return b""
        data = bytes(out[:length]) if out is not None else b""
        if len(data) < length or length < ssc.ModeHeader6.sizeof():
            raise CheckCondition(ILLEGAL_REQUEST, 0x1A, 0x00)
        head = ssc.ModeHeader6.parse(data)
        pos = ssc.ModeHeader6.sizeof()
        block_size: int | None = None
        if head.descriptor_length not in (0, 8) or pos + head.descriptor_length > len(data):
            raise CheckCondition(ILLEGAL_REQUEST, 0x26, 0x00)
        if head.descriptor_length == 8:
            block_size = ssc.BlockDescriptor.parse(data[pos : pos + 8]).block_length
            if block_size > MAX_BLOCK:
                raise CheckCondition(ILLEGAL_REQUEST, 0x26, 0x00)
            pos += 8
        compression: tuple[bool, bool] | None = None
        while pos < len(data):
            if pos + 2 > len(data):
                raise CheckCondition(ILLEGAL_REQUEST, 0x1A, 0x00)
            page = ssc.ModePageHeader.parse(data[pos : pos + 2])
            end = pos + 2 + page.page_length
            if (page.page_code & 0x3F) != 0x0F or page.page_length != 0x0E or end > len(data):
                raise CheckCondition(ILLEGAL_REQUEST, 0x26, 0x00)
            dc = ssc.CompressionPage.parse(data[pos:end])
            compression = (dc.flags.dce, dc.flags2.dde)
            pos = end
        st = self._state
        if block_size is not None:
            st.block_size = block_size
        if compression is not None:
            st.compression, st.decompression = compression
        return b""


def drive_serial(library_serial: str, index: int) -> str:
    """Unit serial number of drive `index` (VPD page 0x80)."""
    return f"{library_serial}D{index:02d}"


def open_drive(root: Path, index: int, serial: str) -> DriveHandle:
    """A new handle on drive `index` of the library at `root`."""
    return DriveHandle(LibraryPaths(root), index, drive_serial(serial, index))
