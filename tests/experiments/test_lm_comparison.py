"""The LM comparison script's seed option and the seed table of its CPU ablation run."""

from __future__ import annotations

import argparse
import json


def test_seed_reaches_the_training_config(load_script, tmp_path):
    run = load_script("lm_comparison_run", "experiments/lm_comparison/run.py")
    (tmp_path / "tok").mkdir()
    for name in ("train.npy", "gutenberg_val.npy"):
        (tmp_path / name).write_bytes(b"")
    args = argparse.Namespace(memory=None, size="tiny", data=tmp_path, seq_len=64, batch_size=2, lr=1e-3,
                              seed=7)
    cfg = run.make_config(args, "lmm-nodecay", 10, tmp_path)
    assert cfg.seed == 7
    assert cfg.model_overrides == {"memory": {"weight_decay": False}}


def _run(ppl: dict[str, float]) -> dict:
    return {"models": {m: {"parameters": 1000, "gutenberg_test": {"ppl": p}, "val": {"ppl": p + 1},
                           "wikitext2_test": {"ppl": 2 * p}} for m, p in ppl.items()}}


def test_seed_table_pairs_each_ablation_with_its_seeds_lmm(load_script, tmp_path, capsys):
    table = load_script("lm_cpu_seed_table", "experiments/lm_comparison/results_cpu_seeds/table.py")
    # seed 0: lmm 100, ablation 110 (+10%); seed 1: lmm 200, ablation 180 (-10%)
    (tmp_path / "seed0.json").write_text(json.dumps(_run({"lmm": 100.0, "lmm-linear": 110.0})))
    (tmp_path / "seed1.json").write_text(json.dumps(_run({"lmm": 200.0, "lmm-linear": 180.0})))
    failed = _run({"lmm": 150.0})
    failed["models"]["lmm-linear"] = {"error": "RuntimeError: diverged"}
    (tmp_path / "seed2.json").write_text(json.dumps(failed))
    table.main(tmp_path)
    out = capsys.readouterr().out
    assert "| lmm-linear | 0.00M | 110.0 / 180.0 | 145.0 ± 49.5 | +0.0% ± 14.1 | 146.0 ± 49.5 | 290 ± 99 |" \
        in out
    assert "| lmm | 0.00M | 100.0 / 200.0 / 150.0 | 150.0 ± 50.0 | — |" in out
    rows = (tmp_path / "summary.csv").read_text().splitlines()
    assert rows[2].startswith("lmm-linear,2,1000,145.00,49.50,146.00,49.50,290.00,98.99,0.00,14.14")
