"""The one small interface every scene family implements, and helpers the families share."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from datagen.records import Scene, Task

__all__ = ["Family", "format_number"]


@dataclass(frozen=True, slots=True)
class Family:
    """A family of scenes: how to make scene number ``index`` of a run, and what to ask about it.

    ``make_scene(index, seed, options)`` must be pure (same arguments, same bytes); ``options``
    are the family's knobs from the build config (``max_side``, ``clutter``; a family ignores
    the ones it has no use for). ``pose(scene, k)`` returns up to ``k`` tasks whose gold answers
    come from the scene's spec.
    """

    name: str
    make_scene: Callable[[int, int, Mapping[str, Any]], Scene]
    pose: Callable[[Scene, int], list[Task]]


def format_number(value: float) -> str:
    """Canonical text of a gold number: ``29``, ``0.35``, ``-4.5`` (no trailing zeros)."""
    if float(value).is_integer():
        return str(int(value))
    return f"{value:.6f}".rstrip("0").rstrip(".")
