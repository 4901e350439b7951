"""AUC, bootstrap confidence intervals, Spearman and change-direction agreement."""

from __future__ import annotations

import math
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
from scipy import stats


def roc_auc(labels: Sequence[int], scores: Sequence[float]) -> float:
    """Probability that a random positive scores higher than a random negative (ties count
    half): the Mann-Whitney form of the ROC AUC. NaN when one class is absent."""
    y = np.asarray(labels, dtype=int)
    s = np.asarray(scores, dtype=float)
    n_pos, n_neg = int((y == 1).sum()), int((y == 0).sum())
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    ranks = stats.rankdata(s)
    return float((ranks[y == 1].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def roc_curve(labels: Sequence[int], scores: Sequence[float]) -> Tuple[np.ndarray, np.ndarray]:
    """False and true positive rates for every threshold (highest first)."""
    y = np.asarray(labels, dtype=int)
    s = np.asarray(scores, dtype=float)
    thresholds = np.unique(s)[::-1]
    n_pos, n_neg = max((y == 1).sum(), 1), max((y == 0).sum(), 1)
    fpr = [0.0] + [float(((s >= t) & (y == 0)).sum() / n_neg) for t in thresholds]
    tpr = [0.0] + [float(((s >= t) & (y == 1)).sum() / n_pos) for t in thresholds]
    return np.asarray(fpr), np.asarray(tpr)


def bootstrap_auc_ci(labels: Sequence[int], scores: Sequence[float], reps: int = 2000,
                     seed: int = 0, level: float = 0.95) -> Tuple[float, float]:
    """Percentile bootstrap CI, resampling positives and negatives separately (stratified)
    so every replicate has both classes."""
    y = np.asarray(labels, dtype=int)
    s = np.asarray(scores, dtype=float)
    pos, neg = s[y == 1], s[y == 0]
    if len(pos) == 0 or len(neg) == 0:
        return (float("nan"), float("nan"))
    rng = np.random.default_rng(seed)
    aucs = np.empty(reps)
    for i in range(reps):
        p = rng.choice(pos, len(pos))
        n = rng.choice(neg, len(neg))
        aucs[i] = roc_auc([1] * len(p) + [0] * len(n), np.concatenate([p, n]))
    alpha = (1 - level) / 2
    return (float(np.quantile(aucs, alpha)), float(np.quantile(aucs, 1 - alpha)))


def spearman(x: Sequence[float], y: Sequence[float]) -> Dict[str, Optional[float]]:
    """Spearman rho with its p-value and a 95% CI (Fisher z, SE 1.06/sqrt(n-3))."""
    x = np.asarray(x, dtype=float)
    y = np.asarray(y, dtype=float)
    if len(x) < 3 or np.all(x == x[0]) or np.all(y == y[0]):
        return {"rho": None, "p": None, "ci": None, "n": int(len(x))}
    rho, p = stats.spearmanr(x, y)
    ci = None
    if len(x) > 3 and abs(rho) < 1:
        z = math.atanh(rho)
        half = 1.96 * 1.06 / math.sqrt(len(x) - 3)
        ci = [math.tanh(z - half), math.tanh(z + half)]
    return {"rho": float(rho), "p": float(p), "ci": ci, "n": int(len(x))}


def direction(delta: float, stable: float) -> int:
    if delta > stable:
        return 1
    if delta < -stable:
        return -1
    return 0


def change_direction_agreement(series: List[List[Tuple[float, float]]],
                               stable_delta: float) -> Optional[Dict]:
    """For consecutive studies of each patient, compares the direction of the PXS change
    (worse / stable / better, with `stable_delta` as the stable band) with the direction of
    the reference (severity or label count; any change counts). Each series is a list of
    (reference, pxs) in time order."""
    agree = total = changed = changed_agree = 0
    for steps in series:
        for (ref0, pxs0), (ref1, pxs1) in zip(steps, steps[1:]):
            ref_dir = direction(ref1 - ref0, 0.0)
            pxs_dir = direction(pxs1 - pxs0, stable_delta)
            total += 1
            agree += int(ref_dir == pxs_dir)
            if ref_dir != 0:
                changed += 1
                # Sign agreement ignores the stable band: did PXS move the right way at all?
                changed_agree += int(np.sign(pxs1 - pxs0) == ref_dir)
    if total == 0:
        return None
    return {"steps": total, "three_way_agreement": agree / total,
            "changed_steps": changed,
            "sign_agreement_on_changed": (changed_agree / changed) if changed else None}
