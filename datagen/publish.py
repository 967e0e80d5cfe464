"""Publishing: dedup across shards, then a folder in Hub layout with a data card.

    OUT/README.md                      the card; its YAML ``configs:`` make
                                       ``load_dataset(OUT, "sft")`` work
    OUT/data/sft-00000-of-0000N.parquet  rows with embedded images
    OUT/rejects.jsonl                  every rejected trajectory with its reason
    OUT/stats.json                     the numbers of the card, for scripts

The data folder is written beside the old one and swapped in, so a reader never sees a mix.
"""

from __future__ import annotations

import json
import os
import shutil
import statistics
import tempfile
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
from datasets.info import DatasetInfo, DatasetInfosDict
from datasets.splits import SplitDict, SplitInfo
from huggingface_hub import DatasetCardData

from datagen import GENERATOR_VERSION
from datagen.atomic import public_mode, write_text
from datagen.config import BuildConfig
from datagen.dedup import Deduper
from datagen.records import SFT_FEATURES
from datagen.rows import sft_table
from datagen.shards import ShardSummary, shard_files
from datagen.templates import render

__all__ = ["PublishReport", "count_publishable", "publish"]

ROWS_PER_FILE = 2000


@dataclass(frozen=True, slots=True)
class PublishReport:
    """What was published and the numbers behind it."""

    out: Path
    rows: int
    files: list[str]
    stats: dict[str, Any]


Position = tuple[int, int]  # (shard index, row in shard)


def _select(cfg: BuildConfig, shards: list[ShardSummary]) -> tuple[list[Position],
                                                                   list[tuple[Position, str]]]:
    """Rows to publish, in shard order, and the duplicates dropped on the way (with keys)."""
    dedup = Deduper()
    picked: list[Position] = []
    dups: list[tuple[Position, str]] = []
    for s in shards:
        for i, key in enumerate(s.keys):
            if len(picked) == cfg.n:
                return picked, dups
            if dedup.admit(key):
                picked.append((s.index, i))
            else:
                dups.append(((s.index, i), key))
    return picked, dups


def count_publishable(cfg: BuildConfig, shards: list[ShardSummary]) -> int:
    """How many rows the finished shards would publish (at most ``cfg.n``)."""
    return len(_select(cfg, shards)[0])


def publish(cfg: BuildConfig, shards: list[ShardSummary],
            budget_spent: bool = False) -> PublishReport:
    """Write the dataset folder from the finished ``shards`` (ordered by index).

    ``budget_spent`` says the build stopped at ``--max-cost``; the card and stats say so.
    """
    shards = sorted(shards, key=lambda s: s.index)
    picked, dups = _select(cfg, shards)
    by_shard: dict[int, list[int]] = {}
    for shard, row in picked:
        by_shard.setdefault(shard, []).append(row)
    tables = [pq.read_table(shard_files(cfg, i)[0]).take(pa.array(rows, pa.int64()))
              for i, rows in by_shard.items()]
    # No rows (say --max-cost ran out in the first shard) still gives a file with the schema,
    # so the card's ``configs`` point at data that loads, as an empty split.
    table = pa.concat_tables(tables) if tables else sft_table([])

    out = cfg.out
    staging = Path(tempfile.mkdtemp(prefix=".data-", dir=out))
    public_mode(staging, directory=True)
    n_files = max(1, -(-len(picked) // ROWS_PER_FILE))
    files = []
    for k in range(n_files):
        name = f"{cfg.split}-{k:05d}-of-{n_files:05d}.parquet"
        _write_parquet(table.slice(k * ROWS_PER_FILE, ROWS_PER_FILE), staging / name)
        files.append(f"data/{name}")
    _swap_in(staging, out / "data")

    rejects = _merge_rejects(cfg, shards, dups)
    stats = _stats(cfg, shards, table, len(dups), rejects)
    stats.update(_histograms(shards, picked))
    stats.update(_teacher_stats(cfg, shards, budget_spent))
    stats.update(_weak_stats(cfg, shards, table, budget_spent))
    write_text(out / "stats.json", json.dumps(stats, indent=2, sort_keys=True))
    info_yaml = _dataset_info_yaml(cfg.split, table, [out / f for f in files])
    write_text(out / "README.md", render("sft_card.md.j2", folder="data_cards", s=stats,
                                         split=cfg.split, dataset_info=info_yaml) + "\n")
    return PublishReport(out=out, rows=len(picked), files=files, stats=stats)


def _write_parquet(table: pa.Table, path: Path) -> None:
    """Write ``table``; with no rows, a file of its schema alone (no row group at all).

    ``datasets`` takes its read batch size from the first row group, so a file holding one
    empty row group fails to load ("BatchSize must be greater than 0"); none loads as empty.
    """
    if table.num_rows:
        pq.write_table(table, path)
    else:
        pq.ParquetWriter(path, table.schema).close()


def _dataset_info_yaml(split: str, table: pa.Table, files: list[Path]) -> str:
    """The card's ``dataset_info`` block: features, row count and sizes.

    Besides telling the Hub viewer the schema, it makes ``load_dataset`` notice a rebuild: its
    cache key for a local folder hashes this block, not the parquet files, so without it a
    rebuilt folder would load the previous build's rows from the cache.
    """
    splits = SplitDict()
    num_bytes = table.nbytes
    splits.add(SplitInfo(name="train", num_bytes=num_bytes, num_examples=table.num_rows))
    info = DatasetInfo(features=SFT_FEATURES, splits=splits, config_name=split,
                       download_size=sum(f.stat().st_size for f in files if f.exists()),
                       dataset_size=num_bytes)
    card_data = DatasetCardData()
    DatasetInfosDict({split: info}).to_dataset_card_data(card_data)
    return card_data.to_yaml()


def _swap_in(staging: Path, target: Path) -> None:
    old = None
    if target.exists():
        old = target.with_name(f".old-{target.name}-{os.getpid()}")
        os.replace(target, old)
    os.replace(staging, target)
    if old is not None:
        shutil.rmtree(old)


def _merge_rejects(cfg: BuildConfig, shards: list[ShardSummary],
                   dups: list[tuple[Position, str]]) -> Counter[str]:
    """Concatenate the shards' rejects, plus one record per duplicate dropped here."""
    reasons: Counter[str] = Counter()
    lines: list[str] = []
    for s in shards:
        text = shard_files(cfg, s.index)[1].read_text()
        lines.extend(ln for ln in text.splitlines() if ln)
        reasons.update({r: n for r, n in s.reasons.items() if r != "verified"})
    for (shard, row), key in dups:
        lines.append(json.dumps({"reason": "duplicate", "shard": shard, "row": row, "key": key},
                                sort_keys=True))
    if dups:
        reasons["duplicate"] += len(dups)
    write_text(cfg.out / "rejects.jsonl", "".join(ln + "\n" for ln in lines))
    return reasons


_SIDE_BINS = ((1024, "≤1024"), (2048, "1025–2048"), (3072, "2049–3072"), (4096, "3073–4096"))
_AREA_BINS = ((0.0003, "<0.03 %"), (0.001, "0.03–0.1 %"), (0.003, "0.1–0.3 %"), (1.0, "≥0.3 %"))


def _bin(value: float, bins: tuple[tuple[float, str], ...], last: str) -> str:
    return next((label for edge, label in bins if value <= edge), last)


def _histograms(shards: list[ShardSummary], picked: list[Position]) -> dict[str, Any]:
    """Image long side and target area of the published rows, binned for the card."""
    by_index = {s.index: s for s in shards}
    sides: Counter[str] = Counter()
    areas: Counter[str] = Counter()
    for shard, row in picked:
        s = by_index[shard]
        sides[_bin(s.sides[row], _SIDE_BINS, ">4096")] += 1
        if s.target_areas[row] is not None:
            areas[_bin(s.target_areas[row], _AREA_BINS, "≥0.3 %")] += 1
    order = [label for _, label in _SIDE_BINS] + [">4096"]
    return {"by_long_side": {k: sides[k] for k in order if sides[k]},
            "by_target_area": {label: areas[label] for _, label in _AREA_BINS if areas[label]}}


def _teacher_stats(cfg: BuildConfig, shards: list[ShardSummary],
                   budget_spent: bool) -> dict[str, Any]:
    """The LLM teacher's numbers: model, tries, calls, tokens and what they cost."""
    if cfg.teacher == "scripted":
        return {"llm": None}
    from datagen.teachers.chat_api import public_url

    return {"llm": {
        "model": cfg.model,
        "endpoint": public_url(cfg.base_url),
        "attempts_per_task": cfg.attempts,
        "temperature": cfg.temperature,
        "attempts": sum(s.attempts for s in shards),
        **_usage(shards, _TEACHER_USAGE),
        "max_cost": cfg.max_cost or None,
        "budget_spent": budget_spent,
    }}


# Card field -> ShardSummary field, for the teacher's calls and for the weak model's.
_TEACHER_USAGE = {"api_calls": "api_calls", "cached_calls": "cached_calls",
                  "prompt_tokens": "prompt_tokens", "completion_tokens": "completion_tokens",
                  "cost_usd": "cost_usd"}
_WEAK_USAGE = {"api_calls": "weak_calls", "cached_calls": "weak_cached_calls",
               "prompt_tokens": "weak_prompt_tokens",
               "completion_tokens": "weak_completion_tokens", "cost_usd": "weak_cost_usd"}


def _usage(shards: list[ShardSummary], fields: dict[str, str]) -> dict[str, Any]:
    """Calls, tokens and cost summed over the shards (cost rounded to 1/100 cent)."""
    totals = {key: sum(getattr(s, attr) for s in shards) for key, attr in fields.items()}
    totals["cost_usd"] = round(totals["cost_usd"], 4)
    return totals


def _weak_stats(cfg: BuildConfig, shards: list[ShardSummary], table: pa.Table,
                budget_spent: bool) -> dict[str, Any]:
    """Weak-to-strong difficulty: trivial rows, the pass-rate histogram, the weak model's calls.

    The histogram counts published rows by pass rate (``0.5`` = half the samples right).
    """
    cols = table.select(["weak_pass_rate", "trivial"]).to_pydict()
    rates = Counter(f"{r:.2f}" for r in cols["weak_pass_rate"] if r is not None)
    stats: dict[str, Any] = {"trivial_rows": sum(cols["trivial"]),
                             "by_weak_pass_rate": dict(sorted(rates.items()))}
    if not cfg.weak_model:
        return {**stats, "weak": None}
    from datagen.teachers.chat_api import public_url
    from datagen.teachers.weak import EASY_AT, MEDIUM_AT

    return {**stats, "weak": {
        "model": cfg.weak_model,
        "endpoint": public_url(cfg.weak_base_url or cfg.base_url),
        "samples": cfg.weak_samples,
        "easy_at": EASY_AT,
        "medium_at": MEDIUM_AT,
        **_usage(shards, _WEAK_USAGE),
        "max_cost": cfg.max_cost or None,
        "budget_spent": budget_spent,
    }}


def _stats(cfg: BuildConfig, shards: list[ShardSummary], table: pa.Table, dups: int,
           reasons: Counter[str]) -> dict[str, Any]:
    cols = table.select(["task_type", "difficulty", "style", "answer_type"]).to_pydict()
    tasks = sum(s.tasks for s in shards)
    verified = sum(s.kept for s in shards)
    cells = [c for s in shards for c in s.cell_seconds]
    kinds = Counter(".".join(t.split(".")[:2]) for t in cols["task_type"])
    families = Counter(t.split(".")[0] for t in cols["task_type"])
    return {
        "split": cfg.split,
        "families": list(cfg.families),
        "rows": len(cols["task_type"]),
        "requested": cfg.n,
        "scenes": sum(s.scenes for s in shards),
        "tasks": tasks,
        "verified": verified,
        "acceptance_rate": round(verified / tasks, 4) if tasks else 0.0,
        "duplicates": dups,
        "reject_reasons": dict(sorted(reasons.items())),
        "by_task_type": dict(sorted(Counter(cols["task_type"]).items())),
        "by_family": dict(sorted(families.items())),
        "by_kind": dict(sorted(kinds.items())),
        "by_difficulty": {d: n for d in ("easy", "medium", "hard")
                          if (n := Counter(cols["difficulty"])[d])},
        "by_style": dict(sorted(Counter(cols["style"]).items())),
        "by_answer_type": dict(sorted(Counter(cols["answer_type"]).items())),
        "median_cell_seconds": round(statistics.median(cells), 4) if cells else None,
        "sandbox_mode": shards[0].sandbox_mode if shards else "none",
        "teacher": cfg.teacher,
        "seed": cfg.seed,
        "shards": len(shards),
        "content_key": cfg.content_key(),
        "generator_version": GENERATOR_VERSION,
        "command": cfg.command,
    }
