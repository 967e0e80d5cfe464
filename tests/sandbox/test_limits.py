"""Memory per jail: a cgroup v2 limit where this process may make cgroups, else RLIMIT_AS.

The machine the suite runs on may offer neither a unified hierarchy nor the memory controller,
so the cgroup side is checked on a stand-in tree with the files the kernel would show.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from datagen.sandbox import limits


@pytest.fixture()
def fake_root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    own = Path("/proc/self/cgroup").read_text().splitlines()
    path = next((line[3:].lstrip("/") for line in own if line.startswith("0::")), None)
    if path is None:
        pytest.skip("no cgroup v2 entry in /proc/self/cgroup")
    root = tmp_path / "cgroup"
    mine = root / path
    mine.mkdir(parents=True, exist_ok=True)
    (root / "cgroup.controllers").write_text("cpu memory pids\n")
    (mine / "cgroup.controllers").write_text("cpu memory pids\n")
    (mine / "cgroup.subtree_control").write_text("")
    monkeypatch.setattr(limits, "CGROUP_ROOT", root)
    limits._parent.cache_clear()
    yield mine
    limits._parent.cache_clear()


def test_a_jail_gets_a_cgroup_with_its_memory_limit(fake_root: Path) -> None:
    assert limits.memory_limit_kind() == "cgroup v2 per jail"
    assert "+memory" in (fake_root / "cgroup.subtree_control").read_text()  # enabled for it
    group = limits.JailCgroup("datagen-jail-test", 1024)
    assert group.path == fake_root / "datagen-jail-test"
    assert int((group.path / "memory.max").read_text()) == (1024 + 512) << 20
    # A process without children: the stand-in cgroup.procs keeps the last pid written.
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        group.adopt(child.pid)
    finally:
        child.kill()
        child.wait()
    assert (group.path / "cgroup.procs").read_text() == str(child.pid)


def test_without_the_memory_controller_the_limit_is_per_process(fake_root: Path) -> None:
    (fake_root / "cgroup.controllers").write_text("cpu pids\n")
    assert limits.memory_limit_kind() == "RLIMIT_AS per process"
    group = limits.JailCgroup("datagen-jail-test", 1024)
    assert group.path is None and not (fake_root / "datagen-jail-test").exists()
    group.adopt(os.getpid())  # nothing to do, and no error
    group.remove()
