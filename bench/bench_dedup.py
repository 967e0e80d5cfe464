"""Dedup at scale: the multi-index hash search against all pairs, and the full rule on 1M rows.

    python bench/bench_dedup.py [--sizes 100000 1000000] [--radius 4] [--repeats 3]

Hashes are random 64-bit values with 10 % planted near-copies (0…radius bits flipped), so the
answer is known; the index's pairs are checked against all pairs at the smallest size. Then the
whole dedup rule (image within the radius + same answer + same or near-same question) admits
1M rows of signatures, first in one batch and then as 10 appended batches (a resumed build).
Prints medians of ``--repeats`` runs, on one core.
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np

from datagen.release.dedup import DedupIndex, DedupRule, Signatures, near_pairs


def planted(n: int, radius: int, seed: int = 0) -> np.ndarray:
    """``n`` random hashes, a tenth of them copies of others with up to ``radius`` bits flipped."""
    rng = np.random.default_rng(seed)
    h = rng.integers(0, 2**64 - 1, n, dtype=np.uint64, endpoint=True)
    k = n // 10
    src, dst = rng.integers(0, n, k), rng.integers(0, n, k)
    flips = np.zeros(k, dtype=np.uint64)
    for _ in range(radius):
        bit = rng.integers(0, 64, k).astype(np.uint64)
        on = rng.random(k) < 0.5
        flips[on] ^= np.uint64(1) << bit[on]
    h[dst] = h[src] ^ flips
    return h


def all_pairs(h: np.ndarray, radius: int, block: int = 2048) -> set[tuple[int, int]]:
    """Every pair within ``radius`` by XOR + popcount of all pairs, a block of rows at a time."""
    found: set[tuple[int, int]] = set()
    for start in range(0, len(h), block):
        rows = h[start:start + block]
        d = np.bitwise_count(rows[:, None] ^ h[None, :])
        i, j = np.nonzero(d <= radius)
        i = i + start
        keep = i < j
        found.update(zip(i[keep].tolist(), j[keep].tolist(), strict=True))
    return found


def timed(fn, repeats: int) -> tuple[float, object]:
    times, result = [], None
    for _ in range(repeats):
        t = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times), result


def signatures_of(n: int, radius: int) -> Signatures:
    """1M rows' worth of signatures: planted image copies, 20 answers, some repeated questions."""
    rng = np.random.default_rng(1)
    img = planted(n, radius)
    answer = rng.integers(0, 20, n).astype(np.uint64)
    qa = answer * np.uint64(1000) + rng.integers(0, 3, n).astype(np.uint64)
    minhash = rng.integers(0, 2**32, (n, 64), dtype=np.uint64).astype(np.uint32)
    return Signatures(img, img.copy(), qa, answer, minhash, [""] * n)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[100_000, 1_000_000])
    ap.add_argument("--radius", type=int, default=4)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    r = args.radius
    first = args.sizes[0]
    h = planted(first, r)
    t_all, truth = timed(lambda: all_pairs(h, r), 1)
    t_idx, (i, j) = timed(lambda: near_pairs(h, r), args.repeats)
    exact = set(zip(i.tolist(), j.tolist(), strict=True)) == truth
    print(f"{first:>9,} hashes, radius {r}: all pairs {t_all:7.2f} s, index {t_idx:6.3f} s "
          f"(median of {args.repeats}), {t_all / t_idx:6.0f}x faster, {len(truth):,} pairs, "
          f"same pairs: {exact}")
    for n in args.sizes[1:]:
        hn = planted(n, r)
        t, (i, _) = timed(lambda hn=hn: near_pairs(hn, r), args.repeats)
        print(f"{n:>9,} hashes, radius {r}: index {t:6.2f} s (median of {args.repeats}), "
              f"{len(i):,} pairs")
    n = args.sizes[-1]
    sigs = signatures_of(n, r)
    t_rule, reasons = timed(lambda: DedupIndex(DedupRule(radius=r)).admit(sigs), 1)
    dropped = sum(x is not None for x in reasons)
    print(f"{n:>9,} rows, full rule, one batch: {t_rule:6.2f} s, {dropped:,} duplicates")

    def appended() -> list[str | None]:
        index, out = DedupIndex(DedupRule(radius=r)), []
        step = n // 10
        for start in range(0, n, step):
            out += index.admit(sigs.take(np.arange(start, min(start + step, n))))
        return out

    t_inc, inc = timed(appended, 1)
    print(f"{n:>9,} rows, full rule, 10 appended batches: {t_inc:6.2f} s, same decisions: "
          f"{inc == reasons}")


if __name__ == "__main__":
    main()
