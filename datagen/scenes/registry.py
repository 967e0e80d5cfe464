"""The one list of scene families; config, the scripted teacher and the CLI read its names."""

from __future__ import annotations

from datagen.errors import UsageError
from datagen.scenes import FAMILY_NAMES, chart, geometry, search
from datagen.scenes.base import Family

__all__ = ["FAMILIES", "get_family"]

FAMILIES: dict[str, Family] = {f.name: f for f in (chart.FAMILY, geometry.FAMILY, search.FAMILY)}
if tuple(FAMILIES) != FAMILY_NAMES:
    raise ImportError(f"scenes.FAMILY_NAMES {FAMILY_NAMES} does not list the registered "
                      f"families {tuple(FAMILIES)}")


def get_family(name: str) -> Family:
    """The family called ``name``; a clear usage error for an unknown one."""
    try:
        return FAMILIES[name]
    except KeyError:
        raise UsageError(f"unknown family {name!r}; choose one of: "
                         f"{', '.join(FAMILY_NAMES)}") from None
