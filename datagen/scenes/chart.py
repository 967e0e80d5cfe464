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
from collections import OrderedDict
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass, replace
from typing import Any, TypedDict

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import MultipleLocator
from matplotlib.transforms import Bbox

from datagen.records import AnswerType, Scene, Task, stable_id
from datagen.scenes.base import (
    Draft,
    Family,
    Poser,
    QuestionType,
    Secrets,
    Twin,
    format_number,
    pose_rng,
)
from datagen.scenes.chart_rules import NUMBER_READS, check, near_twins, read_tolerance
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


class Layout(TypedDict, total=False):
    """Where the renderer put things, in image pixels (x right, y down): the verifier's and
    the scripted teacher's eyes' knowledge, never a trace's (see ``secrets``)."""

    frame: list[float]  # the plot frame (x0, y0, x1, y1)
    plot: list[float]  # the frame with its title, tick, axis and value labels
    read: list[float]  # what reading values needs: frame, value and tick labels, legend
    legend: list[float]  # the legend box, when there is one
    pie: list[float]  # the pie's centre x, y and radius
    entries: dict[str, list[float]]  # legend entries (swatch and text), or the pie's labels
    collisions: list[list[float]]  # printed texts that overlap another or leave the image


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
    step: int  # values are multiples of it (unlabelled: the grid a question reads them to)
    range: list[int]  # the topic's sensible values, in the chart's unit
    ticks: list[int]
    tick_rotation: int  # category labels turned so that they do not collide
    value_labels: bool
    size: list[int]
    layout: Layout  # filled when the chart is drawn


Spec = ChartSpec


def _vocab() -> dict[str, Any]:
    return load_yaml("scenes/chart.yaml")


# ---------------------------------------------------------------------------------------------
# Spec: seeded data tables, each drawn from one topic of templates/scenes/chart.yaml

# What a reader needs between two grid lines to tell them apart, in pixels.
_MIN_GRID_PX = 9
# Markers of different lines at one category stay this far apart, in pixels.
_LINE_GAP_PX = 16
TRENDS = ("increasing", "decreasing", "fluctuating")


def _pick_colors(rng: np.random.Generator, k: int) -> list[tuple[str, str]]:
    """``k`` palette colours, no two of them near twins (so a colour's name picks one out)."""
    colors = _vocab()["colors"]
    while True:
        chosen: list[str] = []
        for i in rng.permutation(len(colors)):
            name = list(colors)[i]
            if not any(near_twins(name, c) for c in chosen):
                chosen.append(name)
            if len(chosen) == k:
                return [(c, colors[c]) for c in chosen]


def _categories(rng: np.random.Generator, topic: Mapping[str, Any], n: int,
                ordered: bool) -> tuple[list[str], dict[str, Any]]:
    """``n`` categories from one of the topic's pools (an ordered pool when ``ordered``): a
    run of consecutive items of an ordered pool, a sample of an unordered one."""
    pools = _vocab()["category_pools"]
    names = [p for p in topic["pools"] if pools[p]["ordered"] or not ordered]
    pool = pools[names[int(rng.integers(len(names)))]]
    items = pool["items"]
    n = min(n, len(items))
    if pool["ordered"]:
        start = int(rng.integers(0, len(items) - n + 1))
        cats = items[start : start + n]
    else:
        cats = [items[i] for i in rng.choice(len(items), size=n, replace=False)]
    return list(cats), pool


def _axis_ticks(low: float, high: float, grid: int) -> list[int]:
    """Round ticks (4–8 of them, each a multiple of ``grid``) from ``min(low, 0)`` rounded
    down to ``high`` rounded up; a margin keeps extreme markers off the frame."""
    span = max(high, 0) - min(low, 0)
    for tick in (2, 5, 10, 20, 25, 50, 100, 200, 250, 500, 1000):
        if tick % grid or tick == grid:
            continue
        bottom = 0 if low >= 0 else int(np.floor((low - 0.04 * span) / tick)) * tick
        top = int(np.ceil((high + 0.06 * span) / tick)) * tick
        if (top - bottom) / tick <= 7:
            return list(range(bottom, top + 1, tick))
    raise AssertionError("value range too large for the tick table")


def _grid_step(low: float, high: float, pixels: float) -> int:
    """The finest of 1, 2, 5, 10 whose grid lines a reader can tell apart on the chart."""
    span = (max(high, 0) - min(low, 0)) * 1.15
    return next(g for g in (1, 2, 5, 10, 20) if g * pixels / span >= _MIN_GRID_PX)


def _shaped(rng: np.random.Generator, n: int, low: int, high: int, step: int,
            shape: str | None) -> list[int]:
    """``n`` values on multiples of ``step`` in [low, high]: rising or falling at every step,
    fluctuating (rising and falling), or anything (``shape`` None)."""
    first = int(np.ceil(low / step))
    # Room for n distinct values (a narrow stacked segment range is widened upwards).
    grid = np.arange(first, max(high // step, first + n - 1) + 1) * step
    vals = rng.choice(grid, size=n, replace=False)
    if shape == "increasing":
        vals = np.sort(vals)
    elif shape == "decreasing":
        vals = np.sort(vals)[::-1]
    elif shape == "fluctuating":
        for _ in range(50):
            if _trend([int(v) for v in vals]) == "fluctuating":
                break
            vals = rng.permutation(vals)
    return [int(v) for v in vals]


def _table_spec(rng: np.random.Generator, kind: str) -> Spec:
    topics = [t for t in _vocab()["topics"] if kind in t["kinds"]]
    topic = topics[int(rng.integers(len(topics)))]
    n_series = 1 if kind in ("vbar", "hbar") else int(rng.integers(2, 4))
    if kind == "line":
        n_series = int(rng.integers(1, 4))
    group = topic["series"][int(rng.integers(len(topic["series"])))]
    n_series = min(n_series, len(group))
    n_cats = int(rng.integers(4, 9)) if n_series == 1 else int(rng.integers(3, 7))
    if kind == "line":
        n_cats = int(rng.integers(5, 10))
    cats, pool = _categories(rng, topic, n_cats, ordered=kind == "line")
    labelled = bool(rng.random() < 0.5)
    size = [int(rng.integers(64, 91)) * 10, int(rng.integers(46, 63)) * 10]
    # The value axis' length in pixels (the frame spans these shares of the figure).
    pixels = size[0] * 0.6 if kind == "hbar" else size[1] * 0.7
    low, high = topic["range"]
    if kind == "stacked":  # the stacked total, not one segment, sets the axis
        high = max(3 * low, high // n_series)
    if labelled:
        # Printed values: any whole number (tens of them on a `big` topic) can be read.
        step = 10 if topic.get("big") and rng.random() < 0.4 else 1
    else:
        # Unlabelled values lie on the grid a reader can resolve, which the question states.
        step = _grid_step(low, high * (n_series if kind == "stacked" else 1), pixels)
    low, high = low * (step if labelled else 1), high * (step if labelled else 1)
    colors = _pick_colors(rng, n_series)
    names = [str(x) for x in rng.choice(group, size=n_series, replace=False)]
    # Trends are made on purpose, a third each, so that no answer is the safe guess; a stack
    # rises and falls as a whole, so its segments share one shape.
    # (Fluctuating a little less often: a drawn series can fluctuate by accident, never the
    # other way round.)
    shapes = [str(rng.choice(TRENDS, p=(0.35, 0.35, 0.30))) if pool["ordered"] else None
              for _ in range(n_series)]
    if kind == "stacked":
        shapes = [shapes[0]] * n_series
    grid = 1 if labelled else step
    ticks = _axis_ticks(low, high * (n_series if kind == "stacked" else 1), grid)
    gap = _LINE_GAP_PX * (ticks[-1] - ticks[0]) / pixels
    series: list[Series] = []
    for s in range(n_series):
        for _ in range(40):
            vals = _shaped(rng, len(cats), low, high, step, shapes[s])
            # Markers of two lines at one category must not sit on one another.
            if kind != "line" or all(abs(v - w) >= gap for t in series
                                     for v, w in zip(vals, t["values"], strict=True)):
                break
        else:
            break  # no room for another line: the chart has fewer series
        series.append({"name": names[s], "color_name": colors[s][0], "color": colors[s][1],
                       "values": vals})
    tops = [sum(s["values"][i] for s in series) for i in range(len(cats))] if kind == "stacked" \
        else [max(s["values"]) for s in series]
    bottoms = [min(s["values"]) for s in series]
    ticks = _axis_ticks(min(bottoms), max(tops), grid)
    title = _title(rng, topic, cats, pool["axis"], len(series))
    if len(series) == 1:
        # A lone series' name is printed nowhere (a secret): not even inside the title.
        free = [str(x) for x in group if str(x) not in title]
        series[0]["name"] = free[int(rng.integers(len(free)))] if free else "values"
    return {
        "kind": kind,
        "title": title,
        "category_axis": pool["axis"],
        "category_plural": pool["plural"],
        "value_axis": topic["metric"],
        "ordered": bool(pool["ordered"]),
        "categories": cats,
        "series": series,
        "step": step,
        "range": [low, high],
        "ticks": ticks,
        "value_labels": labelled,
        "size": size,
    }


def _shares(rng: np.random.Generator, n: int, step: int) -> list[int]:
    """``n`` pie shares in percent, multiples of ``step``, none under 4 %."""
    least = max(4, step)
    while True:
        cuts = np.sort(rng.choice(np.arange(1, 100 // step), size=n - 1, replace=False)) * step
        shares = np.diff(np.concatenate([[0], cuts, [100]]))
        if shares.min() >= least:
            return [int(v) for v in shares]


def _pie_spec(rng: np.random.Generator) -> Spec:
    topics = _vocab()["pie_topics"]
    topic = topics[int(rng.integers(len(topics)))]
    n = int(rng.integers(3, min(7, len(topic["items"]) + 1)))
    cats = [topic["items"][i] for i in sorted(rng.choice(len(topic["items"]), size=n,
                                                         replace=False))]
    labelled = bool(rng.random() < 0.5)
    # Unprinted shares are read from the slices' angles: to the nearest 5 %, as stated.
    step = 1 if labelled else 5
    colors = _pick_colors(rng, n)
    year = str(rng.choice(_vocab()["category_pools"]["years"]["items"]))
    title = render_string(str(rng.choice(topic["titles"])), year=year)
    return {
        "kind": "pie",
        "title": title,
        "category_axis": topic["axis"],
        "category_plural": topic["plural"],
        "value_axis": topic["metric"],
        "ordered": False,
        "categories": cats,
        "series": [{"name": "share", "color_name": "", "color": "",
                    "values": _shares(rng, n, step)}],
        "slice_colors": [c[1] for c in colors],
        "slice_color_names": [c[0] for c in colors],
        "step": step,
        "ticks": [],
        "value_labels": labelled,
        "size": [int(rng.integers(56, 81)) * 10, int(rng.integers(46, 61)) * 10],
    }


def _scatter_spec(rng: np.random.Generator) -> Spec:
    n_series = int(rng.integers(1, 3))
    axes = _vocab()["scatter_axes"][rng.integers(len(_vocab()["scatter_axes"]))]
    colors = _pick_colors(rng, n_series)
    names = list(rng.choice(axes["series"], size=n_series, replace=False))
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
        "title": str(rng.choice(axes["titles"])),
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


def _title(rng: np.random.Generator, topic: Mapping[str, Any], cats: list[str], axis: str,
           n_series: int) -> str:
    """A title from the topic's patterns (its multi-series ones for a chart with a legend)."""
    patterns = topic["multi_titles"] if n_series > 1 else topic["titles"]
    subject = str(rng.choice(topic["subjects"]))
    return render_string(str(rng.choice(patterns)), subject=subject, first=cats[0],
                         last=cats[-1], axis=axis, n_series=n_series)


# ---------------------------------------------------------------------------------------------
# Rendering


def render_chart(spec: Spec) -> bytes:
    """Draw ``spec`` and return PNG bytes (no timestamps: the same spec gives the same bytes)."""
    return _render(spec)[0]


def _render(spec: Spec) -> tuple[bytes, Layout]:
    """The PNG of ``spec`` and where the renderer put things (image pixels, y down)."""
    w, h = spec["size"]
    fig = Figure(figsize=(w / DPI, h / DPI), dpi=DPI)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    legend = len(spec["series"]) > 1
    fig.subplots_adjust(left=0.2 if spec["kind"] == "hbar" else 0.12,
                        right=0.76 if legend else 0.95, top=0.88, bottom=0.18)
    KIND_BY_NAME[spec["kind"]].draw(ax, spec)
    ax.set_title(spec["title"], fontsize=12)
    leg = ax.legend(loc="upper left", bbox_to_anchor=(1.02, 1.0), frameon=False, fontsize=9) \
        if legend else None
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=DPI, metadata={"Software": None})
    renderer = fig.canvas.get_renderer()

    def box(bb: Any) -> list[float]:
        return [round(float(bb.x0), 1), round(h - float(bb.y1), 1), round(float(bb.x1), 1),
                round(h - float(bb.y0), 1)]

    frame = ax.get_window_extent(renderer)
    # What reading the chart needs in view: the frame, value labels, tick labels and legend.
    texts = [t.get_window_extent(renderer) for t in (*ax.texts, *ax.get_xticklabels(),
                                                     *ax.get_yticklabels()) if t.get_text()]
    legend_box = [leg.get_window_extent(renderer)] if leg is not None else []
    layout: Layout = {"frame": box(frame), "plot": box(ax.get_tightbbox(renderer)),
                      "read": box(Bbox.union([frame, *texts, *legend_box]))}
    if leg is not None:
        layout["legend"] = box(leg.get_window_extent(renderer))
        # Each legend entry: its text and, left of it to the legend's edge, its swatch (a
        # scatter handle has no finite extent of its own).
        left = leg.get_window_extent(renderer).x0
        layout["entries"] = {}
        for t in leg.get_texts():
            tb = t.get_window_extent(renderer)
            layout["entries"][t.get_text()] = box(Bbox([[left, tb.y0], [tb.x1, tb.y1]]))
    elif spec["kind"] == "pie":
        layout["entries"] = {t.get_text(): box(t.get_window_extent(renderer))
                             for t in ax.texts if t.get_text() in spec["categories"]}
    if spec["kind"] == "pie":
        (cx, cy), (ex, _) = ax.transData.transform([(0.0, 0.0), (1.0, 0.0)])
        layout["pie"] = [round(float(cx), 1), round(h - float(cy), 1), round(float(ex - cx), 1)]
    labels = [*ax.texts, *ax.get_xticklabels(), *ax.get_yticklabels(), ax.title,
              ax.xaxis.label, ax.yaxis.label, *(leg.get_texts() if leg is not None else [])]
    layout["collisions"] = _collisions([t.get_window_extent(renderer) for t in labels
                                        if t.get_visible() and t.get_text()], w, h)
    return buf.getvalue(), layout


def _collisions(boxes: list[Any], w: int, h: int) -> list[list[float]]:
    """The printed texts that overlap another one (``OperationsMarketing``) or leave the
    image, measured from their rendered extents; each as its box in image pixels."""
    bad: list[list[float]] = []
    for i, a in enumerate(boxes):
        hit = a.x0 < 0 or a.y0 < 0 or a.x1 > w or a.y1 > h or any(
            min(a.x1, b.x1) - max(a.x0, b.x0) > 1 and min(a.y1, b.y1) - max(a.y0, b.y0) > 1
            for j, b in enumerate(boxes) if j != i)
        if hit:
            bad.append([round(float(a.x0), 1), round(h - float(a.y1), 1),
                        round(float(a.x1), 1), round(h - float(a.y0), 1)])
    return bad


def _value_axis(ax: Any, spec: Spec, horizontal: bool = False) -> None:
    ticks = spec["ticks"]
    axis = ax.xaxis if horizontal else ax.yaxis
    (ax.set_xlim if horizontal else ax.set_ylim)(ticks[0], ticks[-1])
    axis.set_ticks(ticks)
    axis.set_label_text(spec["value_axis"])
    (ax.yaxis if horizontal else ax.xaxis).set_label_text(spec["category_axis"])
    # Light grid lines at the ticks and, without value labels, at every grid step: what lets
    # a reader take a value to the stated precision. Too pale to count as ink or as a colour.
    ax.set_axisbelow(True)
    axis.grid(True, which="major", color="#d9d9d9", linewidth=0.8)
    if not spec["value_labels"] and spec["step"] < ticks[1] - ticks[0]:
        axis.set_minor_locator(MultipleLocator(spec["step"]))
        axis.grid(True, which="minor", color="#eeeeee", linewidth=0.6)
        axis.set_tick_params(which="minor", length=0)


def _category_ticks(ax: Any, spec: Spec, x: Any) -> None:
    """The category labels under the chart, turned when they would not fit side by side."""
    turn = spec.get("tick_rotation", 30 if len(x) > 6 else 0)
    ax.set_xticks(x, spec["categories"], rotation=turn, ha="right" if turn else "center",
                  rotation_mode="anchor" if turn else "default")


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
        _category_ticks(ax, spec, x)
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
    _category_ticks(ax, spec, x)
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
# Questions: each draft function picks what one question about a chart is about (its facts),
# or None where it does not apply; its gold answer is computed from the facts and the spec by
# ``ANSWERS``, the same functions that answer it again about a counterfactual twin.

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


def table_of(spec: Spec, facts: Mapping[str, Any]) -> Table:
    """The category → value table a question is about: one series, or the stacked totals."""
    cats = spec["categories"]
    if facts.get("total"):
        return {c: sum(s["values"][i] for s in spec["series"]) for i, c in enumerate(cats)}
    name = facts.get("series")
    s = next(s for s in spec["series"] if s["name"] == name) if name else spec["series"][0]
    return dict(zip(cats, s["values"], strict=True))


def _points_of(spec: Spec, name: str | None) -> list[list[int]]:
    return next(s for s in spec["series"] if s["name"] == name)["points"] if name \
        else spec["series"][0]["points"]


def _unique(t: Table, best: int) -> str | None:
    winners = [c for c, v in t.items() if v == best]
    return winners[0] if len(winners) == 1 else None


def _runner_up(t: Table) -> str | None:
    """The second largest, when the top three values differ (else the question is ambiguous)."""
    ranked = sorted(t, key=t.get, reverse=True)  # type: ignore[arg-type]
    if len(ranked) < 3 or len({t[c] for c in ranked[:3]}) < 3:
        return None
    return ranked[1]


def _trend(v: list[int]) -> str:
    steps = [b - a for a, b in zip(v, v[1:], strict=False)]
    return "increasing" if all(d > 0 for d in steps) else (
        "decreasing" if all(d < 0 for d in steps) else "fluctuating")


def _clear_of(values: Collection[int], threshold: int, margin: int) -> bool:
    """No value within ``margin`` of ``threshold``: the count is unambiguous on the picture."""
    return all(abs(v - threshold) >= margin for v in values)


Answer = Callable[[Spec, Mapping[str, Any]], "str | None"]


def _on_table(fn: Callable[[Table, Mapping[str, Any], Spec], str | None]) -> Answer:
    return lambda spec, f: fn(table_of(spec, f), f, spec)


def _pair(fn: Callable[[int, int], str]) -> Answer:
    """A question about a > b (the phrasing says "by how much a exceeds b")."""
    return _on_table(lambda t, f, s: fn(t[f["a"]], t[f["b"]]) if t[f["a"]] > t[f["b"]] else None)


# The gold answer of each question type from its facts (choice: the right option's text);
# None where the question no longer applies to the spec.
ANSWERS: dict[str, Answer] = {
    "value": _on_table(lambda t, f, s: format_number(t[f["a"]])),
    "max": _on_table(lambda t, f, s: _unique(t, max(t.values()))),
    "min": _on_table(lambda t, f, s: _unique(t, min(t.values()))),
    "difference": _pair(lambda a, b: format_number(a - b)),
    # Ratios, shares and sums of values that can be negative (temperatures, changes) mean
    # nothing: those questions are asked of positive tables only.
    "ratio": _pair(lambda a, b: format_number(round(a / b, 2)) if b > 0 else None),
    "sum": _on_table(lambda t, f, s: format_number(sum(t.values()))
                     if min(t.values()) >= 0 else None),
    "mean": _on_table(lambda t, f, s: format_number(round(sum(t.values()) / len(t), 2))),
    "range": _on_table(lambda t, f, s: format_number(max(t.values()) - min(t.values()))),
    "percentage": _on_table(
        lambda t, f, s: format_number(round(100 * t[f["a"]] / sum(t.values()), 1))
        if min(t.values()) > 0 else None),
    "trend": _on_table(lambda t, f, s: _trend(list(t.values())) if s["ordered"] else None),
    "compare": _on_table(lambda t, f, s: None if t[f["a"]] == t[f["b"]]
                         else ("yes" if t[f["a"]] > t[f["b"]] else "no")),
    "count_above": _on_table(
        lambda t, f, s: str(sum(v > f["threshold"] for v in t.values()))
        if _clear_of(t.values(), f["threshold"], 2 * s["step"]) else None),
    "choice": _on_table(lambda t, f, s: _runner_up(t)),
    "scatter_count_above": lambda s, f: (
        str(sum(p[1] > f["threshold"] for p in _points_of(s, f["series"])))
        if _clear_of([p[1] for p in _points_of(s, f["series"])], f["threshold"], 2) else None),
    "scatter_count": lambda s, f: str(len(_points_of(s, f["series"]))),
    "scatter_compare": lambda s, f: None if len(_points_of(s, f["a"])) == len(_points_of(
        s, f["b"])) else ("yes" if len(_points_of(s, f["a"])) > len(_points_of(s, f["b"]))
                          else "no"),
}


def _targets(spec: Spec, rng: Rng) -> ChartFacts:
    """Pick what a table question is about: one series, or stacked totals."""
    if spec["kind"] == "stacked" and rng.random() < 0.4:
        return {"series": None, "total": True}
    s = spec["series"][int(rng.integers(len(spec["series"])))]
    return {"series": s["name"] if len(spec["series"]) > 1 else None, "total": False}


def _two(rng: Rng, table: Table) -> tuple[str, str] | None:
    """Two categories of different values, the larger first: the wider apart of two random
    pairs, so that differences do not crowd at one grid step."""
    cats = list(table)
    pairs = []
    for _ in range(10):
        a, b = (cats[i] for i in rng.choice(len(cats), size=2, replace=False))
        if table[a] != table[b]:
            pairs.append((a, b) if table[a] > table[b] else (b, a))
            if len(pairs) == 2:
                break
    return max(pairs, key=lambda p: table[p[0]] - table[p[1]]) if pairs else None


def _threshold(rng: Rng, values: list[int], step: int, low: int, high: int) -> int | None:
    """A round threshold, at least two steps from every value and within [low, high], above
    which a count drawn evenly from the possible ones lie (none of them is the safe guess;
    "none" and "all" are half as likely, being possible on almost every chart)."""
    v = sorted(values)
    n = len(v)
    spans: dict[int, tuple[int, int]] = {}
    for above in range(n + 1):
        lo = v[n - above - 1] + 2 * step if above < n else low
        hi = v[n - above] - 2 * step if above > 0 else high
        if lo <= hi and int(np.ceil(lo / step)) * step <= hi:
            spans[above] = (lo, hi)
    if not spans:
        return None
    counts = list(spans)
    weights = np.array([0.5 if c in (0, n) else 1.0 for c in counts])
    lo, hi = spans[counts[int(rng.choice(len(counts), p=weights / weights.sum()))]]
    for unit in (10 * step, 5 * step, 2 * step, step):
        first = int(np.ceil(lo / unit)) * unit
        if first <= hi:
            picks = list(range(first, hi + 1, unit))
            return int(picks[int(rng.integers(len(picks)))])
    return None


def _part(rng: Rng, key: str, **names: Any) -> str:
    """One phrase of the ``_parts`` of templates/questions/chart.yaml, drawn and filled in
    (keeping the spaces that join it to the body)."""
    options = load_yaml("questions/chart.yaml")["_parts"][key]
    raw = str(options[int(rng.integers(len(options)))])
    text = render_string(raw, **names)
    return (" " if raw.startswith(" ") and text else "") + text + (
        " " if raw.endswith(" ") and text else "")


def _scope(spec: Spec, facts: Mapping[str, Any], rng: Rng) -> tuple[str, str]:
    """What a question is about, as a phrase after its body (``scope``) and as the subject
    of a trend: a lone series, a named series, a stacked segment, or the stacked totals."""
    series = facts.get("series")
    if facts.get("total"):
        return _part(rng, "scope_total"), _part(rng, "subject_total")
    if spec["kind"] == "scatter":
        return (_part(rng, "scope_points", series=series) if series else ""), ""
    if series and spec["kind"] == "stacked":
        return (_part(rng, "scope_segment", series=series),
                _part(rng, "subject_segment", series=series))
    if series:
        return (_part(rng, "scope_series", series=series),
                _part(rng, "subject_series", series=series))
    return "", _part(rng, "subject_single")


def _draft(spec: Spec, qtype: str, facts: ChartFacts, rng: Rng, choices: tuple[str, ...] = (),
           answer: str | None = None) -> Draft | None:
    """A chart draft: the gold answer from ``ANSWERS`` (unless given), the facts, and the
    names every chart phrasing may use (its parts drawn from ``_parts``)."""
    answer = ANSWERS[qtype](spec, facts) if answer is None else answer
    if answer is None:
        return None
    if choices:
        choices = (answer, *(c for c in choices if c != answer))
    axis = ("series" if qtype == "legend" and spec["kind"] != "pie"
            else spec["category_axis"].lower())
    scope, subject = _scope(spec, facts, rng)
    reads = qtype in NUMBER_READS and not spec["value_labels"] and spec["kind"] != "scatter"
    precision = _part(rng, "precision_pie" if spec["kind"] == "pie" else "precision",
                      grid=spec["step"]) if reads else ""
    rounding = {"mean": "round2", "ratio": "round2", "percentage": "round1"}.get(qtype)
    names = {"a": facts.get("a"), "b": facts.get("b"), "series": facts["series"],
             "threshold": facts.get("threshold"), "color": facts.get("color"),
             "total": facts["total"], "axis": axis, "axis_plural": spec["category_plural"],
             "first": spec["categories"][0], "last": spec["categories"][-1],
             "lead": _part(rng, "lead"), "scope": scope, "subject": subject,
             "precision": precision, "rounding": _part(rng, rounding) if rounding else "",
             "yesno": _part(rng, "yesno"), "letter": _part(rng, "letter"),
             "trend_answer": _part(rng, "trend_answer"), "trend_rule": _part(rng, "trend_rule")}
    return Draft(answer=answer, facts=facts, names=names, choices=choices)


# What a table question asks about, given the table it was picked for (None: does not apply).
TableFacts = Callable[[Spec, Rng, Table], "ChartFacts | tuple[ChartFacts, tuple[str, ...]] | None"]


def _table_question(qtype: str, fn: TableFacts) -> Callable[[Spec, Rng], Draft | None]:
    """A question over one series (or stacked totals): ``fn`` sees the picked table."""

    def draft(spec: Spec, rng: Rng) -> Draft | None:
        base = _targets(spec, rng)
        got = fn(spec, rng, table_of(spec, base))
        if got is None:
            return None
        facts, choices = got if isinstance(got, tuple) else (got, ())
        return _draft(spec, qtype, {**base, **facts}, rng, choices)

    return draft


def _f_none(spec: Spec, rng: Rng, t: Table) -> ChartFacts:
    return {}


def _f_one(spec: Spec, rng: Rng, t: Table) -> ChartFacts:
    return {"a": list(t)[rng.integers(len(t))]}


def _f_pair(spec: Spec, rng: Rng, t: Table) -> ChartFacts | None:
    pair = _two(rng, t)
    return None if pair is None else {"a": pair[0], "b": pair[1]}


def _f_compare(spec: Spec, rng: Rng, t: Table) -> ChartFacts | None:
    pair = _two(rng, t)
    if pair is None:
        return None
    a, b = pair if rng.random() < 0.5 else pair[::-1]
    return {"a": a, "b": b}


def _f_count_above(spec: Spec, rng: Rng, t: Table) -> ChartFacts | None:
    ticks = spec["ticks"]
    thr = _threshold(rng, list(t.values()), spec["step"], ticks[0] + spec["step"],
                     ticks[-1] - spec["step"])
    return None if thr is None else {"threshold": thr}


def _f_choice(spec: Spec, rng: Rng, t: Table) -> tuple[ChartFacts, tuple[str, ...]] | None:
    second = _runner_up(t)
    if second is None:
        return None
    others = [c for c in sorted(t, key=t.get, reverse=True) if c != second]  # type: ignore
    picks = [others[i] for i in rng.choice(len(others), size=min(3, len(others)), replace=False)]
    return {}, (second, *picks)


def _q_trend(spec: Spec, rng: Rng) -> Draft | None:
    """A trend question about a series (or the stacked totals) whose trend is drawn first, a
    third each, when the chart has one: no trend is the safe guess."""
    if not spec["ordered"]:
        return None
    targets: list[ChartFacts] = [{"series": s["name"] if len(spec["series"]) > 1 else None,
                                  "total": False} for s in spec["series"]]
    if spec["kind"] == "stacked":
        targets.append({"series": None, "total": True})
    want = str(rng.choice(TRENDS))
    fits = [t for t in targets if _trend(list(table_of(spec, t).values())) == want] or targets
    return _draft(spec, "trend", fits[int(rng.integers(len(fits)))], rng)


def _q_legend(spec: Spec, rng: Rng) -> Draft | None:
    if spec["kind"] == "pie":
        i = int(rng.integers(len(spec["categories"])))
        facts: ChartFacts = {"series": None, "total": False,
                             "color": spec["slice_color_names"][i], "hex": spec["slice_colors"][i]}
        return _draft(spec, "legend", facts, rng, answer=spec["categories"][i])
    if len(spec["series"]) < 2:
        return None
    s = spec["series"][int(rng.integers(len(spec["series"])))]
    facts = {"series": None, "total": False, "color": s["color_name"], "hex": s["color"]}
    return _draft(spec, "legend", facts, rng, answer=s["name"])


def _q_scatter_count_above(spec: Spec, rng: Rng) -> Draft | None:
    s = spec["series"][int(rng.integers(len(spec["series"])))]
    thr = _threshold(rng, [p[1] for p in s["points"]], 1, 2, 98)
    if thr is None:
        return None
    name = s["name"] if len(spec["series"]) > 1 else None
    return _counted(_draft(spec, "scatter_count_above",
                           {"series": name, "total": False, "threshold": thr}, rng))


def _q_scatter_count(spec: Spec, rng: Rng) -> Draft | None:
    s = spec["series"][int(rng.integers(len(spec["series"])))]
    if len(spec["series"]) < 2:
        return None  # its phrasings name the series, and a lone series' name is not printed
    return _counted(_draft(spec, "scatter_count", {"series": s["name"], "total": False}, rng))


def _counted(draft: Draft | None) -> Draft | None:
    """A count question's draft with its markers counted one by one in its ``Effort``."""
    return None if draft is None else replace(draft, effort={**draft.effort,
                                                             "counted": int(draft.answer)})


def _q_scatter_compare(spec: Spec, rng: Rng) -> Draft | None:
    if len(spec["series"]) < 2:
        return None
    a, b = (spec["series"][i] for i in rng.permutation(2))
    return _draft(spec, "scatter_compare",
                  {"series": None, "total": False, "a": a["name"], "b": b["name"]}, rng)


_MEASURE = ("pixel_measure", "compute")
_COUNT = ("pixel_measure", "count")


def _table(name: str, answer_type: AnswerType, fn: TableFacts,
           harder: bool = True) -> QuestionType:
    return QuestionType(name, answer_type, _MEASURE, _table_question(name, fn), harder)


QUESTIONS: dict[str, QuestionType] = {q.name: q for q in (
    _table("value", "number", _f_one, harder=False),
    _table("max", "text", _f_none, harder=False),
    _table("min", "text", _f_none, harder=False),
    _table("difference", "number", _f_pair),
    _table("sum", "number", _f_none),
    _table("mean", "number", _f_none),
    _table("percentage", "number", _f_one),
    _table("ratio", "number", _f_pair),
    _table("range", "number", _f_none),
    QuestionType("trend", "text", _MEASURE, _q_trend, harder=True),
    _table("compare", "yesno", _f_compare, harder=False),
    _table("count_above", "integer", _f_count_above),
    _table("choice", "choice", _f_choice),
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

_REDRAWS = 4  # fresh charts tried when labels collide


def make_scene(index: int, seed: int, options: Mapping[str, Any] | None = None) -> Scene:
    """The chart scene number ``index`` of a run seeded with ``seed`` (pure; no options apply).

    Labels that would collide are turned, and a chart whose labels still collide is drawn
    afresh (the last try is kept; ``labels_clear`` then rejects its questions)."""
    rng = np.random.default_rng([seed, index, 0xC4A7])
    kind = CHART_KINDS[int(rng.integers(len(CHART_KINDS)))]
    for _ in range(_REDRAWS):
        spec = kind.spec(rng)
        image, spec["layout"] = _render(spec)
        if spec["layout"]["collisions"] and kind.name in ("vbar", "grouped", "stacked", "line"):
            spec["tick_rotation"] = 45
            image, spec["layout"] = _render(spec)
        if not spec["layout"]["collisions"]:
            break
    hard = (not spec["value_labels"]) + (len(spec["series"]) > 1) + (len(spec["categories"]) > 6)
    return Scene(
        id=f"chart-{stable_id('chart', seed, index)}",
        family="chart",
        kind=kind.name,
        seed=index,
        image=image,
        spec=spec,
        difficulty=("easy", "medium", "hard", "hard")[hard],
    )


def pose(scene: Scene, k: int, only: Collection[str] | None = None) -> list[Task]:
    """Up to ``k`` questions of distinct types about ``scene``, with gold answers from its spec.

    The types are tried in a seeded order; one that does not apply to this chart is skipped.
    """
    spec: Spec = scene.spec
    rng = pose_rng(scene)
    poser = Poser("chart", scene, rng, numbered_ids=True, scene_effort=scene_effort(scene))
    for name in rng.permutation(KIND_BY_NAME[spec["kind"]].questions):
        if len(poser.tasks) == k:
            break
        qtype = QUESTIONS[str(name)]
        if only is not None and qtype.name not in only:
            continue
        draft = qtype.draft(spec, rng)
        if draft is None:
            continue
        task = poser.add(qtype, draft)
        task.question = task.question[0].upper() + task.question[1:]
        if task.answer_type == "number":
            task.tolerance = read_tolerance(spec, qtype.name, task.answer,
                                            len(spec["categories"]))
        verdict = check(task)
        if not all(verdict.values()):
            poser.tasks.pop()  # an annotator would not sign it
            continue
        task.facts["checks"] = sorted(verdict)
    return poser.tasks


# ---------------------------------------------------------------------------------------------
# What a trace may read, what it may not know, and counterfactual twins (``check.grounding``)


def _rgb(hex_colour: str) -> tuple[int, int, int]:
    h = hex_colour.lstrip("#")
    return int(h[0:2], 16), int(h[2:4], 16), int(h[4:6], 16)


def value_labels(spec: Spec) -> list[str]:
    """The value labels the chart prints (none when ``value_labels`` is off), as drawn."""
    if not spec["value_labels"]:
        return []
    fmt = "{:d}%" if spec["kind"] == "pie" else "{:g}"
    return [fmt.format(v) for s in spec["series"] for v in s.get("values", [])]


def printed(scene: Scene) -> frozenset[str]:
    """Every text the chart prints: title, axis labels, tick labels, categories, legend
    entries and (when shown) value labels."""
    spec: Spec = scene.spec
    texts = {spec["title"], *spec["categories"]} if spec["kind"] != "scatter" else {spec["title"]}
    if spec["kind"] != "pie":
        texts |= {spec["value_axis"], spec.get("x_axis") or spec["category_axis"],
                  *(str(t) for t in spec["ticks"])}
    if len(spec["series"]) > 1:
        texts |= {s["name"] for s in spec["series"]}
    labels = value_labels(spec)
    return frozenset(texts | set(labels) | {t.rstrip("%") for t in labels})


def secrets(task: Task) -> Secrets:
    """What only the renderer knows: the palette, the name of a series no legend prints (and
    the pie's internal one), the frame's (pie's) pixel coordinates, and the data when no label
    prints it (values, stacked totals, scatter points and their counts)."""
    spec: Spec = task.scene.spec
    colours = spec["slice_colors"] if spec["kind"] == "pie" \
        else [s["color"] for s in spec["series"]]
    strings = {"share"} if spec["kind"] == "pie" else set()
    if len(spec["series"]) == 1 and spec["kind"] != "pie":
        strings.add(spec["series"][0]["name"])
    # A pie has no visible frame: its centre and radius are what a trace could pretend to know.
    where = spec["layout"]["pie"] if spec["kind"] == "pie" else spec["layout"]["frame"]
    numbers: set[float] = {float(round(v)) for v in where}
    if not spec["value_labels"]:
        for s in spec["series"]:
            numbers |= {float(v) for v in s.get("values", [])}
            numbers |= {float(c) for p in s.get("points", []) for c in p}
            if "points" in s:
                numbers.add(float(len(s["points"])))
        if spec["kind"] == "stacked":
            numbers |= {float(v) for v in table_of(spec, {"total": True}).values()}
    # Below 5 a number is every program's index, margin or digit count, and no chart value.
    return Secrets(numbers=frozenset(v for v in numbers if abs(v) >= 5),
                   colours=tuple(_rgb(c) for c in colours), strings=frozenset(strings))


# One twin scene serves every question about a scene (one extra render per scene, not per
# task): candidates are redrawn specs, cheap to make and to answer; a question whose answer
# candidate 0 leaves unchanged tries the next, and only the chosen candidate is drawn.
_TWIN_CANDIDATES = 12
_twins: OrderedDict[tuple[str, int, int | None], Scene | None] = OrderedDict()


def _redraw(spec: Spec, rng: Rng, mode: int, avoid: int | None) -> Spec | None:
    """``spec`` with new data on the same axes: random values (mode 0, 1, 4, 5), sorted up
    (2) or down (3); none within two steps of ``avoid``. Unlabelled values stay on the grid
    their question reads them to; labelled ones (values in the hundreds) fall off the old
    multiples of ten, so code that snaps to a hidden grid fails."""
    new: Spec = {**spec, "series": [dict(s) for s in spec["series"]]}  # type: ignore[typeddict-item]
    kind, n = spec["kind"], len(spec["categories"])
    if kind == "pie":
        new["series"][0]["values"] = _shares(rng, n, spec["step"])
        return new
    if kind == "scatter":
        taken: list[tuple[int, int]] = []
        for s in new["series"]:
            pts: list[list[int]] = []
            want = int(rng.integers(6, 19))
            while len(pts) < want:
                x, y = int(rng.integers(2, 99)), int(rng.integers(2, 99))
                if all(abs(x - a) > 4 or abs(y - b) > 5 for a, b in taken) \
                        and (avoid is None or abs(y - avoid) >= 3):
                    taken.append((x, y))
                    pts.append([x, y])
            s["points"] = pts
        return new
    ticks, step = spec["ticks"], spec["step"]
    unit = 1 if spec["value_labels"] else step
    span = ticks[-1] - ticks[0]
    low = max(spec["range"][0], ticks[0] + 0.02 * span)
    high = min(spec["range"][1], ticks[-1] - 0.04 * span)
    if kind == "stacked":
        high = min(spec["range"][1], (ticks[-1] - 0.04 * span) / len(spec["series"]))
    grid = np.arange(int(np.ceil(low / unit)), int(high // unit) + 1) * unit
    if avoid is not None:
        grid = grid[np.abs(grid - avoid) >= 2 * step]
    if len(grid) < 2:
        return None
    frame = spec["layout"]["frame"]
    gap = _LINE_GAP_PX * span / max(frame[3] - frame[1], 1.0)
    for i, s in enumerate(new["series"]):
        for _ in range(40):
            vals = [int(v) for v in rng.choice(grid, size=n)]
            vals = sorted(vals, reverse=mode == 3) if mode in (2, 3) else vals
            if kind != "line" or all(abs(v - w) >= gap for t in new["series"][:i]
                                     for v, w in zip(vals, t["values"], strict=True)):
                break
        else:
            return None
        s["values"] = vals
    tops = table_of(new, {"total": True}).values() if kind == "stacked" \
        else [v for s in new["series"] for v in s["values"]]
    return new if max(tops) <= ticks[-1] else None


def _twin_scene(scene: Scene, k: int, avoid: int | None, draw: bool) -> Scene | None:
    """Candidate ``k`` of the twins of ``scene`` (its image drawn only when ``draw``)."""
    key = (scene.id, k, avoid)
    if key not in _twins:
        rng = np.random.default_rng([int(stable_id(scene.id, "twin", k, avoid), 16)])
        spec = _redraw(scene.spec, rng, k % 6, avoid)
        _twins[key] = None if spec is None else Scene(
            id=f"{scene.id}-twin{k}", family=scene.family, kind=scene.kind, seed=scene.seed,
            image=b"", spec=spec, difficulty=scene.difficulty)
        while len(_twins) > 64:
            _twins.popitem(last=False)
    twin = _twins[key]
    if twin is not None and draw and not twin.image:
        twin.image, twin.spec["layout"] = _render(twin.spec)
    return twin


def _differs(a: str, task: Task) -> bool:
    """Whether ``a`` is an answer the task's own matcher tells apart from its gold."""
    if task.answer_type == "number":
        p, g = float(a), float(task.answer)
        return abs(p - g) > max(task.tolerance * max(abs(p), abs(g)), 1e-9)
    return a != task.answer


def twin(task: Task) -> Twin | None:
    """The same question about the chart with its data redrawn so that the answer differs
    (None for legend questions, answered by reading a zoomed legend rather than by code).

    A twin already drawn for another question about the scene is used when it serves."""
    op, facts = task.facts["op"], task.facts
    if op == "legend":
        return None
    avoid = facts.get("threshold")
    drawn = [key for key, t in _twins.items() if key[0] == task.scene.id and t and t.image]
    keys = drawn + [(task.scene.id, k, avoid) for k in range(_TWIN_CANDIDATES)]
    for _, k, band in keys:
        scene = _twin_scene(task.scene, k, band, draw=False)
        if scene is None:
            continue
        answer = ANSWERS[op](scene.spec, facts)
        if answer is not None and op == "choice":
            answer = next((k for k, v in facts["options"].items() if v == answer), None)
        if answer is None or not _differs(answer, task):
            continue
        scene = _twin_scene(task.scene, k, band, draw=True)
        assert scene is not None
        old, new = value_labels(task.scene.spec), value_labels(scene.spec)
        changed = {a for a, b in zip(old, new, strict=True) if a != b}
        return Twin(scene, answer, frozenset(changed | {t.rstrip("%") for t in changed}))
    return None


def scene_effort(scene: Scene) -> dict[str, Any]:
    """What a chart adds to a question's ``Effort``: the other marks (bars, points, slices) a
    reader must tell the asked ones from, and values read against the axis when no value
    labels are printed."""
    spec = scene.spec
    marks = sum(len(s.get("values") or s.get("points") or ()) for s in spec["series"])
    return {"distractors": max(0, marks - 1), "off_axis": not spec.get("value_labels")}


FAMILY = Family(name="chart", kinds={k.name: k.questions for k in CHART_KINDS},
                questions=QUESTIONS, make_scene=make_scene, pose=pose, printed=printed,
                secrets=secrets, twin=twin, scene_effort=scene_effort)
