"""Write and read throughput (256 KiB variable blocks) of the embedded library and of tgt over
iSCSI on loopback, measured in one run and printed as a table with the ratio.

Usage: python -m bench [--mb 1024]
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from tapeflow.library import Library, LibrarySpec
from tapeflow.scsi.sense import FilemarkDetected
from tapeflow.scsi.tape import TapeDrive

BLOCK = 256 * 1024


@contextmanager
def embedded(work: Path, mb: int) -> Iterator[Library]:
    """A fresh embedded library with room for the test."""
    from tapeflow.vtl import VirtualLibrary

    VirtualLibrary.create(
        work / "vtl",
        drives=1,
        slots=4,
        mail_slots=0,
        capacity=(mb + 64) * 1024 * 1024,
        cleaning_cartridges=0,
    )
    with Library(LibrarySpec.parse(f"embedded:{work / 'vtl'}")) as lib:
        yield lib


@contextmanager
def tgt(work: Path, mb: int) -> Iterator[Library]:
    """tgtd on 127.0.0.1 with one drive and a cartridge with room for the test."""
    from tapeflow.testing.tgt import TgtLibrary

    with TgtLibrary(
        work / "tgt", drives=1, slots=4, mail_slots=0, cartridges=2, cartridge_mb=mb + 64
    ) as t:
        spec = t.spec("bench-tgt")
        with Library(spec) as lib:
            yield lib


def measure(lib: Library, mb: int) -> tuple[float, float]:
    """(write MB/s, read MB/s) for `mb` MiB in 256 KiB blocks on drive 0."""
    lib.load(0, slot=1)
    drive: TapeDrive = lib.open_drive(0)
    try:
        drive.set_block_size(0)
        drive.rewind()
        payload = os.urandom(BLOCK)
        count = mb * 1024 * 1024 // BLOCK
        start = time.perf_counter()
        for _ in range(count):
            drive.write(payload)
        drive.write_filemarks(1)
        write_s = time.perf_counter() - start
        drive.rewind()
        start = time.perf_counter()
        got = 0
        try:
            while True:
                got += len(drive.read(BLOCK))
        except FilemarkDetected:
            pass
        read_s = time.perf_counter() - start
        assert got == count * BLOCK, f"read {got} of {count * BLOCK} bytes"
    finally:
        drive.close()
        lib.unload(0)
    total = count * BLOCK / 1e6
    return total / write_s, total / read_s


def main() -> None:
    """Run both backends and print the table."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--mb", type=int, default=1024, help="MiB written per backend")
    args = parser.parse_args()
    rows: dict[str, tuple[float, float]] = {}
    with tempfile.TemporaryDirectory(prefix="tapeflow-bench-") as tmp:
        os.environ.setdefault("TAPEFLOW_HOME", str(Path(tmp) / "home"))
        for name, factory in (("embedded", embedded), ("tgt (iSCSI, loopback)", tgt)):
            with factory(Path(tmp) / name.split()[0], args.mb) as lib:
                measure(lib, min(args.mb, 64))  # warm-up
            with factory(Path(tmp) / (name.split()[0] + "2"), args.mb) as lib:
                rows[name] = measure(lib, args.mb)
    ref_w, ref_r = rows["tgt (iSCSI, loopback)"]
    print(f"\nthroughput, {args.mb} MiB in 256 KiB variable blocks, one drive")
    head = ("backend", "write MB/s", "read MB/s", "write x tgt", "read x tgt")
    print(f"{head[0]:<24} {head[1]:>11} {head[2]:>10} {head[3]:>12} {head[4]:>11}")
    for name, (w, r) in rows.items():
        print(f"{name:<24} {w:>11.0f} {r:>10.0f} {w / ref_w:>12.2f} {r / ref_r:>11.2f}")


if __name__ == "__main__":
    main()
