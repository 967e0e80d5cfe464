"""The offline scripted teacher: atomic, multi-turn code traces written from the scene spec.

It knows what a careful reader could see on the image (axis labels, tick values, legend colours,
marked lengths and angles) and writes code that does the real work: measuring from pixels,
cropping and zooming, drawing auxiliary lines, computing. Where code computes the answer, the
final answer is read from what it printed, so a wrong measurement or computation gives a wrong
answer that verification rejects; where the answer is read off a zoomed crop, verification checks
that the crop really showed the target. Each family has a script (``chart_script``,
``geometry_script``, ``search_script``) that plans the cells.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from datagen.records import Step, Task, Turn
from datagen.scenes import FAMILY_NAMES
from datagen.teachers.scripted.base import Say, Script, task_rng
from datagen.teachers.scripted.chart import ChartScript
from datagen.teachers.scripted.geometry import GeometryScript
from datagen.teachers.scripted.perception import Looker
from datagen.teachers.scripted.search import SearchScript
from datagen.templates import load_yaml, render_string

__all__ = ["SCRIPTS", "ScriptedTeacher"]

# One script per scene family; a family without one fails here, at import.
SCRIPTS: dict[str, type[Script]] = {
    "chart": ChartScript, "geometry": GeometryScript, "search": SearchScript,
}
if set(SCRIPTS) != set(FAMILY_NAMES):
    raise ImportError(f"the scripted teacher has scripts for {sorted(SCRIPTS)}, but the families "
                      f"are {sorted(FAMILY_NAMES)}")


class ScriptedTeacher:
    """Deterministic teacher: the same task always gets the same trace."""

    name = "scripted"

    def __init__(self) -> None:
        self._scripts: dict[str, Script] = {}

    def _for(self, task: Task) -> Script:
        family = task.scene.family
        if family not in self._scripts:
            self._scripts[family] = SCRIPTS[family]()
        return self._scripts[family]

    def style(self, task: Task) -> tuple[str, tuple[str, ...]]:
        """Pick the trace style of ``task`` and the atomic ops it exercises."""
        script = self._for(task)
        style = script.style(task)
        return style, script.ops[style]

    def step(self, task: Task, history: Sequence[Turn]) -> Step:
        """The script's next step, with the looks it took recorded on it."""
        script = self._for(task)
        # Seeded by the task and the step: the same trace every run, a fresh look each step.
        look = Looker(task_rng(task, f"look-{len(history)}"))
        step = script.step(task, script.style(task), history, self._sayer(task), look)
        step.percepts = (*step.percepts, *look.take())
        return step

    def _sayer(self, task: Task) -> Say:
        texts = load_yaml(f"teacher/{task.scene.family}.yaml")

        def say(key: str, **ctx: Any) -> str:
            variants = texts[key]
            pick = variants[int(task_rng(task, key).integers(len(variants)))]
            return render_string(pick, **ctx)

        return say
