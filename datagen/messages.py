"""The chat text of a trajectory: system prompt, user turn, assistant turns and observations.

One formatter for everyone: the SFT rows, the RL prompts and the code tool of the RL rollouts
all produce their text here, so what a model is trained on is what it later sees. Its inverse,
``parse_reply``, reads a model's reply (or a published assistant turn) back into a step;
``split_reply`` also gives the text around the code, for the RL tool-call parser
(``datagen.verl_tool``), so the build, ``datagen verify`` and RL rollouts read one rule.
"""

from __future__ import annotations

import json
import re

from datagen.check.matcher import extract_answer
from datagen.records import Step, Trajectory
from datagen.sandbox import CellResult
from datagen.templates import render

__all__ = ["assistant_text", "observation_text", "parse_reply", "sft_messages", "split_reply",
           "system_prompt", "user_text"]

_THINK = re.compile(r"<think>(.*?)</think>", re.DOTALL | re.IGNORECASE)
_CODE = re.compile(r"<code>\s*```(?:python|py)?[ \t]*\n(.*?)```\s*</code>", re.DOTALL | re.I)
_TOOL_CALL = re.compile(r"<tool_call>(.*?)</tool_call>", re.DOTALL | re.IGNORECASE)


def system_prompt() -> str:
    """The system message: the CodeDance sandbox contract."""
    return render("system_prompt.j2")


def user_text(question: str) -> str:
    """The user turn: the image token, then the question."""
    return render("user_turn.j2", question=question)


def assistant_text(step: Step) -> str:
    """``<think>…</think>`` then a ``<code>`` block or an ``<answer>``; an LLM's raw reply as is."""
    if step.raw is not None:
        return step.raw
    return render("assistant_turn.j2", think=step.think, code=step.code, answer=step.answer)


def observation_text(result: CellResult) -> str:
    """The ``<tool_response>`` user turn for one executed cell, one ``<image>`` per image."""
    return render(
        "observation.j2",
        status=result.status,
        stdout=result.stdout.rstrip("\n"),
        stderr=result.stderr.rstrip("\n"),
        images=len(result.images),
        error_type=result.error_type,
        message=result.error_message,
    )


def sft_messages(traj: Trajectory) -> tuple[list[dict[str, str]], list[bytes]]:
    """Messages and images of a trajectory, images in the order of their ``<image>`` tokens."""
    messages = [{"role": "system", "content": traj.system},
                {"role": "user", "content": traj.user}]
    images = [traj.task.scene.image]
    for turn in traj.turns:
        messages.append({"role": "assistant", "content": assistant_text(turn.step)})
        if turn.result is not None:
            messages.append({"role": "user", "content": observation_text(turn.result)})
            images.extend(turn.result.images)
    return messages, images


def _call_code(blob: str) -> str | None:
    """The code of one ``<tool_call>`` JSON body, if it calls ``execute_python_code``."""
    try:
        call = json.loads(blob)
        args = call.get("arguments", {})
        args = json.loads(args) if isinstance(args, str) else args
    except (ValueError, AttributeError):
        return None
    if call.get("name") == "execute_python_code" and isinstance(args.get("code"), str):
        return args["code"]
    return None


def _find_code(text: str) -> tuple[str, int, int] | None:
    """The code a reply asks to run and the span of the block holding it: the first
    ``<code>`` block, else the first ``<tool_call>`` of ``execute_python_code``."""
    if code_m := _CODE.search(text):
        return code_m.group(1).rstrip("\n"), code_m.start(), code_m.end()
    for call_m in _TOOL_CALL.finditer(text):
        if (code := _call_code(call_m.group(1))) is not None:
            return code, call_m.start(), call_m.end()
    return None


def split_reply(text: str) -> tuple[Step, str]:
    """``parse_reply``'s step and the reply without the block of the step's code (the whole
    reply when the step runs no code): a tool-call parser's call and its remaining text."""
    think = _THINK.search(text)
    found = _find_code(text)
    code = found[0] if found else None
    answer = extract_answer(text)
    if code is not None and answer is not None:
        code = answer = None  # an answer before seeing the code's output: not a usable step
    step = Step(think=think.group(1).strip() if think else "", code=code, answer=answer,
                raw=text)
    if code is None or found is None:
        return step, text
    return step, text[:found[1]] + text[found[2]:]


def parse_reply(text: str) -> Step:
    """The step in a reply (``format_output``); the raw text is kept whatever it holds."""
    return split_reply(text)[0]
