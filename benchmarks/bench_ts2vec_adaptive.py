"""
Benchmark for ts2vec_adaptive.py (issue 3): accuracy and training time, hierarchical vs adaptive,
every configuration run side by side in this one process (same machine state, same data).

  1. Accuracy: --loss hierarchical and --loss adaptive (faithful, --measure all) on the short
     datasets, one run per seed, default Args (TS2Vec preset, iteration rule, batch 8).
  2. Speed on a long dataset (ACSF1, length 1460): hierarchical, adaptive --measure all
     (faithful), adaptive --measure probe (cheaper), and the floor: one resolution per epoch
     with nothing measured (--measure none). Optionally one fixed resolution (--fixed-level 0).
     All use the same crops, masks and batch order (separate RNG streams), so time ratios
     compare loss work only.

Results are written after every run (JSON with every number, and a markdown summary), so a
partial benchmark still leaves its numbers:
  benchmarks/results/ts2vec_adaptive.json, benchmarks/results/ts2vec_adaptive.md

Run:  python3 benchmarks/bench_ts2vec_adaptive.py [--data-dir DIR]   (DIR: local copies laid out as the cache)
      python3 benchmarks/bench_ts2vec_adaptive.py --summarize-only      # rebuild the markdown
      python3 benchmarks/bench_ts2vec_adaptive.py --replace --datasets BasicMotions --seeds 1 \
          --long-dataset ''                                             # re-measure one pair
"""
from __future__ import annotations

import json
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from common import arg, parse_args, save_json  # noqa: E402

# The official TS2Vec code on this machine (FTZ on, oneDNN off), from
# docs/ts2vec_official_anchor.md: the official code on this machine, SVM protocol, seed 42, one run each.
OFFICIAL = {"GunPoint": (0.980, 23.4), "ArrowHead": (0.840, 34.1), "BasicMotions": (0.975, 20.4)}


@dataclass
class Args:
    """Accuracy and speed of ts2vec_adaptive.py, hierarchical vs adaptive."""
    datasets: str = arg("GunPoint,ArrowHead,BasicMotions,OSULeaf", "accuracy datasets, comma-separated")
    seeds: str = arg("1,2,3", "seeds for the accuracy datasets")
    long_dataset: str = arg("ACSF1", "long dataset for the speed comparison ('' to skip)")
    long_seeds: str = arg("1", "seeds for the long dataset (each seed runs every mode)")
    long_modes: str = arg("hierarchical,probe,all,none", "modes on the long dataset: hierarchical, "
                          "probe, all (adaptive --measure ...), none (floor)")
    fixed_floor: bool = arg(False, "also run one fixed resolution (coarsest, j=0) on the long dataset")
    data_dir: str = arg("", "data root; '' = data.py default")
    out: str = arg(str(ROOT / "benchmarks" / "results" / "ts2vec_adaptive"), "results prefix (.json, .md)")
    runs_dir: str = arg(str(ROOT / "runs" / "bench_ts2vec_adaptive"), "run directories (plots, results.json)")
    summarize_only: bool = arg(False, "only rebuild the markdown from the JSON")
    replace: bool = arg(False, "keep the runs already in the JSON; runs made now replace those "
                        "with the same dataset, seed and mode (re-measuring a disturbed run)")


def run_one(a: Args, dataset: str, seed: int, **kw) -> dict:
    import ts2vec_adaptive as m
    t0 = time.perf_counter()
    res = m.main(m.Args(dataset=dataset, seed=seed, data_dir=a.data_dir,
                        out_dir=a.runs_dir, **kw))
    tr = res["train"]
    levels = [h["level"] for h in res["history"] if h["level"] is not None]
    return {"dataset": dataset, "seed": seed, "loss": kw.get("loss", "adaptive"),
            "measure": kw.get("measure", "all") if kw.get("loss", "adaptive") == "adaptive" else None,
            "fixed_level": kw.get("fixed_level", -1),
            "accuracy": res["eval"]["accuracy"], "macro_f1": res["eval"]["macro_f1"],
            "accuracy_avgpool": res["eval"]["accuracy_avgpool"],
            "random_init_accuracy": res["eval"].get("random_init_accuracy"),
            "train_time_s": res["time_s"], "train_cpu_s": tr["train_cpu_s"], "iters": tr["iters"], "s_per_iter": res["time_s"] / tr["iters"],
            "epochs_logged": tr["epochs_logged"], "wall_s": time.perf_counter() - t0,
            "levels_trained": levels, "run_dir": res["run_dir"]}


def mode_name(r: dict) -> str:
    if r["loss"] == "hierarchical":
        return "hierarchical"
    if r["fixed_level"] >= 0:
        return f"fixed level {r['fixed_level']}"
    return {"all": "adaptive (measure all)", "probe": "adaptive (measure probe)",
            "none": "one random level, no measurement (floor)"}[r["measure"]]


def ms(xs, scale=100.0, fmt="{:.1f}"):
    x = np.asarray(xs, dtype=float) * scale
    return (fmt + " ± " + fmt).format(x.mean(), x.std()) if len(x) > 1 else fmt.format(x.mean())


def summarize(runs: list, meta: dict) -> str:
    out = ["# ts2vec_adaptive.py benchmark\n",
           f"Machine: {meta.get('machine', '?')}. Benchmark wall time so far: "
           f"{meta.get('elapsed_s', 0) / 60:.1f} min. Accuracy = our linear probe (max-pool, "
           "SWA encoder) on the official test split; mean ± std (population) over seeds. "
           "Train time = pre-training loop only (no data loading, no evaluation).\n"]
    short = [r for r in runs if r["dataset"] != meta.get("long_dataset")]
    if short:
        out += ["## Accuracy and time, default Args\n",
                "| dataset | seeds | hierarchical acc % | adaptive acc % | random-init acc % | "
                "hier. train s | adapt. train s | adapt./hier. time | official acc (SVM) | official train s |",
                "|---|---|---|---|---|---|---|---|---|---|"]
        for ds in dict.fromkeys(r["dataset"] for r in short):
            h = [r for r in short if r["dataset"] == ds and r["loss"] == "hierarchical"]
            a = [r for r in short if r["dataset"] == ds and r["loss"] == "adaptive"]
            ri = [r["random_init_accuracy"] for r in h + a if r["random_init_accuracy"] is not None]
            seeds = sorted({r["seed"] for r in h + a})
            ht = [r["train_time_s"] for r in h]
            at = [r["train_time_s"] for r in a]
            ratio = f"{np.mean(at) / np.mean(ht):.2f}" if h and a else ""
            off = OFFICIAL.get(ds)
            out.append(f"| {ds} | {','.join(map(str, seeds))} | {ms([r['accuracy'] for r in h]) if h else ''} | "
                       f"{ms([r['accuracy'] for r in a]) if a else ''} | {ms(ri) if ri else ''} | "
                       f"{ms(ht, 1) if h else ''} | {ms(at, 1) if a else ''} | {ratio} | "
                       f"{off[0] * 100:.1f} | {off[1]:.1f} |" if off else
                       f"| {ds} | {','.join(map(str, seeds))} | {ms([r['accuracy'] for r in h]) if h else ''} | "
                       f"{ms([r['accuracy'] for r in a]) if a else ''} | {ms(ri) if ri else ''} | "
                       f"{ms(ht, 1) if h else ''} | {ms(at, 1) if a else ''} | {ratio} | n/a | n/a |")
        gp = [r["train_time_s"] for r in short if r["dataset"] == "GunPoint" and r["loss"] == "hierarchical"]
        if gp:
            out.append(f"\nGunPoint, `--loss hierarchical`: {np.mean(gp):.1f} s mean train time = "
                       f"**{np.mean(gp) / OFFICIAL['GunPoint'][1]:.2f}** of the official code's 23.4 s "
                       f"(goal ≤ 0.80); per seed: {', '.join(f'{t:.1f}' for t in gp)} s.\n")
    long = [r for r in runs if r["dataset"] == meta.get("long_dataset")]
    if long:
        out += [f"## Speed on {meta['long_dataset']} ({long[0]['iters']} iterations, identical crops and masks)\n",
                "| mode | seed | train s | s/iter | time / hierarchical | CPU s / hierarchical | acc % | avg-pool acc % | levels trained (first 12 epochs) |",
                "|---|---|---|---|---|---|---|---|---|"]
        notes = []
        for seed in sorted({r["seed"] for r in long}):
            rs = [r for r in long if r["seed"] == seed]
            base = next((r for r in rs if r["loss"] == "hierarchical"), None)
            for r in rs:
                ratio = f"**{r['train_time_s'] / base['train_time_s']:.2f}**" if base else ""
                cpu = f"{r['train_cpu_s'] / base['train_cpu_s']:.2f}" if base else ""
                out.append(f"| {mode_name(r)} | {seed} | {r['train_time_s']:.1f} | {r['s_per_iter']:.3f} | "
                           f"{ratio} | {cpu} | {100 * r['accuracy']:.1f} | {100 * r['accuracy_avgpool']:.1f} | "
                           f"{r['levels_trained'][:12]} |")
            floor = next((r["train_time_s"] for r in rs if r["measure"] == "none" and r["fixed_level"] < 0), None)
            probe = next((r["train_time_s"] for r in rs if r["measure"] == "probe"), None)
            if floor and probe:
                notes.append(f"Seed {seed}: adaptive (measure probe) / floor = **{probe / floor:.2f}** "
                             "(goal ≤ 1.10).")
        out += [""] + notes
    out.append("\nCommand: `python3 benchmarks/bench_ts2vec_adaptive.py --data-dir DATA "
               f"--fixed-floor` (settings: {json.dumps(meta.get('args', {}))}); ACSF1 seed 2 added with "
               "`--replace --datasets '' --long-seeds 2 --long-modes hierarchical,probe`.")
    return "\n".join(out) + "\n"


def main(a: Args) -> None:
    js, md = Path(a.out + ".json"), Path(a.out + ".md")
    if a.summarize_only:
        d = json.loads(js.read_text())
        md.write_text(summarize(d["runs"], d["meta"]))
        print(md.read_text())
        return
    import platform
    import torch
    meta = {"machine": f"{platform.processor() or platform.machine()}, {torch.get_num_threads()} threads, "
                       f"torch {torch.__version__}, CPU", "long_dataset": a.long_dataset,
            "args": {k: v for k, v in vars(a).items() if k not in ("summarize_only", "replace")},
            "elapsed_s": 0.0}
    runs: list = []
    t0 = time.perf_counter()
    if a.replace and js.exists():                             # keep the earlier runs and their meta
        old = json.loads(js.read_text())
        runs = old["runs"]
        meta.update(long_dataset=old["meta"]["long_dataset"], args=old["meta"]["args"])
        t0 -= old["meta"]["elapsed_s"]                        # elapsed counts both sessions

    def record(r):
        key = (r["dataset"], r["seed"], mode_name(r))
        runs[:] = [q for q in runs if (q["dataset"], q["seed"], mode_name(q)) != key] + [r]
        meta["elapsed_s"] = time.perf_counter() - t0
        save_json({"meta": meta, "runs": runs}, js)
        md.write_text(summarize(runs, meta))
        print(f"[bench] {r['dataset']} seed {r['seed']} {mode_name(r)}: acc {r['accuracy']:.3f}, "
              f"train {r['train_time_s']:.1f} s, elapsed {meta['elapsed_s'] / 60:.1f} min", flush=True)

    seeds = [int(s) for s in a.seeds.split(",") if s]
    for seed in seeds:                                        # seeds outermost: a cut run keeps
        for ds in [d for d in a.datasets.split(",") if d]:    # every dataset at >= 1 seed
            for loss in ("hierarchical", "adaptive"):
                record(run_one(a, ds, seed, loss=loss))
    if a.long_dataset:
        for seed in [int(s) for s in a.long_seeds.split(",") if s]:
            modes = [dict(loss="hierarchical") if k == "hierarchical" else dict(loss="adaptive", measure=k)
                     for k in a.long_modes.split(",") if k]
            if a.fixed_floor:
                modes.append(dict(loss="adaptive", measure="none", fixed_level=0))
            for kw in modes:
                record(run_one(a, a.long_dataset, seed, **kw))
    print(md.read_text())


if __name__ == "__main__":
    main(parse_args(Args))
