"""Where a library keeps its files, and its fixed configuration (library.json)."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

from tapeflow.vtl.errors import CorruptLibraryError, NotALibraryError
from tapeflow.vtl.store import atomic_write

FORMAT = "tapeflow-vtl"
FORMAT_VERSION = 1


@dataclass(frozen=True, slots=True)
class LibraryPaths:
    """File layout of one library directory."""

    root: Path

    @property
    def config(self) -> Path:
        return self.root / "library.json"

    @property
    def changer_state(self) -> Path:
        return self.root / "changer.json"

    @property
    def changer_lock(self) -> Path:
        return self.root / "changer.lock"

    @property
    def cartridges(self) -> Path:
        return self.root / "cartridges"

    def cartridge(self, barcode: str) -> Path:
        return self.cartridges / barcode

    def drive_dir(self, index: int) -> Path:
        return self.root / "drives" / str(index)

    def drive_state(self, index: int) -> Path:
        return self.drive_dir(index) / "state"

    def drive_command_lock(self, index: int) -> Path:
        """Held for the duration of every command on the drive (serializes all initiators)."""
        return self.drive_dir(index) / "command.lock"

    def drive_reserve_lock(self, index: int) -> Path:
        """Held (non-blocking flock) by the handle owning RESERVE(6)."""
        return self.drive_dir(index) / "reserve.lock"


@dataclass(slots=True)
class LibraryConfig:
    """Geometry and defaults chosen at create()."""

    serial: str
    drives: int
    slots: int
    mail_slots: int
    capacity: int
    early_warning: int
    barcode_prefix: str
    speed_limit: float | None = None
    format: str = FORMAT
    version: int = FORMAT_VERSION

    @classmethod
    def load(cls, paths: LibraryPaths) -> LibraryConfig:
        """Read library.json; NotALibraryError if absent, CorruptLibraryError if invalid."""
        try:
            text = paths.config.read_text(encoding="utf-8")
        except FileNotFoundError as exc:
            raise NotALibraryError(f"{paths.root} is not a virtual tape library") from exc
        except OSError as exc:
            raise NotALibraryError(f"cannot read {paths.config}: {exc}") from exc
        try:
            raw = json.loads(text)
        except ValueError as exc:
            raise CorruptLibraryError(f"{paths.config} is not valid JSON: {exc}") from exc
        if not isinstance(raw, dict) or raw.get("format") != FORMAT:
            raise NotALibraryError(f"{paths.config} is not a tapeflow VTL configuration")
        if raw.get("version") != FORMAT_VERSION:
            raise CorruptLibraryError(f"{paths.config}: unsupported version {raw.get('version')}")
        try:
            config = cls(
                serial=str(raw["serial"]),
                drives=int(raw["drives"]),
                slots=int(raw["slots"]),
                mail_slots=int(raw["mail_slots"]),
                capacity=int(raw["capacity"]),
                early_warning=int(raw["early_warning"]),
                barcode_prefix=str(raw["barcode_prefix"]),
                speed_limit=None if raw["speed_limit"] is None else float(raw["speed_limit"]),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise CorruptLibraryError(f"{paths.config}: bad field: {exc}") from exc
        return config

    def save(self, paths: LibraryPaths) -> None:
        """Replace library.json atomically."""
        atomic_write(paths.config, json.dumps(asdict(self), indent=1).encode())
