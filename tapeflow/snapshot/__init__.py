"""Freeze a source for backup: quiesce by write inactivity (default 3 s quiet within an 80 s
timeout), then take a snapshot (reflink clone, full copy when allowed, split mirror) that is
released on every path. No Prefect here: flows and slaves call ``freeze()``.

    with freeze(file_probe(image), ReflinkProvider(), image) as snap:
        stream(snap.open())
"""

from tapeflow.snapshot.errors import (
    FreezeTimeout,
    NoSnapshot,
    SnapshotError,
    SnapshotFailed,
    SnapshotReleased,
    SnapshotUnsupported,
)
from tapeflow.snapshot.providers import (
    FileSnapshot,
    MirrorSnapshot,
    ReflinkProvider,
    Snapshot,
    SnapshotProvider,
    SplitMirrorProvider,
    filesystem_of,
    freeze,
)
from tapeflow.snapshot.quiesce import (
    DEFAULT_QUIET,
    DEFAULT_TIMEOUT,
    QuiesceProgress,
    QuiesceResult,
    TreeMarker,
    block_device_probe,
    counter_probe,
    file_probe,
    tree_probe,
    wait_for_quiet,
)

__all__ = [
    "DEFAULT_QUIET",
    "DEFAULT_TIMEOUT",
    "FileSnapshot",
    "FreezeTimeout",
    "MirrorSnapshot",
    "NoSnapshot",
    "QuiesceProgress",
    "QuiesceResult",
    "ReflinkProvider",
    "Snapshot",
    "SnapshotError",
    "SnapshotFailed",
    "SnapshotProvider",
    "SnapshotReleased",
    "SnapshotUnsupported",
    "SplitMirrorProvider",
    "TreeMarker",
    "block_device_probe",
    "counter_probe",
    "file_probe",
    "filesystem_of",
    "freeze",
    "tree_probe",
    "wait_for_quiet",
]
