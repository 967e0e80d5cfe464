"""Build options, validated once, with the hash that names the content they produce."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from datagen import GENERATOR_VERSION
from datagen.errors import UsageError
from datagen.scenes import FAMILY_NAMES
from datagen.teachers import TEACHER_NAMES

__all__ = ["BuildConfig"]

# Options that change what rows a shard holds; anything else (n, workers, out) does not.
_CONTENT_FIELDS = ("split", "families", "teacher", "seed", "shard_size", "questions_per_scene",
                   "max_turns", "cell_timeout", "max_side", "clutter")
class BuildConfig(BaseModel):
    """Everything ``datagen build`` needs to know."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    split: Literal["sft"] = "sft"
    n: int = Field(500, description="rows to publish")
    out: Path = Path("data/demo")
    families: tuple[str, ...] = ("chart",)
    teacher: str = "scripted"
    seed: int = 0
    shard_size: int = Field(16, description="scenes per shard")
    questions_per_scene: int = 3
    max_turns: int = 6
    cell_timeout: float = 15.0
    workers: int = Field(default_factory=lambda: os.cpu_count() or 1)
    max_side: int = Field(4096, ge=512, description="longest side of visual-search images")
    clutter: float = Field(1.0, gt=0, le=10, description="distractor density multiplier")
    command: str = ""

    @field_validator("n", "shard_size", "questions_per_scene", "workers", "max_turns")
    @classmethod
    def _positive(cls, v: int) -> int:
        if v <= 0:
            raise ValueError("must be a positive whole number")
        return v

    @field_validator("families", mode="before")
    @classmethod
    def _split_families(cls, v: object) -> object:
        # "chart,geometry" on the command line, a list in Python.
        return tuple(x.strip() for x in v.split(",") if x.strip()) if isinstance(v, str) else v

    @field_validator("families")
    @classmethod
    def _known_families(cls, v: tuple[str, ...]) -> tuple[str, ...]:
        if not v:
            raise ValueError("name at least one family")
        for name in v:
            if name not in FAMILY_NAMES:
                raise ValueError(f"unknown family {name!r}; choose from: {', '.join(FAMILY_NAMES)}")
        if len(set(v)) != len(v):
            raise ValueError("a family is named twice")
        return v

    @field_validator("teacher")
    @classmethod
    def _known_teacher(cls, v: str) -> str:
        if v not in TEACHER_NAMES:
            raise ValueError(f"unknown teacher {v!r}; choose one of: {', '.join(TEACHER_NAMES)}")
        return v

    def scene_options(self) -> dict[str, Any]:
        """The knobs handed to every family's ``make_scene``."""
        return {"max_side": self.max_side, "clutter": self.clutter}

    def family_of(self, shard: int) -> tuple[str, int]:
        """The family of shard ``shard`` and the shard's number within that family.

        Families take turns shard by shard, so any prefix of the shards mixes them evenly.
        """
        return self.families[shard % len(self.families)], shard // len(self.families)

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
