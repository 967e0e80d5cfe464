"""The run summary: a markdown page of one build's numbers, for people watching the run.

The build flow publishes it as a Prefect artifact; it is rendered from
``templates/run_summary.md.j2`` out of ``PublishReport.stats`` and a few facts about this run
(time taken, shards built and reused). The stats are read leniently: a key a build did not write
(a split not built, a scripted teacher's missing cost) shows as absent rather than failing the
run after its data was published.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from datagen.templates import render

__all__ = ["RunFacts", "render_run_summary", "summary_context"]

# Funnel stages in order, with the stats key of each (per split).
_FUNNEL = (("scenes drawn", "scenes"), ("tasks posed", "tasks"), ("verified", "verified"),
           ("published", "rows"))


@dataclass(frozen=True, slots=True)
class RunFacts:
    """What the flow knows about this run that the stats (about the dataset) do not hold."""

    seconds: float  # wall time of this run, publish included
    shards_built: int  # shards built by this run
    shards_reused: int  # finished shards found on disk (resume)
    verified_built: int  # verified rows in the shards this run built
    runner: str = "local"  # local process pool or dask


def _splits(stats: Mapping[str, Any]) -> dict[str, Mapping[str, Any]]:
    """Per-split stats: the ``splits`` mapping."""
    splits = stats.get("splits")
    if not isinstance(splits, Mapping):
        return {}
    return {str(k): v for k, v in splits.items() if isinstance(v, Mapping)}


def _counts(value: object) -> list[tuple[str, int]]:
    """A ``{name: n}`` mapping as rows, largest first (anything else: no rows)."""
    if not isinstance(value, Mapping):
        return []
    rows = [(str(k), int(v)) for k, v in value.items() if isinstance(v, int | float)]
    return sorted(rows, key=lambda kv: (-kv[1], kv[0]))


def _removed(stats: Mapping[str, Any]) -> list[tuple[str, int]]:
    return [(k.replace("_", " "), n) for k, n in _counts(stats.get("removed")) if n]


def _cost(stats: Mapping[str, Any]) -> list[tuple[str, str]]:
    """The LLM teacher's and the weak model's calls and cost; empty for an offline build."""
    rows = []
    for label, key in (("teacher", "llm"), ("weak model", "weak")):
        usage = stats.get(key)
        if isinstance(usage, Mapping):
            rows.append((f"{label} {usage.get('model', '?')}",
                         f"{usage.get('api_calls', 0)} paid calls, "
                         f"{usage.get('cached_calls', 0)} cached, "
                         f"{float(usage.get('cost_usd') or 0.0):.4f} USD"
                         + (" (stopped at --max-cost)" if usage.get("budget_spent") else "")))
    return rows


def summary_context(stats: Mapping[str, Any], run: RunFacts) -> dict[str, Any]:
    """The values the template shows, every one present (the template is strict)."""
    splits = []
    for name, s in _splits(stats).items():
        funnel = [(label, s[key]) for label, key in _FUNNEL if isinstance(s.get(key), int)]
        rate = s.get("acceptance_rate")
        splits.append({
            "name": name,
            "rows": s.get("rows", 0),
            "requested": s.get("requested"),
            "funnel": funnel,
            "acceptance": f"{100 * rate:.1f} %" if isinstance(rate, int | float) else None,
            "by_family": _counts(s.get("by_family")),
            "by_task_type": _counts(s.get("by_task_type")),
            "reject_reasons": _counts(s.get("reject_reasons")),
        })
    hours = run.seconds / 3600
    return {
        "splits": splits,
        "removed": _removed(stats),
        "run": run,
        "minutes": f"{run.seconds / 60:.1f}",
        "per_hour": f"{run.verified_built / hours:,.0f}" if hours > 0 else "n/a",
        "sandbox_mode": stats.get("sandbox_mode", "unknown") + (
            f" ({stats['sandbox']})" if stats.get("sandbox") else ""),
        "teacher": stats.get("teacher", "unknown"),
        "families": ", ".join(stats.get("families") or []) or "unknown",
        "content_key": stats.get("content_key", "unknown"),
        "command": stats.get("command") or "",
        "cost": _cost(stats),
    }


def render_run_summary(stats: Mapping[str, Any], run: RunFacts) -> str:
    """The markdown summary of a build: counts, funnel, reject reasons, throughput, cost."""
    return render("run_summary.md.j2", **summary_context(stats, run)) + "\n"
