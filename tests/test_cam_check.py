"""CAM against Grad-CAM, measured: the maps against a computation by hand (CAM) and
pytorch-grad-cam (Grad-CAM), the measurements against scikit-image's Otsu, and the grid's summary."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from pytorch_grad_cam import GradCAM
from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget
from skimage.filters import threshold_otsu

from conftest import perturbed
from thesislib import cam_check as C
from thesislib import study
from thesislib.study import runs as R


def _moving_model(tiny_model):
    """A tiny model whose layer4 maps have structure and whose CAM has a negative part."""
    return perturbed(tiny_model())


def _minmax(m):
    flat = m.flatten(1)
    lo, hi = flat.min(1, keepdim=True).values, flat.max(1, keepdim=True).values
    return ((flat - lo) / (hi - lo)).view_as(m)


def _by_hand(model, x, targets):
    """CAM = fc weights x layer4 features (a forward hook), upsampled bilinearly, min-max scaled;
    also the grid-level CAM."""
    seen = []
    handle = model.layer4.register_forward_hook(lambda m, i, out: seen.append(out.detach()))
    with torch.no_grad():
        model(x)
        grid = torch.einsum("nc,nchw->nhw", model.fc.weight[targets], seen[-1])
    handle.remove()
    up = F.interpolate(grid[:, None], size=x.shape[-2:], mode="bilinear", align_corners=False)[:, 0]
    return _minmax(up), grid


@pytest.fixture(scope="module")
def batch(split):
    rows = torch.arange(10)
    x, _, expert = split.test.batch(rows)
    return x, expert


def test_maps_are_cam_by_hand_and_pytorch_grad_cams_grad_cam(tiny_model, batch):
    model = _moving_model(tiny_model)
    x, _ = batch
    targets = torch.tensor([0, 1] * 5)
    got = C.maps(model, x, targets)
    cam, grid = _by_hand(model, x, targets)
    other, _ = _by_hand(model, x, 1 - targets)
    library = GradCAM(model=model, target_layers=[model.layer4])(x, targets=[ClassifierOutputTarget(int(t))
                                                                             for t in targets])
    assert (got["cam"] - cam).abs().max() <= 1e-5
    assert (got["cam_other"] - other).abs().max() <= 1e-5
    assert (got["gradcam"] - _minmax(torch.from_numpy(library))).abs().max() <= 1e-5
    # ReLU(CAM) is Grad-CAM up to scale on this GAP + linear head, CAM itself is not
    relu = _minmax(F.interpolate(grid.clamp_min(0)[:, None], size=x.shape[-2:], mode="bilinear",
                                 align_corners=False)[:, 0])
    assert (got["gradcam"] - relu).abs().max() <= 1e-5
    assert (got["cam"] - got["gradcam"]).abs().max() > 0.1
    assert torch.equal(got["targets"], targets)
    with torch.no_grad():
        assert torch.equal(C.maps(model, x)["targets"], model(x).argmax(1))  # default: the predictions


def test_compare_measures_what_it_names(tiny_model, batch):
    model = _moving_model(tiny_model)
    x, expert = batch
    targets = torch.tensor([1, 0] * 5)
    df = C.compare(model, x, expert, targets, batch_size=4)  # batches of 4, 4, 2
    assert list(df.columns) == ["image", "target", *C.COLUMNS] and df["image"].tolist() == list(range(10))
    cam, grid = _by_hand(model, x, targets)
    other, _ = _by_hand(model, x, 1 - targets)
    gradcam = C.maps(model, x, targets)["gradcam"]  # checked against pytorch-grad-cam above

    def fg(m):  # scikit-image's Otsu, foreground above the threshold
        m = m.numpy().astype(np.float32)
        return m > threshold_otsu(m)

    def iou(a, b):
        return (a & b).sum() / (a | b).sum()

    for i in range(len(x)):
        truth = fg(expert[i])
        row = df.iloc[i]
        assert row["iou_cam"] == pytest.approx(iou(fg(cam[i]), truth), abs=1e-6)
        assert row["iou_gradcam"] == pytest.approx(iou(fg(gradcam[i]), truth), abs=1e-6)
        assert row["iou_cam_other"] == pytest.approx(iou(fg(other[i]), truth), abs=1e-6)
        assert row["overlap"] == pytest.approx(iou(fg(cam[i]), fg(gradcam[i])), abs=1e-6)
        assert row["max_abs_diff"] == pytest.approx(float((cam[i] - gradcam[i]).abs().max()), abs=1e-5)
        assert row["negative_share"] == pytest.approx(float((grid[i] < 0).float().mean()))
    assert (df["target"] == targets.numpy()).all()
    with pytest.raises(ValueError, match="expert: expected maps"):
        C.compare(model, x, expert[:, :10])


def test_the_other_class_needs_a_two_class_head(tiny_model, batch):
    model = tiny_model()
    model.fc = torch.nn.Linear(model.fc.in_features, 3)
    with pytest.raises(ValueError, match="two-class head"):
        C.maps(model, batch[0][:2], torch.tensor([0, 1]))


def test_for_grid_averages_the_learned_runs_per_setting(synth_root, tmp_path, monkeypatch):
    base = dict(data=str(synth_root), input_size=64, stem="compact", width=0.0625, epochs=1, batch_size=32,
                eval_images=6, methods=["cam", "gradcam"], references=[], track_every=0)
    grid = study.grid(base, {"depth": [{"depth": 18}, {"depth": 34}]}, [0, 1], runs=tmp_path, executor="inline")
    grid.compute(progress=False)
    summary = R.Run.summary
    # seed 0 of ResNet-18 learned, nothing else did
    monkeypatch.setattr(R.Run, "summary", lambda self: {**summary(self), "learned": self.config.seed == 0
                                                        and self.config.depth == 18})
    out = C.for_grid(grid)
    assert out[["family", "setting", "runs", "images"]].values.tolist() == [["depth", "18", 1, 6]]
    rows = C.for_run(grid.find(setting="18", seed=0))
    assert list(rows.columns[:4]) == ["image", "label", "pred", "target"] and len(rows) == 6
    # the same images and numbers as the run's own evaluation (thesislib.evaluation.evaluate)
    stored = grid.find(setting="18", seed=0).images().pivot(index="image", columns="method", values="iou_area")
    assert sorted(rows["image"]) == sorted(stored.index)
    assert rows.set_index("image")["iou_cam"].to_dict() == pytest.approx(stored["cam"].to_dict(), abs=1e-6)
    assert rows.set_index("image")["iou_gradcam"].to_dict() == pytest.approx(stored["gradcam"].to_dict(), abs=1e-6)
    for col in ("iou_cam", "iou_gradcam", "iou_cam_other", "overlap", "negative_share"):
        assert out.loc[0, col] == pytest.approx(100 * rows[col].mean())
    assert out.loc[0, "max_abs_diff"] == pytest.approx(rows["max_abs_diff"].mean())
    assert out.loc[0, "max_abs_diff_max"] == pytest.approx(rows["max_abs_diff"].max())
    assert C.for_grid(grid, family="depth").equals(out)
    monkeypatch.setattr(R.Run, "summary", lambda self: {**summary(self), "learned": False})
    assert C.for_grid(grid).empty


def _measured(cam, gradcam, other, settings=("18", "34")):
    n = len(settings)
    return __import__("pandas").DataFrame(dict(
        family="depth", setting=list(settings), runs=[3] * n, images=[384] * n, iou_cam=[cam] * n,
        iou_gradcam=[gradcam] * n, iou_cam_other=[other] * n, overlap=[91.0] * n, negative_share=[30.0] * n,
        max_abs_diff=[0.007] * n, max_abs_diff_max=[0.33] * n))


def test_the_thesis_note_sets_the_thesis_beside_our_measurement():
    from thesislib.thesis import CAM_GAP, reference, thesis_notes

    ref = reference()
    cell = ref[(ref["family"] == "depth") & (ref["metric"] == "iou_area")].set_index(["setting", "method"])["mean"]
    shares = [cell[(s, "CAM")] / cell[(s, "Grad-CAM")] for s in ("18", "34", "50")]
    assert max(shares) < CAM_GAP  # the thesis's pattern in Table 5.2
    plain = thesis_notes("depth")
    assert f"18: IoU (A) {cell[('18', 'CAM')]:g} % vs {cell[('18', 'Grad-CAM')]:g} %" in plain
    assert f"reaches {min(shares):.2f}-{max(shares):.2f} of its Grad-CAM's" in plain
    assert "on our trained models: 01 · Depth" in plain
    assert "has no ReLU" not in plain  # the why is said once, beside the measurement (01)

    # CAM close to Grad-CAM here, the other class's CAM far below it: the mix-up would explain the column
    note = thesis_notes("depth", measured=_measured(20.0, 21.0, 6.0))
    assert plain.split(" Why CAM")[0] in note  # the thesis's numbers, quoted as without a measurement
    assert f"| 18 | {cell[('18', 'CAM')]:g} % | {cell[('18', 'Grad-CAM')]:g} % | 20.0 % | 21.0 % | 6.0 % | 91 % | " \
           "0.007 / 0.33 | 3 (384) |" in note
    assert "| 50 | " in note and "no learned run |" in note  # measured nowhere
    assert "ours reaches 0.95" in note and "does not appear here" in note
    assert "a CAM of the wrong class would produce a column like the thesis's" in note
    # CAM far below Grad-CAM here too; the other class's CAM is not
    note = thesis_notes("depth", measured=_measured(5.0, 20.0, 15.0))
    assert "ours reaches 0.25. The thesis's pattern (CAM below 0.5 of Grad-CAM's IoU (A)) appears here." in note
    assert "not even that mix-up reproduces the thesis's gap" in note
    # a table of the thesis without the gap (5.4: CAM near Grad-CAM) is not read as having one
    batch = thesis_notes("batch_size", measured=_measured(20.0, 21.0, 6.0).assign(family="batch_size"))
    assert "not below 0.5 throughout" in batch and "pattern" not in batch
    assert thesis_notes("dropout", measured=_measured(20.0, 21.0, 6.0)) == ""  # no CAM column there
    with pytest.raises(ValueError, match="measured: expected thesislib.cam_check.for_grid's table"):
        thesis_notes("depth", measured=_measured(20.0, 21.0, 6.0).drop(columns="overlap"))
