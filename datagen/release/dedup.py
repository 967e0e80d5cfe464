"""Deduplication at scale: perceptual image hashes, question text, and an index that persists.

The rule. A row is a duplicate of an earlier kept row when their images are within
``radius`` bits (64-bit perceptual hash, Hamming distance), their answers are the same
(normalized), and their questions are the same (normalized) or near-same (MinHash Jaccard of
character 4-grams at least ``text_threshold``). The image alone is not enough: our synthetic
images are self-similar — measured on 300 scenes per family, 15 of 44,850 pairs of *different*
charts and 85 of different geometry figures lie within 4 bits (search scenes: none within 12) —
and each image carries several questions. Reasons, most specific first:

    exact_duplicate        same hash, same question, same answer
    image_near_duplicate   hash within the radius, same question and answer
    text_near_duplicate    hash within the radius, same answer, near-same question wording

Scale. Candidate pairs are never all pairs: each rule is a set of bucket keys per row, rows that
share a bucket are candidates, and candidates are checked exactly. Image buckets are the
multi-index-hashing chunks of the hash — split 64 bits into ``radius + 1`` chunks; two hashes
within ``radius`` bits agree on at least one chunk (pigeonhole), so the search is exact — mixed
with the answer (and, for near-same wording, with a MinHash LSH band of the question). Rows
that share a bucket are found by sorting the keys and comparing neighbours, in numpy.

Incremental. ``DedupIndex`` keeps the signatures of every row it admitted; ``save``/``load``
persist it with the build, so a later publish admits only the new shards against it.
"""

from __future__ import annotations

import hashlib
import io
import json
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import imagehash
import numpy as np
from datasketch import MinHash
from PIL import Image

from datagen.atomic import atomic_path
from datagen.check.matcher import normalize_text

__all__ = [
    "DUPLICATE_REASONS",
    "DedupIndex",
    "DedupRule",
    "Signatures",
    "chunk_masks",
    "hamming",
    "image_hashes",
    "near_pairs",
    "cross_pairs",
    "signatures",
    "text_hash",
]

DUPLICATE_REASONS = ("exact_duplicate", "image_near_duplicate", "text_near_duplicate")
NUM_PERM = 64  # MinHash permutations per question
_SHINGLE = 4  # characters per shingle: questions are short, word n-grams would be too few
_U64 = np.uint64
HashMethod = Literal["phash", "dhash"]


@dataclass(frozen=True, slots=True)
class DedupRule:
    """What counts as a duplicate (see the module docstring)."""

    radius: int = 4
    text_threshold: float = 0.8
    image_hash: HashMethod = "phash"

    def key(self) -> str:
        """The rule as text: an index built under another rule is rebuilt."""
        return f"{self.image_hash}/r{self.radius}/t{self.text_threshold:g}"


# --------------------------------------------------------------------------------------------
# Signatures: what dedup needs to know of a row, as columns


def image_hashes(png: bytes) -> tuple[int, int]:
    """The 64-bit pHash and dHash of an encoded image, as unsigned ints."""
    with Image.open(io.BytesIO(png)) as im:
        # Both hashes look at a 32x32 thumbnail at most: let a JPEG decode at 1/8 scale (6x
        # cheaper on a 4096-px scene; a no-op for PNG). Every hash is made here, so builds,
        # --exclude and --decontaminate hash alike.
        im.draft("RGB", (max(64, im.width // 8), max(64, im.height // 8)))
        im.load()
        return int(str(imagehash.phash(im)), 16), int(str(imagehash.dhash(im)), 16)


def text_hash(*parts: str) -> int:
    """A 64-bit hash of the normalized ``parts`` (the exact-text key)."""
    text = "\x1f".join(normalize_text(p) for p in parts)
    return int.from_bytes(hashlib.blake2b(text.encode(), digest_size=8).digest(), "little")


def _shingles(question: str) -> list[bytes]:
    text = f" {normalize_text(question)} "
    if len(text) <= _SHINGLE:
        return [text.encode()]
    return [text[i:i + _SHINGLE].encode() for i in range(len(text) - _SHINGLE + 1)]


@dataclass(slots=True)
class Signatures:
    """Per-row dedup signatures, column-wise (one entry per row, in row order)."""

    phash: np.ndarray  # uint64
    dhash: np.ndarray  # uint64
    qa: np.ndarray  # uint64: normalized question + answer
    answer: np.ndarray  # uint64: normalized answer
    minhash: np.ndarray  # uint32, (rows, NUM_PERM): the question's MinHash
    scene: list[str] = field(default_factory=list)  # scene ids

    def __len__(self) -> int:
        return len(self.phash)

    def image(self, method: HashMethod) -> np.ndarray:
        """The image hash column the rule asks for."""
        return self.phash if method == "phash" else self.dhash

    def take(self, rows: Sequence[int] | np.ndarray) -> Signatures:
        """The signatures of ``rows`` only."""
        idx = np.asarray(rows, dtype=np.int64)
        return Signatures(self.phash[idx], self.dhash[idx], self.qa[idx], self.answer[idx],
                          self.minhash[idx], [self.scene[i] for i in idx.tolist()])

    @staticmethod
    def empty() -> Signatures:
        """No rows."""
        z = np.zeros(0, dtype=_U64)
        return Signatures(z, z.copy(), z.copy(), z.copy(),
                          np.zeros((0, NUM_PERM), dtype=np.uint32), [])

    @staticmethod
    def concat(parts: Sequence[Signatures]) -> Signatures:
        """One table of the rows of ``parts``, in order."""
        if not parts:
            return Signatures.empty()
        return Signatures(
            np.concatenate([p.phash for p in parts]), np.concatenate([p.dhash for p in parts]),
            np.concatenate([p.qa for p in parts]), np.concatenate([p.answer for p in parts]),
            np.concatenate([p.minhash for p in parts]), [s for p in parts for s in p.scene])

    def save(self, path: Path) -> None:
        """Write atomically as ``.npz``."""
        with atomic_path(path) as tmp, open(tmp, "wb") as f:
            np.savez(f, phash=self.phash, dhash=self.dhash, qa=self.qa, answer=self.answer,
                     minhash=self.minhash, scene=np.array(self.scene, dtype=str))

    @staticmethod
    def load(path: Path) -> Signatures:
        """Read what ``save`` wrote."""
        with np.load(path) as z:
            return Signatures(z["phash"], z["dhash"], z["qa"], z["answer"], z["minhash"],
                              z["scene"].tolist())


def signatures(rows: Sequence[tuple[bytes, str, str, str]]) -> Signatures:
    """Signatures of ``(image png, question, answer, scene id)`` rows."""
    if not rows:
        return Signatures.empty()
    by_scene: dict[str, tuple[int, int]] = {}  # a scene's questions share its image
    hashes = [by_scene.get(scene) or by_scene.setdefault(scene, image_hashes(png))
              for png, _, _, scene in rows]
    mins = MinHash.bulk([_shingles(q) for _, q, _, _ in rows], num_perm=NUM_PERM)
    return Signatures(
        phash=np.array([h[0] for h in hashes], dtype=_U64),
        dhash=np.array([h[1] for h in hashes], dtype=_U64),
        qa=np.array([text_hash(q, a) for _, q, a, _ in rows], dtype=_U64),
        answer=np.array([text_hash(a) for _, _, a, _ in rows], dtype=_U64),
        minhash=np.stack([m.hashvalues.astype(np.uint32) for m in mins]),
        scene=[s for _, _, _, s in rows],
    )


# --------------------------------------------------------------------------------------------
# Candidate pairs from bucket keys, exact checks


def hamming(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Bit distance between two arrays of 64-bit hashes, elementwise."""
    return np.bitwise_count(np.bitwise_xor(a, b)).astype(np.int64)


def chunk_masks(radius: int) -> list[np.uint64]:
    """The ``radius + 1`` disjoint bit masks of multi-index hashing, covering all 64 bits."""
    n = radius + 1
    widths = [64 // n + (1 if k < 64 % n else 0) for k in range(n)]
    masks, start = [], 0
    for w in widths:
        masks.append(_U64(((1 << w) - 1) << start))
        start += w
    return masks


def _mix(*cols: np.ndarray) -> np.ndarray:
    """One 64-bit bucket key from several columns (splitmix64 finalizer per step)."""
    h = np.zeros(len(cols[0]), dtype=_U64)
    with np.errstate(over="ignore"):
        for c in cols:
            h = (h ^ c.astype(_U64)) * _U64(0x9E3779B97F4A7C15)
            h ^= h >> _U64(31)
            h *= _U64(0xBF58476D1CE4E5B9)
            h ^= h >> _U64(27)
    return h


def _self_pairs(keys: np.ndarray) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """All pairs ``(i, j)``, ``i < j``, of rows with equal keys, a batch at a time.

    Sort once, then compare each row with the one ``d`` places on, for d = 1, 2, … until no
    group is that long: cost ~ rows × longest group, never rows².
    """
    order = np.argsort(keys, kind="stable")
    sk = keys[order]
    d = 1
    while d < len(sk):
        eq = np.flatnonzero(sk[:-d] == sk[d:])
        if not len(eq):
            return
        a, b = order[eq], order[eq + d]
        yield np.minimum(a, b), np.maximum(a, b)
        d += 1


def _cross_pairs(query: np.ndarray, ref: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """All pairs ``(q, r)`` with ``query[q] == ref[r]``."""
    order = np.argsort(ref, kind="stable")
    sr = ref[order]
    lo = np.searchsorted(sr, query, "left")
    counts = np.searchsorted(sr, query, "right") - lo
    q = np.repeat(np.arange(len(query)), counts)
    within = np.arange(len(q)) - np.repeat(np.cumsum(counts) - counts, counts)
    return q, order[np.repeat(lo, counts) + within]


def near_pairs(hashes: np.ndarray, radius: int) -> tuple[np.ndarray, np.ndarray]:
    """Every pair ``(i, j)``, ``i < j``, of hashes within ``radius`` bits (exact, sorted)."""
    found: list[np.ndarray] = []
    n = len(hashes)
    for mask in chunk_masks(radius):
        for i, j in _self_pairs(hashes & mask):
            ok = hamming(hashes[i], hashes[j]) <= radius
            found.append(i[ok].astype(np.int64) * n + j[ok])
    return _unpack(found, n)


def cross_pairs(query: np.ndarray, ref: np.ndarray,
                radius: int) -> tuple[np.ndarray, np.ndarray]:
    """Every pair ``(q, r)`` of a query hash and a reference hash within ``radius`` bits."""
    found: list[np.ndarray] = []
    n = max(len(ref), 1)
    for mask in chunk_masks(radius):
        q, r = _cross_pairs(query & mask, ref & mask)
        ok = hamming(query[q], ref[r]) <= radius
        found.append(q[ok].astype(np.int64) * n + r[ok])
    return _unpack(found, n)


def _unpack(found: list[np.ndarray], n: int) -> tuple[np.ndarray, np.ndarray]:
    if not found:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    flat = np.unique(np.concatenate(found))
    return flat // n, flat % n


def _bands(threshold: float) -> tuple[int, int]:
    """LSH bands × rows per band for ``NUM_PERM`` permutations, S-curve centred on threshold."""
    best = min(((b, NUM_PERM // b) for b in range(1, NUM_PERM + 1)),
               key=lambda br: abs((1 / br[0]) ** (1 / br[1]) - threshold))
    return best


def _band_keys(minhash: np.ndarray, threshold: float) -> list[np.ndarray]:
    b, r = _bands(threshold)
    return [_mix(*(minhash[:, k * r + t] for t in range(r))) for k in range(b)]


def _jaccard(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """MinHash estimate of the Jaccard similarity of row pairs."""
    return (a == b).mean(axis=1)


# --------------------------------------------------------------------------------------------
# The index


@dataclass(slots=True)
class DedupIndex:
    """The rows admitted so far (their signatures), and the rule that admitted them."""

    rule: DedupRule
    kept: Signatures = field(default_factory=Signatures.empty)

    def admit(self, batch: Signatures) -> list[str | None]:
        """Decide each row of ``batch`` in order: None (kept, added) or its duplicate reason.

        A row is compared with every kept row before it — earlier batches and earlier rows
        of this batch; a row dropped as a duplicate never causes another drop.
        """
        m, k = len(self.kept), len(batch)
        if not k:
            return []
        both = Signatures.concat([self.kept, batch])
        pairs = self._candidates(both, m)
        reasons: list[str | None] = [None] * k
        kept = np.ones(m + k, dtype=bool)
        # Best reason per (later row j, partner i): exact < image near < text near.
        partners: dict[int, list[tuple[int, int]]] = {}
        for i, j, rank in pairs:
            partners.setdefault(j, []).append((i, rank))
        for j in sorted(partners):
            live = [rank for i, rank in partners[j] if kept[i]]
            if live:
                kept[j] = False
                reasons[j - m] = DUPLICATE_REASONS[min(live)]
        self.kept = Signatures.concat([self.kept, batch.take(np.flatnonzero(kept[m:]))])
        return reasons

    def _candidates(self, s: Signatures, m: int) -> list[tuple[int, int, int]]:
        """Pairs (i, j, reason rank) with i < j, j a new row (≥ m), that meet the rule."""
        img = s.image(self.rule.image_hash)
        r = self.rule.radius
        masks = chunk_masks(r)
        out: set[tuple[int, int, int]] = set()
        # Same question and answer, image within the radius.
        for mask in masks:
            for i, j in _self_pairs(_mix(s.qa, img & mask)):
                keep = (j >= m) & (s.qa[i] == s.qa[j])
                i, j = i[keep], j[keep]
                dist = hamming(img[i], img[j])
                ok = dist <= r
                for a, b, dd in zip(i[ok].tolist(), j[ok].tolist(), dist[ok].tolist(),
                                    strict=True):
                    out.add((a, b, 0 if dd == 0 else 1))
        # Same answer, near-same question (shares an LSH band), image within the radius.
        for band in _band_keys(s.minhash, self.rule.text_threshold):
            for mask in masks:
                for i, j in _self_pairs(_mix(s.answer, band, img & mask)):
                    keep = (j >= m) & (s.answer[i] == s.answer[j]) & (s.qa[i] != s.qa[j])
                    i, j = i[keep], j[keep]
                    ok = (hamming(img[i], img[j]) <= r) & (
                        _jaccard(s.minhash[i], s.minhash[j]) >= self.rule.text_threshold)
                    out.update((a, b, 2) for a, b in zip(i[ok].tolist(), j[ok].tolist(),
                                                         strict=True))
        return sorted(out)

    def save(self, path: Path, meta: dict[str, object]) -> None:
        """Persist the index and ``meta`` (what it has admitted) as one file, atomically."""
        k = self.kept
        with atomic_path(path) as tmp, open(tmp, "wb") as f:
            np.savez(f, phash=k.phash, dhash=k.dhash, qa=k.qa, answer=k.answer,
                     minhash=k.minhash, scene=np.array(k.scene, dtype=object).astype(str),
                     info=np.array(json.dumps({"rule": self.rule.key(), "meta": meta})))

    @staticmethod
    def load(path: Path, rule: DedupRule) -> tuple[DedupIndex, dict[str, Any]] | None:
        """The index saved at ``path`` and its meta; None if absent or made by another rule."""
        try:
            with np.load(path) as z:
                info = json.loads(str(z["info"]))
                if info.get("rule") != rule.key():
                    return None
                kept = Signatures(z["phash"], z["dhash"], z["qa"], z["answer"], z["minhash"],
                                  z["scene"].tolist())
            return DedupIndex(rule, kept), info["meta"]
        except (OSError, ValueError, KeyError):
            return None
