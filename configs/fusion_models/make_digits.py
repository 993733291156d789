"""Writes data/digits.npz and data/parity.npz: scikit-learn's 1,797 8x8 digits (bundled with it,
nothing is downloaded) as uint8 images, labelled by digit (10 classes) and by parity (2 classes).

    python configs/fusion_models/make_digits.py      # the committed files are its output
"""
from __future__ import annotations

from pathlib import Path

import numpy as np


def main(out: Path = Path(__file__).parent / "data") -> None:
    from sklearn.datasets import load_digits

    d = load_digits()
    x = np.clip(np.rint(d.images * (255 / 16)), 0, 255).astype(np.uint8)  # [1797, 8, 8], 0..16 -> 0..255
    out.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(out / "digits.npz", x=x, y=d.target.astype(np.int64))
    np.savez_compressed(out / "parity.npz", x=x, y=(d.target % 2).astype(np.int64))
    print(f"wrote {out / 'digits.npz'} and {out / 'parity.npz'} ({len(x)} images)")


if __name__ == "__main__":
    main()
