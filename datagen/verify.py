"""Answer matching: the one matcher that verifies the data and scores RL rollouts.

``match(predicted, gold, answer_type, tolerance)`` decides; ``extract_answer`` pulls the text of
the last ``<answer>…</answer>``; ``verify_trajectory`` gives a kept/rejected verdict with a reason.
"""

from __future__ import annotations

import math
import re
import string
from dataclasses import dataclass

from datagen.records import AnswerType, Trajectory

__all__ = ["Verdict", "extract_answer", "match", "matcher_name", "normalize_text",
           "verify_trajectory"]

_ANSWER = re.compile(r"<answer>(.*?)</answer>", re.DOTALL | re.IGNORECASE)
_NUMBER = re.compile(r"[-+]?(?:\d+(?:,\d{3})*(?:\.\d*)?|\.\d+)(?:[eE][-+]?\d+)?")
_ARTICLES = re.compile(r"\b(a|an|the)\b")
_YES = {"yes", "y", "true", "correct"}
_NO = {"no", "n", "false", "incorrect"}


def extract_answer(text: str) -> str | None:
    """The content of the last ``<answer>`` tag in ``text``, stripped; None if there is none."""
    found = _ANSWER.findall(text)
    return found[-1].strip() if found else None


def normalize_text(text: str) -> str:
    """Lower case, no punctuation, no articles, single spaces."""
    text = text.lower().translate(str.maketrans("", "", string.punctuation))
    return " ".join(_ARTICLES.sub(" ", text).split())


def _parse_number(text: str) -> float | None:
    """The single number in ``text`` (``29``, ``1,200``, ``12.5%``, ``$3``); None if 0 or 2+."""
    found = _NUMBER.findall(text.replace(" ", ""))
    if len(found) != 1:
        return None
    try:
        return float(found[0].replace(",", ""))
    except ValueError:
        return None


def _choice_letter(text: str) -> str | None:
    text = text.strip()
    m = re.fullmatch(r"\(?([A-Za-z])\)?[.):]?(?:\s.*)?", text, re.DOTALL)
    return m.group(1).upper() if m else None


def match(predicted: str | None, gold: str, answer_type: AnswerType,
          tolerance: float = 0.0) -> bool:
    """Whether ``predicted`` answers ``gold``.

    number: relative tolerance (``|p - g| <= tol * max(|g|, 1e-9)``, or exact when tol is 0);
    integer: exact integer; choice: same option letter; yesno: same polarity; text: normalized
    text equality.
    """
    if predicted is None:
        return False
    if answer_type == "number":
        p, g = _parse_number(predicted), _parse_number(gold)
        if p is None or g is None:
            return False
        return math.isclose(p, g, rel_tol=tolerance, abs_tol=1e-9)
    if answer_type == "integer":
        p, g = _parse_number(predicted), _parse_number(gold)
        return p is not None and g is not None and p.is_integer() and p == g
    if answer_type == "choice":
        p, g = _choice_letter(predicted), _choice_letter(gold)
        return p is not None and p == g
    if answer_type == "yesno":
        p, g = normalize_text(predicted), normalize_text(gold)
        return (p in _YES and g in _YES) or (p in _NO and g in _NO)
    if answer_type == "text":
        return normalize_text(predicted) == normalize_text(gold) != ""
    raise ValueError(f"unknown answer type {answer_type!r}")


def matcher_name(answer_type: AnswerType, tolerance: float) -> str:
    """How a verdict was reached, as recorded in each row (``number(rel_tol=0.01)``)."""
    return f"number(rel_tol={tolerance:g})" if answer_type == "number" else answer_type


@dataclass(frozen=True, slots=True)
class Verdict:
    """Kept or not, and why."""

    kept: bool
    reason: str  # "verified", or a reject reason: exec_error, timeout, crashed, no_answer, ...
    detail: str
    predicted: str | None


def verify_trajectory(traj: Trajectory, max_turns: int) -> Verdict:
    """Keep a trajectory only if every cell ran cleanly and its final answer matches gold."""
    task = traj.task
    predicted = traj.final_answer
    for i, turn in enumerate(traj.turns):
        res = turn.result
        if res is not None and res.status != "ok":
            reason = {"error": "exec_error"}.get(res.status, res.status)
            return Verdict(False, reason, f"cell {i + 1}: {res.error_type}: {res.error_message}",
                           predicted)
    if predicted is None:
        if len(traj.turns) >= max_turns:
            return Verdict(False, "turn_limit", f"no answer after {max_turns} turns", None)
        return Verdict(False, "no_answer", "the last turn gave no <answer>", None)
    if not match(predicted, task.answer, task.answer_type, task.tolerance):
        return Verdict(False, "wrong_answer", f"predicted {predicted!r}, gold {task.answer!r} "
                       f"({matcher_name(task.answer_type, task.tolerance)})", predicted)
    return Verdict(True, "verified", matcher_name(task.answer_type, task.tolerance), predicted)
