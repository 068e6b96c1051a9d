"""The embedded library's copy manager: executes EXTENDED COPY (LID1) parameter lists between
its disk LUNs and its tape drives, so a serverless backup's data never passes through the host.

CSCDs are matched by the NAA designator each LUN reports in VPD 0x83. The copy runs through the
same segment engine the host uses when a SAN has no copy manager (tapeflow.scsi.copy_engine),
talking to the disk and drive through ordinary LUN handles, as a real copy manager would."""

from __future__ import annotations

from collections.abc import Callable
from contextlib import ExitStack

from tapeflow.scsi.copy_engine import InexactSegment, SegmentFailed, run_segments
from tapeflow.scsi.sbc import BlockDevice
from tapeflow.scsi.sense import COPY_ABORTED, ILLEGAL_REQUEST
from tapeflow.scsi.tape import TapeDrive
from tapeflow.scsi.transport import Transport
from tapeflow.scsi.xcopy import (
    BLOCK_TO_STREAM,
    COPY_STATUS,
    DISK_TYPE,
    INLINE_TO_STREAM,
    OPERATING_PARAMETERS,
    STATUS_ERROR,
    STATUS_GOOD,
    STREAM_TO_BLOCK,
    STREAM_TO_DISCARD,
    TAPE_TYPE,
    CopyStatusData,
    OperatingParametersData,
    ParameterListError,
    parse_parameter_list,
)
from tapeflow.vtl.lun import CheckCondition, Handler, LogicalUnit, invalid_field

EXTENDED_COPY = 0x83
RECEIVE_COPY_RESULTS = 0x84
MAX_CSCD = 16
MAX_SEGMENTS = 4096
MAX_INLINE = 4 * 1024 * 1024
MAX_STREAM_TRANSFER = 8 * 1024 * 1024

# designator value -> (device type, opener of a fresh handle on that LUN)
Resolver = Callable[[], dict[bytes, tuple[int, Callable[[], Transport]]]]


class CopyManagerHandle(LogicalUnit):
    """One initiator's handle on the copy manager LUN (a processor device with 3PC set)."""

    peripheral_type = 0x03
    product = "VTL COPY MANAGER"
    inquiry_flags = bytes([0x08, 0x00, 0x00])  # 3PC: third-party copy supported

    def __init__(self, serial: str, resolve: Resolver) -> None:
        super().__init__(serial)
        self._resolve = resolve
        self._results: dict[int, bytes] = {}
        handlers: dict[int, Handler] = {
            0x00: lambda raw, out, alloc: b"",  # TEST UNIT READY
            EXTENDED_COPY: self._extended_copy,
            RECEIVE_COPY_RESULTS: self._receive_copy_results,
        }
        self._handlers.update(handlers)

    def _extended_copy(self, raw: bytes, out: memoryview | None, alloc: int) -> bytes:
        if raw[1] & 0x1F:  # only LID1
            raise invalid_field()
        length = int.from_bytes(raw[10:14], "big")
        if length == 0:
            return b""
        if out is None or len(out) < length:
            raise CheckCondition(ILLEGAL_REQUEST, 0x1A, 0x00)
        try:
            plist = parse_parameter_list(bytes(out[:length]), MAX_CSCD, MAX_SEGMENTS)
        except ParameterListError as exc:
            raise CheckCondition(ILLEGAL_REQUEST, exc.asc, exc.ascq) from exc
        if plist.record_size > MAX_STREAM_TRANSFER:
            raise CheckCondition(ILLEGAL_REQUEST, 0x26, 0x00)
        units = self._resolve()
        openers: list[tuple[int, Callable[[], Transport]]] = []
        for cscd in plist.cscds:
            found = units.get(cscd.designator.value)
            if found is None:
                raise CheckCondition(COPY_ABORTED, 0x0D, 0x02)  # target not reachable
            if found[0] != cscd.device_type:
                raise CheckCondition(COPY_ABORTED, 0x0D, 0x03)  # incorrect target type
            openers.append(found)
        named = {i for src, dst, _ in plist.segments for i in (src, dst) if i != 0xFFFF}
        tapes = {i for i in named if openers[i][0] == TAPE_TYPE}
        used_disks = {i for i in named if openers[i][0] == DISK_TYPE}
        if len(used_disks) > 1 or len(tapes) != 1:
            raise CheckCondition(ILLEGAL_REQUEST, 0x26, 0x0C)  # one disk and one tape per list
        for src, dst, seg in plist.segments:  # each side must be the kind the segment says
            want = {
                BLOCK_TO_STREAM: (DISK_TYPE, TAPE_TYPE),
                STREAM_TO_BLOCK: (TAPE_TYPE, DISK_TYPE),
                INLINE_TO_STREAM: (None, TAPE_TYPE),
                STREAM_TO_DISCARD: (TAPE_TYPE, None),
            }[seg.kind]
            for index, kind in zip((src, dst), want, strict=True):
                if kind is not None and openers[index][0] != kind:
                    raise CheckCondition(COPY_ABORTED, 0x0D, 0x03)  # incorrect target type
        tape_index = next(iter(tapes))
        status, done, moved = STATUS_GOOD, len(plist.segments), 0
        with ExitStack() as stack:
            tape = TapeDrive(openers[tape_index][1](), "xcopy-tape")
            stack.callback(tape.close)
            disk = None
            if used_disks:
                i = next(iter(used_disks))
                disk = stack.enter_context(BlockDevice(openers[i][1](), "xcopy-disk"))
            block_length = disk.geometry().block_length if disk is not None else 512
            try:
                result = run_segments(
                    [seg for _, _, seg in plist.segments],
                    disk,  # type: ignore[arg-type]  # None only for lists without block segments
                    tape,
                    block_length=block_length,
                    record_size=plist.record_size,
                )
                moved = result.stream_bytes
            except SegmentFailed as exc:
                status, done = STATUS_ERROR, exc.done
                moved = sum(s.length(block_length) for _, _, s in plist.segments[:done])
                self._hold(plist.list_id, plist.hold_results, status, done, moved)
                asc, ascq = (0x26, 0x0A) if isinstance(exc.cause, InexactSegment) else (0x0D, 0x01)
                raise CheckCondition(COPY_ABORTED, asc, ascq, information=done) from exc
        self._hold(plist.list_id, plist.hold_results, status, done, moved)
        return b""

    def _hold(self, list_id: int, hold: bool, status: int, done: int, moved: int) -> None:
        if not hold:
            return
        units, count = 0, moved
        while count > 0xFFFFFFFF:
            units, count = units + 1, count >> 10
        body = CopyStatusData.build(
            {
                "available": 8,
                "status": status,
                "segments_processed": min(done, 0xFFFF),
                "units": units,
                "transfer_count": count,
            }
        )
        self._results[list_id] = body

    def _receive_copy_results(self, raw: bytes, out: memoryview | None, alloc: int) -> bytes:
        action, list_id = raw[1] & 0x1F, raw[2]
        if action == COPY_STATUS:
            if list_id not in self._results:
                raise invalid_field()
            return self._results[list_id]
        if action == OPERATING_PARAMETERS:
            implemented = [0x00, 0x01, 0x04, 0x06, 0xE4]
            return OperatingParametersData.build(
                {
                    "available": 40 + len(implemented),
                    "snlid": 0,
                    "max_cscd": MAX_CSCD,
                    "max_segments": MAX_SEGMENTS,
                    "max_descriptor_list": MAX_CSCD * 32 + MAX_SEGMENTS * 24,
                    "max_segment_length": 0xFFFF * 512,
                    "max_inline": MAX_INLINE,
                    "held_data_limit": 0,
                    "max_stream_transfer": MAX_STREAM_TRANSFER,
                    "total_concurrent": 1,
                    "max_concurrent": 1,
                    "granularity": 9,
                    "inline_granularity": 2,
                    "held_granularity": 0,
                    "implemented_count": len(implemented),
                    "implemented": implemented,
                }
            )
        raise invalid_field()
