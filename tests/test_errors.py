"""What you did -> what you get: each bad input gets one clear line from the CLI (exit status 2, no
traceback) and the same message as an exception from the Python API; damaged or missing pieces
are never taken as complete; constant and odd-sized maps are counted, never NaN; the report is quiet.
"""

from __future__ import annotations

import errno
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import nbformat
import numpy as np
import pytest
import torch
from PIL import Image

from thesislib import cli
from thesislib import data as D
from thesislib.data import decoded
from thesislib.layout import CLASSES, IMAGE_DIR, MAP_DIR
from thesislib.study.config import ConfigError, RunConfig

ROOT = Path(__file__).resolve().parents[1]
TINY = dict(input_size=64, stem="compact", width=0.0625, depth=18, epochs=1, batch_size=16, eval_images=4,
            methods=["gradcam"], references=[])


@pytest.fixture(scope="module")
def tiny_root(tmp_path_factory):
    """16 synthetic photos at 32 px, 8 per class, in the LAG layout (copied per test, then damaged)."""
    from thesislib.synth import SynthSpec, synthesize

    return synthesize(tmp_path_factory.mktemp("tiny") / "lag", SynthSpec(n=16, size=32, seed=0, glaucoma_fraction=0.5, label_noise=0.0))


@pytest.fixture
def lag(tiny_root, tmp_path):
    root = tmp_path / "lag"
    shutil.copytree(tiny_root, root)
    return root


def _files(root: Path, cls: int = 0, kind: str = IMAGE_DIR) -> list[Path]:
    return sorted((root / CLASSES[cls] / kind).iterdir())


def _cli(*args, env=None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "thesislib", *map(str, args)], cwd=ROOT, capture_output=True,
                          text=True, env={**os.environ, **(env or {})})


def _one_line(stderr: str, returncode: int, *needles: str) -> str:
    """The CLI's contract for expected failures; returns the message after the prefix."""
    assert returncode == 2, stderr
    assert stderr.startswith("thesislib: error: ") and stderr.count("\n") == 1, stderr
    assert "Traceback" not in stderr
    for n in needles:
        assert n in stderr, (n, stderr)
    return stderr[len("thesislib: error: "):].strip()


def _api_message(fn, *args, exc=D.DataError, **kwargs) -> str:
    with pytest.raises(exc) as err:
        fn(*args, **kwargs)
    return str(err.value)


# -- the data folder -----------------------------------------------------------------------------

# what takes seconds to import; an answer about the data folder needs none of it
HEAVY = ("torch", "torchvision", "pandas", "scipy", "skimage", "matplotlib", "seaborn", "numba", "cv2",
         "pytorch_grad_cam", "sklearn", "papermill", "nbformat", "submitit")


@pytest.mark.parametrize("command", [["check-data"], ["report", "--params", "params/smoke", "--data"]])
def test_missing_data_root_fails_fast_without_torch(tmp_path, command):
    code = ("import sys; from thesislib.cli import main; rc = main(sys.argv[1:]); "
            f"print(rc, ','.join(m for m in {HEAVY!r} if m in sys.modules) or '-')")
    r = subprocess.run([sys.executable, "-c", code, *command, str(tmp_path / "LAG")], cwd=ROOT, capture_output=True,
                       text=True)
    msg = _one_line(r.stderr, 2, f"{tmp_path / 'LAG'}: data root not found", "expected a folder in the LAG layout")
    rc, imported = r.stdout.split()
    assert imported == "-", f"imported {imported} before answering"
    assert _api_message(D.scan, tmp_path / "LAG") == msg
    assert _api_message(D.load_split, tmp_path / "LAG", 32) == msg


def test_folder_not_in_the_lag_layout(tmp_path):
    (tmp_path / "photos").mkdir()
    r = _cli("check-data", tmp_path)
    msg = _one_line(r.stderr, r.returncode, "not in the LAG layout", "missing folders non_glaucoma/image",
                    "found folders: photos")
    assert _api_message(D.check, tmp_path) == msg


@pytest.mark.parametrize("remove, found", [(MAP_DIR, "image without its attention map"),
                                           (IMAGE_DIR, "attention map without its image")])
def test_an_image_without_its_map_and_a_map_without_its_image(lag, remove, found):
    victim = _files(lag, 1, remove)[0]
    victim.unlink()
    other = IMAGE_DIR if remove == MAP_DIR else MAP_DIR
    r = _cli("check-data", lag)
    msg = _one_line(r.stderr, r.returncode, f"{lag / CLASSES[1] / other / victim.name}: {found}",
                    f"(expected {victim})")
    assert _api_message(D.scan, lag) == msg


def test_a_truncated_jpeg_is_named_or_left_out_and_counted(lag, tmp_path):
    victim = _files(lag, 1)[1]
    victim.write_bytes(victim.read_bytes()[:-200])
    r = _cli("check-data", lag)
    msg = _one_line(r.stderr, r.returncode, f"{victim}: cannot decode the image", "truncated",
                    "expected a readable JPEG or PNG", "skip_corrupt")
    assert _api_message(D.load_arrays, lag, 32) == msg
    # skipped on request: a warning, a count in check-data and in the data notebook's split table
    r = _cli("check-data", lag, "--skip-corrupt")
    assert r.returncode == 0 and "left out 1 pairs with an unreadable file" in r.stdout, r.stdout + r.stderr
    with pytest.warns(UserWarning, match=r"left out 1 image/map pairs with an unreadable file \(skip_corrupt\)"):
        split = D.load_split(lag, 32, skip_corrupt=True, cache_dir=tmp_path / "cache")
    table = split.describe()
    assert table.loc["left out (unreadable)", "total"] == 1 and table.loc["left out (unreadable)", CLASSES[1]] == 1
    assert table.loc[list(D.SPLITS), "total"].sum() == 15
    # the decoded cache of the reduced set never serves a caller that did not ask to skip
    decoded.MEMORY.clear()
    assert _api_message(D.load_arrays, lag, 32, cache_dir=tmp_path / "cache") == msg
    # and skipping is part of the run's identity (other images, other model)
    base = RunConfig(**TINY)
    assert base.replace(skip_corrupt=True).run_id("d") != base.run_id("d")
    assert RunConfig.from_dict({**TINY, "skip_corrupt": False}).run_id("d") == base.run_id("d")


@pytest.mark.parametrize("mode, found", [("L", "image is grayscale (Pillow mode L)"),
                                         ("RGBA", "image is RGB with an alpha channel (Pillow mode RGBA)"),
                                         ("I;16", "image is 16-bit (Pillow mode I;16)")])
def test_a_photo_that_is_not_8_bit_rgb(lag, mode, found):
    victim = _files(lag, 0)[2]
    rgb = np.asarray(Image.open(victim))
    pixels = {"L": rgb[..., 0], "RGBA": np.dstack([rgb, rgb[..., :1]]), "I;16": rgb[..., 0].astype(np.uint16) * 257}
    victim.unlink()
    victim = victim.with_suffix(".png")
    Image.fromarray(pixels[mode]).save(victim)
    (lag / CLASSES[0] / MAP_DIR / _files(lag, 0, MAP_DIR)[2].name).rename(lag / CLASSES[0] / MAP_DIR / victim.name)
    r = _cli("check-data", lag)
    msg = _one_line(r.stderr, r.returncode, f"{victim}: {found}", "expected an 8-bit RGB photo")
    assert _api_message(D.load_arrays, lag, 32) == msg


def test_a_colour_attention_map(lag):
    victim = _files(lag, 0, MAP_DIR)[0]
    Image.fromarray(np.asarray(Image.open(_files(lag, 0)[0]))).save(victim)  # the photo as its own map
    r = _cli("check-data", lag)
    msg = _one_line(r.stderr, r.returncode, f"{victim}: attention map is in colour", "expected an 8-bit grayscale map")
    assert _api_message(D.load_arrays, lag, 32) == msg


def test_an_empty_class(lag):
    for f in _files(lag, 1) + _files(lag, 1, MAP_DIR):
        f.unlink()
    r = _cli("check-data", lag)
    msg = _one_line(r.stderr, r.returncode, f"{lag / CLASSES[1] / IMAGE_DIR}: no images in class {CLASSES[1]}",
                    "expected .jpg, .jpeg, .png files; found no other files")
    assert _api_message(D.load_split, lag, 32) == msg


def test_an_empty_split(lag):
    for f in _files(lag, 1)[2:] + _files(lag, 1, MAP_DIR)[2:]:
        f.unlink()
    r = _cli("check-data", lag)
    msg = _one_line(r.stderr, r.returncode, f"class {CLASSES[1]} has 2 readable image/map pairs",
                    "expected at least 3, one each for train, val, test")
    assert _api_message(D.load_split, lag, 32) == msg


# -- params files ----------------------------------------------------------------------------------

@pytest.mark.parametrize("base, expected", [
    ({"detph": 18}, "unknown key(s) 'detph'; allowed keys: data, input_size"),
    ({"epochs": "ten"}, "epochs: expected an integer >= 1, found 'ten'"),
    ({"lr": "1e-3"}, "lr: expected a number in [1e-08, 10] (YAML reads 1e-3 as text: write it with a dot"),
    ({"depth": 20}, "depth: expected one of 18, 34, 50, found 20"),
    ({"norm": "layer"}, "norm: expected one of none, batch, group, found 'layer'"),
    ({"dropout": 1.5}, "dropout: expected a number in [0, 1), found 1.5"),
    ({"batch_size": 0}, "batch_size: expected an integer >= 1, found 0"),
])
def test_a_params_file_with_an_unknown_key_a_wrong_type_or_an_invalid_value(tmp_path, monkeypatch, capsys,
                                                                              base, expected):
    import yaml

    (tmp_path / "p").mkdir()
    path = tmp_path / "p" / "01_depth.yaml"
    path.write_text(yaml.safe_dump({"seeds": [0], "base": {**TINY, **base}, "experiments": {"depth": [{}]}}))
    monkeypatch.chdir(ROOT)
    assert cli.main(["report", "--params", str(tmp_path / "p"), "--workdir", str(tmp_path / "nb")]) == 2
    err = capsys.readouterr().err
    msg = _one_line(err, 2, f"{path}: experiments.depth[baseline]: ", expected)
    # the same message from the API (the params file's name and place in front)
    api = _api_message(RunConfig.from_dict, {**TINY, **base}, exc=ConfigError)
    assert msg.endswith(api.removeprefix("config: ")) and not (tmp_path / "nb").exists()


@pytest.mark.parametrize("executor, expected", [
    ("lokal", "executor: kind: expected one of inline, local, slurm or null, found 'lokal'"),
    ({"kind": "slurm", "partiton": "gpu"}, "executor: unknown key(s) 'partiton'; allowed keys: kind, threads"),
    ({"kind": "local", "workers": 0}, "executor: workers: expected an integer >= 1 or null, found 0"),
    (["local"], "executor: expected null, one of inline, local, slurm, or a mapping with a 'kind'"),
])
def test_a_params_file_with_a_bad_executor_fails_before_any_notebook(tmp_path, monkeypatch, capsys, executor,
                                                                      expected):
    import yaml

    from thesislib.study.executors import ExecutorSpec

    (tmp_path / "p").mkdir()
    path = tmp_path / "p" / "01_depth.yaml"
    path.write_text(yaml.safe_dump({"seeds": [0], "base": TINY, "experiments": {"depth": [{}]}, "executor": executor}))
    monkeypatch.chdir(ROOT)
    assert cli.main(["report", "--params", str(tmp_path / "p"), "--workdir", str(tmp_path / "nb")]) == 2
    msg = _one_line(capsys.readouterr().err, 2, f"{path}: {expected}")
    # the same message from the API (the params file's name in front)
    api = _api_message(ExecutorSpec.from_params, executor, exc=ConfigError)
    assert msg.endswith(api) and not (tmp_path / "nb").exists()


def test_a_params_file_with_a_key_its_notebook_does_not_take(tmp_path, monkeypatch, capsys):
    (tmp_path / "p").mkdir()
    (tmp_path / "p" / "00_data.yaml").write_text("n_example: 3\n")
    monkeypatch.chdir(ROOT)
    assert cli.main(["report", "--params", str(tmp_path / "p")]) == 2
    _one_line(capsys.readouterr().err, 2, "00_data.yaml: unknown key(s) 'n_example'; allowed keys: data, runs, base, n_examples")


# -- where results are written -----------------------------------------------------------------------

def test_an_unwritable_runs_folder(tmp_path, monkeypatch, capsys, tiny_root):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    runs = blocker / "runs"
    (tmp_path / "p").mkdir()
    (tmp_path / "p" / "00_data.yaml").write_text("n_examples: 1\n")
    monkeypatch.chdir(ROOT)
    monkeypatch.setenv("THESISLIB_RUNS", str(runs))
    assert cli.main(["report", "--params", str(tmp_path / "p")]) == 2
    _one_line(capsys.readouterr().err, 2, f"{runs / 'notebooks' / 'p'}: folder for executed notebooks",
              "is not writable (Not a directory); expected a folder you may write to")
    from thesislib import study
    from thesislib.atomic import WriteError

    msg = _api_message(study.run_all, [RunConfig(**TINY, data=str(tiny_root))], runs_dir=runs, exc=WriteError,
                       executor=study.InlineExecutor(), progress=False)
    assert msg == f"{runs}: runs folder (THESISLIB_RUNS) is not writable (Not a directory); expected a folder you may write to"


def _no_space(*args, **kwargs):
    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


def test_a_full_disk_while_writing_a_run_leaves_nothing_taken_as_done(tmp_path, monkeypatch, tiny_root):
    from thesislib import study

    configs, runs = [RunConfig(**TINY, data=str(tiny_root))], tmp_path / "runs"

    def sweep() -> str:
        with pytest.raises(study.RunError) as err:
            study.run_all(configs, runs_dir=runs, executor=study.InlineExecutor(), progress=False)
        return str(err.value)

    monkeypatch.setattr(os, "fsync", _no_space)  # every atomic write fails, as on a full disk
    msg = sweep()
    assert msg.startswith("1 of 1 runs failed:") and "WriteError: " in msg and "[log: not written: " in msg
    assert f"{runs / 'cache'}/lag-" in msg  # the decoded data is the first file written
    assert "cannot write (No space left on device); expected free space on its disk" in msg
    monkeypatch.undo()
    real = os.replace

    def full_at_history(src, dst):  # the disk fills up after training, before the run is complete
        if Path(dst).name == "history.csv":
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        real(src, dst)

    monkeypatch.setattr(os, "replace", full_at_history)
    assert f"{study.plan(configs, runs)[0].dir / 'history.csv'}: cannot write (No space left on device)" in sweep()
    monkeypatch.undo()
    [run] = study.plan(configs, runs)
    assert not run.trained and not list(runs.rglob("done.json")) and not list(runs.rglob(".history.csv.*"))
    study.run_all(configs, runs_dir=runs, executor=study.InlineExecutor(), progress=False)  # room again: resumes
    assert run.complete and not (run.dir / "error.txt").exists()


def test_a_full_disk_at_the_cli_is_one_line(tmp_path, monkeypatch, capsys):
    project = _tiny_project(tmp_path)
    monkeypatch.chdir(project)
    monkeypatch.setattr(os, "fsync", _no_space)
    assert cli.main(["report", "--params", "params/p", "--out", str(tmp_path / "r.html"),
                     "--workdir", str(tmp_path / "executed")]) == 2
    err = capsys.readouterr().err  # the notebook ran; writing the page failed
    # the plan first (no runs to train), then the notebook, then one line for the failure
    assert err.startswith("[report] plan: 1 notebook, no runs to train\n[report] (1/1) 00_data"), err
    assert "Traceback" not in err
    _one_line(err.splitlines()[-1] + "\n", 2, f"{tmp_path / 'r.html'}: cannot write (No space left on device)")
    assert not (tmp_path / "r.html").exists()


# -- integrity -----------------------------------------------------------------------------------------

def test_a_damaged_checkpoint_is_refused_and_recomputed(tmp_path, tiny_root):
    from thesislib import study
    from thesislib.study.runs import CheckpointError

    cfg = RunConfig(**TINY, data=str(tiny_root))
    [run] = study.run_all([cfg], runs_dir=tmp_path, executor=study.InlineExecutor(), progress=False)
    recorded = run.summary()["best_sha256"]
    best = run.dir / "best.pt"
    assert run.trained and len(recorded) == 64
    os.utime(run.eval_dir / "gradcam.csv", ns=(0, 0))  # a mark that any rewrite removes, however soon it comes
    best.write_bytes(best.read_bytes() + b"tampered")
    assert not run.trained and not run.complete
    msg = _api_message(run.load_model, exc=CheckpointError)
    assert msg.startswith(f"{best}: sha256 ") and f"differs from the {recorded[:12]}... recorded in done.json" in msg
    assert "recomputes run" in msg
    study.run_all([cfg], runs_dir=tmp_path, executor=study.InlineExecutor(), progress=False)
    assert run.trained and run.summary()["best_sha256"] == recorded  # same seed, same weights
    assert (run.eval_dir / "gradcam.csv").stat().st_mtime_ns != 0  # scored again: the old scores went with it
    run.load_model()


# -- constant and odd-sized maps --------------------------------------------------------------------

def test_blank_expert_maps_and_dead_heatmaps_are_counted_never_nan(split, tiny_model, monkeypatch):
    from thesislib import evaluation as E
    from thesislib import explain as X

    data = split.test
    arrays = D.Arrays(data.arrays.images, data.arrays.maps.clone(), data.arrays.labels, data.arrays.names,
                      data.arrays.fingerprint)
    first = int(data.indices[0])
    arrays.maps[first] = 0  # a blank expert map
    blank = D.LagDataset(arrays, data.indices)
    real = X.explain_all

    def dead_first(model, x, methods, **kw):
        maps = real(model, x, methods, **kw)
        return {m: torch.cat([torch.zeros_like(h[:1]), h[1:]]) for m, h in maps.items()}  # a dead heatmap

    monkeypatch.setattr(X, "explain_all", dead_first)
    df = E.evaluate(tiny_model(), blank, ["gradcam"], max_images=None, batch_size=64)
    metrics = [c for c in df.columns if df[c].dtype.kind == "f" and c != "seconds"]
    assert not df[metrics].isna().any().any()
    row = df[df["image"] == arrays.names[first]].iloc[0]
    assert row["map_empty"] and row["heatmap_constant"] and row["iou_area"] == 0 and row["pointing_game"] == 0
    s = E.summarize(df).iloc[0]
    assert s["empty_maps"] >= 1 and s["constant_heatmaps"] >= 1
    assert int(D.Split(blank, blank, blank).describe().loc["test", "blank maps"]) == 1


def test_maps_of_another_size_or_aspect_are_resized_and_counted(lag, tmp_path):
    victim = _files(lag, 0, MAP_DIR)[0]
    Image.open(victim).resize((20, 10)).save(victim)  # 2:1, its photo is square
    result = D.check(lag)
    assert result.map_other_aspect == [f"{CLASSES[0]}/{victim.name}"] and len(result.map_other_size) == 16
    assert "of another aspect ratio: 1" in str(result)
    split = D.load_split(lag, 32, cache_dir=tmp_path / "cache")
    assert split.train.arrays.maps.shape[1:] == (32, 32)
    assert split.describe()["maps of another aspect"].sum() == 1
    from thesislib import metrics as M

    with pytest.raises(ValueError, match=r"iou_area: b: expected the shape of the map it is compared with, "
                                         r"\(1, 8, 8\) .* found \(1, 4, 8\)"):
        M.iou_area(torch.ones(1, 8, 8, dtype=torch.bool), torch.ones(1, 4, 8, dtype=torch.bool))


# -- the command line itself -----------------------------------------------------------------------------

def test_version_and_every_command_names_its_environment_variables():
    r = _cli("--version")
    from thesislib import __version__

    assert r.returncode == 0 and r.stdout.strip() == f"thesislib {__version__}"
    parser = cli.build_parser()
    commands = next(a for a in parser._actions if a.dest == "command").choices
    reads = {name: [v for v in cli.ENVIRONMENT if v in sub.format_help()] for name, sub in commands.items()}
    assert reads["check-data"] == ["THESISLIB_DATA"]
    assert set(reads["report"]) >= {"THESISLIB_DATA", "THESISLIB_RUNS", "THESISLIB_WORKERS", "THESISLIB_THREADS"}
    for name, sub in commands.items():
        assert "environment variables:" in sub.format_help(), name
    # every variable the package reads is documented
    import re

    read = set()
    for path in (ROOT / "thesislib").rglob("*.py"):
        read |= set(re.findall(r"environ(?:\.get)?[\[(]\"(THESISLIB_[A-Z_]+)\"", path.read_text()))
    assert read and read <= set(cli.ENVIRONMENT), read - set(cli.ENVIRONMENT)


def _tiny_project(tmp_path: Path) -> Path:
    """A project with one tiny notebook and its params, for the report's own code path."""
    project = tmp_path / "project"
    (project / "notebooks").mkdir(parents=True)
    (project / "params" / "p").mkdir(parents=True)
    (project / "pyproject.toml").write_text("[project]\nname = 'x'\n")
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("x = 1", metadata={"tags": ["parameters"]}),
                                         nbformat.v4.new_code_cell("print('x is', x)")])
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(nb, project / "notebooks" / "00_data.ipynb")
    (project / "params" / "p" / "00_data.yaml").write_text("x: 2\n")
    return project


def test_the_report_is_quiet(tmp_path, monkeypatch, capfd):
    from thesislib.report import build_report

    project = _tiny_project(tmp_path)
    monkeypatch.chdir(project)
    assert build_report("params/p", out=tmp_path / "r.html", workdir=tmp_path / "executed")
    err = capfd.readouterr().err  # the kernel's own stderr included
    assert "x is 2" in (tmp_path / "r.html").read_text()
    assert "without encryption" not in err and "WARNING" not in err, err
