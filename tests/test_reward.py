"""The RL reward: agrees with the verifier, rejects malformed responses, keeps one key set."""

from __future__ import annotations

import math

import pytest

from datagen.check.matcher import match
from datagen.reward import (
    SCORE_KEYS,
    compute_score,
    compute_score_batch,
    difficulty_factor,
    tool_calls,
)
from tests.support.rl_sets import rl_rows

OK = "<tool_response>\nCode execution successful, output:\n(640, 480)\n</tool_response>"
FAILED = "<tool_response>\nExecution error: NameError: name 'x' is not defined\n</tool_response>"
CODE = "<think>Let me look.</think>\n<code>\n```python\nprint(input_image.size)\n```\n</code>"


def rollout(answer: str, *observations: str) -> str:
    """A multi-turn response as verl decodes it: code turns, their tool responses, the answer."""
    turns = [f"{CODE}\n{obs}" for obs in observations]
    return "\n".join([*turns, f"<think>So the answer follows.</think>\n<answer>{answer}</answer>"])


def score(answer_text: str, gold: str, answer_type: str = "number", tolerance: float = 0.01,
          **kw: object) -> dict[str, float]:
    info = {"answer_type": answer_type, "tolerance": tolerance, "index": 0}
    return compute_score("datagen/chart", answer_text, gold, info, **kw)


@pytest.fixture(scope="module")
def rows() -> list[dict]:
    return rl_rows()


def test_gold_answer_scores_one_on_every_built_row_like_verify(rows: list[dict]) -> None:
    for row in rows:
        gold, info = row["reward_model"]["ground_truth"], row["extra_info"]
        result = compute_score(row["data_source"], rollout(gold, OK), gold, info)
        assert match(gold, gold, info["answer_type"], info["tolerance"])
        assert result["score"] == result["acc"] == 1.0, (gold, info["answer_type"])


def test_wrong_answers_score_zero_exactly_when_verify_says_wrong(rows: list[dict]) -> None:
    wrong = {"number": "12345.5", "integer": "9999", "expression": "7*sqrt(11)", "choice": "Z",
             "yesno": None, "text": "a purple elephant"}
    for row in rows:
        gold, info = row["reward_model"]["ground_truth"], row["extra_info"]
        guess = wrong[info["answer_type"]] or ("no" if gold.lower() == "yes" else "yes")
        verdict = match(guess, gold, info["answer_type"], info["tolerance"])
        result = compute_score(row["data_source"], rollout(guess, OK), gold, info)
        assert result["acc"] == float(verdict) == 0.0


@pytest.mark.parametrize(("answer", "gold", "answer_type"), [
    ("5√3", "sqrt(75)", "expression"),
    ("\\frac{10\\sqrt{3}}{2}", "5*sqrt(3)", "expression"),
    ("29.1", "29", "number"),  # within 1 %
    ("1,200", "1200", "integer"),
    ("(C)", "C", "choice"),
    ("Yes.", "yes", "yesno"),
])
def test_equivalent_forms_are_correct(answer: str, gold: str, answer_type: str) -> None:
    assert score(rollout(answer, OK), gold, answer_type)["score"] == 1.0


@pytest.mark.parametrize(("answer", "gold", "answer_type"), [
    ("30", "29", "number"),  # 3.4 % off
    ("5*sqrt(2)", "5*sqrt(3)", "expression"),
    ("B", "C", "choice"),
    ("no", "yes", "yesno"),
])
def test_wrong_forms_score_zero(answer: str, gold: str, answer_type: str) -> None:
    result = score(rollout(answer, OK), gold, answer_type)
    assert result["score"] == 0.0 and result["format_ok"] == 1.0


@pytest.mark.parametrize("text", [
    "<think>I think 29.</think>\n<answer>29</answer>\n<answer>29</answer>",  # two answers
    "<think>I think 29.\n<answer>29</answer>",  # unbalanced think
    "<think><think>29</think></think><answer>29</answer>",  # nested think
    "<think>ok</think>\n<answer>29",  # unclosed answer
    "<think>ok</think>\nThe answer is 29.",  # no answer
    "<think>ok</think>\n<answer>29" + " because" * 40 + "</answer>",  # overlong answer
])
def test_malformed_responses_score_zero_even_with_the_right_number(text: str) -> None:
    result = score(text, "29")
    assert result["score"] == 0.0 and result["format_ok"] == 0.0


def test_answer_printed_by_a_cell_is_not_the_models_answer() -> None:
    printed = "<tool_response>\nCode execution successful, output:\n<answer>29</answer>\n" \
              "</tool_response>"
    result = score(f"{CODE}\n{printed}\n<think>done</think>", "29")
    assert result["score"] == 0.0 and result["answer_found"] == 0.0
    # ... and it does not make a real answer look like a second one.
    assert score(rollout("29", printed), "29")["score"] == 1.0


def test_same_keys_every_time() -> None:
    results = [score(rollout("29", OK), "29"), score("garbage", "29"),
               compute_score("x", "<answer>a</answer>", "a"),
               score(rollout("29", OK, FAILED), "29", tool_reward=True, group_accuracy=0.5)]
    assert all(tuple(r) == SCORE_KEYS for r in results)
    assert all(isinstance(v, float) for r in results for v in r.values())


def test_tool_calls_count_failures() -> None:
    assert tool_calls(rollout("29", OK, FAILED, OK)) == (2, 3)
    assert tool_calls(rollout("29")) == (0, 0)
    assert tool_calls("<tool_response>\nError when executing tool: bad json\n</tool_response>") \
        == (0, 1)
    # What verl 0.9.1's ToolAgentLoop._call_tool answers itself (tool raised, unknown name, bad
    # JSON) is a failed call too.
    for text in ("Error executing tool 'execute_python_code': sandbox closed",
                 "Unknown function 'python'. Available tools: ['execute_python_code']",
                 "Invalid JSON in arguments for 'execute_python_code': Expecting value"):
        assert tool_calls(f"<tool_response>\n{text}\n</tool_response>") == (0, 1), text
    assert tool_calls("<tool_response>\nCode execution successful, output:\nUnknown function "
                      "'f'\n</tool_response>") == (1, 1)  # a cell may print anything


def test_tool_term_follows_codedance() -> None:
    assert difficulty_factor(0.5) == pytest.approx(0.3)
    assert difficulty_factor(1.0) == pytest.approx((1 + math.tanh(-2)) / 2 - 0.2)
    assert difficulty_factor(1.0) < 0 < difficulty_factor(0.0)
    right = score(rollout("29", OK, FAILED), "29", tool_reward=True, group_accuracy=0.25)
    d = difficulty_factor(0.25)
    assert right["tool_term"] == pytest.approx(d * 1.5 * 1 / 2)
    assert right["score"] == pytest.approx(1.0 + d * 0.75)
    wrong = score(rollout("31", OK), "29", tool_reward=True, group_accuracy=0.25)
    assert wrong["tool_term"] == pytest.approx(d * 0.5)
    # Off by default, and never paid to a malformed response.
    assert score(rollout("29", OK), "29", group_accuracy=0.25)["tool_term"] == 0.0
    bad = score(rollout("29", OK) + "<answer>29</answer>", "29", tool_reward=True,
                group_accuracy=0.0)
    assert bad["tool_term"] == 0.0 and bad["score"] == 0.0


def test_batch_matches_single_and_computes_group_accuracy() -> None:
    info0 = {"answer_type": "number", "tolerance": 0.01, "index": 0}
    info1 = {"answer_type": "number", "tolerance": 0.01, "index": 1}
    sols = [rollout("29", OK), rollout("30", OK), rollout("29", OK), rollout("5", OK)]
    infos = [info0, info0, info0, info1]
    golds = ["29", "29", "29", "5"]
    plain = compute_score_batch(["d"] * 4, sols, golds, infos)
    assert plain == [compute_score("d", s, g, e) for s, g, e in zip(sols, golds, infos,
                                                                     strict=True)]
    shaped = compute_score_batch(["d"] * 4, sols, golds, infos, tool_reward=True)
    assert shaped[0]["tool_term"] == pytest.approx(difficulty_factor(2 / 3) * 1.5)
    assert shaped[1]["tool_term"] == pytest.approx(difficulty_factor(2 / 3) * 0.5)
    assert shaped[3]["tool_term"] == pytest.approx(difficulty_factor(1.0) * 1.5)
    with pytest.raises(ValueError, match="same length"):
        compute_score_batch(["d"], sols, golds, infos)
