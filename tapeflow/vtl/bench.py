"""Measure one drive's WRITE/READ throughput: `python -m tapeflow.vtl.bench [MiB] [block KiB]`.

Variable-mode 256 KiB blocks, no speed limit, a throwaway library in a temporary directory.
"""

from __future__ import annotations

import os
import sys
import tempfile
import time
from pathlib import Path

from tapeflow.scsi.transport import GOOD
from tapeflow.vtl.library import VirtualLibrary
from tapeflow.vtl.state import DRIVE_FIRST, STORAGE_FIRST


def measure(root: Path, total: int, block: int) -> tuple[float, float, float]:
    """(write, write including the final fsync, read) MB/s in `block`-byte variable blocks."""
    lib = VirtualLibrary.create(
        root,
        drives=1,
        slots=2,
        cartridges=1,
        cleaning_cartridges=0,
        capacity=total * 2,
        early_warning=0,
    )
    move = (0xA5, 0, 0, 0, *STORAGE_FIRST.to_bytes(2, "big"), *DRIVE_FIRST.to_bytes(2, "big"))
    changer = lib.changer()
    if changer.execute(bytes(move) + bytes(4)).status != GOOD:
        raise RuntimeError("MOVE MEDIUM failed")
    drive = lib.drive(0)
    payload = os.urandom(block)
    n = total // block
    rw = bytes([0, 0, *block.to_bytes(3, "big"), 0])
    write_cdb, read_cdb = bytes([0x0A]) + rw[1:], bytes([0x08]) + rw[1:]
    start = time.perf_counter()
    for _ in range(n):
        if drive.execute(write_cdb, payload).status != GOOD:
            raise RuntimeError("WRITE failed")
    write_rate = n * block / (time.perf_counter() - start) / 1e6
    drive.execute(bytes([0x10, 0, 0, 0, 1, 0]))  # filemark: fsync to disk
    synced_rate = n * block / (time.perf_counter() - start) / 1e6
    drive.execute(bytes([0x01, 0, 0, 0, 0, 0]))  # REWIND
    start = time.perf_counter()
    for _ in range(n):
        if drive.execute(read_cdb, None, block).status != GOOD:
            raise RuntimeError("READ failed")
    read_rate = n * block / (time.perf_counter() - start) / 1e6
    drive.close()
    changer.close()
    return write_rate, synced_rate, read_rate


def main(argv: list[str]) -> None:
    """Print write and read MB/s."""
    total = int(argv[0]) * 1024**2 if argv else 2 * 1024**3
    block = int(argv[1]) * 1024 if len(argv) > 1 else 256 * 1024
    with tempfile.TemporaryDirectory() as tmp:
        w, ws, r = measure(Path(tmp) / "lib", total, block)
    print(
        f"{total // 1024**2} MiB in {block // 1024} KiB blocks: write {w:.0f} MB/s "
        f"({ws:.0f} MB/s including the fsync at the filemark), read {r:.0f} MB/s"
    )


if __name__ == "__main__":
    main(sys.argv[1:])
