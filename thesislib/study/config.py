"""The run config: every knob of a run, strict, with the thesis's baseline as defaults.

One `RunConfig` flows from a params YAML to a run directory to a result row. Unknown keys and
values of the wrong type or outside the allowed set are errors that list what is allowed.
Fields split into two groups: TRAINING fields determine the trained model (and, with the data's
content hash, the run directory); EVALUATION fields determine how it is scored, and a run is
scored again for new evaluation settings without being retrained.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
from dataclasses import dataclass, fields
from typing import TYPE_CHECKING, Any

from thesislib.explain import LAYERS, METHODS
from thesislib.models import NORMS, STEMS, cam_grid, pooled_dim, scaled_precode_k, stage_stem
from thesislib.metrics.registry import SETS
from thesislib.references import REFERENCES
from thesislib.train import OPTIMIZERS, PENALTIES

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["RunConfig", "EvalSpec", "ConfigError", "TRAINING", "EVALUATION", "SEMANTICS", "EVAL_SEMANTICS", "precode_dims"]

# Bump SEMANTICS whenever what a stored run means changes (initialisation, model, loss, checkpoint
# choice, what done.json/history.csv hold), and EVAL_SEMANTICS whenever what a stored evaluation
# means changes (metrics, explainers, references): both are hashed into run_id / eval_id, so runs
# cached by older code are never read as if the new code had made them.
# 2: same init for every norm, PRECODE k scaled with d, PRECODE val loss with beta*KL,
#    done.json's `learned`, reference maps scored with the explainers.
SEMANTICS = 2
EVAL_SEMANTICS = 2

STAGE_STEM = "stage"  # stem_channels in settings: a stem as wide as the first stage's output


def _stage_stem(values: dict[str, Any], source: str) -> int | None:
    """`stem_channels: stage` for these settings' depth and width (their defaults where unset)."""
    defaults = {f.name: f.default for f in fields(RunConfig)}
    depth, width = (values.get(k, defaults[k]) for k in ("depth", "width"))
    try:
        return stage_stem(depth, width)
    except (TypeError, ValueError) as err:
        raise ConfigError(f"{source}: stem_channels: 'stage' needs a valid depth and width ({err})") from None


class ConfigError(ValueError):
    """A run config that cannot be used; the message names the key, what was found and what is allowed."""


@dataclass(frozen=True)
class RunConfig:
    """One training run and how it is evaluated. Defaults are the thesis's baseline (Table 5.5)."""

    # data
    data: str | None = None  # LAG-layout folder; None: $THESISLIB_DATA or the embedded synthetic set
    input_size: int = 224
    split: tuple[float, float, float] | str = (0.6, 0.2, 0.2)  # train/val/test, or "thesis"
    split_seed: int = 0
    train_fraction: float = 1.0  # seeded, stratified share of the training split used (val, test unchanged)
    skip_corrupt: bool = False  # leave out image/map pairs with an unreadable file (warned, counted) instead of failing
    # model
    depth: int = 50
    width: float = 1.0
    stem: str = "imagenet"
    # the stem convolution's output channels; None: the first stage's (64 * width); in settings also
    # "stage": as wide as the first stage's output (`thesislib.models.stage_stem`), resolved by from_dict
    stem_channels: int | None = None
    norm: str = "none"
    groups: int = 32
    dropout: float = 0.0
    precode_k: int | None = None
    precode_beta: float = 1e-3
    # optimisation
    penalty: str = "none"
    penalty_lambda: float = 0.0
    epochs: int = 100
    batch_size: int = 256
    lr: float = 1e-3
    warmup_steps: int = 0  # the learning rate rises linearly from lr/warmup_steps to lr over these optimiser steps
    optimizer: str = "adam"  # adam | sgd (momentum 0.9) | rmsprop
    seed: int = 0
    shuffle_labels: bool = False  # train on a seeded permutation of the training labels (data randomisation)
    # explainability tracked during training (RQ2), on the validation split
    track_every: int = 0
    track_method: str = "gradcam"
    track_images: int | None = 64
    # evaluation
    methods: tuple[str, ...] = ("cam", "gradcam", "gradcam++", "scorecam")
    references: tuple[str, ...] = REFERENCES  # reference maps scored like explainers; () for none
    eval_split: str = "test"
    target: str = "predicted"
    eval_images: int | None = None
    deletion_steps: int = 0
    layer: str = "layer4"  # the stage explainers read (CAM: layer4 only)
    road_percentiles: tuple[float, ...] = ()  # ROAD at these percentiles (pytorch-grad-cam's meaning); () off
    threshold_free: bool = False  # rank accuracy, top-k intersection, pixel AUROC, IoU at other thresholds
    metric_sets: tuple[str, ...] = ()  # named metric sets off by default that are also computed (metrics.SETS)

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            if isinstance(value, list):
                value = tuple(value)
            if f.name in _FLOATS and isinstance(value, int) and not isinstance(value, bool):
                value = float(value)  # 1 and 1.0 must hash alike
            if f.name == "road_percentiles" and isinstance(value, tuple):  # [80] and [80.0] must hash alike
                value = tuple(float(v) if isinstance(v, int) and not isinstance(v, bool) else v for v in value)
            if f.name == "split" and isinstance(value, tuple):
                value = tuple(float(v) if isinstance(v, int) and not isinstance(v, bool) else v for v in value)
            object.__setattr__(self, f.name, value)
        self._validate()

    # -- construction -------------------------------------------------------------------------
    @classmethod
    def from_dict(cls, values: dict[str, Any], *, source: str = "config") -> "RunConfig":
        """Build from a mapping; `source` (e.g. a file name) prefixes error messages."""
        if not isinstance(values, dict):
            raise ConfigError(f"{source}: expected a mapping of run settings, found {type(values).__name__}")
        allowed = [f.name for f in fields(cls)]
        unknown = sorted(set(values) - set(allowed))
        if unknown:
            raise ConfigError(f"{source}: unknown key(s) {', '.join(map(repr, unknown))}; allowed keys: {', '.join(allowed)}")
        if values.get("stem_channels") == STAGE_STEM:
            values = {**values, "stem_channels": _stage_stem(values, source)}
        try:
            return cls(**values)
        except ConfigError as err:
            raise ConfigError(f"{source}: {err}") from None

    def replace(self, **changes) -> "RunConfig":
        """A copy with `changes` (settings as from_dict reads them: `stem_channels: stage` is resolved
        for the copy's depth and width)."""
        return self.from_dict({**self.to_dict(), **changes})

    def to_dict(self) -> dict[str, Any]:
        out = dataclasses.asdict(self)
        return {k: list(v) if isinstance(v, tuple) else v for k, v in out.items()}

    # -- identity -----------------------------------------------------------------------------
    def training_dict(self) -> dict[str, Any]:
        """The training fields, without those that cannot matter (groups without GroupNorm, ...)."""
        out = {k: v for k, v in self.to_dict().items() if k in TRAINING}
        if self.norm != "group":
            del out["groups"]
        if self.precode_k is None:
            del out["precode_beta"]
        else:  # the bottleneck is drawn after the rest of the network (paired with the baseline by seed)
            out["precode_init"] = "last"
        if self.penalty == "none":
            del out["penalty_lambda"]
        if not self.track_every:
            del out["track_method"], out["track_images"]
        # added after runs existed: at their defaults they stay out, so those runs keep their ids
        if self.optimizer == "adam":
            del out["optimizer"]
        if self.train_fraction == 1.0:
            del out["train_fraction"]
        if not self.warmup_steps:
            del out["warmup_steps"]
        if self.stem_channels is None:
            del out["stem_channels"]
        if not self.skip_corrupt:
            del out["skip_corrupt"]
        if not self.shuffle_labels:
            del out["shuffle_labels"]
        else:
            # what a shuffled-label run keeps changed (the last epoch, not the epoch that best fits
            # the true labels; `thesislib.train.train`'s keep): only those runs change id
            out["checkpoint"] = "last epoch"
        return out

    def evaluation_dict(self) -> dict[str, Any]:
        """The evaluation settings that the stored numbers depend on: `EvalSpec.evaluation_dict` of
        `eval_spec` (methods and references excluded)."""
        return self.eval_spec.evaluation_dict()

    @property
    def eval_spec(self) -> "EvalSpec":
        """The EVALUATION fields as one `EvalSpec`: what every caller that scores or explains this
        run's model takes whole."""
        return EvalSpec(**{k: getattr(self, k) for k in EVALUATION})

    def run_id(self, data_fingerprint: str) -> str:
        """Hash of the training fields and SEMANTICS, with the data identified by its content, not its path."""
        key = {**self.training_dict(), "data": data_fingerprint, "semantics": SEMANTICS}
        return _digest(key)

    def eval_id(self) -> str:
        """Hash of the evaluation settings and EVAL_SEMANTICS (methods and references excluded: each
        is stored on its own): `EvalSpec.eval_id` of `eval_spec`."""
        return self.eval_spec.eval_id()

    @property
    def scored_ids(self) -> tuple[str, ...]:
        """The ids stored per run and evaluation: the methods, then the reference maps."""
        return tuple(self.methods) + tuple(self.references)

    @property
    def model_name(self) -> str:
        return f"resnet{self.depth}"

    def model_kwargs(self) -> dict[str, Any]:
        return dict(norm=self.norm, groups=self.groups, width=self.width, stem=self.stem, dropout=self.dropout,
                    precode_k=self.precode_k, precode_beta=self.precode_beta, stem_channels=self.stem_channels)

    # -- validation ---------------------------------------------------------------------------
    def _validate(self) -> None:
        def fail(key: str, expected: str) -> None:
            raise ConfigError(f"{key}: expected {expected}, found {getattr(self, key)!r}")

        def integer(key: str, lo: int, optional: bool = False) -> None:
            v = getattr(self, key)
            if optional and v is None:
                return
            if isinstance(v, bool) or not isinstance(v, int) or v < lo:
                fail(key, f"an integer >= {lo}" + (" or null" if optional else ""))

        def number(key: str, lo: float, hi: float, hi_open: bool = False) -> None:
            v = getattr(self, key)
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) \
                    or v < lo or v > hi or (hi_open and v == hi):
                hint = ""
                if isinstance(v, str) and _is_float(v):  # PyYAML reads 1e-3 (no dot) as text
                    hint = f" (YAML reads {v} as text: write it with a dot, e.g. {float(v):.1e})"
                fail(key, f"a number in [{lo}, {hi}{')' if hi_open else ']'}{hint}")

        def choice(key: str, options) -> None:
            if getattr(self, key) not in options:
                fail(key, "one of " + ", ".join(map(str, options)))

        if self.data is not None and not isinstance(self.data, str):
            fail("data", "a folder path or null")
        integer("input_size", 16)
        if self.split != "thesis":
            if not (isinstance(self.split, tuple) and len(self.split) == 3
                    and all(isinstance(v, (int, float)) and not isinstance(v, bool) and v > 0 for v in self.split)
                    and abs(sum(self.split) - 1) < 1e-6):
                fail("split", "'thesis' or three positive fractions [train, val, test] summing to 1")
        integer("split_seed", 0)
        if not isinstance(self.skip_corrupt, bool):
            fail("skip_corrupt", "true or false")
        f = self.train_fraction
        if isinstance(f, bool) or not isinstance(f, (int, float)) or not 0 < f <= 1:
            fail("train_fraction", "a number in (0, 1]: the share of the training split to train on")
        choice("depth", (18, 34, 50))
        number("width", 1 / 64, 4)
        choice("stem", STEMS)
        v = self.stem_channels
        if v is not None and (isinstance(v, bool) or not isinstance(v, int) or v < 1):
            fail("stem_channels", f"an integer >= 1, null (the first stage's width) or {STAGE_STEM!r} (as wide as "
                 "the first stage's output)")
        choice("norm", NORMS)
        integer("groups", 1)
        number("dropout", 0, 1, hi_open=True)
        integer("precode_k", 1, optional=True)
        number("precode_beta", 0, 10)
        choice("penalty", PENALTIES)
        number("penalty_lambda", 0, 10)
        integer("epochs", 1)
        integer("batch_size", 1)
        number("lr", 1e-8, 10)
        integer("warmup_steps", 0)
        choice("optimizer", OPTIMIZERS)
        integer("seed", 0)
        integer("track_every", 0)
        choice("track_method", METHODS)
        integer("track_images", 1, optional=True)
        if not isinstance(self.methods, tuple) or not self.methods or any(m not in METHODS for m in self.methods):
            fail("methods", "a non-empty list of " + ", ".join(METHODS))
        if not isinstance(self.references, tuple) or any(r not in REFERENCES for r in self.references) \
                or len(set(self.references)) != len(self.references):
            fail("references", "a list (possibly empty) of distinct names from " + ", ".join(REFERENCES))
        choice("eval_split", ("val", "test"))
        choice("target", ("predicted", "label"))
        integer("eval_images", 1, optional=True)
        integer("deletion_steps", 0)
        if not isinstance(self.shuffle_labels, bool):
            fail("shuffle_labels", "true or false")
        choice("layer", LAYERS)
        if not isinstance(self.threshold_free, bool):
            fail("threshold_free", "true or false")
        if not isinstance(self.metric_sets, tuple) or any(s not in SETS for s in self.metric_sets):
            fail("metric_sets", "a list (possibly empty) of metric sets from " + ", ".join(SETS))
        if not isinstance(self.road_percentiles, tuple) or any(
                isinstance(v, bool) or not isinstance(v, (int, float)) or not 0 < v < 100 for v in self.road_percentiles):
            fail("road_percentiles", "a list (possibly empty) of percentiles in (0, 100), e.g. [80]")
        if self.layer != "layer4" and self.methods == ("cam",):
            fail("methods", f"a method other than 'cam' at {self.layer} (CAM is defined at layer4 only)")
        if self.penalty == "none" and self.penalty_lambda:
            fail("penalty_lambda", "0 when penalty is 'none' (set penalty to l1 or l2)")
        grid = cam_grid(self.stem, self.input_size)
        if grid < 4:
            raise ConfigError(f"input_size: {self.input_size} px with the {self.stem!r} stem gives a {grid}x{grid} "
                              f"CAM grid at layer4; expected at least 4x4 (use a larger input_size or the "
                              f"'compact' or 'cifar' stem)")
        if self.norm == "group":
            g = self.groups * self.width
            if abs(g - round(g)) > 1e-9 or round(g) < 1:
                raise ConfigError(f"groups: {self.groups} groups at width {self.width} give {g:g} groups; "
                                  "expected groups * width to be a whole number >= 1")


TRAINING = ("input_size", "split", "split_seed", "depth", "width", "stem", "stem_channels", "norm", "groups", "dropout",
            "precode_k", "precode_beta", "penalty", "penalty_lambda", "epochs", "batch_size", "lr", "warmup_steps", "seed",
            "track_every", "track_method", "track_images", "optimizer", "train_fraction", "skip_corrupt", "shuffle_labels")
EVALUATION = ("methods", "references", "eval_split", "target", "eval_images", "deletion_steps", "layer",
              "road_percentiles", "threshold_free", "metric_sets")


@dataclass(frozen=True)
class EvalSpec:
    """How a run's model is scored: the EVALUATION fields of a `RunConfig` (`RunConfig.eval_spec`),
    taken whole by every caller that scores or explains it (`thesislib.study.compute_one`,
    `thesislib.shortcut.cross_evaluate`, `thesislib.study.mean_maps`, `Grid.layer_results`), so a
    new evaluation field reaches them all. Values are checked where the spec comes from
    (`RunConfig`) and again by `thesislib.evaluation.evaluate`.

    Fields: as RunConfig's of the same names. `eval_split` picks the split's part (`data_of`);
    the others are `evaluate`'s arguments (`evaluate_kwargs`), of which those that decide the
    maps themselves are `map_kwargs`.
    """

    methods: tuple[str, ...]
    references: tuple[str, ...]
    eval_split: str
    target: str
    eval_images: int | None
    deletion_steps: int
    layer: str
    road_percentiles: tuple[float, ...]
    threshold_free: bool
    metric_sets: tuple[str, ...]

    def __post_init__(self) -> None:
        for name in ("methods", "references", "road_percentiles", "metric_sets"):
            value = getattr(self, name)
            if isinstance(value, list):
                object.__setattr__(self, name, tuple(value))

    def replace(self, **changes: Any) -> "EvalSpec":
        """A copy with `changes` (EvalSpec field -> value), e.g. the methods still to be scored.

        Raises:
            ConfigError: a change names no EvalSpec field (listing the fields).
        """
        unknown = sorted(set(changes) - set(EVALUATION))
        if unknown:
            raise ConfigError(f"EvalSpec.replace: unknown field(s) {', '.join(map(repr, unknown))}; "
                              f"expected some of {', '.join(EVALUATION)}")
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        """field -> value, tuples as lists (as `RunConfig.to_dict` writes them)."""
        return {f.name: list(v) if isinstance(v, tuple) else v
                for f in fields(self) for v in [getattr(self, f.name)]}

    def evaluation_dict(self) -> dict[str, Any]:
        """The settings that the stored numbers depend on (methods and references excluded: each is
        stored on its own; settings added after evaluations existed only where they differ from
        their defaults, so those evaluations keep their ids)."""
        out = {k: v for k, v in self.to_dict().items() if k not in ("methods", "references")}
        if self.layer == "layer4":
            del out["layer"]
        if not self.road_percentiles:
            del out["road_percentiles"]
        if not self.threshold_free:
            del out["threshold_free"]
        if not self.metric_sets:
            del out["metric_sets"]
        return out

    def eval_id(self) -> str:
        """Hash of `evaluation_dict` and EVAL_SEMANTICS: the folder name of these settings' scores
        in a run directory."""
        return _digest({**self.evaluation_dict(), "semantics": EVAL_SEMANTICS})[:8]

    def data_of(self, split: Any) -> Any:
        """The part of `split` (a `thesislib.data.Split`) that is scored: `split[eval_split]`."""
        return split[self.eval_split]

    def map_kwargs(self) -> dict[str, Any]:
        """The keyword arguments that decide which maps are drawn, and on which images, for
        `thesislib.evaluation.mean_maps` and `thesislib.shortcut.marker_scores` (besides methods and
        prior): references, target, max_images, layer (sequences as lists)."""
        return dict(references=list(self.references), target=self.target, max_images=self.eval_images,
                    layer=self.layer)

    def evaluate_kwargs(self) -> dict[str, Any]:
        """Every keyword argument of `thesislib.evaluation.evaluate` that the spec sets (besides
        methods and prior): `map_kwargs` plus deletion_steps, road_percentiles, threshold_free,
        metric_sets."""
        return dict(self.map_kwargs(), deletion_steps=self.deletion_steps,
                    road_percentiles=list(self.road_percentiles), threshold_free=self.threshold_free,
                    metric_sets=list(self.metric_sets))

    def evaluate(self, model: Any, data: Any, *, prior: Any = None, batch_size: int = 32) -> "pd.DataFrame":
        """`thesislib.evaluation.evaluate` of `methods` with every setting of the spec; returns its
        table (one row per image x method)."""
        from thesislib.evaluation import evaluate

        return evaluate(model, data, list(self.methods), prior=prior, batch_size=batch_size, **self.evaluate_kwargs())

    def mean_maps(self, model: Any, data: Any, *, prior: Any = None, batch_size: int = 32) -> dict[str, Any]:
        """`thesislib.evaluation.mean_maps` of `methods` with the spec's `map_kwargs`; returns
        method (and reference, and "expert") -> its mean map."""
        from thesislib.evaluation import mean_maps

        return mean_maps(model, data, list(self.methods), prior=prior, batch_size=batch_size, **self.map_kwargs())


_FLOATS = ("width", "dropout", "precode_beta", "penalty_lambda", "lr", "train_fraction")


def precode_dims(config: RunConfig) -> tuple[int, int | None]:
    """(d, k): the pooled dimension of the config's model and its PRECODE bottleneck size
    (the nominal `precode_k` scaled by d / 2048, see `thesislib.models.scaled_precode_k`); k is
    None without PRECODE."""
    d = pooled_dim(config.depth, config.width)
    return d, (scaled_precode_k(config.precode_k, d) if config.precode_k else None)


def _is_float(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def _digest(obj: Any) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()[:12]
