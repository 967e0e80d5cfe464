"""The build flow, run by Prefect for real (one test server for the session)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import datasets
import pytest
from prefect.testing.utilities import prefect_test_harness

from datagen.config import BuildConfig
from datagen.shards import completed_shards, prepare_output
from flows.build import build


@pytest.fixture(scope="module", autouse=True)
def prefect_server() -> Iterator[None]:
    with prefect_test_harness(server_startup_timeout=120):
        yield


def _load(out: Path) -> datasets.Dataset:
    return datasets.load_dataset(str(out), "sft", split="train")


def test_flow_builds_then_extends_a_build_without_redoing_shards(tmp_path: Path) -> None:
    cfg = BuildConfig(n=20, out=tmp_path / "out", shard_size=4, questions_per_scene=3,
                      workers=2, cell_timeout=10.0)
    prepare_output(cfg, overwrite=False, resume=False)
    report = build(cfg)
    assert report.rows == 20
    small = _load(cfg.out)
    before = {i: s.seconds for i, s in completed_shards(cfg).items()}
    assert len(before) == 2

    bigger = cfg.model_copy(update={"n": 45})
    prepare_output(bigger, overwrite=False, resume=True)
    report = build(bigger)
    assert report.rows == 45
    after = completed_shards(bigger)
    assert len(after) > len(before)
    assert all(after[i].seconds == s for i, s in before.items())  # reused, not rebuilt
    big = _load(cfg.out)
    # Same seed, same options: the smaller build is exactly the start of the bigger one.
    assert big["id"][:20] == small["id"]
    assert len(set(big["id"])) == 45
