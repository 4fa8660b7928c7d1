"""The model-randomisation cascade, its similarity measures (against scipy and scikit-image), the
flagging rule, and the data-randomisation setting (shuffled labels)."""

import numpy as np
import pandas as pd
import pytest
import torch
from scipy.stats import spearmanr
from skimage.metrics import structural_similarity

from thesislib import sanity as S
from thesislib.study.config import RunConfig
from thesislib.train import with_shuffled_labels


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
    assert list(df.columns) == ["seed", "stage", "step", "method", "method_label", "image", "spearman", "ssim",
                                "constant"]
    assert len(df) == 3 * 2 * 4
    grad = df[df["method"] == "gradcam"].groupby("stage", sort=False)["spearman"].median()
    assert grad.max() < 0.9  # Grad-CAM's maps move with the model
    # EigenCAM ignores the head: randomising fc alone leaves its maps as they were
    eigen = df[(df["method"] == "eigencam") & (df["stage"] == "fc")]
    assert np.allclose(eigen["spearman"], 1.0) and np.allclose(eigen["ssim"], 1.0, atol=1e-6)


def test_insensitive_flags_by_the_median_after_layer4():
    rows = [dict(stage=stage, method_label=m, spearman=v, ssim=v, constant=v == 0.0)
            for m, values in (("Stuck", [0.9, 0.8, 0.2]), ("Moves", [0.6, 0.1, 0.0]))
            for stage in ("fc", "layer4") for v in values]
    out = S.insensitive(pd.DataFrame(rows))
    assert out["flagged"].to_dict() == {"Stuck": True, "Moves": False}
    assert out.loc["Stuck", "median ρ"] == 0.8 and out.loc["Moves", "constant"] == pytest.approx(0.33)
    with pytest.raises(ValueError, match="after"):
        S.insensitive(pd.DataFrame(rows), after="layer2")


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
    assert "shuffle_labels" not in base.training_dict()
    assert RunConfig(**{**base.to_dict(), "shuffle_labels": True}).run_id("d") != base.run_id("d")
