"""Weak-to-strong difficulty against a real HTTP server on loopback (``openai_server``).

The scripted teacher writes the traces (the cheap common case) and a weak model served by the
loopback server answers each task without tools; its pass rate labels the rows.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest

from datagen.config import BuildConfig
from datagen.errors import UsageError
from datagen.pipeline.shards import ShardSummary, prepare_output, run_shard, shard_files
from datagen.records import Task
from datagen.release.publish import publish
from datagen.scenes.registry import get_family
from datagen.teachers import chat_api
from datagen.teachers.weak import difficulty_of, sample_seed, weak_messages

SAMPLES = 4


@pytest.fixture(autouse=True)
def _fake_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test-weak")
    monkeypatch.setattr(chat_api, "BACKOFF_BASE", 0.05)


def config(tmp_path: Path, url: str, **kw: Any) -> BuildConfig:
    options: dict[str, Any] = dict(
        n=2, out=tmp_path / "out", weak_model="weak-vlm", weak_base_url=url, shard_size=1,
        questions_per_scene=2, workers=1, cell_timeout=5.0, request_timeout=10.0,
        weak_samples=SAMPLES)
    return BuildConfig(**{**options, **kw})


def tasks_of(cfg: BuildConfig) -> list[Task]:
    family = get_family("chart")
    scene = family.make_scene(0, cfg.seed, cfg.scene_options())
    return family.pose(scene, cfg.questions_per_scene)


def weak_model(cfg: BuildConfig, right: Callable[[Task, int], bool]) -> Callable[[dict], str]:
    """A weak model that answers a task right when ``right(task, seed)`` says so."""
    tasks = tasks_of(cfg)

    def handler(body: dict[str, Any]) -> str:
        assert body["model"] == "weak-vlm"
        task = next(t for t in tasks if body["messages"] == weak_messages(t))  # one user turn
        said = task.answer if right(task, body["seed"]) else "424242 (a guess)"
        return f"<answer>{said}</answer>"
    return handler


def build(cfg: BuildConfig, overwrite: bool = False) -> tuple[list[dict], ShardSummary]:
    prepare_output(cfg, overwrite=overwrite, resume=False)
    summary = run_shard(cfg, 0)
    rows = pq.read_table(shard_files(cfg, 0)[0]).to_pylist()
    assert rows, "the scripted teacher should verify these tasks"
    return rows, summary


def half(cfg: BuildConfig) -> Callable[[Task, int], bool]:
    """Right on the first half of the samples of every task, by their seeds."""
    def right(task: Task, seed: int) -> bool:
        return seed in {sample_seed(cfg.seed, task.id, k) for k in range(SAMPLES // 2)}
    return right


@pytest.mark.parametrize(("mode", "rate", "difficulty", "trivial"), [
    ("always", 1.0, "easy", True), ("half", 0.5, "medium", False), ("never", 0.0, "hard", False),
])
def test_the_weak_pass_rate_labels_each_row(tmp_path: Path, serve, mode: str, rate: float,
                                            difficulty: str, trivial: bool) -> None:
    probe = config(tmp_path, "http://127.0.0.1:9/v1")
    right = {"always": lambda t, s: True, "half": half(probe),
             "never": lambda t, s: False}[mode]
    server = serve(weak_model(probe, right))
    cfg = config(tmp_path, server.url)
    rows, summary = build(cfg)
    assert server.count == SAMPLES * len(tasks_of(cfg))  # every task, before its rollout
    assert {(r["weak_pass_rate"], r["difficulty"], r["trivial"]) for r in rows} == \
        {(rate, difficulty, trivial)}
    assert all(r["teacher"] == "scripted" for r in rows)
    assert summary.weak_calls == server.count and summary.weak_cached_calls == 0
    assert len({b["seed"] for b in server.requests}) == server.count  # each sample its own
    stats = publish(cfg, [summary]).stats["splits"]["sft"]
    assert stats["trivial_rows"] == (len(rows) if trivial else 0)
    assert stats["by_weak_pass_rate"] == {f"{rate:.2f}": len(rows)}
    assert stats["by_difficulty"] == {difficulty: len(rows)}
    card = (cfg.out / "README.md").read_text()
    assert "weak-vlm" in card and "RL" in card and f"| trivial rows | {stats['trivial_rows']} |" \
        in card


def test_weak_answers_come_from_the_cache_on_a_second_run(tmp_path: Path, serve) -> None:
    probe = config(tmp_path, "http://127.0.0.1:9/v1")
    server = serve(weak_model(probe, lambda t, s: True))
    cfg = config(tmp_path, server.url)
    rows, summary = build(cfg)
    first = shard_files(cfg, 0)[0].read_bytes()
    paid = server.count
    assert paid == summary.weak_calls > 0
    again, summary = build(cfg, overwrite=True)  # --overwrite keeps the response cache
    assert server.count == paid and shard_files(cfg, 0)[0].read_bytes() == first
    assert summary.weak_calls == 0 and summary.weak_cached_calls == paid


def test_a_failing_sample_is_left_out_of_the_rate() -> None:
    from datagen.teachers.weak import WeakSolver

    assert WeakSolver.pass_rate([True, None, False, None]) == 0.5
    assert WeakSolver.pass_rate([None, None]) is None
    assert [difficulty_of(r) for r in (1.0, 0.75, 0.5, 0.25, 0.0)] == \
        ["easy", "easy", "medium", "medium", "hard"]


def test_the_weak_model_and_samples_name_the_content(tmp_path: Path) -> None:
    base = BuildConfig(out=tmp_path)
    weak = base.model_copy(update={"weak_model": "a"})
    keys = {base.content_key(), weak.content_key(),
            weak.model_copy(update={"weak_model": "b"}).content_key(),
            weak.model_copy(update={"weak_samples": 8}).content_key(),
            weak.model_copy(update={"weak_base_url": "http://other:1/v1"}).content_key()}
    assert len(keys) == 5
    # Without a weak model its options change nothing (old scripted builds keep their key).
    assert base.model_copy(update={"weak_samples": 8}).content_key() == base.content_key()
    with pytest.raises(UsageError, match="--weak-model"):
        BuildConfig.from_options(out=tmp_path, weak_base_url="http://x:1/v1")
    with pytest.raises(UsageError, match="--weak-samples"):
        BuildConfig.from_options(out=tmp_path, weak_model="a", weak_samples=0)
