"""common.py: command line, seeding, device, CPU settings, run files, checkpoints, plots."""
import json
from dataclasses import dataclass

import numpy as np
import pytest
import torch

import common
from common import arg


@dataclass
class Args:
    """A toy method."""
    dataset: str = arg("synthetic", "dataset name")
    hidden_dim: int = arg(64, "encoder width")
    lr: float = arg(1e-3, "learning rate")
    save_model: bool = arg(False, "write encoder.pt")


def test_parse_args_flags():
    assert common.parse_args(Args, []) == Args()
    a = common.parse_args(Args, ["--hidden-dim", "8", "--lr", "0.5", "--save-model", "--dataset", "GunPoint"])
    assert a == Args("GunPoint", 8, 0.5, True)
    assert common.parse_args(Args, ["--hidden_dim", "3", "--no-save-model"]).hidden_dim == 3
    with pytest.raises(SystemExit):
        common.parse_args(Args, ["--hidden-dim", "eight"])


def test_help_text_comes_from_fields(capsys):
    with pytest.raises(SystemExit):
        common.parse_args(Args, ["--help"])
    out = capsys.readouterr().out
    assert "encoder width" in out and "--save-model" in out and "A toy method." in out


def test_set_seed_repeats_all_generators():
    def draw():
        common.set_seed(7)
        import random
        return random.random(), np.random.rand(), torch.rand(1).item()
    assert draw() == draw()


def test_device_and_cpu_settings():
    assert common.get_device("cpu").type == "cpu"
    assert common.get_device("auto").type in ("cpu", "cuda", "mps")
    if not torch.cuda.is_available():
        with pytest.raises(common.UserError, match="use --device cpu"):
            common.get_device("cuda")
    old = torch.backends.mkldnn.enabled
    try:
        common.setup_torch()
        assert torch.backends.mkldnn.enabled is False
        # flush-to-zero: the smallest normal float32 halved is a denormal and becomes 0
        tiny = torch.tensor([torch.finfo(torch.float32).tiny], dtype=torch.float32)
        assert (tiny / 2).item() == 0.0
    finally:
        torch.set_flush_denormal(False)
        torch.backends.mkldnn.enabled = old


def test_run_dir_results_plot_and_checkpoint(tmp_path):
    d = common.make_run_dir(tmp_path, "GunPoint", "toy", 3)
    d2 = common.make_run_dir(tmp_path, "GunPoint", "toy", 3)
    assert d != d2 and d.name.startswith("GunPoint__toy__3__")
    hist = [{"epoch": 1, "loss": 2.0, "loss_terms": {"a": 1.5}}, {"epoch": 2, "loss": 1.0, "loss_terms": {"a": 0.5}}]
    res = common.write_results(d, "toy", "GunPoint", 3, Args(), hist, {"accuracy": 0.75}, 1.5, torch.device("cpu"))
    on_disk = json.loads((d / "results.json").read_text())
    assert on_disk == json.loads(json.dumps(res))
    for k in ("method", "dataset", "seed", "args", "history", "eval", "time_s", "peak_memory_mb", "versions"):
        assert k in on_disk
    assert on_disk["args"]["hidden_dim"] == 64 and on_disk["peak_memory_mb"] > 0
    common.plot_history(hist, d / "loss.png", "toy")
    assert (d / "loss.png").read_bytes()[:4] == b"\x89PNG"
    net = torch.nn.Linear(3, 2)
    common.save_checkpoint(d / "encoder.pt", net.state_dict(), Args(hidden_dim=5))
    ck = common.load_checkpoint(d / "encoder.pt")
    assert ck["args"]["hidden_dim"] == 5
    assert torch.equal(ck["state_dict"]["weight"], net.weight.detach())
    assert not list(d.glob("*.part"))
    import argparse
    from pathlib import Path
    common.save_checkpoint(d / "ns.pt", net.state_dict(), argparse.Namespace(out=Path("x"), k=1))
    assert common.load_checkpoint(d / "ns.pt")["args"] == {"out": "x", "k": 1}
    with pytest.raises(TypeError, match="state_dict"):
        common.save_checkpoint(d / "bad.pt", {"step": 3}, None)
    table = common.summarize(tmp_path)
    assert "| GunPoint |" in table and "75.0 ± 0.0 (n=1)" in table


def test_progress_line():
    line = common.progress_line(2, 10, 1.23456, {"inst": 0.5}, 1000, 2.0, 4.0)
    assert line.startswith("epoch  2/10 | loss 1.2346 (inst 0.5)") and "500 samples/s" in line
    assert "ETA 0:16" in line


def test_checkpoint_extra_state_dicts_and_plain_data_load_with_weights_only(tmp_path):
    """extra= holds further state_dicts (the random-init baseline) and plain data, all readable with
    weights_only=True; a checkpoint without extra is what it was before (backwards compatible)."""
    torch.manual_seed(0)
    trained, init = torch.nn.Linear(3, 2), torch.nn.Linear(3, 2)
    common.save_checkpoint(tmp_path / "e.pt", trained.state_dict(), Args(hidden_dim=5),
                           extra={"init_state_dict": init.state_dict(), "note": {"steps": 4, "order": ["a"]}})
    ck = torch.load(tmp_path / "e.pt", map_location="cpu", weights_only=True)   # no code runs on load
    assert set(ck) == {"state_dict", "args", "init_state_dict", "note"}
    for k in ("weight", "bias"):
        assert torch.equal(ck["state_dict"][k], getattr(trained, k).detach())
        assert torch.equal(ck["init_state_dict"][k], getattr(init, k).detach())
    assert not torch.equal(ck["init_state_dict"]["weight"], ck["state_dict"]["weight"])
    assert ck["note"] == {"steps": 4, "order": ["a"]} and ck["args"]["hidden_dim"] == 5
    common.save_checkpoint(tmp_path / "plain.pt", trained.state_dict(), None)
    assert set(common.load_checkpoint(tmp_path / "plain.pt")) == {"state_dict", "args"}
    with pytest.raises(TypeError, match="init_state_dict"):             # a state_dict with a non-tensor
        common.save_checkpoint(tmp_path / "bad.pt", trained.state_dict(), None,
                               extra={"init_state_dict": {"weight": init.weight, "step": 3}})
    with pytest.raises(ValueError, match="overwrite"):
        common.save_checkpoint(tmp_path / "bad.pt", trained.state_dict(), None, extra={"args": {}})
    with pytest.raises(TypeError):                                      # a module is not plain data
        common.save_checkpoint(tmp_path / "bad.pt", trained.state_dict(), None, extra={"model": init})
    assert not (tmp_path / "bad.pt").exists() and not list(tmp_path.glob("*.part"))
