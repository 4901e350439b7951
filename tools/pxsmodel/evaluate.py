"""`pxs-model evaluate`: how well a package's PXS separates normal from abnormal images and,
with expert scores (severity mode), how well it follows them: Spearman / Pearson with
subject-bootstrap CIs, MAE on the calibrated scale, change Spearman over consecutive exams of
one subject and trend agreement (the node's rule, longitudinal.py, against the experts'
worse / stable / better beyond inter-rater noise)."""

from __future__ import annotations

import collections
import json
import math
import os
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np

from . import calibration as calib
from . import longitudinal, metrics, package, preprocess
from .errors import DataError, warn
from .labels import Record, order_key, read_labels
from .progress import Progress


def drop_duplicate_images(records: Sequence[Record], log=warn) -> List[Record]:
    """Keeps the first of several rows whose files hold the same picture (a duplicate would
    count twice in the metrics, or leak between training and test)."""
    seen: Dict[str, Record] = {}
    kept = []
    for rec in records:
        digest = preprocess.pixel_hash(rec.path)
        if digest in seen:
            log(f"warning: row {rec.row} ({rec.image}) is the same image as row "
                f"{seen[digest].row} ({seen[digest].image}); dropped")
            continue
        seen[digest] = rec
        kept.append(rec)
    return kept


def compute_metrics(records: Sequence[Record], scores: Sequence[float], stable_delta_or_meta,
                    seed: int = 0, bootstrap_reps: int = 2000,
                    expert_stable_delta: Optional[float] = None) -> Dict:
    """`stable_delta_or_meta`: the package metadata (severity mode uses its calibration and
    trend) or, as before, just the raw stable delta."""
    if isinstance(stable_delta_or_meta, dict):
        meta = stable_delta_or_meta
        stable_delta = float(meta.get("trend", {}).get("stable_delta", 1.0))
    else:
        meta = {"trend": {"stable_delta": float(stable_delta_or_meta)}, "calibration": None}
        stable_delta = float(stable_delta_or_meta)
    # AUC normal vs abnormal: on rows with a real label (e.g. cxr14 No Finding) when there
    # are any; score-derived labels (RALO score 0) only when nothing else is given.
    labelled = [(r, s) for r, s in zip(records, scores)
                if r.abnormal is not None and r.abnormal_from == "label"]
    if not labelled:
        labelled = [(r, s) for r, s in zip(records, scores) if r.abnormal is not None]
    y = [r.abnormal for r, _ in labelled]
    s = [sc for _, sc in labelled]
    auc = metrics.roc_auc(y, s)
    ci = metrics.bootstrap_auc_ci(y, s, reps=bootstrap_reps, seed=seed)
    result: Dict = {
        "n": len(records),
        "n_normal": int(sum(1 for v in y if v == 0)),
        "n_abnormal": int(sum(1 for v in y if v == 1)),
        "auc": None if math.isnan(auc) else auc,
        "auc_ci": None if math.isnan(ci[0]) else list(ci),
        "pxs_mean_normal": _mean([sc for v, sc in zip(y, s) if v == 0]),
        "pxs_mean_abnormal": _mean([sc for v, sc in zip(y, s) if v == 1]),
    }
    counted = [(r.label_count, sc) for r, sc in zip(records, scores) if r.label_count is not None]
    sp = metrics.spearman([c for c, _ in counted], [sc for _, sc in counted]) if counted else None
    result["spearman_label_count"] = sp["rho"] if sp else None
    result["spearman_label_count_detail"] = sp
    sev = [(r.severity, sc) for r, sc in zip(records, scores) if r.severity is not None]
    if sev:
        sp_sev = metrics.spearman([v for v, _ in sev], [sc for _, sc in sev])
        result["spearman_severity"] = sp_sev["rho"]
        result["spearman_severity_detail"] = sp_sev
    # Patient series: change direction between consecutive studies.
    by_patient = collections.defaultdict(list)
    for rec, sc in zip(records, scores):
        ref = rec.severity if rec.severity is not None else rec.label_count
        if ref is not None and rec.order is not None:
            by_patient[rec.patient_id].append((order_key(rec.order), float(ref), sc))
    series = [[(ref, sc) for _k, ref, sc in sorted(v, key=lambda t: t[0])]
              for v in by_patient.values() if len(v) > 1]
    result["change_direction"] = (metrics.change_direction_agreement(series, stable_delta)
                                  if series else None)
    findings = finding_metrics(records, scores, seed=seed, reps=bootstrap_reps)
    if findings:
        result["findings"] = findings
    if sev:
        result["severity"] = severity_metrics(records, scores, meta, seed=seed,
                                              reps=bootstrap_reps,
                                              expert_stable_delta=expert_stable_delta)
    return result


def finding_metrics(records: Sequence[Record], scores: Sequence[float], seed: int = 0,
                    reps: int = 2000) -> Optional[Dict]:
    """Finding-set mode: for each finding of the set, the AUC of the score for its positives
    against the normal images (No Finding) and against every image without it (normals and
    other findings), each with a stratified percentile bootstrap 95% CI and the counts it
    rests on. None when the records carry no finding set."""
    rows = [(r, s) for r, s in zip(records, scores) if r.findings is not None]
    if not rows:
        return None
    out: Dict = {}
    for name in rows[0][0].findings:
        pos = [s for r, s in rows if r.findings[name]]
        normal = [s for r, s in rows if r.abnormal == 0]
        rest = [s for r, s in rows if not r.findings[name]]
        entry: Dict = {"n_positive": len(pos)}
        for key, neg in (("vs_normal", normal), ("vs_all", rest)):
            y = [1] * len(pos) + [0] * len(neg)
            values = pos + neg
            auc = metrics.roc_auc(y, values)
            ci = metrics.bootstrap_auc_ci(y, values, reps=reps, seed=seed)
            entry[key] = {"auc": None if math.isnan(auc) else auc,
                          "auc_ci": None if math.isnan(ci[0]) else list(ci),
                          "n_negative": len(neg)}
        out[name] = entry
    return out


def _series(records: Sequence[Record], scores: Sequence[float]) -> Dict[str, List]:
    """subject -> [(order key, record, pxs)] of the scored rows, in time order."""
    by = collections.defaultdict(list)
    for rec, sc in zip(records, scores):
        if rec.severity is not None:
            by[(rec.source, rec.patient_id)].append((order_key(rec.order), rec, sc))
    return {k: sorted(v, key=lambda t: (t[0], t[1].row)) for k, v in by.items()}


def expert_trend(delta: float, threshold: float) -> str:
    if abs(delta) <= threshold:
        return "stable"
    return "worse" if delta > 0 else "better"


def severity_metrics(records: Sequence[Record], scores: Sequence[float], meta: Dict,
                     seed: int = 0, reps: int = 2000,
                     expert_stable_delta: Optional[float] = None) -> Dict:
    """Severity mode. CIs: percentile bootstrap resampling SUBJECTS (their images and
    consecutive pairs go together), `reps` resamples."""
    series = _series(records, scores)
    cal_meta = meta.get("calibration")
    trend_meta = meta.get("trend") or {}
    threshold = expert_stable_delta
    if threshold is None:
        threshold = trend_meta.get("stable_delta_calibrated")
    if threshold is None:
        threshold = 1.0
    threshold = float(threshold)
    subjects = sorted(series)
    # per subject: arrays of (expert, pxs, calibrated) and consecutive pairs
    per_img: Dict = {}
    per_pair: Dict = {}
    trend_rows: List[Tuple[str, str]] = []
    per_trend: Dict = {}
    for key in subjects:
        rows = series[key]
        ys = np.array([r.severity for _k, r, _s in rows], dtype=float)
        xs = np.array([s for _k, _r, s in rows], dtype=float)
        cs = (calib.apply(cal_meta["points"], xs) if cal_meta and cal_meta.get("points")
              else np.full(len(xs), np.nan))
        per_img[key] = (ys, xs, cs)
        # the node's rule on this subject's course (one model; study = image; date = order)
        course = longitudinal.course(
            [{"study": f"{r.row}:{r.image}", "study_date": k, "pxs": s,
              "model_name": meta.get("name"), "model_version": meta.get("version")}
             for k, r, s in rows],
            {"name": meta.get("name"), "version": meta.get("version"),
             "calibration": cal_meta, "trend": trend_meta})
        by_study = {c["study"]: c for c in course}
        dy, dx, agree = [], [], []
        for (k0, r0, s0), (k1, r1, s1) in zip(rows, rows[1:]):
            if not k1 > k0:
                continue  # same exam time: not a prior (the rule: strictly before)
            c1 = by_study[f"{r1.row}:{r1.image}"]
            if c1["change"] is None:
                continue
            dy.append(r1.severity - r0.severity)
            dx.append(c1["calibrated_change"] if c1["calibrated_change"] is not None else c1["change"])
            t_model = c1["trend"]
            t_expert = expert_trend(r1.severity - r0.severity, threshold)
            agree.append((t_model, t_expert))
        per_pair[key] = (np.array(dy, dtype=float), np.array(dx, dtype=float))
        per_trend[key] = agree
    y_all = np.concatenate([per_img[k][0] for k in subjects])
    x_all = np.concatenate([per_img[k][1] for k in subjects])
    c_all = np.concatenate([per_img[k][2] for k in subjects])

    def stats_of(keys) -> Dict[str, float]:
        ys = np.concatenate([per_img[k][0] for k in keys])
        xs = np.concatenate([per_img[k][1] for k in keys])
        cs = np.concatenate([per_img[k][2] for k in keys])
        dys = np.concatenate([per_pair[k][0] for k in keys])
        dxs = np.concatenate([per_pair[k][1] for k in keys])
        pairs = [p for k in keys for p in per_trend[k]]
        out = {"spearman": _rank_corr(xs, ys), "pearson": _corr(xs, ys),
               "pearson_calibrated": _corr(cs, ys) if np.isfinite(cs).all() else float("nan"),
               "mae_calibrated": float(np.mean(np.abs(cs - ys))) if np.isfinite(cs).all() else float("nan"),
               "change_spearman": _rank_corr(dxs, dys),
               "trend_agreement": (float(np.mean([a == b for a, b in pairs])) if pairs else float("nan"))}
        return out

    point = stats_of(subjects)
    rng = np.random.default_rng(seed)
    boot = collections.defaultdict(list)
    if len(subjects) >= 2:
        for _ in range(reps):
            pick = [subjects[i] for i in rng.integers(0, len(subjects), len(subjects))]
            for name, value in stats_of(pick).items():
                if math.isfinite(value):
                    boot[name].append(value)

    def ci(name):
        vals = boot.get(name) or []
        if len(vals) < max(20, reps // 10):
            return None
        return [float(np.quantile(vals, 0.025)), float(np.quantile(vals, 0.975))]

    pairs = [p for k in subjects for p in per_trend[k]]
    labels = ("better", "stable", "worse")
    confusion = {m: {e: sum(1 for a, b in pairs if a == m and b == e) for e in labels}
                 for m in labels}
    n_pairs = len(pairs)
    stable_share = (sum(1 for _a, b in pairs if b == "stable") / n_pairs) if n_pairs else None
    kappa = _kappa(pairs, labels) if n_pairs else None
    result = {
        "n_images": int(len(y_all)), "n_subjects": len(subjects),
        "n_consecutive_pairs": int(sum(len(per_pair[k][0]) for k in subjects)),
        "scale": cal_meta.get("scale") if cal_meta else None,
        "expert_stable_delta": threshold,
        "bootstrap": {"reps": reps, "unit": "subject", "seed": seed},
    }
    for name in ("spearman", "pearson", "pearson_calibrated", "mae_calibrated",
                 "change_spearman", "trend_agreement"):
        value = point[name]
        result[name] = None if not math.isfinite(value) else value
        result[name + "_ci"] = ci(name) if result[name] is not None else None
    result["trend_confusion_model_vs_expert"] = confusion
    result["trend_agreement_always_stable"] = stable_share
    result["trend_kappa"] = kappa
    result["spearman_calibrated_is_same"] = True  # monotone map: ranks (up to ties) unchanged
    return result


def _rank_corr(x: np.ndarray, y: np.ndarray) -> float:
    if len(x) < 3:
        return float("nan")
    from scipy import stats
    return _corr(stats.rankdata(x), stats.rankdata(y))


def _corr(x, y) -> float:
    x = np.asarray(x, dtype=float)
    y = np.asarray(y, dtype=float)
    if len(x) < 3 or x.std() == 0 or y.std() == 0:
        return float("nan")
    return float(np.corrcoef(x, y)[0, 1])


def _kappa(pairs, labels) -> Optional[float]:
    n = len(pairs)
    po = sum(1 for a, b in pairs if a == b) / n
    pe = sum((sum(1 for a, _ in pairs if a == l) / n) * (sum(1 for _, b in pairs if b == l) / n)
             for l in labels)
    return None if pe >= 1 else float((po - pe) / (1 - pe))


def _mean(values: List[float]) -> Optional[float]:
    return float(np.mean(values)) if values else None


def plot(records: Sequence[Record], scores: Sequence[float], result: Dict, out_path: str,
         title: str) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax_box, ax_roc) = plt.subplots(1, 2, figsize=(11, 4.5))
    groups = collections.OrderedDict()
    for rec, sc in zip(records, scores):
        if rec.label_count is not None:
            key = f"{min(rec.label_count, 4)}{'+' if rec.label_count >= 4 else ''} labels"
        else:
            key = {0: "normal", 1: "abnormal", None: "unlabelled"}[rec.abnormal]
        groups.setdefault(key, []).append(sc)
    keys = sorted(groups)
    ax_box.boxplot([groups[k] for k in keys], labels=keys, showfliers=False)
    for i, k in enumerate(keys, start=1):
        jitter = np.random.default_rng(i).uniform(-0.15, 0.15, len(groups[k]))
        ax_box.scatter(np.full(len(groups[k]), i) + jitter, groups[k], s=6, alpha=0.5)
    ax_box.set_ylabel("PXS (median distance to normal anchors)")
    ax_box.set_title("PXS by number of positive labels")
    labelled = [(r.abnormal, sc) for r, sc in zip(records, scores) if r.abnormal is not None]
    fpr, tpr = metrics.roc_curve([a for a, _ in labelled], [sc for _, sc in labelled])
    ax_roc.plot(fpr, tpr, lw=2)
    ax_roc.plot([0, 1], [0, 1], "--", color="grey")
    auc = result.get("auc")
    ci = result.get("auc_ci")
    auc_text = "n/a" if auc is None else f"{auc:.3f}" + (f" [{ci[0]:.3f}, {ci[1]:.3f}]" if ci else "")
    ax_roc.set_title(f"ROC abnormal vs normal, AUC {auc_text}")
    ax_roc.set_xlabel("false positive rate")
    ax_roc.set_ylabel("true positive rate")
    fig.suptitle(title)
    fig.tight_layout()
    _save_fig(fig, out_path)
    plt.close(fig)


def severity_plot_paths(plot_path: str) -> Tuple[str, str]:
    stem, ext = os.path.splitext(plot_path)
    return stem + "-scatter" + (ext or ".png"), stem + "-change" + (ext or ".png")


def plot_severity(records: Sequence[Record], scores: Sequence[float], result: Dict, meta: Dict,
                  plot_path: str, title: str) -> Tuple[str, str]:
    """STEM-scatter.png: PXS and calibrated value vs the expert score; STEM-change.png: the
    change between consecutive exams, model vs experts, with the stable bands."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    sev = result["severity"]
    scatter_path, change_path = severity_plot_paths(plot_path)
    cal_meta = meta.get("calibration")
    ys = np.array([r.severity for r in records if r.severity is not None], dtype=float)
    xs = np.array([s for r, s in zip(records, scores) if r.severity is not None], dtype=float)
    jitter = np.random.default_rng(0).uniform(-0.12, 0.12, len(ys))
    fig, axes = plt.subplots(1, 2 if cal_meta else 1, figsize=(11 if cal_meta else 6, 4.5))
    axes = np.atleast_1d(axes)
    axes[0].scatter(ys + jitter, xs, s=8, alpha=0.5)
    if cal_meta:
        pts = np.asarray(cal_meta["points"], dtype=float)
        axes[0].plot(pts[:, 1], pts[:, 0], "r-", lw=1.5, label="calibration (train)")
        axes[0].legend(loc="upper left")
    axes[0].set_xlabel("expert score")
    axes[0].set_ylabel("PXS (raw)")
    axes[0].set_title(f"Spearman {_ci_text(sev, 'spearman')}")
    if cal_meta:
        cs = calib.apply(cal_meta["points"], xs)
        axes[1].scatter(ys + jitter, cs, s=8, alpha=0.5)
        lo, hi = cal_meta.get("min", 0), cal_meta.get("max", 8)
        axes[1].plot([lo, hi], [lo, hi], "--", color="grey")
        axes[1].set_xlabel("expert score")
        axes[1].set_ylabel(f"calibrated PXS ({cal_meta.get('scale')})")
        axes[1].set_title(f"MAE {_ci_text(sev, 'mae_calibrated')}")
    fig.suptitle(title)
    fig.tight_layout()
    _save_fig(fig, scatter_path)
    plt.close(fig)

    series = _series(records, scores)
    dy, dx = [], []
    for rows in series.values():
        for (k0, r0, s0), (k1, r1, s1) in zip(rows, rows[1:]):
            if k1 > k0:
                dy.append(r1.severity - r0.severity)
                dx.append(float(calib.apply(cal_meta["points"], s1) - calib.apply(cal_meta["points"], s0))
                          if cal_meta else s1 - s0)
    fig, ax = plt.subplots(figsize=(6, 4.5))
    ax.scatter(np.asarray(dy) + np.random.default_rng(1).uniform(-0.1, 0.1, len(dy)), dx, s=8, alpha=0.5)
    t = sev["expert_stable_delta"]
    ax.axvspan(-t, t, color="grey", alpha=0.15, label=f"experts stable (|change| <= {t:g})")
    md = (meta.get("trend") or {}).get("stable_delta_calibrated" if cal_meta else "stable_delta")
    if md is not None:
        ax.axhspan(-md, md, color="orange", alpha=0.15, label=f"model stable (<= {md:g})")
    ax.set_xlabel("change of expert score between consecutive exams")
    ax.set_ylabel("change of calibrated PXS" if cal_meta else "change of PXS")
    ax.set_title(f"change Spearman {_ci_text(sev, 'change_spearman')}; trend agreement "
                 f"{_ci_text(sev, 'trend_agreement')}", fontsize=9)
    ax.legend(loc="upper left", fontsize=8)
    fig.tight_layout()
    _save_fig(fig, change_path)
    plt.close(fig)
    return scatter_path, change_path


def _save_fig(fig, path: str) -> None:
    stem, ext = os.path.splitext(path)
    tmp = f"{stem}.tmp{ext or '.png'}"
    fig.savefig(tmp, dpi=100)
    os.replace(tmp, path)


def _ci_text(sev: Dict, name: str) -> str:
    value, ci = sev.get(name), sev.get(name + "_ci")
    if value is None:
        return "n/a"
    return f"{value:.3f}" + (f" [{ci[0]:.3f}, {ci[1]:.3f}]" if ci else "")


def format_report(result: Dict, model_name: str) -> str:
    def fmt(v):
        return "n/a" if v is None else f"{v:.3f}"
    lines = [f"model: {model_name}",
             f"images: {result['n']} ({result['n_normal']} normal, {result['n_abnormal']} abnormal)",
             f"AUC abnormal vs normal: {fmt(result['auc'])}"
             + (f" (95% bootstrap CI {result['auc_ci'][0]:.3f}-{result['auc_ci'][1]:.3f})"
                if result["auc_ci"] else ""),
             f"mean PXS normal {_sig(result['pxs_mean_normal'])}, abnormal {_sig(result['pxs_mean_abnormal'])}",
             f"Spearman PXS vs number of positive labels: {fmt(result['spearman_label_count'])}"]
    if "spearman_severity" in result:
        lines.append(f"Spearman PXS vs severity: {fmt(result['spearman_severity'])}")
    sev = result.get("severity")
    if sev:
        lines.append(f"severity mode: {sev['n_images']} scored images of {sev['n_subjects']} "
                     f"subjects, {sev['n_consecutive_pairs']} consecutive-exam pairs "
                     f"(95% CIs: subject bootstrap, {sev['bootstrap']['reps']} resamples)")
        lines.append(f"  Spearman PXS vs expert: {_ci_text(sev, 'spearman')}")
        lines.append(f"  Pearson PXS vs expert: {_ci_text(sev, 'pearson')}; calibrated "
                     f"{_ci_text(sev, 'pearson_calibrated')}")
        lines.append(f"  MAE calibrated ({sev['scale'] or 'no calibration'}): "
                     f"{_ci_text(sev, 'mae_calibrated')}")
        lines.append(f"  change Spearman (consecutive exams): {_ci_text(sev, 'change_spearman')}")
        base = sev.get("trend_agreement_always_stable")
        lines.append(f"  trend agreement (experts stable within {sev['expert_stable_delta']:g}): "
                     f"{_ci_text(sev, 'trend_agreement')}; 'always stable' would get "
                     f"{'n/a' if base is None else f'{base:.3f}'}; kappa {fmt(sev.get('trend_kappa'))}")
    for name, entry in (result.get("findings") or {}).items():
        for key, text in (("vs_normal", "normal"), ("vs_all", "all others")):
            e = entry[key]
            ci = e["auc_ci"]
            lines.append(f"AUC {name} ({entry['n_positive']} positive) vs {text} "
                         f"({e['n_negative']}): {fmt(e['auc'])}"
                         + (f" (95% bootstrap CI {ci[0]:.3f}-{ci[1]:.3f})" if ci else ""))
    cd = result.get("change_direction")
    if cd:
        lines.append(f"change direction over {cd['steps']} consecutive-study steps: "
                     f"3-way agreement {cd['three_way_agreement']:.3f}, sign agreement on "
                     f"{cd['changed_steps']} changed steps {fmt(cd['sign_agreement_on_changed'])}")
    return "\n".join(lines)


def run(args) -> int:
    module, meta = package.load_package(args.model)
    from .train import load_records  # one reader for train and evaluate
    records = load_records(args)
    records = drop_duplicate_images(records)
    progress = Progress("scoring", len(records))
    try:
        scores = package.score_files(module, meta, [r.path for r in records],
                                     progress=lambda done, _total: progress.update(done))
    finally:
        progress.close()
    result = compute_metrics(records, scores, meta, seed=args.seed,
                             bootstrap_reps=args.bootstrap,
                             expert_stable_delta=getattr(args, "stable_delta", None))
    result["model"] = meta["name"]
    result["model_version"] = meta["version"]
    cal_meta = meta.get("calibration")
    if args.scores_csv:
        lines = ["image,patient_id,abnormal,label_count,severity,pxs,calibrated"]
        for rec, sc in zip(records, scores):
            cal = "" if not cal_meta else f"{float(calib.apply(cal_meta['points'], sc)):.4f}"
            lines.append(f"{rec.image},{rec.patient_id},{_blank(rec.abnormal)},"
                         f"{_blank(rec.label_count)},{_blank(rec.severity)},{sc:.6f},{cal}")
        _write_text(args.scores_csv, "\n".join(lines) + "\n")
    written = []
    if args.plot:
        plot(records, scores, result, args.plot, f"{meta['name']} {meta['version']}")
        written.append(args.plot)
        if result.get("severity"):
            written += list(plot_severity(records, scores, result, meta, args.plot,
                                          f"{meta['name']} {meta['version']}"))
    print(format_report(result, f"{meta['name']} {meta['version']}"))
    for path in written:
        print(f"plot written to {path}")
    if args.json:
        print(json.dumps(result))
    return 0


def _write_text(path: str, text: str) -> None:
    tmp = path + ".tmp"
    with open(tmp, "w", encoding="utf-8") as handle:
        handle.write(text)
    os.replace(tmp, path)


def _sig(value) -> str:
    return "n/a" if value is None else f"{value:.4g}"


def _blank(value) -> str:
    return "" if value is None else str(value)


__all__ = ["run", "compute_metrics", "severity_metrics", "finding_metrics", "drop_duplicate_images", "format_report",
           "plot", "plot_severity"]
