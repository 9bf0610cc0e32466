"""The forecasting sweep: job order and the validation-only choice of a configuration."""

from __future__ import annotations

import pytest


@pytest.fixture(scope="module")
def sweep(load_script):
    return load_script("sweep", "experiments/forecasting/sweep.py")


def _record(model, tag, h, val, test):
    return {"config": {"dataset": "ETTh1", "model": model, "pred_len": h}, "tag": tag,
            "val_mse": val, "test_mse": test, "test_mae": test / 2, "params": 1}


def test_choice_uses_validation_only(sweep):
    H = sweep.HORIZONS
    # "a": better validation on average, worse test; "b": better test; "c": a horizon missing.
    recs = [_record("lmm", "a", h, 1.0 + 3.0 * (h == 720), 0.5) for h in H]
    recs += [_record("lmm", "b", h, 2.0, 0.4) for h in H]
    recs += [_record("lmm", "c", h, 0.1, 0.1) for h in H[:3]]
    sel = sweep.select(recs)["ETTh1/lmm"]
    assert sel["one_config"]["tag"] == "a"  # mean val 1.75 < 2.0, although its test is worse
    assert sel["one_config"]["test_mse"] == pytest.approx(0.5)
    assert sel["per_horizon_config"]["tags"] == {96: "a", 192: "a", 336: "a", 720: "b"}
    assert sel["per_horizon_config"]["test_mse"] == pytest.approx((3 * 0.5 + 0.4) / 4)
    assert set(sel["all"]) == {"a", "b"}  # incomplete configurations are never chosen


def test_jobs_run_whole_configurations_defaults_first_and_resume(sweep, tmp_path):
    todo = sweep.jobs(tmp_path, ["lmm", "patchtst"])
    n = len(sweep.DATASETS) * len(sweep.HORIZONS)
    assert len(todo) == n * (len(sweep.grid()["lmm"]) + len(sweep.grid()["patchtst"]))
    assert {(j[1], j[3]) for j in todo[:n]} == {("lmm", sweep.DEFAULTS["lmm"])}
    assert {(j[1], j[3]) for j in todo[n:2 * n]} == {("patchtst", sweep.DEFAULTS["patchtst"])}
    ds, model, h, tag, _ = todo[0]
    sweep.run_path(tmp_path, ds, model, h, tag).write_text("{}")
    assert len(sweep.jobs(tmp_path, ["lmm", "patchtst"])) == len(todo) - 1  # finished runs are kept
