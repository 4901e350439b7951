"""Embedding networks: the published DenseNet121, a ResNet18 and a compact CNN for CPUs.

Every backbone maps [B,3,H,W] to [B,D]; the package's forward() is exactly this.
"""

from __future__ import annotations

import re
from collections import OrderedDict
from typing import Dict

import torch
from torch import nn
from torchvision import models

BACKBONES = ("densenet121", "resnet18", "compact", "compact-gn")


class CompactCnn(nn.Module):
    """Five conv blocks (stride-2 each) + global average pooling + linear projection.

    About 0.6 M parameters (no dropout: noise in the embedding would keep "same" pairs
    apart and favour the useless optimum where every distance is half the margin): trainable from scratch on a few hundred images on a CPU.
    Global pooling makes it independent of the input size.
    """

    def __init__(self, embedding_dim: int = 128, width: int = 16, group_norm: bool = False):
        super().__init__()

        def norm(channels: int) -> nn.Module:
            # GroupNorm behaves the same in training and evaluation: with small pair batches
            # BatchNorm's running statistics can make eval-mode embeddings drift.
            return nn.GroupNorm(8, channels) if group_norm else nn.BatchNorm2d(channels)

        channels = [3, width, width * 2, width * 4, width * 8, width * 8]
        blocks = []
        for c_in, c_out in zip(channels[:-1], channels[1:]):
            blocks += [
                nn.Conv2d(c_in, c_out, 3, stride=2, padding=1, bias=False),
                norm(c_out),
                nn.ReLU(inplace=True),
                nn.Conv2d(c_out, c_out, 3, padding=1, bias=False),
                norm(c_out),
                nn.ReLU(inplace=True),
            ]
        self.features = nn.Sequential(*blocks)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.head = nn.Linear(channels[-1], embedding_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.pool(self.features(x)).flatten(1)
        return self.head(x)


def build_backbone(name: str, embedding_dim: int) -> nn.Module:
    """Randomly initialised backbone (no pretrained weights can be downloaded here)."""
    if name == "densenet121":
        # The published PXS network uses torchvision's densenet121 with its 1000-way
        # classifier output as the embedding.
        return models.densenet121(weights=None, num_classes=embedding_dim)
    if name == "resnet18":
        return models.resnet18(weights=None, num_classes=embedding_dim)
    if name == "compact":
        return CompactCnn(embedding_dim=embedding_dim)
    if name == "compact-gn":
        return CompactCnn(embedding_dim=embedding_dim, group_norm=True)
    raise ValueError(f"unknown backbone '{name}' (choose from {', '.join(BACKBONES)})")


class SiameseDenseNet121(nn.Module):
    """The shape of QTIM-Lab/PXS-score SiameseNetwork_DenseNet121: a densenet121 under the
    attribute `cnn0`, whose 1000-d output is the embedding. Only used to load such
    checkpoints (their keys start with 'cnn0.')."""

    def __init__(self):
        super().__init__()
        self.cnn0 = models.densenet121(weights=None)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.cnn0(x)


# Old torchvision DenseNet checkpoints name layers 'norm.1' instead of 'norm1'.
_OLD_DENSENET_KEY = re.compile(r"^(.*denselayer\d+\.(?:norm|relu|conv))\.((?:[12])\.(?:weight|bias|running_mean|running_var|num_batches_tracked))$")


def normalise_pxs_state_dict(state: Dict[str, torch.Tensor]) -> "OrderedDict[str, torch.Tensor]":
    """Accepts the state dict of a SiameseNetwork_DenseNet121 as saved by the published code,
    with or without a DataParallel 'module.' prefix and with old-style DenseNet names;
    returns the keys of torchvision's densenet121 (without the 'cnn0.' prefix)."""
    out: "OrderedDict[str, torch.Tensor]" = OrderedDict()
    for key, value in state.items():
        if key.startswith("module."):
            key = key[len("module."):]
        if not key.startswith("cnn0."):
            continue
        key = key[len("cnn0."):]
        match = _OLD_DENSENET_KEY.match(key)
        if match:
            key = match.group(1) + match.group(2)
        out[key] = value
    return out
