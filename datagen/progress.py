"""A live progress bar for ``datagen build``, drawn from the shard files as they appear.

The bar watches the build's completion markers (``shards.completed_shards``), so it shows the
same thing wherever the shards are built (this machine's process pool or a Dask cluster) and
needs no hook inside the flow: rows ready of those asked for, with accepted / rejected /
duplicate counts, shards done, and an ETA. It moves a shard at a time.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from types import TracebackType

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    SpinnerColumn,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

from datagen.config import BuildConfig
from datagen.publish import count_publishable
from datagen.shards import ShardSummary, completed_shards

__all__ = ["BuildProgress", "ShardCounts", "shard_counts"]


@dataclass(frozen=True, slots=True)
class ShardCounts:
    """What the finished shards of a build hold so far."""

    shards: int
    ready: int  # rows that would be published now (after dedup, at most n)
    accepted: int  # verified rows in the shards
    rejected: int  # failed tries
    duplicates: int  # verified rows dedup drops (a lower bound once ``ready`` reaches n)


def shard_counts(cfg: BuildConfig, done: dict[int, ShardSummary] | None = None) -> ShardCounts:
    """Count what the finished shards of ``cfg`` (default: read from their markers) hold."""
    done = completed_shards(cfg) if done is None else done
    shards = [done[i] for i in sorted(done)]
    accepted = sum(s.kept for s in shards)
    rejected = sum(n for s in shards for reason, n in s.reasons.items() if reason != "verified")
    ready = count_publishable(cfg, shards) if shards else 0  # per split, the least of them
    dropped = accepted - ready * len(cfg.splits())
    return ShardCounts(shards=len(shards), ready=ready, accepted=accepted, rejected=rejected,
                       duplicates=max(0, dropped) if ready < cfg.n else 0)


class BuildProgress:
    """``with BuildProgress(cfg, console): run the build`` shows a bar while the block runs."""

    def __init__(self, cfg: BuildConfig, console: Console, interval: float = 1.0) -> None:
        self._cfg = cfg
        self._interval = interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, name="datagen-progress", daemon=True)
        self._progress = Progress(
            SpinnerColumn(), TextColumn("{task.description}"), BarColumn(),
            MofNCompleteColumn(), TextColumn("rows  {task.fields[counts]}"),
            TimeElapsedColumn(), TextColumn("eta"), TimeRemainingColumn(),
            console=console, transient=True)
        self._task: TaskID | None = None

    def __enter__(self) -> BuildProgress:
        first = shard_counts(self._cfg)
        self._progress.start()
        self._task = self._progress.add_task("building shards", total=self._cfg.n,
                                             completed=first.ready, counts=self._text(first))
        self._thread.start()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self._stop.set()
        self._thread.join()
        self._progress.stop()

    @staticmethod
    def _text(c: ShardCounts) -> str:
        return (f"{c.shards} shards · accepted {c.accepted} · rejected {c.rejected} · "
                f"dup {c.duplicates}")

    def _watch(self) -> None:
        assert self._task is not None
        seen = -1
        while not self._stop.wait(self._interval):
            try:
                done = completed_shards(self._cfg)
                if len(done) == seen:  # dedup over all shards is not free: only on news
                    continue
                c = shard_counts(self._cfg, done)
            except (OSError, ValueError):  # a marker being replaced; read it next time
                continue
            seen = len(done)
            stage = "publishing" if c.ready >= self._cfg.n else "building shards"
            self._progress.update(self._task, completed=c.ready, description=stage,
                                  counts=self._text(c))
