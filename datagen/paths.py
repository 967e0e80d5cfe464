"""Every path under a build's output folder, named once.

    OUT/                      the published release (card, data/, rejects, stats, plots)
    OUT/.datagen/             private state, never uploaded nor read as data
        manifest.json         the build's content options (resume checks them)
        shards/               finished shards: rows, rejects, signatures, completion markers
        index/{split}.npz     the dedup index of the rows admitted so far
        cache/                LLM responses, keyed by the whole request
        prefect-results/      Prefect's persisted task results
        publish-*/            a release being staged before it is moved into OUT
"""

from __future__ import annotations

from pathlib import Path

__all__ = ["WORK_DIR_NAME", "cache_dir", "index_file", "manifest_file", "prefect_results_dir",
           "shard_dir", "shard_stem", "stage_prefix", "work_dir"]

WORK_DIR_NAME = ".datagen"
_STAGE_PREFIX = "publish-"


def work_dir(out: Path) -> Path:
    """Where a build keeps its private state."""
    return out / WORK_DIR_NAME


def manifest_file(out: Path) -> Path:
    """The build's manifest: content key and options."""
    return work_dir(out) / "manifest.json"


def shard_dir(out: Path) -> Path:
    """Where finished shards live."""
    return work_dir(out) / "shards"


def shard_stem(out: Path, split: str, index: int) -> Path:
    """The common stem of shard ``index``'s files (``.parquet``, ``.done.json``, ...)."""
    return shard_dir(out) / f"{split}-{index:05d}"


def index_file(out: Path, split: str) -> Path:
    """The persisted dedup index of ``split``."""
    return work_dir(out) / "index" / f"{split}.npz"


def cache_dir(out: Path) -> Path:
    """The LLM response cache (kept by ``--overwrite``)."""
    return work_dir(out) / "cache"


def prefect_results_dir(out: Path) -> Path:
    """Where Prefect persists the shard tasks' results."""
    return (work_dir(out) / "prefect-results").resolve()


def stage_prefix() -> str:
    """The name prefix of a release staged under ``work_dir`` (``publish-XXXX``)."""
    return _STAGE_PREFIX
