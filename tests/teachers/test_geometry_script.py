"""Scripted geometry traces read the figure: they verify with the grounding checks on, find
the twin's answer where the answer is measured, recover from missed looks, and a trace that
types what only the renderer knows is rejected with the right reason."""

from __future__ import annotations

import dataclasses
import io
import re
from collections import Counter
from collections.abc import Callable

import numpy as np
import pytest
from PIL import Image

from datagen.check.grounding import code_answer, rerun
from datagen.check.matcher import match
from datagen.check.verify import verify_trajectory
from datagen.pipeline.rollout import rollout
from datagen.records import Task, Trajectory
from datagen.sandbox import Sandbox
from datagen.scenes.geometry import COUNTED, RELATED, make_scene, pose
from datagen.teachers.scripted import ScriptedTeacher
from datagen.teachers.scripted.geometry import GeometryScript

TEACHER = ScriptedTeacher()
TASKS = [t for i in range(60) for t in pose(make_scene(i, 21), 2)]
MEASURED = [t for i in range(200) for t in pose(make_scene(i, 22), 4)
            if t.facts["op"] in COUNTED | RELATED]


@pytest.fixture(scope="module")
def trajectories(sandbox: Sandbox) -> list[Trajectory]:
    return [rollout(task, TEACHER, sandbox) for task in TASKS]


def test_traces_verify_with_the_grounding_checks_for_every_construction(
        trajectories: list[Trajectory], sandbox: Sandbox) -> None:
    verdicts: Counter[str] = Counter()
    for traj in trajectories:
        verdict = verify_trajectory(traj, 6, sandbox)
        verdicts[verdict.reason] += 1
        if verdict.kept:
            # The answer is the last line the last cell printed.
            assert traj.final_answer == traj.turns[-2].result.stdout.strip().splitlines()[-1]
    assert {t.task.scene.kind for t in trajectories} == {
        "right_triangle", "general_triangle", "isosceles", "circle", "polygon", "composite",
        "parallel", "coordinate", "similar"}
    assert verdicts["provenance"] == 0 and verdicts["not_grounded"] == 0, verdicts
    assert verdicts["verified"] >= 0.95 * len(trajectories), verdicts


def test_every_style_is_used_and_code_never_types_a_pixel_position(
        trajectories: list[Trajectory]) -> None:
    styles = Counter(t.style for t in trajectories)
    assert set(styles) >= {"compute", "construct", "measure", "draw", "arcs", "angle"}, styles
    for traj in trajectories:
        pixels = {f"{v:.2f}" for xy in traj.task.scene.spec["pixels"].values() for v in xy}
        for turn in traj.turns:
            code = turn.step.code or ""
            assert not pixels & set(re.findall(r"\d+\.\d\d", code)), code


def _prints_another_angle(task: Task) -> bool:
    """A parallel choice that lists only one of x and 180 - x (half of them, so that listing
    both does not give the answer away): moving "?" would give an answer no option holds, so
    its twin prints another given angle, and code that typed the printed one read it (the
    twin check cannot tell: "na")."""
    options = task.facts.get("options") or {}
    if task.facts["op"] != "parallel_choice":
        return False
    answer = int(options[task.answer].rstrip("°"))
    return f"{180 - answer}°" not in options.values()


def test_measured_answers_follow_the_twin(sandbox: Sandbox) -> None:
    """Polygon counts and parallel relations come from the pixels: on the twin (another
    number of sides, the "?" moved) the same cells print the twin's answer."""
    from datagen.scenes.geometry import FAMILY
    seen: Counter[str] = Counter()
    for task in MEASURED:
        style = TEACHER.style(task)[0]
        if seen[style] >= 4 or style == "letters" or _prints_another_angle(task):
            continue
        traj = rollout(task, TEACHER, sandbox)
        verdict = verify_trajectory(traj, 6, sandbox)
        assert verdict.kept, (task.task_type, style, verdict.reason, verdict.detail)
        assert verdict.grounding is not None and verdict.grounding.twin.status == "pass", (
            task.task_type, style, verdict.grounding)
        twin = FAMILY.twin(task)
        assert twin is not None and twin.answer != task.answer
        seen[style] += 1
    assert set(seen) == {"outline", "ticks", "arcs", "angle"}, seen


def test_measured_answers_are_not_found_on_a_blank_image(sandbox: Sandbox) -> None:
    buf = io.BytesIO()
    checked = 0
    for task in MEASURED[:30]:
        traj = rollout(task, TEACHER, sandbox)
        if traj.style == "letters":
            continue
        w, h = task.scene.spec["size"]
        buf = io.BytesIO()
        Image.new("RGB", (w, h), "white").save(buf, format="PNG")
        cells = [t.step.code for t in traj.turns if t.result is not None and t.step.code]
        said = code_answer(rerun(cells, buf.getvalue(), sandbox))
        assert said is None or not match(said, task.answer, task.answer_type, task.tolerance)
        checked += 1
    assert checked >= 15


def test_missed_looks_are_noticed_and_recovered(trajectories: list[Trajectory],
                                                sandbox: Sandbox) -> None:
    recovered: Counter[str] = Counter()
    for traj in trajectories:
        outputs = [t.result.stdout for t in traj.turns if t.result is not None]
        missed = [i for i, out in enumerate(outputs)
                  if re.search(r"guess for [A-Z]|reaches the image border|they differ", out)]
        if missed:
            # A later cell ran and the trace still reached the gold answer. (A look that
            # landed just inside the search radius can land outside it on the shifted copy:
            # such a trace is rejected as brittle, which is rare.)
            assert len(outputs) > missed[0] + 1
            assert traj.final_answer is not None
            assert match(traj.final_answer, traj.task.answer, traj.task.answer_type,
                         traj.task.tolerance)
            recovered[verify_trajectory(traj, 6, sandbox).reason] += 1
    assert recovered["verified"] >= 0.08 * len(trajectories), recovered
    assert recovered["verified"] >= 0.8 * sum(recovered.values()), recovered


def test_the_same_task_gets_the_same_trace(sandbox: Sandbox) -> None:
    task = next(t for t in TASKS if TEACHER.style(t)[0] == "measure")
    a, b = rollout(task, TEACHER, sandbox), rollout(task, TEACHER, sandbox)
    assert [t.step for t in a.turns] == [t.step for t in b.turns]


def test_draw_shows_the_figure_with_a_red_auxiliary_line(trajectories: list[Trajectory]) -> None:
    traj = next(t for t in trajectories if t.style == "draw")
    shown = [img for t in traj.turns if t.result is not None for img in t.result.images]
    assert len(shown) == 1
    with Image.open(io.BytesIO(shown[0])) as im:
        px = np.asarray(im.convert("RGB")).astype(int)
    red = int(((px[:, :, 0] > 200) & (px[:, :, 1] < 60) & (px[:, :, 2] < 60)).sum())
    assert red > 50


# ---------------------------------------------------------------------------------------------
# Traces that were told, not shown, are rejected with the right reason


def _replace_cell(traj: Trajectory, index: int, code: str) -> Trajectory:
    turns = list(traj.turns)
    turns[index] = dataclasses.replace(turns[index],
                                       step=dataclasses.replace(turns[index].step, code=code))
    return dataclasses.replace(traj, turns=turns)


def _faithful(task_filter: str, style: str, sandbox: Sandbox,
              where: Callable[[Task], bool] = lambda t: True) -> Trajectory:
    task: Task = next(t for t in TASKS + MEASURED if re.search(task_filter, t.task_type)
                      and TEACHER.style(t)[0] == style and where(t))
    traj = rollout(task, TEACHER, sandbox)
    assert verify_trajectory(traj, 6, sandbox).kept
    return traj


def test_typing_the_renderers_pixel_positions_is_rejected(sandbox: Sandbox) -> None:
    traj = _faithful(r"\.(right_triangle|general_triangle)\.", "draw", sandbox)
    pixels = {k: v for k, v in traj.task.scene.spec["pixels"].items()}
    told = traj.turns[0].step.code.replace("P = {}", f"P = {pixels!r}")
    verdict = verify_trajectory(_replace_cell(traj, 0, told), 6, sandbox)
    assert (verdict.kept, verdict.reason) == (False, "provenance"), verdict
    assert "fact of the scene" in verdict.detail


def test_typing_the_number_of_sides_is_rejected(sandbox: Sandbox) -> None:
    traj = _faithful(r"polygon\.(interior_angle|interior_sum|exterior_angle_polygon)", "ticks",
                     sandbox, lambda t: t.scene.spec["given"]["n"] != t.scene.spec["given"]["s"])
    n = traj.task.scene.spec["given"]["n"]
    told = traj.turns[1].step.code.replace(re.search(r"n = Integer\(\w+\)",
                                                     traj.turns[1].step.code).group(0),
                                           f"n = Integer({n})")
    # The count printed before would explain the literal: say nothing instead.
    told_traj = _replace_cell(traj, 1, told)
    told_traj = dataclasses.replace(told_traj, turns=told_traj.turns[1:])
    verdict = verify_trajectory(told_traj, 6, sandbox)
    assert (verdict.kept, verdict.reason) == (False, "provenance"), verdict


def test_naming_the_unprinted_relation_is_rejected(sandbox: Sandbox) -> None:
    traj = _faithful(r"parallel\.", "arcs", sandbox)
    relation = traj.task.scene.spec["mode"]
    told = traj.turns[-2].step.code + f'\nprint("{relation}")\nprint(angle)'
    verdict = verify_trajectory(_replace_cell(traj, len(traj.turns) - 2, told), 6, sandbox)
    assert (verdict.kept, verdict.reason) == (False, "provenance"), verdict
    assert relation in verdict.detail


def test_typing_the_palette_colour_is_rejected(sandbox: Sandbox) -> None:
    traj = _faithful(r"polygon\.(interior_angle|interior_sum|polygon_perimeter)", "ticks",
                     sandbox)
    code = traj.turns[0].step.code
    told = code.replace("rgb = ", "tick_rgb = (40, 90, 200)\nrgb = ")
    verdict = verify_trajectory(_replace_cell(traj, 0, told), 6, sandbox)
    assert (verdict.kept, verdict.reason) == (False, "provenance"), verdict
    assert "palette" in verdict.detail


def test_an_answer_that_ignores_where_the_mark_sits_fails_the_twin(sandbox: Sandbox) -> None:
    """Code that prints the value the renderer's relation implies, whatever the figure shows,
    prints the old answer on the twin (the "?" moved) and is rejected as not grounded."""
    traj = _faithful(r"parallel\.(alternate|corresponding|co_interior)_angle", "arcs", sandbox)
    told = f"print({traj.task.answer})"
    verdict = verify_trajectory(_replace_cell(traj, len(traj.turns) - 2, told), 6, sandbox)
    assert (verdict.kept, verdict.reason) == (False, "not_grounded"), verdict


def test_replay_refuses_a_history_it_did_not_write(sandbox: Sandbox) -> None:
    traj = _faithful(r"\.", "measure", sandbox)
    history = [_replace_cell(traj, 0, "print(1)").turns[0]]
    with pytest.raises(RuntimeError, match="replay diverged"):
        TEACHER.step(traj.task, history)
    assert isinstance(TEACHER._for(traj.task), GeometryScript)
