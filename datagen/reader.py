"""Reading a published set back: its rows, rejects and stats, from a folder or the Hub.

``open_published(source, config)`` accepts what ``datagen build`` wrote, a folder in the same
layout that it did not write (``README.md`` + ``data/{config}-*.parquet``, maybe nothing else),
a folder in another Hub layout (the files the card's YAML ``configs`` name, as ``load_dataset``
reads them: ``sft/*.parquet``, ``train-*.parquet``, a single ``default`` config; or, without
such a card, the files ``load_dataset`` finds by their split's name) or a Hub dataset id.
Local folders are read with pyarrow one parquet file at a time, so a large set is never held
whole in memory and nothing is copied into the ``datasets`` cache; Hub ids go through
``datasets.load_dataset``. Images come back as encoded bytes, in the order
of the ``<image>`` tokens, whichever way the set was read.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from datagen.errors import UsageError
from datagen.memory import release_memory

__all__ = ["PublishedSet", "card_configs", "open_published", "row_images", "row_tolerance"]

_TOLERANCE = re.compile(r"rel_tol=([0-9.eE+-]+)")
_HUB_ID = re.compile(r"[A-Za-z0-9][\w.-]*/[\w.-]+")
_BATCH = 16  # rows read at a time: 16 visual-search rows with their images are ~80 MB


def row_images(row: dict[str, Any]) -> list[bytes]:
    """The encoded images of an SFT row (``{"bytes": …}`` structs or plain bytes)."""
    return [img["bytes"] if isinstance(img, dict) else img for img in row.get("images") or []]


def row_tolerance(row: dict[str, Any]) -> float:
    """The tolerance the build matched this row's answer with (from ``verification.matcher``).

    Every number row records one (``number(rel_tol=0.01)``); other answer types match exactly.
    """
    matcher = (row.get("verification") or {}).get("matcher") or ""
    found = _TOLERANCE.search(matcher)
    return float(found.group(1)) if found else 0.0


@dataclass(frozen=True, slots=True)
class PublishedSet:
    """One config (``sft`` or ``rl``) of a published set; see the module docstring."""

    source: str
    config: str
    folder: Path | None  # None for a set read from the Hub
    files: tuple[Path, ...]
    hub: Any = None  # the ``datasets.Dataset`` of a Hub set (images not decoded)

    def __len__(self) -> int:
        if self.hub is not None:
            return len(self.hub)
        return sum(pq.ParquetFile(f).metadata.num_rows for f in self.files)

    def columns(self, names: Sequence[str]) -> dict[str, list[Any]]:
        """Whole columns without the images (cheap: parquet reads only those columns)."""
        if self.hub is not None:
            return {n: (self.hub[n] if n in self.hub.column_names else [None] * len(self.hub))
                    for n in names}
        out: dict[str, list[Any]] = {n: [] for n in names}
        for f in self.files:
            present = [n for n in names if n in pq.ParquetFile(f).schema_arrow.names]
            table = pq.read_table(f, columns=present)
            for n in names:
                out[n].extend(table[n].to_pylist() if n in present else [None] * len(table))
        return out

    def rows(self, indices: Sequence[int] | None = None) -> Iterator[tuple[int, dict[str, Any]]]:
        """``(index, row)`` for the rows at ``indices`` (all rows when None), in index order."""
        wanted = None if indices is None else sorted(set(indices))
        if self.hub is not None:
            for i in wanted if wanted is not None else range(len(self.hub)):
                yield i, self.hub[i]
            return
        start = 0
        for f in self.files:
            # No read-ahead: with it, pyarrow buffers the whole file's images (455 MiB
            # peak reading 400 search rows, 196 MiB without).
            parquet = pq.ParquetFile(f, pre_buffer=False)
            n = parquet.metadata.num_rows
            local = None if wanted is None else [i - start for i in wanted
                                                 if start <= i < start + n]
            if local is None:
                for batch in parquet.iter_batches(batch_size=_BATCH):
                    for row in batch.to_pylist():
                        yield start, row
                        start += 1
                    release_memory()  # a batch's images at a time (see memory.py)
                continue
            if local:
                # Batch by batch, so a sample of a large file never holds all of its images.
                want, offset = set(local), 0
                for batch in parquet.iter_batches(batch_size=_BATCH):
                    hit = [k for k in range(batch.num_rows) if offset + k in want]
                    if hit:
                        rows = batch.take(pa.array(hit, pa.int64())).to_pylist()
                        for k, row in zip(hit, rows, strict=True):
                            yield start + offset + k, row
                    offset += batch.num_rows
                    release_memory()
            start += n

    def rejects(self) -> list[dict[str, Any]]:
        """The records of ``rejects.jsonl`` that belong to this config (none if it is absent)."""
        path = self.folder / "rejects.jsonl" if self.folder else None
        if path is None or not path.is_file():
            return []
        records = []
        for line in path.read_text(encoding="utf-8").splitlines():
            try:
                record = json.loads(line)
            except ValueError:
                continue  # a hand-edited or truncated line must not hide the others
            if isinstance(record, dict) and record.get("split") == self.config:
                records.append(record)
        return records

    def stats(self) -> dict[str, Any] | None:
        """``stats.json`` if the folder has a readable one."""
        path = self.folder / "stats.json" if self.folder else None
        if path is None or not path.is_file():
            return None
        try:
            stats = json.loads(path.read_text(encoding="utf-8"))
        except ValueError:
            return None
        return stats if isinstance(stats, dict) else None


def open_published(source: str | Path, config: str = "sft",
                   split: str = "train") -> PublishedSet:
    """The ``config`` rows of a local folder, or of a Hub dataset id (``user/name``).

    Raises UsageError when the folder has no ``data/{config}-*.parquet`` or the id is unknown.
    """
    folder = Path(source)
    if folder.is_dir():
        files = tuple(sorted((folder / "data").glob(f"{config}-*.parquet")))
        if not files:
            configs = card_configs(folder)  # a card with configs says where the files are
            files = (_files_of_card(folder, configs, config, split) if configs
                     else _files_by_split(folder, split))
        if not files:
            raise UsageError(f"{folder}: no data/{config}-*.parquet files, no {config!r} (or "
                             f"single) config in the card's YAML naming parquet files, and no "
                             f"parquet files named after the {split!r} split; give a dataset "
                             "folder in a Hub layout")
        return PublishedSet(str(source), config, folder, files)
    if not _HUB_ID.fullmatch(str(source)):
        raise UsageError(f"{source}: no such folder, and not a Hub dataset id (user/name)")
    return PublishedSet(str(source), config, None, (), _load_hub(str(source), config, split))


def card_configs(folder: Path) -> list[dict[str, Any]]:
    """The ``configs`` of the YAML header of ``folder/README.md`` (empty when it has none)."""
    import yaml

    try:
        text = (folder / "README.md").read_text(encoding="utf-8")
    except OSError:
        return []
    if not text.startswith("---"):
        return []
    header = text[3:].split("\n---", 1)[0]
    try:
        meta = yaml.safe_load(header) or {}
    except yaml.YAMLError:
        return []
    configs = meta.get("configs") if isinstance(meta, dict) else None
    return [c for c in configs if isinstance(c, dict)] if isinstance(configs, list) else []


def _patterns(data_files: Any, split: str) -> list[str]:
    """The path patterns of ``split`` in a config's ``data_files`` (every form the Hub takes:
    a pattern, a list of them, a list of ``{split, path}``, a mapping of split to paths)."""
    if isinstance(data_files, str):
        return [data_files] if split == "train" else []
    if isinstance(data_files, dict):
        paths = data_files.get(split)
        return [paths] if isinstance(paths, str) else [str(p) for p in paths or []]
    if not isinstance(data_files, list):
        return []
    found: list[str] = []
    for entry in data_files:
        if isinstance(entry, str) and split == "train":
            found.append(entry)
        elif isinstance(entry, dict) and entry.get("split", "train") == split:
            paths = entry.get("path")
            found += [paths] if isinstance(paths, str) else [str(p) for p in paths or []]
    return found


def _glob(folder: Path, patterns: list[str]) -> tuple[Path, ...]:
    files = {p for pattern in patterns for p in folder.glob(pattern.lstrip("/"))
             if p.is_file() and p.suffix == ".parquet"}
    return tuple(sorted(files))


def _files_of_card(folder: Path, configs: list[dict[str, Any]], config: str,
                   split: str) -> tuple[Path, ...]:
    """The parquet files that the card's config ``config`` (or its only config) names for
    ``split``."""
    chosen = [c for c in configs if c.get("config_name") == config]
    if not chosen and len(configs) == 1:
        chosen = configs  # one config ("default" or a name of its own) holds the set
    return _glob(folder, _patterns(chosen[0].get("data_files"), split)) if chosen else ()


def _files_by_split(folder: Path, split: str) -> tuple[Path, ...]:
    """Without configs in the card: files named after the split, as ``load_dataset`` finds
    them (``data/train-*``, ``train-*``, ``train/``), else every parquet file at the top or in
    ``data/`` when the folder holds one split only."""
    for patterns in ([f"data/{split}-*.parquet", f"data/{split}.parquet"],
                     [f"{split}-*.parquet", f"{split}.parquet", f"{split}/*.parquet"],
                     ["data/*.parquet", "*.parquet"]):
        files = _glob(folder, patterns)
        if files:
            return files
    return ()


def _load_hub(name: str, config: str, split: str) -> Any:
    import datasets

    try:
        ds = datasets.load_dataset(name, config, split=split)
    except Exception as exc:  # the Hub client raises many types; all mean "cannot load it"
        raise UsageError(f"cannot load {name!r} ({config}/{split}) from the Hub: "
                         f"{str(exc).splitlines()[0] if str(exc) else type(exc).__name__}"
                         ) from None
    if "images" in ds.column_names:
        ds = ds.cast_column("images", datasets.List(datasets.Image(decode=False)))
    return ds
