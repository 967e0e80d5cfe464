"""The LLM teacher: any OpenAI-compatible chat endpoint writes the turns (``--teacher openai``).

``format_input`` and ``format_output`` are kept apart (as in distilabel): ``request_messages``
turns the task and the turns so far into a chat request (the system prompt, the image as a
base64 data URL with the question, then each past reply verbatim and its observation with the
images the code showed in place of their ``<image>`` tokens); ``messages.parse_reply`` reads the
think text, the code cell (``<code>```python …```</code>``, or a ``<tool_call>`` to
``execute_python_code``) or the ``<answer>`` out of the reply and keeps the raw text, so the SFT
row shows exactly what the model wrote. A reply with neither code nor answer (or both) has no
usable step: verification rejects it as ``format``.

Transport, retries, limits, cache and costs are in ``chat_api``.
"""

from __future__ import annotations

import base64
import copy
from collections.abc import Sequence
from typing import Any

from datagen.config import BuildConfig
from datagen.messages import observation_text, parse_reply, system_prompt
from datagen.paths import cache_dir
from datagen.records import Step, Task, Turn, stable_id
from datagen.teachers.base import Teacher, TeacherFailure, Usage
from datagen.teachers.chat_api import ChatAPI, Ledger, ResponseCache, chat_api, openai_api_key
from datagen.templates import render

__all__ = ["MAX_TOKENS", "OpenAITeacher", "data_url", "request_messages"]

MAX_TOKENS = 2048


def data_url(image: bytes) -> dict[str, Any]:
    """An image content part holding ``image`` (PNG or JPEG) as a base64 data URL."""
    mime = "image/jpeg" if image[:3] == b"\xff\xd8\xff" else "image/png"
    url = f"data:{mime};base64,{base64.b64encode(image).decode('ascii')}"
    return {"type": "image_url", "image_url": {"url": url}}


def _with_images(text: str, images: Sequence[bytes]) -> list[dict[str, Any]]:
    """Content parts of ``text`` with one image in place of each ``<image>`` token."""
    pieces = text.split("<image>")
    parts: list[dict[str, Any]] = []
    for i, piece in enumerate(pieces):
        if piece.strip():
            parts.append({"type": "text", "text": piece})
        if i < len(pieces) - 1 and i < len(images):
            parts.append(data_url(images[i]))
    return parts


def request_messages(task: Task, history: Sequence[Turn], last_turn: bool) -> list[dict]:
    """The chat request for the next step of ``task`` (``format_input``)."""
    messages: list[dict[str, Any]] = [
        {"role": "system", "content": system_prompt()},
        {"role": "user", "content": [data_url(task.scene.image),
                                     {"type": "text", "text": task.question}]},
    ]
    for turn in history:
        text = turn.step.raw if turn.step.raw is not None else ""
        messages.append({"role": "assistant", "content": text})
        if turn.result is not None:
            parts = _with_images(observation_text(turn.result), turn.result.images)
            messages.append({"role": "user", "content": parts})
    if last_turn:
        messages[-1]["content"].append({"type": "text", "text": render("llm_last_turn.j2")})
    return messages


class OpenAITeacher:
    """A real model writes each step; see the module docstring."""

    def __init__(self, cfg: BuildConfig, attempt: int = 0, api: ChatAPI | None = None) -> None:
        key = openai_api_key("--teacher openai")
        self.cfg = cfg
        self.name = f"openai:{cfg.model}"
        self.attempt = attempt
        self.api = api or chat_api(key, cfg.base_url, cfg.request_timeout, cfg.concurrency,
                                   cfg.rpm / cfg.workers, cfg.tpm / cfg.workers)
        self.cache = ResponseCache(cache_dir(cfg.out))
        price_in, price_out = cfg.prices()
        self.ledger = Ledger(price_in, price_out)

    def for_attempt(self, attempt: int) -> Teacher:
        """The same teacher for try ``attempt``: its requests carry another seed."""
        other = copy.copy(self)
        other.attempt = attempt
        return other

    def usage(self) -> Usage:
        """Tokens and cost so far (shared by every attempt's teacher)."""
        with self.ledger.lock:
            return copy.copy(self.ledger.usage)

    def style(self, task: Task) -> tuple[str, tuple[str, ...]]:
        """One style for every trace; which ops the model used is not inferred."""
        return "llm", ()

    def step(self, task: Task, history: Sequence[Turn]) -> Step:
        """Ask the model for the next step."""
        if history and history[-1].result is not None and history[-1].result.status != "ok":
            # Verification rejects any trace with a failed cell: do not pay for more turns.
            raise TeacherFailure("stopped", "a cell failed, so the trace cannot verify")
        last_turn = len(history) >= self.cfg.max_turns - 1
        request = {
            "model": self.cfg.model,
            "messages": request_messages(task, history, last_turn),
            "temperature": self.cfg.temperature,
            "max_tokens": MAX_TOKENS,
            "seed": int(stable_id(self.cfg.seed, task.id, self.attempt), 16) % 2**31,
        }
        reply = self.api.complete(request, self.cache, self.ledger, self.cfg.max_cost)
        return parse_reply(reply.text)
