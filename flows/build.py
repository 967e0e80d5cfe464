"""The build flow: plan shards, build them in parallel, top up until ``n`` rows, publish.

Prefect adds retries, caching, observability and logs around the library's plain functions. The
heavy work of a shard runs in a process pool (one process per core), not in Prefect's threads: a
shard renders charts and drives sandboxes for many samples, so one Prefect task per shard keeps
Prefect's per-task cost (~20–120 ms) negligible. On a Dask cluster (``run_build(...,
runner="dask")``) the shard runs on the Dask worker itself, one shard per worker thread.

Resume rests on the shard files: a shard with a completion marker is never rebuilt. The shard
task is also cached by Prefect on the shard key (content key, index, output folder) with its
result persisted under ``OUT/.datagen/prefect-results``, so a rerun shows it as Cached; a cached
result is trusted only when the shard's files are still there, else the shard is rebuilt.

With an LLM teacher and ``--max-cost``, the worker processes share one spending counter; once it
is spent a shard stops (unwritten; its paid calls stay in the response cache), no new shard is
planned, and what the finished shards verified is published.

The pool itself, and what its processes run, is ``flows/shard_pool.py``, which workers import
without Prefect. Its processes count each shard's finished tasks on a shared ``TaskBoard`` for
the progress bar; a shard built on a Dask worker reports only when it is finished (its marker).
"""

from __future__ import annotations

import hashlib
import os
import re
import sys
import time
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path
from typing import Any, Literal

from prefect import Task, flow, get_run_logger, task, unmapped
from prefect.artifacts import create_markdown_artifact
from prefect.client.schemas.objects import TaskRun
from prefect.context import TaskRunContext
from prefect.futures import PrefectFuture
from prefect.states import State
from prefect.task_runners import ThreadPoolTaskRunner

from datagen.config import BuildConfig
from datagen.errors import DatagenError, RunError, UsageError
from datagen.paths import prefect_results_dir
from datagen.pipeline.shards import ShardSummary, completed_shards, damaged_shards
from datagen.release.publish import PublishReport, publish
from datagen.release.select import shards_to_build
from datagen.run.summary import RunFacts, render_run_summary
from datagen.sandbox import planned_mode
from datagen.teachers.base import BudgetSpent
from datagen.teachers.chat_api import spent
from flows.shard_pool import (
    close_pool,
    drop_broken_pool,
    run_pooled_shard,
    shard_pool,
    spending_counter,
)

__all__ = ["Runner", "artifact_key", "build", "build_shard", "build_shards", "run_build",
           "shard_cache_key"]

Runner = Literal["local", "dask"]


def _on_dask_worker() -> bool:
    distributed = sys.modules.get("distributed")  # a Dask worker has it loaded; else no import
    if distributed is None:
        return False
    try:
        distributed.get_worker()
    except ValueError:
        return False
    return True


def _worth_retrying(task: Task[..., Any], run: TaskRun, state: State[Any]) -> bool:
    """Retry a shard after a crash; never after a one-line error or a spent budget."""
    data = state.data
    return not isinstance(getattr(data, "result", data), (DatagenError, BudgetSpent))


def shard_cache_key(context: TaskRunContext | None, parameters: dict[str, Any]) -> str:
    """Prefect's cache key of a shard: its content key, index and output folder."""
    cfg: BuildConfig = parameters["cfg"]
    where = hashlib.sha256(str(cfg.out.resolve()).encode()).hexdigest()[:12]
    return f"datagen-shard-{cfg.content_key()}-{parameters['index']:05d}-{where}"


@task(name="build-shard", retries=2, retry_delay_seconds=[2, 10], cache_key_fn=shard_cache_key,
      persist_result=True, retry_condition_fn=_worth_retrying)
def build_shard(cfg: BuildConfig, index: int) -> ShardSummary:
    """Build one shard, in the process pool or, on a Dask worker, right there.

    Raises ``BudgetSpent`` (nothing written, nothing cached) when ``--max-cost`` ran out first.
    """
    key = os.environ.get("OPENAI_API_KEY") if cfg.teacher == "openai" or cfg.weak_model else None
    if _on_dask_worker():
        summary = run_pooled_shard(cfg, index, key)
    else:
        pool = shard_pool(cfg.workers)
        try:
            summary = pool.submit(run_pooled_shard, cfg, index, key).result()
        except BrokenProcessPool:
            drop_broken_pool(cfg.workers, pool)  # a worker was killed: the retry gets a new pool
            raise
    get_run_logger().info(
        "shard %d: %d/%d tasks verified in %.1f s", index, summary.kept, summary.tasks,
        summary.seconds)
    return summary


def _results(cfg: BuildConfig) -> Path:
    """Where the shard task's persisted results (its Prefect cache) live: inside the build."""
    return prefect_results_dir(cfg.out)


def _gather(futures: list[PrefectFuture[ShardSummary]]) -> tuple[list[ShardSummary], bool]:
    """The shards the futures built, and whether one stopped on a spent budget."""
    built: list[ShardSummary] = []
    budget_spent = False
    for future in futures:
        try:
            built.append(future.result())
        except BudgetSpent:
            budget_spent = True
    return built, budget_spent


def _map_shards(shard_task: Task[..., ShardSummary], cfg: BuildConfig,
                indices: list[int]) -> tuple[list[ShardSummary], bool]:
    """Run ``shard_task`` over ``indices``; the shards built, and whether the budget ran out."""
    if _dask_runner_active():
        return _gather(shard_task.map(unmapped(cfg), indices))
    # The flow's own thread runner starts one thread per shard at once, each a task run shown
    # as Running and holding ~90 KB: 2,300 of them for 100k rows. Two threads per pool worker
    # keep the pool fed (one shard running, one queued); the other shards wait as work items.
    with ThreadPoolTaskRunner(max_workers=2 * cfg.workers) as runner:
        return _gather(runner.map(shard_task, {"cfg": unmapped(cfg), "index": indices}))


def build_shards(cfg: BuildConfig, todo: list[int], rebuild: frozenset[int] = frozenset()
                 ) -> tuple[dict[int, ShardSummary], bool]:
    """Build the shards ``todo`` (inside a flow); the finished shards on disk, the budget flag.

    Those also in ``rebuild`` (found damaged) skip Prefect's cache of their earlier result.
    """
    log = get_run_logger()
    shard_task = build_shard.with_options(result_storage=_results(cfg))
    again = [i for i in todo if i in rebuild]
    built, budget_spent = _map_shards(shard_task, cfg, [i for i in todo if i not in rebuild])
    if again:
        rebuilt, spent_again = _map_shards(shard_task.with_options(refresh_cache=True), cfg,
                                           again)
        built, budget_spent = built + rebuilt, budget_spent or spent_again
    on_disk = completed_shards(cfg)
    # The files are the truth: a cached result whose shard is gone (a folder cleaned by hand,
    # --overwrite) is built again, this time skipping the cache.
    stale = [s.index for s in built if s.index not in on_disk]
    if stale:
        log.warning("rebuilding %d shards whose cached results have no files: %s", len(stale),
                    stale)
        again, spent_again = _map_shards(shard_task.with_options(refresh_cache=True), cfg,
                                         stale)
        budget_spent = budget_spent or spent_again
        on_disk = completed_shards(cfg)
        missing = [s.index for s in again if s.index not in on_disk]
        if missing:
            raise RunError(f"shards {missing} were built but their files are not in "
                               f"{cfg.out}; is --out on a disk every worker shares?")
    return on_disk, budget_spent


@flow(name="datagen-build", log_prints=True)
def build(cfg: BuildConfig) -> PublishReport:
    """Build ``cfg.n`` verified rows into ``cfg.out``, resuming finished shards."""
    log = get_run_logger()
    started = time.monotonic()
    done = completed_shards(cfg)
    damaged = frozenset(damaged_shards(cfg, done))
    if damaged:
        log.warning("rebuilding %d finished shards whose files were damaged since (they no "
                    "longer match the checksums in their markers): %s", len(damaged),
                    sorted(damaged))
        done = {i: s for i, s in done.items() if i not in damaged}
    reused = set(done)
    log.info("sandbox: %s", planned_mode())
    if done:
        log.info("resuming: %d shards already finished", len(done))
    spending = spending_counter()
    with spending.get_lock():
        spending.value = 0.0  # --max-cost bounds what this run pays for new calls
    budget_spent = False
    # The planner stops when every split can publish n rows, or when a split has built 4x the
    # shards it was expected to need (publishing what there is beats looping).
    while todo := shards_to_build(cfg, done):
        log.info("building %d shards (%d finished)", len(todo), len(done))
        done, spent_now = build_shards(cfg, todo, damaged)
        budget_spent = budget_spent or spent_now or bool(
            cfg.max_cost and spent() >= cfg.max_cost)
        if budget_spent:
            log.info("--max-cost %g USD spent: publishing what is verified", cfg.max_cost)
            break
    close_pool(cfg.workers)
    report = publish(cfg, [done[i] for i in sorted(done)], budget_spent=budget_spent)
    log.info("published %d rows to %s", report.rows, report.out)
    new = [s for i, s in done.items() if i not in reused]
    facts = RunFacts(seconds=time.monotonic() - started, shards_built=len(new),
                     shards_reused=len(done) - len(new), verified_built=sum(s.kept for s in new),
                     runner="dask" if _dask_runner_active() else "local")
    create_markdown_artifact(markdown=render_run_summary(report.stats, facts),
                             key=artifact_key(cfg), description=f"datagen build of {cfg.out}")
    return report


def artifact_key(cfg: BuildConfig) -> str:
    """The key of a build's run-summary artifact (lowercase, digits and dashes, as Prefect asks)."""
    slug = re.sub(r"[^a-z0-9]+", "-", cfg.out.resolve().name.lower()).strip("-") or "out"
    return f"datagen-{slug}"


def _dask_runner_active() -> bool:
    from prefect.context import FlowRunContext

    ctx = FlowRunContext.get()
    return ctx is not None and type(ctx.task_runner).__name__ == "DaskTaskRunner"


def run_build(cfg: BuildConfig, runner: Runner = "local",
              address: str | None = None) -> PublishReport:
    """Run the build flow on this machine's process pool or on a Dask cluster.

    ``runner="dask"`` without ``address`` starts a local Dask cluster of ``cfg.workers``
    processes; with one (``tcp://host:8786``) it uses that cluster, whose workers must see
    ``cfg.out`` at the same path and reach the Prefect server named by ``PREFECT_API_URL``.
    """
    if runner == "local":
        if address:
            raise UsageError("--address names a Dask scheduler; add --runner dask")
        return build(cfg)
    if runner != "dask":
        raise UsageError(f"--runner {runner!r}: choose local or dask")
    from flows.dask import dask_task_runner, prefect_api_for_dask, workers_may_fork

    if cfg.max_cost:
        raise UsageError("--max-cost needs --runner local: its spending counter is shared by "
                         "the processes of one machine only")
    with prefect_api_for_dask(address), workers_may_fork():
        return build.with_options(task_runner=dask_task_runner(cfg, address))(cfg)
