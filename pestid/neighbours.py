"""Near-duplicate search over 64-bit perceptual hashes, indexed, not pairwise.

Multi-index hashing: each hash is cut into four 16-bit chunks. Two hashes
within Hamming distance ``d`` agree, by pigeonhole, to within ``d // 4`` bits
on at least one chunk. So for every chunk we bucket the index by its 16-bit
value and probe only the buckets within that small radius, then verify the
candidates on the full 64 bits. Queries use all eight flip/rotation variants
of each hash, so a flipped or rotated copy is found too.

The cost grows with the number of candidates, about N × probes × N / 65536,
instead of N² for a pairwise scan.
"""

from __future__ import annotations

from collections.abc import Callable
from itertools import combinations

import numpy as np

from pestid.hashing import dihedral_variants, hamming

CHUNKS = 4
_BITS = 16
_BUCKETS = 1 << _BITS


def _probe_masks(radius: int) -> np.ndarray:
    masks = [0]
    for r in range(1, radius + 1):
        for bits in combinations(range(_BITS), r):
            masks.append(sum(1 << b for b in bits))
    return np.array(masks, dtype=np.int64)


def near_duplicate_pairs(
    hashes: np.ndarray,
    *,
    threshold: int,
    dihedral: bool = True,
    progress: Callable[[int, int], None] | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """All pairs ``i < j`` whose hashes (any variant of i vs j) are within ``threshold`` bits.

    Returns ``(i, j, distance)`` arrays; distance is the smallest over variants.
    """
    hashes = np.asarray(hashes, dtype=np.uint64)
    n = len(hashes)
    if n < 2:
        empty = np.empty(0, dtype=np.int64)
        return empty, empty, empty.astype(np.int8)
    queries = dihedral_variants(hashes) if dihedral else hashes[None, :]
    masks = _probe_masks(threshold // CHUNKS)
    found: list[np.ndarray] = []
    steps = CHUNKS * len(queries)
    for chunk in range(CHUNKS):
        shift = np.uint64(_BITS * chunk)
        keys = ((hashes >> shift) & np.uint64(0xFFFF)).astype(np.int64)
        order = np.argsort(keys, kind="stable")
        counts = np.bincount(keys, minlength=_BUCKETS)
        starts = np.concatenate(([0], np.cumsum(counts)[:-1]))
        for v, query in enumerate(queries):
            qkeys = ((query >> shift) & np.uint64(0xFFFF)).astype(np.int64)
            for mask in masks:
                found.append(_probe(qkeys ^ mask, query, hashes, order, counts, starts, threshold))
            if progress is not None:
                progress(chunk * len(queries) + v + 1, steps)
    pairs = np.concatenate(found) if found else np.empty((0, 3), dtype=np.int64)
    if len(pairs) == 0:
        empty = np.empty(0, dtype=np.int64)
        return empty, empty, empty.astype(np.int8)
    # Keep the smallest distance per pair: sort by (pair key, distance), take the first.
    key = pairs[:, 0] * n + pairs[:, 1]
    order = np.lexsort((pairs[:, 2], key))
    key, pairs = key[order], pairs[order]
    first = np.concatenate(([True], key[1:] != key[:-1]))
    pairs = pairs[first]
    return pairs[:, 0], pairs[:, 1], pairs[:, 2].astype(np.int8)


def _probe(
    targets: np.ndarray,
    query: np.ndarray,
    hashes: np.ndarray,
    order: np.ndarray,
    counts: np.ndarray,
    starts: np.ndarray,
    threshold: int,
) -> np.ndarray:
    hits = counts[targets]
    total = int(hits.sum())
    if total == 0:
        return np.empty((0, 3), dtype=np.int64)
    qi = np.repeat(np.arange(len(targets)), hits)
    # Position inside each bucket: a running index that restarts per query.
    offsets = np.arange(total) - np.repeat(np.cumsum(hits) - hits, hits)
    cj = order[np.repeat(starts[targets], hits) + offsets]
    keep = qi != cj
    qi, cj = qi[keep], cj[keep]
    dist = hamming(query[qi], hashes[cj])
    close = dist <= threshold
    qi, cj, dist = qi[close], cj[close], dist[close]
    lo, hi = np.minimum(qi, cj), np.maximum(qi, cj)
    return np.stack([lo, hi, dist.astype(np.int64)], axis=1)
