"""The release's numbers: what the card and ``stats.json`` say about the published rows, the
funnel behind them, the teacher's and the weak model's calls, and the card's plots."""

from __future__ import annotations

import statistics
from collections import Counter
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq

from datagen import GENERATOR_VERSION
from datagen.config import BuildConfig, public_url
from datagen.inspect.balance import MARGIN, blind_guess
from datagen.inspect.stats import write_plots
from datagen.pipeline.shards import ShardSummary
from datagen.release.select import (
    REMOVAL_REASONS,
    Position,
    Selection,
    dedup_rule,
    loaded_benchmarks,
)
from datagen.scenes.base import LEVEL_CUTS
from datagen.scenes.registry import FAMILIES
from datagen.teachers.weak import EASY_AT, MEDIUM_AT

__all__ = ["ambiguity_stats", "blind_guess_table", "common_stats", "histograms", "plots",
           "rl_stats", "sft_stats", "teacher_stats", "weak_stats"]

def plots(root: Path, chosen: dict[str, Selection]) -> list[str]:
    """The card's plots, drawn from the release laid out in ``root`` (the stage)."""
    paths: list[Path] = []
    for split, sel in chosen.items():
        if sel.picked:
            paths += write_plots(root, root / "plots", split)
    return [p.relative_to(root).as_posix() for p in paths]


_SIDE_BINS = ((1024, "≤1024"), (2048, "1025–2048"), (3072, "2049–3072"), (4096, "3073–4096"))
_AREA_BINS = ((0.0003, "<0.03 %"), (0.001, "0.03–0.1 %"), (0.003, "0.1–0.3 %"), (1.0, "≥0.3 %"))


def _bin(value: float, bins: tuple[tuple[float, str], ...], last: str) -> str:
    return next((label for edge, label in bins if value <= edge), last)


def histograms(by_index: dict[int, ShardSummary], picked: list[Position]) -> dict[str, Any]:
    """Image long side and target area of the published rows, binned for the card."""
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


def _columns(paths: list[Path], names: list[str]) -> dict[str, list[Any]]:
    """Columns (dotted names reach into structs) of the published files, without the images."""
    cols: dict[str, list[Any]] = {n.split(".")[-1]: [] for n in names}
    for p in paths:
        table = pq.read_table(p, columns=names)
        for name, column in zip(cols, table.columns, strict=True):
            cols[name] += column.to_pylist()
    return cols


def _mix_counts(cols: dict[str, list[Any]]) -> dict[str, Any]:
    kinds = Counter(".".join(t.split(".")[:2]) for t in cols["task_type"])
    return {
        "rows": len(cols["task_type"]),
        "by_task_type": dict(sorted(Counter(cols["task_type"]).items())),
        "by_family": dict(sorted(Counter(t.split(".")[0] for t in cols["task_type"]).items())),
        "by_kind": dict(sorted(kinds.items())),
        "by_difficulty": {d: n for d in ("easy", "medium", "hard")
                          if (n := Counter(cols["difficulty"])[d])},
        "by_answer_type": dict(sorted(Counter(cols["answer_type"]).items())),
    }


def ambiguity_stats(families: list[str], shards: list[ShardSummary],
                    picked: list[Position]) -> list[dict[str, Any]]:
    """Per ambiguity rule of the ``families`` built: the questions it checked and rejected
    when they were posed (every split), and the published rows of ``picked`` that fail it."""
    by_index = {s.index: s for s in shards}
    failing: Counter[str] = Counter()
    for shard, row in picked:
        failed = by_index[shard].ambiguity_failed
        failing.update(failed[row] if row < len(failed) else ())
    checked: Counter[str] = Counter()
    rejected: Counter[str] = Counter()
    for s in shards:
        checked.update(s.ambiguity_checked)
        rejected.update(s.ambiguity_rejected)
    out = []
    for name, family in FAMILIES.items():
        if name not in families:
            continue
        for rule in family.rules:
            key = f"{name}.{rule.name}"
            out.append({"rule": key, "says": rule.says, "checked": checked[key],
                        "rejected": rejected[key], "published_failing": failing[key]})
    return out


def blind_guess_table(task_types: list[str], answer_types: list[str], questions: list[str],
                      answers: list[str]) -> list[dict[str, Any]]:
    """The blind-guess table of the published rows (``inspect.balance``)."""
    rows = zip(task_types, answer_types, questions, answers, strict=True)
    return [{"task_type": g.task_type, "rows": g.rows, "majority": g.majority,
             "share": g.share, "chance": g.chance, "bound": round(g.bound, 4),
             "measured": g.measured, "balanced": g.balanced} for g in blind_guess(rows)]


def sft_stats(cfg: BuildConfig, shards: list[ShardSummary], paths: list[Path],
               reasons: Counter[str]) -> dict[str, Any]:
    cols = _columns(paths, ["task_type", "difficulty", "style", "answer_type",
                            "weak_pass_rate", "trivial", "question", "answer"])
    tasks = sum(s.tasks for s in shards)
    verified = sum(s.kept for s in shards)
    cells = [c for s in shards for c in s.cell_seconds]
    rates = Counter(f"{r:.2f}" for r in cols["weak_pass_rate"] if r is not None)
    return {
        **_mix_counts(cols),
        "requested": cfg.n,
        "scenes": sum(s.scenes for s in shards),
        "tasks": tasks,
        "verified": verified,
        "acceptance_rate": round(verified / tasks, 4) if tasks else 0.0,
        "reject_reasons": dict(sorted(reasons.items())),
        "by_style": dict(sorted(Counter(cols["style"]).items())),
        "median_cell_seconds": round(statistics.median(cells), 4) if cells else None,
        "trivial_rows": sum(cols["trivial"]),
        "by_weak_pass_rate": dict(sorted(rates.items())),
        "grounding": grounding_rates(shards),
        "blind_guess": blind_guess_table(cols["task_type"], cols["answer_type"],
                                         cols["question"], cols["answer"]),
        "distinct_questions": len(set(cols["question"])),
    }


def grounding_rates(shards: list[ShardSummary]) -> dict[str, dict[str, str]]:
    """Per task type and check: "pass rate % (passed/applied), n/a count", summed over shards."""
    totals: dict[str, dict[str, Counter[str]]] = {}
    for s in shards:
        for task_type, checks in s.grounding.items():
            mine = totals.setdefault(task_type, {})
            for check, counts in checks.items():
                mine.setdefault(check, Counter()).update(counts)
    out: dict[str, dict[str, str]] = {}
    for task_type in sorted(totals):
        row = {}
        for check in ("provenance", "twin", "jitter"):
            c = totals[task_type].get(check, Counter())
            applied = c["pass"] + c["fail"]
            rate = f"{100 * c['pass'] / applied:.1f} % ({c['pass']}/{applied})" if applied \
                else "–"
            row[check] = rate + (f", n/a {c['na']}" if c["na"] else "")
        out[task_type] = row
    return out


def rl_stats(cfg: BuildConfig, shards: list[ShardSummary], paths: list[Path],
              sel: Selection) -> dict[str, Any]:
    cols = _columns(paths, ["extra_info.task_type", "extra_info.difficulty",
                            "extra_info.answer_type", "trivial", "extra_info.question",
                            "extra_info.answer"])
    return {
        **_mix_counts(cols),
        "requested": cfg.n,
        "scenes": sum(s.scenes for s in shards),
        "tasks": sum(s.tasks for s in shards),
        "mix": dict(cfg.rl_mix),
        "mix_met": sel.mix_met,
        "trivial_rows": sum(cols["trivial"]),
        "keep_trivial": cfg.keep_trivial,
        "blind_guess": blind_guess_table(cols["task_type"], cols["answer_type"],
                                         cols["question"], cols["answer"]),
        "distinct_questions": len(set(cols["question"])),
    }


def common_stats(cfg: BuildConfig, shards: list[ShardSummary],
                  chosen: dict[str, Selection]) -> dict[str, Any]:
    removed = Counter(reason for sel in chosen.values() for _, reason, _ in sel.removed)
    by_split = {split: dict(sorted(Counter(r for _, r, _ in sel.removed).items()))
                for split, sel in chosen.items()}
    sft = [s for s in shards if s.split == "sft"]
    return {
        "split": cfg.split,
        "families": list(cfg.families),
        "teacher": cfg.teacher,
        "seed": cfg.seed,
        "shards": len(shards),
        "content_key": cfg.content_key(),
        "generator_version": GENERATOR_VERSION,
        "command": cfg.command,
        "sandbox_mode": sft[0].sandbox_mode if sft else "none",
        # Which bwrap, whether the seccomp filter was on, how memory was bounded.
        "sandbox": sft[0].sandbox_walls if sft else "",
        "removed": {reason: removed[reason] for reason in REMOVAL_REASONS},
        "removed_by_split": by_split,
        "dedup": {"rule": dedup_rule(cfg).key(), "radius": cfg.dedup_radius,
                  "text_threshold": cfg.text_threshold, "image_hash": cfg.image_hash},
        "decontaminate": [{"source": b.name, "items": b.items} for b in loaded_benchmarks(cfg)],
        "contam_ngram": cfg.contam_ngram,
        "exclude": [str(p) for p in cfg.exclude],
        "splits": {},
        "ambiguity": ambiguity_stats(list(cfg.families), shards,
                                     [p for sel in chosen.values() for p in sel.picked]),
        "difficulty_cuts": list(LEVEL_CUTS),
        "guess_margin": MARGIN,
    }


def teacher_stats(cfg: BuildConfig, shards: list[ShardSummary],
                   budget_spent: bool) -> dict[str, Any]:
    """The LLM teacher's numbers: model, tries, calls, tokens and what they cost."""
    if cfg.teacher == "scripted" or "sft" not in cfg.splits():
        return {"llm": None}
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


def weak_stats(cfg: BuildConfig, shards: list[ShardSummary], budget_spent: bool) -> dict[str, Any]:
    """The weak model's calls and thresholds (difficulty labels; see ``teachers.weak``)."""
    if not cfg.weak_model:
        return {"weak": None}
    return {"weak": {
        "model": cfg.weak_model,
        "endpoint": public_url(cfg.weak_base_url or cfg.base_url),
        "samples": cfg.weak_samples,
        "easy_at": EASY_AT,
        "medium_at": MEDIUM_AT,
        **_usage(shards, _WEAK_USAGE),
        "max_cost": cfg.max_cost or None,
        "budget_spent": budget_spent,
    }}
