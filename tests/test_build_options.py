"""`datagen build`'s options are BuildConfig's fields: same names, defaults and help."""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

import pytest
import typer.main

from datagen.build_options import config_from, option_fields
from datagen.cli import app
from datagen.config import BuildConfig, Flag

README = Path(__file__).resolve().parents[1] / "README.md"
# The BuildConfig fields that are no option; each says why at its field.
INTERNAL = {"command", "max_turns"}
# The options of the run itself, not of what it makes.
RUN_ONLY = {"push", "private", "overwrite", "resume", "config", "runner", "address", "quiet",
            "json_out"}


def _build_params() -> dict[str, Any]:
    return {p.name: p for p in typer.main.get_command(app).commands["build"].params}


def _parse(*args: str) -> dict[str, Any]:
    """The build command's parameters after reading ``args``, as the command receives them."""
    command = typer.main.get_command(app).commands["build"]
    return command.make_context("build", list(args)).params


def test_every_field_is_an_option_with_its_help_and_names() -> None:
    params = _build_params()
    for name, info in BuildConfig.model_fields.items():
        if name in INTERNAL:
            assert name not in params
            continue
        assert name in params, f"BuildConfig.{name} is no `datagen build` option"
        flag = next((m for m in info.metadata if isinstance(m, Flag)), Flag())
        assert params[name].opts == list(flag.names or [f"--{name.replace('_', '-')}"])
        assert info.description and params[name].help == info.description
    assert set(params) == set(option_fields()) | RUN_ONLY
    assert set(option_fields()) == set(BuildConfig.model_fields) - INTERNAL


def test_the_options_defaults_are_buildconfigs_defaults() -> None:
    assert config_from(_parse(), command="") == BuildConfig()
    cfg = config_from(_parse("--teacher", "openai", "--model", "m"), command="")
    assert cfg.attempts == 4 and cfg.workers == (os.cpu_count() or 1)  # computed, as in Python


def test_command_line_forms_reach_buildconfig() -> None:
    cfg = config_from(_parse(
        "--family", "chart,search", "--rl-mix", "easy=1,hard=1", "--exclude", "a", "--exclude",
        "b", "--decontaminate", "org/bench", "--workers", "0", "--attempts", "1",
        "--keep-trivial", "--split", "rl", "--out", "x"), command="datagen build")
    assert cfg.families == ("chart", "search") and cfg.rl_mix == (("easy", 0.5), ("hard", 0.5))
    assert cfg.exclude == (Path("a"), Path("b")) and cfg.decontaminate == ("org/bench",)
    assert cfg.workers == (os.cpu_count() or 1) and cfg.attempts == 1 and cfg.keep_trivial
    assert (cfg.split, cfg.out, cfg.command) == ("rl", Path("x"), "datagen build")
    assert config_from({**_parse(), "exclude": "one"}, command="").exclude == (Path("one"),)


def _readme_table() -> dict[str, str]:
    """The README's `datagen build` table: each option named in a row, and the row's default."""
    section = README.read_text(encoding="utf-8").split("## `datagen build`", 1)[1]
    section = section.split("\n## ", 1)[0]
    rows: dict[str, str] = {}
    for line in section.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) == 3 and cells[0].startswith("`--"):
            flags = re.findall(r"--[a-z][a-z-]*", cells[0])
            rows.update(dict.fromkeys(flags, cells[1] if len(flags) == 1 else ""))
    return rows


def test_the_readme_table_lists_every_option_with_its_default() -> None:
    table = _readme_table()
    params = _build_params()
    assert set(table) == {p.opts[0] for p in params.values()}
    for param in params.values():
        shown = table[param.opts[0]]
        if param.default is None:
            continue  # the README says in words what the build then takes
        if re.fullmatch(r"-?[0-9.]+", shown):
            assert float(shown) == param.default, param.opts[0]
        elif re.fullmatch(r"`[^`]*`", shown):
            assert shown.strip("`") == str(param.default), param.opts[0]
        elif shown == "off":
            assert param.default is False, param.opts[0]


def test_a_field_without_help_cannot_become_an_option() -> None:
    from pydantic.fields import FieldInfo

    from datagen.build_options import _parameter

    with pytest.raises(TypeError, match="BuildConfig.tries: give it a description"):
        _parameter("tries", FieldInfo(annotation=int, default=1), Flag())
