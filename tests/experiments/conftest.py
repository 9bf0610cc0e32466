"""Fixtures: the experiment scripts (outside the package) loaded as modules (the loader is
``load_script`` of ``tests/conftest.py``)."""

from __future__ import annotations

import sys

import pytest


@pytest.fixture(scope="module")
def run_niah(load_script):
    """``experiments/niah/run_niah.py`` (it puts ``experiments/`` on the path for its harness)."""
    return load_script("run_niah", "experiments/niah/run_niah.py")


@pytest.fixture(scope="module")
def task_training(run_niah):
    """``experiments/task_training.py``, the training harness shared by S-NIAH and BABILong."""
    return sys.modules["task_training"]


@pytest.fixture(scope="module")
def run_babilong(run_niah, load_script):
    """``experiments/babilong/run_babilong.py`` (after ``run_niah``, which puts the harness on the path)."""
    return load_script("run_babilong", "experiments/babilong/run_babilong.py")
