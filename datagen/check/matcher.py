"""Answer matching: the one matcher that verifies the data and scores RL rollouts.

``match(predicted, gold, answer_type, tolerance)`` decides; ``extract_answer`` pulls the text of
the last ``<answer>…</answer>``. ``check.verify`` uses them to keep or reject a trajectory.

Expressions (``5*sqrt(3)``, ``√75``, ``\\frac{25\\pi}{2}``, ``3/4``) are compared by value with
sympy after a strict whitelist: model output is untrusted and sympy's parser evaluates what it
reads, so only digits, operators, brackets and a few function names get through, and powers
must have small literal exponents (``9**9**9**9`` would otherwise hang the verifier). We use our
own small parser rather than math-verify: the answers here are plain expressions, and
math-verify brings an ANTLR LaTeX grammar and answer-extraction heuristics we do not need.
"""

from __future__ import annotations

import math
import re
import string

import sympy as sp
from sympy.parsing.sympy_parser import (
    implicit_multiplication_application,
    parse_expr,
    standard_transformations,
)

from datagen.records import AnswerType

__all__ = ["extract_answer", "match", "matcher_name", "normalize_text", "parse_expression"]

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


_FUNCTIONS = {"sqrt": sp.sqrt, "pi": sp.pi, "sin": sp.sin, "cos": sp.cos, "tan": sp.tan,
              "log": sp.log, "exp": sp.exp, "abs": sp.Abs}
_SAFE_GLOBALS = {"Integer": sp.Integer, "Float": sp.Float, "Rational": sp.Rational,
                 "__builtins__": {}}
_LATEX = [
    (re.compile(r"\\[dt]?frac\{([^{}]*)\}\{([^{}]*)\}"), r"((\1)/(\2))"),
    (re.compile(r"\\sqrt\{([^{}]*)\}"), r"sqrt(\1)"),
    (re.compile(r"\\sqrt\s*(\d+)"), r"sqrt(\1)"),
    (re.compile(r"√\s*(\d+(?:\.\d+)?)"), r"sqrt(\1)"),
]
# A degree mark: ``°``, LaTeX ``^\circ`` / ``^{\circ}``, or the word (after a number).
_DEGREE_MARK = r"(?:°|\^\s*\{?\s*\\circ\s*\}?|\\circ|\s*degrees?\b|\s*deg\b)"
_DEGREES = re.compile(r"(\d+(?:\.\d+)?)\s*" + _DEGREE_MARK)
_TRIG = re.compile(r"(?:sin|cos|tan)(?![a-z])")
_PLAIN = {"\\pi": "pi", "π": "pi", "√": "sqrt", "\\cdot": "*", "\\times": "*", "×": "*",
          "·": "*", "−": "-", "^": "**", "\\left": "", "\\right": "",
          "\\sin": "sin", "\\cos": "cos", "\\tan": "tan", "°": "", "$": "",
          "{": "(", "}": ")", "\\,": "", "degrees": ""}
_ALLOWED = re.compile(r"[0-9a-z+\-*/(). ]*")
_POWER_OK = re.compile(r"\*\*\s*(?:\(?-?\d{1,2}(?:/\d{1,2})?\)?)(?!\s*\*\*)")


def _degrees(text: str) -> str:
    """Degree marks read as degrees: inside a trigonometric answer (``20 sin 70°``) a number
    marked in degrees becomes radians, as sympy's ``sin`` takes them; anywhere else the mark
    is dropped (``35°`` is the angle 35 of an answer asked in degrees)."""
    if _TRIG.search(text):
        return _DEGREES.sub(lambda m: f"({m.group(1)}*pi/180)", text)
    return _DEGREES.sub(lambda m: m.group(1), text)


def parse_expression(text: str) -> sp.Expr | None:
    """The value of a plain or LaTeX-ish math expression; None if it is not a safe, closed one."""
    t = text.strip().lower().rstrip(".")
    if not t or len(t) > 200:
        return None
    t = _degrees(t)
    for _ in range(3):  # nested \frac{\sqrt{..}}{..}
        for pattern, repl in _LATEX:
            t = pattern.sub(repl, t)
    for old, new in _PLAIN.items():
        t = t.replace(old, new)
    t = t.replace(",", "") if re.fullmatch(r"[\d,]+(?:\.\d+)?", t.strip()) else t
    if not _ALLOWED.fullmatch(t) or set(re.findall(r"[a-z]+", t)) - set(_FUNCTIONS):
        return None
    if t.count("**") != len(_POWER_OK.findall(t)):
        return None
    try:
        value = parse_expr(t, local_dict=dict(_FUNCTIONS), global_dict=dict(_SAFE_GLOBALS),
                           transformations=(*standard_transformations,
                                            implicit_multiplication_application))
    except Exception:  # any parse failure means "not an expression"
        return None
    if not isinstance(value, sp.Expr) or value.free_symbols:
        return None
    return value


def _real(text: str) -> float | None:
    """A real number from an answer: an expression (``25*pi``, ``1,200``) or a number with a
    unit around it (``12.5%``, ``$3``, ``29 units``)."""
    expr = parse_expression(text)
    if expr is not None:
        try:
            return float(expr)
        except TypeError:  # complex
            return None
    return _parse_number(text)


def _same_value(p: sp.Expr, g: sp.Expr, rel: float) -> bool:
    try:
        pv, gv = complex(sp.N(p, 30)), complex(sp.N(g, 30))
    except (TypeError, ValueError):
        return False
    return abs(pv - gv) <= max(rel * abs(gv), 1e-12)


def _choice_letter(text: str) -> str | None:
    text = text.strip()
    m = re.fullmatch(r"\(?([A-Za-z])\)?[.):]?(?:\s.*)?", text, re.DOTALL)
    return m.group(1).upper() if m else None


def match(predicted: str | None, gold: str, answer_type: AnswerType,
          tolerance: float = 0.0) -> bool:
    """Whether ``predicted`` answers ``gold``.

    number: relative tolerance (``|p - g| <= tol * max(|g|, 1e-9)``, or exact when tol is 0);
    integer: exact integer; choice: same option letter; yesno: same polarity; text: normalized
    text equality; expression: the same value (symbolic forms compared numerically to 1e-9).
    """
    if predicted is None:
        return False
    if answer_type == "number":
        p, g = _real(predicted), _real(gold)
        return p is not None and g is not None and math.isclose(p, g, rel_tol=tolerance,
                                                                abs_tol=1e-9)
    if answer_type == "expression":
        pe, ge = parse_expression(predicted), parse_expression(gold)
        return pe is not None and ge is not None and _same_value(pe, ge, max(tolerance, 1e-9))
    if answer_type == "integer":
        p, g = _real(predicted), _real(gold)
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
