"""A tape drive: SSC operations with tape semantics (filemarks, end-of-data, early warning)."""

from __future__ import annotations

import time

from tapeflow.scsi import ssc
from tapeflow.scsi.device import ScsiDevice
from tapeflow.scsi.sense import (
    EndOfData,
    FilemarkDetected,
    IllegalRequest,
    IncorrectLength,
    NoMedium,
    NotReady,
    UnitAttention,
)
from tapeflow.scsi.ssc import InquiryData, ModeInfo, Position, SpaceCode
from tapeflow.scsi.transport import Transport

DEFAULT_BLOCK = 256 * 1024


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
        self.dev.execute(ssc.Rewind())

    def load(self) -> None:
        """Thread the cartridge and position at its beginning."""
        self.dev.execute(ssc.LoadUnload(load=True))

    def unload(self) -> None:
        """Rewind and eject so the changer can take the cartridge."""
        self.dev.execute(ssc.LoadUnload(load=False))

    def position(self) -> Position:
        """Current logical object (block) number and file number."""
        return ssc.parse_position(self.dev.execute(ssc.ReadPosition(long_form=True)))

    def locate(self, block: int) -> None:
        """Go straight to logical object `block` (blocks and filemarks count).

        Drives without LOCATE(16) get LOCATE(10); drives with neither (tgt 1.0.85) get
        REWIND + SPACE, which reads nothing but is O(position) on a real tape.
        """
        for cmd in (ssc.Locate16, ssc.Locate10):
            if cmd in self._unsupported or (cmd is ssc.Locate10 and block >= 1 << 32):
                continue
            try:
                self.dev.execute(cmd(block))
                return
            except IllegalRequest as exc:
                if (exc.asc, exc.ascq) != (0x20, 0x00):
                    raise
                self._unsupported.add(cmd)
        self.rewind()
        remaining = block
        while remaining > 0:
            try:
                self.space(remaining)
                remaining = 0
            except FilemarkDetected as exc:  # the filemark is an object too
                remaining = (exc.information or 0) - 1
            except EndOfData:  # the target is end-of-data itself (or past it, as LOCATE ends)
                remaining = 0

    def space(self, count: int, code: SpaceCode = SpaceCode.BLOCKS) -> None:
        """Skip `count` blocks or filemarks (negative: backwards) or go to end-of-data."""
        self.dev.execute(ssc.Space6(count, code))

    def space_filemarks(self, count: int) -> None:
        """Like `mt fsf`/`mt bsf`."""
        self.space(count, SpaceCode.FILEMARKS)

    def end_of_data(self) -> None:
        """Position at end-of-data, where appending starts."""
        self.space(0, SpaceCode.END_OF_DATA)

    def erase(self, long: bool = False) -> None:
        """Short: end-of-data here. Long: erase from here to the end of the cartridge."""
        self.dev.execute(ssc.Erase(long))

    # --- data --------------------------------------------------------------------------------
    def write(self, data: bytes | memoryview, fixed_block: int = 0) -> None:
        """Write one variable block (or whole fixed blocks)."""
        self.dev.execute(ssc.Write6(data, fixed_block=fixed_block))

    def write_filemarks(self, count: int = 1) -> None:
        """End a tape file; count 0 only flushes the drive's buffer."""
        self.dev.execute(ssc.WriteFilemarks(count))

    def read(self, max_length: int = DEFAULT_BLOCK) -> bytes:
        """Read the next variable block (up to `max_length` bytes) and return it.

        A shorter block is normal; a longer one raises IncorrectLength (the rest of that block
        is lost, as on any drive), so ask for the largest block you may have written.
        """
        try:
            return self.dev.execute(ssc.Read6(max_length, sili=True))
        except IncorrectLength as exc:
            if (exc.information or 0) >= 0:
                return exc.data
            raise

    def read_fixed(self, blocks: int, block_length: int) -> bytes:
        """Read `blocks` fixed-length blocks."""
        return self.dev.execute(ssc.Read6(blocks, fixed_block=block_length))

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
