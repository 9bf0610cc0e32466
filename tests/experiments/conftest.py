"""Fixtures: the experiment scripts (outside the package) loaded as modules."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def run_niah():
    """``experiments/niah/run_niah.py`` (it puts ``experiments/`` on the path for its harness)."""
    spec = importlib.util.spec_from_file_location("run_niah", ROOT / "experiments/niah/run_niah.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules["run_niah"] = module
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def task_training(run_niah):
    """``experiments/task_training.py``, the training harness shared by S-NIAH and BABILong."""
    return sys.modules["task_training"]


@pytest.fixture(scope="module")
def run_babilong(run_niah):
    """``experiments/babilong/run_babilong.py`` (after ``run_niah``, which puts the harness on the path)."""
    path = ROOT / "experiments/babilong/run_babilong.py"
    spec = importlib.util.spec_from_file_location("run_babilong", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules["run_babilong"] = module
    spec.loader.exec_module(module)
    return module
