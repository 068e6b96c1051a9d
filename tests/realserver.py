"""A real `prefect server start` (API, UI and services such as the scheduler) for tests.

The test harness's ephemeral server runs no scheduler and serves no UI; tests that need
either start this one in its own process group, with a temporary PREFECT_HOME and SQLite db.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType
from typing import Self


class ServerStartError(RuntimeError):
    """The server did not become healthy in time (its log is in the message)."""


def free_port() -> int:
    """A TCP port nobody listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def stop_group(proc: subprocess.Popen[bytes] | None, grace: float) -> None:
    """SIGTERM `proc`'s process group, SIGKILL it after `grace` s, then kill whatever children
    outlived the leader."""
    if proc is None or proc.poll() is not None:
        return
    pgid = os.getpgid(proc.pid)
    os.killpg(pgid, signal.SIGTERM)
    try:
        proc.wait(timeout=grace)
    except subprocess.TimeoutExpired:
        os.killpg(pgid, signal.SIGKILL)
        proc.wait(timeout=30)
    try:
        os.killpg(pgid, signal.SIGKILL)
    except ProcessLookupError:
        pass


class RealServer:
    """`prefect server start --host 127.0.0.1 --port <free>` in a child process group."""

    def __init__(self, home: Path, startup_timeout: float = 180.0) -> None:
        self.home = home
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.api_url = f"{self.url}/api"
        self.log_path = home / "server.log"
        self.startup_timeout = startup_timeout
        self.proc: subprocess.Popen[bytes] | None = None

    def env(self) -> dict[str, str]:
        """The server's environment: its own home and database, no telemetry."""
        env = {
            k: v
            for k, v in os.environ.items()
            if not k.startswith("PREFECT_") or k == "PREFECT_LOGGING_LEVEL"
        }
        env.update(
            PREFECT_HOME=str(self.home / "prefect-home"),
            PREFECT_SERVER_DATABASE_CONNECTION_URL=(
                f"sqlite+aiosqlite:///{self.home / 'prefect.db'}"
            ),
            PREFECT_SERVER_ANALYTICS_ENABLED="false",
            # the scheduler's main loop (default 60 s): scheduled runs appear sooner in tests
            PREFECT_SERVER_SERVICES_SCHEDULER_LOOP_SECONDS="10",
            # runs made ahead per schedule (default 3): weeks of them show the excluded days
            PREFECT_SERVER_SERVICES_SCHEDULER_MIN_RUNS="30",
            PREFECT_SERVER_UI_ENABLED="true",
            PREFECT_UI_API_URL=self.api_url,
            PREFECT_API_URL=self.api_url,
        )
        return env

    def start(self) -> None:
        """Start the server and wait for /api/health."""
        self.home.mkdir(parents=True, exist_ok=True)
        log = self.log_path.open("wb")
        try:
            self.proc = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "prefect",
                    "server",
                    "start",
                    "--host",
                    "127.0.0.1",
                    "--port",
                    str(self.port),
                ],
                env=self.env(),
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,  # its own process group: teardown kills all of it
            )
        finally:
            log.close()
        deadline = time.monotonic() + self.startup_timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise ServerStartError(f"prefect server exited: {self.log()}")
            if self.healthy():
                return
            time.sleep(0.5)
        self.stop()
        raise ServerStartError(f"prefect server not healthy after {self.startup_timeout} s")

    def healthy(self) -> bool:
        """True when /api/health answers 200."""
        try:
            with urllib.request.urlopen(f"{self.api_url}/health", timeout=5) as resp:
                return resp.status == 200
        except (urllib.error.URLError, OSError):
            return False

    def log(self) -> str:
        """The server's output so far (last 4000 characters)."""
        return self.log_path.read_text(errors="replace")[-4000:]

    def stop(self) -> None:
        """Terminate the whole process group (uvicorn workers, services); kill it if it lingers."""
        stop_group(self.proc, grace=30)

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


class ServedDeployments:
    """`python deployments/serve.py` against `api_url`, as the README says, in its own process
    group; entering waits until the deployments are registered."""

    def __init__(
        self,
        api_url: str,
        home: Path,
        wait_for: str,
        args: Sequence[str] = (),
        timeout: float = 240.0,
    ) -> None:
        self.api_url = api_url
        self.home = home
        self.wait_for = wait_for  # a deployment registered late, e.g. restore-image
        self.args = list(args)  # serve.py's options, e.g. --library/--catalog
        self.timeout = timeout
        self.log_path = home / "serve.log"
        self.proc: subprocess.Popen[bytes] | None = None

    def registered(self) -> bool:
        """True when the deployment `wait_for` exists on the server."""
        from prefect import get_client
        from prefect.exceptions import ObjectNotFound

        with get_client(sync_client=True) as client:
            try:
                client.read_deployment_by_name(self.wait_for)
            except ObjectNotFound:
                return False
        return True

    def __enter__(self) -> Self:
        from prefect.settings import PREFECT_API_URL, temporary_settings

        self.home.mkdir(parents=True, exist_ok=True)
        env = {
            **os.environ,
            "PREFECT_API_URL": self.api_url,
            "TAPEFLOW_HOME": str(self.home / "home"),
        }
        repo = Path(__file__).resolve().parent.parent
        with self.log_path.open("wb") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "deployments/serve.py", *self.args],
                cwd=repo,
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        deadline = time.monotonic() + self.timeout
        with temporary_settings({PREFECT_API_URL: self.api_url}):
            while not self.registered():
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    self.stop()
                    tail = self.log_path.read_text(errors="replace")[-3000:]
                    raise ServerStartError(f"serve.py did not register {self.wait_for}: {tail}")
                time.sleep(0.5)
        return self

    def stop(self) -> None:
        """SIGTERM (the runner pauses its schedules), then kill the group (the flow-run processes
        the runner started) if it lingers."""
        stop_group(self.proc, grace=60)

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
