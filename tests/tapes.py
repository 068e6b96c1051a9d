"""Helpers for tests that read tapes back raw."""

from __future__ import annotations

from tapeflow.library import Library
from tapeflow.scsi.sense import EndOfData, FilemarkDetected


def session_bytes(lib: Library, drive: int, tape_file: int) -> bytes:
    """Every record of tape file `tape_file` of the cartridge in `drive`, concatenated."""
    tape = lib.open_drive(drive)
    try:
        tape.rewind()
        tape.space_filemarks(tape_file)
        out = bytearray()
        while True:
            try:
                out += tape.read(1 << 20)
            except (FilemarkDetected, EndOfData):  # the session's end
                return bytes(out)
    finally:
        tape.close()
