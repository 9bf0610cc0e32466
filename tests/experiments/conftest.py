"""Fixtures: the experiment scripts (outside the package) loaded as modules."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def _load(name: str, rel: str):
    """The script at ``ROOT / rel`` executed as module ``name`` (registered in ``sys.modules``)."""
    spec = importlib.util.spec_from_file_location(name, ROOT / rel)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="session")
def load_script():
    """``load_script(name, "experiments/...py")``: an experiment script as a module."""
    return _load


@pytest.fixture(scope="module")
def run_niah():
    """``experiments/niah/run_niah.py`` (it puts ``experiments/`` on the path for its harness)."""
    return _load("run_niah", "experiments/niah/run_niah.py")


@pytest.fixture(scope="module")
def task_training(run_niah):
    """``experiments/task_training.py``, the training harness shared by S-NIAH and BABILong."""
    return sys.modules["task_training"]


@pytest.fixture(scope="module")
def run_babilong(run_niah):
    """``experiments/babilong/run_babilong.py`` (after ``run_niah``, which puts the harness on the path)."""
    return _load("run_babilong", "experiments/babilong/run_babilong.py")
