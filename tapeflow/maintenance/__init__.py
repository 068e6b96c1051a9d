"""Maintenance of the catalog against the tapes: scan cartridges, merge scans into a catalog,
verify a session's checksums on tape, compare a session with the files on disk."""

from tapeflow.maintenance.compare import CompareResult, Difference, compare_session
from tapeflow.maintenance.errors import (
    CartridgeNotInLibrary,
    MaintenanceError,
    NoDriveAvailable,
    NoTapeRecorded,
    SourceMissing,
)
from tapeflow.maintenance.merge import MergeResult, merge_scans
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
from tapeflow.maintenance.verify import MemberProblem, VerifyResult, verify_session

__all__ = [
    "CompareResult",
    "Difference",
    "MemberProblem",
    "VerifyResult",
    "compare_session",
    "verify_session",
    "CartridgeNotInLibrary",
    "MaintenanceError",
    "MediaScan",
    "MergeResult",
    "NoDriveAvailable",
    "NoTapeRecorded",
    "NotASession",
    "ScannedPart",
    "ScannedSession",
    "Scanner",
    "SourceMissing",
    "TapeFileScan",
    "merge_scans",
    "scan_library",
    "scan_media",
    "scan_session",
]
