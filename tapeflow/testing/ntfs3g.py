"""NTFS images written by the real driver, for tests and benchmarks: ntfs-3g mounted in the
foreground (`no_detach`), so that unmounting waits for it to flush every write to the image."""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


class Ntfs3gError(RuntimeError):
    """ntfs-3g could not mount the image, or did not unmount it cleanly."""


@contextmanager
def mounted(
    img: Path,
    mnt: Path,
    options: str = "",
    *,
    mount_timeout: float = 15,
    unmount_timeout: float = 60,
) -> Iterator[Path]:
    """Mount `img` on `mnt` (made if missing) with ntfs-3g in the foreground; on exit unmount
    and wait for ntfs-3g to exit, i.e. for every write to reach the image. Ntfs3gError when it
    cannot mount, or exits with an error after unmounting."""
    mnt.mkdir(exist_ok=True)
    opts = ",".join(["no_detach", *([options] if options else [])])
    proc = subprocess.Popen(
        ["ntfs-3g", "-o", opts, str(img), str(mnt)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        deadline = time.monotonic() + mount_timeout
        while not os.path.ismount(mnt):
            if proc.poll() is not None:
                err = proc.stderr.read().decode() if proc.stderr else ""
                raise Ntfs3gError(f"ntfs-3g could not mount {img}: {err}")
            if time.monotonic() > deadline:
                raise Ntfs3gError(f"ntfs-3g did not mount {img} within {mount_timeout:g} s")
            time.sleep(0.01)
        yield mnt
    finally:
        if os.path.ismount(mnt):
            subprocess.run(["fusermount", "-u", str(mnt)], check=True, timeout=unmount_timeout)
        try:
            code = proc.wait(timeout=unmount_timeout)  # once ntfs-3g has flushed and closed
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
            raise Ntfs3gError(f"ntfs-3g did not exit after unmounting {img}") from None
    if code:
        err = proc.stderr.read().decode() if proc.stderr else ""
        raise Ntfs3gError(f"ntfs-3g exited with {code} after unmounting {img}: {err}")
