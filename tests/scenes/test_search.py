"""Visual-search scenes: exact boxes, unique targets, answers recomputed from the spec."""

from __future__ import annotations

import io
from collections import Counter

import numpy as np
from PIL import Image

from datagen.records import Task
from datagen.scenes.search import (
    COLORS,
    SHAPES,
    make_scene,
    make_spec,
    pose,
    printed,
    render_scene,
    secrets,
    twin,
)

SCENES = [make_scene(i, 4, {"max_side": 2048}) for i in range(24)]


def _matches(objs: list[dict], **attrs: str) -> list[dict]:
    return [o for o in objs if all(o.get(k) == v for k, v in attrs.items())]


def test_scenes_decode_at_their_size_and_boxes_are_inside_and_apart() -> None:
    for s in SCENES[:8]:
        with Image.open(io.BytesIO(s.image)) as im:
            assert im.format == "JPEG" and list(im.size) == s.spec["size"]
    for s in SCENES:
        w, h = s.spec["size"]
        boxes = [o["box"] for o in s.spec["objects"]]
        assert len(boxes) >= 20
        for i, (x0, y0, x1, y1) in enumerate(boxes):
            assert 0 <= x0 < x1 <= w and 0 <= y0 < y1 <= h
            for a0, b0, a1, b1 in boxes[i + 1:]:  # nothing overlaps, so nothing is occluded
                assert x1 <= a0 or a1 <= x0 or y1 <= b0 or b1 <= y0


def test_targets_are_unique_by_their_description() -> None:
    for s in SCENES:
        objs = s.spec["objects"]
        targets = _matches(objs, role="target")
        assert 1 <= len(targets) <= 3
        for t in targets:
            # Any two of shape / colour / pattern (with the shape) name one object only.
            assert len(_matches(objs, shape=t["shape"], color=t["color"])) == 1
            assert len(_matches(objs, shape=t["shape"], pattern=t["pattern"])) == 1
            assert len(_matches(objs, text=t["text"])) == 1


def test_gold_answers_recomputed_from_the_spec() -> None:
    seen: Counter[str] = Counter()
    for s in SCENES:
        objs, (w, h) = s.spec["objects"], s.spec["size"]
        for task in pose(s, 10):
            f, op = task.facts, task.facts["op"]
            seen[op] += 1
            if op == "count":
                n = len([o for o in objs if o["color"] == f["color"] and o["shape"] == f["shape"]])
                assert int(task.answer) == n == len(task.grounding)
            elif op == "attribute":
                assert f["options"][task.answer] == f["target"][f["attr"]]
            elif op == "read_text":
                assert task.answer == f["target"]["text"]
            elif op == "position":
                x0, y0, x1, y1 = f["target"]["box"]
                vert = "top" if (y0 + y1) / 2 < h / 2 else "bottom"
                horiz = "left" if (x0 + x1) / 2 < w / 2 else "right"
                assert f["options"][task.answer] == f"{vert}-{horiz}"
            elif op == "exists":
                found = _matches(objs, color=f["color"], shape=f["shape"], pattern=f["pattern"])
                assert task.answer == ("yes" if found else "no")
            elif op == "relation":
                a, b = f["target"]["box"], f["other"]["box"]
                word = f["options"][task.answer]
                ax, bx = (a[0] + a[2]) / 2, (b[0] + b[2]) / 2
                ay, by = (a[1] + a[3]) / 2, (b[1] + b[3]) / 2
                assert {"left": ax < bx, "right": ax > bx, "above": ay < by,
                        "below": ay > by}[word]
    assert set(seen) == {"attribute", "read_text", "position", "relation", "count", "exists"}


def test_target_pixels_are_where_the_spec_says() -> None:
    scene = SCENES[0]
    img = np.asarray(Image.open(io.BytesIO(scene.image)).convert("RGB")).astype(int)
    for t in [o for o in scene.spec["objects"] if o["role"] == "target"]:
        x0, y0, x1, y1 = t["box"]
        patch = img[y0:y1, x0:x1]
        near = (np.abs(patch - COLORS[t["color"]]).sum(axis=2) < 90).mean()
        assert near > 0.02, (t, near)  # its colour is really there (small, with a number on it)


def test_canvas_sizes_and_a_4096_scene() -> None:
    rng = np.random.default_rng(0)
    sides = {max(make_spec(rng, 4096)["size"]) for _ in range(30)}
    assert min(sides) >= 1024 and max(sides) == 4096
    rng = np.random.default_rng(1)
    spec = make_spec(rng, 4096)
    while max(spec["size"]) < 4096:
        spec = make_spec(rng, 4096)
    img = render_scene(spec)
    assert max(img.size) == 4096 and len(spec["objects"]) >= 50
    assert all(o["shape"] in SHAPES for o in spec["objects"] if o["role"] == "target")


# ---------------------------------------------------------------------------------------------
# What verification needs: printed text, secrets, twins


def _answer_from_spec(task: Task, spec: dict) -> str:
    """A question's gold answer recomputed from a (twin's) spec alone."""
    f, objs = task.facts, spec["objects"]
    op = f["op"]
    if op == "count":
        return str(len(_matches(objs, color=f["color"], shape=f["shape"])))
    if op == "exists":
        found = _matches(objs, color=f["color"], shape=f["shape"], pattern=f["pattern"])
        return "yes" if found else "no"
    if op == "position":
        w, h = spec["size"]
        t = next(o for o in objs if o.get("text") == f["target"]["text"] and o["role"] == "target")
        x0, y0, x1, y1 = t["box"]
        quad = f"{'top' if (y0 + y1) / 2 < h / 2 else 'bottom'}-" \
               f"{'left' if (x0 + x1) / 2 < w / 2 else 'right'}"
        return next(k for k, v in f["options"].items() if v == quad)
    a = next(o for o in objs if o.get("text") == f["target"]["text"] and o["role"] == "target")
    b = next(o for o in objs if o.get("text") == f["other"]["text"] and o["role"] == "target")
    ax, bx = (a["box"][0] + a["box"][2]) / 2, (b["box"][0] + b["box"][2]) / 2
    ay, by = (a["box"][1] + a["box"][3]) / 2, (b["box"][1] + b["box"][3]) / 2
    # The options name all four directions: the answer lies along the axis that dominates.
    word = ("left" if ax < bx else "right") if abs(ax - bx) >= abs(ay - by) \
        else ("above" if ay < by else "below")
    return next(k for k, v in f["options"].items() if v == word)


def test_printed_text_and_secrets() -> None:
    # Not every scene has a count question (the count asked is drawn first): the first that does.
    scene, task = next((s, t) for s in SCENES for t in pose(s, 10) if t.facts["op"] == "count")
    targets = _matches(scene.spec["objects"], role="target")
    assert {t["text"] for t in targets} <= printed(scene)
    sec = secrets(task)
    for box in [t["box"] for t in targets] + task.facts["matches"]:
        assert {float(v) for v in box} <= sec.numbers  # exact boxes may not be typed
    assert set(COLORS.values()) == set(sec.colours)
    n = len(task.facts["matches"])
    assert (float(n) in sec.numbers) == (n > 4)  # a glance may count up to four


def test_twins_change_the_answer_of_every_code_answered_type() -> None:
    seen: Counter[str] = Counter()
    for scene in SCENES[:12]:
        for task in pose(scene, 10):
            tw = twin(task)
            op = task.facts["op"]
            if op in ("attribute", "read_text"):
                assert tw is None  # read off a view: no code answer to test
                continue
            if tw is None:
                continue
            seen[op if op != "exists" else f"exists-{task.answer}"] += 1
            assert tw.answer != task.answer
            assert _answer_from_spec(task, tw.scene.spec) == tw.answer
            with Image.open(io.BytesIO(tw.scene.image)) as im:
                assert list(im.size) == tw.scene.spec["size"]
            if op == "position":  # the target stays where the looks saw it
                t = task.facts["target"]
                assert any(o["box"] == t["box"] for o in tw.scene.spec["objects"])
    assert set(seen) == {"count", "exists-yes", "exists-no", "position", "relation"}, seen


def test_a_twin_pastes_the_changed_object_into_the_pixels() -> None:
    # A count of at least one (a count of 0 has no member to copy; its twin adds one too).
    scene, task = next((s, t) for s in SCENES[1:] for t in pose(s, 10)
                       if t.facts["op"] == "count" and t.answer != "0")
    tw = twin(task)
    assert tw is not None
    new = [o for o in tw.scene.spec["objects"] if o not in scene.spec["objects"]]
    assert len(new) == 1
    x0, y0, x1, y1 = new[0]["box"]
    before = np.asarray(Image.open(io.BytesIO(scene.image)).convert("RGB"))[y0:y1, x0:x1]
    after = np.asarray(Image.open(io.BytesIO(tw.scene.image)).convert("RGB"))[y0:y1, x0:x1]
    near = np.abs(after.astype(int) - COLORS[new[0]["color"]]).sum(axis=2) < 90
    assert near.mean() > 0.05 and np.abs(after.astype(int) - before).mean() > 10
