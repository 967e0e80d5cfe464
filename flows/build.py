"""The build flow: plan shards, build them in parallel, top up until ``n`` rows, publish.

Prefect adds retries, observability and logs around the library's plain functions. The heavy
work of a shard runs in a process pool (one process per core), not in Prefect's threads: a shard
renders charts and drives sandboxes for many samples, so one Prefect task per shard keeps
Prefect's per-task cost (~20–120 ms) negligible.
"""

from __future__ import annotations

import functools
import math
from concurrent.futures import ProcessPoolExecutor

from prefect import flow, get_run_logger, task, unmapped
from prefect.cache_policies import NO_CACHE

from datagen.config import BuildConfig
from datagen.publish import PublishReport, count_publishable, publish
from datagen.sandbox import forkserver_context
from datagen.shards import ShardSummary, completed_shards, run_shard

__all__ = ["build", "build_shard"]

# Shards with no single verified row (all rejected) must not loop the top-up forever.
_MAX_SHARD_FACTOR = 4


@functools.cache
def _pool(workers: int) -> ProcessPoolExecutor:
    # forkserver: workers start clean (no Prefect threads copied into them); taking the context
    # from the sandbox keeps its preload, so sandboxes in this process start warm too.
    return ProcessPoolExecutor(workers, mp_context=forkserver_context())


@task(name="build-shard", retries=2, retry_delay_seconds=[2, 10], cache_policy=NO_CACHE)
def build_shard(cfg: BuildConfig, index: int) -> ShardSummary:
    """Build one shard in the process pool."""
    summary = _pool(cfg.workers).submit(run_shard, cfg, index).result()
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
    while True:
        todo = [i for i in range(planned) if i not in done]
        log.info("building %d shards (%d finished of %d planned)", len(todo), len(done), planned)
        for future in build_shard.map(unmapped(cfg), todo):
            summary = future.result()
            done[summary.index] = summary
        shards = [done[i] for i in sorted(done)]
        have = count_publishable(cfg, shards)
        if have >= cfg.n or planned >= limit:
            break
        rows_per_shard = max(1.0, sum(s.kept for s in shards) / len(shards))
        planned += max(1, math.ceil((cfg.n - have) / rows_per_shard))
        log.info("%d of %d rows so far; topping up to %d shards", have, cfg.n, planned)
    report = publish(cfg, [done[i] for i in sorted(done)])
    log.info("published %d rows to %s", report.rows, report.out)
    return report
