"""The model-randomisation cascade, its similarity measures (against scipy and scikit-image), the
findings' rule, and the data-randomisation setting (shuffled labels)."""

import numpy as np
import pandas as pd
import pytest
import torch
from scipy.stats import pearsonr, spearmanr
from skimage.feature import hog
from skimage.metrics import structural_similarity

from thesislib import sanity as S
from thesislib.study.config import RunConfig
from thesislib.train import validate, with_shuffled_labels


def _maps():
    g = torch.Generator().manual_seed(0)
    a, b = torch.rand(5, 20, 24, generator=g), torch.rand(5, 20, 24, generator=g)
    b[1] = (b[1] * 3).round() / 3  # ties
    b[2] = 0.7 * a[2] + 0.3 * b[2]  # correlated
    a[3] = (a[3] > 0.5).float()  # two values only
    return a, b


def test_rank_correlation_is_scipys_spearman_and_zero_for_a_constant_map():
    a, b = _maps()
    ours = S.rank_correlation(a, b)
    ref = [spearmanr(a[i].flatten(), b[i].flatten()).statistic for i in range(len(a))]
    assert np.allclose(ours.numpy(), ref, atol=1e-6)
    const = a.clone()
    const[0] = 0.0
    assert S.rank_correlation(const, b)[0] == 0.0  # scipy: NaN
    with pytest.raises(ValueError, match="a, b"):
        S.rank_correlation(a, b[:, :10])


def test_ssim_is_scikit_images_structural_similarity():
    a, b = _maps()
    ours = S.ssim(a, b)
    ref = [structural_similarity(a[i].numpy(), b[i].numpy(), data_range=1.0) for i in range(len(a))]
    assert np.allclose(ours.numpy(), ref, atol=1e-6)
    assert torch.allclose(S.ssim(a, a), torch.ones(len(a)))


def test_hog_similarity_is_the_pearson_correlation_of_scikit_images_hog_descriptors():
    g = torch.Generator().manual_seed(1)
    a = torch.rand(4, 40, 48, generator=g)
    b = torch.rand(4, 40, 48, generator=g)
    b[1] = 0.8 * a[1] + 0.2 * b[1]  # similar structure
    b[2] = 1 - a[2]  # inverted: HOG's unsigned orientations see the same edges
    ours = S.hog_similarity(a, b)
    ref = [pearsonr(hog(a[i].double().numpy()), hog(b[i].double().numpy())).statistic for i in range(len(a))]
    assert np.allclose(ours.numpy(), ref, atol=1e-6)
    assert ours[1] > 0.5 > ours[0] and ours[2] > 0.99
    assert torch.allclose(S.hog_similarity(a, a), torch.ones(len(a)))
    const = a.clone()
    const[3] = 0.5
    assert S.hog_similarity(const, b)[3] == 0.0  # scipy: NaN
    with pytest.raises(ValueError, match="at least 24 x 24"):
        S.hog_similarity(a[:, :20], b[:, :20])
    with pytest.raises(ValueError, match="a, b"):
        S.hog_similarity(a, b[:, :30])


def _flat(model):
    return {k: v.clone() for k, v in model.state_dict().items()}


def _changed(before, after, prefix):
    return any(not torch.equal(before[k], after[k]) for k in before if k.startswith(prefix))


def test_cascade_randomises_top_down_cumulatively_and_leaves_the_model_alone(tiny_model):
    model = tiny_model(norm="batch")
    with torch.no_grad():  # as after training: no parameter at its initial value
        for t in list(model.parameters()) + [b for n, b in model.named_buffers() if "running" in n]:
            t.add_(0.1)
    before = _flat(model)
    seen = []
    for stage, randomised in S.cascade(model, seed=3):
        now = _flat(randomised)
        seen.append({p: _changed(before, now, p) for p in ("fc.", "layer4.", "layer3.", "layer2.", "layer1.",
                                                             "conv1.", "bn1.")})
        if stage == "layer4":
            # the model starts each residual branch at zero; a random stage draws it like any other conv
            assert randomised.layer4[0].conv2.weight.abs().sum() > 0
            assert not randomised.training
    assert [s for s, _ in zip(S.STAGES, seen)] == list(S.STAGES)
    assert seen[0] == {"fc.": True, "layer4.": False, "layer3.": False, "layer2.": False, "layer1.": False,
                       "conv1.": False, "bn1.": False}
    assert seen[1]["layer4."] and not seen[1]["layer3."]
    assert all(seen[5].values())  # with the stem every stage is random
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in before.items())  # the original is untouched
    # seeded: the same seed draws the same weights, another seed others
    def first_fc(seed):
        return next(S.cascade(model, seed=seed))[1].fc.weight.clone()

    assert torch.equal(first_fc(3), first_fc(3)) and not torch.equal(first_fc(3), first_fc(4))
    with pytest.raises(ValueError, match="stages"):
        next(S.cascade(model, stages=["head"]))


def test_grad_cam_changes_as_the_model_is_randomised(tiny_model, images):
    model = tiny_model()
    with torch.no_grad():  # a model whose layer4 is not the identity, so that its maps have structure
        for block in model.layer4:
            block.conv2.weight.normal_(0, 0.2)
    df = S.model_randomisation(model, images[:4], ["gradcam", "eigencam"], stages=["fc", "layer4", "layer3"])
    assert list(df.columns) == ["seed", "stage", "step", "method", "method_label", "image", "spearman",
                                "abs_spearman", "ssim", "hog", "constant"]
    assert np.allclose(df["abs_spearman"], df["spearman"].abs())
    # each row compares the trained model's map with the randomised model's, by each measure
    from thesislib.explain import explain_all

    targets = model(images[:4]).argmax(1)
    original = explain_all(model, images[:4], ["gradcam"], targets=targets)["gradcam"]
    _, head_random = next(S.cascade(model, ["fc"]))
    random = explain_all(head_random, images[:4], ["gradcam"], targets=targets)["gradcam"]
    fc = df[(df["method"] == "gradcam") & (df["stage"] == "fc")]
    for col, measure in (("spearman", S.rank_correlation), ("ssim", S.ssim), ("hog", S.hog_similarity)):
        assert np.allclose(fc[col], measure(original, random).numpy(), atol=1e-6), col
    assert len(df) == 3 * 2 * 4
    grad = df[df["method"] == "gradcam"].groupby("stage", sort=False)["spearman"].median()
    assert grad.max() < 0.9  # Grad-CAM's maps move with the model
    # EigenCAM ignores the head: randomising fc alone leaves its maps as they were
    eigen = df[(df["method"] == "eigencam") & (df["stage"] == "fc")]
    assert np.allclose(eigen["spearman"], 1.0) and np.allclose(eigen["ssim"], 1.0, atol=1e-6)
    assert np.allclose(eigen["hog"], 1.0, atol=1e-6)


def test_findings_name_insensitive_inverted_mixed_and_mostly_constant_maps():
    cases = {"Stuck": [0.9, 0.8, 0.2, 0.7],       # median 0.75: insensitive
             "Moves": [0.6, 0.1, 0.0, -0.2],      # one constant map of four, median 0.05: passes
             "Upside down": [-0.7, -0.67, -0.1, -0.8],  # CAM's pattern: inverted, not independent
             "Flips": [0.8, -0.8, 0.9, -0.9],      # signed median 0, |rho| 0.85: structure kept
             "Dead": [0.0, 0.0, 0.0, 0.3]}         # three constant maps of four
    rows = [dict(stage=stage, method_label=m, spearman=v, ssim=v, hog=v, constant=v == 0.0)
            for m, values in cases.items() for stage in ("fc", "layer4") for v in values]
    out = S.findings(pd.DataFrame(rows))
    assert out["finding"].to_dict() == {"Stuck": "insensitive: maps barely change", "Moves": "passes",
                                        "Upside down": "inverted: same structure, sign flipped",
                                        "Flips": "structure kept: sign varies by image",
                                        "Dead": "mostly constant: no map left to compare"}
    assert set(out["finding"]) <= set(S.FINDINGS.values())
    assert out.loc["Stuck", "median ρ"] == 0.75 and out.loc["Moves", "constant"] == 0.25
    assert out.loc["Upside down", "median ρ"] == pytest.approx(-0.685)
    assert out.loc["Upside down", "median |ρ|"] == pytest.approx(0.685)
    assert out.loc["Flips", "median ρ"] == 0.0 and out.loc["Flips", "median |ρ|"] == pytest.approx(0.85)
    assert list(out.columns) == ["median ρ", "median |ρ|", "median SSIM", "median HOG", "maps", "constant", "finding"]
    # the rule reads the stage asked for, which must be in the table; and it needs every measure
    with pytest.raises(ValueError, match="after"):
        S.findings(pd.DataFrame(rows), after="layer2")
    with pytest.raises(ValueError, match="hog"):
        S.findings(pd.DataFrame(rows).drop(columns="hog"))


def test_shuffled_labels_permute_the_training_labels_only(split):
    train = split.train
    shuffled = with_shuffled_labels(train, seed=0)
    assert torch.equal(torch.bincount(shuffled.labels), torch.bincount(train.labels))  # class counts kept
    assert not torch.equal(shuffled.labels, train.labels)
    assert torch.equal(with_shuffled_labels(train, seed=0).labels, shuffled.labels)  # seeded
    assert torch.equal(split.val.labels, split.val.arrays.labels[split.val.indices])  # other splits untouched
    assert torch.equal(shuffled.arrays.images, train.arrays.images)
    # a run on shuffled labels is another run; runs on true labels keep the ids they had
    base = RunConfig(depth=18, width=0.0625, stem="compact", input_size=64)
    assert "shuffle_labels" not in base.training_dict() and "checkpoint" not in base.training_dict()
    shuffled_cfg = RunConfig(**{**base.to_dict(), "shuffle_labels": True})
    assert shuffled_cfg.run_id("d") != base.run_id("d")
    # shuffled-label runs keep their last epoch now: they, and only they, changed id
    from thesislib.study.config import SEMANTICS, _digest

    fields = shuffled_cfg.training_dict()
    assert fields.pop("checkpoint") == "last epoch"
    assert shuffled_cfg.run_id("d") != _digest({**fields, "data": "d", "semantics": SEMANTICS})


def _scripted_val_loss(monkeypatch, losses):
    """train() sees these validation losses, epoch after epoch (the rest of validate() is real)."""
    import thesislib.train as T

    script = iter(losses)
    monkeypatch.setattr(T, "validate", lambda model, data, **kw: {**validate(model, data, **kw),
                                                                  "val_loss": next(script)})


def test_a_model_trained_on_shuffled_labels_keeps_its_last_epoch(split, tmp_path, monkeypatch):
    from thesislib.models import create_model
    from thesislib.train import seed_everything, train

    def fresh():
        seed_everything(0)
        return create_model("resnet18", width=0.0625, stem="compact")

    def run(folder, **kw):
        states = {}

        def snapshot(epoch, model):
            states[epoch] = {k: v.detach().clone() for k, v in model.state_dict().items()}
            return {}

        _scripted_val_loss(monkeypatch, [0.4, 0.9, 0.6])  # the true labels' validation loss is lowest at epoch 1
        model = fresh()
        train(model, split.train, split.val, epochs=3, batch_size=32, checkpoint_dir=tmp_path / folder,
              progress=False, on_epoch=snapshot, **kw)
        best = torch.load(tmp_path / folder / "best.pt", weights_only=True)
        return states, model.state_dict(), best

    def same(a, b):
        return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)

    states, final, best = run("shuffled", shuffle_labels=True)
    assert not same(states[1], states[3])
    assert same(final, states[3]) and same(best, states[3])
    states, final, best = run("picked", shuffle_labels=True, keep="best")  # the old rule, on request
    assert same(final, states[1]) and same(best, states[1])
    states, final, best = run("true", keep=None)  # true labels: the lowest validation loss, as before
    assert same(final, states[1]) and same(best, states[1])
    with pytest.raises(ValueError, match="keep: expected one of best, last"):
        train(fresh(), split.train, split.val, epochs=1, batch_size=32, progress=False, keep="first")


def test_shuffled_fit_reads_the_last_epoch_of_each_seed():
    shuffled = pd.DataFrame(dict(seed=[1, 1, 0, 0, 0], epoch=[2, 1, 1, 3, 2],
                                 train_acc=[0.71, 0.60, 0.55, 0.666, 0.58], val_acc=[0.4, 0.5, 0.6, 0.45, 0.5]))
    true = pd.DataFrame(dict(seed=[0, 0, 1, 2], epoch=[1, 2, 1, 1], train_acc=[0.7, 0.9, 0.8, 0.1],
                             val_acc=[0.7, 0.8, 0.8, 0.1]))
    out = S.shuffled_fit(shuffled, true, majority_share=0.6)
    assert out.to_dict("index") == {
        0: {"epochs": 3, "train acc., shuffled labels (%)": 66.6, "val acc., true labels (%)": 45.0,
            "train acc., true labels (%)": 90.0, "majority share (%)": 60.0},
        1: {"epochs": 2, "train acc., shuffled labels (%)": 71.0, "val acc., true labels (%)": 40.0,
            "train acc., true labels (%)": 80.0, "majority share (%)": 60.0}}
    assert list(S.shuffled_fit(shuffled).columns) == ["epochs", "train acc., shuffled labels (%)",
                                                      "val acc., true labels (%)"]
    with pytest.raises(ValueError, match="true: expected history rows"):
        S.shuffled_fit(shuffled, true.drop(columns="train_acc"))
