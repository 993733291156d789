"""Users' datasets next to the built-in ones: an image folder (one subfolder per class) and a .npz."""
from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from configs.errors import UserError
from training import load_dataset


def _folder(root, per_class=5, size=(12, 10), mode="RGB"):
    for c, colour in (("cat", 40), ("dog", 200)):
        (root / c).mkdir(parents=True)
        for i in range(per_class):
            Image.new(mode, size, colour if mode == "L" else (colour, i, 0)).save(root / c / f"{i}.png")
    return root


def test_image_folder_classes_follow_sorted_names_and_split_is_seeded(tmp_path):
    root = _folder(tmp_path / "pets")
    xtr, ytr = load_dataset(f"folder:{root}", "train")
    xte, yte = load_dataset(f"folder:{root}", "test")
    assert xtr.shape == (8, 10, 12, 3) and xtr.dtype == np.uint8 and xte.shape == (2, 10, 12, 3)
    assert sorted(ytr.tolist()) == [0] * 4 + [1] * 4 and sorted(yte.tolist()) == [0, 1]
    assert (xtr[ytr == 1][:, 0, 0, 0] == 200).all()  # dog = class 1 (sorted names)
    again, _ = load_dataset(f"folder:{root}", "test")
    assert np.array_equal(again, xte)


def test_grey_folder_with_its_own_split(tmp_path):
    _folder(tmp_path / "d" / "train", mode="L")
    _folder(tmp_path / "d" / "test", per_class=1, mode="L")
    x, y = load_dataset(f"folder:{tmp_path / 'd'}", "test")
    assert x.shape == (2, 10, 12) and y.tolist() == [0, 1]


def test_npz_with_and_without_split(tmp_path):
    x = np.arange(10 * 4 * 4, dtype=np.uint8).reshape(10, 4, 4)
    np.savez(tmp_path / "a.npz", x=x, y=np.array([0, 1] * 5))
    xtr, ytr = load_dataset(f"npz:{tmp_path / 'a.npz'}", "train")
    xte, _ = load_dataset(f"npz:{tmp_path / 'a.npz'}", "test")
    assert len(xtr) == 8 and len(xte) == 2 and set(ytr.tolist()) == {0, 1}
    np.savez(tmp_path / "b.npz", x_train=x, y_train=np.zeros(10, int), x_test=x[:3], y_test=np.ones(3, int))
    assert load_dataset(f"npz:{tmp_path / 'b.npz'}", "test")[1].tolist() == [1, 1, 1]


@pytest.mark.parametrize("make, says", [
    (lambda p: None, "no such folder"),
    (lambda p: (p / "c").mkdir(parents=True) or (p / "c" / "x.png").write_bytes(b"junk"), "not a readable image"),
    (lambda p: (_folder(p), Image.new("RGB", (3, 3)).save(p / "cat" / "big.png")), "one size is needed"),
])
def test_bad_folders_are_user_errors(tmp_path, make, says):
    make(tmp_path / "f")
    with pytest.raises(UserError, match=says):
        load_dataset(f"folder:{tmp_path / 'f'}", "train")


def test_bad_npz_is_a_user_error(tmp_path):
    np.savez(tmp_path / "c.npz", images=np.zeros((2, 2, 2), np.uint8))
    with pytest.raises(UserError, match="arrays x and y"):
        load_dataset(f"npz:{tmp_path / 'c.npz'}", "train")
    np.savez(tmp_path / "d.npz", x=np.zeros((2, 2, 2), np.float32), y=np.zeros(2, int))
    with pytest.raises(UserError, match="x uint8"):
        load_dataset(f"npz:{tmp_path / 'd.npz'}", "train")


def test_colour_images_become_normalised_inputs_per_channel(tmp_path):
    """A folder's RGB images ([N, H, W, 3]) reach a network as [N, 3, S, S], each channel normalised
    by its own mean and std; grey images fill 3 channels; a colour image for a grey input is refused."""
    import torch

    from training import LoaderConfig, to_tensor_images

    x, _ = load_dataset(f"folder:{_folder(tmp_path / 'rgb')}", "train")
    assert x.shape[1:] == (10, 12, 3)
    cfg = LoaderConfig(size=16, channels=3, resize="interpolate", mean=(0.1, 0.2, 0.3), std=(0.5, 0.25, 1.0))
    t = to_tensor_images(x, cfg)
    assert tuple(t.shape) == (len(x), 3, 16, 16)
    # a uniform image stays uniform through the resize: each channel is (pixel/255 - mean) / std
    want = (torch.tensor(x[0, 0, 0] / 255.0, dtype=torch.float32) - torch.tensor(cfg.mean)) / torch.tensor(cfg.std)
    assert torch.allclose(t[0, :, 5, 5], want, atol=1e-5)
    grey = np.full((2, 8, 8), 51, np.uint8)
    g = to_tensor_images(grey, LoaderConfig(size=8, channels=3, mean=(0.2, 0.2, 0.1), std=(1.0, 1.0, 1.0)))
    assert torch.allclose(g[:, :, 0, 0], torch.tensor([[0.0, 0.0, 0.1]] * 2), atol=1e-6)
    with pytest.raises(UserError, match="images have 3 channels; the network input takes 1"):
        to_tensor_images(x, LoaderConfig(size=16, channels=1))
