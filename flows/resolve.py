"""Turn flow parameters (block names, dicts or library addresses) into core objects."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from prefect.exceptions import ObjectNotFound

from blocks import BackupSource, Catalog, MediaPool, TapeLibrary
from tapeflow.backup.model import Pool, Source
from tapeflow.library import LibrarySpec, default_home


def _load(block_cls: type, name: str) -> Any | None:
    try:
        return block_cls.load(name)
    except (ValueError, ObjectNotFound):
        return None


def library(value: str | None) -> tuple[LibrarySpec, str]:
    """(spec, drive tag) from a TapeLibrary block name or a library address."""
    if value and any(c in value for c in ":/"):
        spec = LibrarySpec.parse(value)
        return spec, f"tape-drive:{spec.tag_name}"  # a virtual library: tape-drive:<lib>:<vlib>
    block = _load(TapeLibrary, value or "default") or TapeLibrary()
    return block.spec(), block.tag


def pool(value: str | dict[str, Any] | None) -> Pool:
    """A MediaPool block name, a dict of Pool fields, or the default pool."""
    if isinstance(value, dict):
        return Pool.from_dict(value)
    block = _load(MediaPool, value or "default")
    return block.pool() if block else Pool(value or "default")


def sources(values: list[str | dict[str, Any]]) -> list[Source]:
    """BackupSource block names or dicts with name/path/include/exclude."""
    out = []
    for value in values:
        if isinstance(value, dict):
            out.append(Source.from_dict(value))
            continue
        block = _load(BackupSource, value)
        if block is None:
            raise ValueError(f"no BackupSource block named {value!r}")
        out.append(block.source())
    names = [s.name for s in out]
    if len(set(names)) != len(names):
        raise ValueError(f"source names must be unique: {names}")
    if not out:
        raise ValueError("no sources given")
    return out


def catalog(value: str | None) -> Path:
    """A Catalog block name, a path to a .duckdb file, or the default catalog."""
    if value and (value.endswith(".duckdb") or "/" in value):
        return Path(value).expanduser()
    block = _load(Catalog, value or "default")
    return Path(block.path) if block else default_home() / "catalog" / "catalog.duckdb"
