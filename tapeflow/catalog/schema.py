"""Arrow schema of the bulk rows (one per file member on tape); shared by the session writer,
the scanner and the catalog, so a session's rows go to Parquet without conversion."""

from __future__ import annotations

import pyarrow as pa

# One row per member written in a session. Positions point at the member's header:
# tape file number on the cartridge, logical block (LOCATE target) and byte offset in that block.
FILE_SCHEMA = pa.schema(
    [
        pa.field("session_id", pa.string(), nullable=False),
        pa.field("path", pa.string(), nullable=False),  # relative, '/'-separated, no leading '/'
        pa.field("type", pa.string(), nullable=False),  # file|dir|symlink|hardlink|other
        pa.field("size", pa.int64(), nullable=False),
        pa.field("mtime", pa.timestamp("us", tz="UTC"), nullable=False),
        pa.field("ctime", pa.timestamp("us", tz="UTC")),
        pa.field("inode", pa.uint64()),
        pa.field("mode", pa.int32()),
        pa.field("uid", pa.int32()),
        pa.field("gid", pa.int32()),
        pa.field("link_target", pa.string()),
        pa.field("checksum", pa.string()),  # "<algorithm>:<hex>" of the content (sha256, or
        # blake3 for files >= 1 MiB), regular files only
        pa.field("barcode", pa.string()),  # cartridge holding the member's header
        pa.field("tape_file", pa.int32()),  # tape file number on that cartridge (0 = label)
        pa.field("block", pa.int64()),  # logical block of the header (LOCATE target)
        pa.field("offset", pa.int32()),  # byte offset of the header within that block
    ]
)

FILE_TYPES = ("file", "dir", "symlink", "hardlink", "other")

# Catalog-only row type (never a tape member): an incremental/differential session records a
# path that vanished since its base as a row of this type (size 0, mtime = snapshot time, no
# tape position), so a point-in-time tree can hide it. See tapeflow/catalog/__init__.py.
DELETED = "deleted"
ROW_TYPES = (*FILE_TYPES, DELETED)
