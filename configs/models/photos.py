"""Writes four of scikit-image's photos (skimage.data) to photos/ as JPEG, the INPUT.IMAGES of the examples.

    python configs/models/photos.py
"""
from __future__ import annotations

from pathlib import Path

PHOTOS = ("chelsea", "coffee", "astronaut", "rocket")  # a cat, a cup of coffee, a person, a rocket


def main(out: Path = Path(__file__).parent / "photos") -> None:
    from PIL import Image
    from skimage import data

    out.mkdir(exist_ok=True)
    for name in PHOTOS:
        img = Image.fromarray(getattr(data, name)()).convert("RGB")
        img.thumbnail((320, 320))
        img.save(out / f"{name}.jpg", quality=92)


if __name__ == "__main__":
    main()
