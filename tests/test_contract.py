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


# --------------------------------------------------------------------------- pretrain(callback=...)
def _tiny_pretrain(name, callback):
    """Each file's own pretrain on a tiny seeded input, with the callback. -> (returned encoder, init or None)."""
    import numpy as np
    import torch
    m = importlib.import_module(name)
    cpu, rng = torch.device("cpu"), np.random.default_rng(0)
    quiet = dict(log=False)
    if name == "ts2vec_adaptive":
        x = rng.standard_normal((16, 32, 1)).astype(np.float32)
        args = m.Args(dataset="synthetic", hidden_dims=8, output_dims=8, depth=2, batch_size=8, iters=5, **quiet)
        enc, init, _, _ = m.pretrain(x, args, cpu, callback=callback)
    elif name == "dynacl":
        x = rng.standard_normal((12, 10, 6)).astype(np.float32)
        args = m.Args(dataset="synthetic", widths="8,4", batch_size=4, epochs=2, **quiet)
        enc, init, _, _ = m.pretrain(x, args, cpu, "x", callback=callback)
    elif name == "leaves":
        x = rng.random((32, 1, 32)).astype(np.float32)
        args = m.resolve(m.Args(base_width=4, batch_size=16, epochs=2, **quiet), "x")
        enc, init = m.pretrain(x, args, cpu, log=lambda s: None, callback=callback)[0], None
    else:
        src = [m.Source("a", rng.standard_normal((12, 1, 24))), m.Source("b", rng.standard_normal((10, 2, 24)))]
        args = m.Args(repr_dims=8, hidden_dims=4, depth=1, proj_dims=4, image_width=2, batch_size=4,
                      warmup_epochs=1, epochs=1, max_iters=3, **quiet)
        enc, init = m.pretrain(src, args, cpu, callback=callback)[0], None
    return enc, init


@pytest.mark.parametrize("name", METHODS)
def test_pretrain_callback_sees_step_zero_every_step_and_the_returned_encoder(name):
    """The learning-curve hook: step 0 is the untrained encoder, then one call per optimiser step,
    and the last call sees exactly the encoder pretrain returns (the SWA average where there is one)."""
    import torch
    seen = []
    enc, init = _tiny_pretrain(name, lambda step, e: seen.append(
        (step, {k: v.detach().clone() for k, v in e.state_dict().items()})))
    steps = [s for s, _ in seen]
    assert steps == list(range(len(steps))) and len(steps) >= 4
    last = seen[-1][1]
    assert all(torch.equal(last[k], v) for k, v in enc.state_dict().items())
    first = seen[0][1]
    assert any(not torch.equal(first[k], v) for k, v in last.items() if v.is_floating_point())
    if init is not None:
        assert all(torch.equal(first[k], v) for k, v in init.state_dict().items())
