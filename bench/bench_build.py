"""Throughput per scene family: render alone vs the whole build, samples per second.

    python bench/bench_build.py [--families chart,geometry,search] [--scenes 48] [--repeats 3]
                                [--workers N]

Render = make one scene (spec + drawing + PNG) and pose its questions, one core. Whole build =
every stage (render, pose, teach, sandbox execution, verify, write shards, dedup, publish)
through the library's shard runner, first on one worker, then on a process pool of ``--workers``.
Samples are published rows. Figures are medians over ``--repeats`` runs made in this process.

The 1-worker build also reports CPU ms per sample: the CPU time of this process and of every
live process below it (the sandbox jails, with the session workers they reaped). On a shared
machine it moves far less than wall-clock rates, and 2 cores / (CPU per sample) is the rate
two workers could reach at best.
"""

from __future__ import annotations

import argparse
import math
import os
import statistics
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

from datagen.config import BuildConfig
from datagen.pipeline.shards import prepare_output, run_shard
from datagen.release.publish import publish
from datagen.sandbox import forkserver_context
from datagen.scenes.registry import get_family


def render_rate(family: str, scenes: int, seed: int) -> tuple[float, float]:
    """(scenes/s, questions/s) for rendering alone."""
    fam = get_family(family)
    t = time.perf_counter()
    questions = sum(len(fam.pose(fam.make_scene(i, seed), 3)) for i in range(scenes))
    dt = time.perf_counter() - t
    return scenes / dt, questions / dt


def tree_cpu_seconds() -> float:
    """CPU seconds used so far by this process and every live process below it.

    A process's own time plus what its reaped children used: summed over the live tree, each
    finished session worker counts once (in the jail that reaped it).
    """
    parent: dict[int, int] = {}
    cpu: dict[int, float] = {}
    tick = os.sysconf("SC_CLK_TCK")
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue  # gone meanwhile
        parent[int(entry)] = int(fields[1])
        cpu[int(entry)] = sum(int(x) for x in fields[11:15]) / tick  # utime stime cutime cstime
    me = os.getpid()

    def below_me(pid: int) -> bool:
        while pid > 1:
            if pid == me:
                return True
            pid = parent.get(pid, 0)
        return False

    return sum(c for pid, c in cpu.items() if below_me(pid))


def build_rate(family: str, scenes: int, seed: int, workers: int, shard_size: int
               ) -> tuple[float, float]:
    """(published rows per second, CPU ms per row) for a whole build of ``scenes`` scenes.

    The CPU figure is measured for ``workers == 1`` only (NaN otherwise): a process pool's
    workers start and end around the build, so their time cannot be taken apart from it.
    """
    with tempfile.TemporaryDirectory() as tmp:
        cfg = BuildConfig(n=10**9, out=Path(tmp) / "out", seed=seed, shard_size=shard_size,
                          workers=workers, families=(family,))
        prepare_output(cfg, overwrite=False, resume=False)
        shards = range(scenes // shard_size)
        cpu = tree_cpu_seconds()
        t = time.perf_counter()
        if workers == 1:
            summaries = [run_shard(cfg, i) for i in shards]
        else:
            with ProcessPoolExecutor(workers, mp_context=forkserver_context()) as pool:
                summaries = list(pool.map(run_shard, [cfg] * len(shards), shards))
        rows = publish(cfg, summaries).rows
        seconds = time.perf_counter() - t
        cpu_ms = 1000 * (tree_cpu_seconds() - cpu) / rows if workers == 1 else math.nan
        return rows / seconds, cpu_ms


def bench_family(family: str, args: argparse.Namespace) -> None:
    """Print the figures for one family."""
    shard_size = max(1, args.scenes // max(2, 2 * args.workers))
    render, build1, buildn, cpu1 = [], [], [], []
    for r in range(args.repeats):
        seed = 1000 + r  # fresh scenes each run, same across the three measurements
        render.append(render_rate(family, args.scenes, seed))
        rate, cpu_ms = build_rate(family, args.scenes, seed, 1, shard_size)
        build1.append(rate)
        cpu1.append(cpu_ms)
        buildn.append(build_rate(family, args.scenes, seed, args.workers, shard_size)[0])
        print(f"{family} run {r + 1}: render {render[-1][1]:.1f} q/s, build 1 worker "
              f"{build1[-1]:.1f} rows/s ({cpu_ms:.0f} CPU ms/row), build {args.workers} workers "
              f"{buildn[-1]:.1f} rows/s", flush=True)
    q_s = statistics.median(x[1] for x in render)
    b1, bn = statistics.median(build1), statistics.median(buildn)
    print(f"\n{family}: {args.scenes} scenes x 3 questions, median of {args.repeats} runs")
    print(f"  render only (1 core)      : {statistics.median(x[0] for x in render):7.1f} "
          f"scenes/s = {q_s:7.1f} samples/s")
    print(f"  whole build, 1 worker     : {b1:7.1f} samples/s")
    cpu = statistics.median(cpu1)
    print(f"  CPU per sample, 1 worker  : {cpu:7.1f} ms (2 cores at best: "
          f"{2000 / cpu:.1f} samples/s)")
    print(f"  whole build, {args.workers} workers    : {bn:7.1f} samples/s")
    print(f"  ratio render / build (1:1): {q_s / b1:7.2f}x")
    print(f"  speed-up {args.workers} workers vs 1 : {bn / b1:7.2f}x\n", flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--families", default="chart,geometry,search")
    ap.add_argument("--scenes", type=int, default=48)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    args = ap.parse_args()
    for family in args.families.split(","):
        bench_family(family.strip(), args)


if __name__ == "__main__":
    main()
