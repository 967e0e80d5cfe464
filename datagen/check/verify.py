"""Verification of trajectories: while building (``verify_trajectory``) and, for ``datagen
verify``, of a published SFT set (``reverify``).

While building, a trajectory is kept only if every cell ran cleanly, its crops show what the task
needs shown (``grounding_problem``) and its final answer matches the gold one (``matcher``).

``datagen verify`` re-executes every trace of a published SFT set and re-checks it.

For each row the code cells of the assistant turns run again, in order, in one sandbox session
that holds the row's first image (the input image), exactly as during the build. Then:

* each cell must run as recorded (one that raised is fine when a later one ran cleanly, as
  while building), and the ``<tool_response>`` text it makes now
  (``messages.observation_text``, the formatter the build used) must equal the recorded user
  turn character for character: stdout, errors and the number of ``<image>`` tokens;
* each output image must match the recorded one: the same width and height, and perceptual
  hashes (64-bit pHash) at most ``IMAGE_HASH_DISTANCE`` bits apart. Pixel equality would be
  too strict: matplotlib's anti-aliasing and fonts differ slightly across versions and
  machines, while a different crop or drawing moves the hash by far more;
* the final ``<answer>`` must match the ``answer`` column with the build's matcher
  (``matcher.match``), the tolerance read back from ``verification.matcher``. A set with no
  ``answer`` column (such as the public CodeDance-SFT set: ``messages`` and raw image bytes)
  has no gold answer to match; its final answers are not checked, and the report says so.

The set needs nothing but its rows, so a folder downloaded from the Hub verifies the same way.
What a row alone cannot say is not re-checked: grounding of visual-search crops needs the
scene's target boxes, which are not published (the printed regions are compared as stdout).
"""

from __future__ import annotations

import io
import itertools
import re
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import imagehash
from PIL import Image

from datagen.check.grounding import Grounding, check_grounding
from datagen.check.matcher import extract_answer, match, matcher_name
from datagen.errors import UsageError
from datagen.messages import observation_text, parse_reply
from datagen.reader import PublishedSet, row_images, row_tolerance
from datagen.records import Box, Trajectory
from datagen.sandbox import Sandbox
from datagen.scenes.registry import get_family

__all__ = ["IMAGE_HASH_DISTANCE", "Mismatch", "RowCheck", "Verdict", "VerifyReport",
           "claimed_regions", "grounding_problem", "reverify", "reverify_row", "verify_sandbox",
           "verify_trajectory"]

IMAGE_HASH_DISTANCE = 6


# ---------------------------------------------------------------------------------------------
# While building

_REGION = re.compile(r"^region: \((\d+), (\d+), (\d+), (\d+)\)\s*$", re.MULTILINE)


def claimed_regions(traj: Trajectory) -> list[Box]:
    """The regions the trace's last claim printed: every ``region: (x0, y0, x1, y1)`` of the
    last cell that printed any. An earlier claim that a later cell took back (a zoom that cut
    the thing off, then a wider one) is part of looking, not what the answer rests on."""
    claims = [[tuple(int(v) for v in m.groups()) for m in _REGION.finditer(t.result.stdout)]
              for t in traj.turns if t.result is not None]
    last = [c for c in claims if c]
    return last[-1] if last else []  # type: ignore[return-value]


def _inside(box: list[int] | Box, region: Box) -> bool:
    return region[0] <= box[0] and region[1] <= box[1] and box[2] <= region[2] \
        and box[3] <= region[3]


def grounding_problem(traj: Trajectory) -> str | None:
    """Why the trace's crops do not show what the task needs shown (None when they do).

    Every box in ``task.grounding`` must lie inside a region of the last claim, and every
    region of it must contain one of those boxes: a right answer read off the wrong crop is
    luck.
    """
    needed = traj.task.grounding
    if not needed:
        return None
    regions = claimed_regions(traj)
    for box in needed:
        if not any(_inside(box, r) for r in regions):
            return f"no crop shows the target at {tuple(box)} (crops: {regions})"
    for r in regions:
        if not any(_inside(box, r) for box in needed):
            return f"the crop {r} shows none of the targets"
    return None


@dataclass(frozen=True, slots=True)
class Verdict:
    """Kept or not, and why; with the grounding checks' outcomes when they ran."""

    kept: bool
    reason: str  # "verified", or: exec_error, timeout, crashed, no_answer, turn_limit,
    #              ungrounded, wrong_answer, format, api_error, provenance, not_grounded, brittle
    detail: str
    predicted: str | None
    grounding: Grounding | None = None


def _cell_problem(traj: Trajectory) -> tuple[str, str] | None:
    """A cell failure the trace did not recover from.

    A cell that raised is fine when a later cell ran cleanly (the trace noticed and went on);
    a timeout or a crash resets the session's state, so it is never fine.
    """
    ran = [(i, t.result) for i, t in enumerate(traj.turns) if t.result is not None]
    for k, (i, res) in enumerate(ran):
        if res.status == "ok":
            continue
        recovered = res.status == "error" and any(r.status == "ok" for _, r in ran[k + 1:])
        if not recovered:
            reason = {"error": "exec_error"}.get(res.status, res.status)
            return reason, f"cell {i + 1}: {res.error_type}: {res.error_message}"
    return None


def verify_trajectory(traj: Trajectory, max_turns: int,
                      sandbox: Sandbox | None = None) -> Verdict:
    """Keep a trajectory only if its cells ran (or it recovered from a failed one), its crops
    show what it claims, its final answer matches gold and, given a ``sandbox``, its code
    passes the grounding checks (``check.grounding``: provenance, twin, jitter)."""
    task = traj.task
    predicted = traj.final_answer
    failed = _cell_problem(traj)
    if failed is not None:
        return Verdict(False, *failed, predicted)
    if traj.failure is not None:
        return Verdict(False, traj.failure[0], traj.failure[1], predicted)
    last = traj.turns[-1].step if traj.turns else None
    if predicted is None and last is not None and last.raw is not None and last.code is None:
        return Verdict(False, "format", "the reply has no <code> block and no <answer> (or "
                       "both)", None)
    if predicted is None:
        if len(traj.turns) >= max_turns:
            return Verdict(False, "turn_limit", f"no answer after {max_turns} turns", None)
        return Verdict(False, "no_answer", "the last turn gave no <answer>", None)
    problem = grounding_problem(traj)
    if problem is not None:
        return Verdict(False, "ungrounded", problem, predicted)
    if not match(predicted, task.answer, task.answer_type, task.tolerance):
        return Verdict(False, "wrong_answer", f"predicted {predicted!r}, gold {task.answer!r} "
                       f"({matcher_name(task.answer_type, task.tolerance)})", predicted)
    matcher = matcher_name(task.answer_type, task.tolerance)
    if sandbox is None:
        return Verdict(True, "verified", matcher, predicted)
    family = get_family(task.scene.family)
    grounding = check_grounding(traj, lambda: family.printed(task.scene),
                                lambda: family.secrets(task), lambda: family.twin(task), sandbox)
    if grounding.problem is not None:
        return Verdict(False, *grounding.problem, predicted, grounding)
    return Verdict(True, "verified", matcher, predicted, grounding)


# ---------------------------------------------------------------------------------------------
# A published set (datagen verify)


@dataclass(frozen=True, slots=True)
class Mismatch:
    """One way a row failed to re-verify."""

    index: int
    id: str
    what: str  # format, exec, observation, image, answer
    detail: str


@dataclass(slots=True)
class VerifyReport:
    """The outcome over a whole set."""

    rows: int = 0
    cells: int = 0
    images: int = 0
    answers: int = 0  # rows whose final answer was matched against a gold one
    sandbox_mode: str = ""
    mismatches: list[Mismatch] = field(default_factory=list)

    @property
    def failed_rows(self) -> list[int]:
        """Indices of the rows with at least one mismatch, ascending."""
        return sorted({m.index for m in self.mismatches})

    @property
    def ok(self) -> bool:
        """Whether every row re-verified."""
        return not self.mismatches


def verify_sandbox(timeout: float, allow_process_mode: bool = False) -> Sandbox:
    """A sandbox for re-running a set's code: bubblewrap, or process mode only when allowed.

    A downloaded set's code is untrusted; process mode would run it as the user, unjailed.
    """
    try:
        return Sandbox(timeout=timeout, mode="bwrap")
    except RuntimeError as exc:
        if not allow_process_mode:
            raise UsageError(f"{exc}; without it the set's code would run unjailed as you. "
                             "Install bubblewrap, or pass --allow-process-mode if you trust "
                             "this set's code") from None
    return Sandbox(timeout=timeout, mode="process")


def _image_problem(recorded: bytes | None, produced: bytes) -> str | None:
    if recorded is None:
        return "the row has fewer images than the code shows"
    try:
        a, b = Image.open(io.BytesIO(recorded)), Image.open(io.BytesIO(produced))
        if a.size != b.size:
            return f"size {b.size[0]}x{b.size[1]}, recorded {a.size[0]}x{a.size[1]}"
        distance = imagehash.phash(a.convert("RGB")) - imagehash.phash(b.convert("RGB"))
    except OSError as exc:
        return f"cannot decode: {exc}"
    if distance > IMAGE_HASH_DISTANCE:
        return f"pixels differ (pHash distance {distance} > {IMAGE_HASH_DISTANCE})"
    return None


@dataclass(slots=True)
class RowCheck:
    """What re-verifying one row found, and how much it re-ran."""

    mismatches: list[Mismatch] = field(default_factory=list)
    cells: int = 0
    images: int = 0
    answer_checked: bool = True  # False when the row has no gold ``answer`` to match


def reverify_row(index: int, row: dict[str, Any], sandbox: Sandbox) -> RowCheck:
    """Re-run one SFT row's cells and re-check its observations, images and answer."""
    rid = str(row.get("id") or index)
    check = RowCheck()

    def fail(what: str, detail: str) -> RowCheck:
        check.mismatches.append(Mismatch(index, rid, what, detail))
        return check

    messages = row.get("messages") or []
    images = row_images(row)
    roles = [m.get("role") for m in messages]
    if roles[:2] != ["system", "user"] or len(roles) < 3 or roles[-1] != "assistant":
        return fail("format", f"roles {roles}: expected system, user, ..., assistant")
    if not images:
        return fail("format", "the row has no input image")
    tokens = sum(m["content"].count("<image>") for m in messages)
    if tokens != len(images):
        fail("format", f"{tokens} <image> tokens but {len(images)} images")
    next_image = 1
    statuses: list[str] = []
    with sandbox.session(images[0]) as session:
        k = 2
        while k < len(messages):
            turn = k - 1  # 1-based position of the message after the system prompt
            step = parse_reply(messages[k]["content"])
            recorded = messages[k + 1] if k + 1 < len(messages) else None
            if step.code is None:
                if recorded is not None:
                    return fail("format", f"message {turn}: no <code> cell, yet a tool response "
                                "follows")
                break
            if recorded is None or recorded.get("role") != "user":
                return fail("format", f"message {turn}: a code cell without a tool response")
            result = session.run(step.code)
            check.cells += 1
            cell = check.cells
            statuses.append(result.status)
            # A cell that raised is fine when the trace recovered (as while building); its
            # observation must still be the recorded one, error text and all.
            if result.status not in ("ok", "error"):
                fail("exec", f"cell {cell}: {result.status}: {result.error_type}: "
                     f"{result.error_message}")
            text = observation_text(result)
            if text != recorded["content"]:
                fail("observation", f"cell {cell}: {_first_difference(recorded['content'], text)}")
            for k_img, png in enumerate(result.images):
                have = images[next_image + k_img] if next_image + k_img < len(images) else None
                problem = _image_problem(have, png)
                if problem:
                    fail("image", f"cell {cell}, image {k_img + 1}: {problem}")
            next_image += recorded["content"].count("<image>")
            check.images += len(result.images)
            k += 2
    last_error = max((i for i, s in enumerate(statuses) if s == "error"), default=None)
    if last_error is not None and "ok" not in statuses[last_error + 1:]:
        fail("exec", f"cell {last_error + 1} raised and no later cell ran cleanly")
    predicted = extract_answer(messages[-1]["content"])
    gold, atype = row.get("answer"), row.get("answer_type") or "text"
    if predicted is None:
        fail("answer", "the last turn has no <answer>")
    elif gold is None:
        check.answer_checked = False  # a set without gold answers (messages + images only)
    else:
        gold = str(gold)
        try:
            ok = match(predicted, gold, atype, row_tolerance(row))
        except ValueError as exc:  # an answer type this version does not know
            return fail("answer", str(exc))
        if not ok:
            fail("answer", f"predicted {predicted!r}, gold {gold!r} ({atype})")
    return check


def _first_difference(recorded: str, produced: str) -> str:
    """Where two observations part, shown as the recorded and the new line."""
    old, new = recorded.splitlines(), produced.splitlines()
    for i, (a, b) in enumerate(zip(old, new, strict=False)):
        if a != b:
            return f"line {i + 1}: recorded {a[:120]!r}, now {b[:120]!r}"
    return f"recorded {len(old)} lines, now {len(new)}"


def reverify(published: PublishedSet, sandbox: Sandbox, workers: int = 1,
             progress: Callable[[int], None] | None = None) -> VerifyReport:
    """Re-verify every row of ``published`` with ``workers`` sessions at a time.

    ``progress`` is called with the number of rows done after each row.
    """
    if published.config != "sft":
        raise UsageError("verify re-runs SFT traces; RL rows hold no trace to re-run")
    report = VerifyReport(sandbox_mode=sandbox.mode)
    workers = max(1, workers)
    rows = published.rows()
    with ThreadPoolExecutor(workers, thread_name_prefix="datagen-verify") as pool:
        # A few rows per worker at a time: Executor.map would read the whole set up front.
        while chunk := list(itertools.islice(rows, 4 * workers)):
            for check in pool.map(lambda item: reverify_row(*item, sandbox), chunk):
                report.rows += 1
                report.cells += check.cells
                report.images += check.images
                report.answers += check.answer_checked
                report.mismatches.extend(check.mismatches)
                if progress is not None:
                    progress(report.rows)
    return report
