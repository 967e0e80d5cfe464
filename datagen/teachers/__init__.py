"""Teachers: the offline scripted one (default) and any OpenAI-compatible endpoint.

``base`` holds the protocols every teacher implements; this module maps the names the build
config accepts (``config.TEACHER_NAMES``) to their classes.
"""

from __future__ import annotations

from datagen.config import TEACHER_NAMES, BuildConfig
from datagen.errors import UsageError
from datagen.teachers.base import Teacher
from datagen.teachers.openai_teacher import OpenAITeacher
from datagen.teachers.scripted import ScriptedTeacher

__all__ = ["get_teacher"]


def get_teacher(name: str, cfg: BuildConfig | None = None) -> Teacher:
    """The teacher called ``name``; LLM teachers take their settings from ``cfg``."""
    if name == "scripted":
        return ScriptedTeacher()
    if name == "openai":
        if cfg is None:
            raise UsageError("the openai teacher needs a build config (model, endpoint, limits)")
        return OpenAITeacher(cfg)
    raise UsageError(f"unknown teacher {name!r}; choose one of: {', '.join(TEACHER_NAMES)}")
