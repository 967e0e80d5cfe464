"""Build options, validated once, with the hash that names the content they produce."""

from __future__ import annotations

import hashlib
import itertools
import json
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from datagen import GENERATOR_VERSION
from datagen.errors import UsageError
from datagen.scenes import FAMILY_NAMES

__all__ = ["DEFAULT_BASE_URL", "PRICES", "RL_SCENE_BASE", "SPLITS", "TEACHER_NAMES", "BuildConfig",
           "Flag", "ShardPlace", "public_url"]

SPLITS = ("sft", "rl")
TEACHER_NAMES = ("scripted", "openai")
DEFAULT_BASE_URL = "https://api.openai.com/v1"
# USD per 1M tokens (input, output) for a few well-known models; --price-in/--price-out win.
PRICES: dict[str, tuple[float, float]] = {
    "gpt-4o": (2.50, 10.00),
    "gpt-4o-mini": (0.15, 0.60),
    "gpt-4.1": (2.00, 8.00),
    "gpt-4.1-mini": (0.40, 1.60),
    "gpt-4.1-nano": (0.10, 0.40),
}
# RL scenes are numbered from here, so an RL set never draws a scene of the SFT set with the
# same seed, whether both are built together (--split all) or in two runs.
RL_SCENE_BASE = 1 << 40
# The RL set's default difficulty mix favours medium and hard tasks, as CodeDance's did.
DEFAULT_RL_MIX = (("easy", 0.2), ("medium", 0.4), ("hard", 0.4))

# Options that change what rows a shard holds; anything else (n, workers, out) does not.
_CONTENT_FIELDS = ("split", "families", "teacher", "seed", "shard_size", "questions_per_scene",
                   "max_turns", "cell_timeout", "max_side", "clutter")
# ... and, for an LLM teacher, what changes its samples (never the key, never the URL's path).
_LLM_CONTENT_FIELDS = ("model", "attempts", "temperature")
# ... and, with a weak model, what changes its samples (so the difficulty labels).
_WEAK_CONTENT_FIELDS = ("weak_model", "weak_samples", "temperature")
# Tries per task when --attempts is not given: a deterministic teacher gains nothing from more.
_DEFAULT_ATTEMPTS = {"scripted": 1, "openai": 4}


@dataclass(frozen=True, slots=True)
class ShardPlace:
    """Where a shard index points: its split, its family, and its number within both."""

    split: str
    family: str
    number: int


@dataclass(frozen=True, slots=True)
class Flag:
    """How a ``BuildConfig`` field is written on the ``datagen build`` command line.

    Every field is a build option named after it (``shard_size`` is ``--shard-size``) with the
    field's default, and the field's description as its help; this annotation says what the
    command line does differently (``datagen.build_options`` turns fields into options).
    """

    names: tuple[str, ...] = ()  # the option's names if not --field-name; the first is shown
    # "comma": one string, comma-separated; "mix": easy=0.2,...; "repeat": the option repeated.
    form: Literal["value", "comma", "mix", "repeat"] = "value"
    # For a default computed by BuildConfig (``default_factory``): the value that asks for it.
    unset: object = None
    internal: bool = False  # not an option at all (the comment at the field says why)


class BuildConfig(BaseModel):
    """Everything ``datagen build`` needs to know.

    Each field is one ``datagen build`` option: add an option here, once, with its help as the
    description (and a ``Flag`` if the command line writes it differently).
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    split: Literal["sft", "rl", "all"] = Field(
        "sft", description="Which set to build: sft, rl, or all (both, with no scene in common).")
    n: int = Field(500, description="Rows to publish (per split with --split all).")
    out: Path = Field(Path("data/demo"), description="Output folder.")
    families: Annotated[tuple[str, ...], Flag(("--families", "--family"), form="comma")] = Field(
        ("chart",), description="Scene families, comma-separated: chart, geometry, search.")
    teacher: str = Field("scripted", description="Teacher: scripted (offline) or openai (an "
                         "OpenAI-compatible endpoint).")
    seed: int = Field(0, description="Run seed: same seed and options, same rows.")
    shard_size: int = Field(16, description="Scenes per shard.")
    questions_per_scene: int = Field(3, description="Questions per scene.")
    # Not an option: the SFT format allows at most 6 assistant turns; tests lower it.
    max_turns: Annotated[int, Flag(internal=True)] = 6
    cell_timeout: float = Field(15.0, description="Seconds per code cell.")
    workers: Annotated[int, Flag(unset=0)] = Field(
        default_factory=lambda: os.cpu_count() or 1,
        description="Worker processes (default: all cores).")
    max_side: int = Field(4096, ge=512, description="Longest side of visual-search images "
                          "(1024–4096 px by default, or beyond).")
    clutter: float = Field(1.0, gt=0, le=10,
                           description="Distractor density multiplier for visual search.")
    # LLM teacher (--teacher openai); the API key comes from OPENAI_API_KEY, never from here.
    model: str = Field("", description="Model name for --teacher openai.")
    base_url: str | None = Field(None, description="OpenAI-compatible endpoint, e.g. "
                                 "http://localhost:8000/v1 (default: OpenAI). The key is read "
                                 "from OPENAI_API_KEY.")
    attempts: Annotated[int, Flag(unset=None)] = Field(
        default_factory=lambda data: _DEFAULT_ATTEMPTS.get(str(data.get("teacher")), 1),
        description="Tries per task; the first verified one is kept (default 1 scripted, "
                    "4 openai).")
    temperature: float = Field(0.7, ge=0, le=2, description="Sampling temperature.")
    concurrency: int = Field(8, description="API requests in flight per worker process.")
    rpm: int = Field(0, ge=0, description="Requests per minute, 0 = unlimited.")
    tpm: int = Field(0, ge=0, description="Tokens per minute, 0 = unlimited.")
    max_cost: float = Field(0.0, ge=0, description="Stop paying for new calls after this many "
                            "USD, 0 = unlimited.")
    price_in: float | None = Field(None, ge=0, description="USD per 1M prompt tokens (default: "
                                   "known models' list price).")
    price_out: float | None = Field(None, ge=0, description="USD per 1M completion tokens.")
    request_timeout: float = Field(120.0, gt=0, description="Seconds per API request.")
    allow_process_mode: bool = Field(False, description="Let an LLM teacher's code run without "
                                     "the bubblewrap jail where it cannot start (only for "
                                     "code you trust).")
    # Weak-to-strong difficulty: a weaker model answers each task without tools.
    weak_model: str = Field("", description="A weaker model that answers each task without "
                            "tools; its pass rate sets the difficulty (any teacher).")
    weak_base_url: str | None = Field(None, description="Endpoint of --weak-model (default: "
                                      "--base-url).")
    weak_samples: int = Field(4, description="Answers of --weak-model per task.")
    # Publishing: dedup, disjointness, decontamination, RL mix. They change which rows are
    # published, not what a shard holds, so a build can be republished under new ones.
    dedup_radius: int = Field(4, ge=0, le=12, description="Image hash bits within which two "
                              "images count as the same (0-12).")
    text_threshold: float = Field(0.8, ge=0.3, le=1.0, description="Question similarity "
                                  "(MinHash Jaccard) from which two wordings are the same.")
    image_hash: Literal["phash", "dhash"] = Field("phash",
                                                  description="Image hash: phash or dhash.")
    exclude: Annotated[tuple[Path, ...], Flag(form="repeat")] = Field(
        (), description="A dataset folder built before (e.g. the SFT set) whose scenes and "
                        "images this build must not use; repeatable.")
    decontaminate: Annotated[tuple[str, ...], Flag(form="repeat")] = Field(
        (), description="A benchmark (save_to_disk folder, image folder, parquet/JSON lines, or "
                        "Hub id) whose images and questions must not appear; repeatable.")
    contam_ngram: int = Field(8, ge=3, le=50, description="Words a question may not share in a "
                              "row with a benchmark question.")
    rl_mix: Annotated[tuple[tuple[str, float], ...], Flag(form="mix")] = Field(
        DEFAULT_RL_MIX, description="RL difficulty mix, e.g. easy=0.2,medium=0.4,hard=0.4.")
    keep_trivial: bool = Field(False, description="Keep RL tasks a weak model always solved "
                               "(left out by default).")
    # Not an option: the CLI sets it to the command line itself, for the card.
    command: Annotated[str, Flag(internal=True)] = ""

    @field_validator("n", "shard_size", "questions_per_scene", "workers", "max_turns",
                     "attempts", "concurrency", "weak_samples")
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

    @field_validator("rl_mix", mode="before")
    @classmethod
    def _parse_mix(cls, v: object) -> object:
        # "easy=0.2,medium=0.4,hard=0.4" on the command line.
        if isinstance(v, str):
            pairs = []
            for part in (p.strip() for p in v.split(",") if p.strip()):
                name, sep, weight = part.partition("=")
                try:
                    pairs.append((name.strip(), float(weight)))
                except ValueError:
                    raise ValueError("write it as easy=0.2,medium=0.4,hard=0.4") from None
                if not sep:
                    raise ValueError("write it as easy=0.2,medium=0.4,hard=0.4")
            return tuple(pairs)
        if isinstance(v, dict):
            return tuple(v.items())
        return v

    @field_validator("rl_mix")
    @classmethod
    def _valid_mix(cls, v: tuple[tuple[str, float], ...]) -> tuple[tuple[str, float], ...]:
        names = [k for k, _ in v]
        if not v or any(k not in ("easy", "medium", "hard") for k in names):
            raise ValueError("name the difficulties easy, medium and hard, e.g. "
                             "easy=0.2,medium=0.4,hard=0.4")
        if len(set(names)) != len(names) or any(w < 0 for _, w in v) or not sum(
                w for _, w in v):
            raise ValueError("give each difficulty once, with weights ≥ 0 that are not all 0")
        total = sum(w for _, w in v)
        return tuple((k, round(w / total, 6)) for k, w in v)

    @field_validator("teacher")
    @classmethod
    def _known_teacher(cls, v: str) -> str:
        if v not in TEACHER_NAMES:
            raise ValueError(f"unknown teacher {v!r}; choose one of: {', '.join(TEACHER_NAMES)}")
        return v

    @field_validator("base_url", "weak_base_url")
    @classmethod
    def _http_url(cls, v: str | None) -> str | None:
        if v is None:
            return v
        parts = urlsplit(v)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError("give an http(s) URL such as http://localhost:8000/v1")
        if parts.username or parts.password:
            raise ValueError("no credentials in the URL: the key goes in OPENAI_API_KEY")
        return v

    @model_validator(mode="after")
    def _teacher_options(self) -> BuildConfig:
        if self.teacher == "scripted" and self.attempts > 1:
            raise ValueError("--attempts: the scripted teacher is deterministic, so every try "
                             "would be the same trace; use 1")
        if self.teacher == "openai":
            if not self.model:
                raise ValueError("--model: name the model the openai teacher should use")
            if self.max_cost and self.prices() == (0.0, 0.0) and self.model not in PRICES:
                raise ValueError(f"--max-cost: no price known for {self.model!r}; give "
                                 "--price-in and --price-out (USD per 1M tokens)")
        if self.weak_base_url and not self.weak_model:
            raise ValueError("--weak-base-url: name the model with --weak-model")
        if (self.weak_model and self.max_cost and self.weak_model not in PRICES
                and self.prices(self.weak_model) == (0.0, 0.0)):
            raise ValueError(f"--max-cost: no price known for {self.weak_model!r}; give "
                             "--price-in and --price-out (USD per 1M tokens)")
        return self

    def prices(self, model: str | None = None) -> tuple[float, float]:
        """USD per 1M prompt and completion tokens of ``model`` (default: the teacher's).

        The options win, else the table of known models, else 0.
        """
        known = PRICES.get(self.model if model is None else model, (0.0, 0.0))
        return (self.price_in if self.price_in is not None else known[0],
                self.price_out if self.price_out is not None else known[1])

    def scene_options(self) -> dict[str, Any]:
        """The knobs handed to every family's ``make_scene``."""
        return {"max_side": self.max_side, "clutter": self.clutter}

    def splits(self) -> tuple[str, ...]:
        """The splits this build makes."""
        return SPLITS if self.split == "all" else (self.split,)

    def locate(self, shard: int) -> ShardPlace:
        """The split, family and number of shard ``shard``.

        With ``--split all`` the splits take turns (even shards SFT, odd RL); within a split the
        families take turns, so any prefix of the shards mixes them evenly.
        """
        splits = self.splits()
        split, local = splits[shard % len(splits)], shard // len(splits)
        fams = self.families
        return ShardPlace(split, fams[local % len(fams)], local // len(fams))

    def shards_of(self, split: str) -> Iterator[int]:
        """The shard indices of ``split``, in order (see ``locate``)."""
        splits = self.splits()
        return itertools.count(splits.index(split), len(splits))

    def family_of(self, shard: int) -> tuple[str, int]:
        """The family of shard ``shard`` and the shard's number within that family."""
        place = self.locate(shard)
        return place.family, place.number

    @classmethod
    def from_options(cls, **options: object) -> BuildConfig:
        """Validate options; a bad one becomes a one-line UsageError naming it."""
        from pydantic import ValidationError

        try:
            return cls(**options)  # type: ignore[arg-type]
        except ValidationError as exc:
            err = exc.errors()[0]
            msg = str(err["msg"]).removeprefix("Value error, ")
            if not err["loc"]:  # a check across options names them itself
                raise UsageError(msg) from None
            field = str(err["loc"][0])
            given = err.get("input")
            if field in ("base_url", "weak_base_url") and isinstance(given, str):
                given = public_url(given)  # never echo a password to the terminal or a log
            raise UsageError(f"--{field.replace('_', '-')}: {msg} (got {given!r})") from None

    def content_key(self) -> str:
        """Hash of everything that decides the rows: same key, byte-identical shards."""
        fields = {k: getattr(self, k) for k in _CONTENT_FIELDS}
        if self.teacher != "scripted":
            fields.update({k: getattr(self, k) for k in _LLM_CONTENT_FIELDS})
            fields["endpoint"] = urlsplit(self.base_url or "https://api.openai.com").netloc
        if self.weak_model:
            fields.update({k: getattr(self, k) for k in _WEAK_CONTENT_FIELDS})
            url = self.weak_base_url or self.base_url or "https://api.openai.com"
            fields["weak_endpoint"] = urlsplit(url).netloc
        fields["generator_version"] = GENERATOR_VERSION
        blob = json.dumps(fields, sort_keys=True, default=str)
        return hashlib.sha256(blob.encode()).hexdigest()[:16]


def public_url(base_url: str | None) -> str:
    """The base URL without credentials, query or fragment (safe to hash, log and print)."""
    parts = urlsplit(base_url or DEFAULT_BASE_URL)
    host = parts.hostname or ""
    netloc = f"{host}:{parts.port}" if parts.port else host
    return f"{parts.scheme}://{netloc}{parts.path.rstrip('/')}"
