"""The README's first command: a real backup and restore on a fresh embedded library.

Creates a 4-drive library, splits a sample tree into four sources (four slaves on four
drives), runs a full and an incremental backup as Prefect flows, shows the catalog, restores
a file and a directory into another place and verifies them byte for byte.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path
from typing import TextIO

from tapeflow.catalog import Catalog, path_versions
from tapeflow.library import Library
from tapeflow.sample import make_sample_tree, tree_digest
from tapeflow.vtl import VirtualLibrary


def run_demo(directory: Path | None, out: TextIO) -> int:
    """Run the demo; returns 0 when every restored file matches its source."""
    from flows.backup import backup
    from flows.restore import restore

    work = Path(tempfile.mkdtemp(prefix="tapeflow-demo-")) if directory is None else directory
    work.mkdir(parents=True, exist_ok=True)
    lib_dir, catalog = work / "library", work / "catalog" / "catalog.duckdb"
    library = f"embedded:{lib_dir}"

    def say(text: str = "") -> None:
        print(text, file=out, flush=True)

    started = time.monotonic()
    say(f"== creating an embedded tape library (4 drives, 24 slots) in {lib_dir}")
    VirtualLibrary.create(
        lib_dir,
        drives=4,
        slots=24,
        mail_slots=4,
        capacity=512 * 1024 * 1024,
        early_warning=16 * 1024 * 1024,
    )
    sources = []
    for name in ("finance", "hr", "engineering", "sales"):
        root = work / "data" / name
        make_sample_tree(root, files=150, seed=len(sources))
        sources.append({"name": name, "path": str(root)})
    total = sum(
        sum(p.stat().st_size for p in Path(s["path"]).rglob("*") if p.is_file()) for s in sources
    )
    say(
        f"== full backup of 4 sources ({total / 1e6:.0f} MB): one slave per source, "
        "at most one per drive"
    )
    full = backup(
        sources=sources,
        library=library,
        catalog=str(catalog),
        pre=["echo pre: quiescing applications"],
        post=["echo post: job $TAPEFLOW_STATE"],
    )
    say(
        f"   job {full['job_id']}: {full['state']}, {full['files']} files, "
        f"{full['bytes'] / 1e6:.1f} MB"
    )
    for row in full["slaves"]:
        say(
            f"   subjob {row['subjob']} {row['source']:<12} drive {row['drive']}  "
            f"{row['cartridges']:<10} {row['files']:>4} files {row['MB']:>6} MB  {row['state']}"
        )
    changed = Path(sources[0]["path"]) / "dir0" / "sub0" / "file0000.dat"
    changed.write_bytes(b"quarterly numbers, revised\n")
    say("== incremental backup after changing one file")
    incr = backup(sources=sources, level="incremental", library=library, catalog=str(catalog))
    say(f"   job {incr['job_id']}: {incr['state']}, {incr['files']} members written")
    with Library(library) as lib:
        inv = lib.inventory()
    loaded = sum(d.full for d in inv.drives)
    say(
        f"   library: {len(inv.drives)} drives ({loaded} loaded), "
        f"{sum(s.full for s in inv.slots)}/{len(inv.slots)} slots full"
    )
    with Catalog(catalog, read_only=True) as cat:
        say("\n== catalog: jobs")
        for job in cat.records("SELECT id, level, state FROM jobs ORDER BY started", []):
            sessions = cat.sessions(job_id=job["id"])
            files = sum(s["files"] or 0 for s in sessions)
            say(
                f"   {job['id']}  {job['level']:<12} {job['state']:<9} "
                f"{len(sessions)} sessions, {files} members"
            )
        say("== catalog: versions of finance/dir0/sub0/file0000.dat")
        for v in path_versions(cat, "dir0/sub0/file0000.dat", source="finance").to_pylist():
            say(
                f"   {v['level']:<12} {v['size']:>9} B on {v['barcode']} "
                f"tape file {v['tape_file']} block {v['block']}"
            )
    target = work / "restored"
    say(f"== restoring one file and one directory of 'engineering' into {target}")
    restore(
        source="engineering",
        selection=["dir3/sub1", "dir5/sub2/file0005.dat"],
        target=str(target),
        library=library,
        catalog=str(catalog),
    )
    source_digest = tree_digest(Path(sources[2]["path"]))
    restored = tree_digest(target)
    ok = bool(restored) and all(source_digest.get(p) == d for p, d in restored.items())
    say(
        f"   {len(restored)} files restored; verify: {'every file identical' if ok else 'MISMATCH'}"
    )
    say(f"\ndemo finished in {time.monotonic() - started:.0f} s; everything is in {work}")
    return 0 if ok else 1
