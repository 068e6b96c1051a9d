"""Execute a CopyPlan: through the SAN's copy manager when there is one (EXTENDED COPY, the
host moves no data), else on the host with the same segment engine. Says which path it took."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

from tapeflow.scsi.copy_engine import run_segments
from tapeflow.scsi.device import ScsiDevice
from tapeflow.scsi.sbc import BlockDevice
from tapeflow.scsi.tape import TapeDrive
from tapeflow.scsi.xcopy import (
    COPY_STATUS,
    OPERATING_PARAMETERS,
    STATUS_GOOD,
    CopyPlan,
    CopyStatus,
    ExtendedCopy,
    OperatingParametersData,
    ReceiveCopyResults,
)

log = logging.getLogger(__name__)

XCOPY = "xcopy"
HOST = "host"


class CopyFailed(Exception):
    """The copy manager reported an error or fewer segments than it was given."""


@dataclass(slots=True)
class CopyOutcome:
    """Which path moved the data, how much and how long it took."""

    path: str  # "xcopy" | "host"
    stream_bytes: int
    commands: int
    seconds: float
    early_warning: bool = False  # host path: the drive warned that the cartridge is nearly full


def execute_plan(
    plan: CopyPlan,
    *,
    disk: BlockDevice,
    tape: TapeDrive,
    copy_manager: ScsiDevice | None,
    progress: Callable[[int], None] | None = None,
) -> CopyOutcome:
    """Run `plan`; `progress(stream bytes done)` after each command or segment."""
    started = time.monotonic()
    if copy_manager is None:
        result = run_segments(
            plan.segments,
            disk,
            tape,
            block_length=plan.block_length,
            record_size=plan.record_size,
            progress=progress,
        )
        return CopyOutcome(
            HOST, result.stream_bytes, 0, time.monotonic() - started, result.early_warning
        )
    params = OperatingParametersData.parse(
        copy_manager.execute(ReceiveCopyResults(OPERATING_PARAMETERS, alloc=4096)).ljust(64, b"\0")
    )
    done = commands = 0
    for list_id, batch in enumerate(plan.batches(params.max_segments, params.max_inline)):
        list_id %= 256
        copy_manager.execute(ExtendedCopy(plan.parameter_list(batch, list_id)))
        status = CopyStatus.parse(copy_manager.execute(ReceiveCopyResults(COPY_STATUS, list_id)))
        if status.status != STATUS_GOOD or status.segments_processed != len(batch):
            raise CopyFailed(
                f"copy manager: status {status.status}, {status.segments_processed} of "
                f"{len(batch)} segments"
            )
        done += sum(s.length(plan.block_length) for s in batch)
        commands += 1
        if progress is not None:
            progress(done)
    return CopyOutcome(XCOPY, done, commands, time.monotonic() - started)
