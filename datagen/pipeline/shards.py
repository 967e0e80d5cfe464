"""Shards: the unit of work, caching and resume.

A shard is ``shard_size`` consecutive scenes of one split and family. ``run_shard`` makes its
scenes and poses the questions; for the SFT split it rolls out and verifies every task, for the
RL split the posed tasks are the prompts. It writes four files under ``OUT/.datagen/shards/``:
the rows (parquet), the rejects (JSON lines), the rows' dedup signatures (``.sig.npz``) and,
last, a marker (JSON) with the counts and the SHA-256 of the three files. Each write is atomic
and the marker is written only after the data, so a shard with a marker is complete and a
crashed run resumes by skipping it. A file damaged afterwards (cut short by a full disk, a bad
copy) no longer matches its marker: ``damaged_shards`` finds it and drops the marker, and the
shard is built again (shards are deterministic, so the rows come out the same).
The same config and index always give byte-identical row files (for an LLM teacher: given its
response cache).

A sampling teacher (an LLM) gets up to ``cfg.attempts`` tries per task (the first verified one is
kept, every failed one goes to the rejects), and a shard's tasks run in ``cfg.concurrency``
threads; rows keep the order of the sequential loop.

With ``--weak-model`` (any teacher), a weak model first answers every task of the shard
``--weak-samples`` times without tools (``teachers.weak``); its pass rate labels the row's
difficulty and marks the tasks it always solves as trivial.
"""

from __future__ import annotations

import functools
import hashlib
import io
import json
import logging
import os
import shutil
import threading
import time
from collections import Counter
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import pyarrow.parquet as pq
from PIL import Image

from datagen.atomic import atomic_path, write_text
from datagen.check.verify import Verdict, verify_trajectory
from datagen.config import RL_SCENE_BASE, BuildConfig
from datagen.errors import OutputExistsError, UsageError
from datagen.paths import cache_dir, manifest_file, shard_dir, shard_stem, work_dir
from datagen.pipeline.rollout import rollout
from datagen.pipeline.rows import reject_record, rl_row, rl_table, sft_row, sft_table
from datagen.records import Task, Trajectory
from datagen.release.dedup import Signatures, signatures
from datagen.sandbox import Sandbox
from datagen.scenes.base import failed_rules
from datagen.scenes.registry import get_family
from datagen.teachers import get_teacher
from datagen.teachers.base import SamplingTeacher, Teacher, Usage
from datagen.teachers.weak import WeakSolver, difficulty_of

__all__ = ["MarkerCache", "ShardSummary", "TaskEvent", "completed_shards", "damaged_shards",
           "prepare_output", "run_shard", "runs_untrusted_code", "shard_files",
           "shard_signatures"]


@dataclass(slots=True)
class ShardSummary:
    """What a finished shard holds; stored as its marker."""

    index: int
    content_key: str
    split: str
    scenes: int
    tasks: int
    kept: int
    # Per kept row: its difficulty, and whether a weak model always solved it.
    difficulties: list[str]
    trivial: list[bool]
    # Per kept row, for the card's histograms: the image's long side, the target's area share.
    sides: list[int]
    target_areas: list[float | None]
    reasons: dict[str, int]
    styles: dict[str, int]
    seconds: float
    sandbox_mode: str
    cell_seconds: list[float] = field(default_factory=list)
    sandbox_walls: str = ""  # which bwrap, the seccomp filter, the memory limit (Sandbox.walls)
    # SHA-256 of the shard's files ("rows", "rejects", "signatures"); empty in old markers.
    checksums: dict[str, str] = field(default_factory=dict)
    # Grounding checks per task type: {"twin": {"pass": n, "fail": n, "na": n}, ...}, over
    # every try whose answer was right (so before any was rejected for them).
    grounding: dict[str, dict[str, dict[str, int]]] = field(default_factory=dict)
    grounding_seconds: float = 0.0  # what those checks cost, in all
    # Ambiguity checks (``Family.rules``), by "family.rule": the tasks each applied to, the
    # tasks it rejected when they were posed, and per kept row the rules it fails (none: a
    # rejected task never becomes a row; the card shows that published rows pass them all).
    ambiguity_checked: dict[str, int] = field(default_factory=dict)
    ambiguity_rejected: dict[str, int] = field(default_factory=dict)
    ambiguity_failed: list[list[str]] = field(default_factory=list)
    # Tries run (tasks x attempts) and, for an LLM teacher, its calls (cached ones are free).
    attempts: int = 0
    api_calls: int = 0
    cached_calls: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost_usd: float = 0.0
    # The weak model's calls (--weak-model), counted apart from the teacher's.
    weak_calls: int = 0
    weak_cached_calls: int = 0
    weak_prompt_tokens: int = 0
    weak_completion_tokens: int = 0
    weak_cost_usd: float = 0.0


@dataclass(frozen=True, slots=True)
class TaskEvent:
    """One finished task of a shard, as ``run_shard(on_task=...)`` reports it.

    A task is finished when its tries are verified (SFT) or its prompt is made (RL: with
    ``--weak-model``, as soon as the weak model's samples of it are answered). The counts
    add up to the shard's summary: ``kept`` rows to ``ShardSummary.kept``, ``rejected`` to its
    failed tries (the rejects file), so a progress display can move per task and still agree
    with the finished shard.
    """

    shard: int  # the shard's index
    position: int  # the task's place in the shard; events may come in another order
    tasks: int  # the shard's number of tasks
    kept: bool  # it became a row
    reason: str  # "verified", "posed" (an RL prompt) or the last failed try's reason
    attempts: int  # tries rolled out (0 for an RL prompt)

    @property
    def rejected(self) -> int:
        """The task's failed tries, each a line of the rejects file."""
        return self.attempts - (1 if self.kept and self.attempts else 0)


def _paths(cfg: BuildConfig, index: int) -> tuple[Path, Path, Path, Path]:
    base = shard_stem(cfg.out, cfg.locate(index).split, index)
    return base.with_suffix(".parquet"), base.with_suffix(".rejects.jsonl"), \
        base.with_suffix(".sig.npz"), base.with_suffix(".done.json")


def prepare_output(cfg: BuildConfig, overwrite: bool, resume: bool) -> None:
    """Check the output folder and record the build's manifest in it.

    A folder that exists needs ``--overwrite`` (start again) or ``--resume`` (continue a build
    with the same content options); anything else is refused before any work is done.
    ``--overwrite`` keeps the LLM response cache: it is keyed by the full request, so a rebuild
    pays only for requests it has not made before.
    """
    out = cfg.out
    manifest_path = manifest_file(out)
    if out.exists() and not out.is_dir():
        raise UsageError(f"--out {out} is a file; give a folder path")
    present = out.exists() and any(out.iterdir())
    if present and overwrite:
        if not manifest_path.exists():
            raise UsageError(f"--out {out} holds files that datagen did not write; refusing to "
                             "delete them with --overwrite. Choose another folder.")
        cache = cache_dir(out)
        kept = out.parent / f".{out.name}.cache-{os.getpid()}"
        if cache.is_dir():
            os.replace(cache, kept)
        shutil.rmtree(out)
        if kept.is_dir():
            work_dir(out).mkdir(parents=True)
            os.replace(kept, cache)
    elif present and resume:
        if not manifest_path.exists():
            raise UsageError(f"--out {out} is not a datagen build, so it cannot be resumed; "
                             "choose an empty or new folder.")
        old = json.loads(manifest_path.read_text())
        if old.get("content_key") != cfg.content_key():
            raise UsageError(f"--out {out} was built with other options ({old.get('options')}); "
                             "resume with the same options, or use --overwrite.")
    elif present:
        raise OutputExistsError(f"--out {out} already exists; add --resume to continue that "
                                "build or --overwrite to replace it")
    try:
        shard_dir(out).mkdir(parents=True, exist_ok=True)
        for tmp in shard_dir(out).glob(".*.tmp"):
            tmp.unlink(missing_ok=True)  # half-written by a build that was killed
        write_text(manifest_path, json.dumps({
            "content_key": cfg.content_key(),
            "options": cfg.model_dump(mode="json", exclude={"command", "workers", "n", "out"}),
        }, indent=2))
    except OSError as exc:
        raise UsageError(f"--out {out} is not writable ({exc.strerror}); choose another "
                         "folder") from None


MarkerCache = dict[str, tuple[int, "ShardSummary"]]  # marker name: (mtime_ns, summary)


def completed_shards(cfg: BuildConfig, cache: MarkerCache | None = None
                     ) -> dict[int, ShardSummary]:
    """The finished shards of this build, by index.

    A caller that asks again and again (the progress bar, once a second) passes the same
    ``cache``: only markers that are new or rewritten since are read (a 100k-row build has
    ~2,300 of them).
    """
    done: dict[int, ShardSummary] = {}
    key = cfg.content_key()
    for marker in sorted(shard_dir(cfg.out).glob("*-*.done.json")):
        try:
            mtime = marker.stat().st_mtime_ns
        except OSError:
            continue  # replaced meanwhile: read next time
        known = cache.get(marker.name) if cache is not None else None
        if known is not None and known[0] == mtime:
            summary = known[1]
        else:
            try:
                summary = ShardSummary(**json.loads(marker.read_text()))
            except OSError:
                continue
            if cache is not None:
                cache[marker.name] = (mtime, summary)
        if summary.content_key == key:
            done[summary.index] = summary
    return done


def runs_untrusted_code(cfg: BuildConfig) -> bool:
    """Whether the build runs code the project did not write (an LLM teacher's)."""
    return cfg.teacher != "scripted"


@functools.cache
def _process_sandbox(timeout: float, untrusted: bool, allow_process_mode: bool) -> Sandbox:
    """One sandbox per process, reused by every shard it builds: its workers start once.

    The scripted teacher's code is the project's own: where bwrap cannot start it runs in
    process mode, said once at INFO (the flow logs the mode). A model's code (``untrusted``)
    runs only in the jail unless ``--allow-process-mode``, and then with a warning.
    """
    if untrusted and not allow_process_mode:
        return Sandbox(timeout=timeout, mode="bwrap")
    return Sandbox(timeout=timeout, fallback_level=logging.WARNING if untrusted else logging.INFO)


T = TypeVar("T")
R = TypeVar("R")


def _ordered_map(fn: Callable[[T], R], items: Sequence[T], threads: int) -> list[R]:
    """``[fn(x) for x in items]``, in ``threads`` threads; the first exception stops the rest."""
    if threads <= 1:
        return [fn(x) for x in items]
    pool = ThreadPoolExecutor(threads, thread_name_prefix="datagen-task")
    try:
        futures = [pool.submit(fn, x) for x in items]
        return [f.result() for f in futures]
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


def _solve(cfg: BuildConfig, task: Task, teacher: Teacher,
           sandbox: Sandbox) -> list[tuple[Trajectory, Verdict]]:
    """Up to ``cfg.attempts`` tries at ``task``, stopping at the first verified one."""
    tries: list[tuple[Trajectory, Verdict]] = []
    for attempt in range(cfg.attempts):
        t = teacher.for_attempt(attempt) if isinstance(teacher, SamplingTeacher) else teacher
        traj = rollout(task, t, sandbox, cfg.max_turns)
        verdict = verify_trajectory(traj, cfg.max_turns, sandbox)
        tries.append((traj, verdict))
        if verdict.kept:
            break
    return tries


Weak = tuple[float | None, str | None]  # a task's weak pass rate and the difficulty it implies


def _weak_labels(cfg: BuildConfig, tasks: Sequence[Task],
                 on_labelled: Callable[[int], None] | None = None) -> tuple[list[Weak], Usage]:
    """The weak model's pass rate on each task and its label (all None without one).

    ``on_labelled(position)`` is called, from the sampling threads, once a task's last sample
    is answered.
    """
    if not cfg.weak_model:
        return [(None, None)] * len(tasks), Usage()
    weak = WeakSolver(cfg)
    k = cfg.weak_samples
    left = [k] * len(tasks)  # samples still unanswered, per task
    lock = threading.Lock()

    def solve(sample: tuple[int, int]) -> bool | None:
        outcome = weak.solves(tasks[sample[0]], sample[1])
        if on_labelled is not None:
            with lock:
                left[sample[0]] -= 1
                labelled = left[sample[0]] == 0
            if labelled:
                on_labelled(sample[0])
        return outcome

    samples = [(position, i) for position in range(len(tasks)) for i in range(k)]
    outcomes = _ordered_map(solve, samples, cfg.concurrency)
    rates = [weak.pass_rate(outcomes[i * k:(i + 1) * k]) for i in range(len(tasks))]
    return [(r, None if r is None else difficulty_of(r)) for r in rates], weak.usage()


def run_shard(cfg: BuildConfig, index: int, teacher: Teacher | None = None,
              on_task: Callable[[TaskEvent], None] | None = None) -> ShardSummary:
    """Build shard ``index`` of ``cfg`` and write it atomically; returns its summary.

    ``teacher`` defaults to the one ``cfg`` names; passing one is for embedding and tests.
    ``on_task`` is called once per finished task, before the shard is written, for progress
    display: from the shard's task threads when ``cfg.concurrency`` > 1 (so it must be
    thread-safe and quick), in order of completion. It only observes: the rows are the same
    with or without it. An exception from it fails the shard.
    Raises ``BudgetSpent`` (nothing written) when ``--max-cost`` runs out during the shard.
    """
    started = time.perf_counter()
    place = cfg.locate(index)
    family = get_family(place.family)
    posed: list[tuple[Task, int]] = []  # task, image long side
    checked: Counter[str] = Counter()
    rejected: Counter[str] = Counter()
    first = place.number * cfg.shard_size + (RL_SCENE_BASE if place.split == "rl" else 0)
    for scene_index in range(first, first + cfg.shard_size):
        scene = family.make_scene(scene_index, cfg.seed, cfg.scene_options())
        with Image.open(io.BytesIO(scene.image)) as im:
            side = max(im.size)
        for task in family.pose(scene, cfg.questions_per_scene):
            checked.update(f"{family.name}.{r.name}" for r in family.rules if r.applies(task))
            failed = failed_rules(family.rules, task)
            rejected.update(f"{family.name}.{name}" for name in failed)
            if not failed:  # an ambiguous question never becomes a row
                posed.append((task, side))
    posed_event = None if on_task is None else functools.partial(_posed, on_task, index,
                                                                  len(posed))
    # An RL prompt is done once labelled: with a weak model that is the shard's slow part, so
    # its progress is reported as the labels come in rather than all at once after them.
    early = posed_event if place.split == "rl" and cfg.weak_model and cfg.weak_samples else None
    labels, weak_usage = _weak_labels(cfg, [p[0] for p in posed], early)
    if place.split == "rl":
        built = _rl_rows(cfg, index, posed, labels, None if early else posed_event)
    else:
        built = _sft_rows(cfg, index, posed, labels, teacher or get_teacher(cfg.teacher, cfg),
                          on_task)
    rows_path, rejects_path, sig_path, marker_path = _paths(cfg, index)
    with atomic_path(rows_path) as tmp:
        pq.write_table(built.table, tmp)
    write_text(rejects_path, "".join(json.dumps(r, sort_keys=True) + "\n"
                                     for r in built.rejects))
    ambiguous = [[f"{family.name}.{name}" for name in failed_rules(family.rules, task)]
                 for task in built.kept_tasks]
    signatures(built.kept).save(sig_path)
    usage = built.usage
    summary = ShardSummary(
        index=index, content_key=cfg.content_key(), split=place.split, scenes=cfg.shard_size,
        tasks=len(posed), kept=len(built.kept), difficulties=built.difficulties,
        trivial=built.trivial, sides=built.sides, target_areas=built.areas,
        reasons=dict(built.reasons), styles=dict(built.styles),
        seconds=round(time.perf_counter() - started, 3), sandbox_mode=built.sandbox_mode,
        sandbox_walls=built.sandbox_walls,
        cell_seconds=[round(s, 4) for s in built.cell_seconds], grounding=built.grounding,
        grounding_seconds=round(built.grounding_seconds, 3), attempts=built.attempts,
        api_calls=usage.calls, cached_calls=usage.cached_calls, prompt_tokens=usage.prompt_tokens,
        completion_tokens=usage.completion_tokens, cost_usd=round(usage.cost_usd, 6),
        weak_calls=weak_usage.calls, weak_cached_calls=weak_usage.cached_calls,
        weak_prompt_tokens=weak_usage.prompt_tokens,
        weak_completion_tokens=weak_usage.completion_tokens,
        weak_cost_usd=round(weak_usage.cost_usd, 6),
        ambiguity_checked=dict(checked), ambiguity_rejected=dict(rejected),
        ambiguity_failed=ambiguous,
        checksums={name: _sha256(path) for name, path in
                   zip(_FILE_NAMES, (rows_path, rejects_path, sig_path), strict=True)},
    )
    write_text(marker_path, json.dumps(asdict(summary)))
    return summary


_FILE_NAMES = ("rows", "rejects", "signatures")


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def damaged_shards(cfg: BuildConfig, done: dict[int, ShardSummary]) -> list[int]:
    """The finished shards whose files no longer match the checksums in their markers.

    Their markers are removed, so they count as unbuilt and are built again. Reads every
    finished shard's files once (for a resume, before any work); markers written before
    checksums existed are trusted as before.
    """
    damaged = []
    for index, summary in sorted(done.items()):
        paths = dict(zip(_FILE_NAMES, _paths(cfg, index)[:3], strict=True))
        for name, expected in summary.checksums.items():
            try:
                intact = name in paths and _sha256(paths[name]) == expected
            except OSError:
                intact = False
            if not intact:
                damaged.append(index)
                break
    for index in damaged:
        _paths(cfg, index)[3].unlink(missing_ok=True)
    return damaged


@dataclass(slots=True)
class _Built:
    """What a shard made, before it is written."""

    table: Any
    kept: list[tuple[bytes, str, str, str]] = field(default_factory=list)  # for signatures
    kept_tasks: list[Task] = field(default_factory=list)
    rejects: list[dict[str, Any]] = field(default_factory=list)
    difficulties: list[str] = field(default_factory=list)
    trivial: list[bool] = field(default_factory=list)
    sides: list[int] = field(default_factory=list)
    areas: list[float | None] = field(default_factory=list)
    reasons: Counter[str] = field(default_factory=Counter)
    styles: Counter[str] = field(default_factory=Counter)
    cell_seconds: list[float] = field(default_factory=list)
    grounding: dict[str, dict[str, dict[str, int]]] = field(default_factory=dict)
    grounding_seconds: float = 0.0
    attempts: int = 0
    usage: Usage = field(default_factory=Usage)
    sandbox_mode: str = "none"
    sandbox_walls: str = ""

    def keep(self, task: Task, side: int, difficulty: str, trivial: bool) -> None:
        self.kept.append((task.scene.image, task.question, task.answer, task.scene.id))
        self.kept_tasks.append(task)
        self.difficulties.append(difficulty)
        self.trivial.append(trivial)
        self.sides.append(side)
        self.areas.append(task.scene.target_area)


def _sft_rows(cfg: BuildConfig, index: int, posed: list[tuple[Task, int]], labels: list[Weak],
              teacher: Teacher, on_task: Callable[[TaskEvent], None] | None) -> _Built:
    """Roll out and verify every task; verified ones become SFT rows."""
    sampling = isinstance(teacher, SamplingTeacher)
    usage_before = teacher.usage() if isinstance(teacher, SamplingTeacher) else Usage()
    sandbox = _process_sandbox(cfg.cell_timeout, runs_untrusted_code(cfg), cfg.allow_process_mode)

    def solve(position: int) -> list[tuple[Trajectory, Verdict]]:
        tries = _solve(cfg, posed[position][0], teacher, sandbox)
        if on_task is not None:  # here, not after the map: a slow shard reports as it goes
            last = tries[-1][1]
            on_task(TaskEvent(shard=index, position=position, tasks=len(posed), kept=last.kept,
                              reason=last.reason, attempts=len(tries)))
        return tries

    solved = _ordered_map(solve, range(len(posed)), cfg.concurrency if sampling else 1)
    rows: list[dict[str, Any]] = []
    built = _Built(table=None, attempts=sum(len(tries) for tries in solved),
                   sandbox_mode=sandbox.mode, sandbox_walls=sandbox.walls)
    for (task, side), tries, weak in zip(posed, solved, labels, strict=True):
        for attempt, (traj, verdict) in enumerate(tries):
            built.cell_seconds += [t.result.seconds for t in traj.turns if t.result is not None]
            built.reasons[verdict.reason] += 1
            if verdict.grounding is not None:
                _count_grounding(built.grounding, task.task_type, verdict)
                built.grounding_seconds += verdict.grounding.seconds
            if verdict.kept:
                built.styles[traj.style] += 1
                row = sft_row(traj, verdict, *weak)
                rows.append(row)
                built.keep(task, side, row["difficulty"], row["trivial"])
            else:
                built.rejects.append({**reject_record(traj, verdict), "attempt": attempt,
                                      "split": "sft"})
    if isinstance(teacher, SamplingTeacher):
        built.usage = teacher.usage().minus(usage_before)
    built.table = sft_table(rows)
    return built


def _count_grounding(counts: dict[str, dict[str, dict[str, int]]], task_type: str,
                     verdict: Verdict) -> None:
    """Add a verdict's grounding outcomes to the per-task-type counts."""
    g = verdict.grounding
    assert g is not None
    mine = counts.setdefault(task_type, {})
    for check, outcome in (("provenance", g.provenance), ("twin", g.twin), ("jitter", g.jitter)):
        by_status = mine.setdefault(check, {})
        by_status[outcome.status] = by_status.get(outcome.status, 0) + 1


def _posed(on_task: Callable[[TaskEvent], None], index: int, tasks: int, position: int) -> None:
    """Report the RL prompt at ``position`` of shard ``index`` as done."""
    on_task(TaskEvent(shard=index, position=position, tasks=tasks, kept=True, reason="posed",
                      attempts=0))


def _rl_rows(cfg: BuildConfig, index: int, posed: list[tuple[Task, int]],
             labels: list[Weak], on_posed: Callable[[int], None] | None) -> _Built:
    """Every posed task is an RL prompt; its gold answer is exact by construction.

    ``on_posed(position)`` is called as each prompt becomes a row.
    """
    per_shard = cfg.shard_size * cfg.questions_per_scene
    first = (index // len(cfg.splits())) * per_shard  # the row's number within the RL split
    rows = [rl_row(task, first + i, "train", *weak)
            for i, ((task, _), weak) in enumerate(zip(posed, labels, strict=True))]
    built = _Built(table=rl_table(rows), reasons=Counter({"posed": len(rows)}))
    for position, ((task, side), row, (rate, _)) in enumerate(
            zip(posed, rows, labels, strict=True)):
        built.keep(task, side, row["extra_info"]["difficulty"], rate == 1.0)
        if on_posed is not None:  # nothing is rolled out: a prompt is done once it is a row
            on_posed(position)
    return built


def shard_signatures(cfg: BuildConfig, index: int) -> Signatures:
    """The dedup signatures of the rows of a finished shard."""
    return Signatures.load(_paths(cfg, index)[2])


def shard_files(cfg: BuildConfig, index: int) -> tuple[Path, Path]:
    """The rows file and rejects file of a finished shard."""
    rows_path, rejects_path, _, _ = _paths(cfg, index)
    return rows_path, rejects_path
