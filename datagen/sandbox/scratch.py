"""Emptying what cells wrote: removal that a cell's ``chmod`` cannot stop, and that never walks
what the jail only reads.

Used on both sides: the process-mode parent removes a worker's scratch dir, the jail empties
/scratch, /tmp and /dev/shm between sessions. A venv or checkout that lives in the host's temp
folder is bound read-only into the jail's /tmp (``bwrap._layout``); walking it after every
session cost ~220 ms per session for a 40,000-entry venv (every unlink and chmod failing), so
``empty_dir`` skips those binds, the directories leading to them, and anything on another
device. Both functions return the number of entries they looked at, so a test can tell a walk
of the session's files from a walk of a bind. Standard library only (the jail imports it).
"""

from __future__ import annotations

import os
import stat
from collections.abc import Collection

__all__ = ["empty_dir", "remove"]


def _force(func: object, path: str) -> bool:
    """Call ``func(path)`` (unlink or rmdir); after a permission error make the parent
    (and a dir itself) writable and try once more. True if it worked."""
    for attempt in range(2):
        try:
            func(path)  # type: ignore[operator]
            return True
        except PermissionError:
            if attempt:
                return False
            try:  # a cell may chmod its files and dirs read-only
                os.chmod(os.path.dirname(path) or ".", stat.S_IRWXU)
                if os.path.isdir(path) and not os.path.islink(path):
                    os.chmod(path, stat.S_IRWXU)
            except OSError:
                return False
        except OSError:
            return False
    return False


def _listdir(path: str) -> list[str]:
    for attempt in range(2):
        try:
            return os.listdir(path)
        except PermissionError:
            if attempt:
                return []
            try:  # a dir the cell made unreadable
                os.chmod(path, stat.S_IRWXU)
            except OSError:
                return []
        except OSError:
            return []
    return []


def remove(path: str) -> int:
    """Remove the file, link or directory tree at ``path`` as far as possible; never raises.

    Cleanup must not fail the caller: what cannot be removed stays. Returns the entries looked
    at. Iterative, so a cell's deeply nested tree cannot exhaust the recursion limit.
    """
    seen = 0
    stack: list[tuple[str, bool]] = [(path, False)]  # (path, its children are gone)
    while stack:
        p, emptied = stack.pop()
        if emptied:
            _force(os.rmdir, p)
            continue
        try:
            st = os.lstat(p)
        except OSError:
            continue
        seen += 1
        if not stat.S_ISDIR(st.st_mode):
            _force(os.unlink, p)
            continue
        names = _listdir(p)
        stack.append((p, True))
        stack.extend((os.path.join(p, n), False) for n in names)
    return seen


def empty_dir(top: str, keep: Collection[str] = ()) -> int:
    """Remove everything in ``top`` but the paths in ``keep`` (read-only binds), the
    directories leading to them and other mounts; returns the entries looked at."""
    kept = set(keep)
    parents = {os.path.dirname(p) for p in kept}
    for p in list(parents):
        while p not in ("/", ""):
            parents.add(p)
            p = os.path.dirname(p)
    try:
        device = os.lstat(top).st_dev
        names = os.listdir(top)
    except OSError:
        return 0
    seen = 0
    for name in names:
        path = os.path.join(top, name)
        if path in kept:
            continue
        if path in parents:
            seen += 1 + empty_dir(path, kept)
            continue
        try:
            if os.lstat(path).st_dev != device:  # a mount point: not the session's to empty
                continue
        except OSError:
            continue
        seen += remove(path)
    return seen
