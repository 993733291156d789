"""Diverse source models on disjoint subsets: the inputs of the "more accurate" composition.

GradSplitter's composition gains when its source models make *different* mistakes. Models of one
architecture trained alike on small random subsets make nearly the same ones (bench part c, run
of 2026-11-29: the oracle choice over all 3^10 compositions gained only +0.88 points). Here each
source model has its own architecture (the fusion zoo's ``vgg``, ``resnet``, ``mobilenet``, all
maskable: ``modular.masks.SITES``) and its own training images.

The Fashion-MNIST training split is shuffled once (``perm_seed``) and cut in order::

    [0, reserve)                             shared: the modules' validation and training images
    [reserve + i*size, reserve + (i+1)*size) source model i's training images

so the subsets are disjoint from each other and from the images the modules are trained and
ranked on. With ``favour`` > 0 (non-IID owners: each model stronger on some classes) subset i takes
that share of its images from its favoured classes (``c % of == i``) and the rest from the others,
model after model from the shuffled images after the reserve, still disjoint (``DecomposeSettings(seed=perm_seed, val_limit + train_limit <= reserve)`` takes exactly
``[0, reserve)``: ``modular.train.dataset_tensors`` draws the same permutation). Every module is
then ranked on the same validation images, whatever its source model.

With ``dirichlet`` = alpha > 0 each subset's class mix is drawn as GradSplitter's own "more
accurate" experiment draws it (its ``_dirichlet_sample``: class proportions from a symmetric
Dirichlet(alpha), alpha 1 for CIFAR-10, scaled so the largest is 1): subset i takes
``size * p_c / sum(p)`` images of class c, every class at least 1% of the subset, drawn per model
from its own seed; the images are still taken model after model from the shuffled pool after the
reserve, so the subsets stay disjoint (GradSplitter's may overlap).

Trained networks are cached in the zoo cache folder, keyed by a hash of everything that
determines them (``fashion10__<arch>__subset<i>__<key12>.pt`` and a JSON sidecar).
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from configs.errors import UserError
from fusion import zoo as fzoo
from fusion.archs import build_arch
from fusion.tasks import get_task, task_arrays
from training import LoaderConfig, evaluate, load_dataset, make_loader, train_classifier

from .masks import list_site_archs
from .models import ModelCfg, SourceModel

CODE_VERSION = "modular-subsets-1"  # bump when training here changes what a key produces
TASK = "fashion10"


@dataclass(frozen=True)
class SubsetSpec:
    """One source model: an architecture trained on the index-th disjoint subset."""

    arch: str  # modular.masks.list_site_archs() name
    index: int  # which subset (0-based)
    size: int = 2000  # training images of the subset
    reserve: int = 2500  # images before the first subset (the modules' validation + training images)
    perm_seed: int = 100  # seed of the one shuffle every subset is cut from
    epochs: int = 4  # training epochs (AdamW, one-cycle, as the zoo)
    lr: float = 3e-3
    seed: int = 0  # initialisation and batch order
    favour: float = 0.0  # share of the subset from its favoured classes (c % of == index); 0: a plain slice
    of: int = 1  # number of source models (the favoured classes and the allocation depend on it)
    dirichlet: float = 0.0  # alpha of GradSplitter's Dirichlet class mix per subset; 0: off

    @property
    def offset(self) -> int:
        """First shuffled training image of this subset."""
        return self.reserve + self.index * self.size


def parse_archs(text: str) -> list[str]:
    """``vgg,resnet,mobilenet`` -> names, checked against the maskable architectures.

    Raises:
        UserError: an unknown name (the allowed ones listed), or an empty list.
    """
    names = [t.strip() for t in text.split(",") if t.strip()]
    allowed = list_site_archs()
    bad = [n for n in names if n not in allowed]
    if bad or not names:
        raise UserError(f"source architectures = {text!r}: {'unknown ' + bad[0] if bad else 'empty'}; allowed are a comma list "
                        f"of {', '.join(allowed)}")
    return names


def specs_for(archs: list[str], size: int = 2000, reserve: int = 2500, perm_seed: int = 100,
              epochs: int = 4, seed: int = 0, favour: float = 0.0, dirichlet: float = 0.0) -> list[SubsetSpec]:
    """One spec per architecture, the i-th on the i-th subset (an architecture may repeat)."""
    if not 0.0 <= favour < 1.0:
        raise UserError(f"favour = {favour}: allowed is a share in [0, 1)")
    if not 0.0 <= dirichlet <= 100.0:
        raise UserError(f"dirichlet = {dirichlet}: allowed is an alpha in (0, 100] (GradSplitter: 1), or 0 for off")
    if favour and dirichlet:
        raise UserError(f"favour = {favour} and dirichlet = {dirichlet}: allowed is one of the two class mixes")
    return [SubsetSpec(a, i, size, reserve, perm_seed, epochs, seed=seed, favour=favour, of=len(archs),
                       dirichlet=dirichlet) for i, a in enumerate(archs)]


def dirichlet_counts(spec: SubsetSpec, j: int, classes: int = 10) -> np.ndarray:
    """Images per class of subset ``j``: GradSplitter's Dirichlet(alpha) proportions, scaled to the max,
    then to ``spec.size`` images (redrawn while a class would get under 1% of them)."""
    rng = np.random.default_rng([spec.perm_seed, j])
    for _ in range(1000):
        p = rng.dirichlet(np.full(classes, spec.dirichlet))
        p = p / p.max()
        n = np.floor(spec.size * p / p.sum()).astype(int)
        n[int(np.argmax(p))] += spec.size - int(n.sum())
        if n.min() >= max(1, spec.size // 100):
            return n
    raise UserError(f"dirichlet = {spec.dirichlet}: no class mix with every class at >= 1% in 1000 draws; "
                    "allowed is a larger alpha")


def _groups(spec: SubsetSpec, j: int, yo: np.ndarray) -> list[tuple[np.ndarray, int, str]]:
    """Subset j's draws from the shuffled labels ``yo``: (which images, how many, what asked for them)."""
    if spec.dirichlet > 0:
        return [(yo == c, int(n), f"dirichlet = {spec.dirichlet}, class {c}")
                for c, n in enumerate(dirichlet_counts(spec, j))]
    fav, fav_n = (yo % spec.of) == j, int(round(spec.favour * spec.size))
    return [(fav, fav_n, f"favour = {spec.favour}"), (~fav, spec.size - fav_n, f"favour = {spec.favour}")]


def subset_arrays(spec: SubsetSpec) -> tuple[np.ndarray, np.ndarray]:
    """The training images (uint8 [N, 28, 28]) and labels of ``spec``'s subset."""
    if spec.favour <= 0 and spec.dirichlet <= 0:
        return task_arrays(TASK, "train", spec.size, spec.perm_seed, offset=spec.offset)
    x, y = load_dataset(get_task(TASK).dataset, "train")
    order = np.random.default_rng(spec.perm_seed).permutation(len(x))[spec.reserve:]
    used = np.zeros(len(order), bool)
    yo = y[order]
    for j in range(spec.of):  # every model's allocation in turn, so each spec computes the same split
        pick = []
        for want, n, what in _groups(spec, j, yo):
            free = np.flatnonzero(want & ~used)[:n]
            if len(free) < n:
                raise UserError(f"{what}: subset {j} needs {n} images, {len(free)} are left")
            used[free] = True
            pick.append(free)
        if j == spec.index:
            idx = order[np.sort(np.concatenate(pick))]
            return x[idx], y[idx]
    raise UserError(f"subset {spec.index}: allowed are 0..{spec.of - 1}")


def _key(spec: SubsetSpec) -> str:
    d = asdict(spec)
    if not d["dirichlet"]:
        del d["dirichlet"]  # models cached before the option existed keep their keys
    blob = json.dumps({"spec": d, "task": TASK, "code": CODE_VERSION,
                       "zoo": fzoo.CODE_VERSION, "source": fzoo._source_hash()}, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()


def subset_model(spec: SubsetSpec, cache: Path | None = None, log=print) -> SourceModel:
    """The trained source model of ``spec`` (from the cache, or trained into it)."""
    import torch

    if spec.arch not in list_site_archs():
        raise UserError(f"arch {spec.arch!r}: allowed are {', '.join(list_site_archs())}")
    cache = Path(cache) if cache else fzoo.DEFAULT_CACHE
    stem = f"{TASK}__{spec.arch}__subset{spec.index}__{_key(spec)[:12]}"
    weights, sidecar = cache / f"{stem}.pt", cache / f"{stem}.json"
    task = get_task(TASK)
    model = build_arch(spec.arch, task.num_classes, 1, spec.seed)
    if weights.is_file() and sidecar.is_file():
        try:
            model.load_state_dict(torch.load(weights, map_location="cpu", weights_only=True))
            meta = json.loads(sidecar.read_text())
        except Exception as e:  # a truncated or foreign file
            raise UserError(f"{weights}: cannot load cached weights ({str(e).splitlines()[0][:120]}); "
                            "delete it and rerun") from e
    else:
        cfg = LoaderConfig(size=32, channels=1, batch_size=128, seed=spec.seed)
        x, y = subset_arrays(spec)
        if len(x) < spec.size:
            raise UserError(f"subset {spec.index} of {spec.size} images from offset {spec.offset}: the training "
                            f"split has only {spec.offset + len(x)} images")
        xt, yt = task_arrays(task, "test", None, 0)
        res = train_classifier(model, {"train": make_loader(x, y, cfg, shuffle=True)}, spec.epochs, spec.lr,
                               seed=spec.seed, on_epoch=lambda e, m: log(f"  {spec.arch} subset {spec.index} "
                                                                        f"epoch {e}: loss {m['loss']:.3f}"))
        acc = evaluate(model, make_loader(xt, yt, cfg))
        meta = {"spec": asdict(spec), "test_accuracy": acc, "train_seconds": round(res.seconds, 1),
                "test_examples": len(yt), "code": CODE_VERSION}
        cache.mkdir(parents=True, exist_ok=True)
        torch.save(model.state_dict(), weights)
        sidecar.write_text(json.dumps(meta, indent=2) + "\n")
        log(f"  {spec.arch} subset {spec.index}: test accuracy {acc:.4f} ({res.seconds:.0f} s) -> {weights}")
    fav = (f"-fav{spec.favour:g}of{spec.of}" if spec.favour > 0 else "") + \
        (f"-dir{spec.dirichlet:g}of{spec.of}" if spec.dirichlet > 0 else "")
    res = f"-r{spec.reserve}" if spec.reserve != SubsetSpec.reserve else ""  # other subsets: another model
    name = (f"subsets/{TASK}/{spec.arch}/e{spec.epochs}-n{spec.size}-part{spec.index}{fav}{res}-p{spec.perm_seed}"
            f"-s{spec.seed}")
    return SourceModel(name=name, dataset=task.dataset, arch=spec.arch, model=model.eval(),
                       test_accuracy=meta.get("test_accuracy"),
                       cfg=ModelCfg(TASK=TASK, EPOCHS=spec.epochs, TRAIN_LIMIT=spec.size, SEED=spec.seed))
