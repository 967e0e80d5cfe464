"""LLM teacher throughput against a loopback server with a fixed latency per call.

    python bench/bench_teacher.py [--latency 0.5] [--concurrency 1,8,32] [--rounds 4]

Each step is a real ``OpenAITeacher.step``: the request is built (system prompt, the chart as a
base64 data URL, the question), goes through our limiter, semaphore and retry loop and the real
``openai`` client to a FastAPI server on 127.0.0.1 that answers after ``--latency`` seconds; the
reply is parsed and written to the response cache. With ``c`` requests in flight the ideal is
``c / latency`` steps per second; the ratio shows what the client side costs.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # for tests.support.openai_server

from datagen.config import BuildConfig  # noqa: E402
from datagen.scenes.registry import get_family  # noqa: E402
from datagen.teachers.openai_teacher import OpenAITeacher  # noqa: E402
from tests.support.openai_server import FakeOpenAI, Reply  # noqa: E402


def rate(url: str, out: Path, tasks: list, concurrency: int, latency: float,
         rounds: int) -> float:
    """Steps per second with ``concurrency`` requests in flight."""
    cfg = BuildConfig(out=out, teacher="openai", model="bench", base_url=url, workers=1,
                      concurrency=concurrency, request_timeout=30.0)
    teacher = OpenAITeacher(cfg)
    n = max(16, rounds * concurrency)
    jobs = [(tasks[i % len(tasks)], i // len(tasks) + 1000 * concurrency) for i in range(n)]
    with ThreadPoolExecutor(concurrency) as pool:
        started = time.perf_counter()
        steps = list(pool.map(lambda j: teacher.for_attempt(j[1]).step(j[0], []), jobs))
        elapsed = time.perf_counter() - started
    assert all(s.answer == "1" for s in steps)
    assert teacher.usage().cached_calls == 0  # every step paid its latency
    return n / elapsed


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--latency", type=float, default=0.5)
    ap.add_argument("--concurrency", default="1,8,32")
    ap.add_argument("--rounds", type=int, default=4)
    args = ap.parse_args()
    os.environ.setdefault("OPENAI_API_KEY", "sk-bench")
    family = get_family("chart")
    tasks = [t for i in range(8) for t in family.pose(family.make_scene(i, 0), 3)]
    reply = Reply(text="<think>done</think>\n<answer>1</answer>", delay=args.latency)
    print(f"loopback server, {args.latency * 1000:.0f} ms per call, {len(tasks)} chart tasks")
    print(f"{'concurrency':>11} {'steps/s':>9} {'ideal':>8} {'ratio':>7}")
    with FakeOpenAI(lambda body: reply) as server, tempfile.TemporaryDirectory() as tmp:
        for c in (int(x) for x in args.concurrency.split(",")):
            got = rate(server.url, Path(tmp) / f"c{c}", tasks, c, args.latency, args.rounds)
            ideal = c / args.latency
            print(f"{c:>11} {got:>9.2f} {ideal:>8.2f} {100 * got / ideal:>6.1f}%")


if __name__ == "__main__":
    main()
