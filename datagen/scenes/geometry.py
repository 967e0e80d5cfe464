"""Geometry family: constructions drawn to scale with PIL, questions with exact sympy answers.

Nine constructions (right triangle, general triangle, isosceles/equilateral, circle, regular
polygon, composite rectangle, parallel lines cut by a transversal, coordinate plane, similar
triangles). Each builder returns the figure (points in math units, segments, marks, labels) and
the numbers given on it; questions compute their gold answers with sympy from those numbers and
carry them exactly (``5*sqrt(3)``, ``25*pi``, ``3/4``) and as a float.

Adding a construction is one row of ``CONSTRUCTIONS`` (builder, difficulty) and its question
types; adding a question type is one ``QuestionType`` in ``QUESTIONS`` with its phrasings in
``templates/questions/geometry.yaml`` and its method in ``templates/teacher/geometry.yaml``.
"""

from __future__ import annotations

import functools
import io
import math
import re
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass
from typing import Any, TypedDict

import numpy as np
import sympy as sp
from matplotlib import font_manager
from PIL import Image, ImageDraw, ImageFont

from datagen.records import AnswerType, Scene, Task, stable_id
from datagen.scenes.base import (
    DIFFICULTIES,
    Draft,
    Family,
    Poser,
    QuestionType,
    Rule,
    Secrets,
    Twin,
    pose_rng,
)

__all__ = ["CONSTRUCTIONS", "COUNTED", "EFFORT", "FAMILY", "QUESTIONS", "RELATED", "RULES",
           "Construction", "GeometrySpec", "collisions", "labels", "make_scene", "pose", "printed",
           "render_figure", "secrets", "twin"]


class GeometrySpec(TypedDict, total=False):
    """A figure: points in math units, what is drawn between them, and the numbers given.

    ``pixels`` (each point's pixel position) and ``label_boxes`` are added by ``make_scene``
    after rendering; ``given`` holds the numbers printed on the figure, by name; ``figures``
    (similar triangles) groups the points of separate figures, whose labels face outward from
    their own figure.
    """

    construction: str
    mode: str
    points: dict[str, list[float]]
    segments: list[list[str]]
    dashed: list[list[str]]
    circles: list[list[Any]]
    side_labels: list[list[str]]
    angle_labels: list[list[str]]
    right_angles: list[list[str]]
    ticks: list[list[Any]]
    arrows: list[list[Any]]
    shade: list[list[str]]
    unshade_circle: list[Any] | None
    grid: list[int] | None
    coord_labels: bool
    given: dict[str, Any]
    labelled: list[str]
    size: list[int]
    scale: float
    turn: float
    pixels: dict[str, list[float]]
    label_boxes: list[list[float]]
    figures: list[list[str]]


Spec = GeometrySpec
Rng = np.random.Generator
MARGIN = 80
_DRAW_TRIES = 80  # figures drawn until no label collides (the rule "label_collision" rechecks)
POLYGON_SIDES = (5, 6, 8, 10, 12)
MAX_LETTERED = 8  # polygons with more vertices than this carry no vertex letters
RELATIONS = ("alternate", "corresponding", "co_interior")
# Where the angle marked "?" sits at Q for each relation to the given angle L1-P-V.
_RELATION_ANGLE = {"alternate": ["R2", "Q", "U"], "corresponding": ["L2", "Q", "V"],
                   "co_interior": ["L2", "Q", "U"]}
INK = (20, 20, 20)
MARK = (40, 90, 200)
SHADE = (200, 200, 200)
GRID = (225, 225, 225)
AXIS = (110, 110, 110)
GRID_TEXT = (90, 90, 90)


@functools.cache
def _font(size: int) -> ImageFont.FreeTypeFont:
    return ImageFont.truetype(font_manager.findfont("DejaVu Sans"), size)


def _deg(x: float) -> str:
    return f"{x:g}°"


def _decimal(value: sp.Rational) -> str:
    """A printed length as a reader writes it: ``7``, ``17.5`` (never a fraction)."""
    return format(float(value), "g") if not value.is_integer else str(int(value))


# ---------------------------------------------------------------------------------------------
# Constructions: each returns a spec with math coordinates and the given values.


def _base(construction: str, points: dict[str, tuple[float, float]]) -> Spec:
    return {"construction": construction, "points": {k: [float(x), float(y)] for k, (x, y)
                                                      in points.items()},
            "segments": [], "dashed": [], "circles": [], "side_labels": [], "angle_labels": [],
            "right_angles": [], "ticks": [], "arrows": [], "shade": [], "unshade_circle": None,
            "grid": None, "given": {}, "labelled": list(points)}


def _rotate(spec: Spec, rng: Rng) -> None:
    """Turn the figure by a random angle so the same construction is not always upright."""
    t = float(rng.uniform(0, 2 * math.pi))
    c, s = math.cos(t), math.sin(t)
    spec["points"] = {k: [c * x - s * y, s * x + c * y] for k, (x, y) in spec["points"].items()}


def _right_triangle(rng: Rng) -> Spec:
    mode = str(rng.choice(["legs", "leg_hyp"]))
    if mode == "legs":
        a, b = (int(v) for v in rng.integers(3, 13, size=2))
        c_len = math.hypot(a, b)
    else:
        # Primitive triples only: each gives its own sine (3-4-5 and 6-8-10 both gave 4/5).
        tri = [(3, 4, 5), (5, 12, 13), (8, 15, 17), (7, 24, 25), (20, 21, 29), (9, 40, 41)]
        a, b, c = tri[rng.integers(len(tri))]
        a, b = (a, b) if rng.random() < 0.5 else (b, a)
        c_len = c
    spec = _base("right_triangle", {"C": (0, 0), "B": (a, 0), "A": (0, b)})
    spec["segments"] = [["A", "B"], ["B", "C"], ["C", "A"]]
    spec["right_angles"] = [["B", "C", "A"]]
    if mode == "legs":
        spec["side_labels"] = [["B", "C", str(a)], ["C", "A", str(b)]]
        spec["given"] = {"a": a, "b": b}
    else:
        spec["side_labels"] = [["B", "C", str(a)], ["A", "B", str(int(c_len))]]
        spec["given"] = {"a": a, "c": int(c_len)}
    spec["mode"] = mode
    _rotate(spec, rng)
    return spec


def _general_triangle(rng: Rng) -> Spec:
    mode = str(rng.choice(["angles", "sas", "sss"]))
    if mode == "angles":
        while True:
            al, be = (int(v) for v in rng.integers(6, 20, size=2) * 5)
            if al + be <= 140:
                break
        c = 8.0
        ga = 180 - al - be
        b = c * math.sin(math.radians(be)) / math.sin(math.radians(ga))
        pts = {"A": (0, 0), "B": (c, 0),
               "C": (b * math.cos(math.radians(al)), b * math.sin(math.radians(al)))}
        spec = _base("general_triangle", {**pts, "D": _extend(pts["B"], pts["C"], 0.45)})
        spec["segments"] = [["A", "B"], ["B", "C"], ["C", "A"]]
        spec["dashed"] = [["C", "D"]]
        spec["angle_labels"] = [["B", "A", "C", _deg(al)], ["C", "B", "A", _deg(be)]]
        spec["given"] = {"alpha": al, "beta": be}
    else:
        if mode == "sas":
            b, c = (int(v) for v in rng.integers(3, 11, size=2))
            al = int(rng.choice([30, 45, 60, 90, 120, 135]))
        else:
            while True:
                a, b, c = (int(v) for v in rng.integers(4, 13, size=3))
                if a + b > c + 1 and a + c > b + 1 and b + c > a + 1:
                    break
            al = math.degrees(math.acos((b * b + c * c - a * a) / (2 * b * c)))
        pts = {"A": (0, 0), "B": (c, 0),
               "C": (b * math.cos(math.radians(al)), b * math.sin(math.radians(al)))}
        spec = _base("general_triangle", pts)
        spec["segments"] = [["A", "B"], ["B", "C"], ["C", "A"]]
        spec["side_labels"] = [["A", "B", str(c)], ["C", "A", str(b)]]
        if mode == "sas":
            spec["angle_labels"] = [["B", "A", "C", _deg(al)]]
            spec["given"] = {"b": b, "c": c, "alpha": al}
        else:
            spec["side_labels"].append(["B", "C", str(a)])
            spec["given"] = {"a": a, "b": b, "c": c}
    spec["mode"] = mode
    _rotate(spec, rng)
    return spec


def _extend(p: tuple[float, float], q: tuple[float, float], f: float) -> tuple[float, float]:
    """The point beyond ``q`` on line pq, ``f`` times |pq| further."""
    return q[0] + (q[0] - p[0]) * f, q[1] + (q[1] - p[1]) * f


def _isosceles(rng: Rng) -> Spec:
    mode = str(rng.choice(["isosceles", "equilateral"]))
    s = int(rng.integers(4, 13))
    apex = 60 if mode == "equilateral" else int(rng.integers(10, 71)) * 2
    half = math.radians(apex / 2)
    pts = {"A": (0, s * math.cos(half)), "B": (-s * math.sin(half), 0),
           "C": (s * math.sin(half), 0)}
    spec = _base("isosceles", pts)
    spec["segments"] = [["A", "B"], ["B", "C"], ["C", "A"]]
    spec["ticks"] = [["A", "B", 1], ["A", "C", 1]] + ([["B", "C", 1]] if apex == 60 else [])
    if mode == "equilateral":
        spec["side_labels"] = [["B", "C", str(s)]]
        spec["given"] = {"s": s}
    else:
        spec["angle_labels"] = [["B", "A", "C", _deg(apex)]]
        spec["given"] = {"apex": apex}
    spec["mode"] = mode
    _rotate(spec, rng)
    return spec


def _circle(rng: Rng) -> Spec:
    mode = str(rng.choice(["radius", "angles", "tangent"]))
    r = int(rng.integers(3, 11))
    if mode == "radius":
        t = float(rng.uniform(0, 2 * math.pi))
        spec = _base("circle", {"O": (0, 0), "P": (r * math.cos(t), r * math.sin(t))})
        spec["segments"] = [["O", "P"]]
        spec["side_labels"] = [["O", "P", str(r)]]
        spec["given"] = {"r": r}
    elif mode == "angles":
        theta = int(rng.choice([40, 60, 80, 90, 100, 120, 140]))
        t0 = float(rng.uniform(0, 2 * math.pi))
        t1 = t0 + math.radians(theta)
        tc = t0 + math.radians(theta) + math.radians((360 - theta) / 2)
        pts = {"O": (0, 0), "A": (r * math.cos(t0), r * math.sin(t0)),
               "B": (r * math.cos(t1), r * math.sin(t1)), "C": (r * math.cos(tc), r * math.sin(tc))}
        spec = _base("circle", pts)
        spec["segments"] = [["O", "A"], ["O", "B"], ["A", "C"], ["B", "C"], ["A", "B"]]
        spec["angle_labels"] = [["A", "O", "B", _deg(theta)]]
        spec["side_labels"] = [["O", "A", str(r)]]
        spec["given"] = {"r": r, "theta": theta}
    else:
        d = r + int(rng.integers(2, 9))
        tt = math.acos(r / d)
        pts = {"O": (0, 0), "P": (d, 0), "T": (r * math.cos(tt), r * math.sin(tt))}
        spec = _base("circle", pts)
        spec["segments"] = [["O", "P"], ["O", "T"], ["T", "P"]]
        spec["right_angles"] = [["O", "T", "P"]]
        spec["side_labels"] = [["O", "T", str(r)], ["O", "P", str(d)]]
        spec["given"] = {"r": r, "d": d}
        _rotate(spec, rng)
    spec["circles"] = [["O", r]]
    spec["mode"] = mode
    return spec


def _polygon(rng: Rng) -> Spec:
    n = int(rng.choice(POLYGON_SIDES))
    s = int(rng.integers(2, 11))
    return _polygon_spec(n, s, float(rng.uniform(0, 2 * math.pi)))


def _polygon_spec(n: int, s: int, t0: float) -> Spec:
    """A regular ``n``-gon of side ``s`` turned by ``t0``: one side marked, the rest ticked."""
    big_r = s / (2 * math.sin(math.pi / n))
    names = "ABCDEFGHIJKL"[:n]
    pts = {names[i]: (big_r * math.cos(t0 + 2 * math.pi * i / n),
                      big_r * math.sin(t0 + 2 * math.pi * i / n)) for i in range(n)}
    spec = _base("polygon", pts)
    spec["segments"] = [[names[i], names[(i + 1) % n]] for i in range(n)]
    spec["ticks"] = [[names[i], names[(i + 1) % n], 1] for i in range(n)]
    spec["side_labels"] = [[names[0], names[1], str(s)]]
    spec["labelled"] = list(names) if n <= MAX_LETTERED else []
    spec["given"] = {"n": n, "s": s}
    spec["turn"] = t0
    return spec


def _composite(rng: Rng) -> Spec:
    w, h = int(rng.integers(6, 15)), int(rng.integers(2, 6)) * 2
    pts = {"A": (0, 0), "B": (w, 0), "C": (w, h), "D": (0, h), "M": (w, h / 2)}
    spec = _base("composite", pts)
    spec["segments"] = [["A", "B"], ["B", "C"], ["C", "D"], ["D", "A"]]
    spec["shade"] = [["A", "B", "C", "D"]]
    spec["unshade_circle"] = ["M", h / 2]  # a semicircle cut out of the right side
    spec["side_labels"] = [["A", "B", str(w)], ["B", "C", str(h)]]
    spec["labelled"] = ["A", "B", "C", "D"]
    spec["given"] = {"w": w, "h": h}
    return spec


def _parallel(rng: Rng) -> Spec:
    x = int(rng.choice([v for v in range(35, 165, 5) if v != 90]))
    # Co-interior (answer 180 - x) half the time, so the answer is x as often as 180 - x.
    return _parallel_spec(x, str(rng.choice(RELATIONS, p=[0.25, 0.25, 0.5])))


def _parallel_spec(x: int, relation: str) -> Spec:
    """Two parallel lines cut by a transversal at ``x``°; the angle marked "?" is ``relation``
    to the given one."""
    gap = 5.0
    t = math.radians(x)
    dx = gap / math.tan(t)
    # The parallel lines reach well past both crossings on either side.
    left, right = min(4.0, 4.0 - dx) - 5.0, max(4.0, 4.0 - dx) + 6.0
    pts = {"P": (4.0, gap), "Q": (4.0 - dx, 0.0),
           "L1": (left, gap), "R1": (right, gap), "L2": (left, 0.0), "R2": (right, 0.0),
           "U": _extend((4.0 - dx, 0.0), (4.0, gap), 0.35),
           "V": _extend((4.0, gap), (4.0 - dx, 0.0), 0.35)}
    spec = _base("parallel", pts)
    spec["segments"] = [["L1", "R1"], ["L2", "R2"], ["U", "V"]]
    spec["arrows"] = [["L1", "R1", 1], ["L2", "R2", 1]]
    # The given angle lies between the lines, left of the transversal; the asked one, marked
    # "?", sits where the relation says.
    spec["angle_labels"] = [["L1", "P", "V", _deg(x)], [*_RELATION_ANGLE[relation], "?"]]
    spec["labelled"] = ["P", "Q"]
    spec["given"] = {"x": x}
    spec["mode"] = relation
    return spec


def _coordinate(rng: Rng) -> Spec:
    while True:
        pts = [tuple(int(v) for v in rng.integers(0, 11, size=2)) for _ in range(3)]
        (ax, ay), (bx, by), (cx, cy) = pts
        area2 = abs((bx - ax) * (cy - ay) - (cx - ax) * (by - ay))
        if len(set(pts)) == 3 and area2 >= 8 and ax != bx and min(
                math.dist(p, q) for p in pts for q in pts if p != q) >= 3:
            break
    spec = _base("coordinate", {"A": pts[0], "B": pts[1], "C": pts[2]})
    spec["segments"] = [["A", "B"], ["B", "C"], ["C", "A"]]
    spec["grid"] = [0, 10]
    spec["coord_labels"] = True
    spec["given"] = {"A": list(pts[0]), "B": list(pts[1]), "C": list(pts[2])}
    return spec


def _similar(rng: Rng) -> Spec:
    a, b, c = [(3, 4, 5), (5, 6, 7), (4, 6, 8), (6, 7, 9), (5, 8, 9)][rng.integers(5)]
    k = sp.Rational(int(rng.integers(3, 10)), 2)
    al = math.acos((b * b + c * c - a * a) / (2 * b * c))
    small = {"A": (0, 0), "B": (c, 0), "C": (b * math.cos(al), b * math.sin(al))}
    # A gap of 30 % of the big base: at 2.5 units the letters B and D ran into each other.
    off = c + max(2.5, 0.3 * float(k) * c)
    kf = float(k)
    big = {"D": (off, 0), "E": (off + c * kf, 0),
           "F": (off + b * kf * math.cos(al), b * kf * math.sin(al))}
    spec = _base("similar", {**small, **big})
    spec["figures"] = [list(small), list(big)]
    spec["segments"] = [["A", "B"], ["B", "C"], ["C", "A"], ["D", "E"], ["E", "F"], ["F", "D"]]
    # k is a half-integer: the side prints as a decimal ("17.5"), never as "35/2".
    spec["side_labels"] = [["A", "B", str(c)], ["B", "C", str(a)], ["D", "E", _decimal(k * c)],
                           ["E", "F", "?"]]
    spec["given"] = {"c": c, "a": a, "c2": _decimal(k * c)}
    return spec


@dataclass(frozen=True, slots=True)
class Construction:
    """One kind of figure: its builder and its scene difficulty (an index of DIFFICULTIES)."""

    name: str
    build: Callable[[Rng], Spec]
    level: int


# The order is part of the seed: make_scene draws a construction by its place here.
CONSTRUCTIONS: dict[str, Construction] = {c.name: c for c in (
    Construction("right_triangle", _right_triangle, 0),
    Construction("general_triangle", _general_triangle, 2),
    Construction("isosceles", _isosceles, 0),
    Construction("circle", _circle, 0),
    Construction("polygon", _polygon, 0),
    Construction("composite", _composite, 1),
    Construction("parallel", _parallel, 1),
    Construction("coordinate", _coordinate, 1),
    Construction("similar", _similar, 1),
)}


# ---------------------------------------------------------------------------------------------
# Rendering


def _fit(spec: Spec) -> dict[str, tuple[float, float]]:
    """Pixel positions of every point: uniform scale (drawn to scale), centred, y up."""
    w, h = spec["size"]
    xs = [p[0] for p in spec["points"].values()]
    ys = [p[1] for p in spec["points"].values()]
    for name, r in spec["circles"]:
        cx, cy = spec["points"][name]
        xs += [cx - r, cx + r]
        ys += [cy - r, cy + r]
    if spec["grid"]:
        lo, hi = spec["grid"]
        xs += [lo - 0.5, hi + 0.5]
        ys += [lo - 0.5, hi + 0.5]
    dx, dy = max(xs) - min(xs) or 1.0, max(ys) - min(ys) or 1.0
    scale = min((w - 2 * MARGIN) / dx, (h - 2 * MARGIN) / dy)
    ox = (w - scale * dx) / 2 - scale * min(xs)
    oy = (h + scale * dy) / 2 + scale * min(ys)
    spec["scale"] = scale
    return {k: (ox + scale * x, oy - scale * y) for k, (x, y) in spec["points"].items()}


def _away(p: tuple[float, float], centre: tuple[float, float], dist: float) -> tuple[float, float]:
    vx, vy = p[0] - centre[0], p[1] - centre[1]
    n = math.hypot(vx, vy)
    if n < 1e-6:  # the point is the centre (circle O with a 120° central angle): go below
        vx, vy, n = 0.0, 1.0, 1.0
    return p[0] + vx / n * dist, p[1] + vy / n * dist


def _text(draw: ImageDraw.ImageDraw, xy: tuple[float, float], text: str, size: int,
          fill: tuple[int, int, int] = INK) -> tuple[float, float, float, float]:
    font = _font(size)
    box = draw.textbbox(xy, text, font=font, anchor="mm")
    draw.rectangle(box, fill="white")
    draw.text(xy, text, font=font, fill=fill, anchor="mm")
    return box


def render_figure(spec: Spec, compress_level: int = 6
                  ) -> tuple[bytes, dict[str, list[float]], list[list[float]]]:
    """Draw ``spec``; returns PNG bytes, pixel positions and the label boxes drawn.

    ``compress_level`` is zlib's (twins, made for every verified try, use 1: twice as fast).
    """
    w, h = spec["size"]
    px = _fit(spec)
    img = Image.new("RGB", (w, h), "white")
    d = ImageDraw.Draw(img)
    lw = 3
    if spec["grid"]:
        _draw_grid(d, spec, px)
    for poly in spec["shade"]:
        d.polygon([px[n] for n in poly], fill=SHADE)
    if spec["unshade_circle"]:
        name, r = spec["unshade_circle"]
        cx, cy = px[name]
        rr = r * spec["scale"]
        d.pieslice([cx - rr, cy - rr, cx + rr, cy + rr], 90, 270, fill="white", outline=INK,
                   width=lw)
    for name, r in spec["circles"]:
        cx, cy = px[name]
        rr = r * spec["scale"]
        d.ellipse([cx - rr, cy - rr, cx + rr, cy + rr], outline=INK, width=lw)
    for a, b in spec["segments"]:
        d.line([px[a], px[b]], fill=INK, width=lw)
    for a, b in spec["dashed"]:
        _dashed(d, px[a], px[b])
    for a, b, n in spec["ticks"]:
        _ticks(d, px[a], px[b], n)
    for a, b, _count in spec["arrows"]:
        _arrow(d, px[a], px[b])
    for p, v, q in spec["right_angles"]:
        _right_mark(d, px[p], px[v], px[q])
    boxes: list[list[float]] = []
    everything = tuple(np.mean([px[n] for n in spec["points"]], axis=0))
    # Labels go outward from the centre of the figure they belong to (similar triangles are two).
    centres = {n: tuple(np.mean([px[m] for m in fig], axis=0))
               for fig in spec.get("figures", []) for n in fig}

    def centre(name: str) -> tuple[float, ...]:
        return centres.get(name, everything)

    for p, v, q, text in spec["angle_labels"]:
        boxes.append(list(_angle_mark(d, px[p], px[v], px[q], text)))
    for a, b, text in spec["side_labels"]:
        boxes.append(list(_side_label(d, px[a], px[b], text, centre(a))))
    lines = _lines(spec, px)
    # A vertex with an angle mark: its letter goes beyond the mark's arc (radius 26 px), on
    # the side away from the marked angle (its arms' mean direction, reversed).
    arced = {v: ((px[a][0] + px[b][0]) / 2, (px[a][1] + px[b][1]) / 2)
             for a, v, b, _ in spec["angle_labels"]}
    for name in spec["labelled"]:
        x, y = px[name]
        d.ellipse([x - 4, y - 4, x + 4, y + 4], fill=INK)
        label = name
        if spec.get("coord_labels"):
            gx, gy = spec["given"][name]
            label = f"{name}({gx}, {gy})"
        away_from = arced.get(name, centre(name))
        spot = _letter_spot(d, (x, y), away_from, label, boxes, lines,
                            extra=18 if name in arced else 0)
        boxes.append(list(_text(d, spot, label, 20)))
    buf = io.BytesIO()
    img.save(buf, format="PNG", optimize=False, compress_level=compress_level)
    return buf.getvalue(), {k: [round(x, 2), round(y, 2)] for k, (x, y) in px.items()}, boxes


def _lines(spec: Spec, px: dict[str, tuple[float, float]]) -> list[tuple[tuple[float, float],
                                                                      tuple[float, float]]]:
    """The straight lines drawn (segments and dashed ones), in pixels."""
    return [(px[a], px[b]) for a, b in spec["segments"] + spec["dashed"]]


def _letter_spot(d: ImageDraw.ImageDraw, p: tuple[float, float], centre: tuple[float, ...],
                 label: str, boxes: list[list[float]],
                 lines: list[tuple[tuple[float, float], tuple[float, float]]],
                 extra: float = 0.0) -> tuple[float, float]:
    """Where a vertex letter goes: away from its figure's centre, or turned from there in
    steps of 45° until its text box is clear of every line and label (measured, not guessed:
    a letter on the transversal or under a side's number is a collision)."""
    dist = 24 + 3 * len(label) + extra
    away = _away(p, centre, 1.0)
    base = math.atan2(away[1] - p[1], away[0] - p[0])
    font = _font(20)
    first = None
    for turn in (0, 45, -45, 90, -90, 135, -135, 180):
        t = base + math.radians(turn)
        spot = (p[0] + dist * math.cos(t), p[1] + dist * math.sin(t))
        box = list(d.textbbox(spot, label, font=font, anchor="mm"))
        first = first or spot
        if not _box_collides(box, boxes, lines):
            return spot
    return first


def _box_collides(box: list[float] | tuple[float, ...], boxes: list[list[float]],
                  lines: list[tuple[tuple[float, float], tuple[float, float]]],
                  pad: float = 2.0) -> bool:
    """Whether a label's box overlaps another label's or is crossed by a drawn line."""
    x0, y0, x1, y1 = box
    for a0, b0, a1, b1 in boxes:
        if x0 < a1 and a0 < x1 and y0 < b1 and b0 < y1:
            return True
    return any(_crosses(a, b, (x0 - pad, y0 - pad, x1 + pad, y1 + pad)) for a, b in lines)


def _crosses(a: tuple[float, float], b: tuple[float, float],
             box: tuple[float, float, float, float]) -> bool:
    """Whether segment ab passes through ``box`` (Liang-Barsky clipping)."""
    x0, y0, x1, y1 = box
    dx, dy = b[0] - a[0], b[1] - a[1]
    lo, hi = 0.0, 1.0
    for p, q in ((-dx, a[0] - x0), (dx, x1 - a[0]), (-dy, a[1] - y0), (dy, y1 - a[1])):
        if p == 0:
            if q < 0:
                return False
            continue
        r = q / p
        if p < 0:
            lo = max(lo, r)
        else:
            hi = min(hi, r)
        if lo > hi:
            return False
    return True


def _draw_grid(d: ImageDraw.ImageDraw, spec: Spec, px: dict[str, tuple[float, float]]) -> None:
    lo, hi = spec["grid"]
    s = spec["scale"]
    ax, ay = px["A"]
    gx, gy = spec["points"]["A"]
    x0, y0 = ax - gx * s, ay + gy * s  # pixel of the origin
    for v in range(lo, hi + 1):
        d.line([(x0 + v * s, y0 - lo * s), (x0 + v * s, y0 - hi * s)], fill=GRID)
        d.line([(x0 + lo * s, y0 - v * s), (x0 + hi * s, y0 - v * s)], fill=GRID)
        if v % 2 == 0:
            _text(d, (x0 + v * s, y0 + 14), str(v), 13, GRID_TEXT)
            if v:
                _text(d, (x0 - 14, y0 - v * s), str(v), 13, GRID_TEXT)
    d.line([(x0 + lo * s, y0), (x0 + hi * s, y0)], fill=AXIS, width=2)
    d.line([(x0, y0 - lo * s), (x0, y0 - hi * s)], fill=AXIS, width=2)


def _unit(a: tuple[float, float], b: tuple[float, float]) -> tuple[float, float]:
    n = math.dist(a, b) or 1.0
    return (b[0] - a[0]) / n, (b[1] - a[1]) / n


def _dashed(d: ImageDraw.ImageDraw, a: tuple[float, float], b: tuple[float, float]) -> None:
    ux, uy = _unit(a, b)
    n = int(math.dist(a, b) // 12)
    for i in range(n):
        s, e = i * 12, i * 12 + 7
        d.line([(a[0] + ux * s, a[1] + uy * s), (a[0] + ux * e, a[1] + uy * e)], fill=INK,
               width=2)


def _ticks(d: ImageDraw.ImageDraw, a: tuple[float, float], b: tuple[float, float],
           n: int) -> None:
    ux, uy = _unit(a, b)
    mx, my = (a[0] + b[0]) / 2, (a[1] + b[1]) / 2
    for i in range(n):
        off = (i - (n - 1) / 2) * 6
        cx, cy = mx + ux * off, my + uy * off
        d.line([(cx - uy * 8, cy + ux * 8), (cx + uy * 8, cy - ux * 8)], fill=MARK, width=2)


def _arrow(d: ImageDraw.ImageDraw, a: tuple[float, float], b: tuple[float, float]) -> None:
    ux, uy = _unit(a, b)
    # Near the right end: at 0.8 a steep transversal put the arrow on the angle mark at Q.
    mx, my = a[0] + (b[0] - a[0]) * 0.9, a[1] + (b[1] - a[1]) * 0.9
    tip = (mx + ux * 8, my + uy * 8)
    d.polygon([tip, (mx - ux * 6 - uy * 7, my - uy * 6 + ux * 7),
               (mx - ux * 6 + uy * 7, my - uy * 6 - ux * 7)], fill=MARK)


def _right_mark(d: ImageDraw.ImageDraw, p: tuple[float, float], v: tuple[float, float],
                q: tuple[float, float]) -> None:
    (ax, ay), (bx, by) = _unit(v, p), _unit(v, q)
    k = 16
    pts = [(v[0] + ax * k, v[1] + ay * k), (v[0] + (ax + bx) * k, v[1] + (ay + by) * k),
           (v[0] + bx * k, v[1] + by * k)]
    d.line(pts, fill=MARK, width=2)


def _angle_mark(d: ImageDraw.ImageDraw, p: tuple[float, float], v: tuple[float, float],
                q: tuple[float, float], text: str) -> tuple[float, float, float, float]:
    a1 = math.degrees(math.atan2(p[1] - v[1], p[0] - v[0]))
    a2 = math.degrees(math.atan2(q[1] - v[1], q[0] - v[0]))
    span = (a2 - a1) % 360
    start, end = (a1, a1 + span) if span <= 180 else (a2, a2 + 360 - span)
    r = 26
    d.arc([v[0] - r, v[1] - r, v[0] + r, v[1] + r], start, end, fill=MARK, width=2)
    mid = math.radians((start + end) / 2)
    # Out along the bisector until the text clears both arms (a narrow angle pushes it out).
    rays = [(v, p), (v, q)]
    font = _font(18)
    dist = 50.0
    while dist < 140:
        spot = (v[0] + dist * math.cos(mid), v[1] + dist * math.sin(mid))
        if not _box_collides(d.textbbox(spot, text, font=font, anchor="mm"), [], rays):
            break
        dist += 6
    return _text(d, (v[0] + dist * math.cos(mid), v[1] + dist * math.sin(mid)), text, 18, MARK)


def _side_label(d: ImageDraw.ImageDraw, a: tuple[float, float], b: tuple[float, float],
                text: str, centre: tuple[float, ...]) -> tuple[float, float, float, float]:
    mid = ((a[0] + b[0]) / 2, (a[1] + b[1]) / 2)
    ux, uy = _unit(a, b)
    n1 = (mid[0] - uy * 22, mid[1] + ux * 22)
    n2 = (mid[0] + uy * 22, mid[1] - ux * 22)
    spot = max(n1, n2, key=lambda p: math.dist(p, centre))
    return _text(d, spot, text, 19)


def collisions(spec: Spec) -> int:
    """How many of a rendered figure's labels collide: leave the canvas, overlap another
    label, or are crossed by a drawn line (a "3" printed over the letter "B", a letter on
    the transversal). Figures are drawn again until there are none."""
    px = {k: (float(x), float(y)) for k, (x, y) in spec["pixels"].items()}
    lines = _lines(spec, px)
    boxes = spec["label_boxes"]
    w, h = spec["size"]
    out = 0
    for i, box in enumerate(boxes):
        outside = box[0] < 2 or box[1] < 2 or box[2] > w - 2 or box[3] > h - 2
        out += outside or _box_collides(box, boxes[:i] + boxes[i + 1:], lines)
    return out


# ---------------------------------------------------------------------------------------------
# Scenes


def make_scene(index: int, seed: int, options: Mapping[str, Any] | None = None) -> Scene:
    """Geometry scene number ``index`` of a run seeded with ``seed`` (pure; no options apply)."""
    rng = np.random.default_rng([seed, index, 0x6E0])
    construction = list(CONSTRUCTIONS.values())[int(rng.integers(len(CONSTRUCTIONS)))]
    mode: str | None = None
    drawn: tuple[Spec, bytes] | None = None
    for _attempt in range(_DRAW_TRIES):
        spec = construction.build(rng)
        # A redraw keeps the first draw's mode: a mode whose figures collide more often would
        # otherwise be asked about less.
        mode = spec.get("mode") if drawn is None else mode
        if spec.get("mode") != mode:
            continue
        spec["size"] = [int(rng.integers(56, 73)) * 10, int(rng.integers(50, 65)) * 10]
        png, px, boxes = render_figure(spec)
        spec["pixels"] = px
        spec["label_boxes"] = boxes
        drawn = spec, png
        if not collisions(spec):
            break
    assert drawn is not None  # the first draw always sets the mode it is then kept to
    spec, png = drawn
    return Scene(id=f"geometry-{stable_id('geometry', seed, index)}", family="geometry",
                 kind=construction.name, seed=index, image=png, spec=spec,
                 difficulty=DIFFICULTIES[construction.level])


# ---------------------------------------------------------------------------------------------
# Questions: each type belongs to one construction (and mode) and computes its gold answer
# exactly with sympy from the numbers given on the figure.

S = sp.Integer
Given = dict[str, Any]


def _format(value: sp.Expr, atype: AnswerType) -> str:
    if atype == "number":
        f = float(value)
        return f"{f:.2f}".rstrip("0").rstrip(".") if not float(f).is_integer() else str(int(f))
    if atype == "integer":
        return str(int(value))
    return sp.sstr(sp.nsimplify(value))


def _names(spec: Spec) -> dict[str, Any]:
    names = list(spec["points"])
    return {"n": spec["given"].get("n"), "first": names[0], "second": names[1] if len(names) > 1
            else names[0]}


# What each question needs (its ``Effort``): the steps of its solution and the values it
# reads off the figure. A polygon's sides are also counted (``counted``: they are not printed).
EFFORT: dict[str, tuple[int, int]] = {
    "hypotenuse": (2, 2), "right_area": (1, 2), "tan_ratio": (1, 2), "right_perimeter": (3, 2),
    "missing_leg": (2, 2), "sin_ratio": (1, 2), "angle_sum": (1, 2), "exterior_angle": (1, 2),
    "law_of_cosines": (3, 3), "heron_area": (3, 3), "triangle_perimeter": (1, 3),
    "base_angle": (1, 1), "equilateral_area": (2, 1), "equilateral_height": (2, 1),
    "circle_area": (1, 1), "circumference": (1, 1), "circle_area_decimal": (2, 1),
    "inscribed_angle": (1, 1), "chord_length": (2, 2), "arc_length": (2, 2),
    "tangent_length": (2, 2), "interior_angle": (2, 1), "exterior_angle_polygon": (1, 1),
    "interior_sum": (1, 1), "polygon_perimeter": (1, 2), "hexagon_area": (2, 1),
    "shaded_area": (3, 2), "rectangle_diagonal": (2, 2), "alternate_angle": (1, 1),
    "corresponding_angle": (1, 1), "co_interior_angle": (1, 1), "parallel_choice": (1, 1),
    "coord_distance": (2, 4), "midpoint_x": (1, 2), "slope": (1, 4), "coord_area": (3, 6),
    "scale_factor": (1, 2), "similar_side": (2, 3),
}


def _effort(spec: Spec, name: str) -> dict[str, Any]:
    """What a figure adds to a question's effort: the sides counted on a polygon."""
    if spec["construction"] == "polygon" and name != "hexagon_area":
        return {"counted": int(spec["given"]["n"])}
    return {}


def _question(name: str, atype: AnswerType, construction: str, mode: str | None,
              value: Callable[[Given], sp.Expr | None]) -> QuestionType:
    """A question about one construction (and mode), its answer ``value(given)`` exactly."""

    def draft(spec: Spec) -> Draft | None:
        if spec["construction"] != construction or mode not in (None, spec.get("mode")):
            return None
        v = value(spec["given"])
        if v is None:
            return None
        return Draft(answer=_format(v, atype), names=_names(spec), effort=_effort(spec, name))

    steps, values = EFFORT[name]
    return QuestionType(name, atype, ("compute",), draft, steps=steps, values=values)


def _parallel_answer(g: Given, relation: str) -> sp.Expr:
    x = S(g["x"])
    return 180 - x if relation == "co_interior" else x


def _parallel_choice(spec: Spec) -> Draft | None:
    if spec["construction"] != "parallel":
        return None
    x = int(spec["given"]["x"])
    ans = int(_parallel_answer(spec["given"], spec["mode"]))
    other = 180 - ans
    # The other of x and 180 - x is an option half the time (drawn from the figure, so the
    # draft stays a function of the spec): otherwise "one of the two is listed" would give
    # the answer away; the rest are near misses of either.
    rng = np.random.default_rng([x, RELATIONS.index(spec["mode"]), 0xC401])
    near = [v for v in (ans + 10, ans - 10, ans + 20, ans - 20, other + 10, other - 10,
                        abs(90 - x)) if 0 < v < 180 and v not in (ans, other, 90)]
    near = list(dict.fromkeys(near))
    pool = [near[int(i)] for i in rng.permutation(len(near))]
    distractors = ([other] if rng.random() < 0.5 else []) + pool
    distractors = distractors[:3]
    return Draft(answer=str(ans), facts={"distractors": distractors}, names=_names(spec),
                 choices=tuple(f"{v}°" for v in [ans, *distractors]))


def _heron(g: Given) -> sp.Expr:
    a, b, cc = S(g["a"]), S(g["b"]), S(g["c"])
    s = (a + b + cc) / 2
    return sp.sqrt(s * (s - a) * (s - b) * (s - cc))


def _shoelace2(g: Given) -> int:
    (ax, ay), (bx, by), (cx, cy) = (g[k] for k in "ABC")
    return abs((bx - ax) * (cy - ay) - (cx - ax) * (by - ay))


def _scale(g: Given) -> sp.Expr:
    return sp.nsimplify(g["c2"]) / S(g["c"])


# Per construction and mode, in the order drafts are made (the seeded order depends on it).
QUESTIONS: dict[str, QuestionType] = {q.name: q for q in (
    _question("hypotenuse", "expression", "right_triangle", "legs",
              lambda g: sp.sqrt(S(g["a"]) ** 2 + S(g["b"]) ** 2)),
    _question("right_area", "expression", "right_triangle", "legs",
              lambda g: S(g["a"]) * S(g["b"]) / 2),
    _question("tan_ratio", "expression", "right_triangle", "legs", lambda g: S(g["a"]) / S(g["b"])),
    _question("right_perimeter", "expression", "right_triangle", "legs",
              lambda g: S(g["a"]) + S(g["b"]) + sp.sqrt(S(g["a"]) ** 2 + S(g["b"]) ** 2)),
    _question("missing_leg", "integer", "right_triangle", "leg_hyp",
              lambda g: sp.sqrt(S(g["c"]) ** 2 - S(g["a"]) ** 2)),
    _question("sin_ratio", "expression", "right_triangle", "leg_hyp",
              lambda g: S(g["a"]) / S(g["c"])),
    _question("angle_sum", "integer", "general_triangle", "angles",
              lambda g: 180 - S(g["alpha"]) - S(g["beta"])),
    _question("exterior_angle", "integer", "general_triangle", "angles",
              lambda g: S(g["alpha"]) + S(g["beta"])),
    _question("law_of_cosines", "expression", "general_triangle", "sas",
              lambda g: sp.sqrt(sp.nsimplify(S(g["b"]) ** 2 + S(g["c"]) ** 2 - 2 * S(g["b"])
                                             * S(g["c"]) * sp.cos(sp.rad(S(g["alpha"])))))),
    _question("heron_area", "expression", "general_triangle", "sss", _heron),
    _question("triangle_perimeter", "integer", "general_triangle", "sss",
              lambda g: S(g["a"]) + S(g["b"]) + S(g["c"])),
    _question("base_angle", "number", "isosceles", "isosceles", lambda g: (180 - S(g["apex"])) / 2),
    _question("equilateral_area", "expression", "isosceles", "equilateral",
              lambda g: sp.sqrt(3) * S(g["s"]) ** 2 / 4),
    _question("equilateral_height", "expression", "isosceles", "equilateral",
              lambda g: sp.sqrt(3) * S(g["s"]) / 2),
    _question("circle_area", "expression", "circle", "radius", lambda g: sp.pi * S(g["r"]) ** 2),
    _question("circumference", "expression", "circle", "radius", lambda g: 2 * sp.pi * S(g["r"])),
    _question("circle_area_decimal", "number", "circle", "radius",
              lambda g: sp.pi * S(g["r"]) ** 2),
    _question("inscribed_angle", "integer", "circle", "angles", lambda g: S(g["theta"]) / 2),
    _question("chord_length", "expression", "circle", "angles",
              lambda g: sp.simplify(2 * S(g["r"]) * sp.sin(sp.rad(S(g["theta"])) / 2))),
    _question("arc_length", "expression", "circle", "angles",
              lambda g: sp.pi * S(g["r"]) * S(g["theta"]) / 180),
    _question("tangent_length", "expression", "circle", "tangent",
              lambda g: sp.sqrt(S(g["d"]) ** 2 - S(g["r"]) ** 2)),
    _question("interior_angle", "number", "polygon", None,
              lambda g: 180 * (S(g["n"]) - 2) / S(g["n"])),
    _question("exterior_angle_polygon", "number", "polygon", None, lambda g: 360 / S(g["n"])),
    _question("interior_sum", "integer", "polygon", None, lambda g: 180 * (S(g["n"]) - 2)),
    _question("polygon_perimeter", "integer", "polygon", None, lambda g: S(g["n"]) * S(g["s"])),
    _question("hexagon_area", "expression", "polygon", None,
              lambda g: 3 * sp.sqrt(3) * S(g["s"]) ** 2 / 2 if g["n"] == 6 else None),
    _question("shaded_area", "expression", "composite", None,
              lambda g: S(g["w"]) * S(g["h"]) - sp.pi * (S(g["h"]) / 2) ** 2 / 2),
    _question("rectangle_diagonal", "expression", "composite", None,
              lambda g: sp.sqrt(S(g["w"]) ** 2 + S(g["h"]) ** 2)),
    *(_question(f"{relation}_angle", "integer", "parallel", relation,
                functools.partial(_parallel_answer, relation=relation))
      for relation in ("alternate", "corresponding", "co_interior")),
    QuestionType("parallel_choice", "choice", ("compute",), _parallel_choice, steps=1, values=1),
    _question("coord_distance", "expression", "coordinate", None,
              lambda g: sp.sqrt(S(g["B"][0] - g["A"][0]) ** 2 + S(g["B"][1] - g["A"][1]) ** 2)),
    _question("midpoint_x", "number", "coordinate", None,
              lambda g: sp.Rational(g["A"][0] + g["B"][0], 2)),
    _question("slope", "expression", "coordinate", None,
              lambda g: sp.Rational(g["B"][1] - g["A"][1], g["B"][0] - g["A"][0])),
    _question("coord_area", "number", "coordinate", None,
              lambda g: sp.Rational(_shoelace2(g), 2)),
    _question("scale_factor", "expression", "similar", None, _scale),
    _question("similar_side", "expression", "similar", None, lambda g: _scale(g) * S(g["a"])),
)}
"""Every geometry question type (its ``Effort`` from ``EFFORT``)."""

_KIND_QUESTIONS: dict[str, tuple[str, ...]] = {
    "right_triangle": ("hypotenuse", "right_area", "tan_ratio", "right_perimeter", "missing_leg",
                       "sin_ratio"),
    "general_triangle": ("angle_sum", "exterior_angle", "law_of_cosines", "heron_area",
                         "triangle_perimeter"),
    "isosceles": ("base_angle", "equilateral_area", "equilateral_height"),
    "circle": ("circle_area", "circumference", "circle_area_decimal", "inscribed_angle",
               "chord_length", "arc_length", "tangent_length"),
    "polygon": ("interior_angle", "exterior_angle_polygon", "interior_sum", "polygon_perimeter",
                "hexagon_area"),
    "composite": ("shaded_area", "rectangle_diagonal"),
    "parallel": ("alternate_angle", "corresponding_angle", "co_interior_angle",
                 "parallel_choice"),
    "coordinate": ("coord_distance", "midpoint_x", "slope", "coord_area"),
    "similar": ("scale_factor", "similar_side"),
}


def pose(scene: Scene, k: int, only: Collection[str] | None = None) -> list[Task]:
    """Up to ``k`` questions about ``scene`` with exact gold answers, in a seeded order."""
    spec: Spec = scene.spec
    rng = pose_rng(scene)
    drafts = [(q, d) for name in _KIND_QUESTIONS[scene.kind]
              if (q := QUESTIONS[name]) and (only is None or name in only)
              and (d := q.draft(spec)) is not None]
    poser = Poser("geometry", scene, rng)
    for i in rng.permutation(len(drafts))[:k]:
        poser.add(*drafts[int(i)])
    return poser.tasks


# ---------------------------------------------------------------------------------------------
# Grounding (``check.grounding``): what a figure prints, what only the renderer knows, and the
# counterfactual twins of its questions.

# Question types whose answer needs the number of sides, which no figure prints.
COUNTED = frozenset({"interior_angle", "exterior_angle_polygon", "interior_sum",
                     "polygon_perimeter"})
# Question types whose answer needs the relation of the "?" angle to the given one.
RELATED = frozenset({"alternate_angle", "corresponding_angle", "co_interior_angle",
                     "parallel_choice"})
# Ways to name the relation (normalized text is matched, so "co-interior" is "co_interior").
RELATION_NAMES = ("alternate", "corresponding", "co_interior", "co interior",
                  "same side interior", "consecutive interior", "allied")
# Numbers code about figures and images types whatever the figure (right, straight and full
# angles; grey levels and thresholds): a pixel coordinate that happens to equal one is not
# worth the false alarm.
_CODE_CONSTANTS = frozenset({90.0, 180.0, 270.0, 360.0, 100.0, 127.0, 128.0, 150.0, 200.0,
                             250.0, 255.0, 256.0})
_PALETTE = (INK, MARK, SHADE, GRID, AXIS, GRID_TEXT)
_TWIN_TRIES = 60


def labels(spec: Spec) -> list[str]:
    """Every text printed on the figure: side and angle labels ("7", "35°", "?"), vertex
    letters or coordinate labels ("A(3, 4)"), grid numbers, and a polygon's letters read
    around it ("ABCDE")."""
    out = [t for *_, t in spec["side_labels"]] + [t for *_, t in spec["angle_labels"]]
    for name in spec["labelled"]:
        if spec.get("coord_labels"):
            gx, gy = spec["given"][name]
            out.append(f"{name}({gx}, {gy})")
        else:
            out.append(name)
    if spec["grid"]:
        lo, hi = spec["grid"]
        out += [str(v) for v in range(lo, hi + 1) if v % 2 == 0]
    if spec["construction"] == "polygon" and spec["labelled"]:
        out.append("".join(spec["labelled"]))
    return out


def printed(scene: Scene) -> frozenset[str]:
    """The text printed on ``scene``'s figure (``labels``)."""
    return frozenset(labels(scene.spec))


def secrets(task: Task) -> Secrets:
    """What only the renderer knows about ``task``'s figure.

    Numbers: every point's pixel position (to 2 decimals, rounded and truncated to whole
    pixels; all at least ``MARGIN`` - 1), the scale (pixels per unit, to 2 decimals, unless it
    is a whole number) and a polygon's number of sides unless the question names the polygon
    (hexagon_area). Colours: the drawing palette. Strings: the number of
    sides, and the names of the parallel-line relation when the question does not use them.
    """
    spec = task.scene.spec
    numbers: set[float] = set()
    for xy in spec["pixels"].values():
        for v in xy:
            numbers |= {round(float(v), 2), float(round(v)), float(math.floor(v))}
    scale = round(spec["scale"], 2)
    if not scale.is_integer():  # a whole-number scale is any code's constant (a radius of 60 px)
        numbers.add(scale)
    strings: set[str] = set()
    if spec["construction"] == "polygon" and task.facts["op"] != "hexagon_area":
        numbers.add(float(spec["given"]["n"]))
        strings.add(str(spec["given"]["n"]))
    if spec["construction"] == "parallel":
        question = task.question.lower().replace("-", " ").replace("_", " ")
        strings |= {r for r in RELATION_NAMES if r.replace("_", " ") not in question}
    return Secrets(numbers=frozenset(numbers - _CODE_CONSTANTS), colours=_PALETTE,
                   strings=frozenset(strings))


def _twin_spec(spec: Spec, op: str, rng: Rng, options: Mapping[str, str]) -> Spec | None:
    """A changed copy of ``spec`` for a twin of question ``op`` (None: try again).

    Counted polygons get another number of sides with the same marked side and turn; the
    parallel figure moves "?" to a relation with the other answer (for a choice that does not
    list the other answer, it prints another given angle whose answer is listed); every
    other figure is
    built again with the same construction and mode (other marked numbers).
    """
    g = spec["given"]
    if op in COUNTED:
        return _polygon_spec(int(rng.choice([m for m in POLYGON_SIDES if m != g["n"]])),
                             g["s"], spec["turn"])
    if op == "hexagon_area":
        return _polygon_spec(g["n"], int(rng.choice([m for m in range(2, 11) if m != g["s"]])),
                             spec["turn"])
    if op == "parallel_choice" and f"{180 - int(_parallel_answer(g, spec['mode']))}°" not in \
            options.values():
        # The other of x and 180 - x is not an option: the twin prints another given angle,
        # one whose answer (same relation) is one of the distractors.
        answers = {x: int(_parallel_answer({"x": x}, spec["mode"])) for x in range(5, 180, 5)}
        fits = [x for x, a in answers.items() if f"{a}°" in options.values() and x != 90
                and x != g["x"]]
        return _parallel_spec(int(rng.choice(fits)), spec["mode"]) if fits else None
    if op in RELATED:
        others = [r for r in RELATIONS
                  if _parallel_answer(g, r) != _parallel_answer(g, spec["mode"])]
        return _parallel_spec(g["x"], str(rng.choice(others)))
    new = CONSTRUCTIONS[spec["construction"]].build(rng)
    return new if new.get("mode") == spec.get("mode") else None


def _twin_answer(task: Task, spec: Spec) -> str | None:
    """The gold answer of ``task``'s question about ``spec`` (for a choice, the letter of the
    original options that holds it; None when no option does)."""
    op = task.facts["op"]
    if op in RELATED:
        value = int(_parallel_answer(spec["given"], spec["mode"]))
        if op != "parallel_choice":
            return str(value)
        options = task.facts["options"]
        return next((k for k, v in options.items() if v == f"{value}°"), None)
    draft = QUESTIONS[op].draft(spec)
    return None if draft is None else draft.answer


def _changed_text(old: Spec, new: Spec) -> frozenset[str]:
    """The labels of ``old`` that ``new`` does not print, and the numbers inside them.

    A lone vertex letter is left out: code names points ("A") whatever their number, so a
    letter the twin drops says nothing about whether the code read a count (the letters read
    around a polygon, "ABCDE", do).
    """
    after = set(labels(new))
    gone = {t for t in labels(old) if t not in after and not re.fullmatch(r"[A-Z]", t)}
    return frozenset(gone | {m for t in gone for m in re.findall(r"\d+(?:\.\d+)?", t)})


def twin(task: Task) -> Twin | None:
    """The same question about a changed figure whose answer differs (None if none was found).

    Where the answer needs something the code must measure or count (the number of sides,
    the relation of the "?" angle), only that changes, so a trace that looked finds the
    twin's answer. Where it comes from marked numbers only, the twin prints other numbers and
    ``changed_text`` names the old ones: code that typed them read them, which is allowed.
    """
    spec, op = task.scene.spec, task.facts["op"]
    rng = np.random.default_rng(int(stable_id(task.id, "twin"), 16))
    for _attempt in range(_TWIN_TRIES):
        new = _twin_spec(spec, op, rng, task.facts.get("options", {}))
        if new is None:
            continue
        changed = _changed_text(spec, new)
        if not (op in COUNTED or op in RELATED or changed):
            continue  # (a twin that only swaps marked numbers would fail code that read them)
        answer = _twin_answer(task, new)
        if answer is None or answer == task.answer:
            continue
        new["size"] = list(spec["size"])
        png, px, boxes = render_figure(new, compress_level=1)
        new["pixels"], new["label_boxes"] = px, boxes
        if collisions(new):
            continue
        scene = Scene(id=f"{task.scene.id}-twin", family="geometry", kind=task.scene.kind,
                      seed=task.scene.seed, image=png, spec=new,
                      difficulty=task.scene.difficulty)
        return Twin(scene=scene, answer=answer, changed_text=changed)
    return None


def _rule_labels_clear(task: Task) -> bool:
    return collisions(task.scene.spec) == 0


def _rule_no_fraction(task: Task) -> bool:
    return not any("/" in text for *_, text in task.scene.spec["side_labels"])


def _rule_choice_hides_relation(task: Task) -> bool:
    # Not a rule of this figure but of the whole set: checked per task, it says only that
    # the options are not x and 180 - x and two more that are neither (see _parallel_choice).
    return len(set(task.facts["options"].values())) == len(task.facts["options"])


RULES = (
    Rule("label_collision", "a label leaves the canvas, overlaps another label, or is crossed "
         "by a drawn line", _rule_labels_clear),
    Rule("printed_fraction", "a side length is printed as a fraction (\"35/2\")",
         _rule_no_fraction),
    Rule("distinct_options", "two options of a choice question are the same",
         _rule_choice_hides_relation, frozenset({"parallel_choice"})),
)
"""The geometry family's ambiguity checks (the card counts what each rejected)."""


FAMILY = Family(name="geometry", kinds=_KIND_QUESTIONS, questions=QUESTIONS,
                make_scene=make_scene, pose=pose, printed=printed, secrets=secrets, twin=twin,
                rules=RULES)
