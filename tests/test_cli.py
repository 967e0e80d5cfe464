"""The `datagen` command: one-line errors with exit code 2, and a real build end to end."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import datasets
import pytest


def datagen(*args: str, env: dict[str, str] | None = None,
            timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "datagen.cli", *args], capture_output=True,
                          text=True, timeout=timeout, env=env)


@pytest.mark.parametrize(("args", "message"), [
    (["--family", "maps"], "unknown family 'maps'"),
    (["--n", "0"], "--n: must be a positive whole number"),
    (["--n", "-3"], "--n: must be a positive whole number"),
    (["--split", "eval"], "--split"),
    (["--teacher", "oracle"], "unknown teacher 'oracle'"),
    (["--resume", "--overwrite"], "exclude each other"),
])
def test_bad_options_give_one_line_and_exit_2_and_write_nothing(
        tmp_path: Path, args: list[str], message: str) -> None:
    out = tmp_path / "out"
    res = datagen("build", "--out", str(out), *args)
    assert res.returncode == 2, res.stderr
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0], res.stderr
    assert "Traceback" not in res.stderr
    assert not out.exists()


def test_unwritable_and_existing_out_dirs_are_usage_errors(tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    res = datagen("build", "--out", str(blocker / "sub"))
    assert res.returncode == 2 and "not writable" in res.stderr, res.stderr
    existing = tmp_path / "existing"
    existing.mkdir()
    (existing / "keep.txt").write_text("mine")
    res = datagen("build", "--out", str(existing))
    assert res.returncode == 2 and "--resume" in res.stderr and "--overwrite" in res.stderr
    assert sorted(p.name for p in existing.iterdir()) == ["keep.txt"]


@pytest.mark.parametrize("option", ["--base-url", "--weak-base-url"])
def test_a_url_with_a_password_is_refused_without_echoing_it(tmp_path: Path,
                                                             option: str) -> None:
    url = "http://alice:hunter2-s3cret@llm.example:8000/v1"
    extra = ["--weak-model", "w"] if option == "--weak-base-url" else []
    res = datagen("build", "--out", str(tmp_path / "out"), "--teacher", "openai", "--model",
                  "m", *extra, option, url, env={**os.environ, "OPENAI_API_KEY": "k"})
    assert res.returncode == 2 and "no credentials in the URL" in res.stderr, res.stderr
    assert "http://llm.example:8000/v1" in res.stderr  # which URL, without its secret
    assert "hunter2" not in res.stderr + res.stdout and "alice" not in res.stderr


def test_a_models_code_never_runs_unjailed_unless_allowed(tmp_path: Path) -> None:
    env = {**os.environ, "OPENAI_API_KEY": "k", "DATAGEN_BWRAP": "/nonexistent/bwrap"}
    out = tmp_path / "out"
    res = datagen("build", "--out", str(out), "--teacher", "openai", "--model", "m", env=env)
    assert res.returncode == 2, res.stderr
    assert "bubblewrap jail" in res.stderr and "--allow-process-mode" in res.stderr
    assert not out.exists()


def test_unknown_option_is_a_usage_error() -> None:
    res = datagen("build", "--colour", "red")
    assert res.returncode == 2 and "No such option" in res.stderr


def test_build_end_to_end_then_resume(tmp_path: Path) -> None:
    """The README's main command, small: real Prefect, real sandbox, a loadable dataset."""
    out = tmp_path / "demo"
    env = {**os.environ, "PREFECT_HOME": str(tmp_path / "prefect")}
    args = ["build", "--split", "sft", "--n", "30", "--out", str(out), "--shard-size", "6",
            "--resume"]
    res = datagen(*args, env=env, timeout=300)
    assert res.returncode == 0, res.stderr[-3000:]
    assert "30 sft rows published" in res.stdout
    ds = datasets.load_dataset(str(out), "sft", split="train")
    assert len(ds) == 30 and ds[0]["images"][0].mode in ("RGB", "RGBA")
    markers = {p: p.stat().st_mtime_ns for p in (out / ".datagen" / "shards").glob("*.done.json")}
    first = (out / "data" / "sft-00000-of-00001.parquet").read_bytes()

    res = datagen(*args, env=env, timeout=300)
    assert res.returncode == 0, res.stderr[-3000:]
    assert "resuming" in res.stderr + res.stdout
    again = {p: p.stat().st_mtime_ns for p in (out / ".datagen" / "shards").glob("*.done.json")}
    assert again == markers  # no shard was rebuilt
    assert (out / "data" / "sft-00000-of-00001.parquet").read_bytes() == first


@pytest.mark.parametrize(("repo", "message"), [
    ("org/name", "no Hugging Face token"),
    ("not a repo", "--push 'not a repo': give a dataset repo id as ORG/NAME"),
])
def test_push_without_a_token_fails_before_any_work(tmp_path: Path, repo: str,
                                                    message: str) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("HF_")}
    env.update(HF_HOME=str(tmp_path / "hf"), HF_HUB_OFFLINE="1")
    out = tmp_path / "out"
    res = datagen("build", "--out", str(out), "--push", repo, env=env)
    assert res.returncode == 2 and message in res.stderr, res.stderr
    assert "Traceback" not in res.stderr and not out.exists()


def test_split_all_from_the_command_line_then_validate(tmp_path: Path) -> None:
    import json

    out = tmp_path / "both"
    env = {**os.environ, "PREFECT_HOME": str(tmp_path / "prefect")}
    res = datagen("build", "--split", "all", "--n", "8", "--families", "geometry",
                  "--shard-size", "2", "--out", str(out), "--json", env=env, timeout=300)
    assert res.returncode == 0, res.stderr[-3000:]
    summary = json.loads(res.stdout)  # --json: one JSON line and nothing else on stdout
    assert summary["rows"] == {"sft": 8, "rl": 8}
    assert set(summary["stats"]["splits"]) == {"sft", "rl"}
    res = datagen("validate", str(out), env=env, timeout=120)
    assert res.returncode == 0 and "ok (8 rl rows, 8 sft rows" in res.stdout, res.stdout
