"""Volume parsers (FAT12/16/32, NTFS): file -> extents maps for serverless (block-level)
backups. Every on-disk structure is declared with construct next to the code that reads it."""
