#!/usr/bin/python3
"""Writes the model packages (docs/model-package.md) that the scoring tests and the
benchmark use. Deterministic: the same torch version writes the same weights.

  make_test_model.py                      the tiny test fixtures into tests/fixtures/
  make_test_model.py --out-dir DIR        the same, elsewhere
  make_test_model.py --densenet121 OUT.pt a DenseNet121 package at 320x320 with random
                                          weights (speed benchmarks only; ~30 MB, never commit)

Fixtures (each a few kB, committed so the C++ tests need no Python):
  pxs_test_model.pt             small CNN, 64x64 input, 5 anchors, a calibration map,
                                ImageNet-style mean/std so the normalisation path is tested
  pxs_test_model_no_anchors.pt  the same without the `anchors` buffer (must be refused)
  pxs_test_model_nan.pt         returns NaN for an (almost) all-white input (must be an
                                error, not a score) and finite embeddings otherwise
  pxs_test_model_320.pt         the same network with the published preprocessing (336 -> 320,
                                no mean/std): the parity test's preprocessing at full size
  pxs_test_model_autocrop.pt    64x64 with autocrop on (threshold 2), for the parity test
"""

import argparse
import json
import os
import sys

import torch
from torch import nn

HERE = os.path.dirname(os.path.abspath(__file__))
FIXTURES = os.path.join(HERE, "..", "tests", "fixtures")

TINY_INPUT = 64
TINY_EMBEDDING = 32
TINY_ANCHORS = 5


class TinyEmbeddingNet(nn.Module):
    """Conv-BN-ReLU twice, global average pool, linear: small but with a BatchNorm so that
    torch::jit::freeze has something to fold."""

    def __init__(self, dim: int):
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(3, 8, 3, stride=2, padding=1), nn.BatchNorm2d(8), nn.ReLU(),
            nn.Conv2d(8, 16, 3, stride=2, padding=1), nn.BatchNorm2d(16), nn.ReLU(),
            nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.head = nn.Linear(16, dim)

    def forward(self, x):
        return self.head(self.features(x))


class Package(nn.Module):
    def __init__(self, net: nn.Module, anchors):
        super().__init__()
        self.net = net
        if anchors is not None:
            self.register_buffer("anchors", anchors.detach().float().contiguous())

    def forward(self, x):
        return self.net(x)


class NanForWhitePackage(Package):
    """NaN embeddings for images whose mean (before normalisation: mean channel value
    above 2.2 after ImageNet-style normalisation, i.e. nearly white) is high."""

    def forward(self, x):
        y = self.net(x)
        white = x.mean(dim=(1, 2, 3)) > 2.0
        return torch.where(white.unsqueeze(1), torch.full_like(y, float("nan")), y)


def metadata(name, size, resize, dim, anchors, mean, std, calibration, training, use):
    return {
        "format": "pxs-model-package",
        "format_version": 1,
        "name": name,
        "version": "0.0.1",
        "embedding_dim": dim,
        "anchor_count": anchors,
        "input": {"channels": 3, "height": size, "width": size},
        "preprocessing": {
            "equalize_histogram": True, "autocrop": False, "autocrop_threshold": 2,
            "resize_short_side": resize, "center_crop": size, "mean": mean, "std": std,
        },
        "training_data": training,
        "intended_use": use,
        "not_for_clinical_use": True,
        "calibration": calibration,
        "trend": {"stable_delta": 1.0,
                  "bands": [{"upper": 2.5, "label": "normal/minimal"}, {"upper": 5, "label": "mild"},
                            {"upper": 9, "label": "moderate"}, {"upper": None, "label": "severe"}]},
    }


def synthetic_anchor_inputs(count, size, mean, std, seed):
    """Smooth random 'images' in [0,1], normalised like the package's inputs."""
    g = torch.Generator().manual_seed(seed)
    low = torch.rand(count, 1, 8, 8, generator=g)
    img = nn.functional.interpolate(low, size=(size, size), mode="bilinear", align_corners=False)
    img = img.repeat(1, 3, 1, 1)
    m = torch.tensor(mean).view(1, 3, 1, 1)
    s = torch.tensor(std).view(1, 3, 1, 1)
    return (img - m) / s


def save(module, path, meta):
    module.eval()
    scripted = torch.jit.script(module)
    torch.jit.save(scripted, path, _extra_files={"metadata.json": json.dumps(meta, indent=2)})
    print(f"wrote {path} ({os.path.getsize(path)} bytes)", file=sys.stderr)


def write_tiny(out_dir):
    torch.manual_seed(1234)
    net = TinyEmbeddingNet(TINY_EMBEDDING)
    with torch.no_grad():  # non-trivial BatchNorm statistics, so folding them matters
        for m in net.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.uniform_(-0.2, 0.2)
                m.running_var.uniform_(0.5, 1.5)
                m.weight.uniform_(0.5, 1.5)
                m.bias.uniform_(-0.1, 0.1)
    net.eval()
    mean, std = [0.485, 0.456, 0.406], [0.229, 0.224, 0.225]
    with torch.no_grad():
        anchors = net(synthetic_anchor_inputs(TINY_ANCHORS, TINY_INPUT, mean, std, seed=7))
    calibration = {"scale": "test-scale", "unit": "{score}", "min": 0, "max": 24,
                   "points": [[0.0, 0.0], [1.0, 6.0], [4.0, 24.0]]}
    meta = metadata("pxs-test-tiny", TINY_INPUT, TINY_INPUT + 8, TINY_EMBEDDING, TINY_ANCHORS,
                    mean, std, calibration,
                    "none: random weights, synthetic anchors (unit-test fixture)",
                    "unit tests of the PXS node only")
    os.makedirs(out_dir, exist_ok=True)
    save(Package(net, anchors), os.path.join(out_dir, "pxs_test_model.pt"), meta)
    save(Package(net, None), os.path.join(out_dir, "pxs_test_model_no_anchors.pt"), meta)
    nan_meta = dict(meta, name="pxs-test-tiny-nan")
    save(NanForWhitePackage(net, anchors), os.path.join(out_dir, "pxs_test_model_nan.pt"), nan_meta)

    published = [0.0] * 3, [1.0] * 3
    with torch.no_grad():
        anchors320 = net(synthetic_anchor_inputs(TINY_ANCHORS, 320, *published, seed=7))
    meta320 = metadata("pxs-test-tiny-320", 320, 336, TINY_EMBEDDING, TINY_ANCHORS, *published, None,
                       "none: random weights, synthetic anchors (parity-test fixture)",
                       "parity tests of the PXS node only")
    save(Package(net, anchors320), os.path.join(out_dir, "pxs_test_model_320.pt"), meta320)
    meta_crop = metadata("pxs-test-tiny-autocrop", TINY_INPUT, TINY_INPUT + 8, TINY_EMBEDDING, TINY_ANCHORS,
                         mean, std, None, "none: random weights, synthetic anchors (parity-test fixture)",
                         "parity tests of the PXS node only")
    meta_crop["preprocessing"]["autocrop"] = True
    save(Package(net, anchors), os.path.join(out_dir, "pxs_test_model_autocrop.pt"), meta_crop)


def write_densenet121(path, anchors=10):
    import torchvision
    torch.manual_seed(0)
    net = torchvision.models.densenet121(weights=None)  # 1000-d output, as the published model
    net.eval()
    mean, std = [0.0] * 3, [1.0] * 3  # the published pipeline does not normalise
    with torch.no_grad():
        anchor_emb = torch.cat([net(x.unsqueeze(0)) for x in
                                synthetic_anchor_inputs(anchors, 320, mean, std, seed=11)])
    meta = metadata("densenet121-random", 320, 336, 1000, anchors, mean, std, None,
                    "none: random weights (speed benchmark only)", "benchmarks only")
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    save(Package(net, anchor_emb), path, meta)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out-dir", default=FIXTURES, help="folder for the tiny fixtures")
    ap.add_argument("--densenet121", metavar="OUT.pt", help="write only the DenseNet121 benchmark package")
    ap.add_argument("--anchors", type=int, default=10, help="anchor count of the DenseNet121 package")
    args = ap.parse_args()
    if args.densenet121:
        write_densenet121(args.densenet121, args.anchors)
    else:
        write_tiny(args.out_dir)


if __name__ == "__main__":
    main()
