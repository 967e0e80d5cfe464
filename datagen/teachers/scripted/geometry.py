"""Scripted traces for geometry that read only what the figure shows.

Numbers come from the marked labels (side lengths, angles, coordinates), which the trace reads
and types. Everything else is found by code in the image: the labelled points are located by
snapping rough looks (``perception.Looker``) to the dots drawn there, the number of sides of a
polygon is counted, and which of two angles the "?" marks on parallel lines is decided from
where its arc sits. Looks miss; the code notices (no dot near the guess, a fill that leaks to
the border, a measurement that disagrees with the marks) and the next step recovers.

Styles:
  compute    read the marks, apply the formula in sympy                       (compute)
  construct  read the marks, rebuild the figure with sympy.geometry            (compute)
  measure    locate the points, measure the quantity in pixels, compare with
             the exact value                            (locate_point, pixel_measure, compute)
  draw       locate the points, draw an auxiliary line and show it, compute
                                                        (locate_point, draw_line, compute)
  outline    polygons: fill the inside, count the corners of its outline  (segment, count, compute)
  ticks      polygons: count the equal-side tick marks by colour          (segment, count, compute)
  letters    polygons with lettered vertices: count the letters           (count, compute)
  arcs       parallel lines: compare where the two angle arcs sit   (locate_point, pixel_measure)
  angle      parallel lines: measure the "?" angle at Q              (locate_point, pixel_measure)

A trace is a generator of steps (``Program``): ``step`` replays it over the turns so far,
feeding each its sandbox result, and returns the next one. A step that only the teacher's eye
can judge (a sketch whose line misses its vertex) compares what the code printed with the
figure, as a reader looking at the shown sketch would.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Generator, Sequence
from typing import Any

import numpy as np

from datagen.records import Step, Task, Turn
from datagen.sandbox import CellResult
from datagen.scenes.geometry import COUNTED, MARK, MAX_LETTERED, RELATED
from datagen.teachers.scripted.base import Say, task_rng
from datagen.teachers.scripted.perception import Looker
from datagen.templates import load_yaml, render

__all__ = ["GeometryScript"]

Program = Generator[Step, CellResult | None, None]

# A labelled point as the eye finds it: its dot and its letter, about 24 px across.
POINT_SIZE = 24.0
# Search radii (px) around a look: the first try, then two more looks after misses. 60 px
# covers a look's normal error plus the jitter check's shift (2 % of the image per side).
REACH = (60, 90, 90)
# A locate cell names each point it did not find ("... my guess for B") and says where it
# found the others ("B: dot at (231, 244)", "B is at (231, 244)").
_LETTERS = re.compile(r"guess for ([A-Z][0-9]?)")
_FOUND = re.compile(r"^([A-Z][0-9]?)(?:: dot at| is at) \((-?\d+), (-?\d+)\)", re.MULTILINE)
# How far (px) a sketch's line may end from the vertex it is meant for before the eye sees it.
SKETCH_SLACK = 12.0

_STYLE_MIX: dict[str, tuple[tuple[str, float], ...]] = {
    "measured": (("compute", 0.25), ("construct", 0.2), ("measure", 0.3), ("draw", 0.25)),
    "unmeasured": (("compute", 0.35), ("construct", 0.3), ("draw", 0.35)),
    "counted": (("outline", 0.4), ("ticks", 0.35), ("letters", 0.25)),
    "counted_unlettered": (("outline", 0.55), ("ticks", 0.45)),
    "related": (("arcs", 0.5), ("angle", 0.5)),
}
# Variable names of the shared helpers, drawn per task, so that traces do not share long
# verbatim blocks of code.
_VOCAB: dict[str, tuple[str, ...]] = {
    "fn": ("nearest_dot", "snap", "find_dot", "dot_near"),
    "ink": ("ink", "density", "dense", "inkiness"),
    "spots": ("spots", "dots", "centres", "blobs_xy"),
    "guess": ("guess", "approx", "rough", "looked"),
    "radius": ("radius", "profile", "reach_r", "edge_r"),
    "spectrum": ("spectrum", "freq", "harmonics", "fourier"),
    "count": ("corners", "n_corners", "sides_found", "vertex_count"),
    "mask": ("blue", "tick_mask", "bluish", "marks"),
    "name": ("name", "label", "pt", "key"),
    "xy": ("g", "xy", "rough_xy", "est"),
    "hit": ("p", "found_at", "hit", "dot"),
    "win": ("win", "patch", "local", "around"),
    "rows": ("rows", "iy", "r_idx", "ys"),
    "cols": ("cols", "ix", "c_idx", "xs"),
}


def _methods() -> dict[str, Any]:
    return load_yaml("teacher/geometry.yaml")["methods"]


def _pick(task: Task, salt: str, options: Sequence[str]) -> str:
    return options[int(task_rng(task, salt).integers(len(options)))]


class _Ctx:
    """What a program needs: the task, its say(), looks per step, and its code vocabulary.

    ``k`` is the index of the step being made; looks for earlier steps (replayed) come from a
    Looker seeded exactly as the teacher seeds the live one, so a replay sees the same looks.
    """

    def __init__(self, task: Task, say: Say, now: int, look: Looker) -> None:
        self.task = task
        self.spec = task.scene.spec
        self.say = say
        self.now = now
        self.k = 0
        self._look = look
        self._replayed: dict[int, Looker] = {}
        self.v: dict[str, Any] = {key: _pick(task, f"vocab-{key}", names)
                                  for key, names in _VOCAB.items()}
        self.v["note"] = int(task_rng(task, "vocab-note").integers(2))  # which comment wording
        self.finder = _pick(task, "finder", ("peaks", "window"))
        self.loop_style = _pick(task, "loop", ("for", "dict"))
        self.num = _pick(task, "num", ("S", "Integer"))
        self.method = _methods()[task.facts["op"]]
        self.located: dict[str, tuple[int, int]] = {}  # what the locate cells printed

    @property
    def look(self) -> Looker:
        """The Looker of the step being made."""
        if self.k == self.now:
            return self._look
        if self.k not in self._replayed:
            self._replayed[self.k] = Looker(task_rng(self.task, f"look-{self.k}"))
        return self._replayed[self.k]

    def think(self, *parts: tuple[str, dict[str, Any]] | str, **ctx: Any) -> str:
        """A thought composed of several parts, each a seeded variant of its own key."""
        out = []
        for part in parts:
            key, extra = (part, {}) if isinstance(part, str) else part
            out.append(self.say(key, **{**ctx, **extra}))
        return " ".join(out)

    # -- what the figure marks

    def given(self) -> list[tuple[str, str, str]]:
        """(name, value, what it marks) for every number printed on the figure."""
        marks = load_yaml("teacher/geometry.yaml")["marks"].get(self.spec["construction"], {})
        out = []
        for name, value in self.spec["given"].items():
            if self.spec["construction"] == "polygon" and name == "n":
                continue  # never printed: counted by code
            if isinstance(value, list):  # a labelled point A(x, y)
                out += [(f"{name.lower()}x", str(value[0]), f"x of {name}"),
                        (f"{name.lower()}y", str(value[1]), f"y of {name}")]
            else:
                out.append((name, str(value), marks.get(name, "marked")))
        return out

    def given_text(self) -> str:
        """The marks as the think text reads them: "BC = 5 and CA = 12"."""
        spec = self.spec
        if spec.get("coord_labels"):
            parts = [f"{n}({x}, {y})" for n, (x, y) in spec["given"].items()]
        else:
            parts = [f"{note} = {_shown(name, value)}" for name, value, note in self.given()]
        return parts[0] if len(parts) == 1 else ", ".join(parts[:-1]) + " and " + parts[-1]

    def code(self, template: str, **ctx: Any) -> str:
        """Render a code template with the task's vocabulary and marks in scope."""
        ctx.setdefault("drop", [])
        return render(f"code/geometry_{template}.py.j2", v=self.v, num=self.num,
                      finder=self.finder, loop_style=self.loop_style,
                      given=self.given(), answer_type=self.task.answer_type, **ctx)

    # -- looking

    def look_points(self, names: Sequence[str]) -> dict[str, list[int]]:
        """Rough positions of the named labelled points (noisy looks, kept inside the image:
        nobody points outside the picture)."""
        px = self.spec["pixels"]
        return {n: self.inside(self.look.point(px[n], POINT_SIZE)[0]) for n in names}

    def inside(self, xy: Sequence[int]) -> list[int]:
        """``xy`` moved into the image if a wild look put it outside."""
        w, h = self.spec["size"]
        return [min(max(int(xy[0]), 0), w - 1), min(max(int(xy[1]), 0), h - 1)]


def _shown(name: str, value: str) -> str:
    return f"{value}°" if name in ("alpha", "beta", "apex", "theta", "x") else value


def _est_text(est: dict[str, list[int]]) -> str:
    parts = [f"{n} near ({x}, {y})" for n, (x, y) in est.items()]
    return parts[0] if len(parts) == 1 else ", ".join(parts[:-1]) + " and " + parts[-1]


def _lines(result: CellResult | None) -> list[str]:
    return [ln.strip() for ln in (result.stdout if result else "").splitlines() if ln.strip()]


def _missing(ctx: _Ctx, result: CellResult | None, names: Sequence[str]) -> list[str]:
    """The points a locate cell did not find (all of them if it did not run); the ones it
    found are noted in ``ctx.located``."""
    if result is None or result.status != "ok":
        return list(names)
    for name, x, y in _FOUND.findall(result.stdout):
        ctx.located[name] = (int(x), int(y))
    return [n for n in dict.fromkeys(_LETTERS.findall(result.stdout)) if n in names]


def _misplaced(ctx: _Ctx, names: Sequence[str]) -> list[str]:
    """Points whose located dot is visibly not theirs: a line drawn to it misses the vertex
    (the teacher sees this in the sketch the cell showed)."""
    px = ctx.spec["pixels"]
    return [n for n in names if n in ctx.located
            and math.dist(ctx.located[n], px[n]) > SKETCH_SLACK]


def _final(ctx: _Ctx, result: CellResult | None, key: str = "final", **extra: Any) -> Step:
    """Answer with the last printed line (or give up when the cell failed)."""
    lines = _lines(result)
    if result is None or result.status != "ok" or not lines:
        error = (result.error_type if result is not None else None) or "no output"
        return Step(think=ctx.say("give_up", error=error))
    return Step(think=ctx.say(key, result=lines[-1], **extra), answer=lines[-1])


# ---------------------------------------------------------------------------------------------
# Programs


def _locate(ctx: _Ctx, names: Sequence[str], why: tuple[str, dict[str, Any]] | str
            ) -> Generator[Step, CellResult | None, list[str]]:
    """Locate ``names`` from rough looks; after a miss, look again and search wider.

    Returns the names still missing after the last try (the caller carries on without them).
    """
    est = ctx.look_points(names)
    code = ctx.code("locate", first=True, est=est, reach=REACH[0])
    result = yield Step(think=ctx.think(why, "look_points", "locate_how", est_text=_est_text(est),
                                        reach=REACH[0]), code=code)
    missing = _missing(ctx, result, names)
    for attempt, reach in enumerate(REACH[1:]):
        if not missing:
            break
        est = ctx.look_points(missing)
        code = ctx.code("locate", first=False, est=est, reach=reach)
        again = "_again" if attempt else ""  # a second miss is not told in the same words
        result = yield Step(think=ctx.think((f"miss_seen{again}", {"names": ", ".join(missing)}),
                                            f"miss_fix{again}", est_text=_est_text(est),
                                            reach=reach),
                            code=code)
        missing = _missing(ctx, result, missing)
    return missing


def _plan(ctx: _Ctx, alt: bool) -> str:
    """The think key that announces the formula, or the kind of second route ``alt`` is."""
    if not alt:
        return "plan_formula"
    return {"geometry": "plan_construct", "solve": "plan_solve"}.get(
        ctx.method.get("alt_kind", ""), "plan_identity")


def _compute(ctx: _Ctx, alt: bool) -> Program:
    m = ctx.method
    code = ctx.code("compute", prelude=[], method=m["alt"] if alt else m["code"])
    result = yield Step(think=ctx.think("read", _plan(ctx, alt), given_text=ctx.given_text(),
                                        method=m["name"]), code=code)
    yield _final(ctx, result)


def _points_of(ctx: _Ctx) -> list[str]:
    """The labelled points a measuring or drawing trace locates: all of them."""
    return list(ctx.spec["labelled"])


def _measure(ctx: _Ctx) -> Program:
    m, names = ctx.method, _points_of(ctx)
    spec = m["measure"]
    missing = yield from _locate(ctx, names, "why_measure")
    if missing:
        yield from _unlocated(ctx, missing)
        return
    unit = spec.get("unit")
    unit_note = ("px per grid unit from A and C" if unit == "grid" else
                 f"px per unit from {unit[0]}{unit[1]} = {_given_value(ctx, unit[2])}" if unit
                 else "a ratio, no scale needed")
    measure = ctx.code("measure", unit=unit, figure=spec["figure"], what=spec["what"],
                       method=m["code"])
    result = yield Step(think=ctx.think("measure_intro", what=spec["what"],
                                        unit_note=unit_note, method=m["name"]), code=measure)
    if result is not None and "differ" in result.stdout and ctx.k <= 4:
        est = ctx.look_points(names)
        code = ctx.code("locate", first=False, est=est, reach=REACH[0],
                        drop=list(names)) + "\n\n" + measure
        result = yield Step(think=ctx.think("measure_differ", "measure_redo",
                                            est_text=_est_text(est)), code=code)
    agree = result is not None and "agree" in result.stdout
    yield _final(ctx, result, "final_checked" if agree else "final_unchecked")


def _unlocated(ctx: _Ctx, missing: list[str]) -> Program:
    """Carry on without the figure: the marked values alone answer the question."""
    m = ctx.method
    result = yield Step(think=ctx.think(("still_missing", {"names": ", ".join(missing)}), "read",
                                        "plan_formula", given_text=ctx.given_text(),
                                        method=m["name"]),
                        code=ctx.code("compute", prelude=[], method=m["code"]))
    yield _final(ctx, result)


def _given_value(ctx: _Ctx, name: str) -> str:
    return str(ctx.spec["given"][name])


def _sketch(ctx: _Ctx) -> dict[str, Any]:
    """What the draw style sketches: the question's own sketch, else its construction's."""
    if "sketch" in ctx.method:
        return ctx.method["sketch"]
    sketches = load_yaml("teacher/geometry.yaml")["sketches"]
    spec = ctx.spec
    return sketches.get(f"{spec['construction']}.{spec.get('mode')}",
                        sketches.get(spec["construction"]))


def _draw(ctx: _Ctx) -> Program:
    m, sketch, names = ctx.method, _sketch(ctx), _points_of(ctx)
    missing = yield from _locate(ctx, names, ("why_draw", {"aux": sketch["aux"]}))
    if missing:
        yield from _unlocated(ctx, missing)
        return
    draw = ctx.code("draw", lines=sketch["lines"])
    yield Step(think=ctx.say("draw_intro", aux=sketch["aux"]), code=draw)
    wrong = _misplaced(ctx, names)
    if wrong and ctx.k <= 3:  # room for the fix, the computation and the answer
        est = ctx.look_points(wrong)
        code = ctx.code("locate", first=False, est=est, reach=REACH[0], drop=wrong)
        result = yield Step(think=ctx.think(("sketch_wrong", {"names": ", ".join(wrong)}),
                                            "miss_fix", est_text=_est_text(est),
                                            reach=REACH[0]),
                            code=code + "\n\n" + draw)
        _missing(ctx, result, wrong)
        wrong = _misplaced(ctx, names)
    alt = task_rng(ctx.task, "draw-alt").random() < 0.4
    code = ctx.code("compute", prelude=[], method=m["alt"] if alt else m["code"])
    result = yield Step(think=ctx.think("after_draw_unsure" if wrong else "after_draw", "read",
                                        _plan(ctx, alt), aux=sketch["aux"],
                                        given_text=ctx.given_text(), method=m["name"]),
                        code=code)
    yield _final(ctx, result)


def _counted_compute(ctx: _Ctx, counted: CellResult | None, prelude: list[str],
                     *parts: str) -> Program:
    """The compute step after a count: n comes from the counting cell's variable."""
    m = ctx.method
    alt = task_rng(ctx.task, "count-alt").random() < 0.4
    found = re.search(r"(\d+)", " ".join(_lines(counted)[-1:]))
    n = found.group(1) if found else "?"
    code = ctx.code("compute", prelude=prelude, method=m["alt"] if alt else m["code"])
    result = yield Step(think=ctx.think(*parts, _plan(ctx, alt),
                                        n=n, method=m["name"], given_text=ctx.given_text()),
                        code=code)
    yield _final(ctx, result)


def _inradius(spec: dict[str, Any]) -> float:
    pts = np.array([spec["pixels"][n] for n in spec["points"]])
    centre = pts.mean(axis=0)
    n = len(pts)
    return float(np.linalg.norm(pts[0] - centre) * math.cos(math.pi / n))


def _outline(ctx: _Ctx) -> Program:
    spec = ctx.spec
    centre = np.mean([spec["pixels"][n] for n in spec["points"]], axis=0)
    seed = ctx.inside(ctx.look.point(centre, _inradius(spec))[0])
    show = task_rng(ctx.task, "outline-show").random() < 0.5
    s = spec["given"]["s"]
    result = yield Step(think=ctx.think(("sides_unmarked", {"s": s}),
                                        ("count_outline", {"seed": f"({seed[0]}, {seed[1]})"})),
                        code=ctx.code("outline", seed=seed, recover=False, show=show))
    if result is None or result.status != "ok" or "border" in result.stdout:
        result = yield Step(think=ctx.think("leak_seen", "leak_fix"),
                            code=ctx.code("outline", seed=seed, recover=True, show=show))
    yield from _counted_compute(ctx, result, [f"n = Integer({ctx.v['count']})  # counted above"],
                                "after_count")


def _ticks(ctx: _Ctx) -> Program:
    colour, _rough = ctx.look.colour(MARK)
    s = ctx.spec["given"]["s"]
    result = yield Step(think=ctx.think(("sides_unmarked", {"s": s}),
                                        ("count_ticks", {"colour": colour})),
                        code=ctx.code("ticks", colour=colour))
    yield from _counted_compute(ctx, result, [f"n = Integer({ctx.v['count']})  # one tick a side"],
                                "after_count")


def _letters(ctx: _Ctx) -> Program:
    spec, m = ctx.spec, ctx.method
    letters = "".join(spec["labelled"])
    text = ", ".join(letters)
    alt = task_rng(ctx.task, "count-alt").random() < 0.4
    prelude = [f'letters = "{letters}"  # the vertex letters printed around the polygon',
               "n = Integer(len(letters))"]
    code = ctx.code("compute", prelude=prelude, method=m["alt"] if alt else m["code"])
    result = yield Step(think=ctx.think(("sides_unmarked", {"s": spec["given"]["s"]}),
                                        ("count_letters", {"letters_text": text}),
                                        _plan(ctx, alt),
                                        method=m["name"], given_text=ctx.given_text()),
                        code=code)
    yield _final(ctx, result)


def _parallel(ctx: _Ctx, variant: str) -> Program:
    x = ctx.spec["given"]["x"]
    missing = yield from _locate(ctx, ["P", "Q"], "why_parallel")
    if missing:
        yield Step(think=ctx.say("give_up", error=f"no dot found for {', '.join(missing)}"))
        return
    result = yield Step(think=ctx.think("parallel_intro", f"parallel_{variant}", x=x),
                        code=ctx.code("parallel", variant=variant, x=x,
                                      options=ctx.task.facts.get("options")))
    out = result.stdout if result is not None else ""
    same_side = "transversal: True" in out or "given angle: True" in out
    equal = "equal to the given angle" in out
    relation = ("corresponding" if same_side else "alternate") if equal else "co-interior"
    verdict = ("on the same side of the transversal" if same_side
               else "on the other side of the transversal")
    verdict += ", in the matching position" if equal else ", on the other side of its line"
    yield _final(ctx, result, "final_parallel", relation=relation, verdict=verdict, x=x)


_PROGRAMS: dict[str, Callable[[_Ctx], Program]] = {
    "compute": lambda ctx: _compute(ctx, alt=False),
    "construct": lambda ctx: _compute(ctx, alt=True),
    "measure": _measure,
    "draw": _draw,
    "outline": _outline,
    "ticks": _ticks,
    "letters": _letters,
    "arcs": lambda ctx: _parallel(ctx, "arcs"),
    "angle": lambda ctx: _parallel(ctx, "angle"),
}


class GeometryScript:
    """Writes geometry traces one step at a time (see the module docstring)."""

    ops = {
        "compute": ("compute",),
        "construct": ("compute",),
        "measure": ("locate_point", "pixel_measure", "compute"),
        "draw": ("locate_point", "draw_line", "compute"),
        "outline": ("segment", "count", "compute"),
        "ticks": ("segment", "count", "compute"),
        "letters": ("count", "compute"),
        "arcs": ("locate_point", "pixel_measure"),
        "angle": ("locate_point", "pixel_measure"),
    }

    def style(self, task: Task) -> str:
        """A style that fits the question, drawn from its mix (seeded by the task)."""
        op, spec = task.facts["op"], task.scene.spec
        if op in RELATED:
            mix = "related"
        elif op in COUNTED:
            mix = "counted" if spec["given"]["n"] <= MAX_LETTERED else "counted_unlettered"
        else:
            mix = "measured" if "measure" in _methods()[op] else "unmeasured"
        styles, weights = zip(*_STYLE_MIX[mix], strict=True)
        r, acc = task_rng(task, "style").random() * sum(weights), 0.0
        for name, weight in zip(styles, weights, strict=True):
            acc += weight
            if r < acc:
                return name
        return styles[-1]

    def step(self, task: Task, style: str, history: Sequence[Turn], say: Say,
             look: Looker) -> Step:
        """The next step: the style's program replayed over ``history``."""
        ctx = _Ctx(task, say, len(history), look)
        program = _PROGRAMS[style](ctx)
        step = next(program)
        for turn in history:
            if turn.step.code != step.code:
                raise RuntimeError(f"geometry script replay diverged at step {ctx.k + 1} of "
                                   f"{task.id}")
            ctx.k += 1
            step = program.send(turn.result)
        return step
