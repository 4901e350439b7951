"""`pxs-model train`: learn a PXS embedding on a site's own images.

The product's score stays PXS = median Euclidean distance of an image's embedding to the
embeddings of normal anchor images. Three training designs (`--design`):

* ``contrastive`` (published PXS method, Li et al. 2020): Siamese pre-training with a
  contrastive loss (margin 2.0) on pairs labelled same/different by normal/abnormal; then,
  with severity labels, fine-tuning of pair distances to |severity difference|.
* ``siamese`` (design A): every pair of images in a batch is a Siamese pair; the Euclidean
  distance of two embeddings is regressed on the experts' |score difference| (scaled by
  ``--distance-per-point``); pairs of a normal and an abnormal image without a score (e.g.
  cxr14 findings) must be at least ``--abnormal-margin`` apart. Half of each batch are
  second exams of the same subjects, so within-patient changes are taught too.
* ``centroid`` (design B): the distance of the embedding to a learned "normal" centroid is
  regressed on the expert score (scaled the same way); unscored abnormal images must be at
  least ``--abnormal-margin`` from it. The normal anchors (scored 0 / "No Finding")
  gather at the centroid, so the median distance to them follows the score.

Severity comes from a ``severity`` column or an expert scores file (``--severity-column``,
detected for RALO's ``geographic_extent_mean``); several ``--images``/``--labels`` pairs
can be combined (e.g. RALO scores + cxr14 labels). With scores, the package gets a
calibration (isotonic, fitted on the training part only) to the experts' scale and a
stable-change threshold from the raters' disagreement (calibration.py).

Everything the run needs to continue is in OUT/checkpoint_last.pt (weights, optimiser, epoch,
random states, history), written after every epoch; `--resume` continues from it.
"""

from __future__ import annotations

import collections
import csv
import json
import math
import os
import random
import shlex
import sys
import tempfile
import time
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torchvision import transforms

from . import backbones, calibration, evaluate, labels, metrics, modelcard, package, preprocess
from .errors import DataError, warn
from .labels import Record, read_labels
from .progress import Progress

CONTRASTIVE_MARGIN = 2.0
SCALE_NAMES = {"geographic_extent_mean": "RALE geographic extent", "opacity_mean": "RALE opacity"}
DESIGNS = ("centroid", "siamese", "contrastive")


def contrastive_loss(out0: torch.Tensor, out1: torch.Tensor, different: torch.Tensor,
                     margin: float = CONTRASTIVE_MARGIN) -> torch.Tensor:
    """Hadsell-Chopra-LeCun: pull same pairs together, push different pairs to `margin`."""
    distance = F.pairwise_distance(out0, out1)
    return torch.mean((1 - different) * distance.pow(2)
                      + different * torch.clamp(margin - distance, min=0.0).pow(2))


def severity_loss(out0: torch.Tensor, out1: torch.Tensor, severity_gap: torch.Tensor) -> torch.Tensor:
    return F.mse_loss(F.pairwise_distance(out0, out1), severity_gap)


def _safe_norm(x: torch.Tensor, dim: int = -1) -> torch.Tensor:
    return torch.sqrt((x * x).sum(dim) + 1e-8)


def siamese_batch_loss(z: torch.Tensor, target: torch.Tensor, has_score: torch.Tensor,
                       abnormal: torch.Tensor, margin: float,
                       label_weight: float = 1.0) -> torch.Tensor:
    """Design A. z [B,D]; target [B] = score x distance-per-point (0 for unscored normals);
    has_score [B] bool (scored or a normal); abnormal [B] bool. All pairs of the batch."""
    diff = z.unsqueeze(0) - z.unsqueeze(1)
    dist = _safe_norm(diff)
    iu = torch.triu_indices(len(z), len(z), offset=1, device=z.device)
    d = dist[iu[0], iu[1]]
    both = has_score[iu[0]] & has_score[iu[1]]
    gap = (target[iu[0]] - target[iu[1]]).abs()
    loss = torch.zeros((), device=z.device)
    terms = 0
    if both.any():
        loss = loss + F.smooth_l1_loss(d[both], gap[both], beta=0.25)
        terms += 1
    # unscored abnormal vs a normal: at least `margin` apart
    unscored_ab = abnormal & ~has_score
    normal = has_score & (target <= 0)
    cross = (unscored_ab[iu[0]] & normal[iu[1]]) | (unscored_ab[iu[1]] & normal[iu[0]])
    if cross.any():
        loss = loss + label_weight * torch.clamp(margin - d[cross], min=0).pow(2).mean()
        terms += 1
    return loss if terms else (z * 0).sum()


def centroid_batch_loss(z: torch.Tensor, centre: torch.Tensor, target: torch.Tensor,
                        has_score: torch.Tensor, abnormal: torch.Tensor,
                        margin: float, label_weight: float = 1.0,
                        change_weight: float = 0.0) -> torch.Tensor:
    """Design B. Distance to the learned normal centre regresses the scaled score.
    Batches are laid out as (seed, mate) pairs (severity_batches); with `change_weight`
    the difference of the two distances also regresses the difference of the scores for
    mates of the same patient (marked by a target difference that is finite)."""
    d = _safe_norm(z - centre.unsqueeze(0))
    loss = torch.zeros((), device=z.device)
    terms = 0
    if has_score.any():
        loss = loss + F.smooth_l1_loss(d[has_score], target[has_score], beta=0.25)
        terms += 1
    unscored_ab = abnormal & ~has_score
    if unscored_ab.any():
        loss = loss + label_weight * torch.clamp(margin - d[unscored_ab], min=0).pow(2).mean()
        terms += 1
    if change_weight > 0 and len(z) >= 2:
        a, b = torch.arange(0, len(z) - 1, 2, device=z.device), torch.arange(1, len(z), 2, device=z.device)
        both = has_score[a] & has_score[b]
        if both.any():
            loss = loss + change_weight * F.smooth_l1_loss(
                (d[a] - d[b])[both], (target[a] - target[b])[both], beta=0.25)
            terms += 1
    return loss if terms else (z * 0).sum()


class CentroidModel(nn.Module):
    """Training wrapper: the backbone plus the learned normal centre (not packaged: the
    product measures distances to anchor embeddings)."""

    def __init__(self, net: nn.Module, dim: int):
        super().__init__()
        self.net = net
        self.centre = nn.Parameter(torch.zeros(dim))


# ----------------------------------------------------------------------------- data


def split_by_patient(records: Sequence[Record], test_fraction: float, val_fraction: float,
                     seed: int) -> Dict[str, str]:
    """Image -> 'train' / 'val' / 'test'. All images of a patient go to one part. Patients
    are split per stratum so every part keeps the mix: per labels file, normal-only vs any
    abnormal image, and (for files with several exams per patient) single vs serial
    patients. Patients are keyed by (labels file, patient id)."""
    groups: Dict[Tuple[str, str], List[Record]] = collections.defaultdict(list)
    for rec in records:
        groups[(rec.source, rec.patient_id)].append(rec)
    strata: Dict[Tuple, List[Tuple[str, str]]] = collections.defaultdict(list)
    for key, recs in groups.items():
        abnormal = max((r.abnormal or 0) for r in recs)
        serial = len(recs) > 1
        if recs[0].findings is not None:
            # Finding-set mode: the primary finding (the set's first) can have very few
            # positives (cxr14: 14 Edema images); stratifying on it, and on any finding of the
            # set, spreads them over the parts by the fractions instead of by chance.
            primary = next(iter(recs[0].findings))
            strata[(key[0], abnormal, serial, max(r.findings[primary] for r in recs),
                    int(max(r.severity or 0 for r in recs) > 0))].append(key)
            continue
        strata[(key[0], abnormal, serial)].append(key)
    rng = random.Random(seed)
    part_of: Dict[Tuple[str, str], str] = {}
    for stratum in sorted(strata, key=lambda t: (t[0], t[1], t[2])):
        ids = sorted(strata[stratum])
        rng.shuffle(ids)
        n_test = int(round(len(ids) * test_fraction))
        n_val = int(round(len(ids) * val_fraction))
        if len(ids) >= 3:  # keep at least one training patient per stratum
            n_test = min(n_test, len(ids) - 1 - n_val)
        for i, pid in enumerate(ids):
            part_of[pid] = "test" if i < n_test else "val" if i < n_test + n_val else "train"
    return {rec.image_key: part_of[(rec.source, rec.patient_id)] for rec in records}


def read_split_file(path: str, records: Sequence[Record]) -> Dict[str, str]:
    """A user-supplied split: CSV with `image` and `part` (train/val/test), like split.csv.
    Every image must be listed; a patient with images in two parts is an error naming the
    file and the rows."""
    if not os.path.isfile(path):
        raise DataError(f"{path}: split file not found")
    wanted = {}
    with open(path, newline="", encoding="utf-8-sig") as handle:
        reader = csv.DictReader(handle)
        if not reader.fieldnames or "image" not in reader.fieldnames or "part" not in reader.fieldnames:
            raise DataError(f"{path}: split file needs columns image,part")
        for line_no, row in enumerate(reader, start=2):
            part = (row.get("part") or "").strip()
            if part not in ("train", "val", "test"):
                raise DataError(f"{path} row {line_no}: part '{part}' is not train/val/test")
            key = (row.get("path") or row.get("image") or "").strip()
            wanted[key] = (part, line_no)
    split: Dict[str, str] = {}
    first: Dict[Tuple[str, str], Tuple[str, int, str]] = {}
    for rec in records:
        entry = wanted.get(rec.image_key) or wanted.get(rec.image)
        if entry is None:
            raise DataError(f"{path}: image '{rec.image}' ({rec.source} row {rec.row}) is not "
                            "in the split file")
        part, line_no = entry
        key = (rec.source, rec.patient_id)
        if key in first and first[key][0] != part:
            raise DataError(f"{path} row {line_no}: patient '{rec.patient_id}' is in part "
                            f"'{part}' here but in '{first[key][0]}' at row {first[key][1]} "
                            f"({first[key][2]}): a patient must be in one part only")
        first.setdefault(key, (part, line_no, rec.image))
        split[rec.image_key] = part
    return split


def check_split(records: Sequence[Record], split: Dict[str, str]) -> None:
    parts: Dict[Tuple[str, str], set] = collections.defaultdict(set)
    for rec in records:
        parts[(rec.source, rec.patient_id)].add(split[rec.image_key])
    bad = [k for k, v in parts.items() if len(v) > 1]
    if bad:
        raise DataError(f"patient '{bad[0][1]}' of {bad[0][0]} is in parts {sorted(parts[bad[0]])}")


class ImageCache:
    """Decodes each image once: the contract pipeline up to the resize, kept as PIL image
    (for exact evaluation tensors) and as a uint8 tensor (for fast augmentation)."""

    def __init__(self, records: Sequence[Record], preprocessing: Dict, log=warn):
        self.preprocessing = preprocessing
        self.records: List[Record] = []
        self.pil = []
        self.pixels: List[torch.Tensor] = []
        seen: Dict[str, Record] = {}
        progress = Progress("loading images", len(records))
        for i, rec in enumerate(records, start=1):
            try:
                decoded = preprocess.decode_image(rec.path)
                digest = preprocess.pixel_hash_of(preprocess.to_uint8(decoded, rec.path))
                if digest in seen:
                    log(f"warning: row {rec.row} ({rec.image}) is the same image as row "
                        f"{seen[digest].row} ({seen[digest].image}); dropped")
                    progress.update(i)
                    continue
                # the whole contract pipeline up to the resize (preprocess.py's own entry point)
                image = preprocess.to_8bit_display(rec.path, preprocessing)
            except DataError as exc:
                raise DataError(f"labels {rec.source or ''} row {rec.row} ({rec.image}): {exc}") from exc
            seen[digest] = rec
            pil = preprocess.resize_short_side(image, preprocessing["resize_short_side"])
            self.records.append(rec)
            self.pil.append(pil)
            self.pixels.append(torch.from_numpy(np.array(pil, dtype=np.uint8)))
            progress.update(i)
        progress.close()

    def eval_batch(self, indices: Sequence[int]) -> torch.Tensor:
        return torch.stack([preprocess.finish_tensor(self.pil[i], self.preprocessing)
                            for i in indices])


class Augmenter:
    """Random crop of the training size from the resized image, a small affine jitter and a
    brightness/contrast/gamma jitter; then the package normalisation."""

    def __init__(self, preprocessing: Dict, strength: float):
        crop = int(preprocessing["center_crop"])
        self.preprocessing = preprocessing
        self.strength = strength
        self.crop = transforms.RandomCrop(crop)
        self.affine = transforms.RandomAffine(degrees=7 * strength, translate=(0.04 * strength,) * 2,
                                              scale=(1 - 0.08 * strength, 1 + 0.08 * strength))

    def __call__(self, pixels: torch.Tensor) -> torch.Tensor:
        x = pixels.unsqueeze(0).float() / 255.0
        x = self.crop(x)
        if self.strength > 0:
            x = self.affine(x)
            contrast = 1 + (random.random() * 2 - 1) * 0.1 * self.strength
            brightness = (random.random() * 2 - 1) * 0.05 * self.strength
            gamma = math.exp((random.random() * 2 - 1) * 0.15 * self.strength)
            x = ((x.clamp(0, 1) ** gamma - 0.5) * contrast + 0.5 + brightness).clamp(0, 1)
        return preprocess.normalise(x.repeat(3, 1, 1), self.preprocessing)


def sample_contrastive_pairs(normal: List[int], abnormal: List[int], count: int,
                             rng: random.Random) -> List[Tuple[int, int, float]]:
    """As published: half the pairs cross normal/abnormal (label 1), the other half are two
    normals or two abnormals (label 0), each with probability 1/2."""
    pairs = []
    for _ in range(count):
        if rng.random() < 0.5:
            pairs.append((rng.choice(normal), rng.choice(abnormal), 1.0))
        else:
            pool = normal if rng.random() < 0.5 else abnormal
            pairs.append((rng.choice(pool), rng.choice(pool), 0.0))
    return pairs


def sample_severity_pairs(indices: List[int], severity: Dict[int, float], count: int,
                          rng: random.Random) -> List[Tuple[int, int, float]]:
    return [(a, b, abs(severity[a] - severity[b]))
            for a, b in ((rng.choice(indices), rng.choice(indices)) for _ in range(count))]


def severity_batches(train_idx: List[int], records: Sequence[Record], batch_size: int,
                     rng: random.Random, normal_weight: float = 3.0) -> List[List[int]]:
    """One epoch: every training image once as a batch 'seed' (normals `normal_weight`
    times, they are scarce), and beside each seed another exam of the same patient when it
    has one (else another random image): half of every batch are within-patient pairs."""
    by_patient: Dict[Tuple[str, str], List[int]] = collections.defaultdict(list)
    for i in train_idx:
        by_patient[(records[i].source, records[i].patient_id)].append(i)
    seeds = []
    for i in train_idx:
        reps = normal_weight if records[i].abnormal == 0 else 1.0
        seeds += [i] * int(reps)
        if rng.random() < reps - int(reps):
            seeds.append(i)
    rng.shuffle(seeds)
    half = max(batch_size // 2, 1)
    batches = []
    for b in range(0, len(seeds), half):
        chunk = seeds[b:b + half]
        batch = []
        for i in chunk:
            mates = by_patient[(records[i].source, records[i].patient_id)]
            j = rng.choice([m for m in mates if m != i]) if len(mates) > 1 else rng.choice(train_idx)
            batch += [i, j]
        if len(batch) >= 4:
            batches.append(batch)
    return batches


# ----------------------------------------------------------------------------- training


def _pxs_scores(net, cache: ImageCache, anchor_idx: List[int], eval_idx: List[int]) -> List[float]:
    net.eval()
    anchors = package.embed(net, cache.eval_batch(anchor_idx), batch_size=64)
    emb = package.embed(net, cache.eval_batch(eval_idx), batch_size=64)
    return package.median_distance(emb, anchors)


def _pxs_auc(net, cache: ImageCache, anchor_idx: List[int], eval_idx: List[int]) -> Tuple[float, List[float]]:
    scores = _pxs_scores(net, cache, anchor_idx, eval_idx)
    labels = [cache.records[i].abnormal for i in eval_idx]
    return metrics.roc_auc(labels, scores), scores


def validation_metrics(net, cache: ImageCache, anchor_idx: List[int], eval_idx: List[int]) -> Dict:
    """AUC (normal vs abnormal, label files only when there are any), Spearman vs severity."""
    if not eval_idx:
        return {"val_auc": None, "val_spearman": None, "selection": -1.0}
    scores = _pxs_scores(net, cache, anchor_idx, eval_idx)
    recs = [cache.records[i] for i in eval_idx]
    labelled = [(r.abnormal, s) for r, s in zip(recs, scores)
                if r.abnormal is not None and r.abnormal_from == "label"]
    if not labelled:
        labelled = [(r.abnormal, s) for r, s in zip(recs, scores) if r.abnormal is not None]
    auc = metrics.roc_auc([a for a, _ in labelled], [s for _, s in labelled]) if labelled else float("nan")
    sev = [(r.severity, s) for r, s in zip(recs, scores) if r.severity is not None]
    rho = metrics.spearman([v for v, _ in sev], [s for _, s in sev])["rho"] if len(sev) >= 3 else None
    auc = None if math.isnan(auc) else auc
    selection = rho if rho is not None else (auc if auc is not None else -1.0)
    return {"val_auc": auc, "val_spearman": rho, "selection": selection}


def _save(path: str, state: Dict) -> None:
    """Atomic write: an interruption during the save leaves the previous checkpoint intact."""
    tmp = path + ".tmp"
    torch.save(state, tmp)
    os.replace(tmp, path)


def bf16_supported() -> bool:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as handle:
            flags = handle.read()
        return "avx512_bf16" in flags or "amx_bf16" in flags
    except OSError:
        return False


def _config_of(args) -> Dict:
    resize = args.resize or int(round(args.input_size * 1.05))
    return {
        "design": args.design, "backbone": args.backbone, "embedding_dim": args.embedding_dim,
        "input_size": args.input_size, "resize_short_side": resize,
        "autocrop": args.autocrop, "robust_preprocessing": bool(args.robust_preprocessing),
        "preprocessing_overrides": args.preprocessing or "",
        "epochs": args.epochs, "finetune_epochs": args.finetune_epochs,
        "pairs_per_epoch": args.pairs_per_epoch, "batch_size": args.batch_size, "lr": args.lr,
        "weight_decay": args.weight_decay, "augment": args.augment, "seed": args.seed,
        "test_fraction": args.test_fraction, "val_fraction": args.val_fraction,
        "anchor_count": args.anchor_count, "severity_column": args.severity_column or "",
        "distance_per_point": args.distance_per_point, "abnormal_margin": args.abnormal_margin,
        "normal_weight": args.normal_weight, "label_weight": args.label_weight,
        "change_weight": args.change_weight, "split_file": args.split_file or "",
        # finding-set keys only when used: older runs' configs (and --resume) stay as they were
        **({"findings": args.findings, "other_findings": args.other_findings}
           if getattr(args, "findings", "") else {}),
    }


def _pairs(args) -> List[Tuple[str, str]]:
    images = args.images if isinstance(args.images, list) else [args.images]
    labels = args.labels if isinstance(args.labels, list) else [args.labels]
    if len(images) == 1 and len(labels) > 1:
        images = images * len(labels)
    if len(images) != len(labels):
        raise DataError(f"give one --images per --labels ({len(images)} --images, "
                        f"{len(labels)} --labels)")
    return list(zip(images, labels))


def _findings(args) -> Optional[Dict[str, float]]:
    spec = getattr(args, "findings", "") or ""
    return labels.parse_findings(spec) if spec else None


def load_records(args, require_label: bool = True) -> List[Record]:
    records: List[Record] = []
    findings = _findings(args)
    for images, labels_csv in _pairs(args):
        records += read_labels(labels_csv, images, require_label=require_label,
                               severity_column=args.severity_column or None,
                               severity_range=_range(args), findings=findings,
                               other_findings=getattr(args, "other_findings", "keep"))
    keys = collections.Counter(r.image_key for r in records)
    dup = [k for k, n in keys.items() if n > 1]
    if dup:
        raise DataError(f"image '{dup[0]}' is listed in two labels files")
    return records


def _range(args) -> Optional[Tuple[float, float]]:
    text = getattr(args, "severity_range", "") or ""
    if not text:
        return None
    try:
        lo, hi = (float(v) for v in text.split(","))
    except ValueError:
        raise DataError(f"--severity-range '{text}': expected MIN,MAX") from None
    return (lo, hi)


def make_preprocessing(args, config: Dict) -> Dict:
    pre = dict(preprocess.DEFAULT_PREPROCESSING, autocrop=bool(args.autocrop),
               resize_short_side=config["resize_short_side"], center_crop=args.input_size)
    if getattr(args, "robust_preprocessing", False):
        pre.update(preprocess.ROBUST_PREPROCESSING)
    if args.preprocessing:
        try:
            extra = json.loads(args.preprocessing)
        except json.JSONDecodeError as exc:
            raise DataError(f"--preprocessing is not valid JSON ({exc})") from exc
        if not isinstance(extra, dict):
            raise DataError("--preprocessing must be a JSON object")
        pre.update(extra)
    return pre


def run(args) -> int:
    if args.threads:
        torch.set_num_threads(args.threads)
    os.makedirs(args.out, exist_ok=True)
    last_path = os.path.join(args.out, "checkpoint_last.pt")
    log_path = os.path.join(args.out, "train_log.jsonl")
    config = _config_of(args)
    command_line = "pxs-model " + " ".join(shlex.quote(a) for a in getattr(args, "argv", sys.argv[1:]))

    first_command_line = command_line  # what checkpoints record: the run's original command
    resume_state = None
    if args.resume:
        if not os.path.isfile(last_path):
            raise DataError(f"--resume: no checkpoint at {last_path}")
        resume_state = torch.load(last_path, map_location="cpu")
        changed = {k: (resume_state["config"].get(k), v) for k, v in config.items()
                   if k not in ("epochs", "finetune_epochs") and resume_state["config"].get(k) != v}
        if changed:
            raise DataError(f"--resume: options differ from the interrupted run: {changed}")
        first_command_line = resume_state.get("command_line", command_line)
        command_line = (resume_state.get("command_line", "?") + "\n# interrupted, then resumed with:\n"
                        + command_line)
    elif os.path.isfile(last_path) and not args.overwrite:
        raise DataError(f"{last_path} exists: add --resume to continue that run, or --overwrite")
    elif os.path.isfile(log_path):
        os.remove(log_path)  # --overwrite: a fresh log

    package.parse_finding(getattr(args, "finding", ""))  # a bad --finding fails now, not after training
    random.seed(args.seed)
    np.random.seed(args.seed)
    torch.manual_seed(args.seed)

    preprocessing = make_preprocessing(args, config)
    records = load_records(args)
    cache = ImageCache(records, preprocessing)
    records = cache.records
    if args.split_file:
        split = read_split_file(args.split_file, records)
    else:
        split = split_by_patient(records, args.test_fraction, args.val_fraction, args.seed)
    check_split(records, split)
    if resume_state is not None and resume_state["split"] != split:
        raise DataError("--resume: the images or labels changed since the interrupted run "
                        "(the patient split differs)")
    part = {name: [i for i, r in enumerate(records) if split[r.image_key] == name]
            for name in ("train", "val", "test")}
    train_normal = [i for i in part["train"] if records[i].abnormal == 0]
    train_abnormal = [i for i in part["train"] if records[i].abnormal == 1]
    if not train_normal or not train_abnormal:
        raise DataError("training part needs at least one normal and one abnormal image "
                        f"(has {len(train_normal)} normal, {len(train_abnormal)} abnormal)")
    anchor_idx = choose_anchors(records, train_normal, args.anchor_count)
    severity = {i: records[i].severity for i in part["train"] if records[i].severity is not None}
    design = args.design
    finetune_epochs = args.finetune_epochs if (design == "contrastive" and len(severity) >= 2) else 0
    _write_split(args, records, split)

    device = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    net = backbones.build_backbone(args.backbone, args.embedding_dim).to(device)
    trainable = CentroidModel(net, args.embedding_dim).to(device) if design == "centroid" else net
    optimizer = torch.optim.AdamW(trainable.parameters(), lr=args.lr, weight_decay=args.weight_decay)
    total_epochs = args.epochs + finetune_epochs
    scheduler_steps = max(total_epochs, 1)
    history: List[Dict] = []
    best = {"val_auc": -1.0, "selection": -2.0, "epoch": 0, "state": None}
    start_epoch = 0
    if resume_state is not None:
        trainable.load_state_dict(resume_state["model"])
        optimizer.load_state_dict(resume_state["optimizer"])
        start_epoch = resume_state["epoch"]
        history = resume_state["history"]
        best = resume_state["best"]
        random.setstate(resume_state["rng_python"])
        np.random.set_state(resume_state["rng_numpy"])
        torch.set_rng_state(resume_state["rng_torch"])
        print(f"resuming after epoch {start_epoch} of {total_epochs}", file=sys.stderr)

    # GroupNorm has no bf16 CPU kernel under autocast here: such backbones train in float32.
    use_bf16 = (device.type == "cpu" and args.bf16 != "off"
                and (args.bf16 == "on" or bf16_supported())
                and not any(isinstance(m, nn.GroupNorm) for m in net.modules()))
    augment = Augmenter(preprocessing, args.augment)
    print(f"data: {len(records)} images; train {len(part['train'])} "
          f"({len(train_normal)} normal, {len(severity)} with severity), val {len(part['val'])}, "
          f"test {len(part['test'])}; design {design}, backbone {args.backbone} on {device}"
          f"{' (bf16 autocast)' if use_bf16 else ''}, input {args.input_size}px; "
          + (f"{args.epochs} contrastive + {finetune_epochs} severity epochs" if design == "contrastive"
             else f"{args.epochs} epochs"), file=sys.stderr)
    started = time.monotonic() - (history[-1]["elapsed_s"] if history else 0.0)
    target_of = torch.tensor([(records[i].severity or 0.0) * args.distance_per_point
                              for i in range(len(records))], dtype=torch.float32)
    scored_of = torch.tensor([records[i].severity is not None or records[i].abnormal == 0
                              for i in range(len(records))], dtype=torch.bool)
    abnormal_of = torch.tensor([records[i].abnormal == 1 for i in range(len(records))],
                               dtype=torch.bool)
    for epoch in range(start_epoch, total_epochs):
        if design == "contrastive":
            stage = "contrastive" if epoch < args.epochs else "severity"
        else:
            stage = design
        lr = args.lr * 0.5 * (1 + math.cos(math.pi * epoch / scheduler_steps))  # cosine decay
        for group in optimizer.param_groups:
            group["lr"] = lr
        rng = random.Random(args.seed * 1000 + epoch)
        if stage == "contrastive":
            pairs = sample_contrastive_pairs(train_normal, train_abnormal, args.pairs_per_epoch, rng)
            batches = [pairs[b:b + args.batch_size] for b in range(0, len(pairs), args.batch_size)]
        elif stage == "severity":
            pairs = sample_severity_pairs(sorted(severity), severity, args.pairs_per_epoch, rng)
            batches = [pairs[b:b + args.batch_size] for b in range(0, len(pairs), args.batch_size)]
        else:
            batches = severity_batches(part["train"], records, args.batch_size, rng,
                                       args.normal_weight)
        trainable.train()
        progress = Progress(f"epoch {epoch + 1}/{total_epochs} {stage}", len(batches))
        losses = []
        for b, chunk in enumerate(batches):
            if len(chunk) < 2:  # BatchNorm needs more than one sample
                continue
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=use_bf16):
                if stage in ("contrastive", "severity"):
                    x0 = torch.stack([augment(cache.pixels[i]) for i, _, _ in chunk])
                    x1 = torch.stack([augment(cache.pixels[j]) for _, j, _ in chunk])
                    target = torch.tensor([t for _, _, t in chunk], dtype=torch.float32, device=device)
                    out = net(torch.cat([x0, x1]).to(device)).float()
                    out0, out1 = out[:len(chunk)], out[len(chunk):]
                    loss = (contrastive_loss(out0, out1, target) if stage == "contrastive"
                            else severity_loss(out0, out1, target))
                else:
                    x = torch.stack([augment(cache.pixels[i]) for i in chunk]).to(device)
                    z = net(x).float()
                    idx = torch.tensor(chunk)
                    t, sc, ab = (target_of[idx].to(device), scored_of[idx].to(device),
                                 abnormal_of[idx].to(device))
                    if stage == "siamese":
                        loss = siamese_batch_loss(z, t, sc, ab, args.abnormal_margin,
                                                  args.label_weight)
                    else:
                        loss = centroid_batch_loss(z, trainable.centre.float(), t, sc, ab,
                                                   args.abnormal_margin, args.label_weight,
                                                   args.change_weight)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            losses.append(float(loss))
            progress.update(b + 1, f"loss {np.mean(losses):.4f}")
        progress.close()
        eval_idx = part["val"] if part["val"] else part["train"]
        val = validation_metrics(net, cache, anchor_idx, eval_idx)
        entry = {"epoch": epoch + 1, "stage": stage, "lr": lr,
                 "loss": float(np.mean(losses)) if losses else float("nan"),
                 "val_auc": val["val_auc"], "val_spearman": val["val_spearman"],
                 "elapsed_s": round(time.monotonic() - started, 1)}
        history.append(entry)
        with open(log_path, "a", encoding="utf-8") as handle:
            handle.write(json.dumps(entry) + "\n")
        print(f"epoch {epoch + 1}: {stage} loss {entry['loss']:.4f}, validation PXS AUC "
              f"{_f(val['val_auc'])}, Spearman vs severity {_f(val['val_spearman'])}",
              file=sys.stderr)
        # Model selection on the validation part: Spearman vs severity when there are
        # scores, else the AUC. The published severity stage optimises a different target,
        # so its last epoch is kept.
        if stage == "severity" or val["selection"] >= best.get("selection", -2.0) or best["state"] is None:
            best = {"val_auc": val["val_auc"] if val["val_auc"] is not None else -1.0,
                    "val_spearman": val["val_spearman"], "selection": val["selection"],
                    "epoch": epoch + 1,
                    "state": {k: v.detach().clone() for k, v in net.state_dict().items()}}
        _save(last_path, {
            "format": package.CHECKPOINT_FORMAT, "backbone": args.backbone,
            "embedding_dim": args.embedding_dim, "preprocessing": preprocessing,
            "config": config, "command_line": first_command_line, "split": split,
            "epoch": epoch + 1, "model": trainable.state_dict(), "optimizer": optimizer.state_dict(),
            "history": history, "best": best, "rng_python": random.getstate(),
            "rng_numpy": np.random.get_state(), "rng_torch": torch.get_rng_state(),
        })
        if args.stop_after_epochs and epoch + 1 - start_epoch >= args.stop_after_epochs:
            print(f"stopping after {args.stop_after_epochs} epoch(s) as asked; continue with "
                  "--resume", file=sys.stderr)
            return 0

    if best["state"] is not None:
        net.load_state_dict(best["state"])
    net.eval().cpu()
    best_path = os.path.join(args.out, "checkpoint_best.pt")
    _save(best_path, {"format": package.CHECKPOINT_FORMAT, "backbone": args.backbone,
                      "embedding_dim": args.embedding_dim, "preprocessing": preprocessing,
                      "model": net.state_dict(), "epoch": best["epoch"], "config": config})
    return finish(args, net, cache, part, anchor_idx, preprocessing, config, history, best,
                  command_line)


def _f(value) -> str:
    return "n/a" if value is None else f"{value:.3f}"


def choose_anchors(records: Sequence[Record], train_normal: List[int], count: int) -> List[int]:
    """Up to `count` normal training images, taken in turn from each labels file (e.g. RALO
    exams scored 0 and cxr14 "No Finding"), so every source is represented."""
    by_source: Dict[str, List[int]] = collections.defaultdict(list)
    for i in train_normal:
        by_source[records[i].source].append(i)
    queues = [by_source[s] for s in sorted(by_source)]
    chosen: List[int] = []
    k = 0
    while len(chosen) < count and any(k < len(q) for q in queues):
        for q in queues:
            if k < len(q) and len(chosen) < count:
                chosen.append(q[k])
        k += 1
    return chosen


def fit_severity_calibration(args, records: Sequence[Record], train_idx: List[int],
                             train_scores: Sequence[float]) -> Tuple[Optional[Dict], Optional[Dict], Optional[Dict]]:
    """Calibration (isotonic, training part only) and the rater-noise threshold; returns
    (calibration, trend, noise) or Nones without scores."""
    pairs = [(s, records[i].severity) for i, s in zip(train_idx, train_scores)
             if records[i].severity is not None]
    if len(pairs) < 10:
        return None, None, None
    column = records[train_idx[0]].severity_column or "severity"
    findings = _findings(args)
    if findings:
        # Finding-set mode: the scale is the finding score 0..sum of the weights; there are
        # no raters and no serial exams to measure a detectable change, so the stable delta
        # is one weight point by convention (said so in the model card), and the bands cut
        # the scale where 1 and 2 weight points of findings (e.g. effusion, edema) begin.
        hi = float(sum(findings.values()))
        points = calibration.fit_isotonic([p for p, _ in pairs], [v for _, v in pairs],
                                          lo=0.0, hi=hi)
        scale = args.scale_name or f"cxr14 finding score ({labels.findings_text(findings)})"
        calib = calibration.make_calibration(points, scale=scale, lo=0.0, hi=hi)
        cuts = ((0.5, "normal/minimal"), (1.5, "mild"), (2.5, "moderate"))
        return calib, calibration.trend_settings(points, 1.0, cuts=cuts), None
    known = labels.KNOWN_SEVERITY_COLUMNS.get(column)
    lo, hi = _range(args) or known or (min(v for _, v in pairs), max(v for _, v in pairs))
    points = calibration.fit_isotonic([p for p, _ in pairs], [v for _, v in pairs], lo=lo, hi=hi)
    scale = args.scale_name or SCALE_NAMES.get(column, column)
    calib = calibration.make_calibration(points, scale=scale, lo=lo, hi=hi)
    noise = None
    try:
        noise = calibration.rater_noise([v for _, v in pairs], p_diff_ge2=args.rater_ge2_fraction)
        stable_cal = noise["stable_delta"]
    except DataError as exc:
        warn(f"note: rater noise not estimated ({exc}); stable delta 1 point")
        stable_cal = 1.0
    trend = calibration.trend_settings(points, stable_cal)
    return calib, trend, noise


def finish(args, net, cache: ImageCache, part, anchor_idx, preprocessing, config, history, best,
           command_line) -> int:
    records = cache.records
    name = args.name or os.path.basename(os.path.normpath(args.out))
    # Calibration and trend from the TRAINING part only; heuristic bands without scores.
    train_scores = _pxs_scores(net, cache, anchor_idx, part["train"])
    calib, trend, noise = fit_severity_calibration(args, records, part["train"], train_scores)
    if trend is None:
        ref_idx = part["val"] if part["val"] else part["train"]
        _, ref_scores = _pxs_auc(net, cache, anchor_idx, ref_idx)
        trend = derive_trend([records[i].abnormal for i in ref_idx], ref_scores)
    training_data = args.training_data or (
        f"{len(part['train'])} images ({len(anchor_idx)} normal anchors) from "
        + ", ".join(lbl for _i, lbl in _pairs(args)))
    meta = package.make_metadata(
        name=name, version=args.version, embedding_dim=args.embedding_dim,
        anchor_count=len(anchor_idx), preprocessing=preprocessing, training_data=training_data,
        intended_use=args.intended_use, not_for_clinical_use=True, trend=trend,
        calibration=calib, finding=package.parse_finding(getattr(args, "finding", "")))
    if noise is not None:
        meta["rater_noise"] = {k: (round(v, 4) if isinstance(v, float) else v)
                               for k, v in noise.items()}
    pkg_path = args.package or os.path.join(args.out, f"{name}.pt")
    anchor_batch = preprocess.preprocess_files([records[i].path for i in anchor_idx], preprocessing)
    pkg_dir = os.path.dirname(os.path.abspath(pkg_path))
    fd, tmp_pkg = tempfile.mkstemp(prefix=".pxs-", suffix=".pt", dir=pkg_dir)
    os.close(fd)
    try:
        summary = package.write_package(net, anchor_batch, meta, tmp_pkg)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp_pkg, 0o666 & ~umask)  # mkstemp makes 0600; a package is a normal file
        os.replace(tmp_pkg, pkg_path)
    finally:
        if os.path.exists(tmp_pkg):
            os.remove(tmp_pkg)
    print(f"package written: {pkg_path} ({os.path.getsize(pkg_path) / 1e6:.1f} MB, "
          f"{summary['anchor_count']} anchors, TorchScript vs eager max diff "
          f"{summary['max_abs_difference']:.2e})", file=sys.stderr)

    test_result = None
    plot_path = os.path.join(args.out, "test_evaluation.png")
    if part["test"] and getattr(args, "skip_test", False):
        print(f"test part ({len(part['test'])} images) not evaluated (--skip-test)", file=sys.stderr)
    elif part["test"]:
        module, meta = package.load_package(pkg_path)
        test_records = [records[i] for i in part["test"]]
        scores = package.score_files(module, meta, [r.path for r in test_records])
        test_result = evaluate.compute_metrics(test_records, scores, meta, seed=args.seed)
        evaluate.plot(test_records, scores, test_result, plot_path, f"{name}: held-out test part")
        if test_result.get("severity"):
            evaluate.plot_severity(test_records, scores, test_result, meta, plot_path,
                                   f"{name}: held-out test part")
        _write_text(os.path.join(args.out, "test_metrics.json"), json.dumps(test_result, indent=2))
        print(evaluate.format_report(test_result, f"{name} (held-out test part)"), file=sys.stderr)
    card_path = args.model_card or os.path.join(args.out, "MODEL_CARD.md")
    _write_text(card_path, modelcard.render(
        name=name, meta=meta, config=config, command_line=command_line, records=records,
        part=part, history=history, best=best, test_result=test_result,
        package_path=pkg_path, package_bytes=os.path.getsize(pkg_path),
        plot_path=plot_path if test_result else None))
    print(f"model card written: {card_path}", file=sys.stderr)
    return 0


def _write_text(path: str, text: str) -> None:
    """Temp file + rename: never a half-written output."""
    tmp = path + ".tmp"
    with open(tmp, "w", encoding="utf-8") as handle:
        handle.write(text)
    os.replace(tmp, path)


def derive_trend(labels: Sequence[int], scores: Sequence[float]) -> Dict:
    """Heuristic bands in this model's distance units: 'normal/minimal' up to the 90th
    percentile of normal PXS, then the 50th / 85th percentiles of abnormal PXS; 'stable'
    when a change is below half the spread (SD) of normal PXS."""
    normal = np.asarray([s for y, s in zip(labels, scores) if y == 0], dtype=float)
    abnormal = np.asarray([s for y, s in zip(labels, scores) if y == 1], dtype=float)
    if len(normal) < 2 or len(abnormal) < 2:
        return json.loads(json.dumps(package.DEFAULT_TREND))
    b1 = float(np.quantile(normal, 0.9))
    b2 = max(float(np.quantile(abnormal, 0.5)), b1 * 1.05)
    b3 = max(float(np.quantile(abnormal, 0.85)), b2 * 1.05)
    return {"stable_delta": round(max(float(normal.std()) * 0.5, 1e-3), 4),
            "bands": [{"upper": round(b1, 4), "label": "normal/minimal"},
                      {"upper": round(b2, 4), "label": "mild"},
                      {"upper": round(b3, 4), "label": "moderate"},
                      {"upper": None, "label": "severe"}]}


def _write_split(args, records: Sequence[Record], split: Dict[str, str]) -> None:
    """split.csv (every image's part) and test_labels.csv (the held-out rows in the input's
    own format, ready for `pxs-model evaluate --labels`; one file per labels file when
    several were combined: test_labels.csv for the first, test_labels-2.csv ...)."""
    rows = [["image", "path", "patient_id", "abnormal", "severity", "source", "part"]]
    for rec in records:
        rows.append([rec.image, rec.path, rec.patient_id, rec.abnormal,
                     "" if rec.severity is None else rec.severity, rec.source, split[rec.image_key]])
    _write_csv(os.path.join(args.out, "split.csv"), rows)
    sources = []
    for rec in records:
        if rec.source not in sources:
            sources.append(rec.source)
    for k, source in enumerate(sources):
        recs = [r for r in records if r.source == source]
        test_rows = [r.raw for r in recs if split[r.image_key] == "test"]
        if test_rows:
            name = "test_labels.csv" if k == 0 else f"test_labels-{k + 1}.csv"
            fields = list(recs[0].raw.keys())
            _write_csv(os.path.join(args.out, name), [fields] + [[row[f] for f in fields]
                                                                 for row in test_rows])


def _write_csv(path: str, rows) -> None:
    tmp = path + ".tmp"
    with open(tmp, "w", newline="", encoding="utf-8") as handle:
        csv.writer(handle).writerows(rows)
    os.replace(tmp, path)
