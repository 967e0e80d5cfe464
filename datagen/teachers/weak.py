"""Weak-to-strong difficulty: a weaker model answers each task directly, without tools.

As in the CodeDance paper, a task's difficulty is how often a weak model gets it right on its
own. ``WeakSolver.pass_rate`` asks ``--weak-model`` ``--weak-samples`` times (one user turn: the
image, the question and an instruction to answer in ``<answer>…</answer>``; each sample has its
own ``seed``) through the teacher's request layer (retries, cache, ledger, budget and limits in
``chat_api``) and matches each answer against the gold one with ``verify.match``.

``difficulty_of`` turns the pass rate into the row's label: at least ``EASY_AT`` is easy, at
least ``MEDIUM_AT`` medium, below that hard; a task the weak model always solves is *trivial*.
A sample whose request kept failing (``api_error``) is left out of the rate; when every sample
failed the rate is None and the row keeps its scene's difficulty.
"""

from __future__ import annotations

from typing import Any

from datagen.check.matcher import extract_answer, match
from datagen.config import BuildConfig
from datagen.paths import cache_dir
from datagen.records import Task, stable_id
from datagen.teachers.base import TeacherFailure, Usage
from datagen.teachers.chat_api import ChatAPI, Ledger, ResponseCache, chat_api, openai_api_key
from datagen.teachers.openai_teacher import data_url
from datagen.templates import render

__all__ = ["EASY_AT", "MEDIUM_AT", "WEAK_MAX_TOKENS", "WeakSolver", "difficulty_of",
           "sample_seed", "weak_messages"]

EASY_AT = 0.75
MEDIUM_AT = 0.25
WEAK_MAX_TOKENS = 1024


def difficulty_of(pass_rate: float) -> str:
    """The difficulty label of a task the weak model solves ``pass_rate`` of the time."""
    return "easy" if pass_rate >= EASY_AT else "medium" if pass_rate >= MEDIUM_AT else "hard"


def sample_seed(run_seed: int, task_id: str, sample: int) -> int:
    """The request seed of the weak model's ``sample``-th answer to a task."""
    return int(stable_id(run_seed, task_id, "weak", sample), 16) % 2**31


def weak_messages(task: Task) -> list[dict[str, Any]]:
    """The single user turn the weak model answers."""
    text = render("weak_question.j2", question=task.question)
    return [{"role": "user", "content": [data_url(task.scene.image),
                                         {"type": "text", "text": text}]}]


class WeakSolver:
    """Samples the weak model's direct answers to a task; see the module docstring."""

    def __init__(self, cfg: BuildConfig, api: ChatAPI | None = None) -> None:
        key = openai_api_key("--weak-model")
        self.cfg = cfg
        # The same endpoint as the teacher shares its connections and limits.
        self.api = api or chat_api(key, cfg.weak_base_url or cfg.base_url, cfg.request_timeout,
                                   cfg.concurrency, cfg.rpm / cfg.workers,
                                   cfg.tpm / cfg.workers)
        self.cache = ResponseCache(cache_dir(cfg.out))
        self.ledger = Ledger(*cfg.prices(cfg.weak_model))

    def usage(self) -> Usage:
        """Tokens and cost of the weak model's calls so far (a copy)."""
        with self.ledger.lock:
            return Usage(**vars(self.ledger.usage))

    def solves(self, task: Task, sample: int) -> bool | None:
        """Whether the weak model's ``sample``-th answer is right; None if the call failed."""
        request = {
            "model": self.cfg.weak_model,
            "messages": weak_messages(task),
            "temperature": self.cfg.temperature,
            "max_tokens": WEAK_MAX_TOKENS,
            "seed": sample_seed(self.cfg.seed, task.id, sample),
        }
        try:
            reply = self.api.complete(request, self.cache, self.ledger, self.cfg.max_cost)
        except TeacherFailure:
            return None
        return match(extract_answer(reply.text), task.answer, task.answer_type, task.tolerance)

    @staticmethod
    def pass_rate(outcomes: list[bool | None]) -> float | None:
        """The share of answered samples that were right; None if none was answered."""
        answered = [o for o in outcomes if o is not None]
        return round(sum(answered) / len(answered), 4) if answered else None
