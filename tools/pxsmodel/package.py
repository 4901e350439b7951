"""Writing and reading model packages (docs/model-package.md) and computing PXS from them."""

from __future__ import annotations

import copy
import json
import statistics
import sys
from typing import Dict, List, Optional, Sequence, Tuple

import torch
from torch import nn

from . import preprocess
from .errors import DataError, warn

PACKAGE_FORMAT = "pxs-model-package"
PACKAGE_FORMAT_VERSION = 1
METADATA_FILE = "metadata.json"
CHECKPOINT_FORMAT = "pxsmodel-checkpoint"

REQUIRED_METADATA_KEYS = (
    "format", "format_version", "name", "version", "embedding_dim", "anchor_count", "input",
    "preprocessing", "training_data", "intended_use", "not_for_clinical_use", "calibration", "trend",
)
REQUIRED_PREPROCESSING_KEYS = ("equalize_histogram", "autocrop", "autocrop_threshold",
                               "resize_short_side", "center_crop", "mean", "std")
# Optional keys (preprocess.OPTIONAL_PREPROCESSING): written when the preprocessing has them.
OPTIONAL_PREPROCESSING_KEYS = tuple(getattr(preprocess, "OPTIONAL_PREPROCESSING", {}))

DEFAULT_TREND = {
    "stable_delta": 1.0,
    "bands": [{"upper": 2.5, "label": "normal/minimal"}, {"upper": 5, "label": "mild"},
              {"upper": 9, "label": "moderate"}, {"upper": None, "label": "severe"}],
}
EMBEDDING_TOLERANCE = 1e-5
# Optional metadata key `finding`: what the score measures, as a coded concept for the SR
# (docs/model-package.md): {"scheme": ..., "value": ..., "meaning": ...}.
FINDING_KEYS = ("scheme", "value", "meaning")


class PackageModule(nn.Module):
    """What the node loads: forward() is the embedding network, `anchors` the cached
    embeddings of the normal anchor images."""

    def __init__(self, net: nn.Module, anchors: torch.Tensor):
        super().__init__()
        self.net = net
        self.register_buffer("anchors", anchors.detach().to(torch.float32).contiguous())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


def make_metadata(*, name: str, version: str, embedding_dim: int, anchor_count: int,
                  preprocessing: Dict, training_data: str, intended_use: str,
                  not_for_clinical_use: bool = True, calibration: Optional[Dict] = None,
                  trend: Optional[Dict] = None, finding: Optional[Dict] = None) -> Dict:
    crop = int(preprocessing["center_crop"])
    meta = {
        "format": PACKAGE_FORMAT,
        "format_version": PACKAGE_FORMAT_VERSION,
        "name": name,
        "version": version,
        "embedding_dim": int(embedding_dim),
        "anchor_count": int(anchor_count),
        "input": {"channels": 3, "height": crop, "width": crop},
        "preprocessing": {k: copy.deepcopy(preprocessing[k])
                          for k in REQUIRED_PREPROCESSING_KEYS + OPTIONAL_PREPROCESSING_KEYS
                          if k in preprocessing},
        "training_data": training_data,
        "intended_use": intended_use,
        "not_for_clinical_use": bool(not_for_clinical_use),
        "calibration": calibration,
        "trend": trend if trend is not None else copy.deepcopy(DEFAULT_TREND),
    }
    if finding is not None:
        meta["finding"] = dict(finding)
    check_metadata(meta)
    return meta


def check_metadata(meta: Dict, where: str = "metadata.json") -> None:
    missing = [k for k in REQUIRED_METADATA_KEYS if k not in meta]
    missing += [f"preprocessing.{k}" for k in REQUIRED_PREPROCESSING_KEYS
                if k not in meta.get("preprocessing", {})]
    if missing:
        raise DataError(f"{where}: missing required key(s): {', '.join(missing)}")
    if meta["format"] != PACKAGE_FORMAT:
        raise DataError(f"{where}: format is '{meta['format']}', expected '{PACKAGE_FORMAT}'")
    if meta.get("finding") is not None:
        check_finding(meta["finding"], f"{where}: key 'finding'")


def check_finding(finding, where: str = "finding") -> None:
    """`finding` must be an object with non-empty strings scheme, value, meaning (a DICOM
    code: coding scheme designator, code value, code meaning)."""
    if not isinstance(finding, dict):
        raise DataError(f"{where} must be an object {{\"scheme\", \"value\", \"meaning\"}}")
    for key in FINDING_KEYS:
        value = finding.get(key)
        if not isinstance(value, str) or not value.strip():
            raise DataError(f"{where}: '{key}' must be a non-empty string (is {value!r})")
    extra = sorted(set(finding) - set(FINDING_KEYS))
    if extra:
        raise DataError(f"{where}: unknown key(s) {', '.join(extra)} (allowed: "
                        f"{', '.join(FINDING_KEYS)})")


def parse_finding(text: str, option: str = "--finding") -> Optional[Dict]:
    """'SCT,19242006,Pulmonary edema' (scheme, value, meaning; the meaning may contain
    commas) -> the metadata object; '' -> None."""
    if not text:
        return None
    parts = [p.strip() for p in text.split(",", 2)]
    if len(parts) != 3:
        raise DataError(f"{option} '{text}': expected SCHEME,VALUE,MEANING "
                        "(e.g. SCT,19242006,Pulmonary edema)")
    finding = dict(zip(FINDING_KEYS, parts))
    check_finding(finding, option)
    return finding


def embed(net: nn.Module, batch: torch.Tensor, batch_size: int = 16) -> torch.Tensor:
    """Embeddings of a preprocessed batch, in chunks, without gradients."""
    outputs = []
    device = module_device(net)
    with torch.no_grad():
        for start in range(0, batch.shape[0], batch_size):
            outputs.append(net(batch[start:start + batch_size].to(device)).cpu())
    return torch.cat(outputs) if outputs else torch.zeros(0)


def module_device(net: nn.Module) -> torch.device:
    """Where the network's weights are (CPU for parameter-free modules)."""
    for tensor in net.parameters():
        return tensor.device
    return torch.device("cpu")


def load_anchor_images(paths: Sequence[str], preprocessing: Dict,
                       log=warn) -> Tuple[torch.Tensor, List[str]]:
    """Preprocesses anchor images, skipping unreadable files and duplicate pictures (each
    with a message); raises DataError when no usable image is left."""
    tensors, used, seen = [], [], {}
    for path in paths:
        try:
            digest = preprocess.pixel_hash(path)
            if digest in seen:
                log(f"warning: anchor {path} is the same image as {seen[digest]}; skipped")
                continue
            tensors.append(preprocess.preprocess_file(path, preprocessing))
        except DataError as exc:
            log(f"warning: anchor skipped: {exc}")
            continue
        seen[digest] = path
        used.append(path)
    if not tensors:
        raise DataError(f"no usable anchor image among {len(paths)} file(s) "
                        "(need at least one readable DICOM or PNG of a normal chest X-ray)")
    return torch.stack(tensors), used


def script_module(module: PackageModule, example: torch.Tensor) -> torch.jit.ScriptModule:
    """torch.jit.script keeps control flow; fall back to tracing for exotic backbones."""
    module.eval()
    try:
        return torch.jit.script(module)
    except Exception as exc:  # pragma: no cover - depends on the backbone
        print(f"note: torch.jit.script failed ({exc.__class__.__name__}); tracing instead",
              file=sys.stderr)
        return torch.jit.trace(module, example)


def write_package(net: nn.Module, anchor_batch: torch.Tensor, metadata: Dict, out_path: str,
                  check_batch: Optional[torch.Tensor] = None) -> Dict:
    """Computes anchor embeddings, scripts the network, saves the package, reloads it and
    checks that TorchScript and eager embeddings agree within EMBEDDING_TOLERANCE.

    Returns a summary dict (max difference, anchor count, embedding size, ...)."""
    net = net.eval().cpu()  # packages are CPU TorchScript; the node moves them if it likes
    anchors = embed(net, anchor_batch)
    if anchors.ndim != 2 or anchors.shape[1] != metadata["embedding_dim"]:
        raise DataError(f"network returns embeddings of shape {tuple(anchors.shape)}, "
                        f"metadata says embedding_dim {metadata['embedding_dim']}")
    if not torch.isfinite(anchors).all():
        raise DataError("anchor embeddings contain NaN/Inf: the checkpoint is broken")
    metadata = dict(metadata, anchor_count=int(anchors.shape[0]))
    check_metadata(metadata)
    module = PackageModule(net, anchors)
    scripted = script_module(module, anchor_batch[:1])
    torch.jit.save(scripted, out_path, _extra_files={METADATA_FILE: json.dumps(metadata, indent=2)})

    # Reload from disk: the check must cover what the node will actually read.
    reloaded, reloaded_meta = load_package(out_path)
    check = check_batch if check_batch is not None else anchor_batch[:4]
    with torch.no_grad():
        eager = net(check)
        scripted_out = reloaded(check)
    max_diff = float((eager - scripted_out).abs().max())
    anchor_diff = float((reloaded.anchors - anchors).abs().max())
    if max_diff > EMBEDDING_TOLERANCE or anchor_diff > EMBEDDING_TOLERANCE:
        raise DataError(f"TorchScript embeddings differ from eager by {max_diff:.3g} "
                        f"(anchors {anchor_diff:.3g}) > {EMBEDDING_TOLERANCE}: package not usable")
    return {"path": out_path, "anchor_count": int(anchors.shape[0]),
            "embedding_dim": int(anchors.shape[1]), "checked_images": int(check.shape[0]),
            "max_abs_difference": max_diff, "metadata": reloaded_meta}


def load_package(path: str) -> Tuple[torch.jit.ScriptModule, Dict]:
    extra = {METADATA_FILE: ""}
    try:
        module = torch.jit.load(path, map_location="cpu", _extra_files=extra)
    except Exception as exc:
        raise DataError(f"{path}: not a loadable TorchScript package ({exc})") from exc
    if not extra[METADATA_FILE]:
        raise DataError(f"{path}: package has no {METADATA_FILE}")
    try:
        meta = json.loads(extra[METADATA_FILE])
    except json.JSONDecodeError as exc:
        raise DataError(f"{path}: {METADATA_FILE} is not valid JSON ({exc})") from exc
    check_metadata(meta, f"{path}:{METADATA_FILE}")
    if not hasattr(module, "anchors"):
        raise DataError(f"{path}: package has no 'anchors' buffer")
    module.eval()
    return module, meta


def median_distance(embeddings: torch.Tensor, anchors: torch.Tensor) -> List[float]:
    """PXS = median Euclidean distance to the anchor embeddings. For an even anchor count
    the mean of the two middle distances (statistics.median, as the published code)."""
    distances = torch.cdist(embeddings.double(), anchors.double())
    return [float(statistics.median(row.tolist())) for row in distances]


def score_files(module, meta: Dict, paths: Sequence[str], batch_size: int = 16,
                progress=None) -> List[float]:
    """PXS of each file, with the package's own preprocessing."""
    pre = meta["preprocessing"]
    scores: List[float] = []
    for start in range(0, len(paths), batch_size):
        chunk = paths[start:start + batch_size]
        batch = preprocess.preprocess_files(chunk, pre)
        with torch.no_grad():
            scores += median_distance(module(batch), module.anchors)
        if progress:
            progress(min(start + batch_size, len(paths)), len(paths))
    return scores
