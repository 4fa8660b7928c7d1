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
                     batch_size=32, eval_images=6, methods=["cam", "gradcam"], references=["prior", "ceiling"],
                     track_every=1, track_images=6)


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
    assert set(run.images()["method"]) == {"cam", "gradcam", "prior", "ceiling"}
    summary = pd.read_csv(run.eval_dir / "summary.csv")
    assert set(summary["method"]) == {"cam", "gradcam", "prior", "ceiling"} and "iou_area" in summary
    assert {p.stem for p in run.eval_dir.glob("*.csv")} == {"cam", "gradcam", "prior", "ceiling", "summary"}
    done = run.summary()
    assert {"majority_rate", "learned", "learned_margin", "val_pred_counts", "init_sha256"} <= set(done)
    # the initial weights recorded are those the config gives: the pairing key needs no training
    assert done["init_sha256"] == R.initial_fingerprint(cfg)
    assert run.pairing == R.Run(cfg, run.data_root, run.fingerprint, tmp_path / "elsewhere").pairing
    assert isinstance(done["learned"], bool) and sum(done["val_pred_counts"]) == len(run.split().val)
    from thesislib.metrics import registered
    tracked = {f"track_{m.name}" for kind in ("localisation", "faithfulness") for m in registered(kind)
               if not m.on_request}  # deletion/insertion, ROAD: only when asked for
    assert tracked <= set(hist) and {"val_roc_auc", "val_f1", "val_ce", "val_loss_sampled"} <= set(hist)
    assert isinstance(run.load_model(), torch.nn.Module)

    def boom(*a, **k):
        raise AssertionError("recomputed")
    monkeypatch.setattr("thesislib.train.train", boom)
    monkeypatch.setattr("thesislib.evaluation.evaluate", boom)
    real_compute_one, submitted = R.compute_one, []
    monkeypatch.setattr(R, "compute_one", lambda *a, **k: submitted.append(a) or real_compute_one(*a, **k))
    before = _stamps(d)
    # in-process, so that the patches reach whatever would compute
    again = study.run_all([cfg], runs_dir=tmp_path, executor=study.InlineExecutor(), progress=False)
    assert again[0].run_id == run.run_id and again[0].complete
    assert submitted == [] and _stamps(d) == before  # nothing submitted, no file rewritten
    out = real_compute_one(cfg.to_dict(), str(run.data_root), str(tmp_path))  # asked directly, it finds the run done
    assert not out["trained"] and out["evaluated"] == [] and _stamps(d) == before


def _stamps(folder):
    """(modification time, inode) of every file under `folder` but lock files: an atomic rewrite changes both."""
    files = [p for p in folder.rglob("*") if p.is_file() and p.suffix != ".lock"]
    return {p: (p.stat().st_mtime_ns, p.stat().st_ino) for p in files}


def test_new_methods_are_added_without_retraining(cfg, tmp_path, monkeypatch):
    study.run_all([cfg], runs_dir=tmp_path, executor=study.InlineExecutor(), progress=False)
    monkeypatch.setattr("thesislib.train.train", lambda *a, **k: (_ for _ in ()).throw(AssertionError("retrained")))
    [run] = study.run_all([cfg.replace(methods=["cam", "gradcam", "scorecam"])], runs_dir=tmp_path,
                          executor=study.InlineExecutor(), progress=False)
    assert set(run.images()["method"]) == {"cam", "gradcam", "scorecam", "prior", "ceiling"}
    calls = []
    import thesislib.evaluation as E
    real = E.evaluate
    monkeypatch.setattr(E, "evaluate", lambda *a, **k: calls.append((a[2], k["references"])) or real(*a, **k))
    [run] = study.run_all([cfg.replace(methods=["cam", "layercam", "xgradcam"],
                                       references=["prior", "ceiling", "sobel", "gaussian"])],
                          runs_dir=tmp_path, executor=study.InlineExecutor(), progress=False)
    assert calls == [(["layercam", "xgradcam"], ["sobel", "gaussian"])]  # what is missing, in one call
    assert not run.missing_methods() and run.complete


def test_a_failing_run_is_reported_and_the_others_kept(cfg, tmp_path, monkeypatch):
    with pytest.raises(Exception, match="data root not found"):  # a bad folder fails before anything starts
        study.run_all([cfg.replace(data=str(tmp_path / "missing"))], runs_dir=tmp_path,
                      executor=study.InlineExecutor(), progress=False)
    import thesislib.train as T

    real_train = T.train

    def train_or_fail(*a, **k):  # the run with seed 2 fails while training, after planning
        if k["seed"] == 2:
            raise RuntimeError("loss became NaN")
        return real_train(*a, **k)
    monkeypatch.setattr(T, "train", train_or_fail)
    configs = [cfg, cfg.replace(seed=2), cfg.replace(seed=1)]  # the failure between two good runs
    with pytest.raises(R.RunError) as err:
        study.run_all(configs, runs_dir=tmp_path, executor=study.InlineExecutor(), progress=False)
    first, bad, last = study.plan(configs, tmp_path)
    assert "1 of 3 runs failed" in str(err.value) and f"{bad.run_id} (" in str(err.value)
    assert "loss became NaN" in str(err.value) and "loss became NaN" in (bad.dir / "error.txt").read_text()
    assert first.complete and last.complete and not bad.trained
    # kept: the next sweep submits the failed run only
    real_compute_one, submitted = R.compute_one, []
    monkeypatch.setattr(R, "compute_one", lambda *a, **k: submitted.append(a[0]["seed"]) or real_compute_one(*a, **k))
    stamps = _stamps(first.dir), _stamps(last.dir)
    with pytest.raises(R.RunError, match="1 of 1 runs failed"):
        study.run_all(configs, runs_dir=tmp_path, executor=study.InlineExecutor(), progress=False)
    assert submitted == [2] and (_stamps(first.dir), _stamps(last.dir)) == stamps


def test_compute_one_failure_is_collected_with_a_log(cfg, tmp_path, monkeypatch):
    def fail(*a, **k):
        raise RuntimeError("out of memory")
    monkeypatch.setattr(R, "compute_one", fail)
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


def test_results_and_images_carry_whether_the_run_learned(cfg, tmp_path):
    grid = study.grid(cfg.to_dict(), {"depth": [{}]}, [0], runs=str(tmp_path), executor=study.InlineExecutor())
    res = grid.compute(progress=False).results()
    [run] = grid.runs()
    learned = run.summary()["learned"]
    assert (res["learned"] == learned).all() and list(res.columns[:5]) == ["family", "setting", "seed", "run_id", "learned"]
    assert {"kind", "same_as", "class_agnostic"} & set(res.columns) == {"kind", "same_as", "class_agnostic"} & set(
        pd.read_csv(run.eval_dir / "summary.csv").columns)  # summarize's columns are kept
    imgs = grid.images()
    assert (imgs["learned"] == learned).all()


def test_load_model_uses_the_training_memory_format(cfg, tmp_path):
    [run] = study.run_all([cfg], runs_dir=tmp_path, executor=study.InlineExecutor(), progress=False)
    m = run.load_model()  # width 1/16: a 4-channel 1x1 stride-2 conv, unsafe in channels-last on the CPU
    assert m.conv1.weight.is_contiguous()
    wide = cfg.replace(width=0.25)
    [run] = study.run_all([wide], runs_dir=tmp_path, executor=study.InlineExecutor(), progress=False)
    assert run.load_model().conv1.weight.is_contiguous(memory_format=torch.channels_last)


def test_a_shuffled_label_run_records_the_epoch_it_keeps(cfg, tmp_path, monkeypatch):
    import thesislib.train

    real = thesislib.train.train

    def first_epoch_looks_best(*args, **kwargs):  # the epoch a pick by validation loss would take
        history = real(*args, **kwargs)
        history[0]["val_loss"] = -1.0
        return history

    monkeypatch.setattr(thesislib.train, "train", first_epoch_looks_best)
    [run] = study.run_all([cfg.replace(shuffle_labels=True, epochs=3, track_every=0)], runs_dir=tmp_path,
                          executor=study.InlineExecutor(), progress=False)
    done, hist = run.summary(), run.history()
    assert done["best_epoch"] == 3 and done["best_val_loss"] == pytest.approx(hist["val_loss"].iloc[-1])
