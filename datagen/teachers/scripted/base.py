"""What a family's script implements, and helpers every script shares."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol

import numpy as np

from datagen.records import Step, Task, Turn, stable_id

__all__ = ["Say", "Script", "answer_from_output", "task_rng"]


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


def task_rng(task: Task, salt: str) -> np.random.Generator:
    """A generator seeded by the task id and ``salt``: the same task always draws the same."""
    return np.random.default_rng(int(stable_id(task.id, salt), 16))
