"""Benchmark decontamination, and the scenes an earlier build already used.

``--decontaminate SOURCE`` names a benchmark a model will be judged on (a user's copy of V*,
ChartQA, MathVerse…): a folder saved with ``Dataset.save_to_disk``, a folder ``load_dataset``
reads (an image folder with ``metadata.jsonl``, parquet or JSON lines files), or a Hub dataset
id. A generated item is contaminated when its image is within the dedup radius of a benchmark
image, or its question shares a run of ``ngram`` words with a benchmark question (a benchmark
question shorter than that matches only a question equal to it as a whole).

``--exclude PATH`` names an earlier build (say the SFT folder, when the RL set is built later):
an item is a split overlap when its scene id or its exact image hash is in that build.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from datagen.check.matcher import normalize_text
from datagen.errors import UsageError
from datagen.release.dedup import HashMethod, Signatures, cross_pairs, image_hashes

__all__ = ["Benchmark", "Excluded", "contaminated", "load_benchmark", "load_excluded",
           "question_grams"]

_QUESTION_COLUMNS = ("question", "query", "prompt", "problem", "instruction", "text")


def _gram_hash(words: Sequence[str]) -> int:
    digest = hashlib.blake2b(" ".join(words).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little")


def question_grams(question: str, n: int) -> set[int]:
    """Hashes of the ``n``-word runs of the normalized question (the whole of a shorter one)."""
    words = normalize_text(question).split()
    if len(words) < n:
        return {_gram_hash(["<whole>", *words])}
    return {_gram_hash(words[i:i + n]) for i in range(len(words) - n + 1)}


@dataclass(slots=True)
class Benchmark:
    """What a benchmark contributes to the check: its image hashes and question n-grams."""

    name: str
    phash: np.ndarray
    dhash: np.ndarray
    grams: set[int] = field(default_factory=set)
    items: int = 0


def _load_any(source: str) -> Any:
    """The dataset at ``source``, all of its splits, as one ``datasets.Dataset``."""
    import datasets

    path = Path(source)
    try:
        if path.is_dir() and ((path / "dataset_info.json").exists()
                              or (path / "dataset_dict.json").exists()):
            ds = datasets.load_from_disk(str(path))
        elif path.exists():
            ds = datasets.load_dataset(str(path)) if path.is_dir() else datasets.load_dataset(
                path.suffix.lstrip(".").replace("jsonl", "json"), data_files=str(path))
        elif "/" in source and not source.startswith((".", "/")):
            ds = datasets.load_dataset(source)  # a Hub id: the user asked for the network
        else:
            raise UsageError(f"--decontaminate {source}: no such folder or file")
    except UsageError:
        raise
    except Exception as exc:  # datasets raises many kinds; the user needs the message
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise UsageError(f"--decontaminate {source}: cannot load it as a dataset ({first}); "
                         "give a save_to_disk folder, an image folder with metadata.jsonl, "
                         "parquet/JSON lines files, or a Hub dataset id") from None
    if isinstance(ds, datasets.DatasetDict):
        ds = datasets.concatenate_datasets(list(ds.values()))
    return ds


def _columns(ds: Any, source: str) -> tuple[str | None, str | None]:
    """The image column (an Image or a list of Image) and the question column, if any."""
    import datasets

    image = next((k for k, f in ds.features.items()
                  if isinstance(f, datasets.Image)
                  or (isinstance(f, datasets.List | datasets.Sequence | list)
                      and isinstance(getattr(f, "feature", f[0] if isinstance(f, list) else None),
                                     datasets.Image))), None)
    question = next((c for c in _QUESTION_COLUMNS
                     if isinstance(ds.features.get(c), datasets.Value)), None)
    if image is None and question is None:
        raise UsageError(f"--decontaminate {source}: found neither an image column nor a "
                         f"question column ({', '.join(_QUESTION_COLUMNS)}) among "
                         f"{', '.join(ds.features)}")
    return image, question


def _image_bytes(value: Any) -> bytes | None:
    if isinstance(value, list):
        value = value[0] if value else None
    if not value:
        return None
    if value.get("bytes"):
        return value["bytes"]
    return Path(value["path"]).read_bytes() if value.get("path") else None


def load_benchmark(source: str, ngram: int) -> Benchmark:
    """Hash the images and n-gram the questions of the benchmark at ``source``."""
    import datasets

    ds = _load_any(source)
    image_col, question_col = _columns(ds, source)
    phash: list[int] = []
    dhash: list[int] = []
    grams: set[int] = set()
    if image_col is not None:
        feature = ds.features[image_col]
        raw = datasets.Image(decode=False)
        ds = ds.cast_column(image_col, [raw] if not isinstance(feature, datasets.Image)
                            else raw)
        for value in ds[image_col]:
            data = _image_bytes(value)
            if data is not None:
                p, d = image_hashes(data)
                phash.append(p)
                dhash.append(d)
    if question_col is not None:
        for q in ds[question_col]:
            if q:
                grams |= question_grams(q, ngram)
    return Benchmark(name=source, phash=np.array(phash, dtype=np.uint64),
                     dhash=np.array(dhash, dtype=np.uint64), grams=grams, items=len(ds))


def contaminated(sigs: Signatures, questions: Sequence[str], benchmarks: Iterable[Benchmark],
                 radius: int, method: HashMethod, ngram: int) -> list[str | None]:
    """Per row: the benchmark it is contaminated by (and how), or None."""
    found: list[str | None] = [None] * len(sigs)
    img = sigs.image(method)
    grams = [question_grams(q, ngram) for q in questions]
    for bench in benchmarks:
        ref = bench.phash if method == "phash" else bench.dhash
        if len(ref) and len(img):
            rows, _ = cross_pairs(img, ref, radius)
            for r in rows.tolist():
                found[r] = found[r] or f"image within {radius} bits of an image of {bench.name}"
        if bench.grams:
            for r, g in enumerate(grams):
                if found[r] is None and not g.isdisjoint(bench.grams):
                    found[r] = f"question shares {ngram} words with a question of {bench.name}"
    return found


@dataclass(slots=True)
class Excluded:
    """Scene ids and exact image hashes an item must not share (another split, an old build)."""

    scenes: set[str] = field(default_factory=set)
    phash: set[int] = field(default_factory=set)

    def add(self, sigs: Signatures) -> None:
        """Exclude the scenes and images of ``sigs``."""
        self.scenes.update(sigs.scene)
        self.phash.update(sigs.phash.tolist())

    def overlaps(self, sigs: Signatures) -> list[bool]:
        """Per row: does it share a scene or an exact image hash with what is excluded?"""
        return [s in self.scenes or h in self.phash
                for s, h in zip(sigs.scene, sigs.phash.tolist(), strict=True)]


def load_excluded(path: Path) -> Excluded:
    """The scenes and image hashes of the dataset folder at ``path`` (ours or any in the layout).

    Read from the published parquet files: ``scene_id`` where present, and the hash of each
    row's first image (once per scene: its questions share the image).
    """
    import pyarrow.parquet as pq

    if not path.is_dir():
        raise UsageError(f"--exclude {path}: no such folder; give a dataset folder built before")
    excluded = Excluded()
    files = sorted((path / "data").glob("*.parquet")) or sorted(path.glob("*.parquet"))
    if not files:
        raise UsageError(f"--exclude {path}: no parquet files in it (expected data/*.parquet)")
    for f in files:
        table = pq.read_table(f)
        cols = set(table.column_names)
        if "scene_id" in cols:
            excluded.scenes.update(x for x in table.column("scene_id").to_pylist() if x)
        image_col = "images" if "images" in cols else ("image" if "image" in cols else None)
        if image_col is None:
            continue
        scenes = table.column("scene_id").to_pylist() if "scene_id" in cols \
            else [None] * table.num_rows
        seen: set[str] = set()
        for scene, value in zip(scenes, table.column(image_col).to_pylist(), strict=True):
            if scene is not None:
                if scene in seen:
                    continue
                seen.add(scene)
            data = _image_bytes(value)
            if data is not None:
                excluded.phash.add(image_hashes(data)[0])
    return excluded

