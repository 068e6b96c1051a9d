"""Pre and post operations of a job: shell commands or Python callables.

An operation is a string: `py:package.module:function` calls that function (with the job's
outcome for post operations), anything else runs in a shell with the outcome in TAPEFLOW_*
environment variables. A failing operation raises OperationFailed.
"""

from __future__ import annotations

import importlib
import os
import subprocess
from collections.abc import Callable, Mapping
from typing import Any


class OperationFailed(RuntimeError):
    """A pre or post operation exited non-zero or raised."""


def resolve(op: str) -> Callable[..., Any] | None:
    """The callable named by `py:module:function`, or None for a shell command."""
    if not op.startswith("py:"):
        return None
    target = op[3:]
    module_name, _, attr = target.partition(":")
    if not module_name or not attr:
        raise ValueError(f"{op!r}: expected py:package.module:function")
    module = importlib.import_module(module_name)
    fn = getattr(module, attr, None)
    if not callable(fn):
        raise ValueError(f"{op!r}: {attr} is not a callable in {module_name}")
    return fn


def run_operation(op: str, outcome: Mapping[str, Any] | None = None, timeout: float = 3600) -> str:
    """Run one operation; returns its output (shell) or repr of its return value (callable)."""
    fn = resolve(op)
    if fn is not None:
        try:
            value = fn(dict(outcome)) if outcome is not None else fn()
        except Exception as exc:
            raise OperationFailed(f"{op}: {type(exc).__name__}: {exc}") from exc
        return repr(value)
    env = dict(os.environ)
    for key, value in (outcome or {}).items():
        env[f"TAPEFLOW_{key.upper()}"] = str(value)
    proc = subprocess.run(
        op, shell=True, capture_output=True, text=True, env=env, timeout=timeout, check=False
    )
    if proc.returncode != 0:
        raise OperationFailed(
            f"{op!r} exited {proc.returncode}: {(proc.stderr or proc.stdout).strip()[-500:]}"
        )
    return proc.stdout
