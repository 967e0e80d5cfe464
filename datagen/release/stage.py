"""The release on disk: the rows streamed into parquet files, the rejects, the card's
``dataset_info``, and the commit that moves a staged release into ``OUT`` so that a reader sees
the previous or the new release at every step, even if the process is killed there.

    OUT/README.md                        the card; its YAML ``configs:`` make
                                         ``load_dataset(OUT, "sft")`` / ``(OUT, "rl")`` work
    OUT/data/sft-00000-of-0000N.parquet  SFT rows with embedded images
    OUT/data/rl-00000-of-0000N.parquet   RL prompt rows (``--split rl`` or ``all``)
    OUT/rejects.jsonl                    every rejected trajectory and every removed row, with why
    OUT/stats.json                       the numbers of the card, for scripts
    OUT/plots/*.png                      the card's plots
"""

from __future__ import annotations

import ctypes
import errno
import json
import os
import shutil
import sys
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
from datasets.info import DatasetInfo, DatasetInfosDict
from datasets.splits import SplitDict, SplitInfo
from huggingface_hub import DatasetCard, DatasetCardData

from datagen.atomic import write_text
from datagen.check.validate import check_table
from datagen.config import BuildConfig
from datagen.errors import RunError
from datagen.memory import release_memory
from datagen.pipeline.rows import rl_table, sft_table
from datagen.pipeline.shards import ShardSummary, shard_files
from datagen.records import RL_FEATURES, SFT_FEATURES
from datagen.release.select import Position, Selection
from datagen.templates import render

__all__ = ["ROWS_PER_FILE", "ROW_GROUP_ROWS", "commit", "dataset_info_yaml", "merge_rejects",
           "write_split"]

ROWS_PER_FILE = 2000
# Rows per parquet row group. A reader decodes a whole row group at once, and 16 visual-search
# rows with their images are ~100 MB: larger groups make every reader (ours, a trainer's) hold
# hundreds of MB per step.
ROW_GROUP_ROWS = 16


# What a release holds besides data/ and README.md, in the order they are taken out (and the
# reverse of the order they are put in): stats.json is there only when the others are.
_SIDE_FILES = ("stats.json", "rejects.jsonl", "plots")


def commit(stage: Path, out: Path) -> None:
    """Move the release staged in ``stage`` into ``out``, then delete the previous one.

    Five names cannot change in one step and a SIGKILL may come between any two, so each step
    (one rename) leaves one whole release, the previous or the new one:

    1. The old ``stats.json``, ``rejects.jsonl`` and ``plots/`` go (into the stage).
    2. ``README.md`` becomes the bridge card, true of either release's data (``_bridge_card``).
       The old card cannot stay: ``load_dataset`` checks its row counts against the files (an
       error once the new data is in) and keys its cache on the card alone (it would go on
       serving the old rows).
    3. ``data/`` is exchanged for the new one (``_swap_in``).
    4. The new card replaces the bridge.
    5. The new ``plots/``, ``rejects.jsonl`` and ``stats.json`` come in.

    Side files are only ever next to their own release's card: ``load_dataset`` may serve rows
    it cached under the bridge before the swap until step 4. Killed anywhere, ``--resume``
    publishes again and ends as an uninterrupted run.
    """
    _checkpoint("staged")
    for name in _SIDE_FILES:
        if (out / name).exists():
            os.replace(out / name, stage / f"old-{name}")
    _checkpoint("cleared")
    write_text(stage / "bridge.md", _bridge_card((stage / "README.md").read_text()))
    os.replace(stage / "bridge.md", out / "README.md")
    _checkpoint("bridged")
    _swap_in(stage / "data", out / "data")
    _checkpoint("swapped")
    os.replace(stage / "README.md", out / "README.md")
    _checkpoint("carded")
    for name in reversed(_SIDE_FILES):
        if (stage / name).exists():  # no plots/ when no split has rows
            os.replace(stage / name, out / name)
    shutil.rmtree(stage)  # the previous release


def _checkpoint(step: str) -> None:
    """Does nothing: names a step of ``commit``.

    tests/pipeline/test_resume.py SIGKILLs a build here.
    """


def _bridge_card(card: str) -> str:
    """The card ``README.md`` holds while ``data/`` may be either release (see ``commit``).

    The new card's configs and features, without its row counts (``load_dataset`` would check
    them against the files) and without its numbers. It keeps the new release's sizes: nothing
    checks them, and they give the bridge its own ``load_dataset`` cache key, so rows cached
    under the bridge of one republish are never served during another.
    """
    data = DatasetCard(card).data
    infos = data.dataset_info if isinstance(data.dataset_info, list) else [data.dataset_info]
    for info in infos:
        info.pop("splits", None)
    header = DatasetCardData(configs=data.configs, dataset_info=data.dataset_info,
                             license=data.license).to_yaml()
    return render("bridge.md.j2", folder="data_cards", header=header) + "\n"


def _grouped(picked: list[Position]) -> Iterator[tuple[int, list[int]]]:
    """``picked`` as (shard, rows) runs, in order."""
    by_shard: dict[int, list[int]] = {}
    for shard, row in picked:
        by_shard.setdefault(shard, []).append(row)
    yield from by_shard.items()


def write_split(cfg: BuildConfig, split: str, picked: list[Position],
                 staging: Path) -> list[str]:
    """Stream the picked rows, shard by shard, into ``ROWS_PER_FILE``-row files; validated."""
    n_files = max(1, -(-len(picked) // ROWS_PER_FILE))
    names = [f"{split}-{k:05d}-of-{n_files:05d}.parquet" for k in range(n_files)]
    empty = sft_table([]) if split == "sft" else rl_table([])
    writer: pq.ParquetWriter | None = None
    written = 0
    problems: list[str] = []
    for shard, rows in _grouped(picked):
        table = pq.read_table(shard_files(cfg, shard)[0]).take(pa.array(rows, pa.int64()))
        problems += [f"shard {shard}: {p}" for p in check_table(table, split)][:5]
        while table.num_rows:
            k = written // ROWS_PER_FILE
            room = (k + 1) * ROWS_PER_FILE - written
            if writer is None:
                writer = pq.ParquetWriter(staging / names[k], empty.schema)
            writer.write_table(table.slice(0, room), row_group_size=ROW_GROUP_ROWS)
            written += min(room, table.num_rows)
            table = table.slice(room)
            if written % ROWS_PER_FILE == 0:
                writer.close()
                writer = None
        release_memory()  # one shard's worth at a time, not the whole set (see memory.py)
    if writer is not None:
        writer.close()
    for name in names[written // ROWS_PER_FILE + (written % ROWS_PER_FILE > 0):]:
        # No rows still gives a file with the schema alone, so the card's configs point at data
        # that loads (``datasets`` fails on a file holding one empty row group).
        pq.ParquetWriter(staging / name, empty.schema).close()
    if problems:
        raise RunError(f"{split} rows failed validation, nothing was published: "
                       + "; ".join(problems[:5]))
    return [f"data/{name}" for name in names]


def dataset_info_yaml(files: dict[str, list[Path]]) -> str:
    """The card's ``dataset_info`` block: features, row count and sizes, per config.

    Besides telling the Hub viewer the schema, it makes ``load_dataset`` notice a rebuild: its
    cache key for a local folder hashes this block, not the parquet files, so without it a
    rebuilt folder would load the previous build's rows from the cache.
    """
    infos = {}
    for split, paths in files.items():
        metas = [pq.ParquetFile(p).metadata for p in paths]
        rows = sum(m.num_rows for m in metas)
        num_bytes = sum(m.row_group(g).total_byte_size for m in metas
                        for g in range(m.num_row_groups))
        splits = SplitDict()
        splits.add(SplitInfo(name="train", num_bytes=num_bytes, num_examples=rows))
        infos[split] = DatasetInfo(
            features=SFT_FEATURES if split == "sft" else RL_FEATURES, splits=splits,
            config_name=split, download_size=sum(p.stat().st_size for p in paths),
            dataset_size=num_bytes)
    card_data = DatasetCardData()
    DatasetInfosDict(infos).to_dataset_card_data(card_data)
    return card_data.to_yaml()


_AT_FDCWD = -100
_RENAME_EXCHANGE = 2


def _exchange(a: Path, b: Path) -> bool:
    """Swap two existing paths in one step (Linux ``renameat2(RENAME_EXCHANGE)``); False where
    the system or the file system cannot."""
    if not sys.platform.startswith("linux"):
        return False
    renameat2 = getattr(ctypes.CDLL(None, use_errno=True), "renameat2", None)  # glibc >= 2.28
    if renameat2 is None:
        return False
    if renameat2(_AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b), _RENAME_EXCHANGE) == 0:
        return True
    err = ctypes.get_errno()
    if err in (errno.EINVAL, errno.ENOSYS, errno.ENOTSUP):
        return False
    raise OSError(err, os.strerror(err), str(a), None, str(b))


def _swap_in(new: Path, target: Path) -> None:
    """Make the folder ``new`` the folder ``target``; the old ``target`` is left at ``new``.

    A folder cannot be renamed over a full one, so renames alone leave an instant with no
    ``target`` (a reader finds no data). An atomic exchange has none; systems without one get
    the renames.
    """
    if not target.exists():
        os.replace(new, target)
    elif not _exchange(new, target):
        parked = new.with_name(f"{new.name}.old")
        os.replace(target, parked)
        os.replace(new, target)
        os.replace(parked, new)


def merge_rejects(cfg: BuildConfig, shards: list[ShardSummary],
                   chosen: dict[str, Selection], dest: Path) -> Counter[str]:
    """Write the shards' rejected trajectories, plus one record per row removed here, to
    ``dest``; return the shards' reject counts by reason."""
    reasons: Counter[str] = Counter()
    lines: list[str] = []
    for s in shards:
        text = shard_files(cfg, s.index)[1].read_text()
        lines.extend(ln for ln in text.splitlines() if ln)
        reasons.update({r: n for r, n in s.reasons.items() if r not in ("verified", "posed")})
    for split, sel in chosen.items():
        ids: dict[int, list[str]] = {}
        for (shard, row), reason, detail in sel.removed:
            if shard not in ids:
                path = shard_files(cfg, shard)[0]
                ids[shard] = [str(x) for x in pq.read_table(path, columns=["id"]).column(0)
                              .to_pylist()]
            lines.append(json.dumps({"reason": reason, "split": split, "shard": shard,
                                     "row": row, "id": ids[shard][row], "detail": detail},
                                    sort_keys=True))
    write_text(dest, "".join(ln + "\n" for ln in lines))
    return reasons
