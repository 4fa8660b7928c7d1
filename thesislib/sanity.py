"""Sanity checks (Adebayo et al. 2018): do the maps depend on what the model learned?

Model randomisation: the trained model's parameters are re-initialised top-down and cumulatively,
one stage at a time (STAGES: fc, then layer4, layer3, layer2, layer1, stem), and each method's
maps of the same images, for the same (originally predicted) classes, are compared with the
original maps per image by Spearman's rank correlation, SSIM and the similarity of their
histograms of oriented gradients (HOG), the three measures of Adebayo et al. A method whose maps
depend on the learned parameters changes as the stages go random. `findings` states, per method,
what the randomised maps show once fc and layer4 are random (the rule is in its docstring):
"passes", "insensitive" (the maps barely change), "inverted" (the same structure with the sign
flipped: as dependent on the randomisation's absence as an unchanged map, so not a pass),
"structure kept" (|rho| high, the sign varying by image) or "mostly constant" (no map left to
compare, so the correlations say nothing).

Re-initialisation uses the model's own initialisation (`thesislib.models.ResNet`: convolutions
Kaiming-normal, fan out; norm layers weight 1 and bias 0, running statistics reset; the linear
layers of the head PyTorch's default), seeded per seed and stage, with one exception: the last
convolution of every residual branch, which the model starts at zero so that each block starts as
the identity, is drawn like every other convolution, since a zero branch would leave its stage
untouched.

Data randomisation (a model trained on shuffled labels) is a run setting
(`RunConfig.shuffle_labels`), explained and scored like every other run; such a run keeps its last
epoch's weights (`thesislib.train.train`'s `keep`), and `shuffled_fit` shows from the histories how
far it fitted the shuffled labels.
"""

from __future__ import annotations

import copy
import hashlib
import json
import math
from typing import TYPE_CHECKING, Iterator, Sequence

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from torch import nn

if TYPE_CHECKING:
    from thesislib.study.grids import Grid

from thesislib import explain as X
from thesislib.metrics import average_ranks, in_set, registered

__all__ = ["STAGES", "FLAG_AFTER", "FLAG_SPEARMAN", "FLAG_CONSTANT", "FINDINGS", "SSIM_WINDOW", "HOG_OPTIONS",
           "stage_modules", "reinitialise", "cascade", "rank_correlation", "ssim", "hog_similarity",
           "model_randomisation", "for_run", "for_grid", "findings", "stage_labels", "shuffled_fit"]

STAGES = ("fc", "layer4", "layer3", "layer2", "layer1", "stem")
"""Randomised top-down, cumulatively: "fc" is the head (PRECODE's bottleneck with it), "stem" the first convolution."""
FLAG_AFTER = "layer4"
FLAG_SPEARMAN = 0.5
"""The rank correlation (signed median, or median of |rho|) above which maps count as unchanged."""
FLAG_CONSTANT = 0.5
"""The share of constant randomised maps above which a method has "no map left to compare"."""
FINDINGS = {
    "constant": "mostly constant: no map left to compare",
    "insensitive": "insensitive: maps barely change",
    "inverted": "inverted: same structure, sign flipped",
    "mixed": "structure kept: sign varies by image",
    "passes": "passes",
}
"""The values of `findings`' "finding" column (see its docstring for the rule)."""
SSIM_WINDOW = 7  # scikit-image's default
HOG_OPTIONS = dict(orientations=9, pixels_per_cell=(8, 8), cells_per_block=(3, 3), block_norm="L2-Hys")
"""skimage.feature.hog's settings (its defaults) for `hog_similarity`: maps need at least 24 x 24 px."""


def _check_stages(stages: Sequence[str]) -> list[str]:
    stages = list(stages)
    unknown = [s for s in stages if s not in STAGES]
    if unknown or not stages:
        raise ValueError(f"stages: expected some of {', '.join(STAGES)}, found {stages!r}")
    return stages


def stage_modules(model: nn.Module, stage: str) -> list[nn.Module]:
    """The modules a stage re-initialises: "fc" the head (precode and fc), "stem" conv1 and bn1, else the stage."""
    _check_stages([stage])
    if stage == "fc":
        names = ["precode", "fc"]
    elif stage == "stem":
        names = ["conv1", "bn1"]
    else:
        names = [stage]
    found = [getattr(model, n, None) for n in names]
    required = found if stage != "fc" else found[1:]  # a head without PRECODE has no `precode`
    if any(m is None for m in required):
        raise TypeError(f"model: expected a ResNet with modules {', '.join(names)}, found {type(model).__name__}")
    return [m for m in found if m is not None]


@torch.no_grad()
def reinitialise(modules: Sequence[nn.Module], generator: torch.Generator) -> None:
    """Draw every parameter of `modules` afresh, in place, as the model's initialisation does (see the
    module docstring: residual branches included)."""
    for module in modules:
        for m in module.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu", generator=generator)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
            elif isinstance(m, nn.Linear):  # nn.Linear.reset_parameters, seeded
                nn.init.kaiming_uniform_(m.weight, a=math.sqrt(5), generator=generator)
                if m.bias is not None:
                    bound = 1 / math.sqrt(m.weight.shape[1]) if m.weight.shape[1] else 0.0
                    nn.init.uniform_(m.bias, -bound, bound, generator=generator)
            elif isinstance(m, (nn.BatchNorm2d, nn.GroupNorm)):
                if m.weight is not None:
                    nn.init.ones_(m.weight)
                    nn.init.zeros_(m.bias)
                if isinstance(m, nn.BatchNorm2d):
                    m.reset_running_stats()


def cascade(model: nn.Module, stages: Sequence[str] = STAGES, seed: int = 0) -> Iterator[tuple[str, nn.Module]]:
    """(stage, a copy of the model with this stage and every one before it in `stages` random).

    The copy is one model randomised further at each step (do not keep a yielded model past the
    next step). Stage i draws from a generator seeded with (seed, i), so a stage gets the same
    weights whichever step reads it.
    """
    stages = _check_stages(stages)
    randomised = copy.deepcopy(model).eval()
    for i, stage in enumerate(stages):
        reinitialise(stage_modules(randomised, stage), torch.Generator().manual_seed(1000 * seed + i))
        yield stage, randomised


def rank_correlation(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Spearman's rank correlation of each pair of maps (scipy.stats.spearmanr: average ranks for ties).

    Args:
        a, b: float [N, H, W].
    Returns:
        float32 [N]; 0 where either map is constant (scipy: NaN), as a constant map keeps nothing
        of the other's order.
    """
    if a.shape != b.shape or a.dim() != 3:
        raise ValueError(f"a, b: expected two batches of maps [N, H, W] of one shape, found {tuple(a.shape)} "
                         f"and {tuple(b.shape)}")
    ra, rb = average_ranks(a.flatten(1).double()), average_ranks(b.flatten(1).double())
    ra = ra - ra.mean(1, keepdim=True)
    rb = rb - rb.mean(1, keepdim=True)
    den = (ra.norm(dim=1) * rb.norm(dim=1))
    r = (ra * rb).sum(1) / den.clamp_min(1e-300)
    return torch.where(den > 0, r, torch.zeros_like(r)).float()


def ssim(a: torch.Tensor, b: torch.Tensor, *, data_range: float = 1.0, win_size: int = SSIM_WINDOW) -> torch.Tensor:
    """Mean structural similarity of each pair of maps, as skimage.metrics.structural_similarity
    computes it by default (uniform win_size x win_size window, K1 = 0.01, K2 = 0.03, sample
    covariances, the mean over windows that lie inside the image).

    Args:
        a, b: float [N, H, W]; data_range: the maps' value range (1 for maps in [0, 1]).
    Returns:
        float32 [N] in [-1, 1].
    """
    if a.shape != b.shape or a.dim() != 3:
        raise ValueError(f"a, b: expected two batches of maps [N, H, W] of one shape, found {tuple(a.shape)} "
                         f"and {tuple(b.shape)}")
    if min(a.shape[1:]) < win_size:
        raise ValueError(f"a: expected maps of at least {win_size} x {win_size} px, found {tuple(a.shape[1:])}")
    x, y = a[:, None].double(), b[:, None].double()

    def mean(t: torch.Tensor) -> torch.Tensor:  # windows inside the image = skimage's filter, cropped
        return F.avg_pool2d(t, win_size, stride=1)

    cov = win_size**2 / (win_size**2 - 1)
    ux, uy = mean(x), mean(y)
    vx = cov * (mean(x * x) - ux * ux)
    vy = cov * (mean(y * y) - uy * uy)
    vxy = cov * (mean(x * y) - ux * uy)
    c1, c2 = (0.01 * data_range) ** 2, (0.03 * data_range) ** 2
    s = ((2 * ux * uy + c1) * (2 * vxy + c2)) / ((ux * ux + uy * uy + c1) * (vx + vy + c2))
    return s.flatten(1).mean(1).float()


def hog_similarity(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Pearson correlation of the HOG descriptors of each pair of maps, as Adebayo et al. compare
    original and randomised maps: `skimage.feature.hog` (HOG_OPTIONS) of each map, then the
    correlation coefficient of the two descriptors.

    Args:
        a, b: float [N, H, W], H and W at least 3 x 8 px (one block of HOG_OPTIONS).
    Returns:
        float32 [N] in [-1, 1]; 0 where either descriptor is constant (a constant map has no
        gradient, so its descriptor is all zero: scipy gives NaN), as for `rank_correlation`.
    """
    from skimage.feature import hog

    if a.shape != b.shape or a.dim() != 3:
        raise ValueError(f"a, b: expected two batches of maps [N, H, W] of one shape, found {tuple(a.shape)} "
                         f"and {tuple(b.shape)}")
    side = HOG_OPTIONS["pixels_per_cell"][0] * HOG_OPTIONS["cells_per_block"][0]
    if min(a.shape[1:]) < side:
        raise ValueError(f"a: expected maps of at least {side} x {side} px for HOG, found {tuple(a.shape[1:])}")
    out = torch.zeros(len(a), dtype=torch.float32)
    for i, (x, y) in enumerate(zip(a.detach().double().cpu().numpy(), b.detach().double().cpu().numpy())):
        hx, hy = hog(x, **HOG_OPTIONS), hog(y, **HOG_OPTIONS)
        hx, hy = hx - hx.mean(), hy - hy.mean()
        den = float(np.sqrt((hx * hx).sum() * (hy * hy).sum()))
        out[i] = float((hx * hy).sum() / den) if den > 0 else 0.0
    return out


def model_randomisation(model: nn.Module, images: torch.Tensor, methods: Sequence[str], *,
                        targets: torch.Tensor | None = None, stages: Sequence[str] = STAGES,
                        seeds: Sequence[int] = (0,), layer: str = "layer4", batch_size: int = 32) -> pd.DataFrame:
    """The cascading model-randomisation test on a batch of images.

    Args:
        model: the trained classifier (left unchanged: the cascade works on copies).
        images: float [N, 3, H, W], normalised.
        methods: explainers (`thesislib.explain.METHODS`); those not applicable are left out.
        targets: the classes explained, kept through the cascade; default the trained model's
            predictions.
        stages: the cascade's order (default STAGES).
        seeds: randomisation seeds; each gives its own cascade.
        layer: the stage the explainers read.
        batch_size: images per explainer call.

    Returns:
        One row per seed x stage x method x image: seed, stage (the last stage randomised; every
        one before it is random too), step (1 for the first stage), method, method_label, image
        (its position in `images`), spearman, abs_spearman (|spearman|), ssim, hog
        (`hog_similarity`), constant (the randomised map is constant).
    """
    methods = list(methods)
    model.eval()
    if targets is None:
        with torch.no_grad():
            targets = torch.cat([model(images[s:s + batch_size]).argmax(1) for s in range(0, len(images), batch_size)])

    def maps_of(m: nn.Module) -> dict[str, torch.Tensor]:
        parts = [X.explain_all(m, images[s:s + batch_size], methods, targets=targets[s:s + batch_size], layer=layer)
                 for s in range(0, len(images), batch_size)]
        return {k: torch.cat([p[k] for p in parts]) for k in parts[0]} if parts else {}

    original = maps_of(model)
    compare = _comparisons()
    rows = []
    for seed in seeds:
        for step, (stage, randomised) in enumerate(cascade(model, stages, seed), start=1):
            for method, maps in maps_of(randomised).items():
                values = {name: fn(original[method], maps) for name, fn in compare.items()}
                constant = maps.flatten(1).amax(1) == 0
                for i in range(len(images)):
                    row = dict(seed=int(seed), stage=stage, step=step, method=method, method_label=X.LABELS[method],
                               image=i)
                    for name, v in values.items():
                        row[name] = float(v[i])
                        if name == "spearman":
                            row["abs_spearman"] = abs(float(v[i]))
                    rows.append({**row, "constant": bool(constant[i])})
    columns = ["seed", "stage", "step", "method", "method_label", "image"]
    for name in compare:
        columns += [name, "abs_spearman"] if name == "spearman" else [name]
    return pd.DataFrame(rows, columns=[*columns, "constant"])


# the randomisation metrics of the registry: (original maps, randomised maps) [N, H, W] -> [N]
_COMPARE = {"spearman": rank_correlation, "ssim": ssim, "hog": hog_similarity}


def _comparisons() -> dict:
    """Registry name -> its comparison, for every randomisation metric (`thesislib.metrics.REGISTRY`)."""
    names = [m.name for m in registered("randomisation")]
    missing = [n for n in names if n not in _COMPARE]
    if missing:
        raise ValueError(f"randomisation metrics {missing} are registered but have no comparison in thesislib.sanity")
    return {n: _COMPARE[n] for n in names}


SANITY_VERSION = 2  # bump when what a cached sanity table means changes (2: HOG and |rho| columns)


def for_run(run, methods: Sequence[str] | None = None, *, images: int = 16, seeds: Sequence[int] = (0,),
            stages: Sequence[str] = STAGES) -> pd.DataFrame:
    """`model_randomisation` of a finished run on the first `images` of its scored subset (the same
    seeded stratified subset as its evaluation, predicted classes), cached in the run's folder.

    Args:
        run: a trained `thesislib.study.Run`.
        methods: default the run config's methods.
    Returns:
        `model_randomisation`'s rows with `image` the image's name.
    """
    from thesislib.atomic import atomic_write_text
    from thesislib.evaluation import stratified_subset

    if not run.trained:
        raise ValueError(f"run: {run.run_id} is not trained yet (run the grid first)")
    methods = list(methods or run.config.methods)
    stages = _check_stages(stages)
    cfg = run.config
    key = dict(methods=methods, images=images, seeds=list(seeds), stages=stages, layer=cfg.layer,
               eval_split=cfg.eval_split, eval_images=cfg.eval_images, version=SANITY_VERSION)
    digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:10]
    path = run.dir / "sanity" / f"{digest}.csv"
    if path.is_file():
        return pd.read_csv(path)
    data = run.eval_data()
    rows = stratified_subset(data.labels, cfg.eval_images)[:images]
    x, _, _ = data.batch(rows)
    df = model_randomisation(run.load_model(), x, methods, stages=stages, seeds=seeds, layer=cfg.layer)
    names = [data.names[int(i)] for i in rows]
    df["image"] = [names[i] for i in df["image"]]
    atomic_write_text(path, df.to_csv(index=False))
    return df


def for_grid(grid: "Grid", *, setting: str | None = None, family: str | None = None,
             methods: Sequence[str] | None = None, images: int = 16, seeds: Sequence[int] = (0,),
             train_seeds: Sequence[int] | None = None, stages: Sequence[str] = STAGES) -> pd.DataFrame:
    """`for_run` over the trained models of one setting of a grid (`thesislib.study.Grid`), one per
    training seed (default: every seed of that setting's rows).

    Returns:
        Its rows with family, setting, train_seed and run_id.

    Raises:
        KeyError: no row of that family and setting; the message lists the grid's settings.
    """
    rows = grid.where(family=family, setting=setting)
    fam, sett = rows.table["family"].iloc[0], rows.table["setting"].iloc[0]
    frames = []
    for train_seed in (train_seeds if train_seeds is not None else rows.seeds):
        run = rows.find(family=fam, seed=int(train_seed))
        frames.append(for_run(run, methods, images=images, seeds=seeds, stages=stages).assign(
            family=fam, setting=sett, train_seed=int(train_seed), run_id=run.run_id))
    return pd.concat(frames, ignore_index=True)


def stage_labels(stages: Sequence[str] = STAGES) -> dict[str, str]:
    """stage -> its label in the cascade: "fc", "+ layer4", ... (every stage before it is random too)."""
    return {s: s if i == 0 else f"+ {s}" for i, s in enumerate(stages)}


def findings(df: pd.DataFrame, *, after: str = FLAG_AFTER, threshold: float = FLAG_SPEARMAN,
             constant_share: float = FLAG_CONSTANT) -> pd.DataFrame:
    """Per method, what its maps show once the cascade has reached `after` (fc .. layer4 random).

    The rule, over that stage's maps (images x randomisation seeds x trained models), first that
    applies:

    1. "mostly constant: no map left to compare": more than `constant_share` of the randomised
       maps are constant (a constant map's rank correlation counts as 0, so the medians would
       call an explainer that stopped explaining a pass);
    2. "insensitive: maps barely change": the median rank correlation is above `threshold`;
    3. "inverted: same structure, sign flipped": the median rank correlation is below
       -`threshold`: the maps keep their structure upside down, which depends on the learned
       weights no less than an unchanged map (Adebayo et al. report |rho| for this reason);
    4. "structure kept: sign varies by image": the median |rho| is above `threshold` although the
       signed median is not (kept per image, flipped on some);
    5. "passes": otherwise; the randomised maps share little rank order with the originals.

    SSIM and HOG similarity are reported beside ρ and do not enter the rule.

    Args:
        df: `model_randomisation`, `for_run` or `for_grid` rows.
    Returns:
        Indexed by method label: "median ρ", "median |ρ|", "median SSIM", "median HOG", "maps"
        (images x seeds x models), "constant" (share of those maps that became constant),
        "finding" (a value of FINDINGS).
    """
    if after not in set(df["stage"]):
        raise ValueError(f"after: stage {after!r} not in the table (stages: {', '.join(dict.fromkeys(df['stage']))})")
    wanted = ("method_label", *(m.name for m in in_set("randomisation")), "constant")
    missing = [c for c in wanted if c not in df.columns]
    if missing:
        raise ValueError(f"df: expected the columns of model_randomisation, missing {', '.join(missing)} "
                         f"(found {', '.join(map(str, df.columns))})")
    part = df[df["stage"] == after].assign(abs_spearman=lambda d: d["spearman"].abs())
    g = part.groupby("method_label", sort=False)
    out = pd.DataFrame({"median ρ": g["spearman"].median().round(3), "median |ρ|": g["abs_spearman"].median().round(3),
                        "median SSIM": g["ssim"].median().round(3), "median HOG": g["hog"].median().round(3),
                        "maps": g.size(), "constant": g["constant"].mean().round(2)})
    rho, absolute, const = g["spearman"].median(), g["abs_spearman"].median(), g["constant"].mean()

    def finding(m: str) -> str:
        if const[m] > constant_share:
            return FINDINGS["constant"]
        if rho[m] > threshold:
            return FINDINGS["insensitive"]
        if rho[m] < -threshold:
            return FINDINGS["inverted"]
        if absolute[m] > threshold:
            return FINDINGS["mixed"]
        return FINDINGS["passes"]

    out["finding"] = [finding(m) for m in out.index]
    out.index.name = f"after randomising fc .. {after}"
    return out


def shuffled_fit(shuffled: pd.DataFrame, true: pd.DataFrame | None = None, *,
                 majority_share: float | None = None) -> pd.DataFrame:
    """How far models trained on shuffled labels fitted them, per training seed, from their
    histories (`Grid.histories()`): the last epoch, whose weights such a run keeps.

    Args:
        shuffled: history rows (seed, epoch, train_acc, val_acc) of the shuffled-label runs.
        true: history rows of the same architecture trained on the true labels (any seeds; those
            of `shuffled` are used), or None.
        majority_share: the training split's majority-class share (a fraction): the training
            accuracy of a model that fitted nothing; shuffling keeps the class counts.
    Returns:
        Indexed by seed: "epochs", "train acc., shuffled labels (%)" (training accuracy on the
        labels it was trained on, over the last epoch's augmented batches), "val acc., true labels
        (%)" (the kept weights on the true validation labels), and with `true` "train acc., true
        labels (%)" (the last epoch of the model trained on the true labels, same seed), with
        `majority_share` "majority share (%)".
    """
    need = {"seed", "epoch", "train_acc", "val_acc"}
    for name, df in (("shuffled", shuffled), ("true", true)):
        if df is not None and not need <= set(df.columns):
            raise ValueError(f"{name}: expected history rows with {', '.join(sorted(need))}, found columns "
                             f"{', '.join(map(str, df.columns)) or 'none'}")
    last = shuffled.sort_values("epoch").groupby("seed").last()
    out = pd.DataFrame({"epochs": last["epoch"].astype(int),
                        "train acc., shuffled labels (%)": (100 * last["train_acc"]).round(1),
                        "val acc., true labels (%)": (100 * last["val_acc"]).round(1)})
    if true is not None:
        fitted = true.sort_values("epoch").groupby("seed").last()
        out["train acc., true labels (%)"] = (100 * fitted["train_acc"].reindex(out.index)).round(1)
    if majority_share is not None:
        out["majority share (%)"] = round(100 * float(majority_share), 1)
    out.index.name = "seed"
    return out
