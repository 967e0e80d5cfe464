"""Publishing: choose the rows (``select``), stage the whole release (``stage``, ``card``),
then move it into ``OUT`` in one protected commit.

Rows are streamed shard by shard into the output files and checked by ``validate``, so memory
stays flat. The whole release (data, rejects, stats, plots, card) is staged in
``OUT/.datagen/publish-*`` and then moved in by ``stage.commit``, in an order that leaves
``OUT`` one whole release, the previous or the new one, at every step, even if the process is
killed there.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from datagen.atomic import write_text
from datagen.config import BuildConfig
from datagen.paths import stage_prefix, work_dir
from datagen.pipeline.shards import ShardSummary
from datagen.release import card
from datagen.release.select import Selection, select
from datagen.release.stage import commit, dataset_info_yaml, merge_rejects, write_split
from datagen.templates import render

__all__ = ["PublishReport", "publish"]


@dataclass(frozen=True, slots=True)
class PublishReport:
    """What was published and the numbers behind it."""

    out: Path
    rows: int  # over all splits
    files: list[str]
    stats: dict[str, Any]
    by_split: dict[str, int] = field(default_factory=dict)


def publish(cfg: BuildConfig, shards: list[ShardSummary],
            budget_spent: bool = False) -> PublishReport:
    """Write the dataset folder from the finished ``shards``.

    ``budget_spent`` says the build stopped at ``--max-cost``; the card and stats say so.
    Raises ``RunError`` (and leaves the published folder as it was) if a row fails validation.
    """
    shards = sorted(shards, key=lambda s: s.index)
    chosen = select(cfg, shards)
    out = cfg.out
    work_dir(out).mkdir(parents=True, exist_ok=True)
    # Left by a publish that was killed.
    for stale in work_dir(out).glob(f"{stage_prefix()}*"):
        shutil.rmtree(stale, ignore_errors=True)
    # Staged under .datagen/: on OUT's file system (renames are atomic), and ignored by
    # validate's search for parquet files, by the Hub push and by load_dataset's patterns.
    stage = Path(tempfile.mkdtemp(prefix=stage_prefix(), dir=work_dir(out)))
    try:
        files, stats = _stage(cfg, shards, chosen, stage, budget_spent)
    except BaseException:
        shutil.rmtree(stage, ignore_errors=True)
        raise
    commit(stage, out)
    all_files = [f for split in chosen for f in files[split]]
    counts = {split: len(sel.picked) for split, sel in chosen.items()}
    return PublishReport(out=out, rows=sum(counts.values()), files=all_files, stats=stats,
                         by_split=counts)


def _stage(cfg: BuildConfig, shards: list[ShardSummary], chosen: dict[str, Selection],
           stage: Path, budget_spent: bool) -> tuple[dict[str, list[str]], dict[str, Any]]:
    """Write the whole release into ``stage``, laid out as ``OUT``; its files and stats.

    Stats, plots and the card are made from the staged files, so they describe exactly the
    rows that will be published.
    """
    (stage / "data").mkdir()
    files = {split: write_split(cfg, split, sel.picked, stage / "data")
             for split, sel in chosen.items()}
    by_index = {s.index: s for s in shards}
    rejects = merge_rejects(cfg, shards, chosen, stage / "rejects.jsonl")
    stats = card.common_stats(cfg, shards, chosen)
    for split, sel in chosen.items():
        mine = [s for s in shards if s.split == split]
        paths = [stage / f for f in files[split]]
        stats["splits"][split] = {
            **(card.sft_stats(cfg, mine, paths, rejects) if split == "sft"
               else card.rl_stats(cfg, mine, paths, sel)),
            **card.histograms(by_index, sel.picked),
        }
    stats.update(card.teacher_stats(cfg, shards, budget_spent))
    stats.update(card.weak_stats(cfg, shards, budget_spent))
    write_text(stage / "stats.json", json.dumps(stats, indent=2, sort_keys=True))
    stats["plots"] = card.plots(stage, chosen)  # drawn from the stage, this stats.json included
    write_text(stage / "stats.json", json.dumps(stats, indent=2, sort_keys=True))
    info_yaml = dataset_info_yaml({split: [stage / f for f in files[split]]
                                    for split in chosen})
    write_text(stage / "README.md", render("card.md.j2", folder="data_cards", s=stats,
                                           dataset_info=info_yaml) + "\n")
    return files, stats
