"""`pxs-model export`: package a published PXS checkpoint or one of our trainer's checkpoints."""

from __future__ import annotations

import json
import os
import sys
from typing import Dict, Tuple

import torch
from torch import nn

from . import backbones, package, preprocess
from .errors import DataError

PUBLISHED_PXS_PREPROCESSING = dict(preprocess.DEFAULT_PREPROCESSING)  # 336 -> 320, no mean/std


def _state_dict_of(obj) -> Dict[str, torch.Tensor]:
    if isinstance(obj, nn.Module):
        return obj.state_dict()
    if isinstance(obj, dict):
        for key in ("state_dict", "model_state_dict", "model"):
            if key in obj and isinstance(obj[key], dict):
                return obj[key]
        return obj
    raise DataError(f"checkpoint holds a {type(obj).__name__}, expected a state dict")


def load_checkpoint(path: str, kind: str = "auto") -> Tuple[nn.Module, Dict, str]:
    """Returns (network in eval mode, preprocessing, description)."""
    if not os.path.isfile(path):
        raise DataError(f"{path}: checkpoint not found")
    try:
        obj = torch.load(path, map_location="cpu")
    except Exception as exc:
        raise DataError(f"{path}: not a PyTorch checkpoint ({exc})") from exc
    ours = isinstance(obj, dict) and obj.get("format") == package.CHECKPOINT_FORMAT
    if kind == "auto":
        kind = "pxsmodel" if ours else "pxs"
    if kind == "pxsmodel":
        if not ours:
            raise DataError(f"{path}: not a checkpoint written by pxs-model train")
        net = backbones.build_backbone(obj["backbone"], int(obj["embedding_dim"]))
        net.load_state_dict(obj["model"])
        return net.eval(), dict(obj["preprocessing"]), f"pxs-model train checkpoint ({obj['backbone']})"
    state = backbones.normalise_pxs_state_dict(_state_dict_of(obj))
    if not state:
        raise DataError(f"{path}: no 'cnn0.*' keys: not a SiameseNetwork_DenseNet121 checkpoint")
    net = backbones.SiameseDenseNet121().cnn0
    try:
        net.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        raise DataError(f"{path}: state dict does not fit torchvision densenet121: {exc}") from exc
    return net.eval(), dict(PUBLISHED_PXS_PREPROCESSING), "published PXS SiameseNetwork_DenseNet121"


def run(args) -> int:
    if args.threads:
        torch.set_num_threads(args.threads)
    net, preprocessing, description = load_checkpoint(args.checkpoint, args.kind)
    if args.input_size:
        preprocessing["center_crop"] = args.input_size
        preprocessing["resize_short_side"] = args.resize or int(round(args.input_size * 1.05))
    elif args.resize:
        preprocessing["resize_short_side"] = args.resize
    if args.autocrop is not None:
        preprocessing["autocrop"] = args.autocrop
    paths = preprocess.list_images(args.anchors)
    if args.max_anchors:
        paths = paths[:args.max_anchors]
    log = lambda msg: print(msg, file=sys.stderr)  # noqa: E731
    anchor_batch, used = package.load_anchor_images(paths, preprocessing, log=log)
    with torch.no_grad():
        dim = int(net(anchor_batch[:1]).shape[1])
    meta = package.make_metadata(
        name=args.name, version=args.version, embedding_dim=dim, anchor_count=len(used),
        preprocessing=preprocessing, training_data=args.training_data or description,
        intended_use=args.intended_use, not_for_clinical_use=not args.clinical_use,
        calibration=json.loads(args.calibration) if args.calibration else None,
        trend=json.loads(args.trend) if args.trend else None,
        finding=package.parse_finding(args.finding))
    summary = package.write_package(net, anchor_batch, meta, args.out,
                                    check_batch=anchor_batch[:args.check_images])
    print(f"exported {description}")
    print(f"package:     {args.out} ({os.path.getsize(args.out) / 1e6:.1f} MB)")
    print(f"name:        {meta['name']} {meta['version']}")
    print(f"anchors:     {summary['anchor_count']} of {len(paths)} file(s) in {args.anchors}")
    print(f"embedding:   {summary['embedding_dim']}-d, input {preprocessing['center_crop']}px "
          f"(resize {preprocessing['resize_short_side']}, autocrop {preprocessing['autocrop']})")
    print(f"check:       TorchScript vs eager on {summary['checked_images']} image(s): max |diff| "
          f"{summary['max_abs_difference']:.2e} (tolerance {package.EMBEDDING_TOLERANCE:g})")
    print(f"clinical:    {'NOT for clinical use' if meta['not_for_clinical_use'] else 'clinical use declared by exporter'}")
    return 0
