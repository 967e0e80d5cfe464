"""What a shard-pool worker has loaded; standard library only, so asking does not load more."""

from __future__ import annotations

import sys


def loaded(packages: tuple[str, ...]) -> list[str]:
    """Which of ``packages`` this process has imported."""
    return sorted({name.split(".")[0] for name in sys.modules} & set(packages))
