import matplotlib

matplotlib.use("Agg")

import matplotlib.colors as mcolors  # noqa: E402
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402

from thesislib import figures  # noqa: E402


@pytest.fixture(autouse=True)
def _close():
    yield
    plt.close("all")


def _results(learned=True):
    rows = []
    for setting in ("a", "b"):
        for seed in (0, 1):
            for method, label, kind in (("gradcam", "Grad-CAM", "explainer"), ("cam", "CAM", "explainer"),
                                        ("prior", "Prior (mean expert map)", "reference"),
                                        ("ceiling", "Ceiling (expert map at CAM grid)", "reference")):
                rows.append(dict(setting=setting, seed=seed, method=method, method_label=label, kind=kind,
                                 iou_area=10.0 + seed + (setting == "b"), average_drop=20.0 + seed,
                                 accuracy=60.0 + 10 * seed, family="f",
                                 learned=learned or not (setting == "b" and seed == 1)))
    return pd.DataFrame(rows)


def _legend_texts(fig):
    return [t.get_text() for ax in fig.axes if ax.get_legend() for t in ax.get_legend().get_texts()]


def test_mean_maps_share_one_colour_scale_and_put_the_expert_first():
    maps = {"gradcam": torch.rand(16, 16) * 0.5, "expert": torch.rand(16, 16), "ceiling": torch.rand(16, 16)}
    fig = figures.mean_maps(maps, labels={"gradcam": "GC"})
    images = [ax.images[0] for ax in fig.axes if ax.images]
    assert len(images) == 3
    assert {im.get_clim() for im in images} == {(0, float(max(m.max() for m in maps.values())))}
    titles = [ax.get_title() for ax in fig.axes if ax.images]
    assert titles == ["Expert (mean)", "GC", "Ceiling (expert map at CAM grid)"]
    with pytest.raises(ValueError, match="maps"):
        figures.mean_maps({})


def test_method_bars_grey_references_after_explainers():
    fig = figures.method_bars(_results(), ["iou_area", "average_drop"])
    ax = fig.axes[0]
    assert [t.get_text() for t in ax.get_yticklabels()] == ["Grad-CAM", "CAM", "Prior (mean expert map)",
                                                            "Ceiling (expert map at CAM grid)"]
    bars = sorted(ax.patches, key=lambda p: p.get_y())
    colours = [mcolors.to_rgb(p.get_facecolor()) for p in bars]
    assert all(np.allclose(c, mcolors.to_rgb("tab:blue")) for c in colours[:2])
    assert all(c[0] == c[1] == c[2] for c in colours[2:])  # grey
    assert fig.axes[1].get_xlabel() == "↓ AD (%)" and ax.get_xlabel() == "↑ IoU (A) (%)"


def test_flagged_runs_are_marked_in_by_setting_and_scatter():
    fig = figures.by_setting(_results(learned=False), "iou_area")
    assert figures.NOT_LEARNED in _legend_texts(fig)
    assert figures.NOT_LEARNED not in _legend_texts(figures.by_setting(_results(), "iou_area"))
    assert fig.axes[0].get_ylabel() == "↑ IoU (A) (%)"
    points = _results(learned=False).drop_duplicates(["setting", "seed"])
    assert figures.NOT_LEARNED in _legend_texts(figures.scatter(points, "accuracy", {"iou_area": "IoU (A)"}))
    # no column: every run counts as learned
    assert figures.NOT_LEARNED not in _legend_texts(
        figures.scatter(points.drop(columns="learned"), "accuracy", {"iou_area": "IoU (A)"}))
    with pytest.raises(ValueError, match="metric"):
        figures.by_setting(_results(), "iou")


def test_loss_curves_compare_losses_on_the_same_path():
    hist = pd.DataFrame(dict(epoch=[1, 2, 1, 2], setting=["p"] * 4, seed=[0, 0, 1, 1], train_loss=[1.0, 0.8, 1.1, 0.7],
                             train_ce=[0.9, 0.7, 1.0, 0.6], val_loss=[1.2, 1.0, 1.1, 1.0],
                             val_loss_sampled=[1.3, 1.1, 1.2, 1.1]))
    ax = figures.loss_curves(hist).axes[0]
    assert "sampled" in ax.get_ylabel()
    ys = sorted(round(float(y), 3) for line in ax.get_lines() for y in line.get_ydata())
    assert ys == [0.75, 1.05, 1.1, 1.25]  # train_loss and val_loss_sampled, means over seeds
    ax = figures.loss_curves(hist.drop(columns="val_loss_sampled")).axes[0]
    assert "mean path" in ax.get_ylabel()
    ys = sorted(round(float(y), 3) for line in ax.get_lines() for y in line.get_ydata())
    assert ys == [0.75, 1.0, 1.05, 1.15]


def test_randomisation_shows_every_measure_and_both_thresholds():
    from thesislib import sanity

    rows = [dict(stage=stage, method_label=m, image=i, spearman=v, ssim=v / 2, hog=v / 3, constant=False)
            for m, v in (("CAM", -0.7), ("Grad-CAM", 0.1)) for stage in sanity.STAGES[:3] for i in range(3)]
    fig = figures.randomisation(pd.DataFrame(rows))
    assert [ax.get_ylabel() for ax in fig.axes] == ["Rank correlation with the original map",
                                                     "SSIM with the original map",
                                                     "HOG similarity with the original map"]
    dashed = sorted(round(line.get_ydata()[0], 3) for line in fig.axes[0].get_lines() if line.get_linestyle() == "--")
    assert dashed == [-sanity.FLAG_SPEARMAN, sanity.FLAG_SPEARMAN]
