"""benchmarks/bench_curves.py: a learning curve is each method's own `main`, seen at several steps.

The benchmark sets every method up itself (data, encoder, embed, probe) so that it can probe
checkpoints of one pre-training run. These tests hold it to the method files: at a budget that
`main` can also be asked for, the curve's last point is exactly main's linear-probe accuracy and its
step 0 exactly main's random-init accuracy, on real data (tests/data). A benchmark that prepared
the data differently (another split, another normalisation, another pooling, the test split
somewhere it should not be) or probed another encoder (not the SWA average, not the init) fails.
"""
import json
import sys

import pytest

from conftest import ROOT

sys.path.insert(0, str(ROOT / "benchmarks"))

import aimts  # noqa: E402
import bench_curves  # noqa: E402
import dynacl  # noqa: E402
import leaves  # noqa: E402
import ts2vec_adaptive  # noqa: E402

CPU = "cpu"

# variant -> (module, main's Args overrides that give `steps` optimiser steps, steps, the bench's overrides,
#             main's key for the trained probe, main's key for the random-init probe)
CASES = {
    "ts2vec_hierarchical": (ts2vec_adaptive, dict(loss="hierarchical", iters=4, hidden_dims=8, output_dims=16,
                                                   depth=2), 4, dict(hidden_dims=8, output_dims=16, depth=2),
                            "accuracy", "random_init_accuracy"),
    "dynacl": (dynacl, dict(epochs=3, kmeans_restarts=1), 3, {}, "accuracy", "random_init_accuracy"),
    "simclr": (leaves, dict(views="simclr", epochs=2, base_width=4, finetune_epochs=1, scratch_eval=False), 2,
               dict(base_width=4), "probe_accuracy", "random_init_probe_accuracy"),
    "aimts": (aimts, dict(pretrain="ArrowHead", warmup_epochs=1, epochs=1, max_iters=0, repr_dims=16,
                          hidden_dims=8, depth=1, image_width=4, ft_epochs=1, scratch=False, save_model=False),
              6, dict(pretrain="ArrowHead", warmup_epochs=1, repr_dims=16, hidden_dims=8, depth=1, image_width=4),
              "probe_accuracy", "random_init_probe_accuracy"),
}


@pytest.fixture(autouse=True)
def _keep_onednn():
    """The benchmark sets oneDNN per job, as each main does; other tests keep the setting they had."""
    import torch
    was = torch.backends.mkldnn.enabled
    yield
    torch.backends.mkldnn.enabled = was


@pytest.mark.parametrize("variant", list(CASES))
def test_curve_points_equal_main_at_the_same_budget(variant, real_data, tmp_path, capsys):
    m, main_kw, steps, bench_kw, key, init_key = CASES[variant]
    res = m.main(m.Args(dataset="GunPoint", data_dir=str(real_data), seed=2, out_dir=str(tmp_path),
                        log=False, **main_kw))
    a = bench_curves.Args(data_dir=str(real_data), budgets=f"0,{steps}", max_steps="", supervised=False)
    pts = bench_curves.run_one(variant, "GunPoint", 2, a, CPU, "test", **bench_kw)
    assert [p["steps"] for p in pts] == [0, steps]
    assert pts[-1]["probe_accuracy"] == res["eval"][key]
    assert pts[0]["probe_accuracy"] == res["eval"][init_key]
    assert pts[0]["wall_s"] == 0 and pts[-1]["wall_s"] > 0
    import torch
    assert torch.backends.mkldnn.enabled == bench_curves.ONEDNN[variant.split("_")[0]]


def test_each_job_runs_under_its_mains_onednn_setting():
    """Wall time is part of a curve: a job must run under the CPU setting its own main chooses
    (setup_torch(variable_shapes=False) keeps oneDNN on; LEAVES' ResNet is 3-4x slower without it)."""
    import inspect
    for key, m in (("ts2vec", ts2vec_adaptive), ("dynacl", dynacl), ("leaves", leaves), ("simclr", leaves),
                   ("aimts", aimts)):
        assert bench_curves.ONEDNN[key] == ("variable_shapes=False" in inspect.getsource(m.main)), key


def test_recorder_stops_after_the_largest_budget_and_keeps_copies():
    import torch
    rec = bench_curves.Recorder([0, 2, 5])
    net = torch.nn.Linear(2, 2)
    seen = []
    with pytest.raises(bench_curves.Stop):
        for step in range(10):
            seen.append(step)
            with torch.no_grad():
                net.weight.add_(1.0)                          # the model moves between calls
            rec(step, net)
    assert seen == [0, 1, 2, 3, 4, 5] and sorted(rec.snaps) == [0, 2, 5]
    w = {k: rec.snaps[k][0]["weight"][0, 0].item() for k in rec.snaps}
    assert w[2] - w[0] == pytest.approx(2.0) and w[5] - w[2] == pytest.approx(3.0)         # copies, not views of the live weights


def test_render_table_marks_label_use_and_flat_curves(tmp_path):
    """The comparison table: mean ± std over seeds, step 0 / 300 steps / largest / equal wall time, the
    class-run dagger, and the list of curves that do not rise 5 points above their own step 0."""
    def pt(v, seed, steps, acc, wall, free=True):
        return {"method": "x", "variant": v, "dataset": "D", "seed": seed, "steps": steps, "wall_s": wall,
                "probe_accuracy": acc, "label_free": free, "commit": "c", "threads": 1, "load": 1.0}
    pts = []
    for seed, d in ((1, 0.0), (2, 0.02)):
        pts += [pt("dynacl", seed, s, a + d, w, free=False) for s, a, w in ((0, 0.5, 0), (300, 0.7, 30), (1000, 0.8, 90))]
        pts += [pt("leaves", seed, s, a + d, w) for s, a, w in ((0, 0.6, 0), (300, 0.58, 50), (1000, 0.62, 200))]
    text = bench_curves.table_md(pts)
    row = {line.split("|")[1].strip(): line for line in text.splitlines() if line.startswith("| `")}
    assert "†" in row["`dynacl`"] and "†" not in row["`leaves`"]
    cells = [c.strip() for c in row["`dynacl`"].split("|")[3:7]]
    assert cells == ["51.0 ± 1.0 (n = 2)", "71.0 ± 1.0 (n = 2)", "81.0 ± 1.0 (n = 2) (1000 steps, 90 s)",
                     "71.0 ± 1.0 (n = 2)"]                    # <= 60 s: step 300; two of three seeds
    assert "`leaves` on D (+2.0)" in text and "`dynacl` on D" not in text.split("Not 5 points")[1]
    json.dumps(pts)                                           # the points are plain JSON


def test_render_writes_between_the_markers_and_again_the_same(tmp_path, monkeypatch):
    """`--render` merges the parts, writes curves.json / .png / .md and replaces only what lies
    between README's two markers; a second render leaves README as the first one wrote it."""
    results = tmp_path / "benchmarks" / "results"
    results.mkdir(parents=True)
    pts = [{"method": "dynacl", "variant": "dynacl", "dataset": "D", "seed": s, "steps": k, "wall_s": float(k),
            "probe_accuracy": 0.5 + k / 1000, "label_free": False, "commit": "c", "threads": 1, "load": 1.0}
           for s in (1, 2, 3) for k in (0, 100, 300)]
    (results / "curves_part0.json").write_text(json.dumps(pts))
    readme = tmp_path / "README.md"
    readme.write_text("# x\n\nbefore\n<!-- curves:begin -->\nold\n<!-- curves:end -->\nafter\n")
    monkeypatch.setattr(bench_curves, "ROOT", tmp_path)
    monkeypatch.setattr(bench_curves, "RESULTS", results)
    bench_curves.render()
    first = readme.read_text()
    assert first.startswith("# x\n\nbefore\n<!-- curves:begin -->\n") and first.endswith("<!-- curves:end -->\nafter\n")
    assert "old" not in first and "| `dynacl` |" in first and "curves.png" in first
    bench_curves.render()
    assert readme.read_text() == first
    saved = json.loads((results / "curves.json").read_text())["points"]
    assert len(saved) == 9 and list(saved[0])[:7] == list(bench_curves.KEEP)
    assert (results / "curves.png").stat().st_size > 0 and (results / "curves.md").exists()
