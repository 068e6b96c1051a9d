"""Every tapeflow deployment, built in one place: serve.py, `tapeflow serve` and prefect.yaml
(generated from here: `python -m deployments.registry --write-yaml`) stay in step.

Scheduled backups run in a timezone (default Europe/Berlin). Two rotation schemes are
registered; one is active: `simple` (nightly incremental Mon-Sat + weekly full on Sunday) or
`gfs` (grandfather-father-son: daily, weekly and monthly pools with their own retention).
Backups and restores default to the embedded library and the default catalog.
"""

from __future__ import annotations

import argparse
import importlib
import inspect
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any, Literal

import yaml
from prefect import Flow
from prefect.deployments.runner import EntrypointType, RunnerDeployment
from prefect.schedules import Schedule

from deployments.defaults import (
    CLEAN_CRON,
    DEFAULT_TIMEZONE,
    NIGHTLY_CRON,
    PRUNE_CRON,
    PRUNE_DAYS,
    WEEKLY_CRON,
)
from flows.backup import backup
from flows.queue import ScheduleError, check_timezone, cron_schedule
from flows.restore import restore
from flows.serverless import restore_image, serverless_backup

Rotation = Literal["simple", "gfs"]
DEFAULT_SOURCES: list[str | dict[str, Any]] = ["default"]  # the BackupSource block "default"
WORK_POOL = "tapeflow"  # process work pool used by prefect.yaml
PREFECT_YAML = Path(__file__).resolve().parent / "prefect.yaml"
FLOW_MODULES = ("flows.maintenance", "flows.library", "flows.reports")  # one deployment each


@dataclass(frozen=True)
class GfsTier:
    """One generation of the grandfather-father-son rotation: a deployment and its pool."""

    deployment: str
    level: Literal["full", "incremental"]
    retention_days: int
    cron: str | None = None
    rrule: str | None = None

    def pool(self) -> dict[str, Any]:
        """The media pool parameter (Pool.from_dict form)."""
        return {"name": self.deployment, "retention_days": self.retention_days}


# Every day has exactly one tier (as flows/rotation.py's rotation="gfs" picks them):
GFS_TIERS = (
    GfsTier("gfs-daily", "incremental", 7, cron="0 21 * * 1-6"),  # son: Monday to Saturday
    # father: the other Sundays; grandfather: the first Sunday of each month
    GfsTier("gfs-weekly", "full", 35, rrule="RRULE:FREQ=MONTHLY;BYDAY=2SU,3SU,4SU,5SU;BYHOUR=21"),
    GfsTier("gfs-monthly", "full", 365, rrule="RRULE:FREQ=MONTHLY;BYDAY=1SU;BYHOUR=21"),
)


def module_flows(module: ModuleType) -> list[Flow[Any, Any]]:
    """The flows defined (not imported) in `module`, by name."""
    found = [
        obj
        for obj in vars(module).values()
        if isinstance(obj, Flow) and getattr(obj.fn, "__module__", None) == module.__name__
    ]
    return sorted(found, key=lambda f: f.name)


def deployment_name(flow: Flow[Any, Any]) -> str:
    """`tapeflow-catalog-prune` -> `catalog-prune`."""
    return flow.name.removeprefix("tapeflow-")


def _deploy(
    flow: Flow[Any, Any],
    name: str,
    description: str,
    parameters: dict[str, Any] | None = None,
    schedules: list[Schedule] | None = None,
    tags: Sequence[str] = (),
) -> RunnerDeployment:
    """One deployment of `flow`; unset (None) parameters keep the flow's defaults."""
    return flow.to_deployment(
        name=name,
        description=description,
        parameters={k: v for k, v in (parameters or {}).items() if v is not None},
        schedules=schedules or None,
        tags=["tapeflow", *tags],
        entrypoint_type=EntrypointType.MODULE_PATH,  # importable from any working directory
    )


def all_deployments(
    sources: Sequence[str | dict[str, Any]] | None = None,
    timezone: str = DEFAULT_TIMEZONE,
    nightly_cron: str = NIGHTLY_CRON,
    weekly_cron: str = WEEKLY_CRON,
    rotation: Rotation = "simple",
    library: str | None = None,
    catalog: str | None = None,
    prune_cron: str = PRUNE_CRON,
    prune_days: int = PRUNE_DAYS,
    clean_cron: str = CLEAN_CRON,
) -> list[RunnerDeployment]:
    """Build every deployment; a bad cron, timezone, rotation or prune age raises ScheduleError
    before anything reaches a server. `library` and `catalog` become the default of every
    flow that takes them, scheduled maintenance included."""
    check_timezone(timezone)
    if rotation not in ("simple", "gfs"):
        raise ScheduleError(f"rotation {rotation!r} is not one of simple, gfs")
    if prune_days < 1:
        raise ScheduleError(f"prune days must be at least 1, not {prune_days}")
    where = {"library": library, "catalog": catalog}
    scheduled = {"sources": list(sources or DEFAULT_SOURCES), **where}
    simple, gfs = rotation == "simple", rotation == "gfs"
    nightly = cron_schedule(nightly_cron, timezone, slug="nightly", active=simple)
    weekly = cron_schedule(weekly_cron, timezone, slug="weekly", active=simple)
    out = [
        _deploy(backup, "backup", "master backup job, on demand", where),
        _deploy(
            backup,
            "nightly-incremental",
            f"incremental backup, {nightly_cron} ({timezone})",
            {**scheduled, "level": "incremental"},
            [nightly],
            ["scheduled"],
        ),
        _deploy(
            backup,
            "weekly-full",
            f"full backup, {weekly_cron} ({timezone})",
            {**scheduled, "level": "full"},
            [weekly],
            ["scheduled"],
        ),
    ]
    for tier in GFS_TIERS:
        when = tier.cron or tier.rrule or ""
        schedule = (
            cron_schedule(tier.cron, timezone, slug=tier.deployment, active=gfs)
            if tier.cron
            else Schedule(rrule=tier.rrule, timezone=timezone, slug=tier.deployment, active=gfs)
        )
        out.append(
            _deploy(
                backup,
                tier.deployment,
                f"GFS {tier.level} backup to pool {tier.deployment} "
                f"(kept {tier.retention_days} days), {when} ({timezone})",
                {**scheduled, "level": tier.level, "pool": tier.pool()},
                [schedule],
                ["scheduled", "gfs"],
            )
        )
    out += [
        _deploy(restore, "restore", "restore files of a source, on demand", where),
        _deploy(serverless_backup, "serverless-backup", "serverless volume backup", where),
        _deploy(restore_image, "restore-image", "write a volume image back", where),
    ]
    timed = {
        "tapeflow-catalog-prune": (
            cron_schedule(prune_cron, timezone, slug="daily-prune"),
            {"days": prune_days},
        ),
        "tapeflow-library-clean": (cron_schedule(clean_cron, timezone, slug="weekly-clean"), {}),
    }
    for module_name in FLOW_MODULES:
        out += _module_deployments(importlib.import_module(module_name), where, timed)
    return out


def _module_deployments(
    module: ModuleType,
    where: dict[str, str | None],
    timed: dict[str, tuple[Schedule, dict[str, Any]]],
) -> list[RunnerDeployment]:
    """One deployment per flow of a maintenance/library/reports module, with the served
    library and catalog where the flow takes them; flows in `timed` also run on their
    schedule, with their extra parameters."""
    out = []
    for flow in module_flows(module):
        name = deployment_name(flow)
        takes = inspect.signature(flow.fn).parameters
        parameters = {k: v for k, v in where.items() if k in takes}
        schedules = []
        if flow.name in timed:
            schedule, extra = timed[flow.name]
            schedules.append(schedule)
            parameters.update(extra)
        doc = " ".join((inspect.getdoc(flow.fn) or name).split("\n\n")[0].split())
        tag = module.__name__.rsplit(".", 1)[-1]
        out.append(_deploy(flow, name, doc, parameters, schedules, [tag]))
    return out


def full_name(deployment: RunnerDeployment) -> str:
    """`<flow name>/<deployment name>`, as `prefect deployment run` takes it."""
    return f"{deployment.flow_name}/{deployment.name}"


def describe(schedule: Any) -> str:
    """One line for a deployment schedule: `cron 0 1 * * 1-6 Europe/Berlin`."""
    body = schedule.schedule
    what = next(
        f"{kind} {getattr(body, kind)}".replace("\n", " ")
        for kind in ("cron", "rrule", "interval")
        if getattr(body, kind, None) is not None
    )
    state = "" if schedule.active else " (inactive)"
    return f"{what} {getattr(body, 'timezone', None) or 'UTC'}{state}"


def _file_entrypoint(deployment: RunnerDeployment) -> str:
    """`flows/backup.py:backup` from the module entrypoint `flows.backup.backup`."""
    module, _, func = (deployment.entrypoint or "").rpartition(".")
    return f"{module.replace('.', '/')}.py:{func}"


def _schedule_yaml(schedule: Any) -> dict[str, Any]:
    """A deployment schedule in prefect.yaml's shape (cron/rrule, timezone, slug, active)."""
    body = schedule.schedule.model_dump(mode="json", exclude_none=True)
    if body.get("day_or") is True:  # the default: leave it out
        del body["day_or"]
    return {**body, "slug": schedule.slug, "active": schedule.active}


def prefect_yaml(deployments: Sequence[RunnerDeployment]) -> dict[str, Any]:
    """prefect.yaml for `prefect deploy --all`: the same deployments on a process work pool;
    the pull step runs each flow in the repository ($TAPEFLOW_REPO, resolved at deploy time,
    or on the worker when unset then)."""
    return {
        "name": "tapeflow",
        "build": None,
        "push": None,
        "pull": [
            {
                "prefect.deployments.steps.set_working_directory": {
                    "directory": "{{ $TAPEFLOW_REPO }}"
                }
            }
        ],
        "deployments": [
            {
                "name": d.name,
                "entrypoint": _file_entrypoint(d),
                "description": d.description,
                "tags": list(d.tags),
                "parameters": dict(d.parameters),
                # null, not []: re-deploying keeps schedules added later (tapeflow job schedule)
                "schedules": [_schedule_yaml(s) for s in d.schedules] or None,
                "work_pool": {"name": WORK_POOL, "work_queue_name": None, "job_variables": {}},
            }
            for d in deployments
        ],
    }


YAML_HEADER = """\
# GENERATED from deployments/registry.py: `python -m deployments.registry --write-yaml`.
# Register on a process work pool (from the repository) and start a worker:
#   prefect work-pool create tapeflow --type process
#   TAPEFLOW_REPO=$PWD prefect deploy --all --prefect-file deployments/prefect.yaml
#   prefect worker start --pool tapeflow
"""


class _PlainDumper(yaml.SafeDumper):
    """YAML without anchors/aliases: each deployment reads on its own."""

    def ignore_aliases(self, data: Any) -> bool:
        return True


def render_prefect_yaml(deployments: Sequence[RunnerDeployment] | None = None) -> str:
    """The text of deployments/prefect.yaml."""
    data = prefect_yaml(deployments if deployments is not None else all_deployments())
    return YAML_HEADER + yaml.dump(data, Dumper=_PlainDumper, sort_keys=False, width=100)


def main(argv: Sequence[str] | None = None) -> int:
    """List the deployments, or write/check deployments/prefect.yaml."""
    parser = argparse.ArgumentParser(prog="python -m deployments.registry")
    parser.add_argument("--write-yaml", action="store_true", help="regenerate prefect.yaml")
    parser.add_argument("--check-yaml", action="store_true", help="exit 1 if it is stale")
    args = parser.parse_args(argv)
    deployments = all_deployments()
    text = render_prefect_yaml(deployments)
    if args.write_yaml:
        PREFECT_YAML.write_text(text)
        print(f"wrote {PREFECT_YAML}")
        return 0
    if args.check_yaml:
        current = PREFECT_YAML.read_text() if PREFECT_YAML.exists() else ""
        if current != text:
            print(f"{PREFECT_YAML} is stale: run python -m deployments.registry --write-yaml")
            return 1
        return 0
    for d in deployments:
        when = "; ".join(describe(s) for s in d.schedules) or "on demand"
        print(f"{full_name(d):<45} {when}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
