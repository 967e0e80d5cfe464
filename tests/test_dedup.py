"""Dedup v0 keys on image hash + question + answer, never on the image alone."""

from __future__ import annotations

from datagen.dedup import Deduper, image_phash, row_key
from datagen.scenes.chart import make_scene


def test_same_image_with_other_questions_is_kept_and_repeats_are_dropped() -> None:
    scene = make_scene(0, 0)
    h = image_phash(scene.image)
    d = Deduper()
    assert d.admit(row_key(h, "What is the sum?", "10"))
    assert d.admit(row_key(h, "What is the mean?", "2.5"))
    assert not d.admit(row_key(h, "what is the SUM", "10"))  # same after normalization


def test_phash_is_stable_and_distinguishes_charts() -> None:
    a, b = make_scene(0, 0), make_scene(1, 0)
    assert image_phash(a.image) == image_phash(make_scene(0, 0).image)
    assert len(image_phash(a.image)) == 16
    assert image_phash(a.image) != image_phash(b.image)
