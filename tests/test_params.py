"""Params files agree with their notebooks, and each scale expands to the grid it promises."""

import ast
import json
from pathlib import Path

import papermill as pm
import pytest
import yaml

from thesislib import study
from thesislib.study.config import RunConfig

ROOT = Path(__file__).resolve().parents[1]
SCALES = ("smoke", "default", "gpu", "thesis")
NOTEBOOKS = study.NOTEBOOKS


def _parameters(name: str) -> dict:
    params = pm.inspect_notebook(str(ROOT / "notebooks" / f"{name}.ipynb"))
    return {k: ast.literal_eval(v["default"]) for k, v in params.items()}


# Every scale's merged params of every notebook, as load_params gave them before the layers were split
# (tests/data/merged_params.json: "all", and "notebook" for the keys its parameters cell takes). A
# deliberate change of a merged value updates it, and the commit says so:
#   python -c "import tests.test_params as t; t.write_snapshot()"
SNAPSHOT = ROOT / "tests" / "data" / "merged_params.json"


def _merged(scale: str, name: str) -> dict:
    path = ROOT / "params" / scale / f"{name}.yaml"
    return {"all": study.load_params(path), "notebook": study.load_params(path, keys=_parameters(name))}


def write_snapshot() -> None:
    """Record today's merged params of every scale and notebook in SNAPSHOT."""
    merged = {f"{scale}/{name}": _merged(scale, name) for scale in SCALES for name in NOTEBOOKS}
    SNAPSHOT.write_text(json.dumps(merged, indent=1, sort_keys=True) + "\n")


@pytest.mark.parametrize("scale", SCALES)
@pytest.mark.parametrize("name", NOTEBOOKS)
def test_merged_params_are_exactly_the_recorded_ones(scale, name):
    """Layering the params files changes no merged value: the same keys, values and types (1 is not 1.0)."""
    expected = json.loads(SNAPSHOT.read_text())[f"{scale}/{name}"]
    got = _merged(scale, name)
    for part in ("all", "notebook"):
        assert json.dumps(got[part], sort_keys=True, indent=1) == json.dumps(expected[part], sort_keys=True, indent=1), \
            f"params/{scale}/{name}.yaml ({part}) merges to other values than {SNAPSHOT.name} records"


def _same_shape(a, b) -> bool:
    """YAML and Python literals of one parameter have compatible types (None matches anything)."""
    if a is None or b is None:
        return True
    if isinstance(a, (int, float)) and isinstance(b, (int, float)) and not isinstance(a, bool):
        return True
    return type(a) is type(b)


@pytest.mark.parametrize("scale", SCALES)
@pytest.mark.parametrize("name", NOTEBOOKS)
def test_params_file_matches_the_notebooks_parameters_cell(scale, name):
    defaults = _parameters(name)
    assert defaults, f"{name}: no cell tagged 'parameters'"
    values = study.load_params(ROOT / "params" / scale / f"{name}.yaml", keys=defaults)
    unknown = set(values) - set(defaults)
    assert not unknown, f"params/{scale}/{name}.yaml: keys {unknown} are not parameters of {name}.ipynb"
    for key, value in values.items():
        assert _same_shape(value, defaults[key]), f"params/{scale}/{name}.yaml: {key}"


@pytest.mark.parametrize("name", NOTEBOOKS)
def test_the_notebooks_parameters_cell_holds_the_smoke_scale(name):
    """Opened in jupyter, a notebook runs at smoke scale: its parameters cell equals the smoke
    scale's merged params (a name smoke leaves to the notebook stays empty), and the markdown above
    the cell says so and how to get the default scale's."""
    cell = _parameters(name)
    smoke = study.load_params(ROOT / "params" / "smoke" / f"{name}.yaml", keys=cell)
    for key, value in smoke.items():
        assert json.dumps(cell[key], sort_keys=True) == json.dumps(value, sort_keys=True), \
            f"{name}.ipynb: {key} differs from params/smoke/{name}.yaml merged"
    assert all(cell[k] in (None, {}, []) for k in set(cell) - set(smoke)), name
    nb = json.loads((ROOT / "notebooks" / f"{name}.ipynb").read_text())
    at = next(i for i, c in enumerate(nb["cells"]) if "parameters" in c["metadata"].get("tags", []))
    above = "".join(nb["cells"][at - 1]["source"])
    assert "smoke scale" in above and f"thesislib params params/default/{name}.yaml" in above, name


@pytest.mark.parametrize("scale", SCALES)
def test_every_params_file_builds_valid_run_configs(scale, monkeypatch):
    monkeypatch.setenv("THESISLIB_DATA", "/data/LAG")
    for name in NOTEBOOKS:
        p = study.load_params(ROOT / "params" / scale / f"{name}.yaml")
        if "experiments" in p:
            g = study.grid(p["base"], p["experiments"], p["seeds"], source=f"params/{scale}/{name}.yaml")
            assert len(g) > 0
        else:
            RunConfig.from_dict({**p["base"]}) if "base" in p else None
        if "long_run" in p:
            assert len(study.grid(p["base"], study.long_run_experiments(p["long_run"]), p["seeds"])) == 2 * len(p["seeds"])


def _training(scale: str, name: str, family: str, setting: str = "baseline", seed: int = 0) -> dict:
    p = study.load_params(ROOT / "params" / scale / f"{name}.yaml")
    g = study.grid(p["base"], p["experiments"], p["seeds"]).table
    row = g[(g["family"] == family) & (g["setting"] == setting) & (g["seed"] == seed)].iloc[0]
    return row["config"].training_dict()


@pytest.mark.parametrize("scale", ["default", "thesis"])
def test_the_baseline_is_one_run_across_rq2_rq4_rq5(scale, monkeypatch):
    monkeypatch.setenv("THESISLIB_DATA", "/data/LAG")
    base_bs = study.load_params(ROOT / "params" / scale / "04_regularisation.yaml")["base"]["batch_size"]
    rq2 = _training(scale, "02_optimisation", "batch_size", str(base_bs))
    for fam in ("weight_decay", "dropout", "batch_norm", "group_norm"):
        assert _training(scale, "04_regularisation", fam) == rq2
    assert _training(scale, "05_precode", "precode") == rq2
    # RQ3 explains RQ1's models
    assert _training(scale, "03_cam_methods", "depth", "50") == _training(scale, "01_depth", "depth", "50")


# PROTOCOL's levels, as (family, setting) of our grids
THESIS_LEVELS = ({("depth", d) for d in ("18", "34", "50")} | {("epochs", "batch 16")}
                 | {("batch_size", str(b)) for b in (16, 32, 64, 128, 256)}
                 | {("weight_decay", f"{p} {lam}") for p in ("L1", "L2") for lam in ("1e-05", "1e-04", "1e-03")}
                 | {("dropout", r) for r in ("0.1", "0.33", "0.5", "0.75")} | {("batch_norm", "BatchNorm")}
                 | {("group_norm", g_) for g_ in ("16", "32", "64")}
                 | {("precode", f"β={b}, k={k}") for b in ("1e-03", "1e-04") for k in (128, 256, 512)}
                 | {(f, "baseline") for f in ("weight_decay", "dropout", "batch_norm", "group_norm", "precode")})


def test_thesis_params_expand_to_exactly_the_thesis_grid(monkeypatch):
    """PROTOCOL: levels of every factor, 3 seeds, the baseline of Table 5.5, 224 px."""
    monkeypatch.setenv("THESISLIB_DATA", "/data/LAG")
    g = study.study_grid(ROOT / "params" / "thesis").table
    assert set(g["seed"]) == {0, 1, 2}
    expected = THESIS_LEVELS
    got = {(f, s) for f, s in zip(g["family"], g["setting"])}
    assert got == expected
    assert len(g) == 3 * len(expected)
    for cfg, fam in zip(g["config"], g["family"]):
        assert cfg.input_size == 224 and cfg.lr == 1e-3 and cfg.stem == "imagenet" and cfg.width == 1.0
        assert cfg.data == "${THESISLIB_DATA}" or cfg.data == "/data/LAG"
        if fam == "depth":
            assert (cfg.epochs, cfg.batch_size) == (25, 16)
        else:
            assert cfg.depth == 50 and cfg.epochs == 100
        if fam in ("weight_decay", "dropout", "batch_norm", "group_norm", "precode"):
            assert cfg.batch_size == 256
    base = g[(g["family"] == "dropout") & (g["setting"] == "baseline")]["config"].iloc[0]
    assert (base.norm, base.dropout, base.penalty, base.precode_k, base.batch_size) == ("none", 0.0, "none", None, 256)
    long = study.load_params(ROOT / "params" / "thesis" / "05_precode.yaml")["long_run"]
    assert long["epochs"] == 300


def test_default_params_hold_every_factor_and_level_with_three_seeds_a_7x7_grid_and_96_images():
    from thesislib.models import cam_grid

    g = study.study_grid(ROOT / "params" / "default").table
    trained = {(f, s) for f, s in zip(g["family"], g["setting"])}
    left_out = set()
    for name in NOTEBOOKS:
        left_out |= study.left_out_labels(study.load_params(ROOT / "params" / "default" / f"{name}.yaml").get("not_trained"))
    assert not trained & left_out, "a setting both trained and listed as not trained"
    assert trained | left_out == THESIS_LEVELS
    assert len(left_out) <= 5, "the default scale leaves out only the settings measured not to learn"
    assert set(g["seed"]) == {0, 1, 2}
    for cfg in g["config"]:
        assert cam_grid(cfg.stem, cfg.input_size) >= 7
        assert cfg.eval_images is None or cfg.eval_images >= 96
        # the stem as wide as the first stage's output: 16 channels for ResNet-50, its own for 18 and 34
        assert cfg.stem_channels == (16 if cfg.depth == 50 else None), (cfg.depth, cfg.stem_channels)


@pytest.mark.parametrize("scale", ["default", "gpu", "thesis"])
def test_batch_sizes_train_for_equal_epochs_as_in_the_thesis(scale, monkeypatch):
    """Every batch size of RQ2 trains for the baseline's epochs (Table 5.4's design), so the batch-size
    claims are judged on the thesis's design, not "other design"."""
    monkeypatch.setenv("THESISLIB_DATA", "/data/LAG")
    g = study.study_grid(ROOT / "params" / scale).table
    epochs = {c.batch_size: c.epochs for c, f in zip(g["config"], g["family"]) if f == "batch_size"}
    left_out = study.left_out_labels(study.load_params(ROOT / "params" / scale / "02_optimisation.yaml").get("not_trained"))
    assert sorted(epochs) + sorted(int(s) for f, s in left_out if f == "batch_size") == [16, 32, 64, 128, 256]
    baseline = next(c.epochs for c, f in zip(g["config"], g["family"]) if f == "weight_decay")
    assert set(epochs.values()) == {baseline}, epochs


def test_shared_params_are_written_once_per_scale():
    """What every notebook of a scale shares lives in shared.yaml, not in each notebook's file."""
    for scale in SCALES:
        assert (ROOT / "params" / scale / "shared.yaml").is_file()
        for name in NOTEBOOKS:
            own = yaml.safe_load((ROOT / "params" / scale / f"{name}.yaml").read_text()) or {}
            assert not {"data", "runs", "seeds"} & set(own), f"params/{scale}/{name}.yaml repeats shared keys"


def _restated(own: dict, under: dict, where: str = "") -> list[str]:
    """The keys of `own` (at any depth of mappings) whose value `under` already has."""
    out = []
    for key, value in own.items():
        if isinstance(value, dict) and isinstance(under.get(key), dict):
            out += _restated(value, under[key], f"{where}{key}.")
        elif key in under and json.dumps(under[key], sort_keys=True) == json.dumps(value, sort_keys=True):
            out.append(where + key)
    return out


@pytest.mark.parametrize("scale", SCALES)
def test_a_scale_holds_only_what_differs_from_the_study_design(scale):
    """The study design (params/study/<notebook>.yaml) is written once: a scale's notebook file
    restates none of its values, nor of its shared.yaml's, and the design holds no scale's keys."""
    for name in NOTEBOOKS:
        design = yaml.safe_load((ROOT / "params" / "study" / f"{name}.yaml").read_text()) or {}
        assert not {"data", "runs", "seeds", "executor"} & set(design), f"params/study/{name}.yaml"
        under = study.merge_params(design, yaml.safe_load((ROOT / "params" / scale / "shared.yaml").read_text()))
        own = yaml.safe_load((ROOT / "params" / scale / f"{name}.yaml").read_text()) or {}
        assert not _restated(own, under), f"params/{scale}/{name}.yaml restates {_restated(own, under)}"


def test_layers_merge_mappings_key_by_key_and_a_later_layer_wins(tmp_path):
    (tmp_path / "study").mkdir()
    (tmp_path / "s").mkdir()
    (tmp_path / "study" / "01_depth.yaml").write_text("base: {depth: 50, epochs: 3}\nexperiments: {depth: [{depth: 18}]}\n")
    (tmp_path / "s" / "shared.yaml").write_text("seeds: [0]\nbase: {epochs: 5, width: 0.5}\n")
    (tmp_path / "s" / "01_depth.yaml").write_text("base: {width: 0.25}\n")
    assert study.params_layers(tmp_path / "s" / "01_depth.yaml") == [
        tmp_path / "study" / "01_depth.yaml", tmp_path / "s" / "shared.yaml", tmp_path / "s" / "01_depth.yaml"]
    assert study.load_params(tmp_path / "s" / "01_depth.yaml") == {
        "base": {"depth": 50, "epochs": 5, "width": 0.25}, "experiments": {"depth": [{"depth": 18}]}, "seeds": [0]}
    assert study.load_params(tmp_path / "s" / "01_depth.yaml", keys=["base", "experiments"])["base"]["epochs"] == 5
    assert "seeds" not in study.load_params(tmp_path / "s" / "01_depth.yaml", keys=["base", "experiments"])


def test_a_setting_left_out_of_a_scale_is_named_with_its_reason_under_its_table():
    not_trained = {"batch_size": {"settings": [{"batch_size": 128}, {"batch_size": 256}],
                                  "reason": "They take 50 and 30 steps."}}
    text = study.left_out(not_trained, "batch_size")
    assert text.startswith("**Not trained at this scale: batch size 128, 256.** They take 50 and 30 steps.")
    assert study.left_out(not_trained, "depth") == "" and study.left_out({}, "batch_size") == ""
    assert study.left_out_labels(not_trained) == {("batch_size", "128"), ("batch_size", "256")}
    with pytest.raises(study.ConfigError, match=r"02\.yaml: not_trained: batch_size: expected \{settings"):
        study.left_out({"batch_size": {"settings": [128], "reason": "x"}}, "batch_size", source="02.yaml")
    with pytest.raises(study.ConfigError, match="not_trained: batch_size: expected"):
        study.left_out_labels({"batch_size": {"settings": [{"batch_size": 128}]}})
