"""Shared fixtures: a small build config, one sandbox and one Prefect test server a session."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

# Prefect must never phone home from tests, and its temporary server needs time on 2 cores.
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "120")

from datagen.config import BuildConfig  # noqa: E402
from datagen.sandbox import Sandbox  # noqa: E402


@pytest.fixture(scope="session")
def sandbox() -> Iterator[Sandbox]:
    """One sandbox (one forkserver) shared by the tests that execute code."""
    with Sandbox(timeout=10.0) as sb:
        yield sb


@pytest.fixture(scope="session")
def prefect_harness() -> Iterator[None]:
    """Prefect's test server and database, started once for the tests that run flows."""
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=120):
        yield


@pytest.fixture
def small_cfg(tmp_path: Path) -> BuildConfig:
    """A build small enough for a unit test: 4 scenes per shard, 2 questions each."""
    return BuildConfig(n=12, out=tmp_path / "out", shard_size=4, questions_per_scene=2,
                       workers=1, cell_timeout=10.0)
