"""The OpenAI-compatible teacher against a real HTTP server on loopback (``openai_server``).

The real ``openai`` client talks to a FastAPI server scripted per test; every case ends in a
verified row or a reject with its reason, and the fake key never reaches a file.
"""

from __future__ import annotations

import json
import math
import os
import re
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest

from datagen.config import BuildConfig
from datagen.errors import RunError
from datagen.messages import parse_reply
from datagen.pipeline.shards import prepare_output, run_shard, shard_files
from datagen.records import Task
from datagen.scenes.registry import get_family
from datagen.teachers import chat_api
from tests.support.openai_server import FakeOpenAI, Reply, last_user_text

KEY = "sk-test-123"
# Shows a crop; the model then answers from what it saw (the code does not print the answer).
GOOD_CODE = ("w, h = input_image.size\n"
             "input_image.crop((0, 0, w // 2, h // 2)).show()\n"
             "print(f'size {w}x{h}')")
# Prints the gold answer typed into the code: told, not looked (the grounding checks reject it).
TOLD_CODE = GOOD_CODE + "\nprint(ANSWER)"


@pytest.fixture(autouse=True)
def _fake_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", KEY)
    monkeypatch.setattr(chat_api, "BACKOFF_BASE", 0.05)


def config(tmp_path: Path, server: FakeOpenAI, **kw: Any) -> BuildConfig:
    options: dict[str, Any] = dict(
        n=1, out=tmp_path / "out", teacher="openai", model="test-model", base_url=server.url,
        shard_size=1, questions_per_scene=1, workers=1, cell_timeout=2.0, attempts=1,
        request_timeout=10.0)
    cfg = BuildConfig(**{**options, **kw})
    prepare_output(cfg, overwrite=False, resume=False)
    return cfg


def gold(cfg: BuildConfig, index: int = 0) -> Task:
    family = get_family("chart")
    scene = family.make_scene(index * cfg.shard_size, cfg.seed, cfg.scene_options())
    return family.pose(scene, cfg.questions_per_scene)[0]


def shard(cfg: BuildConfig, index: int = 0) -> tuple[list[dict], list[dict]]:
    """Build one shard; its rows and rejects."""
    run_shard(cfg, index)
    rows_path, rejects_path = shard_files(cfg, index)
    rows = pq.read_table(rows_path).to_pylist()
    rejects = [json.loads(line) for line in rejects_path.read_text().splitlines()]
    assert_no_key(cfg.out)
    return rows, rejects


def assert_no_key(out: Path) -> None:
    for path in out.rglob("*"):
        if path.is_file():
            assert KEY.encode() not in path.read_bytes(), path


def answer(text: str) -> str:
    return f"<think>I know it.</think>\n<answer>{text}</answer>"


def good_trace(task: Task, code: str = GOOD_CODE) -> Callable[[dict[str, Any]], str]:
    """Turn 1 runs ``code`` (it shows a crop); turn 2 answers the gold answer."""
    def handler(body: dict[str, Any]) -> str:
        if len(body["messages"]) == 2:
            cell = code.replace("ANSWER", repr(task.answer))
            return f"<think>Let me look.</think>\n<code>\n```python\n{cell}\n```\n</code>"
        return answer(task.answer)
    return handler


def test_code_that_prints_a_typed_answer_is_rejected_as_not_looking(tmp_path: Path,
                                                                     serve) -> None:
    task = gold(BuildConfig(out=tmp_path / "x", shard_size=1, questions_per_scene=1))
    rows, rejects = shard(config(tmp_path, serve(good_trace(task, TOLD_CODE))))
    assert rows == [] and rejects[0]["reason"] in ("provenance", "not_grounded"), rejects


def test_good_multi_turn_trace_is_verified_with_the_raw_replies(tmp_path: Path, serve) -> None:
    probe = BuildConfig(out=tmp_path / "x", shard_size=1, questions_per_scene=1)
    task = gold(probe)
    server = serve(good_trace(task))
    cfg = config(tmp_path, server)
    rows, rejects = shard(cfg)
    assert rejects == [] and len(rows) == 1
    row = rows[0]
    assert row["teacher"] == "openai:test-model" and row["style"] == "llm"
    roles = [m["role"] for m in row["messages"]]
    assert roles == ["system", "user", "assistant", "user", "assistant"]
    first, second = server.requests
    assert row["messages"][2]["content"] == second["messages"][2]["content"]  # verbatim
    assert row["messages"][4]["content"] == answer(task.answer)
    assert "size " in row["messages"][3]["content"] and len(row["images"]) == 2
    # The image as a data URL, then the observation with the crop in place of <image>.
    assert first["messages"][1]["content"][0]["image_url"]["url"].startswith("data:image/")
    kinds = [p["type"] for p in second["messages"][3]["content"]]
    assert kinds.count("image_url") == 1 and "text" in kinds
    assert all(a == f"Bearer {KEY}" for a in server.auth)
    summary = json.loads(next((cfg.out / ".datagen" / "shards").glob("*.done.json")).read_text())
    assert summary["api_calls"] == 2 and summary["prompt_tokens"] > 0


@pytest.mark.parametrize(("reply", "reason", "calls"), [
    (answer("424242 apples"), "wrong_answer", 1),
    ("<think>x</think>\n<code>\n```python\ndef broken(:\n```\n</code>", "exec_error", 1),
    ("I think the answer is probably 3.", "format", 1),
    ("<code>\n```python\nwhile True:\n    pass\n```\n</code>", "timeout", 1),
])
def test_bad_replies_are_rejected_with_their_reason(tmp_path: Path, serve, reply: str,
                                                     reason: str, calls: int) -> None:
    server = serve(lambda body: reply)
    rows, rejects = shard(config(tmp_path, server))
    assert rows == [] and [r["reason"] for r in rejects] == [reason]
    assert server.count == calls  # a failed cell ends the trace: no more paid turns
    assert rejects[0]["messages"][2]["content"] == reply


def test_no_answer_within_the_turn_limit(tmp_path: Path, serve) -> None:
    server = serve(lambda body: "<code>\n```python\nprint(1)\n```\n</code>")
    rows, rejects = shard(config(tmp_path, server, max_turns=3))
    assert rows == [] and [r["reason"] for r in rejects] == ["turn_limit"]
    assert server.count == 3
    said = [last_user_text(b) for b in server.requests]
    assert ["last turn" in s for s in said] == [False, False, True]


def test_429_with_retry_after_is_waited_out(tmp_path: Path, serve) -> None:
    task = gold(BuildConfig(out=tmp_path / "x", shard_size=1, questions_per_scene=1))
    server = serve(lambda body: Reply(status=429, headers={"Retry-After": "1"})
                   if server.count == 1 else answer(task.answer))
    rows, _ = shard(config(tmp_path, server))
    assert len(rows) == 1 and server.count == 2
    assert server.times[1] - server.times[0] >= 0.95


def test_server_errors_then_success(tmp_path: Path, serve) -> None:
    task = gold(BuildConfig(out=tmp_path / "x", shard_size=1, questions_per_scene=1))
    server = serve(lambda body: Reply(status=500 + server.count) if server.count <= 2
                   else answer(task.answer))
    rows, _ = shard(config(tmp_path, server))
    assert len(rows) == 1 and server.count == 3


def test_a_hung_response_times_out_and_is_retried(tmp_path: Path, serve) -> None:
    task = gold(BuildConfig(out=tmp_path / "x", shard_size=1, questions_per_scene=1))
    server = serve(lambda body: Reply(text=answer(task.answer), delay=2.0 if server.count == 1
                                      else 0.0))
    started = time.monotonic()
    rows, _ = shard(config(tmp_path, server, request_timeout=1.0))
    assert len(rows) == 1 and server.count == 2
    assert time.monotonic() - started < 4.5


def test_a_truncated_body_is_retried(tmp_path: Path, serve) -> None:
    task = gold(BuildConfig(out=tmp_path / "x", shard_size=1, questions_per_scene=1))
    server = serve(lambda body: Reply(raw='{"id": "x", "choices": [{"mess')
                   if server.count == 1 else answer(task.answer))
    rows, _ = shard(config(tmp_path, server))
    assert len(rows) == 1 and server.count == 2


def test_attempts_keep_the_first_verified_try_and_reject_the_others(tmp_path: Path,
                                                                    serve) -> None:
    task = gold(BuildConfig(out=tmp_path / "x", shard_size=1, questions_per_scene=1))
    seeds: list[int] = []

    def handler(body: dict[str, Any]) -> str | Reply:
        if body["seed"] not in seeds:
            seeds.append(body["seed"])
        if seeds.index(body["seed"]) == 0:
            return answer("424242")
        if seeds.index(body["seed"]) == 1:
            return Reply(raw="{not json")  # the endpoint breaks for good: api_error
        return answer(task.answer)

    server = serve(handler)
    rows, rejects = shard(config(tmp_path, server, attempts=3))
    assert len(rows) == 1 and len(seeds) == 3
    assert [(r["attempt"], r["reason"]) for r in rejects] == [(0, "wrong_answer"),
                                                             (1, "api_error")]
    assert server.count == 1 + chat_api.MAX_TRIES + 1


def test_a_bad_key_stops_at_once_with_one_line(tmp_path: Path, serve) -> None:
    server = serve(lambda body: Reply(status=401, error=f"Incorrect API key provided: {KEY}"))
    cfg = config(tmp_path, server)
    with pytest.raises(RunError) as err:
        run_shard(cfg, 0)
    msg = str(err.value)
    assert "\n" not in msg and "401" in msg and "OPENAI_API_KEY" in msg and KEY not in msg
    assert server.count == 1


def test_a_repeated_build_is_served_from_the_cache(tmp_path: Path, serve) -> None:
    task = gold(BuildConfig(out=tmp_path / "x", shard_size=1, questions_per_scene=1))
    server = serve(good_trace(task))
    cfg = config(tmp_path, server)
    rows, _ = shard(cfg)
    first = shard_files(cfg, 0)[0].read_bytes()
    assert server.count == 2
    prepare_output(cfg, overwrite=True, resume=False)  # the cache survives --overwrite
    again, _ = shard(cfg)
    assert server.count == 2 and shard_files(cfg, 0)[0].read_bytes() == first
    summary = json.loads(next((cfg.out / ".datagen" / "shards").glob("*.done.json")).read_text())
    assert summary["api_calls"] == 0 and summary["cached_calls"] == 2
    assert summary["cost_usd"] == 0


def test_parse_reply_reads_code_tool_calls_and_answers() -> None:
    call = json.dumps({"name": "execute_python_code", "arguments": {"code": "print(2)"}})
    assert parse_reply(f"<think>t</think><tool_call>{call}</tool_call>").code == "print(2)"
    step = parse_reply("<think>a</think>\n<code>\n```python\nx = 1\n```\n</code>")
    assert (step.think, step.code, step.answer) == ("a", "x = 1", None)
    both = parse_reply("<code>\n```python\nx = 1\n```\n</code><answer>3</answer>")
    assert both.code is None and both.answer is None and both.raw is not None


def test_the_cli_asks_for_a_key_and_a_model(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k != "OPENAI_API_KEY"}
    base = [sys.executable, "-m", "datagen.cli", "build", "--out", str(tmp_path / "o"),
            "--teacher", "openai"]
    res = subprocess.run([*base, "--model", "m"], capture_output=True, text=True, env=env,
                         timeout=60)
    assert res.returncode == 2 and "OPENAI_API_KEY" in res.stderr
    assert len(res.stderr.strip().splitlines()) == 1
    res = subprocess.run(base, capture_output=True, text=True, env={**env, "OPENAI_API_KEY": KEY},
                         timeout=60)
    assert res.returncode == 2 and "--model" in res.stderr and KEY not in res.stderr
    assert not (tmp_path / "o").exists()


def test_both_llm_callers_want_a_key_and_say_so_alike(tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    from datagen.errors import UsageError
    from datagen.teachers.openai_teacher import OpenAITeacher
    from datagen.teachers.weak import WeakSolver

    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    cfg = BuildConfig(out=tmp_path, teacher="openai", model="m", weak_model="w")
    for make, option in ((OpenAITeacher, "--teacher openai"), (WeakSolver, "--weak-model")):
        with pytest.raises(UsageError, match=f"^{option} needs an API key: set OPENAI_API_KEY"):
            make(cfg)


# -- through the Prefect flow: the budget stops the build, a bad key stops it at once --------

def test_max_cost_stops_planning_and_publishes_what_verified(tmp_path: Path, serve,
                                                            prefect_harness: None) -> None:
    from flows.build import build

    tasks = {gold(BuildConfig(out=tmp_path / "x", shard_size=1, questions_per_scene=1), i)
             .question: gold(BuildConfig(out=tmp_path / "x", shard_size=1,
                                         questions_per_scene=1), i).answer for i in range(8)}

    def handler(body: dict[str, Any]) -> str:
        return answer(tasks[last_user_text(body).strip()])

    server = serve(handler)
    # ~20k prompt tokens a call at 10 USD per 1M: the first call spends the 0.01 USD.
    cfg = config(tmp_path, server, n=3, max_cost=0.01, price_in=10.0, price_out=10.0)
    report = build(cfg)
    # The pool runs up to two shards per worker at once, so a second call may already be in
    # flight when the first spends the budget (in-flight calls finish, as documented); no
    # call starts after that, so the build stops short of its 3 rows.
    assert 1 <= report.rows == server.count <= 2
    llm = report.stats["llm"]
    assert llm["budget_spent"] and llm["api_calls"] == server.count and llm["cost_usd"] > 0.01
    card = (cfg.out / "README.md").read_text()
    assert "stopped early" in card and "test-model" in card
    assert_no_key(cfg.out)


def test_a_bad_key_stops_the_flow_without_retries(tmp_path: Path, serve,
                                                  prefect_harness: None) -> None:
    from flows.build import build

    server = serve(lambda body: Reply(status=401, error="bad key"))
    cfg = config(tmp_path, server, n=2)
    started = time.monotonic()
    with pytest.raises(RunError, match=re.escape("OPENAI_API_KEY")):
        build(cfg)
    # One request per planned shard (3 for n=2), none retried, by us or by Prefect.
    assert time.monotonic() - started < 20 and server.count <= 3


def test_a_config_file_gives_options_and_the_command_line_wins(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k != "OPENAI_API_KEY"}
    conf = tmp_path / "build.yaml"
    base = [sys.executable, "-m", "datagen.cli", "build", "--out", str(tmp_path / "o"),
            "--config", str(conf)]

    def run(text: str, *extra: str) -> str:
        conf.write_text(text)
        res = subprocess.run([*base, *extra], capture_output=True, text=True, env=env,
                             timeout=60)
        assert res.returncode == 2 and len(res.stderr.strip().splitlines()) == 1, res.stderr
        return res.stderr

    assert "OPENAI_API_KEY" in run("teacher: openai\nmodel: gpt-4o-mini\nmax-cost: 2\n")
    assert "--n: must be a positive" in run("split: eval\nn: -1\n", "--split", "sft")
    assert "unknown option 'colour'" in run("colour: red\n")
    assert not (tmp_path / "o").exists()


def test_the_tpm_estimate_counts_an_image_as_image_tokens_not_its_base64() -> None:
    from datagen.teachers.openai_teacher import data_url

    big = bytes(range(256)) * 400  # 100 KB of image: ~137k base64 characters
    request = {"max_tokens": 512, "messages": [
        {"role": "system", "content": "s" * 400},
        {"role": "user", "content": [data_url(big), {"type": "text", "text": "q" * 40}]},
        {"role": "assistant", "content": "a" * 41},
        {"role": "user", "content": [{"type": "text", "text": "obs"}, data_url(big)]}]}
    text = math.ceil((400 + 40 + 41 + 3) / chat_api.CHARS_PER_TOKEN)
    assert chat_api.estimate_tokens(request) == 2 * chat_api.IMAGE_TOKENS + text + 512


def test_token_bucket_waits_for_refill_and_zero_is_unlimited() -> None:
    bucket = chat_api.TokenBucket(600)  # 10 a second, 600 at once
    started = time.monotonic()
    bucket.take(600)
    bucket.take(3)  # empty: waits ~0.3 s for three more
    assert 0.2 < time.monotonic() - started < 1.5
    free = chat_api.TokenBucket(0)
    free.take(10**9)
    free.settle(10**9)
