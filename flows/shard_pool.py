"""The process pool that builds shards on this machine, and what its workers run.

Kept free of Prefect (and of the publishing stack): a worker process imports this module to run
its initializer and its shards, and every module it imports costs memory in each worker for the
whole build (Prefect alone is ~36 MiB a process).

The pool's processes share the USD spending counter of ``--max-cost`` and count each shard's
finished tasks on a ``TaskBoard``, which ``running_shards`` reads for the progress bar.
"""

from __future__ import annotations

import functools
import os
from concurrent.futures import ProcessPoolExecutor
from typing import Any

from datagen.config import BuildConfig
from datagen.pipeline.shards import ShardSummary, run_shard
from datagen.pipeline.task_board import RunningShard, TaskBoard
from datagen.sandbox import forkserver_context
from datagen.teachers.chat_api import share_spending

__all__ = ["close_pool", "drop_broken_pool", "run_pooled_shard", "running_shards", "shard_pool",
           "spending_counter"]


@functools.cache
def spending_counter() -> Any:
    """The USD counter that this process and its pool's processes share."""
    value = forkserver_context().Value("d", 0.0)
    share_spending(value)  # this process reads it too
    return value


@functools.cache
def _board(workers: int) -> TaskBoard:
    """Where the processes of the pool of ``workers`` count their shards' finished tasks."""
    return TaskBoard(forkserver_context(), workers)


def running_shards(cfg: BuildConfig) -> list[RunningShard]:
    """The shards the pool of ``cfg.workers`` processes is building now, with their finished
    tasks (the progress bar's reader; empty on the Dask runner)."""
    return _board(cfg.workers).running()


_worker_board: TaskBoard | None = None  # in a pool process: its slot of the pool's board


def _start_worker(spending: Any, board: TaskBoard) -> None:
    """The pool's initializer: share the spending counter and take a slot of the board."""
    global _worker_board
    share_spending(spending)
    board.claim()
    _worker_board = board


@functools.cache
def shard_pool(workers: int) -> ProcessPoolExecutor:
    """The shard pool of this process (made again after ``drop_broken_pool`` or
    ``close_pool``)."""
    # forkserver: workers start clean (no Prefect threads copied into them); taking the context
    # from the sandbox keeps its preload, so sandboxes in this process start warm too.
    return ProcessPoolExecutor(workers, mp_context=forkserver_context(),
                               initializer=_start_worker,
                               initargs=(spending_counter(), _board(workers)))


def drop_broken_pool(workers: int, pool: ProcessPoolExecutor) -> None:
    """Forget ``pool`` after one of its workers died, so the next shard gets a new pool.

    Shards that ran beside the dead worker fail too; the first of them to call this replaces
    the pool, the others find it replaced already.
    """
    if shard_pool(workers) is pool:
        _forget(workers, wait=False)


def close_pool(workers: int) -> None:
    """Stop this process's shard pool, with its workers' sandboxes, if it has one.

    Called once no shard is left to build: publishing then has the memory to itself (the pool
    and its jails hold ~850 MiB), and a process that lives on (``datagen deploy``, a notebook)
    holds no idle workers. The next build starts a new pool.
    """
    if shard_pool.cache_info().currsize:
        _forget(workers, wait=True)


def _forget(workers: int, wait: bool) -> None:
    """Shut the current pool down and free its board's slots; the next call makes a new one."""
    pool = shard_pool(workers)
    shard_pool.cache_clear()
    pool.shutdown(wait=wait, cancel_futures=True)
    _board(workers).reset()  # its slots were the old pool's


def run_pooled_shard(cfg: BuildConfig, index: int, key: str | None) -> ShardSummary:
    """Build shard ``index`` in a pool process (counting its tasks on the board) or on a Dask
    worker (whose only report is the shard's marker)."""
    # The pool's processes (or a Dask worker) may predate the key, so it travels with the call,
    # in memory only.
    if key:
        os.environ["OPENAI_API_KEY"] = key
    board = _worker_board
    if board is None:
        return run_shard(cfg, index)
    board.start(index)
    try:
        return run_shard(cfg, index, on_task=board.record)
    finally:
        board.finish()  # after the marker is written: readers never miss the shard's tasks
