"""Loading of templates/ and data_cards/: prompts, phrasings, think text and card text.

Everything a person might want to reword lives in files, not in Python strings. Files are found
in the installed package (``datagen/_resources``, put there by the wheel build) or, for an
editable install, at the repository's top level.
"""

from __future__ import annotations

import functools
import re
from pathlib import Path
from typing import Any

import jinja2
import yaml

from datagen.errors import TemplateError

__all__ = ["indefinite", "render", "render_string", "resource_dir", "load_yaml"]

_PACKAGE_ROOT = Path(__file__).resolve().parent


def resource_dir(kind: str) -> Path:
    """The folder holding ``kind`` ("templates" or "data_cards")."""
    for candidate in (_PACKAGE_ROOT / "_resources" / kind, _PACKAGE_ROOT.parent / kind):
        if candidate.is_dir():
            return candidate
    raise TemplateError(f"cannot find the {kind}/ folder; reinstall codedance-datagen")


def indefinite(phrase: str) -> str:
    """``phrase`` with its indefinite article: "an outline pink star", "a striped one", "an 8".

    Templates use it as the filter ``a``: ``{{ target | a }}``.
    """
    word = phrase.strip().split(" ", 1)[0].lower()
    vowel = word[:1] in ("a", "e", "i", "o") or (word[:1] == "u" and not word.startswith(
        ("uni", "use", "usu", "uti")))
    # Numbers said with a vowel: eight..., eleven, eighteen (and their thousands).
    vowel = vowel or re.fullmatch(r"8[\d,.]*|1[18](?:,?\d{3})*", word) is not None
    return f"{'an' if vowel else 'a'} {phrase.strip()}"


@functools.cache
def _env(kind: str) -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(resource_dir(kind)),
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
        trim_blocks=True,
        lstrip_blocks=True,
        autoescape=False,
    )
    env.filters["a"] = indefinite
    return env


def render(name: str, /, folder: str = "templates", **context: Any) -> str:
    """Render the template file ``name`` (relative to ``folder``) with ``context``."""
    try:
        return _env(folder).get_template(name).render(**context).strip("\n")
    except jinja2.TemplateNotFound as exc:
        raise TemplateError(f"template {name!r} not found in {resource_dir(folder)}") from exc
    except jinja2.UndefinedError as exc:
        raise TemplateError(f"template {name!r}: {exc}") from exc


@functools.cache
def _compiled(source: str) -> jinja2.Template:
    return _env("templates").from_string(source)


def render_string(source: str, **context: Any) -> str:
    """Render a template given as text (a phrasing read from a YAML file)."""
    try:
        return _compiled(source).render(**context).strip()
    except jinja2.UndefinedError as exc:
        raise TemplateError(f"phrasing {source!r}: {exc}") from exc


@functools.cache
def load_yaml(name: str) -> Any:
    """Parse a YAML file under templates/ (phrasings, vocabularies); cached."""
    path = resource_dir("templates") / name
    if not path.is_file():
        raise TemplateError(f"template data {name!r} not found in {path.parent}")
    return yaml.safe_load(path.read_text(encoding="utf-8"))
