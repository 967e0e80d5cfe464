"""A tiny published SFT set, shared by the preview, stats and verify tests (not a test module)."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from datagen.config import BuildConfig
from datagen.pipeline.shards import prepare_output, run_shard
from datagen.release.publish import publish


def build_sft_set(out: Path, families: tuple[str, ...] = ("chart", "search"),
                  shards: int = 2, n: int = 6) -> Path:
    """Build and publish ``shards`` shards of 2 scenes x 2 questions into ``out``."""
    cfg = BuildConfig(n=n, out=out, shard_size=2, questions_per_scene=2, workers=1,
                      families=families, max_side=1024, cell_timeout=10.0,
                      command="datagen build (test)")
    prepare_output(cfg, overwrite=False, resume=False)
    publish(cfg, [run_shard(cfg, i) for i in range(shards)])
    return out


def hub_layout_copy(folder: Path, dst: Path) -> Path:
    """Only what a Hub download has: the card and the parquet files (no stats, no rejects)."""
    dst.mkdir(parents=True)
    shutil.copy(folder / "README.md", dst / "README.md")
    shutil.copytree(folder / "data", dst / "data")
    return dst


def parquet_file(folder: Path) -> Path:
    """The one SFT parquet file of a small set."""
    (path,) = sorted((folder / "data").glob("sft-*.parquet"))
    return path


def read_rows(folder: Path) -> list[dict[str, Any]]:
    """Every row of the set, images as ``{"bytes", "path"}`` structs."""
    return pq.read_table(parquet_file(folder)).to_pylist()


def write_rows(folder: Path, rows: list[dict[str, Any]]) -> None:
    """Replace the set's rows (same schema, features metadata kept)."""
    path = parquet_file(folder)
    schema = pq.read_schema(path)
    pq.write_table(pa.Table.from_pylist(rows, schema=schema), path)


def datagen(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """Run the ``datagen`` command line as a user would."""
    return subprocess.run([sys.executable, "-m", "datagen.cli", *args], capture_output=True,
                          text=True, timeout=timeout, check=False)
