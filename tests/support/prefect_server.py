"""A real ``prefect server start`` on 127.0.0.1 for tests that need one, stopped afterwards."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx

__all__ = ["PrefectServer", "prefect_server", "stop_group"]


@dataclass(frozen=True, slots=True)
class PrefectServer:
    """A running server: its API URL and the environment that points a process at it."""

    api_url: str
    env: dict[str, str]


def _free_port() -> int:
    with contextlib.closing(socket.socket()) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def stop_group(proc: subprocess.Popen[bytes], sig: int = signal.SIGTERM,
               wait: float = 15.0) -> None:
    """Stop ``proc`` and every process it started (it must lead its own session)."""
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, sig)
        try:
            proc.wait(wait)
        except subprocess.TimeoutExpired:
            pass
    with contextlib.suppress(ProcessLookupError):  # children left behind, if any
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()


@contextlib.contextmanager
def prefect_server(home: Path, timeout: float = 90.0) -> Iterator[PrefectServer]:
    """Start a Prefect server with its own ``PREFECT_HOME`` and wait until it answers."""
    port = _free_port()
    api_url = f"http://127.0.0.1:{port}/api"
    env = {**os.environ, "PREFECT_HOME": str(home), "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
           "PREFECT_UI_ENABLED": "false", "PREFECT_API_URL": api_url}
    log = open(home.parent / f"prefect-server-{port}.log", "wb")  # noqa: SIM115
    proc = subprocess.Popen(
        [sys.executable, "-m", "prefect", "server", "start", "--host", "127.0.0.1",
         "--port", str(port)],
        env={k: v for k, v in env.items() if k != "PREFECT_API_URL"}, stdout=log,
        stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline = time.monotonic() + timeout
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"prefect server exited with {proc.returncode}: "
                                   + Path(log.name).read_text()[-2000:])
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{api_url}/health", timeout=2).status_code == 200:
                    break
            if time.monotonic() > deadline:
                raise RuntimeError("prefect server did not answer in time")
            time.sleep(0.3)
        yield PrefectServer(api_url=api_url, env=env)
    finally:
        stop_group(proc)
        log.close()
