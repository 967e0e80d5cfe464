"""The scripted teacher's eyes: a seeded noise model of what a model perceives in an image.

The perception contract: a trace may use the question, text printed in an image it was shown
(legible at that scale), coarse noisy perception of what it was shown, and what its earlier
cells printed or showed. ``Looker`` is the coarse noisy perception. Each look returns the
estimate the trace may write into its code and records a ``Percept`` (estimate and truth), so
verification can check that the estimate came from a look and is not the renderer's value.

Error sizes (``NoiseModel``, documented in the README):

* a region (``region``): its centre is off by a normal error of ``region_sigma`` × the object's
  side plus ``view_sigma_px`` pixels of the view it was seen in (so × the view's downscaling:
  a 30-px object in a 4096-px scene seen at 1024 px is placed to about ±16 px); its size is off
  by ``size_error`` (relative). With probability ``miss_rate`` (more for objects under
  ``small_px`` pixels in the view) the look lands on the wrong spot: the error is ×``miss_factor``;
* a point (``point``): the same, for a location (a vertex, a marker);
* a colour (``colour``): its name from ``COLOUR_NAMES`` (the nearest prototype) and a rough RGB,
  the prototype moved by up to ``colour_error`` per channel; never the palette's exact value;
* a count (``count``): exact up to ``count_limit`` well-separated things, none beyond.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from datagen.records import Box, Percept

__all__ = ["COLOUR_NAMES", "Looker", "NoiseModel", "colour_name"]

# Coarse colour names and their prototypes: what "looks red" means to the teacher.
COLOUR_NAMES: dict[str, tuple[int, int, int]] = {
    "red": (215, 50, 45), "orange": (240, 140, 30), "yellow": (235, 205, 40),
    "green": (45, 150, 70), "blue": (45, 90, 210), "purple": (135, 70, 180),
    "pink": (235, 120, 175), "cyan": (40, 180, 200), "brown": (135, 85, 45),
    "gray": (128, 128, 128), "black": (20, 20, 20), "white": (245, 245, 245),
}


def colour_name(rgb: Sequence[int]) -> str:
    """The coarse name nearest to ``rgb``."""
    return min(COLOUR_NAMES, key=lambda n: sum((a - b) ** 2 for a, b in
                                               zip(COLOUR_NAMES[n], rgb, strict=True)))


@dataclass(frozen=True, slots=True)
class NoiseModel:
    """How far off the teacher's looks are (see the module docstring)."""

    region_sigma: float = 0.3
    view_sigma_px: float = 4.0
    size_error: float = 0.2
    miss_rate: float = 0.14
    small_px: float = 12.0
    small_miss_rate: float = 0.3
    miss_factor: float = 5.0
    colour_error: int = 20
    count_limit: int = 4


class Looker:
    """Seeded looks at one trace's images; every look is recorded in ``percepts``."""

    def __init__(self, rng: np.random.Generator, model: NoiseModel | None = None) -> None:
        self.rng = rng
        self.model = model or NoiseModel()
        self.percepts: list[Percept] = []

    def _error(self, side: float, view_scale: float) -> tuple[float, bool]:
        """The σ of a position error for an object of ``side`` px seen at ``view_scale``
        (view px per image px), and whether this look misses."""
        m = self.model
        sigma = m.region_sigma * side + m.view_sigma_px / max(view_scale, 1e-6)
        in_view = side * view_scale
        miss = self.rng.random() < (m.small_miss_rate if in_view < m.small_px else m.miss_rate)
        return sigma * (m.miss_factor if miss else 1.0), bool(miss)

    def region(self, box: Box | Sequence[int], image_size: Sequence[int],
               view_scale: float = 1.0) -> tuple[Box, bool]:
        """A rough box around the object at ``box``, seen in a view ``view_scale`` times the
        image's size; returns the estimate (clipped to the image) and whether the look missed."""
        x0, y0, x1, y1 = (float(v) for v in box)
        side = max(x1 - x0, y1 - y0)
        sigma, missed = self._error(side, view_scale)
        cx = (x0 + x1) / 2 + self.rng.normal(0, sigma)
        cy = (y0 + y1) / 2 + self.rng.normal(0, sigma)
        half_w = (x1 - x0) / 2 * max(0.3, 1 + self.rng.normal(0, self.model.size_error))
        half_h = (y1 - y0) / 2 * max(0.3, 1 + self.rng.normal(0, self.model.size_error))
        w, h = image_size
        est = (int(np.clip(cx - half_w, 0, w - 1)), int(np.clip(cy - half_h, 0, h - 1)),
               int(np.clip(cx + half_w, 1, w)), int(np.clip(cy + half_h, 1, h)))
        if est == tuple(int(v) for v in box):  # a look is never the renderer's exact box
            est = (est[0] + 1, est[1], est[2] + 1, est[3])
        self.percepts.append(Percept("region", est, tuple(int(v) for v in box)))
        return est, missed

    def point(self, xy: Sequence[float], size: float, view_scale: float = 1.0,
              image_size: Sequence[int] | None = None) -> tuple[tuple[int, int], bool]:
        """A rough position of the thing of ``size`` px at ``xy`` (inside ``image_size`` when
        given: nobody points outside the picture); and whether the look missed."""
        sigma, missed = self._error(size, view_scale)
        est = (int(round(xy[0] + self.rng.normal(0, sigma))),
               int(round(xy[1] + self.rng.normal(0, sigma))))
        if image_size is not None:
            est = (int(np.clip(est[0], 0, image_size[0] - 1)),
                   int(np.clip(est[1], 0, image_size[1] - 1)))
        truth = (round(float(xy[0]), 2), round(float(xy[1]), 2))
        if est == truth:
            est = (est[0] + 1, est[1])
        self.percepts.append(Percept("point", est, truth))
        return est, missed

    def colour(self, rgb: Sequence[int]) -> tuple[str, tuple[int, int, int]]:
        """The colour's coarse name and a rough RGB (the name's prototype, jittered)."""
        name = colour_name(rgb)
        e = self.model.colour_error
        rough = tuple(int(np.clip(c + self.rng.integers(-e, e + 1), 0, 255))
                      for c in COLOUR_NAMES[name])
        truth = tuple(int(c) for c in rgb)
        if max(abs(a - b) for a, b in zip(rough, truth, strict=True)) <= 4:
            # Too close to the palette to be a look: move it off by the model's error.
            rough = tuple(int(np.clip(c + (e if c < 128 else -e), 0, 255)) for c in rough)
        self.percepts.append(Percept("colour", (name, rough), truth))
        return name, rough  # type: ignore[return-value]

    def count(self, n: int) -> int | None:
        """``n`` when it is small enough to be counted at a glance, else None."""
        if n > self.model.count_limit:
            return None
        self.percepts.append(Percept("count", n, n, exact=True))
        return n

    def take(self) -> tuple[Percept, ...]:
        """The looks since the last ``take`` (to attach to the step that used them)."""
        out = tuple(self.percepts)
        self.percepts.clear()
        return out
