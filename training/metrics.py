"""Classification metrics, calibration and rejection, on numpy arrays.

Pure functions: ``probs`` is (N, C), ``labels`` is (N,) of class indices.
``weights`` (N,) make each original photo count once: a row of a group of k
augmented copies weighs 1/k (see ``group_weights``). Intervals come from a
bootstrap over groups, because the groups, not the files, are the sample.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Callable, Mapping, Sequence
from itertools import pairwise
from typing import Any

import numpy as np

from pestid.predictor import softmax


def group_weights(groups: Sequence[str]) -> np.ndarray:
    """1/size of each row's group, so every original weighs one in total."""
    sizes: Counter[str] = Counter(groups)
    return np.array([1.0 / sizes[g] for g in groups], dtype=np.float64)


def confusion(
    labels: np.ndarray, predicted: np.ndarray, num_classes: int, weights: np.ndarray | None = None
) -> np.ndarray:
    matrix = np.zeros((num_classes, num_classes), dtype=np.float64 if weights is not None else np.int64)
    np.add.at(matrix, (labels, predicted), 1 if weights is None else weights)
    return matrix


def per_class(matrix: np.ndarray) -> dict[str, np.ndarray]:
    tp = np.diag(matrix).astype(float)
    support = matrix.sum(axis=1).astype(float)
    predicted = matrix.sum(axis=0).astype(float)
    precision = np.divide(tp, predicted, out=np.zeros_like(tp), where=predicted > 0)
    recall = np.divide(tp, support, out=np.zeros_like(tp), where=support > 0)
    denom = precision + recall
    f1 = np.divide(2 * precision * recall, denom, out=np.zeros_like(tp), where=denom > 0)
    return {"precision": precision, "recall": recall, "f1": f1, "support": support}


def macro_f1(labels: np.ndarray, predicted: np.ndarray, num_classes: int, weights: np.ndarray | None = None) -> float:
    stats = per_class(confusion(labels, predicted, num_classes, weights))
    present = stats["support"] > 0
    return float(stats["f1"][present].mean()) if present.any() else 0.0


def top_k(probs: np.ndarray, labels: np.ndarray, k: int) -> float:
    k = min(k, probs.shape[1])
    best = np.argsort(-probs, axis=1)[:, :k]
    return float((best == labels[:, None]).any(axis=1).mean())


def reliability(probs: np.ndarray, labels: np.ndarray, bins: int = 15) -> list[dict[str, float]]:
    confidence = probs.max(axis=1)
    correct = probs.argmax(axis=1) == labels
    edges = np.linspace(0, 1, bins + 1)
    out = []
    for lo, hi in pairwise(edges):
        inside = (confidence > lo) & (confidence <= hi)
        if inside.any():
            out.append({"lo": lo, "hi": hi, "count": int(inside.sum()), "confidence": float(confidence[inside].mean()),
                        "accuracy": float(correct[inside].mean())})  # fmt: skip
    return out


def ece(probs: np.ndarray, labels: np.ndarray, bins: int = 15) -> float:
    """Expected calibration error: confidence-accuracy gap weighted by bin size."""
    n = len(labels)
    return float(sum(b["count"] / n * abs(b["accuracy"] - b["confidence"]) for b in reliability(probs, labels, bins)))


def nll(logits: np.ndarray, labels: np.ndarray, temperature: float) -> float:
    probs = softmax(logits, temperature)
    return float(-np.log(np.clip(probs[np.arange(len(labels)), labels], 1e-12, None)).mean())


def fit_temperature(logits: np.ndarray, labels: np.ndarray) -> float:
    """The temperature minimising validation NLL (golden-section search over log T)."""
    if len(labels) == 0:
        return 1.0
    lo, hi = np.log(0.05), np.log(20.0)
    ratio = (np.sqrt(5) - 1) / 2
    for _ in range(60):
        a, b = hi - ratio * (hi - lo), lo + ratio * (hi - lo)
        if nll(logits, labels, float(np.exp(a))) < nll(logits, labels, float(np.exp(b))):
            hi = b
        else:
            lo = a
    return float(np.exp((lo + hi) / 2))


Thresholds = float | np.ndarray  # one rejection threshold for every class, or one per class (C,)


def identified(probs: np.ndarray, threshold: Thresholds, identifiable: np.ndarray | None = None,
               known: np.ndarray | None = None) -> np.ndarray:  # fmt: skip
    """Which rows are answered "identified": top confidence at the threshold (of the top class, when there is
    one per class) and, given ``identifiable`` (per class), a top class that may be identified (never the
    out-of-scope class); given ``known`` (per row), only rows the open-set score lets be answered."""
    t = np.asarray(threshold, dtype=np.float64)
    accepted = probs.max(axis=1) >= (t if t.ndim == 0 else t[probs.argmax(axis=1)])
    accepted = accepted if identifiable is None else accepted & identifiable[probs.argmax(axis=1)]
    return accepted if known is None else accepted & known


def _accepted_order(probs: np.ndarray, identifiable: np.ndarray | None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Rows that could be answered "identified" (their top class is identifiable), most confident first."""
    predicted = probs.argmax(axis=1)
    confidence = probs.max(axis=1)
    candidates = np.arange(len(probs)) if identifiable is None else np.flatnonzero(identifiable[predicted])
    return candidates[np.argsort(-confidence[candidates], kind="stable")], predicted, confidence


def choose_threshold(
    probs: np.ndarray, labels: np.ndarray, target_precision: float, *, weights: np.ndarray | None = None,
    identifiable: np.ndarray | None = None,
) -> float:  # fmt: skip
    """The lowest confidence threshold whose "identified" answers reach the target precision.

    Precision is weighted (each original once, with group weights) and counts only
    answers whose top class is ``identifiable`` (an out-of-scope top answer is "not
    recognised" at any confidence). If no threshold reaches it, the one with the best
    precision is returned.
    """
    order, predicted, confidence = _accepted_order(probs, identifiable)
    if len(order) == 0:
        return 1.0
    w = np.ones(len(probs)) if weights is None else np.asarray(weights, dtype=np.float64)
    correct = (predicted == labels).astype(np.float64)
    precision = np.cumsum((w * correct)[order]) / np.cumsum(w[order])
    ranked = confidence[order]
    # A threshold accepts every row tied at it, so only the last row of each run of ties is a possible cut.
    cuts = np.flatnonzero(np.append(ranked[1:] != ranked[:-1], True))
    reaching = cuts[precision[cuts] >= target_precision]
    if len(reaching) == 0:
        return float(ranked[cuts[int(np.argmax(precision[cuts]))]])
    return float(ranked[reaching[-1]])


def choose_class_thresholds(
    probs: np.ndarray, labels: np.ndarray, target_precision: float, *, weights: np.ndarray | None = None,
    identifiable: np.ndarray | None = None, min_answers: float = 20.0, floor: float = 0.5,
) -> np.ndarray:  # fmt: skip
    """One threshold per class: the lowest at which the answers naming that class reach the target precision.

    One overall threshold keeps its promise only on average: easy classes (a
    dragonfly) pay for hard ones (the planthoppers), so "brown planthopper,
    identified" is right less often than promised. Per class, the promise holds
    for each answer a farmer can get. A class named by fewer than ``min_answers``
    originals (weighted) is too thin to judge alone and keeps the overall threshold.
    No threshold is below ``floor``: "This is a lady beetle" beside "23 %" would
    contradict itself, however often such answers were right.
    """
    overall = choose_threshold(probs, labels, target_precision, weights=weights, identifiable=identifiable)
    w = np.ones(len(probs)) if weights is None else np.asarray(weights, dtype=np.float64)
    predicted = probs.argmax(axis=1)
    thresholds = np.full(probs.shape[1], overall, dtype=np.float64)
    for c in range(probs.shape[1]):
        mine = predicted == c
        if (identifiable is None or identifiable[c]) and w[mine].sum() >= min_answers:
            thresholds[c] = choose_threshold(probs[mine], labels[mine], target_precision, weights=w[mine])
    return np.maximum(thresholds, floor)


def answer_levels(
    probs: np.ndarray, labels: np.ndarray, names: Sequence[str], *, threshold: float,
    class_thresholds: Mapping[str, float], group_thresholds: Mapping[str, float],
    novelty: np.ndarray | None = None, novelty_threshold: float | None = None,
) -> tuple[np.ndarray, np.ndarray]:  # fmt: skip
    """Each row's answer as ``pestid.decision.decide`` gives it (the one rule): its level (0 none, 1 species,
    2 group) and whether it is right (the species itself, or a group the true label belongs to)."""
    from pestid.catalogue import load_catalogue
    from pestid.decision import decide

    catalogue = load_catalogue()
    within = {name: {name, *(g.id for g in catalogue.groups_of(name))} for name in names}
    levels, right = np.zeros(len(probs), dtype=np.int8), np.zeros(len(probs), dtype=bool)
    for i, row in enumerate(probs):
        outcome = decide(row, names, threshold=threshold, class_thresholds=class_thresholds,
                         group_thresholds=group_thresholds, catalogue=catalogue,
                         novelty=None if novelty is None else float(novelty[i]), novelty_threshold=novelty_threshold)  # fmt: skip
        if (answer := outcome.answer) is not None:
            levels[i] = 1 if outcome.level == "species" else 2
            right[i] = (
                answer.id in within[names[labels[i]]] if outcome.level == "group" else answer.id == names[labels[i]]
            )
    return levels, right


def level_figures(levels: np.ndarray, right: np.ndarray, weights: np.ndarray, in_scope: np.ndarray) -> dict[str, float]:
    """Per original: the share of in-scope photos with a useful answer (species or group), and each level's
    share and precision."""

    def share(mask: np.ndarray, of: np.ndarray) -> float:
        return float(weights[mask & of].sum() / weights[of].sum()) if weights[of].sum() > 0 else float("nan")

    answered = levels > 0
    return {"useful_coverage": share(answered, in_scope), "group_coverage": share(levels == 2, in_scope),
            "species_precision": share(right, levels == 1), "group_precision": share(right, levels == 2)}  # fmt: skip


def choose_group_thresholds(
    probs: np.ndarray, labels: np.ndarray, names: Sequence[str], target_precision: float, *,
    species_answered: np.ndarray, weights: np.ndarray | None = None, min_answers: float = 20.0, floor: float = 0.5,
) -> dict[str, float]:  # fmt: skip
    """For each catalogue group above ``names``: the lowest summed probability at which naming the group is right
    at ``target_precision``, judged on the rows a species answer leaves (``species_answered`` False), the only
    rows a group answer is given for. A group that reaches the target on fewer than ``min_answers`` (weighted)
    originals, or not at all, is never answered (a threshold above 1): a group answer must keep the promise."""
    from pestid.catalogue import load_catalogue

    catalogue = load_catalogue()
    w = np.ones(len(probs)) if weights is None else np.asarray(weights, dtype=np.float64)
    top_in_scope = np.array(catalogue.in_scope(list(names)))[probs.argmax(axis=1)]
    rows = ~species_answered & top_in_scope
    members: dict[str, list[int]] = defaultdict(list)
    for c, name in enumerate(names):
        for group in catalogue.groups_of(name):
            members[group.id].append(c)
    out: dict[str, float] = {}
    for gid, idx in sorted(members.items()):
        mass = probs[rows][:, idx].sum(axis=1)
        inside = np.isin(labels[rows], idx)
        two = np.stack([mass, 1 - mass], axis=1)  # column 0 "the group", identifiable; a row counts where mass ≥ 0.5
        t = choose_threshold(two, np.where(inside, 0, 1), target_precision, weights=w[rows],
                             identifiable=np.array([True, False]))  # fmt: skip
        accepted = (mass >= t) & (mass >= floor)
        answers = w[rows][accepted].sum()
        precise = answers > 0 and w[rows][accepted & inside].sum() / answers >= target_precision
        out[gid] = max(float(t), floor) if answers >= min_answers and precise else 1.01
    return out


def travel(
    held_out: Sequence[Mapping[str, Any]], names: Sequence[str], target_precision: float, *, min_answers: float = 2.0,
) -> dict[str, dict[str, Any]]:  # fmt: skip
    """Whether each class's species answers hold on a source the model never saw (``training.partial``'s
    ``held_out.npz``: per left-out source, a model trained without it, its val logits and its logits on that
    source's photos). Each such model is calibrated as it would ship (temperature and per-class thresholds on its
    val); its species answers on the left-out photos are pooled over sources, each original once. A class named
    there on at least ``min_answers`` originals whose answers fall short of the target, where answering its
    nearest group instead would be right more often, gets ``level: group``: it is answered as that group only.
    Few answers suffice: naming the group instead of the species is the safe direction (a planthopper called a
    small brown planthopper is still a hopper), and a left-out source names the classes it lacks rarely."""
    from pestid.catalogue import load_catalogue

    catalogue = load_catalogue()
    identifiable = np.array(catalogue.in_scope(list(names)))
    above = [catalogue.ancestors(n) for n in names]
    group_of = [a[0].id if a else None for a in above]
    within = [{m for m in names if group_of[c] is not None and group_of[c] in {g.id for g in catalogue.groups_of(m)}}
              for c in range(len(names))]  # fmt: skip
    answers, species, group = (np.zeros(len(names)) for _ in range(3))
    for h in held_out:
        temperature = fit_temperature(h["val_logits"], h["val_labels"])
        val = softmax(h["val_logits"], temperature)
        thresholds = choose_class_thresholds(val, h["val_labels"], target_precision, identifiable=identifiable,
                                             weights=group_weights(list(h["val_groups"])))  # fmt: skip
        probs, labels = softmax(h["held_logits"], temperature), h["held_labels"]
        weights = group_weights(list(h["held_groups"]))
        predicted = probs.argmax(axis=1)
        sure = identified(probs, thresholds, identifiable)
        for i in np.flatnonzero(sure):
            c = predicted[i]
            answers[c] += weights[i]
            species[c] += weights[i] * (labels[i] == c)
            group[c] += weights[i] * (names[labels[i]] in within[c])
    out: dict[str, dict[str, Any]] = {}
    for c, name in enumerate(names):
        if answers[c] == 0:
            continue
        sp, gp = species[c] / answers[c], group[c] / answers[c]
        demote = answers[c] >= min_answers and sp < target_precision and group_of[c] is not None and gp > sp
        out[name] = {"answers": float(answers[c]), "species_precision": float(sp), "group": group_of[c],
                     "group_precision": float(gp), "level": "group" if demote else "species"}  # fmt: skip
    return out


def selective(
    probs: np.ndarray, labels: np.ndarray, threshold: Thresholds, *, weights: np.ndarray | None = None,
    identifiable: np.ndarray | None = None, known: np.ndarray | None = None,
) -> dict[str, float]:  # fmt: skip
    """Coverage and precision of the "identified" answers at ``threshold`` (weighted when weights are given)."""
    w = np.ones(len(labels)) if weights is None else np.asarray(weights, dtype=np.float64)
    accepted = identified(probs, threshold, identifiable, known)
    correct = probs.argmax(axis=1) == labels
    total = w.sum()
    return {
        "coverage": float(w[accepted].sum() / total) if total else 0.0,
        "accuracy_at_threshold": float(w[accepted & correct].sum() / w[accepted].sum()) if accepted.any() else 0.0,
    }


def precision_promise(
    probs: np.ndarray, labels: np.ndarray, threshold: Thresholds, promised: float | None, names: Sequence[str], *,
    weights: np.ndarray, identifiable: np.ndarray, known: np.ndarray | None = None,
) -> dict[str, Any]:  # fmt: skip
    """Promised against delivered precision of "identified" answers, overall and per predicted class."""
    predicted = probs.argmax(axis=1)
    accepted = identified(probs, threshold, identifiable, known)
    correct = predicted == labels
    per: dict[str, dict[str, float]] = {}
    for c, name in enumerate(names):
        mine = accepted & (predicted == c)
        if weights[mine].sum() > 0:
            per[name] = {"delivered": float(weights[mine & correct].sum() / weights[mine].sum()),
                         "answers": float(weights[mine].sum())}  # fmt: skip
    answered = weights[accepted].sum()  # 0 in a bootstrap resample that drew none of the answered originals
    delivered = float(weights[accepted & correct].sum() / answered) if answered > 0 else float("nan")
    return {"promised": promised, "delivered": delivered, "per_class": per}


def bootstrap_interval(
    statistic: Callable[[np.ndarray], float], groups: Sequence[str], *, resamples: int = 1000, seed: int = 0,
    level: float = 0.95,
) -> tuple[float, float]:  # fmt: skip
    """A percentile interval of ``statistic(row_weights)`` over resamples of whole groups.

    ``statistic`` receives per-row weights: 1/size of the row's group times how many
    times the resample drew that group (0 for groups left out). A resample where the
    statistic is undefined (NaN: nothing to measure in it) is left out.
    """
    names, inverse = np.unique(np.asarray(groups, dtype=object).astype(str), return_inverse=True)
    base = group_weights(list(groups))
    rng = np.random.default_rng(seed)
    values = []
    for _ in range(resamples):
        draws = np.bincount(rng.integers(0, len(names), len(names)), minlength=len(names))
        values.append(statistic(base * draws[inverse]))
    if np.isnan(values).all():
        return float("nan"), float("nan")
    lo, hi = np.nanpercentile(values, [(1 - level) / 2 * 100, (1 + level) / 2 * 100])
    return float(lo), float(hi)


def auroc(positive: np.ndarray, negative: np.ndarray) -> float:
    """P(score of a positive > score of a negative), ties counted half (Mann–Whitney)."""
    if len(positive) == 0 or len(negative) == 0:
        return float("nan")
    scores = np.concatenate([positive, negative])
    ranks = np.empty(len(scores))
    order = np.argsort(scores, kind="mergesort")
    ranks[order] = np.arange(1, len(scores) + 1)
    for value in np.unique(scores):  # average ranks of ties
        tie = scores == value
        ranks[tie] = ranks[tie].mean()
    rank_sum = ranks[: len(positive)].sum()
    return float((rank_sum - len(positive) * (len(positive) + 1) / 2) / (len(positive) * len(negative)))


def group_accuracy(probs: np.ndarray, labels: np.ndarray, groups: Sequence[str]) -> float:
    """One vote per group: mean probabilities of its images against its majority label."""
    members: dict[str, list[int]] = defaultdict(list)
    for i, g in enumerate(groups):
        members[g or f"row-{i}"].append(i)
    hits = []
    for idx in members.values():
        truth = np.bincount(labels[idx]).argmax()
        hits.append(probs[idx].mean(axis=0).argmax() == truth)
    return float(np.mean(hits)) if hits else 0.0


def summary(probs: np.ndarray, labels: np.ndarray, names: Sequence[str]) -> dict[str, object]:
    predicted = probs.argmax(axis=1)
    matrix = confusion(labels, predicted, len(names))
    stats = per_class(matrix)
    return {
        "images": len(labels),
        "top1": float((predicted == labels).mean()) if len(labels) else 0.0,
        "top5": top_k(probs, labels, 5),
        "macro_f1": macro_f1(labels, predicted, len(names)),
        "ece": ece(probs, labels),
        "per_class": {
            name: {k: float(stats[k][i]) for k in ("precision", "recall", "f1", "support")}
            for i, name in enumerate(names)
        },
        "confusion": matrix.tolist(),
    }


def calibrate(
    logits: np.ndarray, labels: np.ndarray, groups: list[str], names: list[str], target_precision: float, *,
    per_class: bool = True, held_out: Sequence[Mapping[str, Any]] = (),
) -> dict[str, Any]:  # fmt: skip
    """Temperature scaling and the rejection thresholds, fitted on originals the model never trained on (val,
    or out-of-fold), each original counted once, only in-scope answers counted as "identified". With
    ``held_out`` (``travel``'s evidence), a class whose species answers do not hold on a new source is never
    answered as a species (threshold above 1): its photos are answered at its group's level, whose threshold is
    chosen on val with those photos among what species answers leave, and never above the species' own."""
    from pestid.catalogue import load_catalogue

    temperature = fit_temperature(logits, labels)
    probs = softmax(logits, temperature)
    weights = group_weights(groups)
    identifiable = np.array(load_catalogue().in_scope(names))
    threshold = choose_threshold(probs, labels, target_precision, weights=weights, identifiable=identifiable)
    out: dict[str, Any] = {"temperature": temperature, "target_precision": target_precision,
                           "calibration_groups": len(set(groups)), "threshold": threshold}  # fmt: skip
    thresholds: float | np.ndarray = threshold
    if per_class:
        thresholds = choose_class_thresholds(probs, labels, target_precision, weights=weights,
                                             identifiable=identifiable)  # fmt: skip
    named = np.broadcast_to(np.asarray(thresholds, dtype=np.float64), (len(names),))  # before any demotion
    if held_out:
        out["species_travel"] = travel(held_out, names, target_precision)
        demoted = [n for n, t in out["species_travel"].items() if t["level"] == "group"]
        thresholds = np.where(np.isin(names, demoted), 1.01, thresholds)
    if per_class or held_out:
        each = np.broadcast_to(np.asarray(thresholds, dtype=np.float64), (len(names),))
        out["class_thresholds"] = {n: float(t) for n, t, ok in zip(names, each, identifiable, strict=True) if ok}
    out["group_thresholds"] = choose_group_thresholds(probs, labels, names, target_precision, weights=weights,
                                                      species_answered=identified(probs, thresholds, identifiable))  # fmt: skip
    # A demoted species' group answers at least where the species itself was named (its own threshold, met on val
    # at the target precision; the group is right wherever the species is): a demoted brown planthopper is "a
    # hopper", never a "not sure" at 99 %. The group's highest such threshold, when several are demoted.
    named_at: dict[str, float] = {}
    for c, name in enumerate(names):
        seen = out.get("species_travel", {}).get(name)
        if seen is not None and seen["level"] == "group":
            named_at[seen["group"]] = max(named_at.get(seen["group"], 0.0), float(named[c]))
            if name in out["group_thresholds"]:  # a demoted label that is itself a group (stem_borers) is not named
                out["group_thresholds"][name] = 1.01
    for group, at in named_at.items():
        out["group_thresholds"][group] = min(out["group_thresholds"].get(group, 1.01), at)
    levels, right = answer_levels(probs, labels, names, threshold=threshold,
                                  class_thresholds=out.get("class_thresholds", {}),
                                  group_thresholds=out["group_thresholds"])  # fmt: skip
    return {
        **out,
        **selective(probs, labels, thresholds, weights=weights, identifiable=identifiable),
        **level_figures(levels, right, weights, identifiable[labels]),
    }
