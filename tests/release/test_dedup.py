"""Dedup: the rule (image near + same answer + same or near-same question), exact index search,
and an index that grows batch by batch with the same decisions as one pass."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from datagen.release.dedup import (
    DedupIndex,
    DedupRule,
    Signatures,
    cross_pairs,
    near_pairs,
    signatures,
)
from datagen.scenes.chart import make_scene


def _jpeg_again(png: bytes) -> bytes:
    """The same picture re-encoded lossily: a near-duplicate image, not a byte-identical one."""
    with Image.open(io.BytesIO(png)) as im:
        buf = io.BytesIO()
        im.convert("RGB").save(buf, "JPEG", quality=70)
        return buf.getvalue()


def _bits_apart(a: bytes, b: bytes) -> int:
    sa, sb = signatures([(a, "q", "a", "x")]), signatures([(b, "q", "a", "y")])
    return int(np.bitwise_count(sa.phash[0] ^ sb.phash[0]))


def test_the_rule_drops_repeats_and_keeps_other_questions_and_answers() -> None:
    chart, other = make_scene(0, 0).image, make_scene(1, 0).image
    recoded = _jpeg_again(chart)
    assert 0 < _bits_apart(chart, recoded) <= 4 or _bits_apart(chart, recoded) == 0
    rows = [
        (chart, "What is the sum of all bars?", "10", "s0"),  # kept
        (chart, "What is the mean of the bars?", "2.5", "s0"),  # same image, other question
        (chart, "what is the SUM of all bars", "10", "s0"),  # same after normalization
        (recoded, "What is the sum of all bars?", "10", "s0b"),  # re-encoded image
        (chart, "What is the total sum of all bars?", "10", "s0"),  # reworded
        (chart, "What is the total sum of all bars?", "11", "s0"),  # reworded, other answer
        (other, "What is the sum of all bars?", "10", "s1"),  # another chart altogether
        (chart, "Which bar is the tallest one?", "10", "s0"),  # other question, same answer
    ]
    index = DedupIndex(DedupRule(radius=4, text_threshold=0.6))
    reasons = index.admit(signatures(rows))
    recoded_reason = "exact_duplicate" if _bits_apart(chart, recoded) == 0 \
        else "image_near_duplicate"
    assert reasons == [None, None, "exact_duplicate", recoded_reason, "text_near_duplicate",
                       None, None, None]
    assert len(index.kept) == 5


def test_radius_and_threshold_can_be_tightened() -> None:
    chart = make_scene(0, 0).image
    rows = [(chart, "What is the sum of all bars?", "10", "s0"),
            (chart, "What is the total sum of all bars?", "10", "s0")]
    assert DedupIndex(DedupRule(text_threshold=0.6)).admit(signatures(rows))[1] \
        == "text_near_duplicate"
    assert DedupIndex(DedupRule(text_threshold=1.0)).admit(signatures(rows)) == [None, None]


def _random_hashes(n: int, planted: int, radius: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    h = rng.integers(0, 2**63, n, dtype=np.uint64) * np.uint64(2) \
        + rng.integers(0, 2, n, dtype=np.uint64)
    for _ in range(planted):  # copies within the radius
        src, dst = rng.integers(0, n, 2)
        v = h[src]
        for bit in rng.choice(64, rng.integers(0, radius + 1), replace=False):
            v ^= np.uint64(1) << np.uint64(bit)
        h[dst] = v
    return h


def _brute(h: np.ndarray, radius: int) -> set[tuple[int, int]]:
    d = np.bitwise_count(h[:, None] ^ h[None, :])
    i, j = np.nonzero(np.triu(d <= radius, 1))
    return set(zip(i.tolist(), j.tolist(), strict=True))


@pytest.mark.parametrize("radius", [0, 3, 4, 8])
def test_index_search_finds_exactly_the_pairs_that_all_pairs_finds(radius: int) -> None:
    h = _random_hashes(3000, planted=150, radius=radius)
    i, j = near_pairs(h, radius)
    found = set(zip(i.tolist(), j.tolist(), strict=True))
    assert found == _brute(h, radius) and len(found) >= 100
    q, ref = h[:300], h[300:]
    qi, ri = cross_pairs(q, ref, radius)
    d = np.bitwise_count(q[:, None] ^ ref[None, :])
    assert set(zip(qi.tolist(), ri.tolist(), strict=True)) == \
        set(zip(*(x.tolist() for x in np.nonzero(d <= radius)), strict=True))


def _synthetic(n: int, seed: int) -> Signatures:
    """Rows with planted duplicates, without rendering images."""
    rng = np.random.default_rng(seed)
    base = _random_hashes(n, planted=n // 5, radius=3, seed=seed)
    answers = rng.integers(0, 4, n).astype(np.uint64)
    qa = answers * np.uint64(7) + rng.integers(0, 2, n).astype(np.uint64)
    minhash = rng.integers(0, 2**32, (n, 64), dtype=np.uint64).astype(np.uint32)
    return Signatures(base, base.copy(), qa, answers, minhash, [f"s{k}" for k in range(n)])


def test_admitting_in_batches_gives_the_decisions_of_one_pass(tmp_path: Path) -> None:
    rows = _synthetic(2000, seed=1)
    once = DedupIndex(DedupRule()).admit(rows)
    assert sum(r is not None for r in once) > 30
    index = DedupIndex(DedupRule())
    path = tmp_path / "index.npz"
    batched: list[str | None] = []
    for start in range(0, 2000, 300):
        if start:  # persist and reload between batches, as a resumed build does
            loaded = DedupIndex.load(path, DedupRule())
            assert loaded is not None and loaded[1] == {"upto": start}
            index = loaded[0]
        batched += index.admit(rows.take(np.arange(start, min(start + 300, 2000))))
        index.save(path, {"upto": start + 300})
    assert batched == once
    assert DedupIndex.load(path, DedupRule(radius=2)) is None  # another rule: rebuilt
