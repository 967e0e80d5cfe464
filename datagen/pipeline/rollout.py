"""Teach ⇄ execute: a teacher writes a step, the sandbox runs its code, until an answer."""

from __future__ import annotations

from datagen.messages import system_prompt, user_text
from datagen.records import Task, Trajectory, Turn
from datagen.sandbox import Sandbox
from datagen.teachers.base import Teacher, TeacherFailure

__all__ = ["rollout"]


def rollout(task: Task, teacher: Teacher, sandbox: Sandbox, max_turns: int = 6) -> Trajectory:
    """Run ``teacher`` on ``task`` for at most ``max_turns`` assistant turns.

    The last allowed turn must answer: a code cell there is not executed, so that no trajectory
    ends on an observation the model never answered. A ``TeacherFailure`` ends the trajectory
    with the failure recorded (verification rejects it with that reason).
    """
    style, ops = teacher.style(task)
    turns: list[Turn] = []
    failure: tuple[str, str] | None = None
    with sandbox.session(task.scene.image) as session:
        while len(turns) < max_turns:
            try:
                step = teacher.step(task, turns)
            except TeacherFailure as exc:
                failure = (exc.reason, exc.detail)
                break
            if step.code is None or len(turns) == max_turns - 1:
                turns.append(Turn(step=step))
                break
            turns.append(Turn(step=step, result=session.run(step.code)))
    return Trajectory(task=task, system=system_prompt(), user=user_text(task.question),
                      turns=turns, teacher=teacher.name, style=style, ops=ops, failure=failure)
