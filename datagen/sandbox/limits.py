"""Memory per jail: a cgroup v2 limit when this process may make one, else ``RLIMIT_AS``.

Every session worker has ``RLIMIT_AS`` (a huge allocation raises ``MemoryError`` in the cell),
which bounds one process, not a jail: a cell that forks could hold up to ``RLIMIT_NPROC``
times as much. Where the unified cgroup hierarchy offers the memory controller to this
process's cgroup and this process may enable it for children (root in its cgroup namespace,
or a delegated cgroup whose own processes sit in leaves), each jail gets a child cgroup whose
``memory.max`` bounds the jail as a whole, tmpfs pages included; the kernel then OOM-kills
inside that jail only. ``memory_limit_kind()`` says which of the two holds, for the card.

The jail's processes are moved into its cgroup once it says it is ready: at that moment they
are bwrap, its pid 1 and the jail's interpreter, and every session worker is forked later, so
each one starts inside. Standard library only.
"""

from __future__ import annotations

import functools
import logging
import os
from pathlib import Path

__all__ = ["JailCgroup", "memory_limit_kind"]

log = logging.getLogger(__name__)

CGROUP_ROOT = Path("/sys/fs/cgroup")
# Above the workers' RLIMIT_AS: the jail's own interpreter and the tmpfs mounts count too.
_JAIL_OVERHEAD_MB = 512


def _own_cgroup(root: Path) -> Path | None:
    try:
        lines = Path("/proc/self/cgroup").read_text().splitlines()
    except OSError:
        return None
    for line in lines:
        if line.startswith("0::"):
            return root / line[3:].lstrip("/")
    return None


@functools.cache
def _parent() -> Path | None:
    """The cgroup under which jail cgroups can be made with a memory limit, or None."""
    root = CGROUP_ROOT
    own = _own_cgroup(root)
    if own is None or not (root / "cgroup.controllers").is_file():
        return None  # no unified hierarchy at the usual place (cgroup v1 or hybrid)
    try:
        if "memory" not in (own / "cgroup.controllers").read_text().split():
            return None
        if "memory" not in (own / "cgroup.subtree_control").read_text().split():
            # Refused (EBUSY) when processes live in ``own`` itself, unless it is the root.
            (own / "cgroup.subtree_control").write_text("+memory")
        probe = own / f"datagen-probe-{os.getpid()}"
        probe.mkdir(exist_ok=True)
        probe.rmdir()
    except OSError:
        return None
    return own


def memory_limit_kind() -> str:
    """``"cgroup v2 per jail"`` or ``"RLIMIT_AS per process"``."""
    return "cgroup v2 per jail" if _parent() is not None else "RLIMIT_AS per process"


class JailCgroup:
    """One jail's cgroup (when cgroups can be had): made, filled, removed."""

    def __init__(self, name: str, memory_mb: int) -> None:
        parent = _parent()
        self.path: Path | None = None
        if parent is None:
            return
        path = parent / name
        try:
            path.mkdir(exist_ok=True)
            (path / "memory.max").write_text(str((memory_mb + _JAIL_OVERHEAD_MB) << 20))
            swap = path / "memory.swap.max"
            if swap.exists():
                swap.write_text("0")
        except OSError as exc:
            log.info("sandbox: no cgroup for a jail (%s); RLIMIT_AS still holds", exc)
            self.remove_dir(path)
            return
        self.path = path

    def adopt(self, pid: int) -> None:
        """Move ``pid`` and its descendants into the cgroup."""
        if self.path is None:
            return
        for p in _tree(pid):
            try:
                (self.path / "cgroup.procs").write_text(str(p))
            except OSError:
                pass  # it exited meanwhile

    def remove(self) -> None:
        """Remove the cgroup once the jail is gone (its processes must have exited)."""
        if self.path is not None:
            self.remove_dir(self.path)
            self.path = None

    @staticmethod
    def remove_dir(path: Path) -> None:
        try:
            path.rmdir()
        except OSError:
            pass


def _tree(pid: int) -> list[int]:
    """``pid`` and its descendants, parents first."""
    found, todo = [], [pid]
    while todo:
        p = todo.pop()
        found.append(p)
        try:
            tasks = os.listdir(f"/proc/{p}/task")
        except OSError:
            continue
        for t in tasks:
            try:
                todo += [int(c) for c in Path(f"/proc/{p}/task/{t}/children").read_text().split()]
            except OSError:
                continue
    return found
