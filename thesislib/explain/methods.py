"""Methods: one record per explainer (`Method`), in `REGISTRY`; every list of methods derives from it.

A new explainer is one record here (and, where pytorch-grad-cam has no class for it, its class in
`thesislib.explain.library`): METHODS, LABELS, CLASS_AGNOSTIC, GRADIENT_METHODS, which methods share
`explain_all`'s one pass, and the library class `Explainer` builds all read the records.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["Method", "REGISTRY", "FAMILIES", "LAYERS", "METHODS", "LABELS", "CLASS_AGNOSTIC", "GRADIENT_METHODS",
           "ONE_PASS", "NotApplicable", "check_layer", "record", "library_class"]

LAYERS = ("layer1", "layer2", "layer3", "layer4")
"""Stages an explainer can read (default layer4); CAM only at layer4."""

FAMILIES = ("cam", "gradient", "score", "eigen")
"""How a method weighs the layer's channels: the linear head's weights (CAM), the layer's
gradients, the model's score of each channel's masked input, or the activations' first principal
component."""


class NotApplicable(ValueError):
    """The method is not defined for this model (CAM on a model without a linear head)."""


@dataclass(frozen=True)
class Method:
    """What an explainer is, beside what computes it.

    key: its name in configs and tables. label: how tables and figures name it. family: one of
    FAMILIES. class_agnostic: its map does not depend on the explained class. library: the
    pytorch-grad-cam class it is (or derives from), None for ours alone (CAM). ours: the name of
    our subclass of it in `thesislib.explain.library` used by default, None for the library's own.
    stock: `Explainer(..., fast=False)` may use the library's own class instead of `ours`.
    layers: the stages it is defined at.
    """

    key: str
    label: str
    family: str
    class_agnostic: bool = False
    library: str | None = None
    ours: str | None = None
    stock: bool = False
    layers: tuple[str, ...] = LAYERS

    def __post_init__(self) -> None:
        if self.family not in FAMILIES:
            raise ValueError(f"Method {self.key!r}: family: expected one of {', '.join(FAMILIES)}, "
                             f"found {self.family!r}")

    @property
    def one_pass(self) -> bool:
        """It reads only the layer's activations (and gradients): `explain_all` shares one pass."""
        return self.family != "score"

    @property
    def gradient(self) -> bool:
        """It needs the layer's gradients (a backward pass)."""
        return self.family == "gradient"


REGISTRY: dict[str, Method] = {m.key: m for m in (
    Method("cam", "CAM", "cam", layers=("layer4",)),
    Method("gradcam", "Grad-CAM", "gradient", library="GradCAM"),
    Method("gradcam++", "Grad-CAM++", "gradient", library="GradCAMPlusPlus"),
    Method("scorecam", "Score-CAM", "score", library="ScoreCAM", ours="FastScoreCAM", stock=True),
    Method("xgradcam", "XGrad-CAM", "gradient", library="XGradCAM"),
    Method("layercam", "Layer-CAM", "gradient", library="LayerCAM"),
    Method("hirescam", "HiResCAM", "gradient", library="HiResCAM"),
    Method("eigencam", "EigenCAM", "eigen", class_agnostic=True, library="EigenCAM", ours="SignedEigenCAM"),
    Method("scorecam-paper", "Score-CAM (paper)", "score", library="ScoreCAM", ours="PaperScoreCAM"),
)}

METHODS = tuple(REGISTRY)
LABELS = {k: m.label for k, m in REGISTRY.items()}
CLASS_AGNOSTIC = frozenset(k for k, m in REGISTRY.items() if m.class_agnostic)
"""Methods whose map does not depend on the explained class."""
GRADIENT_METHODS = tuple(k for k, m in REGISTRY.items() if m.gradient)
"""The methods that weigh the layer's activations by its gradients."""
ONE_PASS = frozenset(k for k, m in REGISTRY.items() if m.one_pass)
"""The methods `explain_all` serves from one shared forward (and backward) pass."""


def record(key: str) -> Method:
    """The record of `key`; a ValueError naming the methods if there is none."""
    if key not in REGISTRY:
        raise ValueError(f"method: expected one of {', '.join(METHODS)}, found {key!r}")
    return REGISTRY[key]


def check_layer(layer: str) -> None:
    if layer not in LAYERS:
        raise ValueError(f"layer: expected one of {', '.join(LAYERS)}, found {layer!r}")


def library_class(key: str, fast: bool = True) -> type:
    """The pytorch-grad-cam class (or our subclass of it) that explains `key`; with fast=False the
    library's own where the record allows it (`Method.stock`)."""
    import pytorch_grad_cam as pgc

    from thesislib.explain.library import derived

    m = record(key)
    if m.library is None:
        raise ValueError(f"method: {key!r} has no library class (it is computed by thesislib.explain alone)")
    if m.ours is None or (m.stock and not fast):
        return getattr(pgc, m.library)
    return derived()[m.ours]
