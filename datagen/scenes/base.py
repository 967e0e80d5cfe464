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
``templates/questions/<family>.yaml`` (plain strings, or ``parts`` composed into every
combination), the lettered options, the difficulty (``difficulty_score`` of what the question
needs: its ``Effort``), the tolerance, the task id and the task type. A family's ``rules``
are its ambiguity checks, one per rule, each applied to the question types it names
(``failed_rules``); the build drops a task that fails one and counts it. Adding a question
type is one ``QuestionType`` and its phrasings; ``tests/scenes/test_registry.py`` builds a
task of every kind and type, so a missing part fails there rather than inside a shard.
"""

from __future__ import annotations

import functools
import itertools
import math
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from datagen.records import AnswerType, Box, Scene, Task, stable_id
from datagen.templates import load_yaml, render_string

__all__ = ["DIFFICULTIES", "LEVEL_CUTS", "NUMBER_TOLERANCE", "Draft", "Effort", "Family", "Poser",
           "QuestionType", "Rule", "Secrets", "Twin", "difficulty_score", "failed_rules",
           "format_number", "letter_options", "level_of", "no_secrets", "no_twin",
           "options_text", "phrasings", "pose_rng"]

DIFFICULTIES = ("easy", "medium", "hard")
# Relative tolerance of "number" answers; every other answer type is matched exactly.
NUMBER_TOLERANCE = 0.01
LETTERS = "ABCD"
# Difficulty levels by score: easy up to the first cut, medium up to the second, hard above.
LEVEL_CUTS = (1.0, 2.0)


@dataclass(frozen=True, slots=True)
class Effort:
    """What answering a question needs: the inputs of its difficulty score.

    ``steps``: operations from the values read to the answer (1 = the value is the answer);
    ``values``: values read off the image; ``counted``: things counted one by one (the sides
    of an unlettered polygon; 0 when nothing is counted); ``distractors``: other objects or
    marks a reader must tell the asked one from; ``target_frac``: the asked object's share of
    the image's area (None where the question reads the whole figure); ``off_axis``: a number
    read against an axis rather than a printed label.
    """

    steps: int = 1
    values: int = 1
    counted: int = 0
    distractors: int = 0
    target_frac: float | None = None
    off_axis: bool = False


def difficulty_score(effort: Effort, answer_type: AnswerType) -> float:
    """The difficulty score of a question: what it needs, not how busy its scene is.

    ``(steps - 1) + 0.25 (values - 1)`` for the work; ``+ 0.5`` for an exact surd or a number
    asked to a tolerance, ``+ 0.5`` more when that number is read against an axis; ``+ 1`` for
    counting more than six things; ``+ 0.5`` for a target under 0.1 % of the image and ``+ 1``
    under 0.02 %; ``+ log2(distractors / 8) / 4`` (from 8 distractors up: 0.5 at 32, 1 at 128).
    ``level_of`` cuts it into easy / medium / hard at ``LEVEL_CUTS``.
    """
    score = (effort.steps - 1) + 0.25 * (effort.values - 1)
    if answer_type in ("expression", "number"):
        score += 0.5
        if answer_type == "number" and effort.off_axis:
            score += 0.5
    if effort.counted > 6:
        score += 1.0
    if effort.target_frac is not None:
        score += 1.0 if effort.target_frac < 2e-4 else 0.5 if effort.target_frac < 1e-3 else 0.0
    if effort.distractors > 8:
        score += math.log2(effort.distractors / 8) / 4
    return round(score, 3)


def level_of(score: float) -> str:
    """The difficulty level of a score (``LEVEL_CUTS``)."""
    return DIFFICULTIES[sum(score > cut for cut in LEVEL_CUTS)]


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
    effort: Mapping[str, Any] = field(default_factory=dict)  # ``Effort`` fields of this draft


@dataclass(frozen=True, slots=True)
class QuestionType:
    """A kind of question: its name, answer type, ops, and how it is drafted from a scene.

    ``draft`` takes the family's arguments (the scene's spec, a generator and what the family
    prepared for the scene) and returns a ``Draft``, or None where the question does not apply.
    ``harder``: it combines several values (by default two values read and two steps in its
    ``Effort``); ``steps`` / ``values`` set them outright (a draft may still override them).
    """

    name: str
    answer_type: AnswerType
    ops: tuple[str, ...]
    draft: Callable[..., Draft | None]
    harder: bool = False
    steps: int | None = None
    values: int | None = None


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


@dataclass(frozen=True, slots=True)
class Rule:
    """One ambiguity check: a question of the ``types`` it names (all when empty) passes when
    ``ok(task)``; ``says`` tells the card's reader what it rejects."""

    name: str
    says: str
    ok: Callable[[Task], bool]
    types: frozenset[str] = frozenset()

    def applies(self, task: Task) -> bool:
        """Whether the rule checks ``task``'s question type."""
        return not self.types or task.facts.get("op") in self.types


def failed_rules(rules: Sequence[Rule], task: Task) -> list[str]:
    """The names of the ``rules`` that apply to ``task`` and that it fails."""
    return [r.name for r in rules if r.applies(task) and not r.ok(task)]


def no_scene_effort(scene: Scene) -> Mapping[str, Any]:
    """A family whose scenes add nothing to a question's ``Effort``."""
    return {}


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
    (None where the question type has none). ``rules`` are its ambiguity checks and
    ``scene_effort(scene)`` what a scene adds to every question's ``Effort`` (distractors,
    values read against an axis).
    """

    name: str
    kinds: Mapping[str, tuple[str, ...]]
    questions: Mapping[str, QuestionType]
    make_scene: Callable[[int, int, Mapping[str, Any]], Scene]
    pose: Callable[..., list[Task]]
    printed: Callable[[Scene], frozenset[str]] = nothing_printed
    secrets: Callable[[Task], Secrets] = no_secrets
    twin: Callable[[Task], Twin | None] = no_twin
    rules: tuple[Rule, ...] = ()
    scene_effort: Callable[[Scene], Mapping[str, Any]] = no_scene_effort

    def __post_init__(self) -> None:
        # A kind that names a question type nobody defined fails at import, not in a shard.
        for kind, types in self.kinds.items():
            unknown = set(types) - set(self.questions)
            if unknown:
                raise ImportError(f"{self.name} kind {kind!r} asks unknown question types "
                                  f"{sorted(unknown)}")
        known = phrasings(self.name)
        missing = [q for q in self.questions if not known.get(q)]
        if missing:
            raise ImportError(f"templates/questions/{self.name}.yaml has no phrasings for "
                              f"{missing}")


def format_number(value: float) -> str:
    """Canonical text of a gold number: ``29``, ``0.35``, ``-4.5`` (no trailing zeros)."""
    if float(value).is_integer():
        return str(int(value))
    return f"{value:.6f}".rstrip("0").rstrip(".")


@functools.cache
def phrasings(family: str) -> dict[str, tuple[str, ...]]:
    """Every phrasing of each question type of ``family``.

    ``templates/questions/<family>.yaml`` lists per type plain phrasings and composed ones:
    ``{parts: [[...], [...]]}`` gives every combination of one sentence from each list, joined
    by a space (an empty string leaves that part out).
    """
    out: dict[str, tuple[str, ...]] = {}
    for qtype, entries in (load_yaml(f"questions/{family}.yaml") or {}).items():
        found: list[str] = []
        for entry in entries or ():
            if isinstance(entry, str):
                found.append(entry)
                continue
            for combo in itertools.product(*entry["parts"]):
                # Parts are sentences; one that starts a new line (options) keeps its newline.
                text = " ".join(p.strip(" ") for p in combo if p.strip())
                found.append(text.replace(" \n", "\n"))
        out[qtype] = tuple(dict.fromkeys(found))
    return out


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

    ``typed_by_kind`` puts the scene kind in the task type (``chart.vbar.value``) or not
    (``search.count``); ``numbered_ids`` adds the task's place to its id (a family that may
    ask one type twice about a scene); ``scene_effort`` is what the scene adds to each
    question's ``Effort`` (the family's ``scene_effort(scene)``).
    """

    family: str
    scene: Scene
    rng: np.random.Generator
    typed_by_kind: bool = True
    numbered_ids: bool = False
    scene_effort: Mapping[str, Any] = field(default_factory=dict)
    tasks: list[Task] = field(default_factory=list)

    def effort(self, qtype: QuestionType, draft: Draft) -> Effort:
        """The question's ``Effort``: its type's defaults, the scene's part, the draft's."""
        base = 1 + qtype.harder
        fields: dict[str, Any] = {"steps": qtype.steps or base, "values": qtype.values or base,
                                  "target_frac": self.scene.target_area}
        return Effort(**{**fields, **self.scene_effort, **draft.effort})

    def add(self, qtype: QuestionType, draft: Draft) -> Task:
        """Phrase ``draft`` as a question of type ``qtype`` and append the task."""
        facts = {**draft.facts}
        answer = draft.answer
        options = dict(draft.options) if draft.options is not None else None
        if draft.choices:
            answer, options = letter_options(self.rng, draft.choices)
        if options is not None:
            facts["options"] = options
        choices = phrasings(self.family)[qtype.name]
        pick = choices[int(self.rng.integers(len(choices)))]
        question = render_string(pick, options_text=options_text(options or {}), **draft.names)
        score = difficulty_score(self.effort(qtype, draft), qtype.answer_type)
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
            difficulty=level_of(score),
            ops=qtype.ops,
            facts={"op": qtype.name, **facts, "difficulty_score": score},
            grounding=draft.grounding,
        )
        self.tasks.append(task)
        return task


def allowed(types: Sequence[str], only: Collection[str] | None) -> list[str]:
    """``types`` restricted to ``only`` (all of them when ``only`` is None)."""
    return [t for t in types if only is None or t in only]
