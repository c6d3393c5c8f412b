"""Benchmark: near-duplicate grouping of 10k / 50k / 100k images (synthetic hashes).

Each image set holds originals with 0–6 near copies (a few bits flipped, some
flipped or rotated). Prints the indexed search and the whole grouping (search +
joins) at each size, as ratios against a baseline measured in the same run:
the vectorised pairwise scan at 10k. The pairwise scan's cost at larger sizes is
its measured 10k time × (N / 10k)², since it is exactly quadratic.

    .venv/bin/python benchmarks/grouping.py [--sizes 10000 50000 100000] [--threshold 6]
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from pestid.grouping import GroupingConfig, assign_groups
from pestid.hashing import dihedral_variants, hamming
from pestid.manifest import Row
from pestid.neighbours import near_duplicate_pairs


def synthetic_hashes(n: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    originals = rng.integers(0, 2**63, size=n // 4, dtype=np.uint64)
    picks = rng.integers(0, len(originals), size=n - len(originals))
    copies = originals[picks].copy()
    for _ in range(3):  # up to 3 flipped bits per copy
        bits = rng.integers(0, 64, size=len(copies)).astype(np.uint64)
        copies ^= np.where(rng.random(len(copies)) < 0.6, np.uint64(1) << bits, np.uint64(0))
    turned = rng.integers(0, 8, size=len(copies))
    copies = dihedral_variants(copies)[turned, np.arange(len(copies))]
    return np.concatenate([originals, copies])


def pairwise_scan(hashes: np.ndarray, threshold: int, block: int = 512) -> int:
    """The baseline: every variant of every hash against every hash, in numpy blocks."""
    variants = dihedral_variants(hashes)
    found = 0
    for start in range(0, len(hashes), block):
        q = variants[:, start : start + block]
        d = hamming(q[:, :, None], hashes[None, None, :]).min(axis=0)
        idx = np.arange(start, start + q.shape[1])[:, None]
        found += int(((d <= threshold) & (np.arange(len(hashes))[None, :] > idx)).sum())
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 50_000, 100_000])
    parser.add_argument("--threshold", type=int, default=6)
    args = parser.parse_args()

    base_n = args.sizes[0]
    hashes = synthetic_hashes(base_n, seed=base_n)
    start = time.perf_counter()
    base_pairs = pairwise_scan(hashes, args.threshold)
    baseline = time.perf_counter() - start
    print(f"baseline: pairwise scan at {base_n:,} images: {baseline:.2f} s, {base_pairs:,} pairs")
    print(f"{'images':>8} {'search s':>9} {'group s':>8} {'pairs':>9} {'search/base':>12} "
          f"{'pairwise est./search':>21} {'growth vs first':>16}")  # fmt: skip
    first = None
    for n in args.sizes:
        hashes = synthetic_hashes(n, seed=n)
        start = time.perf_counter()
        i, _, _ = near_duplicate_pairs(hashes, threshold=args.threshold)
        search = time.perf_counter() - start
        if n == base_n:
            assert len(i) == base_pairs, "indexed search must find exactly the pairwise pairs"
        rows = [Row(path=str(k), label="x", sha256=f"{k:064x}", phash=f"{int(h):016x}", width=1, height=1, source="b")
                for k, h in enumerate(hashes)]  # fmt: skip
        start = time.perf_counter()
        assign_groups(rows, GroupingConfig(threshold=args.threshold))
        group = time.perf_counter() - start
        first = first or (n, search)
        pairwise_est = baseline * (n / base_n) ** 2
        growth = f"{search / first[1]:.1f}× for {n / first[0]:.0f}× images"
        print(f"{n:>8,} {search:>9.2f} {group:>8.2f} {len(i):>9,} {search / baseline:>12.3f} "
              f"{pairwise_est / search:>20.0f}× {growth:>16}")  # fmt: skip


if __name__ == "__main__":
    main()
