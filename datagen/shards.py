"""Shards: the unit of work, caching and resume.

A shard is ``shard_size`` consecutive scenes of one run. ``run_shard`` makes its scenes, poses
the questions, rolls out and verifies every task, and writes three files under
``OUT/.datagen/shards/``: the verified rows (parquet), the rejects (JSON lines) and, last, a
marker (JSON) with the dedup keys and counts. Each write is atomic and the marker is written only
after the data, so a shard with a marker is complete and a crashed run resumes by skipping it.
The same config and index always give byte-identical row files.
"""

from __future__ import annotations

import functools
import io
import json
import shutil
import time
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import datasets
import pyarrow.parquet as pq
from PIL import Image

from datagen.atomic import atomic_path, write_text
from datagen.config import BuildConfig
from datagen.dedup import image_phash, row_key
from datagen.errors import OutputExistsError, UsageError
from datagen.records import SFT_FEATURES
from datagen.rollout import rollout
from datagen.rows import reject_record, sft_row
from datagen.sandbox import Sandbox
from datagen.scenes import get_family
from datagen.teachers import Teacher, get_teacher
from datagen.verify import verify_trajectory

__all__ = ["ShardSummary", "completed_shards", "prepare_output", "run_shard", "shard_dir"]

_MANIFEST = "manifest.json"


@dataclass(slots=True)
class ShardSummary:
    """What a finished shard holds; stored as its marker."""

    index: int
    content_key: str
    scenes: int
    tasks: int
    kept: int
    keys: list[str]
    # Per kept row, for the card's histograms: the image's long side, the target's area share.
    sides: list[int]
    target_areas: list[float | None]
    reasons: dict[str, int]
    styles: dict[str, int]
    seconds: float
    sandbox_mode: str
    cell_seconds: list[float] = field(default_factory=list)


def work_dir(out: Path) -> Path:
    """Where a build keeps its private state."""
    return out / ".datagen"


def shard_dir(out: Path) -> Path:
    """Where finished shards live."""
    return work_dir(out) / "shards"


def _paths(cfg: BuildConfig, index: int) -> tuple[Path, Path, Path]:
    base = shard_dir(cfg.out) / f"{cfg.split}-{index:05d}"
    return base.with_suffix(".parquet"), base.with_suffix(".rejects.jsonl"), \
        base.with_suffix(".done.json")


def prepare_output(cfg: BuildConfig, overwrite: bool, resume: bool) -> None:
    """Check the output folder and record the build's manifest in it.

    A folder that exists needs ``--overwrite`` (start again) or ``--resume`` (continue a build
    with the same content options); anything else is refused before any work is done.
    """
    out = cfg.out
    manifest_path = work_dir(out) / _MANIFEST
    if out.exists() and not out.is_dir():
        raise UsageError(f"--out {out} is a file; give a folder path")
    present = out.exists() and any(out.iterdir())
    if present and overwrite:
        if not manifest_path.exists():
            raise UsageError(f"--out {out} holds files that datagen did not write; refusing to "
                             "delete them with --overwrite. Choose another folder.")
        shutil.rmtree(out)
    elif present and resume:
        if not manifest_path.exists():
            raise UsageError(f"--out {out} is not a datagen build, so it cannot be resumed; "
                             "choose an empty or new folder.")
        old = json.loads(manifest_path.read_text())
        if old.get("content_key") != cfg.content_key():
            raise UsageError(f"--out {out} was built with other options ({old.get('options')}); "
                             "resume with the same options, or use --overwrite.")
    elif present:
        raise OutputExistsError(f"--out {out} already exists; add --resume to continue that "
                                "build or --overwrite to replace it")
    try:
        shard_dir(out).mkdir(parents=True, exist_ok=True)
        write_text(manifest_path, json.dumps({
            "content_key": cfg.content_key(),
            "options": cfg.model_dump(mode="json", exclude={"command", "workers", "n", "out"}),
        }, indent=2))
    except OSError as exc:
        raise UsageError(f"--out {out} is not writable ({exc.strerror}); choose another "
                         "folder") from None


def completed_shards(cfg: BuildConfig) -> dict[int, ShardSummary]:
    """The finished shards of this build, by index."""
    done: dict[int, ShardSummary] = {}
    for marker in sorted(shard_dir(cfg.out).glob(f"{cfg.split}-*.done.json")):
        summary = ShardSummary(**json.loads(marker.read_text()))
        if summary.content_key == cfg.content_key():
            done[summary.index] = summary
    return done


@functools.cache
def _process_sandbox(timeout: float) -> Sandbox:
    """One sandbox per process, reused by every shard it builds: its workers start once."""
    return Sandbox(timeout=timeout)


def run_shard(cfg: BuildConfig, index: int, teacher: Teacher | None = None) -> ShardSummary:
    """Build shard ``index`` of ``cfg`` and write it atomically; returns its summary.

    ``teacher`` defaults to the one ``cfg`` names; passing one is for embedding and tests.
    """
    started = time.perf_counter()
    family_name, local = cfg.family_of(index)
    family = get_family(family_name)
    teacher = teacher or get_teacher(cfg.teacher)
    rows: list[dict[str, Any]] = []
    rejects: list[dict[str, Any]] = []
    keys: list[str] = []
    sides: list[int] = []
    areas: list[float | None] = []
    reasons: Counter[str] = Counter()
    styles: Counter[str] = Counter()
    cell_seconds: list[float] = []
    tasks = 0
    first = local * cfg.shard_size
    sandbox = _process_sandbox(cfg.cell_timeout)
    for scene_index in range(first, first + cfg.shard_size):
        scene = family.make_scene(scene_index, cfg.seed, cfg.scene_options())
        phash = image_phash(scene.image)
        with Image.open(io.BytesIO(scene.image)) as im:
            side = max(im.size)
        for task in family.pose(scene, cfg.questions_per_scene):
            tasks += 1
            traj = rollout(task, teacher, sandbox, cfg.max_turns)
            cell_seconds += [t.result.seconds for t in traj.turns if t.result is not None]
            verdict = verify_trajectory(traj, cfg.max_turns)
            reasons[verdict.reason] += 1
            if verdict.kept:
                styles[traj.style] += 1
                rows.append(sft_row(traj, verdict))
                keys.append(row_key(phash, task.question, task.answer))
                sides.append(side)
                areas.append(scene.spec.get("target_area"))
            else:
                rejects.append(reject_record(traj, verdict))
    mode = sandbox.mode
    rows_path, rejects_path, marker_path = _paths(cfg, index)
    with atomic_path(rows_path) as tmp:
        # The table carries the HF features in its schema metadata, so Image columns survive.
        pq.write_table(datasets.Dataset.from_list(rows, features=SFT_FEATURES).data.table, tmp)
    write_text(rejects_path, "".join(json.dumps(r, sort_keys=True) + "\n" for r in rejects))
    summary = ShardSummary(
        index=index, content_key=cfg.content_key(), scenes=cfg.shard_size, tasks=tasks,
        kept=len(rows), keys=keys, sides=sides, target_areas=areas, reasons=dict(reasons),
        styles=dict(styles),
        seconds=round(time.perf_counter() - started, 3), sandbox_mode=mode,
        cell_seconds=[round(s, 4) for s in cell_seconds],
    )
    write_text(marker_path, json.dumps(asdict(summary)))
    return summary


def shard_files(cfg: BuildConfig, index: int) -> tuple[Path, Path]:
    """The rows file and rejects file of a finished shard."""
    rows_path, rejects_path, _ = _paths(cfg, index)
    return rows_path, rejects_path
