"""Which whole release a dataset folder holds, read the ways a user reads it (not a test module).

Used after a publish was stopped at some step: the folder must hold one release whole (its rows,
and the card, stats.json, rejects.jsonl and plots/ that go with them, where present) and every
reader must get it without an error.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

import datasets
import pytest
from datasets.info import DatasetInfosDict
from huggingface_hub import DatasetCard

from datagen.check.validate import validate_path
from datagen.errors import UsageError

Release = dict[str, list[str]]  # config -> row ids, in order


def whole_release(out: Path, caches: Path) -> tuple[Release, Release] | None:
    """The ids per config of the release ``out`` holds, or None before its first one.

    Each config is loaded with ``load_dataset`` twice: with a new cache, and with the cache
    ``caches/warm`` that earlier calls filled, as a user's would be; the two releases read are
    returned. Fails on any error, on rows that differ from what ``datagen validate`` counts (new
    cache), on a card or stats.json whose row counts differ from the rows loaded (either cache),
    and on side files without stats.json or plots that are not its plots.
    """
    side = [n for n in ("stats.json", "rejects.jsonl", "plots") if (out / n).exists()]
    if not (out / "data").exists():
        assert not side, f"no data, yet {side}"
        with pytest.raises(UsageError, match="no parquet files"):
            validate_path(out)
        return None
    report = validate_path(out)
    assert report.ok, [str(p) for p in report.problems[:3]]
    card = DatasetCard.load(out / "README.md").data
    configs = [c["config_name"] for c in card.configs]
    assert sorted(configs) == sorted(report.rows), (configs, report.rows)
    infos = DatasetInfosDict.from_dataset_card_data(card)
    stats = json.loads((out / "stats.json").read_text()) if "stats.json" in side else None
    if stats is None:
        assert not side, f"{side} without stats.json"
    else:
        assert "rejects.jsonl" in side
        plots = sorted(p.relative_to(out).as_posix() for p in (out / "plots").glob("*"))
        assert plots == sorted(stats["plots"])
    fresh, warm = Path(tempfile.mkdtemp(dir=caches)), caches / "warm"
    read: tuple[Release, Release] = ({}, {})
    for config in configs:
        for cache, ids in zip((fresh, warm), read, strict=True):
            ds = datasets.load_dataset(str(out), config, split="train", cache_dir=str(cache))
            where = f"{config}, {'new' if cache == fresh else 'warm'} cache"
            splits = infos[config].splits if config in infos else None
            if splits:  # the full card (the bridge card has no row counts)
                assert splits["train"].num_examples == len(ds), where
            if stats is not None:
                assert stats["splits"][config]["rows"] == len(ds), where
            ids[config] = list(ds["id"])
        assert len(read[0][config]) == report.rows[config]
    return read
