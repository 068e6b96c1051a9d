"""The catalog side of a serverless session, as Parquet next to the session's file rows:

  <sid>.volfiles.parquet  the volume's files (VOLUME_FILE_SCHEMA: inode, path, times, resident)
  <sid>.extents.parquet   block-to-file map (EXTENT_SCHEMA: inode, vcn, lcn, length clusters);
                          schema metadata carries the volume geometry
  <sid>.tapemap.parquet   volume byte runs -> stream offsets and tape block/offset ('image'
                          runs, then 'cow' runs that override them)

and the ordinary file rows (FILE_SCHEMA) so that find, versions and point-in-time listings
treat files inside volumes like any others."""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from tapeflow.catalog.errors import RowsUnavailable
from tapeflow.catalog.schema import FILE_SCHEMA
from tapeflow.fs.model import EXTENT_SCHEMA, VOLUME_FILE_SCHEMA, VolumeInfo

if TYPE_CHECKING:
    from tapeflow.serverless.backup import ServerlessResult

BLOCKMAPS_DIRNAME = "blockmaps"


def blockmaps_dir(files_dir: Path | str) -> Path:
    """Where serverless maps live: beside the catalog's per-session file rows."""
    return Path(files_dir).parent / BLOCKMAPS_DIRNAME


TAPEMAP_SCHEMA = pa.schema(
    [
        pa.field("kind", pa.string(), nullable=False),  # image | cow
        pa.field("volume_offset", pa.int64(), nullable=False),
        pa.field("length", pa.int64(), nullable=False),
        pa.field("stream_offset", pa.int64(), nullable=False),
        pa.field("block", pa.int64(), nullable=False),  # tape block holding stream_offset
        pa.field("offset", pa.int32(), nullable=False),  # byte offset in that block
    ]
)


@dataclass(slots=True)
class MapTables:
    """A serverless session's catalog tables."""

    volfiles: pa.Table
    extents: pa.Table
    tapemap: pa.Table
    geometry: VolumeInfo
    tape_file: int
    record_size: int
    first_block: int  # tape block of the session's first record (its global header)
    image_size: int  # bytes of the stored image: an image restore writes this many

    def file_rows(self, session_id: str, barcode: str) -> pa.Table:
        """FILE_SCHEMA rows (no checksum: the host never read the data)."""
        v = self.volfiles
        n = v.num_rows
        return pa.table(
            {
                "session_id": pa.array([session_id] * n, pa.string()),
                "path": v["path"],
                "type": v["type"],
                "size": v["size"],
                "mtime": pc.fill_null(v["mtime"], pa.scalar(0, pa.timestamp("us", tz="UTC"))),
                "ctime": v["ctime"],
                "inode": v["inode"],
                "mode": pa.nulls(n, pa.int32()),
                "uid": pa.nulls(n, pa.int32()),
                "gid": pa.nulls(n, pa.int32()),
                "link_target": pa.nulls(n, pa.string()),
                "checksum": pa.nulls(n, pa.string()),
                "barcode": pa.array([barcode] * n, pa.string()),
                "tape_file": pa.array([self.tape_file] * n, pa.int32()),
                "block": pa.array(
                    [self.tapemap["block"][0].as_py() if self.tapemap.num_rows else 0] * n,
                    pa.int64(),
                ),
                "offset": pa.array([0] * n, pa.int32()),
            },
            schema=FILE_SCHEMA,
        )

    def write(self, directory: Path, session_id: str, barcode: str) -> None:
        """Write the three Parquet files atomically (tmp + rename)."""
        directory.mkdir(parents=True, exist_ok=True)
        meta = {
            "volume": json.dumps(asdict(self.geometry)),
            "barcode": barcode,
            "tape_file": str(self.tape_file),
            "record_size": str(self.record_size),
            "first_block": str(self.first_block),
            "image_size": str(self.image_size),
        }
        for name, table in (
            ("volfiles", self.volfiles),
            ("extents", self.extents),
            ("tapemap", self.tapemap),
        ):
            path = directory / f"{session_id}.{name}.parquet"
            tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
            pq.write_table(table.replace_schema_metadata(meta), tmp)
            os.replace(tmp, path)


def build_maps(result: ServerlessResult, entries: tuple[pa.Table, pa.Table]) -> MapTables:
    """Assemble the session's tables from the parser's output and the copy's layout."""
    rows = [("image", r) for r in result.runs] + [("cow", r) for r in result.cow_runs]
    rs = result.record_size
    tapemap = pa.table(
        {
            "kind": [k for k, _ in rows],
            "volume_offset": [r.offset for _, r in rows],
            "length": [r.length for _, r in rows],
            "stream_offset": [r.stream_offset for _, r in rows],
            "block": [result.first_block + r.stream_offset // rs for _, r in rows],
            "offset": [r.stream_offset % rs for _, r in rows],
        },
        schema=TAPEMAP_SCHEMA,
    )
    volfiles, extents = entries
    return MapTables(
        volfiles.cast(VOLUME_FILE_SCHEMA),
        extents.cast(EXTENT_SCHEMA),
        tapemap,
        result.volume,
        result.tape_file,
        rs,
        result.first_block,
        result.image_size,
    )


def load_maps(directory: Path, session_id: str) -> tuple[MapTables, str]:
    """Read a session's tables back; returns them and the cartridge's barcode. A missing
    table raises RowsUnavailable (the session's block map is gone: rebuild it from tape)."""
    paths = {n: directory / f"{session_id}.{n}.parquet" for n in ("volfiles", "extents", "tapemap")}
    if not all(path.is_file() for path in paths.values()):
        raise RowsUnavailable({session_id: "missing"})
    tables = {name: pq.read_table(path) for name, path in paths.items()}
    meta = {k.decode(): v.decode() for k, v in (tables["tapemap"].schema.metadata or {}).items()}
    geometry = VolumeInfo(**json.loads(meta["volume"]))
    maps = MapTables(
        tables["volfiles"].replace_schema_metadata(None),
        tables["extents"].replace_schema_metadata(None),
        tables["tapemap"].replace_schema_metadata(None),
        geometry,
        int(meta["tape_file"]),
        int(meta["record_size"]),
        int(meta["first_block"]),
        int(meta["image_size"]),
    )
    return maps, meta["barcode"]
