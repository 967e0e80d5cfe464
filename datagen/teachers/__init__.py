"""Teachers write the assistant turns of a trajectory, one step at a time.

A teacher sees the task and the turns so far (with the sandbox's results) and returns the next
``Step``: think text plus either a code cell or the final answer. The offline scripted teacher is
the default; other backends implement the same one-method protocol.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from datagen.errors import UsageError
from datagen.records import Step, Task, Turn

__all__ = ["TEACHER_NAMES", "Teacher", "get_teacher"]

TEACHER_NAMES = ("scripted",)


class Teacher(Protocol):
    """Writes the next assistant step of a trajectory."""

    name: str

    def step(self, task: Task, history: Sequence[Turn]) -> Step:
        """The next step for ``task`` given the turns so far."""
        ...

    def style(self, task: Task) -> tuple[str, tuple[str, ...]]:
        """The trace style used for ``task`` and the atomic ops it exercises."""
        ...


def get_teacher(name: str) -> Teacher:
    """The teacher called ``name``."""
    if name == "scripted":
        from datagen.teachers.scripted import ScriptedTeacher

        return ScriptedTeacher()
    raise UsageError(f"unknown teacher {name!r}; choose one of: {', '.join(TEACHER_NAMES)}")
