"""The package surface: ``lr.*`` names, module names, and what ``import leopard_reid`` costs."""

from __future__ import annotations

import importlib
import subprocess
import sys
import types
from pathlib import Path

import leopard_reid as lr


def test_match_and_evaluate_are_functions_even_after_their_modules_load():
    import leopard_reid.evaluation
    import leopard_reid.matching  # noqa: F401

    assert isinstance(lr.match, types.FunctionType) and lr.match.__module__ == "leopard_reid.matching"
    assert isinstance(lr.evaluate, types.FunctionType) and lr.evaluate.__module__ == "leopard_reid.evaluation"
    assert type(sys.modules["leopard_reid"]) is types.ModuleType  # no module-class swap


def test_modules_are_named_for_concepts_not_functions():
    pkg = Path(lr.__file__).parent  # (not find_spec: an editable install's finder may answer for another checkout)
    assert {p.stem for p in pkg.iterdir()} & {"match", "evaluate"} == set()
    assert Path(importlib.import_module("leopard_reid.matching").__file__).parent == pkg


def test_every_public_name_resolves():
    assert all(getattr(lr, name) is not None for name in lr.__all__)


def test_import_is_cheap():
    code = "import sys, leopard_reid; print(sorted(set(sys.modules) & {'torch', 'timm', 'cv2', 'pandas'}))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
