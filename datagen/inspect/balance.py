"""Blind guessing: how often the most common answer of each question type is right.

A set whose answers a guesser can predict without the image teaches the guess, not the look.
``blind_guess`` takes rows (question type, answer type, question, gold answer) and gives, per
question type, the share of its most common answer and the share a guess would get by chance:
``1 / options`` for a choice (the options listed in the question), ``1 / 2`` for yes/no, and
``1 / k`` for any other answer, where ``k`` is the number of distinct answers the type gave.
A type is balanced when the majority share is at most chance + ``MARGIN``, allowing for the
sampling error of its rows (two standard errors of a share at chance: a type drawn evenly
over eight values shows 26 % in 47 rows one time in a hundred). The card prints the table;
tests/scenes/test_balance.py holds the generators to it.
"""

from __future__ import annotations

import math
import re
from collections import Counter, defaultdict
from collections.abc import Iterable
from dataclasses import dataclass

__all__ = ["MARGIN", "MIN_ROWS", "Guess", "blind_guess", "chance"]

MARGIN = 0.10  # the majority answer may beat chance by at most 10 points
MIN_ROWS = 30  # fewer rows of a type than this say little about its balance
_OPTION = re.compile(r"^[A-H]\. ", re.MULTILINE)


@dataclass(frozen=True, slots=True)
class Guess:
    """One question type's blind-guess numbers."""

    task_type: str
    rows: int
    distinct: int  # distinct gold answers
    majority: str  # the most common gold answer
    share: float  # its share of the rows
    chance: float  # what a guess gets by chance

    @property
    def measured(self) -> bool:
        """Whether there are enough rows to judge the type (``MIN_ROWS``)."""
        return self.rows >= MIN_ROWS

    @property
    def bound(self) -> float:
        """The highest balanced share: chance + ``MARGIN`` + two standard errors at chance."""
        return self.chance + MARGIN + 2 * math.sqrt(self.chance * (1 - self.chance) / self.rows)

    @property
    def balanced(self) -> bool:
        """Whether the majority answer is right at most ``MARGIN`` more often than chance
        (beyond the sampling error of ``rows`` rows)."""
        return self.share <= self.bound + 1e-9


def chance(answer_type: str, questions: Iterable[str], distinct: int) -> float:
    """The share of right answers a guess gets by chance for one question type (see the
    module docstring); ``questions`` are the type's questions (their options are counted)."""
    if answer_type == "choice":
        counts = [len(_OPTION.findall(q)) for q in questions]
        options = max(counts, default=0)
        return 1 / options if options else 1 / max(distinct, 1)
    if answer_type == "yesno":
        return 0.5
    return 1 / max(distinct, 1)


def blind_guess(rows: Iterable[tuple[str, str, str, str]]) -> list[Guess]:
    """Per question type (sorted), its blind-guess numbers; ``rows`` are (task type, answer
    type, question, gold answer)."""
    answers: dict[str, Counter[str]] = defaultdict(Counter)
    questions: dict[str, list[str]] = defaultdict(list)
    kinds: dict[str, str] = {}
    for task_type, answer_type, question, answer in rows:
        answers[task_type][answer.strip().lower()] += 1
        questions[task_type].append(question)
        kinds[task_type] = answer_type
    out = []
    for task_type in sorted(answers):
        counts = answers[task_type]
        top, n = counts.most_common(1)[0]
        total = sum(counts.values())
        out.append(Guess(task_type=task_type, rows=total, distinct=len(counts), majority=top,
                         share=round(n / total, 4),
                         chance=round(chance(kinds[task_type], questions[task_type],
                                             len(counts)), 4)))
    return out
