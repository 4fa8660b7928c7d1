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
    titles = [ax.get_title().replace("\n", " ") for ax in fig.axes if ax.images]
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
    assert [tuple(c) for c in colours[:2]] == [figures.METHOD_COLOURS[m] for m in ("Grad-CAM", "CAM")]
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


def _bar_colours(fig) -> dict[str, tuple]:
    """Method label -> bar colour of a horizontal bar plot (one bar per label)."""
    ax = fig.axes[0]
    bars = sorted(ax.patches, key=lambda p: p.get_y())
    return {t.get_text(): mcolors.to_rgb(p.get_facecolor()) for t, p in zip(ax.get_yticklabels(), bars)}


def _point_colours(fig) -> dict[str, tuple]:
    """Method label -> colour of its entry in the (only) legend of a point plot."""
    legend = next(ax.get_legend() for ax in fig.axes if ax.get_legend())
    return {t.get_text(): mcolors.to_rgb(h.get_color()) for t, h in zip(legend.get_texts(), legend.legend_handles)
            if hasattr(h, "get_color")}


def test_a_method_has_one_colour_in_every_figure():
    some = _results()
    other = some.assign(method_label=some["method_label"].replace({"CAM": "Score-CAM"}))  # Grad-CAM's rank differs
    other = pd.concat([other[other["method_label"] == "Score-CAM"], other[other["method_label"] != "Score-CAM"]])
    first = _point_colours(figures.by_setting(some, "iou_area"))
    second = _point_colours(figures.by_setting(other, "iou_area"))
    bars = _bar_colours(figures.method_bars(other, ["iou_area"]))
    for label in ("Grad-CAM", "Prior (mean expert map)"):
        assert first[label] == second[label] == bars[label] == figures.METHOD_COLOURS[label], label
    assert first["CAM"] != first["Grad-CAM"] and second["Score-CAM"] != second["Grad-CAM"]
    # every explainer its own colour, none of them a grey
    explainers = [c for lab, c in figures.METHOD_COLOURS.items() if not lab.startswith(tuple(_REFERENCE_STARTS))]
    assert len(set(explainers)) == len(explainers) and not any(c[0] == c[1] == c[2] for c in explainers)
    with pytest.raises(ValueError, match="unknown 'Nope'"):
        figures.method_palette(["Grad-CAM", "Nope"])


_REFERENCE_STARTS = ("Prior", "Ceiling", "Centred", "Sobel", "Pixel noise", "Noise at")


def test_legends_sit_outside_the_data_area():
    for fig in (figures.by_setting(_results(learned=False), "iou_area"),
                figures.scatter(_results().drop_duplicates(["setting", "seed"]), "accuracy", {"iou_area": "IoU"})):
        fig.canvas.draw()
        ax = next(ax for ax in fig.axes if ax.get_legend())
        box, data = ax.get_legend().get_window_extent(), ax.get_window_extent()
        assert box.x0 >= data.x1, "the legend overlaps the axes"


def test_every_figure_carries_a_caption_with_its_n_and_error_bars():
    hist = pd.DataFrame(dict(epoch=[1, 2, 1, 2], setting=["p"] * 4, seed=[0, 0, 1, 1], train_loss=[1.0, 0.8, 1.1, 0.7],
                             val_loss=[1.2, 1.0, 1.1, 1.0], val_acc=[0.5, 0.6, 0.55, 0.65]))
    images = pd.DataFrame(dict(method_label=["CAM", "Grad-CAM"] * 4, run_id=["r0"] * 4 + ["r1"] * 4,
                               image=[0, 0, 1, 1] * 2, seconds=[0.002, 0.01, 0.003, 0.012] * 2))
    made = {
        "by_setting": figures.by_setting(_results(), "iou_area", title="IoU (A) by depth"),
        "method_bars": figures.method_bars(_results(), ["iou_area"]),
        "curves": figures.curves(hist, {"val_acc": "accuracy (%)"}, hue="setting"),
        "loss_curves": figures.loss_curves(hist),
        "timing": figures.timing(images),
    }
    for name, fig in made.items():
        caption = figures.caption_of(fig)
        assert caption and ("n = 4 runs" if name == "method_bars" else "n = 2 ") in caption, (name, caption)
        assert "standard deviation" in caption, (name, caption)  # what the error bars are
        assert fig._repr_mimebundle_() == ({}, {figures.CAPTION_KEY: {"caption": caption}})  # what IPython shows
    assert "n = 2 seeds per setting" in figures.caption_of(made["by_setting"])
    assert "n = 2 runs per method, n = 2 images per run" in figures.caption_of(made["timing"])


def test_timing_is_in_milliseconds_like_the_method_table():
    images = pd.DataFrame(dict(method_label=["CAM", "Grad-CAM"], run_id=["r0", "r0"], image=[0, 0],
                               seconds=[0.002, 0.01]))
    fig = figures.timing(images)
    ax = fig.axes[0]
    assert ax.get_xlabel().startswith("ms per image")
    widths = sorted(round(p.get_width(), 6) for p in ax.patches)
    assert widths == [2.0, 10.0]


def test_mean_map_titles_do_not_collide():
    from thesislib.explain import LABELS
    from thesislib.references import LABELS as REF_LABELS

    names = ["expert", "scorecam-paper", "gradcam++", "ceiling", "noise", "random", "prior", "gaussian"]
    fig = figures.mean_maps({k: torch.rand(16, 16) for k in names})
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    shown = [ax for ax in fig.axes if ax.images]
    titles = [ax.title.get_window_extent(renderer) for ax in shown]
    panels = [ax.get_window_extent(renderer) for ax in shown]
    for i, t in enumerate(titles):
        for j, other in enumerate(titles):
            assert i == j or not t.overlaps(other), (shown[i].get_title(), shown[j].get_title())
        for j, panel in enumerate(panels):
            assert not t.overlaps(panel), (shown[i].get_title(), j)
    assert {ax.get_title().replace("\n", " ") for ax in shown} >= {LABELS["scorecam-paper"], REF_LABELS["noise"]}


def test_the_gallery_has_a_colour_bar_and_each_panel_its_prediction(split, tiny_model):
    model = tiny_model()
    rows = figures.pick_rows(split.test, 2)
    fig = figures.gallery({"tiny": model}, split.test, ["gradcam", "cam"], rows)
    bars = [ax for ax in fig.axes if getattr(ax, "_colorbar", None) is not None]
    assert len(bars) == 1 and bars[0].get_ylim() == (0.0, 1.0)
    x, _, _ = split.test.batch(torch.as_tensor(rows))
    with torch.no_grad():
        conf, pred = torch.softmax(model(x), 1).max(1)
    panels = [ax for ax in fig.axes if ax not in bars]
    said = sorted(ax.get_xlabel() for ax in panels if ax.get_xlabel())
    expected = sorted(f"pred. {figures._class_name(int(p))} {100 * float(c):.0f} %" for p, c in zip(pred, conf)) * 2
    assert said == sorted(expected)
    assert "confidence" in figures.caption_of(fig) and f"n = {len(rows)} test images" in figures.caption_of(fig)
