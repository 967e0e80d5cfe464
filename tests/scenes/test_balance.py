"""Balanced answers, honest difficulty and varied wording, measured over thousands of tasks.

Generation only (``tests.support.posed``): no teacher, no sandbox. A question type is balanced
when its most common answer is right at most 10 points more often than chance
(``datagen.inspect.balance``); the chart family's types are q18a's (its test can call
``posed_tasks("chart", n)`` and ``blind_guess`` the same way).
"""

from __future__ import annotations

from collections import Counter

import pytest

from datagen.inspect.balance import MIN_ROWS, blind_guess
from datagen.records import Task
from datagen.scenes.search import COUNT_MAX
from tests.support.posed import posed_tasks

SCENES = {"geometry": 1000, "search": 800}


def _tasks(family: str) -> tuple[Task, ...]:
    return posed_tasks(family, SCENES[family])


def _rows(tasks: tuple[Task, ...]) -> list[tuple[str, str, str, str]]:
    return [(t.task_type, t.answer_type, t.question, t.answer) for t in tasks]


@pytest.mark.parametrize("family", list(SCENES))
def test_no_question_type_is_guessable(family: str) -> None:
    guesses = blind_guess(_rows(_tasks(family)))
    measured = [g for g in guesses if g.measured]
    assert len(measured) >= 0.6 * len(guesses)  # enough rows to judge most types
    unbalanced = [(g.task_type, g.majority, g.share, g.chance) for g in measured
                  if not g.balanced]
    assert not unbalanced, unbalanced


def test_the_bound_rejects_a_guessable_type() -> None:
    skewed = [("t.count", "integer", "How many?", "1")] * 60 + \
        [("t.count", "integer", "How many?", str(n)) for n in (0, 2, 3, 4) for _ in range(10)]
    (guess,) = blind_guess(skewed)
    assert guess.measured and guess.chance == pytest.approx(0.2) and not guess.balanced
    fair = [("t.yn", "yesno", "Is it?", a) for a in ["yes"] * 55 + ["no"] * 45]
    assert blind_guess(fair)[0].balanced
    letters = [("t.c", "choice", "Q?\nA. x\nB. y\nC. z\nD. w", "A")] * 50 + \
        [("t.c", "choice", "Q?\nA. x\nB. y\nC. z\nD. w", k) for k in "BCD" for _ in range(10)]
    assert blind_guess(letters)[0].chance == 0.25 and not blind_guess(letters)[0].balanced
    assert not blind_guess(skewed[:10])[0].measured and MIN_ROWS > 10


def test_search_counts_include_zero_and_spread_over_the_range() -> None:
    counts = Counter(int(t.answer) for t in _tasks("search") if t.facts["op"] == "count")
    assert set(counts) == set(range(COUNT_MAX + 1)), counts
    assert max(counts.values()) <= 0.3 * sum(counts.values())  # chance 1/5 + 10 points


def test_search_yes_and_no_and_relations_are_even() -> None:
    tasks = _tasks("search")
    exists = Counter(t.answer for t in tasks if t.facts["op"] == "exists")
    assert 0.4 <= exists["yes"] / sum(exists.values()) <= 0.6, exists
    relations = Counter(t.facts["options"][t.answer] for t in tasks
                        if t.facts["op"] == "relation")
    assert set(relations) == {"left", "right", "above", "below"}, relations
    for t in tasks:
        if t.facts["op"] == "relation":  # the options never say which axis is asked
            assert set(t.facts["options"].values()) == {"left", "right", "above", "below"}


def test_parallel_choices_do_not_always_list_x_and_180_minus_x() -> None:
    both = []
    for t in _tasks("geometry"):
        if t.facts["op"] != "parallel_choice":
            continue
        values = {int(v.rstrip("°")) for v in t.facts["options"].values()}
        answer = int(t.facts["options"][t.answer].rstrip("°"))
        both.append(180 - answer in values)
    assert len(both) >= 50 and 0.3 <= sum(both) / len(both) <= 0.7, (sum(both), len(both))


@pytest.mark.parametrize("family", list(SCENES))
def test_option_letters_are_balanced(family: str) -> None:
    letters = Counter(t.answer for t in _tasks(family) if t.answer_type == "choice")
    total = sum(letters.values())
    assert total >= 100 and set(letters) == set("ABCD")
    assert max(letters.values()) / total <= 0.35, letters


@pytest.mark.parametrize("family", list(SCENES))
def test_every_difficulty_level_comes_from_the_question(family: str) -> None:
    tasks = _tasks(family)
    levels = Counter(t.difficulty for t in tasks)
    assert all(levels[d] >= 0.1 * len(tasks) for d in ("easy", "medium", "hard")), levels
    # The score, not the scene: one scene's questions differ in difficulty.
    by_scene: dict[str, set[str]] = {}
    for t in tasks:
        by_scene.setdefault(t.scene.id, set()).add(t.difficulty)
    assert sum(len(v) > 1 for v in by_scene.values()) >= 0.2 * len(by_scene)


def test_adding_three_printed_sides_is_easier_than_herons_formula() -> None:
    levels: dict[str, Counter[str]] = {}
    for t in _tasks("geometry"):
        levels.setdefault(t.facts["op"], Counter())[t.difficulty] += 1
    assert set(levels["triangle_perimeter"]) == {"easy"}
    assert set(levels["heron_area"]) == {"hard"}
    assert set(levels["law_of_cosines"]) == {"hard"}


@pytest.mark.parametrize("family", list(SCENES))
def test_most_questions_are_worded_differently(family: str) -> None:
    questions = [t.question for t in _tasks(family)[:1000]]
    assert len(set(questions)) >= 0.8 * len(questions), len(set(questions))
