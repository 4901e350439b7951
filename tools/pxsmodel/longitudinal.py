"""The product's longitudinal rule, in Python (the node's C++ library implements the same rule;
`pxs-model evaluate` uses this one, so the trend agreement it reports is the node's).

For ONE patient and ONE model (same package name AND version):

* the value of a study is its latest-scored instance (largest `scored_at`);
* the priors of a study are that model's studies of the patient dated strictly before it;
  the previous study is the most recent prior (ties in date: the larger study id);
* change = value - previous value (raw PXS); calibrated_change = the difference of the
  calibrated values when both exist;
* trend: when both calibrated values exist and the model has
  `trend.stable_delta_calibrated`, compare calibrated_change with it, else compare the raw
  change with `trend.stable_delta`: |change| <= delta -> "stable", change > delta -> "worse",
  change < -delta -> "better"; no previous study -> "not compared";
* band: the label of the first band whose `upper` is null or raw PXS < upper.
"""

from __future__ import annotations

from typing import Dict, Iterable, List, Optional

from . import calibration as calib

NOT_COMPARED = "not compared"


def band_of(pxs: float, bands: Iterable[Dict]) -> Optional[str]:
    for band in bands:
        upper = band.get("upper")
        if upper is None or pxs < float(upper):
            return band.get("label")
    return None


def calibrate(pxs: float, model_meta: Dict) -> Optional[float]:
    cal = model_meta.get("calibration")
    if not cal or not cal.get("points"):
        return None
    return float(calib.apply(cal["points"], pxs))


def trend_of(change: Optional[float], calibrated_change: Optional[float],
             trend_meta: Dict) -> str:
    if change is None:
        return NOT_COMPARED
    delta_cal = trend_meta.get("stable_delta_calibrated")
    if calibrated_change is not None and delta_cal is not None:
        value, delta = calibrated_change, float(delta_cal)
    else:
        value, delta = change, float(trend_meta.get("stable_delta", 0.0))
    if abs(value) <= delta:
        return "stable"
    return "worse" if value > delta else "better"


def same_model(row: Dict, model_meta: Dict) -> bool:
    return (row.get("model_name") == model_meta.get("name")
            and row.get("model_version") == model_meta.get("version"))


def course(rows: Iterable[Dict], model_meta: Dict) -> List[Dict]:
    """rows: score results of ONE patient, each a dict with `study` (id), `study_date`
    (anything comparable: ISO text, YYYYMMDD_HHMMSS, a number), `pxs`, `model_name`,
    `model_version` and optionally `scored_at` (later = larger; default: row order) and
    `calibrated`. Rows of other models (name or version differ) are ignored.

    Returns one dict per study of this model, in date order: study, study_date, value
    (raw PXS), calibrated, previous (study id or None), change, calibrated_change, trend,
    band."""
    latest: Dict[str, Dict] = {}
    for order, row in enumerate(rows):
        if not same_model(row, model_meta):
            continue
        key = (row.get("scored_at", order), order)
        study = str(row["study"])
        if study not in latest or key >= latest[study]["_key"]:
            latest[study] = dict(row, _key=key)
    studies = sorted(latest.values(), key=lambda r: (r["study_date"], str(r["study"])))
    trend_meta = model_meta.get("trend") or {}
    bands = trend_meta.get("bands") or []
    out: List[Dict] = []
    for i, row in enumerate(studies):
        value = float(row["pxs"])
        cal = row.get("calibrated")
        cal = calibrate(value, model_meta) if cal is None else float(cal)
        # most recent study dated strictly before this one
        previous = None
        for j in range(i - 1, -1, -1):
            if studies[j]["study_date"] < row["study_date"]:
                previous = out[j]
                break
        change = calibrated_change = None
        if previous is not None:
            change = value - previous["value"]
            if cal is not None and previous["calibrated"] is not None:
                calibrated_change = cal - previous["calibrated"]
        out.append({"study": row["study"], "study_date": row["study_date"], "value": value,
                    "calibrated": cal,
                    "previous": None if previous is None else previous["study"],
                    "change": change, "calibrated_change": calibrated_change,
                    "trend": trend_of(change, calibrated_change, trend_meta),
                    "band": band_of(value, bands)})
    return out


__all__ = ["course", "trend_of", "band_of", "calibrate", "NOT_COMPARED"]
