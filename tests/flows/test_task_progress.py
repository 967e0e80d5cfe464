"""The bar moves per task: pool workers count finished tasks where the main process reads them.

A slow OpenAI-compatible endpoint on loopback (``tests/support/openai_server.py``, the real
``openai`` client in the pool's process) makes a shard last seconds, so the test can watch the
counts and the bar move before the shard's marker exists; the last test does it through
``datagen build`` on a terminal.
"""

from __future__ import annotations

import io
import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from rich.console import Console

from datagen.config import BuildConfig
from datagen.pipeline.shards import TaskEvent, completed_shards, prepare_output, run_shard
from datagen.pipeline.task_board import RunningShard, TaskBoard
from datagen.records import Task
from datagen.release.select import shards_to_build
from datagen.run.progress import BuildProgress, eta_text
from datagen.sandbox import forkserver_context
from datagen.scenes.registry import get_family
from flows.shard_pool import run_pooled_shard, running_shards, shard_pool
from tests.support.openai_server import FakeOpenAI, Reply, last_user_text
from tests.support.prefect_server import PrefectServer, prefect_server
from tests.support.terminal import run_on_terminal

KEY = "sk-test-progress"


def answers(cfg: BuildConfig, shards: int = 1) -> dict[str, str]:
    """Question -> gold answer for the first ``shards`` SFT shards of ``cfg``."""
    family = get_family("chart")
    tasks: list[Task] = []
    for i in range(shards * cfg.shard_size):
        tasks += family.pose(family.make_scene(i, cfg.seed, cfg.scene_options()),
                             cfg.questions_per_scene)
    return {t.question: t.answer for t in tasks}


def slow_server(gold: dict[str, str], delay: float) -> FakeOpenAI:
    """Answers every question right, ``delay`` seconds per request."""
    def handler(body: dict[str, Any]) -> Reply:
        text = gold[last_user_text(body).strip()]
        return Reply(text=f"<think>I know it.</think>\n<answer>{text}</answer>", delay=delay)
    return FakeOpenAI(handler)


def llm_cfg(out: Path, url: str, **kw: Any) -> BuildConfig:
    options: dict[str, Any] = dict(
        n=2, out=out, teacher="openai", model="test-model", base_url=url, shard_size=1,
        questions_per_scene=3, workers=1, cell_timeout=5.0, attempts=1, concurrency=1,
        request_timeout=30.0)
    return BuildConfig(**{**options, **kw})


def test_pool_workers_report_tasks_before_their_shard_finishes(tmp_path: Path) -> None:
    probe = llm_cfg(tmp_path / "probe", "http://127.0.0.1:9/v1")
    with slow_server(answers(probe), delay=1.0) as server:
        cfg = llm_cfg(tmp_path / "out", server.url)
        prepare_output(cfg, overwrite=False, resume=False)
        screen = io.StringIO()
        console = Console(file=screen, force_terminal=True, width=200, color_system=None)
        counts: list[int] = []  # the main process's readings while no marker exists
        frames: list[str] = []
        with BuildProgress(cfg, console, interval=0.1, running=lambda: running_shards(cfg)):
            future = shard_pool(cfg.workers).submit(run_pooled_shard, cfg, 0, KEY)
            while not future.done():
                shown, now = screen.getvalue(), running_shards(cfg)
                if not completed_shards(cfg):
                    counts += [r.done for r in now]
                    frames.append(shown)
                time.sleep(0.05)
            summary = future.result(timeout=5)
        assert summary.kept == summary.tasks == 3
        assert {1, 2} <= set(counts), counts  # task by task, from the pool's process
        assert any("1/3 tasks" in f and "1 shard running" in f for f in frames)
        assert running_shards(cfg) == []  # the finished shard freed its slot


def test_the_bar_adds_running_tasks_to_finished_shards_without_counting_twice(
        tmp_path: Path) -> None:
    cfg = BuildConfig(n=4, out=tmp_path / "out", shard_size=2, questions_per_scene=2,
                      workers=1, cell_timeout=5.0)
    prepare_output(cfg, overwrite=False, resume=False)
    per_shard = 4
    planned = len(shards_to_build(cfg, {})) * per_shard
    live: list[RunningShard] = [RunningShard(index=0, tasks=4, done=2, kept=1, rejected=3)]
    bar = BuildProgress(cfg, Console(file=io.StringIO()), running=lambda: live)
    mid = bar.tally()
    assert (mid.done, mid.accepted, mid.rejected, mid.running) == (2, 1, 3, 1)
    assert mid.planned == planned and mid.counts.shards == 0

    summary = run_shard(cfg, 0)
    # The marker is written before the worker frees its slot: one reading may see both.
    after = bar.tally()
    assert (after.done, after.accepted, after.running) == (4, summary.kept, 0)
    # Without per-task reports (the Dask runner) the same build moves a shard at a time.
    per_shard_only = BuildProgress(cfg, Console(file=io.StringIO())).tally()
    assert (per_shard_only.done, per_shard_only.accepted) == (4, summary.kept)
    assert per_shard_only.planned == after.planned >= 4


def test_eta_is_from_the_task_rate_and_an_idle_build_says_for_how_long() -> None:
    assert eta_text(left=90, done=0, elapsed=40.0, idle=40.0) == "eta -:--:--"
    assert eta_text(left=90, done=6, elapsed=60.0, idle=2.0) == "eta 0:15:00"
    assert eta_text(left=90, done=6, elapsed=300.0, idle=240.0) == (
        "eta 1:15:00 · last task 240 s ago")


def test_task_board_slots_start_afresh_and_ignore_other_shards() -> None:
    board = TaskBoard(forkserver_context(), 2)
    board.record(TaskEvent(0, 0, 3, True, "verified", 1))  # no slot claimed: ignored
    board.claim()
    board.start(7)
    board.record(TaskEvent(7, 0, 3, True, "verified", 2))
    board.record(TaskEvent(7, 1, 3, False, "timeout", 2))
    board.record(TaskEvent(8, 0, 3, False, "timeout", 2))  # not this slot's shard
    assert board.running() == [RunningShard(7, 3, 2, 1, 3)]
    board.start(7)  # a retry of the shard counts from zero
    assert board.running() == [RunningShard(7, 0, 0, 0, 0)]
    board.finish()
    assert board.running() == []


# -- through `datagen build` on a terminal, with an LLM teacher -----------------------------

@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PrefectServer]:
    with prefect_server(tmp_path_factory.mktemp("prefect-home")) as running:
        yield running


def test_a_terminal_bar_moves_per_task_with_an_llm_teacher(server: PrefectServer,
                                                         tmp_path: Path) -> None:
    out = tmp_path / "tty"
    probe = llm_cfg(tmp_path / "probe", "http://127.0.0.1:9/v1")
    mid_shard: list[int] = []  # bytes shown when no shard was finished yet

    def watch(shown_so_far: int) -> None:
        if not list((out / ".datagen" / "shards").glob("*.done.json")):
            mid_shard.append(shown_so_far)

    with slow_server(answers(probe), delay=1.5) as llm:
        env = {**server.env, "COLUMNS": "180", "TERM": "xterm", "OPENAI_API_KEY": KEY}
        run = run_on_terminal(
            ["build", "--teacher", "openai", "--model", "test-model", "--base-url", llm.url,
             "--n", "2", "--shard-size", "1", "--questions-per-scene", "3", "--workers", "1",
             "--concurrency", "1", "--attempts", "1", "--cell-timeout", "5", "--out", str(out)],
            env, on_output=watch)
    shown = run.shown.decode(errors="replace")
    stderr = run.stderr
    assert run.code == 0, stderr[-3000:]
    before = run.shown[:max(mid_shard, default=0)].decode(errors="replace")
    lines = before.replace("\r", "\n").replace("\x1b[2K", "\n").splitlines()  # frame a line
    frames = [f for f in (re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", x) for x in lines)
              if "building shards" in f]
    assert any("1/3 tasks" in f for f in frames), before[-2000:]
    assert any("2/3 tasks" in f for f in frames), before[-2000:]
    assert any("rows 0/2 · 1 shard running" in f and "eta 0:" in f for f in frames)
    assert "2 sft rows published" in shown  # then the summary table
    assert b"INFO" not in stderr
    print(frames[-1])  # shown with -s: what the user sees mid-shard
