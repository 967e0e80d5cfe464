"""A small RL set built from the scene families, shared by the RL tests (not a test module)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pyarrow.parquet as pq

from datagen.pipeline.rows import rl_row, rl_table
from datagen.records import Task
from datagen.scenes.registry import get_family

_OPTIONS = {"chart": {}, "geometry": {}, "search": {"max_side": 1024}}


def rl_tasks(scenes_per_family: int = 2, questions: int = 3) -> list[Task]:
    """Tasks of every family: a few scenes each, all their questions."""
    tasks: list[Task] = []
    for name, options in _OPTIONS.items():
        family = get_family(name)
        for index in range(scenes_per_family):
            tasks += family.pose(family.make_scene(index, 7, options), questions)
    return tasks


def rl_rows(scenes_per_family: int = 2) -> list[dict[str, Any]]:
    """RL rows of ``rl_tasks``, numbered in order."""
    return [rl_row(task, i) for i, task in enumerate(rl_tasks(scenes_per_family))]


def write_rl_set(folder: Path, rows: list[dict[str, Any]]) -> Path:
    """``folder/data/rl-00000-of-00001.parquet`` holding ``rows``; returns the folder."""
    (folder / "data").mkdir(parents=True, exist_ok=True)
    pq.write_table(rl_table(rows), folder / "data" / "rl-00000-of-00001.parquet")
    return folder
