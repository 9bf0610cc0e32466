"""Mean answer loss (nats/byte) per 100 logged steps of a run's babilong_results.json or log.

    python3 experiments/babilong/results_cpu_probe/smooth.py experiments/babilong/results_cpu_probe/r*.log
"""

import json
import re
import statistics
import sys

STEP = re.compile(r"step (\d+) lm \S+ niah (\S+)")
BYTES_PER_ANSWER = 8.83  # mean length of " room." in the probe's qa1 stories

for path in sys.argv[1:]:
    if path.endswith(".json"):
        with open(path) as fh:
            results = json.load(fh)
        for name, m in results["models"].items():
            log = [(x["step"], x["niah_loss"]) for x in m["log"]]
            print(path, name, "steps", m["steps"], f"train_s {m['train_seconds']:.0f}", m["accuracy"])
    else:
        with open(path) as fh:
            log = [(int(a), float(b)) for a, b in STEP.findall(fh.read())]
        print(path)
    for a in range(0, len(log), 10):
        window = log[a:a + 10]
        mean = statistics.mean(x[1] for x in window)
        print(f"  steps {window[0][0]:>5}-{window[-1][0]:<5} niah {mean:.3f}"
              f"  (x{BYTES_PER_ANSWER} = {BYTES_PER_ANSWER * mean:.2f} nats/answer)")
