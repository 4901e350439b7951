"""Calibration of raw PXS to an expert scale, and the stable-change threshold from the raters'
own disagreement.

* `fit_isotonic` / `calibration_points`: a monotone (non-decreasing) map raw PXS -> expert
  score by isotonic regression (pool adjacent violators), stored as the piecewise-linear
  `calibration.points` of the package (docs/model-package.md). It must be fitted on the
  TRAINING part only (train.py does that); `apply` evaluates it as the node does
  (linear between points, clamped outside).
* `rater_noise`: the inter-rater noise of a score that is the MEAN of two integer rater
  scores (RALO's `geographic_extent_mean`), estimated from the fraction of half-point means
  (= P(the two raters differ by an odd number)) and the fraction of images where the raters
  differ by 2 or more points (RALO README: "about a fifth"); gives the minimal detectable
  change MDC95 = 1.96 * sqrt(2) * SEM of the 2-rater mean. Derivation in docs/training.md.
* `trend_settings`: stable delta and severity bands, in calibrated units and as their raw
  PXS equivalents.
"""

from __future__ import annotations

import math
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
from scipy import optimize, stats

from .errors import DataError

SCALE_NAME = "RALE geographic extent"


# ----------------------------------------------------------------------------- isotonic map


def pav(y: Sequence[float], w: Optional[Sequence[float]] = None) -> np.ndarray:
    """Pool-adjacent-violators: the non-decreasing sequence closest to y (weighted L2)."""
    y = np.asarray(y, dtype=float)
    w = np.ones_like(y) if w is None else np.asarray(w, dtype=float)
    values: List[float] = []
    weights: List[float] = []
    counts: List[int] = []
    for yi, wi in zip(y, w):
        values.append(yi)
        weights.append(wi)
        counts.append(1)
        while len(values) > 1 and values[-2] > values[-1]:
            wsum = weights[-2] + weights[-1]
            merged = (values[-2] * weights[-2] + values[-1] * weights[-1]) / wsum
            counts[-2] += counts[-1]
            values[-2], weights[-2] = merged, wsum
            values.pop(), weights.pop(), counts.pop()
    return np.repeat(values, counts)


def fit_isotonic(raw: Sequence[float], target: Sequence[float], lo: float = 0.0,
                 hi: float = 8.0, max_points: int = 24) -> List[List[float]]:
    """Isotonic regression of `target` on `raw`; returns piecewise-linear points
    [[raw, cal], ...] with raw strictly increasing and cal non-decreasing within [lo, hi].

    Each constant block of the isotonic fit becomes one point at its mean raw value (a
    step function would make every small PXS change jump or vanish); neighbouring blocks
    are merged until at most `max_points` remain."""
    raw = np.asarray(raw, dtype=float)
    target = np.asarray(target, dtype=float)
    if len(raw) < 2 or len(raw) != len(target):
        raise DataError(f"calibration needs at least 2 (PXS, score) pairs, got {len(raw)}")
    if not (np.isfinite(raw).all() and np.isfinite(target).all()):
        raise DataError("calibration: PXS or scores contain NaN/Inf")
    order = np.lexsort((target, raw))
    xs, ys = raw[order], target[order]
    fitted = pav(ys)
    # blocks of equal fitted value -> (mean raw, fitted, weight)
    blocks: List[List[float]] = []
    start = 0
    for i in range(1, len(xs) + 1):
        if i == len(xs) or fitted[i] != fitted[start]:
            blocks.append([float(xs[start:i].mean()), float(fitted[start]), float(i - start)])
            start = i
    while len(blocks) > max_points:  # merge the lightest adjacent pair
        j = min(range(len(blocks) - 1), key=lambda k: blocks[k][2] + blocks[k + 1][2])
        a, b = blocks[j], blocks[j + 1]
        wsum = a[2] + b[2]
        blocks[j:j + 2] = [[(a[0] * a[2] + b[0] * b[2]) / wsum,
                            (a[1] * a[2] + b[1] * b[2]) / wsum, wsum]]
    points: List[List[float]] = []
    for x, y, _w in blocks:
        y = min(max(y, lo), hi)
        if points and x <= points[-1][0]:  # equal raw means cannot happen often; keep strict
            x = math.nextafter(points[-1][0], math.inf)
        if points and y < points[-1][1]:
            y = points[-1][1]
        points.append([round(x, 6), round(y, 4)])
    # rounding may have made raw equal: enforce strictly increasing
    cleaned = [points[0]]
    for x, y in points[1:]:
        if x > cleaned[-1][0]:
            cleaned.append([x, max(y, cleaned[-1][1])])
    if len(cleaned) < 2:  # all PXS (nearly) equal: a flat map over a tiny range
        x0 = cleaned[0][0]
        cleaned = [[x0, cleaned[0][1]], [x0 + 1e-6, cleaned[0][1]]]
    return cleaned


def check_points(points: Sequence[Sequence[float]]) -> None:
    if len(points) < 2:
        raise DataError("calibration needs at least 2 points")
    for (x0, y0), (x1, y1) in zip(points, points[1:]):
        if not x1 > x0:
            raise DataError(f"calibration raw values not strictly increasing ({x0} then {x1})")
        if y1 < y0:
            raise DataError(f"calibration values decrease ({y0} then {y1})")


def apply(points: Sequence[Sequence[float]], raw) -> np.ndarray:
    """Piecewise-linear map, clamped to the first/last calibrated value outside the points
    (what the node does)."""
    xs = np.asarray([p[0] for p in points], dtype=float)
    ys = np.asarray([p[1] for p in points], dtype=float)
    return np.interp(np.asarray(raw, dtype=float), xs, ys)


def inverse(points: Sequence[Sequence[float]], cal: float) -> Optional[float]:
    """The smallest raw PXS whose calibrated value reaches `cal` (None when never)."""
    for (x0, y0), (x1, y1) in zip(points, points[1:]):
        if y1 >= cal:
            if y0 >= cal:
                return float(x0)
            return float(x0 + (cal - y0) / (y1 - y0) * (x1 - x0))
    return None


def make_calibration(points, scale: str = SCALE_NAME, lo: float = 0.0, hi: float = 8.0) -> Dict:
    check_points(points)
    return {"scale": scale, "unit": "{score}", "min": lo, "max": hi,
            "points": [[float(x), float(y)] for x, y in points]}


def central_slope(points, lo_cal: float = 1.0, hi_cal: float = 7.0) -> float:
    """Calibrated units per raw PXS unit between the raw values that calibrate to lo_cal and
    hi_cal (the central range), or over the whole map when it does not reach them."""
    a, b = inverse(points, lo_cal), inverse(points, hi_cal)
    if a is None or b is None or not b > a:
        a, b = points[0][0], points[-1][0]
        return max((points[-1][1] - points[0][1]) / max(b - a, 1e-12), 1e-12)
    return (hi_cal - lo_cal) / (b - a)


# ----------------------------------------------------------------------------- rater noise


def _discrete_normal_pmf(sigma: float, kmax: int = 16) -> np.ndarray:
    """P(d = k), k = -kmax..kmax, for d = round(N(0, sigma^2))."""
    k = np.arange(-kmax, kmax + 1)
    return stats.norm.cdf((k + 0.5) / sigma) - stats.norm.cdf((k - 0.5) / sigma)


def rater_noise(means: Sequence[float], p_diff_ge2: float = 0.2, n_raters: int = 2) -> Dict:
    """Inter-rater noise of a score that is the mean of two integer rater scores.

    Observed: p_odd = fraction of means ending in .5 (= P(|r1 - r2| odd)); given: p_ge2 =
    P(|r1 - r2| >= 2) (RALO README: about a fifth). Model for the rater difference d:
    with probability a the raters agree exactly, otherwise d = round(N(0, sigma^2)) (a plain
    rounded normal cannot have both many exact agreements and a fifth >= 2 apart). The two
    facts fix sigma (by the ratio p_ge2 / p_odd) and a. Then

        SD(d)   from the fitted distribution,
        SEM     = SD(d) / 2        (error of the 2-rater mean: (e1 + e2) / 2 with
                                    d = e1 - e2, e1, e2 independent, equal variance),
        SD_chg  = sqrt(2) * SEM    (change between two independently rated exams),
        MDC95   = 1.96 * SD_chg    (minimal detectable change, 95 %),
        stable_delta = MDC95: a change of the 2-rater mean of at most MDC95 cannot be told
                       apart from rater noise; on the 0.5-point grid of the means the
                       smallest real change is the next grid value above it.
    """
    values = np.asarray(means, dtype=float)
    if len(values) < 10:
        raise DataError(f"rater noise: need at least 10 scores, got {len(values)}")
    if n_raters != 2:
        raise DataError("rater noise: only means of 2 raters are supported")
    frac = np.abs(values * 2 - np.round(values * 2))
    if (frac > 1e-6).any():
        raise DataError("rater noise: scores are not means of two integer ratings "
                        "(values off the 0.5 grid)")
    p_odd = float(np.mean(np.abs(values - np.floor(values) - 0.5) < 1e-6))
    if not 0 < p_odd < 1 or not 0 < p_diff_ge2 < 1:
        raise DataError(f"rater noise: cannot fit with P(odd)={p_odd:.3f}, P(>=2)={p_diff_ge2}")
    k = np.arange(-16, 17)
    odd, ge2 = (np.abs(k) % 2 == 1), (np.abs(k) >= 2)

    def ratio(sigma):
        pmf = _discrete_normal_pmf(sigma)
        return pmf[ge2].sum() / pmf[odd].sum()

    target = p_diff_ge2 / p_odd
    lo, hi = 0.05, 20.0
    if not ratio(lo) <= target <= ratio(hi):
        raise DataError(f"rater noise: P(>=2)/P(odd) = {target:.3f} outside the model's range "
                        f"({ratio(lo):.3f}-{ratio(hi):.3f})")
    sigma = float(optimize.brentq(lambda s: ratio(s) - target, lo, hi))
    pmf = _discrete_normal_pmf(sigma)
    disagree = p_odd / pmf[odd].sum()  # 1 - a
    if disagree > 1:  # more odd differences than the model allows: no exact-agreement mass
        disagree = 1.0
    dist = disagree * pmf
    dist[k == 0] += 1 - disagree
    sd_d = float(math.sqrt((dist * k * k).sum()))
    sem = sd_d / 2.0
    sd_change = math.sqrt(2.0) * sem
    mdc95 = 1.96 * sd_change
    grid_step = 0.5
    smallest_real = math.floor(mdc95 / grid_step + 1e-9) * grid_step + grid_step
    return {"n": int(len(values)), "p_odd": p_odd, "p_diff_ge2": p_diff_ge2,
            "sigma_latent": sigma, "p_exact_agreement_extra": 1 - disagree,
            "p_agree": float(dist[k == 0].sum()), "sd_rater_difference": sd_d,
            "sem_mean": sem, "sd_change": sd_change, "mdc95": mdc95,
            "stable_delta": round(mdc95, 3), "smallest_detectable_grid_change": smallest_real}


# ----------------------------------------------------------------------------- trend


BAND_CUTS = ((0.5, "normal/minimal"), (2.5, "mild"), (5.0, "moderate"))


def trend_settings(points, stable_delta_calibrated: float, cuts=BAND_CUTS) -> Dict:
    """trend for the package: bands in RAW PXS units whose upper bounds calibrate to the cut
    points (0.5 / 2.5 / 5 on 0-8 by default), stable_delta in raw units (the calibrated
    threshold divided by the central slope of the map) and stable_delta_calibrated."""
    slope = central_slope(points)
    bands = []
    last = -math.inf
    for cal, label in cuts:
        raw = inverse(points, cal)
        if raw is None:
            raw = points[-1][0]
        # bands' upper bounds must increase strictly (node check)
        raw = max(raw, math.nextafter(last, math.inf)) if last > -math.inf else raw
        raw = round(raw, 6)
        if raw <= last:
            raw = last + 1e-6
        bands.append({"upper": raw, "label": label})
        last = raw
    bands.append({"upper": None, "label": "severe"})
    return {"stable_delta": round(stable_delta_calibrated / slope, 6),
            "stable_delta_calibrated": round(float(stable_delta_calibrated), 4),
            "bands": bands}
