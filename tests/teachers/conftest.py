"""Fixtures for the LLM-teacher tests: a real chat-completions server on 127.0.0.1."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest

from tests.support.openai_server import FakeOpenAI, Reply

Handler = Callable[[dict[str, Any]], "str | Reply"]


@pytest.fixture
def serve() -> Iterator[Callable[[Handler], FakeOpenAI]]:
    """Start servers scripted by a handler of the request; all are stopped after the test."""
    servers: list[FakeOpenAI] = []

    def start(handler: Handler) -> FakeOpenAI:
        servers.append(FakeOpenAI(handler).__enter__())
        return servers[-1]

    yield start
    for s in servers:
        s.__exit__()
