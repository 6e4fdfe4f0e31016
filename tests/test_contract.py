"""The contract every method file keeps, so the four files stay comparable side by side."""
import dataclasses
import importlib
import inspect
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
METHODS = [m for m in ("ts2vec_adaptive", "dynacl", "aimts", "leaves") if (ROOT / f"{m}.py").exists()]
COMMON_FIELDS = {"dataset", "data_dir", "seed", "batch_size", "lr", "epochs", "device", "out_dir", "save_model"}


@pytest.mark.parametrize("name", METHODS)
def test_method_file_exposes_the_shared_names(name):
    m = importlib.import_module(name)
    for attr in ("Args", "Encoder", "pretrain", "embed", "linear_eval", "main"):
        assert hasattr(m, attr), f"{name}.py has no {attr}"
    fields = {f.name for f in dataclasses.fields(m.Args)}
    assert COMMON_FIELDS <= fields, f"{name}.Args lacks {COMMON_FIELDS - fields}"
    for f in dataclasses.fields(m.Args):
        assert f.metadata.get("help"), f"{name}.Args.{f.name} has no help text"


@pytest.mark.skipif(not METHODS, reason="no method file yet")
def test_linear_eval_is_identical_in_every_method_file():
    sources = {n: inspect.getsource(importlib.import_module(n).linear_eval) for n in METHODS}
    assert len(set(sources.values())) == 1, f"linear_eval differs between {sorted(sources)}"
    for n in METHODS:
        assert "SHARED PROTOCOL" in (inspect.getcomments(importlib.import_module(n).linear_eval) or "")


@pytest.mark.parametrize("name", METHODS)
def test_import_has_no_side_effects(name, tmp_path):
    out = subprocess.run([sys.executable, "-c", f"import {name}"], cwd=ROOT, capture_output=True,
                         text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout == ""


@pytest.mark.parametrize("name", METHODS)
def test_cli_help(name):
    out = subprocess.run([sys.executable, f"{name}.py", "--help"], cwd=ROOT, capture_output=True,
                         text=True, timeout=120)
    assert out.returncode == 0 and "--dataset" in out.stdout and "--device" in out.stdout
