"""The one small interface every scene family implements, and the posing every family shares.

A family (``chart``, ``geometry``, ``search``) is one module that owns its scenes' spec, their
rendering and its question types, and exposes one ``Family``:

* ``kinds``: the kinds of scene it draws (chart kinds, geometry constructions, search
  backgrounds), each with the question types that can be asked about it;
* ``questions``: its ``QuestionType`` objects, one per type. A question type knows its name,
  answer type, the atomic ops a solution needs, whether it is a step harder than its scene, and
  how to draft a question from a scene (``draft``: gold answer, facts, phrasing names, options);
* ``make_scene(index, seed, options)``: scene number ``index`` of a run (pure);
* ``pose(scene, k)``: up to ``k`` tasks, made by ``Poser``.

What every question needs apart from its draft is done here, once: the phrasing drawn from
``templates/questions/<family>.yaml``, the lettered options, the difficulty, the tolerance, the
task id and the task type. Adding a question type is one ``QuestionType`` and its phrasings;
``tests/scenes/test_registry.py`` builds a task of every kind and type, so a missing part fails
there rather than inside a shard.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from datagen.records import AnswerType, Box, Scene, Task, stable_id
from datagen.templates import load_yaml, render_string

__all__ = ["DIFFICULTIES", "NUMBER_TOLERANCE", "Draft", "Family", "Poser", "QuestionType",
           "Secrets", "Twin", "format_number", "letter_options", "no_secrets", "no_twin",
           "options_text", "pose_rng"]

DIFFICULTIES = ("easy", "medium", "hard")
# Relative tolerance of "number" answers; every other answer type is matched exactly.
NUMBER_TOLERANCE = 0.01
LETTERS = "ABCD"


@dataclass(frozen=True, slots=True)
class Draft:
    """One question about one scene, before it is phrased.

    ``answer`` is the gold answer (for a choice question, the answer's text: ``pose`` shuffles
    ``choices`` into lettered options and the letter becomes the gold answer). ``facts`` is
    what a solver and the scripted teacher need to know about the question; ``names`` are the
    values the phrasing template sees; ``grounding`` the boxes a trace's crops must show.
    """

    answer: str
    facts: Mapping[str, Any] = field(default_factory=dict)
    names: Mapping[str, Any] = field(default_factory=dict)
    choices: Sequence[str] = ()  # the right answer first, then the distractors
    options: Mapping[str, str] | None = None  # already lettered (the answer is the letter)
    grounding: tuple[Box, ...] = ()


@dataclass(frozen=True, slots=True)
class QuestionType:
    """A kind of question: its name, answer type, ops, and how it is drafted from a scene.

    ``draft`` takes the family's arguments (the scene's spec, a generator and what the family
    prepared for the scene) and returns a ``Draft``, or None where the question does not apply.
    ``harder`` puts its tasks one difficulty level above their scene's.
    """

    name: str
    answer_type: AnswerType
    ops: tuple[str, ...]
    draft: Callable[..., Draft | None]
    harder: bool = False


@dataclass(frozen=True, slots=True)
class Secrets:
    """What only the renderer knows about a task's scene: facts a trace may not type.

    ``numbers``: exact coordinates, unprinted values and counts, scene parameters;
    ``colours``: exact palette colours (RGB); ``strings``: names that are not printed.
    Verification rejects a cell literal that equals one of them unless the question, the
    printed text, an earlier output or an inexact perception estimate explains it.
    """

    numbers: frozenset[float] = frozenset()
    colours: tuple[tuple[int, int, int], ...] = ()
    strings: frozenset[str] = frozenset()


@dataclass(frozen=True, slots=True)
class Twin:
    """A counterfactual twin of a task: the same question about a changed scene.

    ``answer`` is the twin's gold answer, which differs from the task's. ``changed_text`` is
    the printed text of the original that the twin changes (value labels, marked numbers): a
    trace whose code types one of them read it off the image, which is allowed, so the twin
    cannot tell whether its code looked.
    """

    scene: Scene
    answer: str
    changed_text: frozenset[str] = frozenset()


def no_secrets(task: Task) -> Secrets:
    """A family that declares no secrets (provenance has nothing to check)."""
    return Secrets()


def no_twin(task: Task) -> Twin | None:
    """A family without twins (no twin check for its tasks)."""
    return None


def nothing_printed(scene: Scene) -> frozenset[str]:
    """A family that prints no text in its images."""
    return frozenset()


@dataclass(frozen=True, slots=True)
class Family:
    """A family of scenes: what it draws, what it asks, and how.

    ``make_scene(index, seed, options)`` must be pure (same arguments, same bytes); ``options``
    are the family's knobs from the build config (``max_side``, ``clutter``; a family ignores
    the ones it has no use for). ``pose(scene, k, only)`` returns up to ``k`` tasks whose gold
    answers come from the scene's spec; ``only`` restricts the question types (for tests).
    ``kinds`` maps each scene kind to the question types that can be asked about it.

    For verification that the code looked (``check.grounding``): ``printed(scene)`` is the
    text printed in the image (titles, labels, numbers on objects), ``secrets(task)`` what only
    the renderer knows, and ``twin(task)`` a counterfactual twin whose gold answer differs
    (None where the question type has none).
    """

    name: str
    kinds: Mapping[str, tuple[str, ...]]
    questions: Mapping[str, QuestionType]
    make_scene: Callable[[int, int, Mapping[str, Any]], Scene]
    pose: Callable[..., list[Task]]
    printed: Callable[[Scene], frozenset[str]] = nothing_printed
    secrets: Callable[[Task], Secrets] = no_secrets
    twin: Callable[[Task], Twin | None] = no_twin

    def __post_init__(self) -> None:
        # A kind that names a question type nobody defined fails at import, not in a shard.
        for kind, types in self.kinds.items():
            unknown = set(types) - set(self.questions)
            if unknown:
                raise ImportError(f"{self.name} kind {kind!r} asks unknown question types "
                                  f"{sorted(unknown)}")
        phrasings = load_yaml(f"questions/{self.name}.yaml")
        missing = [q for q in self.questions if not phrasings.get(q)]
        if missing:
            raise ImportError(f"templates/questions/{self.name}.yaml has no phrasings for "
                              f"{missing}")


def format_number(value: float) -> str:
    """Canonical text of a gold number: ``29``, ``0.35``, ``-4.5`` (no trailing zeros)."""
    if float(value).is_integer():
        return str(int(value))
    return f"{value:.6f}".rstrip("0").rstrip(".")


def pose_rng(scene: Scene) -> np.random.Generator:
    """The generator of a scene's questions: seeded by the scene id alone."""
    return np.random.default_rng(int(stable_id(scene.id, "pose"), 16))


def letter_options(rng: np.random.Generator, choices: Sequence[str]) -> tuple[str, dict[str, str]]:
    """Shuffle ``choices`` (the right one first) into options A–D; returns the right letter."""
    order = rng.permutation(len(choices))
    options = {LETTERS[i]: choices[j] for i, j in enumerate(order)}
    return next(k for k, v in options.items() if v == choices[0]), options


def options_text(options: Mapping[str, str]) -> str:
    """The options as the question lists them: one ``A. text`` per line."""
    return "\n".join(f"{k}. {v}" for k, v in options.items())


@dataclass(slots=True)
class Poser:
    """Turns drafts into tasks for one scene: phrasing, options, difficulty, tolerance, ids.

    ``level`` is the scene's difficulty index; ``typed_by_kind`` puts the scene kind in the
    task type (``chart.vbar.value``) or not (``search.count``); ``numbered_ids`` adds the
    task's place to its id (a family that may ask one type twice about a scene).
    """

    family: str
    scene: Scene
    rng: np.random.Generator
    typed_by_kind: bool = True
    numbered_ids: bool = False
    tasks: list[Task] = field(default_factory=list)

    def add(self, qtype: QuestionType, draft: Draft) -> Task:
        """Phrase ``draft`` as a question of type ``qtype`` and append the task."""
        facts = {**draft.facts}
        answer = draft.answer
        options = dict(draft.options) if draft.options is not None else None
        if draft.choices:
            answer, options = letter_options(self.rng, draft.choices)
        if options is not None:
            facts["options"] = options
        phrasings = load_yaml(f"questions/{self.family}.yaml")[qtype.name]
        pick = phrasings[int(self.rng.integers(len(phrasings)))]
        question = render_string(pick, options_text=options_text(options or {}), **draft.names)
        level = DIFFICULTIES.index(self.scene.difficulty) + qtype.harder
        parts = (qtype.name, len(self.tasks)) if self.numbered_ids else (qtype.name,)
        kind = f"{self.scene.kind}." if self.typed_by_kind else ""
        task = Task(
            id=f"{self.family}-{stable_id(self.scene.id, *parts)}",
            scene=self.scene,
            task_type=f"{self.family}.{kind}{qtype.name}",
            question=question,
            answer=answer,
            answer_type=qtype.answer_type,
            tolerance=NUMBER_TOLERANCE if qtype.answer_type == "number" else 0.0,
            difficulty=DIFFICULTIES[min(level, len(DIFFICULTIES) - 1)],
            ops=qtype.ops,
            facts={"op": qtype.name, **facts},
            grounding=draft.grounding,
        )
        self.tasks.append(task)
        return task


def allowed(types: Sequence[str], only: Collection[str] | None) -> list[str]:
    """``types`` restricted to ``only`` (all of them when ``only`` is None)."""
    return [t for t in types if only is None or t in only]
