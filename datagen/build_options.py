"""The ``datagen build`` options, made from ``BuildConfig``'s fields.

Each field is an option named after it (``shard_size`` is ``--shard-size``), with the field's
default and its description as help. A ``Flag`` on the field says what the command line writes
differently: other names, a comma list, ``easy=0.2,...``, a repeated option, or a default that
``BuildConfig`` computes (the option then has a value that asks for it, such as
``--workers 0``). So an option is added once, in ``BuildConfig``, and cannot be forgotten here.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Annotated, Any, Literal, TypeVar, get_args, get_origin

import typer
from pydantic.fields import FieldInfo

from datagen.config import BuildConfig, Flag

__all__ = ["config_from", "option_fields", "with_build_options"]

F = TypeVar("F", bound=Callable[..., Any])


def option_fields() -> dict[str, tuple[FieldInfo, Flag]]:
    """``BuildConfig``'s fields that are build options, in order, each with its ``Flag``."""
    fields = {}
    for name, info in BuildConfig.model_fields.items():
        flag = next((m for m in info.metadata if isinstance(m, Flag)), Flag())
        if not flag.internal:
            fields[name] = (info, flag)
    return fields


def _parameter(name: str, info: FieldInfo, flag: Flag) -> inspect.Parameter:
    """The keyword parameter (type, default, typer option) that typer turns into the option."""
    if not info.description:
        raise TypeError(f"BuildConfig.{name}: give it a description, the help of its option")
    kind: Any = info.annotation
    if info.default_factory is not None:
        default = flag.unset
        kind = kind if flag.unset is not None else kind | None
    elif flag.form == "comma":
        kind, default = str, ",".join(info.default)
    elif flag.form == "mix":
        kind, default = str, ",".join(f"{k}={w:g}" for k, w in info.default)
    elif flag.form == "repeat":
        kind, default = list[get_args(kind)[0]] | None, None  # type: ignore[misc]
    else:
        default = info.default
        if get_origin(kind) is Literal:
            # BuildConfig checks the choice and says so in one line, as for every option.
            kind = str
    option = typer.Option(*flag.names, help=info.description)
    return inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=default,
                             annotation=Annotated[kind, option])


def with_build_options(func: F) -> F:
    """Give ``func`` one keyword option per build option, after its positional parameters.

    typer reads a command's options from its signature; ``func`` takes them in ``**options``.
    """
    own = list(inspect.signature(func, eval_str=True).parameters.values())
    if not own or own[-1].kind is not inspect.Parameter.VAR_KEYWORD:
        raise TypeError(f"{func.__name__} must take the build options as **options")
    clash = {p.name for p in own} & set(BuildConfig.model_fields)
    if clash:
        raise TypeError(f"{func.__name__}: {', '.join(sorted(clash))} are BuildConfig fields")
    positional = [p for p in own if p.kind is inspect.Parameter.POSITIONAL_OR_KEYWORD]
    keyword = [p for p in own if p.kind is inspect.Parameter.KEYWORD_ONLY]
    generated = [_parameter(name, *spec) for name, spec in option_fields().items()]
    func.__signature__ = inspect.Signature([*positional, *generated, *keyword])  # type: ignore[attr-defined]
    return func


def config_from(options: Mapping[str, Any], command: str) -> BuildConfig:
    """The ``BuildConfig`` of the build options in ``options`` (a bad one is a UsageError)."""
    values: dict[str, Any] = {}
    for name, (info, flag) in option_fields().items():
        value = options[name]
        if info.default_factory is not None and value == flag.unset:
            continue  # BuildConfig computes it
        if flag.form == "repeat":
            # A config file may give one value where the command line repeats the option.
            value = (value,) if isinstance(value, str | Path) else tuple(value or ())
        values[name] = value
    return BuildConfig.from_options(**values, command=command)
