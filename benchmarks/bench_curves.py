"""
Learning curves (issue 17): does pre-training help? Each method pre-trains on the unlabelled
training split of a real dataset; the frozen encoder is probed with the shared `linear_eval`
(C chosen on validation, never on test) at increasing budgets of optimiser steps: step 0 is the
random init of that seed, then 100, 300, 1,000, ... The checkpoints are taken inside ONE
pre-training run per (method, variant, dataset, seed) through each file's `pretrain(callback=)`,
so a curve is one run seen at several moments, not several runs.

Each method is set up exactly as its `main` sets it up (same data preparation, same encoder, same
defaults, same `embed` and the same probe); only the number of steps is the benchmark's. Variants
are the papers' own comparisons: TS2Vec's hierarchical loss vs the adaptive resolution loss,
DynaCL vs DynaCL-M, LEAVES vs SimCLR with fixed strengths, AimTS on its default multi-source pool
(target left out) vs AimTS on the target's own training split. A supervised row trains the same
encoder from the same init with all training labels (cross-entropy through a linear head, the
step chosen on validation accuracy) and probes it frozen like the others.

Wall time is pre-training time from the first step (callback and checkpoint copies excluded).
Every point records command, commit, seed, threads and machine load.

Run:  python benchmarks/bench_curves.py --data-dir DATA --shard 0/2 &
      python benchmarks/bench_curves.py --data-dir DATA --shard 1/2     (DATA holds ucr_uea/, tfc/)
      python benchmarks/bench_curves.py --render                        (curves.json, curves.png, README)
The one-seed diagnostics (their exact commands are listed in benchmarks/results/curves.md):
      python benchmarks/bench_curves.py --data-dir DATA --datasets Gesture --seeds 1 \
          --methods aimts_target --max-steps aimts_target=300
      python benchmarks/bench_curves.py --data-dir DATA --datasets Gesture,OSULeaf --seeds 1 --no-supervised \
          --methods dynacl_m_no_mse,dynacl_m_no_margin,simclr_sigma0.3,leaves_tau0.5 --extra \
          'dynacl_m_no_mse=dynacl_m:mse=false;dynacl_m_no_margin=dynacl_m:margin_term=false;simclr_sigma0.3=simclr:simclr_sigma=0.3;leaves_tau0.5=leaves:temperature=0.5'
"""
from __future__ import annotations

import copy
import json
import math
import os
import shlex
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import aimts  # noqa: E402
import data  # noqa: E402
import dynacl  # noqa: E402
import leaves  # noqa: E402
import ts2vec_adaptive  # noqa: E402
from common import arg, parse_args, save_json, set_seed, setup_torch  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results"
METHODS = {                                                   # variant -> (file, what it is)
    "ts2vec_hierarchical": ("ts2vec_adaptive.py", "TS2Vec, hierarchical loss (Eq. 4)"),
    "ts2vec_adaptive": ("ts2vec_adaptive.py", "adaptive resolution loss (Eq. 5-7)"),
    "dynacl": ("dynacl.py", "DynaCL (MP-Xent)"),
    "dynacl_m": ("dynacl.py", "DynaCL-M (MP-Xent + margin + masked MSE)"),
    "leaves": ("leaves.py", "LEAVES (learned strengths)"),
    "simclr": ("leaves.py", "SimCLR (fixed strengths 0.03)"),
    "aimts": ("aimts.py", "AimTS, default pool (target left out)"),
    "aimts_target": ("aimts.py", "AimTS, pre-trained on the target's train split"),
    "raw_input": ("data.py", "no encoder: the probe on the flattened series"),
    "raw_input_minmax": ("data.py", "no encoder: the probe on the flattened series, each min-max "
                                    "scaled per channel as leaves.py's input"),
}


SUPERVISED_WITH = ("ts2vec_hierarchical", "dynacl_m", "leaves", "aimts")   # one variant per file does it
DEFAULT_METHODS = ("ts2vec_hierarchical,ts2vec_adaptive,dynacl,dynacl_m,leaves,aimts,simclr,raw_input,"
                   "raw_input_minmax")                        # this order deals a similar load to two shards


@dataclass
class Args:
    """Learning curves of the four methods under one frozen linear probe."""
    data_dir: str = arg("", "data root holding ucr_uea/<Name>/ and tfc/<Name>/ ('' = data.py default)")
    datasets: str = arg("Gesture,OSULeaf", "comma list of datasets")
    methods: str = arg(DEFAULT_METHODS, "comma list of variants (see METHODS; aimts_target is a diagnostic)")
    seeds: str = arg("1,2,3", "comma list of seeds")
    budgets: str = arg("0,100,300,1000,3000", "optimiser steps at which the encoder is probed")
    max_steps: str = arg("ts2vec_hierarchical=300,ts2vec_adaptive=300,leaves=300,simclr=300,aimts=100,"
                         "aimts_target=100", "per-variant cap on the largest budget (what 90 min allow)")
    supervised: bool = arg(True, "also the supervised row (same encoder and init, all labels)")
    supervised_steps: int = arg(300, "supervised optimiser steps (validation every 25)")
    shard: str = arg("0/1", "i/n: run every n-th job starting at i (two processes on two cores)")
    threads: int = arg(1, "torch threads per process")
    out: str = arg("", "part file ('' = benchmarks/results/curves_part<i>.json)")
    render: bool = arg(False, "merge the part files into curves.json, draw curves.png, update README")
    extra: str = arg("", "diagnostic variants: name=base:field=value[:field=value];... "
                     "e.g. simclr_s0.3=simclr:simclr_sigma=0.3 (fields of the base's Args)")
    dry: bool = arg(False, "list the jobs and exit")


class Stop(Exception):
    """Raised by the recorder after the largest budget: ends pre-training early."""


class Recorder:
    """pretrain's callback: copies the encoder's weights at each budget, with the wall time spent
    in pre-training so far (its own time excluded). Changes nothing, draws no random number."""

    def __init__(self, budgets):
        self.budgets, self.last = set(budgets), max(budgets)
        self.snaps, self.t0, self.own, self.encoder = {}, None, 0.0, None

    def __call__(self, step, encoder):
        t = time.perf_counter()
        if step == 0:
            self.t0 = t
        if step in self.budgets:
            self.encoder = encoder
            self.snaps[step] = ({k: v.detach().clone() for k, v in encoder.state_dict().items()},
                                t - self.t0 - self.own)
        self.own += time.perf_counter() - t
        if step >= self.last:
            raise Stop


# --------------------------------------------------------------------------- one setup per file
@dataclass
class Job:
    pretrain: callable                                        # pretrain(callback) -> None
    features: callable                                        # (encoder, x) -> (N, F) frozen, eval mode
    forward: callable                                         # (encoder, xb tensor) -> (B, F) with grad
    fit: tuple                                                # (x, y) the probe fits on (train)
    val: tuple                                                # (x, y) chooses C (and the supervised step)
    test: tuple                                               # (x, y) the final evaluation only
    linear_eval: callable
    label_free: bool
    note: str
    per_epoch: int


def job_ts2vec(variant, name, seed, a, device, steps, **kw):
    m = ts2vec_adaptive
    args = m.Args(dataset=name, data_dir=a.data_dir, loss=variant.split("_")[1], seed=seed, iters=steps,
                  log=False, **kw)
    ds = data.load_dataset(name, data_dir=a.data_dir or None, val_fraction=args.val_fraction, seed=seed)
    if ds.name in data.UEA:                                   # as main: per-channel z-score for UEA
        ds = data.standardize(ds, per="channel")
    x_tr, x_va, x_te = (np.ascontiguousarray(x.transpose(0, 2, 1)) for x in (ds.X_train, ds.X_val, ds.X_test))
    pool = m.unlabelled_pool(x_tr, x_va)                      # as main: an order no label can change
    return Job(lambda cb: m.pretrain(pool, args, device, callback=cb),
               lambda enc, x: m.embed(enc, x, args.batch_size, device)[0],   # max-pool, main's number
               lambda enc, xb: enc(xb).amax(1),
               (x_tr, ds.y_train), (x_va, ds.y_val), (x_te, ds.y_test), m.linear_eval, True,
               "train + val series, labels unused", len(pool) // min(args.batch_size, len(pool)))


def job_dynacl(variant, name, seed, a, device, steps, **kw):
    m = dynacl
    args = m.Args(dataset=name, data_dir=a.data_dir, variant=variant.replace("_", "-"), seed=seed, log=False,
                  **kw)
    m.check_args(args)
    st = m.prepare(args, seed)
    per_epoch = len(st.seq_train) // min(args.batch_size, len(st.seq_train))
    args.epochs = math.ceil(steps / per_epoch) if steps else 1
    return Job(lambda cb: m.pretrain(st.seq_train, args, device, st.name, callback=cb),
               lambda enc, x: m.embed(enc, x, device=device),
               lambda enc, xb: enc(xb[None])[0],
               (st.x_train, st.y_train), (st.x_val, st.y_val), (st.x_test, st.y_test), m.linear_eval,
               st.label_free, st.note, per_epoch)


def job_leaves(variant, name, seed, a, device, steps, **kw):
    m = leaves
    args = m.Args(dataset=name, data_dir=a.data_dir, views=variant, seed=seed, log=False, **kw)
    m.resolve(args, "")
    ds, x_tr, y_tr, x_va, y_va, x_te, y_te = m.prepare(args)
    args = m.resolve(args, ds.name)
    pool = m.unlabelled_pool(x_tr, x_va)
    per_epoch = len(pool) // min(args.batch_size, len(pool))
    args.epochs = math.ceil(steps / per_epoch) if steps else 1
    return Job(lambda cb: m.pretrain(pool, args, device, callback=cb),
               lambda enc, x: m.embed(enc, x, args.batch_size, device),
               lambda enc, xb: enc(xb),
               (x_tr, y_tr), (x_va, y_va), (x_te, y_te), m.linear_eval, True,
               "train + val series min-max scaled, labels unused", per_epoch)


def job_aimts(variant, name, seed, a, device, steps, **kw):
    m = aimts
    args = m.Args(dataset=name, data_dir=a.data_dir, seed=seed, log=False, **{"max_iters": 0, "epochs": 10 ** 6, **kw})
    m.check_args(args)
    ds, x_tr, x_te = m.load_target(args)
    x_lab, y_lab, held = m.labelled_set(x_tr, ds.y_train, args)   # held-out rows choose the probe's C
    if variant == "aimts":
        sources = m.load_pool(m.pool_names(args.pretrain, ds.name), args.data_dir)
        note = "pool " + ", ".join(s.name for s in sources) + " (train files), target left out"
    else:
        sources = [m.Source(ds.name, ds.X_train)]             # (N, M, T), as load_pool passes it
        note = f"{ds.name} train split only (labels unused)"
    sampler = m.SourceSampler([len(s.x) for s in sources if len(s.x) >= 2], args.batch_size,
                              np.random.default_rng(0), 0, 1)
    return Job(lambda cb: m.pretrain(sources, args, device, callback=cb),
               lambda enc, x: m.embed(enc, x, 64, device),
               lambda enc, xb: enc(xb).amax(2).flatten(1),
               (x_lab[~held], y_lab[~held]), (x_lab[held], y_lab[held]), (x_te, ds.y_test), m.linear_eval,
               True, note, sampler.per_epoch)


def parse_extra(spec: str) -> dict:
    """--extra -> {name: (base variant, {Args field: value})}; values typed by the base file's Args."""
    out = {}
    for item in filter(None, (t.strip() for t in spec.split(";"))):
        name, rest = item.split("=", 1)
        base, *pairs = rest.split(":")
        module = {"ts2vec_adaptive.py": ts2vec_adaptive, "dynacl.py": dynacl, "leaves.py": leaves,
                  "aimts.py": aimts}[METHODS[base][0]]
        types = {f.name: f.type for f in module.Args.__dataclass_fields__.values()}
        kw = {}
        for pair in pairs:
            k, v = pair.split("=", 1)
            t = {"int": int, "float": float, "str": str, "bool": lambda s: s.lower() in ("1", "true", "yes")}[
                types[k] if isinstance(types[k], str) else types[k].__name__]
            kw[k] = t(v)
        out[name.strip()] = (base, kw)
    return out


ONEDNN = {"ts2vec": False, "dynacl": True, "leaves": True, "simclr": True, "aimts": False}   # as each main's
# setup_torch(variable_shapes=...) leaves it: off where shapes vary (crops), on for fixed shapes (LEAVES'
# ResNet is 3-4x slower without it on this CPU); tests/test_bench_curves.py reads each main's call.


def make_job(variant, name, seed, a, device, steps, **kw):
    """The job of one variant; kw: Args fields of the method file (tests shrink the model with them)."""
    torch.backends.mkldnn.enabled = ONEDNN[variant.split("_")[0]]
    f = {"ts2vec": job_ts2vec, "dynacl": job_dynacl, "leaves": job_leaves, "simclr": job_leaves,
         "aimts": job_aimts}[variant.split("_")[0]]
    return f(variant, name, seed, a, device, steps, **kw)


# --------------------------------------------------------------------------- probing and the supervised row
def probe(job: Job, encoder) -> dict:
    z = [job.features(encoder, x) for x in (job.fit[0], job.val[0], job.test[0])]
    r = job.linear_eval(z[0], job.fit[1], z[1], job.val[1], z[2], job.test[1])
    return {"probe_accuracy": r["accuracy"], "probe_macro_f1": r["macro_f1"], "probe_C": r["C"],
            "probe_val_accuracy": r["val_accuracy"]}


def supervised(job: Job, init_encoder, steps: int, seed: int, device) -> tuple:
    """The same encoder from the same init, trained with every training label: cross-entropy
    through a linear head on the pooled representation the probe reads; Adam 1e-3, batch 32;
    the encoder kept at the step of best validation accuracy (checked every 25 steps)."""
    torch.manual_seed(seed)
    enc = copy.deepcopy(init_encoder).train()
    x, y = job.fit
    with torch.no_grad():
        width = job.forward(enc, torch.from_numpy(x[:2]).to(device)).shape[1]
    n_classes = int(max(job.fit[1].max(), job.val[1].max())) + 1   # from train and val only
    head = nn.Linear(width, n_classes).to(device)
    opt = torch.optim.Adam(list(enc.parameters()) + list(head.parameters()), lr=1e-3)
    rng = np.random.default_rng(seed + 500)
    bs, best, t0 = min(32, len(x)), (-1.0, 0, None), time.perf_counter()
    xv, yv = torch.from_numpy(job.val[0]).to(device), torch.from_numpy(job.val[1]).to(device)
    for step in range(1, steps + 1):
        idx = rng.choice(len(x), bs, replace=False)
        xb, yb = torch.from_numpy(x[idx]).to(device), torch.from_numpy(y[idx]).to(device)
        loss = F.cross_entropy(head(job.forward(enc, xb)), yb)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if step % 25 == 0 or step == steps:
            enc.eval()
            with torch.no_grad():
                acc = (head(job.forward(enc, xv)).argmax(1) == yv).float().mean().item()
            enc.train()
            if acc > best[0]:
                best = (acc, step, copy.deepcopy(enc.state_dict()))
    enc.load_state_dict(best[2])
    return enc.eval(), {"steps": steps, "chosen_step": best[1], "val_accuracy": best[0],
                        "wall_s": time.perf_counter() - t0}


# --------------------------------------------------------------------------- running
def git_commit() -> str:
    """The commit this process runs (read once at start: main may move while a long run goes on)."""
    try:
        git = lambda *c: subprocess.run(["git", *c], cwd=ROOT, capture_output=True, text=True).stdout.strip()  # noqa: E731
        return git("rev-parse", "--short", "HEAD") + ("+dirty" if git("status", "--porcelain", "--", "*.py") else "")
    except OSError:
        return ""


COMMIT = git_commit()


def environment(a: Args) -> dict:
    return {"commit": COMMIT, "threads": a.threads, "torch": torch.__version__,
            "cpus": os.cpu_count(), "load": os.getloadavg()[0]}


def jobs_of(a: Args) -> list:
    out = []                                                  # seed-major: seed 1 of everything first
    for seed in (int(s) for s in a.seeds.split(",")):
        for name in a.datasets.split(","):
            for variant in a.methods.split(","):
                out.append((variant, name, seed))
    i, n = (int(v) for v in a.shard.split("/"))
    return out[i::n]


def caps(a: Args) -> dict:
    return {k: int(v) for k, v in (kv.split("=") for kv in a.max_steps.split(",") if kv)}


def raw_input_point(variant, name, seed, a, command) -> list:
    """Reference rows: the same probe on the flattened input series (train / val / test as
    data.py splits them for this seed), no encoder at all; raw_input_minmax first scales each
    series per channel to [0, 1] as leaves.py does to its input (official code)."""
    ds = data.load_dataset(name, data_dir=a.data_dir or None, val_fraction=0.2, seed=seed)
    scale = leaves.minmax if variant == "raw_input_minmax" else (lambda X: X)
    flat = lambda X: np.nan_to_num(scale(X).reshape(len(X), -1))    # noqa: E731  (N, C T)
    r = dynacl.linear_eval(flat(ds.X_train), ds.y_train, flat(ds.X_val), ds.y_val, flat(ds.X_test), ds.y_test)
    return [{"method": "data", "variant": variant, "dataset": name, "seed": seed, "steps": 0, "wall_s": 0.0,
             "probe_accuracy": r["accuracy"], "probe_macro_f1": r["macro_f1"], "probe_C": r["C"],
             "probe_val_accuracy": r["val_accuracy"], "label_free": True, "what": METHODS[variant][1],
             "overrides": {}, "command": command, **environment(a)}]


def run_one(variant, name, seed, a, device, command, **kw) -> list:
    if variant.startswith("raw_input"):
        return raw_input_point(variant, name, seed, a, command)
    budgets = sorted({int(b) for b in a.budgets.split(",")})
    cap = caps(a).get(variant) or caps(a).get(parse_extra(a.extra).get(variant, (variant,))[0])
    if cap:
        budgets = [b for b in budgets if b <= cap]
    set_seed(seed)
    base_variant, extra_kw = parse_extra(a.extra).get(variant, (variant, {}))
    job = make_job(base_variant, name, seed, a, device, max(budgets), **extra_kw, **kw)
    rec = Recorder(budgets)
    t0 = time.perf_counter()
    try:
        job.pretrain(rec)
    except Stop:
        pass                                                  # the largest budget is reached: stop early
    pre_s = time.perf_counter() - t0
    env = environment(a)
    what = (f"`{base_variant}` with " + ", ".join(f"{k} = {v}" for k, v in extra_kw.items())) if extra_kw \
        else METHODS[base_variant][1]
    base = {"method": METHODS[base_variant][0].removesuffix(".py"), "variant": variant, "dataset": name,
            "seed": seed, "what": what, "overrides": extra_kw, "label_free": job.label_free, "data_note": job.note, "steps_per_epoch": job.per_epoch,
            "command": command, **env}
    points, enc = [], copy.deepcopy(rec.encoder)
    for step in sorted(rec.snaps):
        sd, wall = rec.snaps[step]
        enc.load_state_dict(sd)
        t = time.perf_counter()
        points.append({**base, "steps": step, "wall_s": round(wall, 3), **probe(job, enc),
                       "probe_s": round(time.perf_counter() - t, 2)})
        print(f"  {variant:20s} {name:8s} seed {seed} step {step:5d} | {wall:7.1f} s | probe acc "
              f"{100 * points[-1]['probe_accuracy']:.1f} (C {points[-1]['probe_C']:g})", flush=True)
    if a.supervised and variant in SUPERVISED_WITH and not extra_kw:
        enc.load_state_dict(rec.snaps[0][0])                  # the same init as step 0
        sup, info = supervised(job, enc, a.supervised_steps, seed, device)
        points.append({**base, "variant": f"supervised_{base['method']}", "what": LABEL[f"supervised_{base['method']}"],
                       "steps": info["steps"],
                       "wall_s": round(info["wall_s"], 3), "label_free": False, **probe(job, sup),
                       "supervised": info})
        print(f"  supervised ({base['method']}) {name} seed {seed} | probe acc "
              f"{100 * points[-1]['probe_accuracy']:.1f} (step {info['chosen_step']} chosen on val)", flush=True)
    print(f"done {variant} {name} seed {seed}: pre-training {pre_s:.0f} s", flush=True)
    return points


def main(a: Args) -> None:
    if a.render:
        render()
        return
    setup_torch(threads=a.threads)
    device = torch.device("cpu")
    jobs = jobs_of(a)
    if a.dry:
        print("\n".join(map(str, jobs)))
        return
    out = Path(a.out or RESULTS / f"curves_part{a.shard.split('/')[0]}.json")
    command = "python benchmarks/bench_curves.py " + shlex.join(sys.argv[1:])
    done = json.loads(out.read_text()) if out.exists() else []
    have = {(p["variant"], p["dataset"], p["seed"]) for f in RESULTS.glob("curves_part*.json")
            for p in json.loads(f.read_text())}                # done by any process
    for variant, name, seed in jobs:
        if (variant, name, seed) in have:
            continue
        done += run_one(variant, name, seed, a, device, command)
        save_json(done, out)                                  # after every run: a crash keeps the rest


# --------------------------------------------------------------------------- rendering
KEEP = ("method", "variant", "dataset", "seed", "steps", "wall_s", "probe_accuracy")   # curves.json's schema first
ORDER = list(METHODS) + ["supervised_ts2vec_adaptive", "supervised_dynacl", "supervised_leaves", "supervised_aimts"]
LABEL = {**{k: v[1] for k, v in METHODS.items()},
         **{f"supervised_{f}": f"supervised: {f}.py's encoder, all labels" for f in
            ("ts2vec_adaptive", "dynacl", "leaves", "aimts")}}
EQUAL_WALL_S = 60.0                                           # "at equal wall time": the last point reached by then


def load_points() -> list:
    pts = [p for f in sorted(RESULTS.glob("curves_part*.json")) for p in json.loads(f.read_text())]
    if not pts and (RESULTS / "curves.json").exists():
        pts = json.loads((RESULTS / "curves.json").read_text())["points"]
    seen, unique = set(), []
    for p in pts:                                             # one point per (variant, dataset, seed, steps)
        key = (p["variant"], p["dataset"], p["seed"], p["steps"])
        if key not in seen:
            seen.add(key)
            unique.append(p)
    return sorted(unique, key=lambda p: (p["dataset"], order_of(p["variant"]), p["seed"], p["steps"]))


def order_of(v: str) -> int:
    return ORDER.index(v) if v in ORDER else len(ORDER) + (v.startswith("supervised"))   # diagnostics last


def by_run(pts: list) -> dict:
    """(variant, dataset) -> {seed: [points in step order]}."""
    out = {}
    for p in pts:
        out.setdefault((p["variant"], p["dataset"]), {}).setdefault(p["seed"], []).append(p)
    return out


N_SEEDS = 3                                                   # a cell over fewer seeds says how many


def mean_std(v: list) -> str:
    if not v:
        return "–"
    if len(v) == 1:
        return f"{100 * v[0]:.1f} (n = 1)"
    return f"{100 * np.mean(v):.1f} ± {100 * np.std(v):.1f}" + (f" (n = {len(v)})" if len(v) < N_SEEDS else "")


def at_steps(runs: dict, steps: int) -> list:
    return [q["probe_accuracy"] for r in runs.values() for q in r if q["steps"] == steps]


def at_wall(runs: dict, wall: float) -> list:
    """Per seed, the last checkpoint reached within `wall` seconds of pre-training."""
    return [max((q for q in r if q["wall_s"] <= wall), key=lambda q: q["steps"])["probe_accuracy"] for r in runs.values()]


def summary(pts: list) -> tuple[list, list]:
    """Rows of the comparison table and the list of (variant, dataset, rise) over step 0."""
    runs, rows, rises = by_run(pts), [], []
    datasets = sorted({p["dataset"] for p in pts})
    variants = sorted({v for v, _ in runs}, key=lambda v: (order_of(v), v))
    for v in variants:
        cells = []
        for d in datasets:
            r = runs.get((v, d))
            if r is None:
                cells += ["–"] * 4
                continue
            steps = sorted(set.intersection(*({q["steps"] for q in s} for s in r.values())))   # every seed has them
            if v.startswith("supervised"):
                cells += ["–", "–", f"{mean_std(at_steps(r, steps[-1]))} ({steps[-1]} steps)", "–"]
                continue
            if v.startswith("raw_input"):
                cells += [mean_std(at_steps(r, 0)), "–", "–", "–"]
                continue
            last = steps[-1]
            walls = [next(q["wall_s"] for q in s if q["steps"] == last) for s in r.values()]
            cells += [mean_std(at_steps(r, 0)), mean_std(at_steps(r, 300)),
                      f"{mean_std(at_steps(r, last))} ({last} steps, {np.mean(walls):.0f} s)",
                      mean_std(at_wall(r, EQUAL_WALL_S))]
            best = max(np.mean(at_steps(r, s)) for s in steps if s > 0)
            rises.append((v, d, 100 * (best - np.mean(at_steps(r, 0)))))
        free = all(p["label_free"] for p in pts if p["variant"] == v)
        what = next((p.get("what") for p in pts if p["variant"] == v), None) or LABEL[v]
        rows.append([f"`{v}`", what + ("" if free or v.startswith("supervised") else " †"), *cells])
    return rows, rises


def plot(pts: list, path: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    runs = by_run([p for p in pts if not p["variant"].startswith("supervised")])
    datasets = sorted({p["dataset"] for p in pts})
    fig, axes = plt.subplots(2, len(datasets), figsize=(6.2 * len(datasets), 8.4), squeeze=False)
    colours = dict(zip(METHODS, plt.cm.tab10.colors))
    for j, d in enumerate(datasets):
        for v in METHODS:
            r = runs.get((v, d))
            if not r or v.startswith("raw_input"):
                continue
            steps = sorted({q["steps"] for s in r.values() for q in s if all(
                any(x["steps"] == q["steps"] for x in s2) for s2 in r.values())})
            acc = np.array([[next(q["probe_accuracy"] for q in s if q["steps"] == k) for k in steps]
                            for s in r.values()]) * 100                        # (seeds, budgets)
            wall = np.array([[next(q["wall_s"] for q in s if q["steps"] == k) for k in steps]
                             for s in r.values()]).mean(0)
            m, sd = acc.mean(0), acc.std(0)
            x_steps = np.maximum(steps, 10)                   # step 0 drawn at 10 on the log axis
            ls = "--" if v in ("ts2vec_adaptive", "dynacl_m", "simclr", "aimts_target") else "-"
            for ax, x in ((axes[0, j], x_steps), (axes[1, j], np.maximum(wall, 0.1))):
                ax.plot(x, m, ls, marker="o", ms=3.5, color=colours[v], label=v)
                ax.fill_between(x, m - sd, m + sd, color=colours[v], alpha=0.12)
                ax.plot(x[:1], m[:1], marker="s", ms=7, mfc="white", color=colours[v])   # step 0: random init
        for sv in ("supervised_ts2vec_adaptive", "supervised_dynacl", "supervised_leaves", "supervised_aimts"):
            r = by_run(pts).get((sv, d))
            if r:
                f = sv.split("_", 1)[1]
                c = colours[{"ts2vec_adaptive": "ts2vec_hierarchical", "dynacl": "dynacl",
                             "leaves": "leaves", "aimts": "aimts"}[f]]
                axes[0, j].axhline(100 * np.mean(at_steps(r, max(q["steps"] for s in r.values() for q in s))),
                                   color=c, lw=0.8, ls=":")
        r = runs.get(("raw_input", d))
        if r:
            axes[0, j].axhline(100 * np.mean(at_steps(r, 0)), color="black", lw=0.8, ls="-.")
        axes[0, j].set(xscale="log", xlabel="pre-training steps (step 0, the random init, drawn at 10, open square)",
                       ylabel="frozen linear-probe test accuracy (%)", title=f"{d}: accuracy against steps")
        axes[1, j].set(xscale="log", xlabel="pre-training wall time, s (2-core CPU, 1 thread per run)",
                       ylabel="frozen linear-probe test accuracy (%)", title=f"{d}: accuracy against wall time")
        for ax in axes[:, j]:
            ax.grid(alpha=0.3, which="both", lw=0.4)
    handles, labels = axes[0, 0].get_legend_handles_labels()
    keep = [i for i, lab in enumerate(labels) if lab in METHODS]
    fig.legend([handles[i] for i in keep], [labels[i] for i in keep], loc="lower center", ncol=4, fontsize=9,
               title="mean ± std over seeds (band); open square: step 0 = random init; dotted: supervised, "
                     "same encoder; dash-dot: the probe on the raw series", title_fontsize=8)
    fig.tight_layout(rect=(0, 0.09, 1, 1))
    fig.savefig(path, dpi=110)
    plt.close(fig)


def table_md(pts: list) -> str:
    rows, rises = summary(pts)
    datasets = sorted({p["dataset"] for p in pts})
    head = ["variant", "what"] + [f"{d}: {c}" for d in datasets for c in
                                  ("step 0 (random init)", "300 steps", "largest budget", f"≤ {EQUAL_WALL_S:.0f} s")]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    seeds = sorted({p["seed"] for p in pts})
    env = sorted({(p["commit"], p["threads"]) for p in pts})
    loads = [p["load"] for p in pts]
    flat = [f"`{v}` on {d} ({r:+.1f})" for v, d, r in rises if r < 5]
    text = "\n".join(lines) + "\n\n" + (
        f"Frozen linear-probe test accuracy (%), mean ± std over seeds {', '.join(map(str, seeds))}; the probe "
        "(`linear_eval`, identical in every file) chooses C on validation and never sees test during selection. "
        "Columns: the random init of each seed (step 0), 300 optimiser steps (equal steps), the largest budget run "
        f"(with its mean pre-training wall time), and the last checkpoint reached within {EQUAL_WALL_S:.0f} s of "
        "pre-training (equal wall time). † pre-training read the training labels: DynaCL's class-run order "
        "arranges windows in runs of one class (the one declared exception to label-free pre-training). "
        "Supervised rows: the same encoder from the same init, trained with every training label (cross-entropy "
        "through a linear head, the step chosen on validation), then probed frozen like the others. "
        f"Commit(s) and threads: {', '.join(f'{c} ({t} thread)' for c, t in env)}; "
        f"load average during the runs {min(loads):.1f}-{max(loads):.1f} on 2 cores.")
    if flat:
        text += ("\n\nNot 5 points above their own step 0 at any budget run: " + "; ".join(flat) + ".")
    return text


def render() -> None:
    pts = load_points()
    for p in pts:                                             # --data-dir's value shown as README names it: DATA
        toks = shlex.split(p.get("command", ""))
        p["command"] = shlex.join([("DATA" if i and toks[i - 1] == "--data-dir" else t) for i, t in enumerate(toks)])
    if not pts:
        raise SystemExit("no points yet: run the shards first")
    save_json({"schema": "one point per (variant, dataset, seed, steps); steps = 0 is that seed's random init; "
                         "probe_accuracy is a fraction; wall_s is pre-training time from the first step",
               "points": [{**{k: p[k] for k in KEEP}, **{k: v for k, v in p.items() if k not in KEEP}} for p in pts]},
              RESULTS / "curves.json")
    plot(pts, RESULTS / "curves.png")
    table = table_md(pts)
    command = ("python benchmarks/bench_curves.py --data-dir DATA --shard 0/2 &  "
               "python benchmarks/bench_curves.py --data-dir DATA --shard 1/2; "
               "python benchmarks/bench_curves.py --render")
    commands = sorted({p.get("command", "") for p in pts} - {""})
    (RESULTS / "curves.md").write_text(f"# Learning curves under one frozen probe\n\n![curves](curves.png)\n\n"
                                       f"{table}\n\nCommand: `{command}`\n\nThe commands that made the points "
                                       "(each point in curves.json records its own):\n\n"
                                       + "".join(f"- `{c}`\n" for c in commands))
    readme = ROOT / "README.md"
    text = readme.read_text()
    a, b = "<!-- curves:begin -->", "<!-- curves:end -->"
    if a in text and b in text:
        block = (f"{a}\n![learning curves](benchmarks/results/curves.png)\n\n{table}\n\n"
                 f"Made by `{command}`; the command of every point, the diagnostics' `--extra` included, is in "
                 "[curves.md](benchmarks/results/curves.md) and [curves.json](benchmarks/results/curves.json); "
                 f"how each method was set up: [benchmarks/bench_curves.py](benchmarks/bench_curves.py).\n{b}")
        readme.write_text(text[:text.index(a)] + block + text[text.index(b) + len(b):])
    print(table)


if __name__ == "__main__":
    main(parse_args(Args))
