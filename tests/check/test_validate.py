"""Validation: each defect it names is caught in a hand-made bad row, with a per-row report."""

from __future__ import annotations

import copy
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from datagen.check.validate import check_table, validate_path
from datagen.cli import app
from datagen.errors import UsageError
from datagen.pipeline.rows import rl_table, sft_table
from tests.support.rl_sets import rl_rows, write_rl_set
from tests.support.sft_sets import good_sft_row

Row = dict[str, Any]


@pytest.fixture(scope="module")
def sft() -> Row:
    return good_sft_row()


@pytest.fixture(scope="module")
def rl() -> Row:
    return rl_rows(1)[0]


def _content(row: Row, i: int, change: Callable[[str], str]) -> Row:
    row["messages"][i]["content"] = change(row["messages"][i]["content"])
    return row


SFT_DEFECTS: dict[str, Callable[[Row], Row]] = {
    "image_tokens": lambda r: _content(r, 1, lambda c: c + "\n<image>"),
    "roles": lambda r: {**r, "messages": [r["messages"][0], r["messages"][2],
                                          r["messages"][1], *r["messages"][3:]]},
    "answer": lambda r: _content(r, -1, lambda c: c.replace("<answer>", "").replace(
        "</answer>", "")),
    "code": lambda r: _content(r, 2, lambda c: c.replace("print(input_image.size)",
                                                         "print(input_image.size")),
    "observation": lambda r: _content(r, 3, lambda c: c.replace("<tool_response>\n", "")),
}


def _multiple_answers(r: Row) -> Row:
    return _content(r, -1, lambda c: c + "\n<answer>7</answer>")


def _early_answer(r: Row) -> Row:
    return _content(r, 2, lambda c: "<answer>3</answer>\n" + c)


def test_good_rows_pass(sft: Row, rl: Row) -> None:
    assert check_table(sft_table([sft]), "sft") == []
    assert check_table(rl_table(rl_rows(1)), "rl") == []


@pytest.mark.parametrize("defect", [*SFT_DEFECTS, "multiple_answers", "early_answer"])
def test_each_sft_defect_is_caught_in_its_row(sft: Row, defect: str) -> None:
    make = {**SFT_DEFECTS, "multiple_answers": _multiple_answers,
            "early_answer": _early_answer}[defect]
    bad = make(copy.deepcopy(sft))
    problems = check_table(sft_table([sft, bad, sft]), "sft")
    expected = {"multiple_answers": "answer", "early_answer": "answer"}.get(defect, defect)
    assert {(p.check, p.row) for p in problems} == {(expected, 1)}, problems


def _set(row: Row, path: str, value: Any) -> Row:
    *parents, last = path.split(".")
    target = row
    for key in parents:
        target = target[key]
    target[last] = value
    return row


RL_DEFECTS: dict[str, tuple[str, Callable[[Row], Row]]] = {
    "extra image token": ("image_tokens", lambda r: _set(
        r, "prompt", [r["prompt"][0], {"role": "user", "content": "<image><image>Q"}])),
    "no image": ("image_tokens", lambda r: _set(r, "images", [])),
    "roles out of order": ("roles", lambda r: _set(r, "prompt", r["prompt"][::-1])),
    "style": ("rl_fields", lambda r: _set(r, "reward_model.style", "model")),
    "empty ground truth": ("rl_fields", lambda r: _set(r, "reward_model.ground_truth", "")),
    "agent": ("rl_fields", lambda r: _set(r, "agent_name", "single_turn_agent")),
    "need_tools_kwargs": ("rl_fields", lambda r: _set(r, "extra_info.need_tools_kwargs", False)),
    # The tool's image is named by its number among the row's images (stored once).
    "tool image": ("rl_fields", lambda r: _set(
        r, "extra_info.tools_kwargs.execute_python_code.create_kwargs.image_index", 1)),
}


@pytest.mark.parametrize("defect", list(RL_DEFECTS))
def test_each_rl_defect_is_caught_in_its_row(rl: Row, defect: str) -> None:
    check, make = RL_DEFECTS[defect]
    bad = make(copy.deepcopy(rl))
    problems = check_table(rl_table([rl, rl, bad]), "rl")
    assert {(p.check, p.row) for p in problems} == {(check, 2)}, problems


def _drop(table: pa.Table, name: str) -> pa.Table:
    return table.drop_columns([name])


def _retype(table: pa.Table, name: str, value: pa.Array) -> pa.Table:
    return table.set_column(table.schema.get_field_index(name), name, value)


def _without_info_field(table: pa.Table, field: str) -> pa.Table:
    info = table.column("extra_info").combine_chunks()
    keep = [info.type.field(i) for i in range(info.type.num_fields)
            if info.type.field(i).name != field]
    arrays = [info.field(f.name) for f in keep]
    return _retype(table, "extra_info", pa.StructArray.from_arrays(arrays, fields=keep))


@pytest.mark.parametrize(("defect", "message"), [
    (lambda t: _drop(t, "reward_model"), "'reward_model' is missing"),
    (lambda t: _drop(t, "agent_name"), "'agent_name' is missing"),
    (lambda t: _retype(t, "images", pa.array([[b"png"]] * t.num_rows)),
     "images[] should be a struct"),
    (lambda t: _retype(t, "agent_name", pa.array([1] * t.num_rows)),
     "agent_name should be string"),
    (lambda t: _without_info_field(t, "tolerance"), "extra_info.tolerance is missing"),
    (lambda t: _without_info_field(t, "tools_kwargs"), "extra_info.tools_kwargs is missing"),
])
def test_missing_or_mistyped_rl_fields_are_caught(rl: Row, defect: Callable[[pa.Table],
                                                                            pa.Table],
                                                  message: str) -> None:
    problems = check_table(defect(rl_table([rl, rl])), "rl")
    assert any(p.check == "columns" and p.row is None and message in p.message
               for p in problems), problems


def test_large_string_and_extra_columns_are_fine(rl: Row) -> None:
    table = rl_table([rl])
    table = table.set_column(table.schema.get_field_index("data_source"), "data_source",
                             pa.array([rl["data_source"]], pa.large_string()))
    assert check_table(table.append_column("note", pa.array(["x"])), "rl") == []


def test_validate_path_reports_rows_per_file(sft: Row, rl: Row, tmp_path: Path) -> None:
    write_rl_set(tmp_path, [rl, RL_DEFECTS["agent"][1](copy.deepcopy(rl))])
    pq.write_table(sft_table([sft, sft, SFT_DEFECTS["code"](copy.deepcopy(sft))]),
                   tmp_path / "data" / "sft-00000-of-00001.parquet")
    (tmp_path / ".datagen").mkdir()
    pq.write_table(pa.table({"x": [1]}), tmp_path / ".datagen" / "state.parquet")
    report = validate_path(tmp_path)
    assert report.rows == {"rl": 2, "sft": 3}
    assert not report.ok
    assert sorted((p.file, p.row, p.check) for p in report.problems) == [
        ("data/rl-00000-of-00001.parquet", 1, "rl_fields"),
        ("data/sft-00000-of-00001.parquet", 2, "code")]
    assert str(report.problems[0]).startswith("data/")


def _datagen(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "datagen.cli", *args], capture_output=True,
                          text=True, timeout=120)


def test_cli_validate_exit_codes(sft: Row, rl: Row, tmp_path: Path) -> None:
    runner = CliRunner()
    good = write_rl_set(tmp_path / "good", [rl, rl])
    result = runner.invoke(app, ["validate", str(good)])
    assert result.exit_code == 0, result.output
    assert "ok (2 rl rows in 1 files)" in result.output
    bad = write_rl_set(tmp_path / "bad", [rl, RL_DEFECTS["roles out of order"][1](
        copy.deepcopy(rl))])
    result = _datagen("validate", str(bad))
    assert result.returncode == 1
    assert "data/rl-00000-of-00001.parquet:row 1: [roles]" in result.stdout
    assert result.stderr.strip().endswith("1 problems in 2 rl rows")
    missing = _datagen("validate", str(tmp_path / "nothing"))
    assert missing.returncode == 2 and "no such file" in missing.stderr
    with pytest.raises(UsageError, match="no such file"):
        validate_path(tmp_path / "nothing")
