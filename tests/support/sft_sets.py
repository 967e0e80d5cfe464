"""A tiny published SFT set, shared by the preview, stats and verify tests, and one good row."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from datagen.check.verify import Verdict
from datagen.config import BuildConfig
from datagen.messages import system_prompt, user_text
from datagen.pipeline.rows import sft_row
from datagen.pipeline.shards import prepare_output, run_shard
from datagen.records import Step, Trajectory, Turn
from datagen.release.publish import publish
from datagen.sandbox import CellResult
from tests.support.rl_sets import rl_tasks


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


def good_sft_row() -> dict[str, Any]:
    """A verified-looking SFT row: one code turn, its observation with one image, the answer."""
    task = rl_tasks(1, 1)[0]
    cell = CellResult(status="ok", stdout="(640, 480)", stderr="", images=(task.scene.image,),
                      error_type=None, error_message=None, truncated=False, seconds=0.01)
    turns = [Turn(Step("Look first.", code="print(input_image.size)\nplt.show()"), cell),
             Turn(Step("Done.", answer=task.answer))]
    traj = Trajectory(task, system_prompt(), user_text(task.question), turns, "scripted",
                      "direct", ("compute",))
    return sft_row(traj, Verdict(True, "verified", "number", task.answer))
