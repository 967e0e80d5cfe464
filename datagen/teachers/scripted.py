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
from typing import Any, Protocol

import numpy as np

from datagen.records import Step, Task, Turn, stable_id
from datagen.templates import load_yaml, render_string

__all__ = ["Say", "Script", "ScriptedTeacher", "answer_from_output"]


class Say(Protocol):
    """Renders one variant of a think-text key for a task (seeded by the task id)."""

    def __call__(self, key: str, **ctx: Any) -> str: ...


class Script(Protocol):
    """Per-family planning of a scripted trace."""

    ops: dict[str, tuple[str, ...]]

    def style(self, task: Task) -> str:
        """The trace style for ``task``."""
        ...

    def cells(self, task: Task, style: str, say: Say) -> list[Step]:
        """The code steps of the trace, in order."""
        ...

    def final(self, task: Task, style: str, history: Sequence[Turn], say: Say) -> Step:
        """The answering step once every cell has run."""
        ...


def answer_from_output(history: Sequence[Turn], say: Say) -> Step:
    """Answer with the last line the last cell printed (or give up if it printed nothing)."""
    result = history[-1].result if history else None
    lines = [ln.strip() for ln in (result.stdout if result else "").splitlines() if ln.strip()]
    if not lines:
        return Step(think=say("give_up", error="no output"))
    return Step(think=say("final", result=lines[-1]), answer=lines[-1])


def _script(family: str) -> Script:
    if family == "chart":
        from datagen.teachers.chart_script import ChartScript

        return ChartScript()
    if family == "geometry":
        from datagen.teachers.geometry_script import GeometryScript

        return GeometryScript()
    if family == "search":
        from datagen.teachers.search_script import SearchScript

        return SearchScript()
    raise ValueError(f"the scripted teacher has no script for family {family!r}")


class ScriptedTeacher:
    """Deterministic teacher: the same task always gets the same trace."""

    name = "scripted"

    def __init__(self) -> None:
        self._scripts: dict[str, Script] = {}

    def _for(self, task: Task) -> Script:
        family = task.scene.family
        if family not in self._scripts:
            self._scripts[family] = _script(family)
        return self._scripts[family]

    def style(self, task: Task) -> tuple[str, tuple[str, ...]]:
        """Pick the trace style of ``task`` and the atomic ops it exercises."""
        script = self._for(task)
        style = script.style(task)
        return style, script.ops[style]

    def step(self, task: Task, history: Sequence[Turn]) -> Step:
        """The next step: the planned cell, or the answer once every cell has run."""
        script = self._for(task)
        say = self._sayer(task)
        style = script.style(task)
        if history and history[-1].result is not None and history[-1].result.status != "ok":
            res = history[-1].result
            return Step(think=say("give_up", error=res.error_type or res.status))
        cells = script.cells(task, style, say)
        if len(history) < len(cells):
            return cells[len(history)]
        return script.final(task, style, history, say)

    @staticmethod
    def rng(task: Task, salt: str) -> np.random.Generator:
        """A generator seeded by the task id and ``salt``."""
        return np.random.default_rng(int(stable_id(task.id, salt), 16))

    def _sayer(self, task: Task) -> Say:
        texts = load_yaml(f"teacher/{task.scene.family}.yaml")

        def say(key: str, **ctx: Any) -> str:
            variants = texts[key]
            pick = variants[int(self.rng(task, key).integers(len(variants)))]
            return render_string(pick, **ctx)

        return say
