"""Scene families. Each family is one module exposing ``FAMILY`` (see ``scenes.base.Family``)."""

from __future__ import annotations

from datagen.errors import UsageError
from datagen.scenes.base import Family

__all__ = ["FAMILY_NAMES", "Family", "get_family"]

FAMILY_NAMES = ("chart", "geometry", "search")


def get_family(name: str) -> Family:
    """The family called ``name``; a clear usage error for an unknown one."""
    if name == "chart":
        from datagen.scenes.chart import FAMILY

        return FAMILY
    if name == "geometry":
        from datagen.scenes.geometry import FAMILY as GEOMETRY

        return GEOMETRY
    if name == "search":
        from datagen.scenes.search import FAMILY as SEARCH

        return SEARCH
    raise UsageError(f"unknown family {name!r}; choose one of: {', '.join(FAMILY_NAMES)}")
