"""Charts and the checks that the code looked: what a chart prints, what only its renderer
knows, counterfactual twins, and scripted chart traces under provenance, twin and jitter."""

from __future__ import annotations

import dataclasses
import io
from collections import Counter

import pytest
from PIL import Image

from datagen.check.grounding import jitter_outcome, provenance_problem, twin_outcome
from datagen.check.matcher import match
from datagen.check.verify import verify_trajectory
from datagen.pipeline.rollout import rollout
from datagen.records import Task, Trajectory
from datagen.sandbox import Sandbox
from datagen.scenes.chart import ANSWERS, FAMILY, KIND_BY_NAME, make_scene, pose
from datagen.teachers.scripted import ScriptedTeacher

TEACHER = ScriptedTeacher()
SCENES = [make_scene(i, 7) for i in range(60)]
TASKS = [t for s in SCENES for t in pose(s, 20)]


def _hex(rgb: str) -> tuple[int, int, int]:
    return int(rgb[1:3], 16), int(rgb[3:5], 16), int(rgb[5:7], 16)


def _first(pred) -> Task:  # type: ignore[no-untyped-def]
    return next(t for t in TASKS if pred(t))


def _with_code(traj: Trajectory, index: int, code: str) -> Trajectory:
    """``traj`` with cell ``index`` replaced (what an unfaithful teacher would have written)."""
    turns = list(traj.turns)
    turns[index] = dataclasses.replace(turns[index], step=dataclasses.replace(
        turns[index].step, code=code, percepts=()))
    return dataclasses.replace(traj, turns=turns)


# ---------------------------------------------------------------------------------------------
# printed, secrets


def test_printed_text_is_what_the_picture_shows() -> None:
    multi = next(s for s in SCENES if s.kind == "grouped")
    single = next(s for s in SCENES if s.kind == "vbar")
    labelled = next(s for s in SCENES if s.spec["value_labels"] and s.kind == "vbar")
    spec = multi.spec
    assert {spec["title"], spec["value_axis"], *spec["categories"],
            *(str(t) for t in spec["ticks"]), *(s["name"] for s in spec["series"])} \
        <= FAMILY.printed(multi)
    # A lone series has no legend: its name is printed nowhere.
    assert single.spec["series"][0]["name"] not in FAMILY.printed(single)
    assert {f"{v:g}" for v in labelled.spec["series"][0]["values"]} <= FAMILY.printed(labelled)


def test_secrets_hold_the_palette_hidden_names_and_unlabelled_values() -> None:
    task = _first(lambda t: t.scene.kind == "vbar" and not t.scene.spec["value_labels"])
    spec = task.scene.spec
    secrets = FAMILY.secrets(task)
    assert _hex(spec["series"][0]["color"]) in secrets.colours
    assert spec["series"][0]["name"] in secrets.strings
    assert {float(v) for v in spec["series"][0]["values"]} <= secrets.numbers
    assert round(spec["layout"]["frame"][2]) in secrets.numbers
    labelled = _first(lambda t: t.scene.kind == "vbar" and t.scene.spec["value_labels"])
    # Printed labels are no secret: only where the frame is.
    frame = {float(round(v)) for v in labelled.scene.spec["layout"]["frame"]}
    assert FAMILY.secrets(labelled).numbers <= frame


def test_unlabelled_charts_have_an_axis_fine_enough_to_measure_to_the_unit() -> None:
    for scene in SCENES:
        spec = scene.spec
        if spec["value_labels"] or spec["kind"] in ("pie", "scatter"):
            continue
        frame = spec["layout"]["frame"]
        extent = frame[2] - frame[0] if spec["kind"] == "hbar" else frame[3] - frame[1]
        assert extent / spec["ticks"][-1] >= 2.2, (spec["kind"], spec["ticks"], extent)


# ---------------------------------------------------------------------------------------------
# twins


def test_a_twin_changes_the_answer_of_every_question_type_that_has_twins() -> None:
    seen: Counter[str] = Counter()
    for task in TASKS:
        op = task.facts["op"]
        twin = FAMILY.twin(task)
        if op == "legend":
            assert twin is None  # read off a zoomed legend by the model, not printed by code
            continue
        if twin is None:
            continue
        seen[op] += 1
        assert twin.scene.image != task.scene.image
        assert twin.scene.spec["ticks"] == task.scene.spec["ticks"]
        assert twin.scene.spec["categories"] == task.scene.spec["categories"]
        assert not match(twin.answer, task.answer, task.answer_type, task.tolerance), task.id
        # The same question still applies, and the twin's answer is its answer.
        expected = ANSWERS[op](twin.scene.spec, task.facts)
        if op == "choice":
            expected = next(k for k, v in task.facts["options"].items() if v == expected)
        assert expected == twin.answer
        if task.scene.spec["value_labels"]:
            assert twin.changed_text
    asked = {op for kind in KIND_BY_NAME.values() for op in kind.questions} - {"legend"}
    assert set(seen) == asked, asked - set(seen)


def test_twins_of_a_scene_share_one_drawing() -> None:
    scene = next(s for s in SCENES if s.kind == "vbar")
    twins = [FAMILY.twin(t) for t in pose(scene, 3)]
    images = {t.scene.image for t in twins if t is not None}
    assert len(images) < len([t for t in twins if t is not None]) or len(images) == 1


# ---------------------------------------------------------------------------------------------
# provenance on chart traces


@pytest.fixture(scope="module")
def measured(sandbox: Sandbox) -> Trajectory:
    """A verified measure trace of an unlabelled single-series bar chart (whose frame does
    not sit at a printed number: a literal equal to a tick label is explained by it)."""
    more = (t for i in range(60, 200) for t in pose(make_scene(i, 7), 20))
    for task in (*TASKS, *more):
        spec = task.scene.spec
        if task.scene.kind == "vbar" and not spec["value_labels"] \
                and task.facts["op"] in ("value", "sum", "difference", "range") \
                and round(spec["layout"]["frame"][0]) not in spec["ticks"]:
            traj = rollout(task, TEACHER, sandbox)
            if traj.style == "measure" and verify_trajectory(traj, 6, sandbox).kept:
                return traj
    raise AssertionError("no measure trace of an unlabelled bar chart")


def _problem(traj: Trajectory) -> str | None:
    return provenance_problem(traj, FAMILY.printed(traj.task.scene), FAMILY.secrets(traj.task))


def test_a_faithful_chart_trace_passes_every_check(measured: Trajectory,
                                                   sandbox: Sandbox) -> None:
    assert _problem(measured) is None
    assert twin_outcome(measured, FAMILY.twin(measured.task), sandbox).status == "pass"
    assert jitter_outcome(measured, sandbox).status == "pass"


def test_a_typed_palette_colour_is_rejected(measured: Trajectory) -> None:
    rgb = _hex(measured.task.scene.spec["series"][0]["color"])
    traj = _with_code(measured, 0, f"colour = {rgb}  # the bars\nprint(colour)")
    assert "palette colour" in (_problem(traj) or "")


def test_an_unprinted_series_name_is_rejected(measured: Trajectory) -> None:
    name = measured.task.scene.spec["series"][0]["name"]
    traj = _with_code(measured, 0, f"vals = {{{name!r}: {{}}}}\nprint(vals)")
    assert "not printed" in (_problem(traj) or "")


def test_an_exact_frame_coordinate_or_unlabelled_value_is_rejected(
        measured: Trajectory) -> None:
    spec = measured.task.scene.spec
    left = round(spec["layout"]["frame"][0])
    printed = {float(t) for t in spec["ticks"]}
    value = next(v for v in spec["series"][0]["values"] if float(v) not in printed)
    for code in (f"left = {left}\nprint(left)", f"print({value})"):
        assert "fact of the scene" in (_problem(_with_code(measured, 0, code)) or ""), code


def test_code_that_prints_a_remembered_answer_fails_the_twin(measured: Trajectory,
                                                              sandbox: Sandbox) -> None:
    last = max(i for i, t in enumerate(measured.turns) if t.step.code)
    told = _with_code(measured, last, f"print({measured.task.answer})")
    told.turns[last] = dataclasses.replace(told.turns[last], result=dataclasses.replace(
        measured.turns[last].result, stdout=f"{measured.task.answer}\n"))
    assert twin_outcome(told, FAMILY.twin(told.task), sandbox).status == "fail"


# ---------------------------------------------------------------------------------------------
# scripted traces with every check on


def test_scripted_chart_traces_pass_the_grounding_checks_and_recover(sandbox: Sandbox) -> None:
    verdicts: Counter[str] = Counter()
    twins: Counter[str] = Counter()
    recovered = 0
    for task in [t for s in SCENES[:24] for t in pose(s, 2)]:
        traj = rollout(task, TEACHER, sandbox)
        verdict = verify_trajectory(traj, 6, sandbox)
        verdicts[verdict.reason] += 1
        if verdict.grounding is not None:
            twins[verdict.grounding.twin.status] += 1
        codes = [t.step.code for t in traj.turns if t.step.code]
        plan = TEACHER._for(task)._plan(task, traj.style)  # type: ignore[attr-defined]
        recovered += verdict.kept and len(codes) > len(plan.cells)
        if task.scene.kind != "pie" and len(task.scene.spec["series"]) == 1:
            hidden = task.scene.spec["series"][0]["name"]
            assert all(hidden not in c for c in codes), (hidden, codes)
    assert verdicts["verified"] >= 0.9 * sum(verdicts.values()), verdicts
    assert twins["pass"] >= 10 and twins["fail"] == 0, twins
    assert recovered >= 2


def test_a_zoom_that_cut_labels_off_is_redone_wider(sandbox: Sandbox) -> None:
    for task in TASKS:
        if TEACHER.style(task)[0] != "zoom_read":
            continue
        traj = rollout(task, TEACHER, sandbox)
        crops = [t for t in traj.turns if t.step.code and "crop:" in (t.result.stdout if
                                                                      t.result else "")]
        if len(crops) < 2:
            continue
        assert verify_trajectory(traj, 6, sandbox).kept
        # The retry shows more of the chart than the missed crop did.
        sizes = []
        for turn in crops:
            with Image.open(io.BytesIO(turn.result.images[0])) as im:  # type: ignore[union-attr]
                sizes.append(im.size[0] * im.size[1])
        assert sizes[-1] > sizes[0]
        return
    raise AssertionError("no zoom_read trace redid a crop")
