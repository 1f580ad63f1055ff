"""scikit-learn's 8×8 digits (1,797 images, 10 classes): tiny, offline, ideal for tests and demos."""

from __future__ import annotations

import torch
from torch import Tensor

from curvlab.checks import check_int


def load_digits(n: int | None = None, seed: int = 0, dtype: torch.dtype = torch.float32) -> tuple[Tensor, Tensor]:
    """(inputs (n, 64) scaled to [0, 1], labels (n,)), a seeded random subset of size ``n`` (None = all)."""
    try:
        from sklearn.datasets import load_digits as sk_load_digits
    except ImportError as err:
        raise ImportError("the digits data set needs scikit-learn: pip install scikit-learn") from err
    bunch = sk_load_digits()
    inputs = torch.tensor(bunch.data, dtype=dtype) / 16.0
    labels = torch.tensor(bunch.target, dtype=torch.long)
    if n is not None:
        check_int(n, "n", 1, len(labels), note="or None")
        order = torch.randperm(len(labels), generator=torch.Generator().manual_seed(seed))[:n]
        inputs, labels = inputs[order], labels[order]
    return inputs, labels
