"""A real OpenAI-compatible chat server on loopback, scripted per test by a plain function.

``FakeOpenAI(handler)`` runs FastAPI under uvicorn in a background thread on a free port of
127.0.0.1 and answers ``POST /v1/chat/completions`` (JSON, non-streaming, with ``usage``). The
handler gets the request body (a dict) and returns the assistant's text, or a ``Reply`` for
anything else: an HTTP error with headers, a delay, a raw (broken) body. Every request is counted
and kept, so tests can assert what the client sent and how often.
"""

from __future__ import annotations

import asyncio
import json
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import uvicorn
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response

__all__ = ["FakeOpenAI", "Reply", "last_user_text"]


@dataclass
class Reply:
    """A scripted response: the assistant's ``text`` with status 200, or something else."""

    text: str = ""
    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0
    raw: str | None = None  # sent as the body verbatim (e.g. truncated JSON)
    error: str = "error"


Handler = Callable[[dict[str, Any]], "str | Reply"]


def last_user_text(body: dict[str, Any]) -> str:
    """The text parts of the last user message of a request."""
    msg = [m for m in body["messages"] if m["role"] == "user"][-1]
    content = msg["content"]
    if isinstance(content, str):
        return content
    return "\n".join(p["text"] for p in content if p.get("type") == "text")


class FakeOpenAI:
    """The server; use as a context manager. ``url`` is the base URL (ending in ``/v1``)."""

    def __init__(self, handler: Handler) -> None:
        self.handler = handler
        self.requests: list[dict[str, Any]] = []
        self.times: list[float] = []
        self.auth: list[str] = []
        self._lock = threading.Lock()
        app = FastAPI()
        app.post("/v1/chat/completions")(self._complete)
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._sock.bind(("127.0.0.1", 0))
        self.port = self._sock.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}/v1"
        config = uvicorn.Config(app, log_level="warning", lifespan="off", backlog=256,
                                timeout_keep_alive=30)
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._server.run,
                                        kwargs={"sockets": [self._sock]}, daemon=True)

    @property
    def count(self) -> int:
        """Requests received so far."""
        with self._lock:
            return len(self.requests)

    async def _complete(self, request: Request) -> Response:
        body = await request.json()
        with self._lock:
            self.requests.append(body)
            self.times.append(time.monotonic())
            self.auth.append(request.headers.get("authorization", ""))
        reply = self.handler(body)
        if isinstance(reply, str):
            reply = Reply(text=reply)
        if reply.delay:
            await asyncio.sleep(reply.delay)
        if reply.raw is not None:
            return Response(reply.raw, status_code=reply.status, media_type="application/json",
                            headers=reply.headers)
        if reply.status != 200:
            return JSONResponse({"error": {"message": reply.error, "type": "test"}},
                                status_code=reply.status, headers=reply.headers)
        prompt = len(json.dumps(body["messages"])) // 4
        completion = max(1, len(reply.text) // 4)
        return JSONResponse({
            "id": f"chatcmpl-{len(self.requests)}", "object": "chat.completion",
            "created": int(time.time()), "model": body["model"],
            "choices": [{"index": 0, "finish_reason": "stop",
                         "message": {"role": "assistant", "content": reply.text}}],
            "usage": {"prompt_tokens": prompt, "completion_tokens": completion,
                      "total_tokens": prompt + completion},
        }, headers=reply.headers)

    def __enter__(self) -> FakeOpenAI:
        self._thread.start()
        deadline = time.monotonic() + 10
        while not self._server.started:
            if time.monotonic() > deadline:
                raise RuntimeError("the test OpenAI server did not start")
            time.sleep(0.01)
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.should_exit = True
        self._thread.join(5)
        self._sock.close()
