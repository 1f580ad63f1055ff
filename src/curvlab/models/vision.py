"""Image models: a LeNet-5-like CNN and a small ResNet without BatchNorm (LayerNorm/GroupNorm/none)."""

from __future__ import annotations

import torch.nn.functional as F
from torch import nn

from curvlab.errors import InputError
from curvlab.models.mlp import ACTIVATIONS


def lenet(in_channels: int, image_size: int, n_classes: int, activation: str = "tanh") -> nn.Sequential:
    """LeNet-5-like: conv(6,5) → pool → conv(16,5) → pool → 120 → 84 → classes (padding keeps 28×28 sizes)."""
    act = ACTIVATIONS[activation]
    side = ((image_size + 4 - 4) // 2 - 4) // 2  # after conv(pad 2) → pool → conv → pool
    return nn.Sequential(
        nn.Conv2d(in_channels, 6, 5, padding=2),
        act(),
        nn.AvgPool2d(2),
        nn.Conv2d(6, 16, 5),
        act(),
        nn.AvgPool2d(2),
        nn.Flatten(),
        nn.Linear(16 * side * side, 120),
        act(),
        nn.Linear(120, 84),
        act(),
        nn.Linear(84, n_classes),
    )


NORMS = ("none", "layer", "group")


def _norm(kind: str, channels: int) -> nn.Module:
    if kind == "none":
        return nn.Identity()
    if kind == "layer":
        return nn.GroupNorm(1, channels)  # LayerNorm over (C, H, W)
    return nn.GroupNorm(min(8, channels), channels)


class BasicBlock(nn.Module):
    def __init__(self, c_in: int, c_out: int, stride: int, norm: str):
        super().__init__()
        self.conv1 = nn.Conv2d(c_in, c_out, 3, stride, 1)
        self.n1 = _norm(norm, c_out)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, 1, 1)
        self.n2 = _norm(norm, c_out)
        self.skip = nn.Identity() if stride == 1 and c_in == c_out else nn.Conv2d(c_in, c_out, 1, stride)

    def forward(self, x):
        out = F.relu(self.n1(self.conv1(x)))
        return F.relu(self.n2(self.conv2(out)) + self.skip(x))


class SmallResNet(nn.Module):
    """Three stages of basic blocks (width, 2·width, 4·width), global average pooling, a linear head."""

    def __init__(self, in_channels: int, n_classes: int, width: int = 16, blocks: int = 1, norm: str = "layer"):
        super().__init__()
        if norm not in NORMS:
            raise InputError(
                f"norm: expected one of {NORMS} (no BatchNorm: it has no single full-batch function), got {norm!r}"
            )
        self.stem = nn.Conv2d(in_channels, width, 3, 1, 1)
        layers, c = [], width
        for stage, c_out in enumerate((width, 2 * width, 4 * width)):
            for b in range(blocks):
                layers.append(BasicBlock(c, c_out, 2 if (stage > 0 and b == 0) else 1, norm))
                c = c_out
        self.blocks = nn.Sequential(*layers)
        self.head = nn.Linear(c, n_classes)

    def forward(self, x):
        return self.head(self.blocks(F.relu(self.stem(x))).mean(dim=(2, 3)))
