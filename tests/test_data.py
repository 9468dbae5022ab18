"""MNIST loading: the bundled subset and local IDX folders (gz or not), with clear errors."""

from __future__ import annotations

import gzip

import numpy as np
import pytest

from relu_lens.data import MNISTFolderError, load_mnist, train_test_split


def write_idx(path, array: np.ndarray, gz: bool) -> None:
    header = bytes([0, 0, 0x08, array.ndim]) + np.array(array.shape, dtype=">i4").tobytes()
    payload = header + array.astype(np.uint8).tobytes()
    if gz:
        with gzip.open(f"{path}.gz", "wb") as fh:
            fh.write(payload)
    else:
        path.write_bytes(payload)


@pytest.mark.parametrize("gz", [False, True])
def test_idx_folder_roundtrip(tmp_path, gz):
    rng = np.random.default_rng(0)
    for split, n in (("train", 7), ("t10k", 3)):
        images = rng.integers(0, 256, (n, 28, 28))
        write_idx(tmp_path / f"{split}-images-idx3-ubyte", images, gz)
        write_idx(tmp_path / f"{split}-labels-idx1-ubyte", rng.integers(0, 10, n), gz)
        if split == "train":
            expected = images.reshape(n, -1) / 255.0
    X, y = load_mnist(tmp_path, "train")
    assert X.shape == (7, 784) and y.shape == (7,) and y.dtype == np.int64
    np.testing.assert_allclose(X, expected)
    assert load_mnist(tmp_path, "test")[0].shape == (3, 784)


def test_missing_and_malformed_folders(tmp_path):
    with pytest.raises(MNISTFolderError, match="does not exist"):
        load_mnist(tmp_path / "nope")
    with pytest.raises(MNISTFolderError, match="train-images-idx3-ubyte"):
        load_mnist(tmp_path)
    (tmp_path / "train-images-idx3-ubyte").write_bytes(b"\x00\x00\x08\x03" + b"\x00" * 5)
    (tmp_path / "train-labels-idx1-ubyte").write_bytes(b"junk")
    with pytest.raises(MNISTFolderError, match=r"truncated|magic"):
        load_mnist(tmp_path)


def test_bundled_subset_and_split():
    X, y = load_mnist()
    assert X.shape == (5000, 784) and 0 <= X.min() and X.max() <= 1
    assert np.bincount(y).tolist() == [500] * 10
    Xtr, ytr, Xte, yte = train_test_split(X, y, 400, 100, seed=3)
    assert len(ytr) == 400 and len(yte) == 100
    assert np.bincount(ytr).tolist() == [40] * 10 and np.bincount(yte).tolist() == [10] * 10
    train_rows = {r.tobytes() for r in Xtr}
    assert not any(r.tobytes() in train_rows for r in Xte)
