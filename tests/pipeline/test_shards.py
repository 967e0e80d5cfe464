"""Shards: verified rows in, every failure in the rejects with its reason, atomic and pure."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from datagen.config import BuildConfig
from datagen.errors import OutputExistsError, UsageError
from datagen.pipeline.shards import (
    MarkerCache,
    completed_shards,
    prepare_output,
    run_shard,
    shard_files,
)
from tests.support.teachers import FaultyTeacher


def _cfg(tmp_path: Path, **kw: object) -> BuildConfig:
    base = dict(n=12, out=tmp_path / "out", shard_size=3, questions_per_scene=2, workers=1,
                cell_timeout=2.0)
    return BuildConfig(**{**base, **kw})  # type: ignore[arg-type]


def test_broken_traces_go_to_rejects_with_their_reason(tmp_path: Path) -> None:
    cfg = _cfg(tmp_path)
    prepare_output(cfg, overwrite=False, resume=False)
    from datagen.scenes.chart import make_scene, pose

    ids = [t.id for i in range(3) for t in pose(make_scene(i, cfg.seed), 2)]
    faults = {ids[0]: "raises", ids[1]: "times out", ids[2]: "prints a wrong answer"}
    summary = run_shard(cfg, 0, teacher=FaultyTeacher(faults))
    rows_path, rejects_path = shard_files(cfg, 0)
    kept_ids = set(pq.read_table(rows_path).column("id").to_pylist())
    rejects = {r["id"]: r for r in map(json.loads, rejects_path.read_text().splitlines())}
    assert not kept_ids & set(faults)
    assert rejects[ids[0]]["reason"] == "exec_error" and "KeyError" in rejects[ids[0]]["detail"]
    assert rejects[ids[1]]["reason"] == "timeout"
    assert rejects[ids[2]]["reason"] == "wrong_answer"
    assert rejects[ids[2]]["predicted"] == "987654321"
    # The reject keeps the whole attempt, so a person can see what went wrong.
    assert any("987654321" in m["content"] for m in rejects[ids[2]]["messages"])
    assert summary.kept == len(kept_ids) == summary.tasks - len(rejects)
    assert summary.reasons["timeout"] == 1


def test_same_config_gives_byte_identical_shards(tmp_path: Path) -> None:
    a, b = _cfg(tmp_path / "a"), _cfg(tmp_path / "b")
    for cfg in (a, b):
        prepare_output(cfg, overwrite=False, resume=False)
        run_shard(cfg, 1)
    assert shard_files(a, 1)[0].read_bytes() == shard_files(b, 1)[0].read_bytes()
    other = _cfg(tmp_path / "c", seed=5)
    prepare_output(other, overwrite=False, resume=False)
    run_shard(other, 1)
    assert shard_files(other, 1)[0].read_bytes() != shard_files(a, 1)[0].read_bytes()


def test_finished_shards_are_found_again_and_other_options_are_not_mixed_in(
        tmp_path: Path) -> None:
    cfg = _cfg(tmp_path)
    prepare_output(cfg, overwrite=False, resume=False)
    run_shard(cfg, 0)
    assert list(completed_shards(cfg)) == [0]
    # A half-written shard (no marker) does not count as finished.
    shard_files(cfg, 1)[0].write_bytes(b"partial")
    assert list(completed_shards(cfg)) == [0]
    with pytest.raises(UsageError, match="other options"):
        prepare_output(_cfg(tmp_path, seed=9), overwrite=False, resume=True)
    prepare_output(cfg, overwrite=False, resume=True)
    assert list(completed_shards(cfg)) == [0]


def test_a_marker_cache_reads_only_new_or_rewritten_markers(tmp_path: Path) -> None:
    cfg = _cfg(tmp_path)
    prepare_output(cfg, overwrite=False, resume=False)
    first = run_shard(cfg, 0)
    cache: MarkerCache = {}
    assert completed_shards(cfg, cache)[0].kept == first.kept
    marker = next((tmp_path / "out" / ".datagen" / "shards").glob("*-00000.done.json"))
    # Same mtime: the cached summary is used, so a change that keeps the mtime goes unread...
    stamp = marker.stat().st_mtime_ns
    data = json.loads(marker.read_text())
    marker.write_text(json.dumps({**data, "kept": 999}))
    os.utime(marker, ns=(stamp, stamp))
    assert completed_shards(cfg, cache)[0].kept == first.kept
    assert completed_shards(cfg)[0].kept == 999  # (without a cache it is read)
    # ...and a rewritten marker (a new mtime) is read again.
    os.utime(marker, ns=(stamp + 10**9, stamp + 10**9))
    assert completed_shards(cfg, cache)[0].kept == 999
    marker.unlink()
    assert completed_shards(cfg, cache) == {}


def test_output_folder_rules(tmp_path: Path) -> None:
    cfg = _cfg(tmp_path)
    prepare_output(cfg, overwrite=False, resume=False)
    with pytest.raises(OutputExistsError, match="--resume .* --overwrite"):
        prepare_output(cfg, overwrite=False, resume=False)
    prepare_output(cfg, overwrite=True, resume=False)
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "thesis.tex").write_text("precious")
    with pytest.raises(UsageError, match="did not write"):
        prepare_output(_cfg(tmp_path, out=foreign), overwrite=True, resume=False)
    assert (foreign / "thesis.tex").read_text() == "precious"
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(UsageError, match="not writable|is a file"):
        prepare_output(_cfg(tmp_path, out=blocker / "sub"), overwrite=False, resume=False)
