"""Argument parsing for tools/pxs-model: one entry point, three commands."""

from __future__ import annotations

import argparse
import sys

from .backbones import BACKBONES
from .errors import DataError

DEMO_INTENDED_USE = ("Demonstration of the PXS pipeline only. Not for clinical use: trained from "
                     "scratch on 500 NIH ChestX-ray14 images with noisy NLP-mined labels.")
DEFAULT_INTENDED_USE = ("Research use: pulmonary x-ray severity (PXS) score of adult frontal chest "
                        "radiographs, for trend display next to prior studies. Not for clinical use.")


FINDING_HELP = ("what the score measures, for the SR: SCHEME,VALUE,MEANING of a code, e.g. "
                "'SCT,19242006,Pulmonary edema' (metadata 'finding'; docs/model-package.md)")
FINDINGS_HELP = ("finding-set mode for NIH-style labels (cxr14 labels.csv): the target is the "
                 "sum of the weights of the positive findings, e.g. "
                 "'Edema=2,Effusion=1,Cardiomegaly=1' (weight 1 when omitted; the first is the "
                 "primary finding: the split stratifies on it and evaluate reports its AUCs)")
OTHER_FINDINGS_HELP = ("finding-set mode: images whose only findings are outside the set are "
                       "kept with finding score 0 (keep, default) or left out (exclude)")


def _add_common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--threads", type=int, default=0,
                   help="CPU threads for PyTorch (default: PyTorch's choice). On a machine busy "
                        "with other work, 1 can be many times faster than 2 (OpenMP threads "
                        "wait for each other)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="pxs-model",
        description="Export, train and evaluate PXS model packages for the PXS node "
                    "(package format: docs/model-package.md; guide: docs/training.md).")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True

    ex = sub.add_parser("export", help="package a checkpoint with its normal anchor images",
                        description="Build a model package from a published PXS "
                                    "SiameseNetwork_DenseNet121 checkpoint or a pxs-model train "
                                    "checkpoint plus a folder of normal anchor images.")
    ex.add_argument("--checkpoint", required=True, help="checkpoint file (.pth/.pt)")
    ex.add_argument("--anchors", required=True,
                    help="folder of normal chest X-rays (DICOM or PNG, searched recursively)")
    ex.add_argument("--out", required=True, help="package file to write (.pt)")
    ex.add_argument("--kind", choices=("auto", "pxs", "pxsmodel"), default="auto",
                    help="checkpoint type: published PXS network or ours (default: detect)")
    ex.add_argument("--name", default="pxs-model", help="package name (metadata 'name')")
    ex.add_argument("--version", default="1.0.0", help="package version (metadata 'version')")
    ex.add_argument("--input-size", type=int, default=0,
                    help="centre crop size (default: the checkpoint's; 320 for published PXS)")
    ex.add_argument("--resize", type=int, default=0,
                    help="short side before the crop (default: checkpoint's, or 1.05 x input size)")
    ex.add_argument("--autocrop", dest="autocrop", action="store_true", default=None,
                    help="crop near-black borders before resizing")
    ex.add_argument("--no-autocrop", dest="autocrop", action="store_false")
    ex.add_argument("--max-anchors", type=int, default=0, help="use at most N anchor images")
    ex.add_argument("--check-images", type=int, default=4,
                    help="images for the TorchScript vs eager check (default 4)")
    ex.add_argument("--training-data", default="", help="free text for metadata 'training_data'")
    ex.add_argument("--intended-use", default=DEFAULT_INTENDED_USE,
                    help="free text for metadata 'intended_use' (shown in the SR)")
    ex.add_argument("--clinical-use", action="store_true",
                    help="set not_for_clinical_use to false (only for a validated, approved model)")
    ex.add_argument("--calibration", default="", help="JSON for metadata 'calibration'")
    ex.add_argument("--trend", default="", help="JSON for metadata 'trend' (default: contract's)")
    ex.add_argument("--finding", default="", help=FINDING_HELP)
    _add_common(ex)

    tr = sub.add_parser("train", help="train a PXS model on your own labelled images",
                        description="Train the embedding behind PXS (median distance to normal "
                                    "anchors). Designs: centroid (distance to a learned normal "
                                    "centre regresses the expert score), siamese (pair distances "
                                    "regress |score difference|), contrastive (published "
                                    "two-step method). With expert scores the package gets an "
                                    "isotonic calibration to their scale (training part only) "
                                    "and a stable-change threshold from rater noise. Writes "
                                    "checkpoints, a package and MODEL_CARD.md into --out.")
    tr.add_argument("--images", required=True, action="append",
                    help="folder with the images named in the CSV (once per --labels)")
    tr.add_argument("--labels", required=True, action="append",
                    help="CSV: image, patient_id, abnormal (or label / no_finding), [severity]; "
                         "or an expert scores file such as RALO's scores.csv (image, "
                         "subject_id, exam_datetime, geographic_extent_mean, ...). Repeat "
                         "--images/--labels to combine data sets")
    tr.add_argument("--out", required=True, help="output folder (checkpoints, package, card)")
    tr.add_argument("--design", choices=("centroid", "siamese", "contrastive"), default="centroid",
                    help="training design (default centroid; see docs/training.md)")
    tr.add_argument("--severity-column", default="",
                    help="expert score column (default: severity, else geographic_extent_mean "
                         "or opacity_mean when present)")
    tr.add_argument("--severity-range", default="",
                    help="MIN,MAX valid scores (default 0,8 for the RALO columns; none for "
                         "'severity')")
    tr.add_argument("--scale-name", default="",
                    help="calibration.scale written into the package (default: 'RALE geographic "
                         "extent' for geographic_extent_mean, 'RALE opacity', else the column)")
    tr.add_argument("--rater-ge2-fraction", type=float, default=0.2,
                    help="fraction of images whose two raters differ by >= 2 points (RALO "
                         "README: about a fifth); with the observed half-point fraction it "
                         "gives the stable-change threshold")
    tr.add_argument("--findings", default="", help=FINDINGS_HELP)
    tr.add_argument("--other-findings", choices=("keep", "exclude"), default="keep",
                    help=OTHER_FINDINGS_HELP)
    tr.add_argument("--finding", default="", help=FINDING_HELP)
    tr.add_argument("--split-file", default="",
                    help="use this split (CSV image[,path],part like OUT/split.csv) instead "
                         "of the seeded patient split")
    tr.add_argument("--distance-per-point", type=float, default=0.25,
                    help="embedding distance per expert score point (centroid/siamese)")
    tr.add_argument("--abnormal-margin", type=float, default=0.5,
                    help="minimum distance of an unscored abnormal image from normals")
    tr.add_argument("--label-weight", type=float, default=1.0,
                    help="weight of the unscored-abnormal margin term (e.g. cxr14 findings)")
    tr.add_argument("--change-weight", type=float, default=0.0,
                    help="centroid design: weight of the within-patient change term (the "
                         "difference of two exams' distances regresses their score difference)")
    tr.add_argument("--normal-weight", type=float, default=3.0,
                    help="how often a normal training image is drawn per epoch (default 3)")
    tr.add_argument("--robust-preprocessing", action="store_true",
                    help="percentile intensity normalisation and body crop (preprocess."
                         "ROBUST_PREPROCESSING; for JPEGs and full-size DICOM alike)")
    tr.add_argument("--preprocessing", default="",
                    help="JSON object of extra/overriding package preprocessing keys")
    tr.add_argument("--bf16", choices=("auto", "on", "off"), default="auto",
                    help="bfloat16 autocast for CPU training (auto: when the CPU has "
                         "AVX512-BF16/AMX); evaluation and the package stay float32")
    tr.add_argument("--backbone", choices=BACKBONES, default="compact",
                    help="densenet121 (published, slow on CPU), resnet18, compact (default), "
                         "compact-gn (compact with GroupNorm instead of BatchNorm)")
    tr.add_argument("--embedding-dim", type=int, default=0,
                    help="embedding size (default 1000 for densenet121, else 128)")
    tr.add_argument("--input-size", type=int, default=224, help="centre crop size (default 224)")
    tr.add_argument("--resize", type=int, default=0, help="short side before crop (default 1.05x)")
    tr.add_argument("--autocrop", action="store_true", help="crop near-black borders")
    tr.add_argument("--epochs", type=int, default=20, help="contrastive epochs (default 20)")
    tr.add_argument("--finetune-epochs", type=int, default=5,
                    help="severity fine-tuning epochs, used when the CSV has severity (default 5)")
    tr.add_argument("--pairs-per-epoch", type=int, default=512, help="pairs per epoch (default 512)")
    tr.add_argument("--batch-size", type=int, default=16, help="pairs per batch (default 16)")
    tr.add_argument("--lr", type=float, default=1e-3, help="peak learning rate (AdamW, cosine)")
    tr.add_argument("--weight-decay", type=float, default=1e-4)
    tr.add_argument("--augment", type=float, default=1.0,
                    help="augmentation strength 0..2 (random crop always; default 1)")
    tr.add_argument("--seed", type=int, default=42)
    tr.add_argument("--test-fraction", type=float, default=0.2,
                    help="patients held out for the final test (default 0.2)")
    tr.add_argument("--val-fraction", type=float, default=0.15,
                    help="patients for epoch selection (default 0.15)")
    tr.add_argument("--anchor-count", type=int, default=32,
                    help="normal training images used as anchors (default 32)")
    tr.add_argument("--name", default="", help="package name (default: the --out folder name)")
    tr.add_argument("--version", default="1.0.0")
    tr.add_argument("--package", default="", help="package path (default OUT/NAME.pt)")
    tr.add_argument("--model-card", default="", help="model card path (default OUT/MODEL_CARD.md)")
    tr.add_argument("--training-data", default="", help="free text for metadata 'training_data'")
    tr.add_argument("--intended-use", default=DEFAULT_INTENDED_USE,
                    help="free text for metadata 'intended_use' (shown in the SR)")
    tr.add_argument("--device", default="",
                    help="cpu, cuda, cuda:1 ... (default: cuda when available, else cpu)")
    tr.add_argument("--resume", action="store_true", help="continue an interrupted run in --out")
    tr.add_argument("--overwrite", action="store_true", help="start over even if --out has a run")
    tr.add_argument("--skip-test", action="store_true",
                    help="do not score the held-out test part at the end (exploratory runs: "
                         "keeps the test part untouched until the final run)")
    tr.add_argument("--stop-after-epochs", type=int, default=0, help=argparse.SUPPRESS)
    _add_common(tr)

    ev = sub.add_parser("evaluate", help="AUC / Spearman / change direction of a package",
                        description="Score labelled images with a package (same preprocessing "
                                    "and PXS as the node) and report AUC abnormal vs normal with "
                                    "a bootstrap 95%% CI, Spearman vs label count, and with "
                                    "expert scores the severity mode: Spearman/Pearson with "
                                    "subject-bootstrap CIs, MAE on the calibrated scale, change "
                                    "Spearman and trend agreement over consecutive exams.")
    ev.add_argument("--model", required=True, help="package file (.pt)")
    ev.add_argument("--images", required=True, action="append",
                    help="image folder (once per --labels)")
    ev.add_argument("--labels", required=True, action="append",
                    help="CSV like ../shared/data/cxr14/labels.csv, image,patient_id,abnormal"
                         "[,severity], or an expert scores file (RALO scores.csv); repeatable")
    ev.add_argument("--severity-column", default="",
                    help="expert score column for the severity mode (default: detected)")
    ev.add_argument("--severity-range", default="", help="MIN,MAX valid scores")
    ev.add_argument("--findings", default="", help=FINDINGS_HELP)
    ev.add_argument("--other-findings", choices=("keep", "exclude"), default="keep",
                    help=OTHER_FINDINGS_HELP)
    ev.add_argument("--stable-delta", type=float, default=None,
                    help="experts' stable-change threshold in score points (default: the "
                         "package's trend.stable_delta_calibrated)")
    ev.add_argument("--json", action="store_true", help="print one JSON object as the last line")
    ev.add_argument("--plot", default="",
                    help="write PXS-by-label and ROC plot (PNG); in severity mode also "
                         "STEM-scatter.png and STEM-change.png")
    ev.add_argument("--scores-csv", default="", help="write per-image PXS to this CSV")
    ev.add_argument("--bootstrap", type=int, default=2000, help="bootstrap resamples (default 2000)")
    ev.add_argument("--seed", type=int, default=0, help="bootstrap seed")
    _add_common(ev)
    return parser


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    args.argv = list(sys.argv[1:] if argv is None else argv)  # for the model card
    try:
        if args.command == "export":
            from . import export
            return export.run(args)
        if args.command == "train":
            from . import train
            if not args.embedding_dim:
                args.embedding_dim = 1000 if args.backbone == "densenet121" else 128
            return train.run(args)
        from . import evaluate
        if args.threads:
            import torch
            torch.set_num_threads(args.threads)
        return evaluate.run(args)
    except DataError as exc:
        print(f"pxs-model {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"pxs-model {args.command}: interrupted"
              + (" (continue with --resume)" if args.command == "train" else ""), file=sys.stderr)
        return 130
