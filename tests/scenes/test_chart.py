"""Chart scenes: kinds, determinism, and answers that follow from the spec."""

from __future__ import annotations

import io
from collections import Counter

import pytest
from PIL import Image

from datagen.errors import UsageError
from datagen.scenes.chart import KIND_BY_NAME, KINDS, make_scene, pose, render_chart
from datagen.scenes.registry import get_family

SCENES = [make_scene(i, 7) for i in range(40)]


def test_all_seven_kinds_appear_and_images_decode() -> None:
    kinds = Counter(s.kind for s in SCENES)
    assert set(kinds) == set(KINDS)
    for s in SCENES[:10]:
        with Image.open(io.BytesIO(s.image)) as im:
            assert im.size == tuple(s.spec["size"])


def test_same_index_and_seed_give_identical_bytes_and_other_seeds_differ() -> None:
    again = make_scene(3, 7)
    assert again.image == SCENES[3].image and again.spec == SCENES[3].spec
    assert make_scene(3, 8).image != SCENES[3].image


def test_render_reflects_the_spec() -> None:
    """Changing one value in the spec changes the picture: the image is drawn from the data."""
    scene = next(s for s in SCENES if s.kind == "vbar")
    spec = {**scene.spec, "series": [dict(scene.spec["series"][0])]}
    spec["series"][0]["values"] = [v + spec["step"] for v in spec["series"][0]["values"]]
    assert render_chart(spec) != scene.image


def test_at_least_twelve_question_types_are_posed() -> None:
    types = {t.task_type.split(".")[-1] for s in SCENES for t in pose(s, 20)}
    assert len(types) >= 12, types


def test_gold_answers_follow_from_the_data() -> None:
    for scene in SCENES:
        table = {c: v for c, v in zip(scene.spec["categories"],
                                      scene.spec["series"][0]["values"], strict=False)} \
            if scene.kind != "scatter" else {}
        for task in pose(scene, 20):
            op, f = task.facts["op"], task.facts
            if op == "legend":
                assert task.answer in scene.spec["categories"] + [
                    s["name"] for s in scene.spec["series"]]
            if f.get("series") is not None or f.get("total") or scene.kind == "scatter":
                continue  # single-series checks below
            if op == "value":
                assert float(task.answer) == table[f["a"]]
            elif op == "difference":
                assert float(task.answer) == table[f["a"]] - table[f["b"]] > 0
            elif op == "sum":
                assert float(task.answer) == sum(table.values())
            elif op == "max":
                assert task.answer == max(table, key=table.get)
            elif op == "count_above":
                assert int(task.answer) == sum(v > f["threshold"] for v in table.values())
            elif op == "choice":
                ranked = sorted(table, key=table.get, reverse=True)
                assert f["options"][task.answer] == ranked[1]
                assert len(set(f["options"].values())) == len(f["options"])


def test_phrasings_vary_and_questions_are_distinct_per_scene() -> None:
    tasks = [t for s in SCENES for t in pose(s, 3)]
    for s in SCENES:
        types = [t.task_type for t in pose(s, 3)]
        assert len(types) == len(set(types))
    values = {t.question.split(" ")[0] for t in tasks if t.task_type.endswith(".value")}
    assert len(values) >= 3, values


def test_pie_asks_no_trivia_and_scatter_has_its_own_types() -> None:
    assert "sum" not in KIND_BY_NAME["pie"].questions
    assert set(KIND_BY_NAME["scatter"].questions) >= {"scatter_count", "scatter_count_above"}


def test_unknown_family_is_a_usage_error() -> None:
    with pytest.raises(UsageError, match="unknown family 'maps'"):
        get_family("maps")
