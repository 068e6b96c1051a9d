"""The four blocks a backup needs. Usable from code without a server round trip: build them
directly (`TapeLibrary(backend="embedded", path=...)`) or `TapeLibrary.load("name")`."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from prefect.blocks.core import Block
from pydantic import Field, SecretStr, model_validator

from tapeflow.backup.model import Pool, Source
from tapeflow.library import LibrarySpec, default_home
from tapeflow.library.spec import vlib_tag


class TapeLibrary(Block):
    """How to reach one tape library, and the drive tag that caps its slaves."""

    _block_type_name = "Tape Library"
    _description = "A tape library: embedded (file-backed), iSCSI target or Linux /dev/sg nodes."

    name: str = Field("default", description="Short name; the drive tag is tape-drive:<name>.")
    backend: Literal["embedded", "iscsi", "sg"] = "embedded"
    path: str | None = Field(None, description="embedded: library directory")
    portal: str | None = Field(None, description="iscsi: host:port")
    target: str | None = Field(None, description="iscsi: target IQN")
    changer_lun: int = 0
    drive_luns: list[int] = Field(default_factory=list, description="iscsi: drive LUNs in order")
    chap_user: str | None = None
    chap_secret: SecretStr | None = None
    changer_device: str | None = Field(None, description="sg: /dev/sgN of the changer")
    drive_devices: list[str] = Field(default_factory=list, description="sg: drives in order")
    drive_tag: str | None = Field(None, description="default tape-drive:<name>")
    vlib: str | None = Field(
        None, description="a virtual library of this library: its drives and slots only"
    )

    @model_validator(mode="after")
    def _check(self) -> TapeLibrary:
        if self.backend == "iscsi" and not (self.portal and self.target):
            raise ValueError("an iscsi library needs portal and target")
        if self.backend == "sg" and not (self.changer_device and self.drive_devices):
            raise ValueError("an sg library needs changer_device and drive_devices")
        if self.chap_user or self.chap_secret:
            raise ValueError("CHAP authentication is not supported yet by the iSCSI transport")
        return self

    @property
    def tag(self) -> str:
        """The Prefect tag on every slave of this library (a virtual library: `<tag>:<vlib>`)."""
        base = self.drive_tag or f"tape-drive:{self.name}"
        return vlib_tag(base, self.vlib) if self.vlib else base

    def spec(self) -> LibrarySpec:
        """The core's address of this library."""
        if self.backend == "embedded":
            path = Path(self.path) if self.path else default_home() / "library"
            return LibrarySpec("embedded", path=path, name=self.name, vlib=self.vlib)
        if self.backend == "iscsi":
            return LibrarySpec(
                "iscsi",
                portal=self.portal,
                target=self.target,
                changer_lun=self.changer_lun,
                drive_luns=tuple(self.drive_luns),
                name=self.name,
                vlib=self.vlib,
            )
        return LibrarySpec(
            "sg",
            changer_device=self.changer_device,
            drive_devices=tuple(self.drive_devices),
            name=self.name,
            vlib=self.vlib,
        )


class MediaPool(Block):
    """Which cartridges a job writes, and how long they are kept."""

    _block_type_name = "Media Pool"
    _description = "A media pool: barcodes or a slot range, retention, append mode."

    name: str = "default"
    barcodes: list[str] = Field(default_factory=list, description="empty = any cartridge")
    first_slot: int | None = None
    last_slot: int | None = None
    retention_days: int = Field(30, ge=0)
    append: bool = Field(True, description="False: one session per cartridge")
    scratch: str | None = Field(
        "scratch", description="pool of labelled blanks to take when none is free (empty: never)"
    )

    def pool(self) -> Pool:
        """The core's pool."""
        slots = None
        if self.first_slot is not None or self.last_slot is not None:
            slots = (self.first_slot or 1, self.last_slot or 1 << 16)
        return Pool(
            self.name,
            tuple(self.barcodes),
            slots,
            self.retention_days,
            self.append,
            scratch=self.scratch or None,
        )


class Catalog(Block):
    """Where the DuckDB catalog (and its Parquet rows) live."""

    _block_type_name = "Tape Catalog"
    _description = "The tapeflow catalog: a DuckDB file plus per-session Parquet files."

    path: str = Field(default_factory=lambda: str(default_home() / "catalog" / "catalog.duckdb"))


class BackupSource(Block):
    """One source entity: one slave and one session per backup."""

    _block_type_name = "Backup Source"
    _description = (
        "A directory tree (backed up file by file) or a FAT/NTFS volume (serverless: blocks "
        "moved by the SAN's copy manager; path disk:<name> or an image file)."
    )

    name: str
    kind: Literal["directory", "volume"] = "directory"
    path: str
    include: list[str] = Field(default_factory=list)
    exclude: list[str] = Field(default_factory=list)
    mode: Literal["all", "used"] = Field("all", description="volume: every block or used only")
    quiet: float = Field(3.0, description="volume: seconds without writes before the freeze")
    freeze_timeout: float = Field(80.0, description="volume: give up freezing after this long")
    snapshot: Literal["auto", "lun", "reflink", "split-mirror", "none"] = Field(
        "auto",
        description="volume: how to freeze it; auto = the SAN's LUN snapshot, or for an image "
        "file a reflink clone, else a verified full copy",
    )
    live_copy: bool = Field(
        False,
        description="volume: when nothing can freeze it, copy it live (not point-in-time, "
        "reported as a warning) instead of failing",
    )
    mirror_split: str = Field(
        "",
        description="split-mirror: shell command (or py:module:fn) that splits the mirror; its "
        "last output line is the detached half's absolute path",
    )
    mirror_rejoin: str = Field("", description="split-mirror: command that rejoins the mirror")

    def source(self) -> Source:
        """The core's source."""
        return Source(
            self.name,
            self.path,
            self.kind,
            tuple(self.include),
            tuple(self.exclude),
            self.mode,
            self.quiet,
            self.freeze_timeout,
            snapshot=self.snapshot,
            live_copy=self.live_copy,
            mirror_split=self.mirror_split,
            mirror_rejoin=self.mirror_rejoin,
        )
