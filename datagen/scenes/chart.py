"""Chart family: seeded data tables, matplotlib rendering, the exact spec, and the questions.

Seven kinds — vertical bar, horizontal bar, grouped bar, stacked bar, multi-series line, pie and
scatter — drawn with the object-oriented matplotlib API (no pyplot state, so threads are safe).
Values are whole multiples of a per-chart ``step`` and the value axis has fixed ticks, so every
number in the spec is exactly what the picture shows. Questions are computed from the spec only.
"""

from __future__ import annotations

import io
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from datagen.records import AnswerType, Scene, Task, stable_id
from datagen.scenes.base import Family, format_number
from datagen.templates import load_yaml, render_string

__all__ = ["FAMILY", "KINDS", "make_scene", "pose", "render_chart"]

KINDS = ("vbar", "hbar", "grouped", "stacked", "line", "pie", "scatter")
DPI = 100
Spec = dict[str, Any]


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
    series = []
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


def _separate_lines(series: list[dict[str, Any]], gap: int) -> None:
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
    series = []
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
    _DRAW[spec["kind"]](ax, spec)
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


_DRAW: dict[str, Callable[[Any, Spec], None]] = {
    "vbar": _draw_bars, "hbar": _draw_bars, "grouped": _draw_bars, "stacked": _draw_bars,
    "line": _draw_line, "pie": _draw_pie, "scatter": _draw_scatter,
}


# ---------------------------------------------------------------------------------------------
# Scenes


def make_scene(index: int, seed: int, options: Mapping[str, Any] | None = None) -> Scene:
    """The chart scene number ``index`` of a run seeded with ``seed`` (pure; no options apply)."""
    rng = np.random.default_rng([seed, index, 0xC4A7])
    kind = KINDS[int(rng.integers(len(KINDS)))]
    if kind == "pie":
        spec = _pie_spec(rng)
    elif kind == "scatter":
        spec = _scatter_spec(rng)
    else:
        spec = _table_spec(rng, kind)
    hard = (not spec["value_labels"]) + (len(spec["series"]) > 1) + (len(spec["categories"]) > 6)
    return Scene(
        id=f"chart-{stable_id('chart', seed, index)}",
        family="chart",
        kind=kind,
        seed=index,
        image=render_chart(spec),
        spec=spec,
        difficulty=("easy", "medium", "hard", "hard")[hard],
    )


# ---------------------------------------------------------------------------------------------
# Questions: each function returns the facts of one question, or None where it does not apply.

Draft = tuple[str, AnswerType, dict[str, Any]]  # (answer, answer_type, facts)
Rng = np.random.Generator
Table = dict[str, int]


def _targets(spec: Spec, rng: np.random.Generator) -> tuple[str | None, Table]:
    """Pick what a table question is about: one series, or stacked totals."""
    cats = spec["categories"]
    if spec["kind"] == "stacked" and rng.random() < 0.4:
        return None, {c: sum(s["values"][i] for s in spec["series"]) for i, c in enumerate(cats)}
    s = spec["series"][int(rng.integers(len(spec["series"])))]
    name = s["name"] if len(spec["series"]) > 1 else None
    return name, dict(zip(cats, s["values"], strict=True))


def _two(rng: np.random.Generator, table: Table, distinct: bool = True) -> tuple[str, str] | None:
    cats = [c for c in table]
    for _ in range(10):
        a, b = (cats[i] for i in rng.choice(len(cats), size=2, replace=False))
        if not distinct or table[a] != table[b]:
            return (a, b) if table[a] >= table[b] else (b, a)
    return None


def _q_value(spec: Spec, rng: Rng, series: str | None, t: Table) -> Draft | None:
    a = list(t)[rng.integers(len(t))]
    return format_number(t[a]), "number", {"a": a}


def _q_extreme(op: str) -> Callable[..., Draft | None]:
    def q(spec: Spec, rng: Rng, series: str | None, t: Table) -> Draft | None:
        best = (max if op == "max" else min)(t.values())
        winners = [c for c, v in t.items() if v == best]
        return (winners[0], "text", {}) if len(winners) == 1 else None
    return q


def _q_difference(spec: Spec, rng: Rng, series: str | None, t: Table) -> Draft | None:
    pair = _two(rng, t)
    return None if pair is None else (format_number(t[pair[0]] - t[pair[1]]), "number",
                                      {"a": pair[0], "b": pair[1]})


def _q_ratio(spec: Spec, rng: Rng, series: str | None, t: Table) -> Draft | None:
    pair = _two(rng, t)
    return None if pair is None else (format_number(round(t[pair[0]] / t[pair[1]], 2)), "number",
                                      {"a": pair[0], "b": pair[1]})


def _q_sum(spec: Spec, rng: Rng, series: str | None, t: Table) -> Draft | None:
    return format_number(sum(t.values())), "number", {}


def _q_mean(spec: Spec, rng: Rng, series: str | None, t: Table) -> Draft | None:
    return format_number(round(sum(t.values()) / len(t), 2)), "number", {}


def _q_range(spec: Spec, rng: Rng, series: str | None, t: Table) -> Draft | None:
    return format_number(max(t.values()) - min(t.values())), "number", {}


def _q_percentage(spec: Spec, rng: Rng, series: str | None, t: Table) -> Draft | None:
    a = list(t)[rng.integers(len(t))]
    return format_number(round(100 * t[a] / sum(t.values()), 1)), "number", {"a": a}


def _q_trend(spec: Spec, rng: Rng, series: str | None, t: Table) -> Draft | None:
    if not spec["ordered"]:
        return None
    v = list(t.values())
    steps = [b - a for a, b in zip(v, v[1:], strict=False)]
    trend = "increasing" if all(d > 0 for d in steps) else (
        "decreasing" if all(d < 0 for d in steps) else "fluctuating")
    return trend, "text", {}


def _q_compare(spec: Spec, rng: Rng, series: str | None, t: Table) -> Draft | None:
    pair = _two(rng, t)
    if pair is None:
        return None
    a, b = pair if rng.random() < 0.5 else pair[::-1]
    return ("yes" if t[a] > t[b] else "no"), "yesno", {"a": a, "b": b}


def _threshold(rng: np.random.Generator, values: list[int], step: int) -> int | None:
    """A round threshold that no value sits near, so the count is unambiguous on the picture."""
    v = sorted(set(values))
    gaps = [(a, b) for a, b in zip(v, v[1:], strict=False) if b - a >= 4 * step]
    if not gaps:
        return None
    a, b = gaps[rng.integers(len(gaps))]
    return int(round((a + b) / 2 / step) * step)


def _q_count_above(spec: Spec, rng: Rng, series: str | None, t: Table) -> Draft | None:
    thr = _threshold(rng, list(t.values()), spec["step"])
    if thr is None:
        return None
    return str(sum(v > thr for v in t.values())), "integer", {"threshold": thr}


def _q_choice(spec: Spec, rng: Rng, series: str | None, t: Table) -> Draft | None:
    ranked = sorted(t, key=t.get, reverse=True)
    if len(ranked) < 3 or t[ranked[0]] == t[ranked[1]] or t[ranked[1]] == t[ranked[2]]:
        return None
    others = [c for c in ranked if c != ranked[1]]
    picks = [ranked[1]] + [others[i] for i in rng.choice(len(others), size=min(3, len(others)),
                                                          replace=False)]
    order = rng.permutation(len(picks))
    options = {"ABCD"[i]: picks[j] for i, j in enumerate(order)}
    letter = next(k for k, v in options.items() if v == ranked[1])
    return letter, "choice", {"options": options}


def _q_legend(spec: Spec, rng: Rng) -> Draft | None:
    if spec["kind"] == "pie":
        i = int(rng.integers(len(spec["categories"])))
        return spec["categories"][i], "text", {"color": spec["slice_color_names"][i],
                                               "hex": spec["slice_colors"][i]}
    if len(spec["series"]) < 2:
        return None
    s = spec["series"][int(rng.integers(len(spec["series"])))]
    return s["name"], "text", {"color": s["color_name"], "hex": s["color"]}


def _q_scatter_count_above(spec: Spec, rng: Rng) -> Draft | None:
    s = spec["series"][int(rng.integers(len(spec["series"])))]
    ys = [p[1] for p in s["points"]]
    thr = _threshold(rng, ys, 1)
    if thr is None:
        return None
    name = s["name"] if len(spec["series"]) > 1 else None
    return str(sum(y > thr for y in ys)), "integer", {"threshold": thr, "series": name}


def _q_scatter_count(spec: Spec, rng: Rng) -> Draft | None:
    s = spec["series"][int(rng.integers(len(spec["series"])))]
    return str(len(s["points"])), "integer", {"series": s["name"]}


def _q_scatter_compare(spec: Spec, rng: Rng) -> Draft | None:
    if len(spec["series"]) < 2:
        return None
    a, b = (spec["series"][i] for i in rng.permutation(2))
    if len(a["points"]) == len(b["points"]):
        return None
    return ("yes" if len(a["points"]) > len(b["points"]) else "no"), "yesno", {
        "a": a["name"], "b": b["name"]}


_TABLE_QUESTIONS: dict[str, Callable[..., Draft | None]] = {
    "value": _q_value, "max": _q_extreme("max"), "min": _q_extreme("min"),
    "difference": _q_difference, "sum": _q_sum, "mean": _q_mean, "percentage": _q_percentage,
    "ratio": _q_ratio, "range": _q_range, "trend": _q_trend, "compare": _q_compare,
    "count_above": _q_count_above, "choice": _q_choice,
}
_SPEC_QUESTIONS: dict[str, Callable[[Spec, np.random.Generator], Draft | None]] = {
    "legend": _q_legend, "scatter_count_above": _q_scatter_count_above,
    "scatter_count": _q_scatter_count, "scatter_compare": _q_scatter_compare,
}
_COMPOUND = {"difference", "sum", "mean", "percentage", "ratio", "range", "count_above", "choice",
             "trend", "scatter_count_above", "scatter_compare"}
_COUNT = ("pixel_measure", "count")
_OPS = {"legend": ("crop", "zoom"), "scatter_count": _COUNT, "scatter_count_above": _COUNT,
        "scatter_compare": _COUNT}


def question_types(kind: str) -> list[str]:
    """The question types that can be asked about a chart of this kind."""
    if kind == "scatter":
        return ["legend", "scatter_count_above", "scatter_count", "scatter_compare"]
    # A pie always sums to 100: totals, means and shares of the total would be trivia there.
    trivial = {"trend", "count_above", "sum", "mean", "percentage"} if kind == "pie" else set()
    types = [t for t in _TABLE_QUESTIONS if t not in trivial]
    return types + ["legend"]


def _options_text(options: dict[str, str]) -> str:
    return "\n".join(f"{k}. {v}" for k, v in options.items())


def pose(scene: Scene, k: int) -> list[Task]:
    """Up to ``k`` questions of distinct types about ``scene``, with gold answers from its spec."""
    spec = scene.spec
    rng = np.random.default_rng(int(stable_id(scene.id, "pose"), 16))
    phrasings = load_yaml("questions/chart.yaml")
    tasks: list[Task] = []
    for qtype in rng.permutation(question_types(spec["kind"])):
        if len(tasks) == k:
            break
        qtype = str(qtype)
        if qtype in _TABLE_QUESTIONS:
            series, table = _targets(spec, rng)
            draft = _TABLE_QUESTIONS[qtype](spec, rng, series, table)
            if draft is None:
                continue
            answer, atype, facts = draft
            facts = {"series": series, "total": series is None and spec["kind"] == "stacked",
                     **facts}
        else:
            draft = _SPEC_QUESTIONS[qtype](spec, rng)
            if draft is None:
                continue
            answer, atype, facts = draft
            facts = {"series": facts.pop("series", None), "total": False, **facts}
        facts["op"] = qtype
        pick = phrasings[qtype][int(rng.integers(len(phrasings[qtype])))]
        question = render_string(
            pick, a=facts.get("a"), b=facts.get("b"), series=facts["series"],
            threshold=facts.get("threshold"), color=facts.get("color"), total=facts["total"],
            axis="series" if qtype == "legend" and spec["kind"] != "pie"
            else spec["category_axis"].lower(),
            axis_plural=spec["category_plural"],
            options_text=_options_text(facts.get("options", {})),
        )
        level = ("easy", "medium", "hard").index(scene.difficulty) + (qtype in _COMPOUND)
        tasks.append(Task(
            id=f"chart-{stable_id(scene.id, qtype, len(tasks))}",
            scene=scene,
            task_type=f"chart.{spec['kind']}.{qtype}",
            question=question,
            answer=answer,
            answer_type=atype,
            tolerance=0.01 if atype == "number" else 0.0,
            difficulty=("easy", "medium", "hard")[min(level, 2)],
            ops=_OPS.get(qtype, ("pixel_measure", "compute")),
            facts=facts,
        ))
    return tasks


FAMILY = Family(name="chart", make_scene=make_scene, pose=pose)
