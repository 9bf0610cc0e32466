"""Shared fixtures: a fixed seed per test, GPU tests skipped without CUDA, and ``load_script``
(a script outside the package, e.g. under ``experiments/`` or ``benchmarks/``, as a module)."""

import importlib.util
import sys
from pathlib import Path

import pytest
import torch


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


def pytest_collection_modifyitems(config, items):
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs CUDA")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)


ROOT = Path(__file__).resolve().parents[1]


def _load(name: str, rel: str):
    """The script at ``ROOT / rel`` executed as module ``name`` (registered in ``sys.modules``)."""
    spec = importlib.util.spec_from_file_location(name, ROOT / rel)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="session")
def load_script():
    """``load_script(name, "experiments/...py")``: a script of the repository as a module."""
    return _load
