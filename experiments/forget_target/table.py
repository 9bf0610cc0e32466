"""Table of ``run.sh``'s results: validation perplexity at the training length and the streamed
loss (nats/byte) per 4K piece at 4K, 16K, 32K and 64K bytes, with the first memory layer's
first-matrix norm at 4K and 64K.

    python3 experiments/forget_target/table.py experiments/forget_target/results
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

RUNS = ["zero_a1e-4", "init_a1e-4", "zero_a1e-2", "init_a1e-2", "mac_zero_a1e-2", "mac_init_a1e-2"]
AT = [4096, 16384, 32768, 65536]


def main(root: Path) -> None:
    print("| run | forget target | alpha_init | val ppl (256 tokens) | loss @4K | @16K | @32K | @64K "
          "| |W| @4K → @64K |")
    print("|---|---|---|---|---|---|---|---|---|")
    for run in RUNS:
        stream = root / f"stream_{run}.json"
        if not stream.exists():
            continue
        rows = {r["position"]: r for r in json.loads(stream.read_text())["rows"]}
        log = (root / f"train_{run}.log").read_text()
        ppl = re.search(r"→ ([\d.]+) after", log)
        target, alpha = run.removeprefix("mac_").split("_a")
        losses = " | ".join(f"{rows[p]['loss']:.2f}" for p in AT)
        print(f"| {run} | {target} | {alpha} | {ppl.group(1) if ppl else '?'} | {losses} | "
              f"{rows[AT[0]]['w_first'][0]:.1f} → {rows[AT[-1]]['w_first'][0]:.1f} |")


if __name__ == "__main__":
    main(Path(sys.argv[1] if len(sys.argv) > 1 else "experiments/forget_target/results"))
