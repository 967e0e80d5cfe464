"""Question wording: enough phrasings per type, and grammatical articles in what is rendered."""

from __future__ import annotations

import re

import pytest

from datagen.scenes.base import phrasings
from datagen.scenes.registry import FAMILIES
from datagen.templates import indefinite
from tests.support.posed import posed_tasks

MIN_PHRASINGS = 8
# "a" before a vowel sound, "an" before a consonant one (the words our questions use; a
# capital "A" is a point's name as often as an article: "A and B").
_A_VOWEL = re.compile(r"\ba (?=(?:[aeio]\w|8|11\b|18\b|outline|orange|equilateral))")
_AN_CONSONANT = re.compile(r"\b[Aa]n (?=[bcdfghjklmnpqrstvwxyz0-79]\w*)")


@pytest.mark.parametrize("family", list(FAMILIES))
def test_every_question_type_has_enough_phrasings(family: str) -> None:
    known = phrasings(family)
    short = {q: len(known.get(q, ())) for q in FAMILIES[family].questions
             if len(known.get(q, ())) < MIN_PHRASINGS}
    assert not short, short


def test_composed_phrasings_are_every_combination() -> None:
    # templates/questions/search.yaml: count is 5 asks x 3 endings.
    count = phrasings("search")["count"]
    assert len(count) == 15 == len(set(count))
    assert all("\n " not in p and " \n" not in p for f in FAMILIES
               for ps in phrasings(f).values() for p in ps)


@pytest.mark.parametrize(("phrase", "expected"), [
    ("outline pink star", "an outline pink star"), ("orange circle", "an orange circle"),
    ("striped red star", "a striped red star"), ("8", "an 8"), ("80", "an 80"),
    ("18", "an 18"), ("180", "a 180"), ("unit square", "a unit square"),
    ("equilateral triangle", "an equilateral triangle"), ("hexagon", "a hexagon"),
])
def test_the_article_filter(phrase: str, expected: str) -> None:
    assert indefinite(phrase) == expected


@pytest.mark.parametrize("family", ["chart", "geometry", "search"])
def test_rendered_questions_use_the_right_article(family: str) -> None:
    bad = [t.question for t in posed_tasks(family, 300)
           if _A_VOWEL.search(t.question) or _AN_CONSONANT.search(t.question)]
    assert not bad, bad[:5]


def test_the_article_check_catches_the_old_mistake() -> None:
    assert _A_VOWEL.search("Is there a outline pink star in the image?")
    assert _AN_CONSONANT.search("Is there an striped red star?")
    assert not _A_VOWEL.search("Is there an outline pink star in the image?")
