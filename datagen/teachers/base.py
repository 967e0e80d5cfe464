"""What every teacher is: the protocols and the failures a trajectory can end with.

Teachers write the assistant turns of a trajectory, one step at a time.

A teacher sees the task and the turns so far (with the sandbox's results) and returns the next
``Step``: think text plus either a code cell or the final answer. The offline scripted teacher is
the default; other backends implement the same one-method protocol. A teacher that samples (an
LLM) also implements ``SamplingTeacher``: ``for_attempt(k)`` gives the teacher of the k-th try at
a task (its requests differ, so a retry is a new sample) and ``usage()`` its tokens and cost.

A teacher that cannot go on with a trajectory raises ``TeacherFailure`` (the trajectory ends and
is rejected with that reason); ``BudgetSpent`` stops the whole shard (nothing more may be paid).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from datagen.records import Step, Task, Turn

__all__ = ["BudgetSpent", "SamplingTeacher", "Teacher", "TeacherFailure", "Usage"]

class Teacher(Protocol):
    """Writes the next assistant step of a trajectory."""

    name: str

    def step(self, task: Task, history: Sequence[Turn]) -> Step:
        """The next step for ``task`` given the turns so far."""
        ...

    def style(self, task: Task) -> tuple[str, tuple[str, ...]]:
        """The trace style used for ``task`` and the atomic ops it exercises."""
        ...


@dataclass
class Usage:
    """What a sampling teacher's calls consumed; cached replies are free and counted apart."""

    calls: int = 0
    cached_calls: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost_usd: float = 0.0

    def minus(self, other: Usage) -> Usage:
        """The usage since ``other`` was taken."""
        return Usage(self.calls - other.calls, self.cached_calls - other.cached_calls,
                     self.prompt_tokens - other.prompt_tokens,
                     self.completion_tokens - other.completion_tokens,
                     self.cost_usd - other.cost_usd)


@runtime_checkable
class SamplingTeacher(Teacher, Protocol):
    """A teacher whose tries differ (so rejection sampling makes sense) and whose calls cost."""

    def for_attempt(self, attempt: int) -> Teacher:
        """The teacher of try number ``attempt`` (0-based) at a task."""
        ...

    def usage(self) -> Usage:
        """Tokens and cost of every call so far (a copy)."""
        ...


class TeacherFailure(Exception):
    """The teacher cannot continue this trajectory; it is rejected with ``reason``."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(reason, detail)
        self.reason = reason
        self.detail = detail


class BudgetSpent(Exception):
    """The build's ``--max-cost`` is spent: start no new request."""
