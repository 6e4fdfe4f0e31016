"""
Benchmark of aimts.py on CPU (numbers for README). Three parts, results appended to
benchmarks/results/aimts.json as each finishes, and a summary table in benchmarks/results/aimts.md.

  raster    the batched torch rasteriser against matplotlib drawing the same charts (to an in-memory
            canvas, no PNG files), side by side in one process: images/s and ink-mask IoU.
  fewshot   Table V's idea: pre-train on a pool of real UCR/UEA TRAIN splits (targets left out), then
            fine-tune on 5/15/20% of each target's whole training split and test on its test split,
            seeds 1-3, beside the same network fine-tuned from its own initial weights (and the linear
            probes), all through aimts.main (--load for the second and later targets). The ablation
            rows (Table VI: inter, proto, naive_si, si) on seed 1 at 5 %.
  memory    peak resident memory and wall time of one fine-tuning run (batch 8; 10 epochs at the
            CPU default sizes, 1 epoch at the paper's sizes) on the longest real set here (ACSF1),
            in a fresh process; test inference included.

Run:  python benchmarks/bench_aimts.py [--data-dir DIR] [--parts raster,fewshot,memory]
      (DIR holds ucr_uea/<Name>/<Name>_TRAIN.ts ...; default: data.py's cache, downloading if needed)
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
import aimts as m  # noqa: E402
import data  # noqa: E402
from common import setup_torch  # noqa: E402
from tests.test_aimts import mpl_chart  # noqa: E402  (the matplotlib reference the IoU test uses)

OUT = ROOT / "benchmarks" / "results"
RUNS = Path(tempfile.gettempdir()) / "bench_aimts_runs"    # run directories of the few-shot part (encoder.pt for --load)
POOL = ["ArrowHead", "BasicMotions", "JapaneseVowels"]      # OSULeaf, PickupGesture, ACSF1: too long for this CPU budget
TARGETS = ["GunPoint", "ItalyPowerDemand"]
FRACTIONS = (0.05, 0.15, 0.2)


def save(results: dict) -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / "aimts.json").write_text(json.dumps(results, indent=2))


def bench_raster(data_dir, n=64) -> list:
    rows = []
    for name in ("GunPoint", "BasicMotions", "JapaneseVowels", "OSULeaf"):
        ds = data.load_dataset(name, data_dir=data_dir)
        src = m.Source(name, ds.X_train)
        x = src.x[:n]
        lo, hi = torch.from_numpy(src.lo), torch.from_numpy(src.hi)
        xt = torch.from_numpy(x)
        m.render(xt[:2], lo, hi)                                 # warm-up
        t_ours = float("inf")
        for _ in range(5):                                       # best of 5 batched calls
            t = time.perf_counter()
            ours = m.render(xt, lo, hi)
            t_ours = min(t_ours, time.perf_counter() - t)
        mpl_chart(x[0], src.lo, src.hi)                          # warm-up
        t = time.perf_counter()
        ref = [mpl_chart(x[i], src.lo, src.hi) for i in range(len(x))]
        t_mpl = time.perf_counter() - t
        ours = ours.permute(0, 2, 3, 1).numpy()
        ious = []
        for i in range(len(x)):
            a, o = ref[i].min(-1) < 0.9, ours[i].min(-1) < 0.9
            ious.append((a & o).sum() / (a | o).sum())
        rows.append({"dataset": name, "n": len(x), "M": x.shape[2], "T": x.shape[1],
                     "image_px": ours.shape[1], "torch_img_per_s": len(x) / t_ours,
                     "mpl_img_per_s": len(x) / t_mpl, "speedup": t_mpl / t_ours,
                     "iou_mean": float(np.mean(ious)), "iou_min": float(np.min(ious))})
        print(rows[-1], flush=True)
    return rows


def bench_fewshot(data_dir, seeds, max_iters, ft_epochs, results) -> None:
    """Every number through aimts.main, as a user runs it: the first (target, fraction) of a seed
    pre-trains (and saves encoder.pt), the others fine-tune that encoder with --load."""
    sources = m.load_pool(POOL, data_dir)
    results["fewshot_setup"] = {"pool": {s.name: list(s.x.shape) for s in sources}, "targets": TARGETS,
                                "fractions": FRACTIONS, "seeds": seeds, "max_iters": max_iters,
                                "ft_epochs": ft_epochs, "args": dataclasses.asdict(m.Args())}
    rows = results.setdefault("fewshot", [])
    jobs = [(s, "full") for s in seeds] + [(seeds[0], t) for t in ("inter", "proto", "naive_si", "si")]
    for seed, terms in jobs:
        enc_path, pre = "", {}
        for name in TARGETS:
            for frac in (FRACTIONS if terms == "full" else (0.05,)):
                args = m.Args(dataset=name, pretrain=",".join(POOL), seed=seed, max_iters=max_iters,
                              ft_epochs=ft_epochs, loss_terms=terms, few_shot=frac, load=enc_path,
                              scratch=terms == "full", probe=terms == "full", log=False,
                              data_dir=data_dir or "", out_dir=str(RUNS))
                res = m.main(args)
                if not enc_path:                                 # this call pre-trained
                    enc_path = str(Path(res["run_dir"]) / "encoder.pt")
                    pre = {"pretrain_s": res["pretrain"]["pretrain_time_s"], "pretrain_steps": res["pretrain"]["steps"],
                           "final_loss": float(np.mean([h["loss"] for h in res["history"][-5:]]))}
                ev = res["eval"]
                row = {"seed": seed, "loss_terms": terms, "target": name, "fraction": frac,
                       "n_train": res["n_labelled"], **pre, "acc": ev["accuracy"], "ft_s": res["finetune_time_s"],
                       "run_dir": res["run_dir"]}
                if terms == "full":
                    row.update(scratch_acc=ev["scratch_accuracy"], probe_acc=ev["probe_accuracy"],
                               random_probe_acc=ev["random_init_probe_accuracy"], probe_C=res["selection"]["probe_C"])
                rows.append(row)
                print(row, flush=True)
                save(results)


MEM_CHILD = """
import resource, sys, time, json, torch
sys.path.insert(0, {root!r})
import aimts as m
from common import setup_torch, set_seed
setup_torch(); set_seed(1)
def hwm():  # peak resident memory of this process (VmHWM; ru_maxrss would carry the parent's over exec)
    return int([l for l in open("/proc/self/status") if l.startswith("VmHWM")][0].split()[1]) / 1024
base = hwm()
args = m.Args(dataset={name!r}, data_dir={data_dir!r} or "", ft_epochs={epochs}, ft_batch_size=8{sizes})
ds, x_tr, x_te = m.load_target(args)
enc = m.Encoder(args.repr_dims, args.hidden_dims, args.depth, args.dropout)
t = time.perf_counter()
model, _ = m.finetune(enc, x_tr, ds.y_train, ds.n_classes, args, "cpu", 1)
acc = m.accuracy(model, x_te, ds.y_test, "cpu")
wall = time.perf_counter() - t
n_params = sum(p.numel() for p in enc.parameters())
print(json.dumps({{"dataset": {name!r}, "n_train": len(x_tr), "n_test": len(x_te), "T": x_tr.shape[1],
                  "sizes": {label!r}, "epochs": {epochs}, "encoder_params": n_params, "wall_s": wall,
                  "peak_rss_mb": hwm(),
                  "rss_after_import_mb": base, "acc": acc}}))
"""


def bench_memory(data_dir, name="ACSF1") -> list:
    rows = []
    for label, sizes, epochs in (("cpu default", "", 10), ("paper (D 512, width 64, depth 10)",
                                                           ", repr_dims=512, hidden_dims=64, depth=10", 1)):
        code = MEM_CHILD.format(root=str(ROOT), name=name, data_dir=data_dir, sizes=sizes, label=label, epochs=epochs)
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=3600)
        if out.returncode != 0:
            print(out.stderr[-2000:])
            continue
        rows.append(json.loads(out.stdout.strip().splitlines()[-1]))
        print(rows[-1], flush=True)
    return rows


def summary(results: dict) -> str:
    lines = []
    if results.get("raster"):
        lines += ["| set (M x T) | image px | torch img/s | matplotlib img/s | speed-up | ink IoU mean (min) |",
                  "|---|---|---|---|---|---|"]
        for r in results["raster"]:
            lines.append(f"| {r['dataset']} ({r['M']} x {r['T']}) | {r['image_px']} | {r['torch_img_per_s']:,.0f} | "
                         f"{r['mpl_img_per_s']:,.0f} | {r['speedup']:.0f}x | {r['iou_mean']:.3f} ({r['iou_min']:.3f}) |")
        lines.append("")
    rows = results.get("fewshot", [])
    full = [r for r in rows if r["loss_terms"] == "full"]
    if full:
        lines += ["| target | fraction | n train | AimTS fine-tuned | from scratch | linear probe | random-init probe | seeds |",
                  "|---|---|---|---|---|---|---|---|"]
        for t in TARGETS:
            for f in FRACTIONS:
                rs = [r for r in full if r["target"] == t and r["fraction"] == f]
                if not rs:
                    continue
                ms = lambda k: f"{100 * np.mean([r[k] for r in rs]):.1f} ± {100 * np.std([r[k] for r in rs]):.1f}"  # noqa: E731
                lines.append(f"| {t} | {f:g} | {rs[0]['n_train']} | {ms('acc')} | {ms('scratch_acc')} | {ms('probe_acc')} | "
                             f"{ms('random_probe_acc')} | {len(rs)} |")
        lines.append("")
        abl = [r for r in rows if r["seed"] == full[0]["seed"] and r["fraction"] == 0.05]
        if abl:
            lines += ["| loss terms (seed %d, 5%%) | " % full[0]["seed"] + " | ".join(TARGETS) + " | pre-train s |",
                      "|---|" + "---|" * (len(TARGETS) + 1)]
            for terms in ("inter", "proto", "naive_si", "si", "full"):
                rs = {r["target"]: r for r in abl if r["loss_terms"] == terms}
                if rs:
                    lines.append(f"| {terms} | " + " | ".join(f"{100 * rs[t]['acc']:.1f}" if t in rs else "" for t in TARGETS)
                                 + f" | {next(iter(rs.values()))['pretrain_s']:.0f} |")
            lines.append("")
    if results.get("memory"):
        lines += ["| fine-tune run | params | epochs | train / test | wall s | peak RSS MB (after import) |", "|---|---|---|---|---|---|"]
        for r in results["memory"]:
            lines.append(f"| {r['dataset']} (T {r['T']}), {r['sizes']} | {r['encoder_params']:,} | {r['epochs']} | {r['n_train']} / {r['n_test']} | "
                         f"{r['wall_s']:.0f} | {r['peak_rss_mb']:.0f} ({r['rss_after_import_mb']:.0f}) |")
    return "\n".join(lines)


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--data-dir", default=None)
    p.add_argument("--parts", default="raster,fewshot,memory")
    p.add_argument("--seeds", default="1,2,3")
    p.add_argument("--max-iters", type=int, default=20)
    p.add_argument("--ft-epochs", type=int, default=36)
    a = p.parse_args()
    setup_torch()
    results = json.loads((OUT / "aimts.json").read_text()) if (OUT / "aimts.json").exists() else {}
    results["machine"] = {"threads": torch.get_num_threads(), "torch": torch.__version__,
                          "started": time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime())}
    t0 = time.perf_counter()
    parts = a.parts.split(",")
    if "raster" in parts:
        results["raster"] = bench_raster(a.data_dir)
        save(results)
    if "fewshot" in parts:
        results["fewshot"] = []
        bench_fewshot(a.data_dir, [int(s) for s in a.seeds.split(",")], a.max_iters, a.ft_epochs, results)
    if "memory" in parts:
        results["memory"] = bench_memory(a.data_dir)
        save(results)
    results["wall_s"] = time.perf_counter() - t0
    results.setdefault("runs", []).append({**results["machine"], "parts": parts, "wall_s": results["wall_s"],
                                           "load_average_1_5_15min_at_end": os.getloadavg()})
    save(results)
    (OUT / "aimts.md").write_text(summary(results) + "\n")
    print(summary(results))


if __name__ == "__main__":
    main()
