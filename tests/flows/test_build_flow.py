"""The build flow, run by Prefect for real (on the session's test server)."""

from __future__ import annotations

from pathlib import Path

import datasets
import pytest

from datagen.config import BuildConfig
from datagen.pipeline.shards import completed_shards, prepare_output
from datagen.sandbox.bwrap import probe
from flows.build import build

pytestmark = pytest.mark.usefixtures("prefect_harness")


def _load(out: Path) -> datasets.Dataset:
    return datasets.load_dataset(str(out), "sft", split="train")


def test_flow_builds_then_extends_a_build_without_redoing_shards(tmp_path: Path) -> None:
    cfg = BuildConfig(n=20, out=tmp_path / "out", shard_size=4, questions_per_scene=3,
                      workers=2, cell_timeout=10.0)
    prepare_output(cfg, overwrite=False, resume=False)
    from flows.shard_pool import shard_pool

    pool = shard_pool(2)  # the one build() uses
    report = build(cfg)
    assert report.rows == 20
    # The pool (with its workers' sandboxes) is stopped before publishing, not left idle.
    assert shard_pool.cache_info().currsize == 0
    assert pool._processes is None or not any(p.is_alive() for p in pool._processes.values())
    small = _load(cfg.out)
    before = {i: s.seconds for i, s in completed_shards(cfg).items()}
    assert len(before) == 2

    bigger = cfg.model_copy(update={"n": 45})
    prepare_output(bigger, overwrite=False, resume=True)
    report = build(bigger)
    assert report.rows == 45
    after = completed_shards(bigger)
    assert len(after) > len(before)
    assert all(after[i].seconds == s for i, s in before.items())  # reused, not rebuilt
    big = _load(cfg.out)
    # Same seed, same options: the smaller build is exactly the start of the bigger one.
    assert big["id"][:20] == small["id"]
    assert len(set(big["id"])) == 45


def _client():  # noqa: ANN202
    from prefect.client.orchestration import get_client

    return get_client(sync_client=True)


def _artifact(cfg: BuildConfig) -> str:
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey

    from flows.build import artifact_key

    with _client() as client:
        found = client.read_artifacts(
            artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=[artifact_key(cfg)])))
    assert found, "no run-summary artifact on the server"
    latest = max(found, key=lambda a: a.created)
    assert latest.type == "markdown"
    return str(latest.data)


def test_each_run_publishes_a_markdown_summary_on_the_server(tmp_path: Path) -> None:
    cfg = BuildConfig(n=12, out=tmp_path / "summary-out", families=("chart", "geometry"),
                      shard_size=2, questions_per_scene=3, workers=2, cell_timeout=10.0)
    prepare_output(cfg, overwrite=False, resume=False)
    report = build(cfg)
    page = _artifact(cfg)
    assert page.startswith(f"# datagen build: {report.rows} SFT rows")
    for needle in ("| chart |", "| geometry |", "| tasks posed |", "| verified |",
                   "verified samples/hour", "sandbox mode", "runner | local", "reused"):
        assert needle in page, needle
    for task_type in report.stats.get("by_task_type") or \
            report.stats["splits"]["sft"]["by_task_type"]:
        assert f"`{task_type}`" in page


def test_a_cached_shard_whose_files_are_gone_is_built_again(tmp_path: Path) -> None:
    import shutil

    from prefect.client.schemas.filters import TaskRunFilter, TaskRunFilterName

    cfg = BuildConfig(n=6, out=tmp_path / "cached", shard_size=2, questions_per_scene=3,
                      workers=1, cell_timeout=10.0)
    prepare_output(cfg, overwrite=False, resume=False)
    first = build(cfg)
    rows = _load(cfg.out)["id"]
    # The Prefect cache (persisted results) survives, the shard files do not: the cache alone
    # must not be trusted.
    shutil.rmtree(cfg.out / ".datagen" / "shards")
    (cfg.out / ".datagen" / "shards").mkdir()
    again = build(cfg)
    assert again.rows == first.rows == 6
    assert len(completed_shards(cfg)) == 2  # both rebuilt: n=6 plans two shards
    assert _load(cfg.out)["id"] == rows
    with _client() as client:
        runs = client.read_task_runs(task_run_filter=TaskRunFilter(
            name=TaskRunFilterName(like_="build-shard")))
    states = {r.state_name for r in runs}
    assert "Cached" in states  # the second build hit the cache, then rebuilt the shard


def test_only_the_shards_the_pool_can_take_run_at_once(tmp_path: Path) -> None:
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

    # Shards of one scene: n=24 plans 10 shards for one worker.
    cfg = BuildConfig(n=24, out=tmp_path / "bounded", shard_size=1, questions_per_scene=3,
                      workers=1, cell_timeout=10.0)
    prepare_output(cfg, overwrite=False, resume=False)
    state = build(cfg, return_state=True)
    assert state.is_completed()
    with _client() as client:
        runs = client.read_task_runs(flow_run_filter=FlowRunFilter(
            id=FlowRunFilterId(any_=[state.state_details.flow_run_id])))
    shards = [r for r in runs if r.name.startswith("build-shard")]
    assert len(shards) >= 8
    # The most task runs Running at one moment: a shard in the worker and one queued for it,
    # not every planned shard (each a thread of the CLI) from the start.
    edges = sorted([(r.start_time, 1) for r in shards] + [(r.end_time, -1) for r in shards])
    running, most = 0, 0
    for _, step in edges:
        running += step
        most = max(most, running)
    assert most <= 2, f"{most} of {len(shards)} shard task runs were running at once"


def test_pool_workers_build_shards_without_loading_prefect() -> None:
    from flows.shard_pool import close_pool, shard_pool
    from tests.support.pool_probe import loaded

    # A module a worker imports costs memory in every worker for the whole build (Prefect:
    # ~36 MiB each); the orchestrator belongs to the process that owns the pool.
    try:
        found = shard_pool(1).submit(loaded, ("prefect", "rich", "typer")).result(timeout=120)
    finally:
        close_pool(1)
    assert found == []


@pytest.mark.parametrize("sandbox", ["auto", "process"])
def test_the_same_flow_on_a_local_dask_cluster_gives_the_same_rows(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, sandbox: str) -> None:
    pytest.importorskip("prefect_dask")
    from flows.build import run_build

    if sandbox == "process":  # no bwrap at all: the Dask workers fork sandbox workers
        monkeypatch.setenv("DATAGEN_BWRAP", "/nonexistent/bwrap")

    cfg = BuildConfig(n=8, out=tmp_path / "local", shard_size=2, questions_per_scene=3,
                      workers=1, cell_timeout=10.0)
    on_dask = cfg.model_copy(update={"out": tmp_path / "dask"})
    for c in (cfg, on_dask):
        prepare_output(c, overwrite=False, resume=False)
    run_build(cfg)
    report = run_build(on_dask, runner="dask")
    assert report.rows == 8
    assert _load(on_dask.out)["id"] == _load(cfg.out)["id"]
    assert "runner | dask" in _artifact(on_dask)
    modes = {s.sandbox_mode for s in completed_shards(on_dask).values()}
    jailed = sandbox == "auto" and probe() is None
    assert modes == ({"bwrap"} if jailed else {"process"}), modes


def test_dask_runner_options_are_checked_before_any_work(tmp_path: Path) -> None:
    from datagen.errors import UsageError
    from flows.build import run_build

    cfg = BuildConfig(n=2, out=tmp_path / "never", workers=1)
    with pytest.raises(UsageError, match="--runner dask"):
        run_build(cfg, runner="local", address="tcp://127.0.0.1:8786")
    with pytest.raises(UsageError, match="choose local or dask"):
        run_build(cfg, runner="ray")
    with pytest.raises(UsageError, match="--address 'localhost:8786'"):
        run_build(cfg, runner="dask", address="localhost:8786")
    costly = cfg.model_copy(update={"max_cost": 1.0})
    with pytest.raises(UsageError, match="--max-cost needs --runner local"):
        run_build(costly, runner="dask")
    assert not cfg.out.exists()


def test_a_shard_whose_worker_is_killed_is_retried_in_a_new_pool(tmp_path: Path) -> None:
    import os
    import signal
    import threading
    import time

    from flows.shard_pool import shard_pool

    cfg = BuildConfig(n=6, out=tmp_path / "killed", shard_size=6, questions_per_scene=1,
                      workers=1, cell_timeout=10.0)
    prepare_output(cfg, overwrite=False, resume=False)
    pool = shard_pool(1)
    killed: list[int] = []

    def kill_the_worker() -> None:
        # The first shard of the pool's process dies a second in, as under the OOM killer.
        deadline = time.monotonic() + 60
        while not pool._processes and time.monotonic() < deadline:  # started on first submit
            time.sleep(0.05)
        time.sleep(1.0)
        for pid in list(pool._processes):
            os.kill(pid, signal.SIGKILL)
            killed.append(pid)

    killer = threading.Thread(target=kill_the_worker, daemon=True)
    killer.start()
    report = build(cfg)
    killer.join()
    assert killed and report.rows == 6  # the retry ran in a fresh pool, closed after the build
    assert shard_pool.cache_info().currsize == 0
    assert len(completed_shards(cfg)) == 2  # n=6 plans two shards of 6 tasks
