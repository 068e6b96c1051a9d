"""A tape drive: SSC operations with tape semantics (filemarks, end-of-data, early warning)."""

from __future__ import annotations

import time

from tapeflow.scsi import ssc
from tapeflow.scsi.device import ScsiDevice
from tapeflow.scsi.sense import (
    EndOfData,
    EndOfMedium,
    FilemarkDetected,
    IllegalRequest,
    IncorrectLength,
    NoMedium,
    NotReady,
    UnitAttention,
    VolumeOverflow,
)
from tapeflow.scsi.ssc import InquiryData, ModeInfo, Position, SpaceCode
from tapeflow.scsi.transport import Transport

DEFAULT_BLOCK = 256 * 1024
COUNT_STEP = (1 << 23) - 1  # largest forward SPACE(6) count


class PositionUnknown(Exception):
    """The drive does not report its position (READ POSITION answers zeros) and this handle
    has lost track of it: rewind or go to end-of-data first."""


class TapeDrive:
    """SSC commands on one drive.

    Errors are the typed exceptions of `tapeflow.scsi.sense`: `write` raises `EndOfMedium`
    AFTER writing in the early-warning zone (finish the record, then span), `VolumeOverflow`
    when nothing was written; `read` raises `FilemarkDetected` (positioned after the mark) and
    `EndOfData`.
    """

    def __init__(self, transport: Transport | ScsiDevice, name: str = "") -> None:
        self.dev = transport if isinstance(transport, ScsiDevice) else ScsiDevice(transport, name)
        self._unsupported: set[type] = set()
        # Where this handle's own commands have left the tape (object and file number), for
        # drives whose READ POSITION answers zeros (tgt): None = not known.
        self._block: int | None = None
        self._file: int | None = None
        self._position_lies = False
        self._at_eod = False  # the last motion was SPACE to end-of-data

    def _moved(self, blocks: int, files: int = 0) -> None:
        self._at_eod = False
        if self._block is not None:
            self._block += blocks
        if self._file is not None:
            self._file += files

    def _lost(self) -> None:
        self._at_eod = False
        self._block = self._file = None

    # --- identity and state ----------------------------------------------------------------
    def inquiry(self) -> InquiryData:
        """Vendor, product, revision and device type."""
        return ssc.parse_inquiry(self.dev.execute(ssc.Inquiry()))

    def serial(self) -> str:
        """Unit serial number (VPD 0x80), '' when the drive has none."""
        return ssc.parse_unit_serial(self.dev.execute(ssc.Inquiry(page=0x80)))

    def test_unit_ready(self) -> None:
        """Raise NotReady/NoMedium unless a cartridge is loaded and ready."""
        self.dev.execute(ssc.TestUnitReady())

    def is_ready(self) -> bool:
        """True when a cartridge is loaded and ready."""
        try:
            self.test_unit_ready()
        except NotReady:
            return False
        return True

    def wait_ready(self, timeout: float = 120.0, poll: float = 0.05) -> None:
        """Wait until the drive is ready (a real drive needs seconds to thread a tape)."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                self.test_unit_ready()
                return
            except (NotReady, UnitAttention) as exc:
                if isinstance(exc, NoMedium) or time.monotonic() >= deadline:
                    raise
                time.sleep(poll)

    def mode(self) -> ModeInfo:
        """Block size (0 = variable), write protection, compression."""
        return ssc.parse_mode_sense(self.dev.execute(ssc.ModeSense6(ssc.MODE_PAGE_COMPRESSION)))

    def set_block_size(self, block_length: int, compression: bool | None = None) -> None:
        """0 selects variable-block mode; anything else fixed blocks of that many bytes."""
        self.dev.execute(ssc.ModeSelect6(ssc.build_mode_select(block_length, compression)))

    def block_limits(self) -> tuple[int, int]:
        """(min, max) block length the drive accepts."""
        limits = ssc.BlockLimits.parse(self.dev.execute(ssc.ReadBlockLimits()).ljust(6, b"\0"))
        return limits.min_length, limits.max_length

    # --- motion ------------------------------------------------------------------------------
    def rewind(self) -> None:
        """Back to the beginning of the tape."""
        self._lost()
        self.dev.execute(ssc.Rewind())
        self._block = self._file = 0

    def load(self) -> None:
        """Thread the cartridge and position at its beginning."""
        self._lost()
        self.dev.execute(ssc.LoadUnload(load=True))
        self._block = self._file = 0

    def unload(self) -> None:
        """Rewind and eject so the changer can take the cartridge."""
        self._lost()
        self.dev.execute(ssc.LoadUnload(load=False))

    def position(self) -> Position:
        """Current logical object (block) number and file number.

        A drive that answers zeros away from the beginning of tape (no BOP flag at block 0:
        tgt) gets the position this handle tracked from its own commands; after end-of-data
        that is recounted from the beginning with SPACE, which reads no data.
        """
        got = ssc.parse_position(self.dev.execute(ssc.ReadPosition(long_form=True)))
        if not self._position_lies:
            if got.block or got.bop:
                self._block, self._file = got.block, got.file
                return got
            self._position_lies = True
        if (self._block is None or self._file is None) and self._at_eod:
            self.rewind()
            self._space_counting(None)
        if self._block is None:
            raise PositionUnknown(
                f"{self.dev.name}: the drive does not report its position and it is not known"
            )
        return Position(self._block, self._file, self._block == 0, False)

    def locate(self, block: int) -> None:
        """Go straight to logical object `block` (blocks and filemarks count).

        Drives without LOCATE(16) get LOCATE(10); drives with neither (tgt 1.0.85) get
        REWIND + SPACE, which reads nothing but is O(position) on a real tape.
        """
        if self._position_lies:  # count from the beginning
            self.rewind()
            self._space_counting(block)
            self._file = None  # some drives (tgt) cross filemarks here without saying so
            return
        self._lost()
        for cmd in (ssc.Locate16, ssc.Locate10):
            if cmd in self._unsupported or (cmd is ssc.Locate10 and block >= 1 << 32):
                continue
            try:
                self.dev.execute(cmd(block))
                self._block = block
                return
            except IllegalRequest as exc:
                if (exc.asc, exc.ascq) != (0x20, 0x00):
                    raise
                self._unsupported.add(cmd)
        self.rewind()
        self._space_counting(block)

    def _space_counting(self, objects: int | None, files: int | None = None) -> None:
        """Space forward over `objects` objects (None: unlimited) or `files` filemarks, with
        SPACE(blocks) only, so the object and file numbers stay known; stops at end-of-data."""
        remaining = objects
        while remaining is None or remaining > 0:
            step = COUNT_STEP if remaining is None else min(remaining, COUNT_STEP)
            try:
                self.space(step)
            except FilemarkDetected as exc:  # the filemark is an object too
                if exc.information is None:
                    return  # no residue: the position is lost (space() forgot it)
                if remaining is not None:
                    remaining -= step - exc.information + 1
                if files is not None:
                    files -= 1
                    if files == 0:
                        return
                continue
            except EndOfData as exc:  # the target is end-of-data itself (or past it)
                if exc.information is None:
                    self._count_to_end()  # no residue given: find end-of-data by bisection
                return
            if remaining is not None:
                remaining -= step

    def _count_to_end(self) -> None:
        """Object and file numbers of end-of-data for drives that neither report position nor
        say how far a SPACE went (tgt): bisect on whether SPACE from BOT reaches the end."""

        def fits(count: int, code: SpaceCode) -> bool:
            self.rewind()
            try:
                self.dev.execute(ssc.Space6(count, code))
            except EndOfData:
                return False
            return True

        def largest(code: SpaceCode) -> int:
            lo, hi = 0, 1
            while hi < COUNT_STEP and fits(hi, code):
                lo, hi = hi, min(hi * 2, COUNT_STEP)
            while hi - lo > 1:
                mid = (lo + hi) // 2
                lo, hi = (mid, hi) if fits(mid, code) else (lo, mid)
            return lo

        objects = largest(SpaceCode.BLOCKS)
        files = largest(SpaceCode.FILEMARKS)
        self.rewind()
        end = objects + 1  # landing on end-of-data itself is refused, so it is one further
        if not objects and not files:  # at most one block: is there one?
            try:
                self.dev.execute(ssc.Read6(1, sili=True))
            except (EndOfData, FilemarkDetected):
                end = 0
            except IncorrectLength:
                pass
            self.rewind()
        try:
            self.dev.execute(ssc.Space6(0, SpaceCode.END_OF_DATA))
        finally:
            self._block, self._file, self._at_eod = end, files, False

    def space(self, count: int, code: SpaceCode = SpaceCode.BLOCKS) -> None:
        """Skip `count` blocks or filemarks (negative: backwards) or go to end-of-data."""
        forward_blocks = code == SpaceCode.BLOCKS and count >= 0
        try:
            self.dev.execute(ssc.Space6(count, code))
        except FilemarkDetected as exc:
            if forward_blocks and exc.information is not None:  # stopped after the filemark
                self._moved(count - exc.information + 1, 1)
            else:
                self._lost()  # no residue: how far it went is not known
            raise
        except EndOfData as exc:
            if forward_blocks and exc.information is not None:
                self._moved(count - exc.information)
            else:
                self._lost()
            raise
        except BaseException:
            self._lost()
            raise
        if forward_blocks:
            self._moved(count)
        elif code == SpaceCode.FILEMARKS and count > 0:
            self._moved(0, count)
            self._block = None
        else:
            self._lost()

    def forget_position(self) -> None:
        """Another initiator (a copy manager) moved the tape: what this handle tracked is void."""
        self._lost()

    def space_filemarks(self, count: int) -> None:
        """Like `mt fsf`/`mt bsf`."""
        if self._position_lies and count > 0 and self._block is not None:
            self._space_counting(None, files=count)
            return
        self.space(count, SpaceCode.FILEMARKS)

    def end_of_data(self) -> None:
        """Position at end-of-data, where appending starts."""
        if self._position_lies:
            if self._block is None or self._file is None:
                self.rewind()
            self._space_counting(None)
            return
        self.space(0, SpaceCode.END_OF_DATA)
        self._at_eod = True

    def erase(self, long: bool = False) -> None:
        """Short: end-of-data here. Long: erase from here to the end of the cartridge."""
        try:
            self.dev.execute(ssc.Erase(long))
        except BaseException:
            self._lost()
            raise

    # --- data --------------------------------------------------------------------------------
    def write(self, data: bytes | memoryview, fixed_block: int = 0) -> None:
        """Write one variable block (or whole fixed blocks)."""
        n = len(data) // fixed_block if fixed_block else 1
        try:
            self.dev.execute(ssc.Write6(data, fixed_block=fixed_block))
        except VolumeOverflow:
            self._lost()  # how much of it went: only the sense says
            raise
        except EndOfMedium:
            self._moved(n)  # written, in the early-warning zone
            raise
        except BaseException:
            self._lost()
            raise
        self._moved(n)

    def write_filemarks(self, count: int = 1) -> None:
        """End a tape file; count 0 only flushes the drive's buffer."""
        try:
            self.dev.execute(ssc.WriteFilemarks(count))
        except VolumeOverflow:
            self._lost()
            raise
        except EndOfMedium:
            self._moved(count, count)
            raise
        except BaseException:
            self._lost()
            raise
        self._moved(count, count)

    def read(self, max_length: int = DEFAULT_BLOCK) -> bytes:
        """Read the next variable block (up to `max_length` bytes) and return it.

        A shorter block is normal; a longer one raises IncorrectLength (the rest of that block
        is lost, as on any drive), so ask for the largest block you may have written.
        """
        try:
            data = self.dev.execute(ssc.Read6(max_length, sili=True))
        except IncorrectLength as exc:
            if (exc.information or 0) >= 0:
                self._moved(1)
                return exc.data
            self._moved(1)
            raise
        except FilemarkDetected:
            self._moved(1, 1)  # positioned after the mark
            raise
        except EndOfData:
            raise
        except BaseException:
            self._lost()
            raise
        self._moved(1)
        return data

    def read_fixed(self, blocks: int, block_length: int) -> bytes:
        """Read `blocks` fixed-length blocks."""
        try:
            data = self.dev.execute(ssc.Read6(blocks, fixed_block=block_length))
        except BaseException:
            self._lost()
            raise
        self._moved(blocks)
        return data

    # --- ownership ---------------------------------------------------------------------------
    def reserve(self) -> None:
        """Claim the drive for this initiator; others get ReservationConflict."""
        self.dev.execute(ssc.Reserve6())

    def release(self) -> None:
        """Give the drive back."""
        self.dev.execute(ssc.Release6())

    def close(self) -> None:
        """Close the transport."""
        self.dev.close()
