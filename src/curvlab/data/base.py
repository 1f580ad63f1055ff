"""A loaded data set, and the helpers every source shares: subsets, seeded splits, clear errors."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from curvlab.checks import check_int
from curvlab.errors import InputError

TASKS = ("classification", "regression", "language_model")


class MissingSource(InputError, ImportError):
    """A data source whose package is not installed; the message says exactly what to install."""


@dataclass
class DataSet:
    name: str
    task: str  # one of TASKS
    x_train: Tensor
    y_train: Tensor
    x_test: Tensor | None = None
    y_test: Tensor | None = None
    n_classes: int | None = None  # classes, or the vocabulary size of a language model

    @property
    def input_shape(self) -> tuple[int, ...]:
        return tuple(self.x_train.shape[1:])

    @property
    def n_train(self) -> int:
        return len(self.y_train)

    def subset(self, n: int | None, seed: int = 0) -> DataSet:
        """A seeded random subset of ``n`` training examples (the papers measure on subsets)."""
        if n is None:
            return self
        check_int(n, "subset", 1, self.n_train, note=f"for {self.name}")
        idx = torch.randperm(self.n_train, generator=torch.Generator().manual_seed(seed))[:n]
        return DataSet(
            self.name, self.task, self.x_train[idx], self.y_train[idx], self.x_test, self.y_test, self.n_classes
        )


def split(x: Tensor, y: Tensor, test_fraction: float, seed: int) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """A deterministic (seeded) train/test split."""
    n = len(y)
    order = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    n_test = int(round(test_fraction * n))
    test, train = order[:n_test], order[n_test:]
    return x[train], y[train], x[test], y[test]


def require(module: str, install: str):
    """Import ``module`` or fail with one line naming the package to install."""
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError as err:
        raise MissingSource(f"this data source needs {install}") from err
