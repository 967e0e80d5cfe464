"""A teacher that writes broken code for chosen tasks, for the tests of rejects and events."""

from __future__ import annotations

from collections.abc import Sequence

from datagen.records import Step, Task, Turn
from datagen.teachers.scripted import ScriptedTeacher

__all__ = ["BROKEN_CODE", "FaultyTeacher"]

BROKEN_CODE = {
    "raises": "values = {}\nprint(values['missing'])",
    "times out": "while True:\n    pass",
    "prints a wrong answer": "print(987654321)",
}


class FaultyTeacher(ScriptedTeacher):
    """The scripted teacher, except that chosen tasks get broken code in their last cell."""

    def __init__(self, faults: dict[str, str]) -> None:
        super().__init__()
        self.faults = faults

    def step(self, task: Task, history: Sequence[Turn]) -> Step:
        broken = BROKEN_CODE.get(self.faults.get(task.id, ""))
        if broken is not None and any(t.step.code == broken for t in history):
            # The broken cell is the trace's last: answer with what it printed (a script with
            # more cells planned would otherwise run on and could recover from it).
            res = history[-1].result
            lines = (res.stdout if res is not None and res.status == "ok" else "").split()
            return Step(think="That is what it printed.", answer=lines[-1] if lines else None)
        step = super().step(task, history)
        if task.id in self.faults and step.code is not None and len(history) == 1:
            return Step(think=step.think, code=BROKEN_CODE[self.faults[task.id]])
        if task.id in self.faults and step.code is not None and self.style(task)[0] == "locate":
            return Step(think=step.think, code=BROKEN_CODE[self.faults[task.id]])
        return step
