"""The record types every stage passes along, and the Hugging Face features of the published rows.

Scene → Task → Trajectory flow through the pipeline as plain slotted dataclasses; only at the end
are they turned into SFT rows (``sft_row``) whose schema is ``SFT_FEATURES``, identical on every
shard so that parquet files concatenate and trainers read one schema. RL prompt rows
(``rows.rl_row``) have ``RL_FEATURES``: the columns upstream verl's ``RLHFDataset`` and its tool
agent loop read, plus our metadata.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Any, Literal

import datasets

from datagen.sandbox import CellResult

__all__ = [
    "AnswerType",
    "Box",
    "Percept",
    "Scene",
    "Task",
    "Step",
    "Turn",
    "Trajectory",
    "RL_FEATURES",
    "SFT_FEATURES",
    "stable_id",
]

AnswerType = Literal["number", "integer", "choice", "yesno", "text", "expression"]
Box = tuple[int, int, int, int]  # x0, y0, x1, y1 in image pixels


def stable_id(*parts: object) -> str:
    """A short hash of ``parts`` that is the same on every machine and every run."""
    text = "\x1f".join(str(p) for p in parts)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


@dataclass(slots=True)
class Scene:
    """An image and its exact spec: ground truth is read from ``spec``, never from pixels."""

    id: str
    family: str
    kind: str
    seed: int
    image: bytes  # PNG, or JPEG for search scenes
    # The family's spec (a TypedDict of its module: ChartSpec, GeometrySpec, SearchSpec).
    spec: Any
    difficulty: str
    # The targets' share of the image area, for families with small targets (search).
    target_area: float | None = None


@dataclass(slots=True)
class Task:
    """A scene with one question and its gold answer."""

    id: str
    scene: Scene
    task_type: str
    question: str
    answer: str
    answer_type: AnswerType
    tolerance: float
    difficulty: str
    ops: tuple[str, ...]
    # What a solver must know about the question (target categories, threshold, options).
    facts: dict[str, Any] = field(default_factory=dict)
    # Boxes the trace's crops must show (each inside a claimed region, and no other region).
    grounding: tuple[Box, ...] = ()

    @property
    def question_type(self) -> str:
        """The question type's name, the last part of ``task_type`` (``value``, ``count``)."""
        return self.task_type.rsplit(".", 1)[-1]


@dataclass(frozen=True, slots=True)
class Percept:
    """One noisy look of the scripted teacher at an image it was shown.

    ``kind`` says what was looked at (``region``, ``point``, ``colour``, ``count``);
    ``estimate`` is what the teacher took away (the literal its code may use), ``truth`` what
    the renderer knows. Verification requires them to differ where the noise model says they
    should (``exact`` False): a look that returns the truth is the renderer talking.
    """

    kind: str
    estimate: Any
    truth: Any
    exact: bool = False


@dataclass(slots=True)
class Step:
    """One assistant turn: think text, then either a code cell or the final answer.

    ``raw`` is the reply exactly as an LLM teacher wrote it (the SFT row shows it verbatim);
    None for teachers whose text is rendered from the parts (the scripted one). ``percepts``
    are the scripted teacher's looks behind this step (see ``Percept``).
    """

    think: str
    code: str | None = None
    answer: str | None = None
    raw: str | None = None
    percepts: tuple[Percept, ...] = ()


@dataclass(slots=True)
class Turn:
    """A step and, if it had code, what the sandbox returned for it."""

    step: Step
    result: CellResult | None = None


@dataclass(slots=True)
class Trajectory:
    """The whole exchange for one task."""

    task: Task
    system: str
    user: str
    turns: list[Turn]
    teacher: str
    style: str
    ops: tuple[str, ...]
    # (reason, detail) when the teacher had to stop early (e.g. the endpoint kept failing).
    failure: tuple[str, str] | None = None

    @property
    def final_answer(self) -> str | None:
        """The answer of the last turn, if the teacher gave one."""
        return self.turns[-1].step.answer if self.turns else None


_MESSAGE = {"role": datasets.Value("string"), "content": datasets.Value("string")}
_CELL = {
    "status": datasets.Value("string"),
    "error_type": datasets.Value("string"),
}

SFT_FEATURES = datasets.Features(
    {
        "id": datasets.Value("string"),
        "family": datasets.Value("string"),
        "task_type": datasets.Value("string"),
        "difficulty": datasets.Value("string"),
        "messages": datasets.List(_MESSAGE),
        "images": datasets.List(datasets.Image()),
        "question": datasets.Value("string"),
        "answer": datasets.Value("string"),
        "answer_type": datasets.Value("string"),
        "ops": datasets.List(datasets.Value("string")),
        "verification": {
            "cells": datasets.List(_CELL),
            "predicted": datasets.Value("string"),
            "matcher": datasets.Value("string"),
            # check.grounding's outcomes: "pass", or "na" where a check does not apply.
            "grounding": {
                "provenance": datasets.Value("string"),
                "twin": datasets.Value("string"),
                "jitter": datasets.Value("string"),
            },
        },
        "teacher": datasets.Value("string"),
        "style": datasets.Value("string"),
        "scene_id": datasets.Value("string"),
        "seed": datasets.Value("int64"),
        "generator_version": datasets.Value("string"),
        # Weak-to-strong difficulty: the weak model's pass rate (None without --weak-model);
        # trivial when it always solved the task.
        "weak_pass_rate": datasets.Value("float64"),
        "trivial": datasets.Value("bool"),
    }
)

# verl reads data_source, prompt, images, ability, reward_model, agent_name and extra_info; a
# struct field missing on some shard reads back as None and breaks rollouts, so extra_info has
# one fixed schema. verl writes num_turns and rollout_reward_scores itself: never use them here.
RL_FEATURES = datasets.Features(
    {
        "data_source": datasets.Value("string"),
        "prompt": datasets.List(_MESSAGE),
        "images": datasets.List(datasets.Image()),
        "ability": datasets.Value("string"),
        "reward_model": {
            "style": datasets.Value("string"),
            "ground_truth": datasets.Value("string"),
        },
        "agent_name": datasets.Value("string"),
        "extra_info": {
            "index": datasets.Value("int64"),
            "split": datasets.Value("string"),
            "question": datasets.Value("string"),
            "answer": datasets.Value("string"),
            "answer_type": datasets.Value("string"),
            "tolerance": datasets.Value("float64"),
            "difficulty": datasets.Value("string"),
            "family": datasets.Value("string"),
            "task_type": datasets.Value("string"),
            "need_tools_kwargs": datasets.Value("bool"),
            # The tool's image is the row's image number ``image_index`` (stored once, in
            # ``images``): verl's RLHFDataset puts it into the prompt's image part, which the
            # tool reads from the trajectory's messages (``datagen.verl_tool``).
            "tools_kwargs": {
                "execute_python_code": {
                    "create_kwargs": {"image_index": datasets.Value("int64")},
                },
            },
        },
        # Our metadata, outside verl's keys.
        "id": datasets.Value("string"),
        "scene_id": datasets.Value("string"),
        "kind": datasets.Value("string"),
        "ops": datasets.List(datasets.Value("string")),
        "seed": datasets.Value("int64"),
        "generator_version": datasets.Value("string"),
        "weak_pass_rate": datasets.Value("float64"),
        "trivial": datasets.Value("bool"),
    }
)
