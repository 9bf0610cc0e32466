"""The result readers of the plot scripts (the figures themselves are not compared)."""

from __future__ import annotations

import json

import pytest


@pytest.fixture(scope="module")
def plot_babilong(load_script):
    return load_script("plot_babilong", "experiments/babilong/plot_babilong.py")


def test_babilong_reader_takes_logs_and_results(plot_babilong, tmp_path):
    log = tmp_path / "babilong_mac.log"
    log.write_text("mac: 4.10M parameters\n  step 10 lm 2.0 niah 0.3\n  qa1      0:  10.0%\n"
                   "  qa2   1024:   0.0%\n  qa5  16384:  20.0%\n")
    assert plot_babilong.read(log) == {"mac": {("qa1", 0): 10.0, ("qa2", 1024): 0.0, ("qa5", 16384): 20.0}}
    res = tmp_path / "babilong_results.json"
    res.write_text(json.dumps({"models": {"lmm": {"accuracy": {"qa1@0": 40.0, "qa3@4096": 5.0}}}}))
    assert plot_babilong.read(res) == {"lmm": {("qa1", 0): 40.0, ("qa3", 4096): 5.0}}
    out = tmp_path / "fig.png"
    plot_babilong.main([str(log), str(res)], str(out))
    assert out.stat().st_size > 0


def test_niah_heatmap_labels_rows_of_files_holding_the_same_model(load_script, tmp_path):
    plot_niah = load_script("plot_niah", "experiments/niah/plot_niah.py")
    records = [{"variant": "passkey", "length": n, "depth": d, "index": 0, "score": 1}
               for n in (1024, 2048) for d in (0.0, 1.0)]
    paths = []
    for i in range(2):
        p = tmp_path / f"r{i}.json"
        p.write_text(json.dumps({"args": {"variants": ["passkey"]}, "models": {"mac": {"records": records}}}))
        paths.append(str(p))
    out = tmp_path / "fig.png"
    plot_niah.main(paths, str(out), labels=["early", "late"])
    assert out.stat().st_size > 0
    with pytest.raises(ValueError, match="one per file"):
        plot_niah.main(paths, str(out), labels=["early"])


def test_forget_target_gpu_table_reads_the_harness_log_lines(load_script, tmp_path):
    table = load_script("ft_gpu_table", "experiments/forget_target/gpu/table.py")
    log = tmp_path / "x.log"
    log.write_text("  step 1480 lm 1.2 niah 0.01 ctx 0.9 copy 0.2 |g| 12.9 (1390s)\n"
                   "  step 1490 lm 1.2 niah 0.01 ctx 0.9 copy 0.2 |g| 12.9 (1398s)\n"
                   "  uuid      16384:  77.0%  (tokens  99.2%)\n  passkey    2048: 100.0%  (tokens 100.0%)\n"
                   "  qa1      0:  50.0%\n  qa2      0:  40.0%\n  qa1  32768:  20.0%\n  qa2  32768:   0.0%\n")
    got = table.parse(log)
    assert got["last_logged_step"] == 1490 and got["train_seconds_at_last_step"] == 1398
    assert got["accuracy"]["uuid"] == {16384: 77.0} and got["token_accuracy"]["passkey"] == {2048: 100.0}
    bab = {k: v for k, v in got["accuracy"].items() if k.startswith("qa")}
    assert table.mean_over_tasks(bab) == {0: 45.0, 32768: 10.0}
