"""``datagen``: the command line.

Usage errors exit with code 2 and one line on stderr; run failures exit with 1.
"""

from __future__ import annotations

import os
import shlex
import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from datagen.errors import DatagenError

__all__ = ["app", "main"]

app = typer.Typer(add_completion=False, no_args_is_help=True,
                  help="Verified training data for models that think with images through code.")
err = Console(stderr=True, soft_wrap=True, highlight=False)
out = Console()


@app.callback()
def _root() -> None:
    """Verified training data for models that think with images through code."""


def _prefect_defaults() -> None:
    # The ephemeral Prefect server takes ~15 s to start on 2 cores; its default timeout is 20 s.
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "120")
    os.environ.setdefault("PREFECT_LOGGING_LEVEL", "INFO")


@app.command()
def build(
    split: Annotated[str, typer.Option(help="Which set to build: sft.")] = "sft",
    n: Annotated[int, typer.Option(help="Number of verified rows to publish.")] = 500,
    out_dir: Annotated[Path, typer.Option("--out", help="Output folder.")] = Path("data/demo"),
    families: Annotated[str, typer.Option(
        "--families", "--family", help="Scene families, comma-separated: chart, geometry, search.",
    )] = "chart",
    teacher: Annotated[str, typer.Option(help="Teacher: scripted (offline).")] = "scripted",
    seed: Annotated[int, typer.Option(help="Run seed: same seed and options, same rows.")] = 0,
    workers: Annotated[int, typer.Option(help="Worker processes (default: all cores).")] = 0,
    shard_size: Annotated[int, typer.Option(help="Scenes per shard.")] = 16,
    questions_per_scene: Annotated[int, typer.Option(help="Questions per scene.")] = 3,
    cell_timeout: Annotated[float, typer.Option(help="Seconds per code cell.")] = 15.0,
    max_side: Annotated[int, typer.Option(
        help="Longest side of visual-search images (1024–4096 px by default, or beyond).")] = 4096,
    clutter: Annotated[float, typer.Option(
        help="Distractor density multiplier for visual search.")] = 1.0,
    overwrite: Annotated[bool, typer.Option(help="Replace an existing build in --out.")] = False,
    resume: Annotated[bool, typer.Option(help="Continue the build in --out.")] = False,
) -> None:
    """Build a verified dataset folder (Hugging Face layout) in --out."""
    from datagen.config import BuildConfig
    from datagen.errors import UsageError
    from datagen.shards import prepare_output

    if split != "sft":
        raise UsageError(f"--split {split!r}: only 'sft' can be built so far")
    if overwrite and resume:
        raise UsageError("--overwrite and --resume exclude each other; pick one")
    options = dict(split=split, n=n, out=out_dir, families=families, teacher=teacher, seed=seed,
                   shard_size=shard_size, questions_per_scene=questions_per_scene,
                   cell_timeout=cell_timeout, max_side=max_side, clutter=clutter,
                   command=shlex.join(["datagen", *sys.argv[1:]]))
    if workers:
        options["workers"] = workers
    cfg = BuildConfig.from_options(**options)
    prepare_output(cfg, overwrite=overwrite, resume=resume)
    _prefect_defaults()
    from flows.build import build as build_flow

    report = build_flow(cfg)
    s = report.stats
    table = Table(title=f"{report.rows} rows published to {report.out}", show_header=False)
    for label, value in [
        ("tasks attempted", s["tasks"]), ("verified", s["verified"]),
        ("acceptance rate", f"{100 * s['acceptance_rate']:.1f} %"),
        ("duplicates removed", s["duplicates"]),
        ("rejects", ", ".join(f"{k} {v}" for k, v in s["reject_reasons"].items()) or "none"),
        ("sandbox mode", s["sandbox_mode"]), ("card", report.out / "README.md"),
        ("rejects file", report.out / "rejects.jsonl"),
    ]:
        table.add_row(label, str(value))
    out.print(table)
    if report.rows < cfg.n:
        err.print(f"warning: only {report.rows} of {cfg.n} rows could be verified", markup=False)


def main() -> None:
    """Console entry point: one-line errors, exit code 2 for usage errors, 1 for failures."""
    try:
        app()  # click's own usage errors (unknown option, bad type) exit with 2 here
    except DatagenError as exc:
        err.print(f"error: {exc}", markup=False)
        raise SystemExit(exc.exit_code) from None


if __name__ == "__main__":
    main()
