"""Chart family: seeded data tables, matplotlib rendering, the exact spec, and the questions.

Seven kinds — vertical bar, horizontal bar, grouped bar, stacked bar, multi-series line, pie and
scatter — drawn with the object-oriented matplotlib API (no pyplot state, so threads are safe).
Values are whole multiples of a per-chart ``step`` and the value axis has fixed ticks, so every
number in the spec is exactly what the picture shows. Questions are computed from the spec only.

Adding a chart kind is one row of ``CHART_KINDS`` (spec builder, draw function, the scripted
teacher's measuring template and think key, its question types), its draw function and its
``templates/code/chart_<measure>.py.j2``. Adding a question type is one ``QuestionType`` in
``QUESTIONS``, its phrasings in ``templates/questions/chart.yaml`` and its compute step in
``templates/code/chart_compute.py.j2``.
"""

from __future__ import annotations

import functools
import io
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass
from typing import Any, TypedDict

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from datagen.records import AnswerType, Scene, Task, stable_id
from datagen.scenes.base import Draft, Family, Poser, QuestionType, format_number, pose_rng
from datagen.templates import load_yaml, render_string

__all__ = ["CHART_KINDS", "FAMILY", "KINDS", "QUESTIONS", "ChartKind", "ChartSpec", "Series",
           "make_scene", "pose", "render_chart"]

DPI = 100


class Series(TypedDict, total=False):
    """One data series: its name, colour (name and hex) and values (or scatter points)."""

    name: str
    color_name: str
    color: str
    values: list[int]
    points: list[list[int]]


class ChartSpec(TypedDict, total=False):
    """Everything a chart shows: the data table, its labels, colours, ticks and size."""

    kind: str
    title: str
    category_axis: str
    category_plural: str
    value_axis: str
    x_axis: str  # scatter only
    ordered: bool
    categories: list[str]
    series: list[Series]
    slice_colors: list[str]  # pie only
    slice_color_names: list[str]  # pie only
    step: int
    ticks: list[int]
    value_labels: bool
    size: list[int]


Spec = ChartSpec


def _vocab() -> dict[str, Any]:
    return load_yaml("scenes/chart.yaml")


# ---------------------------------------------------------------------------------------------
# Spec: seeded data tables


def _pick_colors(rng: np.random.Generator, k: int) -> list[tuple[str, str]]:
    names = list(_vocab()["colors"])
    chosen = rng.choice(len(names), size=k, replace=False)
    return [(names[i], _vocab()["colors"][names[i]]) for i in chosen]


def _categories(rng: np.random.Generator, n: int) -> tuple[list[str], dict[str, Any]]:
    pools = _vocab()["category_pools"]
    name = list(pools)[rng.integers(len(pools))]
    pool = pools[name]
    items = pool["items"]
    n = min(n, len(items))
    if pool["ordered"]:
        start = int(rng.integers(0, len(items) - n + 1))
        cats = items[start : start + n]
    else:
        cats = [items[i] for i in rng.choice(len(items), size=n, replace=False)]
    return list(cats), pool


def _nice_axis(top_value: float, step: int) -> list[int]:
    """Ticks from 0 to a round number above ``top_value``, 4–8 of them."""
    for mult in (1, 2, 5, 10, 20, 25, 50, 100, 200, 250, 500):
        tick = mult * step
        n = int(np.ceil(top_value * 1.08 / tick))
        if n <= 7:
            return [i * tick for i in range(n + 1)]
    raise AssertionError("value range too large for the tick table")


def _table_spec(rng: np.random.Generator, kind: str) -> Spec:
    n_series = 1 if kind in ("vbar", "hbar") else int(rng.integers(2, 4))
    if kind == "line":
        n_series = int(rng.integers(1, 4))
    n_cats = int(rng.integers(4, 9)) if n_series == 1 else int(rng.integers(3, 7))
    if kind == "line":
        n_cats = int(rng.integers(5, 10))
    cats, pool = _categories(rng, n_cats)
    step = int(rng.choice([1, 1, 10]))
    high = int(rng.integers(40, 101))
    colors = _pick_colors(rng, n_series)
    names = list(rng.choice(_vocab()["series_names"], size=n_series, replace=False))
    series: list[Series] = []
    for s in range(n_series):
        if kind == "line" and rng.random() < 0.4 and n_series == 1:
            vals = np.sort(rng.integers(5, high + 1, size=len(cats)))
            vals = vals[::-1] if rng.random() < 0.5 else vals
        else:
            vals = rng.integers(5, high + 1, size=len(cats))
        series.append({"name": str(names[s]), "color_name": colors[s][0], "color": colors[s][1],
                       "values": [int(v) * step for v in vals]})
    if kind == "line":
        _separate_lines(series, step * 6)
    tops = [sum(s["values"][i] for s in series) for i in range(len(cats))] if kind == "stacked" \
        else [max(s["values"]) for s in series]
    metric = str(rng.choice(_vocab()["metrics"]))
    return {
        "kind": kind,
        "title": _title(rng, metric, pool["axis"]),
        "category_axis": pool["axis"],
        "category_plural": pool["plural"],
        "value_axis": metric,
        "ordered": bool(pool["ordered"]),
        "categories": cats,
        "series": series,
        "step": step,
        "ticks": _nice_axis(max(tops), step),
        "value_labels": bool(rng.random() < 0.5),
        "size": [int(rng.integers(64, 91)) * 10, int(rng.integers(46, 63)) * 10],
    }


def _separate_lines(series: list[Series], gap: int) -> None:
    """Push line values apart so markers of different series never sit on one another."""
    for i in range(len(series[0]["values"])):
        col = sorted(range(len(series)), key=lambda s: series[s]["values"][i])
        for lo, hi in zip(col, col[1:], strict=False):
            if series[hi]["values"][i] - series[lo]["values"][i] < gap:
                series[hi]["values"][i] = series[lo]["values"][i] + gap


def _pie_spec(rng: np.random.Generator) -> Spec:
    n = int(rng.integers(3, 7))
    cats, pool = _categories(rng, n)
    while True:
        cuts = np.sort(rng.choice(np.arange(1, 100), size=n - 1, replace=False))
        shares = np.diff(np.concatenate([[0], cuts, [100]]))
        if shares.min() >= 4:
            break
    colors = _pick_colors(rng, n)
    return {
        "kind": "pie",
        "title": str(rng.choice(_vocab()["pie_topics"])),
        "category_axis": pool["axis"],
        "category_plural": pool["plural"],
        "value_axis": "Share (%)",
        "ordered": False,
        "categories": cats,
        "series": [{"name": "share", "color_name": "", "color": "",
                    "values": [int(v) for v in shares]}],
        "slice_colors": [c[1] for c in colors],
        "slice_color_names": [c[0] for c in colors],
        "step": 1,
        "ticks": [],
        "value_labels": bool(rng.random() < 0.5),
        "size": [int(rng.integers(56, 81)) * 10, int(rng.integers(46, 61)) * 10],
    }


def _scatter_spec(rng: np.random.Generator) -> Spec:
    n_series = int(rng.integers(1, 3))
    axes = _vocab()["scatter_axes"][rng.integers(len(_vocab()["scatter_axes"]))]
    colors = _pick_colors(rng, n_series)
    names = list(rng.choice(_vocab()["series_names"], size=n_series, replace=False))
    taken: list[tuple[int, int]] = []
    series: list[Series] = []
    for s in range(n_series):
        pts: list[list[int]] = []
        want = int(rng.integers(6, 19))
        while len(pts) < want:
            x, y = int(rng.integers(2, 99)), int(rng.integers(2, 99))
            # Keep markers apart so each point is one blob on the picture.
            if all(abs(x - a) > 4 or abs(y - b) > 5 for a, b in taken):
                taken.append((x, y))
                pts.append([x, y])
        series.append({"name": str(names[s]), "color_name": colors[s][0], "color": colors[s][1],
                       "points": pts})
    return {
        "kind": "scatter",
        "title": f"{axes['y']} vs. {axes['x'].lower()}",
        "category_axis": "series",
        "category_plural": "series",
        "x_axis": axes["x"],
        "value_axis": axes["y"],
        "ordered": False,
        "categories": [s["name"] for s in series],
        "series": series,
        "step": 1,
        "ticks": [0, 20, 40, 60, 80, 100],
        "value_labels": False,
        "size": [int(rng.integers(60, 86)) * 10, int(rng.integers(48, 63)) * 10],
    }


def _title(rng: np.random.Generator, metric: str, axis: str) -> str:
    pattern = _vocab()["title_patterns"][rng.integers(len(_vocab()["title_patterns"]))]
    return render_string(pattern, metric=metric, axis=axis)


# ---------------------------------------------------------------------------------------------
# Rendering


def render_chart(spec: Spec) -> bytes:
    """Draw ``spec`` and return PNG bytes (no timestamps: the same spec gives the same bytes)."""
    w, h = spec["size"]
    fig = Figure(figsize=(w / DPI, h / DPI), dpi=DPI)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    legend = len(spec["series"]) > 1
    fig.subplots_adjust(left=0.2 if spec["kind"] == "hbar" else 0.12,
                        right=0.76 if legend else 0.95, top=0.88, bottom=0.18)
    KIND_BY_NAME[spec["kind"]].draw(ax, spec)
    ax.set_title(spec["title"], fontsize=12)
    if legend:
        ax.legend(loc="upper left", bbox_to_anchor=(1.02, 1.0), frameon=False, fontsize=9)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=DPI, metadata={"Software": None})
    return buf.getvalue()


def _value_axis(ax: Any, spec: Spec, horizontal: bool = False) -> None:
    ticks = spec["ticks"]
    if horizontal:
        ax.set_xlim(0, ticks[-1])
        ax.set_xticks(ticks)
        ax.set_xlabel(spec["value_axis"])
        ax.set_ylabel(spec["category_axis"])
    else:
        ax.set_ylim(0, ticks[-1])
        ax.set_yticks(ticks)
        ax.set_ylabel(spec["value_axis"])
        ax.set_xlabel(spec["category_axis"])


def _draw_bars(ax: Any, spec: Spec) -> None:
    kind, cats, series = spec["kind"], spec["categories"], spec["series"]
    x = np.arange(len(cats))
    horizontal = kind == "hbar"
    width = 0.8 / len(series) if kind == "grouped" else 0.6
    bottom = np.zeros(len(cats))
    for i, s in enumerate(series):
        vals = np.array(s["values"], dtype=float)
        offset = (i - (len(series) - 1) / 2) * width if kind == "grouped" else 0.0
        if horizontal:
            bars = ax.barh(x, vals, height=width, color=s["color"], label=s["name"])
        else:
            bars = ax.bar(x + offset, vals, width=width, bottom=bottom if kind == "stacked" else 0,
                          color=s["color"], label=s["name"])
        if spec["value_labels"]:
            ax.bar_label(bars, fmt="%g", fontsize=8, padding=2,
                         label_type="center" if kind == "stacked" else "edge")
        if kind == "stacked":
            bottom += vals
    if horizontal:
        ax.set_yticks(x, cats)
        ax.invert_yaxis()  # first category on top, read like a list
    else:
        ax.set_xticks(x, cats, rotation=30 if len(cats) > 6 else 0)
    _value_axis(ax, spec, horizontal)


def _draw_line(ax: Any, spec: Spec) -> None:
    x = np.arange(len(spec["categories"]))
    for s in spec["series"]:
        ax.plot(x, s["values"], color=s["color"], marker="o", markersize=6, linewidth=2,
                label=s["name"])
        if spec["value_labels"]:
            for xi, v in zip(x, s["values"], strict=True):
                ax.annotate(f"{v:g}", (xi, v), textcoords="offset points", xytext=(0, 7),
                            ha="center", fontsize=8)
    ax.set_xticks(x, spec["categories"], rotation=30 if len(x) > 6 else 0)
    ax.set_xlim(-0.5, len(x) - 0.5)
    _value_axis(ax, spec)


def _draw_pie(ax: Any, spec: Spec) -> None:
    vals = spec["series"][0]["values"]
    ax.pie(vals, labels=spec["categories"], colors=spec["slice_colors"], startangle=90,
           counterclock=False, autopct="%d%%" if spec["value_labels"] else None,
           pctdistance=0.7, textprops={"fontsize": 9})
    ax.set_aspect("equal")


def _draw_scatter(ax: Any, spec: Spec) -> None:
    for s in spec["series"]:
        pts = np.array(s["points"], dtype=float)
        ax.scatter(pts[:, 0], pts[:, 1], s=36, color=s["color"], label=s["name"])
    ax.set_xlim(0, 100)
    ax.set_ylim(0, 100)
    ax.set_yticks(spec["ticks"])
    ax.set_xticks(spec["ticks"])
    ax.set_xlabel(spec["x_axis"])
    ax.set_ylabel(spec["value_axis"])


# ---------------------------------------------------------------------------------------------
# Questions: each draft function returns one question about a chart, or None where it does not
# apply. Table questions read one series (or the stacked totals) picked by ``_targets``.

Rng = np.random.Generator
Table = dict[str, int]


class ChartFacts(TypedDict, total=False):
    """What a chart question is about (read by the scripted teacher)."""

    op: str
    series: str | None  # None: the only series, or stacked totals
    total: bool  # about stacked totals
    a: str
    b: str
    threshold: int
    color: str
    hex: str
    options: dict[str, str]


def _targets(spec: Spec, rng: Rng) -> tuple[str | None, Table]:
    """Pick what a table question is about: one series, or stacked totals."""
    cats = spec["categories"]
    if spec["kind"] == "stacked" and rng.random() < 0.4:
        return None, {c: sum(s["values"][i] for s in spec["series"]) for i, c in enumerate(cats)}
    s = spec["series"][int(rng.integers(len(spec["series"])))]
    name = s["name"] if len(spec["series"]) > 1 else None
    return name, dict(zip(cats, s["values"], strict=True))


def _two(rng: Rng, table: Table, distinct: bool = True) -> tuple[str, str] | None:
    cats = [c for c in table]
    for _ in range(10):
        a, b = (cats[i] for i in rng.choice(len(cats), size=2, replace=False))
        if not distinct or table[a] != table[b]:
            return (a, b) if table[a] >= table[b] else (b, a)
    return None


def _threshold(rng: Rng, values: list[int], step: int) -> int | None:
    """A round threshold that no value sits near, so the count is unambiguous on the picture."""
    v = sorted(set(values))
    gaps = [(a, b) for a, b in zip(v, v[1:], strict=False) if b - a >= 4 * step]
    if not gaps:
        return None
    a, b = gaps[rng.integers(len(gaps))]
    return int(round((a + b) / 2 / step) * step)


def _draft(spec: Spec, qtype: str, answer: str, facts: ChartFacts,
           choices: tuple[str, ...] = ()) -> Draft:
    """A chart draft: the facts, and the names every chart phrasing may use."""
    axis = ("series" if qtype == "legend" and spec["kind"] != "pie"
            else spec["category_axis"].lower())
    names = {"a": facts.get("a"), "b": facts.get("b"), "series": facts["series"],
             "threshold": facts.get("threshold"), "color": facts.get("color"),
             "total": facts["total"], "axis": axis, "axis_plural": spec["category_plural"]}
    return Draft(answer=answer, facts=facts, names=names, choices=choices)


TableDraft = tuple[str, ChartFacts] | tuple[str, ChartFacts, tuple[str, ...]] | None


def _table_question(qtype: str, fn: Callable[[Spec, Rng, Table], TableDraft]
                    ) -> Callable[[Spec, Rng], Draft | None]:
    """A question over one series (or stacked totals): ``fn`` sees the picked table."""

    def draft(spec: Spec, rng: Rng) -> Draft | None:
        series, table = _targets(spec, rng)
        got = fn(spec, rng, table)
        if got is None:
            return None
        answer, facts, *choices = got
        base: ChartFacts = {"series": series, "total": series is None and spec["kind"] == "stacked"}
        return _draft(spec, qtype, answer, {**base, **facts}, *choices)

    return draft


def _q_value(spec: Spec, rng: Rng, t: Table) -> TableDraft:
    a = list(t)[rng.integers(len(t))]
    return format_number(t[a]), {"a": a}


def _q_extreme(op: str) -> Callable[[Spec, Rng, Table], TableDraft]:
    def q(spec: Spec, rng: Rng, t: Table) -> TableDraft:
        best = (max if op == "max" else min)(t.values())
        winners = [c for c, v in t.items() if v == best]
        return (winners[0], {}) if len(winners) == 1 else None
    return q


def _q_difference(spec: Spec, rng: Rng, t: Table) -> TableDraft:
    pair = _two(rng, t)
    return None if pair is None else (format_number(t[pair[0]] - t[pair[1]]),
                                      {"a": pair[0], "b": pair[1]})


def _q_ratio(spec: Spec, rng: Rng, t: Table) -> TableDraft:
    pair = _two(rng, t)
    return None if pair is None else (format_number(round(t[pair[0]] / t[pair[1]], 2)),
                                      {"a": pair[0], "b": pair[1]})


def _q_sum(spec: Spec, rng: Rng, t: Table) -> TableDraft:
    return format_number(sum(t.values())), {}


def _q_mean(spec: Spec, rng: Rng, t: Table) -> TableDraft:
    return format_number(round(sum(t.values()) / len(t), 2)), {}


def _q_range(spec: Spec, rng: Rng, t: Table) -> TableDraft:
    return format_number(max(t.values()) - min(t.values())), {}


def _q_percentage(spec: Spec, rng: Rng, t: Table) -> TableDraft:
    a = list(t)[rng.integers(len(t))]
    return format_number(round(100 * t[a] / sum(t.values()), 1)), {"a": a}


def _q_trend(spec: Spec, rng: Rng, t: Table) -> TableDraft:
    if not spec["ordered"]:
        return None
    v = list(t.values())
    steps = [b - a for a, b in zip(v, v[1:], strict=False)]
    trend = "increasing" if all(d > 0 for d in steps) else (
        "decreasing" if all(d < 0 for d in steps) else "fluctuating")
    return trend, {}


def _q_compare(spec: Spec, rng: Rng, t: Table) -> TableDraft:
    pair = _two(rng, t)
    if pair is None:
        return None
    a, b = pair if rng.random() < 0.5 else pair[::-1]
    return ("yes" if t[a] > t[b] else "no"), {"a": a, "b": b}


def _q_count_above(spec: Spec, rng: Rng, t: Table) -> TableDraft:
    thr = _threshold(rng, list(t.values()), spec["step"])
    if thr is None:
        return None
    return str(sum(v > thr for v in t.values())), {"threshold": thr}


def _q_choice(spec: Spec, rng: Rng, t: Table) -> TableDraft:
    ranked = sorted(t, key=t.get, reverse=True)  # type: ignore[arg-type]
    if len(ranked) < 3 or t[ranked[0]] == t[ranked[1]] or t[ranked[1]] == t[ranked[2]]:
        return None
    others = [c for c in ranked if c != ranked[1]]
    picks = [ranked[1]] + [others[i] for i in rng.choice(len(others), size=min(3, len(others)),
                                                          replace=False)]
    return ranked[1], {}, tuple(picks)


def _q_legend(spec: Spec, rng: Rng) -> Draft | None:
    if spec["kind"] == "pie":
        i = int(rng.integers(len(spec["categories"])))
        facts: ChartFacts = {"series": None, "total": False,
                             "color": spec["slice_color_names"][i], "hex": spec["slice_colors"][i]}
        return _draft(spec, "legend", spec["categories"][i], facts)
    if len(spec["series"]) < 2:
        return None
    s = spec["series"][int(rng.integers(len(spec["series"])))]
    facts = {"series": None, "total": False, "color": s["color_name"], "hex": s["color"]}
    return _draft(spec, "legend", s["name"], facts)


def _q_scatter_count_above(spec: Spec, rng: Rng) -> Draft | None:
    s = spec["series"][int(rng.integers(len(spec["series"])))]
    ys = [p[1] for p in s["points"]]
    thr = _threshold(rng, ys, 1)
    if thr is None:
        return None
    name = s["name"] if len(spec["series"]) > 1 else None
    return _draft(spec, "scatter_count_above", str(sum(y > thr for y in ys)),
                  {"series": name, "total": False, "threshold": thr})


def _q_scatter_count(spec: Spec, rng: Rng) -> Draft | None:
    s = spec["series"][int(rng.integers(len(spec["series"])))]
    return _draft(spec, "scatter_count", str(len(s["points"])),
                  {"series": s["name"], "total": False})


def _q_scatter_compare(spec: Spec, rng: Rng) -> Draft | None:
    if len(spec["series"]) < 2:
        return None
    a, b = (spec["series"][i] for i in rng.permutation(2))
    if len(a["points"]) == len(b["points"]):
        return None
    return _draft(spec, "scatter_compare", "yes" if len(a["points"]) > len(b["points"]) else "no",
                  {"series": None, "total": False, "a": a["name"], "b": b["name"]})


_MEASURE = ("pixel_measure", "compute")
_COUNT = ("pixel_measure", "count")


def _table(name: str, answer_type: AnswerType, fn: Callable[[Spec, Rng, Table], TableDraft],
           harder: bool = True) -> QuestionType:
    return QuestionType(name, answer_type, _MEASURE, _table_question(name, fn), harder)


QUESTIONS: dict[str, QuestionType] = {q.name: q for q in (
    _table("value", "number", _q_value, harder=False),
    _table("max", "text", _q_extreme("max"), harder=False),
    _table("min", "text", _q_extreme("min"), harder=False),
    _table("difference", "number", _q_difference),
    _table("sum", "number", _q_sum),
    _table("mean", "number", _q_mean),
    _table("percentage", "number", _q_percentage),
    _table("ratio", "number", _q_ratio),
    _table("range", "number", _q_range),
    _table("trend", "text", _q_trend),
    _table("compare", "yesno", _q_compare, harder=False),
    _table("count_above", "integer", _q_count_above),
    _table("choice", "choice", _q_choice),
    QuestionType("legend", "text", ("crop", "zoom"), _q_legend),
    QuestionType("scatter_count_above", "integer", _COUNT, _q_scatter_count_above, harder=True),
    QuestionType("scatter_count", "integer", _COUNT, _q_scatter_count),
    QuestionType("scatter_compare", "yesno", _COUNT, _q_scatter_compare, harder=True),
)}
"""Every chart question type. ``harder`` ones combine several values (one level up)."""


# ---------------------------------------------------------------------------------------------
# Kinds


@dataclass(frozen=True, slots=True)
class ChartKind:
    """One kind of chart: how its spec is drawn from a generator and drawn as a picture, how
    the scripted teacher measures it, and what can be asked about it."""

    name: str
    spec: Callable[[Rng], Spec]
    draw: Callable[[Any, Spec], None]
    # templates/code/chart_<measure>.py.j2 measures it; templates/teacher/chart.yaml <think>
    # says so.
    measure: str
    think: str
    questions: tuple[str, ...]


_TABLE_QUESTIONS = ("value", "max", "min", "difference", "sum", "mean", "percentage", "ratio",
                    "range", "trend", "compare", "count_above", "choice", "legend")
# A pie always sums to 100: totals, means and shares of the total would be trivia there.
_PIE_QUESTIONS = tuple(q for q in _TABLE_QUESTIONS
                       if q not in ("trend", "count_above", "sum", "mean", "percentage"))
_SCATTER_QUESTIONS = ("legend", "scatter_count_above", "scatter_count", "scatter_compare")


def _bars(kind: str, measure: str) -> ChartKind:
    return ChartKind(kind, functools.partial(_table_spec, kind=kind), _draw_bars, measure,
                     "measure_bars", _TABLE_QUESTIONS)


# The order is part of the seed: make_scene draws a kind by its place here.
CHART_KINDS: tuple[ChartKind, ...] = (
    _bars("vbar", "measure_vbars"),
    _bars("hbar", "measure_hbars"),
    _bars("grouped", "measure_vbars"),
    _bars("stacked", "measure_vbars"),
    ChartKind("line", functools.partial(_table_spec, kind="line"), _draw_line, "measure_line",
              "measure_line", _TABLE_QUESTIONS),
    ChartKind("pie", _pie_spec, _draw_pie, "measure_pie", "measure_pie", _PIE_QUESTIONS),
    ChartKind("scatter", _scatter_spec, _draw_scatter, "measure_scatter", "measure_scatter",
              _SCATTER_QUESTIONS),
)
KIND_BY_NAME = {k.name: k for k in CHART_KINDS}
KINDS = tuple(KIND_BY_NAME)


# ---------------------------------------------------------------------------------------------
# Scenes


def make_scene(index: int, seed: int, options: Mapping[str, Any] | None = None) -> Scene:
    """The chart scene number ``index`` of a run seeded with ``seed`` (pure; no options apply)."""
    rng = np.random.default_rng([seed, index, 0xC4A7])
    kind = CHART_KINDS[int(rng.integers(len(CHART_KINDS)))]
    spec = kind.spec(rng)
    hard = (not spec["value_labels"]) + (len(spec["series"]) > 1) + (len(spec["categories"]) > 6)
    return Scene(
        id=f"chart-{stable_id('chart', seed, index)}",
        family="chart",
        kind=kind.name,
        seed=index,
        image=render_chart(spec),
        spec=spec,
        difficulty=("easy", "medium", "hard", "hard")[hard],
    )


def pose(scene: Scene, k: int, only: Collection[str] | None = None) -> list[Task]:
    """Up to ``k`` questions of distinct types about ``scene``, with gold answers from its spec.

    The types are tried in a seeded order; one that does not apply to this chart is skipped.
    """
    spec: Spec = scene.spec
    rng = pose_rng(scene)
    poser = Poser("chart", scene, rng, numbered_ids=True)
    for name in rng.permutation(KIND_BY_NAME[spec["kind"]].questions):
        if len(poser.tasks) == k:
            break
        qtype = QUESTIONS[str(name)]
        if only is not None and qtype.name not in only:
            continue
        draft = qtype.draft(spec, rng)
        if draft is not None:
            poser.add(qtype, draft)
    return poser.tasks


FAMILY = Family(name="chart", kinds={k.name: k.questions for k in CHART_KINDS},
                questions=QUESTIONS, make_scene=make_scene, pose=pose)
