"""The matcher accepts what matches and rejects what does not, per answer type."""

from __future__ import annotations

import pytest

from datagen.check.matcher import extract_answer, match, normalize_text


@pytest.mark.parametrize(("pred", "gold", "kind", "tol", "ok"), [
    ("29", "29", "number", 0.01, True),
    ("29.2", "29", "number", 0.01, True),
    ("29.5", "29", "number", 0.01, False),
    ("1,200", "1200", "number", 0.0, True),
    ("12.5%", "12.5", "number", 0.01, True),
    ("about 29 or 30", "29", "number", 0.01, False),
    ("", "29", "number", 0.01, False),
    ("0", "0", "number", 0.01, True),
    ("4", "4", "integer", 0, True),
    ("4.0", "4", "integer", 0, True),
    ("4.5", "4", "integer", 0, False),
    ("5", "4", "integer", 0, False),
    ("B", "B", "choice", 0, True),
    ("(b)", "B", "choice", 0, True),
    ("B. Rome", "B", "choice", 0, True),
    ("C", "B", "choice", 0, False),
    ("Rome", "B", "choice", 0, False),
    ("Yes", "yes", "yesno", 0, True),
    ("yes.", "yes", "yesno", 0, True),
    ("no", "yes", "yesno", 0, False),
    ("maybe", "no", "yesno", 0, False),
    ("The Cherries", "Cherries", "text", 0, True),
    ("cherries!", "Cherries", "text", 0, True),
    ("Bananas", "Cherries", "text", 0, False),
    ("Q1 2023", "Q1 2023", "text", 0, True),
])
def test_match(pred: str, gold: str, kind: str, tol: float, ok: bool) -> None:
    assert match(pred, gold, kind, tol) is ok  # type: ignore[arg-type]


def test_none_never_matches() -> None:
    assert not match(None, "29", "number", 0.5)


def test_extract_answer_takes_the_last_tag() -> None:
    assert extract_answer("<answer>1</answer> then <answer> 2 </answer>") == "2"
    assert extract_answer("no tag here") is None


def test_normalize_text() -> None:
    assert normalize_text("  The  Model-X!  ") == "modelx"
