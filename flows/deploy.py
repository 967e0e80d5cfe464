"""Scheduled deployments of the build: a nightly RL refresh and a weekly SFT build.

``datagen deploy`` serves them (``prefect.serve``): it registers each deployment with its cron
schedule on the Prefect server named by ``PREFECT_API_URL`` and runs their flow runs, scheduled
or triggered (``prefect deployment run 'datagen-scheduled-build/weekly-sft'``), in subprocesses
until stopped; stopping it (Ctrl-C, SIGTERM) pauses the schedules. The parameters of a run are
the same options as ``datagen build`` (``options``) and the output folder (``out``).

A scheduled run refreshes its folder: it resumes the build there when the content options are
unchanged (finished shards are kept, so an unchanged nightly run only republishes), and starts
over when they changed (a new generator version, other options) or when ``fresh`` is set.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from prefect import deploy, flow, get_run_logger, serve
from prefect.deployments.runner import EntrypointType, RunnerDeployment

from datagen.config import BuildConfig
from datagen.errors import UsageError
from datagen.pipeline.shards import completed_shards, prepare_output
from flows.build import build, build_shards
from flows.shard_pool import close_pool

__all__ = ["SCHEDULES", "ScheduledBuild", "build_shard_range", "deploy_to_pool", "deployments",
           "scheduled_build", "serve_deployments", "shard_range_deployment"]

_DEFAULT_FAMILIES = "chart,geometry,search"


@dataclass(frozen=True, slots=True)
class ScheduledBuild:
    """One deployment: its name, cron schedule (UTC) and ``datagen build`` options."""

    name: str
    cron: str
    description: str
    options: dict[str, Any] = field(default_factory=dict)


SCHEDULES = (
    ScheduledBuild("nightly-rl", "0 2 * * *", "Refresh the RL prompt set every night.",
                   {"split": "rl", "n": 5000, "families": _DEFAULT_FAMILIES}),
    ScheduledBuild("weekly-sft", "0 3 * * 0", "Build the SFT set every Sunday.",
                   {"split": "sft", "n": 5000, "families": _DEFAULT_FAMILIES}),
)


@flow(name="datagen-scheduled-build", log_prints=True)
def scheduled_build(options: dict[str, Any], out: str, fresh: bool = False) -> dict[str, Any]:
    """Build ``options`` into ``out``: resume it, or start over if its options changed.

    Returns what was published: the folder, its row count and files.
    """
    log = get_run_logger()
    cfg = BuildConfig.from_options(**{**options, "out": Path(out),
                                      "command": f"scheduled: {options}"})
    if not fresh:
        try:
            prepare_output(cfg, overwrite=False, resume=True)
        except UsageError as exc:
            log.info("starting %s over: %s", out, exc)
            fresh = True
    if fresh:
        prepare_output(cfg, overwrite=True, resume=False)
    report = build(cfg)
    return {"out": str(report.out), "rows": report.rows, "files": report.files}


@flow(name="datagen-build-shards", log_prints=True)
def build_shard_range(options: dict[str, Any], out: str, start: int, stop: int) -> list[int]:
    """Build shards ``start`` to ``stop - 1`` of a build, without publishing.

    One slice of a build for one worker of a work pool; finished shards are skipped. Once every
    slice is done, ``datagen build --resume`` with the same options publishes (building
    nothing). Returns the indices of the finished shards in the slice.
    """
    if not 0 <= start < stop:
        raise UsageError(f"shard range {start}..{stop}: give 0 <= start < stop")
    cfg = BuildConfig.from_options(**{**options, "out": Path(out)})
    prepare_output(cfg, overwrite=False, resume=True)
    done = completed_shards(cfg)
    todo = [i for i in range(start, stop) if i not in done]
    get_run_logger().info("%d of shards %d..%d to build", len(todo), start, stop - 1)
    if todo:
        done, _ = build_shards(cfg, todo)
        close_pool(cfg.workers)
    return [i for i in range(start, stop) if i in done]


def deployments(root: Path, names: list[str] | None = None) -> list[RunnerDeployment]:
    """The deployments of ``SCHEDULES`` (or those ``names``), building into ``root/NAME``."""
    known = {s.name: s for s in SCHEDULES}
    unknown = sorted(set(names or []) - set(known))
    if unknown:
        raise UsageError(f"unknown deployment {unknown[0]!r}; choose from: {', '.join(known)}")
    chosen = [known[n] for n in names] if names else list(SCHEDULES)
    root = root.resolve()
    return [
        scheduled_build.to_deployment(
            name=s.name, cron=s.cron, description=s.description, tags=["datagen"],
            parameters={"options": s.options, "out": str(root / s.name)},
            # Resolved by module, so the deployment runs from any folder the package is in.
            entrypoint_type=EntrypointType.MODULE_PATH)
        for s in chosen
    ]


def deploy_to_pool(pool: str, root: Path, names: list[str] | None = None) -> list[str]:
    """Register the scheduled builds and ``shard-range`` with the work pool ``pool``.

    Workers of the pool (``prefect worker start --pool POOL`` on machines with this package
    installed and ``root`` mounted at the same path) run them. Returns the deployment ids.
    """
    from prefect.client.orchestration import get_client
    from prefect.exceptions import ObjectNotFound

    with get_client(sync_client=True) as client:
        try:
            client.read_work_pool(pool)
        except ObjectNotFound:
            raise UsageError(f"--pool {pool!r}: no such work pool; create it with: prefect "
                             f"work-pool create {pool} --type process") from None
    items = [*deployments(root, names), shard_range_deployment()]
    ids = deploy(*items, work_pool_name=pool, build=False, push=False,
                 print_next_steps_message=False, ignore_warnings=True)
    return [str(i) for i in ids]


def shard_range_deployment() -> RunnerDeployment:
    """``datagen-build-shards/shard-range``: its runs name options, out, start and stop."""
    return build_shard_range.to_deployment(
        name="shard-range", tags=["datagen"], entrypoint_type=EntrypointType.MODULE_PATH,
        description="Build one slice of shards of a build (publish with datagen build "
                    "--resume).")


def serve_deployments(root: Path, names: list[str] | None = None, limit: int | None = 1) -> None:
    """Register the deployments and run their flow runs until stopped (blocks).

    ``limit`` caps the flow runs at once: a build already uses every core.
    """
    serve(*deployments(root, names), limit=limit)
