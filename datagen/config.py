"""Build options, validated once, with the hash that names the content they produce."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator

from datagen import GENERATOR_VERSION
from datagen.errors import UsageError
from datagen.scenes import FAMILY_NAMES
from datagen.teachers import TEACHER_NAMES

__all__ = ["BuildConfig"]

# Options that change what rows a shard holds; anything else (n, workers, out) does not.
_CONTENT_FIELDS = ("split", "family", "teacher", "seed", "shard_size", "questions_per_scene",
                   "max_turns", "cell_timeout")
_CHOICES = {"family": FAMILY_NAMES, "teacher": TEACHER_NAMES}


class BuildConfig(BaseModel):
    """Everything ``datagen build`` needs to know."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    split: Literal["sft"] = "sft"
    n: int = Field(500, description="rows to publish")
    out: Path = Path("data/demo")
    family: str = "chart"
    teacher: str = "scripted"
    seed: int = 0
    shard_size: int = Field(16, description="scenes per shard")
    questions_per_scene: int = 3
    max_turns: int = 6
    cell_timeout: float = 15.0
    workers: int = Field(default_factory=lambda: os.cpu_count() or 1)
    command: str = ""

    @field_validator("n", "shard_size", "questions_per_scene", "workers", "max_turns")
    @classmethod
    def _positive(cls, v: int) -> int:
        if v <= 0:
            raise ValueError("must be a positive whole number")
        return v

    @field_validator("family", "teacher")
    @classmethod
    def _known(cls, v: str, info: ValidationInfo) -> str:
        names = _CHOICES[str(info.field_name)]
        if v not in names:
            raise ValueError(f"unknown {info.field_name} {v!r}; choose one of: {', '.join(names)}")
        return v

    @classmethod
    def from_options(cls, **options: object) -> BuildConfig:
        """Validate options; a bad one becomes a one-line UsageError naming it."""
        from pydantic import ValidationError

        try:
            return cls(**options)  # type: ignore[arg-type]
        except ValidationError as exc:
            err = exc.errors()[0]
            name = "--" + str(err["loc"][0]).replace("_", "-") if err["loc"] else "option"
            msg = str(err["msg"]).removeprefix("Value error, ")
            raise UsageError(f"{name}: {msg} (got {err.get('input')!r})") from None

    def content_key(self) -> str:
        """Hash of everything that decides the rows: same key, byte-identical shards."""
        fields = {k: getattr(self, k) for k in _CONTENT_FIELDS}
        fields["generator_version"] = GENERATOR_VERSION
        blob = json.dumps(fields, sort_keys=True, default=str)
        return hashlib.sha256(blob.encode()).hexdigest()[:16]
