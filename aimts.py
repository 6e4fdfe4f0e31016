"""
AimTS: multi-source pre-training with prototypes and series images, then fine-tuning.

  AimTS: Augmented Series and Image Contrastive Learning for Time Series Classification.
    Chen, Huang, Cheng, Chen, Rao, Shu, Yang, Pan, Guo, 2025. Paper: https://arxiv.org/abs/2504.09993
    (equation numbers Eq. (1)-(12) follow arXiv v1). Official code: https://github.com/uang33/AimTS @ 4df9518
    (it does not run as released: the series-image loss is called but defined nowhere, and the
    geodesic mixup is never called; this file implements the whole paper).

Read top to bottom next to the paper:
  1. Args ............. Sec. V-A-3 (batch 16, fine-tune Adam 1e-3), official scripts
  2. Data ............. a multi-source pool, one source per batch (Sec. III-B); channel independence
  3. Augmentations .... Sec. V-A-4: jitter, scaling, time warping, window slicing, window warping
  4. Encoders ......... TS encoder (dilated CNN, per variable), series images, image encoder
  5. Losses ........... Eq. (2)-(6) prototype contrast; Eq. (7)-(12) series-image contrast; Eq. (1)
  6. Pre-training ..... warm-up on L_SI, then L = L_proto + L_SI; SWA copy of the TS encoder
  7. Fine-tuning ...... Sec. IV-A, Fig. 3(b): encoder + MLP classifier, cross-entropy; few-shot
     Linear eval ...... shared protocol, identical in every method file (a frozen-encoder probe)
  8. main

Where we differ from the paper / official code:
  1. Eq. (3) normalises over k = 1..G; we take the softmax over the 2G - 1 entries of Eq. (4)'s
     denominator (the positive's distance is -inf, so positives get exactly tau0 = 1). The distance
     D (unspecified) is the RMS difference of the two augmented inputs, per sample. The official
     code shares one matrix across the batch and squeezes tau into [1, 1.01].
  2. Eq. (4)-(5) anchor one view and Eq. (6)/(8)/(11) use 1/(2B) on sums; we average over anchors
     from both views (intra: 2G anchors per sample, inter: 2B anchors).
  3. Logits of the prototype losses are raw dot products with tau = tau0 = 1 (as the official code);
     the series-image losses use cosine similarity with tau_SI = 0.1 (not given in the paper).
  4. Eq. (10) literally puts every mix m_j (j = i included) in the denominator and leaves the
     positive out, so a sample's own mix (Beta(0.1, 0.1): usually almost u_i or v_i) would be its
     hardest negative. We put the positive sim(u_i, v_i) in place of the sample's own mix.
  5. Geodesic mixup (Eq. 9) on unit vectors, cos clamped to [-1 + 1e-6, 1 - 1e-6], normalised lerp
     for nearly parallel pairs (theta < 1e-2), output renormalised (official mixup: none of these).
  6. Inter-prototype loss at instance level (the paper); the official code applies TS2Vec's
     hierarchical loss to per-step prototypes. Not offered as a flag here.
  7. Images are drawn by a batched rasteriser in torch, not saved matplotlib PNGs: same layout
     (64x64 px cell per variable, ceil(sqrt(M)) grid, colour by variable, `*` markers joined by
     lines, the frame as matplotlib rasterises it, y-limits = the source's train min/max per
     variable), ink-mask IoU >= 0.85 against matplotlib (tested; the frame alone within 0.04 of
     its grey levels). Values are standardised first (the map is affine, so the picture is the
     same). Exact zeros are not treated as missing (the official TSER images do that).
  8. Image encoder: a ResNet-18 written here, random init, trained (as the paper says; the official
     code freezes ImageNet weights). --image-width 64 is ResNet-18; the CPU default is narrower.
  9. Schedule: one warm-up pass on L_SI (official code), then joint epochs; no learning-rate steps;
     pre-training lr 7e-4 (official script; the paper's 7e-3 reads as a typo). --max-iters caps
     each phase for CPU runs. All parameters are trained in both phases. An ablation row of
     Table VI (--loss-terms) trains only its own terms in every phase: naive_si and si warm up on
     their own term, proto and inter (no image side) have no warm-up.
  10. Fine-tuning: Adam 1e-3 (paper), batch 8, a fixed number of epochs (36, the official UCR
     script), the LAST epoch is reported; it trains every parameter on the WHOLE training split
     (Sec. V-A-1-b: "The training set of each dataset is used to fine-tune"), so nothing is carved
     out of it and nothing is selected (Table V's 5 % of a training split leaves no room for a
     validation set either). Only the linear probe chooses something (its C): on a stratified
     --val-fraction of the same labelled series, then it refits on all of them. A release's own
     validation split (TF-C) is not used. Test is read once, by the final evaluation. Targets get
     a per-variable z-score with the training split's statistics (official: UCR globally, UEA per
     variable).
  11. Few-shot: a fraction of the whole training split, drawn per class: round(fraction * n_c)
     series of class c, at least one, so every class is present (the official stratified split
     fails when n < K). Seeded.
  12. Time warping is seeded (tsaug's is not). Time-axis augmentation parameters are shared across
     the variables of a sample, as in the official code.
  13. Weights inside Eq. (6): l_intra of Eq. (4) SUMS over the G augmentations while l_inter is one
     term, so the paper's intra term weighs G = 5 times more against the inter term (and against
     L_SI) than here, where both are means over their anchors (deviation 2). The official code
     divides the intra sum by 4GB: half our mean.
  14. Pre-training optimiser: AdamW (weight decay 0.01, torch's default), as the official code;
     the paper says Adam (Sec. V-A-3).
  15. Batches (official WeightBatchSchedulerSampler: one source per batch, drawn in proportion to its
     size): when fewer than B series are left in a source's shuffled pass we reshuffle, so the last
     N_s mod B series of every pass are dropped; the official sampler wraps around into the next
     shuffle instead, which can put one series twice into a batch (a false negative in every loss).
     A source smaller than B gives batches of all its N_s series; a source of one series is left
     out (contrast needs two). Under torchrun the processes share one sequence of batches, dealt
     round robin, so an epoch is ceil(N / B) batches in all, one pass over the pool.
  16. Sizes the paper does not give are the official code's (projection width J = 128, dropout 0.1,
     fine-tuning batch 8). CPU defaults are smaller: D = 128 (official 512), CNN width 32 (64),
     depth 6 (10), image width 16 (ResNet-18: 64), a pool of three small UCR/UEA sets (paper: the
     19 TSER sets), one joint epoch capped at 20 steps per phase (paper: 2 epochs); --paper-sizes
     restores the sizes and epochs, --pretrain TSER the pool. Seed 1 (paper: 3407), as every file.

Run:  python aimts.py --dataset GunPoint                       (small default pool, CPU minutes)
      python aimts.py --pretrain TSER --dataset ECG200 --repr-dims 512 --image-width 64 \\
                      --epochs 2 --max-iters 0                  (the paper's pool and sizes)
      torchrun --nproc_per_node=2 aimts.py ...                  (DistributedDataParallel)
"""
from __future__ import annotations

import copy
import dataclasses
import math
import os
import time
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

import data
from common import (UserError, arg, cli, get_device, load_checkpoint, make_run_dir, plot_history,
                    progress_line, save_checkpoint, set_seed, setup_torch, write_results)

METHOD = "aimts"
LOSS_TERMS = ("full", "proto", "inter", "si", "naive_si")    # Table VI rows (and full AimTS)


# %% 1. Args ----------------------------------------------------------------------------------
@dataclass
class Args:
    """AimTS multi-source pre-training (prototype + series-image contrast), then fine-tuning."""
    dataset: str = arg("GunPoint", "target dataset to fine-tune and test on, see data.py")
    pretrain: str = arg("ArrowHead,BasicMotions,JapaneseVowels",
                        "pre-training pool: TSER (the paper's 19 sets) | UCR | a comma list of names; "
                        "the target is always left out (--load skips pre-training)")
    data_dir: str = arg("", "data root; '' = data.py default (env TS_DATA_DIR)")
    load: str = arg("", "encoder.pt from an earlier run: skip pre-training")
    few_shot: float = arg(0.0, "fine-tune on this fraction of the training split, per class "
                          "(paper, Table V: 0.05, 0.15, 0.2); 0 = all of it")
    loss_terms: str = arg("full", "full (Eq. 1) | inter (Eq. 5 only) | proto (L_proto, Eq. 6) | "
                          "naive_si (L_naive, Eq. 8) | si (L_SI, Eq. 12): Table VI's rows, top to bottom")
    paper_sizes: bool = arg(False, "the official sizes: D 512, width 64, depth 10, ResNet-18 (image width 64), "
                            "2 joint epochs, no step cap (overrides those flags)")
    repr_dims: int = arg(128, "D, TS representation width (official: 512)")
    hidden_dims: int = arg(32, "dilated CNN width (official 64)")
    depth: int = arg(6, "hidden dilated blocks before the final -> D block (official 10)")
    proj_dims: int = arg(128, "J, projection head output width (official 128)")
    image_width: int = arg(16, "ResNet base width: 64 = ResNet-18 (official), smaller for CPU")
    image_weights: str = arg("", "local ResNet-18 state_dict (torchvision names) to start the image encoder")
    freeze_image: bool = arg(False, "freeze the image encoder (official code, with ImageNet weights)")
    alpha: float = arg(0.7, "alpha in Eq. (6): weight of the inter-prototype loss (paper's best, "
                        "Sec. V-E-1; official code 0.9)")
    beta: float = arg(0.9, "beta in Eq. (12): weight of the naive series-image loss")
    gamma: float = arg(0.1, "gamma: lambda ~ Beta(gamma, gamma) in Eq. (9)")
    tau0: float = arg(1.0, "tau0 in Eq. (3)")
    tau_si: float = arg(0.1, "tau in Eq. (7)-(11) (not given in the paper)")
    dropout: float = arg(0.1, "dropout on the encoder output and in the heads (official)")
    batch_size: int = arg(16, "pre-training batch size (paper: 16), from one source per batch")
    lr: float = arg(7e-4, "pre-training AdamW learning rate (official script; paper 7e-3, Adam)")
    warmup_epochs: int = arg(1, "passes over the pool training on L_SI only (official code)")
    epochs: int = arg(1, "joint pre-training passes over the pool (paper: 2)")
    max_iters: int = arg(20, "cap on steps per phase (CPU quick look); 0 = full passes")
    ft_epochs: int = arg(36, "fine-tuning epochs (official scripts: 36 UCR, 15 UEA)")
    ft_batch_size: int = arg(8, "fine-tuning batch size (official 8)")
    ft_lr: float = arg(1e-3, "fine-tuning Adam learning rate (paper)")
    val_fraction: float = arg(0.2, "share of the labelled series held out to choose the linear probe's C "
                              "(it then refits on all); fine-tuning always uses all of them")
    scratch: bool = arg(True, "also fine-tune the same network from random init (the baseline row)")
    probe: bool = arg(True, "also run the shared linear probe on frozen pre-trained / random encoders")
    seed: int = arg(1, "random seed")
    threads: int = arg(0, "torch CPU threads; 0 = torch default")
    device: str = arg("auto", "auto | cpu | cuda | mps")
    out_dir: str = arg("runs", "where results.json and plots go")
    save_model: bool = arg(True, "save the pre-trained TS encoder to encoder.pt (for --load)")
    log: bool = arg(True, "print progress lines")


# %% 2. Data: multi-source pool, one source per batch -------------------------------------------
def pool_names(spec: str, target: str) -> list:
    """--pretrain value -> list of dataset names, the target left out."""
    s = spec.strip()
    if s.lower() in ("", "none"):
        return []
    names = data.list_datasets("tser") if s.upper() == "TSER" else \
        data.list_datasets("ucr") if s.upper() == "UCR" else [n.strip() for n in s.split(",") if n.strip()]
    return [n for n in names if n.lower() != str(target).lower()]


class Source:
    """One pre-training dataset: every TRAIN series (labels unused), standardised per variable with
    its own statistics, NaN after each series' end; y-limits of its images (Sec. IV-C-1)."""

    def __init__(self, name: str, x: np.ndarray):                # x (N, M, T)
        mu = np.nanmean(x, axis=(0, 2), keepdims=True)
        sd = np.nanstd(x, axis=(0, 2), keepdims=True)
        x = (x - mu) / np.where(sd > 0, sd, 1.0)
        self.name = name
        self.x = np.ascontiguousarray(x.transpose(0, 2, 1)).astype(np.float32)  # (N, T, M)
        self.lo = np.nanmin(self.x, axis=(0, 1))                  # (M,) y-limits: train min / max
        self.hi = np.nanmax(self.x, axis=(0, 1))


def load_pool(names: list, data_dir) -> list:
    out = []
    for n in names:
        ds = data.load_dataset(n, data_dir=data_dir or None, val_fraction=0.0)
        x = np.concatenate([ds.X_train, ds.X_val])                 # the whole TRAIN split only
        out.append(Source(ds.name, x))
    return out


class SourceSampler:
    """Official WeightBatchSchedulerSampler: each batch comes from one source, drawn with
    probability proportional to its size; within a source, the next batch_size indices of its
    shuffled order, reshuffled when fewer than batch_size are left (deviation 15). One epoch =
    ceil(N / batch_size) batches. Every process draws the same sequence of batches (same rng seed)
    and keeps every world-th one, starting at its rank: together they make one pass."""

    def __init__(self, sizes: list, batch_size: int, rng: np.random.Generator, rank: int = 0, world: int = 1):
        self.sizes, self.bs, self.rng, self.rank, self.world = list(sizes), batch_size, rng, rank, world
        self.p = np.asarray(sizes, float) / sum(sizes)
        self.order = [rng.permutation(n) for n in sizes]
        self.pos = [0] * len(sizes)
        self.per_epoch = math.ceil(sum(sizes) / batch_size)       # batches per epoch, all processes together

    def draw(self) -> tuple:
        """The next batch of the shared sequence: (source, indices into it)."""
        s = int(self.rng.choice(len(self.sizes), p=self.p))       # source ~ its share of the pool
        if self.pos[s] + self.bs > self.sizes[s]:                  # fewer than bs left: reshuffle
            self.order[s], self.pos[s] = self.rng.permutation(self.sizes[s]), 0
        idx = self.order[s][self.pos[s]:self.pos[s] + self.bs]    # min(bs, N_s) indices
        self.pos[s] += self.bs
        return s, idx

    def next(self) -> tuple:
        """This process's next batch: batch rank of the next `world` of the shared sequence."""
        batches = [self.draw() for _ in range(self.world)]
        return batches[self.rank]


def few_shot_indices(y: np.ndarray, fraction: float, seed: int) -> np.ndarray:
    """Few-shot subset of a training split with labels y (Table V): round(fraction * n_c) of each
    class c, at least one, so every class is present (deviation 11). Seeded, sorted indices."""
    rng = np.random.default_rng(seed)
    keep = []
    for c in np.unique(y):
        idx = np.flatnonzero(y == c)
        k = max(1, int(round(fraction * len(idx))))
        keep.extend(rng.permutation(idx)[:k].tolist())
    return np.sort(np.asarray(keep, dtype=np.int64))


# %% 3. Augmentation bank (Sec. V-A-4) --------------------------------------------------------------
# Each function maps x (B, T, M) with no NaN to a view of the same shape; `gen` is a seeded
# torch.Generator on x's device, so every call draws fresh parameters, reproducibly. Time-axis
# augmentations are one read-out of x at fractional positions (shared by the M variables).

def resample(x: torch.Tensor, pos: torch.Tensor) -> torch.Tensor:
    """Linear interpolation of x (B, T, M) at positions pos (B, T') in [0, T-1] -> (B, T', M)."""
    T = x.size(1)
    pos = pos.clamp(0, T - 1)
    i0 = pos.floor().long().clamp(max=T - 2) if T > 1 else pos.long() * 0
    w = (pos - i0).unsqueeze(-1)                              # (B, T', 1) weight of the right point
    i1 = (i0 + 1).clamp(max=T - 1)
    g0 = torch.gather(x, 1, i0.unsqueeze(-1).expand(-1, -1, x.size(2)))
    g1 = torch.gather(x, 1, i1.unsqueeze(-1).expand(-1, -1, x.size(2)))
    return g0 * (1 - w) + g1 * w


def stretch_positions(start, length, T_out: int) -> torch.Tensor:
    """Positions that resample [start, start + length) to T_out steps, as F.interpolate(mode='linear',
    align_corners=False): src = start + (j + 0.5) * length / T_out - 0.5, kept inside the window."""
    j = torch.arange(T_out, device=start.device, dtype=start.dtype)
    src = (j + 0.5) * (length / T_out)[..., None] - 0.5        # (B, T_out)
    return start[:, None] + src.clamp(min=0).minimum((length - 1)[:, None])


def jitter(x, gen, sigma: float = 0.3):
    """x + N(0, sigma^2), elementwise."""
    return x + sigma * torch.randn(x.shape, generator=gen, device=x.device, dtype=x.dtype)


def scaling(x, gen, sigma: float = 0.5):
    """x * N(1, sigma^2), one factor per (sample, variable); it can be negative (official)."""
    f = 1 + sigma * torch.randn((x.size(0), 1, x.size(2)), generator=gen, device=x.device, dtype=x.dtype)
    return x * f


def window_slice(x, gen, ratio: float = 0.5):
    """A window of ceil(ratio * T) steps, start ~ U{0, ..., T - w - 1} per sample, stretched to T."""
    B, T, _ = x.shape
    w = math.ceil(ratio * T)
    hi = max(T - w, 1)                                        # starts 0 .. T - w - 1
    start = torch.randint(0, hi, (B,), generator=gen, device=x.device).to(x.dtype)
    return resample(x, stretch_positions(start, torch.full_like(start, w), T))


def pchip(xk: torch.Tensor, yk: torch.Tensor, xq: torch.Tensor) -> torch.Tensor:
    """Monotone cubic (PCHIP, Fritsch-Carlson slopes) through knots (xk (K,), yk (B, K)), read at xq
    (Q,) -> (B, Q). Same values as scipy.interpolate.PchipInterpolator (tested against a loop)."""
    h = xk[1:] - xk[:-1]                                      # (K-1,)
    delta = (yk[:, 1:] - yk[:, :-1]) / h                      # (B, K-1) secant slopes
    d0, d1 = delta[:, :-1], delta[:, 1:]
    w1, w2 = 2 * h[1:] + h[:-1], h[1:] + 2 * h[:-1]
    same = (d0 * d1) > 0
    harm = (w1 + w2) / (w1 / d0.where(same, torch.ones_like(d0)) + w2 / d1.where(same, torch.ones_like(d1)))
    m_in = torch.where(same, harm, torch.zeros_like(d0))      # interior slopes: weighted harmonic mean

    def end(h0, h1, e0, e1):                                  # three-point end slope, shape-preserving
        m = ((2 * h0 + h1) * e0 - h0 * e1) / (h0 + h1)
        m = torch.where(torch.sign(m) != torch.sign(e0), torch.zeros_like(m), m)
        return torch.where((torch.sign(e0) != torch.sign(e1)) & (m.abs() > 3 * e0.abs()), 3 * e0, m)

    m = torch.cat([end(h[0], h[1], delta[:, :1], delta[:, 1:2]), m_in,
                   end(h[-1], h[-2], delta[:, -1:], delta[:, -2:-1])], dim=1)   # (B, K)
    k = torch.searchsorted(xk, xq.contiguous(), right=True).clamp(1, len(xk) - 1) - 1   # segment of each query
    t = (xq - xk[k]) / h[k]                                   # (Q,) in [0, 1]
    h00, h10, h01, h11 = (2 * t ** 3 - 3 * t ** 2 + 1, t ** 3 - 2 * t ** 2 + t, -2 * t ** 3 + 3 * t ** 2, t ** 3 - t ** 2)
    return h00 * yk[:, k] + h10 * h[k] * m[:, k] + h01 * yk[:, k + 1] + h11 * h[k] * m[:, k + 1]


def warp_positions(B: int, T: int, gen, device, dtype, n_speed_change: int = 100,
                   max_speed_ratio: float = 10.0) -> torch.Tensor:
    """tsaug TimeWarp: n + 1 segment speeds ~ U(0, 1), mapped affinely onto [1, max_speed_ratio]
    (so max / min = the ratio); their cumulative sum, scaled to [0, T - 1], is the read position at
    n + 2 evenly spaced anchors; PCHIP gives every step. -> (B, T), monotone, ends 0 and T - 1."""
    speed = torch.rand((B, n_speed_change + 1), generator=gen, device=device, dtype=dtype)
    lo, hi = speed.amin(1, keepdim=True), speed.amax(1, keepdim=True)
    speed = 1 + (max_speed_ratio - 1) * (speed - lo) / (hi - lo).clamp_min(1e-12)
    knots_y = F.pad(torch.cumsum(speed, 1), (1, 0))            # (B, n + 2), starts at 0
    knots_y = knots_y / knots_y[:, -1:] * (T - 1)
    knots_x = torch.linspace(0, T - 1, n_speed_change + 2, device=device, dtype=dtype)
    return pchip(knots_x, knots_y, torch.arange(T, device=device, dtype=dtype))


def time_warp(x, gen):
    """Sec. V-A-4 time warping (tsaug TimeWarp(n_speed_change=100, max_speed_ratio=10)), seeded."""
    B, T, _ = x.shape
    if T < 2:
        return x
    return resample(x, warp_positions(B, T, gen, x.device, x.dtype))


def window_warp(x, gen, ratio: float = 0.3, scales=(0.5, 2.0)):
    """A window of ceil(ratio * T) steps, start ~ U{1, ..., T - w - 2}, stretched by s in {0.5, 2}
    (per sample), spliced back, the whole resampled to T. One read-out: output step -> position
    in the spliced series -> position in x (piecewise linear). No-op for very short T."""
    B, T, _ = x.shape
    w = math.ceil(ratio * T)
    if T - w - 2 < 1:
        return x
    start = torch.randint(1, T - w - 1, (B,), generator=gen, device=x.device).to(x.dtype)[:, None]
    s = torch.tensor(scales, device=x.device, dtype=x.dtype)[
        torch.randint(0, len(scales), (B,), generator=gen, device=x.device)][:, None]    # (B, 1)
    new_len = T - w + w * s                                   # (B, 1) spliced length
    q = (torch.arange(T, device=x.device, dtype=x.dtype) + 0.5) * new_len / T - 0.5  # (B, T)
    q = q.clamp(min=0)
    pos = torch.where(q < start, q, torch.where(q < start + w * s, start + (q - start) / s, q - w * s + w))
    return resample(x, pos)


AUGMENTATIONS = (jitter, scaling, time_warp, window_slice, window_warp)    # G = 5


def make_views(x: torch.Tensor, gen) -> torch.Tensor:
    """Fig. 4(a): each of the G augmentations applied twice with fresh parameters.
    x (B, T, M) -> (2G, B, T, M): views[k] = X_{i,k}, views[G + k] = X~_{i,k}; NaN -> 0 after."""
    x = torch.nan_to_num(x)
    views = [aug(x, gen) for aug in AUGMENTATIONS] + [aug(x, gen) for aug in AUGMENTATIONS]
    return torch.nan_to_num(torch.stack(views))


def view_distances(views: torch.Tensor) -> torch.Tensor:
    """d_i^(j,k) = ||X_j - X_k||_2 / sqrt(T M) between the augmented inputs of each sample
    (D is unspecified in the paper; deviation 1). views (2G, B, T, M) -> (B, 2G, 2G)."""
    v = views.flatten(2).transpose(0, 1)                      # (B, 2G, T M)
    return torch.cdist(v, v) / math.sqrt(v.size(-1))


# %% 4. Encoders -----------------------------------------------------------------------------------
class DilatedConv(nn.Conv1d):
    """Kernel-3 dilated convolution with 'same' zero padding, as nn.Conv1d(c_in, c_out, 3,
    padding=dilation, dilation=dilation), computed as one matrix product over the three taps
    (faster on CPU; equal values, tested). A tap wholly in the padding (dilation >= T) is skipped."""

    def __init__(self, c_in: int, c_out: int, dilation: int):
        super().__init__(c_in, c_out, 3, padding=dilation, dilation=dilation)

    def forward(self, x):                                     # x (B, c_in, T)
        T, d = x.size(-1), self.dilation[0]
        if d >= T:                                            # only the centre tap sees data
            return torch.matmul(self.weight[:, :, 1], x) + self.bias[:, None]
        xp = F.pad(x, (d, d))
        taps = torch.cat([xp[..., k * d:k * d + T] for k in range(3)], dim=1)   # (B, 3 c_in, T)
        w = self.weight.permute(0, 2, 1).reshape(self.out_channels, -1)        # (c_out, 3 c_in)
        return torch.matmul(w, taps) + self.bias[:, None]     # (B, c_out, T)


class ConvBlock(nn.Module):
    """GELU, dilated conv, GELU, dilated conv, plus a residual (1x1 conv in the final block)."""

    def __init__(self, c_in: int, c_out: int, dilation: int, final: bool):
        super().__init__()
        self.conv1 = DilatedConv(c_in, c_out, dilation)
        self.conv2 = DilatedConv(c_out, c_out, dilation)
        self.projector = nn.Conv1d(c_in, c_out, 1) if (c_in != c_out or final) else None

    def forward(self, x):                                     # x (B, c_in, T)
        residual = x if self.projector is None else self.projector(x)
        x = self.conv1(F.gelu(x))                             # activation before each conv
        x = self.conv2(F.gelu(x))
        return x + residual


class Encoder(nn.Module):
    """F^TS, channel independent (Sec. V-A-3): every variable is encoded alone by the same dilated
    CNN (the official TS2Vec encoder without timestamp masking and without its unused modules).
    x (B, T, M), NaN = missing -> h (B, M, T, D). 1,166,208 parameters at D = 512."""

    def __init__(self, repr_dims: int = 512, hidden_dims: int = 64, depth: int = 10, dropout: float = 0.1):
        super().__init__()
        self.input_fc = nn.Linear(1, hidden_dims)
        widths = [hidden_dims] * depth + [repr_dims]
        self.blocks = nn.Sequential(*[
            ConvBlock(hidden_dims if i == 0 else widths[i - 1], widths[i], 2 ** i, final=(i == depth))
            for i in range(depth + 1)])
        self.repr_dropout = nn.Dropout(dropout)

    def forward(self, x):                                     # (B, T, M)
        B, T, M = x.shape
        x = torch.nan_to_num(x).transpose(1, 2).reshape(B * M, T, 1)   # (B M, T, 1) one row per variable
        h = self.blocks(self.input_fc(x).transpose(1, 2))    # (B M, D, T)
        h = self.repr_dropout(h.transpose(1, 2))              # (B M, T, D)
        return h.reshape(B, M, T, -1)                         # (B, M, T, D)


def instance_repr(h: torch.Tensor) -> torch.Tensor:
    """Pre-training vector r (official): mean over variables, then max over time. (B, M, T, D) -> (B, D)."""
    return h.mean(1).amax(1)


def head(d_in: int, d_out: int = 128, dropout: float = 0.1) -> nn.Sequential:
    """Every official head: Linear -> BN -> ReLU -> Linear -> Dropout (P^TS, P^I, P^pro, P^cls)."""
    return nn.Sequential(nn.Linear(d_in, 256), nn.BatchNorm1d(256), nn.ReLU(),
                         nn.Linear(256, d_out), nn.Dropout(dropout))


# Series images (Sec. IV-C-1): a line chart per variable, batched on the training device ------------
COLOURS = {  # the official colour order (variable m gets colour m), as RGB of the CSS names
    "green": "008000", "black": "000000", "blue": "0000ff", "brown": "a52a2a", "chartreuse": "7fff00",
    "chocolate": "d2691e", "coral": "ff7f50", "crimson": "dc143c", "blueviolet": "8a2be2",
    "darkblue": "00008b", "darkgreen": "006400", "firebrick": "b22222", "gold": "ffd700", "teal": "008080",
    "grey": "808080", "indigo": "4b0082", "steelblue": "4682b4", "indianred": "cd5c5c",
    "goldenrod": "daa520", "darkred": "8b0000", "darkorange": "ff8c00", "magenta": "ff00ff",
    "maroon": "800000", "navy": "000080", "olive": "808000", "orange": "ffa500", "orchid": "da70d6",
    "pink": "ffc0cb", "plum": "dda0dd", "purple": "800080", "red": "ff0000", "cornflowerblue": "6495ed",
    "sienna": "a0522d", "darkkhaki": "bdb76b", "tan": "d2b48c", "dodgerblue": "1e90ff",
    "darkseagreen": "8fbc8f", "cadetblue": "5f9ea0"}


def colour_table(M: int, device, dtype) -> torch.Tensor:
    """(M, 3) in [0, 1]: the 38 named colours in order, then seeded random RGB (official: shuffled)."""
    rgb = [[int(h[i:i + 2], 16) / 255 for i in (0, 2, 4)] for h in COLOURS.values()]
    if M > len(rgb):
        rgb += np.random.default_rng(0).random((M - len(rgb), 3)).tolist()
    return torch.tensor(rgb[:M], device=device, dtype=dtype)


def _splat(canvas: torch.Tensor, n: torch.Tensor, qx: torch.Tensor, qy: torch.Tensor, radius: float, pad: int) -> None:
    """Ink of round dots of radius `radius` (+ 0.5 px antialiasing) at points (qx, qy) of series n:
    canvas[n, row, col] = max(canvas, clamp(radius + 0.5 - |pixel centre - q|, 0, 1)), one scatter.
    Only pixels fewer than radius + 1 rows/columns from q's pixel can be inked. The canvas has a
    margin of `pad` px on every side (cropped by the caller); points are kept within pad - r - 1 px
    of the chart, so off-chart ink lands in the margin and no index check is needed."""
    N, H, W = canvas.shape
    r = math.ceil(radius + 1) - 1
    off = torch.arange(-r, r + 1, device=canvas.device, dtype=qx.dtype)
    qx, qy = qx.clamp(r + 1 - pad, W - pad - r - 1), qy.clamp(r + 1 - pad, H - pad - r - 1)
    c0, r0 = qx.floor(), qy.floor()                           # (P,) the point's pixel
    base = (n * H + (r0.long() + pad)) * W + (c0.long() + pad)   # (P,) its index in the canvas
    grid = (off.long()[:, None] * W + off.long()[None, :]).flatten()   # (S S,) stencil offsets
    cx = (off + 0.5 + (c0 - qx)[:, None])[:, None, :]         # (P, 1, S) pixel centre - q, columns
    cy = (off + 0.5 + (r0 - qy)[:, None])[:, :, None]         # (P, S, 1) rows
    alpha = (radius + 0.5 - (cx * cx + cy * cy).sqrt_()).clamp_(0, 1)   # (P, S, S)
    canvas.view(-1).scatter_reduce_(0, (base[:, None] + grid).flatten(), alpha.flatten(), "amax")


@torch.no_grad()
def render(x: torch.Tensor, lo: torch.Tensor, hi: torch.Tensor, cell: int = 64,
           line_width: float = 1.39, marker_radius: float = 1.2, step: float = 0.5) -> torch.Tensor:
    """Series images, batched in torch. x (B, T, M) standardised, NaN = gap; lo, hi (M,) y-limits.
    -> (B, 3, g cell, g cell) in [0, 1], g = ceil(sqrt(M)), variable m in cell (m // g, m % g).

    Chart of one variable: x-limits [0, T] with points at t = 0..T-1, y-limits [lo, hi] (+-0.5 if
    equal); pixel (row r, col c) has centre (c + 0.5, r + 0.5), row 0 at the top. Ink alpha =
    clamp(w/2 + 0.5 - distance, 0, 1) to the polyline (w = 1 pt line = 1.39 px at 100 dpi) and to
    the points (`*` markers, discs of radius ~1.2 px); colour blended over white; then the spines
    (frame_coverage) in black over it.
    The distance to the polyline is taken to points spaced `step` px along every segment (at 1 px
    from the line the error is below 0.03 px for step 0.5), so the work grows with the length of the drawn line, not with T x pixels:
    every point splats a small stencil into the canvas with one scatter-max (no loop over samples)."""
    B, T, M = x.shape
    g = math.ceil(math.sqrt(M))
    dev, dt = x.device, x.dtype
    lo, hi = lo.to(dev, dt), hi.to(dev, dt)
    flat = hi == lo
    lo, hi = torch.where(flat, lo - 0.5, lo), torch.where(flat, hi + 0.5, hi)
    N = B * M
    v = x.transpose(1, 2).reshape(N, T)                       # (N, T) one chart per row
    px = (torch.arange(T, device=dev, dtype=dt) * (cell / T)).expand(N, T)   # x in pixels
    py = cell * (hi.repeat(B)[:, None] - v) / (hi - lo).repeat(B)[:, None]   # (N, T) y, from the top
    P = 6                                                     # canvas margin: off-chart ink lands there
    a = torch.zeros(N, cell + 2 * P, cell + 2 * P, device=dev, dtype=dt)
    ok = torch.isfinite(py)                                   # NaN = missing: no marker, no segment
    n_idx = torch.arange(N, device=dev)[:, None].expand(N, T)
    _splat(a, n_idx[ok], px[ok], py[ok], marker_radius, P)       # the `*` markers
    if T > 1:                                                 # the line: points every `step` px
        dx, dy = px[:, 1:] - px[:, :-1], py[:, 1:] - py[:, :-1]          # (N, T-1) segments
        seg_ok = ok[:, 1:] & ok[:, :-1]
        count = torch.where(seg_ok, torch.ceil(torch.hypot(dx, dy).nan_to_num(0) / step).long() + 1, 0)
        seg = torch.repeat_interleave(torch.arange(count.numel(), device=dev), count.flatten())
        first = torch.cumsum(count.flatten(), 0) - count.flatten()       # index of a segment's first point
        j = torch.arange(len(seg), device=dev) - first[seg]             # 0 .. count - 1 along the segment
        f = (j / (count.flatten()[seg] - 1).clamp_min(1)).to(dt)        # fraction along the segment
        sx, sy = px[:, :-1].flatten()[seg], py[:, :-1].flatten()[seg]
        _splat(a, seg // (T - 1), sx + f * dx.flatten()[seg], sy + f * dy.flatten()[seg], line_width / 2, P)
    a = a[:, P:P + cell, P:P + cell].reshape(B, M, cell, cell)   # drop the margin
    if g * g > M:                                             # unused cells: no ink
        a = torch.cat([a, a.new_zeros(B, g * g - M, cell, cell)], 1)
    S = g * cell
    a = a.reshape(B, g, g, cell, cell).transpose(2, 3).reshape(B, 1, S, S)   # tiled, row-major cells
    col = torch.cat([colour_table(M, dev, dt), torch.ones(g * g - M, 3, device=dev, dtype=dt)])
    col = col.T.reshape(3, g, g).repeat_interleave(cell, 1).repeat_interleave(cell, 2)   # (3, S, S)
    img = 1 - a * (1 - col)                                   # (B, 3, S, S): colour over white
    return img * (1 - frame_coverage(M, cell, dev, dt))     # black spines over the charts


def frame_coverage(M: int, cell: int, device, dtype, spill: float = 0.0555) -> torch.Tensor:
    """The charts' spines as matplotlib rasterises them at 100 dpi (0.8 pt = 1.11 px lines on the cell
    borders), measured on its output: the top / left spine of a chart inks its first row / column
    and spills 0.0555 into the row / column on either side; the bottom / right spine inks the two
    rows / columns past the cell and spills into its last one. Charts are drawn in order, each
    first painting its own cell white, so where two charts meet the later one's top or left spine
    is the one dark line (1 px). -> ink coverage (S, S) in [0, 1], S = ceil(sqrt(M)) cell."""
    g = math.ceil(math.sqrt(M))
    S = g * cell
    cov = torch.zeros(S + 3, S + 3, device=device, dtype=dtype)   # margins: 1 px top / left, 2 px bottom / right

    def ink(rows, cols, a):                                   # composite `a` over [rows) x [cols), image coordinates
        sub = cov[rows[0] + 1:rows[1] + 1, cols[0] + 1:cols[1] + 1]
        sub.copy_(1 - (1 - sub) * (1 - a))

    for m in range(M):                                        # a loop over charts, not samples
        r0, c0 = (m // g) * cell, (m % g) * cell
        r1, c1 = r0 + cell, c0 + cell
        cov[r0 + 1:r1 + 1, c0 + 1:c1 + 1] = 0                 # the chart's white background
        for (a0, a1), a in (((-1, 0), spill), ((0, 1), 1.0), ((1, 2), spill)):           # top and left
            ink((r0 + a0, r0 + a1), (c0, c1 + 2), a)
            ink((r0, r1 + 2), (c0 + a0, c0 + a1), a)
        for (a0, a1), a in (((-1, 0), spill), ((0, 2), 1.0)):                            # bottom and right
            ink((r1 + a0, r1 + a1), (c0, c1 + 2), a)
            ink((r0, r1 + 2), (c1 + a0, c1 + a1), a)
    return cov[1:S + 1, 1:S + 1]


class BasicBlock(nn.Module):
    """ResNet basic block: conv3x3-BN-ReLU-conv3x3-BN, plus identity or 1x1 conv-BN shortcut."""

    def __init__(self, c_in: int, c_out: int, stride: int):
        super().__init__()
        self.conv1 = nn.Conv2d(c_in, c_out, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(c_out)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(c_out)
        self.downsample = None
        if stride != 1 or c_in != c_out:
            self.downsample = nn.Sequential(nn.Conv2d(c_in, c_out, 1, stride, bias=False), nn.BatchNorm2d(c_out))

    def forward(self, x):
        idt = x if self.downsample is None else self.downsample(x)
        return F.relu(self.bn2(self.conv2(F.relu(self.bn1(self.conv1(x))))) + idt)


class ImageEncoder(nn.Module):
    """F^I: ResNet-18 layout (torchvision names, so its state_dict loads), fc removed.
    width 64 = ResNet-18 (512-d output); output width 8 * width. (B, 3, H, W) -> (B, 8 width)."""

    def __init__(self, width: int = 64):
        super().__init__()
        self.conv1 = nn.Conv2d(3, width, 7, 2, 3, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        chans = [width, width, 2 * width, 4 * width, 8 * width]
        for i in range(4):
            setattr(self, f"layer{i + 1}", nn.Sequential(
                BasicBlock(chans[i], chans[i + 1], 1 if i == 0 else 2), BasicBlock(chans[i + 1], chans[i + 1], 1)))
        self.out_dims = 8 * width

    def forward(self, img):
        h = F.max_pool2d(F.relu(self.bn1(self.conv1(img))), 3, 2, 1)
        h = self.layer4(self.layer3(self.layer2(self.layer1(h))))
        return h.mean((2, 3))                                 # global average pool


# %% 5. Losses: Eq. (2)-(6) prototype contrast, Eq. (7)-(12) series-image contrast ---------------------
def adaptive_tau(d: torch.Tensor, tau0: float) -> torch.Tensor:
    """Eq. (3): tau^(a,b) = tau0 + softmax_b(d^(a,b)) over the entries of anchor a's denominator in
    Eq. (4): the 2G - 1 other views, with the positive's distance set to -inf (so positives get
    exactly tau0). d (B, 2G, 2G) view distances -> tau (B, 2G, 2G); the self entry gets tau0 (unused).
    With G = 1 a row has no negatives and every tau is tau0."""
    n = d.size(-1)
    G = n // 2
    eye = torch.eye(n, dtype=torch.bool, device=d.device)
    pos = eye.roll(G, dims=1)                                 # positive of view k is k +/- G
    neg = ~eye & ~pos
    e = torch.exp(d - d.masked_fill(~neg, float("-inf")).amax(-1, keepdim=True).nan_to_num(0, 0, 0))
    e = e * neg                                               # positive: d = -inf -> 0; self: outside
    return tau0 + e / e.sum(-1, keepdim=True).clamp_min(1e-30)   # farther view -> larger tau


def intra_prototype_loss(v: torch.Tensor, tau: torch.Tensor) -> torch.Tensor:
    """Eq. (4): for each sample i and anchor view a (all 2G views, deviation 2), -log of
    exp(s_pos) / sum over the 2G - 1 other views b of exp(s^(a,b)), with s^(a,b) = v_a . v_b / tau^(a,b)
    and the positive = the same augmentation in the other view. v (B, 2G, J), tau (B, 2G, 2G).
    Mean over the 2G B anchors."""
    B, n, _ = v.shape
    s = v @ v.transpose(1, 2) / tau                           # (B, 2G, 2G)
    s = s.masked_fill(torch.eye(n, dtype=torch.bool, device=v.device), float("-inf"))  # b != a
    pos = (torch.arange(n, device=v.device) + n // 2) % n     # positive of k is k +/- G
    return F.cross_entropy(s.reshape(B * n, n), pos.repeat(B))


def inter_prototype_loss(z1: torch.Tensor, z2: torch.Tensor, tau: float = 1.0) -> torch.Tensor:
    """Eq. (5): NT-Xent over the 2B prototypes, raw dot products / tau; z_i's positive is z~_i, the
    other 2B - 2 prototypes are negatives; anchors from both views, mean (deviation 2). (B, J) each."""
    B = z1.size(0)
    z = torch.cat([z1, z2])                                   # (2B, J)
    s = (z @ z.T / tau).fill_diagonal_(float("-inf"))         # 1[i != j]: self excluded
    pos = (torch.arange(2 * B, device=z.device) + B) % (2 * B)   # positive of i is i +/- B
    return F.cross_entropy(s, pos)


def series_image_loss(u: torch.Tensor, v: torch.Tensor, tau: float) -> torch.Tensor:
    """Eq. (7)-(8): image u_i against all series v_j (l^{I-S}) and series v_i against all images u_j
    (l^{S-I}), cosine similarity / tau, positive on the diagonal; the mean of the 2B terms."""
    u, v = F.normalize(u, dim=-1), F.normalize(v, dim=-1)
    s = u @ v.T / tau                                         # (B, B): s_ij = sim(u_i, v_j) / tau
    target = torch.arange(len(u), device=u.device)
    return (F.cross_entropy(s, target) + F.cross_entropy(s.T, target)) / 2


def geodesic_mixup(u: torch.Tensor, v: torch.Tensor, lam) -> torch.Tensor:
    """Eq. (9): m = u sin(lam theta) / sin(theta) + v sin((1 - lam) theta) / sin(theta), theta = acos(u . v),
    on the unit sphere: lam = 1 gives u, lam = 0 gives v, the angle to v is lam theta. Guards
    (deviation 5): unit inputs, cos clamped, normalised lerp when theta < 1e-2, output renormalised."""
    u, v = F.normalize(u, dim=-1), F.normalize(v, dim=-1)
    lam = torch.as_tensor(lam, dtype=u.dtype, device=u.device)
    lam = lam[..., None] if lam.dim() == u.dim() - 1 else lam
    cos = (u * v).sum(-1, keepdim=True).clamp(-1 + 1e-6, 1 - 1e-6)
    theta = torch.acos(cos)
    slerp = (u * torch.sin(lam * theta) + v * torch.sin((1 - lam) * theta)) / torch.sin(theta)
    lerp = lam * u + (1 - lam) * v
    return F.normalize(torch.where(theta < 1e-2, lerp, slerp), dim=-1)


def mixup_loss(u: torch.Tensor, v: torch.Tensor, m: torch.Tensor, tau: float) -> torch.Tensor:
    """Eq. (10)-(11): image anchor u_i (l^{I-mix}) and series anchor v_i (l^{S-mix}) against the mixes
    m_j of the batch, with the positive sim(u_i, v_i) in place of the anchor's own mix m_i
    (deviation 4). Cosine / tau; mean of the 2B terms."""
    u, v, m = (F.normalize(a, dim=-1) for a in (u, v, m))
    eye = torch.eye(len(u), dtype=torch.bool, device=u.device)
    pos = (u * v).sum(-1) / tau                               # (B,) sim(u_i, v_i) / tau
    s_img = torch.where(eye, pos.diag_embed(), u @ m.T / tau)  # (B, B) anchor u_i, mixes m_j
    s_ser = torch.where(eye, pos.diag_embed(), v @ m.T / tau)  # (B, B) anchor v_i
    target = torch.arange(len(u), device=u.device)
    return (F.cross_entropy(s_img, target) + F.cross_entropy(s_ser, target)) / 2


class AimTS(nn.Module):
    """Everything pre-training trains: F^TS, F^I and the heads P^pro (prototype side), P^TS and P^I
    (series-image side). forward() computes every loss term of one batch, so one DDP forward
    covers the whole step."""

    def __init__(self, args: Args):
        super().__init__()
        D, J = args.repr_dims, args.proj_dims
        self.encoder = Encoder(D, args.hidden_dims, args.depth, args.dropout)
        self.image_encoder = ImageEncoder(args.image_width)
        self.proj_pro = head(D, J, args.dropout)              # P^TS of Eq. (2)-(5)
        self.proj_ts = head(D, J, args.dropout)               # P^TS of Eq. (7)-(11): v
        self.proj_img = head(self.image_encoder.out_dims, J, args.dropout)   # u
        self.args = args

    def forward(self, x, views, img, lam, phase: str) -> dict:
        """x (B, T, M) originals (NaN allowed), views (2G, B, T, M), img (B, 3, H, W), lam (B,).
        The terms --loss-terms asks for; in the 'warmup' phase full AimTS trains L_SI only (an
        ablation row trains its own terms in every phase, deviation 9). -> {term: scalar}."""
        a, B = self.args, x.size(0)
        n_views = views.size(0)
        terms = "si" if (phase == "warmup" and a.loss_terms == "full") else a.loss_terms
        want_proto = terms in ("full", "proto", "inter")
        want_si = terms in ("full", "si", "naive_si")
        xs = [torch.nan_to_num(x)] + ([views.flatten(0, 1)] if want_proto else [])
        r = instance_repr(self.encoder(torch.cat(xs)))        # ((1 + 2G) B, D): one encoder call
        out = {}
        if want_proto:
            rv = r[B:].view(n_views, B, -1)                   # (2G, B, D) r_{i,k}, then r~_{i,k}
            G = n_views // 2
            z1 = self.proj_pro(rv[:G].mean(0))                # Eq. (2): z_i = P(mean_k r_{i,k})
            z2 = self.proj_pro(rv[G:].mean(0))                # Eq. (2): z~_i
            out["inter"] = inter_prototype_loss(z1, z2)       # Eq. (5)
            if terms != "inter":
                vv = self.proj_pro(rv.flatten(0, 1)).view(n_views, B, -1).transpose(0, 1)  # (B, 2G, J)
                tau = adaptive_tau(view_distances(views), a.tau0)                        # Eq. (3)
                out["intra"] = intra_prototype_loss(vv, tau)                             # Eq. (4)
                out["proto"] = a.alpha * out["inter"] + (1 - a.alpha) * out["intra"]     # Eq. (6)
        if want_si:
            u = self.proj_img(self.image_encoder(img))        # (B, J) image; each loss normalises
            v = self.proj_ts(r[:B])                           # (B, J) series
            out["naive"] = series_image_loss(u, v, a.tau_si)                  # Eq. (7)-(8)
            if terms != "naive_si":
                out["mix"] = mixup_loss(u, v, geodesic_mixup(u, v, lam), a.tau_si)   # Eq. (9)-(11)
                out["si"] = a.beta * out["naive"] + (1 - a.beta) * out["mix"]        # Eq. (12)
        # Eq. (1): L = L_proto + L_SI (or the single term of an ablation row)
        out["loss"] = {"full": lambda: out["proto"] + out["si"], "proto": lambda: out["proto"],
                       "inter": lambda: out["inter"], "naive_si": lambda: out["naive"],
                       "si": lambda: out["si"]}[terms]()
        return out


# %% 6. Pre-training --------------------------------------------------------------------------------
@torch.no_grad()
def prepare_batch(x: torch.Tensor, lo, hi, gen, gamma: float) -> tuple:
    """Inputs of one step, drawn from the seeded generator `gen`: the 2G views (Fig. 4(a)), the
    series images (Sec. IV-C-1) and one lambda ~ Beta(gamma, gamma) per sample (Eq. 9)."""
    views = make_views(x, gen)                                # (2G, B, T, M)
    img = render(x, lo, hi)                                   # (B, 3, H, W)
    seed = int(torch.randint(2 ** 31, (1,), generator=gen, device=gen.device))
    lam = torch.from_numpy(np.random.default_rng(seed).beta(gamma, gamma, x.size(0)))
    return views, img, lam.to(x.device, x.dtype)


def pretrain_step(model: nn.Module, opt, x: torch.Tensor, lo, hi, gen, gamma: float, phase: str) -> dict:
    """One step on one batch x (B, T, M) of one source: forward, backward, optimiser step.
    Returns the detached loss terms."""
    out = model(x, *prepare_batch(x, lo, hi, gen, gamma), phase)
    opt.zero_grad(set_to_none=True)
    out["loss"].backward()
    opt.step()
    return {k: v.item() for k, v in out.items()}


# SCALE-OUT (torchrun): a single-process reader can skip these three helpers. ---------------------
def setup_distributed(device):
    """Under torchrun (WORLD_SIZE > 1): join the process group (NCCL on GPUs, gloo on CPUs), one
    GPU per process. -> (rank, world_size, device); (0, 1, device) when run plainly."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world == 1:
        return 0, 1, device
    import torch.distributed as dist
    if not dist.is_initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    if device.type == "cuda":
        device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
        torch.cuda.set_device(device)
    return dist.get_rank(), world, device


def leave_distributed(rank: int, world: int) -> bool:
    """After the part that runs in every process (pre-training): leave the process group. Fine-tuning,
    evaluation and results belong to rank 0 alone. -> True for the process that goes on."""
    if world > 1:
        import torch.distributed as dist
        dist.destroy_process_group()
        if rank == 0:
            print(f"note: {world} processes joined; fine-tuning and evaluation run in rank 0 only")
    return rank == 0


def wrap_distributed(model: nn.Module, world: int, device) -> nn.Module:
    """DistributedDataParallel: each process draws its own batches (in-batch negatives stay per
    process); backward averages the gradients over processes. Ablations leave heads unused."""
    if world == 1:
        return model
    from torch.nn.parallel import DistributedDataParallel
    return DistributedDataParallel(model, device_ids=[device] if device.type == "cuda" else None,
                                   find_unused_parameters=True)
# ---------------------------------------------------------------------------------------------------


def pretrain(sources: list, args: Args, device, rank: int = 0, world: int = 1, callback=None) -> tuple:
    """Warm-up (L_SI only) then joint phase (Eq. 1) over the pool; uniform SWA average of the TS
    encoder over the joint steps (official). -> (SWA encoder, initial encoder, history, stats):
    the initial encoder is a separate copy of the TS encoder's weights before the first step (the
    random-init baseline). Sources of fewer than two series are left out (deviation 15).
    callback(step, encoder), if given, is called before the first update (step 0) and after every
    optimiser step, with the encoder as main would evaluate it at that point (the trained encoder
    in the warm-up, the SWA average in the joint phase); it must not
    change the model or draw from the global random streams (learning curves, benchmarks/).
    """
    left_out = [s.name for s in sources if len(s.x) < 2]
    sources = [s for s in sources if len(s.x) >= 2]           # every batch holds two series or more
    if not sources:
        raise UserError("the pre-training pool has no source with two or more series "
                        f"(left out: {', '.join(left_out)}); add larger sets to --pretrain")
    if left_out and rank == 0:
        print(f"note: left out of the pool (fewer than two series, contrast needs pairs): {', '.join(left_out)}")
    torch.manual_seed(args.seed)                              # initial weights: a function of seed and sizes
    model = AimTS(args).to(device)
    init_encoder = copy.deepcopy(model.encoder)               # the random-init baseline, its own copy
    if args.image_weights:
        sd = load_checkpoint(args.image_weights)
        sd = sd.get("state_dict", sd)
        model.image_encoder.load_state_dict({k: v for k, v in sd.items() if not k.startswith("fc.")})
    if args.freeze_image:
        model.image_encoder.requires_grad_(False)
    net = wrap_distributed(model, world, device)              # SCALE-OUT: identity when world = 1
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=args.lr)
    swa = torch.optim.swa_utils.AveragedModel(model.encoder)
    rng = np.random.default_rng(args.seed)                    # SCALE-OUT: one batch sequence, dealt by rank
    gen = torch.Generator(device=device).manual_seed(args.seed + 1000 * rank)   # own augmentations per process
    sampler = SourceSampler([len(s.x) for s in sources], args.batch_size, rng, rank, world)
    xs = [torch.from_numpy(s.x).to(device) for s in sources]
    lims = [(torch.from_numpy(s.lo).to(device), torch.from_numpy(s.hi).to(device)) for s in sources]
    si = args.loss_terms in ("full", "si", "naive_si")      # rows without an image side: no warm-up
    phases = [("warmup", args.warmup_epochs if si else 0), ("joint", args.epochs)]
    history, t0, step = [], time.perf_counter(), 0
    per_epoch = math.ceil(sampler.per_epoch / world)          # steps of each process per pass over the pool
    steps_of = lambda ep: min(ep * per_epoch, args.max_iters) if args.max_iters else ep * per_epoch  # noqa: E731
    total = sum(steps_of(e) for _, e in phases)
    if callback is not None:
        callback(0, model.encoder)
    for phase, n_epochs in phases:
        n_steps = steps_of(n_epochs)
        for i in range(n_steps):
            s, idx = sampler.next()
            xb = xs[s][torch.from_numpy(idx).to(device)]       # (B, T, M) one source, B >= 2
            t_step = time.perf_counter()
            terms = pretrain_step(net, opt, xb, *lims[s], gen, args.gamma, phase)
            if phase == "joint":
                swa.update_parameters(model.encoder)
            step += 1
            if callback is not None:
                callback(step, swa.module if phase == "joint" else model.encoder)
            history.append({"epoch": step, "phase": phase, "source": sources[s].name,
                            "loss": terms.pop("loss"), "loss_terms": terms})
            if args.log and rank == 0 and (i % 10 == 0 or i == n_steps - 1):
                print(f"{phase:6s} " + progress_line(step, total, history[-1]["loss"], terms, len(idx),
                                                     time.perf_counter() - t_step, time.perf_counter() - t0)
                      .replace("epoch", "step", 1))
    if swa.n_averaged.item() == 0:                            # no joint step: the trained encoder
        swa.update_parameters(model.encoder)
    stats = {"pretrain_time_s": time.perf_counter() - t0, "steps": step, "steps_per_epoch": per_epoch,
             "world": world, "pool": {s.name: len(s.x) for s in sources}, "left_out": left_out}
    return swa.module, init_encoder, history, stats


# %% 7. Fine-tuning (Sec. IV-A, Fig. 3(b)) and the shared linear probe ---------------------------------
class Classifier(nn.Module):
    """F^TS + P^cls: per-variable max over time, concatenated (M D), then the official head shape
    M D -> 256 -> K (Linear, BN, ReLU, Linear, dropout on the logits)."""

    def __init__(self, encoder: Encoder, n_vars: int, n_classes: int, dropout: float = 0.1):
        super().__init__()
        self.encoder = encoder
        D = encoder.blocks[-1].conv2.out_channels
        self.head = head(n_vars * D, n_classes, dropout)

    def forward(self, x):                                     # (B, T, M)
        return self.head(self.encoder(x).amax(2).flatten(1))  # (B, K)


def finetune(encoder: Encoder, x: np.ndarray, y: np.ndarray, n_classes: int, args: Args, device,
             seed: int) -> tuple:
    """Sec. IV-A, Fig. 3(b): fine-tune a copy of the encoder and train the classifier, every parameter,
    with cross-entropy on the labelled series x (N, T, M), y (N,) (Adam, fixed epochs, the last epoch
    is the result; deviation 10). Sees no validation and no test data. -> (classifier, log per epoch)."""
    torch.manual_seed(seed)
    model = Classifier(copy.deepcopy(encoder), x.shape[2], n_classes, args.dropout).to(device)
    opt = torch.optim.Adam(model.parameters(), lr=args.ft_lr)   # encoder + head
    rng = np.random.default_rng(seed)
    xt, yt = torch.from_numpy(x).to(device), torch.from_numpy(y).to(device)
    log = []
    for ep in range(args.ft_epochs):
        model.train()
        perm, losses = rng.permutation(len(xt)), []
        for b in range(0, len(xt), args.ft_batch_size):
            idx = torch.from_numpy(perm[b:b + args.ft_batch_size]).to(device)
            if len(idx) < 2:
                continue                                       # BN needs two samples (official: skipped)
            loss = F.cross_entropy(model(xt[idx]), yt[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            losses.append(loss.item())
        log.append({"epoch": ep + 1, "train_loss": float(np.mean(losses)) if losses else float("nan")})
    return model, log


@torch.no_grad()
def accuracy(model: nn.Module, x: np.ndarray, y: np.ndarray, device, batch_size: int = 64) -> float:
    model.eval()
    pred = torch.cat([model(torch.from_numpy(x[i:i + batch_size]).to(device)).argmax(1).cpu()
                      for i in range(0, len(x), batch_size)])
    return float((pred.numpy() == y).mean())


@torch.no_grad()
def embed(net: Encoder, x: np.ndarray, batch_size: int, device) -> torch.Tensor:
    """Frozen representations for the probe, as fine-tuning pools them: eval mode, per-variable max
    over time, concatenated. x (N, T, M) -> (N, M D)."""
    was = net.training
    net.eval()
    z = [net(torch.from_numpy(x[i:i + batch_size]).to(device)).amax(2).flatten(1).cpu()
         for i in range(0, len(x), batch_size)]
    net.train(was)
    return torch.cat(z)


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


# %% 8. main ---------------------------------------------------------------------------------------
def plot_examples(source: Source, path, n: int = 3, seed: int = 0) -> None:
    """A grid: original series, its rendered image, and one view of each augmentation."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    gen = torch.Generator().manual_seed(seed)
    x = torch.from_numpy(source.x[:n])
    img = render(x, torch.from_numpy(source.lo), torch.from_numpy(source.hi))
    views = make_views(x, gen)
    cols = 2 + len(AUGMENTATIONS)
    fig, ax = plt.subplots(len(x), cols, figsize=(2 * cols, 1.7 * len(x)), squeeze=False)
    names = ["original", "image"] + [a.__name__ for a in AUGMENTATIONS]
    for i in range(len(x)):
        ax[i, 0].plot(x[i].numpy(), lw=0.8)
        ax[i, 1].imshow(img[i].permute(1, 2, 0).numpy(), interpolation="nearest")
        for k in range(len(AUGMENTATIONS)):
            ax[i, 2 + k].plot(views[k, i].numpy(), lw=0.8)
        lo_i = min(float(np.nanmin(x[i].numpy())), float(views[:, i].min()))
        hi_i = max(float(np.nanmax(x[i].numpy())), float(views[:, i].max()))
        for j in [0] + list(range(2, cols)):                  # one y-scale per row: scaling shows
            ax[i, j].set_ylim(lo_i - 0.05 * (hi_i - lo_i), hi_i + 0.05 * (hi_i - lo_i))
        for j in range(cols):
            ax[i, j].set_xticks([])
            ax[i, j].set_yticks([])
            if i == 0:
                ax[0, j].set_title(names[j], fontsize=8)
    fig.suptitle(f"{source.name}: series, its image (Sec. IV-C-1), augmented views (Sec. V-A-4)", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def load_target(args: Args):
    """Target dataset: its whole training split and its test split, with a per-variable z-score from
    the training split's statistics (deviation 10) -> (ds, x_train, x_test) as (N, T, M) arrays.
    A release's own validation split (TF-C) is not used; nothing is carved out of train here."""
    ds = data.standardize(data.load_dataset(args.dataset, data_dir=args.data_dir or None, val_fraction=0.0,
                                            seed=args.seed), per="channel")
    tr = lambda a: np.ascontiguousarray(np.nan_to_num(a).transpose(0, 2, 1)).astype(np.float32)  # noqa: E731
    return ds, tr(ds.X_train), tr(ds.X_test)


def labelled_set(x: np.ndarray, y: np.ndarray, args: Args) -> tuple:
    """The labels fine-tuning and the probes see, all from the training split: all of it, or with
    --few-shot its per-class fraction (Table V, deviation 11); and which of them the probe holds
    out to choose its C (a stratified --val-fraction, data.py's rule). -> (x, y, held-out mask)."""
    if args.few_shot > 0:
        keep = few_shot_indices(y, args.few_shot, args.seed)
        x, y = x[keep], y[keep]
    held = np.zeros(len(y), dtype=bool)
    held[data.stratified_split(y, args.val_fraction, args.seed)[1]] = True
    return x, y, held


def final_evaluation(classifiers: dict, probes: dict, x_lab, y_lab, held, x_te, y_te, device) -> tuple:
    """The one step that reads the test split. classifiers: name -> fine-tuned Classifier, scored on
    test. probes: name -> frozen encoder for the shared linear probe, which fits on the labelled
    series, chooses C on the held-out part of them (before it looks at test; C = 1 when either part
    is empty) and refits on all of them. -> (selection: C and validation accuracy per probe,
    eval: test metrics)."""
    selection, ev = {}, {}
    for name, model in classifiers.items():
        ev[name] = accuracy(model, x_te, y_te, device)
    fit = ~held if held.any() and not held.all() else np.ones(len(y_lab), dtype=bool)
    val = held if held.any() and not held.all() else np.zeros(len(y_lab), dtype=bool)
    for name, net in probes.items():
        z_lab, z_te = embed(net, x_lab, 64, device), embed(net, x_te, 64, device)
        r = linear_eval(z_lab[fit], y_lab[fit], z_lab[val], y_lab[val], z_te, y_te)
        selection[f"{name}_C"], selection[f"{name}_val_accuracy"] = r["C"], r["val_accuracy"]
        ev[f"{name}_accuracy"], ev[f"{name}_macro_f1"] = r["accuracy"], r["macro_f1"]
    return selection, ev


def load_encoder(args: Args, device) -> tuple:
    """--load: the pre-trained TS encoder of an earlier run and its random-init baseline, both built
    from the checkpoint's own sizes. -> (encoder, initial encoder, note). A checkpoint without
    init_state_dict (written before it was saved) gets the initial weights rebuilt the way pretrain
    builds them (torch seeded with the checkpoint's seed, then the encoder first), and a note."""
    ck = load_checkpoint(args.load, map_location="cpu")
    a = ck.get("args") or {}
    sizes = {k: a.get(k, getattr(args, k)) for k in ("repr_dims", "hidden_dims", "depth", "dropout")}
    note = ""
    try:
        encoder = Encoder(**sizes)
        encoder.load_state_dict(ck["state_dict"])
        if "init_state_dict" in ck:
            init = Encoder(**sizes)
            init.load_state_dict(ck["init_state_dict"])
        else:
            torch.manual_seed(a.get("seed", args.seed))        # as pretrain: seed, then AimTS builds F^TS first
            init = Encoder(**sizes)
            note = (f"{args.load} has no init_state_dict (an older checkpoint): the random-init baseline is "
                    f"rebuilt as pre-training built it (seed {a.get('seed', args.seed)}, the checkpoint's sizes)")
    except (RuntimeError, KeyError) as e:
        raise UserError(f"--load {args.load}: not an aimts encoder checkpoint ({str(e)[:120]})") from None
    return encoder.to(device), init.to(device), note


def check_args(args: Args) -> None:
    if args.loss_terms not in LOSS_TERMS:
        raise UserError(f"--loss-terms {args.loss_terms!r}: choose one of {', '.join(LOSS_TERMS)}")
    if not 0 <= args.few_shot < 1:
        raise UserError(f"--few-shot {args.few_shot}: a fraction of train in (0, 1), e.g. 0.05; 0 = all of train")
    if not 0 <= args.val_fraction < 1:
        raise UserError(f"--val-fraction {args.val_fraction}: a fraction in [0, 1), e.g. 0.2")
    if args.batch_size < 2 or args.ft_batch_size < 2:
        raise UserError("--batch-size and --ft-batch-size must be at least 2 (contrast and BatchNorm need pairs)")
    for name in ("repr_dims", "hidden_dims", "proj_dims", "image_width"):
        if getattr(args, name) < 1:
            raise UserError(f"--{name.replace('_', '-')} must be a positive integer")
    if args.load and not os.path.exists(args.load):
        raise UserError(f"--load {args.load}: no such file (an encoder.pt written by --save-model)")
    if not (0 <= args.alpha <= 1 and 0 <= args.beta <= 1) or args.gamma <= 0 or args.tau_si <= 0:
        raise UserError("need 0 <= alpha, beta <= 1, gamma > 0 and tau-si > 0")


def main(args: Args) -> dict:
    # BOILERPLATE (same in every method file): CPU settings, seeding, device, data
    setup_torch(threads=args.threads or None)
    set_seed(args.seed)
    if args.paper_sizes:                                      # Sec. V-A-3 and the official scripts
        args = dataclasses.replace(args, repr_dims=512, hidden_dims=64, depth=10, image_width=64,
                                   epochs=2, max_iters=0)
    check_args(args)
    device = get_device(args.device)
    rank, world, device = setup_distributed(device)          # SCALE-OUT: (0, 1, device) when plain
    if args.load and not leave_distributed(rank, world):     # SCALE-OUT: nothing to share, rank 0 goes on
        return {}
    ds, x_tr, x_te = load_target(args)
    x_lab, y_lab, held = labelled_set(x_tr, ds.y_train, args)
    y_te = ds.y_test
    if len(x_lab) < 2:
        raise UserError(f"{ds.name}: {len(x_lab)} labelled training series after --few-shot; need 2")
    if rank == 0:
        print(f"[{METHOD}] target {ds.name} seed={args.seed} device={device} x (N, M, T) = "
              f"({len(x_lab)}, {x_lab.shape[2]}, {x_lab.shape[1]}) fine-tune of {len(x_tr)} train "
              f"({int(held.sum())} of them choose the probe's C), {len(x_te)} test, {ds.n_classes} classes"
              + (f", few-shot {args.few_shot:g}" if args.few_shot else ""))

    # METHOD: pre-train on the pool (labels unused, TRAIN files only) or load an encoder
    history, stats, note = [], {}, ""
    if args.load:
        encoder, init_encoder, note = load_encoder(args, device)
        print(f"loaded encoder from {args.load}" + (f"\nnote: {note}" if note else ""))
    else:
        names = pool_names(args.pretrain, ds.name)
        if not names:
            raise UserError(f"--pretrain {args.pretrain!r} leaves no pre-training data (the target is left out); "
                            "name other datasets, or pass --load")
        sources = load_pool(names, args.data_dir)
        if rank == 0:
            print(f"pool: {', '.join(f'{s.name} {s.x.shape[0]}x{s.x.shape[2]}x{s.x.shape[1]}' for s in sources)} (N x M x T)")
        encoder, init_encoder, history, stats = pretrain(sources, args, device, rank, world)
        if not leave_distributed(rank, world):                # SCALE-OUT: rank 0 alone goes on
            return {}
        print(f"pre-trained {stats['steps']} steps in {stats['pretrain_time_s']:.1f} s")

    # Fine-tuning (the whole network, the labelled training series only), then the one final evaluation
    t0 = time.perf_counter()
    classifiers, logs = {}, {}                                # eval key -> fine-tuned classifier; training logs
    classifiers["accuracy"], logs["pretrained"] = finetune(encoder, x_lab, y_lab, ds.n_classes, args, device, args.seed)
    if args.scratch:                                          # same network from its initial weights
        classifiers["scratch_accuracy"], logs["scratch"] = finetune(init_encoder, x_lab, y_lab, ds.n_classes,
                                                                    args, device, args.seed)
    probes = {"probe": encoder, "random_init_probe": init_encoder} if args.probe else {}
    finetune_time = time.perf_counter() - t0
    selection, ev = final_evaluation(classifiers, probes, x_lab, y_lab, held, x_te, y_te, device)
    selection.update(finetune_epoch=args.ft_epochs, finetune_val_log=[])       # fixed, nothing measured on
    if args.scratch:                                                         # validation (deviation 10)
        selection.update(scratch_finetune_epoch=args.ft_epochs)
    line = f"fine-tune | acc {100 * ev['accuracy']:.1f}"
    if args.scratch:
        line += f" | from scratch {100 * ev['scratch_accuracy']:.1f}"
    if args.probe:
        line += (f" | linear probe {100 * ev['probe_accuracy']:.1f} "
                 f"(random-init {100 * ev['random_init_probe_accuracy']:.1f})")
    print(line)

    run_dir = make_run_dir(args.out_dir, ds.name, METHOD, args.seed)
    res = write_results(run_dir, METHOD, ds.name, args.seed, args, history, ev,
                        stats.get("pretrain_time_s", 0.0) + finetune_time, device,
                        extra={"selection": selection, "label_free": True, "label_note": "",
                               "pretrain": stats, "finetune_log": logs, "finetune_time_s": finetune_time,
                               "n_labelled": len(y_lab), "baseline_note": note})
    if history:
        plot_history(history, run_dir / "loss.png", f"AimTS pre-training for {ds.name} (x axis: step)")
        plot_examples(sources[0], run_dir / "examples.png")
    if args.save_model and history:
        save_checkpoint(run_dir / "encoder.pt", encoder.state_dict(), args,
                        extra={"init_state_dict": init_encoder.state_dict()})
    print(f"saved {run_dir / 'results.json'}")
    res["run_dir"] = str(run_dir)
    return res


if __name__ == "__main__":
    cli(main, Args)
