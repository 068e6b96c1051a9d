"""Maintenance of the catalog against the tapes (scan cartridges, merge scans into a catalog,
verify a session's checksums on tape, compare a session with the files on disk), of the catalog
itself (prune, backup to tape, recovery from tape as of a date) and of sources (count, purge,
copy)."""

from tapeflow.maintenance.catalog_backup import (
    CATALOG_SOURCE,
    CatalogBackupOnTape,
    CatalogBackupResult,
    CatalogRecoverResult,
    backup_catalog,
    choose_backup,
    find_catalog_backups,
    recover_catalog,
)
from tapeflow.maintenance.compare import CompareResult, Difference, compare_session
from tapeflow.maintenance.copy import CopyResult, copy_tree
from tapeflow.maintenance.count import CountResult, count_source
from tapeflow.maintenance.errors import (
    BadInput,
    BadTarget,
    CartridgeNotInLibrary,
    CatalogBackupDamaged,
    MaintenanceError,
    NoCatalogBackup,
    NoDriveAvailable,
    NoTapeRecorded,
    SourceMissing,
)
from tapeflow.maintenance.leased import CartridgeBusy, LeasedMounts, leased_mounts
from tapeflow.maintenance.merge import MergeResult, merge_scans
from tapeflow.maintenance.progress import Progress, ProgressHook
from tapeflow.maintenance.prune import PruneConfig, PruneReport, prune_catalog
from tapeflow.maintenance.purge import PurgeResult, purge
from tapeflow.maintenance.safefs import UnsafePath
from tapeflow.maintenance.scan import (
    MediaScan,
    NotASession,
    ScannedPart,
    ScannedSession,
    Scanner,
    TapeFileScan,
    scan_library,
    scan_media,
    scan_session,
)
from tapeflow.maintenance.tapes import ScanRun, merge_cartridges, scan_cartridges
from tapeflow.maintenance.verify import MemberProblem, VerifyResult, verify_session

__all__ = [
    "CATALOG_SOURCE",
    "BadInput",
    "BadTarget",
    "CartridgeBusy",
    "CartridgeNotInLibrary",
    "CatalogBackupDamaged",
    "CatalogBackupOnTape",
    "CatalogBackupResult",
    "CatalogRecoverResult",
    "CompareResult",
    "CopyResult",
    "CountResult",
    "Difference",
    "LeasedMounts",
    "MaintenanceError",
    "MediaScan",
    "MemberProblem",
    "MergeResult",
    "NoCatalogBackup",
    "NoDriveAvailable",
    "NoTapeRecorded",
    "NotASession",
    "Progress",
    "ProgressHook",
    "PruneConfig",
    "PruneReport",
    "PurgeResult",
    "ScanRun",
    "ScannedPart",
    "ScannedSession",
    "Scanner",
    "SourceMissing",
    "TapeFileScan",
    "UnsafePath",
    "VerifyResult",
    "backup_catalog",
    "choose_backup",
    "compare_session",
    "copy_tree",
    "count_source",
    "find_catalog_backups",
    "leased_mounts",
    "merge_cartridges",
    "merge_scans",
    "prune_catalog",
    "purge",
    "recover_catalog",
    "scan_cartridges",
    "scan_library",
    "scan_media",
    "scan_session",
    "verify_session",
]
