"""What every logical unit of the library shares: command dispatch, CHECK CONDITION with fixed
sense, REQUEST SENSE, and INQUIRY with the VPD pages hosts look at (0x00, 0x80, 0x83)."""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Callable
from types import TracebackType

from tapeflow.scsi.sense import ILLEGAL_REQUEST, NO_SENSE, build_fixed_sense
from tapeflow.scsi.transport import CHECK_CONDITION, GOOD, RESERVATION_CONFLICT, CommandResult
from tapeflow.vtl import cdb

VENDOR = "TAPEFLOW"
REVISION = "0100"
INQUIRY = 0x12
REQUEST_SENSE = 0x03


class CheckCondition(Exception):  # noqa: N818 - it is a SCSI status, not an error of ours
    """Raised inside a handler to end the command in CHECK CONDITION with this sense."""

    def __init__(
        self,
        key: int,
        asc: int = 0,
        ascq: int = 0,
        *,
        information: int | None = None,
        filemark: bool = False,
        eom: bool = False,
        ili: bool = False,
        data: bytes = b"",
    ) -> None:
        super().__init__(f"sense {key:X}/{asc:02X}/{ascq:02X}")
        self.sense = build_fixed_sense(
            key, asc, ascq, information=information, filemark=filemark, eom=eom, ili=ili
        )
        self.data = data


class ReservationConflictStatus(Exception):  # noqa: N818 - a status, like CheckCondition
    """Raised when another initiator holds the unit's reservation (status 0x18, no sense)."""


def invalid_field() -> CheckCondition:
    """ILLEGAL REQUEST, INVALID FIELD IN CDB (24/00)."""
    return CheckCondition(ILLEGAL_REQUEST, 0x24, 0x00)


def naa_designator(serial: str) -> bytes:
    """An 8-byte NAA 3h (locally assigned) designator derived from a unit serial: short enough
    for an EXTENDED COPY 0xE4 target descriptor, unique per serial."""
    digest = int.from_bytes(hashlib.sha256(serial.encode()).digest()[:8], "big")
    return ((0x3 << 60) | (digest & ((1 << 60) - 1))).to_bytes(8, "big")


def cdb_length(opcode: int) -> int:
    """CDB length implied by the opcode's group code."""
    group = opcode >> 5
    return {0: 6, 1: 10, 2: 10, 4: 16, 5: 12}.get(group, 6)


Handler = Callable[[bytes, memoryview | None, int], bytes]


class LogicalUnit:
    """Base of a LUN handle: one initiator's view of one logical unit."""

    peripheral_type: int = 0x1F
    removable: bool = False
    inquiry_flags: bytes = bytes(3)  # standard INQUIRY bytes 5-7 (e.g. 3PC for a copy manager)
    product: str = ""

    def __init__(self, serial: str) -> None:
        self.serial = serial
        self._last_sense = b""
        self._thread_lock = threading.Lock()
        self._closed = False
        self._handlers: dict[int, Handler] = {
            INQUIRY: self._inquiry,
            REQUEST_SENSE: self._request_sense,
        }

    # --- Transport ---------------------------------------------------------------------------
    def execute(
        self, cdb_bytes: bytes, data_out: bytes | memoryview | None = None, data_in_len: int = 0
    ) -> CommandResult:
        """Run one CDB; data_in is cut to `data_in_len` like a real transport would."""
        raw = bytes(cdb_bytes)
        out = memoryview(data_out).cast("B") if data_out is not None else None
        with self._thread_lock:
            if self._closed:
                raise ValueError("command on a closed handle")
            if not raw:
                return self._check(CheckCondition(ILLEGAL_REQUEST, 0x20, 0x00), data_in_len)
            opcode = raw[0]
            if opcode != REQUEST_SENSE:
                self._last_sense = b""
            handler = self._handlers.get(opcode)
            if handler is None:
                return self._check(CheckCondition(ILLEGAL_REQUEST, 0x20, 0x00), data_in_len)
            if len(raw) < cdb_length(opcode):
                return self._check(invalid_field(), data_in_len)
            try:
                data = self._run(opcode, handler, raw, out, data_in_len)
            except CheckCondition as cc:
                return self._check(cc, data_in_len)
            except ReservationConflictStatus:
                return CommandResult(RESERVATION_CONFLICT)
            return CommandResult(GOOD, data[:data_in_len])

    def _run(
        self, opcode: int, handler: Handler, raw: bytes, out: memoryview | None, alloc: int
    ) -> bytes:
        """Hook for subclasses (locking, reservation checks); runs the handler."""
        return handler(raw, out, alloc)

    def _check(self, cc: CheckCondition, data_in_len: int) -> CommandResult:
        self._last_sense = cc.sense
        return CommandResult(CHECK_CONDITION, cc.data[:data_in_len], cc.sense)

    def close(self) -> None:
        """Mark the handle closed; subclasses release their resources."""
        self._closed = True

    def __enter__(self) -> LogicalUnit:
        return self

    def __exit__(
        self, et: type[BaseException] | None, ev: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    # --- shared commands ---------------------------------------------------------------------
    def _request_sense(self, raw: bytes, out: memoryview | None, alloc: int) -> bytes:
        c = cdb.Cdb6.parse(raw)
        if c.b1 & 0x01:  # DESC: we only speak fixed format
            raise invalid_field()
        sense = self._last_sense or build_fixed_sense(NO_SENSE, 0, 0)
        self._last_sense = b""
        return sense[: c.b4]

    def _inquiry(self, raw: bytes, out: memoryview | None, alloc: int) -> bytes:
        c = cdb.Inquiry.parse(raw)
        if c.evpd & 0x01:
            data = self._vpd(c.page)
        elif c.page:
            raise invalid_field()
        else:
            data = cdb.StandardInquiryData.build(
                {
                    "peripheral": self.peripheral_type,
                    "rmb": 0x80 if self.removable else 0,
                    "version": 0x06,
                    "response_format": 0x02,
                    "additional_length": 31,
                    "flags": self.inquiry_flags,
                    "vendor": VENDOR.encode().ljust(8)[:8],
                    "product": self.product.encode().ljust(16)[:16],
                    "revision": REVISION.encode().ljust(4)[:4],
                }
            )
        return data[: c.alloc]

    def _vpd(self, page: int) -> bytes:
        if page == 0x00:
            body = bytes([0x00, 0x80, 0x83])
        elif page == 0x80:
            body = self.serial.encode("ascii")
        elif page == 0x83:
            ident = VENDOR.encode().ljust(8) + self.product.encode() + b" " + self.serial.encode()
            naa = naa_designator(self.serial)
            body = (
                cdb.DesignatorHeader.build({"code_set": 0x02, "type": 0x01, "length": len(ident)})
                + ident
                + cdb.DesignatorHeader.build({"code_set": 0x01, "type": 0x03, "length": len(naa)})
                + naa
            )
        else:
            raise invalid_field()
        head = cdb.VpdHeader.build(
            {"peripheral": self.peripheral_type, "page": page, "length": len(body)}
        )
        return head + body
