"""Host-side views of processes, for the sandbox tests: alive or not, what a jail holds."""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from pathlib import Path


def alive(pid: int) -> bool:
    """True if pid exists and is not a zombie."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def _children(pid: int) -> list[int]:
    out: list[int] = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        try:
            out += [int(c) for c in (task / "children").read_text().split()]
        except OSError:
            pass
    return out


def _ns_pid(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("NSpid:"):
            return int(line.split()[-1])
    raise OSError(pid)


def jail_processes(bwrap_pid: int) -> dict[int, int]:
    """Every live process in the pid namespace of the jail that ``bwrap_pid`` (the bwrap
    process a Session reports as its pid) started: host pid -> pid inside the jail.

    Between sessions a jail holds two: pid 1 (bwrap) and the jail; during a session also
    the session's worker (a fork of the jail) and whatever its cells started.
    """
    inits = _children(bwrap_pid)
    if not inits:
        return {}
    ns = os.readlink(f"/proc/{inits[0]}/ns/pid")
    found = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if os.readlink(entry / "ns" / "pid") == ns and alive(int(entry.name)):
                    found[int(entry.name)] = _ns_pid(int(entry.name))
            except OSError:
                pass
    return found


def eventually(check: Callable[[], bool], seconds: float = 5.0) -> bool:
    """Poll ``check`` until it holds (True) or ``seconds`` pass (False)."""
    deadline = time.monotonic() + seconds
    while not check():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.01)
    return True

