"""Exports of a published set to the layouts other trainers read (``datagen export``).

    codedance     RL ``prompt`` renamed to ``messages`` (the CodeDance fork's key); with
                  ``binary_images`` the images are plain bytes, as on the public CodeDance
                  cards; SFT rows as they are
    trl           string content split on ``<image>`` into content parts
                  (``[{"type": "image"}, {"type": "text", "text": …}]``), SFT and RL
    llamafactory  the SFT files as they are plus the ``dataset_info.json`` entry (sharegpt
                  format, ``messages`` + ``images``); RL has no LLaMA-Factory trainer to feed

The source folder is never changed; the output is a new folder with ``data/`` (the card is not
copied: its YAML features describe the original layout, and ``datasets`` would refuse the
exported files against it).
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any, Literal

import datasets
import pyarrow as pa
import pyarrow.parquet as pq

from datagen.atomic import atomic_path, write_text
from datagen.check.validate import config_of, dataset_files
from datagen.errors import UsageError

__all__ = ["EXPORT_TARGETS", "Target", "content_parts", "export_set"]

Target = Literal["codedance", "trl", "llamafactory"]
EXPORT_TARGETS: tuple[str, ...] = ("codedance", "trl", "llamafactory")

_SPLIT_IMAGE = re.compile(r"(<image>)")
_PART = {"type": datasets.Value("string"), "text": datasets.Value("string")}
_BATCH_ROWS = 256


def content_parts(content: str) -> list[dict[str, str | None]]:
    """``"<image>\\nWhat…"`` as TRL content parts: an image part per token, text parts between
    (empty text is dropped)."""
    parts: list[dict[str, str | None]] = []
    for piece in _SPLIT_IMAGE.split(content):
        if piece == "<image>":
            parts.append({"type": "image", "text": None})
        elif piece:
            parts.append({"type": "text", "text": piece})
    return parts


def _features(schema: pa.Schema) -> datasets.Features:
    """The HF features stored in a file's metadata (images stay Image features)."""
    return datasets.Features.from_arrow_schema(schema)


def _convert(rows: list[dict[str, Any]], features: datasets.Features, to: Target,
             config: str, binary_images: bool) -> tuple[list[dict[str, Any]], datasets.Features]:
    features = datasets.Features(dict(features))
    key = "prompt" if config == "rl" else "messages"
    if to == "codedance":
        if config == "rl":
            for row in rows:
                row["messages"] = row.pop("prompt")
            features = datasets.Features({("messages" if k == "prompt" else k): v
                                          for k, v in features.items()})
        if binary_images:
            for row in rows:
                row["images"] = [img["bytes"] for img in row["images"]]
            features["images"] = datasets.List(datasets.Value("binary"))
    elif to == "trl":
        for row in rows:
            row[key] = [{"role": m["role"], "content": content_parts(m["content"])}
                        for m in row[key]]
        features[key] = datasets.List({"role": datasets.Value("string"),
                                       "content": datasets.List(_PART)})
    return rows, features


def _write(src: Path, dst: Path, to: Target, config: str, binary_images: bool) -> int:
    """Convert one parquet file batch by batch; returns its row count."""
    reader = pq.ParquetFile(src, pre_buffer=False)  # no read-ahead of all images (reader.py)
    features = _features(reader.schema_arrow)
    writer: pq.ParquetWriter | None = None
    rows = 0
    with atomic_path(dst) as tmp:
        try:
            for batch in reader.iter_batches(batch_size=_BATCH_ROWS):
                converted, out_features = _convert(batch.to_pylist(), features, to, config,
                                                   binary_images)
                table = datasets.Dataset.from_list(converted, features=out_features).data.table
                if writer is None:
                    writer = pq.ParquetWriter(tmp, table.schema)
                writer.write_table(table)
                rows += table.num_rows
        finally:
            if writer is not None:
                writer.close()
        if writer is None:  # an empty file keeps its (converted) schema
            empty = datasets.Dataset.from_list([], features=_convert([], features, to, config,
                                                                     binary_images)[1])
            pq.write_table(empty.data.table, tmp)
    return rows


def _dataset_info(name: str, files: list[str]) -> dict[str, Any]:
    return {name: {
        "file_name": files[0] if len(files) == 1 else "data",
        "formatting": "sharegpt",
        "columns": {"messages": "messages", "images": "images"},
        "tags": {"role_tag": "role", "content_tag": "content", "user_tag": "user",
                 "assistant_tag": "assistant", "system_tag": "system"},
    }}


def export_set(path: Path | str, to: str, out: Path | str | None = None,
               binary_images: bool = True, name: str | None = None) -> Path:
    """Write the set at ``path`` in the ``to`` layout to ``out`` (default ``PATH-TO``).

    ``binary_images`` applies to ``codedance``; ``name`` is the LLaMA-Factory dataset name
    (default: the folder's name). Raises ``UsageError`` for an unknown target, a missing set or
    an existing output folder.
    """
    src = Path(path)
    if to not in EXPORT_TARGETS:
        raise UsageError(f"--to {to!r}: choose one of {', '.join(EXPORT_TARGETS)}")
    if not src.is_dir():
        raise UsageError(f"{src}: not a dataset folder")
    files = dataset_files(src)
    if not files:
        raise UsageError(f"{src}: no parquet files found (expected data/*.parquet)")
    dst = Path(out) if out is not None else src.with_name(f"{src.name}-{to}")
    if dst.exists() and any(dst.iterdir()):
        raise UsageError(f"{dst} exists and is not empty; choose another --out or remove it")
    configs = {file: config_of(file, pq.read_schema(file)) for file in files}
    for file, config in configs.items():  # all checked before anything is written
        if config is None:
            raise UsageError(f"{file}: neither a 'messages' (SFT) nor a 'prompt' (RL) column")
    target: Target = to  # type: ignore[assignment]
    written: list[str] = []
    for file, config in configs.items():
        if target == "llamafactory" and config == "rl":
            continue
        rel = f"data/{file.name}"
        _write(file, dst / rel, target, config, binary_images)
        written.append(rel)
    if not written:
        raise UsageError(f"{src}: nothing to export to {to} (LLaMA-Factory takes the SFT set)")
    if target == "llamafactory":
        info = _dataset_info(name or src.name, written)
        write_text(dst / "dataset_info.json", json.dumps(info, indent=2) + "\n")
    return dst
