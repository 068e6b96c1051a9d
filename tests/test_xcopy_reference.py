"""Golden vectors for EXTENDED COPY (LID1) and RECEIVE COPY RESULTS, built by hand from public
reference implementations rather than from tapeflow's own `construct` declarations.

tests/test_xcopy.py only round-trips our builder through our own parser and copy manager, so a
misreading of SPC-4 shared by both sides would pass there. Here every expected byte string is
packed field by field with `struct`, each field annotated with the reference it was taken from,
and then compared with what tapeflow.scsi.xcopy builds, fed to its parser, and sent (CDB and
parameter list both hand-built) to the embedded copy manager of tapeflow.vtl.copymgr.

References read (stored public copies; functions named, as line numbers move between versions):

* libiscsi (sahlberg/libiscsi)
  - test-tool/iscsi-support.c: populate_param_header(), populate_tgt_desc(),
    populate_ident_tgt_desc(), populate_seg_desc_hdr(), populate_seg_desc_b2b(),
    get_desc_len() (0x18 bytes for BLK_TO_STRM/STRM_TO_BLK, 0x1C for BLK_TO_BLK, 32 per 0xE4).
  - include/scsi-lowlevel.h: XCOPY_DESC_OFFSET 16, SEG_DESC_SRC_INDEX_OFFSET 4,
    enum list_id_usage (HOLD 0, DISCARD 2, DISABLE 3), enum ec_descr_type_code,
    struct scsi_copy_results_copy_status / scsi_copy_results_op_params.
  - lib/scsi-lowlevel.c: scsi_cdb_extended_copy(), scsi_cdb_receive_copy_results(),
    scsi_receivecopyresults_datain_unmarshall() (the byte offsets of both RCR replies).
  libiscsi has no stream segment builder beyond the shared header and get_desc_len().
* sg3_utils (hreinecke/sg3_utils)
  - src/sg_xcopy.c: desc_from_vpd_id() (0xE4 descriptor, desc[28] = pad << 2, desc[29..31]
    block size), scsi_encode_seg_desc(), scsi_extended_copy() (header byte 1 =
    list_id_usage << 3 | priority), scsi_operating_parameter(), seg_desc_from_dd_type().
  - src/sg_copy_results.c: scsi_copy_status(), scsi_operating_parameters().
* Linux (drivers/target/target_core_xcopy.c and .h): target_parse_xcopy_cmd() (list id p[0],
  LIST ID USAGE (p[1] & 0x18) >> 3, tdll be16 @2, sdll be32 @8, inline be32 @12),
  target_xcopy_parse_tiddesc_e4() (code set desc[4] & 0x0f, association desc[5] & 0x30,
  designator type desc[5] & 0x0f, length desc[7], designator at desc[8]),
  target_xcopy_parse_segdesc_02(), target_rcr_operating_parameters() (AVAILABLE DATA 42 for
  two implemented codes, i.e. 40 + n); XCOPY_HDR_LEN 16, XCOPY_TARGET_DESC_LEN 32.
* python-scsi (python-scsi/python-scsi)
  - pyscsi/pyscsi/scsi_cdb_extended_copy_spc4.py: _parameter_list_bits,
    _device_specific_target_descriptor_parameters_block (pad 0x04 @28, disk block length @29),
    _device_specific_target_descriptor_parameters_sequential (fixed 0x01 @28, pad 0x04 @28,
    stream block length @29), _segment_descriptor_bits_block_to_stream (cat 0x01 @1,
    length @2, source @4, destination @6, stream device transfer length 0xFFFFFF @9,
    number of blocks 0xFFFF @14, LBA @16; reused for stream -> block).
  - tests/test_cdb_extended_copy_spc4.py: its golden sequential-access CSCD (byte 28 = 5,
    PAD | FIXED, stream block length 1024) is reused below.
* T10 SPC text as stored (SPC-5 draft numbering): 6.4.5.3/6.4.5.4 Tables 136-138 (device type
  specific parameters; stream device transfer lengths: FIXED=0 needs STREAM BLOCK LENGTH 0),
  6.4.5.6 Table 140 (0xE4 CSCD), 6.4.6.1 Table 147 (DC applies only to 02h/0Dh), Tables 149,
  150, 153 (INLINE DATA OFFSET a multiple of 4), 155. The TRANSFER COUNT UNITS scale (00h bytes,
  01h KiB, 02h MiB, ...) comes from SPC-4's RECEIVE COPY STATUS(LID1) alone: sg_copy_results and
  libiscsi only print or store the raw byte.

Every field layout matched. One gap in reading foreign lists was found and mended
(test_parser_refuses_stream_cscds_it_cannot_honour): FIXED and STREAM BLOCK LENGTH of a
sequential-access CSCD were parsed but never checked, so a list in fixed-block mode would have
been run with its transfer lengths taken as bytes. tapeflow's own builder always sends
variable-length mode (FIXED = 0, length 0), which the golden vectors above confirm.
"""

from __future__ import annotations

import random
import struct
from pathlib import Path

import pytest

from tapeflow.library import Library
from tapeflow.scsi.device import ScsiDevice
from tapeflow.scsi.sbc import BlockDevice
from tapeflow.scsi.vpd import Designator, unit_designator
from tapeflow.scsi.xcopy import (
    BLOCK_TO_STREAM,
    COPY_STATUS,
    DISK_TYPE,
    IDENTIFICATION,
    INLINE_TO_STREAM,
    OPERATING_PARAMETERS,
    STATUS_GOOD,
    STREAM_TO_BLOCK,
    STREAM_TO_DISCARD,
    TAPE_TYPE,
    CopyPlan,
    CopyStatus,
    ExtendedCopy,
    OperatingParametersData,
    ParameterListError,
    ReceiveCopyResults,
    Segment,
    parse_parameter_list,
    target_descriptor,
)
from tapeflow.vtl import VirtualLibrary
from tapeflow.vtl.copymgr import MAX_CSCD, MAX_INLINE, MAX_SEGMENTS, MAX_STREAM_TRANSFER

# NAA 3h (locally assigned) 8-byte designators, the form tapeflow.vtl.lun.naa_designator makes.
DISK = Designator(1, 0, 3, bytes.fromhex("3123456789abcdef"))
TAPE = Designator(1, 0, 3, bytes.fromhex("3fedcba987654321"))
# A 16-byte NAA 6h (IEEE Registered Extended) designator: the only form the Linux target accepts
# (target_xcopy_parse_tiddesc_e4: desig_len == 16 and (desc[8] & 0xf0) == 0x60).
NAA16 = Designator(1, 0, 3, bytes.fromhex("6001405a1b2c3d4e5f60718293a4b5c6"))

PAD = 0x04  # device type specific byte 28, bit 2: libiscsi desc[28] = pad << 2; sg_xcopy same
FIXED = 0x01  # byte 28, bit 0 (sequential-access only): python-scsi "fixed": [0x01, 28]
CAT = 0x01  # segment byte 1, bit 0: libiscsi hdr[1] = ((dc << 1) | cat); python-scsi "cat"
DC = 0x02  # segment byte 1, bit 1: only meaningful for 02h/0Dh (SPC Table 147 text)


# --- hand-built reference encodings ------------------------------------------------------------
def ref_header(
    list_id: int,
    *,
    cscd_length: int,
    segment_length: int,
    inline_length: int,
    str_bit: int = 0,
    list_id_usage: int = 0,
    priority: int = 0,
) -> bytes:
    """The 16-byte LID1 parameter list header, per libiscsi populate_param_header()."""
    return struct.pack(
        ">BBH4xII",
        list_id,  # buf[0] = list_id
        # buf[1] = ((str & 1) << 5) | ((list_id_usage & 3) << 3) | (prio & 7); the kernel reads
        # LIST ID USAGE back as (p[1] & 0x18) >> 3 (target_parse_xcopy_cmd)
        ((str_bit & 1) << 5) | ((list_id_usage & 3) << 3) | (priority & 7),
        cscd_length,  # buf[2..3] = tgt_desc_len (kernel: tdll = get_unaligned_be16(&p[2]))
        # buf[4..7]: never written by populate_param_header -> reserved, zero
        segment_length,  # buf[8..11] = seg_desc_len (kernel: sdll = be32(&p[8]))
        inline_length,  # buf[12..15] = inline_data_len (kernel: inline_dl = be32(&p[12]))
    )


def ref_cscd(
    peripheral_type: int,
    designator: Designator,
    params: int,
    block_length: int,
    *,
    lu_id_type: int = 0,
    nul: int = 0,
    relative_port: int = 0,
) -> bytes:
    """A 32-byte 0xE4 Identification Descriptor CSCD descriptor (libiscsi populate_tgt_desc +
    populate_ident_tgt_desc; sg3_utils desc_from_vpd_id; python-scsi marshall_target)."""
    head = struct.pack(
        ">BBH",
        IDENTIFICATION,  # desc[0] = desc_type (IDENT_DESCR_TGT_DESCR = 0xE4)
        # desc[1] = (luid_type << 6) | (nul << 5) | peripheral_type
        (lu_id_type << 6) | (nul << 5) | peripheral_type,
        relative_port,  # desc[2..3] = rel_init_port_id
    )
    designation = (
        struct.pack(
            ">BBxB",
            designator.code_set,  # buf[0] = code_set (desc[4]; kernel: (desc[4] & 0x0f) == 1)
            # buf[1] = (designator_type & 0xF) | ((association & 3) << 4)  (desc[5])
            (designator.type & 0x0F) | ((designator.association & 3) << 4),
            # desc[6] reserved; buf[3] = designator_length (desc[7]; kernel: desig_len = desc[7])
            len(designator.value),
        )
        + designator.value
    )  # memcpy(buf + 4, designator) -> desc[8..]
    # SPC Table 140: DESIGNATOR is zero padded up to byte 27 (libiscsi and sg_xcopy memset the
    # buffer to zero before filling it).
    body = head + designation.ljust(28 - len(head), b"\0")
    # desc[28] = pad << 2 (block; python-scsi also FIXED in bit 0 for sequential-access);
    # desc[29..31] = DISK BLOCK LENGTH / STREAM BLOCK LENGTH (24-bit big-endian).
    assert block_length < 1 << 24
    return body + struct.pack(">I", (params << 24) | block_length)


def ref_block_stream_segment(
    kind: int, flags: int, source: int, destination: int, transfer: int, blocks: int, lba: int
) -> bytes:
    """A 24-byte 00h (block -> stream) or 01h (stream -> block) segment descriptor: SPC Tables
    149/150 and python-scsi _segment_descriptor_bits_block_to_stream."""
    assert transfer < 1 << 24
    return struct.pack(
        ">BBHHHIHHQ",
        kind,  # hdr[0] = desc_type (BLK_TO_STRM_SEG_DESCR 0x00 / STRM_TO_BLK_SEG_DESCR 0x01)
        flags,  # hdr[1] = ((dc << 1) | cat); Tables 149/150 show byte 1 as Reserved | CAT
        # hdr[2..3] = get_desc_len() - SEG_DESC_SRC_INDEX_OFFSET = 0x18 - 4 = 0x0014
        0x0014,
        source,  # hdr[4..5] = src_index
        destination,  # hdr[6..7] = dst_index
        # byte 8 reserved; bytes 9..11 STREAM DEVICE TRANSFER LENGTH (python-scsi 0xFFFFFF @9)
        transfer,
        0,  # bytes 12..13 reserved
        blocks,  # bytes 14..15 BLOCK DEVICE NUMBER OF BLOCKS (python-scsi 0xFFFF @14)
        lba,  # bytes 16..23 BLOCK DEVICE LOGICAL BLOCK ADDRESS (python-scsi @16)
    )


def ref_inline_segment(
    flags: int, destination: int, transfer: int, offset: int, count: int
) -> bytes:
    """A 20-byte 04h inline data -> stream segment descriptor (SPC Table 153)."""
    assert transfer < 1 << 24 and offset % 4 == 0  # "INLINE DATA OFFSET ... a multiple of 4"
    return struct.pack(
        ">BBHHHIII",
        INLINE_TO_STREAM,  # byte 0: 04h
        flags,  # byte 1: Reserved | CAT
        0x0010,  # bytes 2..3: DESCRIPTOR LENGTH (0010h)
        0,  # bytes 4..5: reserved (no source CSCD)
        destination,  # bytes 6..7: DESTINATION CSCD DESCRIPTOR ID
        transfer,  # byte 8 reserved; bytes 9..11 STREAM DEVICE TRANSFER LENGTH
        offset,  # bytes 12..15: INLINE DATA OFFSET (from the first byte of inline data)
        count,  # bytes 16..19: INLINE DATA NUMBER OF BYTES
    )


def ref_discard_segment(flags: int, source: int, transfer: int, count: int) -> bytes:
    """A 16-byte 06h stream -> discard segment descriptor (SPC Table 155)."""
    assert transfer < 1 << 24
    return struct.pack(
        ">BBHHHII",
        STREAM_TO_DISCARD,  # byte 0: 06h
        flags,  # byte 1: Reserved | CAT
        0x000C,  # bytes 2..3: DESCRIPTOR LENGTH (000Ch)
        source,  # bytes 4..5: SOURCE CSCD DESCRIPTOR ID
        0,  # bytes 6..7: reserved
        transfer,  # byte 8 reserved; bytes 9..11 STREAM DEVICE TRANSFER LENGTH
        count,  # bytes 12..15: NUMBER OF BYTES
    )


def ref_extended_copy_cdb(parameter_list_length: int) -> bytes:
    """EXTENDED COPY(LID1) CDB: libiscsi scsi_cdb_extended_copy() (cdb[0] = 0x83,
    cdb[10..13] = param_len, cdb_size 16); service action 00h in cdb[1] & 0x1f (the kernel's
    target_do_xcopy refuses anything else as LID4)."""
    return struct.pack(">BB8xI2x", 0x83, 0x00, parameter_list_length)


def ref_receive_copy_results_cdb(service_action: int, list_id: int, alloc: int) -> bytes:
    """RECEIVE COPY RESULTS CDB: libiscsi scsi_cdb_receive_copy_results() (cdb[0] = 0x84,
    cdb[1] |= sa & 0x1f, cdb[2] = list_id, scsi_set_uint32(&cdb[10], xferlen), 16 bytes)."""
    return struct.pack(">BBB7xI2x", 0x84, service_action & 0x1F, list_id, alloc)


def ref_copy_status(hdd: int, status: int, segments: int, units: int, count: int) -> bytes:
    """COPY STATUS (LID1) reply, at libiscsi scsi_receivecopyresults_datain_unmarshall offsets."""
    return struct.pack(
        ">IBHBI",
        8,  # bytes 0..3 AVAILABLE DATA (libiscsi: len < 8 is refused)
        (hdd << 7) | status,  # byte 4: hdd = (b4 & 0x80) >> 7, copy_manager_status = b4 & 0x7F
        segments,  # bytes 5..6: segments_processed = task_get_uint16(task, 5)
        units,  # byte 7: transfer_count_units
        count,  # bytes 8..11: transfer_count = task_get_uint32(task, 8)
    )


# OPERATING PARAMETERS reply up to the implemented codes, at the offsets libiscsi's
# scsi_receivecopyresults_datain_unmarshall() and sg_copy_results scsi_operating_parameters() read:
# 0 AVAILABLE DATA, 4 SNLID (bit 0), 8 max CSCD count, 10 max segment count, 12 max descriptor
# list length, 16 max segment length, 20 max inline data, 24 held data limit, 28 max stream device
# transfer size, 34 total concurrent copies, 36 max concurrent copies, 37/38/39 data segment,
# inline data and held data granularity (log 2), 43 implemented descriptor list length, 44.. codes.
OPERATING_PARAMETERS_HEAD = ">IB3xHHIIIII2xHBBBB3xB"
assert struct.calcsize(OPERATING_PARAMETERS_HEAD) == 44


# --- CDBs ---------------------------------------------------------------------------------------
def test_cdbs_match_reference() -> None:
    """Our EXTENDED COPY and RECEIVE COPY RESULTS CDBs are libiscsi's, byte for byte."""
    assert ExtendedCopy(bytes(48)).cdb == ref_extended_copy_cdb(48)
    # python-scsi tests/test_cdb_extended_copy_spc4.py: a bare 16-byte list gives this CDB
    assert ExtendedCopy(bytes(16)).cdb.hex() == "83000000000000000000000000100000"
    assert ReceiveCopyResults(COPY_STATUS, 7).cdb == ref_receive_copy_results_cdb(0, 7, 1024)
    assert ReceiveCopyResults(OPERATING_PARAMETERS, alloc=4096).cdb == (
        ref_receive_copy_results_cdb(3, 0, 4096)  # SCSI_COPY_RESULTS_OP_PARAMS = 3
    )


# --- CSCD descriptors ---------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("designator", "device_type", "block_length", "params"),
    [
        # block device: PAD set, DISK BLOCK LENGTH = logical block size
        (DISK, DISK_TYPE, 512, PAD),
        (NAA16, DISK_TYPE, 4096, PAD),
        # stream device in variable-length mode: FIXED = 0 and STREAM BLOCK LENGTH = 0, so
        # STREAM DEVICE TRANSFER LENGTH counts bytes (SPC Table 138); no PAD (CAT=1 always)
        (TAPE, TAPE_TYPE, 0, 0x00),
    ],
)
def test_identification_cscd_matches_reference(
    designator: Designator, device_type: int, block_length: int, params: int
) -> None:
    """target_descriptor() builds the 0xE4 bytes the references build."""
    built = target_descriptor(designator, device_type, block_length)
    assert built == ref_cscd(device_type, designator, params, block_length)
    assert len(built) == 32  # XCOPY_TARGET_DESC_LEN; libiscsi get_desc_len(0xE4) = 32


def test_naa16_cscd_passes_the_linux_target_checks() -> None:
    """The checks target_xcopy_parse_tiddesc_e4() applies to a CSCD hold for ours."""
    desc = target_descriptor(NAA16, DISK_TYPE, 512)
    assert desc[0] == 0xE4
    assert desc[4] & 0x0F == 0x1  # "code set of non binary type not supported"
    assert desc[5] & 0x30 == 0x00  # "association other than LUN not supported"
    assert desc[5] & 0x0F == 0x3  # NAA designator type
    assert desc[7] == 16  # desig_len
    assert desc[8] & 0xF0 == 0x60  # NAA IEEE Registered Extended
    assert desc[8:24] == NAA16.value  # memcpy(&xop->src_tid_wwn[0], &desc[8], 16)


# --- whole parameter lists ----------------------------------------------------------------------
RECORD = 4096
LIST_ID = 0x5A
HEADER = b"H" * 510  # inline bytes whose length is not a multiple of 4
LBA = 2**33 + 5  # needs all 8 bytes of BLOCK DEVICE LOGICAL BLOCK ADDRESS
RUN = 0xFFFF + 3  # one run longer than the 16-bit BLOCK DEVICE NUMBER OF BLOCKS


def backup_plan() -> CopyPlan:
    """Inline bytes, a run of disk blocks split at the 16-bit limit, zero padding."""
    plan = CopyPlan(DISK, TAPE, 512, RECORD)
    plan.add_inline(HEADER)
    plan.add_blocks(LBA, RUN)
    plan.pad()
    return plan


def reference_backup_list() -> bytes:
    """backup_plan()'s parameter list, packed from the references."""
    stream = len(HEADER) + RUN * 512
    pad = -stream % RECORD
    segments = (
        ref_inline_segment(CAT, 1, RECORD, 0, len(HEADER))
        + ref_block_stream_segment(BLOCK_TO_STREAM, CAT, 0, 1, RECORD, 0xFFFF, LBA)
        + ref_block_stream_segment(BLOCK_TO_STREAM, CAT, 0, 1, RECORD, 3, LBA + 0xFFFF)
        # the second inline run starts at the next multiple of 4 after the first
        + ref_inline_segment(CAT, 1, RECORD, 512, pad)
    )
    inline = HEADER + bytes(2) + bytes(pad) + bytes(-pad % 4)
    cscds = ref_cscd(DISK_TYPE, DISK, PAD, 512) + ref_cscd(TAPE_TYPE, TAPE, 0x00, 0)
    head = ref_header(
        LIST_ID, cscd_length=64, segment_length=len(segments), inline_length=len(inline)
    )
    return head + cscds + segments + inline


def reference_restore_list() -> bytes:
    """A restore list: skip 1024 stream bytes, then 4 records' worth onto disk block 10."""
    segments = ref_discard_segment(CAT, 1, RECORD, 1024) + ref_block_stream_segment(
        STREAM_TO_BLOCK, CAT, 1, 0, RECORD, 4, 10
    )
    cscds = ref_cscd(DISK_TYPE, DISK, PAD, 512) + ref_cscd(TAPE_TYPE, TAPE, 0x00, 0)
    return ref_header(0, cscd_length=64, segment_length=len(segments), inline_length=0) + (
        cscds + segments
    )


def test_backup_parameter_list_matches_reference() -> None:
    """Header, CSCDs, 04h/00h segments and the 4-aligned inline area, all byte for byte."""
    plan = backup_plan()
    assert plan.parameter_list(plan.segments, LIST_ID) == reference_backup_list()


def test_restore_parameter_list_matches_reference() -> None:
    """06h (source = tape CSCD 1) and 01h (source tape 1, destination disk 0) segments."""
    plan = CopyPlan(DISK, TAPE, 512, RECORD)
    plan.add_discard(1024)
    plan.add_blocks(10, 4, STREAM_TO_BLOCK)
    assert plan.parameter_list(plan.segments) == reference_restore_list()


def test_block_stream_segments_leave_dc_clear() -> None:
    """SPC Table 147: DC only applies to 02h/0Dh, so 00h/01h carry CAT alone."""
    plan = CopyPlan(DISK, TAPE, 512, RECORD)
    plan.add_blocks(0, 8)
    plan.add_blocks(0, 8, STREAM_TO_BLOCK)
    data = plan.parameter_list(plan.segments)
    for pos in (16 + 64, 16 + 64 + 24):
        assert data[pos + 1] & DC == 0 and data[pos + 1] & CAT


# --- our parser on reference bytes -------------------------------------------------------------
def test_parser_reads_reference_lists() -> None:
    """parse_parameter_list() decodes the hand-built lists to what they say."""
    parsed = parse_parameter_list(reference_backup_list())
    assert parsed.list_id == LIST_ID and parsed.hold_results
    assert [(c.designator, c.device_type, c.block_length) for c in parsed.cscds] == [
        (DISK, DISK_TYPE, 512),
        (TAPE, TAPE_TYPE, 0),
    ]
    pad = -(len(HEADER) + RUN * 512) % RECORD
    assert parsed.segments == [
        (0xFFFF, 1, Segment(INLINE_TO_STREAM, inline=HEADER)),
        (0, 1, Segment(BLOCK_TO_STREAM, lba=LBA, blocks=0xFFFF)),
        (0, 1, Segment(BLOCK_TO_STREAM, lba=LBA + 0xFFFF, blocks=3)),
        (0xFFFF, 1, Segment(INLINE_TO_STREAM, inline=bytes(pad))),
    ]
    assert parsed.record_size == RECORD
    parsed = parse_parameter_list(reference_restore_list())
    assert parsed.segments == [
        (1, 0xFFFF, Segment(STREAM_TO_DISCARD, discard=1024)),
        (1, 0, Segment(STREAM_TO_BLOCK, lba=10, blocks=4)),
    ]


@pytest.mark.parametrize(
    ("str_bit", "usage", "priority", "hold"),
    [
        (0, 0, 0, True),  # LIST_ID_USAGE_HOLD (libiscsi enum list_id_usage)
        (0, 2, 0, False),  # LIST_ID_USAGE_DISCARD: libiscsi's iscsi-dd sends this
        (0, 3, 0, False),  # LIST_ID_USAGE_DISABLE
        (0, 0, 1, True),  # sg_xcopy's default prio=1 must not read as a usage
        (1, 0, 7, True),  # STR and PRIORITY bits around LIST ID USAGE (python-scsi 0x27)
    ],
)
def test_parser_reads_header_byte_1(str_bit: int, usage: int, priority: int, hold: bool) -> None:
    """LIST ID USAGE is bits 4..3 of byte 1, between STR (bit 5) and PRIORITY (bits 2..0)."""
    body = reference_restore_list()[16:]
    head = ref_header(
        9,
        cscd_length=64,
        segment_length=40,
        inline_length=0,
        str_bit=str_bit,
        list_id_usage=usage,
        priority=priority,
    )
    parsed = parse_parameter_list(head + body)
    assert parsed.list_id == 9 and parsed.hold_results is hold


def test_parser_reads_foreign_designators() -> None:
    """CSCDs naming units the way other initiators do: the kernel's 16-byte NAA 6h, and
    python-scsi's golden T10 vendor ID designator (ASCII code set 2, type 1, 15 bytes)."""
    t10 = Designator(2, 0, 1, b"TrueNAS test123")
    cscds = ref_cscd(DISK_TYPE, NAA16, PAD, 512) + ref_cscd(TAPE_TYPE, t10, 0x00, 0)
    segments = ref_block_stream_segment(BLOCK_TO_STREAM, CAT, 0, 1, RECORD, 8, 0)
    head = ref_header(1, cscd_length=64, segment_length=len(segments), inline_length=0)
    parsed = parse_parameter_list(head + cscds + segments)
    assert [(c.designator, c.device_type) for c in parsed.cscds] == [
        (NAA16, DISK_TYPE),
        (t10, TAPE_TYPE),
    ]


def test_parser_refuses_the_reference_block_to_block_segment() -> None:
    """libiscsi populate_seg_desc_b2b() / the kernel's only segment type (02h, 28 bytes) is not
    one the copy manager implements: UNSUPPORTED SEGMENT DESCRIPTOR TYPE CODE (26h/09h)."""
    b2b = struct.pack(
        ">BBHHH2xHQQ",
        0x02,  # BLK_TO_BLK_SEG_DESCR
        0x00,  # dc = 0, cat = 0
        0x18,  # get_desc_len(BLK_TO_BLK_SEG_DESCR) - SEG_DESC_SRC_INDEX_OFFSET = 0x1C - 4
        0,  # src_index
        1,  # dst_index
        2048,  # desc[10..11] num_blks (kernel: nolb = be16(&desc[10]))
        0,  # desc[12..19] src_lba
        4096,  # desc[20..27] dst_lba
    )
    cscds = ref_cscd(DISK_TYPE, DISK, 0, 512) + ref_cscd(DISK_TYPE, NAA16, 0, 512)
    head = ref_header(1, cscd_length=64, segment_length=len(b2b), inline_length=0)
    with pytest.raises(ParameterListError) as exc:
        parse_parameter_list(head + cscds + b2b)
    assert (exc.value.asc, exc.value.ascq) == (0x26, 0x09)


@pytest.mark.parametrize(
    ("params", "stream_block_length"),
    [
        (PAD | FIXED, 1024),  # python-scsi's golden: fixed 1024-byte blocks (not implemented)
        (0x00, 1024),  # SPC Table 138: FIXED=0 with a non-zero length "shall be terminated"
        (FIXED, 0),  # SPC Table 138: FIXED=1 with a zero length "shall be terminated"
    ],
)
def test_parser_refuses_stream_cscds_it_cannot_honour(
    params: int, stream_block_length: int
) -> None:
    """A tape CSCD outside variable-length mode must be refused (INVALID FIELD IN PARAMETER
    LIST), not executed as if its transfer lengths counted bytes."""
    cscds = ref_cscd(DISK_TYPE, DISK, PAD, 512) + ref_cscd(
        TAPE_TYPE, TAPE, params, stream_block_length
    )
    segments = ref_block_stream_segment(BLOCK_TO_STREAM, CAT, 0, 1, 4, 8, 0)
    head = ref_header(1, cscd_length=64, segment_length=len(segments), inline_length=0)
    with pytest.raises(ParameterListError) as exc:
        parse_parameter_list(head + cscds + segments)
    assert exc.value.asc == 0x26


# --- RECEIVE COPY RESULTS replies ---------------------------------------------------------------
@pytest.mark.parametrize(
    ("hdd", "status", "segments", "units", "count", "expect"),
    [
        (0, 1, 4, 0, 8194, CopyStatus(1, 4, 8194)),  # completed without errors, in bytes
        (1, 2, 3, 1, 5, CopyStatus(2, 3, 5 << 10)),  # HDD set, with errors, KiB units
        (0, 0, 0, 2, 7, CopyStatus(0, 0, 7 << 20)),  # in progress, MiB units
    ],
)
def test_copy_status_reply_parses(
    hdd: int, status: int, segments: int, units: int, count: int, expect: CopyStatus
) -> None:
    """CopyStatus.parse() reads the fields where libiscsi and sg_copy_results read them."""
    assert CopyStatus.parse(ref_copy_status(hdd, status, segments, units, count)) == expect


def test_operating_parameters_reply_parses() -> None:
    """A reply laid out as target_rcr_operating_parameters() writes it (SNLID = 1, two codes,
    AVAILABLE DATA 42), with illustrative limits, through the host's parse in serverless.copy."""
    codes = bytes([0x02, 0xE4])
    reply = (
        struct.pack(
            OPERATING_PARAMETERS_HEAD,
            40 + len(codes),  # put_unaligned_be32(42, &p[0]): AVAILABLE DATA (n-3)
            0x01,  # p[4] = 0x1: SNLID
            2,  # p[8..9] MAXIMUM CSCD DESCRIPTOR COUNT
            1,  # p[10..11] MAXIMUM SEGMENT DESCRIPTOR COUNT
            1024,  # p[12..15] MAXIMUM DESCRIPTOR LIST LENGTH
            256 << 20,  # p[16..19] MAXIMUM SEGMENT LENGTH
            0,  # p[20..23] MAXIMUM INLINE DATA LENGTH (not supported)
            0,  # p[24..27] HELD DATA LIMIT
            0,  # p[28..31] MAXIMUM STREAM DEVICE TRANSFER SIZE
            1,  # p[34..35] TOTAL CONCURRENT COPIES
            1,  # p[36] MAXIMUM CONCURRENT COPIES
            9,  # p[37] DATA SEGMENT GRANULARITY (log 2)
            9,  # p[38] INLINE DATA GRANULARITY (log 2)
            9,  # p[39] HELD DATA GRANULARITY (log 2)
            len(codes),  # p[43] IMPLEMENTED DESCRIPTOR LIST LENGTH
        )
        + codes  # p[44..]: 0x02 block -> block, 0xE4 identification descriptor
    )
    d = OperatingParametersData.parse(reply.ljust(64, b"\0"))  # as tapeflow.serverless.copy does
    assert (d.available, d.snlid, d.max_cscd, d.max_segments) == (42, 1, 2, 1)
    assert (d.max_descriptor_list, d.max_segment_length, d.max_inline) == (1024, 256 << 20, 0)
    assert (d.held_data_limit, d.max_stream_transfer, d.total_concurrent) == (0, 0, 1)
    assert (d.max_concurrent, d.granularity, d.inline_granularity, d.held_granularity) == (
        1,
        9,
        9,
        9,
    )
    assert d.implemented_count == 2 and list(d.implemented[:2]) == [0x02, 0xE4]


# --- the embedded copy manager on hand-built commands -------------------------------------------
@pytest.fixture
def san(tmp_path: Path) -> tuple[VirtualLibrary, Library, bytes]:
    """A library with a loaded tape in drive 0, a source disk of known bytes and an empty disk."""
    vl = VirtualLibrary.create(tmp_path / "lib", drives=1, slots=4)
    image = tmp_path / "src.img"
    content = random.Random(7).randbytes(1 << 20)
    image.write_bytes(content)
    vl.add_disk("src", image=image)
    vl.add_disk("dst", size=1 << 20)
    lib = Library(f"embedded:{vl.root}")
    lib.load(0, slot=1)
    return vl, lib, content


def _designator(vl: VirtualLibrary, disk: str) -> Designator:
    with ScsiDevice(vl.disk(disk)) as dev:
        return unit_designator(dev)


def test_copy_manager_runs_reference_lists(san: tuple[VirtualLibrary, Library, bytes]) -> None:
    """Hand-built CDBs and lists in, hand-decoded replies out: the copy manager writes the tape
    the list describes, reads it back onto another disk, and reports both at SPC offsets."""
    vl, lib, content = san
    tape = lib.open_drive(0)
    cm = vl.copy_manager()
    try:
        src, dst, drive = _designator(vl, "src"), _designator(vl, "dst"), unit_designator(tape.dev)

        # OPERATING PARAMETERS, decoded at libiscsi's offsets.
        reply = cm.execute(ref_receive_copy_results_cdb(3, 0, 4096), None, 4096)
        assert reply.status == 0
        data = reply.data_in
        head = struct.unpack_from(OPERATING_PARAMETERS_HEAD, data)
        available, count = head[0], head[-1]
        assert available == len(data) - 4 == 40 + count  # AVAILABLE DATA (n-3)
        assert head[2:5] == (MAX_CSCD, MAX_SEGMENTS, MAX_CSCD * 32 + MAX_SEGMENTS * 24)
        assert head[6] == MAX_INLINE and head[8] == MAX_STREAM_TRANSFER
        assert set(data[44 : 44 + count]) == {0x00, 0x01, 0x04, 0x06, 0xE4}

        # Backup: 510 inline bytes + 7 blocks + 2 zero bytes = record 1; 8 blocks = record 2.
        segments = (
            ref_inline_segment(CAT, 1, RECORD, 0, 510)
            + ref_block_stream_segment(BLOCK_TO_STREAM, CAT, 0, 1, RECORD, 7, 9)
            + ref_inline_segment(CAT, 1, RECORD, 512, 2)
            + ref_block_stream_segment(BLOCK_TO_STREAM, CAT, 0, 1, RECORD, 8, 100)
        )
        inline = HEADER + bytes(2) + bytes(2) + bytes(2)  # 510 + pad to 4, 2 zeros + pad to 4
        plist = (
            ref_header(
                0x2A, cscd_length=64, segment_length=len(segments), inline_length=len(inline)
            )
            + ref_cscd(DISK_TYPE, src, PAD, 512)
            + ref_cscd(TAPE_TYPE, drive, 0x00, 0)
            + segments
            + inline
        )
        plan = CopyPlan(src, drive, 512, RECORD)  # and our builder agrees with it
        plan.add_inline(HEADER)
        plan.add_blocks(9, 7)
        plan.pad()
        plan.add_blocks(100, 8)
        assert plan.parameter_list(plan.segments, 0x2A) == plist
        assert cm.execute(ref_extended_copy_cdb(len(plist)), plist, 0).status == 0
        status = cm.execute(ref_receive_copy_results_cdb(0, 0x2A, 1024), None, 1024).data_in
        assert struct.unpack(">IBHBI", status) == (8, STATUS_GOOD, 4, 0, 2 * RECORD)

        tape.rewind()
        assert tape.read(1 << 20) == HEADER + content[9 * 512 : 16 * 512] + bytes(2)
        assert tape.read(1 << 20) == content[100 * 512 : 108 * 512]
        tape.rewind()

        # Restore: drop the 510 header and 2 padding bytes, write the runs to other LBAs.
        segments = (
            ref_discard_segment(CAT, 1, RECORD, 510)
            + ref_block_stream_segment(STREAM_TO_BLOCK, CAT, 1, 0, RECORD, 7, 20)
            + ref_discard_segment(CAT, 1, RECORD, 2)
            + ref_block_stream_segment(STREAM_TO_BLOCK, CAT, 1, 0, RECORD, 8, 40)
        )
        plist = (
            ref_header(0x2B, cscd_length=64, segment_length=len(segments), inline_length=0)
            + ref_cscd(DISK_TYPE, dst, PAD, 512)
            + ref_cscd(TAPE_TYPE, drive, 0x00, 0)
            + segments
        )
        assert cm.execute(ref_extended_copy_cdb(len(plist)), plist, 0).status == 0
        status = cm.execute(ref_receive_copy_results_cdb(0, 0x2B, 1024), None, 1024).data_in
        assert struct.unpack(">IBHBI", status) == (8, STATUS_GOOD, 4, 0, 2 * RECORD)
        assert CopyStatus.parse(status) == CopyStatus(STATUS_GOOD, 4, 2 * RECORD)
    finally:
        cm.close()
        tape.close()
    with BlockDevice(vl.disk("dst")) as disk:
        assert disk.read(20, 7) == content[9 * 512 : 16 * 512]
        assert disk.read(40, 8) == content[100 * 512 : 108 * 512]
