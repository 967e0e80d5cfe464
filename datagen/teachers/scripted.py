"""The offline scripted teacher: atomic, multi-turn code traces written from the scene spec.

It knows what a careful reader could see on the image (axis labels, tick values, legend colours)
and writes code that does the real work: measuring bars, lines, slices and markers from pixels,
cropping and zooming, and computing the answer. The final answer is read from what the code
printed, so a wrong measurement gives a wrong answer that verification rejects.

Styles:
  measure    pixel measurement of every value, then a compute cell       (pixel_measure, compute)
  zoom_read  crop + zoom the labelled chart, read the labels, compute    (crop, zoom, compute)
  locate     find a colour, crop and zoom on it, read the name           (crop, zoom)
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from datagen.records import Step, Task, Turn, stable_id
from datagen.templates import load_yaml, render, render_string

__all__ = ["ScriptedTeacher"]

_OPS = {
    "measure": ("pixel_measure", "compute"),
    "zoom_read": ("crop", "zoom", "compute"),
    "locate": ("crop", "zoom"),
}
_MEASURE_TEMPLATE = {
    "vbar": "measure_vbars", "grouped": "measure_vbars", "stacked": "measure_vbars",
    "hbar": "measure_hbars", "line": "measure_line", "pie": "measure_pie",
    "scatter": "measure_scatter",
}


def _rgb(hex_colour: str) -> tuple[int, int, int]:
    h = hex_colour.lstrip("#")
    return int(h[0:2], 16), int(h[2:4], 16), int(h[4:6], 16)


def _colours(spec: dict[str, Any]) -> dict[str, tuple[int, int, int]]:
    if spec["kind"] == "pie":
        return {c: _rgb(x) for c, x in zip(spec["categories"], spec["slice_colors"], strict=True)}
    return {s["name"]: _rgb(s["color"]) for s in spec["series"]}


def _table(spec: dict[str, Any]) -> dict[str, dict[str, int]]:
    if spec["kind"] == "pie":
        return {"share": dict(zip(spec["categories"], spec["series"][0]["values"], strict=True))}
    return {s["name"]: dict(zip(spec["categories"], s["values"], strict=True))
            for s in spec["series"]}


class ScriptedTeacher:
    """Deterministic teacher: the same task always gets the same trace."""

    name = "scripted"

    def style(self, task: Task) -> tuple[str, tuple[str, ...]]:
        """Pick the trace style of ``task`` (seeded by its id)."""
        op, spec = task.facts["op"], task.scene.spec
        if op == "legend":
            style = "locate"
        elif spec["value_labels"] and op in _TABLE_OPS and self._rng(task, "style").random() < 0.5:
            style = "zoom_read"
        else:
            style = "measure"
        return style, _OPS[style]

    def step(self, task: Task, history: Sequence[Turn]) -> Step:
        """The next step: the planned cell, or the answer read from the last output."""
        style, _ = self.style(task)
        cells = self._cells(task, style, history)
        if history and history[-1].result is not None and history[-1].result.status != "ok":
            res = history[-1].result
            return Step(think=self._say(task, "give_up", error=res.error_type or res.status))
        if len(history) < len(cells):
            return cells[len(history)]
        if style == "locate":
            names = {v: k for k, v in self._legend_colours(task).items()}
            answer = names[task.facts["hex"]]
            return Step(think=self._say(task, "locate_answer", color=task.facts["color"],
                                        answer=answer), answer=answer)
        result = history[-1].result
        lines = [ln.strip() for ln in (result.stdout if result else "").splitlines() if ln.strip()]
        if not lines:
            return Step(think=self._say(task, "give_up", error="no output"))
        return Step(think=self._say(task, "final", result=lines[-1]), answer=lines[-1])

    # -- planning ------------------------------------------------------------------------------

    def _cells(self, task: Task, style: str, history: Sequence[Turn]) -> list[Step]:
        spec, facts = task.scene.spec, task.facts
        if style == "locate":
            where = "pie" if spec["kind"] == "pie" else "legend"
            code = render("code/chart_locate_zoom.py.j2", rgb=_rgb(facts["hex"]),
                          color=facts["color"], where=where)
            return [Step(think=self._say(task, "locate", color=facts["color"], where=where),
                         code=code)]
        op_text = render_string(load_yaml("teacher/chart.yaml")["ops"][facts["op"]],
                                a=facts.get("a"), b=facts.get("b"), series=facts.get("series"),
                                threshold=facts.get("threshold"))
        compute = self._compute_code(task, values=_table(spec) if style == "zoom_read" else None)
        if style == "zoom_read":
            return [
                Step(think=self._say(task, "zoom"), code=render("code/chart_zoom.py.j2")),
                Step(think=self._say(task, "read_values", values_text=self._values_text(spec),
                                     op_text=op_text), code=compute),
            ]
        kind = spec["kind"]
        first = Step(think=self._measure_think(task), code=render(
            f"code/chart_{_MEASURE_TEMPLATE[kind]}.py.j2", categories=spec["categories"],
            colours=_colours(spec), step=spec["step"], ticks=spec["ticks"]))
        after = "after_points" if kind == "scatter" else "after_measure"
        return [first, Step(think=self._say(task, after, op_text=op_text), code=compute)]

    def _compute_code(self, task: Task, values: dict[str, dict[str, int]] | None) -> str:
        spec, f = task.scene.spec, task.facts
        if spec["kind"] == "scatter":
            return render("code/chart_scatter_compute.py.j2", op=f["op"], series=f.get("series"),
                          a=f.get("a"), b=f.get("b"), threshold=f.get("threshold"))
        only = "share" if spec["kind"] == "pie" else spec["series"][0]["name"]
        return render("code/chart_compute.py.j2", values=values, total=f["total"],
                      series_key=f["series"] or only, op=f["op"], a=f.get("a"), b=f.get("b"),
                      threshold=f.get("threshold"), options=f.get("options"))

    def _measure_think(self, task: Task) -> str:
        spec = task.scene.spec
        kind = spec["kind"]
        names = (spec["slice_color_names"] if kind == "pie"
                 else [s["color_name"] for s in spec["series"]])
        ctx = {
            "ticks_text": ", ".join(str(t) for t in spec["ticks"]),
            "colour_text": " and ".join(names) if len(names) < 3
            else ", ".join(names[:-1]) + " and " + names[-1],
            "labels": spec["value_labels"],
            "extent": "length" if kind == "hbar" else "height",
            "axis": spec["category_axis"].lower(),
            "n_series": len(spec["series"]),
        }
        key = {"line": "measure_line", "pie": "measure_pie", "scatter": "measure_scatter"}
        return self._say(task, key.get(kind, "measure_bars"), **ctx)

    @staticmethod
    def _values_text(spec: dict[str, Any]) -> str:
        parts = []
        for name, row in _table(spec).items():
            cells = ", ".join(f"{c} {v}" for c, v in row.items())
            parts.append(cells if len(spec["series"]) == 1 else f"{name}: {cells}")
        return "; ".join(parts)

    @staticmethod
    def _legend_colours(task: Task) -> dict[str, str]:
        spec = task.scene.spec
        if spec["kind"] == "pie":
            return dict(zip(spec["categories"], spec["slice_colors"], strict=True))
        return {s["name"]: s["color"] for s in spec["series"]}

    @staticmethod
    def _rng(task: Task, salt: str) -> np.random.Generator:
        return np.random.default_rng(int(stable_id(task.id, salt), 16))

    def _say(self, task: Task, key: str, **ctx: Any) -> str:
        variants = load_yaml("teacher/chart.yaml")[key]
        pick = variants[int(self._rng(task, key).integers(len(variants)))]
        return render_string(pick, **ctx)


_TABLE_OPS = {"value", "max", "min", "difference", "sum", "mean", "percentage", "ratio", "range",
              "trend", "compare", "count_above", "choice"}
