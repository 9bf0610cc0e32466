import argparse
import json

import numpy as np
import pytest
import torch

from titans.evaluation import cli_forecast
from titans.evaluation.forecasting.data import TEST_END, TRAIN_END, VAL_END, ETTWindows, read_ett
from titans.evaluation.forecasting.harness import ForecastConfig, train_and_evaluate
from titans.evaluation.forecasting.models import MODELS, EinFFT, RevIN, build_model

SMALL = {"lmm": dict(d_model=16, n_layers=1, num_heads=2, chunk_size=4),
         "patchtst": dict(d_model=16, n_layers=1, n_heads=2, d_ff=32), "dlinear": {}}


@pytest.mark.parametrize("name", ["ETTh1", "ETTh2"])
@pytest.mark.parametrize("horizon", [96, 192, 336, 720])
def test_split_sizes(name, horizon):
    raw, cols = read_ett(name)
    assert raw.shape == (17420, 7) and cols[-1] == "OT"
    sizes = {s: len(ETTWindows(name, s, 96, horizon, values=raw)) for s in ("train", "val", "test")}
    assert sizes == {"train": 8640 - 96 - horizon + 1, "val": 2880 - horizon + 1, "test": 2880 - horizon + 1}


def test_borders_and_no_test_statistics():
    n, c = 17420, 7
    rows = np.arange(n, dtype=np.float64)[:, None] + np.zeros((1, c))
    rows[:, 1] = np.sin(np.arange(n) / 7.0) * (1 + (np.arange(n) >= TRAIN_END) * 50)  # later rows wild
    seq, h = 96, 24
    splits = {s: ETTWindows("ETTh1", s, seq, h, values=rows) for s in ("train", "val", "test")}
    sc = splits["train"].scaler
    np.testing.assert_allclose(sc.mean, rows[:TRAIN_END].mean(0))
    np.testing.assert_allclose(sc.std, rows[:TRAIN_END].std(0))
    for d in splits.values():  # every split uses the training statistics
        np.testing.assert_allclose(d.scaler.mean, sc.mean)
    spans = {}
    for s, d in splits.items():
        x, y = d.tensors()
        idx_x = sc.inverse(x.double().numpy().reshape(-1, c))[:, 0].round()
        idx_y = sc.inverse(y.double().numpy().reshape(-1, c))[:, 0].round()
        spans[s] = (idx_x.min(), idx_y.min(), idx_y.max())
    assert spans["train"] == (0, seq, TRAIN_END - 1)          # targets never reach validation rows
    assert spans["val"] == (TRAIN_END - seq, TRAIN_END, VAL_END - 1)
    assert spans["test"] == (VAL_END - seq, VAL_END, TEST_END - 1)
    changed = rows.copy()
    changed[TRAIN_END:] *= 1000.0  # validation/test values must not move the training data
    again = ETTWindows("ETTh1", "train", seq, h, values=changed)
    assert torch.equal(again.data, splits["train"].data)
    x0, y0 = splits["val"][0]
    assert x0.shape == (seq, c) and y0.shape == (h, c)


@pytest.mark.parametrize("name", MODELS)
@pytest.mark.parametrize("horizon", [96, 720])
def test_model_shapes(name, horizon):
    m = build_model(name, 96, horizon, 7, **SMALL[name])
    assert m(torch.randn(3, 96, 7)).shape == (3, horizon, 7)
    with pytest.raises(ValueError, match="x must be"):
        m(torch.randn(3, 48, 7))


@pytest.mark.parametrize("name", MODELS)
def test_tiny_training_step_reduces_loss(name):
    torch.manual_seed(0)
    m = build_model(name, 96, 24, 3, **SMALL[name])
    t = torch.arange(130, dtype=torch.float32)
    series = torch.stack([torch.sin(t / 5 + p) for p in (0.0, 1.0, 2.0)], -1)  # [120, 3]
    x = torch.stack([series[i:i + 96] for i in range(0, 8, 2)])
    y = torch.stack([series[i + 96:i + 120] for i in range(0, 8, 2)])
    opt = torch.optim.Adam(m.parameters(), lr=3e-3)
    losses = []
    for _ in range(15):
        loss = torch.nn.functional.mse_loss(m(x), y)
        opt.zero_grad()
        loss.backward()
        assert all(p.grad is None or torch.isfinite(p.grad).all() for p in m.parameters())
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.7 * losses[0], losses


def test_revin_roundtrip_and_einfft():
    r = RevIN(4)
    x = torch.randn(2, 30, 4) * 5 + 3
    z, stats = r.norm(x)
    assert torch.allclose(z.mean(1), torch.zeros(2, 4), atol=1e-5)
    assert torch.allclose(r.denorm(z, stats), x, atol=1e-4)
    f = EinFFT(16, blocks=4)
    assert f(torch.randn(3, 5, 16)).shape == (3, 5, 16)
    with pytest.raises(ValueError, match="blocks"):
        EinFFT(10, blocks=4)


def cli(argv):
    """Parse and run ``titans eval <argv>`` through the suite's own ``register``."""
    parser = argparse.ArgumentParser()
    sub = parser.add_subparsers(dest="suite", required=True)
    cli_forecast.register(sub)
    args = parser.parse_args(argv)
    return args.func(args)


def test_harness_and_cli(tmp_path):
    cfg = ForecastConfig(dataset="ETTh2", model="dlinear", pred_len=96, epochs=2, max_train_batches=5)
    rec = train_and_evaluate(cfg, log=lambda *_: None)
    assert rec["windows"] == {"train": 8449, "val": 2785, "test": 2785}
    assert 1 <= rec["best_epoch"] <= 2 and len(rec["history"]) == 2
    assert 0 < rec["test_mse"] < 5 and 0 < rec["test_mae"] < 5
    out = tmp_path / "fc"
    cli(["forecast", "--datasets", "ETTh2", "--models", "dlinear", "--horizons", "96",
          "--epochs", "2", "--max-train-batches", "5", "--out", str(out)])
    rows = (out / "summary.csv").read_text().splitlines()
    assert rows[0] == "dataset,model,horizon,mse,mae" and rows[-1].startswith("ETTh2,dlinear,avg,")
    again = json.loads((out / "ETTh2_dlinear_96.json").read_text())
    assert again["test_mse"] == rec["test_mse"]  # same config and seed, same numbers
    with pytest.raises(ValueError, match="model"):
        ForecastConfig(model="arima")
    with pytest.raises(ValueError, match="device"):
        ForecastConfig(device="tpu")
    with pytest.raises(ValueError, match="loss must be one of"):
        ForecastConfig(loss="mape")


def test_training_loss_option():
    """``loss="mae"`` trains on the absolute error (a different run from MSE's, same seed) while
    early stopping and the reported metrics stay MSE/MAE; the CLI passes ``--loss`` through."""
    kw = dict(dataset="ETTh1", model="dlinear", pred_len=96, epochs=1, max_train_batches=20)
    mse = train_and_evaluate(ForecastConfig(**kw), log=lambda *_: None)
    mae = train_and_evaluate(ForecastConfig(loss="mae", **kw), log=lambda *_: None)
    assert "train_mse" in mse["history"][0] and "train_mae" in mae["history"][0]
    assert mae["test_mse"] != mse["test_mse"] and 0 < mae["test_mse"] < 5
    assert mae["config"]["loss"] == "mae"


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_harness_on_cuda_matches_cpu():
    kw = dict(dataset="ETTh1", model="patchtst", pred_len=96, epochs=1, max_train_batches=3,
              model_kwargs={"dropout": 0.0, "head_dropout": 0.0})
    cpu = train_and_evaluate(ForecastConfig(**kw), log=lambda *_: None)
    gpu = train_and_evaluate(ForecastConfig(device="cuda", **kw), log=lambda *_: None)
    assert gpu["test_mse"] == pytest.approx(cpu["test_mse"], rel=1e-2)


def test_lmm_ablation_switches():
    full = build_model("lmm", 96, 24, 7, **SMALL["lmm"])
    bare = build_model("lmm", 96, 24, 7, use_memory=False, **SMALL["lmm"])
    linear = build_model("lmm", 96, 24, 7, memory_depth=1, **SMALL["lmm"])
    x = torch.randn(2, 96, 7)
    assert bare(x).shape == linear(x).shape == (2, 24, 7)
    assert bare.blocks[0].memory is None and full.blocks[0].memory is not None
    assert linear.blocks[0].memory.config.depth == 1
    n = lambda m: sum(p.numel() for p in m.parameters())  # noqa: E731
    assert n(bare) < n(linear) < n(full)
