"""Python callables the flow tests use as pre/post operations (`py:tests.flowhooks:...`)."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any


def _log(kind: str, payload: dict[str, Any]) -> None:
    path = Path(os.environ["TAPEFLOW_TEST_EVENTS"])
    with path.open("a") as fh:
        fh.write(json.dumps({"kind": kind, "time": time.time(), **payload}) + "\n")


def pre() -> None:
    """Record when the pre operation ran."""
    _log("pre", {})


def post(outcome: dict[str, Any]) -> None:
    """Record when the post operation ran and what it was told."""
    _log("post", {"outcome": outcome})


def create_missing(outcome: dict[str, Any]) -> None:
    """Post operation that repairs the failed source so a retry can succeed."""
    Path(os.environ["TAPEFLOW_TEST_MISSING"]).mkdir(parents=True, exist_ok=True)
    (Path(os.environ["TAPEFLOW_TEST_MISSING"]) / "late.txt").write_text("arrived late\n")


def events() -> list[dict[str, Any]]:
    """Everything recorded so far."""
    path = Path(os.environ["TAPEFLOW_TEST_EVENTS"])
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []
