"""Turning trajectories into records: a published SFT row, or a reject with its reason."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import datasets
import pyarrow as pa

from datagen import GENERATOR_VERSION
from datagen.messages import sft_messages
from datagen.records import SFT_FEATURES, Trajectory
from datagen.verify import Verdict, matcher_name

__all__ = ["reject_record", "sft_row", "sft_table"]


def _cells(traj: Trajectory) -> list[dict[str, str | None]]:
    return [{"status": t.result.status, "error_type": t.result.error_type}
            for t in traj.turns if t.result is not None]


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
                         "matcher": matcher_name(task.answer_type, task.tolerance)},
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
    columns = {k: [r[k] for r in rows] for k in SFT_FEATURES}
    return datasets.Dataset.from_dict(columns, features=SFT_FEATURES).data.table


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
