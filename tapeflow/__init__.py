"""tapeflow core: tape libraries over SCSI, on-tape format and catalog. Never imports Prefect."""

__version__ = "0.1.0"
