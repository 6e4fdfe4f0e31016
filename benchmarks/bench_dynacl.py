"""
Benchmark for dynacl.py (issue 6). Three parts, every number written after each run:

  1. accuracy   DynaCL and DynaCL-M on class-run streams of REAL windows (simulated order), with
                the random-init encoder under the same probe, and clustering scores (DBI,
                silhouette; k-means and true labels). Datasets (real files beside the project):
                  HAR       TF-C HAR val.pt (1471 windows, 3 x 206), split 75/25 stratified
                  Epilepsy  TS-TCC Epilepsy: val.pt (1840) as train, test.pt (2300) as test
                  Gesture   TF-C Gesture train.pt (320) / test.pt (120); val.pt is identical to
                            test.pt in this release, so the probe's validation split is carved
                            from train instead
  2. speed      the losses on the SAME kernel-1 encoder and the same SleepEEG-shaped sequences: a
                DynaCL step against a step trained with TS2Vec's hierarchical loss (two random crops,
                ts2vec_adaptive.hierarchical_contrastive_loss), and each loss alone (forward +
                backward on fixed embeddings), in interleaved blocks in this one process, best of N.
  oldnew        mp_xent of an earlier commit (--old-commit) against the current one, forward +
                backward on the same embeddings, interleaved, best of N.
  table5        the paper's Table 5 way: each file's whole pre-training epoch with its own encoder
                and defaults, dynacl.pretrain against ts2vec_adaptive.pretrain (--loss
                hierarchical), on the sequences `python dynacl.py --dataset SleepEEG` pre-trains on
                (built by dynacl.prepare from a synthetic array of the release's shape), plus the
                TS2Vec loop with DynaCL's encoder (App. B: the paper's baselines used it), interleaved
                epochs in this one process, best of N, with each epoch's peak resident memory.
  3. sleep      the default `python dynacl.py --dataset SleepEEG` pipeline on a synthetic array of
                the release's shape (371,055 rows x 200 samples, label runs like sleep stages),
                one epoch, in a child process: instances/s, epoch time, evaluation time, peak memory.

Run:  python benchmarks/bench_dynacl.py --data-dir DIR      # DIR holds tfc/ and tstcc_format/
      python benchmarks/bench_dynacl.py --parts speed,sleep          # one part
      nice -n 10 python benchmarks/bench_dynacl.py --parts table5,speed   # Table 5 and the losses
Results: benchmarks/results/dynacl.json and dynacl.md
"""
from __future__ import annotations

import json
import shlex
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from common import arg, parse_args, save_json  # noqa: E402


@dataclass
class Args:
    """Accuracy, speed and the SleepEEG-shaped run of dynacl.py."""
    parts: str = arg("accuracy,speed,table5,sleep", "which parts to run")
    datasets: str = arg("HAR,Epilepsy,Gesture", "accuracy datasets")
    variants: str = arg("dynacl,dynacl-m", "variants for the accuracy part")
    seeds: str = arg("1,2,3", "seeds")
    data_dir: str = arg(str(ROOT.parent / "shared" / "data"), "folder with tfc/ and tstcc_format/")
    speed_steps: int = arg(40, "steps per timed block in the speed part (the same steps in every block)")
    speed_repeats: int = arg(5, "interleaved repeats in the speed part (best and median reported)")
    table5_repeats: int = arg(3, "interleaved epochs per method in the table5 part (best of them)")
    table5_sequences: int = arg(0, "table5: use only this many of the 989 sequences (0 = all; a quick look)")
    old_commit: str = arg("819ab23", "oldnew: the commit whose dynacl.mp_xent is timed against the current one")
    old_note: str = arg("", "oldnew: what that commit's mp_xent is, written beside the comparison")
    threads: int = arg(1, "torch threads")
    out: str = arg(str(ROOT / "benchmarks" / "results" / "dynacl"), "results prefix (.json, .md)")
    runs_dir: str = arg(str(ROOT / "runs" / "bench_dynacl"), "run directories")


def dataset_path(name: str, data_dir: Path, tmp: Path) -> str:
    """Each dataset as the path a user would pass to --dataset."""
    import data
    if name == "HAR":                                         # one file: data.py carves a 25% test split
        X, y = data.read_pt(data_dir / "tfc" / "HAR" / "val.pt")
        np.savez(tmp / "HAR.npz", X=X, y=y)
        return str(tmp / "HAR.npz")
    if name == "Epilepsy":                                    # TS-TCC layout is channels-last
        import torch
        parts = {s: torch.load(data_dir / "tstcc_format" / "Epilepsy" / f"{s}.pt", weights_only=True)
                 for s in ("val", "test")}
        arr = {s: (np.asarray(d["samples"], dtype=np.float32).transpose(0, 2, 1), np.asarray(d["labels"]))
               for s, d in parts.items()}
        np.savez(tmp / "Epilepsy.npz", X_train=arr["val"][0], y_train=arr["val"][1],
                 X_test=arr["test"][0], y_test=arr["test"][1])
        return str(tmp / "Epilepsy.npz")
    if name == "Gesture":
        # val.pt == test.pt in this release: leave it out, so C is never chosen on test data
        tr = data.read_pt(data_dir / "tfc" / "Gesture" / "train.pt")
        te = data.read_pt(data_dir / "tfc" / "Gesture" / "test.pt")
        np.savez(tmp / "Gesture.npz", X_train=tr[0], y_train=tr[1], X_test=te[0], y_test=te[1])
        return str(tmp / "Gesture.npz")
    raise ValueError(name)


def part_accuracy(a: Args, results: dict) -> None:
    import dynacl
    with tempfile.TemporaryDirectory() as tmp:
        for name in a.datasets.split(","):
            path = dataset_path(name, Path(a.data_dir), Path(tmp))
            for variant in a.variants.split(","):
                for seed in [int(s) for s in a.seeds.split(",")]:
                    t0 = time.perf_counter()
                    res = dynacl.main(dynacl.Args(dataset=path, variant=variant, seed=seed, threads=a.threads,
                                                  out_dir=a.runs_dir, log=False))
                    ev = res["eval"]
                    row = {"dataset": name, "variant": variant, "seed": seed, "wall_s": time.perf_counter() - t0,
                           "train_s": res["train"]["train_time_s"], "epochs": res["train"]["epochs"],
                           "steps": res["train"]["steps"], "seq_len": res["train"]["seq_len"],
                           "note": res["data_note"], **{k: v for k, v in ev.items() if isinstance(v, (int, float))}}
                    results["accuracy"] = [r for r in results.get("accuracy", [])
                                           if (r["dataset"], r["variant"], r["seed"]) != (name, variant, seed)] + [row]
                    write(a, results)


def run_info(a: Args) -> dict:
    """What a results table needs beside the numbers: command, commit, machine load now."""
    def sh(*cmd):
        try:
            return subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, timeout=30).stdout.strip()
        except (OSError, subprocess.SubprocessError):
            return ""
    dirty = sh("git", "status", "--porcelain", "--", "dynacl.py", "ts2vec_adaptive.py", "benchmarks/bench_dynacl.py")
    return {"command": "python benchmarks/bench_dynacl.py " + shlex.join(sys.argv[1:]),
            "commit": sh("git", "rev-parse", "--short", "HEAD") + ("+uncommitted" if dirty else ""),
            "uptime": sh("uptime"), "threads": a.threads, "date": time.strftime("%Y-%m-%d %H:%M:%S")}


def rss_mb(field: str = "VmRSS") -> float:
    """This process's resident memory (VmRSS) or its peak since the last reset (VmHWM), MB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    return float("nan")


def reset_peak_rss() -> bool:
    """Linux: writing 5 to clear_refs resets VmHWM to the current RSS (per-phase peak memory)."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


def sleep_shaped_dataset(seed: int = 0):
    """A synthetic array of the TF-C SleepEEG release's shape (371,055 rows x 1 x 200): labels in
    bouts of mean 40 rows (80 s) like sleep stages, class templates plus noise. NOT EEG: for
    timing and memory only. As a data.Dataset, to stand in for data.load_dataset('SleepEEG')."""
    import data
    rng = np.random.default_rng(seed)
    n = 371_055
    runs = rng.geometric(1 / 40, size=n // 10)
    y = np.repeat(rng.integers(0, 5, len(runs)), runs)[:n]
    y[:5] = np.arange(5)
    X = np.empty((n, 1, 200), dtype=np.float32)
    templates = rng.standard_normal((5, 200)).astype(np.float32)
    for i in range(0, n, 50_000):
        yi = y[i:i + 50_000]
        X[i:i + 50_000, 0] = templates[yi] + 2.0 * rng.standard_normal((len(yi), 200)).astype(np.float32)
    return data._assemble("SleepEEG", X, y, X[100:200], y[100:200], X[:100], y[:100])   # test, val: not used here


def part_speed(a: Args, results: dict) -> None:
    """Same encoder, same sequences: a DynaCL step and a TS2Vec-hierarchical step (and each loss
    alone, forward + backward on fixed embeddings), timed in interleaved blocks; an epoch =
    123 steps (989 sequences of 300, batch 8). Every block replays the same batches and the same
    TS2Vec crops (drawn once, as the fit loop draws them), so best-of compares equal work."""
    import torch
    import dynacl
    import ts2vec_adaptive as tv
    info = run_info(a)
    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    seqs = torch.randn(64, 300, 178)                          # SleepEEG-shaped sequences
    net = dynacl.Encoder(178)
    opt = torch.optim.AdamW(net.parameters(), lr=1e-3)
    z_fixed = torch.rand(8, 300, 32)                          # for the loss-only timings
    plan = [(torch.from_numpy(rng.choice(64, 8, replace=False)), tv.random_crop(300, 8, rng))
            for _ in range(a.speed_steps)]                    # (batch rows, TS2Vec crops) of each step

    def dynacl_step(xb, crop, negatives="batch"):
        loss, _ = dynacl.training_loss(net, xb, dynacl.Args(negatives=negatives), None, 0.0, 0.0)
        return loss

    def ts2vec_step(xb, crop):                                # TS2Vec fit loop, encoder swapped
        crop_l, (s1, n1), (s2, n2) = crop
        z1 = net(tv.take_per_row(xb, s1, n1))[:, -crop_l:]
        z2 = net(tv.take_per_row(xb, s2, n2))[:, :crop_l]
        return tv.hierarchical_contrastive_loss(z1, z2)

    def dynacl_loss_only(crop, negatives="batch"):
        z = z_fixed.clone().requires_grad_(True)
        dynacl.mp_xent(z, 0.5, negatives).backward()

    def ts2vec_loss_only(crop):                               # the overlap of two crops, as in a step
        crop_l = crop[0]
        z1 = z_fixed[:, :crop_l].clone().requires_grad_(True)
        z2 = z_fixed[:, 300 - crop_l:].clone().requires_grad_(True)
        tv.hierarchical_contrastive_loss(z1, z2).backward()

    steps = {"dynacl": dynacl_step, "dynacl_sequence_negatives": lambda xb, c: dynacl_step(xb, c, "sequence"),
             "ts2vec_hierarchical": ts2vec_step}
    losses = {"dynacl_loss": dynacl_loss_only, "dynacl_sequence_negatives_loss": lambda c: dynacl_loss_only(c, "sequence"),
              "ts2vec_hierarchical_loss": ts2vec_loss_only}
    times = {k: [] for k in [*steps, *losses]}
    cpu = {k: [] for k in times}                              # this thread's CPU time per block
    for rep in range(a.speed_repeats):
        for name, fn in steps.items():
            t0, c0 = time.perf_counter(), time.thread_time()
            for rows, crop in plan:
                loss = fn(seqs[rows], crop)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
            times[name].append((time.perf_counter() - t0) / a.speed_steps)
            cpu[name].append((time.thread_time() - c0) / a.speed_steps)
        for name in (list(losses) if rep % 2 == 0 else list(losses)[::-1]):   # order alternates
            fn = losses[name]
            t0, c0 = time.perf_counter(), time.thread_time()
            for _, crop in plan:
                fn(crop)
            times[name].append((time.perf_counter() - t0) / a.speed_steps)
            cpu[name].append((time.thread_time() - c0) / a.speed_steps)
    per_epoch = 989 // 8
    best = {k: float(min(v)) for k, v in times.items()}
    med = {k: float(np.median(v)) for k, v in times.items()}
    prev = results.get("speed")
    if prev and "commit" not in prev:                         # the entry before the log-space loss
        results["speed_before_log_space_loss"] = dict(prev, note="commit 819ab23: row sums with the self "
                                                      "term subtracted, medians of 3 blocks of 15-20 steps")
    results["speed"] = {
        **info, "s_per_step_blocks": times, "best_s_per_step": best, "median_s_per_step": med,
        "s_per_epoch_best": {k: best[k] * per_epoch for k in steps},
        "ratio_best": {"dynacl_over_ts2vec_step": best["dynacl"] / best["ts2vec_hierarchical"],
                       "sequence_over_ts2vec_step": best["dynacl_sequence_negatives"] / best["ts2vec_hierarchical"],
                       "dynacl_over_ts2vec_loss": best["dynacl_loss"] / best["ts2vec_hierarchical_loss"],
                       "sequence_over_ts2vec_loss": best["dynacl_sequence_negatives_loss"] / best["ts2vec_hierarchical_loss"]},
        "ratio_median": {"dynacl_over_ts2vec_step": med["dynacl"] / med["ts2vec_hierarchical"],
                         "dynacl_over_ts2vec_loss": med["dynacl_loss"] / med["ts2vec_hierarchical_loss"]},
        "cpu_s_per_step_blocks": cpu,
        "ratio_paired_median": {k: float(np.median(np.array(times[k]) / np.array(times[ref])))
                                for k, ref in (("dynacl_loss", "ts2vec_hierarchical_loss"),
                                               ("dynacl_sequence_negatives_loss", "ts2vec_hierarchical_loss"),
                                               ("dynacl", "ts2vec_hierarchical"))},
        "ratio_cpu_paired_median": {k: float(np.median(np.array(cpu[k]) / np.array(cpu[ref])))
                                    for k, ref in (("dynacl_loss", "ts2vec_hierarchical_loss"),
                                                   ("dynacl_sequence_negatives_loss", "ts2vec_hierarchical_loss"),
                                                   ("dynacl", "ts2vec_hierarchical"))},
        "uptime_after": run_info(a)["uptime"],
        "settings": {"steps_per_block": a.speed_steps, "blocks": a.speed_repeats, "batch": 8, "T": 300, "D": 178,
                     "F": 32, "torch_threads": torch.get_num_threads(), "seed": 0,
                     "mean_ts2vec_crop": float(np.mean([c[0] for _, c in plan])),
                     "data": "torch.randn(64, 300, 178) sequences; loss-only: torch.rand(8, 300, 32) embeddings"}}
    sp = results["speed"]
    results.setdefault("speed_runs", []).append(speed_summary(sp))   # every run kept: the ratio moves with the load
    write(a, results)


def speed_summary(sp: dict) -> dict:
    """One line of the speed history: the loss-only and whole-step ratios of one speed run."""
    return {"commit": sp["commit"], "date": sp.get("date", ""), "uptime": sp["uptime"], "uptime_after": sp["uptime_after"],
            "blocks": sp["settings"]["blocks"], "steps_per_block": sp["settings"]["steps_per_block"],
            "mean_ts2vec_crop": sp["settings"].get("mean_ts2vec_crop"),
            "loss_ms": {k: 1000 * sp["best_s_per_step"][k] for k in ("dynacl_loss", "ts2vec_hierarchical_loss")},
            "loss_ratio_best": sp["ratio_best"]["dynacl_over_ts2vec_loss"],
            "loss_ratio_median": sp["ratio_median"]["dynacl_over_ts2vec_loss"],
            "loss_ratio_cpu_paired_median": sp.get("ratio_cpu_paired_median", {}).get("dynacl_loss"),
            "step_ratio_best": sp["ratio_best"]["dynacl_over_ts2vec_step"], "command": sp["command"]}


def part_oldnew(a: Args, results: dict) -> None:
    """The loss before and after a change, side by side: mp_xent of dynacl.py at --old-commit
    (loaded from git into its own module) against the current file, forward + backward on the same
    fixed (8, 300, 32) embeddings, interleaved blocks, best of N; also their values."""
    import importlib.util
    import torch
    import dynacl
    info = run_info(a)
    code = subprocess.run(["git", "show", f"{a.old_commit}:dynacl.py"], capture_output=True, text=True, cwd=ROOT,
                          check=True).stdout
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "dynacl_old.py"
        path.write_text(code)
        spec = importlib.util.spec_from_file_location("dynacl_old", path)
        old = importlib.util.module_from_spec(spec)
        sys.modules["dynacl_old"] = old
        spec.loader.exec_module(old)
    torch.manual_seed(0)
    z_fixed = torch.rand(8, 300, 32)
    fns = {f"old_{a.old_commit}": old.mp_xent, "new": dynacl.mp_xent}
    times = {k: {neg: [] for neg in ("batch", "sequence")} for k in fns}
    cpu = {k: {neg: [] for neg in ("batch", "sequence")} for k in fns}   # this thread's CPU time per block
    values = {k: {neg: fn(z_fixed, 0.5, neg).item() for neg in ("batch", "sequence")} for k, fn in fns.items()}
    for rep in range(a.speed_repeats):
        for neg in ("batch", "sequence"):
            for name in (list(fns) if rep % 2 == 0 else list(fns)[::-1]):   # order alternates
                fn = fns[name]
                t0, c0 = time.perf_counter(), time.thread_time()
                for _ in range(a.speed_steps):
                    z = z_fixed.clone().requires_grad_(True)
                    fn(z, 0.5, neg).backward()
                times[name][neg].append((time.perf_counter() - t0) / a.speed_steps)
                cpu[name][neg].append((time.thread_time() - c0) / a.speed_steps)
    best = {k: {neg: min(v) for neg, v in d.items()} for k, d in times.items()}
    old_k = f"old_{a.old_commit}"
    paired = lambda t, neg: float(np.median(np.array(t["new"][neg]) / np.array(t[old_k][neg])))   # noqa: E731
    key = "loss_old_vs_new" if a.old_commit == "819ab23" else f"loss_old_vs_new_{a.old_commit}"   # one entry per commit
    results[key] = {
        **info, "old_note": a.old_note, "uptime_after": run_info(a)["uptime"], "old_commit": a.old_commit, "s_per_call_blocks": times,
        "cpu_s_per_call_blocks": cpu, "best_s_per_call": best, "values_tau_0.5": values,
        "ratio_new_over_old_best": {neg: best["new"][neg] / best[old_k][neg] for neg in ("batch", "sequence")},
        "ratio_new_over_old_paired_median": {neg: paired(times, neg) for neg in ("batch", "sequence")},
        "ratio_new_over_old_cpu_paired_median": {neg: paired(cpu, neg) for neg in ("batch", "sequence")},
        "settings": {"calls_per_block": a.speed_steps, "blocks": a.speed_repeats, "z": "torch.rand(8, 300, 32), seed 0",
                     "torch_threads": torch.get_num_threads()}}
    write(a, results)


def part_table5(a: Args, results: dict) -> None:
    """Table 5 the paper's way, per epoch: each file's own pre-training loop, encoder and defaults
    on the same (989, 300, 178) sequences, interleaved epochs (order reversed every repeat)."""
    import torch
    import data
    import dynacl
    import ts2vec_adaptive as tv
    info = run_info(a)
    cpu = torch.device("cpu")
    real_load = data.load_dataset
    data.load_dataset = lambda *args, **kw: sleep_shaped_dataset()   # what main would load
    try:
        st = dynacl.prepare(dynacl.Args(), 1)
    finally:
        data.load_dataset = real_load
    seqs = st.seq_train[:a.table5_sequences] if a.table5_sequences else st.seq_train   # (989, 300, 178)

    class DynaclEncoderForTS2Vec(dynacl.Encoder):              # App. B: TS2Vec with the shared CNN
        def __init__(self, input_dims, *args, **kw):
            super().__init__(input_dims)

    def ts2vec(encoder=None):
        real = tv.Encoder
        if encoder is not None:
            tv.Encoder = encoder
        try:
            return tv.pretrain(seqs, tv.Args(loss="hierarchical", epochs=1, log=False, seed=1), cpu)
        finally:
            tv.Encoder = real

    runs = {"dynacl": lambda: dynacl.pretrain(seqs, dynacl.Args(epochs=1, log=False, seed=1), cpu, "SleepEEG"),
            "dynacl_sequence_negatives": lambda: dynacl.pretrain(
                seqs, dynacl.Args(epochs=1, log=False, seed=1, negatives="sequence"), cpu, "SleepEEG"),
            "dynacl_m": lambda: dynacl.pretrain(seqs, dynacl.Args(epochs=1, log=False, seed=1, variant="dynacl-m"),
                                                cpu, "SleepEEG"),
            "ts2vec": ts2vec,
            "ts2vec_loop_dynacl_encoder": lambda: ts2vec(DynaclEncoderForTS2Vec)}
    epoch_s = {k: [] for k in runs}
    peak, extra, steps = {k: [] for k in runs}, {k: [] for k in runs}, {}
    can_reset = reset_peak_rss()
    for rep in range(a.table5_repeats):
        for name in (list(runs) if rep % 2 == 0 else list(runs)[::-1]):
            base = rss_mb()
            reset_peak_rss()
            _, _, _, stats = runs[name]()
            epoch_s[name].append(float(stats["epoch_times_s"][0]))
            steps[name] = stats.get("steps_per_epoch", stats.get("iters_per_epoch"))
            if can_reset:
                peak[name].append(rss_mb("VmHWM"))
                extra[name].append(rss_mb("VmHWM") - base)
            print(f"table5 {rep + 1}/{a.table5_repeats} {name}: {epoch_s[name][-1]:.1f} s", flush=True)
    best = {k: min(v) for k, v in epoch_s.items()}
    paired = lambda k, ref: float(np.median([x / y for x, y in zip(epoch_s[k], epoch_s[ref])]))   # noqa: E731
    results["table5"] = {
        **info, "uptime_after": run_info(a)["uptime"], "seed": 1, "repeats": a.table5_repeats,
        "data": (f"dynacl.prepare(Args()) on sleep_shaped_dataset(seed=0), a synthetic array of the TF-C SleepEEG "
                 f"release's shape (371,055 x 1 x 200, NOT EEG): {seqs.shape[0]} sequences (S, T, D) = "
                 f"{tuple(seqs.shape)}, the pre-training input of `python dynacl.py --dataset SleepEEG`; "
                 f"ts2vec_adaptive.pretrain takes the same array as (N, T, C)"),
        "methods": {"dynacl": "dynacl.pretrain, default Args (batch negatives, batch 8), 1 epoch",
                    "dynacl_sequence_negatives": "dynacl.pretrain, --negatives sequence",
                    "dynacl_m": "dynacl.pretrain, --variant dynacl-m (SleepEEG preset w 0.4, mask 0.3)",
                    "ts2vec": "ts2vec_adaptive.pretrain, --loss hierarchical, its own encoder (K 320, depth 10) and "
                              "defaults (batch 8, AdamW 1e-3, SWA), 1 epoch",
                    "ts2vec_loop_dynacl_encoder": "the same TS2Vec loop with dynacl.Encoder (App. B's setting)"},
        "steps_per_epoch": steps, "epoch_s": epoch_s, "best_epoch_s": best,
        "median_epoch_s": {k: float(np.median(v)) for k, v in epoch_s.items()},
        "ratio_best_over_ts2vec": {k: best[k] / best["ts2vec"] for k in runs},
        "ratio_paired_median_over_ts2vec": {k: paired(k, "ts2vec") for k in runs},
        "ratio_best_over_ts2vec_dynacl_encoder": {k: best[k] / best["ts2vec_loop_dynacl_encoder"] for k in runs},
        "peak_rss_mb": {k: max(v) for k, v in peak.items() if v},
        "peak_rss_above_start_mb": {k: max(v) for k, v in extra.items() if v},
        "paper_table5_sleepeeg_s_500_epochs": {"dynacl": 600, "dynacl_m": 1200, "ts2vec": 2300,
                                               "ratio_dynacl_over_ts2vec": 600 / 2300, "note": "V100 GPU"}}
    write(a, results)


SLEEP_CHILD = r"""
import json, sys, time, numpy as np, resource
sys.path.insert(0, sys.argv[1])
sys.path.insert(0, sys.argv[1] + "/benchmarks")
import data, dynacl
from bench_dynacl import sleep_shaped_dataset
ds = sleep_shaped_dataset(seed=0)
data.load_dataset = lambda *a, **k: ds
t0 = time.perf_counter()
res = dynacl.main(dynacl.Args(epochs=int(sys.argv[2]), threads=int(sys.argv[3]), out_dir=sys.argv[4]))
total = time.perf_counter() - t0
print("RESULT " + json.dumps({"total_s": total, "train_s": res["train"]["train_time_s"],
      "epoch_s": res["train"]["epoch_times_s"], "instances_per_s": res["train"]["instances_per_s"],
      "eval_and_data_s": total - res["train"]["train_time_s"], "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
      "accuracy": res["eval"]["accuracy"], "random_init_accuracy": res["eval"]["random_init_accuracy"],
      "note": res["data_note"]}))
"""


def part_sleep(a: Args, results: dict) -> None:
    out = subprocess.run([sys.executable, "-c", SLEEP_CHILD, str(ROOT), "1", str(a.threads), a.runs_dir],
                         capture_output=True, text=True, cwd=ROOT)
    line = [ln for ln in out.stdout.splitlines() if ln.startswith("RESULT ")]
    if out.returncode or not line:
        results["sleep"] = {"error": out.stderr[-2000:]}
    else:
        results["sleep"] = json.loads(line[0][7:])
        results["sleep"]["log"] = out.stdout.splitlines()[:4]
    write(a, results)


def fmt(vals, scale=100.0, digits=1):
    v = np.array([x for x in vals if x is not None and np.isfinite(x)], dtype=float) * scale
    return f"{v.mean():.{digits}f} ± {v.std():.{digits}f}" if len(v) else "n/a"


def write(a: Args, results: dict) -> None:
    save_json(results, a.out + ".json")
    lines = ["# dynacl.py benchmark", "",
             f"Machine: {results['machine']}. Torch threads: {a.threads}. Mean ± std (population) over seeds.", ""]
    acc = results.get("accuracy", [])
    if acc:
        lines += ["## Class-run streams of real windows (simulated order)", "",
                  "| dataset | variant | seeds | acc % | random-init acc % | gap | macro-F1 % | weighted F1 % | "
                  "DBI k-means | SS k-means | DBI true | SS true | random-init DBI / SS k-means | train s | T | steps |",
                  "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
        keys = sorted({(r["dataset"], r["variant"]) for r in acc}, key=lambda k: (a.datasets.split(",").index(k[0])
                                                                                   if k[0] in a.datasets.split(",") else 99, k[1]))
        for ds, var in keys:
            rs = [r for r in acc if r["dataset"] == ds and r["variant"] == var]
            gap = [r["accuracy"] - r["random_init_accuracy"] for r in rs]
            lines.append(
                f"| {ds} | {var} | {','.join(str(r['seed']) for r in rs)} | {fmt([r['accuracy'] for r in rs])} | "
                f"{fmt([r['random_init_accuracy'] for r in rs])} | {fmt(gap)} | {fmt([r['macro_f1'] for r in rs])} | "
                f"{fmt([r['weighted_f1'] for r in rs])} | {fmt([r['dbi_kmeans'] for r in rs], 1, 2)} | "
                f"{fmt([r['silhouette_kmeans'] for r in rs], 1, 2)} | {fmt([r['dbi_true'] for r in rs], 1, 2)} | "
                f"{fmt([r['silhouette_true'] for r in rs], 1, 2)} | {fmt([r['random_init_dbi_kmeans'] for r in rs], 1, 2)} / "
                f"{fmt([r['random_init_silhouette_kmeans'] for r in rs], 1, 2)} | {fmt([r['train_s'] for r in rs], 1, 1)} | "
                f"{rs[0]['seq_len']} | {rs[0]['steps']} |")
        lines += ["", "Stream notes: " + "; ".join(sorted({r["note"] for r in acc if r["seed"] == 1 and r["variant"] == "dynacl"})), ""]
    t5 = results.get("table5")
    if t5:
        lines += ["## Table 5 the paper's way: one pre-training epoch of each file, its own encoder and defaults", "",
                  f"Data: {t5['data']}.", "",
                  "| method | steps / epoch | best epoch s | median epoch s | / TS2Vec (best) | / TS2Vec (paired median) | "
                  "/ TS2Vec loop with DynaCL's encoder | peak RSS MB (above start) |", "|---|---|---|---|---|---|---|---|"]
        for k in t5["epoch_s"]:
            lines.append(f"| {k} ({t5['methods'][k]}) | {t5['steps_per_epoch'][k]} | {t5['best_epoch_s'][k]:.1f} | "
                         f"{t5['median_epoch_s'][k]:.1f} | {t5['ratio_best_over_ts2vec'][k]:.3f} | "
                         f"{t5['ratio_paired_median_over_ts2vec'][k]:.3f} | {t5['ratio_best_over_ts2vec_dynacl_encoder'][k]:.3f} | "
                         f"{t5.get('peak_rss_mb', {}).get(k, float('nan')):.0f} "
                         f"({t5.get('peak_rss_above_start_mb', {}).get(k, float('nan')):.0f}) |")
        lines += ["", f"Paper (Table 5, V100, 500 epochs): DynaCL 0.6k s, DynaCL-M 1.2k s, TS2Vec 2.3k s: DynaCL / TS2Vec = "
                  f"{600 / 2300:.2f} (goal: at most that). Best of {t5['repeats']} interleaved epochs each, seed 1, "
                  f"{t5['threads']} torch thread(s). Load before: `{t5['uptime']}`; after: `{t5['uptime_after']}`. "
                  f"Commit {t5['commit']}; command `{t5['command']}`.", ""]
    sp = results.get("speed")
    if sp and "best_s_per_step" in sp:
        b_, r_ = sp["best_s_per_step"], sp["ratio_best"]
        lines += ["## The losses on one shared encoder: DynaCL vs TS2Vec's hierarchical loss", "",
                  "| what | best s / step | median s / step | epoch (123 steps), best |", "|---|---|---|---|"]
        for k in b_:
            ep = f"{sp['s_per_epoch_best'][k]:.1f} s" if k in sp["s_per_epoch_best"] else ""
            lines.append(f"| {k} | {b_[k]:.4f} | {sp['median_s_per_step'][k]:.4f} | {ep} |")
        lines += ["", f"Whole step (kernel-1 encoder + loss + AdamW): DynaCL / TS2Vec = **{r_['dynacl_over_ts2vec_step']:.2f}** "
                  f"with batch negatives (default), **{r_['sequence_over_ts2vec_step']:.2f}** with --negatives sequence. "
                  f"Loss alone (forward + backward on fixed (8, 300, 32) embeddings): **{r_['dynacl_over_ts2vec_loss']:.2f}** "
                  f"and **{r_['sequence_over_ts2vec_loss']:.2f}** (goal: at most 1 with batch negatives). "
                  f"Best of {sp['settings']['blocks']} interleaved blocks of the same {sp['settings']['steps_per_block']} "
                  f"steps (TS2Vec's crops: mean overlap {sp['settings'].get('mean_ts2vec_crop', float('nan')):.0f} of 300); "
                  f"median ratios {sp['ratio_median']['dynacl_over_ts2vec_step']:.2f} (step) / "
                  f"{sp['ratio_median']['dynacl_over_ts2vec_loss']:.2f} (loss). Load before: `{sp['uptime']}`; after: "
                  f"`{sp['uptime_after']}`. Commit {sp['commit']}; command `{sp['command']}`.", ""]
        if "ratio_cpu_paired_median" in sp:
            pw, pc = sp["ratio_paired_median"], sp["ratio_cpu_paired_median"]
            lines += [f"Paired medians (each block against the TS2Vec block of the same round; the losses' order "
                      f"alternates): loss alone DynaCL / TS2Vec = **{pw['dynacl_loss']:.2f}** wall, "
                      f"**{pc['dynacl_loss']:.2f}** thread CPU time (--negatives sequence: {pw['dynacl_sequence_negatives_loss']:.2f} / "
                      f"{pc['dynacl_sequence_negatives_loss']:.2f}); whole step {pw['dynacl']:.2f} / {pc['dynacl']:.2f}. "
                      f"CPU time leaves out the time this process waited for a core (load above 2 on 2 cores).", ""]
    runs = results.get("speed_runs")
    if runs:
        lines += ["### The loss-only ratio across speed runs (the same DynaCL and TS2Vec loss code in every row)", "",
                  "| commit | load (1-min avg) before / after | blocks x steps | DynaCL loss ms (best) | TS2Vec loss ms (best) | "
                  "DynaCL / TS2Vec best | median | thread-CPU paired median | whole step best | note |",
                  "|---|---|---|---|---|---|---|---|---|---|"]
        for r in runs:
            load = lambda u: u.split("load average:")[-1].split(",")[0].strip() if u else "?"   # noqa: E731
            cpu = r.get("loss_ratio_cpu_paired_median")
            lines.append(f"| {r['commit']} | {load(r['uptime'])} / {load(r['uptime_after'])} | {r['blocks']} x {r['steps_per_block']} | "
                         f"{r['loss_ms']['dynacl_loss']:.1f} | {r['loss_ms']['ts2vec_hierarchical_loss']:.1f} | "
                         f"{r['loss_ratio_best']:.2f} | {r['loss_ratio_median']:.2f} | {'' if cpu is None else f'{cpu:.2f}'} | "
                         f"{r['step_ratio_best']:.2f} | {r.get('note', '')} |")
        lines += ["", "The same code gives loss-only ratios from " + f"{min(r['loss_ratio_best'] for r in runs):.2f} to "
                  f"{max(r['loss_ratio_best'] for r in runs):.2f} (best of blocks) as the other load on the 2 cores changes.", ""]
    for key in sorted(k for k in results if k.startswith("loss_old_vs_new")):
        on = results[key]
        r = on["ratio_new_over_old_best"]
        bo, bn = on["best_s_per_call"][f"old_{on['old_commit']}"], on["best_s_per_call"]["new"]
        paired = ""
        if "ratio_new_over_old_paired_median" in on:
            pw, pc = on["ratio_new_over_old_paired_median"], on["ratio_new_over_old_cpu_paired_median"]
            paired = (f" Paired medians (block by block, order alternating): wall {pw['batch']:.2f} / {pw['sequence']:.2f}, "
                      f"thread CPU time {pc['batch']:.2f} / {pc['sequence']:.2f} (batch / sequence). "
                      f"Load after: `{on['uptime_after']}`.")
        lines += [f"## mp_xent of {on['old_commit']} (old) and of the current file (new), forward + backward on one "
                  f"(8, 300, 32) batch", ""] + ([f"Old: {on['old_note']}", ""] if on.get("old_note") else []) + [
                  f"Batch negatives: {1000 * bo['batch']:.1f} ms -> {1000 * bn['batch']:.1f} ms (new / old = **{r['batch']:.2f}**); "
                  f"sequence negatives: {1000 * bo['sequence']:.1f} -> {1000 * bn['sequence']:.1f} ms ({r['sequence']:.2f}). "
                  f"Values at tau 0.5: {json.dumps(on['values_tau_0.5'])}. Best of {on['settings']['blocks']} interleaved "
                  f"blocks of {on['settings']['calls_per_block']} calls.{paired} Load before: `{on['uptime']}`. "
                  f"Commit {on['commit']}; command `{on['command']}`.", ""]
    old = results.get("speed_before_log_space_loss")
    if old:
        lines += [f"Before the log-space loss ({old['note']}): DynaCL / TS2Vec step = {old['ratio_dynacl_over_ts2vec']:.2f} "
                  f"(batch negatives), {old['ratio_sequence_over_ts2vec']:.2f} (sequence).", ""]
    sl = results.get("sleep")
    if sl:
        lines += ["## Default SleepEEG pipeline on a synthetic array of the release's shape (371,055 x 200)", ""]
        if "error" in sl:
            lines.append("Failed: " + sl["error"][-500:])
        else:
            lines += [f"One epoch: {sl['epoch_s'][0]:.1f} s, {sl['instances_per_s']:,.0f} instances/s; data preparation + "
                      f"evaluation (probe on the trained and the random-init encoder, k-means, scores, pictures): "
                      f"{sl['eval_and_data_s']:.0f} s; peak resident memory {sl['peak_rss_mb']:.0f} MB. "
                      f"Default 20 epochs ≈ {(20 * sl['epoch_s'][0] + sl['eval_and_data_s']) / 60:.0f} min; "
                      f"the paper's 500 ≈ {(500 * sl['epoch_s'][0] + sl['eval_and_data_s']) / 3600:.1f} h.", "",
                      "Log: " + " / ".join(sl["log"]), ""]
    lines.append(f"Command: `python benchmarks/bench_dynacl.py {results.get('argv', '')}`")
    Path(a.out + ".md").write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    a = parse_args(Args)
    import platform
    import torch
    torch.set_num_threads(a.threads)
    prev = Path(a.out + ".json")
    results = json.loads(prev.read_text()) if prev.exists() else {}
    results.update(machine=f"{platform.machine()}, {torch.get_num_threads()} torch thread(s), torch {torch.__version__}, "
                           "CPU under other load", argv=shlex.join(sys.argv[1:]))
    t0 = time.perf_counter()
    for part in a.parts.split(","):
        {"accuracy": part_accuracy, "speed": part_speed, "table5": part_table5, "oldnew": part_oldnew,
         "sleep": part_sleep}[part](a, results)
        print(f"{part} done at {time.perf_counter() - t0:.0f} s", flush=True)
