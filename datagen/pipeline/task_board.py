"""Shared-memory counters of the tasks each running shard of a process pool has finished.

A pool worker counts its shard's tasks here (``run_shard``'s ``on_task`` hook); the process that
owns the pool reads them for the progress bar. It lives apart from the progress bar so that
pool workers, which import it, load neither rich nor the publishing stack.
"""

from __future__ import annotations

from dataclasses import dataclass
from multiprocessing.context import BaseContext
from typing import Any

from datagen.pipeline.shards import TaskEvent

__all__ = ["RunningShard", "TaskBoard"]

_SLOT = 5  # cells per slot: shard index (-1: idle), tasks, done, kept, rejected


@dataclass(frozen=True, slots=True)
class RunningShard:
    """The tasks a shard still being built has finished so far."""

    index: int
    tasks: int  # the shard's tasks (0 until its first one is done)
    done: int
    kept: int
    rejected: int  # failed tries


class TaskBoard:
    """Per-task counts of the shards a process pool is building, in shared memory.

    One slot per pool process: ``claim`` in the process's initializer, ``start`` and ``finish``
    around each shard it builds, ``record`` as that shard's ``on_task`` hook (from any of its
    task threads); the main process reads ``running()``. Counters rather than a queue: nothing
    has to drain them, so a build without a bar (``--quiet``) pays a lock and three additions a
    task, and a worker never waits on a reader. A shard that starts again (a retry) starts its
    slot from zero, so nothing is counted twice.
    """

    def __init__(self, ctx: BaseContext, slots: int) -> None:
        self._slots = slots
        # The last cell numbers the slots claimed so far.
        self._cells: Any = ctx.Array("q", [-1, 0, 0, 0, 0] * slots + [0])
        self._slot: int | None = None  # this process's slot, once claimed

    def claim(self) -> None:
        """Take a slot for this process (a pool initializer calls it once per process)."""
        with self._cells.get_lock():
            self._slot = self._cells[-1] % self._slots
            self._cells[-1] += 1

    def reset(self) -> None:
        """Free every slot (the pool was replaced: its processes are gone)."""
        with self._cells.get_lock():
            self._cells[:] = [-1, 0, 0, 0, 0] * self._slots + [0]

    def start(self, index: int) -> None:
        """This process starts building shard ``index``."""
        self._put([index, 0, 0, 0, 0])

    def finish(self) -> None:
        """This process's shard is written (or failed): its marker counts from now on."""
        self._put([-1, 0, 0, 0, 0])

    def record(self, event: TaskEvent) -> None:
        """Count one finished task of this process's shard; safe from any thread."""
        if self._slot is None:
            return
        base = self._slot * _SLOT
        with self._cells.get_lock():
            if self._cells[base] != event.shard:  # not the shard this slot is counting
                return
            self._cells[base + 1] = event.tasks
            self._cells[base + 2] += 1
            self._cells[base + 3] += int(event.kept)
            self._cells[base + 4] += event.rejected

    def running(self) -> list[RunningShard]:
        """The shards being built now, with what their finished tasks hold."""
        with self._cells.get_lock():
            cells = list(self._cells[:-1])
        return [RunningShard(*cells[i:i + _SLOT]) for i in range(0, len(cells), _SLOT)
                if cells[i] >= 0]

    def _put(self, values: list[int]) -> None:
        if self._slot is None:
            return
        base = self._slot * _SLOT
        with self._cells.get_lock():
            self._cells[base:base + _SLOT] = values
