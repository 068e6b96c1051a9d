"""Linux SCSI generic transport (/dev/sg*) through cython-sgio, the backend pyscsi uses.

Import-guarded: install the `sg` extra (`pip install tapeflow[sg]`) on a host with real
drives. The device node must be readable and writable by the user (usually group `tape`).
"""

from __future__ import annotations

from typing import BinaryIO

from tapeflow.scsi.transport import CHECK_CONDITION, GOOD, CommandResult


class SgUnavailable(RuntimeError):
    """cython-sgio is not installed."""


class SgTransport:
    """One /dev/sgN node. Sense and the transferred length come from the SG_IO ioctl."""

    def __init__(self, path: str) -> None:
        try:
            import sgio  # noqa: PLC0415 - optional dependency
        except ImportError as exc:
            raise SgUnavailable(
                "the sg backend needs cython-sgio: pip install 'tapeflow[sg]'"
            ) from exc
        self._sgio = sgio
        self.path = path
        self._file: BinaryIO = open(path, "r+b", buffering=0)  # noqa: SIM115 - closed in close()

    def execute(
        self, cdb: bytes, data_out: bytes | memoryview | None = None, data_in_len: int = 0
    ) -> CommandResult:
        """Send one CDB through SG_IO."""
        data_in = bytearray(data_in_len)
        try:
            count = self._sgio.execute(self._file, bytes(cdb), data_out, data_in)
        except self._sgio.CheckConditionError as exc:
            return CommandResult(CHECK_CONDITION, bytes(data_in), bytes(exc.sense))
        got = count if isinstance(count, int) and 0 <= count <= data_in_len else data_in_len
        return CommandResult(GOOD, bytes(data_in[:got]) if data_in_len else b"")

    def close(self) -> None:
        """Close the device node."""
        self._file.close()
