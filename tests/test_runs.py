import json

import pandas as pd
import pytest
import torch

from thesislib import study
from thesislib.study import runs as R
from thesislib.study.config import RunConfig


@pytest.fixture
def cfg(synth_root):
    return RunConfig(data=str(synth_root), input_size=64, stem="compact", width=0.0625, depth=18, epochs=2,
                     batch_size=32, eval_images=6, methods=["cam", "gradcam"], track_every=1, track_images=6)


def test_a_run_stores_everything_and_is_computed_once(cfg, tmp_path, monkeypatch):
    [run] = study.run_all([cfg], runs_dir=tmp_path, executor=study.InlineExecutor(), progress=False)
    d = run.dir
    for name in ("config.json", "meta.json", "history.csv", "best.pt", "done.json", "eval"):
        assert (d / name).exists(), name
    assert not (d / "last.pt").exists()
    meta = json.loads((d / "meta.json").read_text())
    assert {"git_commit", "torch", "device", "threads", "train_seconds"} <= set(meta)
    assert json.loads((d / "config.json").read_text())["config"] == cfg.to_dict()
    hist = run.history()
    assert list(hist["epoch"]) == [1, 2] and hist["track_iou_area"].notna().all()
    assert set(run.images()["method"]) == {"cam", "gradcam"}
    summary = pd.read_csv(run.eval_dir / "summary.csv")
    assert set(summary["method"]) == {"cam", "gradcam"} and "iou_area" in summary
    assert isinstance(run.load_model(), torch.nn.Module)

    def boom(*a, **k):
        raise AssertionError("recomputed")
    monkeypatch.setattr("thesislib.train.train", boom)
    monkeypatch.setattr("thesislib.evaluation.evaluate", boom)
    again = study.run_all([cfg], runs_dir=tmp_path, progress=False)
    assert again[0].run_id == run.run_id and again[0].complete


def test_new_methods_are_added_without_retraining(cfg, tmp_path, monkeypatch):
    study.run_all([cfg], runs_dir=tmp_path, executor=study.InlineExecutor(), progress=False)
    monkeypatch.setattr("thesislib.train.train", lambda *a, **k: (_ for _ in ()).throw(AssertionError("retrained")))
    [run] = study.run_all([cfg.replace(methods=["cam", "gradcam", "scorecam"])], runs_dir=tmp_path,
                          executor=study.InlineExecutor(), progress=False)
    assert set(run.images()["method"]) == {"cam", "gradcam", "scorecam"}


def test_a_failing_run_is_reported_and_the_others_kept(cfg, tmp_path):
    bad = cfg.replace(data=str(tmp_path / "missing"))
    good = cfg.replace(seed=1)
    with pytest.raises(Exception, match="data root not found"):
        study.run_all([bad], runs_dir=tmp_path, executor=study.InlineExecutor(), progress=False)
    broken = cfg.replace(seed=2, lr=5.0)  # diverges, but still a valid run
    runs = study.run_all([good, broken], runs_dir=tmp_path, executor=study.InlineExecutor(), progress=False)
    assert all(r.trained for r in runs)


def test_execute_failure_is_collected_with_a_log(cfg, tmp_path, monkeypatch):
    def fail(*a, **k):
        raise RuntimeError("out of memory")
    monkeypatch.setattr(R, "execute", fail)
    with pytest.raises(R.RunError) as err:
        study.run_all([cfg, cfg.replace(seed=1)], runs_dir=tmp_path, executor=study.InlineExecutor(), progress=False)
    assert "2 of 2 runs failed" in str(err.value) and "out of memory" in str(err.value)
    assert "error.txt" in str(err.value)


def test_an_interrupted_run_resumes(cfg, tmp_path):
    from thesislib.data import load_split
    from thesislib.models import create_model
    from thesislib.train import seed_everything, train

    [planned] = study.plan([cfg], tmp_path)
    split = load_split(planned.data_root, 64, cache_dir=tmp_path / "cache")
    seed_everything(cfg.seed)
    model = create_model(cfg.model_name, **cfg.model_kwargs())
    train(model, split.train, split.val, epochs=1, batch_size=cfg.batch_size, seed=cfg.seed,
          checkpoint_dir=planned.dir, progress=False)  # as if killed after epoch 1
    assert (planned.dir / "last.pt").exists() and not planned.trained
    [run] = study.run_all([cfg], runs_dir=tmp_path, executor=study.InlineExecutor(), progress=False)
    assert run.complete and len(run.history()) == 2


def test_process_pool_gives_the_same_numbers_as_in_process(cfg, tmp_path):
    a = study.run_all([cfg], runs_dir=tmp_path / "a", executor=study.InlineExecutor(), progress=False)[0]
    b = study.run_all([cfg], runs_dir=tmp_path / "b", workers=2, progress=False)[0]
    cols = ["train_loss", "val_loss", "val_acc", "track_iou_area"]
    pd.testing.assert_frame_equal(a.history()[cols], b.history()[cols])
    pd.testing.assert_frame_equal(a.images().drop(columns="seconds"), b.images().drop(columns="seconds"))
