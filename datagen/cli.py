"""``datagen``: the command line.

Usage errors exit with code 2 and one line on stderr; run failures exit with 1.
"""

from __future__ import annotations

import os
import shlex
import sys
from pathlib import Path
from typing import Annotated, Any

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


def _with_config_file(ctx: typer.Context, path: Path) -> dict[str, Any]:
    """The command's options, with those not given on the command line taken from ``path``.

    The file is YAML with the same option names (``shard-size`` or ``shard_size``).
    """
    import yaml

    from datagen.errors import UsageError

    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except (OSError, yaml.YAMLError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) else "not valid YAML"
        raise UsageError(f"--config {path}: cannot read it ({reason})") from None
    if not isinstance(data, dict):
        raise UsageError(f"--config {path}: expected a mapping of option names to values")
    params = dict(ctx.params)
    for key, value in data.items():
        name = {"out": "out_dir"}.get(str(key).replace("-", "_"), str(key).replace("-", "_"))
        if name not in params or name == "config":
            raise UsageError(f"--config {path}: unknown option {key!r}")
        source = ctx.get_parameter_source(name)  # typer ships its own click: compare names
        if source is None or source.name in ("DEFAULT", "DEFAULT_MAP"):
            params[name] = value
    return params


@app.command()
def build(
    ctx: typer.Context,
    split: Annotated[str, typer.Option(help="Which set to build: sft.")] = "sft",
    n: Annotated[int, typer.Option(help="Number of verified rows to publish.")] = 500,
    out_dir: Annotated[Path, typer.Option("--out", help="Output folder.")] = Path("data/demo"),
    families: Annotated[str, typer.Option(
        "--families", "--family", help="Scene families, comma-separated: chart, geometry, search.",
    )] = "chart",
    teacher: Annotated[str, typer.Option(
        help="Teacher: scripted (offline) or openai (an OpenAI-compatible endpoint).",
    )] = "scripted",
    model: Annotated[str, typer.Option(help="Model name for --teacher openai.")] = "",
    base_url: Annotated[str | None, typer.Option(
        help="OpenAI-compatible endpoint, e.g. http://localhost:8000/v1 "
             "(default: OpenAI). The key is read from OPENAI_API_KEY.")] = None,
    attempts: Annotated[int | None, typer.Option(
        help="Tries per task; the first verified one is kept (default 1 scripted, 4 openai).",
    )] = None,
    temperature: Annotated[float, typer.Option(help="Sampling temperature.")] = 0.7,
    concurrency: Annotated[int, typer.Option(
        help="API requests in flight per worker process.")] = 8,
    rpm: Annotated[int, typer.Option(help="Requests per minute, 0 = unlimited.")] = 0,
    tpm: Annotated[int, typer.Option(help="Tokens per minute, 0 = unlimited.")] = 0,
    max_cost: Annotated[float, typer.Option(
        help="Stop paying for new calls after this many USD, 0 = unlimited.")] = 0.0,
    price_in: Annotated[float | None, typer.Option(
        help="USD per 1M prompt tokens (default: known models' list price).")] = None,
    price_out: Annotated[float | None, typer.Option(
        help="USD per 1M completion tokens.")] = None,
    request_timeout: Annotated[float, typer.Option(help="Seconds per API request.")] = 120.0,
    weak_model: Annotated[str, typer.Option(
        help="A weaker model that answers each task without tools; its pass rate sets the "
             "difficulty (any teacher).")] = "",
    weak_base_url: Annotated[str | None, typer.Option(
        help="Endpoint of --weak-model (default: --base-url).")] = None,
    weak_samples: Annotated[int, typer.Option(
        help="Answers of --weak-model per task.")] = 4,
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
    config: Annotated[Path | None, typer.Option(
        help="YAML file of options (same names); the command line wins.")] = None,
) -> None:
    """Build a verified dataset folder (Hugging Face layout) in --out."""
    from datagen.config import BuildConfig
    from datagen.errors import UsageError
    from datagen.shards import prepare_output

    p = _with_config_file(ctx, config) if config is not None else dict(ctx.params)
    if p["split"] != "sft":
        raise UsageError(f"--split {p['split']!r}: only 'sft' can be built so far")
    if p["overwrite"] and p["resume"]:
        raise UsageError("--overwrite and --resume exclude each other; pick one")
    options = {k: v for k, v in p.items()
               if k not in ("out_dir", "workers", "overwrite", "resume", "config")}
    options.update(out=p["out_dir"], command=shlex.join(["datagen", *sys.argv[1:]]))
    if p["workers"]:
        options["workers"] = p["workers"]
    cfg = BuildConfig.from_options(**options)
    if (cfg.teacher == "openai" or cfg.weak_model) and not os.environ.get("OPENAI_API_KEY"):
        what = "--teacher openai" if cfg.teacher == "openai" else "--weak-model"
        raise UsageError(f"{what} needs an API key: set OPENAI_API_KEY (for a local "
                         "server any value works, e.g. OPENAI_API_KEY=none)")
    prepare_output(cfg, overwrite=p["overwrite"], resume=p["resume"])
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
        ("sandbox mode", s["sandbox_mode"]), *_llm_rows(s.get("llm")),
        *_weak_rows(s.get("weak"), s.get("trivial_rows", 0)),
        ("card", report.out / "README.md"), ("rejects file", report.out / "rejects.jsonl"),
    ]:
        table.add_row(label, str(value))
    out.print(table)
    if any(s.get(k) and s[k]["budget_spent"] for k in ("llm", "weak")):
        err.print(f"stopped early: --max-cost {cfg.max_cost:g} USD was spent; finished shards "
                  "were published (resume with a larger --max-cost to continue; paid calls are "
                  "cached)", markup=False)
    if report.rows < cfg.n:
        err.print(f"warning: only {report.rows} of {cfg.n} rows could be verified", markup=False)


def _llm_rows(llm: dict[str, Any] | None) -> list[tuple[str, object]]:
    if not llm:
        return []
    return [
        ("teacher model", f"{llm['model']} at {llm['endpoint']}"),
        ("tries", f"{llm['attempts']} (at most {llm['attempts_per_task']} per task)"),
        ("API calls", f"{llm['api_calls']} paid, {llm['cached_calls']} cached"),
        ("tokens", f"{llm['prompt_tokens']} prompt, {llm['completion_tokens']} completion"),
        ("cost", f"{llm['cost_usd']:.4f} USD" + (f" of {llm['max_cost']:g} allowed"
                                                  if llm["max_cost"] else "")),
    ]


def _weak_rows(weak: dict[str, Any] | None, trivial: int) -> list[tuple[str, object]]:
    if not weak:
        return []
    return [
        ("weak model", f"{weak['model']} at {weak['endpoint']}, {weak['samples']} per task"),
        ("weak model calls", f"{weak['api_calls']} paid, {weak['cached_calls']} cached, "
                             f"{weak['cost_usd']:.4f} USD"),
        ("trivial rows", trivial),
    ]


def main() -> None:
    """Console entry point: one-line errors, exit code 2 for usage errors, 1 for failures."""
    try:
        app()  # click's own usage errors (unknown option, bad type) exit with 2 here
    except DatagenError as exc:
        err.print(f"error: {exc}", markup=False)
        raise SystemExit(exc.exit_code) from None


if __name__ == "__main__":
    main()
