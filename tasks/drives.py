"""Keep the drive tag's concurrency limit equal to the library's online drive count."""

from __future__ import annotations

from prefect import get_client, get_run_logger, task
from prefect.client.schemas.actions import GlobalConcurrencyLimitUpdate
from prefect.utilities.asyncutils import run_coro_as_sync

from tapeflow.library import Library, LibrarySpec
from tapeflow.library.leases import LeaseBoard


def online_drive_count(spec: LibrarySpec) -> int:
    """Drives tapeflow may use now."""
    with Library(spec) as lib:
        return len(lib.online_drives())


def drives_idle(spec: LibrarySpec) -> bool:
    """True when no slave on this host holds any drive lease right now."""
    with Library(spec) as lib:
        board = LeaseBoard(lib.state_dir)
        for n in range(lib.drive_count):
            lease = board.try_drive([n], "probe")
            if lease is None:
                return False
            lease.release()
    return True


async def set_tag_limit(tag: str, limit: int, *, idle: bool) -> int:
    """Create or update the tag's limit (Prefect 3 keeps it as global limit `tag:<tag>`).

    Slots still held while every drive is idle belong to slaves of a killed run: their
    leases would only expire after a minute (or never, on servers without the repossessor),
    so they are reclaimed. Returns the number of slots reclaimed.
    """
    async with get_client() as client:
        await client.upsert_global_concurrency_limit_by_name(f"tag:{tag}", max(limit, 1))
        held = (await client.read_global_concurrency_limit_by_name(f"tag:{tag}")).active_slots
        if held and idle:
            # revoke the dead leases (so the server's repossessor never frees them again
            # later), then zero the count, which revoking alone leaves as it was
            await client.reset_concurrency_limit_by_tag(tag)
            await client.update_global_concurrency_limit(
                f"tag:{tag}", GlobalConcurrencyLimitUpdate(active_slots=0)
            )
            return held
    return 0


@task(name="sync-drive-limit", persist_result=False)
def sync_drive_limit(spec: str, tag: str) -> int:
    """Set the tag limit to the online drive count (at least 1); returns that count."""
    library = LibrarySpec.parse(spec)
    count = online_drive_count(library)
    reclaimed = run_coro_as_sync(set_tag_limit(tag, count, idle=drives_idle(library)))
    if reclaimed:
        get_run_logger().warning(
            "%s: reclaimed %d slot(s) held by slaves of a killed run", tag, reclaimed
        )
    return count
