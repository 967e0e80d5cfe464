"""What a careful annotator checks before signing a chart question: one rule per ambiguity.

Each rule applies to some chart tasks and says whether a task passes it:

* ``labels_clear``: no printed text overlaps another or leaves the image (measured from the
  rendered extents when the chart was drawn), so every label can be read;
* ``segment_or_total``: a question about a stacked chart names the segment it asks about, or
  says that it adds all segments of each bar;
* ``precision_stated``: a number read off a chart without value labels states the grid it is
  read to ("to the nearest 5"), its gold lies on that grid, and its tolerance is the one
  derived from that grid (``read_tolerance``);
* ``distinct_colours``: a question that names a colour is about a chart where no other colour
  is its near twin (blue/navy, cyan/teal, gold/orange/olive);
* ``ordered_categories``: trend questions and line charts run over ordered categories
  (years, months, quarters, days).

``chart.pose`` drops a question that fails a rule and lists the rules it passed in
``facts["checks"]``; ``rule_counts`` tallies tasks per rule (checked, failed) for the card.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any

import numpy as np

from datagen.records import Task
from datagen.templates import load_yaml

__all__ = ["NUMBER_READS", "RULES", "check", "near_twins", "read_tolerance", "rule_counts"]

# Question types whose number answer is computed from values read off the chart.
NUMBER_READS = ("value", "difference", "sum", "mean", "percentage", "ratio", "range")
# Types whose answer is a combination of read values (the others state their own rounding).
_LINEAR = ("value", "difference", "sum", "range")
_RELATIVE = 0.01  # ratios and percentages, rounded as their question says


def _vocab() -> dict[str, Any]:
    return load_yaml("scenes/chart.yaml")


def _rgb(hex_colour: str) -> tuple[int, int, int]:
    h = hex_colour.lstrip("#")
    return int(h[0:2], 16), int(h[2:4], 16), int(h[4:6], 16)


def _lab(hex_colour: str) -> np.ndarray:
    """CIE L*a*b* of an sRGB colour (D65): distances there follow what people see."""
    rgb = np.array(_rgb(hex_colour), dtype=float) / 255
    lin = np.where(rgb > 0.04045, ((rgb + 0.055) / 1.055) ** 2.4, rgb / 12.92)
    xyz = np.array([[0.4124, 0.3576, 0.1805], [0.2126, 0.7152, 0.0722],
                    [0.0193, 0.1192, 0.9505]]) @ lin / np.array([0.95047, 1.0, 1.08883])
    f = np.where(xyz > 0.008856, np.cbrt(xyz), 7.787 * xyz + 16 / 116)
    return np.array([116 * f[1] - 16, 500 * (f[0] - f[1]), 200 * (f[1] - f[2])])


def near_twins(a: str, b: str) -> bool:
    """Whether the palette colours named ``a`` and ``b`` could be taken for one another: too
    close in CIE L*a*b* (``min_colour_distance``), or names a reader mixes up
    (``colour_twins`` in templates/scenes/chart.yaml)."""
    vocab = _vocab()
    if a == b:
        return True
    if any(a in group and b in group for group in vocab["colour_twins"]):
        return True
    gap = float(np.linalg.norm(_lab(vocab["colors"][a]) - _lab(vocab["colors"][b])))
    return gap < vocab["min_colour_distance"]


def read_tolerance(spec: Mapping[str, Any], op: str, answer: str, n_values: int) -> float:
    """The relative tolerance of a number answer about ``spec`` (``Task.tolerance``).

    Printed values are exact, and ratios and percentages are rounded as their question says:
    1 %. A value read off an unlabelled chart is known to half a grid step (the question says
    "to the nearest <step>"), so a read value, a difference, a range or a sum is matched to
    half a step, and a mean to half a step over the number of values. The matcher is relative
    (``|p - g| <= tol * max(|p|, |g|)``): ``A / (|g| + A)`` accepts at most ``A`` either side.
    """
    if spec["value_labels"] or spec["kind"] == "scatter" or op not in _LINEAR + ("mean",):
        return _RELATIVE
    absolute = spec["step"] / 2 / (n_values if op == "mean" else 1)
    gold = abs(float(answer))
    return 0.0 if gold == 0 else round(absolute / (gold + absolute), 6)


Rule = Callable[[Task], "bool | None"]  # None: the rule does not apply to the task


def _labels_clear(task: Task) -> bool:
    return not task.scene.spec["layout"].get("collisions")


def _segment_or_total(task: Task) -> bool | None:
    spec, f = task.scene.spec, task.facts
    if spec["kind"] != "stacked" or f["op"] == "legend":
        return None
    text = task.question
    if f.get("total"):
        return "all segments" in text
    return bool(f.get("series")) and str(f["series"]) in text and "segment" in text \
        and "all segments" not in text


def _precision_stated(task: Task) -> bool | None:
    spec, op = task.scene.spec, task.facts["op"]
    if task.answer_type != "number" or spec["value_labels"] or spec["kind"] == "scatter":
        return None
    step = spec["step"]
    stated = f"nearest {step}" in task.question
    on_grid = op not in _LINEAR or float(task.answer) % step == 0
    tol = read_tolerance(spec, op, task.answer, len(spec["categories"]))
    return stated and on_grid and task.tolerance == tol


def _distinct_colours(task: Task) -> bool | None:
    colour = task.facts.get("color")
    if not colour:
        return None
    spec = task.scene.spec
    names = spec["slice_color_names"] if spec["kind"] == "pie" \
        else [s["color_name"] for s in spec["series"]]
    others = list(names)
    others.remove(colour)
    return not any(near_twins(colour, other) for other in others)


def _ordered_categories(task: Task) -> bool | None:
    spec = task.scene.spec
    if task.facts["op"] != "trend" and spec["kind"] != "line":
        return None
    return bool(spec["ordered"])


RULES: dict[str, Rule] = {
    "labels_clear": _labels_clear,
    "segment_or_total": _segment_or_total,
    "precision_stated": _precision_stated,
    "distinct_colours": _distinct_colours,
    "ordered_categories": _ordered_categories,
}


def check(task: Task) -> dict[str, bool]:
    """The rules that apply to a chart task, each with whether the task passes it."""
    verdict = {name: rule(task) for name, rule in RULES.items()}
    return {name: bool(ok) for name, ok in verdict.items() if ok is not None}


def rule_counts(tasks: Iterable[Task]) -> dict[str, dict[str, int]]:
    """Per rule, how many of ``tasks`` it applied to (``checked``) and how many failed it."""
    counts = {name: {"checked": 0, "failed": 0} for name in RULES}
    for task in tasks:
        for name, ok in check(task).items():
            counts[name]["checked"] += 1
            counts[name]["failed"] += not ok
    return counts
