"""A medium changer: element inventory and moves (SMC)."""

from __future__ import annotations

from tapeflow.scsi import smc, ssc
from tapeflow.scsi.device import ScsiDevice
from tapeflow.scsi.element_status import Element, ElementType, parse_element_status
from tapeflow.scsi.ssc import InquiryData
from tapeflow.scsi.transport import Transport


class MediumChanger:
    """SMC commands on one changer LUN."""

    def __init__(self, transport: Transport | ScsiDevice, name: str = "") -> None:
        self.dev = transport if isinstance(transport, ScsiDevice) else ScsiDevice(transport, name)

    def inquiry(self) -> InquiryData:
        """Vendor, product, revision and device type."""
        return ssc.parse_inquiry(self.dev.execute(ssc.Inquiry()))

    def elements(self, element_type: ElementType = ElementType.ALL) -> list[Element]:
        """Every element of `element_type` with occupancy and barcode, ordered by address.

        Asks per type, since some changers reject (or truncate) an ALL request; grows the
        allocation when the reply says more data is available.
        """
        if element_type != ElementType.ALL:
            return self._read(element_type)
        found: list[Element] = []
        for etype in (
            ElementType.TRANSPORT,
            ElementType.STORAGE,
            ElementType.IMPORT_EXPORT,
            ElementType.DRIVE,
        ):
            found.extend(self._read(etype))
        return sorted(found, key=lambda e: (e.type, e.address))

    def _read(self, etype: ElementType) -> list[Element]:
        alloc = 0x10000
        while True:
            data = self.dev.execute(smc.ReadElementStatus(etype, alloc=alloc))
            declared = 8 + int.from_bytes(data[5:8], "big") if len(data) >= 8 else 0
            # ask again only when OUR allocation cut the reply (tgt's replies are simply short)
            if len(data) < alloc or declared <= alloc or alloc >= 0xFFFFFF:
                return [e for e in parse_element_status(data) if e.type == etype]
            alloc = min(0xFFFFFF, declared)

    def move(self, source: int, destination: int, transport: int | None = None) -> None:
        """MOVE MEDIUM; raises SourceEmpty, DestinationFull or InvalidElementAddress."""
        if transport is None:
            robots = self._read(ElementType.TRANSPORT)
            transport = robots[0].address if robots else 0
        self.dev.execute(smc.MoveMedium(transport, source, destination))

    def initialize(self) -> None:
        """Have the changer rescan occupancy and barcodes."""
        self.dev.execute(smc.InitializeElementStatus())

    def close(self) -> None:
        """Close the transport."""
        self.dev.close()
