import pytest
import torch
import torch.nn.functional as F

import thesislib
from conftest import perturbed
from thesislib import metrics as M
from thesislib.evaluation import CONFUSION, classification, evaluate, mean_maps, stratified_subset, summarize
from thesislib.explain import explain_all
from thesislib.references import REFERENCES, mean_expert_map, reference_maps

ALL_ON = dict(deletion_steps=1, road_percentiles=(80,), threshold_free=True)  # every option but metric_sets
PER_IMAGE = [m.name for m in M.active(ALL_ON)]


@pytest.fixture(scope="module")
def prior(split):
    return mean_expert_map(split.train)


def _moving_model(tiny_model):
    """An untrained tiny model whose maps are not constant and whose confidence moves under masking."""
    return perturbed(tiny_model(), fc_bias=(0.3, -0.3))


def test_evaluate_rows_and_columns(tiny_model, split, prior):
    model = tiny_model()
    df = thesislib.evaluate(model, split.test, ["cam"], references=REFERENCES, prior=prior,
                            max_images=4, **ALL_ON)
    assert len(df) == 4 * (1 + len(REFERENCES))
    assert list(dict.fromkeys(df["method"])) == ["cam", *REFERENCES]
    assert set(PER_IMAGE) <= set(df.columns)
    assert {"image", "label", "pred", "prob_glaucoma", "target", "method_label", "kind", "class_agnostic", "same_as",
            "seconds", "heatmap_empty", "map_empty", "heatmap_constant", "drop_in_confidence", "accuracy", "roc_auc",
            "f1", "tn", "fp", "fn", "tp"} <= set(df.columns)
    assert not df[PER_IMAGE + ["seconds"]].isna().any().any()
    refs = df[df["method"].isin(REFERENCES)]
    assert (refs["kind"] == "reference").all() and refs["class_agnostic"].all()
    assert (df.loc[~df["method"].isin(REFERENCES), "kind"] == "explainer").all()
    assert (df["target"] == df["pred"]).all()
    assert df["tn"].iloc[0] + df["fp"].iloc[0] + df["fn"].iloc[0] + df["tp"].iloc[0] == len(split.test)
    assert not model.training


def test_the_registry_decides_what_evaluate_computes(tiny_model, split, monkeypatch):
    """Each per-image metric names a compute group of evaluate; the run options turn on exactly the
    metrics that declare them, in the registry's column order; a new metric of the "expert" group
    is one function and one record, computed only when its set is asked for."""
    from thesislib import evaluation as E
    from thesislib.metrics import localisation

    assert list(E._GROUPS) == list(M.GROUPS) and {m.group for m in M.per_image()} <= set(M.GROUPS)
    assert {m.option for m in M.per_image()} - {None} <= set(M.OPTIONS)
    model = tiny_model()
    metric_columns = [c for c in evaluate(model, split.test, ["gradcam"], max_images=2).columns if c in M.REGISTRY]
    assert metric_columns == [m.name for m in M.active({})] + [m.name for m in M.registered("classification")]
    assert not {"road", "deletion_auc", "pixel_auroc"} & set(metric_columns)

    record = M.Metric("mass_outside", "Mass outside", False, "localisation", group="expert", option="metric_sets",
                      sets=("extra",))
    monkeypatch.setitem(M.REGISTRY, record.name, record)
    monkeypatch.setattr(localisation, "mass_outside", lambda h, mask: 1 - localisation.relevance_mass(h, mask),
                        raising=False)
    monkeypatch.setattr(E.M, "SETS", (*M.SETS, "extra"))
    assert "mass_outside" not in evaluate(model, split.test, ["gradcam"], max_images=2).columns
    df = evaluate(model, split.test, ["gradcam"], max_images=2, metric_sets=["extra"])
    assert torch.allclose(torch.tensor(df["mass_outside"].values), 1 - torch.tensor(df["relevance_mass"].values))
    with pytest.raises(ValueError, match="metric_sets: expected a list of metric sets from"):
        evaluate(model, split.test, ["gradcam"], max_images=2, metric_sets=["nope"])


def test_references_are_scored_like_explainers(tiny_model, split, prior):
    model = tiny_model()
    df = evaluate(model, split.test, [], references=["prior", "ceiling"], prior=prior, max_images=5)
    rows = stratified_subset(split.test.labels, 5)
    x, _, maps = split.test.batch(rows)
    heat = reference_maps("ceiling", x, maps, grid=4)
    expected = M.iou_area(M.binarize(heat), M.binarize(maps))
    got = torch.tensor(df[df["method"] == "ceiling"]["iou_area"].tolist())
    assert torch.allclose(got, expected)
    assert df[df["method"] == "prior"]["method_label"].iloc[0] == "Prior (mean expert map)"
    # the noise at the CAM grid is drawn at the explained layer's grid, seeded by the image's name
    for layer, grid in (("layer4", 4), ("layer3", 8)):
        df = evaluate(model, split.test, [], references=["noise"], max_images=5, layer=layer)
        heat = reference_maps("noise", x, maps, grid=grid, index=[split.test.names[i] for i in rows.tolist()])
        expected = M.iou_area(M.binarize(heat), M.binarize(maps))
        assert torch.allclose(torch.tensor(df["iou_area"].tolist()), expected), layer


def test_summaries_name_reference_maps_as_the_code_names_them_now(tiny_model, split):
    df = evaluate(tiny_model(), split.test, [], references=["random"], max_images=4)
    old = df.assign(method_label="Uniform random")  # as written by code before the relabelling
    assert summarize(old)["method_label"].tolist() == ["Pixel noise (uniform)"]


def test_both_masking_conventions_match_a_direct_computation(tiny_model, split):
    from thesislib.data import MEAN, STD
    from torchvision.transforms.v2 import functional as TF

    model = _moving_model(tiny_model)
    df = evaluate(model, split.test, ["gradcam"], max_images=8)
    rows = stratified_subset(split.test.labels, 8)
    x, _, _ = split.test.batch(rows)
    heat = explain_all(model, x, ["gradcam"])["gradcam"]
    raw = split.test.arrays.images[split.test.indices[rows]]
    t = torch.tensor(df["target"].tolist())
    prob = lambda inp: F.softmax(model(inp), 1)[torch.arange(len(t)), t]  # noqa: E731
    with torch.no_grad():
        y = prob(x)
        o_tensor = prob(x * heat[:, None])
        o_black = prob(TF.normalize(raw.float() / 255 * heat[:, None], MEAN, STD))
    ad = lambda o: ((y - o).clamp_min(0) / y).tolist()  # noqa: E731
    assert df["average_drop"].tolist() == pytest.approx(ad(o_tensor), abs=1e-5)
    assert df["average_drop_black"].tolist() == pytest.approx(ad(o_black), abs=1e-4)
    assert df["increase_in_confidence"].tolist() == (o_tensor > y).float().tolist()
    assert df["increase_in_confidence_black"].tolist() == (o_black > y).float().tolist()
    assert df["average_drop"].tolist() != pytest.approx(df["average_drop_black"].tolist(), abs=1e-3)


def test_same_as_marks_identical_methods_on_a_gap_linear_model(tiny_model, split):
    model = _moving_model(tiny_model)
    methods = ["gradcam", "gradcam++", "xgradcam", "hirescam", "eigencam"]
    df = evaluate(model, split.test, methods, max_images=6, batch_size=4)  # two batches
    same = df.groupby("method", sort=False)["same_as"].first().to_dict()
    assert not df[df["method"] == "gradcam"]["heatmap_constant"].all()
    assert same == {"gradcam": "", "gradcam++": "", "xgradcam": "gradcam", "hirescam": "gradcam", "eigencam": ""}
    assert df[df["method"] == "eigencam"]["class_agnostic"].all()
    assert not df[df["method"] == "gradcam"]["class_agnostic"].any()


def test_duplicates_need_agreement_on_every_batch():
    from thesislib.evaluation import _Duplicates

    g = torch.Generator().manual_seed(0)
    a1, a2 = torch.rand(3, 8, 8, generator=g), torch.rand(2, 8, 8, generator=g)
    d = _Duplicates()
    d.update({"a": a1, "b": a1 + 5e-5, "c": a1.clone(), "e": torch.rand(3, 8, 8, generator=g)})
    d.update({"a": a2, "b": a2 + 5e-5, "c": a2 + 0.1, "e": torch.rand(2, 8, 8, generator=g)})
    # c agrees with a on the first batch only
    assert d.same_as() == {"a": "", "b": "a", "c": "", "e": ""}


def test_label_targets_and_correct_only(tiny_model, split):
    model = tiny_model()
    df = evaluate(model, split.test, ["cam"], target="label")
    assert (df["target"] == df["label"]).all() and len(df) == len(split.test)
    right = evaluate(model, split.test, ["cam"], correct_only=True)
    assert (right["pred"] == right["label"]).all()


def test_precode_skips_cam_but_keeps_classification(tiny_model, split):
    df = evaluate(tiny_model(precode_k=8), split.test, ["cam", "gradcam"], max_images=4)
    assert set(df["method"]) <= {"cam", "gradcam"} and "gradcam" in set(df["method"])


def test_bad_arguments_are_named(tiny_model, split):
    with pytest.raises(ValueError, match="'gradcamx'"):
        evaluate(tiny_model(), split.test, ["gradcamx"])
    with pytest.raises(ValueError, match="'edges'"):
        evaluate(tiny_model(), split.test, ["cam"], references=["edges"])
    with pytest.raises(ValueError, match="prior"):
        evaluate(tiny_model(), split.test, ["cam"], references=["prior"])
    with pytest.raises(TypeError, match="references"):
        evaluate(tiny_model(), split.test, ["cam"], references="ceiling")


def test_summarize_means_in_percent_and_per_class(tiny_model, split):
    df = evaluate(tiny_model(), split.test, ["cam"], references=["gaussian"], max_images=10)
    s = summarize(df)
    row = s[s["method"] == "cam"].iloc[0]
    part = df[df["method"] == "cam"]
    assert row["iou_area"] == pytest.approx(100 * part["iou_area"].mean())
    assert row["average_drop_black"] == pytest.approx(100 * part["average_drop_black"].mean())
    assert row["n_images"] == 10 and row["accuracy"] == pytest.approx(100 * part["accuracy"].iloc[0])
    assert s.set_index("method").loc["gaussian", "kind"] == "reference"
    # per class: one row per method x class, whose image counts and means add up
    df = df.assign(pred=[0, 1] * (len(df) // 2))  # an untrained model may predict a single class
    per = summarize(df, by="pred")
    assert len(per) == 4 and list(per["method"]) == ["cam", "cam", "gaussian", "gaussian"]
    assert list(per["pred"]) == [0, 1, 0, 1]
    cam = per[per["method"] == "cam"]
    assert cam["n_images"].sum() == 10
    assert (cam["iou_area"] * cam["n_images"]).sum() / 10 == pytest.approx(row["iou_area"])
    with pytest.raises(ValueError, match="by"):
        summarize(df, by="colour")


def test_summarize_reads_tables_round_tripped_through_csv(tiny_model, split, tmp_path):
    import pandas as pd

    df = evaluate(tiny_model(), split.test, ["cam"], max_images=3)
    assert "deletion_auc" not in df.columns  # left out without deletion steps
    df.to_csv(tmp_path / "x.csv", index=False)
    s = summarize(pd.read_csv(tmp_path / "x.csv"))
    assert s["same_as"].tolist() == [""] and s["kind"].tolist() == ["explainer"]


def test_classification_matches_scikit_learn(tiny_model, split):
    """Accuracy, F1, ROC AUC and the confusion matrix of the model's own predictions on the whole
    split, per image and in the summary, as scikit-learn computes them."""
    from sklearn.metrics import accuracy_score, confusion_matrix, f1_score, roc_auc_score

    def expected(y, logits):
        pred, prob = logits.argmax(1).numpy(), F.softmax(logits, 1)[:, 1].numpy()
        counts = confusion_matrix(y, pred, labels=[0, 1]).ravel()
        return dict(accuracy=accuracy_score(y, pred), f1=f1_score(y, pred, zero_division=0),
                    roc_auc=roc_auc_score(y, prob), **dict(zip(CONFUSION, counts)))

    model = _moving_model(tiny_model)
    df = evaluate(model, split.test, ["cam"], max_images=6)
    x, labels, _ = split.test.batch()
    with torch.no_grad():
        logits = model.eval()(x)
    y, pred, prob = labels.numpy(), logits.argmax(1).numpy(), F.softmax(logits, 1)[:, 1].numpy()
    assert accuracy_score(y, pred) != accuracy_score(y, 1 - pred)  # a flipped prediction would show
    want = expected(y, logits)
    assert {k: df[k].iloc[0] for k in want} == pytest.approx(want)
    at = {name: i for i, name in enumerate(split.test.names)}
    for r in df.itertuples():
        assert (r.label, r.pred) == (y[at[r.image]], pred[at[r.image]])
        assert r.prob_glaucoma == pytest.approx(prob[at[r.image]], abs=1e-6)
    s, shares = summarize(df).iloc[0], ("accuracy", "f1", "roc_auc")
    assert {k: s[k] for k in shares} == pytest.approx({k: 100 * want[k] for k in shares})  # in %
    # random logits that predict both classes, straight into classification()
    g = torch.Generator().manual_seed(0)
    logits, labels = torch.randn(64, 2, generator=g), torch.randint(0, 2, (64,), generator=g)
    assert classification(logits, labels) == pytest.approx(expected(labels.numpy(), logits))


def test_mean_maps_average_each_method_and_the_expert(tiny_model, split):
    model = tiny_model()
    out = mean_maps(model, split.test, ["cam"], references=["gaussian"], max_images=6, batch_size=4)
    assert set(out) == {"cam", "gaussian", "expert"}
    rows = stratified_subset(split.test.labels, 6)
    x, _, maps = split.test.batch(rows)
    assert torch.allclose(out["expert"], maps.mean(0), atol=1e-6)
    assert torch.allclose(out["cam"], explain_all(model, x, ["cam"])["cam"].mean(0), atol=1e-6)
    assert out["cam"].shape == (64, 64) and out["cam"].dtype == torch.float32


def test_stratified_subset_keeps_class_shares():
    labels = torch.tensor([0] * 60 + [1] * 40)
    pick = stratified_subset(labels, 20)
    assert len(pick) == 20 and labels[pick].sum().item() == 8
    assert torch.equal(pick, stratified_subset(labels, 20))
    assert len(stratified_subset(labels, None)) == 100
