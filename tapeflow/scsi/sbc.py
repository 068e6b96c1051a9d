"""SBC (direct-access block device) commands a serverless backup needs on the host path:
READ CAPACITY(16), READ(16), WRITE(16), SYNCHRONIZE CACHE(10), plus a small BlockDevice."""

from __future__ import annotations

from dataclasses import dataclass

from construct import Int32ub, Int64ub, Struct

from tapeflow.scsi.command import Command, OpCode, sbc
from tapeflow.scsi.device import ScsiDevice
from tapeflow.scsi.transport import Transport
from tapeflow.scsi.vpd import Designator, DeviceIdentification, parse_designators

_SERVICE_ACTION_IN_16 = OpCode("SERVICE_ACTION_IN_16", 0x9E, {})
READ_CAPACITY_16_SA = 0x10
MAX_TRANSFER_BLOCKS = 2048  # 1 MiB of 512-byte blocks per READ/WRITE

Capacity16 = Struct("last_lba" / Int64ub, "block_length" / Int32ub)


class ShortTransfer(Exception):
    """A disk returned fewer bytes than the blocks asked for, without an error: the data would
    shift silently, so the copy stops here."""


class ReadCapacity16(Command):
    """READ CAPACITY(16): last LBA and logical block length."""

    _cdb_bits = {"opcode": [0xFF, 0], "sa": [0x1F, 1], "alloc": [0xFFFFFFFF, 10]}

    def __init__(self, alloc: int = 32) -> None:
        Command.__init__(
            self, _SERVICE_ACTION_IN_16, data_in_len=alloc, sa=READ_CAPACITY_16_SA, alloc=alloc
        )


class Read16(Command):
    """READ(16) of `blocks` logical blocks from `lba`."""

    _cdb_bits = {"opcode": [0xFF, 0], "lba": [0xFFFFFFFFFFFFFFFF, 2], "blocks": [0xFFFFFFFF, 10]}

    def __init__(self, lba: int, blocks: int, block_length: int) -> None:
        Command.__init__(
            self, sbc.READ_16, data_in_len=blocks * block_length, lba=lba, blocks=blocks
        )


class Write16(Command):
    """WRITE(16) of `data` (a whole number of blocks) at `lba`."""

    _cdb_bits = {"opcode": [0xFF, 0], "lba": [0xFFFFFFFFFFFFFFFF, 2], "blocks": [0xFFFFFFFF, 10]}

    def __init__(self, lba: int, data: bytes, block_length: int) -> None:
        if len(data) % block_length:
            raise ValueError(f"{len(data)} bytes are not whole {block_length}-byte blocks")
        Command.__init__(
            self, sbc.WRITE_16, data_out=bytes(data), lba=lba, blocks=len(data) // block_length
        )


class SynchronizeCache10(Command):
    """SYNCHRONIZE CACHE(10) of the whole unit."""

    def __init__(self) -> None:
        Command.__init__(self, sbc.SYNCHRONIZE_CACHE_10)


@dataclass(frozen=True, slots=True)
class Geometry:
    """Size of a block device."""

    blocks: int
    block_length: int

    @property
    def size(self) -> int:
        return self.blocks * self.block_length


class BlockDevice:
    """A disk logical unit: capacity, block reads and writes in bounded transfers."""

    def __init__(self, transport: Transport | ScsiDevice, name: str = "") -> None:
        self.dev = transport if isinstance(transport, ScsiDevice) else ScsiDevice(transport, name)
        self._geometry: Geometry | None = None

    def geometry(self) -> Geometry:
        """Block count and length (READ CAPACITY(16)), cached."""
        if self._geometry is None:
            cap = Capacity16.parse(self.dev.execute(ReadCapacity16()))
            self._geometry = Geometry(cap.last_lba + 1, cap.block_length)
        return self._geometry

    def designators(self) -> list[Designator]:
        """The unit's VPD 0x83 designators."""
        return parse_designators(self.dev.execute(DeviceIdentification()))

    def read(self, lba: int, blocks: int) -> bytes:
        """`blocks` blocks from `lba`, split into transfers of at most 1 MiB."""
        length = self.geometry().block_length
        parts: list[bytes] = []
        while blocks > 0:
            n = min(blocks, MAX_TRANSFER_BLOCKS)
            data = self.dev.execute(Read16(lba, n, length))
            if len(data) != n * length:
                raise ShortTransfer(
                    f"{self.dev.name}: READ of {n} blocks at {lba} gave {len(data)} bytes"
                )
            parts.append(data)
            lba += n
            blocks -= n
        return b"".join(parts)

    def write(self, lba: int, data: bytes | memoryview) -> None:
        """Write whole blocks from `lba`, split into transfers of at most 1 MiB."""
        length = self.geometry().block_length
        view = memoryview(data).cast("B")
        step = MAX_TRANSFER_BLOCKS * length
        for pos in range(0, len(view), step):
            chunk = bytes(view[pos : pos + step])
            self.dev.execute(Write16(lba + pos // length, chunk, length))

    def flush(self) -> None:
        """SYNCHRONIZE CACHE."""
        self.dev.execute(SynchronizeCache10())

    def close(self) -> None:
        self.dev.close()

    def __enter__(self) -> BlockDevice:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


__all__ = ["BlockDevice", "Geometry"]
