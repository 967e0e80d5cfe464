"""``run_shard(on_task=...)``: one event per finished task, kept or rejected, rows unchanged.

The LLM case runs the real ``openai`` client against the loopback server of
``tests/support/openai_server.py`` with several task threads (``cfg.concurrency``); the
scripted and RL cases check the sequential loop and posed prompts.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest

from datagen.config import RL_SCENE_BASE, BuildConfig
from datagen.pipeline.shards import TaskEvent, prepare_output, run_shard, shard_files
from datagen.records import Task
from datagen.scenes.registry import get_family
from datagen.teachers import chat_api
from tests.support.openai_server import FakeOpenAI, Reply, last_user_text
from tests.support.teachers import FaultyTeacher

KEY = "sk-test-events"


class Recorder:
    """An ``on_task`` hook that keeps every event and the thread it came from."""

    def __init__(self) -> None:
        self.events: list[TaskEvent] = []
        self.threads: set[str] = set()
        self._lock = threading.Lock()

    def __call__(self, event: TaskEvent) -> None:
        with self._lock:
            self.events.append(event)
            self.threads.add(threading.current_thread().name)

    def by_position(self) -> dict[int, TaskEvent]:
        return {e.position: e for e in self.events}


@pytest.fixture
def _fake_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", KEY)
    monkeypatch.setattr(chat_api, "BACKOFF_BASE", 0.05)


def posed_tasks(cfg: BuildConfig, index: int = 0) -> list[Task]:
    """The tasks shard ``index`` poses, in its order."""
    place = cfg.locate(index)
    family = get_family(place.family)
    first = place.number * cfg.shard_size + (RL_SCENE_BASE if place.split == "rl" else 0)
    return [task for i in range(first, first + cfg.shard_size)
            for task in family.pose(family.make_scene(i, cfg.seed, cfg.scene_options()),
                                    cfg.questions_per_scene)]


def build(cfg: BuildConfig, on_task: Recorder | None = None, **kw: Any) -> tuple[bytes, bytes]:
    """Build shard 0 into a fresh ``cfg.out``; its rows and rejects files' bytes."""
    prepare_output(cfg, overwrite=False, resume=False)
    run_shard(cfg, 0, on_task=on_task, **kw)
    rows_path, rejects_path = shard_files(cfg, 0)
    return rows_path.read_bytes(), rejects_path.read_bytes()


def answer(text: str) -> str:
    return f"<think>I know it.</think>\n<answer>{text}</answer>"


@pytest.fixture
def llm_server(tmp_path: Path, _fake_key: None) -> Iterator[tuple[FakeOpenAI, list[Task]]]:
    """A server that solves task 0, never task 1, task 2 at its second try, and breaks on 3."""
    tasks = posed_tasks(BuildConfig(out=tmp_path / "probe", shard_size=2,
                                    questions_per_scene=2))
    by_question = {t.question: (i, t) for i, t in enumerate(tasks)}
    seeds: dict[int, list[int]] = {}
    lock = threading.Lock()

    def handler(body: dict[str, Any]) -> str | Reply:
        position, task = by_question[last_user_text(body).strip()]
        with lock:
            tries = seeds.setdefault(position, [])
            if body["seed"] not in tries:
                tries.append(body["seed"])
            attempt = tries.index(body["seed"])
        right = answer(task.answer)
        reply = [right, answer("424242"), right if attempt else answer("424242"),
                 "I think it is probably 3."][position]
        return Reply(text=reply, delay=0.05)  # overlap the threads' requests a little

    with FakeOpenAI(handler) as server:
        yield server, tasks


def llm_cfg(out: Path, server: FakeOpenAI) -> BuildConfig:
    return BuildConfig(n=4, out=out, teacher="openai", model="test-model", base_url=server.url,
                       shard_size=2, questions_per_scene=2, workers=1, cell_timeout=2.0,
                       attempts=2, concurrency=4, request_timeout=10.0)


def test_llm_shard_reports_each_task_once_kept_or_rejected(
        tmp_path: Path, llm_server: tuple[FakeOpenAI, list[Task]]) -> None:
    server, tasks = llm_server
    hook = Recorder()
    cfg = llm_cfg(tmp_path / "hooked", server)
    rows, rejects = build(cfg, hook)

    assert len(hook.events) == len(tasks) == 4  # once per task, not per try
    seen = hook.by_position()
    assert sorted(seen) == [0, 1, 2, 3]
    assert all(e.shard == 0 and e.tasks == 4 for e in hook.events)
    outcome = {p: (e.kept, e.reason, e.attempts, e.rejected) for p, e in seen.items()}
    assert outcome == {0: (True, "verified", 1, 0), 1: (False, "wrong_answer", 2, 2),
                       2: (True, "verified", 2, 1), 3: (False, "format", 2, 2)}
    # The calls came from the shard's task threads, and agree with what the shard wrote.
    assert hook.threads and all(n.startswith("datagen-task") for n in hook.threads)
    kept_ids = set(pq.read_table(shard_files(cfg, 0)[0]).column("id").to_pylist())
    assert kept_ids == {tasks[p].id for p, e in seen.items() if e.kept}
    assert sum(e.rejected for e in hook.events) == len(rejects.splitlines()) == 5

    # Without the hook (a fresh folder, so no cached replies): the same bytes.
    plain = llm_cfg(tmp_path / "plain", server)
    assert build(plain) == (rows, rejects)


def test_scripted_shard_reports_a_rejection_and_writes_the_same_rows(tmp_path: Path) -> None:
    def cfg(name: str) -> BuildConfig:
        return BuildConfig(n=4, out=tmp_path / name, shard_size=2, questions_per_scene=2,
                           workers=1, cell_timeout=2.0)

    tasks = posed_tasks(cfg("probe"))
    faults = {tasks[1].id: "prints a wrong answer"}
    hook = Recorder()
    hooked = build(cfg("hooked"), hook, teacher=FaultyTeacher(faults))
    assert build(cfg("plain"), teacher=FaultyTeacher(faults)) == hooked
    # The scripted teacher is deterministic: one try a task, in order, in the caller's thread.
    # The faulted task is the one change from the teacher's own outcomes.
    clean = Recorder()
    build(cfg("clean"), clean)
    expected = [(e.kept, e.reason, e.attempts) for e in clean.events]
    expected[1] = (False, "wrong_answer", 1)
    assert [e.position for e in hook.events] == [0, 1, 2, 3]
    assert [(e.kept, e.reason, e.attempts) for e in hook.events] == expected
    assert hook.threads == {threading.current_thread().name}
    rejected = [tasks[p].id for p, (kept, _, _) in enumerate(expected) if not kept]
    assert [json.loads(r)["id"] for r in hooked[1].decode().splitlines()] == rejected


def test_rl_shard_reports_every_posed_prompt(tmp_path: Path) -> None:
    def cfg(name: str) -> BuildConfig:
        return BuildConfig(n=4, out=tmp_path / name, split="rl", shard_size=2,
                           questions_per_scene=3, workers=1)

    hook = Recorder()
    hooked = build(cfg("hooked"), hook)
    assert build(cfg("plain")) == hooked
    assert [(e.position, e.kept, e.reason, e.attempts, e.rejected) for e in hook.events] == [
        (i, True, "posed", 0, 0) for i in range(6)]
    assert all(e.tasks == 6 for e in hook.events)


def test_rl_prompts_are_reported_as_the_weak_model_labels_them(tmp_path: Path,
                                                                _fake_key: None) -> None:
    import time

    from datagen.teachers.weak import weak_messages

    def cfg(name: str, url: str) -> BuildConfig:
        return BuildConfig(n=6, out=tmp_path / name, split="rl", shard_size=2,
                           questions_per_scene=3, workers=1, weak_model="weak-vlm",
                           weak_base_url=url, weak_samples=2, concurrency=2,
                           request_timeout=10.0)

    tasks = posed_tasks(cfg("probe", "http://127.0.0.1:9/v1"))

    def handler(body: dict[str, Any]) -> Reply:
        task = next(t for t in tasks if body["messages"] == weak_messages(t))
        return Reply(text=f"<answer>{task.answer}</answer>", delay=0.1)

    with FakeOpenAI(handler) as server:
        hook = Recorder()
        seen_at: dict[int, float] = {}

        def timed(event: TaskEvent) -> None:
            seen_at[event.position] = time.monotonic()
            hook(event)

        hooked = build(cfg("hooked", server.url), timed)  # type: ignore[arg-type]
        asked = list(server.times)
        assert len(asked) == len(tasks) * 2  # two samples a task
        assert build(cfg("plain", server.url)) == hooked  # same rows (from the reply cache)

    assert sorted(e.position for e in hook.events) == list(range(len(tasks)))  # once each
    assert all((e.kept, e.reason, e.attempts) == (True, "posed", 0) for e in hook.events)
    # The bar moves during the labelling, which is the shard's slow part, not only after it.
    assert min(seen_at.values()) < max(asked)
    assert hook.threads and all(n.startswith("datagen-task") for n in hook.threads)
