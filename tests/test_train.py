import pytest
import torch
from torch import nn

from thesislib.models import create_model
from thesislib.train import seed_everything, train, weight_penalty


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
    assert set(h[0]) >= {"epoch", "train_loss", "train_ce", "train_acc", "val_loss", "val_acc", "seconds", "extra"}


def test_keeps_the_lowest_validation_loss_weights(split, tmp_path):
    m = _fresh()
    h = train(m, split.train, split.val, epochs=3, batch_size=16, checkpoint_dir=tmp_path, progress=False)
    best = torch.load(tmp_path / "best.pt", weights_only=True)
    assert all(torch.equal(v, m.state_dict()[k]) for k, v in best.items())
    from thesislib.train import predict
    logits, labels = predict(m, split.val)
    val_loss = nn.functional.cross_entropy(logits, labels).item()
    assert val_loss == pytest.approx(min(r["val_loss"] for r in h), rel=1e-4)


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
            p.fill_(1.0)
    n_weights = sum(x.weight.numel() for x in m.modules() if isinstance(x, (nn.Conv2d, nn.Linear)))
    assert weight_penalty(m, "l1").item() == n_weights
    assert weight_penalty(m, "l2").item() == n_weights
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
