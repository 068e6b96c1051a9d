"""SMC (media changer) commands as pyscsi-style CDB classes."""

from __future__ import annotations

from tapeflow.scsi.command import Command, smc
from tapeflow.scsi.element_status import ElementType


class ReadElementStatus(Command):
    """READ ELEMENT STATUS with volume tags (barcodes)."""

    _cdb_bits = {
        "opcode": [0xFF, 0],
        "voltag": [0x10, 1],
        "element_type": [0x0F, 1],
        "start": [0xFFFF, 2],
        "count": [0xFFFF, 4],
        "dvcid": [0x01, 6],
        "alloc": [0xFFFFFF, 7],
    }

    def __init__(
        self,
        element_type: ElementType = ElementType.ALL,
        start: int = 0,
        count: int = 0xFFFF,
        *,
        voltag: bool = True,
        alloc: int = 0xFFFF,
    ) -> None:
        Command.__init__(
            self,
            smc.READ_ELEMENT_STATUS,
            data_in_len=alloc,
            voltag=int(voltag),
            element_type=int(element_type),
            start=start,
            count=count,
            dvcid=0,
            alloc=alloc,
        )


class MoveMedium(Command):
    """MOVE MEDIUM from one element to another using a transport element."""

    _cdb_bits = {
        "opcode": [0xFF, 0],
        "transport": [0xFFFF, 2],
        "source": [0xFFFF, 4],
        "destination": [0xFFFF, 6],
    }
    timeout = 600.0

    def __init__(self, transport: int, source: int, destination: int) -> None:
        Command.__init__(
            self,
            smc.MOVE_MEDIUM,
            transport=transport,
            source=source,
            destination=destination,
        )


class InitializeElementStatus(Command):
    """INITIALIZE ELEMENT STATUS: make the changer re-scan barcodes and occupancy."""

    timeout = 3600.0

    def __init__(self) -> None:
        Command.__init__(self, smc.INITIALIZE_ELEMENT_STATUS)


class ModeSenseElementAddress(Command):
    """MODE SENSE(6) page 0x1D: first address and count of each element type."""

    _cdb_bits = {"opcode": [0xFF, 0], "dbd": [0x08, 1], "page": [0x3F, 2], "alloc": [0xFF, 4]}

    def __init__(self, alloc: int = 255) -> None:
        Command.__init__(self, smc.MODE_SENSE_6, data_in_len=alloc, dbd=1, page=0x1D, alloc=alloc)
