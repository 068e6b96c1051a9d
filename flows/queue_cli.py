"""`tapeflow job ...`: the job queue (flows/queue.py) at a terminal.

A job is a deployment (`<flow>/<deployment>`, e.g. `tapeflow-backup/backup`) and its flow runs
(ids). Refused requests (bad cron, unknown timezone, past start...) exit 2 and change nothing.
"""

from __future__ import annotations

import argparse
import json
from datetime import date, datetime
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from prefect.client.schemas.objects import DeploymentSchedule, FlowRun


def _queue() -> ModuleType:
    """flows.queue, imported on first use: other `tapeflow` commands need no Prefect."""
    from flows import queue

    return queue


def parse_params(items: list[str], blob: str | None) -> dict[str, Any]:
    """`--params JSON` then `--param KEY=VALUE` (VALUE as JSON when it parses, else text)."""
    queue = _queue()
    params: dict[str, Any] = {}
    if blob:
        try:
            loaded = json.loads(blob)
        except json.JSONDecodeError as exc:
            raise queue.JobError(f"--params is not JSON: {exc}") from exc
        if not isinstance(loaded, dict):
            raise queue.JobError("--params must be a JSON object")
        params.update(loaded)
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise queue.JobError(f"--param {item!r} is not KEY=VALUE")
        try:
            params[key] = json.loads(value)
        except json.JSONDecodeError:
            params[key] = value
    return params


def parse_time(text: str, what: str) -> datetime:
    """ISO 8601 date-time, e.g. 2026-03-10T01:00 or 2026-03-10T01:00+01:00."""
    queue = _queue()
    try:
        return datetime.fromisoformat(text)
    except ValueError as exc:
        raise queue.ScheduleError(f"{what} {text!r} is not an ISO 8601 date-time") from exc


def parse_date(text: str) -> date:
    """ISO 8601 date, e.g. 2026-12-25."""
    queue = _queue()
    try:
        return date.fromisoformat(text)
    except ValueError as exc:
        raise queue.ScheduleError(f"excluded date {text!r} is not YYYY-MM-DD") from exc


def run_row(run: FlowRun) -> dict[str, Any]:
    """What people need to know about a flow run."""
    return {
        "id": str(run.id),
        "name": run.name,
        "state": run.state.name if run.state else None,
        "scheduled": run.next_scheduled_start_time or run.expected_start_time,
        "parameters": run.parameters,
    }


def schedule_row(s: DeploymentSchedule) -> dict[str, Any]:
    """A deployment schedule as a JSON-able dict."""
    return {
        "slug": s.slug,
        "active": s.active,
        **s.schedule.model_dump(mode="json", exclude_none=True),
        "parameters": s.parameters,
    }


def _print(args: argparse.Namespace, data: Any, text: str) -> None:
    print(json.dumps(data, indent=2, default=str) if args.json else text)


def _print_run(args: argparse.Namespace, verb: str, run: FlowRun) -> None:
    row = run_row(run)
    _print(args, row, f"{verb} {row['id']} ({row['name']}): {row['state']} at {row['scheduled']}")


def cmd_run(args: argparse.Namespace) -> int:
    """Run a deployment now, or once at --at."""
    queue = _queue()
    params = parse_params(args.param, args.params)
    if args.at:
        run = queue.submit_at(args.deployment, parse_time(args.at, "--at"), params)
    else:
        run = queue.run_now(args.deployment, params, wait=None if args.wait else 0)
    _print_run(args, "ran" if args.wait else "submitted", run)
    return 0 if not args.wait or (run.state and run.state.is_completed()) else 1


def cmd_schedule(args: argparse.Namespace) -> int:
    """Add a cron or start+repeat schedule (with excluded days) to a deployment."""
    queue = _queue()
    params = parse_params(args.param, args.params)
    excluded = [d for group in args.exclude for d in group.split(",") if d.strip()]
    if args.cron:
        if args.start or args.every or excluded or args.exclude_date:
            raise queue.ScheduleError("--cron takes no --start/--every/--exclude: put it in cron")
        schedule = queue.cron_schedule(args.cron, args.tz, slug=args.slug, parameters=params)
    else:
        if not (args.start and args.every):
            raise queue.ScheduleError("give --cron, or --start and --every")
        schedule = queue.repeat_schedule(
            parse_time(args.start, "--start"),
            queue.parse_every(args.every),
            args.tz,
            excluded,
            [parse_date(d) for d in args.exclude_date],
            slug=args.slug,
            parameters=params,
        )
    created = queue.add_schedule(args.deployment, schedule)
    _print(args, schedule_row(created), f"{args.deployment}: schedule {created.slug} added")
    return 0


def cmd_schedules(args: argparse.Namespace) -> int:
    """List a deployment's schedules and its next scheduled runs."""
    queue = _queue()
    rows = [schedule_row(s) for s in queue.schedules(args.deployment)]
    upcoming = [run_row(r) for r in queue.upcoming(args.deployment, args.limit)]
    held = queue.is_held(args.deployment)
    lines = [f"{args.deployment}: {'HOLD' if held else 'READY'}"]
    lines += [
        f"  schedule {r['slug']}: {r.get('cron') or r.get('rrule') or r.get('interval')} "
        f"{r.get('timezone') or 'UTC'}{'' if r['active'] else ' (inactive)'}"
        for r in rows
    ]
    lines += [f"  next {r['scheduled']}  {r['id']}" for r in upcoming]
    _print(args, {"held": held, "schedules": rows, "upcoming": upcoming}, "\n".join(lines))
    return 0


def cmd_unschedule(args: argparse.Namespace) -> int:
    """Remove one schedule of a deployment."""
    queue = _queue()
    queue.remove_schedule(args.deployment, args.slug)
    _print(args, {"removed": args.slug}, f"{args.deployment}: schedule {args.slug} removed")
    return 0


def cmd_hold(args: argparse.Namespace) -> int:
    """HOLD (pause) or READY (resume) a deployment's schedules."""
    queue = _queue()
    (queue.hold if args.hold else queue.ready)(args.deployment)
    state = "HOLD" if args.hold else "READY"
    _print(args, {"deployment": args.deployment, "state": state}, f"{args.deployment}: {state}")
    return 0


def cmd_list(args: argparse.Namespace) -> int:
    """Flow runs that started (newest first), or with --scheduled those waiting (soonest)."""
    queue = _queue()
    rows = [run_row(r) for r in queue.runs(args.deployment, args.limit, args.scheduled)]
    text = "\n".join(f"{r['id']}  {r['state']:<12} {r['scheduled']}  {r['name']}" for r in rows)
    _print(args, rows, text or "no flow runs")
    return 0


def cmd_reschedule(args: argparse.Namespace) -> int:
    """Move a scheduled run to another time."""
    queue = _queue()
    _print_run(args, "moved", queue.reschedule(args.run, parse_time(args.at, "--at")))
    return 0


def cmd_resubmit(args: argparse.Namespace) -> int:
    """A new run with a finished run's parameters."""
    queue = _queue()
    run = queue.resubmit(args.run, parse_params(args.param, args.params))
    _print_run(args, "resubmitted as", run)
    return 0


def cmd_cancel(args: argparse.Namespace) -> int:
    """Cancel a run (the master and all its slaves)."""
    queue = _queue()
    _print_run(args, "cancelling", queue.cancel(args.run))
    return 0


def cmd_delete(args: argparse.Namespace) -> int:
    """Delete a flow run (id) or a deployment (`flow/name`)."""
    queue = _queue()
    if "/" in args.job:
        queue.delete_deployment(args.job)
    else:
        queue.delete_run(args.job)
    _print(args, {"deleted": args.job}, f"deleted {args.job}")
    return 0


def cmd_save(args: argparse.Namespace) -> int:
    """Save a deployment or a flow run as a job file."""
    queue = _queue()
    saved = queue.save(args.job, Path(args.file))
    _print(args, saved.to_dict(), f"saved {saved.saved_from} to {args.file}")
    return 0


def cmd_submit(args: argparse.Namespace) -> int:
    """Submit a saved job file: now, or once at --at."""
    queue = _queue()
    when = parse_time(args.at, "--at") if args.at else None
    run = queue.submit(Path(args.file), when, parse_params(args.param, args.params))
    _print_run(args, "submitted", run)
    return 0


def _params(p: argparse.ArgumentParser) -> None:
    p.add_argument("--param", action="append", default=[], help="KEY=VALUE (VALUE: JSON or text)")
    p.add_argument("--params", help="parameters as a JSON object")


def add_commands(top: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    """Add `job ...` to the `tapeflow` command (`common`: --library, --catalog, --json)."""
    job = top.add_parser("job", help="job queue: run, schedule, hold, cancel, save... (Prefect)")
    sub = job.add_subparsers(dest="job_cmd", required=True)

    def cmd(name: str, func: Any, help_text: str) -> argparse.ArgumentParser:
        p = sub.add_parser(name, parents=[common], help=help_text)
        p.set_defaults(func=func)
        return p

    p = cmd("run", cmd_run, "run a deployment now (or once at --at)")
    p.add_argument("deployment", help="<flow>/<deployment>, e.g. tapeflow-backup/backup")
    p.add_argument("--at", help="one-off start time, ISO 8601 (naive: this machine's time)")
    p.add_argument("--wait", action="store_true", help="wait for the run to end")
    _params(p)

    p = cmd("schedule", cmd_schedule, "add a schedule: --cron, or --start + --every + --exclude")
    p.add_argument("deployment")
    p.add_argument("--cron", help='cron string, e.g. "0 1 * * 1-6"')
    p.add_argument("--start", help="first run, ISO 8601 (naive: wall clock in --tz)")
    p.add_argument("--every", help="repeat interval: 30m, 6h, 1d, 1w")
    p.add_argument("--exclude", action="append", default=[], help="weekdays to skip: sat,sun")
    p.add_argument("--exclude-date", action="append", default=[], help="a date to skip")
    p.add_argument("--tz", default="UTC", help="IANA timezone, e.g. Europe/Berlin")
    p.add_argument("--slug", required=True, help="the schedule's name (to remove it later)")
    _params(p)

    p = cmd("schedules", cmd_schedules, "a deployment's schedules, HOLD/READY, next runs")
    p.add_argument("deployment")
    p.add_argument("--limit", type=int, default=10)

    p = cmd("unschedule", cmd_unschedule, "remove a schedule of a deployment")
    p.add_argument("deployment")
    p.add_argument("slug")

    cmd("hold", cmd_hold, "HOLD: pause a deployment's schedules").add_argument("deployment")
    sub.choices["hold"].set_defaults(hold=True)
    cmd("ready", cmd_hold, "READY: resume a deployment's schedules").add_argument("deployment")
    sub.choices["ready"].set_defaults(hold=False)

    p = cmd("list", cmd_list, "flow runs: started or ended (or --scheduled: waiting)")
    p.add_argument("deployment", nargs="?")
    p.add_argument("--scheduled", action="store_true", help="the runs still waiting")
    p.add_argument("--limit", type=int, default=20)

    p = cmd("reschedule", cmd_reschedule, "move a scheduled run to --at")
    p.add_argument("run", help="flow run id")
    p.add_argument("--at", required=True)

    p = cmd("resubmit", cmd_resubmit, "rerun a finished run with the same parameters")
    p.add_argument("run")
    _params(p)

    cmd("cancel", cmd_cancel, "cancel a run: master and all slaves").add_argument("run")
    cmd("delete", cmd_delete, "delete a flow run (id) or a deployment (flow/name)").add_argument(
        "job"
    )

    p = cmd("save", cmd_save, "save a deployment or a flow run as a job file (.yaml/.json)")
    p.add_argument("job", help="<flow>/<deployment> or a flow run id")
    p.add_argument("file")

    p = cmd("submit", cmd_submit, "submit a saved job file (now or once at --at)")
    p.add_argument("file")
    p.add_argument("--at")
    _params(p)
