"""RL rows: verl's fields with verl's types, one extra_info schema, images as List(Image())."""

from __future__ import annotations

from pathlib import Path

import datasets
import pytest
from PIL import Image

from datagen.messages import system_prompt, user_text
from datagen.pipeline.rows import rl_row, rl_table
from datagen.records import RL_FEATURES
from tests.support.rl_sets import rl_rows, rl_tasks, write_rl_set

VERL_KEYS = {"data_source", "prompt", "images", "ability", "reward_model", "agent_name",
             "extra_info"}
EXTRA_INFO_KEYS = {"index", "split", "question", "answer", "answer_type", "tolerance",
                   "difficulty", "family", "task_type", "need_tools_kwargs", "tools_kwargs"}


@pytest.fixture(scope="module")
def rows() -> list[dict]:
    return rl_rows()


def test_row_has_verls_fields_with_their_values(rows: list[dict]) -> None:
    task = rl_tasks(1, 1)[0]
    row = rl_row(task, 12, split="test")
    assert VERL_KEYS <= row.keys()
    assert row["prompt"] == [{"role": "system", "content": system_prompt()},
                             {"role": "user", "content": user_text(task.question)}]
    assert row["prompt"][1]["content"].count("<image>") == len(row["images"]) == 1
    assert "<image>" not in row["prompt"][0]["content"]
    assert row["images"] == [{"bytes": task.scene.image, "path": None}]
    assert row["reward_model"] == {"style": "rule", "ground_truth": task.answer}
    assert row["agent_name"] == "tool_agent"
    assert row["data_source"] == f"datagen/{task.scene.family}"
    info = row["extra_info"]
    assert info.keys() == EXTRA_INFO_KEYS
    assert (info["index"], info["split"], info["answer"]) == (12, "test", task.answer)
    assert info["need_tools_kwargs"] is True
    # The image is stored once, in ``images``; the tool is told its number (it reads the
    # bytes from the prompt's image part that verl's loader builds from it).
    assert info["tools_kwargs"] == {"execute_python_code": {"create_kwargs": {"image_index": 0}}}
    # Keys verl writes itself must not be ours.
    assert not {"num_turns", "rollout_reward_scores"} & (row.keys() | info.keys())


def test_every_row_of_every_family_has_one_schema(rows: list[dict]) -> None:
    assert {r["extra_info"]["family"] for r in rows} == {"chart", "geometry", "search"}
    assert all(r.keys() == RL_FEATURES.keys() for r in rows)
    assert len({tuple(r["extra_info"]) for r in rows}) == 1
    assert all(isinstance(r["extra_info"]["tolerance"], float) for r in rows)
    assert [r["extra_info"]["index"] for r in rows] == list(range(len(rows)))


def test_table_loads_with_datasets_as_images(rows: list[dict], tmp_path: Path) -> None:
    write_rl_set(tmp_path, rows)
    ds = datasets.load_dataset("parquet", data_files=str(tmp_path / "data" / "*.parquet"),
                               split="train")
    assert ds.features == RL_FEATURES
    assert isinstance(ds.features["images"], datasets.List)
    assert isinstance(ds.features["images"].feature, datasets.Image)
    first = ds[0]
    assert isinstance(first["images"][0], Image.Image)
    tool_kwargs = first["extra_info"]["tools_kwargs"]["execute_python_code"]["create_kwargs"]
    assert tool_kwargs == {"image_index": 0}
    assert first["extra_info"]["need_tools_kwargs"] is True
    assert first["reward_model"]["ground_truth"] == rows[0]["reward_model"]["ground_truth"]
    assert len(ds) == len(rows)


def test_empty_table_has_the_full_schema() -> None:
    table = rl_table([])
    assert table.num_rows == 0
    assert datasets.Features.from_arrow_schema(table.schema) == RL_FEATURES


def test_weak_pass_rate_marks_trivial_rows() -> None:
    task = rl_tasks(1, 1)[0]
    assert rl_row(task, 0, weak_pass_rate=1.0)["trivial"] is True
    row = rl_row(task, 0, weak_pass_rate=0.25, difficulty="hard")
    assert row["trivial"] is False and row["extra_info"]["difficulty"] == "hard"
    assert rl_row(task, 0)["weak_pass_rate"] is None
