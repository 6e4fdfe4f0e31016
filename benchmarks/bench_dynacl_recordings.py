"""
What `python dynacl.py --dataset HARTH` / `--dataset AFDB` cost on a CPU for the full releases,
estimated stage by stage from full-size pieces (issue 15). No download: one HARTH subject file
(290k rows, 1.6 h at 50 Hz, the UCI layout) and one AFDB record (9,205,760 samples = 10.2 h at
250 Hz, format 212, written with wfdb) are generated with a random signal and timed through
dynacl.py's own code; the rest is per-sample / per-step / per-row arithmetic:

  read + frame   data.read_harth_csv / data.read_wfdb + dynacl.frame_recording, per sample
  pre-train      dynacl.pretrain steps at the real shapes (B 8, T 119, D 156 / 252), per step
  embed          dynacl.embed per frame
  probe          dynacl.linear_eval on 50,000 fit + 12,500 val rows of 32-d embeddings (12 / 3 classes)
  clustering     dynacl.cluster_scores on the balanced subset (HARTH <= 12 x 1000, AFDB <= 4 x 1000)

Release sizes used: HARTH 22 subjects, 6.4M samples (~256k frames); AFDB 23 records x 9,205,760
samples (1.69M frames). Peak memory is each stage's own RSS growth (ru_maxrss of a child process).

Run:  python benchmarks/bench_dynacl_recordings.py [--threads 2]
Results: benchmarks/results/dynacl_recordings.json
"""
from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results" / "dynacl_recordings.json"

CHILD = r"""
import json, os, resource, sys, tempfile, time
sys.path.insert(0, sys.argv[1])
import numpy as np, torch
torch.set_num_threads(int(sys.argv[3]))
import data, dynacl as m
stage, out = sys.argv[2], {}
rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
rng = np.random.default_rng(0)
t0 = time.perf_counter()
if stage == "harth_read":
    n = 290_000
    d = tempfile.mkdtemp()
    p = os.path.join(d, "S006.csv")
    sig = rng.standard_normal((n, 6)).round(6)
    lab = np.repeat(rng.choice([1, 2, 3, 6, 7, 8, 13], n // 500 + 1), 500)[:n]
    with open(p, "w") as fh:
        fh.write("timestamp,back_x,back_y,back_z,thigh_x,thigh_y,thigh_z,label\n")
        for i in range(n):
            fh.write(f"2019-01-12 {i // 180000:02d}:{i // 3000 % 60:02d}:{(i % 3000) / 50:06.3f}," + ",".join(f"{v:.6f}" for v in sig[i]) + f",{lab[i]}\n")
    t0 = time.perf_counter()
    x, code = data.read_harth_csv(p)
    t1 = time.perf_counter()
    fr = m.frame_recording(x, np.searchsorted([1, 2, 3, 4, 5, 6, 7, 8, 13, 14, 130, 140], code), 50.0, 12)
    t2 = time.perf_counter()
    out = {"samples": n, "read_s": t1 - t0, "frame_s": t2 - t1, "frames": sum(len(f) for f, _ in fr),
           "csv_bytes": os.path.getsize(p)}
elif stage == "afdb_read":
    import wfdb
    n = 9_205_760
    d = tempfile.mkdtemp()
    dig = np.clip(rng.normal(0, 200, (n, 2)), -2048, 2047).astype(np.int16)
    wfdb.wrsamp("04015", fs=250, units=["mV", "mV"], sig_name=["ECG1", "ECG2"], d_signal=dig, fmt=["212", "212"],
                adc_gain=[200.0, 200.0], baseline=[0, 0], write_dir=d)
    del dig
    wfdb.wrann("04015", "atr", np.array([0, n // 3, 2 * n // 3]), symbol=["+"] * 3, aux_note=["(N", "(AFIB", "(N"], write_dir=d)
    rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    t0 = time.perf_counter()
    x, h = data.read_wfdb(os.path.join(d, "04015"))
    lab = data.rhythm_labels(data.read_wfdb_annotations(os.path.join(d, "04015.atr")), x.shape[1])
    t1 = time.perf_counter()
    fr = m.frame_recording(x, lab, 250.0, 4)
    t2 = time.perf_counter()
    out = {"samples": n, "read_s": t1 - t0, "frame_s": t2 - t1, "frames": sum(len(f) for f, _ in fr),
           "dat_bytes": os.path.getsize(os.path.join(d, "04015.dat"))}
elif stage.startswith("pretrain"):
    D = int(stage.split("_")[1])
    seqs = rng.standard_normal((80, 119, D)).astype(np.float32)
    args = m.Args(epochs=2, log=False)
    m.pretrain(seqs[:16], m.Args(epochs=1, log=False), torch.device("cpu"), "x")     # warm-up
    t0 = time.perf_counter()
    _, _, _, st = m.pretrain(seqs, args, torch.device("cpu"), "x")
    out = {"D": D, "steps": st["steps"], "step_s": (time.perf_counter() - t0) / st["steps"]}
elif stage.startswith("eval"):
    K = int(stage.split("_")[1])
    net = m.Encoder(156)
    x = rng.standard_normal((200_000, 156)).astype(np.float32)
    t0 = time.perf_counter()
    e = m.embed(net, x)
    t1 = time.perf_counter()
    centers = rng.standard_normal((K, 32))
    def rows(n):
        y = rng.integers(0, K, n)
        return (centers[y] + 2 * rng.standard_normal((n, 32))).astype(np.float32), y
    (a, ya), (b, yb), (c, yc) = rows(50_000), rows(12_500), rows(50_000)
    t2 = time.perf_counter()
    m.linear_eval(a, ya, b, yb, c, yc)
    t3 = time.perf_counter()
    zc, yc2 = rows(1000 * K)
    m.cluster_scores(torch.from_numpy(zc), yc2, K, 10, 1)
    t4 = time.perf_counter()
    out = {"K": K, "embed_per_frame_s": (t1 - t0) / len(x), "probe_s": t3 - t2, "cluster_s": t4 - t3, "cluster_n": 1000 * K}
out["peak_rss_growth_mb"] = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - rss0) / 1024
print("RESULT " + json.dumps(out))
"""


def child(stage: str, threads: int) -> dict:
    r = subprocess.run([sys.executable, "-c", CHILD, str(ROOT), stage, str(threads)], capture_output=True, text=True)
    line = [ln for ln in r.stdout.splitlines() if ln.startswith("RESULT ")]
    if r.returncode or not line:
        raise SystemExit(f"{stage} failed:\n{r.stderr[-3000:]}")
    return json.loads(line[0][7:])


def main() -> None:
    threads = int(sys.argv[sys.argv.index("--threads") + 1]) if "--threads" in sys.argv else 1
    res = {"threads": threads, "load_before": os.getloadavg()}
    for stage in ("harth_read", "afdb_read", "pretrain_156", "pretrain_252", "eval_12", "eval_3"):
        t0 = time.perf_counter()
        res[stage] = child(stage, threads)
        res[stage]["wall_s"] = time.perf_counter() - t0
        print(stage, res[stage], flush=True)
    res["load_after"] = os.getloadavg()
    # the releases
    est = {}
    for name, samples, frames, D, K, read in (("HARTH", 6.4e6, 6.4e6 / 25, 156, 12, "harth_read"),
                                              ("AFDB", 23 * 9_205_760, 23 * 73_645, 252, 3, "afdb_read")):
        r = res[read]
        per_sample = (r["read_s"] + r["frame_s"]) / r["samples"]
        train_frames = frames * (0.8 if name == "HARTH" else 18 / 23)          # train + val subjects
        steps_per_epoch = int(train_frames // 119) // 8
        default_steps = max(1, -(-300 // steps_per_epoch)) * steps_per_epoch   # deviation 9: ~300 steps' worth
        step = res[f"pretrain_{D}"]["step_s"]
        ev = res[f"eval_{K}"]
        test_frames = frames - train_frames
        evaluation = 2 * (ev["probe_s"] + ev["cluster_s"] + (50_000 + 12_500 + test_frames) * ev["embed_per_frame_s"])
        est[name] = {"read_and_frame_s": per_sample * samples, "steps_per_epoch": steps_per_epoch,
                     "default_steps": default_steps, "default_pretrain_s": default_steps * step,
                     "paper_500_epochs_pretrain_h": 500 * steps_per_epoch * step / 3600,
                     "evaluation_s (trained + random init)": evaluation,
                     "features_gb": frames * D * 4 / 1e9}
        est[name]["default_total_min"] = (est[name]["read_and_frame_s"] + est[name]["default_pretrain_s"] + evaluation) / 60
    res["estimate"] = est
    RESULTS.parent.mkdir(exist_ok=True)
    RESULTS.write_text(json.dumps(res, indent=1))
    print(json.dumps(est, indent=1))


if __name__ == "__main__":
    main()
