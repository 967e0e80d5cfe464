"""One check per ambiguity rule: each rejects the ambiguous case it names and passes the
questions the generators pose (they are unambiguous by construction)."""

from __future__ import annotations

import copy
import dataclasses

from datagen.records import Task
from datagen.scenes import geometry, search
from datagen.scenes.base import failed_rules
from tests.support.posed import posed_tasks


def _first(family: str, op: str, answer: str | None = None) -> Task:
    return next(t for t in posed_tasks(family, 300) if t.facts["op"] == op
                and (answer is None or t.answer == answer))


def _with(task: Task, objects: list[dict] | None = None, facts: dict | None = None,
          spec: dict | None = None) -> Task:
    """``task`` about a changed scene (objects added, spec keys set) or with changed facts."""
    new_spec = copy.deepcopy(task.scene.spec)
    new_spec.update(spec or {})
    if objects:
        new_spec["objects"] = [*new_spec["objects"], *objects]
    scene = dataclasses.replace(task.scene, spec=new_spec)
    return dataclasses.replace(task, scene=scene, facts={**task.facts, **(facts or {})})


def _search_fails(task: Task) -> list[str]:
    return failed_rules(search.RULES, task)


def _geometry_fails(task: Task) -> list[str]:
    return failed_rules(geometry.RULES, task)


def test_posed_questions_pass_every_rule() -> None:
    for family, rules in (("search", search.RULES), ("geometry", geometry.RULES)):
        tasks = posed_tasks(family, 300)
        assert tasks and not [t.id for t in tasks if failed_rules(rules, t)]


def test_midline_rejects_a_target_on_a_midline() -> None:
    task = _first("search", "position")
    assert "midline" not in _search_fails(task)
    w, h = task.scene.spec["size"]
    side = task.facts["target"]["box"][2] - task.facts["target"]["box"][0]
    on = {**task.facts["target"], "box": [w // 2 - side // 3, 10, w // 2 - side // 3 + side,
                                          10 + side]}
    assert "midline" in _search_fails(_with(task, facts={"target": on}))
    near = {**on, "box": [w // 2 - side - side // 4, 10, w // 2 - side // 4, 10 + side]}
    assert "midline" in _search_fails(_with(task, facts={"target": near}))  # within half a side


def test_near_twin_colour_rejects_a_count_beside_its_twin() -> None:
    task = next(t for t in posed_tasks("search", 300) if t.facts["op"] == "count"
                and t.facts["color"] in search.NEAR_TWINS)
    assert "near_twin_colour" not in _search_fails(task)
    twin = sorted(search.NEAR_TWINS[task.facts["color"]])[0]
    other = {"role": "distractor", "shape": task.facts["shape"], "color": twin,
             "pattern": "striped", "text": None, "box": [0, 0, 30, 30]}
    assert "near_twin_colour" in _search_fails(_with(task, objects=[other]))
    # Another shape in the twin colour is no confusion.
    other = {**other, "shape": next(s for s in search.SHAPES if s != task.facts["shape"])}
    assert "near_twin_colour" not in _search_fails(_with(task, objects=[other]))


def test_near_twin_colour_rejects_an_option_beside_the_answer() -> None:
    task = next(t for t in posed_tasks("search", 300) if t.facts["op"] == "attribute"
                and t.facts["attr"] == "color" and t.facts["target"]["color"] in search.NEAR_TWINS)
    assert "near_twin_colour" not in _search_fails(task)
    options = dict(task.facts["options"])
    wrong = next(k for k in options if k != task.answer)
    options[wrong] = sorted(search.NEAR_TWINS[task.facts["target"]["color"]])[0]
    assert "near_twin_colour" in _search_fails(_with(task, facts={"options": options}))


def test_lookalike_icon_rejects_a_triangle_count_beside_a_tree_of_its_colour() -> None:
    task = next(t for t in posed_tasks("search", 300) if t.facts["op"] in ("count", "exists")
                and t.facts["shape"] == "triangle")
    assert "lookalike_icon" not in _search_fails(task)
    tree = {"role": "distractor", "shape": "tree", "color": task.facts["color"],
            "pattern": "solid", "text": None, "box": [0, 0, 30, 30]}
    assert "lookalike_icon" in _search_fails(_with(task, objects=[tree]))


def test_relation_axis_rejects_two_things_on_a_diagonal() -> None:
    task = _first("search", "relation")
    assert "relation_axis" not in _search_fails(task)
    a, b = task.facts["target"], task.facts["other"]
    diagonal = {**a, "box": [b["box"][0] + 100, b["box"][1] + 90, b["box"][2] + 100,
                             b["box"][3] + 90]}
    assert "relation_axis" in _search_fails(_with(task, facts={"target": diagonal}))


def test_label_collision_rejects_a_label_on_a_line_or_a_label() -> None:
    task = _first("geometry", "hypotenuse")
    assert _geometry_fails(task) == []
    spec = task.scene.spec
    a, b = (spec["pixels"][n] for n in spec["segments"][0])
    mid = ((a[0] + b[0]) / 2, (a[1] + b[1]) / 2)
    on_line = [mid[0] - 8, mid[1] - 8, mid[0] + 8, mid[1] + 8]
    boxes = [*spec["label_boxes"], on_line]
    assert "label_collision" in _geometry_fails(_with(task, spec={"label_boxes": boxes}))
    over = [*spec["label_boxes"], list(spec["label_boxes"][0])]  # a "3" printed over "B"
    assert "label_collision" in _geometry_fails(_with(task, spec={"label_boxes": over}))
    assert geometry.collisions(task.scene.spec) == 0


def test_printed_fraction_rejects_a_side_printed_as_a_fraction() -> None:
    task = _first("geometry", "similar_side")
    assert "printed_fraction" not in _geometry_fails(task)
    assert all("/" not in text for *_, text in task.scene.spec["side_labels"])
    labels = [[*s[:2], "35/2"] if s[2] not in ("?",) and i == 2 else s
              for i, s in enumerate(task.scene.spec["side_labels"])]
    assert "printed_fraction" in _geometry_fails(_with(task, spec={"side_labels": labels}))


def test_similar_triangles_print_half_units_as_decimals() -> None:
    printed = {s[2] for t in posed_tasks("geometry", 300) if t.facts["op"] == "similar_side"
               for s in t.scene.spec["side_labels"]}
    assert any("." in p for p in printed) and not any("/" in p for p in printed)
