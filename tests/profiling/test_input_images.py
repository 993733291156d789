"""--input_image: pixel values scaled by the file's bit depth (16-bit PNGs were clipped at 255)."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from configs import UserError
from pipeline.options import load_input

MEAN = np.array([0.485, 0.456, 0.406], np.float32)
STD = np.array([0.229, 0.224, 0.225], np.float32)


def unnormalise(x: np.ndarray) -> np.ndarray:
    return x[0] * STD + MEAN


def test_16bit_greyscale_png_is_scaled_by_65535(tmp_path: Path):
    grey = np.full((32, 32), 30000, np.uint16)
    grey[:16] = 6000
    Image.fromarray(grey).save(tmp_path / "g16.png")
    assert Image.open(tmp_path / "g16.png").mode == "I;16"
    x = load_input(str(tmp_path / "g16.png"), 32)
    assert x.shape == (1, 32, 32, 3) and x.dtype == np.float32
    u = unnormalise(x)
    np.testing.assert_allclose(u[20:, :, :], 30000 / 65535, atol=1e-4)  # was 1.0 (clipped to 255 / 255)
    np.testing.assert_allclose(u[:12, :, :], 6000 / 65535, atol=1e-4)


def test_16bit_and_8bit_versions_of_one_picture_give_the_same_input(tmp_path: Path):
    rng = np.random.default_rng(0)
    g8 = rng.integers(0, 256, (40, 40), dtype=np.uint8)
    Image.fromarray(g8).save(tmp_path / "g8.png")
    Image.fromarray(g8.astype(np.uint16) * 257).save(tmp_path / "g16.png")  # 255 -> 65535
    a = unnormalise(load_input(str(tmp_path / "g8.png"), 24))
    b = unnormalise(load_input(str(tmp_path / "g16.png"), 24))
    assert np.abs(a - b).max() < 2 / 255  # resampling of uint8 vs float rounds differently


def test_8bit_colour_png_is_unchanged(tmp_path: Path):
    rgb = np.zeros((8, 8, 3), np.uint8)
    rgb[..., 0], rgb[..., 1], rgb[..., 2] = 255, 128, 0
    Image.fromarray(rgb).save(tmp_path / "c.png")
    np.testing.assert_allclose(unnormalise(load_input(str(tmp_path / "c.png"), 8))[0, 0], [1.0, 128 / 255, 0.0],
                               atol=1e-5)


def test_not_an_image_names_the_flag(tmp_path: Path):
    (tmp_path / "x.png").write_text("not a png")
    with pytest.raises(UserError, match=r"--input_image = .*x\.png.*not a readable image"):
        load_input(str(tmp_path / "x.png"), 8)
