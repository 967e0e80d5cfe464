"""Verification that a trace's code looked at the pixels: provenance, a twin, and jitter.

A right answer proves little if the code was told it. Three checks, for every teacher:

* **provenance** (``provenance_problem``): a literal in a cell that equals something only the
  renderer knows (an exact box coordinate, a palette colour, a name that is not printed, an
  unprinted value: the family's ``Secrets``) must be explained by the question, the text
  printed in the image, an earlier cell's output, or one of the scripted teacher's perception
  estimates, and every such estimate must be off the truth where the noise model says so.
  Other literals are code constants (thresholds, sizes, margins).
* **twin** (``twin_outcome``): when the code prints the answer, the same cells run on the
  family's counterfactual twin of the scene (the answer-relevant facts changed) must print
  the twin's answer. Code that prints the old answer did not read the pixels.
* **jitter** (``jitter_outcome``): the same cells run on a copy shifted by a few percent (a
  border on every side, so positions relative to the image stay as they were) and re-encoded
  as JPEG must still print the gold answer. Code tied to exact pixels is brittle.

A trace "prints the answer" when the last line its last cell printed is the gold answer (or,
for a choice, the gold option's text): twin and jitter judge what the code computes, and do
not apply (``na``) to answers read off a view by the model.
"""

from __future__ import annotations

import ast
import functools
import io
import math
import re
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
from PIL import Image

from datagen.check.matcher import match, normalize_text
from datagen.records import Box, Percept, Task, Trajectory
from datagen.sandbox import CellResult, Sandbox
from datagen.scenes.base import Secrets, Twin

__all__ = ["JITTER_FRACTION", "Grounding", "Outcome", "check_grounding", "code_answer",
           "code_literals", "jitter_image", "jitter_outcome", "provenance_problem", "rerun",
           "twin_outcome"]

JITTER_FRACTION = 0.02  # border added on every side, as a share of the image's width/height
JITTER_QUALITY = 85
_NUMBER = re.compile(r"-?\d+(?:\.\d+)?")
Status = Literal["pass", "fail", "na"]


@dataclass(frozen=True, slots=True)
class Outcome:
    """One check's result: ``pass``, ``fail`` (reject) or ``na`` (does not apply), and why."""

    status: Status
    detail: str = ""


@dataclass(frozen=True, slots=True)
class Grounding:
    """The three checks of one trajectory."""

    provenance: Outcome
    twin: Outcome
    jitter: Outcome
    seconds: float = 0.0  # what the checks cost (twin rendering and re-runs included)

    @property
    def problem(self) -> tuple[str, str] | None:
        """The reject reason and detail, or None when no check failed."""
        for reason, outcome in (("provenance", self.provenance), ("not_grounded", self.twin),
                                ("brittle", self.jitter)):
            if outcome.status == "fail":
                return reason, outcome.detail
        return None


# ---------------------------------------------------------------------------------------------
# Provenance


@dataclass(frozen=True, slots=True)
class Lit:
    """A literal in a cell: a number, a string, or a colour (three ints 0–255).

    ``data`` says whether a number stands where code writes down data (an element of a tuple
    or list, an assigned, returned or compared value, a call's argument) rather than where it
    sets how code works (an operand of arithmetic, a keyword argument, an index, the argument
    of ``range``). Only data can carry a fact of the scene: ``boxes = [[257, 448, 292,
    483]]``, ``n = Integer(10)`` and ``print(10)`` are data, ``range(10)`` and
    ``w * 384 / side`` are not.
    """

    value: float | str | tuple[int, int, int]
    line: int
    data: bool = True


# Where a number sets how code works rather than stating data: an operand of arithmetic, a
# keyword argument, an index or slice bound, the argument of ``range``.
_CODE_PARENTS = (ast.BinOp, ast.keyword, ast.Subscript, ast.Slice)


def _is_data(parent: ast.AST | None) -> bool:
    if isinstance(parent, ast.Call):
        return not (isinstance(parent.func, ast.Name) and parent.func.id == "range")
    return not isinstance(parent, _CODE_PARENTS)


def code_literals(code: str) -> list[Lit]:
    """Every number, string and colour triple written in ``code`` (a cell that does not parse
    has none: it fails to run anyway)."""
    return list(_literals(code))


@functools.lru_cache(maxsize=1024)
def _literals(code: str) -> tuple[Lit, ...]:
    # Cached: provenance and the twin check both read every kept try's cells, and the same
    # cell text recurs across a shard's tries.
    try:
        tree = ast.parse(code)
    except SyntaxError:
        return ()
    parents = {id(child): node for node in ast.walk(tree) for child in ast.iter_child_nodes(node)}
    out: list[Lit] = []
    negated: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub) \
                and _number(node.operand) is not None:
            negated.add(id(node.operand))
            out.append(Lit(-_number(node.operand), node.lineno,  # type: ignore[operator]
                           _is_data(parents.get(id(node)))))
        elif isinstance(node, ast.Tuple | ast.List) and len(node.elts) == 3:
            vals = [_number(e) for e in node.elts]
            if all(v is not None and float(v).is_integer() and 0 <= v <= 255 for v in vals):
                out.append(Lit(tuple(int(v) for v in vals), node.lineno))  # type: ignore
    for node in ast.walk(tree):
        value = _number(node)
        if value is not None and id(node) not in negated:
            out.append(Lit(value, node.lineno,  # type: ignore[attr-defined]
                           _is_data(parents.get(id(node)))))
        elif isinstance(node, ast.Constant) and isinstance(node.value, str):
            out.append(Lit(node.value, node.lineno))
    return tuple(out)


def _number(node: ast.AST) -> float | None:
    if isinstance(node, ast.Constant) and isinstance(node.value, int | float) \
            and not isinstance(node.value, bool):
        return float(node.value)
    return None


def _numbers_in(texts: Iterable[str]) -> set[float]:
    return {float(m) for text in texts for m in _NUMBER.findall(text.replace(",", ""))}


def _percept_values(percepts: Iterable[Percept]) -> tuple[set[float], set[str]]:
    """The numbers and strings the teacher's (inexact) looks put at its code's disposal."""
    numbers: set[float] = set()
    strings: set[str] = set()

    def walk(v: object) -> None:
        if isinstance(v, bool):
            return
        if isinstance(v, int | float):
            numbers.add(float(v))
        elif isinstance(v, str):
            strings.add(normalize_text(v))
        elif isinstance(v, list | tuple):
            for x in v:
                walk(x)

    for p in percepts:
        if not p.exact:
            walk(p.estimate)
    return numbers, strings


def _same_colour(a: tuple[int, int, int], b: tuple[int, int, int]) -> bool:
    return max(abs(x - y) for x, y in zip(a, b, strict=True)) <= 4


def provenance_problem(traj: Trajectory, printed: frozenset[str], secrets: Secrets) -> str | None:
    """Why a literal of the trace carries a fact the trace could not have seen (None if none).

    Walks the cells in order: what earlier cells printed becomes known to later ones.
    """
    task = traj.task
    known_text = [task.question, *printed]
    known_numbers = _numbers_in(known_text)
    known_strings = {normalize_text(t) for t in known_text}
    question = normalize_text(task.question)
    percepts: list[Percept] = []
    for i, turn in enumerate(traj.turns):
        for p in turn.step.percepts:
            if not p.exact and p.estimate == p.truth:
                return f"cell {i + 1}: a {p.kind} look returned the renderer's exact value " \
                       f"{p.truth!r}"
        percepts.extend(turn.step.percepts)
        code = turn.step.code
        if code is not None:
            seen_numbers, seen_strings = _percept_values(percepts)
            for lit in code_literals(code):
                problem = _unexplained(lit, secrets, known_numbers | seen_numbers,
                                       known_strings | seen_strings, question)
                if problem:
                    return f"cell {i + 1}, line {lit.line}: {problem}"
        if turn.result is not None:
            known_numbers |= _numbers_in([turn.result.stdout])
            known_strings |= {normalize_text(ln) for ln in turn.result.stdout.splitlines()}
            known_text.append(turn.result.stdout)
    return None


def _unexplained(lit: Lit, secrets: Secrets, numbers: set[float], strings: set[str],
                 question: str) -> str | None:
    v = lit.value
    if isinstance(v, tuple):
        hit = next((c for c in secrets.colours if _same_colour(v, c)), None)
        return None if hit is None else f"the palette colour {hit} is typed as {v}"
    if isinstance(v, float):
        if lit.data and v in secrets.numbers \
                and not any(math.isclose(v, n, abs_tol=1e-9) for n in numbers):
            return f"{v:g} is a fact of the scene that nothing shown gives"
        return None
    text = normalize_text(v)
    for secret in secrets.strings:
        s = normalize_text(secret)
        if s and re.search(rf"\b{re.escape(s)}\b", text) and s not in strings \
                and not re.search(rf"\b{re.escape(s)}\b", question) \
                and not any(re.search(rf"\b{re.escape(s)}\b", k) for k in strings):
            return f"the name {secret!r} is not printed anywhere the trace looked"
    return None


# ---------------------------------------------------------------------------------------------
# Re-running the cells


def executed_cells(traj: Trajectory) -> list[str]:
    """The code of every cell the trajectory ran, in order."""
    return [t.step.code for t in traj.turns if t.result is not None and t.step.code is not None]


def rerun(codes: Sequence[str], image: bytes, sandbox: Sandbox) -> list[CellResult]:
    """Run ``codes`` in one fresh session on ``image`` (errors do not stop it: the trace may
    have recovered from one)."""
    with sandbox.session(image) as session:
        return [session.run(code) for code in codes]


def code_answer(results: Sequence[CellResult]) -> str | None:
    """The last line the last cell printed (None if it printed nothing or did not run)."""
    if not results or results[-1].status != "ok":
        return None
    lines = [ln.strip() for ln in results[-1].stdout.splitlines() if ln.strip()]
    return lines[-1] if lines else None


def _prints(said: str | None, gold: str, task: Task) -> bool:
    """Whether the code's printed answer ``said`` is ``gold`` (or, for a choice, its text)."""
    if said is None:
        return False
    if match(said, gold, task.answer_type, task.tolerance):
        return True
    options = task.facts.get("options") or {}
    text = options.get(gold)
    return text is not None and normalize_text(str(text)) == normalize_text(said)


def _computes_answer(traj: Trajectory) -> bool:
    results = [t.result for t in traj.turns if t.result is not None]
    return _prints(code_answer(results), traj.task.answer, traj.task)


def twin_outcome(traj: Trajectory, make_twin: Callable[[], Twin | None] | Twin | None,
                 sandbox: Sandbox) -> Outcome:
    """Run the trace's cells on the twin: they must print the twin's answer.

    ``make_twin`` may be a callable, called only when the check applies (a twin costs a render).
    """
    if not _computes_answer(traj):
        return Outcome("na", "the answer is not printed by the code")
    twin = make_twin() if callable(make_twin) else make_twin
    if twin is None:
        return Outcome("na", "no twin for this question type")
    cells = executed_cells(traj)
    lits = [lit.value for code in cells for lit in code_literals(code)
            if not isinstance(lit.value, tuple)]  # parsed once: this runs for every kept try
    typed = {normalize_text(str(v)) for v in lits} | {f"{v:g}" for v in lits
                                                       if isinstance(v, float)}
    typed.discard("")  # "A" and "." both normalise to nothing: that is no evidence
    if any(n and n in typed for n in map(normalize_text, twin.changed_text)):
        return Outcome("na", "the code types printed values it read")
    said = code_answer(rerun(cells, twin.scene.image, sandbox))
    if _prints(said, twin.answer, traj.task):
        return Outcome("pass")
    return Outcome("fail", f"on a twin whose answer is {twin.answer!r} the code printed "
                           f"{said!r} (the original's answer is {traj.task.answer!r})")


def jitter_image(image: bytes, seed: int) -> bytes:
    """``image`` shifted by a border of ``JITTER_FRACTION`` of its size on every side (edge
    pixels repeated; a little more on two seeded sides) and re-encoded as JPEG."""
    with Image.open(io.BytesIO(image)) as im:
        arr = np.asarray(im.convert("RGB"))
    h, w = arr.shape[:2]
    rng = np.random.default_rng(seed)
    dx, dy = max(2, round(w * JITTER_FRACTION)), max(2, round(h * JITTER_FRACTION))
    extra_x, extra_y = (int(v) for v in rng.integers(0, 3, size=2))
    padded = np.pad(arr, ((dy + extra_y, dy + extra_y), (dx + extra_x, dx + extra_x), (0, 0)),
                    mode="edge")
    buf = io.BytesIO()
    Image.fromarray(padded).save(buf, format="JPEG", quality=JITTER_QUALITY)
    return buf.getvalue()


def jitter_outcome(traj: Trajectory, sandbox: Sandbox) -> Outcome:
    """Run the trace's cells on a shifted, re-encoded copy: they must print the gold answer."""
    if not _computes_answer(traj):
        return Outcome("na", "the answer is not printed by the code")
    seed = int(traj.task.id.split("-")[-1][:8], 16)
    said = code_answer(rerun(executed_cells(traj), jitter_image(traj.task.scene.image, seed),
                             sandbox))
    if _prints(said, traj.task.answer, traj.task):
        return Outcome("pass")
    return Outcome("fail", f"on a copy shifted by {JITTER_FRACTION:.0%} and re-encoded the code "
                           f"printed {said!r}, not {traj.task.answer!r}")


def check_grounding(traj: Trajectory, printed: Callable[[], frozenset[str]],
                    secrets: Callable[[], Secrets], twin: Callable[[], Twin | None],
                    sandbox: Sandbox) -> Grounding:
    """All three checks; a failed provenance check skips the (costly) re-runs."""
    started = time.perf_counter()
    problem = provenance_problem(traj, printed(), secrets())
    if problem is not None:
        skipped = Outcome("na", "provenance failed")
        return Grounding(Outcome("fail", problem), skipped, skipped,
                         time.perf_counter() - started)
    twin_result = twin_outcome(traj, twin, sandbox)
    jitter_result = jitter_outcome(traj, sandbox)
    return Grounding(Outcome("pass"), twin_result, jitter_result, time.perf_counter() - started)


def box_secrets(boxes: Iterable[Box | Sequence[int]]) -> frozenset[float]:
    """The coordinates of ``boxes``, as secrets (``Secrets.numbers``)."""
    return frozenset(float(v) for b in boxes for v in b)
