"""Which source model's module answers each class, and on what scale: choices made on held-out images.

A "more accurate" composition takes, for each class, one module among those cut from several source
models, and answers with the argmax over the chosen modules' scores. Everything here works on a score
tensor ``sc`` of shape [models, images, classes]: model m's own module for class c scored on the images
(held-out validation images to *choose*, test images to *measure*), and a choice ``pick`` (one model
index per class).

- ``composed_accuracy``: the composition's accuracy for a choice;
- ``ascend``: coordinate ascent over the choice (one class at a time, every model tried, until nothing
  improves), maximising the composed accuracy on the images given. On held-out validation images it is
  a choice made for the composition as a whole (GradSplitter's rule ranks each module alone by its
  one-vs-rest accuracy); on test images it is an upper bound for reporting, never a choice;
- ``fit_platt`` / ``apply_platt``: per module an affine map ``a * s + b`` of its score, fitted by binary
  cross-entropy on held-out images (Platt scaling), so that scores of modules cut from different
  models are on one scale before the argmax; ``fold_platt`` writes it into the head's last Linear layer,
  so a calibrated module is still just a module (same network, same cost);
- ``ensemble_accuracy``: the mean of every model's scores per class (n times the cost; for reference).
"""
from __future__ import annotations

from typing import TYPE_CHECKING

from configs.errors import UserError

if TYPE_CHECKING:
    import torch

CALIBRATIONS = ("none", "platt")
CHOICES = ("per-class", "val-ascent")


def _check(sc: "torch.Tensor", pick: list[int]) -> None:
    if sc.dim() != 3:
        raise UserError(f"scores shape {tuple(sc.shape)}: allowed is [models, images, classes]")
    if len(pick) != sc.shape[2] or not all(0 <= m < sc.shape[0] for m in pick):
        raise UserError(f"pick {pick}: allowed is one model index in 0..{sc.shape[0] - 1} per class "
                        f"({sc.shape[2]} classes)")


def composed_scores(sc: "torch.Tensor", pick: list[int]) -> "torch.Tensor":
    """[images, classes]: class c's column from model ``pick[c]``'s module."""
    import torch

    _check(sc, pick)
    return sc[torch.tensor(pick), :, torch.arange(len(pick))].T


def composed_accuracy(sc: "torch.Tensor", y: "torch.Tensor", pick: list[int]) -> float:
    """Accuracy of the argmax over the picked modules' scores (labels ``y`` are class positions)."""
    return float((composed_scores(sc, pick).argmax(1) == y).float().mean())


def ascend(sc: "torch.Tensor", y: "torch.Tensor", pick: list[int], max_rounds: int = 20) -> tuple[list[int], float]:
    """Coordinate ascent from ``pick``: change one class's model at a time while the composed accuracy on
    (``sc``, ``y``) rises (strictly, so ties keep the starting choice).

    Returns:
        (the choice, its accuracy on these images).
    """
    pick = list(pick)
    top = composed_accuracy(sc, y, pick)
    for _ in range(max_rounds):
        improved = False
        for k in range(len(pick)):
            for m in range(sc.shape[0]):
                if m == pick[k]:
                    continue
                trial = pick[:k] + [m] + pick[k + 1:]
                if (a := composed_accuracy(sc, y, trial)) > top + 1e-9:
                    pick, top, improved = trial, a, True
        if not improved:
            break
    return pick, top


def fit_platt(sc: "torch.Tensor", y: "torch.Tensor", steps: int = 100) -> "torch.Tensor":
    """Per module (model, class) the ``(a, b)`` minimising the binary cross-entropy of ``a * s + b``
    against "the image is this class", on held-out images.

    Returns:
        [models, classes, 2] parameters (a, b); (1, 0) is the identity.
    """
    import torch
    import torch.nn.functional as F

    _check(sc, [0] * sc.shape[2])
    target = (y[None, :, None] == torch.arange(sc.shape[2])[None, None, :]).double().expand_as(sc)
    s = sc.detach().double()
    ab = torch.zeros(sc.shape[0], sc.shape[2], 2, dtype=torch.float64)
    ab[..., 0] = 1.0
    ab.requires_grad_(True)
    opt = torch.optim.LBFGS([ab], lr=1.0, max_iter=steps, line_search_fn="strong_wolfe")

    def closure():
        opt.zero_grad()
        z = s * ab[:, None, :, 0] + ab[:, None, :, 1]
        loss = F.binary_cross_entropy_with_logits(z, target, reduction="sum")
        loss.backward()
        return loss
    opt.step(closure)
    return ab.detach().float()


def apply_platt(sc: "torch.Tensor", ab: "torch.Tensor") -> "torch.Tensor":
    """``a * s + b`` per module (``ab`` from ``fit_platt``)."""
    if ab.shape != (sc.shape[0], sc.shape[2], 2):
        raise UserError(f"platt parameters shape {tuple(ab.shape)}: allowed is "
                        f"{(sc.shape[0], sc.shape[2], 2)} for scores {tuple(sc.shape)}")
    return sc * ab[:, None, :, 0] + ab[:, None, :, 1]


def fold_platt(head: "torch.nn.Module", a: float, b: float) -> None:
    """Writes ``a * out + b`` into a module head whose last layer is a one-output Linear (in place)."""
    import torch

    last = [m for m in head.modules() if isinstance(m, torch.nn.Linear)]
    if not last or last[-1].out_features != 1:
        raise UserError(f"head {type(head).__name__}: calibration folds into a last Linear layer with one output")
    with torch.no_grad():
        last[-1].weight.mul_(a)
        last[-1].bias.mul_(a).add_(b)


def ensemble_accuracy(sc: "torch.Tensor", y: "torch.Tensor") -> float:
    """Accuracy of the mean over models of the scores per class."""
    return float((sc.mean(0).argmax(1) == y).float().mean())


def choose(val: "torch.Tensor", y_val: "torch.Tensor", start: list[int], choice: str, calibration: str
           ) -> tuple[list[int], "torch.Tensor | None"]:
    """The choice and calibration of a composition, from held-out images only.

    Args:
        val: [models, images, classes] scores on the held-out validation images.
        y_val: their labels (class positions).
        start: GradSplitter's per-class choice (each module ranked alone on validation).
        choice: ``per-class`` (keep ``start``) or ``val-ascent`` (``ascend`` on the validation images).
        calibration: ``none`` or ``platt`` (fitted on the same validation images, before the ascent).

    Returns:
        (one model index per class, Platt parameters or None).
    """
    if choice not in CHOICES:
        raise UserError(f"choice = {choice!r}: allowed are {', '.join(CHOICES)}")
    if calibration not in CALIBRATIONS:
        raise UserError(f"calibration = {calibration!r}: allowed are {', '.join(CALIBRATIONS)}")
    ab = fit_platt(val, y_val) if calibration == "platt" else None
    v = apply_platt(val, ab) if ab is not None else val
    pick = ascend(v, y_val, start)[0] if choice == "val-ascent" else list(start)
    return pick, ab
