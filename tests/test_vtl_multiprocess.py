"""Process-level guarantees of the VTL: crash consistency under kill -9, and several processes
sharing one library (separate drives concurrently; RESERVE across processes)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

from tapeflow.scsi.sense import BLANK_CHECK, parse_sense
from tapeflow.scsi.transport import GOOD, RESERVATION_CONFLICT
from tapeflow.vtl import VirtualLibrary

REPO = Path(__file__).resolve().parents[1]
BLOCK = 256 * 1024

PRELUDE = textwrap.dedent(
    """
    import sys
    from pathlib import Path
    from tapeflow.vtl import VirtualLibrary

    def pattern(seed, i, size):
        return ((seed * 1_000_003 + i).to_bytes(8, "big") * (size // 8 + 1))[:size]

    lib = VirtualLibrary.open(Path(sys.argv[1]))
    """
)


def spawn(script: str, *args: str) -> subprocess.Popen[str]:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.Popen(
        [sys.executable, "-c", PRELUDE + textwrap.dedent(script), *args],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        env=env,
    )


def pattern(seed: int, i: int, size: int) -> bytes:
    return ((seed * 1_000_003 + i).to_bytes(8, "big") * (size // 8 + 1))[:size]


def move(src: int, dst: int) -> bytes:
    return bytes([0xA5, 0, 0, 0]) + src.to_bytes(2, "big") + dst.to_bytes(2, "big") + bytes(4)


def rw6(opcode: int, n: int) -> bytes:
    return bytes([opcode, 0]) + n.to_bytes(3, "big") + b"\x00"


WRITER = """
    drive = lib.drive(0)
    cdb = bytes([0x0A, 0]) + (256 * 1024).to_bytes(3, "big") + bytes(1)
    for i in range(4000):
        assert drive.execute(cdb, pattern(7, i, 256 * 1024)).status == 0
        print(i + 1, flush=True)
"""


def test_kill_9_mid_write_leaves_complete_blocks(tmp_path: Path) -> None:
    lib = VirtualLibrary.create(tmp_path / "lib", drives=2, slots=6, capacity=2 * 1024**3)
    changer = lib.changer()
    assert changer.execute(move(1024, 256)).status == GOOD
    before = lib.contents()
    proc = spawn(WRITER, str(lib.root))
    assert proc.stdout is not None
    acknowledged = 0
    while acknowledged < 60:  # let it stream, then kill it while it is writing
        acknowledged = int(proc.stdout.readline())
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    proc.stdout.close()
    assert proc.stdin is not None
    proc.stdin.close()

    reopened = VirtualLibrary.open(lib.root)
    assert reopened.contents() == before
    drive = reopened.drive(0)
    position = drive.execute(bytes([0x34, 0]) + bytes(8), data_in_len=20).data_in
    assert int.from_bytes(position[4:8], "big") >= acknowledged  # position survived the crash
    assert drive.execute(bytes([0x01, 0, 0, 0, 0, 0])).status == GOOD  # REWIND
    n = 0
    while True:
        r = drive.execute(rw6(0x08, BLOCK), data_in_len=BLOCK)
        if r.status != GOOD:
            assert parse_sense(r.sense).key == BLANK_CHECK
            break
        assert r.data_in == pattern(7, n, BLOCK), f"block {n} corrupt"
        n += 1
    assert n >= acknowledged
    data = reopened.root / "cartridges" / "TF0001L9" / "data"
    assert data.stat().st_size == n * BLOCK  # payload past the last record was cut
    # the drive keeps working: append after end-of-data
    assert drive.execute(rw6(0x0A, 10), b"0123456789").status == GOOD
    drive.close()
    changer.close()


USER = """
    index, seed = int(sys.argv[2]), int(sys.argv[3])
    drive = lib.drive(index)
    size = 64 * 1024
    for i in range(200):
        cdb = bytes([0x0A, 0]) + size.to_bytes(3, "big") + bytes(1)
        assert drive.execute(cdb, pattern(seed, i, size)).status == 0
    assert drive.execute(bytes([0x10, 0, 0, 0, 1, 0])).status == 0
    assert drive.execute(bytes([0x01, 0, 0, 0, 0, 0])).status == 0
    for i in range(200):
        r = drive.execute(bytes([0x08, 0]) + size.to_bytes(3, "big") + bytes(1), None, size)
        assert r.status == 0 and r.data_in == pattern(seed, i, size), i
    print("ok", flush=True)
"""

HOLDER = """
    drive = lib.drive(0)
    assert drive.execute(bytes([0x16, 0, 0, 0, 0, 0])).status == 0
    print("reserved", flush=True)
    sys.stdin.readline()
"""

CONTENDER = """
    drive = lib.drive(0)
    print(drive.execute(bytes([0x16, 0, 0, 0, 0, 0])).status, flush=True)
    print(drive.execute(bytes(6)).status, flush=True)
"""


def run(script: str, *args: str) -> list[str]:
    proc = spawn(script, *args)
    out, _ = proc.communicate(timeout=30)
    assert proc.returncode == 0
    return out.split()


def test_two_processes_two_drives_and_reservation(tmp_path: Path) -> None:
    lib = VirtualLibrary.create(tmp_path / "lib", drives=2, slots=6)
    changer = lib.changer()
    assert changer.execute(move(1024, 256)).status == GOOD
    assert changer.execute(move(1025, 257)).status == GOOD

    users = [spawn(USER, str(lib.root), str(i), str(i + 1)) for i in range(2)]
    for proc in users:
        out, _ = proc.communicate(timeout=30)
        assert proc.returncode == 0 and out.strip() == "ok"

    holder = spawn(HOLDER, str(lib.root))
    assert holder.stdout is not None and holder.stdout.readline().strip() == "reserved"
    assert run(CONTENDER, str(lib.root)) == [str(RESERVATION_CONFLICT)] * 2
    in_process = lib.drive(0)
    assert in_process.execute(bytes(6)).status == RESERVATION_CONFLICT
    os.kill(holder.pid, signal.SIGKILL)  # dying releases the reservation
    holder.wait()
    holder.stdout.close()
    assert holder.stdin is not None
    holder.stdin.close()
    assert in_process.execute(bytes(6)).status == GOOD
    assert run(CONTENDER, str(lib.root)) == [str(GOOD)] * 2
    in_process.close()
    changer.close()
