"""The benchmark entry points run (never timed): figure lines, results file, GPU-check branches on the CPU."""

from __future__ import annotations

import sys

import numpy as np
import pytest
import torch

from benchmarks import __main__ as entry
from benchmarks import common, gpu, gpu_check, metrics


def test_figure_lines_name_ratio_and_target():
    assert common.Figure("x", 2.0, "d", target=1.5).line() == "x: 2.00x (ours vs baseline) - d, target >= 1.5x met"
    assert common.Figure("x", 1.0, "d", target=1.5).line().endswith("target >= 1.5x MISSED")
    assert common.Figure("x", skipped="why").line() == "x: skipped - why"


def test_entry_point_writes_results_with_device_torch_and_commit(tmp_path, capsys):
    out = tmp_path / "RESULTS.md"
    assert entry.main(["--only", "gpu", "--device", "cpu", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "resnet50 224px training: skipped - CUDA only" in printed
    text = out.read_text()
    assert f"torch {torch.__version__}" in text and "- commit: " in text and "- device: CPU" in text
    assert "score-cam resnet50 224px: skipped" in text


def test_metric_reference_loop_agrees_with_the_batched_metrics():
    heat, expert = metrics.maps(24, size=32)
    area, bbox = metrics.ours(heat, expert)
    ref_area, ref_bbox = metrics.reference(heat.numpy(), expert.numpy())
    assert np.array_equal(area.numpy(), ref_area) and np.array_equal(bbox.numpy(), ref_bbox)
    assert (ref_area > 0).mean() > 0.5 and len(set(ref_bbox.tolist())) > 10  # not a degenerate comparison


def test_training_throughput_runs_bf16_and_resident_batches_on_the_cpu():
    r = gpu.train_throughput(torch.device("cpu"), width=0.0625, size=32, batch=2, steps=1, warmup=0, images=4)
    assert r["images_per_s"] > 0 and r["amp"] and r["batch"] == 2


def test_gpu_check_fails_loudly_without_a_gpu(monkeypatch, capsys):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert gpu_check.main([]) == 3
    assert "gpu-check: FAILED - no CUDA device" in capsys.readouterr().err


def test_gpu_check_names_the_missing_wheel_folder(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "pytorch_grad_cam", None)  # as if not installed
    with pytest.raises(SystemExit, match="holds no wheels; run `make wheels`"):
        gpu_check.ensure_grad_cam(tmp_path / "wheels")


@pytest.mark.slow
def test_gpu_check_dry_run_on_the_cpu(tmp_path):
    out = tmp_path / "gpu.md"
    assert gpu_check.main(["--device", "cpu", "--out", str(out)]) == 0
    text = out.read_text()
    assert "all agreement checks passed" in text and "score-cam (ours vs stock)" in text


def test_profile_run_times_every_part_of_a_run_and_writes_the_costs_the_plan_reads(synth_root, capsys, tmp_path):
    import json

    from benchmarks import profile_run
    from thesislib.study import costs

    smoke = profile_run.DEFAULT_PARAMS.parents[1] / "smoke" / "01_depth.yaml"
    before = json.loads(costs.COSTS.read_text())
    path = tmp_path / "costs.json"  # the smoke scale's size, width and stem, so its costs may be written
    path.write_text(json.dumps({**before, "input_size": 64}))
    assert profile_run.main(["--params", str(smoke), "--depth", "18", "--epochs", "1", "--images", "2",
                             "--data", str(synth_root), "--write-costs", str(path)]) == 0
    out = capsys.readouterr().out
    written = json.loads(path.read_text())
    assert written["per_image"]["50"] == before["per_image"]["50"]  # depths not profiled stay
    new = written["per_image"]["18"]
    assert set(new) == set(before["per_image"]["18"]) and new != before["per_image"]["18"]
    assert 0 < new["steps"] < new["train"] and new["method"] < new["scorecam"]
    assert "--write-costs" in written["measured"] and costs.per_image(18, "train", path=path) == new["train"]
    assert written["probe"] > 0 and written["probe"] != before.get("probe")  # what machine_speed compares with
    assert written.get("train_factor") == before.get("train_factor")  # no ResNet-50 profiled: its factors stay
    factors = profile_run.norm_factors(profile_run.config(smoke, 50, None, 1, 2), steps=2)
    assert set(factors) == {"batch", "group-16", "group-32", "group-64"} and all(v > 0 for v in factors.values())
    default = profile_run.DEFAULT_PARAMS  # each depth as its scale trains it: the default ResNet-50's wider stem
    assert profile_run.config(default, 50, None, 1, 2).stem_channels == 16
    assert profile_run.config(default, 18, None, 1, 2).stem_channels is None
    with pytest.raises(SystemExit, match="holds costs for 112 px"):  # another scale's costs are not overwritten
        profile_run.write_costs(costs.COSTS, {18: new}, profile_run.config(smoke, 18, None, 1, 2), "x")
    for part in ("training steps (per epoch)", "validation (per epoch)", "tracking (per tracked epoch)",
                 "checkpoints (per epoch)", "faithfulness: O, both conventions (per map)", "reference: ceiling",
                 *(f"explain: {m}" for m in ("cam", "gradcam", "scorecam", "eigencam", "scorecam-paper")),
                 "total of the run", "check: evaluate()"):
        assert part in out, part


def test_scored_images_subset_keeps_class_shares_and_is_the_same_for_every_run():
    import pandas as pd

    from benchmarks.scored_images import subset

    names = [f"{c}/{i:04d}.jpg" for c, k in (("glaucoma", 35), ("non_glaucoma", 65)) for i in range(k)]
    images = pd.DataFrame({"image": names * 2, "label": [int(n.startswith("glaucoma")) for n in names] * 2})
    picked = subset(images, 40)
    assert len(picked) == 40
    assert sum(n.startswith("glaucoma") for n in picked) == 14  # 35 % of 40
    assert subset(images.sample(frac=1, random_state=1), 40) == picked  # the rows' order does not matter
