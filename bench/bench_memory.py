"""Peak memory of a whole `datagen build`: the CLI, its shard pool and the sandboxes.

    python bench/bench_memory.py [--n 10000 ...] [--split sft] [--families chart,geometry,search]

For each size, runs the real CLI in a subprocess and samples, every 0.25 s, the process tree it
leads (Linux /proc): the sum of RSS (double-counts pages the forked workers share) and of PSS
(shared pages split between their users: the honest total), and the CLI process's own RSS.
A build streams shards to disk and publishes in slices, so the peak should stay flat as n grows.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path


@dataclass
class Peak:
    """The highest figures seen, in KiB, and the tree's PSS by role at its highest."""

    tree_rss: int = 0
    tree_pss: int = 0
    main_rss: int = 0
    processes: int = 0
    roles: dict[str, int] = field(default_factory=dict)


def _tree(pid: int) -> list[int]:
    """``pid`` and every process below it. Parents are read from /proc/*/stat: a thread's
    children (the sandboxes a pool worker starts from its task threads) are missing from
    ``/proc/PID/task/PID/children``, which lists the main thread's only."""
    below: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as fh:
                ppid = int(fh.read().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue  # gone meanwhile
        below.setdefault(ppid, []).append(int(entry))
    pids, todo = [], [pid]
    while todo:
        p = todo.pop()
        pids.append(p)
        todo.extend(below.get(p, []))
    return pids


def _role(pid: int, root: int) -> str:
    """What a process of the build's tree is, from its command line."""
    if pid == root:
        return "CLI"
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as fh:
            cmd = fh.read().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return "gone"
    if "prefect.server" in cmd:
        return "Prefect server"
    if "datagen.sandbox.jail" in cmd or cmd.split(" ", 1)[0].endswith("bwrap"):
        return "sandboxes"  # the jails, their session workers and bwrap itself
    return "shard pool"


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
        pss = {p: _kib(p, "smaps_rollup", "Pss:") for p in pids}
        peak.tree_rss = max(peak.tree_rss, sum(_kib(p, "status", "VmRSS:") for p in pids))
        if sum(pss.values()) > peak.tree_pss:
            peak.tree_pss = sum(pss.values())
            roles: dict[str, int] = {}
            for p, kib in pss.items():
                role = _role(p, pid)
                roles[role] = roles.get(role, 0) + kib
            peak.roles = roles
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
        stats = Path(tmp) / "out" / "stats.json"
        verified = (json.loads(stats.read_text())["splits"].get(split, {}).get("verified", 0)
                    if stats.exists() else 0)
    mib = 1024
    print(f"{n:>7} {split:<4} exit {code}  {wall:7.0f} s  tree RSS {peak.tree_rss / mib:7.0f} MiB"
          f"  tree PSS {peak.tree_pss / mib:7.0f} MiB  CLI RSS {peak.main_rss / mib:6.0f} MiB"
          f"  {peak.processes:3d} procs  data {size / mib / mib:7.1f} MiB", flush=True)
    print(f"        {verified:,} verified in {wall:.0f} s: {verified / wall * 3600:,.0f} verified "
          "samples/hour, end to end (Prefect's start included)", flush=True)
    roles = sorted(peak.roles.items(), key=lambda kv: -kv[1])
    print("        at the PSS peak: " + ", ".join(f"{role} {kib / mib:.0f} MiB"
                                                  for role, kib in roles if role != "gone"),
          flush=True)


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
