"""Keep the drive tag's concurrency limit equal to the library's online drive count."""

from __future__ import annotations

from prefect import get_client, task
from prefect.utilities.asyncutils import run_coro_as_sync

from tapeflow.library import Library, LibrarySpec


def online_drive_count(spec: LibrarySpec) -> int:
    """Drives tapeflow may use now."""
    with Library(spec) as lib:
        return len(lib.online_drives())


async def set_tag_limit(tag: str, limit: int) -> None:
    """Create or update the tag's limit (Prefect 3 keeps it as global limit `tag:<tag>`)."""
    async with get_client() as client:
        await client.upsert_global_concurrency_limit_by_name(f"tag:{tag}", max(limit, 1))


@task(name="sync-drive-limit", persist_result=False)
def sync_drive_limit(spec: str, tag: str) -> int:
    """Set the tag limit to the online drive count (at least 1); returns that count."""
    count = online_drive_count(LibrarySpec.parse(spec))
    run_coro_as_sync(set_tag_limit(tag, count))
    return count
