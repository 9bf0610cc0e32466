"""Results of ``run.sh`` (forget target zero vs init on the GPU), read from the phase logs.

The device returned the phase-3 logs but not their JSON summaries (a file-count limit), so this
script parses the accuracy lines the harness prints (``uuid 16384: 77.0% (tokens 99.2%)`` and
``qa1 8192: 70.0%``) and the last logged step, writes ``results.json``, prints the Markdown
tables and draws ``forget_target_gpu.png``.

    python3 experiments/forget_target/gpu/table.py experiments/forget_target/gpu
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "babilong"))
from plot_babilong import LINE as BAB  # noqa: E402  the BABILong harness's accuracy line

NIAH = re.compile(r"^\s+(passkey|number|uuid)\s+(\d+):\s+([\d.]+)%\s+\(tokens\s+([\d.]+)%\)")
STEP = re.compile(r"^\s+step (\d+) .*\((\d+)s\)")
RUNS = ["niah_mac_init", "niah_mac_zero", "bab_lmm_init", "bab_lmm_zero"]


def parse(log: Path) -> dict:
    """``{"accuracy": {variant/task: {length: %}}, "token_accuracy": ..., "last_step", "seconds"}``."""
    acc: dict[str, dict[int, float]] = {}
    tok: dict[str, dict[int, float]] = {}
    last = (0, 0)
    for line in log.read_text().splitlines():
        if m := NIAH.match(line):
            acc.setdefault(m[1], {})[int(m[2])] = float(m[3])
            tok.setdefault(m[1], {})[int(m[2])] = float(m[4])
        elif m := BAB.match(line):
            acc.setdefault(m[1], {})[int(m[2])] = float(m[3])
        elif m := STEP.match(line):
            last = (int(m[1]), int(m[2]))
    return {"accuracy": acc, "token_accuracy": tok, "last_logged_step": last[0],
            "train_seconds_at_last_step": last[1]}


def mean_over_tasks(acc: dict[str, dict[int, float]]) -> dict[int, float]:
    lengths = sorted(next(iter(acc.values())))
    return {n: sum(a[n] for a in acc.values()) / len(acc) for n in lengths}


def kb(n: int) -> str:
    return "0" if n == 0 else f"{n // 1024}K"


def main(root: Path) -> None:
    res = {r: parse(root / "cmd3" / f"{r}.log") for r in RUNS}
    for r in ("bab_lmm_init", "bab_lmm_zero"):
        res[r]["mean"] = mean_over_tasks(res[r]["accuracy"])
    (root / "results.json").write_text(json.dumps(res, indent=1, sort_keys=True) + "\n")

    lengths = sorted(res["niah_mac_init"]["accuracy"]["uuid"])
    print("| MAC, forget target | steps | " + " | ".join(f"{v} " + "/".join(kb(n) for n in lengths)
                                                    for v in ("passkey", "number", "uuid")) + " |")
    print("|---|---|---|---|---|")
    for r in ("niah_mac_zero", "niah_mac_init"):
        cells = ["/".join(f"{res[r]['accuracy'][v][n]:.0f}" for n in lengths)
                 for v in ("passkey", "number", "uuid")]
        print(f"| {r.split('_')[-1]} | {res[r]['last_logged_step']} | " + " | ".join(cells) + " |")
    lengths = sorted(res["bab_lmm_init"]["mean"])
    print("\n| LMM, forget target | steps | " + " | ".join(kb(n) for n in lengths) + " |")
    print("|---|---|" + "---|" * len(lengths))
    for r in ("bab_lmm_zero", "bab_lmm_init"):
        print(f"| {r.split('_')[-1]} | {res[r]['last_logged_step']} | "
              + " | ".join(f"{res[r]['mean'][n]:.0f}" for n in lengths) + " |")
    plot(res, root / "forget_target_gpu.png")


def plot(res: dict, path: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (a, b) = plt.subplots(1, 2, figsize=(12, 4.2))
    for r, style in (("niah_mac_zero", "--"), ("niah_mac_init", "-")):
        for v, color in (("passkey", "tab:green"), ("number", "tab:blue"), ("uuid", "tab:red")):
            xs = sorted(res[r]["accuracy"][v])
            a.plot(xs, [res[r]["accuracy"][v][x] for x in xs], style, color=color, marker="o",
                   label=f"{v}, {r.split('_')[-1]}")
    xs = sorted(res["niah_mac_init"]["accuracy"]["uuid"])
    a.axvline(4096, color="grey", lw=0.8)
    a.set(xscale="log", xlabel="context (bytes)", ylabel="exact match (%)", ylim=(-3, 103),
          title="S-NIAH, MAC trained at ≤ 4K (100 needles a point)")
    a.set_xticks(xs, [kb(x) for x in xs])
    a.minorticks_off()
    a.legend(fontsize=7, ncol=2)
    for r, style in (("bab_lmm_zero", "--"), ("bab_lmm_init", "-")):
        xs = sorted(res[r]["mean"])
        b.plot([max(x, 512) for x in xs], [res[r]["mean"][x] for x in xs], style, marker="o",
               color="black", label=f"mean qa1–qa5, {r.split('_')[-1]}")
    b.axvline(2048, color="grey", lw=0.8)
    b.set(xscale="log", xlabel="context (bytes)", ylabel="accuracy (%)",
          ylim=(-3, 103), title="BABILong qa1–qa5, LMM trained at ≤ 2K (100 stories a point)")
    b.set_xticks([max(x, 512) for x in xs], [kb(x) for x in xs])
    b.minorticks_off()
    b.legend(fontsize=8)
    fig.suptitle("forget target zero (dashed, the paper's) vs init (solid): 1,400 s more training each",
                 fontsize=11)
    fig.tight_layout()
    fig.savefig(path, dpi=120)


if __name__ == "__main__":
    main(Path(sys.argv[1] if len(sys.argv) > 1 else Path(__file__).parent))
