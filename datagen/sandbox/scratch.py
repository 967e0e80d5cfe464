"""Emptying what cells wrote: removal that a cell's ``chmod`` cannot stop.

Used on both sides: the process-mode parent removes a worker's scratch dir, the jail empties
/scratch, /tmp and /dev/shm between sessions. Standard library only (the jail imports it).
"""

from __future__ import annotations

import os
import shutil
import stat
from typing import Any

__all__ = ["remove"]


def remove(path: str) -> None:
    """Remove the file, link or directory tree at ``path`` as far as possible; never raises.

    Cleanup must not fail the caller: what cannot be removed stays.
    """

    def fix_perms(func: Any, p: str, _exc: Any) -> None:
        # A cell may chmod its files and dirs read-only: make the parent (and a dir itself)
        # writable, then retry a removal; a dir that could not be listed (rmtree's os.open or
        # os.scandir, which take other arguments) is retried by the second pass below.
        try:
            os.chmod(os.path.dirname(p), stat.S_IRWXU)
            if os.path.isdir(p) and not os.path.islink(p):
                os.chmod(p, stat.S_IRWXU)
            if func in (os.unlink, os.rmdir):
                func(p)
        except OSError:
            pass

    try:
        if os.path.isdir(path) and not os.path.islink(path):
            shutil.rmtree(path, onerror=fix_perms)
            if os.path.lexists(path):  # a dir it could list only once fix_perms opened it
                shutil.rmtree(path, onerror=fix_perms)
        else:
            os.unlink(path)
    except OSError:
        pass
