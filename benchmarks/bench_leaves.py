"""
Benchmark for leaves.py (issue 7), everything in this one process:

  1. Speed: generating one batch of views (128 x 1 x 3000) with the batched LEAVES module versus
     the same augmentations applied per sample with numpy (as the official SimCLR baseline does
     in its data-loader workers). Repeats are interleaved; the ratio of medians is reported.
  2. Accuracy with few labels: LEAVES, SimCLR (fixed strengths) and the same network from scratch,
     fine-tuned on a stratified fraction of the training labels, plus the linear probe of each
     pre-trained encoder and of the random-init encoder; seeds 1-3. Also the learned strengths
     at the start and end of pre-training (do they move as in the paper's Fig. 5?).

Data: TF-C Gesture (registered name; 8 classes, 3 x 206) and the larger Epilepsy files in TS-TCC
layout (val.pt: 1840 series used as the training pool, test.pt: 2300 test series; 1 x 178, binary).

Results are written after every run: benchmarks/results/leaves.json and leaves.md.

Run:  python benchmarks/bench_leaves.py --data-dir DATA   (DATA holds tfc/Gesture, tstcc_format/Epilepsy)
      python benchmarks/bench_leaves.py --summarize-only
"""
from __future__ import annotations

import json
import math
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import leaves  # noqa: E402
from common import arg, parse_args, save_json  # noqa: E402


@dataclass
class Args:
    """Speed and few-label accuracy of leaves.py."""
    data_dir: str = arg("", "folder holding tfc/Gesture/{train,val,test}.pt and tstcc_format/Epilepsy/{val,test}.pt")
    seeds: str = arg("1,2,3", "seeds")
    datasets: str = arg("Gesture,Epilepsy", "datasets ('' to skip accuracy)")
    speed_reps: int = arg(7, "interleaved repeats of the speed measurement (0 to skip)")
    threads: int = arg(1, "torch threads (1: steadier on a shared machine)")
    out: str = arg(str(ROOT / "benchmarks" / "results" / "leaves"), "results prefix (.json, .md)")
    runs_dir: str = arg(str(ROOT / "runs" / "bench_leaves"), "run directories (plots, results.json)")
    summarize_only: bool = arg(False, "only rebuild the markdown from the JSON")


# Per-dataset settings: few labels, CPU-sized pre-training (the paper: 100 epochs, width 64).
SETTINGS = {"Gesture": dict(epochs=30, label_fraction=0.25),
            "Epilepsy": dict(epochs=8, label_fraction=0.05)}


# ------------------------------------------------------------------ data
def epilepsy_npz(data_dir: Path, cache: Path) -> Path:
    """TS-TCC-layout Epilepsy (channels last) -> an .npz leaves.py reads: val.pt as train, test.pt as test."""
    out = cache / "Epilepsy.npz"
    if not out.exists():
        d = {s: torch.load(data_dir / "tstcc_format" / "Epilepsy" / f"{s}.pt", weights_only=True) for s in ("val", "test")}
        x = {s: np.asarray(d[s]["samples"], dtype=np.float32).transpose(0, 2, 1) for s in d}   # (N, C, T)
        cache.mkdir(parents=True, exist_ok=True)
        np.savez(out, X_train=x["val"], y_train=np.asarray(d["val"]["labels"]), X_test=x["test"],
                 y_test=np.asarray(d["test"]["labels"]))
    return out


# ------------------------------------------------------------------ 1. speed
def numpy_views(x: np.ndarray, rng: np.random.Generator, sigma=(0.025, 0.025, 0.026), K=5.0,
                knots=8, phi=None, mu=None, sd=None) -> np.ndarray:
    """The LEAVES chain, one sample at a time in numpy (the per-sample CPU baseline)."""
    M = 5
    phi = np.full(M, 1 / M) if phi is None else phi
    mu = np.linspace(-0.5, 0.5, M) if mu is None else mu
    sd = np.full(M, 0.7) if sd is None else sd
    out = np.empty_like(x)
    for i, s in enumerate(x):                                # s (C, T)
        C, T = s.shape
        s = s + rng.normal(0, sigma[0], s.shape)                                  # jitter
        s = s * rng.normal(1, sigma[1], (C, 1))                                   # scale
        k = rng.choice(M, T, p=phi)                                               # TimeDis
        lam = np.sort(np.tanh(rng.normal(mu[k], sd[k])))
        pos = (lam + 1) / 2 * (T - 1)
        s = np.stack([np.interp(pos, np.arange(T), c) for c in s])
        n = int(round(1 + (K - 1) * rng.random()))                               # permutation
        if n > 1:
            L = T // n
            pieces = [s[:, j * L:(j + 1) * L] for j in range(n)] + ([s[:, n * L:]] if T % n else [])
            s = np.concatenate([pieces[j] for j in rng.permutation(len(pieces))], axis=1)
        kn = rng.normal(1, sigma[2], (C, knots))                                  # MagW
        src = np.clip((np.arange(T) + 0.5) * knots / T - 0.5, 0, knots - 1)
        s = s * np.stack([np.interp(src, np.arange(knots), c) for c in kn])
        lo, hi = s.min(1, keepdims=True), s.max(1, keepdims=True)
        out[i] = (s - lo) / np.maximum(hi - lo, 1e-8)
    return out


def speed(reps: int, shape=(128, 1, 3000)) -> dict:
    rng = np.random.default_rng(0)
    x = rng.random(shape).astype(np.float32)
    xt = torch.from_numpy(x)
    lv = leaves.Leaves()
    numpy_views(x[:2], rng), lv(xt[:2])                       # warm-up
    t_np, t_nograd, t_grad = [], [], []
    for _ in range(reps):
        t = time.perf_counter()
        numpy_views(x, rng)
        t_np.append(time.perf_counter() - t)
        t = time.perf_counter()
        with torch.no_grad():
            lv(xt)
        t_nograd.append(time.perf_counter() - t)
        t = time.perf_counter()
        lv(xt)                                                # with the autograd graph, as in training
        t_grad.append(time.perf_counter() - t)
    med = {k: float(np.median(v)) for k, v in (("numpy_per_sample_s", t_np), ("leaves_no_grad_s", t_nograd),
                                               ("leaves_with_graph_s", t_grad))}
    med.update(ratio_no_grad=med["leaves_no_grad_s"] / med["numpy_per_sample_s"],
               ratio_with_graph=med["leaves_with_graph_s"] / med["numpy_per_sample_s"], reps=reps,
               all={"numpy": t_np, "no_grad": t_nograd, "graph": t_grad}, threads=torch.get_num_threads(),
               shape=list(shape))
    return med


# ------------------------------------------------------------------ 2. accuracy
def run_one(a: Args, name: str, path: str, seed: int, views: str) -> dict:
    kw = dict(SETTINGS[name], dataset=path, data_dir=a.data_dir if name == "Gesture" else "",
              seed=seed, views=views, threads=a.threads, out_dir=a.runs_dir, log=False,
              scratch_eval=views == "leaves", random_init_eval=views == "leaves")
    t = time.perf_counter()
    res = leaves.main(leaves.Args(**kw))
    ev, h, sel = res["eval"], res["history"], res["selection"]
    keep = ("accuracy", "macro_f1", "auc", "sensitivity", "specificity", "probe_accuracy",
            "probe_macro_f1", "scratch_accuracy", "scratch_macro_f1", "scratch_auc", "scratch_sensitivity",
            "scratch_specificity", "random_init_probe_accuracy")
    return {"dataset": name, "seed": seed, "views": views, "settings": SETTINGS[name],
            "n_labelled": res["n_labelled"], **{k: ev[k] for k in keep if k in ev},
            "best_epoch": sel["finetune_epoch"], "positive_class": res["positive_class"],
            "strengths_start": {k: h[0][k] for k in ("sigma_jitter", "sigma_scale", "sigma_magw", "K")},
            "strengths_end": {k: h[-1][k] for k in ("sigma_jitter", "sigma_scale", "sigma_magw", "K")},
            "final_loss": h[-1]["loss"], "pretrain_s": res["time_s"], "wall_s": time.perf_counter() - t,
            "run_dir": res["run_dir"]}


def ms(v) -> str:
    v = np.array([x for x in v if x is not None and not (isinstance(x, float) and math.isnan(x))], dtype=float)
    return f"{100 * v.mean():.1f} ± {100 * v.std():.1f}" if len(v) else "n/a"


def summarize(res: dict) -> str:
    L = ["# leaves.py benchmark", "", f"Machine: {res.get('machine', '')}", ""]
    sps = [s for s in (res.get("speed"), res.get("speed_short")) if s]
    if sps:
        L += ["## Speed: one batch of views (LEAVES chain, batched torch vs per-sample numpy)", "",
              "| batch x C x T | per-sample numpy (s) | LEAVES batched, no graph (s) | LEAVES batched, with autograd graph (s) | ratio no graph | ratio with graph |",
              "|---|---|---|---|---|---|"]
        for sp in sps:
            L.append(f"| {' x '.join(map(str, sp.get('shape', [128, 1, 3000])))} | {sp['numpy_per_sample_s']:.4f} | "
                     f"{sp['leaves_no_grad_s']:.4f} | {sp['leaves_with_graph_s']:.4f} | "
                     f"**{sp['ratio_no_grad']:.3f}** | **{sp['ratio_with_graph']:.3f}** |")
        L += ["", f"Medians of {sps[0]['reps']} interleaved repeats, {sps[0]['threads']} torch thread(s), CPU.", ""]
    runs = res.get("runs", [])
    for name in dict.fromkeys(r["dataset"] for r in runs):
        R = [r for r in runs if r["dataset"] == name]
        lv, sc = [r for r in R if r["views"] == "leaves"], [r for r in R if r["views"] == "simclr"]
        seeds = sorted({r["seed"] for r in R})
        L += [f"## {name}: {lv[0]['n_labelled'] if lv else '?'} labelled training series, seeds {seeds}, "
              f"settings {R[0]['settings']}", "",
              "| | fine-tuned acc % | macro-F1 % | AUC % | sens % | spec % | linear probe acc % |", "|---|---|---|---|---|---|---|"]
        for lab, rows, pre in (("LEAVES", lv, ""), ("SimCLR (fixed sigma 0.03)", sc, ""), ("from scratch", lv, "scratch_")):
            L.append(f"| {lab} (n={len(rows)}) | {ms([r.get(pre + 'accuracy') for r in rows])} | "
                     f"{ms([r.get(pre + 'macro_f1') for r in rows])} | {ms([r.get(pre + 'auc') for r in rows])} | "
                     f"{ms([r.get(pre + 'sensitivity') for r in rows])} | {ms([r.get(pre + 'specificity') for r in rows])} | "
                     + (ms([r.get('probe_accuracy') for r in rows]) if not pre else "–") + " |")
        L.append(f"| random-init encoder | – | – | – | – | – | {ms([r.get('random_init_probe_accuracy') for r in lv])} |")
        L += ["", "Learned strengths, start -> end of pre-training (LEAVES):", ""]
        for r in lv:
            s0, s1 = r["strengths_start"], r["strengths_end"]
            L.append(f"- seed {r['seed']}: " + ", ".join(f"{k} {s0[k]:.5f} -> {s1[k]:.5f}" for k in s0)
                     + f" (pre-training {r['pretrain_s']:.0f} s, run {r['wall_s']:.0f} s)")
        L.append("")
    if res.get("accuracy_wall_s"):
        L.append(f"Accuracy runs wall time: {res['accuracy_wall_s'] / 60:.1f} min.")
    return "\n".join(L) + "\n"


def main(a: Args) -> None:
    jpath, mpath = Path(a.out + ".json"), Path(a.out + ".md")
    if a.summarize_only:
        mpath.write_text(summarize(json.loads(jpath.read_text())))
        return
    torch.set_num_threads(a.threads)
    torch.set_flush_denormal(True)
    import platform
    res = {"machine": f"{platform.processor() or platform.machine()}, {torch.get_num_threads()} torch thread(s), "
                      f"torch {torch.__version__}, CPU only, 2 cores shared with other jobs", "runs": []}
    if not a.datasets and jpath.exists():                     # speed only: keep the accuracy runs
        old = json.loads(jpath.read_text())
        res["runs"], res["accuracy_wall_s"] = old.get("runs", []), old.get("accuracy_wall_s", old.get("wall_s"))
    t0 = time.perf_counter()

    def save():
        res["wall_s"] = time.perf_counter() - t0
        save_json(res, jpath)
        mpath.write_text(summarize(res))

    if a.speed_reps:
        res["speed"] = speed(a.speed_reps)
        res["speed_short"] = speed(a.speed_reps, (128, 3, 206))
        print(f"speed: numpy {res['speed']['numpy_per_sample_s']:.3f} s, LEAVES {res['speed']['leaves_no_grad_s']:.3f} s "
              f"(graph {res['speed']['leaves_with_graph_s']:.3f} s), ratio {res['speed']['ratio_no_grad']:.3f}", flush=True)
        save()
    names = [n for n in a.datasets.split(",") if n]
    if names and not a.data_dir:
        sys.exit("error: --data-dir is needed: a folder holding tfc/Gesture and tstcc_format/Epilepsy")
    paths = {"Gesture": "Gesture", "Epilepsy": str(epilepsy_npz(Path(a.data_dir), Path(a.runs_dir)))} if names else {}
    for seed in [int(s) for s in a.seeds.split(",")]:
        for name in names:
            for views in ("leaves", "simclr"):
                r = run_one(a, name, paths[name], seed, views)
                res["runs"].append(r)
                print(f"{name} seed {seed} {views}: acc {100 * r['accuracy']:.1f} "
                      f"(scratch {100 * r.get('scratch_accuracy', float('nan')):.1f}) probe "
                      f"{100 * r['probe_accuracy']:.1f} in {r['wall_s']:.0f} s", flush=True)
                save()
    if names:
        res["accuracy_wall_s"] = time.perf_counter() - t0
    save()


if __name__ == "__main__":
    main(parse_args(Args))
