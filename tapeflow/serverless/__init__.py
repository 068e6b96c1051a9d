"""Serverless (block-level) backup: a copy manager moves volume blocks straight from a disk
LUN to a tape drive with EXTENDED COPY, while the host only parses the volume's metadata into
a block-to-file map for the catalog. Prefect-free."""
