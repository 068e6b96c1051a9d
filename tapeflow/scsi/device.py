"""A SCSI logical unit reached through any transport: runs commands, turns sense into errors."""

from __future__ import annotations

import logging

from tapeflow.scsi.command import Command
from tapeflow.scsi.sense import ScsiError, Sense, UnitAttention, error_for, parse_sense
from tapeflow.scsi.transport import GOOD, CommandResult, Transport

log = logging.getLogger(__name__)

UNIT_ATTENTION_RETRIES = 3


class ScsiDevice:
    """One logical unit. Not thread-safe: give each thread (slave) its own device/transport."""

    def __init__(self, transport: Transport, name: str = "") -> None:
        self.transport = transport
        self.name = name or type(transport).__name__

    def run(self, cmd: Command) -> CommandResult:
        """Execute `cmd`; raise the typed error for any non-GOOD status, with the data attached.

        A UNIT ATTENTION means the command was not executed (reset, medium changed), so it is
        retried a few times before being raised.
        """
        for attempt in range(UNIT_ATTENTION_RETRIES + 1):
            result = self.transport.execute(cmd.cdb, cmd.dataout or None, cmd.data_in_len)
            cmd.datain = bytearray(result.data_in)
            cmd.sense = result.sense
            if result.status == GOOD:
                return result
            error = error_for(parse_sense(result.sense), status=result.status)
            error.data = result.data_in
            if isinstance(error, UnitAttention) and attempt < UNIT_ATTENTION_RETRIES:
                log.info("%s: %s; retrying %r", self.name, error, cmd)
                continue
            raise error
        raise AssertionError("unreachable")

    def execute(self, cmd: Command) -> bytes:
        """Execute `cmd` and return its data-in bytes."""
        return self.run(cmd).data_in

    def close(self) -> None:
        """Close the underlying transport."""
        self.transport.close()

    def __enter__(self) -> ScsiDevice:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


__all__ = ["ScsiDevice", "ScsiError", "Sense"]
