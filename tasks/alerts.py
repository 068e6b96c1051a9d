"""Prefect events for what needs a person: a failed job, a failed slave, a media request (a
slave found no writable cartridge). Automations trigger on these names (README: Alerts).

Resources: a media request is about `tapeflow.pool.<pool>`; failures are about
`tapeflow.library.<library>`; the other one, and the job, are related resources. Labels on the
primary resource (`tapeflow.job`, `tapeflow.subjob`, `tapeflow.source`) let an automation
match one job or source.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any, TypeVar
from uuid import UUID

from prefect import get_client
from prefect.blocks.core import Block
from prefect.events import Event, emit_event
from prefect.events.actions import SendNotification
from prefect.events.schemas.automations import AutomationCore, EventTrigger, Posture
from prefect.logging import get_logger

from tapeflow.backup.model import SlaveSpec
from tapeflow.library import LibrarySpec

JOB_FAILED = "tapeflow.job.failed"
SLAVE_FAILED = "tapeflow.slave.failed"
MEDIA_REQUEST = "tapeflow.media.request"

log = get_logger("tapeflow.alerts")
E = TypeVar("E", bound=BaseException)


def cause(exc: BaseException, kind: type[E]) -> E | None:
    """The first exception of type `kind` in exc's chain (itself, its cause, its context)."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        if isinstance(current, kind):
            return current
        seen.add(id(current))
        current = current.__cause__ or current.__context__
    return None


def library_name(address: str) -> str:
    """The library's short name (the one in its drive tag) from its address."""
    return LibrarySpec.parse(address).name


def library_resource(name: str, role: str | None = None, **labels: str) -> dict[str, str]:
    """`tapeflow.library.<name>` as a Prefect resource (with a role when related)."""
    return _resource("library", name, role, labels)


def pool_resource(name: str, role: str | None = None, **labels: str) -> dict[str, str]:
    """`tapeflow.pool.<name>` as a Prefect resource (with a role when related)."""
    return _resource("pool", name, role, labels)


def job_resource(job_id: str) -> dict[str, str]:
    """`tapeflow.job.<id>` as a related resource."""
    return _resource("job", job_id, "job", {})


def _resource(kind: str, name: str, role: str | None, labels: dict[str, str]) -> dict[str, str]:
    out = {"prefect.resource.id": f"tapeflow.{kind}.{name}", "prefect.resource.name": name}
    if role:
        out["prefect.resource.role"] = role
    return out | {f"tapeflow.{key}": str(value) for key, value in labels.items()}


def _emit(
    name: str, resource: dict[str, str], related: list[dict[str, str]], payload: dict[str, Any]
) -> Event | None:
    event = emit_event(name, resource=resource, related=related, payload=payload)
    if event is None:  # Prefect emits nothing without a server or with events turned off
        log.warning("event %s not emitted (no Prefect events client): %s", name, payload)
    return event


def slave_failed(spec: SlaveSpec, error: str) -> Event | None:
    """A slave stopped: `tapeflow.slave.failed` on its library."""
    library = library_name(spec.library)
    labels = {"job": spec.job_id, "subjob": str(spec.subjob), "source": spec.source.name}
    return _emit(
        SLAVE_FAILED,
        library_resource(library, **labels),
        [pool_resource(spec.pool.name, "pool"), job_resource(spec.job_id)],
        {
            "job_id": spec.job_id,
            "subjob": spec.subjob,
            "source": spec.source.name,
            "session_id": spec.session_id,
            "pool": spec.pool.name,
            "library": library,
            "error": error,
        },
    )


def media_request(spec: SlaveSpec, message: str, reasons: dict[str, str]) -> Event | None:
    """No writable cartridge: `tapeflow.media.request` on the pool, saying why each was not."""
    library = library_name(spec.library)
    labels = {"job": spec.job_id, "subjob": str(spec.subjob), "source": spec.source.name}
    return _emit(
        MEDIA_REQUEST,
        pool_resource(spec.pool.name, **labels),
        [library_resource(library, "library"), job_resource(spec.job_id)],
        {
            "job_id": spec.job_id,
            "subjob": spec.subjob,
            "source": spec.source.name,
            "pool": spec.pool.name,
            "library": library,
            "message": message,
            "reasons": reasons,
        },
    )


def job_failed(job_id: str, library: str, pool: str, state: str, errors: list[str]) -> Event | None:
    """A master job ended partial or failed: `tapeflow.job.failed` on its library."""
    return _emit(
        JOB_FAILED,
        library_resource(library, job=job_id),
        [pool_resource(pool, "pool"), job_resource(job_id)],
        {"job_id": job_id, "state": state, "pool": pool, "library": library, "errors": errors},
    )


# -- the documented automation (README: Alerts) ----------------------------------------------

MEDIA_REQUEST_SUBJECT = (
    "tapeflow: cartridges needed for pool {{ event.resource['prefect.resource.name'] }}"
)
MEDIA_REQUEST_BODY = (
    "Backup job {{ event.payload.job_id }} (source {{ event.payload.source }}) found no "
    "writable cartridge in pool {{ event.payload.pool }} of library {{ event.payload.library }}."
    "\n\n{{ event.payload.message }}"
)


def media_request_automation(
    block_document_id: UUID, *, pool: str = "*", name: str = "tapeflow: cartridges needed"
) -> AutomationCore:
    """On every `tapeflow.media.request` of a pool matching `pool` (a name, or a glob ending in
    '*'), send a notification through the notification block `block_document_id`."""
    return AutomationCore(
        name=name,
        description="A backup slave found no writable cartridge: insert blank or scratch media.",
        trigger=EventTrigger(
            expect={MEDIA_REQUEST},
            match={"prefect.resource.id": f"tapeflow.pool.{pool}"},
            posture=Posture.Reactive,
            threshold=1,
            within=timedelta(0),
        ),
        actions=[
            SendNotification(
                block_document_id=block_document_id,
                subject=MEDIA_REQUEST_SUBJECT,
                body=MEDIA_REQUEST_BODY,
            )
        ],
    )


async def create_media_request_automation(
    block: str, *, pool: str = "*", name: str = "tapeflow: cartridges needed"
) -> UUID:
    """Create that automation on the server, notifying through the saved notification block
    `block` ('<block-type-slug>/<name>', e.g. 'slack-webhook/tape-ops'); returns its id."""
    notifier = await Block.aload(block)
    if notifier._block_document_id is None:
        raise ValueError(f"block {block!r} has no saved document to notify through")
    async with get_client() as client:
        return await client.create_automation(
            media_request_automation(notifier._block_document_id, pool=pool, name=name)
        )
