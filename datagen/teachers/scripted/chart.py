"""Scripted traces for charts.

Styles:
  measure    pixel measurement of every value, then a compute cell       (pixel_measure, compute)
  zoom_read  crop + zoom the labelled chart, read the labels, compute    (crop, zoom, compute)
  locate     find a colour, crop and zoom on it, read the name           (crop, zoom)
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from datagen.records import Step, Task, Turn
from datagen.scenes.chart import KIND_BY_NAME
from datagen.teachers.scripted.base import PlannedScript, Say, answer_from_output, task_rng
from datagen.templates import load_yaml, render, render_string

__all__ = ["ChartScript"]

# Questions over the chart's data table: a labelled chart can be read instead of measured.
_TABLE_OPS = {"value", "max", "min", "difference", "sum", "mean", "percentage", "ratio", "range",
              "trend", "compare", "count_above", "choice"}


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


class ChartScript(PlannedScript):
    """Plans measure / zoom_read / locate traces for chart tasks."""

    ops = {
        "measure": ("pixel_measure", "compute"),
        "zoom_read": ("crop", "zoom", "compute"),
        "locate": ("crop", "zoom"),
    }

    def style(self, task: Task) -> str:
        """locate for legend questions; zoom_read for half the labelled charts; else measure."""
        op, spec = task.facts["op"], task.scene.spec
        if op == "legend":
            return "locate"
        if spec["value_labels"] and op in _TABLE_OPS \
                and task_rng(task, "style").random() < 0.5:
            return "zoom_read"
        return "measure"

    def cells(self, task: Task, style: str, say: Say) -> list[Step]:
        """The code steps of the trace."""
        spec, facts = task.scene.spec, task.facts
        if style == "locate":
            where = "pie" if spec["kind"] == "pie" else "legend"
            code = render("code/chart_locate_zoom.py.j2", rgb=_rgb(facts["hex"]),
                          color=facts["color"], where=where)
            return [Step(think=say("locate", color=facts["color"], where=where), code=code)]
        op_text = render_string(load_yaml("teacher/chart.yaml")["ops"][facts["op"]],
                                a=facts.get("a"), b=facts.get("b"), series=facts.get("series"),
                                threshold=facts.get("threshold"))
        compute = self._compute_code(task, values=_table(spec) if style == "zoom_read" else None)
        if style == "zoom_read":
            return [
                Step(think=say("zoom"), code=render("code/chart_zoom.py.j2")),
                Step(think=say("read_values", values_text=self._values_text(spec),
                               op_text=op_text), code=compute),
            ]
        kind = spec["kind"]
        first = Step(think=self._measure_think(task, say), code=render(
            f"code/chart_{KIND_BY_NAME[kind].measure}.py.j2", categories=spec["categories"],
            colours=_colours(spec), step=spec["step"], ticks=spec["ticks"]))
        after = "after_points" if kind == "scatter" else "after_measure"
        return [first, Step(think=say(after, op_text=op_text), code=compute)]

    def final(self, task: Task, style: str, history: Sequence[Turn], say: Say) -> Step:
        """The answer: the name seen in the zoomed crop, or the last printed line."""
        if style != "locate":
            return answer_from_output(history, say)
        spec = task.scene.spec
        if spec["kind"] == "pie":
            names = dict(zip(spec["slice_colors"], spec["categories"], strict=True))
        else:
            names = {s["color"]: s["name"] for s in spec["series"]}
        answer = names[task.facts["hex"]]
        return Step(think=say("locate_answer", color=task.facts["color"], answer=answer),
                    answer=answer)

    @staticmethod
    def _compute_code(task: Task, values: dict[str, dict[str, int]] | None) -> str:
        spec, f = task.scene.spec, task.facts
        if spec["kind"] == "scatter":
            return render("code/chart_scatter_compute.py.j2", op=f["op"], series=f.get("series"),
                          a=f.get("a"), b=f.get("b"), threshold=f.get("threshold"))
        only = "share" if spec["kind"] == "pie" else spec["series"][0]["name"]
        return render("code/chart_compute.py.j2", values=values, total=f["total"],
                      series_key=f["series"] or only, op=f["op"], a=f.get("a"), b=f.get("b"),
                      threshold=f.get("threshold"), options=f.get("options"))

    @staticmethod
    def _measure_think(task: Task, say: Say) -> str:
        spec = task.scene.spec
        kind = spec["kind"]
        names = (spec["slice_color_names"] if kind == "pie"
                 else [s["color_name"] for s in spec["series"]])
        return say(
            KIND_BY_NAME[kind].think,
            ticks_text=", ".join(str(t) for t in spec["ticks"]),
            colour_text=" and ".join(names) if len(names) < 3
            else ", ".join(names[:-1]) + " and " + names[-1],
            labels=spec["value_labels"],
            extent="length" if kind == "hbar" else "height",
            axis=spec["category_axis"].lower(),
            n_series=len(spec["series"]),
        )

    @staticmethod
    def _values_text(spec: dict[str, Any]) -> str:
        parts = []
        for name, row in _table(spec).items():
            cells = ", ".join(f"{c} {v}" for c, v in row.items())
            parts.append(cells if len(spec["series"]) == 1 else f"{name}: {cells}")
        return "; ".join(parts)
