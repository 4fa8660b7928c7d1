from pathlib import Path

import pytest

from thesislib.study.config import EVALUATION, TRAINING, ConfigError, RunConfig

SMALL = dict(input_size=64, stem="compact", width=0.125)


def test_defaults_are_the_thesis_baseline():
    c = RunConfig()
    assert (c.depth, c.norm, c.epochs, c.batch_size, c.lr, c.input_size, c.penalty) == (50, "none", 100, 256, 1e-3, 224, "none")


def test_unknown_key_lists_what_is_allowed():
    with pytest.raises(ConfigError) as err:
        RunConfig.from_dict({"detph": 50}, source="params/x.yaml")
    msg = str(err.value)
    assert msg.startswith("params/x.yaml: unknown key(s) 'detph'") and "depth" in msg and "batch_size" in msg


@pytest.mark.parametrize("key, value, expected", [
    ("depth", 101, "one of 18, 34, 50"), ("norm", "layer", "one of none, batch, group"),
    ("epochs", 0, "integer >= 1"), ("epochs", 2.5, "integer >= 1"), ("batch_size", True, "integer"),
    ("dropout", 1.0, "[0, 1)"), ("methods", ["gradcam", "smoothgrad"], "non-empty list"),
    ("split", [0.5, 0.5], "three positive fractions"), ("eval_split", "train", "val, test"),
    ("penalty", "l3", "none, l1, l2"),
])
def test_bad_values_name_key_found_and_expected(key, value, expected):
    with pytest.raises(ConfigError) as err:
        RunConfig.from_dict({**SMALL, key: value})
    msg = str(err.value)
    assert msg.startswith(f"config: {key}: expected") and expected in msg and repr(value if not isinstance(value, list) else tuple(value)) in msg


def test_cam_grid_must_be_at_least_4x4():
    with pytest.raises(ConfigError, match="2x2 CAM grid"):
        RunConfig(input_size=64, stem="imagenet")
    RunConfig(input_size=64, stem="compact")


def test_penalty_lambda_needs_a_penalty_and_groups_must_fit_the_width():
    with pytest.raises(ConfigError, match="penalty_lambda"):
        RunConfig(**SMALL, penalty_lambda=1e-4)
    with pytest.raises(ConfigError, match="groups"):
        RunConfig(**{**SMALL, "width": 0.03125}, norm="group", groups=16)


def test_run_id_ignores_what_cannot_change_the_model():
    a = RunConfig(**SMALL)
    assert a.run_id("d") == RunConfig(**{**SMALL, "width": 0.125}, lr=0.001).run_id("d")
    assert a.run_id("d") == RunConfig(**SMALL, groups=16).run_id("d")  # no GroupNorm: groups unused
    assert a.run_id("d") == RunConfig(**SMALL, methods=["scorecam"], eval_images=5).run_id("d")  # evaluation only
    assert a.run_id("d") == RunConfig(**SMALL, data="/somewhere/else").run_id("d")  # data by content, not path
    assert a.run_id("d") != a.run_id("other data")
    assert a.run_id("d") != RunConfig(**SMALL, seed=1).run_id("d")
    assert a.eval_id() != RunConfig(**SMALL, eval_images=5).eval_id()
    assert a.eval_id() == RunConfig(**SMALL, methods=["scorecam"]).eval_id()


def test_stem_channels_left_unset_keeps_the_run_id_and_set_changes_it():
    a = RunConfig(**SMALL)
    # added after runs existed: unset (the first stage's channels) it stays out of the id
    assert "stem_channels" not in a.training_dict() and a.run_id("d") == "605dc1591f2e"
    wide = RunConfig(**SMALL, stem_channels=16)
    assert wide.training_dict()["stem_channels"] == 16 and wide.run_id("d") != a.run_id("d")
    assert wide.model_kwargs()["stem_channels"] == 16
    for bad in (0, 2.5, True):
        with pytest.raises(ConfigError, match="stem_channels"):
            RunConfig(**SMALL, stem_channels=bad)


def test_a_stem_as_wide_as_the_first_stages_output_is_resolved_for_each_depth_and_width():
    """`stem_channels: stage` gives the stem the first stage's output width: a ResNet-50's
    (bottleneck: four times the stage's width), and for ResNet-18/34 the unset default, so their
    runs keep their ids."""
    for depth, width, want in ((18, 0.125, None), (34, 0.125, None), (50, 0.125, 32), (50, 0.0625, 16), (50, 1.0, 256)):
        c = RunConfig.from_dict({**SMALL, "width": width, "depth": depth, "stem_channels": "stage"})
        assert c.stem_channels == want, (depth, width)
        assert c.run_id("d") == RunConfig(**{**SMALL, "width": width}, depth=depth, stem_channels=want).run_id("d")
    assert RunConfig.from_dict({"stem_channels": "stage"}).stem_channels == 256  # the defaults: ResNet-50 at width 1
    assert RunConfig(**SMALL, depth=18).replace(depth=50, stem_channels="stage").stem_channels == 32
    with pytest.raises(ConfigError, match=r"p\.yaml: stem_channels: expected an integer >= 1, null .* or 'stage'"):
        RunConfig.from_dict({**SMALL, "stem_channels": "wide"}, source="p.yaml")
    with pytest.raises(ConfigError, match=r"p\.yaml: stem_channels: 'stage' needs a valid depth and width \(depth: "
                                          r"expected one of 18, 34, 50, found 20\)"):
        RunConfig.from_dict({**SMALL, "depth": 20, "stem_channels": "stage"}, source="p.yaml")


def test_the_default_scale_widens_only_the_resnet50_stem():
    from thesislib.study.grids import grid, load_params

    root = Path(__file__).resolve().parents[1] / "params" / "default"
    params = load_params(root / "01_depth.yaml")
    table = grid(params["base"], params["experiments"], [0], data=None).table
    stems = {c.depth: c.stem_channels for c in table["config"]}
    assert stems == {18: None, 34: None, 50: 16}


def test_round_trip_and_field_groups():
    c = RunConfig(**SMALL, methods=["gradcam"], split=[0.7, 0.1, 0.2])
    assert RunConfig.from_dict(c.to_dict()) == c
    assert c.replace(seed=3).seed == 3
    assert set(TRAINING) | set(EVALUATION) | {"data"} == set(c.to_dict())


def test_run_and_eval_ids_are_pinned_and_carry_the_semantics_version(monkeypatch):
    from thesislib.study import config as C

    c = RunConfig(**SMALL)
    # a change of this value means every cached run is recomputed: bump SEMANTICS on purpose only
    assert (c.run_id("d"), c.eval_id()) == ("605dc1591f2e", "2933eafc")
    monkeypatch.setattr(C, "SEMANTICS", C.SEMANTICS + 1)
    assert c.run_id("d") != "605dc1591f2e" and c.eval_id() == "2933eafc"
    monkeypatch.setattr(C, "EVAL_SEMANTICS", C.EVAL_SEMANTICS + 1)
    assert c.eval_id() != "2933eafc"


def test_references_are_validated_and_stored_apart_from_the_eval_id():
    from thesislib.references import REFERENCES

    c = RunConfig(**SMALL)
    assert c.references == REFERENCES and c.scored_ids == c.methods + REFERENCES
    assert RunConfig(**SMALL, references=[]).references == ()
    assert RunConfig(**SMALL, references=["prior"]).eval_id() == c.eval_id()
    with pytest.raises(ConfigError, match=r"references: expected a list .* prior"):
        RunConfig.from_dict({**SMALL, "references": ["oracle"]})
    with pytest.raises(ConfigError, match="distinct"):
        RunConfig.from_dict({**SMALL, "references": ["prior", "prior"]})


@pytest.mark.parametrize("depth, width, d", [(50, 1.0, 2048), (50, 0.125, 256), (18, 0.125, 64), (34, 0.25, 128)])
def test_precode_dims_gives_the_pooled_dimension_and_the_scaled_k(depth, width, d):
    from thesislib.models import create_model
    from thesislib.study.config import precode_dims

    c = RunConfig(**{**SMALL, "width": width}, depth=depth, precode_k=256)
    assert precode_dims(c) == (d, d // 8)
    assert precode_dims(c.replace(precode_k=None)) == (d, None)
    if width < 1:
        m = create_model(c.model_name, **c.model_kwargs())
        assert (m.precode.dim, m.precode.k) == precode_dims(c)


def test_numbers_that_yaml_reads_as_text_get_a_hint_and_flags_must_be_booleans():
    with pytest.raises(ConfigError, match=r"lr: expected a number in \[1e-08, 10\] \(YAML reads 1e-4 as text: write "
                                          r"it with a dot, e.g. 1.0e-04\), found '1e-4'"):
        RunConfig.from_dict({**SMALL, "lr": "1e-4"})
    with pytest.raises(ConfigError, match="skip_corrupt: expected true or false, found 'yes'"):
        RunConfig.from_dict({**SMALL, "skip_corrupt": "yes"})
    assert RunConfig(**SMALL, skip_corrupt=True).run_id("d") != RunConfig(**SMALL).run_id("d")
