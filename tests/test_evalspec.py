"""One evaluation spec: a run's evaluation settings (`RunConfig.eval_spec`) reach every caller whole.

Every place that scores or explains a run's model (compute_one, cross_evaluate, mean_maps,
layer_results) takes the run's `EvalSpec` whole, so a setting away from its default (a layer
other than layer4, the threshold-free metrics, ROAD) is used everywhere, and the spec leaves the
ids of runs and evaluations as they were.
"""

from __future__ import annotations

from dataclasses import fields

import pytest

from thesislib import explain as X
from thesislib import references as R
from thesislib import shortcut, study
from thesislib.study.config import EVALUATION, ConfigError, EvalSpec, RunConfig
from thesislib.synth import SynthSpec, synthesize

TINY = dict(input_size=64, stem="compact", width=0.0625, depth=18, epochs=1, batch_size=32, eval_images=4,
            methods=["gradcam"], references=["prior", "ceiling"], track_every=0)
# away from every default that changes what is explained or which columns are scored
SPEC = dict(layer="layer3", threshold_free=True, road_percentiles=[50])
EXTRA_COLUMNS = ("road", "pixel_auroc", "relevance_rank_accuracy", "top_k_intersection")


class Spy:
    """The layer of every explainer call and the grid of every ceiling map, while installed."""

    def __init__(self) -> None:
        self.layers: list[str] = []
        self.grids: list = []

    def install(self, mp: pytest.MonkeyPatch) -> "Spy":
        explain_all, reference_maps = X.explain_all, R.reference_maps

        def spy_explain(*args, **kwargs):
            self.layers.append(kwargs.get("layer", "layer4"))
            return explain_all(*args, **kwargs)

        def spy_reference(name, *args, **kwargs):
            if name == "ceiling":
                self.grids.append(kwargs.get("grid"))
            return reference_maps(name, *args, **kwargs)

        mp.setattr(X, "explain_all", spy_explain)
        mp.setattr(R, "reference_maps", spy_reference)
        return self

    def check(self, caller: str, layer: str, model) -> None:
        assert self.layers, f"{caller}: no explainer was called"
        assert set(self.layers) == {layer}, f"{caller}: explained at {sorted(set(self.layers))}, expected {layer}"
        assert self.grids, f"{caller}: no ceiling map was drawn"
        grid = X.grid_at(model, TINY["input_size"], layer)
        assert set(self.grids) == {grid}, f"{caller}: ceiling maps at grids {sorted(set(self.grids))}, " \
                                          f"expected {grid} ({layer})"


@pytest.fixture(scope="module")
def computed(synth_root, tmp_path_factory):
    """A one-run grid evaluated with SPEC (its compute_one calls spied), and the spy."""
    g = study.grid({**TINY, **SPEC, "data": str(synth_root)}, {"depth": [{}]}, [0],
                   runs=tmp_path_factory.mktemp("runs"), executor="inline")
    with pytest.MonkeyPatch.context() as mp:
        spy = Spy().install(mp)
        g.compute(progress=False)
    return g, spy


@pytest.fixture
def spy(monkeypatch):
    return Spy().install(monkeypatch)


def test_compute_one_scores_with_the_whole_spec(computed):
    g, spy = computed
    spy.check("compute_one", "layer3", g.runs()[0].load_model())
    results = g.results()
    assert set(EXTRA_COLUMNS) <= set(results.columns), sorted(results.columns)


def test_cross_evaluate_scores_with_the_whole_spec(computed, spy, tmp_path):
    g, _ = computed
    cue = tmp_path / "cue"  # another data set (its own is read from the store), with markers to explain
    synthesize(cue, SynthSpec(n=40, size=64, seed=1, spurious=1.0, label_noise=0.3))
    scores = shortcut.cross_evaluate(g, {"cue": str(cue)})
    spy.check("cross_evaluate", "layer3", g.runs()[0].load_model())
    missing = [c for c in EXTRA_COLUMNS if c not in scores.columns]
    assert not missing, f"cross_evaluate: columns {missing} missing"
    assert (scores["marked_images"] > 0).any()  # the marker measure explained something


def test_mean_maps_explains_with_the_whole_spec(computed, spy):
    g, _ = computed
    run = g.runs()[0]
    maps = study.mean_maps(run)
    spy.check("mean_maps", "layer3", run.load_model())
    assert {"gradcam", "prior", "ceiling", "expert"} <= set(maps)


def test_layer_results_keeps_the_rest_of_the_spec(computed, spy):
    g, _ = computed
    layered = g.layer_results(["layer2"], ["gradcam"], progress=False)
    spy.check("layer_results", "layer2", g.runs()[0].load_model())
    assert set(layered["layer"]) == {"layer2"}
    assert set(EXTRA_COLUMNS) <= set(layered.columns), sorted(layered.columns)


# ids computed by the code before EvalSpec existed: the spec must leave every one as it was
PINNED = [
    ({}, "2933eafc", {"eval_split": "test", "target": "predicted", "eval_images": None, "deletion_steps": 0}),
    (dict(layer="layer3", methods=["gradcam"]), "eeddc463",
     {"eval_split": "test", "target": "predicted", "eval_images": None, "deletion_steps": 0, "layer": "layer3"}),
    (dict(road_percentiles=[80]), "5ef03e43",
     {"eval_split": "test", "target": "predicted", "eval_images": None, "deletion_steps": 0,
      "road_percentiles": [80.0]}),
    (dict(threshold_free=True), "b384ab51",
     {"eval_split": "test", "target": "predicted", "eval_images": None, "deletion_steps": 0, "threshold_free": True}),
    (dict(deletion_steps=8, eval_images=16, eval_split="val", target="label"), "e361a577",
     {"eval_split": "val", "target": "label", "eval_images": 16, "deletion_steps": 8}),
    (dict(layer="layer2", methods=["gradcam", "scorecam"], road_percentiles=[50, 90.0], threshold_free=True,
          references=[]), "eb2148d8",
     {"eval_split": "test", "target": "predicted", "eval_images": None, "deletion_steps": 0, "layer": "layer2",
      "road_percentiles": [50.0, 90.0], "threshold_free": True}),
]


@pytest.mark.parametrize("changes, eval_id, settings", PINNED)
def test_the_spec_round_trips_and_keeps_every_id(changes, eval_id, settings):
    cfg = RunConfig(**changes)
    spec = cfg.eval_spec
    assert isinstance(spec, EvalSpec) and [f.name for f in fields(EvalSpec)] == list(EVALUATION)
    assert spec.to_dict() == {k: v for k, v in cfg.to_dict().items() if k in EVALUATION}
    assert (spec.eval_id(), cfg.eval_id()) == (eval_id, eval_id)
    assert spec.evaluation_dict() == cfg.evaluation_dict() == settings
    assert list(cfg.evaluation_dict()) == list(settings)  # settings.json keeps its order too
    # back into a config: the same config, the same ids
    again = RunConfig().replace(**{k: v for k, v in cfg.to_dict().items() if k not in EVALUATION}, **spec.to_dict())
    assert again == cfg and again.eval_spec == spec and again.run_id("d") == cfg.run_id("d")
    assert spec.replace() == spec and hash(spec) == hash(cfg.eval_spec)  # frozen: a value


def test_a_spec_change_names_unknown_fields():
    with pytest.raises(ConfigError, match=r"EvalSpec.replace: unknown field\(s\) 'epochs'; expected some of methods"):
        RunConfig().eval_spec.replace(epochs=3)
    spec = RunConfig().eval_spec.replace(methods=["gradcam"], road_percentiles=[80.0])
    assert (spec.methods, spec.road_percentiles) == (("gradcam",), (80.0,))


# how each field reaches `evaluate`: a new EvalSpec field fails here until it is passed on
TO_EVALUATE = dict(methods="methods", references="references", target="target", eval_images="max_images",
                   deletion_steps="deletion_steps", layer="layer", road_percentiles="road_percentiles",
                   threshold_free="threshold_free", metric_sets="metric_sets")
PICKS_THE_DATA = ("eval_split",)  # `EvalSpec.data_of`: which part of the split is scored


def test_every_field_reaches_evaluate_and_the_maps_follow_the_same_settings(monkeypatch, split):
    from thesislib import evaluation as E

    assert sorted([*TO_EVALUATE, *PICKS_THE_DATA]) == sorted(EVALUATION)
    spec = RunConfig(methods=["gradcam"], references=["prior"], eval_split="val", target="label", eval_images=3,
                     deletion_steps=2, layer="layer3", road_percentiles=[70], threshold_free=True,
                     metric_sets=["faithfulness"]).eval_spec
    seen = {}
    monkeypatch.setattr(E, "evaluate", lambda model, data, methods, **kw: seen.update(kw, methods=methods))
    monkeypatch.setattr(E, "mean_maps", lambda model, data, methods, **kw: seen.update(kw, methods=methods))
    spec.evaluate("model", "data", prior="prior")
    given = {f: getattr(spec, f) for f in TO_EVALUATE}
    assert {arg: seen[arg] for arg in TO_EVALUATE.values()} == \
        {arg: list(v) if isinstance(v, tuple) else v for f, arg in TO_EVALUATE.items() for v in [given[f]]}
    seen.clear()
    spec.mean_maps("model", "data", prior="prior")
    assert {k: v for k, v in seen.items() if k not in ("prior", "batch_size")} == \
        {"methods": list(spec.methods), **spec.map_kwargs()}
    assert spec.map_kwargs() == dict(references=["prior"], target="label", max_images=3, layer="layer3")
    assert spec.data_of(split) is split.val
