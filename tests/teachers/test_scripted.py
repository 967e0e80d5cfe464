"""The scripted teacher: real work in the code, answers taken from what the code printed."""

from __future__ import annotations

import io
import re
from collections import Counter

import numpy as np
from PIL import Image, ImageDraw

from datagen.check.verify import verify_trajectory
from datagen.pipeline.rollout import rollout
from datagen.records import Scene, Task
from datagen.sandbox import Sandbox
from datagen.scenes.chart import make_scene, pose
from datagen.teachers.scripted import ScriptedTeacher

TEACHER = ScriptedTeacher()


def _tasks(n_scenes: int, seed: int = 11) -> list[Task]:
    return [t for i in range(n_scenes) for t in pose(make_scene(i, seed), 3)]


def test_traces_verify_across_kinds_and_styles(sandbox: Sandbox) -> None:
    verdicts: Counter[str] = Counter()
    styles: Counter[str] = Counter()
    kinds: set[str] = set()
    for task in _tasks(21):
        traj = rollout(task, TEACHER, sandbox)
        verdict = verify_trajectory(traj, 6)
        verdicts[verdict.reason] += 1
        styles[traj.style] += 1
        kinds.add(task.scene.kind)
        if traj.style in ("measure", "zoom_read"):
            # The answer is what the last cell printed, not something the teacher knew.
            last = traj.turns[-2].result
            assert last is not None
            assert traj.final_answer == last.stdout.strip().splitlines()[-1]
    assert set(styles) == {"measure", "zoom_read", "locate"}
    assert len(kinds) == 7
    assert verdicts["verified"] >= 0.9 * sum(verdicts.values()), verdicts


def test_zoom_and_locate_cells_show_images(sandbox: Sandbox) -> None:
    seen = Counter()
    for task in _tasks(21):
        style, _ = TEACHER.style(task)
        if style == "measure" or seen[style] >= 2:
            continue
        seen[style] += 1
        traj = rollout(task, TEACHER, sandbox)
        first = traj.turns[0].result
        assert first is not None and first.status == "ok"
        assert len(first.images) == 1
        with Image.open(io.BytesIO(first.images[0])) as im:
            assert im.width > 100  # an enlarged crop, not a speck
    assert seen == {"zoom_read": 2, "locate": 2}


def test_think_text_does_not_state_a_computed_answer_before_the_code_ran() -> None:
    for task in _tasks(21):
        if task.facts["op"] not in ("difference", "sum", "mean", "range", "ratio"):
            continue
        first = TEACHER.step(task, [])
        if TEACHER.style(task)[0] != "measure":
            continue
        numbers = set(re.findall(r"\d+(?:\.\d+)?", first.think))
        ticks = {str(t) for t in task.scene.spec["ticks"]}
        assert task.answer not in numbers - ticks, (task.answer, first.think)


def test_measurement_comes_from_pixels_so_a_tampered_image_is_rejected(sandbox: Sandbox) -> None:
    """Paint one bar taller: the measured value changes and verification rejects the trace."""
    for i in range(200):
        scene = make_scene(i, 3)
        if scene.kind != "vbar" or scene.spec["value_labels"]:
            continue
        tasks = [t for t in pose(scene, 20) if t.facts["op"] == "value"]
        if tasks:
            break
    task = tasks[0]
    assert TEACHER.style(task)[0] == "measure"
    honest = verify_trajectory(rollout(task, TEACHER, sandbox), 6)
    assert honest.kept, honest

    im = Image.open(io.BytesIO(scene.image)).convert("RGB")
    cats = scene.spec["categories"]
    mask_colour = scene.spec["series"][0]["color"]
    # Find the bar of the asked category: the n-th run of bar-coloured columns.
    rgb = tuple(int(mask_colour[k:k + 2], 16) for k in (1, 3, 5))
    arr = np.asarray(im).astype(int)
    cols = np.where(np.abs(arr[int(im.height * 0.8)] - rgb).sum(axis=1) < 30)[0]
    bar = np.split(cols, np.where(np.diff(cols) > 1)[0] + 1)[cats.index(task.facts["a"])]
    top = int(np.where(np.abs(arr[:, bar[len(bar) // 2]] - rgb).sum(axis=1) == 0)[0].min())
    ImageDraw.Draw(im).rectangle([int(bar[0]), top - 40, int(bar[-1]), top], fill=rgb)
    buf = io.BytesIO()
    im.save(buf, format="PNG")
    forged_scene = Scene(**{**{k: getattr(scene, k) for k in Scene.__slots__},
                            "image": buf.getvalue()})
    forged = Task(**{**{k: getattr(task, k) for k in Task.__slots__}, "scene": forged_scene})
    verdict = verify_trajectory(rollout(forged, TEACHER, sandbox), 6)
    assert not verdict.kept and verdict.reason == "wrong_answer", verdict
    assert float(verdict.predicted) > float(task.answer)
