"""``datagen stats``: what a published set holds, as tables and as PNG plots.

``summarize`` reads a set (``published.open_published``) into a ``SetSummary``: the task mix
by family and type, difficulties, answer types, the input images' sizes, assistant turns and
tool calls per trace, and the acceptance funnel generated → executed → verified → deduped →
published with the reject reasons behind each drop. The funnel comes from ``stats.json`` when
the folder has one, else from the reasons in ``rejects.jsonl`` and the published rows (a
folder without either shows only what its rows say). ``summary_tables`` renders it for rich,
``plot_summary`` draws one PNG per view, and ``write_plots`` does both reading and drawing for
the dataset card.
"""

from __future__ import annotations

import io
import statistics
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from matplotlib.ticker import MaxNLocator
from PIL import Image
from rich.table import Table

from datagen.atomic import atomic_path
from datagen.inspect.balance import blind_guess
from datagen.reader import PublishedSet, open_published, row_images

__all__ = ["FUNNEL", "SetSummary", "plot_summary", "summarize", "summary_tables", "write_plots"]

FUNNEL = ("generated", "executed", "verified", "deduped", "published")
# Which stage each reject reason leaves the funnel at; an unknown reason counts as unverified.
_DROPPED_AT = {
    **dict.fromkeys(("exec_error", "timeout", "crashed", "format", "api_error"), "executed"),
    **dict.fromkeys(("no_answer", "turn_limit", "ungrounded", "wrong_answer"), "verified"),
    **dict.fromkeys(("duplicate", "exact_duplicate", "image_near_duplicate", "near_duplicate",
                     "text_near_duplicate", "split_overlap", "contaminated", "trivial"),
                    "deduped"),
}
_DIFFICULTIES = ("easy", "medium", "hard")
_MAX_TYPES = 40  # task types drawn one bar each; the rest are summed as "other"


@dataclass(slots=True)
class SetSummary:
    """The numbers behind the tables and plots of one config of a set."""

    source: str
    config: str
    rows: int = 0
    by_family: Counter[str] = field(default_factory=Counter)
    by_task_type: Counter[str] = field(default_factory=Counter)
    by_difficulty: Counter[str] = field(default_factory=Counter)
    by_answer_type: Counter[str] = field(default_factory=Counter)
    turns: Counter[int] = field(default_factory=Counter)  # assistant turns per trace
    tool_calls: Counter[int] = field(default_factory=Counter)  # code cells per trace
    image_sizes: list[tuple[str, int, int]] = field(default_factory=list)  # family, w, h
    funnel: dict[str, int] = field(default_factory=dict)  # empty when nothing says it
    reject_reasons: dict[str, int] = field(default_factory=dict)
    # (task type, answer type, question, answer) per row, for the blind-guess table.
    answers: list[tuple[str, str, str, str]] = field(default_factory=list)
    funnel_source: str = ""  # "stats.json", "rejects.jsonl" or ""


def _meta(row: dict[str, Any], key: str) -> Any:
    """A metadata field of an SFT row, or of an RL row (kept in ``extra_info`` there)."""
    if row.get(key) is not None:
        return row[key]
    return (row.get("extra_info") or {}).get(key)


def _split_stats(stats: dict[str, Any] | None, config: str) -> dict[str, Any] | None:
    """The numbers of ``config`` in stats.json (``splits.<config>``), if it has them."""
    splits = stats.get("splits") if stats else None
    part = splits.get(config) if isinstance(splits, dict) else None
    return part if isinstance(part, dict) else None


def _funnel(rows: int, reasons: dict[str, int], verified: int | None) -> dict[str, int]:
    """Counts at each stage: each reason removes its rejects at the stage it names."""
    lost = Counter()
    for reason, n in reasons.items():
        lost[_DROPPED_AT.get(reason, "verified")] += n
    if verified is None:  # without stats.json: what was verified is what was kept or deduped
        verified = rows + lost["deduped"]
    generated = verified + lost["executed"] + lost["verified"]
    return {"generated": generated, "executed": generated - lost["executed"],
            "verified": verified, "deduped": verified - lost["deduped"], "published": rows}


def summarize(published: PublishedSet) -> SetSummary:
    """Read every row of ``published`` once (images only as far as their headers)."""
    s = SetSummary(source=published.source, config=published.config)
    for _, row in published.rows():
        s.rows += 1
        family = str(_meta(row, "family") or "unknown")
        s.by_family[family] += 1
        s.by_task_type[str(_meta(row, "task_type") or "unknown")] += 1
        s.by_difficulty[str(_meta(row, "difficulty") or "unknown")] += 1
        s.by_answer_type[str(_meta(row, "answer_type") or "unknown")] += 1
        s.answers.append((str(_meta(row, "task_type") or "unknown"),
                          str(_meta(row, "answer_type") or "unknown"),
                          str(_meta(row, "question") or ""), str(_meta(row, "answer") or "")))
        messages = row.get("messages")
        if messages:
            s.turns[sum(m["role"] == "assistant" for m in messages)] += 1
            s.tool_calls[sum(m["role"] == "user" and m["content"].startswith("<tool_response>")
                             for m in messages)] += 1
        images = row_images(row)
        if images and images[0]:
            try:
                w, h = Image.open(io.BytesIO(images[0])).size  # reads the header only
            except OSError:
                continue
            s.image_sizes.append((family, w, h))
    part = _split_stats(published.stats(), published.config)
    if part is not None and isinstance(part.get("reject_reasons"), dict):
        s.reject_reasons = {str(k): int(v) for k, v in part["reject_reasons"].items()}
        # Rows removed when publishing (duplicates, overlap, contamination) are counted apart.
        removed = ((published.stats() or {}).get("removed_by_split") or {}).get(
            published.config) or {}
        for reason, n in removed.items():
            s.reject_reasons[str(reason)] = s.reject_reasons.get(str(reason), 0) + int(n)
        verified = part.get("verified")
        s.funnel = _funnel(s.rows, s.reject_reasons,
                           int(verified) if isinstance(verified, int) else None)
        s.funnel_source = "stats.json"
    else:
        rejects = published.rejects()
        if rejects:
            s.reject_reasons = dict(Counter(str(r.get("reason", "unknown")) for r in rejects))
            s.funnel_source = "rejects.jsonl"
        s.funnel = _funnel(s.rows, s.reject_reasons, None)
    s.reject_reasons = dict(sorted(s.reject_reasons.items(), key=lambda kv: (-kv[1], kv[0])))
    return s


def _counts_table(title: str, counts: Counter[Any] | dict[Any, int], total: int,
                  order: Iterable[Any] | None = None) -> Table:
    table = Table(title=title, title_justify="left")
    table.add_column(title.split(" by ")[-1] if " by " in title else "value")
    table.add_column("rows", justify="right")
    table.add_column("share", justify="right")
    keys = list(order) if order is not None else sorted(counts, key=lambda k: (-counts[k], k))
    for key in keys:
        if counts.get(key):
            table.add_row(str(key), str(counts[key]), f"{100 * counts[key] / max(total, 1):.1f} %")
    return table


def _spread(values: list[int]) -> str:
    return f"{min(values)} / {statistics.median(values):g} / {max(values)}" if values else "—"


def _guess_table(s: SetSummary) -> Table:
    """Per task type, how often its most common answer is right, against chance."""
    table = Table(title="blind guessing (most common answer per task type)",
                  title_justify="left")
    for name, justify in (("task type", "left"), ("rows", "right"), ("answer", "left"),
                          ("share", "right"), ("chance", "right"), ("balanced", "left")):
        table.add_column(name, justify=justify)  # type: ignore[arg-type]
    for g in blind_guess(s.answers):
        verdict = ("yes" if g.balanced else "no") if g.measured else "too few rows"
        table.add_row(g.task_type, str(g.rows), g.majority[:24], f"{100 * g.share:.1f} %",
                      f"{100 * g.chance:.1f} %", verdict)
    return table


def summary_tables(s: SetSummary) -> list[Table]:
    """Rich tables: overview with the funnel, then the mixes, reasons, turns and sizes."""
    overview = Table(title=f"{s.source} ({s.config}): {s.rows} rows", title_justify="left",
                     show_header=False)
    for stage in FUNNEL if s.funnel else ():
        n = s.funnel[stage]
        share = f"{100 * n / s.funnel['generated']:.1f} %" if s.funnel["generated"] else "—"
        overview.add_row(stage, str(n), share)
    if s.funnel_source:
        overview.add_row("funnel read from", s.funnel_source, "")
    else:
        overview.add_row("funnel", "no stats.json or rejects.jsonl: published rows only", "")
    sides = [max(w, h) for _, w, h in s.image_sizes]
    overview.add_row("input long side (px)", "min / median / max", _spread(sides))
    tables = [overview,
              _counts_table("rows by family", s.by_family, s.rows),
              _counts_table("rows by task type", s.by_task_type, s.rows),
              _counts_table("rows by difficulty", s.by_difficulty, s.rows,
                            [*_DIFFICULTIES, *sorted(set(s.by_difficulty) - set(_DIFFICULTIES))]),
              _counts_table("rows by answer type", s.by_answer_type, s.rows)]
    if s.answers:
        tables.append(_guess_table(s))
    if s.reject_reasons:
        tables.append(_counts_table("rejects by reason", s.reject_reasons,
                                    sum(s.reject_reasons.values())))
    if s.turns:
        tables.append(_counts_table("traces by assistant turns", s.turns, s.rows, sorted(s.turns)))
        tables.append(_counts_table("traces by tool calls", s.tool_calls, s.rows,
                                    sorted(s.tool_calls)))
    return tables


def _save(fig: Any, path: Path) -> Path:
    import matplotlib.pyplot as plt

    fig.tight_layout()
    with atomic_path(path) as tmp:
        # No "Software" stamp: the same set gives byte-identical PNGs, as the rest of a build.
        fig.savefig(tmp, format="png", dpi=100, metadata={"Software": None})
    plt.close(fig)
    return path


def _bars(ax: Any, labels: list[str], values: list[int], title: str,
          colors: list[str] | None = None, horizontal: bool = False) -> None:
    if horizontal:
        ax.barh(labels, values, color=colors)
        ax.invert_yaxis()
        ax.set_xlabel("rows")
    else:
        ax.bar(labels, values, color=colors)
        ax.set_ylabel("rows")
    # Counts are whole numbers: no 0.5-row ticks on small sets.
    (ax.xaxis if horizontal else ax.yaxis).set_major_locator(MaxNLocator(integer=True))
    ax.set_title(title)
    for side in ("top", "right"):
        ax.spines[side].set_visible(False)


def plot_summary(s: SetSummary, out_dir: Path) -> list[Path]:
    """One PNG per view in ``out_dir`` (``<config>-<view>.png``); the paths written."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    palette = plt.get_cmap("tab10").colors
    families = sorted(s.by_family)
    colour = {f: matplotlib.colors.to_hex(palette[i % 10]) for i, f in enumerate(families)}
    paths: list[Path] = []
    name = out_dir / s.config

    types = s.by_task_type.most_common()
    shown, rest = types[:_MAX_TYPES], sum(n for _, n in types[_MAX_TYPES:])
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(11, max(3.0, 0.25 * len(shown) + 1.5)),
                                 gridspec_kw={"width_ratios": [1, 3]})
    _bars(a1, families, [s.by_family[f] for f in families], "by family",
          [colour[f] for f in families])
    labels = [t for t, _ in shown] + (["other"] * bool(rest))
    _bars(a2, labels, [n for _, n in shown] + ([rest] * bool(rest)), "by task type",
          [colour.get(t.split(".")[0], "#999999") for t in labels], horizontal=True)
    a2.tick_params(axis="y", labelsize=7)
    paths.append(_save(fig, Path(f"{name}-task_mix.png")))

    fig, (a1, a2) = plt.subplots(1, 2, figsize=(9, 3.2))
    levels = [*_DIFFICULTIES, *sorted(set(s.by_difficulty) - set(_DIFFICULTIES))]
    levels = [d for d in levels if s.by_difficulty[d]]
    _bars(a1, levels, [s.by_difficulty[d] for d in levels], "difficulty",
          ["#59a14f", "#edc948", "#e15759", "#999999"][: len(levels)])
    answer_types = sorted(s.by_answer_type)
    _bars(a2, answer_types, [s.by_answer_type[a] for a in answer_types], "answer type")
    paths.append(_save(fig, Path(f"{name}-difficulty_answer_type.png")))

    if s.funnel:
        reasons = list(s.reject_reasons.items())
        fig, (a1, a2) = plt.subplots(1, 2, figsize=(11, 3.5))
        values = [s.funnel[k] for k in FUNNEL]
        _bars(a1, list(FUNNEL), values, "acceptance funnel", ["#4e79a7"] * len(FUNNEL))
        a1.set_ylabel("traces")
        for i, v in enumerate(values):
            a1.annotate(str(v), (i, v), ha="center", va="bottom", fontsize=8)
        if reasons:
            _bars(a2, [r for r, _ in reasons], [n for _, n in reasons], "reject reasons",
                  ["#e15759"] * len(reasons), horizontal=True)
            a2.set_xlabel("traces")
        else:
            a2.axis("off")
            a2.text(0.5, 0.5, "no rejects recorded", ha="center", va="center")
        paths.append(_save(fig, Path(f"{name}-funnel.png")))

    if s.image_sizes:
        fig, ax = plt.subplots(figsize=(5.5, 4.5))
        for f in families:
            pts = [(w, h) for fam, w, h in s.image_sizes if fam == f]
            if pts:
                ax.scatter(*zip(*pts, strict=True), s=14, alpha=0.6, color=colour[f], label=f)
        ax.set_xlabel("width (px)")
        ax.set_ylabel("height (px)")
        ax.set_title("input image sizes")
        ax.legend(fontsize=8)
        paths.append(_save(fig, Path(f"{name}-image_sizes.png")))

    if s.turns:
        fig, (a1, a2) = plt.subplots(1, 2, figsize=(9, 3.2))
        for ax, counts, title in ((a1, s.turns, "assistant turns per trace"),
                                  (a2, s.tool_calls, "tool calls per trace")):
            keys = list(range(min(counts), max(counts) + 1))
            _bars(ax, [str(k) for k in keys], [counts[k] for k in keys], title)
        paths.append(_save(fig, Path(f"{name}-turns.png")))
    return paths


def write_plots(source: str | Path, out_dir: Path, config: str = "sft") -> list[Path]:
    """Read the set at ``source`` (folder or Hub id) and write its plots into ``out_dir``.

    The files are ``<config>-task_mix.png``, ``-difficulty_answer_type.png``, ``-funnel.png``,
    ``-image_sizes.png`` and ``-turns.png`` (the last two only when the rows have images and
    traces). Returns the paths written, in that order.
    """
    return plot_summary(summarize(open_published(source, config)), out_dir)
