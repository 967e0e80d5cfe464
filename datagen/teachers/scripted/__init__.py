"""The offline scripted teacher: atomic, multi-turn code traces that look at the image.

The perception contract binds it as it binds any teacher. A trace may use only the question;
text printed in an image it was shown, read exactly where it is legible at the scale shown;
coarse, noisy perception of what it was shown (an approximate region or point, a colour name or
rough RGB, a small count: ``perception.Looker``, a seeded noise model, so some looks miss and
the trace must notice and recover); and what its earlier cells printed or showed. It never uses
exact renderer coordinates, palette colours, names that are not printed, the value grid,
unprinted counts or any other scene parameter: the scene spec is the verifier's knowledge.
Verification checks this (``check.grounding``: provenance of every literal, a counterfactual
twin, a jittered copy).

Each family has a script (``scripted/chart.py``, ``geometry.py``, ``search.py``) that writes
one step at a time from the turns so far; where code computes the answer, the answer is read
from what it printed, so a wrong measurement gives a wrong answer that verification rejects.
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
