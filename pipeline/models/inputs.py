"""A model's INPUT: real images (a folder or a .npy batch) resized and normalised, or seeded random input.

The same inputs serve verification (converted plan against the source model) and int8 calibration.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from configs.errors import ConfigError

from .config import InputCfg, resolve_path

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm")
RANDOM_SAMPLES = 2  # seeded random inputs compared when INPUT.IMAGES is empty
MAX_IMAGES = 64  # images read from a folder or .npy batch (sorted by name, the first ones)


@dataclass(frozen=True)
class ModelInputs:
    """NCHW float32 arrays [1, C, H, W] and what they are (the result row's verify_inputs)."""

    arrays: tuple[Any, ...]
    label: str  # "random (seeded, n=2)" or "images:photos (n=4)"
    ident: str  # content hash: names the calibration data in the conversion cache key


def load_inputs(f: str, key: str, inp: InputCfg, shape: list[int], seed: int = 1) -> ModelInputs:
    """The inputs of a model of input ``shape`` (NCHW), from ``inp.IMAGES`` or seeded random.

    Args:
        f: the config file (errors name it; IMAGES is relative to it).
        key: the config key prefix of this INPUT section ("INPUT" or "MODELS[1].INPUT").
        inp: the INPUT section.
        shape: NCHW shape the model takes.
    Raises:
        ConfigError: a corrupt image, an empty folder, a .npy batch of the wrong shape.
    """
    import numpy as np

    if not inp.IMAGES:
        rng = np.random.default_rng(seed)
        arrays = tuple(rng.standard_normal(shape).astype(np.float32) for _ in range(RANDOM_SAMPLES))
        return ModelInputs(arrays, f"random (seeded, n={RANDOM_SAMPLES})", f"random-{seed}-{RANDOM_SAMPLES}")
    p = resolve_path(f, inp.IMAGES)
    if p.suffix == ".npy":
        batch = _npy(f, f"{key}.IMAGES", p, shape)
    else:
        batch = np.stack([image_array(f, f"{key}.IMAGES", q, shape, inp) for q in _image_files(f, f"{key}.IMAGES", p)])
    arrays = tuple(np.ascontiguousarray(b[None], dtype=np.float32) for b in batch[:MAX_IMAGES])
    h = hashlib.sha256(b"".join(a.tobytes() for a in arrays)).hexdigest()[:16]
    return ModelInputs(arrays, f"images:{inp.IMAGES} (n={len(arrays)})", f"images-{h}")


def _image_files(f: str, key: str, folder: Path) -> list[Path]:
    files = sorted(q for q in folder.iterdir() if q.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise ConfigError(f, key, str(folder), f"a folder with images ({', '.join(IMAGE_SUFFIXES)}); none found")
    return files[:MAX_IMAGES]


def image_array(f: str, key: str, path: Path, shape: list[int], inp: InputCfg):
    """One image file -> CHW float32: resized to H x W, scaled to [0, 1], normalised by MEAN/STD."""
    import numpy as np
    from PIL import Image

    c, h, w = shape[1:]
    if c not in (1, 3):
        raise ConfigError(f, key, str(path), f"images feed 1- or 3-channel inputs; INPUT.SHAPE has {c} channels "
                                             "(give a .npy batch instead)")
    try:
        img = Image.open(path)
        img = img.convert("RGB" if c == 3 else "L").resize((w, h), Image.BILINEAR)
    except (OSError, ValueError, SyntaxError) as e:
        raise ConfigError(f, key, str(path), f"a readable image ({type(e).__name__}: {e})") from None
    a = np.asarray(img, dtype=np.float32).reshape(h, w, c) / 255.0
    a = (a - np.asarray(inp.MEAN, np.float32)) / np.asarray(inp.STD, np.float32)
    return a.transpose(2, 0, 1)


def _npy(f: str, key: str, path: Path, shape: list[int]):
    import numpy as np

    try:
        a = np.load(path, allow_pickle=False)
    except (OSError, ValueError) as e:
        raise ConfigError(f, key, str(path), f"a readable .npy array ({e})") from None
    if a.ndim == 3:
        a = a[None]
    if a.ndim != 4 or list(a.shape[1:]) != list(shape[1:]) or len(a) == 0:
        raise ConfigError(f, key, str(path), f"a batch [N, {', '.join(map(str, shape[1:]))}] as INPUT.SHAPE says "
                                             f"(already normalised); it has shape {list(a.shape)}")
    if not np.issubdtype(a.dtype, np.number):
        raise ConfigError(f, key, str(path), f"a numeric array; dtype is {a.dtype}")
    return a.astype(np.float32)
