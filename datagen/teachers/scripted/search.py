"""Scripted traces for visual search.

Styles:
  zoom         crop around the target with a margin, enlarge, read       (crop, zoom)
  coarse_fine  look at the right quadrant first, then crop tightly       (crop, zoom)
  count        box and number every match, count the boxes               (draw_box, count)
  relation     crop both targets, box them, compare their centres        (crop, draw_box)
  absent       box every object of the asked shape, find none that fits  (draw_box)

Every crop that is meant to show a target prints ``region: (x0, y0, x1, y1)``; verification
checks those regions against the targets' boxes, so a trace cannot be right by luck.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from datagen.records import Step, Task, Turn
from datagen.teachers.scripted.base import PlannedScript, Say, answer_from_output, task_rng
from datagen.templates import render

__all__ = ["SearchScript"]


def _desc(obj: dict[str, Any]) -> str:
    return f"{obj['pattern']} {obj['color']} {obj['shape']}"


def _quadrant(task: Task, box: list[int]) -> str:
    w, h = task.scene.spec["size"]
    cx, cy = (box[0] + box[2]) / 2, (box[1] + box[3]) / 2
    return f"{'top' if cy < h / 2 else 'bottom'}-{'left' if cx < w / 2 else 'right'}"


class SearchScript(PlannedScript):
    """Plans visual-search traces from the scene's object list."""

    ops = {
        "zoom": ("crop", "zoom"),
        "coarse_fine": ("crop", "zoom"),
        "count": ("draw_box", "count"),
        "relation": ("crop", "draw_box"),
        "absent": ("draw_box",),
    }

    def style(self, task: Task) -> str:
        """count / relation / absent by question; zoom or a two-step search otherwise."""
        op = task.facts["op"]
        if op == "count":
            return "count"
        if op == "relation":
            return "relation"
        if op == "exists" and task.answer == "no":
            return "absent"
        return "coarse_fine" if task_rng(task, "style").random() < 0.4 else "zoom"

    def cells(self, task: Task, style: str, say: Say) -> list[Step]:
        """The code steps of the trace."""
        f, spec = task.facts, task.scene.spec
        if style == "count":
            what = f"{f['color']} {f['shape']}"
            return [Step(think=say("count", what=what),
                         code=render("code/search_boxes.py.j2", boxes=f["matches"], what=what,
                                     claim=True))]
        if style == "absent":
            desc = f"{f['pattern']} {f['color']} {f['shape']}"
            return [Step(think=say("absent", shape=f["shape"], description=desc),
                         code=render("code/search_boxes.py.j2", boxes=f["candidates"],
                                     what=f["shape"], claim=False))]
        if style == "relation":
            a, b = f["target"], f["other"]
            return [Step(think=say("relation", a_text=_desc(a), b_text=_desc(b)),
                         code=render("code/search_relation.py.j2", a=a["box"], b=b["box"],
                                     a_text=_desc(a), b_text=_desc(b)))]
        t = f["target"]
        box = t["box"]
        zoom = render("code/search_zoom.py.j2", box=box, description=_desc(t),
                      quadrant=_quadrant(task, box) if style == "coarse_fine" else None,
                      report_quadrant=f["op"] == "position")
        cx, cy = (box[0] + box[2]) // 2, (box[1] + box[3]) // 2
        if style == "zoom":
            return [Step(think=say("zoom", description=_desc(t), cx=cx, cy=cy), code=zoom)]
        w, h = spec["size"]
        quad = _quadrant(task, box)
        return [Step(think=say("coarse", w=w, h=h, quadrant=quad),
                     code=render("code/search_coarse.py.j2", quadrant=quad)),
                Step(think=say("fine", description=_desc(t)), code=zoom)]

    def final(self, task: Task, style: str, history: Sequence[Turn], say: Say) -> Step:
        """Read the answer from the last output or from the zoomed view."""
        f, op = task.facts, task.facts["op"]
        if style == "count":
            return answer_from_output(history, say)
        if style == "absent":
            desc = f"{f['pattern']} {f['color']} {f['shape']}"
            return Step(think=say("none_found", shape=f["shape"], description=desc), answer="no")
        if style == "relation" or op == "position":
            result = history[-1].result
            said = result.stdout.strip().splitlines()[-1] if result and result.stdout else ""
            letter = next((k for k, v in f["options"].items() if v == said), None)
            if letter is None:
                return Step(think=say("give_up", error=f"unexpected output {said!r}"))
            return Step(think=say("answer_from_output", result=said, letter=letter),
                        answer=letter)
        t = f["target"]
        if op == "attribute":
            value = t[f["attr"]]
            letter = next(k for k, v in f["options"].items() if v == value)
            return Step(think=say("read", description=_desc(t),
                                  reading=f"its {f['attr']} is {value}, option {letter}"),
                        answer=letter)
        if op == "read_text":
            return Step(think=say("read", description=_desc(t),
                                  reading=f"the number on it is {t['text']}"), answer=t["text"])
        return Step(think=say("read", description=_desc(t), reading="it is there"), answer="yes")
