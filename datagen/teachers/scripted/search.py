"""Scripted traces for visual search that look at the picture instead of reading the spec.

Styles:
  zoom       overview, a rough look, a crop with a margin shown enlarged, a closer look there
             and a region around it enlarged to read (reading a number or an attribute needs
             no code to find the thing); for a position question the thing is found by
             colour and shape in the crop and its place printed
  grid_zoom  the same from an overview with a coordinate grid drawn on it
  relation   one crop around where both were seen, find both, compare centres
  count      segment the whole picture by colour, classify shapes, box and count
  exists     the same, with each candidate's fill classified; yes or no

A step sees only what the perception contract allows: the question, what earlier cells printed
and showed, and the ``Looker``'s noisy looks (a region or colour of something in a view it was
shown, recorded on the step). The scene's object list is used to *take* those looks (what is
there to be seen) and to judge an enlarged view the code showed (legible, so the teacher may
read it); never as a literal in the code. A look can miss: the crop then holds nothing of the
colour, or something else, and the next step notices it in the output and recovers (look at
the quarters more closely, or scan the whole picture by code).

Every region a cell claims is printed as ``region: (x0, y0, x1, y1)`` around what the code
found, so the grounding check can compare it with the targets.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from typing import Any

from datagen.records import Box, Step, Task, Turn
from datagen.scenes.search import COLORS
from datagen.teachers.scripted.base import Say, task_rng
from datagen.teachers.scripted.perception import Looker
from datagen.templates import load_yaml, render, render_string

__all__ = ["SearchScript"]

VIEW = 1024  # the longest side of an overview or a quarter as shown
_REGION = re.compile(r"region: \((\d+), (\d+), (\d+), (\d+)\)")
_LOOKING = re.compile(r"looking at \((\d+), (\d+), (\d+), (\d+)\) enlarged ([\d.]+) times")
# Questions answered by reading the thing once it is in view: no code needs to find it.
_READ = ("read_text", "attribute")
_FOUND = re.compile(r"found at \((\d+), (\d+), (\d+), (\d+)\)")
_LISTED = re.compile(r"^\s+(\w+) at \((\d+), (\d+), (\d+), (\d+)\)", re.MULTILINE)

# Each trace spells its helpers its own way (one of these per name, seeded by the task).
_NAMES = {
    "outlines": ("outlines", "shape_outlines", "reference_outlines", "unit_outlines"),
    "outline_table": ("OUTLINES", "SHAPES", "REFERENCE", "KNOWN"),
    "fit": ("FIT", "MIN_FIT", "GOOD_FIT", "NEEDED_FIT"),
    "ycc": ("ycc", "to_ycc", "luma_chroma", "planes"),
    "ycc_of": ("ycc_of", "colour_ycc", "as_ycc", "ycc_colour"),
    "share": ("share", "colour_share", "how_much", "tint"),
    "edges": ("edges", "edge_map", "sharp", "contrast"),
    "candidates": ("candidates", "spots", "maybe_there", "where_edges"),
    "closer": ("look_closer", "inspect", "examine", "at_full_size"),
    "shape": ("shape_name", "classify", "which_shape", "best_outline"),
    "colour": ("main_colour", "colour_of", "dominant", "own_colour"),
    "find": ("find_things", "detect", "find_objects", "segment"),
    "is_colour": ("is_colour", "same_colour", "matches", "has_colour"),
    "scene_colour": ("scene_colour", "true_colour", "sample_colour", "picture_colour"),
    "pattern": ("pattern_of", "fill_of", "which_fill", "fill_kind"),
    "lab": ("lab", "labels", "parts", "blobs"),
    "mask": ("mask", "hits_mask", "sel", "on"),
    "pick": ("chosen", "pick", "the_one", "match"),
}
# Local names of the toolkit (l) and of the cells (g), one spelling per trace.
_LOCALS = {
    "sil": ("sil", "silhouette", "filled", "blob"), "box": ("box", "bbox", "rect", "bounds"),
    "ref": ("ref", "target", "want", "wanted"), "img": ("img", "image", "pic", "picture"),
    "step": ("step", "factor", "every", "stride"),
    "found": ("found", "things", "result", "collected"),
    "fits": ("fits", "scores", "overlaps", "ious"), "b": ("b", "bx", "got", "cand"),
    "sl": ("sl", "span", "part", "piece"), "out": ("out", "res", "acc", "gathered"),
    "rim": ("rim", "ring", "border", "frame"), "thing": ("thing", "obj", "item", "it"),
    "stands_out": ('stands_out', 'differs', 'salient', 'odd'),
    "solid": ('solid', 'closed', 'joined', 'merged_px'),
    "rest": ('rest', 'outside', 'others', 'remainder'),
    "hole_ids": ('hole_ids', 'is_hole', 'enclosed', 'inner_ids'),
    "light": ('light', 'whitish', 'pale', 'bright'),
    "planes": ('planes', 'channels', 'bands', 'layers'),
    "basis": ('basis', 'design', 'A', 'cols'),
    "tips": ('tips', 'points', 'corners', 'vertices'),
    "votes": ('votes', 'tally', 'hits_per', 'support'),
    "merged": ('merged', 'groups', 'unions', 'joined_boxes'),
    "keep": ('keep', 'use', 'inner', 'chosen_px'),
    "top": ('top', 'vivid', 'strongest', 'peak'),
    "strong": ('strong', 'clear', 'sure', 'solid_cols'),
    "white": ('white', 'paper', 'blank_px', 'whites'),
    "body": ('body', 'middle', 'core', 'interior'),
    "turn": ('turn', 'angle', 'dhue', 'rot'),
    "ratio": ('ratio', 'strength', 'rel', 'fraction'),
    "pts": ('pts', 'poly', 'outline_pts', 'verts'),
    "name": ('name', 'label', 'nm', 'key'),
    "count": ('count', 'n_lab', 'total', 'num_parts'),
}
_YCC = (("y", "cb", "cr"), ("luma", "blue", "red"), ("lum", "u", "v"), ("Y", "Cb", "Cr"))
_CELL = {
    "ref": ("ref", "colour", "tone", "hue_ref"), "box": ("box", "window", "search_box", "zone"),
    "spot": ("spot", "where", "at", "location"), "pad": ("pad", "margin", "extra", "room"),
    "side": ("side", "size", "extent", "span_px"), "best": ("best", "nearest", "closest", "top"),
    "marked": ("marked", "annotated", "shown", "boxed"), "pen": ("pen", "draw", "painter", "d"),
    "centres": ("centres", "centers", "mids", "positions"),
    "seen_at": ("seen_at", "my_looks", "spots_seen", "glimpses"),
    "region": ("region", "claim", "roi", "crop_box"), "around": ("around", "context", "vicinity",
                                                                  "surround"),
    "scale": ("scale", "zoom_by", "enlarge", "mag"), "rgb": ("rgb", "col", "paint", "tint_rgb"),
    "shape": ("shape", "kind", "form", "outline"), "mx": ("mx", "ex", "gx", "lx"),
    "my": ("my", "ey", "gy", "ly"), "cx": ("cx", "xc", "mid_x", "ux"),
    "cy": ("cy", "yc", "mid_y", "uy"),
}
_VARS = {"v": ("view", "overview", "small", "preview"), "c": ("crop", "area", "patch", "part"),
         "z": ("zoom", "close", "enlarged", "detail"),
         "f": ("found", "things", "objects", "seen"),
         "hits": ("hits", "kept", "keep", "candidates_here"), "i": ("i", "j", "idx", "num")}


def _inside(box: Sequence[int], region: Sequence[int]) -> bool:
    return region[0] <= box[0] and region[1] <= box[1] and box[2] <= region[2] \
        and box[3] <= region[3]


def _desc(obj: dict[str, Any], number: bool = True) -> str:
    text = f"{obj['pattern']} {obj['color']} {obj['shape']}"
    return text + (f" marked {obj['text']}" if number and obj.get("text") else "")


def _asked(task: Task) -> str:
    """The target as the question names it (an attribute question leaves out what it asks)."""
    f = task.facts
    if f["op"] != "attribute":
        return _desc(f["target"], number=False)
    t = f["target"]
    parts = [t[k] if k != f["attr"] else ("shape" if k == "shape" else "")
             for k in ("pattern", "color", "shape")]
    return " ".join(p for p in parts if p) + f" marked {t['text']}"


def _centre(box: Sequence[float]) -> tuple[int, int]:
    return round((box[0] + box[2]) / 2), round((box[1] + box[3]) / 2)


class SearchScript:
    """Plans a visual-search trace one step at a time, from what the earlier steps showed."""

    ops = {
        "zoom": ("crop", "zoom"),
        "grid_zoom": ("crop", "zoom"),
        "relation": ("crop", "draw_box"),
        "count": ("draw_box", "count"),
        "exists": ("draw_box",),
    }

    def style(self, task: Task) -> str:
        """count / exists / relation by question; a plain or gridded overview otherwise."""
        op = task.facts["op"]
        if op in ("count", "exists", "relation"):
            return op
        return "grid_zoom" if task_rng(task, "style").random() < 0.4 else "zoom"

    # -----------------------------------------------------------------------------------------
    # The plan

    def step(self, task: Task, style: str, history: Sequence[Turn], say: Say,
             look: Looker) -> Step:
        """The next step: the overview first, then per style (see the module docstring)."""
        t = _Talk(task, len(history))
        if history:
            res = history[-1].result
            if res is not None and res.status != "ok":
                return Step(think=t("give_up", error=res.error_type or res.status))
        if not history:
            return self._overview(task, style, t)
        if style == "count" or style == "exists":
            return self._census(task, style, history, t, look)
        if style == "relation":
            return self._relation(task, history, t, look)
        if task.facts["op"] in _READ:
            return self._read(task, style, history, t, look)
        return self._search(task, style, history, t, look)

    def _overview(self, task: Task, style: str, t: _Talk) -> Step:
        w, h = task.scene.spec["size"]
        code = render("code/search_overview.py.j2", grid=_gridded(task, style),
                      v=_pick(task, _VARS, "v"))
        plan = {"count": "plan_count", "exists": "plan_exists",
                "relation": "plan_relation"}.get(style, "plan_search")
        return Step(think=t.join(("open", {"w": w, "h": h}), (plan, self._question(task))),
                    code=code)

    def _question(self, task: Task) -> dict[str, Any]:
        f = task.facts
        ctx: dict[str, Any] = {"colour": f.get("color", ""), "shape": f.get("shape", ""),
                               "pattern": f.get("pattern", "")}
        if "target" in f:
            ctx["what"] = _asked(task)
        if "other" in f:
            ctx["other"] = _desc(f["other"], number=False)
        return ctx

    # -----------------------------------------------------------------------------------------
    # Count and exists: segment the whole picture

    def _census(self, task: Task, style: str, history: Sequence[Turn], t: _Talk,
                look: Looker) -> Step:
        f = task.facts
        if len(history) == 1:
            name, rough = look.colour(COLORS[f["color"]])
            tools = _tools(task, with_pattern=style == "exists")
            code = render("code/search_count.py.j2", tools=tools, n=_names(task), rgb=rough,
                          colour=f["color"], shape=f["shape"],
                          pattern=f["pattern"] if style == "exists" else None,
                          **_vars(task))
            key = "do_exists" if style == "exists" else "do_count"
            return Step(think=t.join(("see_colour", {"name": name, "rgb": rough}),
                                     (key, self._question(task))), code=code)
        said = _last_line(history)
        if style == "exists":
            found = said == "yes"
            return Step(think=t("exists_answer" if found else "absent_answer",
                                **self._question(task)), answer=said)
        return Step(think=t("count_answer", n=said, **self._question(task)), answer=said)

    # -----------------------------------------------------------------------------------------
    # Attribute, read_text, position: look, crop, find, zoom; recover from a miss

    def _search(self, task: Task, style: str, history: Sequence[Turn], t: _Talk,
                look: Looker) -> Step:
        target = task.facts["target"]
        kinds = [_kind(turn) for turn in history]
        last = history[-1]
        budget = 5 - len(history)  # code cells that may still run before the answer
        if kinds[-1] == "overview":
            return self._find(task, history, t, look, "overview", _overview_scale(task, style))
        if kinds[-1] == "quarters":
            w, h = task.scene.spec["size"]
            q = _quarter_of(target["box"], w, h)
            scale = min(1.0, VIEW / max((w + 1) // 2, (h + 1) // 2))
            return self._find(task, history, t, look, f"quarter {q}", scale)
        if kinds[-1] == "zoom":
            if _shown(last, target["box"]) is None:
                return Step(think=t("give_up", error="the zoom does not show it"))
            return self._answer(task, history, t)
        if kinds[-1] == "find" and budget >= 1:
            found = _found_at(last)
            if found is not None and _inside(target["box"], _grow(found)):
                return self._zoom(task, t, "look")
        if kinds[-1] == "scan":
            listed = [tuple(int(v) for v in m.groups()[1:]) for m in _LISTED.finditer(
                last.result.stdout if last.result else "")]
            mine = [b for b in listed if _inside(target["box"], _grow(b))]
            if not mine or budget < 1:
                return Step(think=t("give_up", error="the scan did not show it"))
            if len(listed) == 1:
                return self._zoom(task, t, "spot")
            return self._zoom(task, t, "point", _centre(mine[0]), listed=len(listed))
        # The crop missed (nothing of the colour) or what it found is something else.
        found = _found_at(last) if kinds[-1] == "find" else None
        seen = _seen_instead(task, found) if found is not None else None
        miss = t("miss_other", other=seen) if seen else t("miss_empty")
        closer = task_rng(task, "recover").random() < 0.6
        if kinds.count("quarters") == 0 and budget >= 3 and closer:
            code = render("code/search_quarters.py.j2", i=_pick(task, _VARS, "i"))
            return Step(think=t.join(miss, ("go_quarters", {})), code=code)
        if budget >= 2:
            name, rough = self._colour(task, history, look)
            code = render("code/search_scan.py.j2", tools=_tools(task, have=history),
                          n=_names(task), rgb=rough, what=_desc(target),
                          shape=self._known_shape(task), **_vars(task))
            return Step(think=t.join(miss, ("go_scan", {"name": name})), code=code)
        return Step(think=t.join(miss, ("give_up", {"error": "no turns left to look again"})))

    def _read(self, task: Task, style: str, history: Sequence[Turn], t: _Talk,
              look: Looker) -> Step:
        """Read a number or an attribute: look, crop with a margin and view it enlarged, look
        again closer there and claim a region to read. The crops come from looks, and what a
        view shows is judged from the view; a crop that missed or cut the thing off is noticed
        there and followed by a wider crop or a closer look at the quarters."""
        target = task.facts["target"]
        box, size = target["box"], task.scene.spec["size"]
        kinds = [_kind(turn) for turn in history]
        last = history[-1]
        budget = 5 - len(history)  # code cells that may still run before the answer
        what = _asked(task)
        if kinds[-1] in ("overview", "quarters"):
            if kinds[-1] == "overview":
                source, scale = "overview", _overview_scale(task, style)
            else:
                w, h = size
                source = f"quarter {_quarter_of(box, w, h)}"
                scale = min(1.0, VIEW / max((w + 1) // 2, (h + 1) // 2))
            est, _ = look.region(box, size, scale)
            key = "look_quarter" if kinds[-1] == "quarters" else "look_overview"
            name, _ = self._colour(task, history, look)
            return Step(think=t.join((key, {"where": source, "est": est, "name": name,
                                            "centre": _centre(est)}), ("peek_plan", {})),
                        code=self._peek(task, est, source, wide=False))
        if kinds[-1] == "peek":
            seen = _looking(last)
            if seen is None:
                return Step(think=t("give_up", error="the crop was not shown"))
            crop, scale = seen
            if _inside(box, crop) and budget >= 1:
                est, _ = look.region(box, size, scale)
                return Step(think=t.join(("in_view", {"what": what, "centre": _centre(est)}),
                                         ("close_plan", {})),
                            code=self._close(task, est, wider=False))
            if _overlaps(box, crop) and budget >= 2 and "wide" not in _peek_modes(history):
                est = _last_estimate(history)
                return Step(think=t("cut_off", what=what),
                            code=self._peek(task, est, "", wide=True))
            if kinds.count("quarters") == 0 and budget >= 3:
                code = render("code/search_quarters.py.j2", i=_pick(task, _VARS, "i"))
                return Step(think=t.join(("miss_view", {"what": what}), ("go_quarters", {})),
                            code=code)
            if budget >= 2:  # one more look at the overview, now that one spot is ruled out
                est, _ = look.region(box, size, _overview_scale(task, style))
                return Step(think=t.join(("miss_view", {"what": what}),
                                         ("look_again", {"est": est, "centre": _centre(est)})),
                            code=self._peek(task, est, "overview", wide=False))
            return Step(think=t.join(("miss_view", {"what": what}),
                                     ("give_up", {"error": "no turns left to look again"})))
        if kinds[-1] == "close":
            if _shown(last, box) is not None:
                return self._answer(task, history, t)
            if budget >= 1 and kinds.count("close") == 1:
                est = _last_estimate(history)
                return Step(think=t("zoom_cut", what=what), code=self._close(task, est, True))
            return Step(think=t("give_up", error="the zoom does not show all of it"))
        return Step(think=t("give_up", error="lost track of the crops"))

    def _peek(self, task: Task, est: Sequence[int], where: str, wide: bool) -> str:
        peek = (512, 640, 768)[int(task_rng(task, "peek").integers(3))]
        return render("code/search_peek.py.j2", what=_asked(task), est=tuple(est), where=where,
                      wide=wide, peek=peek, **_vars(task))

    def _close(self, task: Task, est: Sequence[int], wider: bool) -> str:
        zoom = (384, 448, 512)[int(task_rng(task, "zoom").integers(3))]
        return render("code/search_close.py.j2", what=_asked(task), est=tuple(est),
                      wider=wider, zoom=zoom, **_vars(task))

    def _zoom(self, task: Task, t: _Talk, mode: str, point: tuple[int, int] | None = None,
              listed: int = 0) -> Step:
        target = task.facts["target"]
        code = render("code/search_zoom.py.j2", what=_desc(target, number=False), mode=mode,
                      point=point, shape=self._known_shape(task), n=_names(task),
                      position=task.facts["op"] == "position", **_vars(task))
        if mode == "point":
            return Step(think=t("scan_pick", n=listed, what=_desc(target, number=False)),
                        code=code)
        return Step(think=t.join(("looks_right", {"what": _desc(target, number=False)}),
                                 ("zoom_plan", {})), code=code)

    def _known_shape(self, task: Task) -> str | None:
        f = task.facts
        return None if f["op"] == "attribute" and f["attr"] == "shape" else f["target"]["shape"]

    def _colour(self, task: Task, history: Sequence[Turn],
                look: Looker) -> tuple[str, tuple[int, int, int]]:
        """The target's colour as first seen (looked at once; reused)."""
        for turn in history:
            for p in turn.step.percepts:
                if p.kind == "colour" and tuple(p.truth) == COLORS[task.facts["target"]["color"]]:
                    return p.estimate[0], tuple(p.estimate[1])  # type: ignore[return-value]
        return look.colour(COLORS[task.facts["target"]["color"]])

    def _find(self, task: Task, history: Sequence[Turn], t: _Talk, look: Looker, source: str,
              scale: float) -> Step:
        target = task.facts["target"]
        est, _ = look.region(target["box"], task.scene.spec["size"], scale)
        name, rough = self._colour(task, history, look)
        code = render("code/search_find.py.j2", tools=_tools(task, have=history), n=_names(task),
                      what=_asked(task), est=est, where=source, rgb=rough,
                      shape=self._known_shape(task), position=task.facts["op"] == "position",
                      **_vars(task))
        key = "look_quarter" if source.startswith("quarter") else "look_overview"
        return Step(think=t.join((key, {"where": source, "est": est, "name": name,
                                        "centre": _centre(est)}),
                                 ("crop_plan", {})), code=code)

    def _answer(self, task: Task, history: Sequence[Turn], t: _Talk) -> Step:
        f = task.facts
        target = f["target"]
        if f["op"] == "position":
            said = _last_line(history)
            letter = next((k for k, v in f["options"].items() if v == said), None)
            if letter is None:
                return Step(think=t("give_up", error=f"unexpected output {said!r}"))
            return Step(think=t.join(("found_it", {"what": _desc(target)}),
                                     ("from_output", {"result": said, "letter": letter})),
                        answer=letter)
        if f["op"] == "attribute":
            value = target[f["attr"]]
            letter = next(k for k, v in f["options"].items() if v == value)
            reading = f"its {f['attr']} is {value}, option {letter}"
            return Step(think=t.join(("found_it", {"what": _desc(target)}),
                                     ("read", {"reading": reading})), answer=letter)
        reading = f"the number on it is {target['text']}"
        return Step(think=t.join(("found_it", {"what": _desc(target, number=False)}),
                                 ("read", {"reading": reading})), answer=str(target["text"]))

    # -----------------------------------------------------------------------------------------
    # Relation: both targets found in one crop around every place either was seen

    def _relation(self, task: Task, history: Sequence[Turn], t: _Talk, look: Looker) -> Step:
        f = task.facts
        a, b = f["target"], f["other"]
        last = history[-1]
        if _kind(last) == "relation":
            regions = _regions(last)
            have = [any(_inside(o["box"], r) for r in regions) for o in (a, b)]
            if all(have) and len(regions) == 2:
                said = _last_line(history)
                letter = next((k for k, v in f["options"].items() if v == said), None)
                if letter is None:
                    return Step(think=t("give_up", error=f"unexpected output {said!r}"))
                ca, cb = (_centre(r) for r in regions)
                return Step(think=t.join(("relation_seen", {"a": _desc(a, False),
                                                            "b": _desc(b, False), "ca": ca,
                                                            "cb": cb}),
                                         ("from_output", {"result": said, "letter": letter})),
                            answer=letter)
            tries = sum(_kind(turn) == "relation" for turn in history)
            if len(history) > 4 or tries >= 2 and not self._looked_elsewhere(task, history):
                return Step(think=t("give_up", error="one of them is still missing"))
            missing = [o for o, ok in zip((a, b), have, strict=True) if not ok]
        else:
            missing = [a, b]
        looks = self._relation_looks(history)
        scale = _overview_scale(task, "relation")
        for o in missing:
            est, _ = look.region(o["box"], task.scene.spec["size"], scale)
            looks.append((list(est), o["box"]))
        rough = {}
        for o in (a, b):
            rough[id(o)] = self._relation_colour(o, history, look)
        axis = "x" if set(f["options"].values()) == {"left", "right"} else "y"
        code = render("code/search_relation.py.j2", tools=_tools(task, have=history),
                      n=_names(task), a_what=_desc(a), b_what=_desc(b, False),
                      a_looks=[e for e, box in looks if box == a["box"]],
                      b_looks=[e for e, box in looks if box == b["box"]],
                      a_rgb=rough[id(a)][1], b_rgb=rough[id(b)][1], a_shape=a["shape"],
                      b_shape=b["shape"], axis=axis, **_vars(task))
        key = "relation_look" if len(missing) == 2 else "relation_again"
        return Step(think=t.join((key, {"a": _desc(a, False), "b": _desc(b, False),
                                        "missing": " and the ".join(_desc(o, False)
                                                                    for o in missing)}),
                                 ("relation_plan", {})), code=code)

    def _looked_elsewhere(self, task: Task, history: Sequence[Turn]) -> bool:
        """Whether a look has missed the area searched so far (looking again may then help;
        when every look was inside it, the code failed to recognise the thing there)."""
        box = _union([p.estimate for turn in history for p in turn.step.percepts
                      if p.kind == "region"])
        missing = [o for o in (task.facts["target"], task.facts["other"])
                   if not any(_inside(o["box"], r) for r in _regions(history[-1]))]
        return any(not _inside(o["box"], box) for o in missing)

    def _relation_looks(self, history: Sequence[Turn]) -> list[tuple[list[int], list[int]]]:
        """Every look so far: (estimate, the box of the thing it was a look at)."""
        return [(list(p.estimate), list(p.truth)) for turn in history
                for p in turn.step.percepts if p.kind == "region"]

    def _relation_colour(self, obj: dict[str, Any], history: Sequence[Turn],
                         look: Looker) -> tuple[str, tuple[int, int, int]]:
        for turn in history:
            for p in turn.step.percepts:
                if p.kind == "colour" and tuple(p.truth) == COLORS[obj["color"]]:
                    return p.estimate[0], tuple(p.estimate[1])  # type: ignore[return-value]
        return look.colour(COLORS[obj["color"]])


# ---------------------------------------------------------------------------------------------
# Helpers


class _Talk:
    """Think text composed from parts of ``templates/teacher/search.yaml``; each part's variant
    is seeded by the task, the step and the part, so one trace's steps read differently."""

    def __init__(self, task: Task, step: int) -> None:
        self.task, self.step = task, step
        self.texts = load_yaml("teacher/search.yaml")

    def __call__(self, key: str, **ctx: Any) -> str:
        variants = self.texts[key]
        rng = task_rng(self.task, f"{key}-{self.step}")
        return render_string(variants[int(rng.integers(len(variants)))], **ctx).strip()

    def join(self, *parts: str | tuple[str, dict[str, Any]]) -> str:
        """Parts in order: text as it is, or (key, context) rendered."""
        return " ".join(p if isinstance(p, str) else self(p[0], **p[1]) for p in parts)


def _pick(task: Task, table: dict[str, tuple[str, ...]], key: str) -> str:
    options = table[key]
    return options[int(task_rng(task, f"name-{key}").integers(len(options)))]


def _names(task: Task) -> dict[str, str]:
    return {k: _pick(task, _NAMES, k) for k in _NAMES}


def _vars(task: Task) -> dict[str, Any]:
    """Variable spellings for a trace's cells (the same across its cells: state persists)."""
    return {**{k: _pick(task, _VARS, k) for k in ("c", "f", "hits", "i", "z")},
            "g": {k: _spell(task, _CELL, k, "cell") for k in _CELL}}


def _spell(task: Task, table: dict[str, tuple[str, ...]], key: str, salt: str) -> str:
    options = table[key]
    return options[int(task_rng(task, f"{salt}-{key}").integers(len(options)))]


def _locals(task: Task) -> dict[str, str]:
    """Local names inside the toolkit's functions."""
    spelt = {k: _spell(task, _LOCALS, k, "local") for k in _LOCALS}
    y, cb, cr = _YCC[int(task_rng(task, "local-ycc").integers(len(_YCC)))]
    return {**spelt, "y": y, "cb": cb, "cr": cr}


def _tools(task: Task, with_pattern: bool = False, have: Sequence[Turn] = ()) -> str:
    """The toolkit's code, or nothing when an earlier cell already defined it."""
    name = _names(task)["find"]
    if any(t.step.code and f"def {name}(" in t.step.code for t in have):
        return ""
    return render("code/search_tools.py.j2", n=_names(task), l=_locals(task), cands="edges",
                  with_pattern=with_pattern) + "\n\n"


def _kind(turn: Turn) -> str:
    code = turn.step.code or ""
    for marker, kind in (("Read it up close", "close"), ("enlarged\", round(", "peek"),
                         ("I see it at about", "find"), ("quarter.thumbnail", "quarters"),
                         ("candidate(s) in the whole image", "scan"),
                         ("its print at a readable size", "zoom"), ("looks_a = [", "relation"),
                         ("overview", "overview")):
        if marker in code:
            return kind
    return "other"


def _regions(turn: Turn) -> list[tuple[int, int, int, int]]:
    text = turn.result.stdout if turn.result else ""
    return [tuple(int(v) for v in m.groups()) for m in _REGION.finditer(text)]  # type: ignore


def _shown(turn: Turn, box: Sequence[int]) -> Box | None:
    """The region the cell printed and showed enlarged that holds ``box`` (the zoom shows it
    legibly, so the teacher may read it there), if any."""
    return next((r for r in _regions(turn) if _inside(box, r)), None)


def _found_at(turn: Turn) -> tuple[int, int, int, int] | None:
    """The box a find cell printed as ``found at (x0, y0, x1, y1)``, if any."""
    m = _FOUND.search(turn.result.stdout if turn.result else "")
    return None if m is None else tuple(int(v) for v in m.groups())  # type: ignore[return-value]


def _looking(turn: Turn) -> tuple[tuple[int, int, int, int], float] | None:
    """The crop a peek cell printed as ``looking at (x0, y0, x1, y1) enlarged s times``."""
    m = _LOOKING.search(turn.result.stdout if turn.result else "")
    if m is None:
        return None
    return tuple(int(v) for v in m.groups()[:4]), float(m.group(5))  # type: ignore[return-value]


def _overlaps(box: Sequence[int], region: Sequence[int]) -> bool:
    return box[0] < region[2] and region[0] < box[2] and box[1] < region[3] \
        and region[1] < box[3]


def _peek_modes(history: Sequence[Turn]) -> list[str]:
    return ["wide" if "with more room" in (turn.step.code or "") else "look"
            for turn in history if _kind(turn) == "peek"]


def _last_estimate(history: Sequence[Turn]) -> tuple[int, int, int, int]:
    """The last look's estimate (a region), reused when a crop is widened around it."""
    for turn in reversed(history):
        for p in reversed(turn.step.percepts):
            if p.kind == "region":
                return tuple(int(v) for v in p.estimate)  # type: ignore[return-value]
    raise ValueError("no look taken yet")


def _seen_instead(task: Task, found: Sequence[int]) -> str | None:
    """What the view of a found thing shows when it is not the target (read off the view)."""
    for o in task.scene.spec["objects"]:
        if _inside(o["box"], _grow(found)):
            return _desc(o) if o["shape"] not in ("glyph", "snippet") else "some lettering"
    return None


def _last_line(history: Sequence[Turn]) -> str:
    res = history[-1].result
    lines = [ln.strip() for ln in (res.stdout if res else "").splitlines() if ln.strip()]
    return lines[-1] if lines else ""


def _union(boxes: Sequence[Sequence[int]]) -> tuple[int, int, int, int]:
    return (min(b[0] for b in boxes), min(b[1] for b in boxes), max(b[2] for b in boxes),
            max(b[3] for b in boxes))


def _grow(box: Sequence[int]) -> tuple[int, int, int, int]:
    pad = max(3, round(0.25 * max(box[2] - box[0], box[3] - box[1])))
    return box[0] - pad, box[1] - pad, box[2] + pad, box[3] + pad


def _gridded(task: Task, style: str) -> bool:
    """Whether the overview has a coordinate grid (always for grid_zoom, sometimes for the
    styles that do not name it)."""
    return style == "grid_zoom" or (style != "zoom" and task_rng(task, "grid").random() < 0.3)


def _overview_scale(task: Task, style: str) -> float:
    """Overview pixels per image pixel (a thumbnail, or a reduction by a whole factor)."""
    side = max(task.scene.spec["size"])
    if _gridded(task, style):
        return min(1.0, VIEW / side)
    return 1 / max(1, math.ceil(side / VIEW))


def _quarter_of(box: Sequence[int], w: int, h: int) -> int:
    cx, cy = _centre(box)
    return 1 + (cx >= (w + 1) // 2) + 2 * (cy >= (h + 1) // 2)
