"""Prefect blocks: configuration and credentials for libraries, pools, catalogs and sources.

Register them so they appear in the UI: `prefect block register -m blocks`.
"""

from blocks.tape import BackupSource, Catalog, MediaPool, TapeLibrary

__all__ = ["BackupSource", "Catalog", "MediaPool", "TapeLibrary"]
