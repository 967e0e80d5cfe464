"""Tasks posed at generator level (no teacher, no sandbox), for tests over thousands of them.

``posed_tasks(family, scenes, seed)`` poses ``questions_per_scene`` questions about each of
``scenes`` scenes, as a build's shards do, and drops those an ambiguity rule rejects (as the
shards do). A search scene is posed from its spec alone: rendering a 4096-px canvas does not
change its questions and would make a few thousand tasks take minutes. The chart test can
reuse it: ``posed_tasks("chart", 1000)``.
"""

from __future__ import annotations

import functools

import numpy as np

from datagen.records import Scene, Task, stable_id
from datagen.scenes import search
from datagen.scenes.base import failed_rules
from datagen.scenes.registry import get_family

__all__ = ["posed_tasks"]


def _search_scene(index: int, seed: int) -> Scene:
    """``search.make_scene`` without the rendering (the same spec, id and questions)."""
    rng = np.random.default_rng([seed, index, 0x5EA])
    spec = search.make_spec(rng)
    return Scene(id=f"search-{stable_id('search', seed, index, 4096)}", family="search",
                 kind=spec["background"]["style"], seed=index, image=b"", spec=spec,
                 difficulty="easy", target_area=spec["target_area"])


@functools.cache
def posed_tasks(family: str, scenes: int, seed: int = 5, per_scene: int = 3) -> tuple[Task, ...]:
    """The tasks a build would pose (and keep past the ambiguity rules) for ``scenes`` scenes."""
    fam = get_family(family)
    out: list[Task] = []
    for index in range(scenes):
        scene = _search_scene(index, seed) if family == "search" else \
            fam.make_scene(index, seed, {})
        out += [t for t in fam.pose(scene, per_scene) if not failed_rules(fam.rules, t)]
    return tuple(out)
