"""``datagen``: the command line.

Usage errors exit with code 2 and one line on stderr; run failures exit with 1.
"""

from __future__ import annotations

import contextlib
import json
import os
import shlex
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from datagen.build_options import config_from, with_build_options
from datagen.errors import DatagenError

if TYPE_CHECKING:
    from datagen.config import BuildConfig

__all__ = ["app", "main"]

app = typer.Typer(add_completion=False, no_args_is_help=True,
                  help="Verified training data for models that think with images through code.")
err = Console(stderr=True, soft_wrap=True, highlight=False)
out = Console()
# The dataset was published but holds fewer rows than --n asked for (see `datagen build`).
EXIT_SHORT = 3


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
    # Any name of an option (--family, --json) or its parameter (json_out) names it.
    names = {opt.lstrip("-").replace("-", "_"): param.name
             for param in ctx.command.params for opt in [*param.opts, f"--{param.name}"]}
    params = dict(ctx.params)
    for key, value in data.items():
        name = names.get(str(key).replace("-", "_"))
        if name is None or name == "config":
            raise UsageError(f"--config {path}: unknown option {key!r}")
        source = ctx.get_parameter_source(name)  # typer ships its own click: compare names
        if source is None or source.name in ("DEFAULT", "DEFAULT_MAP"):
            params[name] = value
    return params


@app.command()
@with_build_options
def build(
    ctx: typer.Context,
    *,
    push: Annotated[str | None, typer.Option(
        "--push", help="After publishing, upload the folder to this Hub dataset repo "
                       "(ORG/NAME).")] = None,
    private: Annotated[bool, typer.Option(help="With --push: create the repo private.")] = False,
    overwrite: Annotated[bool, typer.Option(help="Replace an existing build in --out.")] = False,
    resume: Annotated[bool, typer.Option(help="Continue the build in --out.")] = False,
    config: Annotated[Path | None, typer.Option(
        help="YAML file of options (same names); the command line wins.")] = None,
    runner: Annotated[str, typer.Option(
        help="Where shards are built: local (a process pool) or dask (needs the dask extra).",
    )] = "local",
    address: Annotated[str | None, typer.Option(
        help="Dask scheduler for --runner dask, e.g. tcp://10.0.0.5:8786 (default: a local "
             "cluster of --workers processes).")] = None,
    quiet: Annotated[bool, typer.Option(
        help="No progress bar and no summary table; warnings and errors only.")] = False,
    json_out: Annotated[bool, typer.Option(
        "--json", help="Print one JSON line (out, rows, files, stats) on stdout and nothing "
                       "else there.")] = False,
    **options: Any,
) -> None:
    """Build a verified dataset folder (Hugging Face layout) in --out.

    Exit codes: 0 done, 1 the run failed, 2 bad options, 3 published fewer rows than --n.
    """
    # The options above say how this run goes; BuildConfig's fields, made into options by
    # with_build_options, say what it makes and arrive in **options. A --config file may give
    # any of them that the command line did not, so all are read back from ``given``.
    from datagen.errors import UsageError
    from datagen.pipeline.shards import prepare_output
    from datagen.release.select import check_sources
    from datagen.teachers.chat_api import openai_api_key

    given = _with_config_file(ctx, config) if config is not None else dict(ctx.params)
    push, private = given["push"], given["private"]
    overwrite, resume = given["overwrite"], given["resume"]
    runner, address = given["runner"], given["address"]
    quiet, json_out = given["quiet"], given["json_out"]
    if overwrite and resume:
        raise UsageError("--overwrite and --resume exclude each other; pick one")
    cfg = config_from(given, command=shlex.join(["datagen", *sys.argv[1:]]))
    # Everything that can be refused is checked before the output folder is touched.
    if cfg.teacher == "openai" or cfg.weak_model:
        openai_api_key("--teacher openai" if cfg.teacher == "openai" else "--weak-model")
    check_sources(cfg)
    _check_jail_for_untrusted_code(cfg)
    if push:
        from datagen.release.hub import check_push

        check_push(push)
    prepare_output(cfg, overwrite=overwrite, resume=resume)
    show_progress = not (quiet or json_out) and out.is_terminal
    if show_progress or quiet or json_out:
        # Prefect's console logs would tear the bar or clutter scripts; its API logs stay.
        os.environ.setdefault("PREFECT_LOGGING_HANDLERS_CONSOLE_LEVEL", "WARNING")
    _prefect_defaults()
    from flows.build import run_build

    with _progress(cfg, show_progress, runner):
        report = run_build(cfg, runner, address)
    _print_report(cfg, report, quiet=quiet, json_out=json_out)
    if push:
        from datagen.release.hub import push_folder

        url = push_folder(cfg.out, push, private=private)
        (err if json_out else out).print(f"pushed {cfg.out} to {push}: {url}", markup=False)
    if any(rows < cfg.n for rows in report.by_split.values()):
        raise typer.Exit(EXIT_SHORT)


def _check_jail_for_untrusted_code(cfg: BuildConfig) -> None:
    """A model's code runs only in the jail, unless the user allows process mode."""
    from datagen.errors import UsageError
    from datagen.pipeline.shards import runs_untrusted_code
    from datagen.sandbox.bwrap import probe

    if not runs_untrusted_code(cfg) or cfg.allow_process_mode:
        return
    reason = probe()
    if reason is not None:
        raise UsageError(f"--teacher {cfg.teacher} runs code a model wrote, which runs only in "
                         f"the bubblewrap jail, and the jail cannot start here ({reason}); "
                         "pass --allow-process-mode to run it unjailed as you, if you trust it")


def _print_report(cfg: BuildConfig, report: Any, quiet: bool, json_out: bool) -> None:
    """What a build says when it is done: the summary (or one JSON line) and its warnings."""
    s = report.stats
    if json_out:
        sys.stdout.write(json.dumps({"out": str(report.out), "rows": report.by_split,
                                     "requested": cfg.n, "files": report.files, "stats": s},
                                    sort_keys=True, default=str) + "\n")
    elif not quiet:
        out.print(_summary_table(report))
    if any(s.get(k) and s[k]["budget_spent"] for k in ("llm", "weak")):
        err.print(f"stopped early: --max-cost {cfg.max_cost:g} USD was spent; finished shards "
                  "were published (resume with a larger --max-cost to continue; paid calls are "
                  "cached)", markup=False)
    for split, rows in report.by_split.items():
        if rows < cfg.n:
            err.print(f"warning: only {rows} of {cfg.n} {split} rows could be published",
                      markup=False)


def _summary_table(report: Any) -> Table:
    """The run summary: per split its rows and funnel, then what was removed and where."""
    s = report.stats
    rows = ", ".join(f"{n} {split}" for split, n in report.by_split.items())
    table = Table(title=f"{rows} rows published to {report.out}", show_header=False)
    sft = s["splits"].get("sft")
    if sft:
        for label, value in [
            ("SFT tasks attempted", sft["tasks"]), ("verified", sft["verified"]),
            ("acceptance rate", f"{100 * sft['acceptance_rate']:.1f} %"),
            ("rejects", ", ".join(f"{k} {v}" for k, v in sft["reject_reasons"].items())
             or "none"),
            ("sandbox mode", s["sandbox_mode"] + (f" ({s['sandbox']})" if s.get("sandbox")
                                                  else "")),
        ]:
            table.add_row(label, str(value))
    rl = s["splits"].get("rl")
    if rl:
        table.add_row("RL tasks posed", str(rl["tasks"]))
        table.add_row("RL difficulty", ", ".join(f"{k} {v}" for k, v in
                                                 rl["by_difficulty"].items()))
    removed = ", ".join(f"{k} {v}" for k, v in s["removed"].items() if v) or "none"
    table.add_row("removed", removed)
    for label, value in [*_llm_rows(s.get("llm")),
                         *_weak_rows(s.get("weak"), sum(c.get("trivial_rows", 0)
                                                        for c in s["splits"].values())),
                         ("card", report.out / "README.md"),
                         ("rejects file", report.out / "rejects.jsonl")]:
        table.add_row(label, str(value))
    return table


def _llm_rows(llm: dict[str, Any] | None) -> list[tuple[str, object]]:
    """The summary's rows on the LLM teacher (none for the scripted one)."""
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
    """The summary's rows on the weak model (none without --weak-model)."""
    if not weak:
        return []
    return [
        ("weak model", f"{weak['model']} at {weak['endpoint']}, {weak['samples']} per task"),
        ("weak model calls", f"{weak['api_calls']} paid, {weak['cached_calls']} cached, "
                             f"{weak['cost_usd']:.4f} USD"),
        ("trivial rows", trivial),
    ]


def _progress(cfg: BuildConfig, show: bool,
              runner: str) -> contextlib.AbstractContextManager[object]:
    """A live progress bar over the build's tasks when ``show``, else nothing.

    The local pool reports each finished task; on Dask the bar moves as shards finish.
    """
    if not show:
        return contextlib.nullcontext()
    from datagen.run.progress import BuildProgress
    from flows.shard_pool import running_shards

    running = (lambda: running_shards(cfg)) if runner == "local" else None
    return BuildProgress(cfg, out, running=running)


@app.command()
def deploy(
    root: Annotated[Path, typer.Option(
        help="Folder that holds one dataset folder per deployment.")] = Path("data/scheduled"),
    only: Annotated[list[str] | None, typer.Option(
        "--only", help="Serve only this deployment (repeatable): nightly-rl, weekly-sft.",
    )] = None,
    limit: Annotated[int, typer.Option(help="Flow runs at once on this machine.")] = 1,
    pool: Annotated[str | None, typer.Option(
        help="Register the deployments (and shard-range) with this work pool and return, "
             "instead of serving them here.")] = None,
) -> None:
    """Serve the scheduled builds on the Prefect server at PREFECT_API_URL until stopped.

    With --pool, register them with a work pool instead; its workers run them.
    """
    from datagen.errors import UsageError

    _prefect_defaults()
    from prefect.settings import PREFECT_API_URL

    if not PREFECT_API_URL.value():
        raise UsageError("deploy needs a Prefect server that keeps the schedules: start one "
                         "(prefect server start) and set PREFECT_API_URL, e.g. "
                         "http://127.0.0.1:4200/api")
    if limit < 1:
        raise UsageError(f"--limit: must be a positive whole number (got {limit})")
    if pool:
        from flows.deploy import deploy_to_pool

        ids = deploy_to_pool(pool, root, only)
        out.print(f"{len(ids)} deployments registered with work pool {pool!r}", markup=False)
        return
    from flows.deploy import serve_deployments

    serve_deployments(root, only, limit)


@app.command()
def validate(
    path: Annotated[Path, typer.Argument(help="A dataset folder or one parquet file.")],
    limit: Annotated[int, typer.Option(help="Problems to print (0 = all).")] = 50,
) -> None:
    """Check an SFT or RL set's format; exit code 1 with a per-row report if it has problems."""
    from datagen.check.validate import validate_path
    from datagen.errors import RunError

    report = validate_path(path)
    rows = ", ".join(f"{n} {c} rows" for c, n in report.rows.items()) or "no rows"
    shown = report.problems if limit <= 0 else report.problems[:limit]
    for problem in shown:
        out.print(str(problem), markup=False, highlight=False, soft_wrap=True)
    if len(shown) < len(report.problems):
        out.print(f"... and {len(report.problems) - len(shown)} more", markup=False)
    if not report.ok:
        raise RunError(f"{path}: {len(report.problems)} problems in {rows}")
    out.print(f"{path}: ok ({rows} in {len(report.files)} files)", markup=False, soft_wrap=True)


@app.command()
def export(
    path: Annotated[Path, typer.Argument(help="A dataset folder built by datagen.")],
    to: Annotated[str, typer.Option(help="Layout: codedance, trl or llamafactory.")],
    out_dir: Annotated[Path | None, typer.Option(
        "--out", help="Output folder (default: PATH-<to>).")] = None,
    binary_images: Annotated[bool, typer.Option(
        help="codedance: store images as plain bytes, as the public CodeDance cards do.")] = True,
) -> None:
    """Write the set in another trainer's layout to a new folder."""
    from datagen.release.export import export_set

    dst = export_set(path, to, out_dir, binary_images=binary_images)
    out.print(f"exported {path} as {to} to {dst}", markup=False)


@app.command()
def push(
    path: Annotated[Path, typer.Argument(help="A dataset folder built by datagen.")],
    repo_id: Annotated[str, typer.Argument(help="Dataset repo on the Hub, ORG/NAME.")],
    private: Annotated[bool, typer.Option(help="Create the repo private.")] = False,
) -> None:
    """Validate the folder and upload it to the Hub in one commit (token: HF_TOKEN or login)."""
    from datagen.release.hub import push_folder

    url = push_folder(path, repo_id, private=private)
    out.print(f"pushed {path} to {repo_id}: {url}", markup=False)


@app.command()
def preview(
    path: Annotated[str, typer.Argument(help="A dataset folder, or a Hub dataset id ORG/NAME.")],
    n: Annotated[int, typer.Option(help="Samples to show, spread evenly over the set.")] = 24,
    rejects: Annotated[bool, typer.Option(
        "--rejects", help="Show rejected traces and why (from rejects.jsonl).")] = False,
    family: Annotated[str | None, typer.Option(
        help="Only this family: chart, geometry, search.")] = None,
    task_type: Annotated[str | None, typer.Option(
        help="Only task types starting with this, e.g. chart.stacked.")] = None,
    out_file: Annotated[Path, typer.Option(
        "--out", help="The HTML file to write.")] = Path("preview.html"),
) -> None:
    """Write one self-contained HTML page of samples and their traces; print its path."""
    from datagen.inspect.preview import write_preview

    report = write_preview(path, out_file, n=n, rejects=rejects, family=family,
                           task_type=task_type)
    err.print(f"{report.shown} of {report.matched} samples", markup=False, soft_wrap=True)
    out.print(str(report.path), markup=False, highlight=False, soft_wrap=True)


@app.command()
def stats(
    path: Annotated[str, typer.Argument(help="A dataset folder, or a Hub dataset id ORG/NAME.")],
    split: Annotated[str, typer.Option(help="Which set: sft or rl.")] = "sft",
    plots: Annotated[Path | None, typer.Option(
        help="Folder for the PNG plots (default: PATH/plots, or ./plots for a Hub id).")] = None,
) -> None:
    """Print the set's tables (task mix, difficulty, funnel, ...) and write its plots."""
    from datagen.inspect.stats import plot_summary, summarize, summary_tables
    from datagen.reader import open_published

    published = open_published(path, split)
    summary = summarize(published)
    for table in summary_tables(summary):
        out.print(table)
    folder = plots or (published.folder / "plots" if published.folder else Path("plots"))
    written = plot_summary(summary, folder)
    out.print(f"{len(written)} plots in {folder}", markup=False, highlight=False, soft_wrap=True)


@app.command()
def verify(
    path: Annotated[str, typer.Argument(help="A dataset folder, or a Hub dataset id ORG/NAME.")],
    cell_timeout: Annotated[float, typer.Option(help="Seconds per code cell.")] = 15.0,
    workers: Annotated[int, typer.Option(
        help="Rows re-run at a time (default: all cores).")] = 0,
    allow_process_mode: Annotated[bool, typer.Option(
        help="Run the code without the bubblewrap jail when it cannot start (only for a set "
             "whose code you trust).")] = False,
    limit: Annotated[int, typer.Option(help="Mismatches to print (0 = all).")] = 50,
) -> None:
    """Re-run every SFT trace in the sandbox; re-check observations, images and answers."""
    from rich.progress import Progress

    from datagen.check.verify import reverify, verify_sandbox
    from datagen.errors import RunError
    from datagen.reader import open_published

    published = open_published(path, "sft")
    with verify_sandbox(cell_timeout, allow_process_mode) as sandbox, \
            Progress(console=err, transient=True) as bar:
        task = bar.add_task("re-running traces", total=len(published))
        report = reverify(published, sandbox, workers or os.cpu_count() or 1,
                          progress=lambda done: bar.update(task, completed=done))
    shown = report.mismatches if limit <= 0 else report.mismatches[:limit]
    for m in shown:
        out.print(f"row {m.index} ({m.id}): {m.what}: {m.detail}", markup=False,
                  highlight=False, soft_wrap=True)
    if len(shown) < len(report.mismatches):
        out.print(f"... and {len(report.mismatches) - len(shown)} more", markup=False)
    out.print(f"{report.rows} rows, {report.cells} cells, {report.images} images re-run "
              f"(sandbox mode {report.sandbox_mode})", markup=False, soft_wrap=True)
    if report.answers < report.rows:
        out.print(f"{report.rows - report.answers} rows have no gold answer (no answer column): "
                  "their final answers were not checked", markup=False, soft_wrap=True)
    if not report.ok:
        bad = report.failed_rows
        raise RunError(f"{path}: {len(bad)} of {report.rows} rows do not re-verify (rows "
                       f"{', '.join(map(str, bad[:20]))}{' ...' if len(bad) > 20 else ''})")
    out.print(f"{path}: every row re-verified", markup=False, highlight=False, soft_wrap=True)


def main() -> None:
    """Console entry point: one-line errors, exit code 2 for usage errors, 1 for failures."""
    try:
        app()  # click's own usage errors (unknown option, bad type) exit with 2 here
    except DatagenError as exc:
        err.print(f"error: {exc}", markup=False)
        raise SystemExit(exc.exit_code) from None


if __name__ == "__main__":
    main()
