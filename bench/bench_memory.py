"""Peak memory of a whole `datagen build`: the CLI, its shard pool and the sandboxes.

    python bench/bench_memory.py [--n 10000 ...] [--split sft] [--families chart,geometry,search]

For each size, runs the real CLI in a subprocess and samples, every 0.25 s, the process tree it
leads (Linux /proc): the sum of RSS (double-counts pages the forked workers share) and of PSS
(shared pages split between their users: the honest total), and the CLI process's own RSS.
A build streams shards to disk and publishes in slices, so the peak should stay flat as n grows.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path


@dataclass
class Peak:
    """The highest figures seen, in KiB."""

    tree_rss: int = 0
    tree_pss: int = 0
    main_rss: int = 0
    processes: int = 0


def _children(pid: int) -> list[int]:
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as fh:
            return [int(p) for p in fh.read().split()]
    except OSError:
        return []


def _tree(pid: int) -> list[int]:
    pids, todo = [], [pid]
    while todo:
        p = todo.pop()
        pids.append(p)
        todo.extend(_children(p))
    return pids


def _kib(pid: int, path: str, field: str) -> int:
    try:
        with open(f"/proc/{pid}/{path}") as fh:
            for line in fh:
                if line.startswith(field):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def _watch(pid: int, peak: Peak, stop: threading.Event) -> None:
    while not stop.wait(0.25):
        pids = _tree(pid)
        peak.tree_rss = max(peak.tree_rss, sum(_kib(p, "status", "VmRSS:") for p in pids))
        peak.tree_pss = max(peak.tree_pss, sum(_kib(p, "smaps_rollup", "Pss:") for p in pids))
        peak.main_rss = max(peak.main_rss, _kib(pid, "status", "VmRSS:"))
        peak.processes = max(peak.processes, len(pids))


def measure(n: int, split: str, families: str, workers: int, shard_size: int) -> None:
    """Build ``n`` rows and print the peaks."""
    env = {**os.environ, "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
           "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "120"}
    with tempfile.TemporaryDirectory() as tmp:
        cmd = [sys.executable, "-m", "datagen.cli", "build", "--n", str(n), "--split", split,
               "--families", families, "--workers", str(workers), "--shard-size",
               str(shard_size), "--out", str(Path(tmp) / "out"), "--quiet"]
        started = time.perf_counter()
        proc = subprocess.Popen(cmd, env=env)
        peak, stop = Peak(), threading.Event()
        watcher = threading.Thread(target=_watch, args=(proc.pid, peak, stop), daemon=True)
        watcher.start()
        code = proc.wait()
        stop.set()
        watcher.join()
        wall = time.perf_counter() - started
        size = sum(p.stat().st_size for p in (Path(tmp) / "out" / "data").glob("*.parquet"))
    mib = 1024
    print(f"{n:>7} {split:<4} exit {code}  {wall:7.0f} s  tree RSS {peak.tree_rss / mib:7.0f} MiB"
          f"  tree PSS {peak.tree_pss / mib:7.0f} MiB  CLI RSS {peak.main_rss / mib:6.0f} MiB"
          f"  {peak.processes:3d} procs  data {size / mib / mib:7.1f} MiB", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, nargs="+", default=[10000])
    parser.add_argument("--split", default="sft")
    parser.add_argument("--families", default="chart,geometry,search")
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--shard-size", type=int, default=16)
    args = parser.parse_args()
    print(f"families {args.families}, {args.workers} workers, shards of {args.shard_size} "
          "scenes; peaks sampled every 0.25 s")
    for n in args.n:
        measure(n, args.split, args.families, args.workers, args.shard_size)


if __name__ == "__main__":
    main()
