"""Catalog DDL as numbered migrations; a database records its version and is brought forward."""

from __future__ import annotations

from collections.abc import Sequence

import duckdb

from .errors import CatalogVersionError

# Each entry moves the schema from version i to i+1; append only, never edit a released step.
MIGRATIONS: Sequence[Sequence[str]] = (
    (
        "CREATE TABLE catalog_meta (key VARCHAR PRIMARY KEY, value VARCHAR NOT NULL)",
        """CREATE TABLE pools (
            name VARCHAR PRIMARY KEY,
            retention_days INTEGER NOT NULL,
            append BOOLEAN NOT NULL DEFAULT TRUE,  -- FALSE: one session per cartridge
            description VARCHAR)""",
        """CREATE TABLE jobs (
            id VARCHAR PRIMARY KEY,
            kind VARCHAR NOT NULL,                 -- backup|restore|verify|maintenance|...
            level VARCHAR,                         -- full|differential|incremental
            state VARCHAR NOT NULL,                -- running|complete|partial|failed|cancelled
            started TIMESTAMPTZ NOT NULL,
            ended TIMESTAMPTZ,
            pool VARCHAR,
            parameters JSON)""",
        """CREATE TABLE sessions (
            id VARCHAR PRIMARY KEY,
            job_id VARCHAR NOT NULL,
            source VARCHAR NOT NULL,
            kind VARCHAR NOT NULL,                 -- file|image|serverless|database
            level VARCHAR NOT NULL,                -- full|differential|incremental
            state VARCHAR NOT NULL,                -- running|complete|partial|failed
            started TIMESTAMPTZ NOT NULL,          -- snapshot time: 'as of T' compares this
            ended TIMESTAMPTZ,
            files BIGINT NOT NULL DEFAULT 0,
            bytes BIGINT NOT NULL DEFAULT 0,
            base_session VARCHAR,                  -- what this session was compared against
            first_barcode VARCHAR,
            first_tape_file INTEGER,
            rows_state VARCHAR NOT NULL DEFAULT 'none',  -- none|present|pruned|corrupt
            row_count BIGINT,
            rows_bytes BIGINT,
            pruned_at TIMESTAMPTZ,
            media_erased TIMESTAMPTZ)              -- a cartridge of it was reformatted""",
        "CREATE INDEX sessions_source ON sessions (source, started)",
        """CREATE TABLE media (
            barcode VARCHAR PRIMARY KEY,
            pool VARCHAR,
            location VARCHAR,
            capacity BIGINT,
            bytes_used BIGINT NOT NULL DEFAULT 0,
            sessions INTEGER NOT NULL DEFAULT 0,
            first_use TIMESTAMPTZ,
            last_write TIMESTAMPTZ,
            expiry TIMESTAMPTZ,                    -- explicit; else last_write + pool retention
            state VARCHAR NOT NULL DEFAULT 'blank',  -- blank|labelled|full|error|retired
            labelled BOOLEAN NOT NULL DEFAULT FALSE,
            reformat_pending BOOLEAN NOT NULL DEFAULT FALSE)""",
        """CREATE TABLE media_sessions (
            session_id VARCHAR NOT NULL,
            sequence INTEGER NOT NULL,             -- 0 = first piece of the session
            barcode VARCHAR NOT NULL,
            tape_file INTEGER NOT NULL,
            bytes BIGINT NOT NULL DEFAULT 0,
            PRIMARY KEY (session_id, sequence))""",
        "CREATE INDEX media_sessions_barcode ON media_sessions (barcode)",
        """CREATE TABLE drives (
            library VARCHAR NOT NULL,
            number INTEGER NOT NULL,
            online BOOLEAN NOT NULL DEFAULT TRUE,
            serial VARCHAR,
            PRIMARY KEY (library, number))""",
        "CREATE SEQUENCE events_id START 1",
        """CREATE TABLE events (
            id BIGINT PRIMARY KEY DEFAULT nextval('events_id'),
            time TIMESTAMPTZ NOT NULL,
            level VARCHAR NOT NULL,                -- debug|info|warning|error
            job_id VARCHAR,
            session_id VARCHAR,
            message VARCHAR NOT NULL)""",
    ),
)

SCHEMA_VERSION = len(MIGRATIONS)


def current_version(con: duckdb.DuckDBPyConnection) -> int:
    """Schema version recorded in the database (0 for a brand-new, empty file)."""
    found = con.execute(
        "SELECT count(*) FROM duckdb_tables() WHERE database_name = current_database() "
        "AND schema_name = 'main' AND table_name = 'catalog_meta'"
    ).fetchone()
    if not found or not found[0]:
        return 0
    row = con.execute("SELECT value FROM catalog_meta WHERE key = 'schema_version'").fetchone()
    return int(row[0]) if row else 0


def migrate(con: duckdb.DuckDBPyConnection) -> int:
    """Apply missing migrations, each in its own transaction; return the resulting version."""
    version = current_version(con)
    if version > SCHEMA_VERSION:
        raise CatalogVersionError(
            f"catalog schema version {version} is newer than this software ({SCHEMA_VERSION})"
        )
    while version < SCHEMA_VERSION:
        con.execute("BEGIN TRANSACTION")
        try:
            for statement in MIGRATIONS[version]:
                con.execute(statement)
            version += 1
            con.execute(
                "INSERT OR REPLACE INTO catalog_meta VALUES ('schema_version', ?)", [str(version)]
            )
            con.execute("COMMIT")
        except BaseException:
            con.execute("ROLLBACK")
            raise
    return version
