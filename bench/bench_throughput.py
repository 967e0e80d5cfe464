"""End-to-end throughput of the build flow: verified samples per hour on this machine.

    python bench/bench_throughput.py [--n 3000] [--families chart,geometry,search] [--workers 2]

Runs the real flow (process pool, sandbox, verify, dedup, publish) with the scripted teacher
into a temporary folder and prints verified samples/hour over the flow's wall time (Prefect's
temporary server is started before the clock, as a deployment or a running server would be),
and the same per family from the shards' own timings.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "120")
os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=3000, help="verified rows to publish")
    parser.add_argument("--families", default="chart,geometry,search")
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--shard-size", type=int, default=16)
    args = parser.parse_args()

    from prefect import flow

    from datagen.config import BuildConfig
    from datagen.pipeline.shards import completed_shards, prepare_output
    from flows.build import run_build

    @flow
    def warm_up() -> None:
        """Start Prefect's temporary server before the clock starts."""

    warm_up()
    with tempfile.TemporaryDirectory() as tmp:
        cfg = BuildConfig(n=args.n, out=Path(tmp) / "out", families=args.families,
                          workers=args.workers, shard_size=args.shard_size)
        prepare_output(cfg, overwrite=False, resume=False)
        started = time.perf_counter()
        report = run_build(cfg)
        wall = time.perf_counter() - started
        shards = completed_shards(cfg).values()
    verified = sum(s.kept for s in shards)
    tasks = sum(s.tasks for s in shards)
    print(f"{args.n} rows, families {args.families}, {args.workers} workers, "
          f"shards of {args.shard_size} scenes, scripted teacher, sandbox "
          f"{next(iter(shards)).sandbox_mode} ({next(iter(shards)).sandbox_walls})")
    print(f"wall time                 : {wall:8.1f} s  ({len(shards)} shards, {tasks} tasks)")
    print(f"verified samples/hour     : {verified / wall * 3600:8.0f}  ({verified} verified)")
    print(f"published rows/hour       : {report.rows / wall * 3600:8.0f}  ({report.rows} rows)")
    worker_s = sum(s.seconds for s in shards)
    checks_s = sum(s.grounding_seconds for s in shards)
    print(f"grounding checks          : {checks_s:8.1f} worker-s, {checks_s / worker_s:.1%} of "
          f"the shards' {worker_s:.0f} worker-s (twins, jitter re-runs, provenance)")
    # Per family, from the shards' own build time (one worker's view, so x workers).
    for family in cfg.families:
        mine = [s for s in shards if cfg.family_of(s.index)[0] == family]
        seconds = sum(s.seconds for s in mine)
        kept = sum(s.kept for s in mine)
        if seconds:
            print(f"  {family:<10} per worker : {kept / seconds * 3600:8.0f} verified/hour "
                  f"({kept} in {seconds:.0f} worker-s)")


if __name__ == "__main__":
    main()
