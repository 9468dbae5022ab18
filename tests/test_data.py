"""MNIST loading: the bundled subset and local IDX folders (gz or not), with clear errors."""

from __future__ import annotations

import gzip

import numpy as np
import pytest

from relu_lens.data import DataError, MNISTFolderError, load_mnist, mnist_split, train_test_split


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


def write_folder(
    folder,
    train: tuple[np.ndarray, np.ndarray],
    test: tuple[np.ndarray, np.ndarray],
    gz: bool = False,
) -> None:
    """An MNIST folder of four IDX files from (images, labels) per split."""
    for prefix, (images, labels) in (("train", train), ("t10k", test)):
        write_idx(folder / f"{prefix}-images-idx3-ubyte", images, gz)
        write_idx(folder / f"{prefix}-labels-idx1-ubyte", labels, gz)


def digits(n: int, side: int = 28, classes: range | list[int] = range(10), seed: int = 0):
    """n random images (n, side, side) and labels cycling through ``classes``."""
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, (n, side, side)), np.resize(np.asarray(classes), n)


def one_line_error(kind: type[Exception], pattern: str, call, *args) -> str:
    """The message of ``call(*args)``: of type ``kind``, matching ``pattern``, one line."""
    with pytest.raises(kind, match=pattern) as err:
        call(*args)
    message = str(err.value)
    assert "\n" not in message
    return message


def test_corrupt_gzip_is_named(tmp_path):
    write_folder(tmp_path, digits(20), digits(10), gz=True)
    path = tmp_path / "train-images-idx3-ubyte.gz"
    raw = bytearray(gzip.compress(gzip.decompress(path.read_bytes())))  # 10-byte header
    raw[10] = 0xFF  # first deflate byte: reserved block type, zlib.error
    path.write_bytes(bytes(raw))
    message = one_line_error(MNISTFolderError, "corrupt or truncated gzip", load_mnist, tmp_path)
    assert str(path) in message


def test_truncated_gzip_is_named(tmp_path):
    write_folder(tmp_path, digits(20), digits(10), gz=True)
    path = tmp_path / "train-labels-idx1-ubyte.gz"
    path.write_bytes(path.read_bytes()[:-12])  # EOFError inside gzip
    message = one_line_error(MNISTFolderError, "corrupt or truncated gzip", load_mnist, tmp_path)
    assert str(path) in message


def test_truncated_and_overlong_idx_files(tmp_path):
    write_folder(tmp_path, digits(20), digits(10))
    path = tmp_path / "train-images-idx3-ubyte"
    raw = path.read_bytes()
    path.write_bytes(raw[:-100])
    message = one_line_error(
        MNISTFolderError, r"is truncated: .* 15680 bytes .* has 15580", load_mnist, tmp_path
    )
    assert str(path) in message
    path.write_bytes(raw + b"\x00" * 3)
    one_line_error(MNISTFolderError, "3 bytes after the 15680 bytes", load_mnist, tmp_path)


def test_labels_out_of_range(tmp_path):
    images, labels = digits(20)
    labels[[3, 4, 9]] = [10, 12, 10]
    write_folder(tmp_path, (images, labels), digits(10))
    message = one_line_error(
        MNISTFolderError,
        r"labels must be digits 0\.\.9, found \[10, 12\] in 3 of 20",
        load_mnist,
        tmp_path,
    )
    assert "train-labels-idx1-ubyte" in message


def test_empty_split(tmp_path):
    write_folder(tmp_path, digits(20), digits(0))
    one_line_error(MNISTFolderError, "the test split holds no digits", load_mnist, tmp_path, "test")


def test_train_and_test_images_of_different_sizes(tmp_path):
    write_folder(tmp_path, digits(20), digits(10, side=20))
    one_line_error(
        MNISTFolderError,
        "train images have 784 pixels each, test images 400",
        mnist_split,
        tmp_path,
        20,
        10,
    )


def test_folder_split_without_some_classes(tmp_path):
    write_folder(tmp_path, digits(30), digits(16, classes=[0, 1, 2, 3, 4, 5, 6, 9]))
    message = one_line_error(
        DataError,
        r"test split \(16 digits\) has no sample of class\(es\) \[7, 8\]",
        mnist_split,
        tmp_path,
        30,
        16,
    )
    assert "larger n_test" in message


def test_stratified_split_without_some_classes():
    """15 train digits take one of every class and a second of classes 0-4; the next 5 (the
    test split) are classes 5-9 only."""
    y = np.repeat(np.arange(10), 4)
    X = np.arange(40.0)[:, None]
    message = one_line_error(
        DataError, r"class\(es\) \[0, 1, 2, 3, 4\].*at least 10", train_test_split, X, y, 15, 5
    )
    assert "larger n_test" in message
    assert len(train_test_split(X, y, 15, 10)[3]) == 10


@pytest.mark.parametrize(("n_train", "n_test"), [(0, 5), (10, 0), (-5, 10)])
def test_split_sizes_must_be_positive(n_train, n_test):
    X, y = np.zeros((40, 1)), np.repeat(np.arange(10), 4)
    one_line_error(DataError, "must be >= 1", train_test_split, X, y, n_train, n_test)
    one_line_error(DataError, "must be >= 1", mnist_split, None, n_train, n_test)


def test_split_checks_lengths_and_sizes():
    y = np.repeat(np.arange(10), 4)
    one_line_error(
        DataError, "X has 39 samples but y has 40", train_test_split, np.zeros((39, 1)), y, 5, 5
    )
    one_line_error(
        DataError, "exceeds the 40 samples", train_test_split, np.zeros((40, 1)), y, 30, 20
    )


def test_constant_training_images_cannot_be_standardized(tmp_path):
    images, labels = digits(20)
    write_folder(tmp_path, (np.zeros_like(images), labels), digits(10))
    one_line_error(DataError, "one constant value", mnist_split, tmp_path, 20, 10)
    assert np.all(mnist_split(tmp_path, 20, 10, standardize=False)[0] == 0)


def test_data_errors_are_value_errors():
    assert issubclass(MNISTFolderError, DataError) and issubclass(DataError, ValueError)
