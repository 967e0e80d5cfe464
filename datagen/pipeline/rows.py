"""Turning tasks and trajectories into records: a published SFT or RL row, or a reject."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import datasets
import pyarrow as pa

from datagen import GENERATOR_VERSION
from datagen.check.matcher import matcher_name
from datagen.check.verify import Verdict
from datagen.messages import sft_messages, system_prompt, user_text
from datagen.records import RL_FEATURES, SFT_FEATURES, Task, Trajectory

__all__ = ["reject_record", "rl_row", "rl_table", "sft_row", "sft_table"]


def _cells(traj: Trajectory) -> list[dict[str, str | None]]:
    return [{"status": t.result.status, "error_type": t.result.error_type}
            for t in traj.turns if t.result is not None]


def _grounding(verdict: Verdict) -> dict[str, str | None]:
    """The grounding checks' statuses (pass / na; None where they did not run)."""
    g = verdict.grounding
    return {"provenance": g.provenance.status if g else None,
            "twin": g.twin.status if g else None,
            "jitter": g.jitter.status if g else None}


def sft_row(traj: Trajectory, verdict: Verdict, weak_pass_rate: float | None = None,
            difficulty: str | None = None) -> dict[str, Any]:
    """The published row of a verified trajectory (schema: ``records.SFT_FEATURES``).

    ``weak_pass_rate`` and the ``difficulty`` it implies come from a weak model
    (``teachers.weak``); without one the row has the scene's difficulty and no pass rate.
    """
    task = traj.task
    messages, images = sft_messages(traj)
    return {
        "id": task.id,
        "family": task.scene.family,
        "task_type": task.task_type,
        "difficulty": difficulty or task.difficulty,
        "messages": messages,
        "images": [{"bytes": img, "path": None} for img in images],
        "question": task.question,
        "answer": task.answer,
        "answer_type": task.answer_type,
        "ops": list(traj.ops),
        "verification": {"cells": _cells(traj), "predicted": verdict.predicted,
                         "matcher": matcher_name(task.answer_type, task.tolerance),
                         "grounding": _grounding(verdict)},
        "teacher": traj.teacher,
        "style": traj.style,
        "scene_id": task.scene.id,
        "seed": task.scene.seed,
        "generator_version": GENERATOR_VERSION,
        "weak_pass_rate": weak_pass_rate,
        "trivial": weak_pass_rate == 1.0,
    }


def sft_table(rows: Sequence[dict[str, Any]]) -> pa.Table:
    """The rows as an arrow table with ``SFT_FEATURES`` in its schema metadata.

    Built column-wise, so no rows still give the full schema (and Image columns survive).
    """
    return _table(rows, SFT_FEATURES)


def rl_row(task: Task, index: int, split: str = "train", weak_pass_rate: float | None = None,
           difficulty: str | None = None) -> dict[str, Any]:
    """The RL prompt row of a task (schema: ``records.RL_FEATURES``), as upstream verl loads it.

    ``index`` is the row's number in its split (verl groups rollouts and logs by it); the prompt
    is the same system message and user turn as the SFT rows, so a model sees one format.
    ``weak_pass_rate`` / ``difficulty`` as in ``sft_row``.
    """
    image = {"bytes": task.scene.image, "path": None}
    level = difficulty or task.difficulty
    return {
        "data_source": f"datagen/{task.scene.family}",
        "prompt": [{"role": "system", "content": system_prompt()},
                   {"role": "user", "content": user_text(task.question)}],
        "images": [image],
        "ability": task.scene.family,
        "reward_model": {"style": "rule", "ground_truth": task.answer},
        "agent_name": "tool_agent",
        "extra_info": {
            "index": index,
            "split": split,
            "question": task.question,
            "answer": task.answer,
            "answer_type": task.answer_type,
            "tolerance": float(task.tolerance),
            "difficulty": level,
            "family": task.scene.family,
            "task_type": task.task_type,
            "need_tools_kwargs": True,
            # The image is stored once (in ``images``); the tool reads it from the prompt.
            "tools_kwargs": {"execute_python_code": {"create_kwargs": {"image_index": 0}}},
        },
        "id": task.id,
        "scene_id": task.scene.id,
        "kind": task.scene.kind,
        "ops": list(task.ops),
        "seed": task.scene.seed,
        "generator_version": GENERATOR_VERSION,
        "weak_pass_rate": weak_pass_rate,
        "trivial": weak_pass_rate == 1.0,
    }


def rl_table(rows: Sequence[dict[str, Any]]) -> pa.Table:
    """The RL rows as an arrow table with ``RL_FEATURES`` in its schema metadata (see
    ``sft_table``)."""
    return _table(rows, RL_FEATURES)


def _table(rows: Sequence[dict[str, Any]], features: datasets.Features) -> pa.Table:
    # Straight into the features' arrow schema (which carries them as metadata): the same
    # table and parquet bytes as ``Dataset.from_dict``, ~3x faster, because that also hashes
    # every image for a fingerprint nobody reads. Rows already hold images as {bytes, path}.
    columns = {k: [r[k] for r in rows] for k in features}
    return pa.Table.from_pydict(columns, schema=features.arrow_schema)


def reject_record(traj: Trajectory, verdict: Verdict) -> dict[str, Any]:
    """A JSON-able record of a rejected trajectory: why, and the whole text of what was tried."""
    task = traj.task
    messages, images = sft_messages(traj)
    return {
        "id": task.id,
        "scene_id": task.scene.id,
        "family": task.scene.family,
        "task_type": task.task_type,
        "question": task.question,
        "answer": task.answer,
        "answer_type": task.answer_type,
        "predicted": verdict.predicted,
        "reason": verdict.reason,
        "detail": verdict.detail,
        "teacher": traj.teacher,
        "style": traj.style,
        "seed": task.scene.seed,
        "cells": _cells(traj),
        "messages": messages,
        "n_images": len(images),
    }
