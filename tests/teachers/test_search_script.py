"""Scripted visual-search traces: crops that show the target, and a grounding check that rejects
a right answer read off the wrong crop."""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Sequence

from datagen.check.verify import claimed_regions, verify_trajectory
from datagen.pipeline.rollout import rollout
from datagen.records import Step, Task, Turn
from datagen.sandbox import Sandbox
from datagen.scenes.search import make_scene, pose
from datagen.teachers.scripted import ScriptedTeacher

TEACHER = ScriptedTeacher()
TASKS = [t for i in range(14) for t in pose(make_scene(i, 8, {"max_side": 2048}), 3)]


class OffTargetTeacher(ScriptedTeacher):
    """Crops 300 px to the right of where the target is, then answers as usual."""

    def step(self, task: Task, history: Sequence[Turn]) -> Step:
        step = super().step(task, history)
        if step.code and "x0, y0, x1, y1 = [" in step.code:
            def shift(m: re.Match[str]) -> str:
                x0, y0, x1, y1 = (int(v) for v in m.groups())
                return f"x0, y0, x1, y1 = [{x0 + 300}, {y0}, {x1 + 300}, {y1}]"

            shifted = re.sub(r"x0, y0, x1, y1 = \[(\d+), (\d+), (\d+), (\d+)\]", shift,
                             step.code)
            return Step(think=step.think, code=shifted)
        return step


def test_traces_verify_and_their_crops_contain_the_targets(sandbox: Sandbox) -> None:
    verdicts: Counter[str] = Counter()
    styles: set[str] = set()
    for task in TASKS:
        traj = rollout(task, TEACHER, sandbox)
        verdict = verify_trajectory(traj, 6)
        verdicts[verdict.reason] += 1
        styles.add(traj.style)
        if task.grounding:
            assert claimed_regions(traj), task.task_type
    assert styles >= {"zoom", "coarse_fine", "count", "absent"}
    assert verdicts["verified"] == sum(verdicts.values()), verdicts


def test_a_trace_cropping_the_wrong_region_is_rejected(sandbox: Sandbox) -> None:
    task = next(t for t in TASKS if t.facts["op"] == "read_text")
    honest = verify_trajectory(rollout(task, TEACHER, sandbox), 6)
    assert honest.kept
    traj = rollout(task, OffTargetTeacher(), sandbox)
    verdict = verify_trajectory(traj, 6)
    assert traj.final_answer == task.answer  # right answer ...
    assert not verdict.kept and verdict.reason == "ungrounded", verdict  # ... from the wrong crop
