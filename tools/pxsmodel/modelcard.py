"""MODEL_CARD.md written by `pxs-model train`: what a reader needs to judge the model."""

from __future__ import annotations

import datetime
import json
from typing import Dict, List, Optional


def _fmt(value, digits: int = 3) -> str:
    return "n/a" if value is None else f"{value:.{digits}f}"


def _count(records, indices, label) -> int:
    return sum(1 for i in indices if records[i].abnormal == label)


DESIGN_TEXT = {
    "centroid": "design B (centroid): the Euclidean distance of the embedding to a learned normal "
                "centre regresses the expert score ({dpp} per point, smooth L1); unscored abnormal "
                "images (cxr14 findings) at least {margin} from it; half of each batch are second "
                "exams of the same patients",
    "siamese": "design A (Siamese): every pair of a batch, the distance of the two embeddings "
               "regresses the experts' |score difference| ({dpp} per point, smooth L1); unscored "
               "abnormal vs normal pairs at least {margin} apart; half of each batch are second "
               "exams of the same patients",
}


def _design_text(config: Dict, history: List[Dict]) -> str:
    design = config.get("design", "contrastive")
    if design in DESIGN_TEXT:
        return ("- Training: " + DESIGN_TEXT[design].format(
            dpp=config.get("distance_per_point"), margin=config.get("abnormal_margin"))
            + f"; AdamW, cosine learning rate from {config.get('lr')}, {config.get('epochs')} epochs.")
    return ("- Training (published PXS method, Li et al. 2020): Siamese pre-training with a "
            "contrastive loss (margin 2.0) on pairs labelled same/different by normal vs abnormal"
            + ("; then fine-tuning with MSE between pair distance and |severity difference|."
               if config.get("finetune_epochs") and any(h["stage"] == "severity" for h in history)
               else "; no severity fine-tuning (no severity labels were given)."))


def _noise_text(meta: Dict) -> str:
    noise = meta.get("rater_noise")
    if not noise:
        return ""
    return (f"- Stable-change threshold from the raters' disagreement (training scores): "
            f"{100 * noise['p_odd']:.1f}% half-point means = P(odd rater difference), with "
            f"P(difference >= 2) = {noise['p_diff_ge2']:g} -> SD of the rater difference "
            f"{noise['sd_rater_difference']:.2f}, SEM of the 2-rater mean {noise['sem_mean']:.2f}, "
            f"MDC95 = 1.96 x sqrt(2) x SEM = {noise['mdc95']:.2f} points "
            f"(`trend.stable_delta_calibrated`); the smallest change of the mean on its 0.5 grid "
            f"that exceeds it is {noise['smallest_detectable_grid_change']:g}.")


def _findings_lines(test_result: Dict) -> List[str]:
    """Finding-set mode: AUC per finding vs the normals and vs all others, with the counts."""
    found = test_result.get("findings") or {}
    if not found:
        return []
    lines = ["", "Per finding of the set (positives vs normal = No Finding, and vs all images "
             "without that finding; 95% CI: stratified percentile bootstrap):", "",
             "| Finding | Positives | AUC vs normal (95% CI) | Normals | AUC vs all others (95% CI) | Others |",
             "|---|---:|---|---:|---|---:|"]
    for name, e in found.items():
        cells = []
        for key in ("vs_normal", "vs_all"):
            ci = e[key]["auc_ci"]
            cells.append(f"{_fmt(e[key]['auc'])} (" + (f"{ci[0]:.3f}-{ci[1]:.3f}" if ci else "n/a")
                         + f") | {e[key]['n_negative']}")
        lines.append(f"| {name} | {e['n_positive']} | {cells[0]} | {cells[1]} |")
    return lines


def render(*, name: str, meta: Dict, config: Dict, command_line: str, records, part: Dict,
           history: List[Dict], best: Dict, test_result: Optional[Dict], package_path: str,
           package_bytes: int, plot_path: Optional[str] = None) -> str:
    today = datetime.date.today().isoformat()
    lines = [f"# Model card: {name} {meta['version']}", "",
             f"Written by `pxs-model train` on {today}. Package: `{package_path}` "
             f"({package_bytes / 1e6:.1f} MB, TorchScript, format {meta['format']} v{meta['format_version']}).",
             "",
             "**Not for clinical use.** " if meta["not_for_clinical_use"] else "",
             "", "## Intended use", "", meta["intended_use"], "",
             "## Model", "",
             f"- Backbone: `{config['backbone']}` (randomly initialised; no pretrained weights), "
             f"embedding dimension {meta['embedding_dim']}.",
             f"- Score: PXS = median Euclidean distance of the image's embedding to the embeddings "
             f"of {meta['anchor_count']} normal anchor images from the training part.",
             _design_text(config, history),
             f"- Preprocessing (in the package metadata): `{json.dumps(meta['preprocessing'])}`",
             (f"- Calibration (isotonic regression of the expert score on PXS, training part "
              f"only; {len(meta['calibration']['points'])} points, scale "
              f"'{meta['calibration']['scale']}'): `{json.dumps(meta['calibration']['points'])}`"
              if meta.get("calibration") else "- Calibration: none (no expert scores)."),
             (f"- Trend settings (stable delta from the raters' disagreement, bands at calibrated "
              f"cut points; raw PXS units, `stable_delta_calibrated` in score points): "
              f"`{json.dumps(meta['trend'])}`" if meta.get("calibration") else
              f"- Trend settings (derived from validation PXS; heuristic): `{json.dumps(meta['trend'])}`"),
             _noise_text(meta),
             (f"- Finding score (`--findings {config['findings']}`, other findings: "
              f"{config.get('other_findings', 'keep')}): the sum of the weights of the positive "
              "findings of the set; it takes the place of the expert score above (there are no "
              "raters and no serial exams: `stable_delta_calibrated` = 1 point by convention)."
              if config.get("findings") else ""),
             (f"- What it measures (metadata `finding`, for the SR): `{json.dumps(meta['finding'])}`"
              if meta.get("finding") else ""),
             "", "## Data", "", meta["training_data"], "",
             "| Part | Images | Normal | Abnormal | With expert score | Patients |",
             "|---|---:|---:|---:|---:|---:|"]
    for pname in ("train", "val", "test"):
        idx = part[pname]
        patients = len({(records[i].source, records[i].patient_id) for i in idx})
        scored = sum(1 for i in idx if records[i].severity is not None)
        lines.append(f"| {pname} | {len(idx)} | {_count(records, idx, 0)} | "
                     f"{_count(records, idx, 1)} | {scored} | {patients} |")
    lines += ["", f"Split by patient (no patient in two parts), seed {config['seed']}, "
              f"test fraction {config['test_fraction']}, validation fraction {config['val_fraction']}, "
              "stratified per labels file by normal/abnormal and single/serial patients. The test "
              "part was used only once, after training, for the numbers below; the validation "
              "part chose the epoch (Spearman vs the expert score when there are scores, else "
              "the AUC).", "",
              "## Command line", "", "```", command_line, "```", "",
              "Configuration: `" + json.dumps(config) + "`", "",
              "## Training history", "",
              "| Epoch | Stage | Loss | Validation AUC | Validation Spearman | Elapsed (s) |",
              "|---:|---|---:|---:|---:|---:|"]
    for h in history:
        lines.append(f"| {h['epoch']} | {h['stage']} | {h['loss']:.4f} | {_fmt(h['val_auc'])} | "
                     f"{_fmt(h.get('val_spearman'))} | {h['elapsed_s']} |")
    lines += ["", f"Selected epoch: {best['epoch']} (validation AUC {_fmt(best['val_auc'])}, "
              f"Spearman {_fmt(best.get('val_spearman'))}).", "",
              "## Metrics on the held-out test part", ""]
    if test_result:
        ci = test_result.get("auc_ci")
        sp = test_result.get("spearman_label_count_detail") or {}
        lines += [
            f"- Images: {test_result['n']}; for the AUC {test_result['n_normal']} normal and "
            f"{test_result['n_abnormal']} abnormal "
            + ("(rows with a normal/abnormal label)." if test_result.get("severity") else "."),
            f"- AUC of PXS, abnormal vs normal: **{_fmt(test_result['auc'])}** (95% CI "
            + (f"{ci[0]:.3f}-{ci[1]:.3f}" if ci else "n/a") + ", stratified percentile bootstrap, 2000 resamples).",
            f"- Spearman of PXS vs number of positive labels: {_fmt(test_result['spearman_label_count'])}"
            + (f" (95% CI {sp['ci'][0]:.3f} to {sp['ci'][1]:.3f}, p = {sp['p']:.3g})" if sp.get("ci") else "")
            + ".",
            f"- Mean PXS: normal {_fmt(test_result['pxs_mean_normal'], 4)}, abnormal "
            f"{_fmt(test_result['pxs_mean_abnormal'], 4)}.",
        ]
        if test_result.get("spearman_severity") is not None and not test_result.get("severity"):
            lines.append(f"- Spearman of PXS vs severity: {_fmt(test_result['spearman_severity'])}.")
        sev = test_result.get("severity")
        if sev:
            lines += ["", f"Severity ({sev['n_images']} scored images of {sev['n_subjects']} subjects, "
                      f"{sev['n_consecutive_pairs']} consecutive-exam pairs; 95% CIs by percentile "
                      f"bootstrap over subjects, {sev['bootstrap']['reps']} resamples):", "",
                      "| Metric | Value | 95% CI |", "|---|---:|---|"]
            for key, label in (("spearman", "Spearman PXS vs expert score"),
                               ("pearson", "Pearson PXS vs expert score"),
                               ("pearson_calibrated", "Pearson calibrated PXS vs expert score"),
                               ("mae_calibrated", "MAE, calibrated PXS vs expert (score points)"),
                               ("change_spearman", "Change Spearman, consecutive exams"),
                               ("trend_agreement", "Trend agreement (worse/stable/better)")):
                ci = sev.get(key + "_ci")
                lines.append(f"| {label} | {_fmt(sev.get(key))} | "
                             + (f"{ci[0]:.3f}-{ci[1]:.3f}" if ci else "n/a") + " |")
            base = sev.get("trend_agreement_always_stable")
            lines += ["", f"Trend agreement: the model's trend by the node's rule (calibrated "
                      f"change vs `trend.stable_delta_calibrated`) against the experts' change "
                      f"beyond {sev['expert_stable_delta']:g} points; a model that always said "
                      f"'stable' would agree on {_fmt(base)} of the pairs (Cohen's kappa of the "
                      f"model: {_fmt(sev.get('trend_kappa'))}).",
                      "Confusion (rows model, columns experts; better/stable/worse): `"
                      + json.dumps(sev.get("trend_confusion_model_vs_expert")) + "`"]
        lines += _findings_lines(test_result)
        if plot_path:
            lines += ["", f"Plot (PXS by label count, ROC): `{plot_path}`"
                      + ("; severity scatter and change plots beside it (`-scatter.png`, "
                         "`-change.png`)." if test_result.get("severity") else ".")]
    else:
        lines.append("No test part (test fraction 0): no held-out metrics.")
    lines += ["", "## Limitations", "",
              "- Trained from scratch on a small data set; the confidence intervals above are wide "
              "and the test part is small. Performance on other sites, devices, projections "
              "(AP/PA, portable), children or other populations is unknown.",
              "- Labels used for training are only as good as the CSV given; NLP-mined labels "
              "(e.g. NIH ChestX-ray14) are noisy.",
              "- PXS is a distance to normal anchors, not a diagnosis: unusual but normal images "
              "(positioning, devices, exposure) also score high.",
              ("- The calibration is fitted on the training part of one data set to a score "
               "made of NLP-mined labels; the stable delta of 1 point is a convention, not a "
               "measured detectable change; the bands are cut points on that score, not "
               "clinical grades." if meta.get("calibration") and config.get("findings") else
               "- The calibration is fitted on the training part of one data set; the stable "
               "delta is the raters' minimal detectable change, not a clinical threshold; the "
               "bands are cut points on the calibrated scale, not clinical categories."
               if meta.get("calibration") else
               "- The trend bands and stable delta are heuristics from the validation part, not "
               "clinically calibrated."), ""]
    return "\n".join(lines)
