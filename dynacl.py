"""
DynaCL and DynaCL-M: Dynamic Contrastive Learning for Time Series Representation.
  Shamba, Bach, Taylor, 2024 (ICLR 2025 submission). Paper: https://arxiv.org/abs/2410.15416
  (equation numbers Eq. (1)-(6) follow the OpenReview submission, id nphsoKxlFs). Official code:
  https://github.com/ShambAI/DynaCL_raw @ 1eac550 (baselines/double_cl.py, margin_cl.py,
  margin_vannila.py, src/losses/contrastive.py). A raw snapshot: it does not run as shipped.

Read top to bottom next to the paper:
  1. Args ............. App. C (tau 0.5, margin 5, mask 0.3, threshold 0.4), batch 8, AdamW 1e-3
  2. Data ............. rows = instances (N, D); sequences = T consecutive rows (B, T, D);
                        recordings -> STFT frames, frame labels, sequences inside one recording
  3. Augmentations .... DynaCL-M only: input masking (Sec. 3.3)
  4. Encoder .......... App. A: three kernel-1 Conv1d 128/64/32 + BatchNorm + ReLU; no head
  5. Losses ........... Eq. (1)-(3) MP-Xent; Eq. (4) MSE; Eq. (5) margin; Eq. (6) combination
  6. Pre-training ..... Alg. 1
  7. Linear eval ...... shared protocol, identical in every method file
  8. main ............. clustering scores (Table 2), 2-D picture (Fig. 3), results

Instances and sequences (Sec. 4, App. D):
  SleepEEG   one row of the TF-C release's train.pt is one 2-s instance; its first 178 samples are
             its features (as TF-C). Sequences are blocks of T = 300 consecutive rows, the first
             80% of blocks train, the last 20% test (989 / 247 blocks). Whether the rows are in time
             order is measured on load (label runs against a shuffled copy) and printed.
  HARTH, AFDB (ECG) and a user's own recording (.npz / .csv, data.read_recording_file): continuous
             per-subject recordings from data.load_recordings, split by subject (sorted IDs, the last
             20% test; 20% of the others, drawn with the seed, validate the probe's C). Each
             recording becomes STFT frames (`stft_features`: 1-s Hann window, 0.5-s hop, magnitude,
             channels stacked: HARTH 6 x 26 = 156 features, AFDB 2 x 126 = 252), stretch by stretch
             (a NaN sample is a gap). Sequences: T = 119 consecutive frames (60 s, Sec. 4) of one
             stretch of one subject, never across subjects or gaps, from the train + val subjects,
             in the recording's own order: pre-training reads no label. Frame labels: deviation 10.
  others     --order stored: the stored row order is time; validation (when the release has none)
             is the last --val-fraction of the rows as ONE block, and pre-training sees every
             training row in stored order (random validation rows would cut about a fifth of the
             adjacent pairs). --order class-runs (default for every set but SleepEEG, whose rows
             are independent windows with no time order): deviation 11. The probe uses the train /
             val / test splits; the test rows are never reordered (probe and scores ignore order).

Where we differ from the paper / official code:
  1. Negatives (Eq. 2 sums over one sequence; the code flattens the batch to one B*T sequence).
     --negatives batch (default): every instance of the batch is a negative, positives never
     cross sequences, and anchors need both neighbours in their own sequence (Fig. 2 skips t_1 and
     t_T). --negatives sequence: Eq. (2) literally. --negatives code: the official flattened batch
     (B - 1 positive pairs cross sequence boundaries).
  2. Eq. (1)-(2) write z_{k+1} in the first denominator sum; read as z_k (as the code does).
     Eq. (3) divides by NT; anchors exist only where both neighbours do, so it is a mean over
     those anchors (as the code). Positives are not in the denominator, so a loss can be < 0.
     The sums are taken in log space with self and positives masked, not subtracted as the code
     does: the same values, and finite in float32 down to tau = 0.01, where exp(1 / tau)
     overflows the code's plain sums.
  3. DynaCL-M weights: the code computes w * MSE + (1 - w) * contrastive with w = mse_lambda,
     which is what the tables used (Table 4's identical ECG rows need w = 1); Eq. (6) puts lambda
     on MP-Xent. App. C gives lambda = 1 (HARTH 1e-30): under Eq. (6) that is MP-Xent alone, in
     the code's convention MSE alone; neither matches the SleepEEG runs (w = 0.4). Here
     --mse-weight w, presets per dataset as the authors' runs: SleepEEG w = 0.4, mask 0.3; HARTH
     w = 1e-30, mask 1e-5; ECG w = 1, mask 0.3; other sets use SleepEEG's values.
  4. Pseudo-labels Y (Eq. 5): on the raw inputs of consecutive instances (the paper says
     sim(z); "precomputed" and the code use inputs). Y = 0 where cos >= threshold, else 1. The
     code's two in-place assignments turn every value into 1 (Y = 1 always); --pseudo-labels code
     reproduces that. The last instance of a sequence has no successor: Y = 1 ("otherwise").
     Both App. C values that act on inputs act on the z-scored features (deviation 8): the 0.4
     threshold on cosines of centred vectors (which can be negative; the authors' SleepEEG code
     had raw samples, their HARTH code HUNT4-scored ones), and masking sets a value to 0, i.e. to
     its feature's train mean, not to raw zero.
  5. The margin term as coded (Eq. 5 does not say how M_margin enters the loss): negatives'
     exp-terms become exp(gamma * g / tau), g = -(1 - Y) * s^2 / 2 + Y * max(0, m - s)^2 / 2,
     gamma = 0.05 (undocumented), the leading minus is not in Eq. (5), each sum uses the label
     Y of the instance whose row it sums (the code's column), and the positives are subtracted untransformed. With Y = 1 and
     s <= 1 < m, every negative term shrinks as s grows: collapse is a descent direction (Table
     4's "MP-Xent + margin" collapsed). Reproduced, not repaired. The log's argument can be
     <= 0 (NaN, in the code too) when a negative set has too few instances for tau, gamma and m
     (margin_min_members: 5 at the defaults, 86 at tau = 0.2); such runs are refused.
  6. MSE (Eq. 4) is a sum over F per instance; the code (and this file) takes the mean over all
     elements (F.mse_loss), 1/F of Eq. (4); the weights in deviation 3 were tuned with it. The
     projector P is a fresh nn.Linear(D, 32) every step, never trained (--projector redraw, the
     code); --projector frozen draws it once.
  7. Evaluation: the shared L-BFGS logistic-regression probe on 32-d instance embeddings (the
     paper: a linear layer, Adam, 50 epochs; no code was released), C chosen on a validation
     split from train, never on test (SleepEEG and --order stored: one contiguous block;
     recordings: whole subjects; class runs: data.py's stratified split of the windows). The probe uses at most --probe-rows
     (50,000) random fit rows and as many validation rows (SleepEEG has 237k fit rows; 50k fix
     33 x 5 weights as well, in minutes on a CPU). The paper's "F1" exceeds both precision and
     recall in 19 of Table 3's 24 rows (every HARTH and ECG row, 3 of the 8 SleepEEG rows); a
     macro F1 never can (each class's F1 <= (P + R) / 2), so it is support-weighted; we report
     accuracy, macro P / R / F1 and weighted F1. Clustering: final epoch, against true labels and
     against k-means labels (the code: k-means labels only, best of the epochs scored every 5; 10
     k-means restarts as its KMeans(n_init=10)). Picture: 2-D PCA, not
     t-SNE (no scikit-learn here). The code's ReduceLROnPlateau on the test-split loss is dropped.
  8. Train-only z-score per feature (the SleepEEG code has none; HARTH used HUNT4 statistics);
     for recordings, the statistics of every frame of the fit subjects, labelled or not. So
     DynaCL-M's mask (0 = the feature's training mean) and the 0.4 cosine threshold of the
     pseudo-labels act on z-scored inputs.
  9. Paper: 500 epochs; default here: 20 for SleepEEG (a CPU run in minutes, README), else
     enough epochs for 300 optimiser steps.
 10. Recordings (HARTH, AFDB, own files). Frame label: the class holding most of the frame's
     samples (ties: the lower class id), as the authors' HARTH code; a frame with ANY unlabelled
     sample (before AFDB's first rhythm note, a code outside the 12 HARTH activities, a user's -1
     or '') is unlabelled: pre-trained on (it is real time), left out of the probe and the
     clustering. The probe: AFDB without "N" (all other rhythms), as Table 3; clustering keeps
     all 4 rhythms (App. D). Sequences do not overlap (the authors' HARTH code starts one every 24
     frames, ~80% overlap): each frame is seen once per epoch, the budget is set in steps.
     Pre-training: train + val subjects (the paper's 80%); the probe fits on the train subjects,
     chooses C on the val subjects, tests on the test subjects. AFDB T = 119 (Sec. 4; App. D and
     the authors' later runs use 500: --seq-len 500).
 11. Class-run order (not in the paper; for sets of windows without a time order): real windows
     of the train split concatenated in runs of one class with geometric lengths (mean
     --run-mean): real signals, SIMULATED order. That order is built from the training labels:
     the ONE place pre-training reads labels. Every output says so (printed note, results.json
     label_free = False and label_note, the data note).

Run:  python dynacl.py --dataset SleepEEG
      python dynacl.py --dataset SleepEEG --variant dynacl-m
      python dynacl.py --dataset HARTH            (or AFDB: downloads from UCI / PhysioNet)
      python dynacl.py --dataset path/to/recording.npz   (signal (C, T), labels (T,), fs)
      python dynacl.py --dataset path/to/Gesture/train.pt --order class-runs
"""
from __future__ import annotations

import copy
import math
import time
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

import data
from common import (UserError, arg, cli, get_device, make_run_dir, plot_history, progress_line,
                    save_checkpoint, set_seed, setup_torch, write_results)

METHOD = "dynacl"
SLEEP_FEATURES = 178                                          # TF-C keeps 178 of the 200 samples
WIN_S, HOP_S = 1.0, 0.5                                       # HARTH / ECG frames: 1-s Hann window, 0.5-s hop (Sec. 4)
RECORDING_T = 119                                             # frames per sequence, 60 s (Sec. 4)
# DynaCL-M presets of the authors' runs (deviation 3): dataset -> (mse_weight w, mask fraction p)
PRESETS = {"SleepEEG": (0.4, 0.3), "HARTH": (1e-30, 1e-5), "AFDB": (1.0, 0.3)}
DEFAULT_PRESET = PRESETS["SleepEEG"]


# %% 1. Args ----------------------------------------------------------------------------------
@dataclass
class Args:
    """DynaCL / DynaCL-M pre-training + linear evaluation + clustering scores."""
    dataset: str = arg("SleepEEG", "dataset name (see data.py; HARTH, AFDB are recordings), a .npz/.pt/.ts "
                        "path, or a recording (.npz with signal, labels, fs; or .csv)")
    data_dir: str = arg("", "data root; '' = data.py default (env TS_DATA_DIR)")
    variant: str = arg("dynacl", "dynacl (MP-Xent, Eq. 3) | dynacl-m (Eq. 4-6)")
    mse: bool = arg(True, "dynacl-m: masking + MSE term (--no-mse = Table 4 row MP-Xent + margin)")
    margin_term: bool = arg(True, "dynacl-m: margin term (--no-margin-term = Table 4 row MP-Xent + MSE)")
    negatives: str = arg("batch", "batch | sequence (Eq. 2 literally) | code (flattened batch, deviation 1)")
    temperature: float = arg(0.5, "tau in Eq. (1)-(2), App. C")
    seq_len: int = arg(0, "T, instances per sequence; 0 = 300 for SleepEEG, 119 for recordings (Sec. 4), "
                       "else N_train // 16 in [3, 100]")
    order: str = arg("auto", "auto (stored for SleepEEG, a recording's own order, else class-runs) | stored | class-runs")
    run_mean: float = arg(20.0, "class-runs: mean run length (geometric)")
    widths: str = arg("128,64,32", "encoder widths (App. A); the last one is F")
    mse_weight: float = arg(-1.0, "w in w*MSE + (1-w)*contrastive (deviation 3); -1 = dataset preset")
    mask_fraction: float = arg(-1.0, "share of input values set to 0 (Sec. 3.3); -1 = dataset preset")
    margin: float = arg(5.0, "m in Eq. (5), App. C")
    threshold: float = arg(0.4, "pseudo-label threshold on cos(x_t, x_t+1) (Sec. 3.2, App. C)")
    margin_gamma: float = arg(0.05, "gamma scaling the margin terms (official code, deviation 5)")
    pseudo_labels: str = arg("fixed", "fixed | code (Y = 1 everywhere, the official bug)")
    projector: str = arg("redraw", "redraw (fresh random Linear every step, code) | frozen")
    epochs: int = arg(0, "pre-training epochs; 0 = 20 for SleepEEG, else 300 steps' worth (paper: 500)")
    batch_size: int = arg(8, "sequences per batch (App. C: 8); min(batch, sequences) is used")
    lr: float = arg(1e-3, "AdamW learning rate (Sec. 4)")
    weight_decay: float = arg(0.01, "AdamW weight decay (torch default, as the code runs)")
    test_fraction: float = arg(0.2, "SleepEEG: share of blocks, recordings: of subjects, held out for test (paper 80/20)")
    val_fraction: float = arg(0.2, "share of the train blocks / rows / subjects the probe uses to choose C")
    probe_rows: int = arg(50_000, "probe: at most this many random fit rows and val rows (0 = all)")
    cluster_per_class: int = arg(1000, "clustering subset: instances per class (App. D: 1000)")
    kmeans_restarts: int = arg(10, "k-means restarts (n_init)")
    random_init_eval: bool = arg(True, "also evaluate the untrained (initial) encoder")
    seed: int = arg(1, "random seed")
    threads: int = arg(0, "torch CPU threads; 0 = torch default")
    device: str = arg("auto", "auto | cpu | cuda | mps")
    out_dir: str = arg("runs", "where results.json and plots go")
    save_model: bool = arg(False, "save the encoder to encoder.pt")
    log: bool = arg(True, "print one progress line per epoch")


# %% 2. Data: instances, their order, sequences ------------------------------------------------
def label_runs(y: np.ndarray) -> np.ndarray:
    """Lengths of the runs of equal consecutive labels: [0, 0, 1, 0] -> [2, 1, 1]."""
    change = np.flatnonzero(np.diff(y) != 0) + 1              # first index of each new run
    edges = np.concatenate([[0], change, [len(y)]])
    return np.diff(edges)


def order_report(y: np.ndarray, seed: int = 0) -> dict:
    """Are rows in time order? Mean label-run length of the stored rows against a shuffled copy
    (runs by chance). Sleep stages last minutes, so time-ordered 2-s rows give long runs."""
    shuffled = np.random.default_rng(seed).permutation(y)
    stored, chance = label_runs(y).mean(), label_runs(shuffled).mean()
    return {"mean_run": float(stored), "mean_run_shuffled": float(chance),
            "ratio": float(stored / chance), "time_ordered": bool(stored > 2 * chance)}


def class_run_order(y: np.ndarray, run_mean: float, rng: np.random.Generator) -> np.ndarray:
    """A simulated stream: indices of y arranged in runs of one class, every index exactly once.

    Each run picks a class other than the previous one (uniformly among classes with windows
    left) and a geometric length, cut short when the class runs out. Class c's runs have mean
    run_mean * n_c / (N / K), so every class needs about the same number of runs and none is
    left over at the end to form one long run: the mean over all runs is run_mean (exactly the
    run_mean of each class when classes are balanced). Windows inside a class come in random order."""
    classes, counts = np.unique(y, return_counts=True)
    pools = {c: list(rng.permutation(np.flatnonzero(y == c))) for c in classes}
    mean_of = {c: max(1.0, run_mean * n * len(classes) / len(y)) for c, n in zip(classes, counts)}
    order, prev = [], None
    while pools:
        choices = [c for c in pools if c != prev] or list(pools)   # one class left: it continues
        c = choices[rng.integers(len(choices))]
        n = int(rng.geometric(1.0 / mean_of[c]))              # P(n) = (1 - p)^(n - 1) p, n >= 1
        order.extend(pools[c][:n])
        pools[c] = pools[c][n:]
        if not pools[c]:
            del pools[c]
        prev = c
    return np.asarray(order, dtype=np.int64)


def stft_features(x: torch.Tensor, fs: float, win_s: float = WIN_S, hop_s: float = HOP_S) -> torch.Tensor:
    """HARTH / ECG instances (Sec. 4): x (C, L) raw signal -> (frames, C * bins) STFT magnitude.
    Hann window of win_s seconds (n_fft = window), hop hop_s, no centring padding, no log; the
    bins of channel 0 come first. 3000 x 6 at 50 Hz -> (119, 156); 2 leads at 250 Hz -> 252."""
    n_fft, hop = int(round(win_s * fs)), int(round(hop_s * fs))
    spec = torch.stft(x, n_fft, hop_length=hop, win_length=n_fft, window=torch.hann_window(n_fft, device=x.device),
                      center=False, return_complex=True).abs()   # (C, n_fft // 2 + 1, frames)
    return spec.permute(2, 0, 1).reshape(spec.size(2), -1)    # (frames, C * bins), channel-major


def zscore_stats(parts: list) -> tuple[np.ndarray, np.ndarray]:
    """Per-feature mean and standard deviation over the rows of every (N_i, D) array in `parts`
    (float64 sums, NaN padding ignored); a constant feature gets sd 1, so it stays at 0."""
    n = np.maximum(sum((~np.isnan(p)).sum(0) for p in parts), 1)
    mu = sum(np.nansum(p, 0, dtype=np.float64) for p in parts) / n
    sd = np.sqrt(sum(np.nansum((p - mu) ** 2, 0) for p in parts) / n)
    return mu, np.where(sd > 1e-8, sd, 1.0)


def zscore(train: np.ndarray, *others: np.ndarray) -> list:
    """Per-feature z-score with train statistics only; NaN (padding) becomes 0, the mean."""
    mu, sd = zscore_stats([train])
    return [np.nan_to_num((a - mu) / sd).astype(np.float32) for a in (train,) + others]


def to_sequences(x: np.ndarray, T: int) -> np.ndarray:
    """Non-overlapping blocks of T consecutive instances; the tail is dropped. (N, D) -> (N // T, T, D)."""
    n = len(x) // T
    return x[:n * T].reshape(n, T, x.shape[-1])


def frame_labels(labels: np.ndarray, n_fft: int, hop: int, n_classes: int) -> np.ndarray:
    """Label of each STFT frame (deviation 10): the class holding most of the frame's n_fft samples
    (a tie goes to the lower class id), as the authors' HARTH code; -1 (unlabelled) when any
    sample of the frame is unlabelled. Frame i covers samples [i * hop, i * hop + n_fft), as in
    stft_features (no centring). labels (L,) in -1..K-1 -> (1 + (L - n_fft) // hop,)."""
    if len(labels) < n_fft:
        return np.zeros(0, dtype=np.int64)
    win = np.lib.stride_tricks.sliding_window_view(labels, n_fft)[::hop]   # (frames, n_fft), a view
    out = np.empty(len(win), dtype=np.int64)
    for a in range(0, len(win), 4096):                        # chunks bound the (rows, n_fft, K) booleans
        w = win[a:a + 4096]
        counts = (w[..., None] == np.arange(n_classes)).sum(1)   # (rows, K) samples of each class
        out[a:a + 4096] = np.where((w < 0).any(1), -1, counts.argmax(1))   # argmax: first (lowest) on ties
    return out


def frame_recording(signals: np.ndarray, labels: np.ndarray, fs: float, n_classes: int) -> list:
    """One recording (C, L) -> [(features (F, C * bins) float32, frame labels (F,))], one pair per
    stretch without missing samples: a NaN sample is a gap that no frame and no sequence spans."""
    n_fft, hop = int(round(WIN_S * fs)), int(round(HOP_S * fs))
    ok = np.isfinite(signals).all(0)                          # (L,) every channel observed
    edges = np.flatnonzero(np.diff(np.r_[0, ok.astype(np.int8), 0]))   # [start, end) of each stretch
    out = []
    for a, b in zip(edges[0::2], edges[1::2]):
        if b - a >= n_fft:
            x = stft_features(torch.from_numpy(np.ascontiguousarray(signals[:, a:b], dtype=np.float32)), fs)
            out.append((x.numpy(), frame_labels(labels[a:b], n_fft, hop, n_classes)))
    return out


def take_rows(parts: list, idx: np.ndarray) -> np.ndarray:
    """Rows idx (sorted) of the concatenation of `parts`, without building the concatenation."""
    offs = np.cumsum([0] + [len(p) for p in parts])
    return np.concatenate([p[idx[(idx >= lo) & (idx < hi)] - lo] for p, lo, hi in zip(parts, offs[:-1], offs[1:])])


def probe_rows(n: int, cap: int, rng: np.random.Generator) -> np.ndarray:
    """Deviation 7: at most `cap` of n rows for the probe, drawn at random, in stored order (0 = all)."""
    return np.sort(rng.permutation(n)[:cap]) if 0 < cap < n else np.arange(n)


@dataclass
class Streams:
    """Instances for pre-training (as sequences) and for the probe (rows), with how they were made."""
    seq_train: np.ndarray                                     # (S, T, D), pre-training sequences
    x_train: np.ndarray                                       # (N, D) probe fit rows (at most --probe-rows)
    y_train: np.ndarray
    x_val: np.ndarray                                         # probe validation rows (chooses C)
    y_val: np.ndarray
    x_test: np.ndarray                                        # every labelled test instance (clustering)
    y_test: np.ndarray
    probe_classes: np.ndarray                                 # the classes the probe sees (AFDB: not N)
    order: str                                                # stored | class-runs | recording
    note: str                                                 # printed and saved
    n_classes: int
    name: str
    label_free: bool = True                                   # pre-training read no label
    label_note: str = ""                                      # why not, when it did
    info: dict = field(default_factory=dict)                  # frames / subjects per split (recordings)


CLASS_RUN_LABEL_NOTE = ("pre-training read the training labels: the class-run order (deviation 11) arranges "
                        "real windows in runs of one class, a stream order built from labels; the one "
                        "declared exception to label-free pre-training")
PROBE_EXCLUDED = {"AFDB": ("N",)}                             # Table 3: the ECG probe leaves out "all other rhythms"


def default_seq_len(name: str, n_train: int) -> int:
    """T for sets of windows: SleepEEG 300 (Sec. 4), others N_train // 16 in [3, 100]. Recordings: RECORDING_T."""
    return 300 if name == "SleepEEG" else int(min(100, max(3, n_train // 16)))


def prepare(args: Args, seed: int) -> Streams:
    """Load the dataset and turn it into rows (instances) and sequences, as the header says."""
    if data.is_recordings(args.dataset):
        return prepare_recordings(args, seed)
    stored = args.order == "stored"                           # auto: stored for SleepEEG, its own path below
    ds = data.load_dataset(args.dataset, data_dir=args.data_dir or None,
                           val_fraction=0.0 if stored else args.val_fraction, seed=seed)
    if ds.task != "classification":
        raise UserError(f"{ds.name} is a regression set; DynaCL evaluates a classifier on labelled instances.")
    rng = np.random.default_rng(seed + 7)                     # class-run order
    order = args.order if args.order != "auto" else ("stored" if ds.name == "SleepEEG" else "class-runs")
    if ds.name == "SleepEEG":                                 # App. D: rows of train.pt only
        rows, y = ds.X_train[:, 0, :SLEEP_FEATURES], ds.y_train      # (N, 178)
        rep = order_report(y, seed)
        note = (f"SleepEEG row order: mean label run {rep['mean_run']:.1f} rows vs "
                f"{rep['mean_run_shuffled']:.2f} when shuffled ({rep['ratio']:.1f}x): rows "
                f"{'look time-ordered' if rep['time_ordered'] else 'do NOT look time-ordered; adjacent-is-positive is doubtful'}")
        T = args.seq_len or default_seq_len(ds.name, len(rows))
        n_blocks = len(rows) // T
        n_test = int(round(args.test_fraction * n_blocks))
        n_val = int(round(args.val_fraction * (n_blocks - n_test)))
        n_fit = n_blocks - n_test - n_val
        if n_fit < 1 or n_test < 1:
            raise UserError(f"SleepEEG: {len(rows)} rows make {n_blocks} blocks of T = {T}; need train and test blocks. Lower --seq-len.")
        cut = lambda a, b: slice(a * T, b * T)                # noqa: E731  blocks [a, b) as rows
        tr, va, te = cut(0, n_fit), cut(n_fit, n_fit + n_val), cut(n_fit + n_val, n_blocks)
        x_tr, x_va, x_te = zscore(rows[tr], rows[va], rows[te])
        y_tr, y_va, y_te = y[tr], y[va], y[te]
        stream = np.concatenate([x_tr, x_va])                 # the first 80% of blocks, in order
        if order == "class-runs":
            stream = stream[class_run_order(np.concatenate([y_tr, y_va]), args.run_mean, rng)]
        note += f"; blocks {n_fit} fit + {n_val} val | {n_test} test, T = {T}"
    else:
        flat = lambda X: X.reshape(len(X), -1)                # noqa: E731  (N, C, L) -> (N, C*L)
        X, y_tr, y_va, y_te = flat(ds.X_train), ds.y_train, ds.y_val, ds.y_test
        carve = stored and len(ds.X_val) == 0
        if carve:                                             # validation: ONE contiguous block at the end
            n_val = min(int(round(args.val_fraction * len(X))), len(X) - 1)   # (random rows would cut
            fit, val = slice(0, len(X) - n_val), slice(len(X) - n_val, len(X))  # ~val_fraction of the pairs)
            x_tr, x_va, x_te = zscore(X[fit], X[val], flat(ds.X_test))
            y_tr, y_va = ds.y_train[fit], ds.y_train[val]
            stream = np.concatenate([x_tr, x_va])             # every training row, in stored order
        else:
            x_tr, x_va, x_te = zscore(X, flat(ds.X_val), flat(ds.X_test))
            stream = x_tr
        T = args.seq_len or default_seq_len(ds.name, len(x_tr))
        if order == "class-runs":
            idx = class_run_order(y_tr, args.run_mean, rng)
            x_tr, y_tr = x_tr[idx], y_tr[idx]                 # the probe does not care; kept aligned
            stream = x_tr
            runs = label_runs(y_tr)
            note = (f"{ds.name}: real windows in a SIMULATED order (class runs, mean {runs.mean():.1f} "
                    f"windows, asked {args.run_mean:g}); each window = one instance of {x_tr.shape[1]} features")
        else:
            rep = order_report(y_tr, seed)
            note = (f"{ds.name}: stored row order taken as time (mean label run {rep['mean_run']:.1f} vs "
                    f"{rep['mean_run_shuffled']:.2f} shuffled); validation "
                    + (f"= the last {len(x_va)} rows (one block)" if carve else "= the release's own split"))
        note += f", T = {T}"
    if order == "class-runs":                                 # test rows stay as stored: probe and scores are order-free
        note += f" | {CLASS_RUN_LABEL_NOTE}"
    if T < 3:
        raise UserError(f"--seq-len {T}: MP-Xent needs T >= 3 (an anchor and both neighbours).")
    seqs = to_sequences(stream, T)
    if len(seqs) == 0:
        raise UserError(f"{ds.name}: {len(stream)} training instances make no sequence of T = {T}; lower --seq-len.")
    cap = np.random.default_rng(seed + 11)                    # probe rows: train / val only, never test
    fit_rows, val_rows = probe_rows(len(x_tr), args.probe_rows, cap), probe_rows(len(x_va), args.probe_rows, cap)
    return Streams(seqs, x_tr[fit_rows], y_tr[fit_rows], x_va[val_rows], y_va[val_rows], x_te, y_te,
                   np.arange(ds.n_classes), order, note, ds.n_classes, ds.name,
                   label_free=order != "class-runs", label_note=CLASS_RUN_LABEL_NOTE if order == "class-runs" else "")


def prepare_recordings(args: Args, seed: int) -> Streams:
    """HARTH, AFDB or a user's recording (Sec. 4, deviation 10): each subject's recording becomes
    STFT frames, stretch by stretch (gaps split a recording); sequences are T consecutive frames of
    one stretch of one subject; splits by subject (data.load_recordings). Pre-training reads no
    label: the order is the recording's own."""
    if args.order == "class-runs":
        raise UserError("--order class-runs simulates a time order for sets of windows; a recording has "
                        "its own. Use --order auto (or stored).")
    rec = data.load_recordings(args.dataset, data_dir=args.data_dir or None, test_fraction=args.test_fraction,
                               val_fraction=args.val_fraction, seed=seed)
    name, classes, K = rec.name, list(rec.class_names), len(rec.class_names)
    pieces = {}                                               # split -> [(subject, frames (F, D), labels (F,))]
    for split, recs in (("fit", rec.train), ("val", rec.val), ("test", rec.test)):
        pieces[split] = [(r.subject, x, y) for r in recs for x, y in frame_recording(r.signals, r.labels, rec.fs, K)]
    fs, n_ch, split_by = rec.fs, len(rec.channel_names), rec.split
    del rec                                                   # the raw signals are no longer needed
    if not pieces["fit"] or not pieces["test"]:
        raise UserError(f"{name}: no {'training' if not pieces['fit'] else 'test'} frames: every recording needs "
                        f"at least {WIN_S:g} s of samples without a gap (NaN)")
    mu, sd = zscore_stats([x for _, x, _ in pieces["fit"]])   # every fit frame, labelled or not (label-free)
    mu, sd = mu.astype(np.float32), sd.astype(np.float32)
    for x in (x for v in pieces.values() for _, x, _ in v):
        x -= mu                                               # in place: the full AFDB is 1.7 GB of frames
        x /= sd
    T = args.seq_len or RECORDING_T
    if T < 3:
        raise UserError(f"--seq-len {T}: MP-Xent needs T >= 3 (an anchor and both neighbours).")
    parts = [to_sequences(x, T) for s in ("fit", "val") for _, x, _ in pieces[s]]   # never across stretches
    seqs = np.concatenate(parts)
    if len(seqs) == 0:
        longest = max(len(x) for s in ("fit", "val") for _, x, _ in pieces[s])
        raise UserError(f"{name}: the longest training stretch has {longest} frames, fewer than T = {T} "
                        f"({T / 2:g} s); lower --seq-len")
    del parts
    probe = np.array([c for c in range(K) if classes[c] not in PROBE_EXCLUDED.get(name, ())], dtype=np.int64)
    cap = np.random.default_rng(seed + 11)

    def rows(split, keep_classes, capped):
        xs, ys = [x for _, x, _ in pieces[split]], [y for _, _, y in pieces[split]]
        y = np.concatenate(ys) if ys else np.zeros(0, np.int64)
        idx = np.flatnonzero(np.isin(y, keep_classes))        # labelled frames (unlabelled = -1 never kept)
        idx = idx[probe_rows(len(idx), args.probe_rows, cap)] if capped else idx
        return (take_rows(xs, idx) if len(idx) else np.zeros((0, seqs.shape[-1]), np.float32)), y[idx]

    x_tr, y_tr = rows("fit", probe, True)
    x_va, y_va = rows("val", probe, True)
    x_te, y_te = rows("test", np.arange(K), False)            # every labelled test frame (clustering)
    if len(np.unique(y_tr)) < 2 or not np.isin(y_te, probe).any():
        raise UserError(f"{name}: the probe needs labelled frames of two classes in training and one in test; "
                        f"found classes {sorted(set(y_tr.tolist()))} in training, {sorted(set(y_te.tolist()))} in test")
    count = lambda s: int(sum(len(x) for _, x, _ in pieces[s]))   # noqa: E731
    labelled = lambda s: int(sum((y >= 0).sum() for _, _, y in pieces[s]))   # noqa: E731
    info = {"fs": fs, "channels": n_ch, "features": int(seqs.shape[-1]), "split_by": split_by, "seq_len": T,
            "sequences": int(len(seqs)), "subjects": {s: sorted({p[0] for p in v}) for s, v in pieces.items()},
            "stretches": {s: len(v) for s, v in pieces.items()}, "frames": {s: count(s) for s in pieces},
            "labelled_frames": {s: labelled(s) for s in pieces},
            "probe_classes": [classes[c] for c in probe], "class_names": classes}
    sub = info["subjects"]
    note = (f"{name}: {n_ch} channels at {fs:g} Hz -> STFT frames of {info['features']} features (1-s Hann, 0.5-s hop); "
            f"{'subjects' if split_by == 'subject' else 'one subject split in time:'} {len(sub['fit'])} fit + "
            f"{len(sub['val'])} val | {len(sub['test'])} test; frames {info['frames']['fit']} + {info['frames']['val']} | "
            f"{info['frames']['test']}; {len(seqs)} sequence{'s' * (len(seqs) > 1)} of T = {T} consecutive frames inside one recording "
            f"(train + val subjects, the recording's own order, no label read); frame label = majority of its "
            f"samples, frames with an unlabelled sample are pre-trained on, not probed "
            f"({sum(info['frames'][s] - info['labelled_frames'][s] for s in pieces)} frames)")
    if len(probe) < K:
        note += f"; probe classes {', '.join(info['probe_classes'])} (Table 3 leaves out {', '.join(PROBE_EXCLUDED[name])})"
    return Streams(seqs, x_tr, y_tr, x_va, y_va, x_te, y_te, probe, "recording", note, K, name, info=info)


# %% 3. Augmentations (DynaCL-M only, Sec. 3.3) ------------------------------------------------
def mask_input(x: torch.Tensor, fraction: float) -> torch.Tensor:
    """x^m: each input value independently set to 0 with probability `fraction` (the code:
    mask = rand < p; torch.where(mask, 0, x)). x (B, T, D) -> (B, T, D)."""
    keep = torch.rand(x.shape, device=x.device) >= fraction
    return x * keep


# %% 4. Encoder (App. A, Sec. 3.3) --------------------------------------------------------------
class Encoder(nn.Module):
    """E_theta: (B, T, D) -> (B, T, F). Three blocks Conv1d(kernel 1) -> BatchNorm -> ReLU with
    widths 128, 64, 32: the same small MLP on every instance, BatchNorm statistics over all B*T
    instances in training. No projection head; the final ReLU makes z >= 0 (cosines in [0, 1])."""

    def __init__(self, input_dims: int, widths=(128, 64, 32)):
        super().__init__()
        layers, c_in = [], input_dims
        for c_out in widths:
            layers += [nn.Conv1d(c_in, c_out, kernel_size=1), nn.BatchNorm1d(c_out), nn.ReLU()]
            c_in = c_out
        self.net = nn.Sequential(*layers)

    def forward(self, x):                                     # x (B, T, D)
        return self.net(x.transpose(1, 2)).transpose(1, 2)    # (B, T, F)


class Projector(nn.Linear):
    """P_phi (DynaCL-M): a random Linear(D, F) giving the MSE target z_bar = P(x) (Eq. 4). Never
    trained. The official code builds a fresh one (default init, with bias) at every step."""

    def __init__(self, input_dims: int, output_dims: int):
        super().__init__(input_dims, output_dims)
        self.requires_grad_(False)

    def redraw(self) -> None:
        self.reset_parameters()                               # torch's default Linear init


# %% 5. Losses: Eq. (1)-(6) ---------------------------------------------------------------------
# Notation: u = z / |z|, s_ab = u_a . u_b (cosine), e_ab = exp(s_ab / tau). An anchor t has its
# positives t - 1 and t + 1 in its own sequence. All other instances of the negative set are
# negatives: the batch (default), its sequence (Eq. 2 literally), or the flattened batch (code).
# Every sum of exp-terms is taken in log space (log sum_k exp(a_k) = m + log sum_k exp(a_k - m),
# with m the row max wherever the terms could leave float32's range), and the terms a sum leaves
# out (self, positives) are masked before summing, never subtracted after: in float32 "full row
# minus self" cancels once exp(1 / tau) dwarfs the rest of the row (NaN at tau = 0.05 on small
# batches; tests/test_dynacl.py::test_mp_xent_float32_is_finite_at_small_tau).

def _check(z: torch.Tensor, negatives: str, need: int) -> torch.Tensor:
    if negatives not in ("batch", "sequence", "code"):
        raise ValueError(f"negatives must be batch, sequence or code, got {negatives!r}")
    if negatives == "code":                                   # deviation 1: one B*T sequence
        z = z.reshape(1, -1, z.size(-1))
    if z.size(1) < need:
        raise ValueError(f"sequences of length {z.size(1)} have no anchor (need T >= {need})")
    return z


def _members(u: torch.Tensor, negatives: str):
    """The negative sets as groups: u (B, T, F) -> g (G, N, F), and r, the rows a of g whose next
    row a + 1 is the next step of the same sequence (the pairs t, t + 1). sequence: G = B groups
    of N = T; batch (and code, already one sequence of B*T): one group of N = B*T."""
    B, T, Fd = u.shape
    if negatives == "sequence":
        return u, torch.arange(T - 1, device=u.device)
    r = torch.arange(B * T - 1, device=u.device)
    return u.reshape(1, B * T, Fd), r[r % T != T - 1]         # no pair across a sequence boundary


def masked_logsumexp(u: torch.Tensor, log_term, negatives: str, drop_positives: bool) -> torch.Tensor:
    """log sum_k exp(log_term(s_tk)) over the negative set of each instance t, k != t, and also
    k not in {t - 1, t + 1} (t's positives) when drop_positives. u (B, T, F) unit vectors;
    log_term maps the similarity matrix (G, N, N) element by element, row = t. Excluded terms are
    -inf; torch.logsumexp subtracts each row's max and adds it back. A row with no term gives -inf.
    Returns (B, T)."""
    B, T, _ = u.shape
    g, r = _members(u, negatives)
    a = log_term(g @ g.transpose(1, 2))                       # (G, N, N): log of each term
    out = torch.eye(g.size(1), dtype=torch.bool, device=u.device)   # 1[k != t]: self excluded
    if drop_positives:
        out[r, r + 1] = True                                  # 1[k != t + 1]
        out[r + 1, r] = True                                  # 1[k != t - 1]
    return torch.logsumexp(a.masked_fill(out, -math.inf), dim=-1).reshape(B, T)


class _NegativeLogSumExp(torch.autograd.Function):
    """FASTER EQUIVALENT of masked_logsumexp(u, lambda s: s / tau, negatives, True), MP-Xent's
    negatives, for unit vectors g = u in group layout (G, N, F) -> (G, N). The same values and
    gradients (tests/test_dynacl.py::test_log_negative_sums_equal_the_masked_logsumexp), computed
    in place on one (N, N) matrix, with the backward written out: with p_tk = exp(s_tk / tau - m_t)
    (0 where masked), P_t = sum_k p_tk and w_t = dL/dlse_t / P_t, dL/dg_j = (w_j sum_k p_jk g_k +
    sum_t p_tj w_t g_t) / tau, so only p is kept. For tau >= 1/40 every term lies in [e^-40, e^40]
    (|s| <= 1), safely inside float32, so no max is needed (m = 0): p is then symmetric and the
    backward is ONE product p @ [g, w g]; below 1/40 each row's max m_t is subtracted and the
    backward takes two. A SleepEEG batch makes N = 2400: this matrix is most of a DynaCL step."""

    @staticmethod
    def forward(ctx, g, tau, r):
        a = (g / tau) @ g.transpose(1, 2)                     # (G, N, N): s_tk / tau
        a.diagonal(dim1=1, dim2=2).fill_(-math.inf)           # k != t
        a[:, r, r + 1] = -math.inf                            # k != t + 1
        a[:, r + 1, r] = -math.inf                            # k != t - 1
        ctx.symmetric = tau >= 1 / 40
        m = None if ctx.symmetric else a.amax(-1, keepdim=True).nan_to_num(neginf=0.0)   # (G, N, 1) row max
        p = a.exp_() if ctx.symmetric else a.sub_(m).exp_()   # p_tk = exp(s_tk / tau - m_t), in place
        total = p.sum(-1)                                     # (G, N): P_t; 0 for a row with no term
        ctx.tau = tau
        ctx.save_for_backward(p, total, g)
        lse = torch.log(total)
        return lse if ctx.symmetric else lse + m[..., 0]      # the max added back

    @staticmethod
    def backward(ctx, grad):                                  # grad (G, N) = dL / dlse
        p, total, g = ctx.saved_tensors
        w = torch.where(total > 0, grad / total, torch.zeros_like(total))[..., None]   # (G, N, 1)
        if ctx.symmetric:                                     # p^T = p: one pass over p
            pg, pwg = (p @ torch.cat([g, w * g], dim=-1)).split(g.size(-1), dim=-1)
        else:
            pg, pwg = p @ g, p.transpose(1, 2) @ (w * g)
        return (w * pg + pwg) / ctx.tau, None, None


def log_negative_sums(u: torch.Tensor, tau: float, negatives: str) -> torch.Tensor:
    """log sum_{k not in {t-1, t, t+1}} e_t,k, the negatives of each instance t (B, T)."""
    B, T, _ = u.shape
    g, r = _members(u, negatives)
    return _NegativeLogSumExp.apply(g, tau, r).reshape(B, T)


def mp_xent(z: torch.Tensor, tau: float = 0.5, negatives: str = "batch", positives: int = 2) -> torch.Tensor:
    """MP-Xent, Eq. (2)-(3) (positives=2), or the single-positive NT-Xent of Eq. (1) (positives=1).

    z (B, T, F). Eq. (2), anchor t (1 <= t <= T-2, both neighbours in its sequence):
      l_t = -log (e_t,t-1 + e_t,t+1) / (sum_{k not in {t-1, t, t+1}} e_t,k + sum_{l not in {t-1, t}} e_t-1,l)
    the second sum is the LEFT NEIGHBOUR's row, as written (and coded). Eq. (1), anchor t <= T-2:
      l_t = -log e_t,t+1 / sum_{k not in {t, t+1}} e_t,k.
    Returns the mean over anchors (Eq. 3, deviation 2). All in log space (see the section note)."""
    z = _check(z, negatives, need=positives + 1)
    u = F.normalize(z, dim=-1)                                # (B, T, F)
    neg = log_negative_sums(u, tau, negatives)                # (B, T): log sum_{k not in {t-1, t, t+1}} e_t,k
    adj = (u[:, 1:] * u[:, :-1]).sum(-1) / tau                # (B, T-1): log e_t,t+1 within a sequence
    # log sum_{k not in {t, t+1}} e_t,k: the negatives plus the left positive e_t,t-1 (for t >= 1)
    no_right = torch.cat([neg[:, :1], torch.logaddexp(neg[:, 1:], adj)], dim=1)   # (B, T)
    if positives == 1:                                        # Eq. (1), anchors t = 0..T-2
        log_num, log_den = adj, no_right[:, :-1]
    else:                                                     # Eq. (2), anchors t = 1..T-2
        log_num = torch.logaddexp(adj[:, :-1], adj[:, 1:])    # log(e_t,t-1 + e_t,t+1)
        log_den = torch.logaddexp(neg[:, 1:-1], no_right[:, :-2])   # t's negatives + row t-1 without {t-1, t}
    return (log_den - log_num).mean()                         # Eq. (3): mean of -log(num / den)


def pseudo_labels(x: torch.Tensor, threshold: float = 0.4, mode: str = "fixed") -> torch.Tensor:
    """Y (Sec. 3.2) from consecutive raw inputs x (B, T, D) -> (B, T) float in {0, 1}.
    fixed: Y_t = 0 where cos(x_t, x_t+1) >= threshold, else 1; the last step of a sequence has no
    successor and gets 1 (deviation 4). code: the official function on the flattened batch (the
    last step wraps to the first), with its two in-place assignments: values >= thr become 0,
    then values <= thr (the fresh zeros too) become 1, so Y = 1 everywhere."""
    if mode == "code":
        flat = F.normalize(x.reshape(-1, x.size(-1)), dim=-1)  # (BT, D)
        sim = (flat * torch.roll(flat, -1, dims=0)).sum(-1)   # cos(x_k, x_k+1), wrapping
        sim[sim >= threshold] = 0
        sim[sim <= threshold] = 1                             # the bug: also catches the zeros
        return sim.reshape(x.shape[:2])
    u = F.normalize(x, dim=-1)
    cos = (u[:, :-1] * u[:, 1:]).sum(-1)                      # (B, T-1)
    y = (cos < threshold).to(x.dtype)                         # 0 exactly where cos >= threshold
    return torch.cat([y, torch.ones_like(y[:, :1])], dim=1)   # (B, T)


def m_margin(s: torch.Tensor, y: torch.Tensor, margin: float, scale: float = 1.0) -> torch.Tensor:
    """M_margin of Eq. (5) as coded, times scale: scale * g, g = -(1 - Y) s^2 / 2 + Y max(0, m - s)^2 / 2
    (the leading minus is the code's, deviation 5). s similarities, Y pseudo-labels broadcast
    against s (per row: (G, N, 1)), m the margin. scale goes into the per-row factors Y / 2 and
    (1 - Y) / 2, so a large s is passed over fewer times."""
    return (y * (0.5 * scale)) * torch.clamp(margin - s, min=0) ** 2 - ((1 - y) * (0.5 * scale)) * s ** 2


def margin_min_members(tau: float, margin: float = 5.0, gamma: float = 0.05,
                       pseudo_labels: str = "fixed") -> int:
    """Smallest negative set (N instances: T with negatives="sequence", else B*T) for which
    margin_mp_xent's log has a positive argument for every input. That argument,
    sum_{k != t} x_t,k + sum_{l != t-1} x_t-1,l - e_t,t-1, has 2 (N - 1) x-terms, each at least
    x_min = exp(gamma * min g / tau) (g at s in {-1, 0, 1}, where its extremes lie; Y = 0 only in
    "fixed" mode), and e_t,t-1 <= exp(1 / tau). A collapsed embedding (every s = 1, Y = 0) reaches
    the bound, and this loss drives towards collapse (deviation 5), so below it training can hit
    the log of a negative number. The defaults need N >= 5."""
    s = torch.tensor([-1.0, 0.0, 1.0], dtype=torch.float64)
    labels = (0.0, 1.0) if pseudo_labels == "fixed" else (1.0,)
    log_x_min = min(m_margin(s, torch.tensor(y, dtype=torch.float64), margin, gamma / tau).min().item()
                    for y in labels)
    gap = min(1 / tau - log_x_min, 700.0)                     # log(e_max / x_min), capped: no overflow
    return math.floor(1 + math.exp(gap) / 2) + 1              # least N with 2 (N - 1) x_min > e^(1/tau)


def check_margin_members(n: int, args) -> None:
    """UserError when a DynaCL-M run with the margin term has negative sets of n instances, fewer
    than margin_min_members: its loss could reach the log of a number <= 0 (NaN)."""
    if args.variant != "dynacl-m" or not args.margin_term:
        return
    need = margin_min_members(args.temperature, args.margin, args.margin_gamma, args.pseudo_labels)
    if n < need:
        raise UserError(f"the margin term (Eq. 5 as coded, deviation 5) can take the log of 0 or less with {n} "
                        f"instances per negative set at --temperature {args.temperature:g} --margin {args.margin:g} "
                        f"--margin-gamma {args.margin_gamma:g}; it needs at least {need:,}: use a longer --seq-len, "
                        f"a larger --batch-size with --negatives batch, a higher --temperature, or --no-margin-term")


def margin_mp_xent(z: torch.Tensor, y: torch.Tensor, tau: float = 0.5, margin: float = 5.0,
                   gamma: float = 0.05, negatives: str = "batch") -> torch.Tensor:
    """MP-Xent with the margin of Eq. (5), as the official LS_MARGIN_LOSS computes it (deviation 5).

    g_ab = m_margin(s_ab, Y_a), x_ab = exp(gamma g_ab / tau). Y_a is the label of the
    ANCHOR-side instance a: the code sums the columns l of its matrix and broadcasts Y along them,
    so every term of column l has Y_l. Anchor t: num = e_t,t-1 + e_t,t+1 (plain), and
      l_t = -log num / (sum_{k != t} x_tk + sum_{l != t-1} x_t-1,l - e_t,t-1)
    i.e. the code's den + num, with den subtracting the positives' untransformed e-terms. That
    argument can be <= 0, and the loss NaN, as in the official code: with fewer than
    margin_min_members(...) instances per negative set (5 at the defaults), which main refuses.
    In log space: log(X - e) = log X + log(1 - e / X), with 1 - e / X = -expm1(log e - log X)."""
    z = _check(z, negatives, need=3)
    u = F.normalize(z, dim=-1)                                # (B, T, F)
    y_rows = y.reshape(-1).to(u.dtype)                        # Y of every instance, in z's row order

    def log_x(s):                                             # log x_ab = gamma g_ab / tau for s (G, N, N), row a
        ya = y_rows.reshape(s.shape[:2])[..., None]           # (G, N, 1): Y of the anchor-side a
        return m_margin(s, ya, margin, gamma / tau)

    rows = masked_logsumexp(u, log_x, negatives, drop_positives=False)   # (B, T): log sum_{k != t} x_t,k
    adj = (u[:, 1:] * u[:, :-1]).sum(-1) / tau                # (B, T-1): log e_t,t+1
    left, right = adj[:, :-1], adj[:, 1:]                     # anchors t = 1..T-2
    log_num = torch.logaddexp(left, right)                    # log(e_t,t-1 + e_t,t+1)
    log_x_sum = torch.logaddexp(rows[:, 1:-1], rows[:, :-2])  # log X: the anchor's row + row t-1
    log_total = log_x_sum + torch.log(-torch.expm1(left - log_x_sum))   # log(X - e_t,t-1): code's den + num
    return (log_total - log_num).mean()


def mse_loss(z: torch.Tensor, z_bar: torch.Tensor) -> torch.Tensor:
    """Eq. (4) as coded: mean over all B*T*F elements of (z - z_bar)^2 (1/F of Eq. 4, deviation 6)."""
    return ((z - z_bar) ** 2).mean()


def training_loss(net: Encoder, x: torch.Tensor, args: Args, projector: Projector | None,
                  mse_weight: float, mask_fraction: float):
    """The loss of one batch x (B, T, D), Alg. 1. Returns (loss, {term: float})."""
    if args.variant == "dynacl":                              # Eq. (3) alone
        loss = mp_xent(net(x), args.temperature, args.negatives)
        return loss, {"mp_xent": loss.item()}
    use_mse = args.mse
    z = net(mask_input(x, mask_fraction) if use_mse else x)   # Alg. 1 lines 5-6: encode x^m
    terms = {}
    if args.margin_term:                                      # Alg. 1 line 8: MP-Xent with margin
        y = pseudo_labels(x, args.threshold, args.pseudo_labels)
        contrastive = margin_mp_xent(z, y, args.temperature, args.margin, args.margin_gamma, args.negatives)
        terms["margin_mp_xent"] = contrastive.item()
    else:
        contrastive = mp_xent(z, args.temperature, args.negatives)
        terms["mp_xent"] = contrastive.item()
    if not use_mse:                                           # Table 4: MP-Xent + margin
        return contrastive, terms
    if args.projector == "redraw":
        projector.redraw()
    with torch.no_grad():
        z_bar = projector(x)                                  # Alg. 1 line 10: project unmasked x
    mse = mse_loss(z, z_bar)                                  # Eq. (4)
    terms["mse"] = mse.item()
    return mse_weight * mse + (1 - mse_weight) * contrastive, terms   # Eq. (6), code convention


# %% 6. Pre-training (Alg. 1) --------------------------------------------------------------------
def parse_widths(widths: str) -> tuple:
    try:
        w = tuple(int(v) for v in widths.split(","))
    except ValueError:
        w = ()
    if not w or min(w) < 1:
        raise UserError(f"--widths {widths!r}: give positive integers like 128,64,32")
    return w


def default_epochs(name: str, steps_per_epoch: int) -> int:
    return 20 if name == "SleepEEG" else max(1, math.ceil(300 / steps_per_epoch))


def pretrain(seqs: np.ndarray, args: Args, device, name: str = "", log=print, callback=None):
    """AdamW on batches of sequences (shuffled each epoch, drop_last). seqs (S, T, D).
    Returns (encoder, initial encoder, history, stats).
    callback(step, encoder), if given, is called before the first update (step 0) and after every
    optimiser step, with the encoder as main would evaluate it at that point; it must not
    change the model or draw from the global random streams (learning curves, benchmarks/).
    """
    widths = parse_widths(args.widths)
    net = Encoder(seqs.shape[-1], widths).to(device)
    init_net = copy.deepcopy(net)                             # the random-init baseline
    opt = torch.optim.AdamW(net.parameters(), lr=args.lr, weight_decay=args.weight_decay)
    w_preset, p_preset = PRESETS.get(name, DEFAULT_PRESET)
    mse_weight = w_preset if args.mse_weight < 0 else args.mse_weight
    mask_fraction = p_preset if args.mask_fraction < 0 else args.mask_fraction
    projector = Projector(seqs.shape[-1], widths[-1]).to(device) if args.variant == "dynacl-m" else None
    rng = np.random.default_rng(args.seed)                    # batch order
    S, T = seqs.shape[:2]
    bs = min(args.batch_size, S)
    check_margin_members(T if args.negatives == "sequence" else bs * T, args)   # Eq. (5)'s log defined
    per_epoch = S // bs                                       # drop_last, as the code
    epochs = args.epochs or default_epochs(name, per_epoch)
    xt = torch.from_numpy(seqs).to(device)                    # (S, T, D)
    history, epoch_times = [], []
    t_start, cpu_start = time.perf_counter(), time.process_time()
    if callback is not None:
        callback(0, net)
    for epoch in range(epochs):
        t_epoch, losses, terms = time.perf_counter(), [], {}
        perm = torch.from_numpy(rng.permutation(S)).to(device)
        for b in range(per_epoch):
            loss, parts = training_loss(net, xt[perm[b * bs:(b + 1) * bs]], args, projector,
                                        mse_weight, mask_fraction)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            if callback is not None:
                callback(epoch * per_epoch + b + 1, net)
            losses.append(loss.item())
            for k, v in parts.items():
                terms.setdefault(k, []).append(v)
        epoch_times.append(time.perf_counter() - t_epoch)
        rec = {"epoch": epoch + 1, "loss": float(np.mean(losses)),
               "loss_terms": {k: float(np.mean(v)) for k, v in terms.items()} if len(terms) > 1 else {}}
        history.append(rec)
        if args.log:
            log(progress_line(epoch + 1, epochs, rec["loss"], rec["loss_terms"], per_epoch * bs * T,
                              epoch_times[-1], time.perf_counter() - t_start).replace("samples/s", "instances/s"))
    train_time = time.perf_counter() - t_start
    stats = {"train_time_s": train_time, "train_cpu_s": time.process_time() - cpu_start,
             "epochs": epochs, "steps": epochs * per_epoch, "steps_per_epoch": per_epoch,
             "batch_size": bs, "seq_len": T, "epoch_times_s": epoch_times,
             "instances_per_s": epochs * per_epoch * bs * T / max(train_time, 1e-9),
             "mse_weight": mse_weight if projector is not None and args.mse else None,
             "mask_fraction": mask_fraction if projector is not None and args.mse else None}
    return net, init_net, history, stats


@torch.no_grad()
def embed(net: nn.Module, x: np.ndarray, batch_size: int = 65536, device="cpu") -> torch.Tensor:
    """Instance embeddings, eval mode (BatchNorm running statistics): with kernel 1 every instance
    is encoded on its own, so order and sequence do not matter. x (N, D) -> (N, F)."""
    was_training = net.training
    net.eval()
    out = [net(torch.from_numpy(x[i:i + batch_size])[None].to(device))[0].cpu()
           for i in range(0, len(x), batch_size)]
    net.train(was_training)
    if not out:                                               # empty split: (0, F)
        return net(torch.zeros(1, 1, x.shape[-1], device=device))[0, :0].cpu()
    return torch.cat(out)


# %% 7. Linear eval ------------------------------------------------------------------------------
# SHARED PROTOCOL: keep identical across method files
def linear_eval(z_train, y_train, z_val, y_val, z_test, y_test,
                c_grid=(0.01, 0.1, 1.0, 10.0, 100.0), max_iter: int = 1000) -> dict:
    """Linear probe on frozen representations (N, D): standardise with the fit set's statistics,
    multinomial logistic regression (mean cross-entropy + ||W||^2 / (2 C N), bias unpenalised,
    sklearn's LogisticRegression(C) objective) in float64 with full-batch L-BFGS. C is chosen on
    the validation split (accuracy, ties broken by validation cross-entropy), never on test, then
    the probe is refit on train + val (an empty val split means C = 1). Inputs: torch tensors or
    numpy arrays; labels in 0..K-1. Returns test accuracy, macro-F1 (over the labels present in
    truth or prediction, as sklearn), the chosen C, its validation accuracy, and the test
    predictions (numpy, for further per-class scores)."""
    def as64(a):
        return torch.as_tensor(a).detach().cpu().to(torch.float64)

    def as_long(a):
        return torch.as_tensor(a).detach().cpu().long()

    ztr, zva, zte = as64(z_train), as64(z_val), as64(z_test)
    ytr, yva, yte = as_long(y_train), as_long(y_val), as_long(y_test)
    n_classes = int(max(ytr.max(), yte.max(), yva.max() if len(yva) else 0)) + 1

    def fit(z, y, C):
        mu, sd = z.mean(0), z.std(0, unbiased=False)
        sd = torch.where(sd > 1e-12, sd, torch.ones_like(sd))  # constant features stay at 0
        zs = (z - mu) / sd
        W = torch.zeros(z.size(1), n_classes, dtype=torch.float64, requires_grad=True)
        b = torch.zeros(n_classes, dtype=torch.float64, requires_grad=True)
        opt = torch.optim.LBFGS([W, b], lr=1, max_iter=max_iter, tolerance_grad=1e-9,
                                tolerance_change=1e-12, history_size=20, line_search_fn="strong_wolfe")

        def closure():
            opt.zero_grad()
            loss = F.cross_entropy(zs @ W + b, y) + (W ** 2).sum() / (2 * C * len(y))
            loss.backward()
            return loss

        opt.step(closure)
        return lambda znew: ((znew - mu) / sd) @ W.detach() + b.detach()   # logits

    best_key, best_c = None, 1.0
    if len(yva):
        for C in c_grid:
            logits = fit(ztr, ytr, C)(zva)
            key = ((logits.argmax(1) == yva).double().mean().item(), -F.cross_entropy(logits, yva).item())
            if best_key is None or key > best_key:
                best_key, best_c = key, C
    pred = fit(torch.cat([ztr, zva]), torch.cat([ytr, yva]), best_c)(zte).argmax(1)
    f1s = []
    for c in torch.unique(torch.cat([yte, pred])):            # labels in truth or prediction
        tp = ((pred == c) & (yte == c)).sum().item()
        fp = ((pred == c) & (yte != c)).sum().item()
        fn = ((pred != c) & (yte == c)).sum().item()
        f1s.append(2 * tp / (2 * tp + fp + fn))
    return {"accuracy": (pred == yte).double().mean().item(), "macro_f1": float(np.mean(f1s)),
            "C": best_c, "val_accuracy": best_key[0] if best_key else None, "pred": pred.numpy()}


# %% 8. main: Table 3 metrics, Table 2 clustering, Fig. 3 picture ------------------------------
def classification_scores(y_true, y_pred) -> dict:
    """Accuracy, macro precision / recall / F1 (over the classes present in truth or prediction)
    and support-weighted F1 (what the paper's Table 3 "F1" must be, deviation 7)."""
    y_true, y_pred = torch.as_tensor(y_true).long(), torch.as_tensor(y_pred).long()
    P, R, F1, support = [], [], [], []
    for c in torch.unique(torch.cat([y_true, y_pred])):
        tp = ((y_pred == c) & (y_true == c)).sum().item()
        n_pred, n_true = (y_pred == c).sum().item(), (y_true == c).sum().item()
        P.append(tp / n_pred if n_pred else 0.0)
        R.append(tp / n_true if n_true else 0.0)
        F1.append(2 * tp / (n_pred + n_true))
        support.append(n_true)
    return {"accuracy": (y_true == y_pred).double().mean().item(), "macro_precision": float(np.mean(P)),
            "macro_recall": float(np.mean(R)), "macro_f1": float(np.mean(F1)),
            "weighted_f1": float(np.dot(F1, support) / max(sum(support), 1))}


def balanced_subset(y: np.ndarray, per_class: int, rng: np.random.Generator) -> np.ndarray:
    """Indices of per_class random instances of each class, all of a class that has fewer (App. D:
    1000 per class, HARTH's rarest 500), sorted."""
    return np.sort(np.concatenate([rng.choice(np.flatnonzero(y == c), min(per_class, int((y == c).sum())), replace=False)
                                   for c in np.unique(y)] or [np.zeros(0, np.int64)]))


def kmeans(z: torch.Tensor, k: int, restarts: int = 10, iters: int = 100, seed: int = 1) -> torch.Tensor:
    """Lloyd's k-means (squared Euclidean), `restarts` random initialisations from the data, the
    lowest inertia kept. Seeded through its own generator. z (N, F) -> labels (N,)."""
    g = torch.Generator().manual_seed(seed)
    z = z.double()
    best, best_inertia = None, math.inf
    for _ in range(restarts):
        centers = z[torch.randperm(len(z), generator=g)[:k]].clone()   # (k, F)
        for _ in range(iters):
            labels = torch.cdist(z, centers).argmin(1)        # (N,) nearest centre
            new = torch.stack([z[labels == j].mean(0) if (labels == j).any() else centers[j] for j in range(k)])
            if torch.equal(new, centers):
                break
            centers = new
        labels = torch.cdist(z, centers).argmin(1)
        inertia = ((z - centers[labels]) ** 2).sum().item()
        if inertia < best_inertia:
            best, best_inertia = labels, inertia
    return best


def davies_bouldin(z: torch.Tensor, labels: torch.Tensor) -> float:
    """DBI (Davies & Bouldin 1979, as sklearn): mean over clusters i of max_{j != i}
    (S_i + S_j) / |c_i - c_j|, S_i = mean distance of cluster i's points to its centroid c_i.
    NaN with fewer than two clusters or coinciding centroids (a collapsed embedding)."""
    z = z.double()
    ks = torch.unique(labels)
    if len(ks) < 2:
        return float("nan")
    c = torch.stack([z[labels == k].mean(0) for k in ks])    # (K, F)
    S = torch.stack([(z[labels == k] - c[i]).norm(dim=1).mean() for i, k in enumerate(ks)])
    d = torch.cdist(c, c)                                     # (K, K)
    if (d + torch.eye(len(ks), dtype=d.dtype) == 0).any():
        return float("nan")
    ratio = (S[:, None] + S[None, :]) / d
    ratio.fill_diagonal_(-math.inf)
    return ratio.max(1).values.mean().item()


def silhouette(z: torch.Tensor, labels: torch.Tensor) -> float:
    """Mean silhouette (Rousseeuw 1987, as sklearn): s_i = (b_i - a_i) / max(a_i, b_i), a_i = mean
    distance to the other members of its cluster, b_i = lowest mean distance to another cluster;
    s_i = 0 for a point alone in its cluster. NaN with fewer than two clusters or zero spread."""
    z = z.double()
    ks = torch.unique(labels)
    if len(ks) < 2 or z.std(0).max() == 0:
        return float("nan")
    D = torch.cdist(z, z)                                     # (N, N)
    onehot = (labels[:, None] == ks[None, :]).double()        # (N, K)
    counts = onehot.sum(0)                                    # (K,)
    sums = D @ onehot                                         # (N, K): distance sums to each cluster
    own = (onehot * torch.arange(len(ks))).sum(1).long()      # (N,) own cluster index
    n_own = counts[own]
    a = sums[torch.arange(len(z)), own] / (n_own - 1).clamp(min=1)
    mean_other = (sums / counts).masked_fill(onehot.bool(), math.inf)
    b = mean_other.min(1).values
    s = (b - a) / torch.maximum(a, b)
    s = torch.where(n_own > 1, torch.nan_to_num(s, nan=0.0), torch.zeros_like(s))
    return s.mean().item()


def cluster_scores(z: torch.Tensor, y: np.ndarray, n_classes: int, restarts: int, seed: int) -> dict:
    """Table 2: DBI and silhouette against the true labels and against k-means labels (k = classes)."""
    if z.double().std(0).max() == 0:                          # collapsed: every score undefined
        return {k: float("nan") for k in ("dbi_true", "silhouette_true", "dbi_kmeans", "silhouette_kmeans")}
    yt = torch.as_tensor(y).long()
    km = kmeans(z, n_classes, restarts, seed=seed)
    return {"dbi_true": davies_bouldin(z, yt), "silhouette_true": silhouette(z, yt),
            "dbi_kmeans": davies_bouldin(z, km), "silhouette_kmeans": silhouette(z, km)}


def plot_embedding(z: torch.Tensor, y: np.ndarray, path, title: str, class_names=None) -> None:
    """Fig. 3 in spirit: 2-D PCA of the clustering subset's embeddings, coloured by true class."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    zc = z.double() - z.double().mean(0)
    xy = (zc @ torch.linalg.svd(zc, full_matrices=False).Vh[:2].T).numpy() if len(z) > 1 else np.zeros((len(z), 2))
    fig, ax = plt.subplots(figsize=(5.5, 4.5))
    for c in np.unique(y):
        lab = class_names[c] if class_names is not None and c < len(class_names) else str(c)
        ax.scatter(xy[y == c, 0], xy[y == c, 1], s=4, alpha=0.6, label=lab)
    ax.set_xlabel("PC 1")
    ax.set_ylabel("PC 2")
    ax.set_title(title, fontsize=8)
    ax.legend(fontsize=7, markerscale=3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def check_args(args: Args) -> None:
    """User mistakes in flags, before any data is loaded."""
    choices = {"variant": ("dynacl", "dynacl-m"), "negatives": ("batch", "sequence", "code"),
               "order": ("auto", "stored", "class-runs"), "pseudo_labels": ("fixed", "code"),
               "projector": ("redraw", "frozen")}
    for flag, ok in choices.items():
        if getattr(args, flag) not in ok:
            raise UserError(f"--{flag.replace('_', '-')} {getattr(args, flag)!r}: choose one of {', '.join(ok)}")
    if args.temperature <= 0:
        raise UserError(f"--temperature {args.temperature}: must be > 0")
    if args.seq_len and args.seq_len < 3:
        raise UserError(f"--seq-len {args.seq_len}: MP-Xent needs T >= 3 (an anchor and both neighbours)")
    if args.mse_weight > 1 or not (args.mask_fraction < 1):
        raise UserError("--mse-weight must be in [0, 1] and --mask-fraction in [0, 1) (negative = preset)")
    if args.run_mean < 1:
        raise UserError(f"--run-mean {args.run_mean}: runs hold at least one window")
    if args.batch_size < 1 or args.epochs < 0:
        raise UserError("--batch-size must be >= 1 and --epochs >= 0")
    parse_widths(args.widths)
    if args.seq_len:                                          # at most batch_size sequences per batch
        check_margin_members(args.seq_len * (1 if args.negatives == "sequence" else args.batch_size), args)


def evaluate(net: nn.Module, init_net: nn.Module, st: Streams, args: Args, device) -> tuple[dict, dict, dict]:
    """The final evaluation step, the ONLY one that sees the test split. Frozen encoders (the
    trained one, then its own initial weights), instance embeddings, the shared probe (C chosen on
    validation inside linear_eval, refit on fit + val rows, then applied to test), Table 3 scores
    on the probe's classes, Table 2 clustering on a class-balanced subset of the labelled test
    instances. Returns (selection: what was chosen on validation, eval: test metrics, the subset's
    embeddings per encoder for the pictures, with the subset's labels under "y")."""
    on_probe = torch.from_numpy(np.isin(st.y_test, st.probe_classes))
    y_probe = st.y_test[on_probe.numpy()]
    sub = balanced_subset(st.y_test, args.cluster_per_class, np.random.default_rng(args.seed))
    selection, ev, pics = {}, {}, {"y": st.y_test[sub]}
    for prefix, model in [("", net)] + ([("random_init_", init_net)] if args.random_init_eval else []):
        e_tr, e_va, e_te = (embed(model, x, device=device) for x in (st.x_train, st.x_val, st.x_test))
        res = linear_eval(e_tr, st.y_train, e_va, st.y_val, e_te[on_probe], y_probe)
        pred = res.pop("pred")                                # test predictions of the probe
        selection[prefix + "probe_C"], selection[prefix + "probe_val_accuracy"] = res.pop("C"), res.pop("val_accuracy")
        res.update({k: v for k, v in classification_scores(y_probe, pred).items() if k != "accuracy"})
        res.update(cluster_scores(e_te[sub], st.y_test[sub], st.n_classes, args.kmeans_restarts, args.seed))
        ev.update({prefix + k: v for k, v in res.items()})
        pics[prefix] = e_te[sub]
    return selection, ev, pics


def main(args: Args) -> dict:
    # BOILERPLATE (same in every method file): CPU settings, seeding, device, data
    setup_torch(variable_shapes=False, threads=args.threads or None)
    set_seed(args.seed)
    device = get_device(args.device)
    check_args(args)
    st = prepare(args, args.seed)
    method = METHOD if args.variant == "dynacl" else "dynacl_m"
    print(f"[{METHOD}] {st.name} seed={args.seed} device={device} variant={args.variant} "
          f"negatives={args.negatives} | sequences {st.seq_train.shape} (S, T, D), probe rows "
          f"{len(st.x_train)} fit / {len(st.x_val)} val / {len(st.x_test)} test, {st.n_classes} classes")
    print(st.note)
    if not st.label_free:
        print(f"note: {st.label_note}")

    # METHOD: pre-train on the training sequences (label-free, except the class-run order: deviation 11)
    net, init_net, history, stats = pretrain(st.seq_train, args, device, st.name)
    print(f"pre-trained {stats['epochs']} epochs x {stats['steps_per_epoch']} steps of {stats['batch_size']} "
          f"sequences in {stats['train_time_s']:.1f} s ({stats['instances_per_s']:,.0f} instances/s)")

    # Evaluation: the one step that sees the test split
    selection, ev, pics = evaluate(net, init_net, st, args, device)
    fmt = lambda r, p="": (f"acc {100 * r[p + 'accuracy']:.1f} | macro P/R/F1 {100 * r[p + 'macro_precision']:.1f}/"  # noqa: E731
                           f"{100 * r[p + 'macro_recall']:.1f}/{100 * r[p + 'macro_f1']:.1f} | weighted F1 "
                           f"{100 * r[p + 'weighted_f1']:.1f} | DBI {r[p + 'dbi_kmeans']:.2f} SS "
                           f"{r[p + 'silhouette_kmeans']:.2f} (k-means), DBI {r[p + 'dbi_true']:.2f} SS "
                           f"{r[p + 'silhouette_true']:.2f} (true labels) | probe C {selection[p + 'probe_C']:g}")
    print(f"linear eval       | {fmt(ev)}")
    if args.random_init_eval:
        print(f"random-init enc.  | {fmt(ev, 'random_init_')}")
    if st.order == "class-runs":
        print("note: sequences are real windows in a simulated class-run order, not a recording")

    run_dir = make_run_dir(args.out_dir, st.name, method, args.seed)
    res = write_results(run_dir, method, st.name, args.seed, args, history, ev, stats["train_time_s"], device,
                        extra={"selection": selection, "label_free": st.label_free, "label_note": st.label_note,
                               "order": st.order, "data_note": st.note, "data": st.info, "train": stats})
    title = f"{st.name} {args.variant} seed {args.seed} ({st.order} order)"
    names = st.info.get("class_names")
    plot_history(history, run_dir / "loss.png", title)
    plot_embedding(pics[""], pics["y"], run_dir / "embedding.png",
                   f"{title}: test instances, PCA; acc {100 * ev['accuracy']:.1f}", names)
    if args.random_init_eval:
        plot_embedding(pics["random_init_"], pics["y"], run_dir / "embedding_random_init.png",
                       f"{title}: random-init encoder; acc {100 * ev['random_init_accuracy']:.1f}", names)
    if args.save_model:                                       # CONTRACT D: the evaluated encoder and its init
        save_checkpoint(run_dir / "encoder.pt", net.state_dict(), args,
                        extra={"init_state_dict": init_net.state_dict()})
    print(f"saved {run_dir / 'results.json'}")
    res["run_dir"] = str(run_dir)
    return res


if __name__ == "__main__":
    cli(main, Args)
