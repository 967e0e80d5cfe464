"""Scripted geometry traces: they compute with sympy, draw on the figure, measure it, verify."""

from __future__ import annotations

import io
import re
from collections import Counter

import numpy as np
from PIL import Image

from datagen.check.verify import verify_trajectory
from datagen.pipeline.rollout import rollout
from datagen.sandbox import Sandbox
from datagen.scenes.geometry import make_scene, pose
from datagen.teachers.scripted import ScriptedTeacher

TEACHER = ScriptedTeacher()
TASKS = [t for i in range(45) for t in pose(make_scene(i, 21), 2)]


def test_traces_verify_for_every_construction_and_style(sandbox: Sandbox) -> None:
    verdicts: Counter[str] = Counter()
    styles: Counter[str] = Counter()
    kinds = set()
    for task in TASKS:
        traj = rollout(task, TEACHER, sandbox)
        verdict = verify_trajectory(traj, 6)
        verdicts[verdict.reason] += 1
        styles[traj.style] += 1
        kinds.add(task.scene.kind)
        # The answer is the printed result of the last cell.
        assert traj.final_answer == traj.turns[-2].result.stdout.strip().splitlines()[-1]
    assert set(styles) == {"compute", "draw", "check"}
    assert len(kinds) == 9
    assert verdicts["verified"] >= 0.95 * sum(verdicts.values()), verdicts


def test_draw_shows_the_figure_with_a_red_auxiliary_line(sandbox: Sandbox) -> None:
    task = next(t for t in TASKS if TEACHER.style(t)[0] == "draw")
    first = rollout(task, TEACHER, sandbox).turns[0].result
    assert first is not None and len(first.images) == 1
    with Image.open(io.BytesIO(first.images[0])) as im:
        px = np.asarray(im.convert("RGB")).astype(int)
    red = int(((px[:, :, 0] > 200) & (px[:, :, 1] < 60) & (px[:, :, 2] < 60)).sum())
    assert red > 50


def test_check_measures_the_angle_from_pixels(sandbox: Sandbox) -> None:
    import math

    measured = 0
    for task in TASKS:
        if TEACHER.style(task)[0] != "check" or task.scene.kind != "right_triangle":
            continue
        out = rollout(task, TEACHER, sandbox).turns[0].result.stdout
        angle = float(re.search(r"([\d.]+) degrees", out).group(1))
        assert math.isclose(angle, 90.0, abs_tol=2.0), out  # the right angle at C
        measured += 1
    assert measured >= 1
