"""Kill -9 the real `datagen build` at several points, resume it, get the uninterrupted dataset.

Each run is the real CLI in its own process group, reporting to one real Prefect server (so no
run pays for a temporary server). The first kill comes from outside while shards are being
built; the ones inside publish come from a driver that SIGKILLs the process at a named point
(while the release is staged, and at each step of moving it into the folder), because
publishing 40 rows takes a few milliseconds and cannot be hit reliably from outside. After each
kill the folder must hold one whole release, the previous one or the new one, for every reader.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from tests.support.prefect_server import PrefectServer, prefect_server
from tests.support.releases import whole_release

pytestmark = pytest.mark.slow

_ARGS = ["build", "--shard-size", "4", "--workers", "1", "--cell-timeout", "10"]
_N = 24  # rows of the build
_N_BEFORE = 16  # rows of the release a `--resume --n 24` republishes over

# Runs `datagen` and SIGKILLs itself at DATAGEN_KILL_AT inside publish: a file name (just before
# publish first writes a file of that name, all of them into its staging folder) or a step of
# stage.commit (at its ``_checkpoint``).
_DRIVER = '''
import os, signal, sys
import datagen.release.publish as publish
import datagen.release.stage as stage

point = os.environ["DATAGEN_KILL_AT"]

def die():
    os.kill(os.getpid(), signal.SIGKILL)

if "." in point:
    real_write = publish.write_text
    def write_text(path, text):
        if path.name == point:
            die()
        real_write(path, text)
    publish.write_text = stage.write_text = write_text
else:
    def checkpoint(step):
        if step == point:
            die()
    stage._checkpoint = checkpoint

from datagen.cli import main
sys.argv = ["datagen", *sys.argv[1:]]
main()
'''


@dataclass(frozen=True, slots=True)
class Build:
    """A `datagen build` running in its own process group, its stderr going to ``log``."""

    proc: subprocess.Popen[bytes]
    log: Path


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PrefectServer]:
    home = tmp_path_factory.mktemp("prefect-home")
    with prefect_server(home) as running:
        yield running


def _start(server: PrefectServer, out: Path, *extra: str, n: int = _N,
           kill_at: str | None = None) -> Build:
    env = {**server.env, "PREFECT_LOGGING_LEVEL": "WARNING"}
    if kill_at:
        env["DATAGEN_KILL_AT"] = kill_at
        cmd = [sys.executable, "-c", _DRIVER]
    else:
        cmd = [sys.executable, "-m", "datagen.cli"]
    # A file, not a pipe, for stderr: the pool and sandboxes of a killed run would hold a pipe.
    log = out.parent / f"{out.name}.{time.monotonic_ns()}.log"
    with open(log, "wb") as fh:
        proc = subprocess.Popen([*cmd, *_ARGS, "--n", str(n), "--out", str(out), *extra], env=env,
                                stdout=subprocess.DEVNULL, stderr=fh, start_new_session=True)
    return Build(proc, log)


def _finish(build: Build, timeout: float = 240) -> tuple[int, str]:
    """Wait for the build; its exit code and stderr. Whatever it started dies with it."""
    proc = build.proc
    try:
        proc.wait(timeout)
    finally:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        proc.wait()
    return proc.returncode, build.log.read_text(errors="replace")


def _markers(out: Path) -> dict[Path, int]:
    return {p: p.stat().st_mtime_ns for p in (out / ".datagen" / "shards").glob("*.done.json")}


def _killed(build: Build) -> None:
    """Wait for the build to die by SIGKILL (its pool and sandboxes die with it)."""
    code, stderr = _finish(build)
    assert code == -signal.SIGKILL, stderr[-3000:]


def _without_timings(stats: object) -> object:
    """The stats less what legitimately differs between two runs: timings and the command."""
    if isinstance(stats, dict):
        return {k: _without_timings(v) for k, v in stats.items()
                if k not in ("command", "median_cell_seconds")}
    return stats


def _differences(a: object, b: object, path: str = "") -> list[str]:
    if isinstance(a, dict) and isinstance(b, dict):
        return [d for k in sorted(set(a) | set(b), key=str)
                for d in _differences(a.get(k), b.get(k), f"{path}.{k}")]
    return [] if a == b else [f"{path}: {a!r} != {b!r}"[:300]]


def _table(out: Path):  # noqa: ANN202
    files = sorted((out / "data").glob("*.parquet"))
    assert files, f"no data in {out}"
    return pq.read_table(files)


@pytest.fixture(scope="module")
def reference(server: PrefectServer, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An uninterrupted build of ``_N`` rows."""
    ref = tmp_path_factory.mktemp("reference") / "ref"
    code, stderr = _finish(_start(server, ref))
    assert code == 0, stderr[-3000:]
    return ref


def _assert_same_release(out: Path, ref: Path) -> None:
    got, want = _table(out), _table(ref)
    assert got["id"].to_pylist() == want["id"].to_pylist()
    assert got["messages"].to_pylist() == want["messages"].to_pylist()
    assert got.equals(want)
    # The card's YAML header (configs, features, sizes) is what loaders read.
    header, ref_header = ((d / "README.md").read_text().split("---")[1] for d in (out, ref))
    assert header == ref_header
    stats, ref_stats = (_without_timings(json.loads((d / "stats.json").read_text()))
                        for d in (out, ref))
    assert stats == ref_stats, _differences(stats, ref_stats)
    assert (out / "rejects.jsonl").read_text() == (ref / "rejects.jsonl").read_text()
    plots, ref_plots = ({p.name: p.read_bytes() for p in (d / "plots").iterdir()}
                        for d in (out, ref))
    assert plots == ref_plots


def _stale(out: Path) -> list[str]:
    """What killed publishes left: staging folders (in .datagen/, or in OUT before)."""
    return [p.name for p in [*out.iterdir(), *(out / ".datagen").iterdir()]
            if p.name.startswith((".data-", ".old-", "publish-"))]


def test_killed_anywhere_then_resumed_gives_the_uninterrupted_dataset(
        server: PrefectServer, reference: Path, tmp_path: Path) -> None:
    out, caches = tmp_path / "out", tmp_path / "caches"
    caches.mkdir()
    new = {"sft": _table(reference)["id"].to_pylist()}

    # 1. SIGKILL the whole process group from outside while shards are being built.
    run = _start(server, out)
    deadline = time.monotonic() + 180
    while not _markers(out) and run.proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    os.killpg(run.proc.pid, signal.SIGKILL)
    _killed(run)
    first = _markers(out)
    assert first and not (out / "data").exists()
    for marker in first:  # a shard with a marker is whole
        rows = pq.read_table(marker.with_name(marker.name.replace(".done.json", ".parquet")))
        assert rows.num_rows == json.loads(marker.read_text())["kept"]

    # 2-5. Resume, and die inside this first publish: while staging (stats.json), then at steps
    # of moving the release in. Until the data is in there is no release, then the new one.
    for point in ("stats.json", "bridged", "swapped", "carded"):
        _killed(_start(server, out, "--resume", kill_at=point))
        assert all(_markers(out)[m] == t for m, t in first.items()), point  # never redone
        read = whole_release(out, caches)
        assert read == ((new, new) if point in ("swapped", "carded") else None), point

    # 6. Resume to the end.
    code, stderr = _finish(_start(server, out, "--resume"))
    assert code == 0, stderr[-3000:]
    assert all(_markers(out)[m] == t for m, t in first.items())
    _assert_same_release(out, reference)
    assert not _stale(out)


def test_a_republish_killed_at_any_step_leaves_the_old_or_the_new_release(
        server: PrefectServer, reference: Path, tmp_path: Path) -> None:
    """`--resume` with a larger --n publishes over the finished build's release."""
    out, caches = tmp_path / "out", tmp_path / "caches"
    caches.mkdir()
    code, stderr = _finish(_start(server, out, n=_N_BEFORE))
    assert code == 0, stderr[-3000:]
    read = whole_release(out, caches)
    assert read is not None
    old, new = read[0], {"sft": _table(reference)["id"].to_pylist()}
    assert len(old["sft"]) == _N_BEFORE and old != new

    # rejects.jsonl: while the release is staged. Then each step of _commit; the data swap
    # comes between "bridged" and "swapped".
    for point in ("rejects.jsonl", "cleared", "bridged", "swapped", "carded"):
        _killed(_start(server, out, "--resume", kill_at=point))
        read = whole_release(out, caches)
        assert read is not None, point
        fresh, warm = read
        assert fresh == (new if point in ("swapped", "carded") else old), point
        # Rows cached while the bridge card was up may be served until the new card is in:
        # a whole release, under a card and stats.json that say so (whole_release checks).
        assert warm in (old, new), point

    code, stderr = _finish(_start(server, out, "--resume"))
    assert code == 0, stderr[-3000:]
    _assert_same_release(out, reference)
    assert not _stale(out)


def test_a_killed_build_leaves_no_stale_files_after_resume(
        server: PrefectServer, tmp_path: Path) -> None:
    out = tmp_path / "out"
    _killed(_start(server, out, kill_at="swapped"))
    assert _stale(out)
    code, stderr = _finish(_start(server, out, "--resume"))
    assert code == 0, stderr[-3000:]
    assert not _stale(out)


def test_a_damaged_finished_shard_is_rebuilt_on_resume_and_said_once(
        server: PrefectServer, reference: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    shutil.copytree(reference, out)
    before = _markers(out)
    rows = sorted((out / ".datagen" / "shards").glob("*.parquet"))
    victim = rows[len(rows) // 2]
    data = victim.read_bytes()
    victim.write_bytes(data[: len(data) // 2])  # cut in half, as by a full disk
    code, stderr = _finish(_start(server, out, "--resume"))
    assert code == 0, stderr[-3000:]
    said = [line for line in stderr.splitlines() if "damaged" in line]
    index = int(victim.name.split("-")[1].split(".")[0])
    assert len(said) == 1 and f"[{index}]" in said[0], stderr[-3000:]
    assert "Traceback" not in stderr and "ArrowInvalid" not in stderr
    assert victim.read_bytes() == data  # built again, byte for byte
    after = _markers(out)
    assert [m for m in before if after[m] != before[m]] == [
        victim.with_name(victim.name.replace(".parquet", ".done.json"))]
    _assert_same_release(out, reference)
