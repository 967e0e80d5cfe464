"""The reward of the RL set: verl's custom-reward function, scored by the matcher that built it.

Point verl 0.9.1 at this file with ``reward.custom_reward_function.path=<this file>`` and
``reward.custom_reward_function.name=compute_score`` (the README's verl command prints the
path). ``compute_score_batch`` is for verl versions with a ``batch`` reward manager and for the
CodeDance fork; verl 0.9.1 has none (its reward loop scores one rollout at a time).
``solution_str`` is the whole multi-turn response, ``<tool_response>`` blocks included; those
blocks are removed before any format check, since a cell's output may print anything (even
``<answer>``).

Score: 1.0 when the format is right and the answer matches the gold one
(``datagen.check.matcher.match``, the very check that kept the data), else 0.0. Format: exactly one
``<answer>…</answer>``, balanced, unnested ``<think>`` tags, and an answer of at most
``max_answer_chars`` characters.

Optional tool-use term (``tool_reward=True``), after CodeDance's sequence-level reward:
``d(mu) * c * successful / total`` tool calls, where ``d(mu) = (1 + tanh(gamma (0.5 - mu))) / 2
- beta`` is a difficulty factor of the group's accuracy ``mu`` (the rollouts of one prompt), and
``c`` is 1.5 for a correct rollout, 0.5 for a wrong one. Hard groups reward successful tool use,
easy ones (``mu`` near 1) slightly penalise it. The batch form computes ``mu`` per prompt
(``extra_info["index"]`` and ``data_source``); the single form takes ``group_accuracy``.

Every call returns the same keys, all numbers (verl collects them into metric arrays).
"""

from __future__ import annotations

import math
import re
from collections import defaultdict
from collections.abc import Mapping, Sequence
from typing import Any

from datagen.check.matcher import extract_answer, match

__all__ = ["SCORE_KEYS", "compute_score", "compute_score_batch", "difficulty_factor",
           "format_problem", "tool_calls"]

SCORE_KEYS = ("score", "acc", "format_ok", "answer_found", "tool_calls", "tool_success",
              "tool_term")
"""The keys of every result, in order."""

_TOOL_RESPONSE = re.compile(r"<tool_response>.*?(?:</tool_response>|\Z)", re.DOTALL)
_ANSWER_OPEN = re.compile(r"<answer>", re.IGNORECASE)
_ANSWER_CLOSE = re.compile(r"</answer>", re.IGNORECASE)
_THINK = re.compile(r"</?think>", re.IGNORECASE)
# Failed cells render as "Execution error: …" (templates/observation.j2). Calls verl itself
# answers: "Error when executing tool" (older verl); verl 0.9.1's ToolAgentLoop._call_tool says
# "Error executing tool '…'", "Unknown function '…'" or "Invalid JSON in arguments for '…'".
_FAILED = re.compile(r"^\s*(?:<tool_response>\s*)?(?:Execution error:|Error when executing tool|"
                     r"Error executing tool '|Unknown function '|Invalid JSON in arguments for ')")


def _model_text(solution_str: str) -> str:
    """What the model wrote: the response without the tool responses it was shown."""
    return _TOOL_RESPONSE.sub("", solution_str)


def format_problem(solution_str: str, max_answer_chars: int = 200) -> str | None:
    """Why the response is malformed, or None: one ``<answer>``, balanced ``<think>`` tags, a
    short answer."""
    text = _model_text(solution_str)
    opened, closed = len(_ANSWER_OPEN.findall(text)), len(_ANSWER_CLOSE.findall(text))
    if opened != 1 or closed != 1:
        return f"expected exactly one <answer>…</answer>, found {opened} open / {closed} close"
    depth = 0
    for tag in _THINK.findall(text):
        depth += -1 if tag.startswith("</") else 1
        if depth not in (0, 1):
            return "unbalanced or nested <think> tags"
    if depth != 0:
        return "unbalanced <think> tags"
    answer = extract_answer(text)
    if answer is None:
        return "the <answer> is not closed after it opens"
    if len(answer) > max_answer_chars:
        return f"the answer has {len(answer)} characters (at most {max_answer_chars})"
    return None


def tool_calls(solution_str: str) -> tuple[int, int]:
    """(successful, total) tool calls of a response, counted from its ``<tool_response>`` blocks."""
    blocks = [b.removeprefix("<tool_response>") for b in _TOOL_RESPONSE.findall(solution_str)]
    failed = sum(1 for b in blocks if _FAILED.match(b))
    return len(blocks) - failed, len(blocks)


def difficulty_factor(mu: float, gamma: float = 4.0, beta: float = 0.2) -> float:
    """CodeDance's d(mu) = (1 + tanh(gamma (0.5 - mu))) / 2 - beta, mu the group accuracy."""
    return (1.0 + math.tanh(gamma * (0.5 - mu))) / 2.0 - beta


def _answer_spec(extra_info: Mapping[str, Any] | None) -> tuple[str, float]:
    info = extra_info or {}
    answer_type = info.get("answer_type") or "text"
    tolerance = info.get("tolerance")
    return answer_type, float(tolerance) if tolerance is not None else 0.0


def _accuracy(solution_str: str, ground_truth: str, extra_info: Mapping[str, Any] | None,
              max_answer_chars: int) -> tuple[float, float, float]:
    """(acc, format_ok, answer_found) of one response."""
    problem = format_problem(solution_str, max_answer_chars)
    predicted = extract_answer(_model_text(solution_str))
    found = float(predicted is not None)
    if problem is not None:
        return 0.0, 0.0, found
    answer_type, tolerance = _answer_spec(extra_info)
    try:
        correct = match(predicted, str(ground_truth), answer_type, tolerance)
    except ValueError:  # an answer type this version does not know: never a false reward
        correct = False
    return float(correct), 1.0, found


def _result(acc: float, format_ok: float, found: float, ok_calls: int, calls: int,
            tool_term: float) -> dict[str, float]:
    return {"score": acc + tool_term, "acc": acc, "format_ok": format_ok, "answer_found": found,
            "tool_calls": float(calls), "tool_success": float(ok_calls), "tool_term": tool_term}


def _tool_term(acc: float, format_ok: float, ok_calls: int, calls: int, mu: float,
               gamma: float, beta: float) -> float:
    # A malformed response earns nothing for its tool calls, or malformed ones would pay.
    if calls == 0 or not format_ok:
        return 0.0
    return difficulty_factor(mu, gamma, beta) * (1.5 if acc else 0.5) * ok_calls / calls


def compute_score(data_source: str, solution_str: str, ground_truth: str,
                  extra_info: Mapping[str, Any] | None = None, *, tool_reward: bool = False,
                  group_accuracy: float | None = None, gamma: float = 4.0, beta: float = 0.2,
                  max_answer_chars: int = 200, **kwargs: Any) -> dict[str, float]:
    """verl's custom reward for one rollout: ``{"score": …}`` plus the same metric keys always.

    ``extra_info`` carries ``answer_type`` and ``tolerance`` (every RL row has them); without
    it the answer is compared as normalized text. The tool term is added only with
    ``tool_reward=True`` and a ``group_accuracy`` (use ``compute_score_batch`` to have it
    computed). ``data_source`` and unknown keyword arguments are accepted and ignored, as verl
    passes more over time.
    """
    acc, format_ok, found = _accuracy(solution_str, ground_truth, extra_info, max_answer_chars)
    ok_calls, calls = tool_calls(solution_str)
    term = 0.0
    if tool_reward and group_accuracy is not None:
        term = _tool_term(acc, format_ok, ok_calls, calls, group_accuracy, gamma, beta)
    return _result(acc, format_ok, found, ok_calls, calls, term)


def _group_key(data_source: str, extra_info: Mapping[str, Any] | None, i: int) -> tuple[Any, ...]:
    index = (extra_info or {}).get("index")
    return (data_source, index) if index is not None else (data_source, "row", i)


def compute_score_batch(data_sources: Sequence[str], solution_strs: Sequence[str],
                        ground_truths: Sequence[str],
                        extra_infos: Sequence[Mapping[str, Any] | None] | None = None, *,
                        tool_reward: bool = False, gamma: float = 4.0, beta: float = 0.2,
                        max_answer_chars: int = 200, **kwargs: Any) -> list[dict[str, float]]:
    """The batch form for a ``batch`` reward manager (not in verl 0.9.1): one result per rollout.

    With ``tool_reward=True`` the group accuracy ``mu`` of each prompt is the mean accuracy of
    the rollouts in this batch that share its ``data_source`` and ``extra_info["index"]``.
    """
    infos = list(extra_infos) if extra_infos is not None else [None] * len(solution_strs)
    if not len(data_sources) == len(solution_strs) == len(ground_truths) == len(infos):
        raise ValueError("data_sources, solution_strs, ground_truths and extra_infos must have "
                         "the same length")
    parts = [_accuracy(s, g, e, max_answer_chars)
             for s, g, e in zip(solution_strs, ground_truths, infos, strict=True)]
    groups: dict[tuple[Any, ...], list[float]] = defaultdict(list)
    keys = [_group_key(d, e, i) for i, (d, e) in enumerate(zip(data_sources, infos, strict=True))]
    for key, (acc, _, _) in zip(keys, parts, strict=True):
        groups[key].append(acc)
    results = []
    for key, solution, (acc, format_ok, found) in zip(keys, solution_strs, parts, strict=True):
        ok_calls, calls = tool_calls(solution)
        term = 0.0
        if tool_reward:
            mu = sum(groups[key]) / len(groups[key])
            term = _tool_term(acc, format_ok, ok_calls, calls, mu, gamma, beta)
        results.append(_result(acc, format_ok, found, ok_calls, calls, term))
    return results
