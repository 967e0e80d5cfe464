"""`datagen deploy` against a real `prefect server start` on 127.0.0.1: schedules and a run."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import datasets
import pytest
from prefect.client.orchestration import get_client
from prefect.deployments import run_deployment
from prefect.settings import PREFECT_API_URL, temporary_settings

from tests.support.prefect_server import prefect_server, stop_group

_SMALL = {"split": "sft", "n": 6, "families": "chart", "shard_size": 2, "workers": 1,
          "cell_timeout": 10.0}


def _deployments(api_url: str) -> dict[str, object]:
    with temporary_settings({PREFECT_API_URL: api_url}), get_client(sync_client=True) as client:
        return {d.name: d for d in client.read_deployments()}


def _wait_for(what: str, check, timeout: float = 90.0, proc=None):  # noqa: ANN001, ANN202
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if proc is not None and proc.poll() is not None:
            raise AssertionError(f"datagen deploy exited ({proc.returncode}) before {what}")
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.5)


@pytest.mark.slow
def test_deploy_registers_scheduled_deployments_and_a_triggered_run_publishes(
        tmp_path: Path) -> None:
    root = tmp_path / "scheduled"
    (tmp_path / "home").mkdir()
    with prefect_server(tmp_path / "home") as server:
        log = open(tmp_path / "deploy.log", "wb")  # noqa: SIM115
        serving = subprocess.Popen(
            [sys.executable, "-m", "datagen.cli", "deploy", "--root", str(root)],
            env=server.env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        try:
            found = _wait_for("two deployments", lambda: (d := _deployments(server.api_url))
                              and len(d) == 2 and d, proc=serving)
            assert set(found) == {"nightly-rl", "weekly-sft"}
            crons = {name: [s.schedule.cron for s in d.schedules if s.active]
                     for name, d in found.items()}
            assert crons == {"nightly-rl": ["0 2 * * *"], "weekly-sft": ["0 3 * * 0"]}
            assert found["weekly-sft"].parameters["out"] == str(root.resolve() / "weekly-sft")
            assert not found["weekly-sft"].paused

            with temporary_settings({PREFECT_API_URL: server.api_url}):
                run = run_deployment("datagen-scheduled-build/weekly-sft", timeout=240,
                                     parameters={"options": _SMALL})
            assert run.state is not None and run.state.is_completed(), (
                run.state, (tmp_path / "deploy.log").read_text()[-3000:])
            ds = datasets.load_dataset(str(root / "weekly-sft"), "sft", split="train")
            assert len(ds) == 6 and set(ds["family"]) == {"chart"}
        finally:
            stop_group(serving, signal.SIGTERM, wait=30)
            log.close()
        # Stopping `datagen deploy` pauses the schedules, so nothing runs with no one serving.
        paused = _deployments(server.api_url)
        assert all(d.paused for d in paused.values()), {n: d.paused for n, d in paused.items()}


def test_deploy_refuses_without_a_server_and_names_unknown_deployments(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k != "PREFECT_API_URL"}
    env["PREFECT_HOME"] = str(tmp_path / "home")  # no profile that names a server
    res = subprocess.run([sys.executable, "-m", "datagen.cli", "deploy"], env=env,
                         capture_output=True, text=True, timeout=60)
    assert res.returncode == 2, res.stderr
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and "PREFECT_API_URL" in lines[0], res.stderr

    env["PREFECT_API_URL"] = "http://127.0.0.1:9/api"  # never contacted: the name fails first
    res = subprocess.run([sys.executable, "-m", "datagen.cli", "deploy", "--only", "hourly"],
                         env=env, capture_output=True, text=True, timeout=60)
    assert res.returncode == 2 and "unknown deployment 'hourly'" in res.stderr, res.stderr
    assert "weekly-sft" in res.stderr


@pytest.mark.slow
def test_workers_of_a_pool_build_shard_ranges_then_resume_publishes_them(tmp_path: Path) -> None:
    out = tmp_path / "pooled"
    options = {**_SMALL, "n": 12}
    (tmp_path / "home").mkdir()
    with prefect_server(tmp_path / "home") as server:
        res = subprocess.run([sys.executable, "-m", "datagen.cli", "deploy", "--pool", "gpu-less"],
                             env=server.env, capture_output=True, text=True, timeout=60)
        assert res.returncode == 2 and "prefect work-pool create gpu-less" in res.stderr
        subprocess.run([sys.executable, "-m", "prefect", "work-pool", "create", "datagen",
                        "--type", "process"], env=server.env, check=True, capture_output=True,
                       timeout=60)
        res = subprocess.run([sys.executable, "-m", "datagen.cli", "deploy", "--pool", "datagen",
                              "--root", str(tmp_path / "scheduled")], env=server.env,
                             capture_output=True, text=True, timeout=60)
        assert res.returncode == 0, res.stderr[-3000:]
        assert "3 deployments registered with work pool 'datagen'" in res.stdout
        assert {d.work_pool_name for d in _deployments(server.api_url).values()} == {"datagen"}

        log = open(tmp_path / "worker.log", "wb")  # noqa: SIM115
        worker = subprocess.Popen(
            [sys.executable, "-m", "prefect", "worker", "start", "--pool", "datagen"],
            env=server.env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        try:
            with temporary_settings({PREFECT_API_URL: server.api_url}):
                runs = [run_deployment("datagen-build-shards/shard-range", timeout=240,
                                       parameters={"options": options, "out": str(out),
                                                   "start": start, "stop": start + 2})
                        for start in (0, 2)]
            for run in runs:
                assert run.state is not None and run.state.is_completed(), (
                    run.state, (tmp_path / "worker.log").read_text()[-3000:])
        finally:
            stop_group(worker)
            log.close()
        markers = {p.name: p.stat().st_mtime_ns
                   for p in (out / ".datagen" / "shards").glob("*.done.json")}
        assert len(markers) == 4 and not (out / "data").exists()

        # Publishing is one `datagen build --resume` with the same options: it builds nothing.
        args = [f"--{k.replace('_', '-')}={v}" for k, v in options.items()]
        res = subprocess.run([sys.executable, "-m", "datagen.cli", "build", *args, "--out",
                              str(out), "--resume", "--json"], env=server.env,
                             capture_output=True, text=True, timeout=240)
        assert res.returncode == 0, res.stderr[-3000:]
        assert {p.name: p.stat().st_mtime_ns
                for p in (out / ".datagen" / "shards").glob("*.done.json")} == markers
    assert len(datasets.load_dataset(str(out), "sft", split="train")) == 12
