"""The build flow: plan shards, build them in parallel, top up until ``n`` rows, publish.

Prefect adds retries, observability and logs around the library's plain functions. The heavy
work of a shard runs in a process pool (one process per core), not in Prefect's threads: a shard
renders charts and drives sandboxes for many samples, so one Prefect task per shard keeps
Prefect's per-task cost (~20–120 ms) negligible.

With an LLM teacher and ``--max-cost``, the worker processes share one spending counter; once it
is spent a shard stops (unwritten; its paid calls stay in the response cache), no new shard is
planned, and what the finished shards verified is published.
"""

from __future__ import annotations

import functools
import math
import os
from concurrent.futures import ProcessPoolExecutor
from typing import Any

from prefect import Task, flow, get_run_logger, task, unmapped
from prefect.cache_policies import NO_CACHE
from prefect.client.schemas.objects import TaskRun
from prefect.states import State

from datagen.config import BuildConfig
from datagen.errors import DatagenError
from datagen.publish import PublishReport, count_publishable, publish
from datagen.sandbox import forkserver_context
from datagen.shards import ShardSummary, completed_shards, run_shard
from datagen.teachers import BudgetSpent
from datagen.teachers.chat_api import share_spending, spent

__all__ = ["build", "build_shard"]

# Shards with no single verified row (all rejected) must not loop the top-up forever.
_MAX_SHARD_FACTOR = 4


@functools.cache
def _pool(workers: int) -> tuple[ProcessPoolExecutor, Any]:
    """The shard pool and the spending counter its processes share."""
    # forkserver: workers start clean (no Prefect threads copied into them); taking the context
    # from the sandbox keeps its preload, so sandboxes in this process start warm too.
    ctx = forkserver_context()
    spending = ctx.Value("d", 0.0)
    share_spending(spending)  # this process reads it too
    return ProcessPoolExecutor(workers, mp_context=ctx, initializer=share_spending,
                               initargs=(spending,)), spending


def _run_shard(cfg: BuildConfig, index: int, key: str | None) -> ShardSummary:
    # The pool's processes may predate the key (they inherit the forkserver's environment), so
    # it travels with the call, in memory only.
    if key:
        os.environ["OPENAI_API_KEY"] = key
    return run_shard(cfg, index)


def _worth_retrying(task: Task[..., Any], run: TaskRun, state: State[Any]) -> bool:
    """Retry a shard after a crash, never after a one-line error (bad key, bad option)."""
    data = state.data
    return not isinstance(getattr(data, "result", data), DatagenError)


@task(name="build-shard", retries=2, retry_delay_seconds=[2, 10], cache_policy=NO_CACHE,
      retry_condition_fn=_worth_retrying)
def build_shard(cfg: BuildConfig, index: int) -> ShardSummary | None:
    """Build one shard in the process pool; None when the budget ran out before it finished."""
    try:
        key = os.environ.get("OPENAI_API_KEY") if cfg.teacher == "openai" else None
        summary = _pool(cfg.workers)[0].submit(_run_shard, cfg, index, key).result()
    except BudgetSpent:
        get_run_logger().info("shard %d: stopped, --max-cost %g USD spent", index, cfg.max_cost)
        return None
    get_run_logger().info(
        "shard %d: %d/%d tasks verified in %.1f s", index, summary.kept, summary.tasks,
        summary.seconds)
    return summary


def _initial_shards(cfg: BuildConfig) -> int:
    per_shard = cfg.shard_size * cfg.questions_per_scene
    # Expect ~90 % of the tasks to verify; a top-up round covers the rest.
    return max(1, math.ceil(cfg.n / (0.9 * per_shard)))


@flow(name="datagen-build", log_prints=True)
def build(cfg: BuildConfig) -> PublishReport:
    """Build ``cfg.n`` verified rows into ``cfg.out``, resuming finished shards."""
    log = get_run_logger()
    done = completed_shards(cfg)
    if done:
        log.info("resuming: %d shards already finished", len(done))
    planned = max(_initial_shards(cfg), max(done, default=-1) + 1)
    limit = _MAX_SHARD_FACTOR * _initial_shards(cfg)
    spending = _pool(cfg.workers)[1]
    with spending.get_lock():
        spending.value = 0.0  # --max-cost bounds what this run pays for new calls
    budget_spent = False
    while True:
        todo = [i for i in range(planned) if i not in done]
        log.info("building %d shards (%d finished of %d planned)", len(todo), len(done), planned)
        for future in build_shard.map(unmapped(cfg), todo):
            summary = future.result()
            if summary is None:
                budget_spent = True
            else:
                done[summary.index] = summary
        shards = [done[i] for i in sorted(done)]
        have = count_publishable(cfg, shards)
        if have >= cfg.n:
            break
        budget_spent = budget_spent or bool(cfg.max_cost and spent() >= cfg.max_cost)
        if planned >= limit or budget_spent:
            if budget_spent:
                log.info("--max-cost %g USD spent: publishing what is verified", cfg.max_cost)
            break
        rows_per_shard = max(1.0, sum(s.kept for s in shards) / len(shards))
        planned += max(1, math.ceil((cfg.n - have) / rows_per_shard))
        log.info("%d of %d rows so far; topping up to %d shards", have, cfg.n, planned)
    report = publish(cfg, [done[i] for i in sorted(done)], budget_spent=budget_spent)
    log.info("published %d rows to %s", report.rows, report.out)
    return report
