"""The statistics behind field truth and drift, in plain Python (serving installs no scipy).

- ``wilson``: the Wilson score interval of a proportion (Wilson 1927; Newcombe 1998 compares it with the rest).
- ``weighted_precision``: a proportion from a sample drawn with unequal probabilities, each case weighted by the
  inverse of its chance of being drawn (Horvitz–Thompson), its interval a Wilson interval on Kish's effective
  sample size (Σw)² / Σw², so a few heavily weighted cases do not pass for many.
- ``proportion_z``: the two-proportion z statistic (pooled), or the one-sample statistic against a known share.
- ``chi_square_sf``: the chi-square distribution's upper tail, through the regularized incomplete gamma function.
- ``total_variation``: half the summed absolute difference between two distributions: the share of answers that
  would have to change class for one to become the other.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

Z95 = 1.959963984540054  # two-sided 95 %


def wilson(successes: float, trials: float, z: float = Z95) -> tuple[float, float]:
    """The Wilson score interval of ``successes`` out of ``trials`` (both may be fractional: effective counts)."""
    if trials <= 0:
        return 0.0, 1.0
    p = min(max(successes / trials, 0.0), 1.0)
    z2 = z * z
    denominator = 1 + z2 / trials
    centre = (p + z2 / (2 * trials)) / denominator
    half = z * math.sqrt(p * (1 - p) / trials + z2 / (4 * trials * trials)) / denominator
    return max(0.0, centre - half), min(1.0, centre + half)


@dataclass(frozen=True)
class Estimate:
    """A precision estimated from audits: how many, their effective number, the estimate and its 95 % interval."""

    audits: int
    correct: int
    effective: float
    precision: float
    low: float
    high: float


def weighted_precision(cases: Iterable[tuple[bool, float]]) -> Estimate | None:
    """The share of right answers among ``(right, weight)`` cases, weight = 1 / the chance the case was drawn;
    None without a case."""
    cases = list(cases)
    total = sum(w for _, w in cases)
    if not cases or total <= 0:
        return None
    right = sum(w for ok, w in cases if ok)
    effective = total * total / sum(w * w for _, w in cases)
    precision = right / total
    low, high = wilson(precision * effective, effective)
    return Estimate(audits=len(cases), correct=sum(1 for ok, _ in cases if ok), effective=effective,
                    precision=precision, low=low, high=high)  # fmt: skip


def proportion_z(k: int, n: int, reference: float, reference_n: float | None = None) -> float:
    """How many standard errors ``k / n`` lies from ``reference``: the pooled two-proportion statistic when the
    reference was itself measured on ``reference_n`` cases, else the one-sample statistic. Positive: above."""
    if n <= 0:
        return 0.0
    p = k / n
    if reference_n:
        pooled = (k + reference * reference_n) / (n + reference_n)
        variance = pooled * (1 - pooled) * (1 / n + 1 / reference_n)
    else:
        variance = reference * (1 - reference) / n
    if variance <= 0:
        return 0.0 if p == reference else math.copysign(math.inf, p - reference)
    return (p - reference) / math.sqrt(variance)


def two_sided_p(z: float) -> float:
    return math.erfc(abs(z) / math.sqrt(2))


def _upper_gamma(a: float, x: float) -> float:
    """Q(a, x), the regularized upper incomplete gamma function: a series below a + 1, Lentz's continued fraction
    above (the classic split, as in Numerical Recipes' ``gammq``)."""
    if x <= 0:
        return 1.0
    front = math.exp(-x + a * math.log(x) - math.lgamma(a))
    if x < a + 1:
        term = total = 1.0 / a
        for k in range(1, 1000):
            term *= x / (a + k)
            total += term
            if abs(term) < abs(total) * 1e-15:
                break
        return max(0.0, 1.0 - total * front)
    tiny = 1e-300
    b = x + 1 - a
    c, d = 1 / tiny, 1 / b
    h = d
    for i in range(1, 1000):
        an = -i * (i - a)
        b += 2
        d = an * d + b
        d = 1 / (d if abs(d) > tiny else tiny)
        c = b + an / c
        c = c if abs(c) > tiny else tiny
        h *= d * c
        if abs(d * c - 1) < 1e-15:
            break
    return min(1.0, front * h)


def chi_square_sf(statistic: float, df: int) -> float:
    """P(X ≥ statistic) for X chi-square distributed with ``df`` degrees of freedom."""
    return 1.0 if df < 1 else _upper_gamma(df / 2, statistic / 2)


def total_variation(p: Mapping[str, float], q: Mapping[str, float]) -> float:
    return 0.5 * sum(abs(p.get(k, 0.0) - q.get(k, 0.0)) for k in set(p) | set(q))


MIN_EXPECTED = 5.0  # the usual rule for the chi-square approximation: bins expected below it are pooled


def chi_square(counts: Mapping[str, int], shares: Mapping[str, float]) -> tuple[float, int]:
    """Pearson's statistic of observed ``counts`` against reference ``shares`` (normalised here), and its degrees of
    freedom. Classes expected fewer than ``MIN_EXPECTED`` times are pooled into one bin, and that bin into the
    smallest other one if it is still too small."""
    n = sum(counts.values())
    total = sum(shares.values())
    if n <= 0 or total <= 0:
        return 0.0, 0
    bins: list[tuple[float, float]] = []  # (observed, expected)
    rest = [0.0, 0.0]
    for key in set(counts) | set(shares):
        observed, expected = counts.get(key, 0), n * shares.get(key, 0.0) / total
        if expected >= MIN_EXPECTED:
            bins.append((observed, expected))
        else:
            rest[0] += observed
            rest[1] += expected
    if rest[1] > 0:
        if rest[1] < MIN_EXPECTED and bins:
            smallest = min(range(len(bins)), key=lambda i: bins[i][1])
            bins[smallest] = (bins[smallest][0] + rest[0], bins[smallest][1] + rest[1])
        else:
            bins.append((rest[0], rest[1]))
    statistic = sum((o - e) ** 2 / e for o, e in bins if e > 0)
    return statistic, len(bins) - 1
