"""`pxs-model train`: the published two-step PXS training on a site's own images.

1. Siamese pre-training with a contrastive loss (margin 2.0) on pairs labelled "same" or
   "different" by the weak normal/abnormal label (half of the pairs differ).
2. When severity labels are given: fine-tuning with the MSE between the Euclidean distance
   of a pair's embeddings and the absolute difference of their severities.

Everything the run needs to continue is in OUT/checkpoint_last.pt (weights, optimiser, epoch,
random states, history), written after every epoch; `--resume` continues from it.
"""

from __future__ import annotations

import csv
import json
import math
import os
import random
import shlex
import sys
import time
from typing import Dict, List, Sequence, Tuple

import numpy as np
import torch
import torch.nn.functional as F
from torchvision import transforms

from . import backbones, evaluate, metrics, modelcard, package, preprocess
from .errors import DataError, warn
from .labels import Record, read_labels
from .progress import Progress

CONTRASTIVE_MARGIN = 2.0


def contrastive_loss(out0: torch.Tensor, out1: torch.Tensor, different: torch.Tensor,
                     margin: float = CONTRASTIVE_MARGIN) -> torch.Tensor:
    """Hadsell-Chopra-LeCun: pull same pairs together, push different pairs to `margin`."""
    distance = F.pairwise_distance(out0, out1)
    return torch.mean((1 - different) * distance.pow(2)
                      + different * torch.clamp(margin - distance, min=0.0).pow(2))


def severity_loss(out0: torch.Tensor, out1: torch.Tensor, severity_gap: torch.Tensor) -> torch.Tensor:
    return F.mse_loss(F.pairwise_distance(out0, out1), severity_gap)


# ----------------------------------------------------------------------------- data


def split_by_patient(records: Sequence[Record], test_fraction: float, val_fraction: float,
                     seed: int) -> Dict[str, str]:
    """Image -> 'train' / 'val' / 'test'. All images of a patient go to one part; patients
    with any abnormal image and the others are split separately so that each part keeps the
    normal/abnormal mix (the normals are the scarce class)."""
    patients: Dict[str, int] = {}
    for rec in records:
        patients[rec.patient_id] = max(patients.get(rec.patient_id, 0), rec.abnormal or 0)
    rng = random.Random(seed)
    part_of: Dict[str, str] = {}
    for group in (0, 1):
        ids = sorted(p for p, a in patients.items() if a == group)
        rng.shuffle(ids)
        n_test = int(round(len(ids) * test_fraction))
        n_val = int(round(len(ids) * val_fraction))
        if len(ids) >= 3:  # keep at least one training patient per class
            n_test = min(n_test, len(ids) - 1 - n_val)
        for i, pid in enumerate(ids):
            part_of[pid] = "test" if i < n_test else "val" if i < n_test + n_val else "train"
    return {rec.image: part_of[rec.patient_id] for rec in records}


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
                image8 = preprocess.to_uint8(preprocess.decode_image(rec.path), rec.path)
            except DataError as exc:
                raise DataError(f"labels row {rec.row} ({rec.image}): {exc}") from exc
            digest = preprocess.pixel_hash_of(image8)
            if digest in seen:
                log(f"warning: row {rec.row} ({rec.image}) is the same image as row "
                    f"{seen[digest].row} ({seen[digest].image}); dropped")
                progress.update(i)
                continue
            seen[digest] = rec
            image = preprocess.equalize_and_crop(image8, preprocessing)
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
    brightness/contrast jitter; then the package normalisation."""

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
            x = ((x - 0.5) * contrast + 0.5 + brightness).clamp(0, 1)
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


# ----------------------------------------------------------------------------- training


def _pxs_auc(net, cache: ImageCache, anchor_idx: List[int], eval_idx: List[int]) -> Tuple[float, List[float]]:
    net.eval()
    anchors = package.embed(net, cache.eval_batch(anchor_idx))
    emb = package.embed(net, cache.eval_batch(eval_idx))
    scores = package.median_distance(emb, anchors)
    labels = [cache.records[i].abnormal for i in eval_idx]
    return metrics.roc_auc(labels, scores), scores


def _save(path: str, state: Dict) -> None:
    """Atomic write: an interruption during the save leaves the previous checkpoint intact."""
    tmp = path + ".tmp"
    torch.save(state, tmp)
    os.replace(tmp, path)


def _config_of(args) -> Dict:
    resize = args.resize or int(round(args.input_size * 1.05))
    return {
        "backbone": args.backbone, "embedding_dim": args.embedding_dim,
        "input_size": args.input_size, "resize_short_side": resize,
        "autocrop": args.autocrop, "epochs": args.epochs, "finetune_epochs": args.finetune_epochs,
        "pairs_per_epoch": args.pairs_per_epoch, "batch_size": args.batch_size, "lr": args.lr,
        "weight_decay": args.weight_decay, "augment": args.augment, "seed": args.seed,
        "test_fraction": args.test_fraction, "val_fraction": args.val_fraction,
        "anchor_count": args.anchor_count,
    }


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

    random.seed(args.seed)
    np.random.seed(args.seed)
    torch.manual_seed(args.seed)

    preprocessing = dict(preprocess.DEFAULT_PREPROCESSING, autocrop=bool(args.autocrop),
                         resize_short_side=config["resize_short_side"], center_crop=args.input_size)
    records = read_labels(args.labels, args.images, require_label=True)
    cache = ImageCache(records, preprocessing)
    records = cache.records
    split = split_by_patient(records, args.test_fraction, args.val_fraction, args.seed)
    if resume_state is not None and resume_state["split"] != split:
        raise DataError("--resume: the images or labels changed since the interrupted run "
                        "(the patient split differs)")
    part = {name: [i for i, r in enumerate(records) if split[r.image] == name]
            for name in ("train", "val", "test")}
    train_normal = [i for i in part["train"] if records[i].abnormal == 0]
    train_abnormal = [i for i in part["train"] if records[i].abnormal == 1]
    if not train_normal or not train_abnormal:
        raise DataError("training part needs at least one normal and one abnormal image "
                        f"(has {len(train_normal)} normal, {len(train_abnormal)} abnormal)")
    anchor_idx = train_normal[:args.anchor_count]
    severity = {i: records[i].severity for i in part["train"] if records[i].severity is not None}
    finetune_epochs = args.finetune_epochs if len(severity) >= 2 else 0
    _write_split(args, records, split)

    device = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    net = backbones.build_backbone(args.backbone, args.embedding_dim).to(device)
    optimizer = torch.optim.AdamW(net.parameters(), lr=args.lr, weight_decay=args.weight_decay)
    total_epochs = args.epochs + finetune_epochs
    scheduler_steps = max(total_epochs, 1)
    history: List[Dict] = []
    best = {"val_auc": -1.0, "epoch": 0, "state": None}
    start_epoch = 0
    if resume_state is not None:
        net.load_state_dict(resume_state["model"])
        optimizer.load_state_dict(resume_state["optimizer"])
        start_epoch = resume_state["epoch"]
        history = resume_state["history"]
        best = resume_state["best"]
        random.setstate(resume_state["rng_python"])
        np.random.set_state(resume_state["rng_numpy"])
        torch.set_rng_state(resume_state["rng_torch"])
        print(f"resuming after epoch {start_epoch} of {total_epochs}", file=sys.stderr)

    augment = Augmenter(preprocessing, args.augment)
    print(f"data: {len(records)} images; train {len(part['train'])} "
          f"({len(train_normal)} normal), val {len(part['val'])}, test {len(part['test'])}; "
          f"backbone {args.backbone} on {device}, input {args.input_size}px; "
          f"{args.epochs} contrastive + {finetune_epochs} severity epochs", file=sys.stderr)
    started = time.monotonic()
    for epoch in range(start_epoch, total_epochs):
        stage = "contrastive" if epoch < args.epochs else "severity"
        lr = args.lr * 0.5 * (1 + math.cos(math.pi * epoch / scheduler_steps))  # cosine decay
        for group in optimizer.param_groups:
            group["lr"] = lr
        rng = random.Random(args.seed * 1000 + epoch)
        if stage == "contrastive":
            pairs = sample_contrastive_pairs(train_normal, train_abnormal, args.pairs_per_epoch, rng)
        else:
            pairs = sample_severity_pairs(sorted(severity), severity, args.pairs_per_epoch, rng)
        net.train()
        n_batches = math.ceil(len(pairs) / args.batch_size)
        progress = Progress(f"epoch {epoch + 1}/{total_epochs} {stage}", n_batches)
        losses = []
        for b in range(n_batches):
            chunk = pairs[b * args.batch_size:(b + 1) * args.batch_size]
            if len(chunk) < 2:  # BatchNorm needs more than one sample
                continue
            x0 = torch.stack([augment(cache.pixels[i]) for i, _, _ in chunk])
            x1 = torch.stack([augment(cache.pixels[j]) for _, j, _ in chunk])
            target = torch.tensor([t for _, _, t in chunk], dtype=torch.float32, device=device)
            out = net(torch.cat([x0, x1]).to(device))
            out0, out1 = out[:len(chunk)], out[len(chunk):]
            loss = (contrastive_loss(out0, out1, target) if stage == "contrastive"
                    else severity_loss(out0, out1, target))
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            losses.append(float(loss))
            progress.update(b + 1, f"loss {np.mean(losses):.4f}")
        progress.close()
        eval_idx = part["val"] if part["val"] else part["train"]
        val_auc, _ = _pxs_auc(net, cache, anchor_idx, eval_idx)
        entry = {"epoch": epoch + 1, "stage": stage, "lr": lr, "loss": float(np.mean(losses)),
                 "val_auc": None if math.isnan(val_auc) else val_auc,
                 "elapsed_s": round(time.monotonic() - started, 1)}
        history.append(entry)
        with open(log_path, "a", encoding="utf-8") as handle:
            handle.write(json.dumps(entry) + "\n")
        print(f"epoch {epoch + 1}: {stage} loss {entry['loss']:.4f}, validation PXS AUC "
              f"{'n/a' if entry['val_auc'] is None else f'{val_auc:.3f}'}", file=sys.stderr)
        score = -1.0 if math.isnan(val_auc) else val_auc
        # Model selection: best validation AUC during contrastive training; the severity
        # stage optimises a different target, so its last epoch is kept.
        if stage == "severity" or score >= best["val_auc"] or best["state"] is None:
            best = {"val_auc": score, "epoch": epoch + 1,
                    "state": {k: v.detach().clone() for k, v in net.state_dict().items()}}
        _save(last_path, {
            "format": package.CHECKPOINT_FORMAT, "backbone": args.backbone,
            "embedding_dim": args.embedding_dim, "preprocessing": preprocessing,
            "config": config, "command_line": first_command_line, "split": split,
            "epoch": epoch + 1, "model": net.state_dict(), "optimizer": optimizer.state_dict(),
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


def finish(args, net, cache: ImageCache, part, anchor_idx, preprocessing, config, history, best,
           command_line) -> int:
    records = cache.records
    # Trend bands in this model's own distance units, from the validation (or training) PXS.
    ref_idx = part["val"] if part["val"] else part["train"]
    _, ref_scores = _pxs_auc(net, cache, anchor_idx, ref_idx)
    trend = derive_trend([records[i].abnormal for i in ref_idx], ref_scores)
    name = args.name or os.path.basename(os.path.normpath(args.out))
    training_data = args.training_data or (
        f"{len(part['train'])} images ({len(anchor_idx)} normal anchors) from {args.labels}")
    meta = package.make_metadata(
        name=name, version=args.version, embedding_dim=args.embedding_dim,
        anchor_count=len(anchor_idx), preprocessing=preprocessing, training_data=training_data,
        intended_use=args.intended_use, not_for_clinical_use=True, trend=trend)
    pkg_path = args.package or os.path.join(args.out, f"{name}.pt")
    anchor_batch = preprocess.preprocess_files([records[i].path for i in anchor_idx], preprocessing)
    summary = package.write_package(net, anchor_batch, meta, pkg_path)
    print(f"package written: {pkg_path} ({os.path.getsize(pkg_path) / 1e6:.1f} MB, "
          f"{summary['anchor_count']} anchors, TorchScript vs eager max diff "
          f"{summary['max_abs_difference']:.2e})", file=sys.stderr)

    test_result = None
    if part["test"]:
        module, meta = package.load_package(pkg_path)
        test_records = [records[i] for i in part["test"]]
        scores = package.score_files(module, meta, [r.path for r in test_records])
        test_result = evaluate.compute_metrics(test_records, scores, trend["stable_delta"],
                                               seed=args.seed)
        plot_path = os.path.join(args.out, "test_evaluation.png")
        evaluate.plot(test_records, scores, test_result, plot_path, f"{name}: held-out test part")
        with open(os.path.join(args.out, "test_metrics.json"), "w", encoding="utf-8") as handle:
            json.dump(test_result, handle, indent=2)
        print(evaluate.format_report(test_result, f"{name} (held-out test part)"), file=sys.stderr)
    card_path = args.model_card or os.path.join(args.out, "MODEL_CARD.md")
    with open(card_path, "w", encoding="utf-8") as handle:
        handle.write(modelcard.render(
            name=name, meta=meta, config=config, command_line=command_line, records=records,
            part=part, history=history, best=best, test_result=test_result,
            package_path=pkg_path, package_bytes=os.path.getsize(pkg_path),
            plot_path=os.path.join(args.out, "test_evaluation.png") if test_result else None))
    print(f"model card written: {card_path}", file=sys.stderr)
    return 0


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
    own format, ready for `pxs-model evaluate --labels`)."""
    with open(os.path.join(args.out, "split.csv"), "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["image", "patient_id", "abnormal", "part"])
        for rec in records:
            writer.writerow([rec.image, rec.patient_id, rec.abnormal, split[rec.image]])
    test_rows = [rec.raw for rec in records if split[rec.image] == "test"]
    if test_rows:
        with open(os.path.join(args.out, "test_labels.csv"), "w", newline="", encoding="utf-8") as handle:
            writer = csv.DictWriter(handle, fieldnames=list(records[0].raw.keys()))
            writer.writeheader()
            writer.writerows(test_rows)
