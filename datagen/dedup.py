"""Deduplication v0: a row is a duplicate when its image hash, question and answer were all seen.

The image alone is not enough: two synthetic charts with different data can sit within a few bits
of each other under a 64-bit perceptual hash, and several questions share one image.
"""

from __future__ import annotations

import io

import imagehash
from PIL import Image

from datagen.verify import normalize_text

__all__ = ["Deduper", "image_phash", "row_key"]


def image_phash(png: bytes) -> str:
    """64-bit perceptual hash of an encoded image, as 16 hex digits."""
    with Image.open(io.BytesIO(png)) as im:
        return str(imagehash.phash(im))


def row_key(phash: str, question: str, answer: str) -> str:
    """The identity of a row for dedup: image hash + normalized question + normalized answer."""
    return f"{phash}|{normalize_text(question)}|{normalize_text(answer)}"


class Deduper:
    """Admits each key once, in the order offered."""

    def __init__(self) -> None:
        self._seen: set[str] = set()

    def admit(self, key: str) -> bool:
        """True the first time ``key`` is offered, False after."""
        if key in self._seen:
            return False
        self._seen.add(key)
        return True
