"""The venv the verl tests run in: tests/verl/requirements.txt, built once and then reused.

The project's test venv never gets verl (its ~150 packages, torch included, would weigh on every
other test and pin torch for everyone), so the verl side runs in a venv of its own, kept in
``$XDG_CACHE_HOME/codedance-datagen/verl-<hash>`` (``~/.cache`` by default; the hash covers the
requirements file and the Python version, so a new pin builds a new venv). Concurrent test runs
(several checkouts on one machine) share it: the first builds it under a file lock, the others
wait. ``DATAGEN_VERL_ENV`` names another folder to use.

The project is not installed into it: the runs put the checkout on ``PYTHONPATH``, which is
what an editable install amounts to, so one cached venv serves every checkout at once.

``python tests/verl/verl_env.py`` builds (or finds) the venv and prints its python.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import platform
import shutil
import subprocess
import sys
import time
from pathlib import Path

__all__ = ["REQUIREMENTS", "REQUIRED_VAR", "EnvUnavailable", "ensure_env", "env_dir"]

REQUIREMENTS = Path(__file__).with_name("requirements.txt")
ENV_VAR = "DATAGEN_VERL_ENV"
REQUIRED_VAR = "DATAGEN_REQUIRE_VERL"
"""Set to 1 (CI does) to fail, not skip, when the venv cannot be built."""
_MARKER = ".datagen-complete"
_INSTALL_TIMEOUT = 1800.0


class EnvUnavailable(RuntimeError):
    """The venv cannot be built here (no package registry, no CPU torch wheel, wrong Python)."""


def env_dir() -> Path:
    """Where the venv of the current requirements lives."""
    if os.environ.get(ENV_VAR):
        return Path(os.environ[ENV_VAR])
    key = hashlib.sha256(REQUIREMENTS.read_bytes()
                         + f"{sys.version_info[:2]} {platform.machine()}".encode()).hexdigest()
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return cache / "codedance-datagen" / f"verl-{key[:16]}"


def _python(env: Path) -> Path:
    return env / "bin" / "python"


def ensure_env() -> tuple[Path, float]:
    """The venv's python, building the venv first if needed; and the seconds the build took
    (0.0 when it was already there). Raises EnvUnavailable with pip's last lines."""
    if not (3, 10) <= sys.version_info[:2] <= (3, 12):
        raise EnvUnavailable("verl 0.9.1 needs Python 3.10-3.12, this is "
                             f"{platform.python_version()}")
    env = env_dir()
    env.parent.mkdir(parents=True, exist_ok=True)
    with open(env.parent / f"{env.name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # one builder; the others wait, then reuse
        if (env / _MARKER).is_file() and _python(env).exists():
            return _python(env), 0.0
        shutil.rmtree(env, ignore_errors=True)  # a build that died halfway
        start = time.monotonic()
        try:
            subprocess.run([sys.executable, "-m", "venv", str(env)], check=True,
                           capture_output=True, text=True, timeout=300)
            subprocess.run([str(_python(env)), "-m", "pip", "install", "--quiet",
                            "--disable-pip-version-check", "-r", str(REQUIREMENTS)],
                           check=True, capture_output=True, text=True, timeout=_INSTALL_TIMEOUT)
        except subprocess.CalledProcessError as exc:
            shutil.rmtree(env, ignore_errors=True)
            tail = "\n".join((exc.stderr or exc.stdout or "").strip().splitlines()[-6:])
            raise EnvUnavailable(f"cannot build the verl venv from {REQUIREMENTS.name}: "
                                 f"{tail}") from exc
        except subprocess.TimeoutExpired as exc:
            shutil.rmtree(env, ignore_errors=True)
            raise EnvUnavailable(f"building the verl venv took over {exc.timeout:.0f} s") from exc
        seconds = time.monotonic() - start
        (env / _MARKER).write_text(json.dumps({"seconds": round(seconds, 1),
                                               "requirements": str(REQUIREMENTS)}) + "\n")
        return _python(env), seconds


if __name__ == "__main__":
    try:
        python, took = ensure_env()
    except EnvUnavailable as exc:
        sys.exit(str(exc))
    print(python if not took else f"{python}  (built in {took:.0f} s)")
