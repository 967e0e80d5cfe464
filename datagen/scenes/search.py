"""Visual-search family: large cluttered scenes with small targets (V*-bench style).

A scene is a procedural background (gradient, smooth noise, landscape bands or tiles), tens to
hundreds of distractors (shapes, icons, glyphs, text snippets) and 1–3 targets: a shape with a
colour, a fill pattern and a short number printed on it. Nothing overlaps, so nothing is
occluded; every object's box is exact. Targets are unique by their description: no distractor
shares a target's (shape, colour) or (shape, pattern), and no target sits on a midline of the
image (so "which quadrant" has one answer). Encoded as JPEG (the sandbox contract's
``input_image.jpg`` is JPEG too, and a 4096-px PNG is several times larger and slower).

A scene's kind is its background style. Adding a question type is one ``QuestionType`` in
``QUESTIONS`` with its phrasings in ``templates/questions/search.yaml``.

Questions are unambiguous by construction and ``RULES`` checks it, one rule per ambiguity:
a count or existence question never names a colour with a near twin on a thing of the asked
shape in the scene (blue/purple, red/orange, ...) nor a shape that an icon of that colour
passes for (a tree for a triangle); a relation is asked only along an axis that clearly
dominates; colour options never hold the answer's near twin. Answers are balanced: counts
run over 0..``COUNT_MAX`` about evenly, relations offer all four directions, yes and no are
about even.
"""

from __future__ import annotations

import functools
import io
import math
from collections.abc import Collection, Mapping, Sequence
from typing import Any, TypedDict

import numpy as np
from matplotlib import font_manager
from PIL import Image, ImageDraw, ImageFont

from datagen.records import Scene, Task, stable_id
from datagen.scenes.base import (
    Draft,
    Family,
    Poser,
    QuestionType,
    Rule,
    Secrets,
    Twin,
    letter_options,
    pose_rng,
)
from datagen.templates import load_yaml

__all__ = ["BACKGROUNDS", "COUNT_MAX", "FAMILY", "LOOKALIKES", "NEAR_TWINS", "QUESTIONS", "RULES",
           "SearchObject", "SearchSpec", "make_scene", "make_spec", "pose", "printed",
           "render_scene", "scene_effort", "secrets", "twin"]

Rng = np.random.Generator
Box = list[int]


class SearchObject(TypedDict, total=False):
    """One object of a scene: a target or a distractor, with its exact box."""

    role: str  # "target" or "distractor"
    shape: str
    color: str
    pattern: str
    text: str | None
    box: Box


class SearchSpec(TypedDict, total=False):
    """A search scene: canvas size, background, every object, and the targets' size."""

    size: list[int]
    background: dict[str, Any]  # style, seed
    objects: list[SearchObject]
    target_area: float
    target_side: int


Spec = SearchSpec

SHAPES = ("circle", "square", "triangle", "star", "diamond", "hexagon")
PATTERNS = ("solid", "striped", "dotted", "outline")
COLORS = {"red": (220, 40, 40), "blue": (40, 80, 220), "green": (30, 160, 60),
          "yellow": (240, 210, 30), "orange": (245, 130, 20), "purple": (140, 60, 190),
          "pink": (240, 110, 180), "cyan": (30, 190, 210), "brown": (130, 80, 40)}
ICONS = ("house", "tree", "arrow", "glyph", "snippet")
SIDES = (1024, 1536, 2048, 3072, 4096)
ASPECTS = (1.0, 4 / 3, 3 / 2, 16 / 9, 2.0, 3.0)
QUADRANTS = ("top-left", "top-right", "bottom-left", "bottom-right")
BACKGROUNDS = ("gradient", "noise", "bands", "tiles")
# Colours a reader can mistake for each other in a small or JPEG-blurred object: the palette's
# pairs closer than 50 in CIELAB (blue/purple 27, red/orange 41, purple/pink 47, yellow/orange 49).
NEAR_TWINS: dict[str, frozenset[str]] = {
    "blue": frozenset({"purple"}), "purple": frozenset({"blue", "pink"}),
    "pink": frozenset({"purple"}), "red": frozenset({"orange"}),
    "orange": frozenset({"red", "yellow"}), "yellow": frozenset({"orange"}),
}
# The plain shapes an icon's silhouette passes for (a tree's crown is a triangle, an arrow's
# head a triangle or a diamond, a house a square under a triangle).
LOOKALIKES: dict[str, frozenset[str]] = {
    "tree": frozenset({"triangle"}), "arrow": frozenset({"triangle", "diamond"}),
    "house": frozenset({"square", "triangle", "hexagon"}),
}
COUNT_MAX = 4  # counts asked run over 0..COUNT_MAX, each about as often
# How often each count is drawn: a scene has a class of 3 or 4 things (that nothing could be
# mistaken for) less often than one of 0 to 2, so those draws are weighted up to make the
# counts asked about even (measured over 600 scenes; tests/scenes/test_balance.py checks it).
COUNT_WEIGHTS = (1.2, 1.0, 1.0, 1.8, 4.0)
RELATION_DOMINANCE = 2.0  # a relation is asked along an axis at least this much longer
JPEG_QUALITY = 90
TWIN_QUALITY = 95


@functools.cache
def _font(size: int) -> ImageFont.FreeTypeFont:
    return ImageFont.truetype(font_manager.findfont("DejaVu Sans:bold"), size)


# ---------------------------------------------------------------------------------------------
# Spec


def _canvas(rng: Rng, max_side: int) -> tuple[int, int]:
    sides = [s for s in SIDES if s <= max_side] or [max_side]
    if max_side > SIDES[-1]:
        sides.append(max_side)
    long = int(rng.choice(sides))
    short = int(long / float(rng.choice(ASPECTS)))
    return (long, short) if rng.random() < 0.75 else (short, long)


def _free(box: Box, boxes: list[Box], gap: int) -> bool:
    x0, y0, x1, y1 = box
    return all(x1 + gap <= a0 or a1 + gap <= x0 or y1 + gap <= b0 or b1 + gap <= y0
               for a0, b0, a1, b1 in boxes)


def _place(rng: Rng, size: tuple[int, int], side: int, boxes: list[Box],
           off_midlines: bool = False) -> Box | None:
    w, h = size
    for _ in range(60):
        x, y = int(rng.integers(4, w - side - 4)), int(rng.integers(4, h - side - 4))
        box = [x, y, x + side, y + side]
        if off_midlines and _on_midline(box, size):
            continue
        if _free(box, boxes, gap=max(3, side // 6)):
            return box
    return None


def _on_midline(box: Box | Sequence[int], size: Sequence[int]) -> bool:
    """Whether ``box`` touches a midline of the image or comes within half its side of one
    (its quadrant would then be a matter of opinion)."""
    margin = (box[2] - box[0]) / 2
    w, h = size
    return (box[0] - margin < w / 2 < box[2] + margin
            or box[1] - margin < h / 2 < box[3] + margin)


def make_spec(rng: Rng, max_side: int = 4096, clutter: float = 1.0) -> Spec:
    """A scene spec: canvas, background, targets and distractors with exact boxes."""
    size = _canvas(rng, max_side)
    area = size[0] * size[1]
    boxes: list[Box] = []
    objects: list[SearchObject] = []
    n_targets = int(rng.integers(1, 4))
    frac = float(10 ** rng.uniform(-4, -2))  # target area from 0.01 % to 1 % of the image
    target_side = max(24, int(math.sqrt(frac * area)))
    combos = [(s, c, p) for s in SHAPES for c in COLORS for p in PATTERNS]
    picks = rng.permutation(len(combos))
    targets: list[tuple[str, str, str]] = []
    for i in picks:
        s, c, p = combos[int(i)]
        if all(s != t[0] or (c != t[1] and p != t[2]) for t in targets):
            targets.append((s, c, p))
        if len(targets) == n_targets:
            break
    numbers = [str(v) for v in rng.choice(np.arange(10, 100), size=len(targets), replace=False)]
    for (shape, colour, pattern), number in zip(targets, numbers, strict=True):
        side = int(target_side * rng.uniform(0.85, 1.15))
        box = _place(rng, size, side, boxes, off_midlines=True)
        if box is None:
            continue
        boxes.append(box)
        objects.append({"role": "target", "shape": shape, "color": colour, "pattern": pattern,
                        "text": number, "box": box})
    target_texts = {t["text"] for t in objects}
    # Distractors: many, of every size; never a (shape, colour) or (shape, pattern) of a target.
    banned = {(t["shape"], t["color"]) for t in objects} | {(t["shape"], t["pattern"])
                                                           for t in objects}
    density = clutter * float(rng.uniform(0.4, 1.6))
    n_distractors = int(min(400, max(20, density * area / 40_000)))
    placed = 0
    # A draw that finds no room is drawn again (smaller, likely), up to twice as many draws.
    for _ in range(2 * n_distractors):
        if placed == n_distractors:
            break
        side = int(target_side * rng.uniform(0.6, 2.5))
        if rng.random() < 0.25:
            kind = str(rng.choice(ICONS))
            obj: SearchObject = {"role": "distractor", "shape": kind,
                                 "color": str(rng.choice(list(COLORS))),
                   "pattern": "solid", "text": _snippet(rng, kind)}
        else:
            while True:
                s, c, p = (str(rng.choice(SHAPES)), str(rng.choice(list(COLORS))),
                           str(rng.choice(PATTERNS)))
                if (s, c) not in banned and (s, p) not in banned:
                    break
            text = str(int(rng.integers(10, 100))) if rng.random() < 0.3 else None
            # A target's number never appears elsewhere, so "marked 42" names it alone.
            obj = {"role": "distractor", "shape": s, "color": c, "pattern": p,
                   "text": None if text in target_texts else text}
        box = _place(rng, size, side, boxes)
        if box is not None:
            boxes.append(box)
            obj["box"] = box
            objects.append(obj)
            placed += 1
    return {
        "size": list(size),
        "background": {"style": str(rng.choice(list(BACKGROUNDS))),
                       "seed": int(rng.integers(2**31))},
        "objects": objects,
        "target_area": round(frac, 6),
        "target_side": target_side,
    }


def _snippet(rng: Rng, kind: str) -> str | None:
    if kind == "glyph":
        return str(rng.choice(list("ABCDEFGHKMNPRSTUWXYZ")))
    if kind == "snippet":
        return str(rng.choice(load_yaml("scenes/search.yaml")["snippets"]))
    return None


# ---------------------------------------------------------------------------------------------
# Rendering


def _background(spec: Spec) -> Image.Image:
    w, h = spec["size"]
    rng = np.random.default_rng(spec["background"]["seed"])
    style = spec["background"]["style"]
    lw, lh = max(4, w // 32), max(4, h // 32)
    base = rng.uniform(150, 235, size=3)
    other = np.clip(base + rng.uniform(-60, 60, size=3), 90, 245)
    t = np.linspace(0, 1, lh)[:, None, None] if style != "gradient" or rng.random() < 0.5 \
        else np.linspace(0, 1, lw)[None, :, None]
    if style == "gradient":
        low = base + (other - base) * t
        low = np.broadcast_to(low, (lh, lw, 3))
    elif style == "noise":
        low = base + rng.normal(0, 18, size=(lh // 4 + 2, lw // 4 + 2, 3))
        low = np.asarray(Image.fromarray(np.clip(low, 0, 255).astype(np.uint8)).resize(
            (lw, lh), Image.BICUBIC), dtype=float)
    elif style == "bands":
        k = int(rng.integers(3, 7))
        band = np.floor(t[:, :, 0] * k) / k
        colours = rng.uniform(110, 240, size=(k + 1, 3))
        low = colours[(band * k).astype(int)][:, :1, :].repeat(lw, axis=1)
        low = low + rng.normal(0, 8, size=(lh, lw, 3))
    else:
        cell = int(rng.integers(2, 6))
        yy, xx = np.mgrid[0:lh, 0:lw]
        mask = ((yy // cell + xx // cell) % 2)[:, :, None]
        low = base * (1 - mask) + other * mask + rng.normal(0, 6, size=(lh, lw, 3))
    low = np.clip(np.asarray(low), 0, 255).astype(np.uint8)
    # Grain is added at quarter size and the sum upscaled once: one full-size resize instead
    # of two plus a merge and an add (75 ms against 140 ms on a 4096 x 3072 canvas). The grain
    # comes out as the same smooth 4-px mottle.
    qw, qh = w // 4 + 1, h // 4 + 1
    quarter = np.asarray(Image.fromarray(low).resize((qw, qh), Image.BILINEAR), dtype=np.int16)
    grain = rng.integers(-10, 11, size=(qh, qw, 1), dtype=np.int16)
    mottled = np.clip(quarter + grain, 0, 255).astype(np.uint8)
    return Image.fromarray(mottled).resize((w, h), Image.BILINEAR)


def _shape_points(shape: str, s: int) -> list[tuple[float, float]]:
    c = s / 2
    if shape == "triangle":
        return [(c, 1), (s - 1, s - 1), (1, s - 1)]
    if shape == "diamond":
        return [(c, 1), (s - 1, c), (c, s - 1), (1, c)]
    if shape == "hexagon":
        return [(c + (c - 1) * math.cos(math.pi / 3 * k), c + (c - 1) * math.sin(math.pi / 3 * k))
                for k in range(6)]
    if shape == "star":
        radii = [(c - 1) * (1 if k % 2 == 0 else 0.45) for k in range(10)]
        angles = [-math.pi / 2 + math.pi / 5 * k for k in range(10)]
        return [(c + r * math.cos(a), c + r * math.sin(a)) for r, a in zip(radii, angles,
                                                                          strict=True)]
    if shape == "house":
        return [(c, 1), (s - 1, c * 0.8), (s - 3, c * 0.8), (s - 3, s - 1), (3, s - 1),
                (3, c * 0.8), (1, c * 0.8)]
    if shape == "tree":
        return [(c, 1), (s - 2, s * 0.72), (c + s * 0.08, s * 0.72), (c + s * 0.08, s - 1),
                (c - s * 0.08, s - 1), (c - s * 0.08, s * 0.72), (2, s * 0.72)]
    if shape == "arrow":
        return [(1, c - s * 0.12), (s * 0.6, c - s * 0.12), (s * 0.6, 2), (s - 1, c),
                (s * 0.6, s - 2), (s * 0.6, c + s * 0.12), (1, c + s * 0.12)]
    return [(1, 1), (s - 1, 1), (s - 1, s - 1), (1, s - 1)]  # square


def _tile(obj: SearchObject) -> tuple[Image.Image, Image.Image]:
    """The object's pixels and its mask, at its box size."""
    x0, y0, x1, y1 = obj["box"]
    s = x1 - x0
    colour = COLORS[obj["color"]]
    mask = Image.new("L", (s, s), 0)
    md = ImageDraw.Draw(mask)
    shape = obj["shape"]
    if shape in ("glyph", "snippet"):
        text = obj["text"] or "?"
        size = max(8, int(s * (0.9 if shape == "glyph" else 0.9 / max(1, len(text) * 0.6))))
        md.text((s / 2, s / 2), text, font=_font(size), fill=255, anchor="mm")
        return Image.new("RGB", (s, s), colour), mask
    if shape == "circle":
        md.ellipse([1, 1, s - 1, s - 1], fill=255)
    else:
        md.polygon(_shape_points(shape, s), fill=255)
    tile = Image.new("RGB", (s, s), colour)
    td = ImageDraw.Draw(tile)
    pattern = obj["pattern"]
    step = max(4, s // 6)
    if pattern == "striped":
        for k in range(-s, s, step):
            td.line([(k, 0), (k + s, s)], fill=(250, 250, 250), width=max(1, step // 2))
    elif pattern == "dotted":
        r = max(1, step // 4)
        for yy in range(step // 2, s, step):
            for xx in range(step // 2, s, step):
                td.ellipse([xx - r, yy - r, xx + r, yy + r], fill=(250, 250, 250))
    elif pattern == "outline":
        inner = mask.resize((max(1, s - 2 * max(2, s // 8)),) * 2)
        hole = Image.new("L", (s, s), 0)
        hole.paste(inner, (max(2, s // 8),) * 2)
        tile.paste((250, 250, 250), mask=hole)
    if obj.get("text") and shape not in ICONS:
        size = max(7, int(s * 0.38))
        td.text((s / 2, s / 2 + (s * 0.08 if shape == "triangle" else 0)), obj["text"],
                font=_font(size), fill=(10, 10, 10), anchor="mm", stroke_width=max(1, size // 8),
                stroke_fill=(255, 255, 255))
    return tile, mask


def render_scene(spec: Spec) -> Image.Image:
    """The scene as a PIL image."""
    img = _background(spec)
    for obj in spec["objects"]:
        tile, mask = _tile(obj)
        img.paste(tile, tuple(obj["box"][:2]), mask)
    return img


def encode(img: Image.Image, quality: int = JPEG_QUALITY, subsampling: int = 2) -> bytes:
    """JPEG bytes (quality 90 and 4:2:0 chroma unless told), no metadata that varies."""
    buf = io.BytesIO()
    img.save(buf, format="JPEG", quality=quality, subsampling=subsampling, optimize=False)
    return buf.getvalue()


def make_scene(index: int, seed: int, options: Mapping[str, Any] | None = None) -> Scene:
    """Search scene number ``index`` of a run seeded with ``seed`` (pure function)."""
    opts = dict(options or {})
    rng = np.random.default_rng([seed, index, 0x5EA])
    spec = make_spec(rng, int(opts.get("max_side", 4096)), float(opts.get("clutter", 1.0)))
    long = max(spec["size"])
    n = len(spec["objects"])
    level = (spec["target_area"] < 1e-3) + (n > 150) + (long >= 3072)
    return Scene(id=f"search-{stable_id('search', seed, index, opts.get('max_side', 4096))}",
                 family="search", kind=spec["background"]["style"], seed=index,
                 image=encode(render_scene(spec)), spec=spec,
                 difficulty=("easy", "medium", "hard", "hard")[level],
                 target_area=spec["target_area"])


# ---------------------------------------------------------------------------------------------
# Questions: drafted for every type in the order of QUESTIONS (their draws are seeded in that
# order), about one target picked for the scene; then a seeded choice of them is posed.


class SearchFacts(TypedDict, total=False):
    """What a search question is about (read by the scripted teacher)."""

    op: str
    attr: str
    target: SearchObject
    other: SearchObject
    color: str
    shape: str
    pattern: str
    matches: list[Box]  # count: every box of the asked class
    candidates: list[Box]  # exists/no: every object of the asked shape
    options: dict[str, str]


def _describe(obj: SearchObject, without: str | None = None) -> str:
    parts = [] if without == "pattern" else [obj["pattern"]]
    if without != "color":
        parts.append(obj["color"])
    parts.append("shape" if without == "shape" else obj["shape"])
    text = " ".join(parts)
    return text + (f" marked {obj['text']}" if without not in ("text", None) else "")


def _quadrant(spec: Spec, box: Box) -> str:
    w, h = spec["size"]
    cx, cy = (box[0] + box[2]) / 2, (box[1] + box[3]) / 2
    return f"{'top' if cy < h / 2 else 'bottom'}-{'left' if cx < w / 2 else 'right'}"


def _choice(rng: Rng, answer: str, domain: list[str], k: int = 4) -> tuple[str, dict[str, str]]:
    others = [d for d in domain if d != answer]
    picks = [answer] + [others[i] for i in rng.choice(len(others), size=min(k - 1, len(others)),
                                                      replace=False)]
    return letter_options(rng, picks)


def _draft(answer: str, facts: SearchFacts, options: dict[str, str] | None = None,
           grounding: list[Box] | tuple[Box, ...] = (),
           effort: dict[str, Any] | None = None) -> Draft:
    """A search draft: the facts, and the names every search phrasing may use."""
    t, other = facts.get("target"), facts.get("other")
    names = {"attr": facts.get("attr"), "color": facts.get("color"),
             "shape": facts.get("shape"), "pattern": facts.get("pattern"),
             "target": _describe(t, facts.get("attr", "text")) if t else "",
             "full": _describe(t) if t else "", "other": _describe(other) if other else "",
             "named": " ".join(str(facts[k]) for k in ("pattern", "color", "shape")
                               if facts.get(k))}
    return Draft(answer=answer, facts=facts, names=names, options=options,
                 grounding=tuple(tuple(b) for b in grounding),  # type: ignore[misc]
                 effort=effort or {})


def _q_attribute(spec: Spec, rng: Rng, t: SearchObject) -> Draft | None:
    attr = str(rng.choice(["color", "shape", "pattern"]))
    domain = {"color": list(COLORS), "shape": list(SHAPES), "pattern": list(PATTERNS)}[attr]
    if attr == "color":  # no option a reader could take for the answer
        domain = [c for c in domain if c not in NEAR_TWINS.get(t["color"], ())]
    letter, options = _choice(rng, t[attr], domain)  # type: ignore[literal-required]
    return _draft(letter, {"attr": attr, "target": t}, options, [t["box"]])


def _q_read_text(spec: Spec, rng: Rng, t: SearchObject) -> Draft | None:
    return _draft(str(t["text"]), {"target": t}, None, [t["box"]])


def _q_position(spec: Spec, rng: Rng, t: SearchObject) -> Draft | None:
    letter, options = _choice(rng, _quadrant(spec, t["box"]), list(QUADRANTS))
    return _draft(letter, {"target": t}, options, [t["box"]])


def _relation(a: SearchObject, b: SearchObject) -> str | None:
    """Where ``a`` is relative to ``b`` along the axis that dominates; None when neither does
    clearly (a thing both left of and above another is not "left" more than "above")."""
    dx = (a["box"][0] + a["box"][2]) / 2 - (b["box"][0] + b["box"][2]) / 2
    dy = (a["box"][1] + a["box"][3]) / 2 - (b["box"][1] + b["box"][3]) / 2
    if abs(dx) >= RELATION_DOMINANCE * abs(dy):
        return "left" if dx < 0 else "right"
    if abs(dy) >= RELATION_DOMINANCE * abs(dx):
        return "above" if dy < 0 else "below"
    return None


RELATIONS = ("left", "right", "above", "below")
OPPOSITE = {"left": "right", "right": "left", "above": "below", "below": "above"}


def _q_relation(spec: Spec, rng: Rng, t: SearchObject) -> Draft | None:
    targets = [o for o in spec["objects"] if o["role"] == "target"]
    pairs = [(a, b) for a in targets for b in targets if a is not b and _relation(a, b)]
    if not pairs:
        return None
    a, b = pairs[int(rng.integers(len(pairs)))]
    rel = _relation(a, b)
    assert rel is not None
    letter, options = letter_options(rng, [rel, *[r for r in RELATIONS if r != rel]])
    return _draft(letter, {"target": a, "other": b}, options, [a["box"], b["box"]],
                  effort={"steps": 2, "values": 2})


def _confusable(spec: Spec, colour: str, shape: str, pattern: str | None = None) -> bool:
    """Whether a thing in the scene could be taken for a ``colour`` ``shape`` (of ``pattern``)
    without being one: the asked shape in a near-twin colour, or an icon of the asked colour
    whose silhouette passes for the shape."""
    twins = NEAR_TWINS.get(colour, frozenset())
    for o in spec["objects"]:
        if o["shape"] == shape and o["color"] in twins and pattern in (None, o["pattern"]):
            return True
        if o["color"] == colour and shape in LOOKALIKES.get(o["shape"], ()):
            return True
    return False


def _classes(spec: Spec) -> dict[tuple[str, str], list[Box]]:
    classes: dict[tuple[str, str], list[Box]] = {(c, s): [] for c in COLORS for s in SHAPES}
    for o in spec["objects"]:
        if o["shape"] in SHAPES:
            classes[(o["color"], o["shape"])].append(o["box"])
    return classes


def _q_count(spec: Spec, rng: Rng, t: SearchObject) -> Draft | None:
    # The count is drawn first (``COUNT_WEIGHTS``), then a class of that many that
    # nothing in the scene could be mistaken for; a scene without one gets no count question.
    weights = np.asarray(COUNT_WEIGHTS)
    want = int(rng.choice(COUNT_MAX + 1, p=weights / weights.sum()))
    classes = _classes(spec)
    fits = sorted(k for k, v in classes.items() if len(v) == want and not _confusable(spec, *k))
    if not fits:
        return None
    colour, shape = fits[int(rng.integers(len(fits)))]
    boxes = classes[(colour, shape)]
    return _draft(str(len(boxes)), {"color": colour, "shape": shape, "matches": boxes}, None,
                  boxes, effort={"steps": 2, "values": 1, "counted": len(boxes)})


def _q_exists(spec: Spec, rng: Rng, t: SearchObject) -> Draft | None:
    # Half yes (a target), half no (a combination nobody has); either one that nothing in the
    # scene could be taken for.
    if rng.random() < 0.5:
        # The scene's chosen target, or else another that nothing could be taken for; a
        # scene with none asks no existence question (so yes stays as common as no).
        clear = [o for o in spec["objects"] if o["role"] == "target"
                 and not _confusable(spec, o["color"], o["shape"], o["pattern"])]
        if not clear:
            return None
        t = t if t in clear else clear[int(rng.integers(len(clear)))]
        return _draft("yes", {"color": t["color"], "shape": t["shape"], "pattern": t["pattern"],
                              "target": t}, None, [t["box"]], effort={"steps": 2})
    present = {(o["color"], o["shape"], o["pattern"]) for o in spec["objects"]}
    absent = [(c, s, p) for s in SHAPES for c in COLORS for p in PATTERNS
              if (c, s, p) not in present and not _confusable(spec, c, s, p)]
    if not absent:
        return None
    c, s, p = absent[int(rng.integers(len(absent)))]
    cands = [o["box"] for o in spec["objects"] if o["shape"] == s]
    return _draft("no", {"color": c, "shape": s, "pattern": p, "candidates": cands},
                  effort={"steps": 2})


_LOOK = ("crop", "zoom")
# The order is part of the seed: drafts are made, and draw, in this order.
QUESTIONS: dict[str, QuestionType] = {q.name: q for q in (
    QuestionType("attribute", "choice", _LOOK, _q_attribute),
    QuestionType("read_text", "integer", _LOOK, _q_read_text),
    QuestionType("position", "choice", _LOOK, _q_position),
    QuestionType("relation", "choice", _LOOK, _q_relation, harder=True),
    QuestionType("count", "integer", ("draw_box", "count"), _q_count, harder=True),
    QuestionType("exists", "yesno", _LOOK, _q_exists),
)}
"""Every search question type (their ``Effort``: counting and relations take two steps)."""


# ---------------------------------------------------------------------------------------------
# Ambiguity rules: each re-checks, on a posed task, what its draft made sure of.


def _named_class(task: Task) -> tuple[str, str, str | None]:
    f = task.facts
    return f["color"], f["shape"], f.get("pattern") if f["op"] == "exists" else None


def _rule_midline(task: Task) -> bool:
    spec = task.scene.spec
    return not any(_on_midline(o["box"], spec["size"])
                   for o in (task.facts.get("target"), task.facts.get("other")) if o)


def _rule_near_twin(task: Task) -> bool:
    f, spec = task.facts, task.scene.spec
    if f["op"] == "attribute":
        twins = NEAR_TWINS.get(f["target"]["color"], frozenset())
        return f["attr"] != "color" or not twins & set(f["options"].values())
    colour, shape, pattern = _named_class(task)
    twins = NEAR_TWINS.get(colour, frozenset())
    return not any(o["shape"] == shape and o["color"] in twins and pattern in (None, o["pattern"])
                   for o in spec["objects"])


def _rule_lookalike(task: Task) -> bool:
    colour, shape, _ = _named_class(task)
    return not any(o["color"] == colour and shape in LOOKALIKES.get(o["shape"], ())
                   for o in task.scene.spec["objects"])


def _rule_relation_axis(task: Task) -> bool:
    f = task.facts
    return _relation(f["target"], f["other"]) == f["options"][task.answer]


RULES = (
    Rule("midline", "a target asked about by position sits on a midline of the image",
         _rule_midline, frozenset({"position", "relation"})),
    Rule("near_twin_colour", "the asked colour has a near twin (blue/purple, red/orange, ...) "
         "on a thing of the asked shape, or among a colour question's options",
         _rule_near_twin, frozenset({"count", "exists", "attribute"})),
    Rule("lookalike_icon", "an icon of the asked colour passes for the asked shape",
         _rule_lookalike, frozenset({"count", "exists"})),
    Rule("relation_axis", "neither axis clearly dominates between the two things",
         _rule_relation_axis, frozenset({"relation"})),
)
"""The search family's ambiguity checks (the card counts what each rejected)."""


def scene_effort(scene: Scene) -> dict[str, Any]:
    """What a search scene adds to a question's ``Effort``: every other thing in it."""
    return {"distractors": max(0, len(scene.spec["objects"]) - 1)}


def pose(scene: Scene, k: int, only: Collection[str] | None = None) -> list[Task]:
    """Up to ``k`` questions about ``scene``; the boxes a trace must show ride in ``grounding``."""
    spec: Spec = scene.spec
    rng = pose_rng(scene)
    targets = [o for o in spec["objects"] if o["role"] == "target"]
    t = targets[int(rng.integers(len(targets)))]
    drafts = [(q, d) for q in QUESTIONS.values() if only is None or q.name in only
              if (d := q.draft(spec, rng, t)) is not None]
    poser = Poser("search", scene, rng, typed_by_kind=False, scene_effort=scene_effort(scene))
    for i in rng.permutation(len(drafts))[:k]:
        poser.add(*drafts[int(i)])
    return poser.tasks


# ---------------------------------------------------------------------------------------------
# What verification needs: the text printed in a scene, what only the renderer knows, and
# counterfactual twins for the question types whose code prints the answer.


def printed(scene: Scene) -> frozenset[str]:
    """Text printed in the image: numbers on objects, glyph letters, snippets (legible once
    zoomed; the provenance check treats printed text as known)."""
    return frozenset(str(o["text"]) for o in scene.spec["objects"] if o.get("text"))


def secrets(task: Task) -> Secrets:
    """What a trace may not type: the targets' and the asked class's exact boxes, the scene's
    seed and target area, the asked class's count when it is beyond a glance (more than four)
    and the palette's exact colours.

    Counts of four and fewer stay out: the perception contract lets a look count that many.
    Only the boxes that matter for the question are listed (with every distractor's box, any
    code constant would equal some coordinate by chance), and ``target_side`` is left out: it
    is the targets' size before each is jittered, mostly its floor of 24, not a fact a trace
    could use.
    """
    spec, facts = task.scene.spec, task.facts
    objects = spec["objects"]
    boxes = [o["box"] for o in objects if o["role"] == "target"] + list(facts.get("matches", []))
    numbers = {float(v) for box in boxes for v in box}
    numbers |= {float(spec["background"]["seed"]), float(spec["target_area"])}
    if len(facts.get("matches", [])) > 4:
        numbers.add(float(len(facts["matches"])))
    # No names: a search scene's names are the shared vocabulary of colours, shapes and fills
    # (every trace's shape templates and fill labels hold all of them); what identifies a
    # target is its place, which the boxes cover.
    return Secrets(numbers=frozenset(numbers), colours=tuple(COLORS.values()))


# A colour far from each colour (in hue), for recolouring an object out of its class.
_FAR = {"red": "cyan", "cyan": "red", "blue": "yellow", "yellow": "blue", "green": "pink",
        "pink": "green", "orange": "purple", "purple": "orange", "brown": "cyan"}


def twin(task: Task) -> Twin | None:
    """The same question about a changed scene whose answer differs (None where the answer is
    read off a view, or no change fits).

    count: one more member pasted where there is room (or one recoloured out of the class);
    exists: the target recoloured (yes → no) or the asked object pasted (no → yes);
    position: the target stays where it is and the canvas is cropped or extended on the right
    or bottom until its quadrant flips (a look at it stays true); relation: the two targets
    swap places (both stay inside the region that showed them both). Edits are pasted on the
    decoded image, so a twin costs one decode and one encode.
    """
    make = _TWINS.get(task.facts["op"])
    if make is None:
        return None
    made = make(task, np.random.default_rng(int(stable_id(task.id, "twin"), 16)))
    if made is None:
        return None
    image, spec, answer = made
    scene = task.scene
    # A twin is a second JPEG generation of the scene: at quality 95 with full chroma it loses
    # little more, so it differs from the scene in the answer-relevant fact, not in blur.
    return Twin(scene=Scene(id=f"{scene.id}-twin", family=scene.family, kind=scene.kind,
                            seed=scene.seed, image=encode(image, TWIN_QUALITY, 0), spec=spec,
                            difficulty=scene.difficulty, target_area=scene.target_area),
                answer=answer)


_Made = tuple[Image.Image, Spec, str] | None


def _decoded(task: Task) -> Image.Image:
    with Image.open(io.BytesIO(task.scene.image)) as im:
        return im.convert("RGB")


def _paste(img: Image.Image, obj: SearchObject) -> None:
    tile, mask = _tile(obj)
    img.paste(tile, tuple(obj["box"][:2]), mask)


def _erase(img: Image.Image, background: Image.Image, box: Box) -> None:
    """Cover ``box`` with the scene's own background there (it is rendered from the spec)."""
    img.paste(background.crop(tuple(box)), tuple(box[:2]))


def _recolour(spec: Spec, obj: SearchObject) -> tuple[Spec, SearchObject]:
    new: SearchObject = {**obj, "color": _FAR[obj["color"]]}
    objects = [new if o is obj else o for o in spec["objects"]]
    return {**spec, "objects": objects}, new


def _with_new(spec: Spec, rng: Rng, template: SearchObject,
              side: int) -> tuple[Spec, SearchObject] | None:
    box = _place(rng, tuple(spec["size"]), side, [o["box"] for o in spec["objects"]])
    if box is None:
        return None
    new: SearchObject = {**template, "role": "distractor", "text": None, "box": box}
    return {**spec, "objects": [*spec["objects"], new]}, new


def _twin_count(task: Task, rng: Rng) -> _Made:
    f, spec, img = task.facts, task.scene.spec, _decoded(task)
    members = [o for o in spec["objects"] if o["box"] in f["matches"]]
    n = len(f["matches"])
    if not members:  # a count of 0: one of the class pasted in makes it 1
        model: SearchObject = {"shape": f["shape"], "color": f["color"], "pattern": "solid"}
        added = _with_new(spec, rng, model, max(int(spec["target_side"]), 28))
        if added is None:
            return None
        _paste(img, added[1])
        return img, added[0], "1"
    model = members[int(rng.integers(len(members)))]
    added = _with_new(spec, rng, model, model["box"][2] - model["box"][0]) if n < 9 else None
    if added is not None:
        _paste(img, added[1])
        return img, added[0], str(n + 1)
    twin_spec, changed = _recolour(spec, model)
    _paste(img, changed)
    return img, twin_spec, str(n - 1)


def _twin_exists(task: Task, rng: Rng) -> _Made:
    f, spec, img = task.facts, task.scene.spec, _decoded(task)
    if task.answer == "yes":
        target = next(o for o in spec["objects"] if o["box"] == f["target"]["box"])
        twin_spec, changed = _recolour(spec, target)
        _paste(img, changed)
        return img, twin_spec, "no"
    model: SearchObject = {"shape": f["shape"], "color": f["color"], "pattern": f["pattern"]}
    added = _with_new(spec, rng, model, max(int(spec["target_side"]), 28))
    if added is None:
        return None
    _paste(img, added[1])
    return img, added[0], "yes"


def _twin_position(task: Task, rng: Rng) -> _Made:
    f, spec = task.facts, task.scene.spec
    x0, y0, x1, y1 = f["target"]["box"]
    w, h = spec["size"]
    # Per axis: crop the far side to just short of twice the centre (the centre then lies in
    # the far half), or extend it to just past twice the centre; the smaller change wins.
    sizes = []
    for along, (lo, hi, full) in enumerate(((x0, x1, w), (y0, y1, h))):
        centre2 = lo + hi
        new = centre2 + 4 if centre2 >= full else centre2 - 4
        if new > hi + 4 and new >= 64:
            sizes.append((abs(new - full), along, new))
    if not sizes:
        return None
    _, along, new = min(sizes)
    size = [w, h]
    size[along] = new
    arr = np.asarray(_decoded(task))
    if new < (w, h)[along]:
        arr = arr[:, :new] if along == 0 else arr[:new]
    else:
        grow = new - (w, h)[along]
        arr = np.pad(arr, ((0, grow * along), (0, grow * (1 - along)), (0, 0)), mode="edge")
    inside = [o for o in spec["objects"] if o["box"][2] <= size[0] and o["box"][3] <= size[1]]
    twin_spec: Spec = {**spec, "size": size, "objects": inside}
    quadrant = _quadrant(twin_spec, f["target"]["box"])
    letter = next(k for k, v in f["options"].items() if v == quadrant)
    return Image.fromarray(np.ascontiguousarray(arr)), twin_spec, letter


def _twin_relation(task: Task, rng: Rng) -> _Made:
    f, spec, img = task.facts, task.scene.spec, _decoded(task)
    a = next(o for o in spec["objects"] if o["box"] == f["target"]["box"])
    b = next(o for o in spec["objects"] if o["box"] == f["other"]["box"])
    # Each keeps its size and takes the other's centre, so their centres swap exactly.
    a_moved: SearchObject = {**a, "box": _centred(a["box"], b["box"], spec["size"])}
    b_moved: SearchObject = {**b, "box": _centred(b["box"], a["box"], spec["size"])}
    background = _background(spec)
    for obj in (a, b):
        _erase(img, background, obj["box"])
    for obj in (a_moved, b_moved):
        _paste(img, obj)
    objects = [a_moved if o is a else b_moved if o is b else o for o in spec["objects"]]
    swapped = OPPOSITE[f["options"][task.answer]]
    letter = next(k for k, v in f["options"].items() if v == swapped)
    return img, {**spec, "objects": objects}, letter


def _centred(box: Box, on: Box, size: Sequence[int]) -> Box:
    """``box`` moved so that its centre is ``on``'s (kept inside the canvas)."""
    side = box[2] - box[0]
    x = min(max(0, (on[0] + on[2] - side) // 2), size[0] - side)
    y = min(max(0, (on[1] + on[3] - side) // 2), size[1] - side)
    return [x, y, x + side, y + side]


_TWINS = {"count": _twin_count, "exists": _twin_exists, "position": _twin_position,
          "relation": _twin_relation}

FAMILY = Family(name="search", kinds={b: tuple(QUESTIONS) for b in BACKGROUNDS},
                questions=QUESTIONS, make_scene=make_scene, pose=pose, printed=printed,
                secrets=secrets, twin=twin, rules=RULES, scene_effort=scene_effort)
