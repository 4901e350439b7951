"""`pxs-model evaluate`: how well a package's PXS separates normal from abnormal images."""

from __future__ import annotations

import collections
import json
import math
from typing import Dict, List, Optional, Sequence

import numpy as np

from . import metrics, package, preprocess
from .errors import warn
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


def compute_metrics(records: Sequence[Record], scores: Sequence[float], stable_delta: float,
                    seed: int = 0, bootstrap_reps: int = 2000) -> Dict:
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
    return result


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
    fig.savefig(out_path, dpi=100)
    plt.close(fig)


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
    cd = result.get("change_direction")
    if cd:
        lines.append(f"change direction over {cd['steps']} consecutive-study steps: "
                     f"3-way agreement {cd['three_way_agreement']:.3f}, sign agreement on "
                     f"{cd['changed_steps']} changed steps {fmt(cd['sign_agreement_on_changed'])}")
    return "\n".join(lines)


def run(args) -> int:
    module, meta = package.load_package(args.model)
    records = read_labels(args.labels, args.images, require_label=True)
    records = drop_duplicate_images(records)
    progress = Progress("scoring", len(records))
    scores = package.score_files(module, meta, [r.path for r in records],
                                 progress=lambda done, _total: progress.update(done))
    progress.close()
    result = compute_metrics(records, scores, float(meta["trend"].get("stable_delta", 1.0)),
                             seed=args.seed, bootstrap_reps=args.bootstrap)
    result["model"] = meta["name"]
    result["model_version"] = meta["version"]
    if args.scores_csv:
        with open(args.scores_csv, "w", encoding="utf-8") as handle:
            handle.write("image,patient_id,abnormal,label_count,severity,pxs\n")
            for rec, sc in zip(records, scores):
                handle.write(f"{rec.image},{rec.patient_id},{_blank(rec.abnormal)},"
                             f"{_blank(rec.label_count)},{_blank(rec.severity)},{sc:.6f}\n")
    if args.plot:
        plot(records, scores, result, args.plot, f"{meta['name']} {meta['version']}")
    print(format_report(result, f"{meta['name']} {meta['version']}"))
    if args.plot:
        print(f"plot written to {args.plot}")
    if args.json:
        print(json.dumps(result))
    return 0


def _sig(value) -> str:
    return "n/a" if value is None else f"{value:.4g}"


def _blank(value) -> str:
    return "" if value is None else str(value)


__all__ = ["run", "compute_metrics", "drop_duplicate_images", "format_report", "plot"]
