"""The job queue on Prefect: a job is a deployment (what to run, its schedules) and its flow runs.

Run now, submit at a time, schedule (cron, or start + repeat interval + excluded days as an
RRULE), HOLD/READY (pause/resume a deployment's schedules), reschedule, resubmit, cancel,
delete, and save a job to a YAML/JSON file that can be submitted again. Every request is
checked before anything is sent, so a refused one changes nothing on the server.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any
from uuid import UUID
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError, available_timezones

import dateutil.rrule
import yaml
from prefect import get_client
from prefect.client.orchestration import SyncPrefectClient
from prefect.client.schemas.actions import DeploymentScheduleCreate, DeploymentUpdate
from prefect.client.schemas.filters import (
    DeploymentFilter,
    DeploymentFilterId,
    DeploymentFilterTags,
    FlowRunFilter,
    FlowRunFilterState,
    FlowRunFilterStateType,
)
from prefect.client.schemas.objects import Deployment, DeploymentSchedule, FlowRun, StateType
from prefect.client.schemas.responses import SetStateStatus
from prefect.client.schemas.sorting import FlowRunSort
from prefect.deployments import run_deployment
from prefect.exceptions import ObjectNotFound, PrefectHTTPStatusError
from prefect.schedules import Schedule
from prefect.states import Cancelling, Scheduled

WEEKDAYS = ("MO", "TU", "WE", "TH", "FR", "SA", "SU")
_DAY_NAMES = {
    **{d.lower(): d for d in WEEKDAYS},
    **{n: WEEKDAYS[i] for i, n in enumerate(("mon", "tue", "wed", "thu", "fri", "sat", "sun"))},
}
MAX_RRULE_LENGTH = 6500  # Prefect's limit on a stored RRULE string
JOB_FILE_VERSION = 1
HOLD_TAG = "tapeflow:hold"  # an operator's HOLD, kept when `tapeflow serve` restarts


class JobError(ValueError):
    """A job-queue request was refused; nothing was changed on the server."""


class JobNotFound(JobError):
    """No deployment or flow run by that name or id."""


class ScheduleError(JobError):
    """A cron string, timezone, start time, interval or excluded day that is not usable."""


# --- schedules (pure: no server) -----------------------------------------------------------


def check_timezone(name: str) -> str:
    """The IANA timezone `name`, or ScheduleError (Prefect would otherwise fail late)."""
    if name not in available_timezones():
        raise ScheduleError(f"unknown timezone {name!r} (use an IANA name like Europe/Berlin)")
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise ScheduleError(f"unknown timezone {name!r}: {exc}") from exc
    return name


def cron_schedule(
    cron: str,
    timezone: str = "UTC",
    slug: str | None = None,
    parameters: dict[str, Any] | None = None,
    active: bool = True,
) -> Schedule:
    """A checked cron schedule; a cron string that does not parse is a ScheduleError."""
    check_timezone(timezone)
    try:
        return Schedule(
            cron=cron, timezone=timezone, slug=slug, parameters=parameters or {}, active=active
        )
    except ValueError as exc:
        raise ScheduleError(f"cron {cron!r} does not parse: {exc}") from exc


def parse_weekdays(days: Iterable[str]) -> list[str]:
    """`sat`, `SA`, `Saturday`... -> RRULE weekday codes (MO..SU), in week order."""
    out: set[str] = set()
    for day in days:
        code = _DAY_NAMES.get(day.strip().lower()[:3]) or _DAY_NAMES.get(day.strip().lower())
        if code is None:
            raise ScheduleError(f"not a weekday: {day!r} (use mon..sun)")
        out.add(code)
    return [d for d in WEEKDAYS if d in out]


def parse_every(text: str) -> timedelta:
    """`90s`, `15m`, `2h`, `1d`, `1w` (or plain seconds) -> timedelta."""
    m = re.fullmatch(r"\s*(\d+)\s*([smhdw]?)\s*", text)
    if not m:
        raise ScheduleError(f"not an interval: {text!r} (use e.g. 30m, 6h, 1d, 1w)")
    unit = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}[m.group(2)]
    return timedelta(seconds=int(m.group(1)) * unit)


def _local_naive(when: datetime, tz: ZoneInfo) -> datetime:
    """`when` as wall-clock time in `tz` (a naive `when` already is)."""
    return when.astimezone(tz).replace(tzinfo=None) if when.tzinfo else when


def repeat_rrule(
    start: datetime,
    every: timedelta,
    timezone: str = "UTC",
    exclude_weekdays: Iterable[str] = (),
    exclude_dates: Iterable[date] = (),
) -> str:
    """An RRULE (DTSTART + rule, EXDATEs) for `every` from `start`, skipping excluded days.

    Excluded weekdays become BYDAY (the other days); each excluded date becomes EXDATEs of that
    date's occurrences. Times are wall-clock in `timezone`, which Prefect applies to the rule.
    """
    tz = ZoneInfo(check_timezone(timezone))
    seconds = int(every.total_seconds())
    if seconds < 60 or seconds != every.total_seconds():
        raise ScheduleError(f"repeat interval {every} must be whole seconds, at least 1 minute")
    freq, unit = next(
        (f, u)
        for f, u in (("DAILY", 86400), ("HOURLY", 3600), ("MINUTELY", 60), ("SECONDLY", 1))
        if seconds % u == 0
    )
    dtstart = _local_naive(start, tz).replace(microsecond=0)
    rule = f"RRULE:FREQ={freq};INTERVAL={seconds // unit}"
    excluded = parse_weekdays(exclude_weekdays)
    if excluded:
        allowed = [d for d in WEEKDAYS if d not in excluded]
        if not allowed:
            raise ScheduleError("every weekday is excluded: the job would never run")
        rule += ";BYDAY=" + ",".join(allowed)
    lines = [f"DTSTART:{dtstart:%Y%m%dT%H%M%S}", rule]
    exdates: list[datetime] = []
    if exclude_dates:
        series = dateutil.rrule.rrulestr("\n".join(lines))
        for day in sorted(set(exclude_dates)):
            begin = datetime(day.year, day.month, day.day)
            exdates += series.between(begin, begin + timedelta(days=1), inc=False)
            if begin in series:  # between(inc=False) leaves out an occurrence at 00:00
                exdates.append(begin)
    if exdates:
        lines.append("EXDATE:" + ",".join(f"{d:%Y%m%dT%H%M%S}" for d in sorted(set(exdates))))
    text = "\n".join(lines)
    if len(text) > MAX_RRULE_LENGTH:
        raise ScheduleError(
            f"too many excluded occurrences ({len(exdates)}): the rule exceeds Prefect's "
            f"{MAX_RRULE_LENGTH} characters; use a longer interval or fewer excluded dates"
        )
    return text


def repeat_schedule(
    start: datetime,
    every: timedelta,
    timezone: str = "UTC",
    exclude_weekdays: Iterable[str] = (),
    exclude_dates: Iterable[date] = (),
    slug: str | None = None,
    parameters: dict[str, Any] | None = None,
) -> Schedule:
    """The RRULE schedule of `repeat_rrule`, with its timezone, slug and parameters."""
    text = repeat_rrule(start, every, timezone, exclude_weekdays, exclude_dates)
    try:
        return Schedule(rrule=text, timezone=timezone, slug=slug, parameters=parameters or {})
    except ValueError as exc:
        raise ScheduleError(f"not a usable RRULE: {exc}") from exc


def future_time(when: datetime, what: str = "start time") -> datetime:
    """`when` (naive = local time of this machine) as aware UTC; a past time is refused."""
    aware = when if when.tzinfo else when.astimezone()
    if aware <= datetime.now(UTC):
        raise ScheduleError(f"{what} {aware.isoformat()} is in the past")
    return aware.astimezone(UTC)


# --- the server ------------------------------------------------------------------------------


@contextmanager
def _client() -> Iterator[SyncPrefectClient]:
    """A sync client whose 'not found' and 4xx answers become JobNotFound / JobError."""
    try:
        with get_client(sync_client=True) as client:
            yield client
    except ObjectNotFound as exc:
        raise JobNotFound(f"not found on the Prefect server: {exc}") from exc
    except PrefectHTTPStatusError as exc:
        if 400 <= exc.response.status_code < 500:
            raise JobError(f"refused by the Prefect server: {exc.response.text}") from exc
        raise


def _deployment(client: SyncPrefectClient, name: str) -> Deployment:
    if "/" not in name:
        raise JobError(f"deployment {name!r} must be given as <flow name>/<deployment name>")
    try:
        return client.read_deployment_by_name(name)
    except ObjectNotFound as exc:
        raise JobNotFound(f"no deployment {name!r}") from exc


def _flow_run(client: SyncPrefectClient, run_id: str | UUID) -> FlowRun:
    try:
        return client.read_flow_run(UUID(str(run_id)))
    except ValueError as exc:
        raise JobError(f"not a flow run id: {run_id!r}") from exc
    except ObjectNotFound as exc:
        raise JobNotFound(f"no flow run {run_id}") from exc


def deployment_name(client: SyncPrefectClient, deployment: Deployment) -> str:
    """`<flow name>/<deployment name>` of a deployment."""
    return f"{client.read_flow(deployment.flow_id).name}/{deployment.name}"


def run_now(
    deployment: str, parameters: dict[str, Any] | None = None, wait: float | None = 0
) -> FlowRun:
    """Start a run of `deployment` now (`run_deployment`); `wait` seconds for it (None: until
    it ends)."""
    with _client() as client:
        _deployment(client, deployment)  # a clear error before run_deployment's
    try:
        return run_deployment(deployment, parameters=parameters or {}, timeout=wait)
    except PrefectHTTPStatusError as exc:
        raise JobError(f"refused by the Prefect server: {exc.response.text}") from exc


def submit_at(deployment: str, when: datetime, parameters: dict[str, Any] | None = None) -> FlowRun:
    """A one-off run of `deployment` at `when` (must be in the future)."""
    at = future_time(when)
    with _client() as client:
        dep = _deployment(client, deployment)
        return client.create_flow_run_from_deployment(
            dep.id, parameters=parameters or {}, state=Scheduled(scheduled_time=at)
        )


def add_schedule(deployment: str, schedule: Schedule) -> DeploymentSchedule:
    """Add `schedule` to `deployment` (slugged schedules survive re-serving the deployment)."""
    if not schedule.slug:
        raise JobError("a job schedule needs a slug (its name, to find and remove it later)")
    create = DeploymentScheduleCreate.from_schedule(schedule)
    with _client() as client:
        dep = _deployment(client, deployment)
        if schedule.slug and any(s.slug == schedule.slug for s in dep.schedules):
            raise JobError(f"{deployment} already has a schedule {schedule.slug!r}")
        return client.create_deployment_schedules(dep.id, [create])[0]


def remove_schedule(deployment: str, slug: str) -> None:
    """Delete the schedule `slug` of `deployment` (its future auto-scheduled runs go too)."""
    with _client() as client:
        dep = _deployment(client, deployment)
        match = [s for s in dep.schedules if s.slug == slug]
        if not match:
            slugs = ", ".join(str(s.slug) for s in dep.schedules) or "none"
            raise JobNotFound(f"{deployment} has no schedule {slug!r} (schedules: {slugs})")
        client.delete_deployment_schedule(dep.id, match[0].id)


def schedules(deployment: str) -> list[DeploymentSchedule]:
    """The schedules of `deployment`."""
    with _client() as client:
        return list(_deployment(client, deployment).schedules)


def _set_hold(client: SyncPrefectClient, dep: Deployment, held: bool) -> None:
    """Tag (or untag) the deployment as held, then pause (or resume) its schedules."""
    tags = sorted({*dep.tags, HOLD_TAG} if held else set(dep.tags) - {HOLD_TAG})
    client.update_deployment(dep.id, DeploymentUpdate(tags=tags))
    (client.pause_deployment if held else client.resume_deployment)(dep.id)


def hold(deployment: str) -> None:
    """HOLD: pause the deployment's schedules (its future scheduled runs are removed) and tag
    it, so that restarting `tapeflow serve` (which resumes what it registers) keeps the hold."""
    with _client() as client:
        _set_hold(client, _deployment(client, deployment), True)


def ready(deployment: str) -> None:
    """READY: resume the deployment's schedules (the scheduler creates its runs again)."""
    with _client() as client:
        _set_hold(client, _deployment(client, deployment), False)


def is_held(deployment: str) -> bool:
    """True when the deployment is on HOLD."""
    with _client() as client:
        return HOLD_TAG in _deployment(client, deployment).tags


def held_deployments() -> set[str]:
    """`flow/deployment` names of the deployments on HOLD (serve registers them paused)."""
    with _client() as client:
        found = client.read_deployments(
            deployment_filter=DeploymentFilter(tags=DeploymentFilterTags(all_=[HOLD_TAG]))
        )
        return {f"{client.read_flow(d.flow_id).name}/{d.name}" for d in found}


def upcoming(deployment: str, limit: int = 50) -> list[FlowRun]:
    """The deployment's scheduled (not yet started) runs, soonest first."""
    return runs(deployment, limit, scheduled=True)


def runs(deployment: str | None = None, limit: int = 20, scheduled: bool = False) -> list[FlowRun]:
    """Flow runs (of one deployment, or all): the started or ended ones, newest first; or with
    `scheduled`, those still waiting, soonest first."""
    states = FlowRunFilterStateType(
        **({"any_": [StateType.SCHEDULED]} if scheduled else {"not_any_": [StateType.SCHEDULED]})
    )
    with _client() as client:
        dep_filter = None
        if deployment:
            dep = _deployment(client, deployment)
            dep_filter = DeploymentFilter(id=DeploymentFilterId(any_=[dep.id]))
        return client.read_flow_runs(
            deployment_filter=dep_filter,
            flow_run_filter=FlowRunFilter(state=FlowRunFilterState(type=states)),
            sort=(
                FlowRunSort.NEXT_SCHEDULED_START_TIME_ASC
                if scheduled
                else FlowRunSort.EXPECTED_START_TIME_DESC
            ),
            limit=limit,
        )


def reschedule(run_id: str | UUID, when: datetime) -> FlowRun:
    """Move a scheduled (not yet started) run to `when` (in the future)."""
    at = future_time(when, "new time")
    with _client() as client:
        run = _flow_run(client, run_id)
        if run.state is None or not run.state.is_scheduled():
            state = run.state.name if run.state else "no state"
            raise JobError(f"flow run {run_id} is {state}, not scheduled: cannot move it")
        result = client.set_flow_run_state(
            run.id, Scheduled(scheduled_time=at, name=run.state.name)
        )
        if result.status != SetStateStatus.ACCEPT:
            raise JobError(f"the server refused to move {run_id}: {result.details}")
        return client.read_flow_run(run.id)


def resubmit(run_id: str | UUID, parameters: dict[str, Any] | None = None) -> FlowRun:
    """A new run of a finished run's deployment with the same parameters (plus overrides)."""
    with _client() as client:
        run = _flow_run(client, run_id)
        if run.state is None or not run.state.is_final():
            raise JobError(f"flow run {run_id} has not finished: cancel it or wait")
        if run.deployment_id is None:
            raise JobError(f"flow run {run_id} did not come from a deployment: nothing to rerun")
        return client.create_flow_run_from_deployment(
            run.deployment_id, parameters={**run.parameters, **(parameters or {})}
        )


def cancel(run_id: str | UUID) -> FlowRun:
    """Cancel a run: the runner stops the master and every slave with it (a scheduled run is
    cancelled before it starts)."""
    with _client() as client:
        run = _flow_run(client, run_id)
        if run.state is not None and run.state.is_final():
            raise JobError(f"flow run {run_id} already ended ({run.state.name})")
        result = client.set_flow_run_state(run.id, Cancelling())
        if result.status == SetStateStatus.ABORT:
            raise JobError(f"the server refused to cancel {run_id}: {result.details.reason}")
        return client.read_flow_run(run.id)


def delete_run(run_id: str | UUID) -> None:
    """Delete a flow run that is not running (its logs and task runs go with it)."""
    with _client() as client:
        run = _flow_run(client, run_id)
        if run.state is not None and (run.state.is_running() or run.state.is_cancelling()):
            raise JobError(f"flow run {run_id} is {run.state.name}: cancel it first")
        client.delete_flow_run(run.id)


def delete_deployment(deployment: str) -> None:
    """Delete a deployment and its scheduled runs (finished runs stay in the history)."""
    with _client() as client:
        client.delete_deployment(_deployment(client, deployment).id)


# --- job files -------------------------------------------------------------------------------


@dataclass
class JobFile:
    """A saved job: which deployment, with which parameters; schedules are for the record."""

    deployment: str
    parameters: dict[str, Any] = field(default_factory=dict)
    schedules: list[dict[str, Any]] = field(default_factory=list)
    saved_from: str = ""

    def to_dict(self) -> dict[str, Any]:
        """The file's content."""
        return {
            "tapeflow_job": JOB_FILE_VERSION,
            "deployment": self.deployment,
            "parameters": self.parameters,
            "schedules": self.schedules,
            "saved_from": self.saved_from,
        }

    @classmethod
    def from_dict(cls, data: Any, where: str = "job file") -> JobFile:
        """Read a job file's content; anything else is a JobError."""
        if not isinstance(data, dict) or data.get("tapeflow_job") != JOB_FILE_VERSION:
            raise JobError(f"{where} is not a tapeflow job file (tapeflow_job: 1)")
        if not isinstance(data.get("deployment"), str):
            raise JobError(f"{where} names no deployment")
        params = data.get("parameters") or {}
        if not isinstance(params, dict):
            raise JobError(f"{where}: parameters must be a mapping")
        return cls(
            data["deployment"],
            params,
            list(data.get("schedules") or []),
            str(data.get("saved_from", "")),
        )


def _schedule_record(s: DeploymentSchedule) -> dict[str, Any]:
    body = s.schedule.model_dump(mode="json", exclude_none=True)
    return {**body, "slug": s.slug, "active": s.active, "parameters": s.parameters}


def save(job: str, path: Path) -> JobFile:
    """Save a deployment (`flow/name`: defaults + schedules) or a flow run (id: its parameters)
    to `path` (.yaml/.yml: YAML, else JSON)."""
    with _client() as client:
        if "/" in job:
            dep = _deployment(client, job)
            saved = JobFile(
                job,
                dict(dep.parameters),
                [_schedule_record(s) for s in dep.schedules],
                f"deployment {job}",
            )
        else:
            run = _flow_run(client, job)
            if run.deployment_id is None:
                raise JobError(f"flow run {job} did not come from a deployment")
            dep = client.read_deployment(run.deployment_id)
            saved = JobFile(
                deployment_name(client, dep), dict(run.parameters), [], f"flow run {run.id}"
            )
    data = saved.to_dict()
    text = (
        yaml.safe_dump(data, sort_keys=False)
        if path.suffix in (".yaml", ".yml")
        else json.dumps(data, indent=2) + "\n"
    )
    path.write_text(text)
    return saved


def load(path: Path) -> JobFile:
    """Read a job file (YAML or JSON)."""
    try:
        text = path.read_text()
    except OSError as exc:
        raise JobError(f"cannot read job file {path}: {exc}") from exc
    try:
        data = yaml.safe_load(text)  # JSON is YAML
    except yaml.YAMLError as exc:
        raise JobError(f"{path} does not parse: {exc}") from exc
    return JobFile.from_dict(data, str(path))


def submit(
    path: Path, when: datetime | None = None, parameters: dict[str, Any] | None = None
) -> FlowRun:
    """Submit a saved job again: now, or once at `when`."""
    job = load(path)
    params = {**job.parameters, **(parameters or {})}
    if when is not None:
        return submit_at(job.deployment, when, params)
    return run_now(job.deployment, params)
