"""Plain data passed between the master job and its slaves (JSON-friendly, Prefect-free)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Literal

Level = Literal["full", "incremental", "differential"]
SlaveState = Literal["complete", "failed", "partial", "skipped"]


SOURCE_KINDS = ("directory", "volume")
VOLUME_MODES = ("all", "used")
# How a volume is frozen: "auto" takes the library's LUN snapshot for disk:<name>, and for an
# image file a reflink clone, else a verified full copy; "none" copies live (needs live_copy).
SNAPSHOT_CHOICES = ("auto", "lun", "reflink", "split-mirror", "none")


@dataclass(frozen=True)
class Source:
    """One source entity backed up by one slave: a directory tree (file by file), or a FAT/NTFS
    volume (serverless, block by block) named `disk:<name>` on the job's library (an embedded
    disk LUN, or an iSCSI LUN number) or given as an image file path."""

    name: str
    path: str
    kind: str = "directory"
    include: tuple[str, ...] = ()  # globs on the relative path; empty = everything
    exclude: tuple[str, ...] = ()
    mode: str = "all"  # volume: every block, or only metadata + clusters in use
    quiet: float = 3.0  # volume: seconds without writes before the freeze
    freeze_timeout: float = 80.0  # volume: give up freezing after this long
    snapshot: str = "auto"  # volume: how to freeze it, one of SNAPSHOT_CHOICES
    live_copy: bool = False  # volume: when nothing can freeze it, copy it live (with a warning)
    mirror_split: str = ""  # split-mirror: command (or py:module:fn) giving the detached half
    mirror_rejoin: str = ""  # split-mirror: command (or py:module:fn) rejoining it

    def __post_init__(self) -> None:
        if not self.name or "/" in self.name:
            raise ValueError(f"source name {self.name!r} must be non-empty and contain no '/'")
        if self.kind not in SOURCE_KINDS:
            raise ValueError(f"source kind {self.kind!r} is not one of {SOURCE_KINDS}")
        if self.kind == "volume":
            if self.mode not in VOLUME_MODES:
                raise ValueError(f"volume mode {self.mode!r} is not one of {VOLUME_MODES}")
            if self.include or self.exclude:
                raise ValueError("include/exclude do not apply to a volume source")
            if not 0 <= self.quiet <= self.freeze_timeout:
                raise ValueError("need 0 <= quiet <= freeze_timeout")
            self._check_snapshot()
        elif (self.snapshot, self.live_copy, self.mirror_split, self.mirror_rejoin) != (
            "auto",
            False,
            "",
            "",
        ):
            raise ValueError(
                f"source {self.name!r}: snapshot, live_copy and mirror_* apply to volume "
                "sources only (a directory is read file by file)"
            )

    def _check_snapshot(self) -> None:
        """Refuse freeze settings that could never work, when the source is declared."""
        if self.snapshot not in SNAPSHOT_CHOICES:
            raise ValueError(f"snapshot {self.snapshot!r} is not one of {SNAPSHOT_CHOICES}")
        mirror = bool(self.mirror_split), bool(self.mirror_rejoin)
        if self.snapshot == "split-mirror" and mirror != (True, True):
            raise ValueError(
                f"source {self.name!r}: snapshot='split-mirror' needs mirror_split (prints or "
                "returns the detached half's path) and mirror_rejoin"
            )
        if self.snapshot != "split-mirror" and any(mirror):
            raise ValueError(
                f"source {self.name!r}: mirror_split/mirror_rejoin only apply with "
                f"snapshot='split-mirror', not {self.snapshot!r}"
            )
        if self.snapshot == "none" and not self.live_copy:
            raise ValueError(
                f"source {self.name!r}: snapshot='none' copies the volume live, which is not "
                "point-in-time; say so with live_copy=True"
            )

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Source:
        """Build from a parameter dict (lists become tuples)."""
        live_copy = data.get("live_copy", False)
        if not isinstance(live_copy, bool):  # "false" would be truthy: refuse, don't guess
            raise ValueError(f"live_copy must be true or false, not {live_copy!r}")
        return cls(
            name=data["name"],
            path=str(data["path"]),
            kind=data.get("kind", "directory"),
            include=tuple(data.get("include") or ()),
            exclude=tuple(data.get("exclude") or ()),
            mode=data.get("mode", "all"),
            quiet=float(data.get("quiet", 3.0)),
            freeze_timeout=float(data.get("freeze_timeout", 80.0)),
            snapshot=str(data.get("snapshot") or "auto"),
            live_copy=live_copy,
            mirror_split=str(data.get("mirror_split") or ""),
            mirror_rejoin=str(data.get("mirror_rejoin") or ""),
        )


SCRATCH_POOL = "scratch"  # unassigned labelled-blank cartridges any pool may take
POOL_NAME_MAX = 32  # the volume label's pool field


@dataclass(frozen=True)
class Pool:
    """Which cartridges a job may write: by barcode list, slot range, or any; how long its
    sessions are kept; and the scratch pool it takes blank cartridges from when it has none."""

    name: str = "default"
    barcodes: tuple[str, ...] = ()
    slots: tuple[int, int] | None = None  # first..last slot number, inclusive
    retention_days: int = 30
    append: bool = True  # False: one session per cartridge
    scratch: str | None = SCRATCH_POOL  # None: never take cartridges from a scratch pool
    group: str | None = None  # a library group: only its slots' cartridges (spanning too)

    def __post_init__(self) -> None:
        if not self.name or "/" in self.name or len(self.name) > POOL_NAME_MAX:
            raise ValueError(
                f"pool name {self.name!r} must be 1-{POOL_NAME_MAX} characters without '/'"
            )
        if self.retention_days < 0:
            raise ValueError(
                f"pool {self.name!r}: retention_days must be >= 0, not {self.retention_days}"
            )
        if self.slots is not None and not 1 <= self.slots[0] <= self.slots[1]:
            raise ValueError(
                f"pool {self.name!r}: slot range {self.slots} must be 1 <= first <= last"
            )
        if self.name in (SCRATCH_POOL, self.scratch):
            raise ValueError(
                f"pool {self.name!r} is a scratch pool (blank cartridges other pools take): "
                "back up to another pool"
            )

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Pool:
        """Build from a parameter dict."""
        slots = data.get("slots")
        return cls(
            name=data.get("name", "default"),
            barcodes=tuple(data.get("barcodes") or ()),
            slots=(int(slots[0]), int(slots[1])) if slots else None,
            retention_days=int(data.get("retention_days", 30)),
            append=bool(data.get("append", True)),
            scratch=data.get("scratch", SCRATCH_POOL),
            group=data.get("group") or None,
        )


@dataclass(frozen=True)
class KnownTape:
    """What the catalog knows is on a cartridge: tape files (label included), last session."""

    files: int
    last_session: str | None = None


@dataclass
class MediaPlan:
    """The catalog's view of the cartridges when the job was planned, for the Mounter (which
    has no catalog): what it may append to, recycle, take from scratch, and must never relabel."""

    appendable: tuple[str, ...] = ()  # the pool's, not full, unexpired or empty: used first
    reusable: dict[str, KnownTape] = field(default_factory=dict)  # the pool's, expired
    scratch: tuple[str, ...] = ()  # the scratch pool's labelled-blank cartridges
    protected: dict[str, str] = field(default_factory=dict)  # unexpired: barcode -> expiry
    unusable: dict[str, str] = field(default_factory=dict)  # barcode -> why it is skipped

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> MediaPlan:
        """Inverse of dataclasses.asdict (JSON lists back to tuples)."""
        return cls(
            appendable=tuple(data.get("appendable") or ()),
            reusable={b: KnownTape(**k) for b, k in (data.get("reusable") or {}).items()},
            scratch=tuple(data.get("scratch") or ()),
            protected=dict(data.get("protected") or {}),
            unusable=dict(data.get("unusable") or {}),
        )


@dataclass
class SlaveSpec:
    """Everything one slave needs; built by the master, run anywhere."""

    job_id: str
    session_id: str
    subjob: int
    source: Source
    level: Level
    pool: Pool
    library: str
    files_dir: str  # where the session's Parquet rows go
    paths_file: str | None = None  # incremental: Arrow file of relative paths to back up
    unusable: tuple[str, ...] = ()  # cartridges the catalog knows are full
    compression: bool = False  # the drive's hardware compression
    media_wait: float = 0.0  # seconds to wait for new media in a mail slot when none is left
    media: MediaPlan = field(default_factory=MediaPlan)  # the catalog's view of the cartridges
    expected_bytes: int | None = None  # content the plan expects to write; None: unknown
    keep_loaded: bool = False  # leave the cartridge in the drive for the job's next slave

    def to_dict(self) -> dict[str, Any]:
        """JSON form (for task parameters)."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> SlaveSpec:
        """Inverse of to_dict."""
        return cls(
            **{
                **data,
                "source": Source.from_dict(data["source"]),
                "pool": Pool.from_dict(data["pool"]),
                "unusable": tuple(data.get("unusable") or ()),
                "media": MediaPlan.from_dict(data.get("media") or {}),
            }
        )


@dataclass
class TapeUse:
    """One cartridge's part of a session."""

    barcode: str
    tape_file: int
    bytes: int
    full: bool  # the cartridge reached early warning while this session wrote


@dataclass
class SlaveResult:
    """What a slave did; the master records it in the catalog."""

    session_id: str
    subjob: int
    source: str
    state: SlaveState
    drive: int | None = None
    tapes: list[TapeUse] = field(default_factory=list)
    files: int = 0
    bytes: int = 0
    seconds: float = 0.0
    started: float = 0.0  # time.time() when the drive was acquired
    ended: float = 0.0
    error: str | None = None
    labelled: list[str] = field(default_factory=list)  # blank cartridges we labelled
    warnings: list[str] = field(default_factory=list)
    copy_path: str | None = None  # serverless: "xcopy" (copy manager) or "host"

    @property
    def mb_per_s(self) -> float:
        """Throughput while the drive was held."""
        return self.bytes / self.seconds / 1e6 if self.seconds > 0 else 0.0

    def to_dict(self) -> dict[str, Any]:
        """JSON form."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> SlaveResult:
        """Inverse of to_dict."""
        return cls(**{**data, "tapes": [TapeUse(**t) for t in data.get("tapes", [])]})
