"""The kernel benchmark's figure: several runs (device commands) drawn into one figure."""

from __future__ import annotations

import json

import pytest


@pytest.fixture(scope="module")
def bench_kernel(load_script):
    return load_script("bench_kernel", "benchmarks/bench_kernel.py")


def _run(path, time_utc, layers, depth=()):
    path.write_text(json.dumps({
        "env": {"device": "test GPU", "time_utc": time_utc},
        "layers": [{"model": m, "B": 16384 // t, "T": t, "tokens_per_s": v, "peak_gb": 1.0}
                   for m, t, v in layers],
        "depth": [{"depth": d, "B": 16384 // t, "T": t, "tokens_per_s": v} for d, t, v in depth]}))
    return str(path)


def test_plot_of_two_runs_labels_a_layer_measured_in_both_by_its_file(bench_kernel, tmp_path, monkeypatch):
    import matplotlib.axes

    a = _run(tmp_path / "run_a.json", "t0", [("ours", 2048, 5e5), ("ours", 16384, 2e5), ("peer", 2048, 2e5)])
    b = _run(tmp_path / "run_b.json", "t1", [("ours", 2048, 6e5), ("gdn", 2048, 2e6), ("gdn", 16384, 2e6)],
             depth=[(1, 2048, 1e6), (2, 2048, 5e5)])
    labels = []
    real_plot = matplotlib.axes.Axes.plot

    def spy(self, *args, label=None, **kw):
        labels.append(label)
        return real_plot(self, *args, label=label, **kw)

    monkeypatch.setattr(matplotlib.axes.Axes, "plot", spy)
    out = bench_kernel.plot([a, b], out=str(tmp_path / "fig.png"))
    assert out == str(tmp_path / "fig.png") and (tmp_path / "fig.png").stat().st_size > 0
    assert labels == ["ours (run_a)", "peer", "ours (run_b)", "gdn", "L_M = 1", "L_M = 2"]


def test_plot_of_one_run_keeps_plain_labels_and_writes_next_to_the_json(bench_kernel, tmp_path):
    a = _run(tmp_path / "only.json", "t0", [("ours", 2048, 5e5)], depth=[(2, 2048, 5e5)])
    assert bench_kernel.plot(a) == str(tmp_path / "only.png")
    assert (tmp_path / "only.png").exists()


@pytest.fixture(scope="module")
def layer_glue(load_script):
    return load_script("count_layer_glue", "benchmarks/count_layer_glue.py")


def test_byte_counter_sums_inputs_and_outputs_of_launching_ops_only(layer_glue):
    import torch

    a, b = torch.ones(4, 8), torch.ones(8, 2)
    with layer_glue.ByteCounter() as c:
        a.t().contiguous()  # a view (not counted), then a copy
        torch.mm(a, b)
    assert c.bytes["mm"] == (4 * 8 + 8 * 2 + 4 * 2) * 4 and c.calls["mm"] == 1
    assert c.matmul_flops == 2 * 4 * 8 * 2
    assert "t" not in c.calls and "transpose" not in c.calls


def test_layer_glue_stubs_the_op_and_restores_it(layer_glue):
    import titans.memory.neural_memory as memory_module

    original = memory_module.neural_memory
    c = layer_glue.count(1, 40, d_model=32, heads=2, chunk=16)
    assert memory_module.neural_memory is original
    assert c.calls["mm"] >= 6  # q/k/v, gates, output gate and output projections, and their backward
    assert sum(c.bytes.values()) > 0


def test_op_state_counts_both_ways_of_passing_the_state(layer_glue):
    pytest.importorskip("triton")
    counts = layer_glue.count_op_state(1, 32, heads=2, head_dim=16, hidden=32, chunk=16)
    assert len(counts) == 2
    assert all(sum(c.bytes.values()) > 0 and sum(c.calls.values()) > 0 for c in counts.values())


@pytest.mark.parametrize("variant", ["memory-layer", "lmm"])
def test_profile_step_profiles_a_bare_memory_layer_and_a_model(load_script, variant):
    import argparse

    profile_step = load_script("profile_step", "benchmarks/profile_step.py")
    args = argparse.Namespace(variant=variant, d_model=32, n_layers=1, n_heads=2, chunk=16, expansion=2.0,
                              segment=32, vocab=256, batch=1, seq_len=40, steps=1, profile_steps=1, top=5,
                              compile=False, out=None)
    r = profile_step.profile(args)
    assert r["parameters"] > 0 and r["wall_ms_per_step"] > 0 and r["tokens_per_second"] > 0
    assert r["top_by_host"] and "Name" in r["table"]


# torch.compile's first import walks torch.jit modules that warn about their own deprecation
@pytest.mark.filterwarnings("ignore:`torch.jit.script_method` is deprecated:DeprecationWarning")
def test_layer_names_build_the_layer_they_name(bench_kernel, monkeypatch):
    import torch

    monkeypatch.setenv(bench_kernel.BACKEND_ENV, "auto")  # build() sets it; restored afterwards
    plain = bench_kernel.build("ours-triton-init", 32, 2, 16)
    compiled = bench_kernel.build("ours-triton-rc32-init-compile", 32, 2, 16)
    assert not hasattr(plain, "_orig_mod") and plain.config.forget_target == "init"
    assert isinstance(compiled, torch.nn.Module) and hasattr(compiled, "_orig_mod")
    config = compiled._orig_mod.config
    assert config.recompute_segment == 32 and config.forget_target == "init"
