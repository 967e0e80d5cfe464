"""Scripted traces for charts, one step at a time, that look at the pixels.

The script knows the chart's spec but writes only what a reader of the picture could: the
question, printed text read exactly (title, tick labels, categories, legend entries, value
labels), and rough looks from the ``Looker`` (colours, corners). Everything else is computed by
the code from the image.

Styles:
  measure    find the frame, calibrate the value axis on its printed ticks, sample the series
             colours from the legend swatches (or the plot's one colour, or near a rough look,
             which may find nothing and is then redone), measure, compute   (pixel_measure, compute)
  zoom_read  crop the labelled area around a rough look with a margin and enlarge it (again,
             wider, when the crop cut labels off), type the labels read, compute
                                                                            (crop, zoom, compute)
  locate     find the patches of the asked colour near a rough look, crop the nearest with its
             label (the next nearest when the crop shows another colour), read it  (crop, zoom)

Strategies vary per task (seeded): two frame finders, tick-mark or frame-edge calibration,
legend swatches as row runs or connected patches, bars by column profile or connected patches,
lines by column bands or markers, pies by area or by a ring, and how the work is split in cells.
A trace is replayed from its history at every step (``_queue``), so a miss seen in an
observation becomes a recovery cell.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from datagen.records import Step, Task, Turn
from datagen.scenes.chart import KIND_BY_NAME, table_of, value_labels
from datagen.scenes.chart_rules import NUMBER_READS
from datagen.teachers.scripted.base import Say, task_rng
from datagen.teachers.scripted.perception import Looker, colour_name
from datagen.templates import load_yaml, render, render_string

__all__ = ["ChartScript"]

# Questions over the chart's data table: a labelled chart can be read instead of measured.
_TABLE_OPS = {"value", "max", "min", "difference", "sum", "mean", "percentage", "ratio", "range",
              "trend", "compare", "count_above", "choice"}
# Above this top tick a pixel is worth more than a unit: only the labels give exact values.
_MEASURABLE_TOP = 150
# Variable names of the measuring code (one set per trace, so traces do not all read alike).
_NAMES = (
    {"px": "px", "dark": "dark", "w": "w", "h": "h", "l": "left", "r": "right", "t": "top",
     "b": "bottom", "value": "value"},
    {"px": "img", "dark": "ink", "w": "W", "h": "H", "l": "x0", "r": "x1", "t": "y0",
     "b": "y1", "value": "to_value"},
    {"px": "arr", "dark": "black", "w": "width", "h": "height", "l": "xl", "r": "xr",
     "t": "yt", "b": "yb", "value": "value_at"},
)
# How the parts of a measure trace are split into cells, and how often (every cell is run
# three times when verifying: on the image, its twin and its shifted copy, so fewer is cheaper).
_LAYOUTS = (
    (("frame",), ("colours", "measure"), ("compute",)),
    (("frame", "colours"), ("measure",), ("compute",)),
    (("frame",), ("colours",), ("measure",), ("compute",)),
    (("frame", "colours", "measure"), ("compute",)),
    (("frame",), ("colours",), ("measure", "compute")),
    (("frame", "colours"), ("measure", "compute")),
)
_LAYOUT_WEIGHTS = (0.15, 0.15, 0.1, 0.25, 0.1, 0.25)
_PIE_LAYOUTS = ((("colours",), ("measure",), ("compute",)), (("colours", "measure"), ("compute",)),
                (("colours",), ("measure", "compute")))
_CROP = re.compile(r"crop: \((\d+), (\d+), (\d+), (\d+)\)")
_PICKED = re.compile(r"picked colour \((\d+), (\d+), (\d+)\)")


@dataclass(frozen=True, slots=True)
class Cell:
    """One code cell: the parts it does, and how many times they were tried before."""

    parts: tuple[str, ...]
    retry: int = 0


@dataclass(frozen=True, slots=True)
class Plan:
    """A trace's choices, drawn once per task: strategies, names and cells."""

    cells: tuple[Cell, ...]
    names: dict[str, str]
    frame: int = 0
    calib: str = "marks"
    colours: str = "rows"
    measure: str = "profile"
    variant: int = 0  # of the compute code
    key: str = ""  # what a series without a legend entry is called (title or axis label)
    key_from: str = "title"
    pad: float = 0.04  # zoom margin, as a share of the image's width
    scale: int = 2
    resample: str = "LANCZOS"
    view: str = "view"
    show: bool = False


def _rgb(hex_colour: str) -> tuple[int, int, int]:
    h = hex_colour.lstrip("#")
    return int(h[0:2], 16), int(h[2:4], 16), int(h[4:6], 16)


def _palette(spec: dict[str, Any]) -> list[tuple[int, int, int]]:
    if spec["kind"] == "pie":
        return [_rgb(c) for c in spec["slice_colors"]]
    return [_rgb(s["color"]) for s in spec["series"]]


def _listing(items: Sequence[str]) -> str:
    items = [str(i) for i in items]
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " and " + items[-1]


class ChartScript:
    """Plans measure / zoom_read / locate traces for chart tasks, a step at a time."""

    ops = {
        "measure": ("pixel_measure", "compute"),
        "zoom_read": ("crop", "zoom", "compute"),
        "locate": ("crop", "zoom"),
    }

    def style(self, task: Task) -> str:
        """locate for legend questions; labelled charts are read (always when the axis is
        too long to measure to the unit, else half the time); the rest is measured."""
        op, spec = task.facts["op"], task.scene.spec
        if op == "legend":
            return "locate"
        if spec["value_labels"] and op in _TABLE_OPS:
            coarse = bool(spec["ticks"]) and spec["ticks"][-1] > _MEASURABLE_TOP
            if coarse or task_rng(task, "style").random() < 0.5:
                return "zoom_read"
        return "measure"

    # -----------------------------------------------------------------------------------------
    # Planning and replay

    def _plan(self, task: Task, style: str) -> Plan:
        rng = task_rng(task, "plan")
        spec = task.scene.spec
        names = dict(_NAMES[int(rng.integers(len(_NAMES)))])
        # A pie prints no axis label: only its title can name its one series.
        from_title = bool(rng.random() < 0.7) or spec["kind"] == "pie"
        key = spec["title"] if from_title else spec["value_axis"]
        common = {"names": names, "key": key, "key_from": "title" if from_title else "axis label",
                  "variant": int(rng.integers(2))}
        if style == "zoom_read":
            return Plan(cells=(Cell(("zoom",)), Cell(("compute",))), **common,
                        pad=float(rng.choice([0.025, 0.03, 0.04])), scale=2,
                        resample=str(rng.choice(["LANCZOS", "BICUBIC"])),
                        view=str(rng.choice(["view", "zoomed", "crop"])),
                        show=bool(rng.random() < 0.5))
        if style == "locate":
            return Plan(cells=(Cell(("locate",)),), **common,
                        colours=str(rng.choice(["look", "colour"])),
                        pad=float(rng.choice([0.02, 0.03])),
                        view=str(rng.choice(["view", "zoomed", "crop"])))
        kind = spec["kind"]
        if kind == "pie":
            layout = _PIE_LAYOUTS[int(rng.integers(len(_PIE_LAYOUTS)))]
            return Plan(cells=tuple(Cell(p) for p in layout), **common,
                        measure=str(rng.choice(["area", "ring"])))
        layout = _LAYOUTS[int(rng.choice(len(_LAYOUTS), p=_LAYOUT_WEIGHTS))]
        if len(spec["series"]) > 1:
            colours = str(rng.choice(["rows", "blobs", "guesses"]))
        else:
            # A thin line or small markers have no flat area for a most common shade.
            own = ["mode", "median"] if kind in ("vbar", "hbar") else ["median"]
            colours = "guess" if rng.random() < 0.7 else str(rng.choice(own))
        measure = {"line": ["columns", "markers"], "scatter": ["opening", "largest"]}.get(
            kind, ["profile", "blobs"])
        return Plan(cells=tuple(Cell(p) for p in layout), **common, frame=int(rng.integers(2)),
                    calib=str(rng.choice(["marks", "edges"])), colours=colours,
                    measure=str(rng.choice(measure)))

    def _queue(self, task: Task, plan: Plan, history: Sequence[Turn]) -> list[Cell]:
        """The cells still to run, replaying what the history showed (misses add retries)."""
        queue = list(plan.cells)
        for turn in history:
            if not queue or turn.result is None:
                break
            cell = queue.pop(0)
            again = self._retry(task, plan, cell, turn)
            if again is not None:
                queue.insert(0, again)
        return queue

    def _retry(self, task: Task, plan: Plan, cell: Cell, turn: Turn) -> Cell | None:
        """The cell that redoes ``cell`` when its observation shows a miss (else None)."""
        res = turn.result
        assert res is not None
        if "colours" in cell.parts and plan.colours in ("guess", "guesses") and cell.retry == 0 \
                and res.status == "error" and res.error_type == "AssertionError":
            return Cell(cell.parts[cell.parts.index("colours"):], retry=1)
        if res.status != "ok":
            return None
        if cell.parts == ("zoom",) and cell.retry < 2 and self._cut(task, res.stdout):
            return Cell(("zoom",), retry=cell.retry + 1)
        if cell.parts == ("locate",):
            looked = plan.colours == "look"
            if looked and cell.retry == 0:
                return None if self._shows_entry(task, res.stdout) else Cell(("locate",), 1)
            rank = cell.retry - looked
            if self._wrong_pick(task, res.stdout) is not None \
                    and rank + 1 < len(_palette(task.scene.spec)):
                return Cell(("locate",), retry=cell.retry + 1)
        return None

    @staticmethod
    def _shows_entry(task: Task, stdout: str) -> bool:
        """Whether a printed crop holds the asked colour's swatch (or slice label) and text."""
        m = _CROP.search(stdout)
        if m is None:
            return False
        x0, y0, x1, y1 = (int(v) for v in m.groups())
        e0, f0, e1, f1 = task.scene.spec["layout"]["entries"][task.answer]
        return x0 <= e0 and y0 <= f0 and e1 <= x1 and f1 <= y1

    @staticmethod
    def _cut(task: Task, stdout: str) -> list[str]:
        """The sides of the labelled area a printed crop cut off (what the zoomed view shows)."""
        m = _CROP.search(stdout)
        if m is None:
            return ["all"]
        x0, y0, x1, y1 = (int(v) for v in m.groups())
        r0, s0, r1, s1 = task.scene.spec["layout"]["read"]
        sides = [("left", x0 > r0 + 1), ("top", y0 > s0 + 1), ("right", x1 < r1 - 1),
                 ("bottom", y1 < s1 - 1)]
        return [side for side, cut in sides if cut]

    @staticmethod
    def _wrong_pick(task: Task, stdout: str) -> int | None:
        """The palette index the crop showed instead of the asked colour (None if right)."""
        m = _PICKED.search(stdout)
        palette = _palette(task.scene.spec)
        if m is None:
            return 0
        got = tuple(int(v) for v in m.groups())
        shown = min(range(len(palette)),
                    key=lambda i: sum(abs(a - b) for a, b in zip(palette[i], got, strict=True)))
        return None if palette[shown] == _rgb(task.facts["hex"]) else shown

    # -----------------------------------------------------------------------------------------
    # Steps

    def step(self, task: Task, style: str, history: Sequence[Turn], say: Say,
             look: Looker) -> Step:
        """The next cell of the plan (or a retry of a missed one), or the answer."""
        plan = self._plan(task, style)
        queue = self._queue(task, plan, history)
        last = history[-1].result if history else None
        if last is not None and last.status != "ok" and (not queue or queue[0].retry == 0):
            return Step(think=say("give_up", error=last.error_type or last.status))
        if not queue:
            return self._answer(task, style, history, say)
        cell = queue[0]
        if cell.parts == ("zoom",):
            return self._zoom(task, plan, cell, history, say, look)
        if cell.parts == ("locate",):
            return self._locate(task, plan, cell, history, say, look)
        if style == "zoom_read":
            return self._read_step(task, plan, say)
        return self._measure(task, plan, cell, history, say, look)

    def _answer(self, task: Task, style: str, history: Sequence[Turn], say: Say) -> Step:
        if style != "locate":
            result = history[-1].result if history else None
            lines = [ln.strip() for ln in (result.stdout if result else "").splitlines()
                     if ln.strip()]
            if not lines:
                return Step(think=say("give_up", error="no output"))
            f = task.facts
            claim = render_string(load_yaml("teacher/chart.yaml")["claims"][f["op"]],
                                  result=lines[-1], a=f.get("a"), b=f.get("b"),
                                  series=f.get("series"), threshold=f.get("threshold"),
                                  total=f.get("total"))
            return Step(think=say("final", result=lines[-1], claim=claim), answer=lines[-1])
        # The name printed beside the swatch (or slice) in the last zoomed crop.
        return Step(think=say("locate_answer", color=task.facts["color"], answer=task.answer),
                    answer=task.answer)

    def _op_text(self, task: Task) -> str:
        f = task.facts
        return render_string(load_yaml("teacher/chart.yaml")["ops"][f["op"]], a=f.get("a"),
                             b=f.get("b"), series=f.get("series"), threshold=f.get("threshold"))

    def _compute_key(self, task: Task, plan: Plan) -> str | None:
        spec, f = task.scene.spec, task.facts
        if f.get("total"):
            return None
        if spec["kind"] == "pie" or len(spec["series"]) == 1:
            return plan.key
        return f["series"] or plan.key

    def _compute_code(self, task: Task, plan: Plan, values: dict[str, Any] | None) -> str:
        f = task.facts
        if task.scene.spec["kind"] == "scatter":
            series = f.get("series")
            return render("code/chart_scatter_compute.py.j2", op=f["op"], series=series,
                          a=f.get("a"), b=f.get("b"), threshold=f.get("threshold"))
        spec = task.scene.spec
        # Measured values are snapped to the grid the question reads them to (it says so).
        grid = spec["step"] if values is None and not spec["value_labels"] \
            and f["op"] in NUMBER_READS else None
        return render("code/chart_compute.py.j2", values=values, key=self._compute_key(task, plan),
                      op=f["op"], a=f.get("a"), b=f.get("b"), threshold=f.get("threshold"),
                      options=f.get("options"), variant=plan.variant, grid=grid)

    # measure ---------------------------------------------------------------------------------

    def _measure(self, task: Task, plan: Plan, cell: Cell, history: Sequence[Turn], say: Say,
                 look: Looker) -> Step:
        spec = task.scene.spec
        kind, n = spec["kind"], plan.names
        horizontal = kind == "hbar"
        codes: list[str] = []
        thinks: list[str] = []
        if not history:
            what = {"pie": "slices", "line": "points", "scatter": "markers"}.get(kind, "bars")
            thinks.append(say("m_open", what=what, labels=spec["value_labels"],
                              op_text=self._op_text(task)))
        if cell.retry:
            err = history[-1].result
            thinks.append(say("rec_colour", error=err.error_message if err else "",
                              label=plan.key, multi=len(spec["series"]) > 1))
        ticks = spec["ticks"]
        for part in cell.parts:
            if part == "frame":
                codes.append(render("code/chart_frame.py.j2", n=n, variant=plan.frame))
                codes.append(render("code/chart_calibrate.py.j2", n=n, ticks=ticks,
                                    axis="x" if horizontal else "y", variant=plan.calib))
                thinks.append(say(f"frame_{plan.frame}"))
                thinks.append(say(f"cal_{plan.calib}", ticks_text=_listing(ticks),
                                  axis="x" if horizontal else "y",
                                  low=ticks[0], high=ticks[-1],
                                  ends="left and right" if horizontal else "bottom and top"))
            elif part == "colours":
                code, think = self._colours(task, plan, cell, say, look)
                codes.append(code)
                thinks.append(think)
            elif part == "measure":
                codes.append(self._measure_code(task, plan))
                thinks.append(say(KIND_BY_NAME[kind].think, strategy=plan.measure,
                                  horizontal=horizontal, cats=_listing(spec["categories"]),
                                  n=len(spec["categories"]),
                                  axis_plural=spec["category_plural"]))
            elif part == "compute":
                codes.append(self._compute_code(task, plan, None))
                seen = self._seen(task, plan, history) if len(cell.parts) == 1 else ""
                thinks.append(say("do_op", op_text=self._op_text(task), seen=seen))
        return Step(think=" ".join(t for t in thinks if t), code="\n\n".join(codes))

    def _seen(self, task: Task, plan: Plan, history: Sequence[Turn]) -> str:
        """The measured values the last cell printed, as a reader would restate them."""
        res = history[-1].result if history else None
        lines = (res.stdout if res else "").strip().splitlines()
        try:
            table = ast.literal_eval(lines[-1]) if lines else None
        except (ValueError, SyntaxError):
            return ""
        if not isinstance(table, dict):
            return ""
        key = self._compute_key(task, plan)
        rows = list(table.values()) if key is None else [table.get(key)]
        if not all(isinstance(r, dict) for r in rows):
            return ""
        if key is None:  # stacked totals: say each series' part
            return "; ".join(f"{k}: " + ", ".join(f"{c} {v}" for c, v in r.items())
                             for k, r in table.items())
        return ", ".join(f"{c} {v}" for c, v in rows[0].items())

    def _colours(self, task: Task, plan: Plan, cell: Cell, say: Say,
                 look: Looker) -> tuple[str, str]:
        spec = task.scene.spec
        kind, n = spec["kind"], plan.names
        things = {"line": "line", "scatter": "markers", "pie": "slices"}.get(kind, "bars")
        if kind == "pie":
            seen = [look.colour(c)[0] for c in _palette(spec)]
            return (render("code/chart_pie_slices.py.j2", n=n),
                    say("col_slices", colours=_listing(sorted(set(seen))), k=len(seen)))
        if len(spec["series"]) > 1:
            looks = [look.colour(c) for c in _palette(spec)]
            names = [s["name"] for s in spec["series"]]
            variant = plan.colours
            # Two swatches that look the same colour cannot be told apart by a rough look.
            alike = len({seen for seen, _ in looks}) < len(looks)
            if variant == "guesses" and (cell.retry or alike):
                variant = "rows"
            code = render("code/chart_colours.py.j2", n=n, variant=variant, names=names,
                          guesses={name: rough for name, (_, rough) in zip(names, looks,
                                                                          strict=True)})
            return code, say(f"col_{variant}", names=_listing([repr(x) for x in names]),
                             colours=_listing([seen for seen, _ in looks]), things=things)
        variant = plan.colours
        if variant == "guess" and cell.retry:
            variant = "median"
        seen, rough = look.colour(_palette(spec)[0])
        code = render("code/chart_colours.py.j2", n=n, variant=variant, key=plan.key,
                      key_from=plan.key_from, rough=list(rough), seen=f"{seen} colour",
                      things=things)
        return code, say(f"col_{variant}", label=plan.key, key_from=plan.key_from, colour=seen,
                         things=things)

    def _measure_code(self, task: Task, plan: Plan) -> str:
        spec = task.scene.spec
        return render(f"code/chart_{KIND_BY_NAME[spec['kind']].measure}.py.j2", n=plan.names,
                      variant=plan.measure, categories=spec["categories"], key=plan.key,
                      ticks=spec["ticks"], axis_plural=spec["category_plural"])

    # zoom_read -------------------------------------------------------------------------------

    def _zoom(self, task: Task, plan: Plan, cell: Cell, history: Sequence[Turn], say: Say,
              look: Looker) -> Step:
        spec = task.scene.spec
        x0, y0, x1, y1 = spec["layout"]["read"]
        labels = "percentages" if spec["kind"] == "pie" else "value labels"
        whole = cell.retry >= 2
        p0, _ = look.point((x0, y0), 20)
        p1, _ = look.point((x1, y1), 20)
        pad = plan.pad * (2 if cell.retry else 1)
        code = render("code/chart_zoom.py.j2", whole=whole, p0=list(p0), p1=list(p1),
                      pad=round(pad, 2), view=plan.view, show=plan.show, scale=plan.scale,
                      resample=plan.resample)
        if cell.retry:
            res = history[-1].result
            cut = self._cut(task, res.stdout if res else "")
            think = say("zoom_whole" if whole else "zoom_redo", sides=_listing(cut),
                        labels=labels)
        else:
            think = say("zoom_open", labels=labels, op_text=self._op_text(task),
                        p0=tuple(p0), p1=tuple(p1))
        return Step(think=think, code=code)

    def _read_step(self, task: Task, plan: Plan, say: Say) -> Step:
        spec = task.scene.spec
        if spec["kind"] == "pie" or len(spec["series"]) == 1:
            values = {plan.key: table_of(spec, {"series": None})}
        else:
            values = {s["name"]: table_of(spec, {"series": s["name"]}) for s in spec["series"]}
        unit = "%" if spec["kind"] == "pie" else ""
        parts = [", ".join(f"{c} {v}{unit}" for c, v in row.items()) for row in values.values()]
        if len(values) > 1:
            parts = [f"{name}: {p}" for name, p in zip(values, parts, strict=True)]
        assert len(value_labels(spec)) >= len(spec["categories"])
        return Step(think=say("read_values", values_text="; ".join(parts),
                              op_text=self._op_text(task)),
                    code=self._compute_code(task, plan, values))

    # locate ----------------------------------------------------------------------------------

    def _locate(self, task: Task, plan: Plan, cell: Cell, history: Sequence[Turn], say: Say,
                look: Looker) -> Step:
        spec = task.scene.spec
        where = "pie" if spec["kind"] == "pie" else "legend"
        color = task.facts["color"]
        if plan.colours == "look" and cell.retry == 0:
            entry = spec["layout"]["entries"][task.answer]
            box, _ = look.region(entry, spec["size"])
            code = render("code/chart_locate_look.py.j2", box=tuple(box), pad=plan.pad,
                          color=color, thing="slice" if where == "pie" else "swatch",
                          view=plan.view)
            return Step(think=say("locate_look", color=color, where=where,
                                  x=(box[0] + box[2]) // 2, y=(box[1] + box[3]) // 2), code=code)
        rank = cell.retry - (plan.colours == "look")
        _, rough = look.colour(_rgb(task.facts["hex"]))
        code = render("code/chart_locate_zoom.py.j2", where=where, rough=list(rough),
                      color=color, rank=rank, n={"px": "px"})
        res = history[-1].result if history else None
        if rank < 0 or not cell.retry:
            think = say("locate_open", color=color, where=where)
        elif rank == 0:
            think = say("locate_missed", color=color, where=where)
        else:
            shown = self._wrong_pick(task, res.stdout if res else "") or 0
            names = spec["categories"] if where == "pie" else [s["name"] for s in spec["series"]]
            think = say("locate_redo", color=color, shown=names[shown],
                        shown_colour=colour_name(_palette(spec)[shown]), where=where)
        return Step(think=think, code=code)
