"""
TS2Vec with the hierarchical contrastive loss, and with the Adaptive Resolution Loss.

  TS2Vec: Towards Universal Representation of Time Series. Yue, Wang, Duan, Yang, Huang, Tong,
    Xu, AAAI 2022. Paper: https://arxiv.org/abs/2106.10466  Official code:
    https://github.com/yuezhihan/ts2vec @ b0088e1
  Adaptive Resolution Loss: An Efficient and Effective Loss for Time Series Hierarchical
    Contrastive Self-Supervised Learning Framework. Garcia, Perez, Gao, 2025.
    Paper: https://arxiv.org/abs/2502.10567 (equation numbers Eq. (1)-(7) and appendix B follow
    this paper; its Eq. (1)-(4) restate TS2Vec's loss). No official code.

Read top to bottom next to the two papers:
  1. Args ............. TS2Vec defaults (train.py); preset paper_adaptive = App. D.4
  2. Data ............. data.load_dataset() gives x (N, C, T); this file works in (N, T, C), as TS2Vec
  3. Augmentations .... TS2Vec Sec. 3.2: random cropping of two overlapping views
  4. Encoder .......... TS2Vec Sec. 3.1: projection, timestamp masking, dilated convolutions
  5. Losses ........... Eq. (1)-(4) hierarchical contrastive loss; Eq. (5)-(7) adaptive loss
  6. Pre-training ..... TS2Vec fit loop: AdamW, SWA copy of the encoder, iteration rule
  7. Linear eval ...... shared protocol, identical in every method file
  8. main

Losses:
  --loss hierarchical   TS2Vec: every resolution, every step, averaged (Eq. 4).
  --loss adaptive       one resolution per epoch, drawn from softmax(loss change) (Eq. 5-7).
    --measure all       faithful default: each batch also measures every other resolution's loss
                        under no_grad (no graph, no backward), so Eq. (5) sees all of them.
    --measure probe     cheaper: all resolutions measured on the first batch of an epoch only;
                        the other batches compute the trained resolution alone.
    --measure none      speed floor, not the method: nothing measured, level drawn uniformly
                        (with --fixed-level j: one fixed resolution only).

Where we differ from the papers / official code:
  1. Eq. (3) puts alpha on the temporal term; the official code puts it on the instance term.
     We follow the code. They coincide at alpha = 0.5, the only value either paper uses.
  2. Eq. (1)-(2) are sums and Eq. (4) runs over 1 <= i < log m; the official code (and this file)
     takes means and averages over all floor(log2 T) + 1 levels, full resolution and length 1
     included. The numbers TS2Vec published come from the code.
  3. The adaptive loss trains L_j as is, without the 1/(number of levels) of Eq. (4) (the paper
     is silent; AdamW is nearly scale-invariant).
  4. Resolutions are indexed from the coarse end (level j has length in [2^j, 2^(j+1)), j = 0 is
     the length-1 level): our reading of App. B.1's "flip and shift". A crop too short for the
     drawn level trains its own finest level instead, the full crop length, which is a coarser
     level than the one drawn (the paper does not say).
  5. Eq. (5)'s softmax runs over the levels measured in this epoch that also have a previous
     value (App. B.2); carried-forward values (B.1) only serve as the previous value of a level
     that reappears. Epochs 0 and 1 have no loss change yet and draw uniformly.
  6. Evaluation: a pure-PyTorch multinomial logistic regression on max-pooled SWA-encoder
     representations (L2 strength picked on a validation split carved from train), not the
     official RBF-SVM (sklearn). On the same official encoders the two differ by 0-4 points
     (docs/ts2vec_official_anchor.md). The adaptive paper used average pooling (App. D.4); we
     report it too, as a secondary number.
  7. Pre-training uses train + validation series (labels unused), i.e. the whole official train
     split, as TS2Vec does, in an order fixed by the series' values (unlabelled_pool), so that the
     label-stratified validation carve cannot change its batches; the probe never sees test labels.
  8. UEA sets get a per-channel z-score fitted on our train split (official: on the whole train
     split); UCR sets are used as shipped. The official list of 34 UCR sets shipped without
     z-normalisation (globally z-scored there) is not replicated; none of them is benchmarked here.
  9. Splitting series longer than 2 * max_train_length into sections (only EigenWorms) is not
     implemented; the per-batch random window of max_train_length is.
  10. One seeded generator per random stream (crops and batch order: numpy; masks and dropout:
     torch; level draws: numpy), so the loss modes see identical crops. Bitwise parity with the
     official code is not a goal; statistical parity is.
  11. Eq. (1)-(2) take their anchors from view 1 (r_i,t against r'_i,t). The official code, and
     this file, use the anchors of both views: the loss is the mean over the 2B (instance) or 2T
     (temporal) anchors, each against its counterpart in the other view. This makes the loss
     symmetric in the two views; both papers' published numbers come from the code.

Run:  python3 ts2vec_adaptive.py --dataset GunPoint --loss hierarchical
      python3 ts2vec_adaptive.py --dataset ACSF1 --loss adaptive --measure probe
"""
from __future__ import annotations

import copy
import math
import time
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

import data
from common import (UserError, arg, cli, get_device, make_run_dir, plot_history, progress_line,
                    save_checkpoint, set_seed, setup_torch, write_results)

METHOD = "ts2vec_adaptive"
PRESETS = {"ts2vec": (320, 10), "paper_adaptive": (16, 2)}   # name -> (output_dims K, depth)


# %% 1. Args ----------------------------------------------------------------------------------
@dataclass
class Args:
    """TS2Vec pre-training (hierarchical or adaptive resolution loss) + linear evaluation."""
    dataset: str = arg("GunPoint", "dataset name, see data.py")
    data_dir: str = arg("", "data root; '' = data.py default (env TS_DATA_DIR)")
    loss: str = arg("adaptive", "hierarchical (TS2Vec, Eq. 4) | adaptive (Eq. 5-7)")
    measure: str = arg("all", "adaptive: how untrained levels' losses are measured: all (every "
                       "batch, faithful) | probe (first batch of each epoch) | none (speed floor)")
    fixed_level: int = arg(-1, "train only this coarse-indexed level (ablation, speed floor); -1 off")
    preset: str = arg("ts2vec", "ts2vec (K=320, depth 10) | paper_adaptive (K=16, depth 2, App. D.4)")
    output_dims: int = arg(0, "K, representation width; 0 = from --preset")
    depth: int = arg(0, "number of hidden dilated conv blocks; 0 = from --preset")
    hidden_dims: int = arg(64, "encoder width (TS2Vec default 64)")
    alpha: float = arg(0.5, "weight of the instance term (Eq. 3; see deviation 1)")
    temporal_unit: int = arg(0, "levels finer than this get no temporal term (TS2Vec default 0)")
    mask_p: float = arg(0.5, "probability of keeping a timestamp (binomial mask, TS2Vec Sec. 3.2)")
    dropout: float = arg(0.1, "dropout on the encoder output (official code)")
    max_train_length: int = arg(3000, "random window of this length per batch if series are longer")
    iters: int = arg(0, "optimiser steps; 0 = TS2Vec rule (200 if N*T*C <= 100,000 else 600)")
    epochs: int = arg(0, "if > 0, train this many epochs instead of --iters")
    batch_size: int = arg(8, "batch size (TS2Vec train.py: 8); min(batch, N) is used")
    lr: float = arg(1e-3, "AdamW learning rate")
    val_fraction: float = arg(0.2, "share of train carved out for the probe's validation split")
    random_init_eval: bool = arg(True, "also probe the untrained (initial) encoder")
    seed: int = arg(1, "random seed")
    threads: int = arg(0, "torch CPU threads; 0 = torch default")
    device: str = arg("auto", "auto | cpu | cuda | mps")
    out_dir: str = arg("runs", "where results.json and plots go")
    save_model: bool = arg(False, "save the SWA encoder and its random init to encoder.pt")
    log: bool = arg(True, "print one progress line per epoch")


# %% 2. Data -----------------------------------------------------------------------------------
def centerize(x: np.ndarray) -> np.ndarray:
    """Variable-length series (NaN-padded at the end): move half of the padding to the front,
    as the official fit() does before training. x (N, T, C) -> (N, T, C)."""
    observed = ~np.isnan(x).all(axis=-1)                      # (N, T)
    if observed[:, 0].all() and observed[:, -1].all():
        return x                                              # equal length: nothing to do
    lead = observed.argmax(axis=1)                            # leading NaN steps per series
    trail = observed[:, ::-1].argmax(axis=1)                  # trailing NaN steps per series
    shift = (lead + trail) // 2 - lead                        # roll so both ends get half
    return np.stack([np.roll(s, k, axis=0) for s, k in zip(x, shift)])


def unlabelled_pool(*parts: np.ndarray) -> np.ndarray:
    """Every training series (train + validation) for pre-training, in an order no label can change:
    data.py carves validation from train by a label-stratified draw, so concatenate([train, val])
    comes in a label-dependent order, and the seeded batch order would draw label-dependent batches.
    Rows are sorted by a fixed random projection of their values (NaN padding as 0) instead."""
    x = np.concatenate(parts)                                 # (N, T, C)
    flat = x.reshape(len(x), -1)                              # (N, T C), a view
    w = np.random.default_rng(0).standard_normal(flat.shape[1])   # fixed, not the run's seed
    step = max(1, 2 ** 24 // flat.shape[1])                   # float64 in chunks of ~128 MB, not a full copy
    key = np.concatenate([np.nan_to_num(flat[i:i + step].astype(np.float64)) @ w for i in range(0, len(x), step)])
    return x[np.argsort(key, kind="stable")]


def default_iters(x: np.ndarray) -> int:
    """Official train.py rule: 200 iterations if N*T*C <= 100,000, else 600."""
    return 200 if x.size <= 100_000 else 600


# %% 3. Augmentations: random cropping (TS2Vec Sec. 3.2) ---------------------------------------
def random_crop(T: int, B: int, rng: np.random.Generator, temporal_unit: int = 0):
    """Two overlapping views, drawn exactly as the official fit loop draws them.

    Returns (crop_l, (start1, len1), (start2, len2)): view k of instance b covers
    [start_k[b], start_k[b] + len_k). The overlap is the last crop_l steps of view 1 and the
    first crop_l steps of view 2; both hold the same absolute timestamps.
    """
    crop_l = int(rng.integers(2 ** (temporal_unit + 1), T + 1))    # overlap length
    crop_left = int(rng.integers(0, T - crop_l + 1))             # overlap = [left, right)
    crop_right = crop_left + crop_l
    ext_left = int(rng.integers(0, crop_left + 1))                # view 1 = [ext_left, right)
    ext_right = int(rng.integers(crop_right, T + 1))              # view 2 = [left, ext_right)
    offset = rng.integers(-ext_left, T - ext_right + 1, size=B)   # (B,) shifts both views
    return crop_l, (offset + ext_left, crop_right - ext_left), (offset + crop_left, ext_right - crop_left)


def take_per_row(x: torch.Tensor, start: np.ndarray, length: int) -> torch.Tensor:
    """x (B, T, C), start (B,) -> x[b, start[b] : start[b] + length] stacked: (B, length, C)."""
    idx = torch.as_tensor(start, device=x.device)[:, None] + torch.arange(length, device=x.device)
    return x[torch.arange(x.size(0), device=x.device)[:, None], idx]


# %% 4. Encoder (TS2Vec Sec. 3.1, Fig. 2) --------------------------------------------------------
class DilatedConv(nn.Conv1d):
    """Kernel-3 dilated convolution with 'same' zero padding (pad by `dilation` on each side),
    i.e. nn.Conv1d(c_in, c_out, 3, padding=dilation, dilation=dilation) with the same parameters,
    computed as one matrix product over the three taps. Same values (to float rounding; tested),
    but 2x faster for the whole encoder on short CPU crops: with oneDNN off, torch's dilated-conv
    path loops over samples. A tap that lands wholly in the padding (dilation >= T, common in
    the deep blocks: 2^10 = 1024) contributes zero and is skipped."""

    def __init__(self, c_in: int, c_out: int, dilation: int):
        super().__init__(c_in, c_out, 3, padding=dilation, dilation=dilation)

    def forward(self, x):                                     # x (B, c_in, T)
        T, d = x.size(-1), self.dilation[0]
        if d >= T:                                            # only the centre tap sees data
            return torch.matmul(self.weight[:, :, 1], x) + self.bias[:, None]      # (B, c_out, T)
        xp = F.pad(x, (d, d))                                 # (B, c_in, T + 2d), zero padding
        taps = torch.cat([xp[..., k * d:k * d + T] for k in range(3)], dim=1)   # (B, 3 c_in, T): x[t-d], x[t], x[t+d]
        w = self.weight.permute(0, 2, 1).reshape(self.out_channels, -1)        # (c_out, 3 c_in)
        return torch.matmul(w, taps) + self.bias[:, None]     # (B, c_out, T)


class ConvBlock(nn.Module):
    """GELU, dilated conv, GELU, dilated conv, plus a residual (1x1 conv where widths differ
    and in the final block). Kernel 3, 'same' padding: non-causal, nothing trimmed."""

    def __init__(self, c_in: int, c_out: int, dilation: int, final: bool):
        super().__init__()
        self.conv1 = DilatedConv(c_in, c_out, dilation)
        self.conv2 = DilatedConv(c_out, c_out, dilation)
        self.projector = nn.Conv1d(c_in, c_out, 1) if (c_in != c_out or final) else None

    def forward(self, x):                                     # x (B, c_in, T)
        residual = x if self.projector is None else self.projector(x)
        x = self.conv1(F.gelu(x))                             # activation before each conv
        x = self.conv2(F.gelu(x))
        return x + residual                                   # (B, c_out, T)


class Encoder(nn.Module):
    """h(x): (B, T, C_in) -> (B, T, K), one K-vector per timestamp. Receptive field of the
    default (depth 10): 1 + 4 * (2^11 - 1) = 8189 steps; paper_adaptive (depth 2): 29 steps."""

    def __init__(self, input_dims: int, output_dims: int = 320, hidden_dims: int = 64,
                 depth: int = 10, mask_p: float = 0.5, dropout: float = 0.1):
        super().__init__()
        self.mask_p = mask_p
        self.input_fc = nn.Linear(input_dims, hidden_dims)   # per-timestamp projection
        widths = [hidden_dims] * depth + [output_dims]
        self.blocks = nn.Sequential(*[
            ConvBlock(widths[i - 1] if i > 0 else hidden_dims, widths[i], dilation=2 ** i,
                      final=(i == depth)) for i in range(depth + 1)])
        self.repr_dropout = nn.Dropout(dropout)

    def forward(self, x):                                     # x (B, T, C_in), may hold NaN
        observed = ~torch.isnan(x).any(dim=-1)                # (B, T) no channel is NaN
        x = x.masked_fill(~observed[..., None], 0.0)          # new tensor: caller's x untouched
        h = self.input_fc(x)                                  # (B, T, hidden)
        keep = observed
        if self.training:                                     # timestamp masking, training only:
            keep = keep & (torch.rand(keep.shape, device=x.device) < self.mask_p)  # Bernoulli per (b, t)
        h = h.masked_fill(~keep[..., None], 0.0)              # masked latents are zeroed
        h = self.blocks(h.transpose(1, 2))                    # (B, K, T)
        return self.repr_dropout(h.transpose(1, 2))           # (B, T, K)


# %% 5. Losses: Eq. (1)-(4) hierarchical, Eq. (5)-(7) adaptive ----------------------------------
# Logits are raw dot products: no normalisation, no temperature (TS2Vec). Each loss is written
# the cheaper way: build the similarity matrix once, set the diagonal (an anchor with itself) to
# -inf, and take cross-entropy against the positive. The official code instead cuts the
# diagonal out with a lower/upper-triangle shift, which copies the B x 2T x 2T matrix twice more;
# the values are identical (tests/test_ts2vec_adaptive.py checks both) and forward+backward is
# about 2x faster on long crops.

def instance_contrastive_loss(z1: torch.Tensor, z2: torch.Tensor) -> torch.Tensor:
    """Eq. (2) (TS2Vec Eq. 2): at each timestamp, every instance of BOTH views is an anchor (the
    paper's Eq. (2) anchors view 1 only; deviation 11): instance i of one view against the same
    instance in the other view, with the other 2B - 2 vectors of both views as negatives; mean
    over the T * 2B anchors."""
    B, T = z1.size(0), z1.size(1)
    if B == 1:
        return z1.new_zeros(())                               # no negatives
    z = torch.cat([z1, z2], dim=0).transpose(0, 1)            # (T, 2B, K)
    sim = z @ z.transpose(1, 2)                               # (T, 2B, 2B), d_i,t . d_j,t
    sim.diagonal(dim1=1, dim2=2).fill_(float("-inf"))         # 1[i != j]: self excluded
    pos = (torch.arange(2 * B, device=z.device) + B) % (2 * B)  # positive of i is i +/- B
    # Eq. (2): -log exp(d_i,t . d'_i,t) / sum_j (...), mean over T * 2B anchors
    return F.cross_entropy(sim.reshape(T * 2 * B, 2 * B), pos.repeat(T))


def temporal_contrastive_loss(z1: torch.Tensor, z2: torch.Tensor) -> torch.Tensor:
    """Eq. (1) (TS2Vec Eq. 1): for each instance, every timestamp of BOTH views is an anchor (the
    paper's Eq. (1) anchors view 1 only; deviation 11): timestamp t of one view against the same
    timestamp in the other view, with the other 2T - 2 timestamps of both views as negatives; mean
    over the B * 2T anchors."""
    B, T = z1.size(0), z1.size(1)
    if T == 1:
        return z1.new_zeros(())                               # no negatives
    z = torch.cat([z1, z2], dim=1)                            # (B, 2T, K)
    sim = z @ z.transpose(1, 2)                               # (B, 2T, 2T), d_i,t . d_i,t'
    sim.diagonal(dim1=1, dim2=2).fill_(float("-inf"))         # 1[t != t']: self excluded
    pos = (torch.arange(2 * T, device=z.device) + T) % (2 * T)  # positive of t is t +/- T
    # Eq. (1): -log exp(d_i,t . d'_i,t) / sum_t' (...), mean over B * 2T anchors
    return F.cross_entropy(sim.reshape(B * 2 * T, 2 * T), pos.repeat(B))


def level_loss(z1, z2, alpha: float, temporal: bool) -> torch.Tensor:
    """Eq. (3), the loss at one resolution r: L_r = alpha * inst + (1 - alpha) * temp
    (alpha on the instance term as in the official code, deviation 1)."""
    loss = z1.new_zeros(())
    if alpha != 0:
        loss = loss + alpha * instance_contrastive_loss(z1, z2)
    if temporal and alpha != 1:
        loss = loss + (1 - alpha) * temporal_contrastive_loss(z1, z2)  # 0 at length 1
    return loss


def pool(z: torch.Tensor) -> torch.Tensor:
    """Next coarser resolution: max-pool over time, kernel 2, stride 2 (odd last step dropped)."""
    return F.max_pool1d(z.transpose(1, 2), kernel_size=2).transpose(1, 2)   # (B, T // 2, K)


def n_levels(T: int) -> int:
    """Number of resolutions of a length-T sequence: T, T//2, ..., 1, i.e. floor(log2 T) + 1."""
    return T.bit_length()


def hierarchical_contrastive_loss(z1, z2, alpha: float = 0.5, temporal_unit: int = 0,
                                  per_level: dict | None = None) -> torch.Tensor:
    """Eq. (4) (TS2Vec Alg. 1): mean of L_r over all resolutions, from full length down to 1.
    z1, z2 (B, T, K) are the overlapping parts of the two views. If per_level is a dict, it
    receives {coarse index j: detached L_j}; fine index d (d pools applied) is j = L - 1 - d."""
    L = n_levels(z1.size(1))
    total = z1.new_zeros(())
    for d in range(L):
        loss_d = level_loss(z1, z2, alpha, temporal=d >= temporal_unit)   # Eq. (3)
        if per_level is not None:
            per_level[L - 1 - d] = loss_d.detach()
        total = total + loss_d
        if d < L - 1:
            z1, z2 = pool(z1), pool(z2)                       # (B, T / 2^(d+1), K)
    return total / L                                          # Eq. (4), as a mean (deviation 2)


def adaptive_resolution_loss(z1, z2, level: int, alpha: float = 0.5, temporal_unit: int = 0,
                             measure: bool = True):
    """Eq. (7): L^a = L_r', the loss of the one chosen resolution r' (coarse index `level`).

    Returns (loss with grad, trained level, {j: L_j as a 0-d detached tensor}). With measure=True every other
    resolution is measured too, inside no_grad on detached tensors: they build no graph, keep no
    B x 2T x 2T activations and get no backward pass; this is the faithful reading of Fig. 1 and
    Eq. (5), which score every resolution every epoch. The trained level's value is reused as its
    measurement, so no level is computed twice.
    """
    L = n_levels(z1.size(1))
    level = min(level, L - 1)        # a crop too short for the drawn level trains its own finest level
    d_star = L - 1 - level                                    # fine index of the trained level
    measured = {}
    for d in range(d_star):                                   # finer than the trained level
        if measure:
            with torch.no_grad():
                measured[L - 1 - d] = level_loss(z1.detach(), z2.detach(), alpha,
                                                 d >= temporal_unit)
        z1, z2 = pool(z1), pool(z2)                           # pooling keeps grad: cheap
    loss = level_loss(z1, z2, alpha, d_star >= temporal_unit)  # Eq. (7), with grad
    measured[level] = loss.detach()
    if measure:
        with torch.no_grad():                                 # coarser than the trained level
            z1, z2 = z1.detach(), z2.detach()
            for d in range(d_star + 1, L):
                z1, z2 = pool(z1), pool(z2)
                measured[L - 1 - d] = level_loss(z1, z2, alpha, d >= temporal_unit)
    return loss, level, measured


def resolution_scores(prev: dict, cur: dict) -> dict:
    """Eq. (5): s_i = exp(L_i,e - L_i,e-1) / sum_{r in D} exp(L_r,e - L_r,e-1), no temperature.
    D = levels measured in epoch e (cur) that have a previous value (prev, possibly carried
    forward); absent levels get no score (App. B.2). Returns {j: s_j}, empty if D is empty."""
    D = sorted(j for j in cur if j in prev)
    if not D:
        return {}
    delta = torch.tensor([cur[j] - prev[j] for j in D], dtype=torch.float64)
    s = torch.softmax(delta, dim=0)                           # loss went up -> more probability
    return {j: float(p) for j, p in zip(D, s)}


def sample_level(scores: dict, rng: np.random.Generator) -> int:
    """Eq. (6): r' ~ Multinomial(s), one draw."""
    levels = list(scores)
    p = np.array([scores[j] for j in levels], dtype=np.float64)
    return int(levels[rng.choice(len(levels), p=p / p.sum())])


class ResolutionSampler:
    """Epoch bookkeeping of App. B: aligned per-level means, carry-forward, score, draw."""

    def __init__(self, max_levels: int, rng: np.random.Generator, fixed_level: int = -1):
        self.R, self.rng, self.fixed = max_levels, rng, fixed_level
        self.last: dict = {}                                  # j -> last recorded epoch mean (B.1)
        self.sums: dict = {}
        self.counts: dict = {}
        self.level = self._draw({})                           # epoch 0: nothing measured yet

    def _draw(self, scores: dict) -> int:
        if self.fixed >= 0:
            return self.fixed
        if not scores:                                        # epochs 0, 1: no loss change yet
            return int(self.rng.integers(self.R))
        return sample_level(scores, self.rng)                 # Eq. (6)

    def record(self, measured: dict) -> None:
        """One batch's {j: float L_j}; j is already aligned (coarse index), so no shift is needed."""
        for j, v in measured.items():
            self.sums[j] = self.sums.get(j, 0.0) + v
            self.counts[j] = self.counts.get(j, 0) + 1

    def end_epoch(self):
        """Epoch means, Eq. (5) scores, carry-forward, next level (Eq. 6). Returns (means, scores)."""
        cur = {j: self.sums[j] / self.counts[j] for j in sorted(self.sums)}
        scores = resolution_scores(self.last, cur)            # Eq. (5)
        self.last.update(cur)                                 # absent levels keep their last value
        self.sums, self.counts = {}, {}
        self.level = self._draw(scores)                       # trained in the next epoch (Eq. 7)
        return cur, scores


# %% 6. Pre-training -----------------------------------------------------------------------------
def pretrain(x: np.ndarray, args: Args, device, log=print, callback=None):
    """TS2Vec fit loop on x (N, T, C). Returns (SWA encoder, initial encoder, history, stats).
    callback(step, encoder), if given, is called before the first update (step 0) and after every
    optimiser step, with the encoder as main would evaluate it at that point (the SWA average); it must not
    change the model or draw from the global random streams (learning curves, benchmarks/).
    """
    K, depth = PRESETS[args.preset]
    net = Encoder(x.shape[-1], args.output_dims or K, args.hidden_dims, args.depth or depth,
                  args.mask_p, args.dropout).to(device)
    init_net = copy.deepcopy(net)                             # the random-init baseline
    swa = torch.optim.swa_utils.AveragedModel(net)            # equal-weight running average
    swa.update_parameters(net)                                # the average starts at the init
    opt = torch.optim.AdamW(net.parameters(), lr=args.lr)
    rng = np.random.default_rng(args.seed)                    # batch order + crops (deviation 10)
    sampler = ResolutionSampler(n_levels(min(x.shape[1], args.max_train_length)),
                                np.random.default_rng(args.seed + 1), args.fixed_level)

    rule_iters = default_iters(x)                             # on the raw array, as the official fit()
    x = centerize(x)
    x = x[~np.isnan(x).all(axis=(1, 2))]                      # drop all-NaN series
    N = len(x)
    bs = min(args.batch_size, N)
    per_epoch = N // bs                                       # drop_last, as the official loader
    n_iters = args.epochs * per_epoch if args.epochs > 0 else (args.iters or rule_iters)
    n_epochs = math.ceil(n_iters / per_epoch)
    xt = torch.from_numpy(x).float().to(device)               # (N, T, C)
    adaptive = args.loss == "adaptive"
    history, epoch_times, steps = [], [], 0
    t_start, cpu_start = time.perf_counter(), time.process_time()
    if callback is not None:
        callback(0, swa.module)
    for epoch in range(n_epochs):
        n_steps = min(per_epoch, n_iters - steps)             # the last epoch may stop at n_iters
        t_epoch, losses, hier = time.perf_counter(), [], []
        level_sums, level_counts, trained_counts = {}, {}, {}
        perm = rng.permutation(N)
        for b in range(n_steps):
            xb = xt[torch.from_numpy(perm[b * bs:(b + 1) * bs]).to(device)]   # (B, T, C)
            if xb.size(1) > args.max_train_length:            # one random window per batch
                w = int(rng.integers(xb.size(1) - args.max_train_length + 1))
                xb = xb[:, w:w + args.max_train_length]
            crop_l, (s1, n1), (s2, n2) = random_crop(xb.size(1), xb.size(0), rng, args.temporal_unit)
            z1 = net(take_per_row(xb, s1, n1))[:, -crop_l:]  # (B, crop_l, K) overlap, view 1
            z2 = net(take_per_row(xb, s2, n2))[:, :crop_l]   # (B, crop_l, K) overlap, view 2
            if adaptive:                                      # METHOD: Eq. (5)-(7)
                measure = args.measure == "all" or (args.measure == "probe" and b == 0)
                loss, trained_j, measured = adaptive_resolution_loss(
                    z1, z2, sampler.level, args.alpha, args.temporal_unit, measure)
                trained_counts[trained_j] = trained_counts.get(trained_j, 0) + 1   # < drawn if crop short
            else:                                             # TS2Vec: Eq. (4)
                measured, measure = {}, True
                loss = hierarchical_contrastive_loss(z1, z2, args.alpha, args.temporal_unit, measured)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            swa.update_parameters(net)
            steps += 1
            if callback is not None:
                callback(steps, swa.module)
            values = torch.stack([loss.detach(), *measured.values()]).tolist()   # one device sync per step
            losses.append(values[0])
            measured = dict(zip(measured, values[1:]))        # {coarse level j: float L_j}
            if adaptive and measure:
                sampler.record(measured)
            if measure:                                       # the implied hierarchical value
                hier.append(sum(measured.values()) / len(measured))
                for j, v in measured.items():
                    level_sums[j] = level_sums.get(j, 0.0) + v
                    level_counts[j] = level_counts.get(j, 0) + 1
        if n_steps < per_epoch:                               # stopped mid-epoch: not logged
            break
        trained = sampler.level                               # the level drawn for this epoch
        means, scores = sampler.end_epoch() if adaptive else (
            {j: level_sums[j] / level_counts[j] for j in sorted(level_sums)}, {})
        rec = {"epoch": epoch + 1, "loss": float(np.mean(losses)),
               "loss_terms": {"hier": float(np.mean(hier))} if hier else {},
               "level": trained if adaptive else None,
               "trained_levels": {str(j): c for j, c in sorted(trained_counts.items())},  # steps per level
               "level_losses": {str(j): v for j, v in means.items()},
               "scores": {str(j): v for j, v in scores.items()}, "iters": steps}
        history.append(rec)
        epoch_times.append(time.perf_counter() - t_epoch)
        if args.log:
            terms = dict(rec["loss_terms"], **({"level": trained} if adaptive else {}))
            log(progress_line(epoch + 1, n_epochs, rec["loss"], terms, per_epoch * bs,
                              epoch_times[-1], time.perf_counter() - t_start))
    stats = {"train_time_s": time.perf_counter() - t_start, "iters": steps,
             "train_cpu_s": time.process_time() - cpu_start,      # process CPU time, all threads
             "epochs_logged": len(history), "iters_per_epoch": per_epoch, "batch_size": bs,
             "epoch_times_s": epoch_times}
    return swa.module, init_net, history, stats


@torch.no_grad()
def embed(net: nn.Module, x: np.ndarray, batch_size: int, device) -> tuple:
    """Instance representations as TS2Vec evaluates them: encode each full series (eval mode: no
    mask, no dropout) and pool over all timestamps. x (N, T, C) -> max-pooled (N, K), avg (N, K)."""
    was_training = net.training
    net.eval()
    zmax, zavg = [], []
    for i in range(0, len(x), batch_size):
        h = net(torch.from_numpy(x[i:i + batch_size]).float().to(device))   # (B, T, K)
        zmax.append(h.amax(dim=1).cpu())                      # TS2Vec: max over the full series
        zavg.append(h.mean(dim=1).cpu())                      # adaptive paper, App. D.4
    net.train(was_training)
    return torch.cat(zmax), torch.cat(zavg)


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


# %% 8. main -------------------------------------------------------------------------------------
def plot_resolutions(history: list, path, title: str = "") -> None:
    """Which resolution was trained in each epoch (red dots), over the Eq. (5) distribution it was
    drawn from (blank: uniform cold start or unscored level), and the per-level losses
    (coarse index j: level j has 2^j to 2^(j+1) - 1 steps)."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    levels = sorted({int(j) for h in history for j in h["level_losses"]} |
                    {h["level"] for h in history if h["level"] is not None}) or [0]
    ep = [h["epoch"] for h in history]
    S = np.full((max(levels) + 1, len(history)), np.nan)     # (levels, epochs) score of level j
    for e, h in enumerate(history[:-1]):                      # scores after epoch e drew epoch e+1
        for j, s in h["scores"].items():
            S[int(j), e + 1] = s
    fig, (a1, a2) = plt.subplots(2, 1, figsize=(7, 6), sharex=True)
    if len(history):
        im = a1.imshow(S, aspect="auto", origin="lower", cmap="viridis", interpolation="nearest",
                       extent=(ep[0] - 0.5, ep[-1] + 0.5, -0.5, max(levels) + 0.5))
        fig.colorbar(im, ax=a1, label="s_j (Eq. 5)")
    trained = [(h["epoch"], h["level"]) for h in history if h["level"] is not None]
    if trained:
        a1.plot(*zip(*trained), "r.", ms=6, label="drawn level (a crop too short for it trains its own finest level)")
        a1.legend(fontsize=8, loc="upper right")
    a1.set_ylabel("level j (length ~ 2^j)")
    a1.set_title(f"{title}: level drawn per epoch (dots) over the scores it was drawn from", fontsize=9)
    colors = plt.cm.viridis(np.linspace(0, 0.9, len(levels)))
    for j, c in zip(levels, colors):
        a2.plot(ep, [h["level_losses"].get(str(j), np.nan) for h in history], lw=1, color=c, label=f"j={j}")
    a2.set_xlabel("epoch")
    a2.set_ylabel("L_j, epoch mean")
    a2.set_title("gaps: level absent from every crop of the epoch (its value is carried forward)", fontsize=8)
    a2.legend(fontsize=6, ncol=4)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(args: Args) -> dict:
    # BOILERPLATE (same in every method file): CPU settings, seeding, device, data
    setup_torch(threads=args.threads or None)                 # flush denormals, oneDNN off
    set_seed(args.seed)
    device = get_device(args.device)
    if args.loss not in ("hierarchical", "adaptive") or args.measure not in ("all", "probe", "none"):
        raise UserError(f"--loss {args.loss} / --measure {args.measure}: see --help")
    ds = data.load_dataset(args.dataset, data_dir=args.data_dir or None,
                           val_fraction=args.val_fraction, seed=args.seed)
    if ds.length < 2 ** (args.temporal_unit + 1):             # random_crop needs an overlap of 2^(unit+1)
        raise UserError(f"{ds.name}: series of length {ds.length} are too short; TS2Vec's cropping needs "
                        f"at least {2 ** (args.temporal_unit + 1)} steps (2^(temporal_unit + 1)).")
    if ds.name in data.UEA:                                   # official load_UEA: per-channel z-score
        ds = data.standardize(ds, per="channel")              # (UCR sets are used as shipped)
    x_tr, x_va, x_te = (np.ascontiguousarray(a.transpose(0, 2, 1)) for a in (ds.X_train, ds.X_val, ds.X_test))
    method = METHOD if args.loss == "adaptive" else f"{METHOD}_hierarchical"
    print(f"[{METHOD}] {ds.name} seed={args.seed} device={device} loss={args.loss}"
          f"{'/' + args.measure if args.loss == 'adaptive' else ''} preset={args.preset} | "
          f"x (N, T, C) = ({len(x_tr) + len(x_va)}, {x_tr.shape[1]}, {x_tr.shape[2]}) train+val, "
          f"{len(x_te)} test, {ds.n_classes} classes | flush-denormal on, "
          f"oneDNN {'on' if torch.backends.mkldnn.enabled else 'off'}, {torch.get_num_threads()} threads")

    # METHOD: pre-train on every training series (train + val; labels unused, deviation 7)
    net, init_net, history, stats = pretrain(unlabelled_pool(x_tr, x_va), args, device)
    full, extra = divmod(stats["iters"], stats["iters_per_epoch"])
    print(f"pre-training done: {stats['iters']} optimiser steps in {stats['train_time_s']:.1f} s = "
          f"{full} full passes over the training series in batches of {stats['batch_size']}"
          + (f", plus {extra} steps of a last pass (not logged)" if extra else "")
          + (" (TS2Vec's rule: 200 steps for small datasets, 600 for large)" if not (args.iters or args.epochs) else ""))

    # Evaluation: frozen SWA encoder, linear probe (shared protocol); the same probes on the init.
    # This is the one step that sees the test split: C is chosen on validation inside linear_eval.
    selection, ev = {}, {}
    encoders = [("", net)] + ([("random_init_", init_net)] if args.random_init_eval else [])
    for prefix, model in encoders:
        (a_tr, v_tr), (a_va, v_va), (a_te, v_te) = (embed(model, x, stats["batch_size"], device)
                                                    for x in (x_tr, x_va, x_te))
        for pool, (z_tr, z_va, z_te) in (("", (a_tr, a_va, a_te)), ("avgpool_", (v_tr, v_va, v_te))):
            r = linear_eval(z_tr, ds.y_train, z_va, ds.y_val, z_te, ds.y_test)
            selection.update({f"{prefix}{pool}probe_C": r["C"], f"{prefix}{pool}probe_val_accuracy": r["val_accuracy"]})
            tail = f"_{pool[:-1]}" if pool else ""            # max pool is the main number (deviation 6)
            ev.update({f"{prefix}accuracy{tail}": r["accuracy"], f"{prefix}macro_f1{tail}": r["macro_f1"]})
    print(f"linear eval | acc {100 * ev['accuracy']:.1f} | macro-F1 {100 * ev['macro_f1']:.1f} | "
          f"avg-pool acc {100 * ev['accuracy_avgpool']:.1f}" +
          (f" | random-init acc {100 * ev['random_init_accuracy']:.1f}" if args.random_init_eval else "") +
          f" | C {selection['probe_C']:g} (chosen on validation)")

    run_dir = make_run_dir(args.out_dir, ds.name, method, args.seed)
    res = write_results(run_dir, method, ds.name, args.seed, args, history, ev, stats["train_time_s"], device,
                        extra={"selection": selection, "label_free": True, "label_note": "", "train": stats})
    title = f"{ds.name} {args.loss} seed {args.seed}"
    plot_history(history, run_dir / "loss.png", title)
    plot_resolutions(history, run_dir / "resolution.png", title)
    if args.save_model:                                       # the evaluated SWA encoder and its own init
        save_checkpoint(run_dir / "encoder.pt", net.state_dict(), args,
                        extra={"init_state_dict": init_net.state_dict()})
    print(f"saved {run_dir / 'results.json'}")
    res["run_dir"] = str(run_dir)
    return res


if __name__ == "__main__":
    cli(main, Args)
