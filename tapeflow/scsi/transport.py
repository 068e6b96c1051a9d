"""The one contract every SCSI transport (embedded, iSCSI, sg) fulfils: send a CDB, get status."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

GOOD = 0x00
CHECK_CONDITION = 0x02
BUSY = 0x08
RESERVATION_CONFLICT = 0x18


@dataclass(frozen=True, slots=True)
class CommandResult:
    """Outcome of one command: SCSI status, the data-in bytes actually transferred, raw sense."""

    status: int
    data_in: bytes = b""
    sense: bytes = b""


class Transport(Protocol):
    """Executes one CDB against one logical unit."""

    def execute(
        self, cdb: bytes, data_out: bytes | memoryview | None = None, data_in_len: int = 0
    ) -> CommandResult:
        """Run `cdb`; `data_out` is sent to the device, up to `data_in_len` bytes come back."""
        ...

    def close(self) -> None:
        """Release the connection or file handles."""
        ...
