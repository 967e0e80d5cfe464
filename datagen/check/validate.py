"""Format checks for SFT and RL sets: ours before publishing, or any set downloaded.

``check_table(table, config)`` checks an in-memory arrow table; ``validate_path(path)`` checks a
dataset folder (``data/sft-*.parquet``, ``data/rl-*.parquet``) or one parquet file, a batch of
rows at a time. Each problem names its file, row and check:

    columns        a required column is missing or has the wrong type (RL and SFT)
    image_tokens   the ``<image>`` tokens of the messages differ from the number of images
    roles          roles out of the format's order (SFT: system, user, then assistant and user
                   turns alternating, ending with assistant; RL: exactly system, user)
    answer         not exactly one ``<answer>`` in the final assistant turn, or one earlier
    code           a ```python block that does not parse
    observation    a user turn after the first that is not a ``<tool_response>`` block
    rl_fields      an RL value verl needs that is empty or wrong (style, agent_name, answer, tool
                   image index, need_tools_kwargs)
"""

from __future__ import annotations

import ast
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import pyarrow as pa
import pyarrow.parquet as pq

from datagen.errors import UsageError
from datagen.paths import WORK_DIR_NAME
from datagen.records import RL_FEATURES, SFT_FEATURES

__all__ = ["Config", "Problem", "ValidationReport", "check_rows", "check_table", "config_of",
           "dataset_files", "validate_path"]

Config = Literal["sft", "rl"]

_CODE = re.compile(r"```python\n(.*?)```", re.DOTALL)
_ANSWER = re.compile(r"<answer>", re.IGNORECASE)
_IMAGE = "<image>"
_BATCH_ROWS = 256
_MAX_TURNS = 6


@dataclass(frozen=True, slots=True)
class Problem:
    """One defect: where (file, row; row None for the whole table) and which check failed."""

    check: str
    message: str
    row: int | None = None
    file: str = ""

    def __str__(self) -> str:
        where = f"{self.file}:" if self.file else ""
        where += f"row {self.row}" if self.row is not None else "table"
        return f"{where}: [{self.check}] {self.message}"


@dataclass(slots=True)
class ValidationReport:
    """What ``validate_path`` found: rows checked per config, files, and every problem."""

    path: Path
    rows: dict[str, int] = field(default_factory=dict)
    files: list[Path] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """True when no problem was found."""
        return not self.problems


# ---- column types ---------------------------------------------------------------------------


def _type_problem(name: str, actual: pa.DataType, expected: pa.DataType) -> str | None:
    """Why ``actual`` cannot stand for ``expected`` (large/small variants and extra struct
    fields are fine; a missing struct field is not: verl would read it back as None)."""
    if pa.types.is_struct(expected):
        if not pa.types.is_struct(actual):
            return f"{name} should be a struct, is {actual}"
        have = {actual.field(i).name: actual.field(i).type for i in range(actual.num_fields)}
        for i in range(expected.num_fields):
            f = expected.field(i)
            if f.name not in have:
                return f"{name}.{f.name} is missing"
            problem = _type_problem(f"{name}.{f.name}", have[f.name], f.type)
            if problem:
                return problem
        return None
    if pa.types.is_list(expected) or pa.types.is_large_list(expected):
        if not (pa.types.is_list(actual) or pa.types.is_large_list(actual)):
            return f"{name} should be a list, is {actual}"
        return _type_problem(f"{name}[]", actual.value_type, expected.value_type)
    groups = [(pa.types.is_string, pa.types.is_large_string, pa.types.is_string_view),
              (pa.types.is_binary, pa.types.is_large_binary, pa.types.is_binary_view),
              (pa.types.is_integer,), (pa.types.is_floating,), (pa.types.is_boolean,)]
    for group in groups:
        if any(test(expected) for test in group):
            if any(test(actual) for test in group) or pa.types.is_null(actual):
                return None
            return f"{name} should be {expected}, is {actual}"
    return None if actual == expected else f"{name} should be {expected}, is {actual}"


def _required(config: Config) -> dict[str, pa.DataType]:
    if config == "rl":
        schema = RL_FEATURES.arrow_schema
        names = ["data_source", "prompt", "images", "ability", "reward_model", "agent_name",
                 "extra_info"]
    else:
        schema = SFT_FEATURES.arrow_schema
        names = ["messages", "images"]
    return {n: schema.field(n).type for n in names}


def _schema_problems(schema: pa.Schema, config: Config) -> list[Problem]:
    problems = []
    for name, expected in _required(config).items():
        if name not in schema.names:
            problems.append(Problem("columns", f"required column {name!r} is missing"))
            continue
        why = _type_problem(name, schema.field(name).type, expected)
        if why:
            problems.append(Problem("columns", why))
    return problems


# ---- rows -----------------------------------------------------------------------------------


def _image_problem(messages: list[dict[str, Any]], images: list[Any] | None) -> str | None:
    tokens = sum((m.get("content") or "").count(_IMAGE) for m in messages)
    count = len(images or [])
    if tokens != count:
        return f"{tokens} <image> tokens but {count} images"
    if any(img is None or not (img.get("bytes") or img.get("path")) for img in images or []):
        return "an image has neither bytes nor path"
    return None


def _sft_problems(row: dict[str, Any]) -> Iterator[tuple[str, str]]:
    messages = row.get("messages") or []
    problem = _image_problem(messages, row.get("images"))
    if problem:
        yield "image_tokens", problem
    roles = [m.get("role") for m in messages]
    turns = roles[2:]
    if (roles[:2] != ["system", "user"] or not turns or turns[-1] != "assistant"
            or any(r != ("assistant" if i % 2 == 0 else "user") for i, r in enumerate(turns))):
        yield "roles", f"roles {roles} are not system, user, then assistant/user alternating, " \
                       "ending with assistant"
        return  # turns out of order: the checks below would only repeat it
    assistant = [m.get("content") or "" for m in messages if m.get("role") == "assistant"]
    if len(assistant) > _MAX_TURNS:
        yield "roles", f"{len(assistant)} assistant turns (at most {_MAX_TURNS})"
    if assistant:
        final = len(_ANSWER.findall(assistant[-1]))
        earlier = sum(len(_ANSWER.findall(t)) for t in assistant[:-1])
        if final != 1 or earlier:
            yield "answer", f"{final} <answer> in the final assistant turn and {earlier} " \
                            "before it (need exactly one, at the end)"
    for turn, text in enumerate(assistant, 1):
        for block in _CODE.findall(text):
            try:
                ast.parse(block)
            except SyntaxError as exc:
                yield "code", f"assistant turn {turn}: the python block does not parse " \
                              f"({exc.msg}, line {exc.lineno})"
    for m in messages[2:]:
        content = m.get("content") or ""
        if m.get("role") == "user" and not (content.startswith("<tool_response>\n")
                                             and content.endswith("\n</tool_response>")):
            yield "observation", "a user turn after the question is not a <tool_response> block"
            break


def _rl_problems(row: dict[str, Any]) -> Iterator[tuple[str, str]]:
    prompt = row.get("prompt") or []
    roles = [m.get("role") for m in prompt]
    if roles != ["system", "user"]:
        yield "roles", f"prompt roles {roles} should be ['system', 'user']"
    if roles[:1] == ["system"] and _IMAGE in (prompt[0].get("content") or ""):
        yield "image_tokens", "the system message contains <image> (verl would expect an image)"
    problem = _image_problem(prompt, row.get("images"))
    if problem:
        yield "image_tokens", problem
    reward = row.get("reward_model") or {}
    info = row.get("extra_info") or {}
    if reward.get("style") != "rule":
        yield "rl_fields", f"reward_model.style is {reward.get('style')!r}, expected 'rule'"
    if not reward.get("ground_truth"):
        yield "rl_fields", "reward_model.ground_truth is empty"
    elif info.get("answer") != reward.get("ground_truth"):
        yield "rl_fields", "extra_info.answer differs from reward_model.ground_truth"
    if row.get("agent_name") != "tool_agent":
        yield "rl_fields", f"agent_name is {row.get('agent_name')!r}, expected 'tool_agent' " \
                           "(verl would run it single-turn)"
    if not row.get("data_source"):
        yield "rl_fields", "data_source is empty"
    if info.get("need_tools_kwargs") is not True:
        yield "rl_fields", "extra_info.need_tools_kwargs is not true"
    kwargs = ((info.get("tools_kwargs") or {}).get("execute_python_code") or {})
    index = (kwargs.get("create_kwargs") or {}).get("image_index")
    images = len(row.get("images") or [])  # no images at all is image_tokens' finding
    if images and (not isinstance(index, int) or not 0 <= index < images):
        yield "rl_fields", "extra_info.tools_kwargs.execute_python_code.create_kwargs." \
                           f"image_index is {index!r}, not the number of one of the row's images"
    for key in ("question", "answer_type", "task_type", "family", "difficulty"):
        if not info.get(key):
            yield "rl_fields", f"extra_info.{key} is empty"


def check_rows(rows: Iterable[dict[str, Any]], config: Config, first_row: int = 0,
               file: str = "") -> list[Problem]:
    """Per-row problems of ``rows`` (dicts as ``Table.to_pylist`` gives them)."""
    check = _rl_problems if config == "rl" else _sft_problems
    return [Problem(name, message, first_row + i, file)
            for i, row in enumerate(rows) for name, message in check(row)]


def check_table(table: pa.Table, config: Config, first_row: int = 0,
                file: str = "") -> list[Problem]:
    """Every problem of an in-memory table of ``config`` rows: the schema, then each row.

    Rows are numbered from ``first_row``. Rows are checked only if the columns are right
    (a row of the wrong shape has nothing more to tell).
    """
    if config not in ("sft", "rl"):
        raise UsageError(f"config {config!r}: choose sft or rl")
    problems = [Problem(p.check, p.message, None, file)
                for p in _schema_problems(table.schema, config)]
    if problems:  # rows of a table with the wrong columns cannot be read as rows of the format
        return problems
    for offset, batch in _batches(table):
        problems += check_rows(batch.to_pylist(), config, first_row + offset, file)
    return problems


def _batches(table: pa.Table) -> Iterator[tuple[int, pa.RecordBatch]]:
    offset = 0
    for batch in table.to_batches(max_chunksize=_BATCH_ROWS):
        yield offset, batch
        offset += batch.num_rows


def config_of(path: Path, schema: pa.Schema) -> Config | None:
    """Which set a parquet file holds: by its name (``sft-…``, ``rl-…``), else its columns.

    The name wins because publish writes it and an export may rename columns (codedance's RL
    rows carry ``messages``); a file with neither name nor column is None, not a guess.
    """
    for config in ("sft", "rl"):
        if path.name.startswith(f"{config}-") or path.name.startswith(f"{config}."):
            return config  # type: ignore[return-value]
    if "prompt" in schema.names:
        return "rl"
    if "messages" in schema.names:
        return "sft"
    return None


def dataset_files(path: Path) -> list[Path]:
    """The parquet files of a dataset folder (``data/`` first, else anywhere outside
    ``.datagen/``), or ``[path]`` for one file."""
    if path.is_file():
        return [path]
    files = sorted((path / "data").glob("*.parquet")) if (path / "data").is_dir() else []
    if not files:
        files = sorted(p for p in path.rglob("*.parquet") if WORK_DIR_NAME not in p.parts)
    return files


def validate_path(path: Path | str) -> ValidationReport:
    """Check every parquet file of a dataset folder (or one file) and return the report.

    A file's config comes from its name (``sft-…``, ``rl-…``) or its columns (``prompt`` →
    rl, ``messages`` → sft). Raises ``UsageError`` if there is nothing to check.
    """
    path = Path(path)
    if not path.exists():
        raise UsageError(f"{path}: no such file or folder")
    files = dataset_files(path)
    if not files:
        raise UsageError(f"{path}: no parquet files found (expected data/sft-*.parquet or "
                         "data/rl-*.parquet)")
    report = ValidationReport(path=path, files=files)
    for file in files:
        name = str(file.relative_to(path)) if file != path else file.name
        try:
            # No read-ahead of every image in the file (see published.py).
            reader = pq.ParquetFile(file, pre_buffer=False)
        except (OSError, pa.ArrowException) as exc:
            report.problems.append(Problem("columns", f"cannot read the file ({exc})", None,
                                           name))
            continue
        config = config_of(file, reader.schema_arrow)
        if config is None:
            report.problems.append(Problem("columns", "neither a 'messages' (SFT) nor a "
                                           "'prompt' (RL) column", None, name))
            continue
        schema_problems = [Problem(p.check, p.message, None, name)
                           for p in _schema_problems(reader.schema_arrow, config)]
        report.problems += schema_problems
        first = report.rows.get(config, 0)
        count = 0
        if not schema_problems:
            for batch in reader.iter_batches(batch_size=_BATCH_ROWS):
                report.problems += check_rows(batch.to_pylist(), config, count, name)
                count += batch.num_rows
        else:
            count = reader.metadata.num_rows
        report.rows[config] = first + count
    return report
