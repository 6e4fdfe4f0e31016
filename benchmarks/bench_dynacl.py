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
  2. speed      one DynaCL epoch against one epoch trained with TS2Vec's hierarchical loss on the
                SAME kernel-1 encoder and the same SleepEEG-shaped sequences (two random crops,
                ts2vec_adaptive.hierarchical_contrastive_loss), interleaved in this one process.
  3. sleep      the default `python dynacl.py --dataset SleepEEG` pipeline on a synthetic array of
                the release's shape (371,055 rows x 200 samples, label runs like sleep stages),
                one epoch, in a child process: instances/s, epoch time, evaluation time, peak memory.

Run:  python benchmarks/bench_dynacl.py --data-dir DIR      # DIR holds tfc/ and tstcc_format/
      python benchmarks/bench_dynacl.py --parts speed,sleep          # one part
Results: benchmarks/results/dynacl.json and dynacl.md
"""
from __future__ import annotations

import json
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
    parts: str = arg("accuracy,speed,sleep", "which parts to run")
    datasets: str = arg("HAR,Epilepsy,Gesture", "accuracy datasets")
    variants: str = arg("dynacl,dynacl-m", "variants for the accuracy part")
    seeds: str = arg("1,2,3", "seeds")
    data_dir: str = arg(str(ROOT.parent / "shared" / "data"), "folder with tfc/ and tstcc_format/")
    speed_steps: int = arg(20, "steps per timed block in the speed part")
    speed_repeats: int = arg(3, "interleaved repeats in the speed part")
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


def part_speed(a: Args, results: dict) -> None:
    """Same encoder, same sequences: a DynaCL step and a TS2Vec-hierarchical step, timed in
    interleaved blocks; an epoch = steps_per_epoch steps (989 sequences of 300, batch 8)."""
    import torch
    import dynacl
    import ts2vec_adaptive as tv
    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    seqs = torch.randn(64, 300, 178)                          # SleepEEG-shaped sequences
    net = dynacl.Encoder(178)
    opt = torch.optim.AdamW(net.parameters(), lr=1e-3)

    def dynacl_step(xb, negatives="batch"):
        loss, _ = dynacl.training_loss(net, xb, dynacl.Args(negatives=negatives), None, 0.0, 0.0)
        return loss

    def ts2vec_step(xb):                                      # TS2Vec fit loop, encoder swapped
        crop_l, (s1, n1), (s2, n2) = tv.random_crop(xb.size(1), xb.size(0), rng)
        z1 = net(tv.take_per_row(xb, s1, n1))[:, -crop_l:]
        z2 = net(tv.take_per_row(xb, s2, n2))[:, :crop_l]
        return tv.hierarchical_contrastive_loss(z1, z2)

    fns = {"dynacl": dynacl_step, "dynacl_sequence_negatives": lambda xb: dynacl_step(xb, "sequence"),
           "ts2vec_hierarchical": ts2vec_step}
    times = {k: [] for k in fns}
    for rep in range(a.speed_repeats):
        for name, fn in fns.items():
            t0 = time.perf_counter()
            for s in range(a.speed_steps):
                xb = seqs[torch.from_numpy(rng.choice(64, 8, replace=False))]
                loss = fn(xb)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
            times[name].append((time.perf_counter() - t0) / a.speed_steps)
    per_epoch = 989 // 8
    results["speed"] = {k: {"s_per_step": v, "s_per_epoch": float(np.median(v)) * per_epoch}
                        for k, v in times.items()}
    results["speed"]["ratio_dynacl_over_ts2vec"] = float(np.median(times["dynacl"]) / np.median(times["ts2vec_hierarchical"]))
    results["speed"]["ratio_sequence_over_ts2vec"] = float(np.median(times["dynacl_sequence_negatives"]) /
                                                           np.median(times["ts2vec_hierarchical"]))
    results["speed"]["settings"] = {"steps": a.speed_steps, "repeats": a.speed_repeats, "batch": 8,
                                    "T": 300, "D": 178, "threads": torch.get_num_threads()}
    write(a, results)


SLEEP_CHILD = r"""
import json, sys, time, numpy as np, resource
sys.path.insert(0, sys.argv[1])
import data, dynacl
rng = np.random.default_rng(0)
n = 371_055
runs = rng.geometric(1 / 40, size=n // 10)                    # stage bouts, mean 40 rows (80 s)
y = np.repeat(rng.integers(0, 5, len(runs)), runs)[:n]
y[:5] = np.arange(5)
X = np.empty((n, 1, 200), dtype=np.float32)
templates = rng.standard_normal((5, 200)).astype(np.float32)
for i in range(0, n, 50_000):
    X[i:i + 50_000, 0] = templates[y[i:i + 50_000]] + 2.0 * rng.standard_normal((len(y[i:i + 50_000]), 200)).astype(np.float32)
ds = data._assemble("SleepEEG", X, y, X[:100], y[:100], X[:100], y[:100])
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
    sp = results.get("speed")
    if sp:
        lines += ["## Epoch time: DynaCL vs TS2Vec's hierarchical loss, same encoder and data", "",
                  "| loss | s / step (median of blocks) | s / epoch (123 steps) |", "|---|---|---|"]
        for k in ("dynacl", "dynacl_sequence_negatives", "ts2vec_hierarchical"):
            lines.append(f"| {k} | {np.median(sp[k]['s_per_step']):.4f} | {sp[k]['s_per_epoch']:.1f} |")
        lines += ["", f"DynaCL epoch / TS2Vec epoch = **{sp['ratio_dynacl_over_ts2vec']:.2f}** with batch negatives "
                  f"(default), **{sp['ratio_sequence_over_ts2vec']:.2f}** with --negatives sequence (goal ≤ 0.30). "
                  f"Settings: {json.dumps(sp['settings'])}.", ""]
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
                           "CPU under other load", argv=" ".join(sys.argv[1:]))
    t0 = time.perf_counter()
    for part in a.parts.split(","):
        {"accuracy": part_accuracy, "speed": part_speed, "sleep": part_sleep}[part](a, results)
        print(f"{part} done at {time.perf_counter() - t0:.0f} s", flush=True)
