"""Image files as network input: pixel values scaled to [0, 1] by the file's bit depth.

Pillow opens 16-bit greyscale PNGs (and TIFFs) as mode ``I;16``/``I``; ``convert("RGB")`` clips
those values at 255, so nearly every pixel became white. Here they are divided by 65535 instead.
16-bit colour PNGs are opened by Pillow as 8-bit RGB (already scaled) and take the 8-bit path.
"""
from __future__ import annotations

from configs import UserError

SIXTEEN_BIT_MODES = ("I;16", "I;16L", "I;16B", "I;16N")


def full_scale(mode: str, fmt: str | None) -> float | None:
    """The value of a fully white pixel for Pillow image mode `mode`, or None for 8-bit modes
    (converted to RGB by Pillow). A 32-bit ``I`` image from a PNG holds 16-bit samples."""
    if mode in SIXTEEN_BIT_MODES or (mode == "I" and fmt == "PNG"):
        return 65535.0
    if mode == "I":
        return float(2 ** 32 - 1)
    if mode == "F":
        return 1.0
    return None


def read_unit_rgb(path: str, size: int):
    """An image file -> float32 [size, size, 3] in [0, 1] (greyscale repeated over the 3 channels).

    Raises:
        UserError: the file is not a readable image (names ``--input_image``).
    """
    import numpy as np
    from PIL import Image

    try:
        with Image.open(path) as img:
            scale = full_scale(img.mode, img.format)
            if scale is None:
                return np.asarray(img.convert("RGB").resize((size, size)), dtype=np.float32) / 255.0
            grey = Image.fromarray(np.asarray(img.convert("F"), dtype=np.float32) / scale, mode="F")
            a = np.clip(np.asarray(grey.resize((size, size)), dtype=np.float32), 0.0, 1.0)
            return np.repeat(a[:, :, None], 3, axis=2)
    except (OSError, ValueError) as e:
        raise UserError(f"--input_image = {path!r}: not a readable image ({e})") from None
