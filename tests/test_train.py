import os

import pytest
import torch
from torch import nn

from thesislib.models import create_model
from thesislib.train import seed_everything, train, validate, weight_penalty


def _fresh(seed=0, **kw):
    seed_everything(seed)
    return create_model("resnet18", width=0.0625, stem="compact", **kw)


def test_same_seed_same_history(split):
    torch.set_num_threads(1)
    runs = []
    for _ in range(2):
        m = _fresh(dropout=0.3)
        runs.append(train(m, split.train, split.val, epochs=2, batch_size=16, seed=0, progress=False))
    strip = lambda h: [{k: v for k, v in r.items() if k != "seconds"} for r in h]  # noqa: E731
    assert strip(runs[0]) == strip(runs[1])
    other = train(_fresh(seed=1, dropout=0.3), split.train, split.val, epochs=2, batch_size=16, seed=1, progress=False)
    assert strip(other) != strip(runs[0])


def test_history_has_the_promised_columns(split):
    h = train(_fresh(), split.train, split.val, epochs=1, batch_size=32, progress=False,
              on_epoch=lambda e, m: {"extra": e})
    assert set(h[0]) >= {"epoch", "train_loss", "train_ce", "train_acc", "val_loss", "val_ce", "val_loss_sampled",
                         "val_acc", "seconds", "extra"}
    assert h[0]["val_loss"] == h[0]["val_ce"] == h[0]["val_loss_sampled"]  # no PRECODE: one path, no KL


def test_keeps_the_lowest_validation_loss_weights(split, tmp_path):
    m = _fresh()
    h = train(m, split.train, split.val, epochs=3, batch_size=16, checkpoint_dir=tmp_path, progress=False)
    best = torch.load(tmp_path / "best.pt", weights_only=True)
    assert all(torch.equal(v, m.state_dict()[k]) for k, v in best.items())
    from thesislib.train import predict
    logits, labels = predict(m, split.val)
    val_loss = nn.functional.cross_entropy(logits, labels).item()
    assert val_loss == pytest.approx(min(r["val_loss"] for r in h), rel=1e-4)


def _scripted_validation(monkeypatch, losses):
    """Make train() see these validation losses, epoch after epoch (the rest of validate() is real)."""
    import thesislib.train as T

    script = iter(losses)
    monkeypatch.setattr(T, "validate", lambda model, data, **kw: {**validate(model, data, **kw),
                                                                  "val_loss": next(script)})


def _snapshot(states):
    """on_epoch callback keeping each epoch's weights."""
    def on_epoch(epoch, model):
        states[epoch] = {k: v.detach().clone() for k, v in model.state_dict().items()}
        return {}
    return on_epoch


def _same(a, b):
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_the_best_checkpoint_is_the_lowest_validation_loss_epoch_not_the_last(split, tmp_path, monkeypatch):
    _scripted_validation(monkeypatch, [0.9, 0.4, 0.6])  # lowest at epoch 2 of 3
    states = {}
    m = _fresh()
    train(m, split.train, split.val, epochs=3, batch_size=32, checkpoint_dir=tmp_path, progress=False,
          on_epoch=_snapshot(states))
    assert not _same(states[2], states[3])  # training moved the weights after epoch 2
    assert _same(torch.load(tmp_path / "best.pt", weights_only=True), states[2])
    assert _same(m.state_dict(), states[2])
    # without a checkpoint folder the model is left holding the same epoch
    _scripted_validation(monkeypatch, [0.9, 0.4, 0.6])
    states_mem = {}
    m = _fresh()
    train(m, split.train, split.val, epochs=3, batch_size=32, progress=False, on_epoch=_snapshot(states_mem))
    assert _same(m.state_dict(), states_mem[2])


def test_a_resumed_run_keeps_the_best_epoch_from_before_the_interruption(split, tmp_path, monkeypatch):
    _scripted_validation(monkeypatch, [0.9, 0.4, 0.6])
    states = {}
    train(_fresh(), split.train, split.val, epochs=2, batch_size=32, checkpoint_dir=tmp_path, progress=False,
          on_epoch=_snapshot(states))  # "killed" after epoch 2, the best so far
    m = _fresh()
    h = train(m, split.train, split.val, epochs=3, batch_size=32, checkpoint_dir=tmp_path, progress=False,
              on_epoch=_snapshot(states))
    assert [r["val_loss"] for r in h] == [0.9, 0.4, 0.6]
    assert _same(torch.load(tmp_path / "best.pt", weights_only=True), states[2])
    assert _same(m.state_dict(), states[2])


def test_resume_continues_exactly_where_it_stopped(split, tmp_path):
    torch.set_num_threads(1)
    straight = train(_fresh(dropout=0.2), split.train, split.val, epochs=3, batch_size=16, seed=5,
                     checkpoint_dir=tmp_path / "a", progress=False)
    train(_fresh(dropout=0.2), split.train, split.val, epochs=1, batch_size=16, seed=5,
          checkpoint_dir=tmp_path / "b", progress=False)  # "killed" after one epoch
    resumed = train(_fresh(dropout=0.2), split.train, split.val, epochs=3, batch_size=16, seed=5,
                    checkpoint_dir=tmp_path / "b", progress=False)
    strip = lambda h: [{k: v for k, v in r.items() if k != "seconds"} for r in h]  # noqa: E731
    assert strip(resumed) == strip(straight)


def test_weight_penalty_spares_biases_and_norm_parameters():
    m = create_model("resnet18", width=0.0625, stem="compact", norm="batch")
    with torch.no_grad():
        for p in m.parameters():
            p.fill_(-2.0)  # negative and not 1: |w| and w^2 differ, and so do w and |w|
    n_weights = sum(x.weight.numel() for x in m.modules() if isinstance(x, (nn.Conv2d, nn.Linear)))
    assert weight_penalty(m, "l1").item() == 2 * n_weights
    assert weight_penalty(m, "l2").item() == 4 * n_weights
    with pytest.raises(ValueError, match="penalty"):
        weight_penalty(m, "l3")


def test_penalty_and_kl_enter_the_loss(split):
    base = train(_fresh(), split.train, split.val, epochs=1, batch_size=32, progress=False)
    l1 = train(_fresh(), split.train, split.val, epochs=1, batch_size=32, penalty="l1", penalty_lambda=1e-3,
               progress=False)
    assert l1[0]["train_loss"] > l1[0]["train_ce"]
    assert base[0]["train_loss"] == pytest.approx(base[0]["train_ce"])
    pc = train(_fresh(precode_k=8, precode_beta=1.0), split.train, split.val, epochs=1, batch_size=32, progress=False)
    assert pc[0]["train_loss"] > pc[0]["train_ce"]


def test_precode_validation_loss_adds_beta_kl_on_the_mean_path(split, tmp_path):
    from thesislib.train import predict, validate

    m = _fresh(precode_k=512, precode_beta=0.5)  # width 1/16: d = 32, k = 8
    h = train(m, split.train, split.val, epochs=2, batch_size=16, checkpoint_dir=tmp_path, progress=False)
    for row in h:
        assert row["val_loss"] > row["val_ce"] and row["val_loss_sampled"] != row["val_loss"]
    # an independent reference: the whole split in one pass, z = mu, KL of the same pass
    logits, labels = predict(m, split.val)
    x, _, _ = split.val.batch()
    with torch.no_grad():
        m(x)
    ref = nn.functional.cross_entropy(logits, labels).item() + 0.5 * m.precode.kl.item()
    best = min(h, key=lambda r: r["val_loss"])
    assert best["val_loss"] == pytest.approx(ref, rel=1e-4)  # the checkpoint is chosen on it
    state = torch.get_rng_state()
    again = validate(m, split.val, seed=0)
    assert torch.equal(state, torch.get_rng_state())  # sampling leaves the training's RNG alone
    assert again == validate(m, split.val, seed=0) and again["val_loss_sampled"] != validate(m, split.val, seed=1)["val_loss_sampled"]


def test_bf16_autocast_trains_on_the_cpu_with_finite_losses(split):
    import math

    h = train(_fresh(precode_k=256), split.train, split.val, epochs=2, batch_size=16, amp="bf16", device="cpu",
              progress=False)
    assert all(math.isfinite(r[k]) for r in h for k in ("train_loss", "train_ce", "val_loss", "val_loss_sampled"))
    off = train(_fresh(precode_k=256), split.train, split.val, epochs=2, batch_size=16, amp="off", progress=False)
    assert h[0]["train_loss"] != off[0]["train_loss"]  # autocast really ran
    assert h[0]["train_loss"] == pytest.approx(off[0]["train_loss"], rel=0.05)
    with pytest.raises(ValueError, match="amp: expected one of bf16, off"):
        train(_fresh(), split.train, split.val, epochs=1, batch_size=16, amp="fp8", progress=False)


def test_compile_wraps_the_forward_and_checkpoints_hold_the_plain_module(split, tmp_path, monkeypatch):
    calls = []

    def fake_compile(model, **kw):  # torch.compile needs a C++ toolchain on the CPU: check the wiring only
        calls.append(model)
        return model
    monkeypatch.setattr(torch, "compile", fake_compile)
    m = _fresh()
    train(m, split.train, split.val, epochs=1, batch_size=32, compile=True, checkpoint_dir=tmp_path, progress=False)
    assert calls == [m]
    assert set(torch.load(tmp_path / "best.pt", weights_only=True)) == set(m.state_dict())


def test_training_uses_channels_last_only_where_it_is_safe(split, monkeypatch):
    import thesislib.train as T

    seen = []
    monkeypatch.setattr(T, "channels_last_ok", lambda model, size, device: seen.append((size, str(device))) or False)
    m = _fresh()
    train(m, split.train, split.val, epochs=1, batch_size=32, device="cpu", progress=False)
    assert seen == [(64, "cpu")] and m.conv1.weight.is_contiguous()
    monkeypatch.undo()
    seed_everything(0)
    m = create_model("resnet18", width=0.25, stem="compact")  # 16 channels: channels-last is safe here
    train(m, split.train, split.val, epochs=1, batch_size=32, device="cpu", progress=False)
    assert m.conv1.weight.is_contiguous(memory_format=torch.channels_last) and not m.conv1.weight.is_contiguous()


def test_learning_check_flags_majority_class_runs():
    from thesislib.train import learning_check

    labels = torch.tensor([0] * 64 + [1] * 36)
    stuck = learning_check(torch.zeros(100, dtype=torch.int64), labels)
    assert stuck["majority_rate"] == 0.64 and stuck["accuracy"] == 0.64 and not stuck["learned"]
    assert stuck["pred_counts"] == [100, 0]
    assert stuck["margin"] == pytest.approx(2 * (0.64 * 0.36 / 100) ** 0.5)  # 2 binomial SEs = 0.096
    barely = labels.clone()
    barely[64:64 + 28] = 0  # 72 % accuracy: above the majority, inside two standard errors
    assert not learning_check(barely, labels)["learned"]
    good = labels.clone()
    good[64:64 + 10] = 0  # 90 %
    assert learning_check(good, labels)["learned"]
    with pytest.raises(ValueError, match="pred, labels"):
        learning_check(good[:5], labels)


def test_the_test_gate_holds_a_run_after_its_checkpoint_and_changes_no_number(split, tmp_path, gate, monkeypatch):
    """thesislib.train's test hook (driven by conftest's `gate`): a held run announces its epoch after
    writing last.pt and waits until released; its numbers and best.pt are those of a run without it."""
    import types

    import thesislib.train as T

    run = types.SimpleNamespace(run_id="held")  # the hook names a run by its checkpoint folder
    waits = []

    def sleep(seconds):  # a wait of the hold loop: note what is there, then release the run
        state = torch.load(tmp_path / "held" / "last.pt", weights_only=True)
        waits.append((gate.epochs(run), state["epoch"]))
        gate.release(run)
    monkeypatch.setattr(T.time, "sleep", sleep)
    gate.hold(run)
    held = train(_fresh(dropout=0.3), split.train, split.val, epochs=2, batch_size=16, checkpoint_dir=tmp_path / "held",
                 progress=False)
    assert waits == [([1], 1)]  # held once, after epoch 1 and its checkpoint; not after epoch 2 (released)
    assert gate.epochs(run) == [1, 2] and int((gate.folder / "held.epoch2").read_text()) == os.getpid()
    monkeypatch.delenv(T.TEST_GATE)
    free = train(_fresh(dropout=0.3), split.train, split.val, epochs=2, batch_size=16, checkpoint_dir=tmp_path / "free",
                 progress=False)
    strip = lambda h: [{k: v for k, v in r.items() if k != "seconds"} for r in h]  # noqa: E731
    assert strip(held) == strip(free)
    a, b = (torch.load(tmp_path / d / "best.pt", weights_only=True) for d in ("held", "free"))
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert sorted(p.name for p in gate.folder.iterdir()) == ["held.epoch1", "held.epoch2"]  # nothing from the free run


def test_warmup_raises_the_learning_rate_linearly_and_resumes_mid_warmup(split, tmp_path, monkeypatch):
    torch.set_num_threads(1)
    seen = []
    step = torch.optim.Adam.step

    def spy(self, *a, **kw):
        seen.append(self.param_groups[0]["lr"])
        return step(self, *a, **kw)

    monkeypatch.setattr(torch.optim.Adam, "step", spy)
    per_epoch = -(-len(split.train) // 16)
    warm = per_epoch + 3  # ends inside the second epoch
    train(_fresh(), split.train, split.val, epochs=2, batch_size=16, lr=1e-3, warmup_steps=warm, progress=False)
    assert seen == pytest.approx([1e-3 * min(1.0, s / warm) for s in range(1, 2 * per_epoch + 1)])
    monkeypatch.setattr(torch.optim.Adam, "step", step)
    straight = train(_fresh(), split.train, split.val, epochs=2, batch_size=16, seed=3, warmup_steps=warm,
                     checkpoint_dir=tmp_path / "a", progress=False)
    train(_fresh(), split.train, split.val, epochs=1, batch_size=16, seed=3, warmup_steps=warm,
          checkpoint_dir=tmp_path / "b", progress=False)  # "killed" after one epoch, inside the warm-up
    resumed = train(_fresh(), split.train, split.val, epochs=2, batch_size=16, seed=3, warmup_steps=warm,
                    checkpoint_dir=tmp_path / "b", progress=False)
    strip = lambda h: [{k: v for k, v in r.items() if k != "seconds"} for r in h]  # noqa: E731
    assert strip(resumed) == strip(straight)
    plain = train(_fresh(), split.train, split.val, epochs=1, batch_size=16, seed=3, progress=False)
    assert strip(plain)[0] != strip(straight)[0]
    with pytest.raises(ValueError, match="warmup_steps"):
        train(_fresh(), split.train, split.val, epochs=1, batch_size=16, warmup_steps=-1, progress=False)
