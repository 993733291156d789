"""Users' own image-classification data, next to the built-in datasets: an image folder or a .npz.

``load_dataset("folder:PATH", split)`` and ``load_dataset("npz:PATH", split)`` (training.data) read:

- ``folder:PATH``: one subfolder per class (``PATH/cat/*.jpg``, ``PATH/dog/*.png``; labels follow the
  sorted class names), or ``PATH/train/<class>/`` and ``PATH/test/<class>/`` for a given split.
  Without train/test folders, a seeded 80/20 split per class is made. Images are read as RGB, or
  as grey when every one of them is grey, and must share one size (resize them beforehand).
- ``npz:PATH``: arrays ``x`` and ``y`` (split 80/20 the same way), or ``x_train``, ``y_train``,
  ``x_test``, ``y_test``. ``x`` is uint8 [N, H, W] or [N, H, W, C]; ``y`` integer labels.

Both return (images uint8 [N, H, W] or [N, H, W, C], labels int64 [N]) as the built-in datasets do.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from configs.errors import UserError

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm", ".pgm")
TEST_FRACTION = 0.2  # share of each class held out as "test" when the data has no split of its own
KINDS = ("folder", "npz")


def is_user_dataset(name: str) -> bool:
    return name.split(":", 1)[0] in KINDS and ":" in name


def load_user_dataset(name: str, split: str, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """``folder:PATH`` or ``npz:PATH`` -> (images, labels) of ``split`` (train | test)."""
    kind, _, path = name.partition(":")
    p = Path(path).expanduser()
    if kind == "folder":
        return _folder(p, split, seed)
    return _npz(p, split, seed)


def _split(x: np.ndarray, y: np.ndarray, split: str, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """A seeded split per class: the first TEST_FRACTION of each class's shuffled examples are "test"."""
    rng = np.random.default_rng(seed)
    test = np.zeros(len(y), bool)
    for c in np.unique(y):
        idx = rng.permutation(np.flatnonzero(y == c))
        test[idx[:max(1, round(len(idx) * TEST_FRACTION))] if len(idx) > 1 else []] = True
    keep = test if split == "test" else ~test
    return x[keep], y[keep]


def _folder(root: Path, split: str, seed: int) -> tuple[np.ndarray, np.ndarray]:
    if not root.is_dir():
        raise UserError(f"dataset = 'folder:{root}': no such folder; give one subfolder of images per class")
    own_split = (root / "train").is_dir() and (root / "test").is_dir()
    base = root / split if own_split else root
    classes = sorted(d.name for d in (root / "train" if own_split else root).iterdir() if d.is_dir())
    if not classes:
        raise UserError(f"dataset = 'folder:{root}': no class subfolders (PATH/<class>/<image>)")
    files = [(f, c) for c, name in enumerate(classes) if (base / name).is_dir()
             for f in sorted((base / name).iterdir()) if f.suffix.lower() in IMAGE_SUFFIXES]
    if not files:
        raise UserError(f"dataset = 'folder:{root}': no images ({', '.join(IMAGE_SUFFIXES)}) in {base}/<class>/")
    x = _read_images([f for f, _ in files], root)
    y = np.array([c for _, c in files], np.int64)
    return (x, y) if own_split else _split(x, y, split, seed)


def _read_images(files: list[Path], root: Path) -> np.ndarray:
    from PIL import Image

    imgs = []
    for f in files:
        try:
            with Image.open(f) as im:
                imgs.append((im.mode in ("L", "1", "I;16"), im.convert("RGB")))
        except (OSError, ValueError, SyntaxError) as e:
            raise UserError(f"dataset = 'folder:{root}': {f} is not a readable image ({e})") from None
    sizes = {im.size for _, im in imgs}
    if len(sizes) > 1:
        raise UserError(f"dataset = 'folder:{root}': images of {len(sizes)} sizes ({sorted(sizes)[:3]} ...); "
                        "one size is needed (resize them beforehand)")
    grey = all(g for g, _ in imgs)
    return np.stack([np.asarray(im.convert("L") if grey else im, np.uint8) for _, im in imgs])


def _npz(path: Path, split: str, seed: int) -> tuple[np.ndarray, np.ndarray]:
    try:
        data = np.load(path, allow_pickle=False)
    except (OSError, ValueError) as e:
        raise UserError(f"dataset = 'npz:{path}': not a readable .npz ({e})") from None
    keys = set(data.files)
    if {f"x_{split}", f"y_{split}"} <= keys:
        x, y = data[f"x_{split}"], data[f"y_{split}"]
        own = True
    elif {"x", "y"} <= keys:
        x, y = data["x"], data["y"]
        own = False
    else:
        raise UserError(f"dataset = 'npz:{path}': arrays x and y (or x_train, y_train, x_test, y_test); it has "
                        f"{sorted(keys)}")
    if x.dtype != np.uint8 or x.ndim not in (3, 4) or y.ndim != 1 or len(x) != len(y) or \
            not np.issubdtype(y.dtype, np.integer):
        raise UserError(f"dataset = 'npz:{path}': x uint8 [N, H, W] or [N, H, W, C] and y integer [N]; x is "
                        f"{x.dtype} {list(x.shape)}, y {y.dtype} {list(y.shape)}")
    y = y.astype(np.int64)
    return (x, y) if own else _split(x, y, split, seed)
