"""Catalog backup to tape, and catalog recovery from tape as of a date, with the catalog lost.

Backup: while holding the catalog open (DuckDB's write lock: no other process can write, and
prune cannot run), one transaction lists the sessions whose rows are present and runs
`EXPORT DATABASE` (a transactionally consistent, DuckDB-version-portable copy of every table);
the Parquet rows of exactly those sessions, the schema file and the serverless block maps are
hard-linked beside it (those files are immutable: written to a temporary name and renamed, so
a link keeps the snapshot's bytes even if a later prune removes the name). The lock is then
released and the staged tree, with a manifest of sizes and sha256 sums, is written to a pool's
cartridge as an ordinary tapeflow session of source `__catalog__` and kind `catalog`, and
recorded in the catalog like any session (job kind 'maintenance').

Recovery needs no catalog: the pool's cartridges are searched tape file by tape file for
session global headers naming source `__catalog__` (only each tape file's first record is
read); the newest created at or before the date is read back (across cartridges if it spans),
checked against its manifest, imported into a new DuckDB file and its Parquet directories put
beside it. `mt fsf N; tar -x` on the tape file gives the same tree without tapeflow.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import duckdb

from tapeflow.backup.master import record_slave
from tapeflow.backup.model import Pool, SlaveResult, SlaveSpec, Source
from tapeflow.backup.pools import plan_media
from tapeflow.backup.slave import SlaveFailed, mounted, write_file_session
from tapeflow.catalog import Catalog, new_id, utc
from tapeflow.catalog.migrations import SCHEMA_VERSION
from tapeflow.catalog.rows import SCHEMA_FILE, write_session_rows
from tapeflow.library import Library
from tapeflow.maintenance.errors import (
    BadInput,
    BadTarget,
    CatalogBackupDamaged,
    MaintenanceError,
    NoCatalogBackup,
    NoDriveAvailable,
)
from tapeflow.maintenance.leased import DEFAULT_TIMEOUT, leased_mounts
from tapeflow.maintenance.mounts import Mounts
from tapeflow.maintenance.progress import ProgressHook, Reporter
from tapeflow.maintenance.scan import PROBE
from tapeflow.scsi.sense import EndOfData, FilemarkDetected, ScsiError
from tapeflow.scsi.tape import TapeDrive
from tapeflow.serverless.maps import BLOCKMAPS_DIRNAME, blockmaps_dir
from tapeflow.tapefmt import (
    BlankTape,
    SessionInfo,
    SessionReader,
    TapeFormatError,
    find_part,
    goto_session,
    read_label,
)
from tapeflow.tapefmt.records import EndOfPart
from tapeflow.tapefmt.session import global_info

CATALOG_SOURCE = "__catalog__"  # the source name in the session's pax global header
CATALOG_KIND = "catalog"
DEFAULT_POOL = "catalog"
MANIFEST = "tapeflow-catalog.json"
EXPORT_DIR = "db"
FILES_DIR = "files"
MANIFEST_FORMAT = 1
DB_NAME = "catalog.duckdb"
LOCK_WAIT = 120.0  # seconds to wait for a catalog another process holds open
_CHUNK = 1 << 20


@dataclass
class CatalogBackupResult:
    """One catalog backup: its session, snapshot time, where on tape, and what it holds."""

    session_id: str
    job_id: str
    snapshot: str  # ISO time of the export: recovery 'as of' compares this
    pool: str
    tapes: list[dict[str, Any]]  # barcode, tape_file, bytes
    members: int
    bytes: int
    catalog_files: int  # Parquet row files (plus the schema file) and block maps staged
    tables: dict[str, int]
    missing_rows: list[str]
    drive: int | None
    seconds: float

    def to_dict(self) -> dict[str, Any]:
        """JSON form."""
        return asdict(self)


@dataclass(frozen=True)
class CatalogBackupOnTape:
    """A catalog backup session found on a cartridge by its global header."""

    session_id: str
    job_id: str
    created: datetime
    barcode: str
    tape_file: int
    pool: str

    def to_dict(self) -> dict[str, Any]:
        """JSON form."""
        return {**asdict(self), "created": self.created.isoformat()}


@dataclass
class CatalogRecoverResult:
    """A recovered catalog: from which backup, where it now is, and what it holds."""

    session_id: str
    snapshot: str
    barcode: str
    tape_file: int
    target: str
    catalog: str
    sessions: int
    jobs: int
    files_restored: int
    tables: dict[str, int]
    problems: dict[str, str] = field(default_factory=dict)  # rows files that do not read
    found: list[dict[str, Any]] = field(default_factory=list)  # every backup seen
    skipped: list[str] = field(default_factory=list)  # cartridges not searched, and why

    def to_dict(self) -> dict[str, Any]:
        """JSON form."""
        return asdict(self)


# --- helpers ---------------------------------------------------------------------------------
def _sql_path(path: Path) -> str:
    return "'" + str(path).replace("'", "''") + "'"


def _link_or_copy(src: Path, dst: Path) -> None:
    """Hard link (the snapshot's bytes stay even if the name is pruned); copy across devices."""
    dst.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.link(src, dst)
    except OSError:
        shutil.copy2(src, dst)


def _sha256(path: Path) -> str:
    hasher = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(_CHUNK):
            hasher.update(chunk)
    return hasher.hexdigest()


def _file_list(root: Path) -> dict[str, dict[str, Any]]:
    """Relative path -> size and sha256 of every regular file under root (manifest excluded)."""
    out: dict[str, dict[str, Any]] = {}
    for path in sorted(root.rglob("*")):
        if path.is_file() and not path.is_symlink() and path.name != MANIFEST:
            rel = path.relative_to(root).as_posix()
            out[rel] = {"size": path.stat().st_size, "sha256": _sha256(path)}
    return out


def _as_pool(pool: Pool | str | None) -> Pool:
    if pool is None:
        return Pool(DEFAULT_POOL)
    if isinstance(pool, str):
        if not pool:
            raise BadInput("empty pool name")
        return Pool(pool)
    return pool


# --- backup ----------------------------------------------------------------------------------
def _snapshot(cat: Catalog, staging: Path) -> tuple[dict[str, int], list[str], list[str], int]:
    """Export the tables and stage the rows of sessions present, in one transaction (the
    catalog is held open by the caller). Returns (table counts, present, missing, files)."""
    tables = [
        name
        for (name,) in cat.execute(
            "SELECT table_name FROM duckdb_tables() WHERE database_name = current_database() "
            "AND schema_name = 'main' AND NOT temporary ORDER BY 1"
        )
    ]
    with cat.transaction():
        counts = {t: int(cat.execute(f'SELECT count(*) FROM "{t}"')[0][0]) for t in tables}
        present = [
            sid
            for (sid,) in cat.execute(
                "SELECT id FROM sessions WHERE rows_state = 'present' ORDER BY id"
            )
        ]
        cat.execute(f"EXPORT DATABASE {_sql_path(staging / EXPORT_DIR)} (FORMAT PARQUET)")
    staged = 0
    missing = []
    schema = cat.files_dir / SCHEMA_FILE
    if schema.is_file():
        _link_or_copy(schema, staging / FILES_DIR / SCHEMA_FILE)
        staged += 1
    for sid in present:
        path = cat.rows_path(sid)
        if path.is_file():
            _link_or_copy(path, staging / FILES_DIR / path.name)
            staged += 1
        else:
            missing.append(sid)
    maps = blockmaps_dir(cat.files_dir)
    if maps.is_dir():
        for path in sorted(maps.iterdir()):
            if path.is_file() and not path.name.startswith("."):
                _link_or_copy(path, staging / BLOCKMAPS_DIRNAME / path.name)
                staged += 1
    return counts, present, missing, staged


def _write(
    spec: SlaveSpec, info: SessionInfo, staging: Path, report: Reporter, timeout: float
) -> SlaveResult:
    """Write the staged tree as one session on a cartridge of the pool (lease a drive, mount,
    span if needed, release both), and its rows to the catalog's files directory."""
    result = SlaveResult(spec.session_id, 0, CATALOG_SOURCE, "failed")
    holder = f"catalog backup {spec.session_id}"
    try:
        with mounted(spec, result, holder, drive_timeout=timeout) as (handle, mounter):
            rows = write_file_session(
                handle,
                mounter,
                info,
                lambda writer: writer.add_tree(staging),
                result,
                lambda files: report("write", items=files),
            )
            write_session_rows(Path(spec.files_dir), spec.session_id, rows)
            result.state = "complete"
    except Exception as exc:
        result.error = f"{type(exc).__name__}: {exc}"
        raise SlaveFailed(f"catalog backup {spec.session_id}: {result.error}", result) from exc
    return result


def backup_catalog(
    catalog: str | os.PathLike[str],
    library: str,
    pool: Pool | str | None = None,
    *,
    compression: bool = False,
    drive_timeout: float = DEFAULT_TIMEOUT,
    on_progress: ProgressHook | None = None,
) -> CatalogBackupResult:
    """Back up the catalog at `catalog` to a cartridge of `pool` (default 'catalog') on
    `library`; see the module doc for how the copy is made consistent."""
    path = Path(catalog)
    if not path.is_file():
        raise BadInput(f"no catalog at {path}")
    media_pool = _as_pool(pool)
    with Library(library) as lib:  # a library that cannot be used fails before any change
        lib.inventory()
        if not lib.online_drives():
            raise NoDriveAvailable(f"library {library} has no online drive")
    report = Reporter(on_progress, "catalog-backup")
    session_id = new_id("cat")
    staging = path.parent / "work" / f"catalog-backup-{session_id}"
    if staging.exists():
        raise MaintenanceError(f"staging directory {staging} already exists")
    staging.mkdir(parents=True)
    try:
        report("snapshot", force=True)
        with Catalog(path, lock_wait=LOCK_WAIT) as cat:
            taken = utc()
            counts, present, missing, staged = _snapshot(cat, staging)
            cat.set_pool(media_pool.name, media_pool.retention_days, append=media_pool.append)
            job_id = cat.create_job(
                "maintenance",
                level="full",
                pool=media_pool.name,
                parameters={"operation": "catalog-backup", "catalog": str(path.resolve())},
                started=taken,
            )
            cat.start_session(
                job_id,
                CATALOG_SOURCE,
                kind=CATALOG_KIND,
                level="full",
                session_id=session_id,
                started=taken,
            )
            media = plan_media(cat, media_pool)  # as a backup job: never relabel kept data
            files_dir = cat.files_dir
            if missing:
                cat.log(
                    f"catalog backup {session_id}: rows of {len(missing)} session(s) are "
                    "registered but missing on disk",
                    level="warning",
                    job_id=job_id,
                    session_id=session_id,
                )
        manifest = {
            "format": MANIFEST_FORMAT,
            "kind": CATALOG_KIND,
            "session_id": session_id,
            "job_id": job_id,
            "snapshot": taken.isoformat(),
            "catalog": str(path.resolve()),
            "duckdb": duckdb.__version__,
            "schema_version": SCHEMA_VERSION,
            "tables": counts,
            "sessions_with_rows": len(present),
            "missing_rows": missing,
            "files": _file_list(staging),
        }
        (staging / MANIFEST).write_text(json.dumps(manifest, indent=2, sort_keys=True))
        spec = SlaveSpec(
            job_id=job_id,
            session_id=session_id,
            subjob=0,
            source=Source(CATALOG_SOURCE, str(staging)),
            level="full",
            pool=media_pool,
            library=str(library),
            files_dir=str(files_dir),
            unusable=tuple(media.unusable),
            compression=compression,
            media=media,
        )
        info = SessionInfo(
            session_id=session_id,
            job_id=job_id,
            source=CATALOG_SOURCE,
            kind=CATALOG_KIND,
            level=0,
            created=taken,
        )
        report("write", force=True)
        try:
            written = _write(spec, info, staging, report, drive_timeout)
        except SlaveFailed as exc:
            _record(path, job_id, media_pool, exc.result)
            raise
        except Exception as exc:  # no drive (lease timeout) and the like: nothing written
            failed = SlaveResult(session_id, 0, CATALOG_SOURCE, "failed")
            failed.error = f"{type(exc).__name__}: {exc}"
            _record(path, job_id, media_pool, failed)
            raise
        report("record", force=True, items=written.files, bytes=written.bytes)
        _record(path, job_id, media_pool, written)
    finally:
        shutil.rmtree(staging)
    return CatalogBackupResult(
        session_id=session_id,
        job_id=job_id,
        snapshot=taken.isoformat(),
        pool=media_pool.name,
        tapes=[asdict(t) for t in written.tapes],
        members=written.files,
        bytes=written.bytes,
        catalog_files=staged,
        tables=counts,
        missing_rows=missing,
        drive=written.drive,
        seconds=written.seconds,
    )


def _record(path: Path, job_id: str, pool: Pool, result: SlaveResult) -> None:
    """Record the session like a backup slave's (waiting for the catalog's lock), then the
    job's end state."""
    record_slave(path, job_id, pool, result)  # opens the catalog first: all or nothing
    with Catalog(path, lock_wait=LOCK_WAIT) as cat:
        cat.finish_job(job_id, "complete" if result.state == "complete" else "failed")


# --- finding backups on tape -----------------------------------------------------------------
def _backups_on(mounts: Mounts, barcode: str, pool: str | None) -> list[CatalogBackupOnTape]:
    """Catalog sessions (part 0) on one cartridge, from each tape file's first record."""
    drive = mounts.mount(barcode)
    label = read_label(drive)
    if pool is not None and label.pool != pool:
        return []
    found = []
    goto_session(drive, 1)
    number = 1
    while True:
        try:
            record = drive.read(PROBE)
        except FilemarkDetected:
            number += 1  # an empty tape file
            continue
        except EndOfData:
            break
        info = global_info(record)
        if info is not None and info.sequence == 0 and info.source == CATALOG_SOURCE:
            found.append(
                CatalogBackupOnTape(
                    info.session_id, info.job_id, info.created, barcode, number, label.pool
                )
            )
        try:
            drive.space_filemarks(1)
        except EndOfData:
            break
        number += 1
    return found


def find_catalog_backups(
    mounts: Mounts,
    barcodes: Iterable[str] | None = None,
    *,
    pool: str | None = None,
    report: Reporter | None = None,
) -> tuple[list[CatalogBackupOnTape], list[str]]:
    """Catalog backups on `barcodes` (default: every data cartridge) whose label is of `pool`
    (default: any), oldest first; and the cartridges that could not be searched, and why."""
    chosen = list(barcodes) if barcodes is not None else mounts.library_barcodes()
    found: list[CatalogBackupOnTape] = []
    skipped: list[str] = []
    for i, barcode in enumerate(chosen):
        if report is not None:
            report("search", items=i, total_items=len(chosen), path=barcode)
        try:
            found += _backups_on(mounts, barcode, pool)
        except BlankTape:
            continue  # nothing written on it: nothing to find (the label read says so)
        except (TapeFormatError, ScsiError, MaintenanceError) as exc:
            skipped.append(f"{barcode}: {type(exc).__name__}: {exc}")  # reported, not searched
        finally:
            mounts.release(barcode)
    found.sort(key=lambda b: (b.created, b.session_id))
    return found, skipped


def choose_backup(
    found: Sequence[CatalogBackupOnTape], as_of: datetime | None
) -> CatalogBackupOnTape:
    """The newest backup created at or before `as_of` (default now); NoCatalogBackup if none."""
    at = utc(as_of)
    eligible = [b for b in found if b.created <= at]
    if not eligible:
        seen = (
            f"the oldest of {len(found)} found is from {found[0].created.isoformat()}"
            if found
            else "none was found on the cartridges searched"
        )
        raise NoCatalogBackup(f"no catalog backup at or before {at.isoformat()}: {seen}")
    return max(eligible, key=lambda b: (b.created, b.session_id))


# --- recovery --------------------------------------------------------------------------------
def _check_target(target: Path) -> None:
    """The target must not hold a catalog already (nothing is overwritten)."""
    if target.exists() and not target.is_dir():
        raise BadTarget(f"recovery target {target} exists and is not a directory")
    for name in (DB_NAME, FILES_DIR, BLOCKMAPS_DIRNAME):
        there = target / name
        if there.exists() and (not there.is_dir() or any(there.iterdir())):
            raise BadTarget(
                f"recovery target {target} already holds {name}: choose an empty directory"
            )


def _read_backup(
    mounts: Mounts, chosen: CatalogBackupOnTape, candidates: list[str], staging: Path
) -> int:
    """Extract the backup session into `staging`, following it across cartridges; returns
    the number of members extracted (CatalogBackupDamaged if any was refused)."""
    current = chosen.barcode

    def next_cartridge(sequence: int) -> TapeDrive:
        nonlocal current
        for cand in candidates:
            if cand == current:
                continue
            try:
                drive = mounts.mount(cand)
                find_part(drive, chosen.session_id, sequence)
            except (TapeFormatError, ScsiError, MaintenanceError):
                mounts.release(cand)
                continue
            current = cand
            return drive
        raise EndOfPart(f"part {sequence} of {chosen.session_id} is on no cartridge searched")

    drive = mounts.mount(chosen.barcode)
    goto_session(drive, chosen.tape_file)
    reader = SessionReader(drive, next_cartridge=next_cartridge)
    try:
        extracted = reader.extract(staging)
    except (TapeFormatError, EndOfPart) as exc:
        raise CatalogBackupDamaged(
            f"catalog backup {chosen.session_id} on {chosen.barcode} file {chosen.tape_file} "
            f"cannot be read completely: {exc}"
        ) from exc
    if extracted.skipped:
        names = ", ".join(f"{s.name} ({s.reason})" for s in extracted.skipped[:5])
        raise CatalogBackupDamaged(f"catalog backup members refused: {names}")
    return len(extracted.extracted)


def _verified_manifest(staging: Path, session_id: str) -> dict[str, Any]:
    """The manifest, after checking every listed file's size and sha256."""
    try:
        manifest = json.loads((staging / MANIFEST).read_text())
    except (OSError, ValueError) as exc:
        raise CatalogBackupDamaged(f"catalog backup {session_id} has no usable manifest") from exc
    if manifest.get("kind") != CATALOG_KIND or manifest.get("format") != MANIFEST_FORMAT:
        raise CatalogBackupDamaged(f"catalog backup {session_id}: unknown manifest format")
    for rel, want in manifest["files"].items():
        path = staging / rel
        if not path.is_file():
            raise CatalogBackupDamaged(f"catalog backup {session_id}: {rel} is missing")
        if path.stat().st_size != want["size"] or _sha256(path) != want["sha256"]:
            raise CatalogBackupDamaged(f"catalog backup {session_id}: {rel} differs from its sum")
    return manifest


def _install(staging: Path, target: Path) -> Path:
    """Import the exported tables into a new DuckDB file and move the Parquet directories in;
    the DuckDB file appears under its final name only once it is complete."""
    db = target / DB_NAME
    partial = target / f".{DB_NAME}.recovering"
    partial.unlink(missing_ok=True)
    con = duckdb.connect(str(partial))
    try:
        con.execute(f"IMPORT DATABASE {_sql_path(staging / EXPORT_DIR)}")
        con.execute("CHECKPOINT")
    finally:
        con.close()
    for name in (FILES_DIR, BLOCKMAPS_DIRNAME):
        if (staging / name).is_dir():
            if (target / name).exists():
                (target / name).rmdir()  # checked empty before anything was read
            os.replace(staging / name, target / name)
    os.replace(partial, db)
    return db


def recover_catalog(
    library: str | Library,
    target: str | os.PathLike[str],
    *,
    as_of: datetime | None = None,
    pool: str | None = None,
    barcodes: Iterable[str] | None = None,
    drive_timeout: float = DEFAULT_TIMEOUT,
    on_progress: ProgressHook | None = None,
) -> CatalogRecoverResult:
    """Recover the catalog as of `as_of` (default now) into directory `target` (catalog.duckdb,
    files/, blockmaps/), from the tapes alone: search `barcodes` (default all cartridges) whose
    label is of `pool` (default any) for catalog backups, read the newest one at or before."""
    dest = Path(target)
    if not os.fspath(target):
        raise BadInput("no recovery target given")
    _check_target(dest)
    report = Reporter(on_progress, "catalog-recover")
    lib = library if isinstance(library, Library) else Library(library)
    try:
        listed = list(barcodes) if barcodes is not None else None
        with leased_mounts(lib, "catalog recovery", listed or (), timeout=drive_timeout) as m:
            candidates = listed if listed is not None else m.library_barcodes()
            found, skipped = find_catalog_backups(m, candidates, pool=pool, report=report)
            chosen = choose_backup(found, as_of)
            report("read", force=True, path=f"{chosen.barcode}#{chosen.tape_file}")
            dest.mkdir(parents=True, exist_ok=True)
            staging = dest / f".recover-{chosen.session_id}"
            if staging.exists():  # left by an interrupted recovery of the same backup
                shutil.rmtree(staging)
            staging.mkdir()
            try:
                members = _read_backup(m, chosen, candidates, staging)
                manifest = _verified_manifest(staging, chosen.session_id)
                report("import", force=True, items=members)
                db = _install(staging, dest)
            finally:
                if staging.exists():
                    shutil.rmtree(staging)
    finally:
        if not isinstance(library, Library):
            lib.close()
    with Catalog(db) as cat:
        problems = cat.check_rows()
        sessions = int(cat.execute("SELECT count(*) FROM sessions")[0][0])
        jobs = int(cat.execute("SELECT count(*) FROM jobs")[0][0])
        cat.log(
            f"catalog recovered from tape: backup {chosen.session_id} on {chosen.barcode} "
            f"tape file {chosen.tape_file}, snapshot {manifest['snapshot']}"
        )
    report("done", force=True, items=members)
    return CatalogRecoverResult(
        session_id=chosen.session_id,
        snapshot=manifest["snapshot"],
        barcode=chosen.barcode,
        tape_file=chosen.tape_file,
        target=str(dest),
        catalog=str(db),
        sessions=sessions,
        jobs=jobs,
        files_restored=members,
        tables=manifest["tables"],
        problems=problems,
        found=[b.to_dict() for b in found],
        skipped=skipped,
    )
