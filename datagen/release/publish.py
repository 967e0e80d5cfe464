"""Publishing: choose the rows (dedup, disjoint splits, decontamination, RL mix), then a folder
in Hub layout with a data card.

    OUT/README.md                        the card; its YAML ``configs:`` make
                                         ``load_dataset(OUT, "sft")`` / ``(OUT, "rl")`` work
    OUT/data/sft-00000-of-0000N.parquet  SFT rows with embedded images
    OUT/data/rl-00000-of-0000N.parquet   RL prompt rows (``--split rl`` or ``all``)
    OUT/rejects.jsonl                    every rejected trajectory and every removed row, with why
    OUT/stats.json                       the numbers of the card, for scripts
    OUT/plots/*.png                      the card's plots

Which rows: each split's rows in shard order; a row is removed when it duplicates an earlier
kept row (``dedup``), when its image or question comes from a benchmark
(``--decontaminate``), when it shares a scene or an image with another split or an earlier build
(``--split all``, ``--exclude``), and, in the RL set, when a weak model always solved it. The SFT
set takes the first ``n`` rows left; the RL set fills the ``--rl-mix`` quota of each difficulty
in the same order (topped up from the others if the built shards cannot meet it).

Rows are streamed shard by shard into the output files and checked by ``validate``, so memory
stays flat. The whole release (data, rejects, stats, plots, card) is staged in
``OUT/.datagen/publish-*`` and then moved in by ``_commit``, in an order that leaves ``OUT`` one
whole release, the previous or the new one, at every step, even if the process is killed there.
"""

from __future__ import annotations

import ctypes
import errno
import json
import math
import os
import shutil
import statistics
import sys
import tempfile
from collections import Counter
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
from datasets.info import DatasetInfo, DatasetInfosDict
from datasets.splits import SplitDict, SplitInfo
from huggingface_hub import DatasetCard, DatasetCardData

from datagen import GENERATOR_VERSION
from datagen.atomic import write_text
from datagen.config import BuildConfig
from datagen.errors import RunError
from datagen.memory import release_memory
from datagen.paths import index_file, stage_prefix, work_dir
from datagen.pipeline.rows import rl_table, sft_table
from datagen.pipeline.shards import ShardSummary, shard_files, shard_signatures
from datagen.records import RL_FEATURES, SFT_FEATURES
from datagen.release.decontaminate import (
    Benchmark,
    Excluded,
    contaminated,
    load_benchmark,
    load_excluded,
)
from datagen.release.dedup import DUPLICATE_REASONS, DedupIndex, DedupRule, Signatures
from datagen.templates import render

__all__ = ["REMOVAL_REASONS", "PublishReport", "check_sources", "count_publishable", "publish",
           "shards_to_build"]

ROWS_PER_FILE = 2000
# Rows per parquet row group. A reader decodes a whole row group at once, and 16 visual-search
# rows with their images are ~100 MB: larger groups make every reader (ours, a trainer's) hold
# hundreds of MB per step.
ROW_GROUP_ROWS = 16
REMOVAL_REASONS = (*DUPLICATE_REASONS, "split_overlap", "contaminated", "trivial")
# Shards with no single verified row (all rejected) must not top up forever.
_MAX_SHARD_FACTOR = 4
_EXPECTED_YIELD = 0.9  # share of a shard's tasks expected to become rows, before any is built


@dataclass(frozen=True, slots=True)
class PublishReport:
    """What was published and the numbers behind it."""

    out: Path
    rows: int  # over all splits
    files: list[str]
    stats: dict[str, Any]
    by_split: dict[str, int] = field(default_factory=dict)


Position = tuple[int, int]  # (shard index, row in shard)


@dataclass(slots=True)
class _Selection:
    """One split's choice of rows."""

    split: str
    picked: list[Position]  # in shard order
    strict: int  # rows picked within the RL mix's quotas (all of them for SFT)
    removed: list[tuple[Position, str, str]]  # (row, reason, detail)
    mix_met: bool = True


# --------------------------------------------------------------------------------------------
# Choosing the rows


def dedup_rule(cfg: BuildConfig) -> DedupRule:
    """The duplicate rule the publish options give."""
    return DedupRule(cfg.dedup_radius, cfg.text_threshold, cfg.image_hash)


def _dedup(cfg: BuildConfig, split: str, shards: list[ShardSummary]) -> dict[int, list[Any]]:
    """Per shard, per row: None (kept) or its duplicate reason.

    The index persists in ``OUT/.datagen/index/``; shards it has admitted before, in the same
    order, are not admitted again, so a resumed or extended build only adds the new shards.
    """
    path = index_file(cfg.out, split)
    rule = dedup_rule(cfg)
    order = [s.index for s in shards]
    index, decisions = DedupIndex(rule), {}
    loaded = DedupIndex.load(path, rule)
    if loaded is not None:
        old, meta = loaded
        done = list(meta.get("shards", []))
        saved = {int(k): v for k, v in meta["decisions"].items()}
        if meta.get("content_key") == cfg.content_key():
            if order[:len(done)] == done:
                index, decisions = old, saved
            elif done[:len(order)] == order:
                # A row's fate depends only on the rows before it, so an earlier shard's
                # decisions stand (the planner asks about such prefixes when it replays).
                return {k: saved[k] for k in order}
    new = [s for s in shards if s.index not in decisions]
    if new:
        reasons = index.admit(Signatures.concat([shard_signatures(cfg, s.index) for s in new]))
        start = 0
        for s in new:
            decisions[s.index] = reasons[start:start + s.kept]
            start += s.kept
        index.save(path, {"content_key": cfg.content_key(), "shards": order,
                          "decisions": {str(k): decisions[k] for k in order}})
    return decisions


_benchmarks: dict[tuple[str, int], Benchmark] = {}
_excluded: dict[str, tuple[float, Excluded]] = {}


def _load_benchmarks(cfg: BuildConfig) -> list[Benchmark]:
    """The benchmarks to decontaminate against (loaded once per process)."""
    for source in cfg.decontaminate:
        if (source, cfg.contam_ngram) not in _benchmarks:
            _benchmarks[(source, cfg.contam_ngram)] = load_benchmark(source, cfg.contam_ngram)
    return [_benchmarks[(s, cfg.contam_ngram)] for s in cfg.decontaminate]


def _load_excluded(cfg: BuildConfig) -> Excluded:
    """The scenes and images of the ``--exclude`` folders (re-read when they change)."""
    union = Excluded()
    for path in cfg.exclude:
        data = path / "data"
        stamp = data.stat().st_mtime if data.exists() else 0.0
        key = str(path.resolve())
        if key not in _excluded or _excluded[key][0] != stamp:
            _excluded[key] = (stamp, load_excluded(path))
        union.scenes |= _excluded[key][1].scenes
        union.phash |= _excluded[key][1].phash
    return union


def check_sources(cfg: BuildConfig) -> None:
    """Load the ``--decontaminate`` benchmarks and ``--exclude`` builds now, so that a bad one
    is a usage error before any work is done (they stay loaded for publishing)."""
    _load_benchmarks(cfg)
    _load_excluded(cfg)


def _questions(cfg: BuildConfig, s: ShardSummary) -> list[str]:
    column = "question" if s.split == "sft" else "extra_info.question"
    table = pq.read_table(shard_files(cfg, s.index)[0], columns=[column])
    return [str(q) for q in table.column(0).to_pylist()]


def _quotas(n: int, mix: Sequence[tuple[str, float]]) -> dict[str, int]:
    """Rows per difficulty: ``n`` split by the weights, largest remainders rounded up."""
    raw = {k: n * w for k, w in mix}
    quotas = {k: math.floor(v) for k, v in raw.items()}
    for k in sorted(raw, key=lambda k: raw[k] - quotas[k], reverse=True)[:n - sum(
            quotas.values())]:
        quotas[k] += 1
    return quotas


def _select_split(cfg: BuildConfig, split: str, shards: list[ShardSummary],
                  excluded: Excluded, benchmarks: list[Benchmark]) -> _Selection:
    decisions = _dedup(cfg, split, shards)
    removed: list[tuple[Position, str, str]] = []
    clean: list[tuple[Position, str]] = []  # row, difficulty
    for s in shards:
        dup = decisions[s.index]
        sigs = shard_signatures(cfg, s.index) if (excluded.scenes or benchmarks) else None
        contam = (contaminated(sigs, _questions(cfg, s), benchmarks, cfg.dedup_radius,
                               cfg.image_hash, cfg.contam_ngram)
                  if sigs is not None and benchmarks else [None] * s.kept)
        overlap = excluded.overlaps(sigs) if sigs is not None and excluded.scenes \
            else [False] * s.kept
        for i in range(s.kept):
            pos = (s.index, i)
            if dup[i]:
                removed.append((pos, dup[i], "an earlier kept row is the same"))
            elif contam[i]:
                removed.append((pos, "contaminated", contam[i]))
            elif overlap[i]:
                removed.append((pos, "split_overlap", "its scene or image is in another split "
                                "or an --exclude build"))
            elif split == "rl" and s.trivial[i] and not cfg.keep_trivial:
                removed.append((pos, "trivial", "the weak model always solved it"))
            else:
                clean.append((pos, s.difficulties[i]))
    if split == "sft":
        picked = [pos for pos, _ in clean[:cfg.n]]
        return _Selection(split, picked, len(picked), removed)
    quotas = _quotas(cfg.n, cfg.rl_mix)
    taken: Counter[str] = Counter()
    strict: list[Position] = []
    rest: list[Position] = []
    for pos, level in clean:
        if taken[level] < quotas.get(level, 0):
            taken[level] += 1
            strict.append(pos)
        else:
            rest.append(pos)
    picked = sorted(strict + rest[:cfg.n - len(strict)])
    return _Selection(split, picked, len(strict), removed, mix_met=len(strict) == cfg.n)


def _select(cfg: BuildConfig, shards: Sequence[ShardSummary]) -> dict[str, _Selection]:
    """Each split's rows, SFT first: with ``--split all`` the RL set avoids every SFT scene."""
    ordered = sorted(shards, key=lambda s: s.index)
    excluded = _load_excluded(cfg)
    benchmarks = _load_benchmarks(cfg)
    chosen: dict[str, _Selection] = {}
    for split in cfg.splits():
        mine = [s for s in ordered if s.split == split]
        chosen[split] = _select_split(cfg, split, mine, excluded, benchmarks)
        if split == "sft" and "rl" in cfg.splits():
            excluded = Excluded(set(excluded.scenes), set(excluded.phash))
            for s in mine:  # every SFT scene, published or not: the RL set never sees them
                excluded.add(shard_signatures(cfg, s.index))
    return chosen


def count_publishable(cfg: BuildConfig, shards: Sequence[ShardSummary]) -> int:
    """How many rows the finished shards would publish per split (the least over splits)."""
    chosen = _select(cfg, shards)
    return min(chosen[split].strict for split in cfg.splits())


def _initial(cfg: BuildConfig) -> int:
    return max(1, math.ceil(cfg.n / (_EXPECTED_YIELD * cfg.shard_size * cfg.questions_per_scene)))


def shards_to_build(cfg: BuildConfig, done: Mapping[int, ShardSummary]) -> list[int]:
    """The shard indices to build next so that every split can publish ``cfg.n`` rows.

    Empty when the finished shards are enough, or when a split has built ``4 ×`` the shards it
    was expected to need (its tasks mostly fail: publishing what there is beats looping). The
    planning rounds are replayed from the first over the finished shards, so a resumed build
    first finishes the round it was stopped in and then plans exactly the shards an
    uninterrupted build would have (same shards, same funnel, same rejects).
    """
    replayed: dict[int, ShardSummary] = {}
    while True:
        todo = _next_round(cfg, replayed)
        missing = [i for i in todo if i not in done]
        if missing or not todo:
            return missing
        replayed.update((i, done[i]) for i in todo)


def _next_round(cfg: BuildConfig, done: Mapping[int, ShardSummary]) -> list[int]:
    """One planning round: the shards to add to ``done`` (see ``shards_to_build``)."""
    chosen = _select(cfg, list(done.values())) if done else {}
    todo: list[int] = []
    for split in cfg.splits():
        have = chosen[split].strict if split in chosen else 0
        if have >= cfg.n:
            continue
        built = sum(1 for s in done.values() if s.split == split)
        per_shard = have / built if built and have else (
            _EXPECTED_YIELD * cfg.shard_size * cfg.questions_per_scene if not built else 1.0)
        need = max(1, math.ceil((cfg.n - have) / max(per_shard, 1.0)))
        room = _MAX_SHARD_FACTOR * _initial(cfg) - built
        fresh = (i for i in cfg.shards_of(split) if i not in done)
        todo += [next(fresh) for _ in range(max(0, min(need, room)))]
    return sorted(todo)


# --------------------------------------------------------------------------------------------
# Writing the folder


def publish(cfg: BuildConfig, shards: list[ShardSummary],
            budget_spent: bool = False) -> PublishReport:
    """Write the dataset folder from the finished ``shards``.

    ``budget_spent`` says the build stopped at ``--max-cost``; the card and stats say so.
    Raises ``RunError`` (and leaves the published folder as it was) if a row fails validation.
    """
    shards = sorted(shards, key=lambda s: s.index)
    chosen = _select(cfg, shards)
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
    _commit(stage, out)
    all_files = [f for split in chosen for f in files[split]]
    counts = {split: len(sel.picked) for split, sel in chosen.items()}
    return PublishReport(out=out, rows=sum(counts.values()), files=all_files, stats=stats,
                         by_split=counts)


def _stage(cfg: BuildConfig, shards: list[ShardSummary], chosen: dict[str, _Selection],
           stage: Path, budget_spent: bool) -> tuple[dict[str, list[str]], dict[str, Any]]:
    """Write the whole release into ``stage``, laid out as ``OUT``; its files and stats.

    Stats, plots and the card are made from the staged files, so they describe exactly the
    rows that will be published.
    """
    (stage / "data").mkdir()
    files = {split: _write_split(cfg, split, sel.picked, stage / "data")
             for split, sel in chosen.items()}
    by_index = {s.index: s for s in shards}
    rejects = _merge_rejects(cfg, shards, chosen, stage / "rejects.jsonl")
    stats = _common_stats(cfg, shards, chosen)
    for split, sel in chosen.items():
        mine = [s for s in shards if s.split == split]
        paths = [stage / f for f in files[split]]
        stats["splits"][split] = {
            **(_sft_stats(cfg, mine, paths, rejects) if split == "sft"
               else _rl_stats(cfg, mine, paths, sel)),
            **_histograms(by_index, sel.picked),
        }
    stats.update(_teacher_stats(cfg, shards, budget_spent))
    stats.update(_weak_stats(cfg, shards, budget_spent))
    write_text(stage / "stats.json", json.dumps(stats, indent=2, sort_keys=True))
    stats["plots"] = _plots(stage, chosen)  # drawn from the stage, this stats.json included
    write_text(stage / "stats.json", json.dumps(stats, indent=2, sort_keys=True))
    info_yaml = _dataset_info_yaml({split: [stage / f for f in files[split]]
                                    for split in chosen})
    write_text(stage / "README.md", render("card.md.j2", folder="data_cards", s=stats,
                                           dataset_info=info_yaml) + "\n")
    return files, stats


# What a release holds besides data/ and README.md, in the order they are taken out (and the
# reverse of the order they are put in): stats.json is there only when the others are.
_SIDE_FILES = ("stats.json", "rejects.jsonl", "plots")


def _commit(stage: Path, out: Path) -> None:
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
    """Does nothing: names a step of ``_commit``.

    tests/pipeline/test_resume.py SIGKILLs a build here.
    """


def _bridge_card(card: str) -> str:
    """The card ``README.md`` holds while ``data/`` may be either release (see ``_commit``).

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


def _write_split(cfg: BuildConfig, split: str, picked: list[Position],
                 staging: Path) -> list[str]:
    """Stream the picked rows, shard by shard, into ``ROWS_PER_FILE``-row files; validated."""
    from datagen.check.validate import check_table

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


def _dataset_info_yaml(files: dict[str, list[Path]]) -> str:
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


def _merge_rejects(cfg: BuildConfig, shards: list[ShardSummary],
                   chosen: dict[str, _Selection], dest: Path) -> Counter[str]:
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


def _plots(root: Path, chosen: dict[str, _Selection]) -> list[str]:
    """The card's plots, drawn from the release laid out in ``root`` (the stage)."""
    from datagen.inspect.stats import write_plots

    paths: list[Path] = []
    for split, sel in chosen.items():
        if sel.picked:
            paths += write_plots(root, root / "plots", split)
    return [p.relative_to(root).as_posix() for p in paths]


# --------------------------------------------------------------------------------------------
# Numbers

_SIDE_BINS = ((1024, "≤1024"), (2048, "1025–2048"), (3072, "2049–3072"), (4096, "3073–4096"))
_AREA_BINS = ((0.0003, "<0.03 %"), (0.001, "0.03–0.1 %"), (0.003, "0.1–0.3 %"), (1.0, "≥0.3 %"))


def _bin(value: float, bins: tuple[tuple[float, str], ...], last: str) -> str:
    return next((label for edge, label in bins if value <= edge), last)


def _histograms(by_index: dict[int, ShardSummary], picked: list[Position]) -> dict[str, Any]:
    """Image long side and target area of the published rows, binned for the card."""
    sides: Counter[str] = Counter()
    areas: Counter[str] = Counter()
    for shard, row in picked:
        s = by_index[shard]
        sides[_bin(s.sides[row], _SIDE_BINS, ">4096")] += 1
        if s.target_areas[row] is not None:
            areas[_bin(s.target_areas[row], _AREA_BINS, "≥0.3 %")] += 1
    order = [label for _, label in _SIDE_BINS] + [">4096"]
    return {"by_long_side": {k: sides[k] for k in order if sides[k]},
            "by_target_area": {label: areas[label] for _, label in _AREA_BINS if areas[label]}}


def _columns(paths: list[Path], names: list[str]) -> dict[str, list[Any]]:
    """Columns (dotted names reach into structs) of the published files, without the images."""
    cols: dict[str, list[Any]] = {n.split(".")[-1]: [] for n in names}
    for p in paths:
        table = pq.read_table(p, columns=names)
        for name, column in zip(cols, table.columns, strict=True):
            cols[name] += column.to_pylist()
    return cols


def _mix_counts(cols: dict[str, list[Any]]) -> dict[str, Any]:
    kinds = Counter(".".join(t.split(".")[:2]) for t in cols["task_type"])
    return {
        "rows": len(cols["task_type"]),
        "by_task_type": dict(sorted(Counter(cols["task_type"]).items())),
        "by_family": dict(sorted(Counter(t.split(".")[0] for t in cols["task_type"]).items())),
        "by_kind": dict(sorted(kinds.items())),
        "by_difficulty": {d: n for d in ("easy", "medium", "hard")
                          if (n := Counter(cols["difficulty"])[d])},
        "by_answer_type": dict(sorted(Counter(cols["answer_type"]).items())),
    }


def _sft_stats(cfg: BuildConfig, shards: list[ShardSummary], paths: list[Path],
               reasons: Counter[str]) -> dict[str, Any]:
    cols = _columns(paths, ["task_type", "difficulty", "style", "answer_type",
                            "weak_pass_rate", "trivial"])
    tasks = sum(s.tasks for s in shards)
    verified = sum(s.kept for s in shards)
    cells = [c for s in shards for c in s.cell_seconds]
    rates = Counter(f"{r:.2f}" for r in cols["weak_pass_rate"] if r is not None)
    return {
        **_mix_counts(cols),
        "requested": cfg.n,
        "scenes": sum(s.scenes for s in shards),
        "tasks": tasks,
        "verified": verified,
        "acceptance_rate": round(verified / tasks, 4) if tasks else 0.0,
        "reject_reasons": dict(sorted(reasons.items())),
        "by_style": dict(sorted(Counter(cols["style"]).items())),
        "median_cell_seconds": round(statistics.median(cells), 4) if cells else None,
        "trivial_rows": sum(cols["trivial"]),
        "by_weak_pass_rate": dict(sorted(rates.items())),
    }


def _rl_stats(cfg: BuildConfig, shards: list[ShardSummary], paths: list[Path],
              sel: _Selection) -> dict[str, Any]:
    cols = _columns(paths, ["extra_info.task_type", "extra_info.difficulty",
                            "extra_info.answer_type", "trivial"])
    return {
        **_mix_counts(cols),
        "requested": cfg.n,
        "scenes": sum(s.scenes for s in shards),
        "tasks": sum(s.tasks for s in shards),
        "mix": dict(cfg.rl_mix),
        "mix_met": sel.mix_met,
        "trivial_rows": sum(cols["trivial"]),
        "keep_trivial": cfg.keep_trivial,
    }


def _common_stats(cfg: BuildConfig, shards: list[ShardSummary],
                  chosen: dict[str, _Selection]) -> dict[str, Any]:
    removed = Counter(reason for sel in chosen.values() for _, reason, _ in sel.removed)
    by_split = {split: dict(sorted(Counter(r for _, r, _ in sel.removed).items()))
                for split, sel in chosen.items()}
    sft = [s for s in shards if s.split == "sft"]
    return {
        "split": cfg.split,
        "families": list(cfg.families),
        "teacher": cfg.teacher,
        "seed": cfg.seed,
        "shards": len(shards),
        "content_key": cfg.content_key(),
        "generator_version": GENERATOR_VERSION,
        "command": cfg.command,
        "sandbox_mode": sft[0].sandbox_mode if sft else "none",
        "removed": {reason: removed[reason] for reason in REMOVAL_REASONS},
        "removed_by_split": by_split,
        "dedup": {"rule": dedup_rule(cfg).key(), "radius": cfg.dedup_radius,
                  "text_threshold": cfg.text_threshold, "image_hash": cfg.image_hash},
        "decontaminate": [{"source": b.name, "items": b.items} for b in _load_benchmarks(cfg)],
        "contam_ngram": cfg.contam_ngram,
        "exclude": [str(p) for p in cfg.exclude],
        "splits": {},
    }


def _teacher_stats(cfg: BuildConfig, shards: list[ShardSummary],
                   budget_spent: bool) -> dict[str, Any]:
    """The LLM teacher's numbers: model, tries, calls, tokens and what they cost."""
    if cfg.teacher == "scripted" or "sft" not in cfg.splits():
        return {"llm": None}
    from datagen.config import public_url

    return {"llm": {
        "model": cfg.model,
        "endpoint": public_url(cfg.base_url),
        "attempts_per_task": cfg.attempts,
        "temperature": cfg.temperature,
        "attempts": sum(s.attempts for s in shards),
        **_usage(shards, _TEACHER_USAGE),
        "max_cost": cfg.max_cost or None,
        "budget_spent": budget_spent,
    }}


# Card field -> ShardSummary field, for the teacher's calls and for the weak model's.
_TEACHER_USAGE = {"api_calls": "api_calls", "cached_calls": "cached_calls",
                  "prompt_tokens": "prompt_tokens", "completion_tokens": "completion_tokens",
                  "cost_usd": "cost_usd"}
_WEAK_USAGE = {"api_calls": "weak_calls", "cached_calls": "weak_cached_calls",
               "prompt_tokens": "weak_prompt_tokens",
               "completion_tokens": "weak_completion_tokens", "cost_usd": "weak_cost_usd"}


def _usage(shards: list[ShardSummary], fields: dict[str, str]) -> dict[str, Any]:
    """Calls, tokens and cost summed over the shards (cost rounded to 1/100 cent)."""
    totals = {key: sum(getattr(s, attr) for s in shards) for key, attr in fields.items()}
    totals["cost_usd"] = round(totals["cost_usd"], 4)
    return totals


def _weak_stats(cfg: BuildConfig, shards: list[ShardSummary], budget_spent: bool) -> dict[str, Any]:
    """The weak model's calls and thresholds (difficulty labels; see ``teachers.weak``)."""
    if not cfg.weak_model:
        return {"weak": None}
    from datagen.config import public_url
    from datagen.teachers.weak import EASY_AT, MEDIUM_AT

    return {"weak": {
        "model": cfg.weak_model,
        "endpoint": public_url(cfg.weak_base_url or cfg.base_url),
        "samples": cfg.weak_samples,
        "easy_at": EASY_AT,
        "medium_at": MEDIUM_AT,
        **_usage(shards, _WEAK_USAGE),
        "max_cost": cfg.max_cost or None,
        "budget_spent": budget_spent,
    }}
