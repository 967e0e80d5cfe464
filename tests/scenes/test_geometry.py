"""Geometry scenes: every construction renders, and every gold answer matches an independent
numeric recomputation from the figure's coordinates."""

from __future__ import annotations

import io
import math
from collections import Counter

import pytest
from PIL import Image

from datagen.check.matcher import match, parse_expression
from datagen.scenes.geometry import (
    CONSTRUCTIONS,
    COUNTED,
    FAMILY,
    QUESTIONS,
    RELATED,
    labels,
    make_scene,
    pose,
)

SCENES = [make_scene(i, 5) for i in range(150)]


def _angle(p: list[float], v: list[float], q: list[float]) -> float:
    a = math.atan2(p[1] - v[1], p[0] - v[0]) - math.atan2(q[1] - v[1], q[0] - v[0])
    a = abs(math.degrees(a)) % 360
    return 360 - a if a > 180 else a


def _area(*pts: list[float]) -> float:
    return abs(sum(p[0] * q[1] - q[0] * p[1] for p, q in zip(pts, pts[1:] + pts[:1],
                                                              strict=True))) / 2


def _recompute(spec: dict, op: str) -> float:
    """The answer from the coordinates alone, not from the formulas that made the gold."""
    P = spec["points"]
    d = math.dist
    g = spec["given"]
    if spec["construction"] == "coordinate":
        P = {k: [float(x) for x in v] for k, v in g.items()}
    table = {
        "hypotenuse": lambda: d(P["A"], P["B"]),
        "right_area": lambda: _area(P["A"], P["B"], P["C"]),
        "tan_ratio": lambda: d(P["B"], P["C"]) / d(P["C"], P["A"]),
        "right_perimeter": lambda: d(P["A"], P["B"]) + d(P["B"], P["C"]) + d(P["C"], P["A"]),
        "missing_leg": lambda: d(P["A"], P["C"]),
        "sin_ratio": lambda: d(P["B"], P["C"]) / d(P["A"], P["B"]),
        "angle_sum": lambda: _angle(P["A"], P["C"], P["B"]),
        "exterior_angle": lambda: _angle(P["A"], P["C"], P["D"]),
        "law_of_cosines": lambda: d(P["B"], P["C"]),
        "heron_area": lambda: _area(P["A"], P["B"], P["C"]),
        "triangle_perimeter": lambda: d(P["A"], P["B"]) + d(P["B"], P["C"]) + d(P["C"], P["A"]),
        "base_angle": lambda: _angle(P["A"], P["B"], P["C"]),
        "equilateral_area": lambda: _area(P["A"], P["B"], P["C"]),
        "equilateral_height": lambda: 2 * _area(P["A"], P["B"], P["C"]) / d(P["B"], P["C"]),
        "circle_area": lambda: math.pi * d(P["O"], P["P"]) ** 2,
        "circle_area_decimal": lambda: math.pi * d(P["O"], P["P"]) ** 2,
        "circumference": lambda: 2 * math.pi * d(P["O"], P["P"]),
        "inscribed_angle": lambda: _angle(P["A"], P["C"], P["B"]),
        "chord_length": lambda: d(P["A"], P["B"]),
        "arc_length": lambda: d(P["O"], P["A"]) * math.radians(_angle(P["A"], P["O"], P["B"])),
        "tangent_length": lambda: d(P["P"], P["T"]),
        "interior_angle": lambda: _angle(P["A"], P["B"], P["C"]),
        "exterior_angle_polygon": lambda: 180 - _angle(P["A"], P["B"], P["C"]),
        "interior_sum": lambda: g["n"] * _angle(P["A"], P["B"], P["C"]),
        "polygon_perimeter": lambda: g["n"] * d(P["A"], P["B"]),
        "hexagon_area": lambda: _area(*[P[k] for k in "ABCDEF"]),
        "shaded_area": lambda: d(P["A"], P["B"]) * d(P["B"], P["C"])
        - math.pi * (d(P["B"], P["C"]) / 2) ** 2 / 2,
        "rectangle_diagonal": lambda: d(P["A"], P["C"]),
        "alternate_angle": lambda: _angle(P["R2"], P["Q"], P["U"]),
        "corresponding_angle": lambda: _angle(P["L2"], P["Q"], P["V"]),
        "co_interior_angle": lambda: _angle(P["L2"], P["Q"], P["U"]),
        "coord_distance": lambda: d(P["A"], P["B"]),
        "midpoint_x": lambda: (P["A"][0] + P["B"][0]) / 2,
        "slope": lambda: (P["B"][1] - P["A"][1]) / (P["B"][0] - P["A"][0]),
        "coord_area": lambda: _area(P["A"], P["B"], P["C"]),
        "scale_factor": lambda: d(P["D"], P["E"]) / d(P["A"], P["B"]),
        "similar_side": lambda: d(P["E"], P["F"]),
    }
    return table[op]()


def test_every_construction_renders_and_decodes() -> None:
    kinds = Counter(s.kind for s in SCENES)
    assert set(kinds) == set(CONSTRUCTIONS)
    for s in SCENES[:20]:
        with Image.open(io.BytesIO(s.image)) as im:
            assert im.size == tuple(s.spec["size"])
    assert make_scene(3, 5).image == SCENES[3].image


def test_gold_answers_equal_an_independent_recomputation() -> None:
    checked: Counter[str] = Counter()
    for scene in SCENES:
        for task in pose(scene, 10):
            op = task.facts["op"]
            if op == "parallel_choice":
                value = task.facts["options"][task.answer].rstrip("°")
                assert float(value) == pytest.approx(
                    _recompute(scene.spec, f"{scene.spec['mode']}_angle"), abs=1e-6)
                continue
            gold = parse_expression(task.answer)
            assert gold is not None, task.answer
            tol = 0.006 if task.answer_type == "number" else 1e-6
            assert float(gold) == pytest.approx(_recompute(scene.spec, op), rel=tol), (
                task.task_type, task.answer)
            checked[op] += 1
    assert len(checked) >= 15, checked


def test_at_least_fifteen_question_types_and_all_answer_types() -> None:
    tasks = [t for s in SCENES for t in pose(s, 10)]
    assert len({t.facts["op"] for t in tasks}) >= 15
    assert {t.answer_type for t in tasks} == {"expression", "number", "integer", "choice"}
    for t in tasks:
        if t.answer_type == "choice":
            opts = t.facts["options"]
            assert len(set(opts.values())) == len(opts) >= 3  # distractors differ from the answer


def test_labels_are_inside_the_canvas_and_do_not_overlap() -> None:
    for s in SCENES:
        w, h = s.spec["size"]
        boxes = s.spec["label_boxes"]
        for i, (x0, y0, x1, y1) in enumerate(boxes):
            assert 0 <= x0 < x1 <= w and 0 <= y0 < y1 <= h, (s.kind, boxes[i])
            for a0, b0, a1, b1 in boxes[i + 1:]:
                assert not (x0 < a1 and a0 < x1 and y0 < b1 and b0 < y1), (s.kind, s.seed)
        pts = [s.spec["pixels"][k] for k in s.spec["labelled"]]
        assert all(0 <= x <= w and 0 <= y <= h for x, y in pts)
        assert all(math.dist(p, q) > 12 for i, p in enumerate(pts) for q in pts[i + 1:])


@pytest.mark.parametrize(("pred", "gold", "ok"), [
    ("5*sqrt(3)", "5*sqrt(3)", True),
    ("√75", "5*sqrt(3)", True),
    ("5√3", "5*sqrt(3)", True),
    ("\\frac{25\\pi}{2}", "25*pi/2", True),
    ("12.5π", "25*pi/2", True),
    ("100 - 12.5*pi", "100 - 25*pi/2", True),
    ("6/8", "3/4", True),
    ("5*sqrt(2)", "5*sqrt(3)", False),
    ("8.66", "5*sqrt(3)", False),
    ("25*pi", "25*pi/2", False),
    ("x + 1", "1", False),
    ("__import__('os').system('true')", "0", False),
    ("9**9**9**9", "1", False),
])
def test_expression_matcher(pred: str, gold: str, ok: bool) -> None:
    assert match(pred, gold, "expression") is ok


def test_decimal_question_accepts_an_exact_form_within_tolerance() -> None:
    assert match("25*pi", "78.54", "number", 0.01)
    assert not match("25*pi/2", "78.54", "number", 0.01)


# ---------------------------------------------------------------------------------------------
# Grounding: printed text, secrets, twins

TASKS = [t for s in SCENES for t in pose(s, 10)]


def test_printed_text_is_what_the_figure_labels_and_never_the_number_of_sides() -> None:
    for task in TASKS:
        spec, shown = task.scene.spec, FAMILY.printed(task.scene)
        assert {t for *_, t in spec["side_labels"]} <= shown
        assert {t for *_, t in spec["angle_labels"]} <= shown
        if spec["construction"] == "polygon":
            n = spec["given"]["n"]
            assert str(n) not in shown or str(n) == str(spec["given"]["s"])
            assert ("".join(spec["labelled"]) in shown) == (n <= 8)


def test_secrets_hold_pixels_unmarked_counts_and_unnamed_relations() -> None:
    for task in TASKS:
        spec, sec = task.scene.spec, FAMILY.secrets(task)
        for x, y in spec["pixels"].values():
            for v in (x, y):
                if round(v) not in (90, 180, 270, 360, 100, 127, 128, 150, 200, 250, 255, 256):
                    assert round(v, 2) in sec.numbers and float(round(v)) in sec.numbers
        assert (20, 20, 20) in sec.colours and (40, 90, 200) in sec.colours
        op = task.facts["op"]
        if op in COUNTED:
            assert float(spec["given"]["n"]) in sec.numbers
            assert str(spec["given"]["n"]) in sec.strings
        if op in RELATED:
            assert {"alternate", "corresponding", "co_interior"} <= sec.strings


def test_every_question_type_has_a_twin_with_another_answer() -> None:
    seen: set[str] = set()
    for task in TASKS:
        op = task.facts["op"]
        if op in seen:
            continue
        tw = FAMILY.twin(task)
        assert tw is not None, op
        assert tw.answer != task.answer, op
        assert tw.scene.spec["size"] == task.scene.spec["size"]
        with Image.open(io.BytesIO(tw.scene.image)) as im:
            assert im.size == tuple(task.scene.spec["size"])
        assert match(tw.answer, tw.answer, task.answer_type)  # a well-formed gold answer
        seen.add(op)
    assert seen == set(QUESTIONS)


def test_measured_twins_change_only_what_the_code_must_measure() -> None:
    for task in TASKS:
        op, spec = task.facts["op"], task.scene.spec
        if op not in COUNTED and op not in RELATED:
            continue
        tw = FAMILY.twin(task)
        assert tw is not None
        new = tw.scene.spec
        if op in COUNTED:  # another number of sides, the same marked side
            assert new["given"]["n"] != spec["given"]["n"]
            assert new["side_labels"][0][2] == spec["side_labels"][0][2]
            assert str(spec["given"]["s"]) not in tw.changed_text
            # Only the letters read around the polygon count as changed text, never a lone
            # vertex letter (code names points whatever their number).
            letters = "".join(spec["labelled"])
            assert tw.changed_text == ({letters} if letters else set()), tw.changed_text
        elif op == "parallel_choice" and f"{180 - int(task.facts['options'][task.answer][:-1])}°" \
                not in task.facts["options"].values():
            # The other of x and 180 - x is not listed (half the time, so that listing both
            # does not give the answer away): the twin prints another given angle whose
            # answer is listed, and names the old one as changed text.
            assert new["mode"] == spec["mode"] and new["given"] != spec["given"]
            assert f"{spec['given']['x']}°" in tw.changed_text
            assert task.facts["options"][tw.answer] != task.facts["options"][task.answer]
        else:  # the same figure and marks; "?" sits elsewhere
            assert new["given"] == spec["given"] and tw.changed_text == frozenset()
            assert new["pixels"]["P"] == spec["pixels"]["P"]
            assert new["pixels"]["Q"] == spec["pixels"]["Q"]
            assert new["mode"] != spec["mode"]


def test_marked_twins_name_the_marked_numbers_they_change() -> None:
    for task in TASKS[:120]:
        op = task.facts["op"]
        if op in COUNTED or op in RELATED:
            continue
        tw = FAMILY.twin(task)
        assert tw is not None and tw.changed_text, op
        old = set(labels(task.scene.spec))
        assert tw.changed_text & old


def test_twins_are_deterministic() -> None:
    task = TASKS[7]
    a, b = FAMILY.twin(task), FAMILY.twin(task)
    assert a is not None and b is not None
    assert a.scene.image == b.scene.image and a.answer == b.answer
