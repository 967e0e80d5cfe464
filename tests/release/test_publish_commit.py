"""Republishing over a release: every step of the commit leaves one whole release.

tests/pipeline/test_resume.py SIGKILLs a real `datagen build` at each step; this stops
``publish`` in process instead (an exception at a step leaves the folder as a kill there would:
nothing after it runs), over an SFT + RL set, with a warm ``datasets`` cache, and checks the
data swap itself.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

import datagen.release.publish as publish
import datagen.release.stage as stage
from datagen.config import BuildConfig
from datagen.pipeline.shards import ShardSummary, prepare_output, run_shard
from tests.support.releases import whole_release

# stage.commit's steps, in order; the data swap comes after the third.
_STEPS = ("staged", "cleared", "bridged", "swapped", "carded")


class _Stop(BaseException):
    """Raised at a step of the commit, as a SIGKILL would stop it there."""


def _cfg(out: Path, n: int) -> BuildConfig:
    return BuildConfig(n=n, out=out, split="all", shard_size=2, questions_per_scene=2, workers=1,
                       families=("chart",), max_side=1024, cell_timeout=10.0,
                       command="datagen build (test)")


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[ShardSummary]]:
    """Two SFT and two RL shards of 4 rows each, in a build folder nothing is published to."""
    out = tmp_path_factory.mktemp("build") / "out"
    cfg = _cfg(out, 5)
    prepare_output(cfg, overwrite=False, resume=False)
    sft = [i for i in range(8) if cfg.locate(i).split == "sft"][:2]
    rl = [i for i in range(8) if cfg.locate(i).split == "rl"][:2]
    return out, [run_shard(cfg, i) for i in sorted(sft + rl)]


def _files(out: Path) -> dict[str, bytes]:
    return {p.relative_to(out).as_posix(): p.read_bytes() for p in sorted(out.rglob("*"))
            if p.is_file() and ".datagen" not in p.parts}


def test_a_republish_stopped_at_any_step_leaves_the_old_or_the_new_release(
        built: tuple[Path, list[ShardSummary]], tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    out, shards = built
    caches = tmp_path / "caches"
    caches.mkdir()
    publish.publish(_cfg(out, 5), shards)
    uninterrupted = _files(out)
    new = whole_release(out, caches)
    publish.publish(_cfg(out, 3), shards)
    old = whole_release(out, caches)
    assert old is not None and new is not None and old[0] != new[0]

    for step in _STEPS:
        def stop(name: str, step: str = step) -> None:
            if name == step:
                raise _Stop
        monkeypatch.setattr(stage, "_checkpoint", stop)
        with pytest.raises(_Stop):
            publish.publish(_cfg(out, 5), shards)
        monkeypatch.undo()
        read = whole_release(out, caches)
        assert read is not None
        fresh, warm = read
        # Before the data swap the previous release, from it on the new one.
        assert fresh == (old[0] if _STEPS.index(step) < _STEPS.index("swapped") else new[0]), step
        # A cache filled while the bridge card was up may serve the old rows until the new card
        # is in: whole, never mixed, and never under a card or stats.json of the other release.
        assert warm in (old[0], new[0]), step
        if step != "swapped":
            assert warm == fresh, step

    publish.publish(_cfg(out, 5), shards)
    assert _files(out) == uninterrupted
    assert not list((out / ".datagen").glob("publish-*"))


def _folder(path: Path, name: str) -> Path:
    path.mkdir()
    (path / name).write_text(name)
    return path


def test_the_data_folder_is_exchanged_in_one_step(tmp_path: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    """Two renames would leave an instant with no data/ at all."""
    new, target = _folder(tmp_path / "new", "b"), _folder(tmp_path / "data", "a")

    def no_rename(*args: object) -> None:
        raise AssertionError("renamed, not exchanged")

    monkeypatch.setattr(os, "replace", no_rename)
    stage._swap_in(new, target)
    monkeypatch.undo()
    assert [p.name for p in target.iterdir()] == ["b"]
    assert [p.name for p in new.iterdir()] == ["a"]  # the old data, deleted with the stage


def test_without_an_exchange_the_data_folder_is_renamed(tmp_path: Path,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(stage, "_exchange", lambda a, b: False)
    new, target = _folder(tmp_path / "new", "b"), _folder(tmp_path / "data", "a")
    stage._swap_in(new, target)
    assert [p.name for p in target.iterdir()] == ["b"]
    assert [p.name for p in new.iterdir()] == ["a"]
    first = _folder(tmp_path / "first", "c")
    stage._swap_in(first, tmp_path / "fresh")
    assert [p.name for p in (tmp_path / "fresh").iterdir()] == ["c"] and not first.exists()
