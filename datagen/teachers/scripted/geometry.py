"""Scripted traces for geometry.

Styles:
  compute  set up the marked quantities in sympy and solve                 (compute)
  draw     draw an auxiliary element on the figure and show it, then solve  (draw_line, compute)
  check    measure an angle on the figure from the pixels, then solve       (pixel_measure, compute)
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from datagen.records import Step, Task, Turn
from datagen.teachers.scripted.base import PlannedScript, Say, answer_from_output, task_rng
from datagen.templates import load_yaml, render, render_string

__all__ = ["GeometryScript"]

# What "check" measures per construction: an angle at a labelled vertex, or the slope of PQ.
_CHECKS: dict[str, tuple[str, ...]] = {
    "right_triangle": ("angle", "C", "A", "B"),
    "general_triangle": ("angle", "A", "B", "C"),
    "isosceles": ("angle", "B", "A", "C"),
    "similar": ("angle", "A", "B", "C"),
    "parallel": ("line", "P", "Q"),
}


def _given(spec: dict[str, Any]) -> list[tuple[str, str, str]]:
    """(name, value, note) for every number marked on the figure."""
    out = []
    for name, value in spec["given"].items():
        if isinstance(value, list):  # a labelled point A(x, y)
            out += [(f"{name.lower()}x", str(value[0]), f"x of {name}"),
                    (f"{name.lower()}y", str(value[1]), f"y of {name}")]
        else:
            out.append((name, str(value), "marked on the figure"))
    return out


def _aux(spec: dict[str, Any]) -> tuple[str, list[tuple[str, str]]]:
    """A description and the segments (as code expressions over ``P``) of the auxiliary sketch."""
    c, mode = spec["construction"], spec.get("mode")
    if c == "right_triangle":
        return "the altitude from C to AB", [('P["C"]', 'foot(P["C"], P["A"], P["B"])')]
    if c == "general_triangle" and mode == "angles":
        return "the extension of BC beyond C", [('P["B"]', 'P["C"] + 0.6 * (P["C"] - P["B"])')]
    if c in ("general_triangle", "similar"):
        return "the altitude from C to AB", [('P["C"]', 'foot(P["C"], P["A"], P["B"])')]
    if c == "isosceles":
        return "the altitude from A to the midpoint of BC", [('P["A"]', '(P["B"] + P["C"]) / 2')]
    if c == "circle":
        if mode == "tangent":
            return "the radius OT and the segment OP", [('P["O"]', 'P["T"]'), ('P["O"]', 'P["P"]')]
        if mode == "angles":
            return "the radii OA and OB", [('P["O"]', 'P["A"]'), ('P["O"]', 'P["B"]')]
        return "the diameter through P", [('P["P"]', '2 * P["O"] - P["P"]')]
    if c == "polygon":
        first, second = list(spec["points"])[:2]
        return "two radii from the centre, cutting out one isosceles triangle", [
            ("CENTRE", f'P["{first}"]'), ("CENTRE", f'P["{second}"]')]
    if c == "composite":
        return "the diagonal AC", [('P["A"]', 'P["C"]')]
    if c == "parallel":
        return "the transversal through P and Q", [('P["P"]', 'P["Q"]')]
    if c == "coordinate":
        return "the horizontal and vertical legs from A to B", [
            ('P["A"]', 'np.array([P["B"][0], P["A"][1]])'),
            ('np.array([P["B"][0], P["A"][1]])', 'P["B"]')]
    raise ValueError(f"no auxiliary sketch for {c!r}")


class GeometryScript(PlannedScript):
    """Plans compute / draw / check traces for geometry tasks."""

    ops = {
        "compute": ("compute",),
        "draw": ("draw_line", "compute"),
        "check": ("pixel_measure", "compute"),
    }

    def style(self, task: Task) -> str:
        """check where a figure angle can be measured, draw or compute otherwise."""
        r = task_rng(task, "style").random()
        if r < 0.25 and task.scene.spec["construction"] in _CHECKS:
            return "check"
        return "draw" if r < 0.6 else "compute"

    def cells(self, task: Task, style: str, say: Say) -> list[Step]:
        """The code steps of the trace."""
        spec = task.scene.spec
        method = load_yaml("teacher/geometry.yaml")["methods"][task.facts["op"]]
        given = _given(spec)
        given_text = ", ".join(f"{n} = {v}" for n, v, _ in given)
        code = render("code/geometry_compute.py.j2", given=given, answer_type=task.answer_type,
                      options=task.facts.get("options"),
                      method=render_string(method["code"], relation=spec.get("mode")))
        if style == "compute":
            return [Step(think=say("compute", given_text=given_text, method=method["name"]),
                         code=code)]
        if style == "draw":
            aux, lines = _aux(spec)
            points = {k: v for k, v in spec["pixels"].items() if k in spec["labelled"]}
            if any("CENTRE" in pair for pair in lines):
                lines = [tuple(e.replace("CENTRE", "sum(P.values()) / len(P)") for e in pair)
                         for pair in lines]
                points = {k: spec["pixels"][k] for k in spec["points"]}
            sketch = render("code/geometry_draw.py.j2", points=points, lines=lines)
            return [Step(think=say("draw", aux=aux), code=sketch),
                    Step(think=say("after_draw", aux=aux, method=method["name"],
                                   given_text=given_text), code=code)]
        kind, *names = _CHECKS[spec["construction"]]
        what = (f"the angle at {names[0]}" if kind == "angle"
                else "the angle between the transversal and the parallel lines")
        points = {k: spec["pixels"][k] for k in names}
        measure = render("code/geometry_check.py.j2", kind=kind, points=points,
                         vertex=names[0], a=names[-2] if kind == "angle" else names[0],
                         b=names[-1])
        return [Step(think=say("check", what=what), code=measure),
                Step(think=say("after_check", method=method["name"], given_text=given_text),
                     code=code)]

    def final(self, task: Task, style: str, history: Sequence[Turn], say: Say) -> Step:
        """The answer is the last printed line."""
        return answer_from_output(history, say)
