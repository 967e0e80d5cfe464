"""Scripted visual-search traces look at the pixels: they verify with the grounding checks on,
their code finds nothing on a blank image, and traces that type what only the renderer knows
are rejected for the right reason."""

from __future__ import annotations

import io
import re
from collections import Counter
from collections.abc import Callable, Sequence

from PIL import Image

from datagen.check.grounding import code_answer, executed_cells, rerun
from datagen.check.verify import claimed_regions, verify_trajectory
from datagen.pipeline.rollout import rollout
from datagen.records import Step, Task, Trajectory, Turn
from datagen.sandbox import Sandbox
from datagen.scenes.search import COLORS, make_scene, pose
from datagen.teachers.scripted import ScriptedTeacher

TEACHER = ScriptedTeacher()
SCENES = [make_scene(i, 8, {"max_side": 1536}) for i in range(10)]
TASKS = [t for s in SCENES for t in pose(s, 6)]
_CACHE: dict[str, Trajectory] = {}


def _traj(task: Task, sandbox: Sandbox) -> Trajectory:
    if task.id not in _CACHE:
        _CACHE[task.id] = rollout(task, TEACHER, sandbox)
    return _CACHE[task.id]


def _first(op: str, answer: str | None = None) -> Task:
    return next(t for t in TASKS if t.facts["op"] == op and answer in (None, t.answer))


class EditingTeacher(ScriptedTeacher):
    """The scripted teacher with one cell's code rewritten by ``edit`` (for bad traces)."""

    def __init__(self, edit: Callable[[Task, str], str]) -> None:
        super().__init__()
        self.edit = edit

    def step(self, task: Task, history: Sequence[Turn]) -> Step:
        step = super().step(task, history)
        if step.code:
            step.code = self.edit(task, step.code)
        return step


def test_traces_verify_with_provenance_twin_and_jitter(sandbox: Sandbox) -> None:
    verdicts: Counter[str] = Counter()
    twins: Counter[str] = Counter()
    for task in TASKS[:36]:
        traj = _traj(task, sandbox)
        verdict = verify_trajectory(traj, 6, sandbox)
        verdicts[verdict.reason] += 1
        if verdict.kept and task.facts["op"] in ("count", "exists", "position", "relation"):
            assert verdict.grounding is not None
            twins[verdict.grounding.twin.status] += 1
            assert verdict.grounding.jitter.status == "pass"
        if verdict.kept and task.grounding:
            assert claimed_regions(traj)
    assert verdicts["verified"] >= 0.8 * sum(verdicts.values()), verdicts
    assert twins["pass"] >= 0.9 * sum(twins.values()) and twins["pass"] >= 5, twins


def test_code_never_holds_an_exact_box_or_a_palette_colour(sandbox: Sandbox) -> None:
    for task in TASKS[:24]:
        code = "\n".join(executed_cells(_traj(task, sandbox)))
        numbers = [int(v) for v in re.findall(r"(?<![\w.])\d+(?![\w.])", code)]
        for obj in task.scene.spec["objects"]:
            box = obj["box"]
            assert not any(numbers[i:i + 4] == box for i in range(len(numbers) - 3)), box
        for rgb in COLORS.values():
            assert str(rgb) not in code


def test_on_a_blank_image_the_code_finds_no_answer(sandbox: Sandbox) -> None:
    for op in ("count", "position", "relation", "exists"):
        task = _first(op, "yes" if op == "exists" else None)
        traj = _traj(task, sandbox)
        assert verify_trajectory(traj, 6).kept, op
        blank = Image.new("RGB", tuple(task.scene.spec["size"]), (200, 190, 180))
        buf = io.BytesIO()
        blank.save(buf, format="JPEG", quality=90)
        said = code_answer(rerun(executed_cells(traj), buf.getvalue(), sandbox))
        gold = task.facts.get("options", {}).get(task.answer, task.answer)
        assert said not in (task.answer, gold), (op, said)
        if op == "count":
            assert said == "0"


def test_a_missed_look_is_noticed_and_recovered(sandbox: Sandbox) -> None:
    recovered = []
    for task in TASKS:
        if task.facts["op"] not in ("attribute", "read_text", "position"):
            continue
        traj = _traj(task, sandbox)
        outs = [t.result.stdout for t in traj.turns if t.result is not None]
        if any("- 0 candidate(s)" in o for o in outs) or any("quarter 1" in o for o in outs):
            recovered.append((task, traj))
        if len(recovered) == 2:
            break
    assert recovered, "no trace in the sample missed"
    for task, traj in recovered:
        assert verify_trajectory(traj, 6, sandbox).kept
        assert traj.final_answer == task.answer


def test_a_hard_coded_box_list_is_rejected_for_provenance(sandbox: Sandbox) -> None:
    def told(task: Task, code: str) -> str:
        if "print(len(" not in code:
            return code
        boxes = [list(b) for b in task.facts["matches"]]
        return code + f"\nboxes = {boxes}\nprint(len(boxes))\n"

    task = _first("count")
    verdict = verify_trajectory(rollout(task, EditingTeacher(told), sandbox), 6, sandbox)
    assert not verdict.kept and verdict.reason == "provenance", verdict
    assert "fact of the scene" in verdict.detail


def test_a_typed_palette_colour_is_rejected_for_provenance(sandbox: Sandbox) -> None:
    def exact(task: Task, code: str) -> str:
        return re.sub(r"(\w+) = (\w+)\(\(\d+, \d+, \d+\)\)",
                      lambda m: f"{m.group(1)} = {m.group(2)}({COLORS[task.facts['color']]})", code)

    task = _first("count")
    verdict = verify_trajectory(rollout(task, EditingTeacher(exact), sandbox), 6, sandbox)
    assert not verdict.kept and verdict.reason == "provenance", verdict
    assert "palette colour" in verdict.detail


def test_an_exact_renderer_coordinate_is_rejected_for_provenance(sandbox: Sandbox) -> None:
    def exact(task: Task, code: str) -> str:
        box = tuple(task.facts["target"]["box"])
        # A look's estimate (``x0, y0, x1, y1 = (...)``, however the trace spells the names)
        # replaced by the renderer's box.
        return re.sub(r"(\w+0, \w+0, \w+1, \w+1) = \(\d+, \d+, \d+, \d+\)",
                      lambda m: f"{m.group(1)} = {box}", code)

    task = _first("read_text")
    verdict = verify_trajectory(rollout(task, EditingTeacher(exact), sandbox), 6, sandbox)
    assert not verdict.kept and verdict.reason == "provenance", verdict


def test_a_region_claimed_off_the_target_is_ungrounded(sandbox: Sandbox) -> None:
    def shifted(task: Task, code: str) -> str:
        return re.sub(r'print\("region:", (\w+)\)',
                      lambda m: f"{m.group(1)} = tuple(v + 300 for v in {m.group(1)})\n"
                                f'print("region:", {m.group(1)})', code)

    class Stubborn(EditingTeacher):
        """Answers from memory even when its zoom shows something else."""

        def step(self, task: Task, history: Sequence[Turn]) -> Step:
            step = super().step(task, history)
            return step if step.code or step.answer else Step(think="", answer=task.answer)

    task = _first("read_text")
    traj = rollout(task, Stubborn(shifted), sandbox)
    verdict = verify_trajectory(traj, 6)
    assert traj.final_answer == task.answer  # the right answer ...
    assert not verdict.kept and verdict.reason == "ungrounded", verdict  # ... off the wrong crop


def test_a_read_trace_crops_from_looks_and_widens_a_zoom_that_cut_it_off(sandbox: Sandbox
                                                                          ) -> None:
    """Reading needs no finder: the cells crop where the looks were, and a claimed region
    that cut the thing off is followed by a wider one; the trace is kept on the last claim."""
    widened = []
    for task in TASKS:
        if task.facts["op"] not in ("attribute", "read_text"):
            continue
        traj = _traj(task, sandbox)
        cells = executed_cells(traj)
        assert not any("def " in c for c in cells), "a read trace defined a finder"
        claims = [t for t in traj.turns if t.result is not None and "region:" in t.result.stdout]
        if len(claims) >= 2:
            widened.append((task, traj, claims))
    kept = 0
    for task, traj, claims in widened:
        box = task.facts["target"]["box"]
        first = re.search(r"region: \((\d+), (\d+), (\d+), (\d+)\)", claims[0].result.stdout)
        region = [int(v) for v in first.groups()]
        assert not (region[0] <= box[0] and region[1] <= box[1] and box[2] <= region[2]
                    and box[3] <= region[3]), "the first zoom held it all"
        if verify_trajectory(traj, 6, sandbox).kept:  # a second miss is rejected, rightly
            kept += 1
            assert traj.final_answer == task.answer
    assert kept, "no read trace in the sample widened its zoom and recovered"
