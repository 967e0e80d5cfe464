"""A live progress bar for ``datagen build`` that moves a task at a time.

Two sources feed it. The build's completion markers (``shards.completed_shards``) are the
truth for finished shards, wherever they were built (this machine's process pool or a Dask
cluster). The shards still running report their finished tasks through ``run_shard``'s
``on_task`` hook into a ``TaskBoard`` (``task_board.py``): counters in shared memory, one slot
per process of the local pool, read by the bar. A shard with an LLM teacher can take many
minutes, and this is what lets the user tell a slow endpoint from a hung one.

The bar counts tasks (a task's tries verified, or an RL prompt made) of the tasks the planner
has asked for so far, with accepted / rejected counts, rows ready of those asked for, and an
ETA from the task rate of this run. Where no board is read (the Dask runner), it moves a shard
at a time as before.
"""

from __future__ import annotations

import datetime
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from types import TracebackType

from rich.console import Console
from rich.progress import (
    BarColumn,
    Progress,
    SpinnerColumn,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
)

from datagen.config import BuildConfig
from datagen.pipeline.shards import MarkerCache, ShardSummary, completed_shards
from datagen.pipeline.task_board import RunningShard
from datagen.release.select import count_publishable, shards_to_build

__all__ = ["BuildProgress", "BuildTally", "ShardCounts", "eta_text", "shard_counts"]


@dataclass(frozen=True, slots=True)
class ShardCounts:
    """What the finished shards of a build hold so far."""

    shards: int
    ready: int  # rows that would be published now (after dedup, at most n)
    accepted: int  # verified rows in the shards
    rejected: int  # failed tries
    duplicates: int  # verified rows dedup drops (a lower bound once ``ready`` reaches n)
    tasks: int = 0  # tasks the shards ran


def shard_counts(cfg: BuildConfig, done: dict[int, ShardSummary] | None = None) -> ShardCounts:
    """Count what the finished shards of ``cfg`` (default: read from their markers) hold."""
    done = completed_shards(cfg) if done is None else done
    shards = [done[i] for i in sorted(done)]
    accepted = sum(s.kept for s in shards)
    # An RL shard's tasks are all "posed" (kept as prompts): not failed tries.
    rejected = sum(n for s in shards for reason, n in s.reasons.items()
                   if reason not in ("verified", "posed"))
    ready = count_publishable(cfg, shards) if shards else 0  # per split, the least of them
    dropped = accepted - ready * len(cfg.splits())
    return ShardCounts(shards=len(shards), ready=ready, accepted=accepted, rejected=rejected,
                       duplicates=max(0, dropped) if ready < cfg.n else 0,
                       tasks=sum(s.tasks for s in shards))


_IDLE = 10.0  # seconds without a finished task after which the bar says how long it has been


@dataclass(frozen=True, slots=True)
class BuildTally:
    """One reading of a build: its finished shards plus the finished tasks of running ones."""

    counts: ShardCounts  # the finished shards
    planned: int  # tasks of the shards finished, running and still to build
    done: int
    accepted: int
    rejected: int
    running: int  # shards being built


def eta_text(left: int, done: int, elapsed: float, idle: float) -> str:
    """The bar's ETA: ``left`` tasks at the rate of the ``done`` in ``elapsed`` seconds.

    The rate is over the whole run, not rich's 30 s window: an LLM task can take minutes, and
    the window would show no ETA between two of them. Once no task has finished for a while
    (``idle`` seconds), it says so: that is what tells a slow endpoint from a hung one.
    """
    if done <= 0:
        return "eta -:--:--"  # the elapsed time beside it says how long it has waited
    eta = f"eta {datetime.timedelta(seconds=round(max(0, left) * elapsed / done))}"
    return eta if idle < _IDLE else f"{eta} · last task {round(idle)} s ago"


class BuildProgress:
    """``with BuildProgress(cfg, console, running=...): run the build`` shows a bar meanwhile.

    ``running`` reads the shards being built (``TaskBoard.running`` of the build's pool); without
    it the bar moves a shard at a time.
    """

    def __init__(self, cfg: BuildConfig, console: Console, interval: float = 1.0,
                 running: Callable[[], Sequence[RunningShard]] | None = None) -> None:
        self._cfg = cfg
        self._interval = interval
        self._running = running
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, name="datagen-progress", daemon=True)
        # Tasks done of planned sit in the text, not in their own column: on a narrow terminal
        # rich squeezes whole columns away, and the count is what must stay.
        self._progress = Progress(
            SpinnerColumn(), TextColumn("{task.description}"), BarColumn(bar_width=20),
            TextColumn("{task.fields[counts]}"), TimeElapsedColumn(),
            TextColumn("{task.fields[eta]}"), console=console, transient=True)
        self._task: TaskID | None = None
        self._lock = threading.Lock()  # tally() may be called from any thread
        self._seen: dict[int, ShardSummary] = {}
        self._markers: MarkerCache = {}  # markers read so far (tally runs every second)
        self._finished: ShardCounts | None = None
        self._plan: list[int] = []
        self._started = time.monotonic()
        self._first_done = 0  # tasks done when the bar started (a resumed build's)
        self._last_done = 0
        self._last_change = self._started

    def __enter__(self) -> BuildProgress:
        first = self.tally()
        self._started = self._last_change = time.monotonic()
        self._first_done = self._last_done = first.done
        self._progress.start()
        self._task = self._progress.add_task(
            self._stage(first), total=max(first.planned, 1), completed=first.done,
            counts=self._text(first), eta=self._eta(first, self._started))
        self._thread.start()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self._stop.set()
        self._thread.join()
        self._progress.stop()

    def tally(self) -> BuildTally:
        """Read the build now: the finished shards' markers, then the running shards' counts."""
        # Running shards first: a shard writes its marker before it frees its slot, so a shard
        # missing from this reading is in the markers read next, and none is lost in between.
        running = list(self._running()) if self._running is not None else []
        done = completed_shards(self._cfg, self._markers)
        with self._lock:
            if self._finished is None or done.keys() != self._seen.keys():
                # Dedup and planning over all shards are not free: only on news.
                self._finished = shard_counts(self._cfg, done)
                self._plan = shards_to_build(self._cfg, done)
                self._seen = done
            c, plan = self._finished, self._plan
        live = [r for r in running if r.index not in done]
        per_shard = self._cfg.shard_size * self._cfg.questions_per_scene
        sizes = {i: per_shard for i in plan} | {r.index: r.tasks or per_shard for r in live}
        return BuildTally(counts=c, planned=c.tasks + sum(sizes.values()),
                          done=c.tasks + sum(r.done for r in live),
                          accepted=c.accepted + sum(r.kept for r in live),
                          rejected=c.rejected + sum(r.rejected for r in live), running=len(live))

    def _stage(self, t: BuildTally) -> str:
        return "publishing" if t.counts.ready >= self._cfg.n else "building shards"

    def _text(self, t: BuildTally) -> str:
        # Without a reader of the running shards (Dask) only finished ones are known.
        shards, state = (t.running, "running") if self._running else (t.counts.shards, "done")
        return (f"{t.done}/{max(t.planned, t.done)} tasks · accepted {t.accepted} · rejected "
                f"{t.rejected} · dup {t.counts.duplicates} · rows {t.counts.ready}/{self._cfg.n} "
                f"· {shards} shard{'' if shards == 1 else 's'} {state}")

    def _eta(self, t: BuildTally, now: float) -> str:
        if t.done != self._last_done:
            self._last_done, self._last_change = t.done, now
        return eta_text(t.planned - t.done, t.done - self._first_done, now - self._started,
                        now - self._last_change)

    def _watch(self) -> None:
        assert self._task is not None
        while not self._stop.wait(self._interval):
            try:
                t = self.tally()
            except (OSError, ValueError):  # a marker being replaced; read it next time
                continue
            self._progress.update(self._task, completed=t.done, total=max(t.planned, t.done, 1),
                                  description=self._stage(t), counts=self._text(t),
                                  eta=self._eta(t, time.monotonic()))
