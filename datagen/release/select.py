"""Choosing the rows of a release, and planning the shards that can supply them.

Which rows: each split's rows in shard order; a row is removed when it duplicates an earlier
kept row (``dedup``), when its image or question comes from a benchmark
(``--decontaminate``), when it shares a scene or an image with another split or an earlier build
(``--split all``, ``--exclude``), and, in the RL set, when a weak model always solved it. The SFT
set takes the first ``n`` rows left; the RL set fills the ``--rl-mix`` quota of each difficulty
in the same order (topped up from the others if the built shards cannot meet it).

The planner (``shards_to_build``) asks the same question of the finished shards: how many rows
would they publish, and how many more shards does each split need.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import pyarrow.parquet as pq

from datagen.config import BuildConfig
from datagen.paths import index_file
from datagen.pipeline.shards import ShardSummary, shard_files, shard_signatures
from datagen.release.decontaminate import (
    Benchmark,
    Excluded,
    contaminated,
    load_benchmark,
    load_excluded,
)
from datagen.release.dedup import DUPLICATE_REASONS, DedupIndex, DedupRule, Signatures

__all__ = ["REMOVAL_REASONS", "Position", "Selection", "check_sources", "count_publishable",
           "dedup_rule", "loaded_benchmarks", "select", "shards_to_build"]

REMOVAL_REASONS = (*DUPLICATE_REASONS, "split_overlap", "contaminated", "trivial")
# Shards with no single verified row (all rejected) must not top up forever.
_MAX_SHARD_FACTOR = 4
_EXPECTED_YIELD = 0.9  # share of a shard's tasks expected to become rows, before any is built

Position = tuple[int, int]  # (shard index, row in shard)


@dataclass(slots=True)
class Selection:
    """One split's choice of rows."""

    split: str
    picked: list[Position]  # in shard order
    strict: int  # rows picked within the RL mix's quotas (all of them for SFT)
    removed: list[tuple[Position, str, str]]  # (row, reason, detail)
    mix_met: bool = True


def dedup_rule(cfg: BuildConfig) -> DedupRule:
    """The duplicate rule the publish options give."""
    return DedupRule(cfg.dedup_radius, cfg.text_threshold, cfg.image_hash)


def _dedup(cfg: BuildConfig, split: str, shards: list[ShardSummary]) -> dict[int, list[Any]]:
    """Per shard, per row: None (kept) or its duplicate reason.

    The index persists in ``OUT/.datagen/index/``; shards it has admitted before, in the same
    order, are not admitted again, so a resumed or extended build only adds the new shards.
    """
    path = index_file(cfg.out, split)
    rule = dedup_rule(cfg)
    order = [s.index for s in shards]
    index, decisions = DedupIndex(rule), {}
    loaded = DedupIndex.load(path, rule)
    if loaded is not None:
        old, meta = loaded
        done = list(meta.get("shards", []))
        saved = {int(k): v for k, v in meta["decisions"].items()}
        if meta.get("content_key") == cfg.content_key():
            if order[:len(done)] == done:
                index, decisions = old, saved
            elif done[:len(order)] == order:
                # A row's fate depends only on the rows before it, so an earlier shard's
                # decisions stand (the planner asks about such prefixes when it replays).
                return {k: saved[k] for k in order}
    new = [s for s in shards if s.index not in decisions]
    if new:
        reasons = index.admit(Signatures.concat([shard_signatures(cfg, s.index) for s in new]))
        start = 0
        for s in new:
            decisions[s.index] = reasons[start:start + s.kept]
            start += s.kept
        index.save(path, {"content_key": cfg.content_key(), "shards": order,
                          "decisions": {str(k): decisions[k] for k in order}})
    return decisions


_benchmarks: dict[tuple[str, int], Benchmark] = {}
_excluded: dict[str, tuple[float, Excluded]] = {}


def _load_benchmarks(cfg: BuildConfig) -> list[Benchmark]:
    """The benchmarks to decontaminate against (loaded once per process)."""
    for source in cfg.decontaminate:
        if (source, cfg.contam_ngram) not in _benchmarks:
            _benchmarks[(source, cfg.contam_ngram)] = load_benchmark(source, cfg.contam_ngram)
    return [_benchmarks[(s, cfg.contam_ngram)] for s in cfg.decontaminate]


def _load_excluded(cfg: BuildConfig) -> Excluded:
    """The scenes and images of the ``--exclude`` folders (re-read when they change)."""
    union = Excluded()
    for path in cfg.exclude:
        data = path / "data"
        stamp = data.stat().st_mtime if data.exists() else 0.0
        key = str(path.resolve())
        if key not in _excluded or _excluded[key][0] != stamp:
            _excluded[key] = (stamp, load_excluded(path))
        union.scenes |= _excluded[key][1].scenes
        union.phash |= _excluded[key][1].phash
    return union


def loaded_benchmarks(cfg: BuildConfig) -> list[Benchmark]:
    """The ``--decontaminate`` benchmarks, as the selection used them."""
    return _load_benchmarks(cfg)


def check_sources(cfg: BuildConfig) -> None:
    """Load the ``--decontaminate`` benchmarks and ``--exclude`` builds now, so that a bad one
    is a usage error before any work is done (they stay loaded for publishing)."""
    _load_benchmarks(cfg)
    _load_excluded(cfg)


def _questions(cfg: BuildConfig, s: ShardSummary) -> list[str]:
    column = "question" if s.split == "sft" else "extra_info.question"
    table = pq.read_table(shard_files(cfg, s.index)[0], columns=[column])
    return [str(q) for q in table.column(0).to_pylist()]


def _quotas(n: int, mix: Sequence[tuple[str, float]]) -> dict[str, int]:
    """Rows per difficulty: ``n`` split by the weights, largest remainders rounded up."""
    raw = {k: n * w for k, w in mix}
    quotas = {k: math.floor(v) for k, v in raw.items()}
    for k in sorted(raw, key=lambda k: raw[k] - quotas[k], reverse=True)[:n - sum(
            quotas.values())]:
        quotas[k] += 1
    return quotas


def _select_split(cfg: BuildConfig, split: str, shards: list[ShardSummary],
                  excluded: Excluded, benchmarks: list[Benchmark]) -> Selection:
    decisions = _dedup(cfg, split, shards)
    removed: list[tuple[Position, str, str]] = []
    clean: list[tuple[Position, str]] = []  # row, difficulty
    for s in shards:
        dup = decisions[s.index]
        sigs = shard_signatures(cfg, s.index) if (excluded.scenes or benchmarks) else None
        contam = (contaminated(sigs, _questions(cfg, s), benchmarks, cfg.dedup_radius,
                               cfg.image_hash, cfg.contam_ngram)
                  if sigs is not None and benchmarks else [None] * s.kept)
        overlap = excluded.overlaps(sigs) if sigs is not None and excluded.scenes \
            else [False] * s.kept
        for i in range(s.kept):
            pos = (s.index, i)
            if dup[i]:
                removed.append((pos, dup[i], "an earlier kept row is the same"))
            elif contam[i]:
                removed.append((pos, "contaminated", contam[i]))
            elif overlap[i]:
                removed.append((pos, "split_overlap", "its scene or image is in another split "
                                "or an --exclude build"))
            elif split == "rl" and s.trivial[i] and not cfg.keep_trivial:
                removed.append((pos, "trivial", "the weak model always solved it"))
            else:
                clean.append((pos, s.difficulties[i]))
    if split == "sft":
        picked = [pos for pos, _ in clean[:cfg.n]]
        return Selection(split, picked, len(picked), removed)
    quotas = _quotas(cfg.n, cfg.rl_mix)
    taken: Counter[str] = Counter()
    strict: list[Position] = []
    rest: list[Position] = []
    for pos, level in clean:
        if taken[level] < quotas.get(level, 0):
            taken[level] += 1
            strict.append(pos)
        else:
            rest.append(pos)
    picked = sorted(strict + rest[:cfg.n - len(strict)])
    return Selection(split, picked, len(strict), removed, mix_met=len(strict) == cfg.n)


def select(cfg: BuildConfig, shards: Sequence[ShardSummary]) -> dict[str, Selection]:
    """Each split's rows, SFT first: with ``--split all`` the RL set avoids every SFT scene."""
    ordered = sorted(shards, key=lambda s: s.index)
    excluded = _load_excluded(cfg)
    benchmarks = _load_benchmarks(cfg)
    chosen: dict[str, Selection] = {}
    for split in cfg.splits():
        mine = [s for s in ordered if s.split == split]
        chosen[split] = _select_split(cfg, split, mine, excluded, benchmarks)
        if split == "sft" and "rl" in cfg.splits():
            excluded = Excluded(set(excluded.scenes), set(excluded.phash))
            for s in mine:  # every SFT scene, published or not: the RL set never sees them
                excluded.add(shard_signatures(cfg, s.index))
    return chosen


def count_publishable(cfg: BuildConfig, shards: Sequence[ShardSummary]) -> int:
    """How many rows the finished shards would publish per split (the least over splits)."""
    chosen = select(cfg, shards)
    return min(chosen[split].strict for split in cfg.splits())


def _initial(cfg: BuildConfig) -> int:
    return max(1, math.ceil(cfg.n / (_EXPECTED_YIELD * cfg.shard_size * cfg.questions_per_scene)))


def shards_to_build(cfg: BuildConfig, done: Mapping[int, ShardSummary]) -> list[int]:
    """The shard indices to build next so that every split can publish ``cfg.n`` rows.

    Empty when the finished shards are enough, or when a split has built ``4 ×`` the shards it
    was expected to need (its tasks mostly fail: publishing what there is beats looping). The
    planning rounds are replayed from the first over the finished shards, so a resumed build
    first finishes the round it was stopped in and then plans exactly the shards an
    uninterrupted build would have (same shards, same funnel, same rejects).
    """
    replayed: dict[int, ShardSummary] = {}
    while True:
        todo = _next_round(cfg, replayed)
        missing = [i for i in todo if i not in done]
        if missing or not todo:
            return missing
        replayed.update((i, done[i]) for i in todo)


def _next_round(cfg: BuildConfig, done: Mapping[int, ShardSummary]) -> list[int]:
    """One planning round: the shards to add to ``done`` (see ``shards_to_build``)."""
    chosen = select(cfg, list(done.values())) if done else {}
    todo: list[int] = []
    for split in cfg.splits():
        have = chosen[split].strict if split in chosen else 0
        if have >= cfg.n:
            continue
        built = sum(1 for s in done.values() if s.split == split)
        per_shard = have / built if built and have else (
            _EXPECTED_YIELD * cfg.shard_size * cfg.questions_per_scene if not built else 1.0)
        need = max(1, math.ceil((cfg.n - have) / max(per_shard, 1.0)))
        room = _MAX_SHARD_FACTOR * _initial(cfg) - built
        fresh = (i for i in cfg.shards_of(split) if i not in done)
        todo += [next(fresh) for _ in range(max(0, min(need, room)))]
    return sorted(todo)
