"""Diagnostic only (run r6; superseded by ``run_babilong.py --facts qa1=2``, runs r7-r8): run
experiments/babilong/run_babilong.py with fewer facts per qa1 story.

    QA1_FACTS=2 PYTHONPATH=src python3 experiments/babilong/results_cpu_probe/facts_wrapper.py <flags>

Patches titans.evaluation.babilong.DEFAULT_FACTS["qa1"] (train and test generators alike) and
then calls run_babilong.main() unchanged.
"""
import os
import runpy
import sys
from pathlib import Path

import titans.evaluation.babilong as bl

bl.DEFAULT_FACTS["qa1"] = int(os.environ.get("QA1_FACTS", "2"))
script = Path(__file__).resolve().parents[1] / "run_babilong.py"
sys.argv[0] = str(script)
runpy.run_path(str(script), run_name="__main__")
