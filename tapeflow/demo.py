"""The README's first command: a real round trip on a fresh embedded library.

Creates a library, shows the inventory, loads a cartridge, writes a sample tree as a pax
stream in 256 KiB records, reads it back and verifies every file, then unloads.
"""

from __future__ import annotations

import hashlib
import io
import os
import tarfile
import tempfile
import time
from pathlib import Path
from typing import TextIO

from tapeflow.cli import format_inventory
from tapeflow.library import Library, LibrarySpec
from tapeflow.scsi.sense import FilemarkDetected
from tapeflow.scsi.tape import DEFAULT_BLOCK, TapeDrive


class RecordWriter(io.RawIOBase):
    """A write-only file that sends whole fixed-size records to a tape drive."""

    def __init__(self, drive: TapeDrive, record: int = DEFAULT_BLOCK) -> None:
        self.drive, self.record, self.buf, self.records = drive, record, bytearray(), 0

    def writable(self) -> bool:
        return True

    def write(self, data: bytes) -> int:  # type: ignore[override]
        self.buf += data
        while len(self.buf) >= self.record:
            self.drive.write(memoryview(self.buf)[: self.record])
            del self.buf[: self.record]
            self.records += 1
        return len(data)

    def finish(self) -> None:
        """Pad the last record with zeros and write it."""
        if self.buf:
            self.drive.write(bytes(self.buf).ljust(self.record, b"\0"))
            self.buf.clear()
            self.records += 1


def make_sample_tree(root: Path, files: int = 400, seed: int = 7) -> int:
    """A small tree of text and binary files; returns its size in bytes."""
    total = 0
    for i in range(files):
        d = root / f"dir{i % 8}" / f"sub{i % 3}"
        d.mkdir(parents=True, exist_ok=True)
        size = (i * 7919 + seed) % 60000 if i % 50 else 2 * 1024 * 1024
        data = hashlib.sha256(f"{seed}:{i}".encode()).digest() * (size // 32 + 1)
        (d / f"file{i:04d}.dat").write_bytes(data[:size])
        total += size
    return total


def tree_digest(root: Path) -> dict[str, str]:
    """relative path -> sha256 of every regular file."""
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def read_tape_file(drive: TapeDrive) -> bytes:
    """Read records until the filemark that ends the tape file."""
    chunks = []
    try:
        while True:
            chunks.append(drive.read(DEFAULT_BLOCK))
    except FilemarkDetected:
        return b"".join(chunks)


def run_demo(directory: Path | None, out: TextIO) -> int:
    """Run the demo; returns 0 when everything read back matches."""
    from tapeflow.vtl import VirtualLibrary

    work = Path(tempfile.mkdtemp(prefix="tapeflow-demo-")) if directory is None else directory
    work.mkdir(parents=True, exist_ok=True)
    lib_dir = work / "library"

    def say(text: str = "") -> None:
        print(text, file=out, flush=True)

    say(f"== creating an embedded tape library in {lib_dir}")
    VirtualLibrary.create(lib_dir, drives=4, slots=24, mail_slots=4)
    with Library(LibrarySpec.parse(f"embedded:{lib_dir}")) as lib:
        say(format_inventory(lib.inventory()))
        barcode = lib.inventory().slots[0].barcode
        say(f"\n== loading {barcode} into drive 0")
        lib.load(0, barcode=barcode)
        source = work / "source"
        size = make_sample_tree(source)
        say(f"== writing {size / 1e6:.1f} MB ({len(tree_digest(source))} files) as a pax stream")
        drive = lib.open_drive(0)
        try:
            drive.set_block_size(0)
            start = time.perf_counter()
            writer = RecordWriter(drive)
            with tarfile.open(fileobj=writer, mode="w|", format=tarfile.PAX_FORMAT) as tar:
                tar.add(source, arcname="source")
            writer.finish()
            drive.write_filemarks(1)
            took = time.perf_counter() - start
            end = drive.position()
            say(
                f"   {writer.records} records of 256 KiB, {size / took / 1e6:.0f} MB/s; "
                f"tape now at block {end.block}, file {end.file}"
            )
            say("== rewinding and reading it back")
            drive.rewind()
            start = time.perf_counter()
            stream = read_tape_file(drive)
            took = time.perf_counter() - start
            say(f"   read {len(stream) / 1e6:.1f} MB in {took:.2f} s")
            restored = work / "restored"
            with tarfile.open(fileobj=io.BytesIO(stream), mode="r:") as tar:
                tar.extractall(restored, filter="data")
            say("== locating straight to block 2 (no reading from the start)")
            drive.locate(2)
            say(f"   position: block {drive.position().block}")
        finally:
            drive.close()
        ok = tree_digest(source) == tree_digest(restored / "source")
        say(f"== verify: {'every file identical' if ok else 'MISMATCH'}")
        say(f"== unloading drive 0 back to its slot ({lib.unload(0)})")
        say(format_inventory(lib.inventory()))
    say(
        f"\ndemo library left in {lib_dir} (try: tapeflow library inventory "
        f"--library embedded:{lib_dir})"
    )
    os.sync()
    return 0 if ok else 1
