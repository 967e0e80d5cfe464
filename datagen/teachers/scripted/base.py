"""What a family's script implements, and helpers every script shares."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol

import numpy as np

from datagen.records import Step, Task, Turn, stable_id
from datagen.teachers.scripted.perception import Looker

__all__ = ["PlannedScript", "Say", "Script", "answer_from_output", "task_rng"]


class Say(Protocol):
    """Renders one variant of a think-text key for a task (seeded by the task id)."""

    def __call__(self, key: str, **ctx: Any) -> str: ...


class Script(Protocol):
    """Per-family planning of a scripted trace, one step at a time.

    ``step`` sees the turns so far with what the sandbox returned, so a script can notice a
    miss (a crop that showed nothing, a mask that found nothing, an exception) and recover.
    ``look`` is the teacher's noisy perception for this step (``perception.Looker``): every
    estimate a step's code uses must come from it, and is recorded with the step.
    """

    ops: dict[str, tuple[str, ...]]

    def style(self, task: Task) -> str:
        """The trace style for ``task``."""
        ...

    def step(self, task: Task, style: str, history: Sequence[Turn], say: Say,
             look: Looker) -> Step:
        """The next step: a code cell, or the answer."""
        ...


class PlannedScript:
    """A script whose cells are planned up front (``cells``) and that gives up at the first
    failed cell; ``final`` answers once every cell has run."""

    def cells(self, task: Task, style: str, say: Say) -> list[Step]:
        """The code steps of the trace, in order."""
        raise NotImplementedError

    def final(self, task: Task, style: str, history: Sequence[Turn], say: Say) -> Step:
        """The answering step once every cell has run."""
        raise NotImplementedError

    def step(self, task: Task, style: str, history: Sequence[Turn], say: Say,
             look: Looker) -> Step:
        """The planned cell, or the answer once every cell has run."""
        if history and history[-1].result is not None and history[-1].result.status != "ok":
            res = history[-1].result
            return Step(think=say("give_up", error=res.error_type or res.status))
        cells = self.cells(task, style, say)
        if len(history) < len(cells):
            return cells[len(history)]
        return self.final(task, style, history, say)


def answer_from_output(history: Sequence[Turn], say: Say) -> Step:
    """Answer with the last line the last cell printed (or give up if it printed nothing)."""
    result = history[-1].result if history else None
    lines = [ln.strip() for ln in (result.stdout if result else "").splitlines() if ln.strip()]
    if not lines:
        return Step(think=say("give_up", error="no output"))
    return Step(think=say("final", result=lines[-1]), answer=lines[-1])


def task_rng(task: Task, salt: str) -> np.random.Generator:
    """A generator seeded by the task id and ``salt``: the same task always draws the same."""
    return np.random.default_rng(int(stable_id(task.id, salt), 16))
