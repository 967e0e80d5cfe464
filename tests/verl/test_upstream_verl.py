"""The code tool and the reward in upstream verl 0.9.1 (versions: tests/verl/requirements.txt).

verl is not installed in the project's venv, so these tests build (once, cached; see
``verl_env.py``) a venv with verl 0.9.1 and CPU torch and run ``verl_checks.py`` there against
an RL set and an SFT row built here (the build's stack is not in that venv). Without a package
registry they skip, unless ``DATAGEN_REQUIRE_VERL=1`` (set by ``.ci/run``) makes that a
failure. Cold: a few minutes to build the venv; warm: ~1 min.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from datagen.check.verify import verify_trajectory
from datagen.pipeline.rollout import rollout
from datagen.pipeline.rows import sft_row
from datagen.sandbox import Sandbox
from datagen.teachers.scripted import ScriptedTeacher
from tests.support.rl_sets import rl_rows, rl_tasks, write_rl_set
from tests.verl.verl_env import REQUIRED_VAR, REQUIREMENTS, EnvUnavailable, ensure_env

pytestmark = pytest.mark.slow

CHECKOUT = Path(__file__).resolve().parents[2]
CHECKS = Path(__file__).with_name("verl_checks.py")
TRAINER_REQUIREMENTS = CHECKOUT / "templates" / "verl" / "trainer-requirements.txt"


def _unavailable(reason: str) -> None:
    if os.environ.get(REQUIRED_VAR) == "1":
        pytest.fail(f"{reason} ({REQUIRED_VAR}=1)")
    pytest.skip(reason)


@pytest.fixture(scope="module")
def verl_python() -> Path:
    """The python of the verl venv, built on first use."""
    try:
        python, seconds = ensure_env()
    except EnvUnavailable as exc:
        _unavailable(str(exc))
    if seconds:
        print(f"built the verl venv in {seconds:.0f} s")
    return python


def _env(tmp_path: Path, **extra: str) -> dict[str, str]:
    """The checkout on PYTHONPATH (as an editable install would put it), caches in tmp_path,
    no Hub access."""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    env.update(PYTHONPATH=str(CHECKOUT), HF_HUB_OFFLINE="1",
               HF_DATASETS_CACHE=str(tmp_path / "hf-datasets"), **extra)
    return env


def _write_sft_row(path: Path) -> Path:
    """The SFT row ``datagen build`` makes of the task of the first RL row (``rl_rows(1)[0]``):
    the scripted teacher's trajectory, verified; as JSON (the images left out)."""
    task = rl_tasks(1)[0]
    with Sandbox(timeout=15.0) as sandbox:
        traj = rollout(task, ScriptedTeacher(), sandbox)
        verdict = verify_trajectory(traj, 6, sandbox)
    assert verdict.kept, verdict
    row = sft_row(traj, verdict)
    path.write_text(json.dumps({k: v for k, v in row.items() if k != "images"}))
    return path


def _pins(lines: list[str]) -> dict[str, str]:
    pins = {}
    for line in lines:
        line = line.split("#", 1)[0].strip()
        if "==" in line:
            name, version = line.split("==", 1)
            pins[canonicalize_name(name)] = version
    return pins


def test_the_tool_and_the_reward_work_in_verls_agent_loop(verl_python: Path,
                                                          tmp_path: Path) -> None:
    folder = write_rl_set(tmp_path / "rl", rl_rows(1))  # a chart, a geometry, a search scene
    sft = _write_sft_row(tmp_path / "sft-row.json")
    report = tmp_path / "fifty.json"
    proc = subprocess.run(
        [str(verl_python), "-m", "pytest", str(CHECKS), "--noconftest", "-p", "no:cacheprovider",
         "-q", "-s", "-W", "ignore::DeprecationWarning"],
        cwd=CHECKOUT, env=_env(tmp_path, DATAGEN_RL_SET=str(folder), DATAGEN_SFT_ROW=str(sft),
                               DATAGEN_VERL_REPORT=str(report)),
        capture_output=True, text=True, timeout=900)
    tail = proc.stdout[-8000:] + proc.stderr[-3000:]
    assert proc.returncode == 0, tail
    assert re.search(r"^12 passed", proc.stdout, re.MULTILINE), tail
    fifty = json.loads(report.read_text())
    print("fifty trajectories through ToolAgentLoop._call_tool:", fifty)
    assert fifty["own_state"] == 50 and fifty["foreign_state"] == 0
    assert fifty["open_at_end"] == 0 and fifty["busy_jails_at_end"] == 0


def test_installing_the_project_changes_none_of_verls_pins(verl_python: Path,
                                                           tmp_path: Path) -> None:
    """A full install (Prefect and all) into the verl venv, as a dry run: nothing verl 0.9.1
    pins a version of moves, and every requirement of verl[verl-core] still holds. What does
    move (packages verl leaves unpinned, which Prefect caps) is named in the README."""
    report = tmp_path / "report.json"
    proc = subprocess.run(
        [str(verl_python), "-m", "pip", "install", "--dry-run", "--quiet", "--report",
         str(report), "--disable-pip-version-check", str(CHECKOUT)],
        env=_env(tmp_path), capture_output=True, text=True, timeout=600)
    if proc.returncode != 0:
        _unavailable("pip cannot resolve the project here: " + proc.stderr.strip()[-500:])
    probe = ("import importlib.metadata as m, json; print(json.dumps({'requires': "
             "m.requires('verl'), 'installed': {d.metadata['Name']: d.version "
             "for d in m.distributions()}}))")
    out = json.loads(subprocess.run([str(verl_python), "-c", probe], env=_env(tmp_path),
                                    capture_output=True, text=True, check=True).stdout)
    installed = {canonicalize_name(n): v for n, v in out["installed"].items()}
    verl_requires = [r for r in map(Requirement, out["requires"])
                     if r.marker is None or r.marker.evaluate({"extra": "verl-core"})]
    would = {canonicalize_name(i["metadata"]["name"]): i["metadata"]["version"]
             for i in json.loads(report.read_text())["install"]}
    would.pop("codedance-datagen")
    changed = {n: v for n, v in would.items() if n in installed and installed[n] != v}
    pinned = {canonicalize_name(r.name) for r in verl_requires if str(r.specifier)}
    assert not changed.keys() & (pinned | {"verl", "torch"}), changed
    for req in verl_requires:
        name = canonicalize_name(req.name)
        assert req.specifier.contains(changed.get(name, installed[name]), prereleases=True)
    readme = (CHECKOUT / "README.md").read_text(encoding="utf-8")
    assert all(f"`{name}`" in readme for name in changed), changed
    added = sorted(set(would) - set(installed))
    print(f"a full install adds {len(added)} packages ({', '.join(added)}) and moves "
          f"{', '.join(f'{n} {installed[n]} -> {v}' for n, v in changed.items())}")
    assert "prefect" in added  # the full install is the one with the build's stack


def test_the_pinned_env_is_the_light_trainer_install() -> None:
    pins = _pins(REQUIREMENTS.read_text().splitlines())
    assert pins["verl"] == "0.9.1" and pins["torch"].endswith("+cpu")
    assert "prefect" not in pins
    for line in TRAINER_REQUIREMENTS.read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            req = Requirement(line)
            name = canonicalize_name(req.name)
            assert name in pins and req.specifier.contains(pins[name], prereleases=True), line
