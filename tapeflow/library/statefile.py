"""Small JSON state files of a library (groups, virtual libraries): locked, replaced atomically.

A change is read-modify-write under an flock on `<name>.lock`, and the new content replaces the
file with os.replace after an fsync, so a crash leaves the old or the new file, never half of one.
"""

from __future__ import annotations

import fcntl
import json
import re
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from tapeflow.library.errors import CorruptState, InvalidName
from tapeflow.vtl.store import atomic_write


def check_name(kind: str, name: str, max_len: int) -> str:
    """Return `name` if it is 1..max_len of [A-Za-z0-9_-]; InvalidName otherwise."""
    if not isinstance(name, str) or not re.fullmatch(rf"[A-Za-z0-9_-]{{1,{max_len}}}", name):
        raise InvalidName(f"invalid {kind} name {name!r}: want 1-{max_len} of [A-Za-z0-9_-]")
    return name


def read_json(path: Path) -> dict[str, Any]:
    """The file's JSON object, {} when the file does not exist yet."""
    try:
        text = path.read_text()
    except FileNotFoundError:
        return {}
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise CorruptState(f"{path} is not valid JSON: {exc}") from exc
    if not isinstance(data, dict):
        raise CorruptState(f"{path} does not hold a JSON object")
    return data


def write_json(path: Path, data: dict[str, Any]) -> None:
    """Replace `path` atomically with `data` (fsync'd temp file + rename)."""
    atomic_write(path, json.dumps(data, indent=1, sort_keys=True).encode())


@contextmanager
def locked(path: Path) -> Iterator[None]:
    """Hold an exclusive flock on `path` + '.lock' (serializes read-modify-write on hosts)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path.with_name(path.name + ".lock"), "a+b") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)
