"""
LEAVES: Learning Views for Time-Series Data in Contrastive Learning. Han Yu, Huiyuan Yang,
  Akane Sano, arXiv 2022. Paper: https://arxiv.org/abs/2210.07340 (equation numbers follow
  arXiv v1). Official code: https://github.com/comp-well-org/LEAVES @ 955f67b (Feb 2023 "public
  push", the code that matches the arXiv paper; the repository's newest code is a later method
  with learned gates and no permutation, not this one).

Read top to bottom next to the paper:
  1. Args ............. Sec. 4 and 5.4 defaults; CPU-sized widths and epochs, paper sizes as flags
  2. Data ............. data.load_dataset() -> x (N, C, T); per-series, per-channel min-max to [0, 1];
                        pre-training reads train + val series in an order no label changes
  3. Augmentations .... Eq. (1), Sec. 3.1 and App. A: jitter, scale, TimeDis, permutation, MagW;
                        the LEAVES module (learned strengths) and the SimCLR baseline (fixed ones)
  4. Encoder .......... ResNet-18-1D (Sec. 4), projector
  5. Loss ............. Eq. (2)-(3): NT-Xent
  6. Pre-training ..... Sec. 3.2: the min-max game in one backward pass (gradient reversal)
  7. Evaluation ....... fine-tuning (Sec. 4) + the shared linear probe (identical in every file)
  8. main ............. pre-train (no label) -> choose on validation -> ONE step reads the test split

  --views leaves   LEAVES: strengths learned adversarially (max over the module, min over encoder)
  --views simclr   SimCLR baseline: the same augmentations, fixed strengths (Table 6 grid)
  --views none     supervised training from scratch (no pre-training): the same network and
                   initial weights the pre-trained run starts from

Where we differ from the paper / official code (955f67b):
  1. Order of Eq. (1): the code applies jitter, scale, TimeDis, permutation, MagW, then a
     per-channel min-max; the paper lists J, S, MW, TD, P and calls the order irrelevant. We follow
     the code.
  2. MagW is multiplicative, x * curve (the code); App. A Eq. (6) writes "X + eps_M", a typo
     (its knots are drawn around 1). k = 8 knots as App. A; the code uses 4 (--preset code).
  3. Permutation: the code's custom backward permutes the gradient with the same order instead of
     the inverse (wrong unless the permutation is its own inverse). Here the shuffle is a gather,
     whose gradient is exactly the inverse permutation. The segment-count gradient is the code's
     straight-through surrogate, d out / d n = 1 / (C L) (tested). K is clamped at >= 1; the
     paper calls K the maximum segment count, the code only initialises it there (Fig. 5 shows
     it rising above 5).
  4. TimeDis samples one set of L positions per series, shared by its channels (the code; the
     paper writes lambda in R^(N x C x L)). We resample with align_corners=True and border
     padding, so -1 and 1 are the first and last samples as Sec. 3.1.1 says; the code uses
     align_corners=False with zero padding, which pulls the edges towards 0.
  5. Temperature 0.05 (Sec. 3.2); the code's loss defaults to 0.5 and is never overridden
     (--preset code). M (mixture size) per dataset as Sec. 4 (Apnea 12, Sleep-EDF 10, PAMAP2 7,
     PTB-XL 6); the code fixes 5, and so do we for every other dataset.
  6. The projector Linear(512 -> 16) trains here; in the code it is in no optimiser and stays at
     its random init (--freeze-projector restores that). Its width 16 is the code's; the paper
     gives none. Each LEAVES parameter is in its optimiser once; the code lists them twice, so
     Adam stepped each one twice per batch.
  7. The game is one backward pass through a gradient-reversal step on the views (same gradients
     as the code's two backward passes with requires_grad toggled; tested).
  8. Fine-tuning picks its epoch on a validation split carved from train (macro-F1); the code
     picks the epoch with the best TEST macro-F1. The test split reaches one final step, after
     every choice is made (main). Cross-entropy instead of BCE on one-hot labels; no extra
     scheduler step before training. For Apnea-ECG, sensitivity is the recall of the class NAMED
     apnea and specificity that of normal (labels sort to apnea = 0; a class index would swap
     them); other two-class sets name their positive class in results.json. Fine-tuning epochs
     per dataset as Sec. 4: 30, PAMAP2 20. The SimCLR baseline uses one fixed strength
     (--simclr-sigma, default 0.03, the middle of Table 6) chosen before seeing any result; the
     paper reports the best of five strengths on the test set. (data.py keeps validation apart
     from test: TF-C Gesture ships val.pt == test.pt, so there validation is carved from train.)
  9. Encoder widths: 16/32/64/128 by default so CPU runs take minutes (--base-width 64 is the
     paper's 64/128/256/512, ~3.8M parameters); 40 pre-training epochs by default (paper: 100).
  10. The SimCLR baseline here applies the same chain as LEAVES with fixed strengths (TimeDis at
     its initial mixture), batched on the device, so the two differ only in whether strengths are
     learned. The code's baseline applies one random augmentation per sample in numpy workers
     (and its magnitude warp never runs: a misspelled name falls through to the identity).
  11. Input normalisation: per-series, per-channel min-max to [0, 1] only (the code first z-scores
     npy data over the channel axis, a bug). NaN padding of variable-length series becomes 0
     after the min-max.
  12. Convolutions have no bias (bias=False): each feeds a BatchNorm, which in training subtracts
     the batch mean, so a bias there has no effect and gets no gradient. The code's stem and block
     convolutions carry one (3,904 numbers at width 64) that stays at its random init; it shifts
     only the eval-mode output of an encoder whose running means have not absorbed it, i.e. the
     random-init baseline.
  13. Every series sends the surrogate gradient to K, also those that drew n = 1 (not permuted);
     in the code only series with n > 1 pass through its permutation function, so for K < 1.5
     (every series draws n = 1) K gets no gradient there at all.
  14. Not implemented, as in the code: App. A.2 Eq. (10) (RelaxedBernoulli, t = 0.01) served only
     a random channel flip ("rotation") that the code's forward has commented out and Eq. (1)
     does not list; TimeW (App. A.1), because Sec. 3.1.1 calls its indexing non-differentiable
     and proposes TimeDis in its place. The paper's SimCLR baseline has TimeW; ours does not
     (deviation 10).

What the chain does that the paper does not say (tested, test_leaves.py):
  - Scale is an exact no-op. Every later step is linear and shared by the channels (TimeDis
    resamples, permutation gathers, MagW multiplies) and the final per-channel min-max cancels a
    positive per-channel factor, so the view does not depend on sigma_S at all. Its gradient is
    rounding noise (~1e-16 of sigma_J's in float64), which Adam's normalised step turns into a
    random walk of about --view-lr per step: the sigma_S curve in strengths.png means nothing.
    The paper's falling sigma_S (Fig. 5) cannot come from the view; the official code's
    permutation backward (deviation 3) is not the view's derivative and does send sigma_S a
    gradient (measured: median |d/d raw_S| 0.07 against 1e-16 for a gather, same draws).
  - K reaches the loss only through MagW: the surrogate adds the same number to every step of a
    channel, which the min-max would cancel, but MagW multiplies it by a curve that varies over
    time first. With MagW at strength 0, K's gradient is 0.
  - K below 1 stays there: the clamp K >= 1 passes no gradient, so once the adversary pushes K
    under 1 (the permutation is then the identity) nothing brings it back.

Run:  python leaves.py --dataset Gesture                    # LEAVES, CPU quick look
      python leaves.py --dataset Gesture --views simclr     # fixed-strength SimCLR
      python leaves.py --dataset PTB-XL --base-width 64 --epochs 100   # paper sizes (PTB-XL: once
                                                                       # data.py has its loader)
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

METHOD = "leaves"
MIXTURES = {"Apnea-ECG": 12, "Sleep-EDF": 10, "PAMAP2": 7, "PTB-XL": 6}   # M per dataset, Sec. 4
FINETUNE_EPOCHS = {"PAMAP2": 20}                                      # Sec. 4.3; 30 elsewhere (4.1, 4.2, 4.4)
POSITIVE_CLASS = {"Apnea-ECG": "apnea"}                               # sensitivity = recall of this class (Sec. 4.1)
PRESETS = {"paper": dict(temperature=0.05, knots=8),                  # Sec. 3.2, App. A
           "code": dict(temperature=0.5, knots=4, mixtures=5)}        # official code @ 955f67b
EPS = 1e-5                                                            # epsilon in sigma = eta*sigmoid + eps
MIN_LENGTH = 16                                                       # the encoder halves T four times


# %% 1. Args ----------------------------------------------------------------------------------
@dataclass
class Args:
    """LEAVES (learned views) or SimCLR (fixed views) pre-training, then fine-tuning + linear probe."""
    dataset: str = arg("Gesture", "dataset name (see data.py) or a path to your own file")
    data_dir: str = arg("", "data root; '' = data.py default (env TS_DATA_DIR)")
    views: str = arg("leaves", "leaves (learned strengths) | simclr (fixed strengths) | none (from scratch)")
    preset: str = arg("paper", "paper (tau 0.05, MagW k=8, M per dataset) | code (tau 0.5, k=4, M=5)")
    temperature: float = arg(0.0, "tau in Eq. (3); 0 = from --preset")
    knots: int = arg(0, "MagW knots k (App. A); 0 = from --preset")
    mixtures: int = arg(0, "TimeDis mixture size M; 0 = from --preset / dataset (Sec. 4)")
    eta: float = arg(0.05, "upper bound eta of the jitter, scale and MagW strengths (Sec. 3.1.1)")
    max_segments: int = arg(5, "K, initial permutation segment count (Sec. 4)")
    simclr_sigma: float = arg(0.03, "--views simclr: fixed strength of jitter/scale/MagW (Table 6 grid)")
    base_width: int = arg(16, "ResNet-18-1D widths w, 2w, 4w, 8w (paper: 64)")
    proj_dim: int = arg(16, "projector output width (official code: 16)")
    freeze_projector: bool = arg(False, "keep the projector at its init, as the official code (bug)")
    epochs: int = arg(40, "pre-training epochs (paper: 100)")
    batch_size: int = arg(128, "pre-training and fine-tuning batch size (paper: 128)")
    lr: float = arg(1e-3, "Adam learning rate of the encoder and projector (paper: 1e-3)")
    view_lr: float = arg(1e-3, "Adam learning rate of the LEAVES parameters (paper: 1e-3)")
    finetune_epochs: int = arg(0, "fine-tuning epochs; 0 = per dataset as Sec. 4 (30; PAMAP2 20)")
    finetune_lr: float = arg(1e-3, "fine-tuning Adam learning rate, StepLR(10, 0.1) (paper)")
    label_fraction: float = arg(1.0, "share of training labels used by fine-tuning and the probe")
    val_fraction: float = arg(0.2, "share of train carved out for validation when needed")
    scratch_eval: bool = arg(True, "also fine-tune the same network from scratch (supervised row)")
    random_init_eval: bool = arg(True, "also probe the untrained (initial) encoder")
    seed: int = arg(1, "random seed")
    threads: int = arg(0, "torch CPU threads; 0 = torch default")
    device: str = arg("auto", "auto | cpu | cuda | mps")
    out_dir: str = arg("runs", "where results.json and plots go")
    save_model: bool = arg(False, "save the pre-trained encoder to encoder.pt")
    log: bool = arg(True, "print one progress line per epoch")


def resolve(args: Args, dataset: str) -> Args:
    """Fill the 0 = "from preset" fields; check the flags (a bad value is a UserError)."""
    if args.preset not in PRESETS:
        raise UserError(f"--preset {args.preset!r}: choose paper or code")
    if args.views not in ("leaves", "simclr", "none"):
        raise UserError(f"--views {args.views!r}: choose leaves, simclr or none")
    p = PRESETS[args.preset]
    a = copy.copy(args)
    a.temperature = args.temperature or p["temperature"]
    a.knots = args.knots or p["knots"]
    a.mixtures = args.mixtures or p.get("mixtures") or MIXTURES.get(dataset, 5)
    a.finetune_epochs = args.finetune_epochs or FINETUNE_EPOCHS.get(dataset, 30)
    checks = [(a.temperature > 0, "--temperature must be > 0"), (a.knots >= 2, "--knots must be >= 2"),
              (a.mixtures >= 1, "--mixtures must be >= 1"), (a.eta > 0, "--eta must be > 0"),
              (a.max_segments >= 1, "--max-segments must be >= 1"),
              (0 < a.simclr_sigma, "--simclr-sigma must be > 0"),
              (a.base_width >= 1 and a.proj_dim >= 1, "--base-width and --proj-dim must be >= 1"),
              (a.epochs >= 0 and a.finetune_epochs >= 1, "--epochs must be >= 0, --finetune-epochs >= 1 (0 = per dataset)"),
              (a.batch_size >= 2, "--batch-size must be >= 2 (contrastive pairs need a second sample)"),
              (0 < a.label_fraction <= 1, "--label-fraction must be in (0, 1]")]
    for ok, msg in checks:
        if not ok:
            raise UserError(msg)
    return a


# %% 2. Data -----------------------------------------------------------------------------------
def minmax(x, eps: float = 1e-8):
    """Per-series, per-channel min-max to [0, 1] over time (numpy or torch, (N, C, T)); a constant
    channel becomes 0. The code does this to the inputs and again to every LEAVES view."""
    if isinstance(x, np.ndarray):
        lo, hi = np.nanmin(x, axis=-1, keepdims=True), np.nanmax(x, axis=-1, keepdims=True)
        return np.nan_to_num((x - lo) / np.maximum(hi - lo, eps)).astype(np.float32)   # NaN pad -> 0
    lo, hi = x.amin(dim=-1, keepdim=True), x.amax(dim=-1, keepdim=True)
    return (x - lo) / (hi - lo).clamp_min(eps)                # (N, C, T)


def label_subset(y: np.ndarray, fraction: float, seed: int) -> np.ndarray:
    """Indices of a stratified `fraction` of the labelled training set (at least 1 per class)."""
    if fraction >= 1:
        return np.arange(len(y))
    _, held = data.stratified_split(y, fraction, seed + 20_000)
    return np.sort(held)


def unlabelled_pool(*parts: np.ndarray) -> np.ndarray:
    """Every training series (train + validation) for pre-training, in an order no label can
    change: data.py carves validation from train by a label-stratified draw, so the rows of
    concatenate([train, val]) come in a label-dependent order (and would make label-dependent
    batches). Rows are sorted by a fixed random projection of their values instead (ties only
    between identical series, whose order cannot matter)."""
    x = np.concatenate(parts)                                 # (N, C, T)
    flat = x.reshape(len(x), -1)                              # (N, C T), a view
    w = np.random.default_rng(0).standard_normal(flat.shape[1])   # fixed direction, not the run's seed
    step = max(1, 2 ** 24 // flat.shape[1])                   # float64 in chunks of ~128 MB
    key = np.concatenate([flat[i:i + step].astype(np.float64) @ w for i in range(0, len(x), step)])
    return x[np.argsort(key, kind="stable")]


# %% 3. Augmentations: Eq. (1), Sec. 3.1, App. A ------------------------------------------------
# Every augmentation takes a batch x (B, C, T) on the training device and draws its own noise per
# sample (reparameterised, App. A.2), so gradients reach the strength it is given.

def bounded(raw: torch.Tensor, eta: float) -> torch.Tensor:
    """Sec. 3.1.1: a strength bounded by eta, sigma = eta * sigmoid(raw) + eps, in [eps, eta + eps]."""
    return eta * torch.sigmoid(raw) + EPS


def jitter(x: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
    """App. A Eq. (4): x + eps_J, eps_J ~ N(0, sigma^2) per element, as sigma * n (Eq. 8)."""
    return x + sigma * torch.randn_like(x)                   # (B, C, T)


def scale(x: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
    """App. A Eq. (5): x_c * eps_S, eps_S ~ N(1, sigma^2), one factor per (series, channel)."""
    factor = 1 + sigma * torch.randn(x.shape[0], x.shape[1], 1, device=x.device, dtype=x.dtype)  # (B, C, 1)
    return x * factor


def magnitude_warp(x: torch.Tensor, sigma: torch.Tensor, knots: int) -> torch.Tensor:
    """App. A Eq. (6): k knots ~ N(1, sigma^2) per (series, channel), linearly interpolated over
    time to a smooth curve that MULTIPLIES x (deviation 2)."""
    B, C, T = x.shape
    k = 1 + sigma * torch.randn(B, C, knots, device=x.device, dtype=x.dtype)   # (B, C, k)
    curve = F.interpolate(k, size=T, mode="linear", align_corners=False)       # (B, C, T), as the code
    return x * curve


def round_ste(v: torch.Tensor) -> torch.Tensor:
    """round(v) forward, identity backward (straight-through estimator)."""
    return v + (torch.round(v) - v).detach()


def permute_segments(x: torch.Tensor, K: torch.Tensor, u: torch.Tensor | None = None,
                     rank: torch.Tensor | None = None) -> torch.Tensor:
    """App. A Eq. (7): cut each series into n equal segments and shuffle them, n in [1, K].

    n = round(1 + (K - 1) u), u ~ U(0, 1) per series (Eq. 9), rounded straight-through. Segments
    are floor(T / n) long, plus a remainder segment of T mod n steps (it can be the longest); all are
    shuffled, and all channels share the order. The shuffle is a gather along time, so x's
    gradient is exactly the inverse permutation. The gradient to n is the code's surrogate
    d out / d n = 1 / (C T) on every element (deviation 3). u, rank: fixed draws for tests.
    """
    B, C, T = x.shape
    if u is None:
        u = torch.rand(B, device=x.device, dtype=x.dtype)
    n = round_ste(1 + (K - 1) * u).clamp(1, T)               # (B,) segments, straight-through
    n_int = n.detach().long()
    L = T // n_int                                            # (B,) segment length
    t = torch.arange(T, device=x.device)
    seg = torch.minimum(t[None, :] // L[:, None], n_int[:, None])   # (B, T) segment of step t: 0..n (n = remainder)
    S = int(n_int.max()) + 1 if rank is None else rank.shape[1]
    j = torch.arange(S, device=x.device)
    lens = torch.where(j < n_int[:, None], L[:, None], 0)     # (B, S) n segments of L steps ...
    lens = torch.where(j == n_int[:, None], T - n_int[:, None] * L[:, None], lens)   # ... + remainder
    if rank is None:                                          # segment j goes to slot rank[j]
        rank = torch.rand(B, S, device=x.device).argsort(dim=1).argsort(dim=1)
    order = rank.argsort(dim=1)                               # (B, S) segments in their new order
    lens_new = lens.gather(1, order)
    start_new = torch.zeros_like(lens).scatter_(1, order, lens_new.cumsum(1) - lens_new)   # (B, S)
    dest = start_new.gather(1, seg) + t - seg * L[:, None]    # (B, T) where step t goes
    idx = torch.empty_like(dest).scatter_(1, dest, t.expand(B, T).contiguous())   # out[t] = x[idx[t]]
    out = x.gather(2, idx[:, None, :].expand(B, C, T))        # (B, C, T)
    return out + ((n - n.detach()) / (C * T))[:, None, None]  # value unchanged; carries d/dn


def resample(x: torch.Tensor, lam: torch.Tensor) -> torch.Tensor:
    """x read at positions lam (B, T) in [-1, 1] (-1 = first step, 1 = last step, Sec. 3.1.1),
    linear interpolation, shared by the channels. x (B, C, T) -> (B, C, T)."""
    grid = torch.stack([lam, torch.zeros_like(lam)], dim=-1)[:, None]       # (B, 1, T, 2): (x, y = 0)
    out = F.grid_sample(x[:, :, None, :], grid, mode="bilinear", padding_mode="border",
                        align_corners=True)                                  # deviation 4
    return out[:, :, 0, :]                                    # (B, C, T)


def mixture_sample(logits: torch.Tensor, mu: torch.Tensor, sd: torch.Tensor, shape) -> torch.Tensor:
    """Sec. 3.1.1 TimeDis: draws from sum_i phi_i N(mu_i, sd_i^2), phi = softmax(logits), with
    implicit reparameterisation gradients: an ancestral sample s (no gradient), then
    s_hat = s - (F(s) - sg F(s)) / sg p(s), F the mixture CDF and p its density (sg = stop-grad).
    s_hat equals s; d s_hat / d theta = -(dF/d theta) / p, the exact gradient of the quantile."""
    phi = torch.softmax(logits, dim=0)                        # (M,)
    with torch.no_grad():                                     # ancestral: component k ~ phi, then N(mu_k, sd_k^2)
        k = torch.searchsorted(phi.cumsum(0)[:-1].contiguous(), torch.rand(shape, device=mu.device, dtype=mu.dtype))
        s = mu[k] + sd[k] * torch.randn(shape, device=mu.device, dtype=mu.dtype)
    if not (torch.is_grad_enabled() and (logits.requires_grad or mu.requires_grad or sd.requires_grad)):
        return s                                              # no gradient wanted: the sample alone
    z = (s[..., None] - mu) / sd                              # (..., M)
    cdf = (phi * 0.5 * (1 + torch.erf(z / math.sqrt(2)))).sum(-1)            # F(s)
    pdf = (phi * torch.exp(-0.5 * z ** 2) / (sd * math.sqrt(2 * math.pi))).sum(-1)   # p(s)
    return s - (cdf - cdf.detach()) / pdf.detach()


def time_distort(x: torch.Tensor, logits, mu, sd) -> tuple[torch.Tensor, torch.Tensor]:
    """Sec. 3.1.1 TimeDis: lambda = sort(tanh(s)), s ~ mixture (B, T); x resampled at lambda.
    Where lambda is dense the signal is stretched, where sparse it is squeezed. Returns (view, lam)."""
    s = mixture_sample(logits, mu, sd, (x.shape[0], x.shape[2]))           # (B, T)
    lam = torch.tanh(s).sort(dim=1).values                    # (B, T) positions in (-1, 1), sorted
    return resample(x, lam), lam


class Leaves(nn.Module):
    """Eq. (1): x_hat = x o T_J o T_S o T_TD o T_P o T_MW, then a per-channel min-max (code order,
    deviation 1). The parameters are the augmentation strengths: 3 raw sigmas, K and the mixture
    (M logits, means, scales): 3M + 4 numbers (19 for M = 5; the paper says "20").

    fixed_sigma: the SimCLR baseline. Jitter/scale/MagW use this strength, K stays at its start
    and the mixture at its initialisation; nothing is learned (deviation 10).
    """

    def __init__(self, eta: float = 0.05, max_segments: int = 5, mixtures: int = 5, knots: int = 8,
                 fixed_sigma: float | None = None):
        super().__init__()
        self.eta, self.knots, self.fixed_sigma = eta, knots, fixed_sigma
        self.raw = nn.Parameter(torch.tensor([0.03, 0.03, 0.1]))       # jitter, scale, MagW (code init)
        self.K = nn.Parameter(torch.tensor(float(max_segments)))       # permutation segments
        self.logits = nn.Parameter(torch.ones(mixtures))               # mixture weights phi = softmax
        self.mu = nn.Parameter(torch.linspace(-0.5, 0.5, mixtures))    # mixture means
        self.sd_raw = nn.Parameter(torch.full((mixtures,), 0.7))       # scales sd = relu(sd_raw) + eps
        if fixed_sigma is not None:
            self.requires_grad_(False)

    def strengths(self) -> dict:
        """The effective strengths as tensors: sigma_J, sigma_S, sigma_M, K, and the mixture."""
        if self.fixed_sigma is not None:
            sig = torch.full((3,), self.fixed_sigma, device=self.raw.device)
        else:
            sig = bounded(self.raw, self.eta)                 # Sec. 3.1.1: bounded by eta
        return {"jitter": sig[0], "scale": sig[1], "magw": sig[2], "K": self.K.clamp(min=1.0),
                "phi": torch.softmax(self.logits, 0), "mu": self.mu, "sd": F.relu(self.sd_raw) + EPS}

    def forward(self, x: torch.Tensor) -> torch.Tensor:      # x (B, C, T) in [0, 1]
        s = self.strengths()
        x = jitter(x, s["jitter"])
        x = scale(x, s["scale"])
        x, _ = time_distort(x, self.logits, s["mu"], s["sd"])
        x = permute_segments(x, s["K"])
        x = magnitude_warp(x, s["magw"], self.knots)
        return minmax(x)                                      # (B, C, T), each channel spans [0, 1]

    def log(self) -> dict:
        """Plain numbers for the history (Fig. 5)."""
        s = {k: v.detach().cpu() for k, v in self.strengths().items()}
        return {"sigma_jitter": float(s["jitter"]), "sigma_scale": float(s["scale"]),
                "sigma_magw": float(s["magw"]), "K": float(s["K"]), "phi": s["phi"].tolist(),
                "mu": s["mu"].tolist(), "sd": s["sd"].tolist()}


# %% 4. Encoder: ResNet-18-1D (Sec. 4), projector ---------------------------------------------
class BasicBlock(nn.Module):
    """conv3-BN-LeakyReLU-conv3-BN, plus the input (1x1 conv + BN where the shape changes),
    then LeakyReLU."""

    def __init__(self, c_in: int, c_out: int, stride: int):
        super().__init__()
        self.conv1 = nn.Conv1d(c_in, c_out, 3, stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm1d(c_out)
        self.conv2 = nn.Conv1d(c_out, c_out, 3, 1, padding=1, bias=False)
        self.bn2 = nn.BatchNorm1d(c_out)
        self.shortcut = (nn.Sequential(nn.Conv1d(c_in, c_out, 1, stride, bias=False), nn.BatchNorm1d(c_out))
                         if stride != 1 or c_in != c_out else nn.Identity())

    def forward(self, x):                                     # (B, c_in, T)
        h = F.leaky_relu(self.bn1(self.conv1(x)))
        h = self.bn2(self.conv2(h))
        return F.leaky_relu(h + self.shortcut(x))             # (B, c_out, T / stride)


class Encoder(nn.Module):
    """ResNet-18-1D: stem conv3-BN-LeakyReLU-MaxPool(2); 4 stages of 2 BasicBlocks, widths
    w/2w/4w/8w, strides 1/2/2/2; global average pool. (B, C, T) -> (B, 8w). Xavier-normal convs
    (code). w = 64 is the paper's (~3.8M parameters for one input channel)."""

    def __init__(self, in_channels: int, base_width: int = 16, blocks=(2, 2, 2, 2)):
        super().__init__()
        w = base_width
        self.stem = nn.Sequential(nn.Conv1d(in_channels, w, 3, padding=1, bias=False), nn.BatchNorm1d(w),
                                  nn.LeakyReLU(), nn.MaxPool1d(2))
        layers, c = [], w
        for i, n in enumerate(blocks):
            c_out = w * 2 ** i
            for j in range(n):
                layers.append(BasicBlock(c, c_out, stride=2 if (i > 0 and j == 0) else 1))
                c = c_out
        self.layers = nn.Sequential(*layers)
        self.out_dim = c
        for mod in self.modules():
            if isinstance(mod, nn.Conv1d):
                nn.init.xavier_normal_(mod.weight)

    def forward(self, x):                                     # (B, C, T)
        return self.layers(self.stem(x)).mean(dim=-1)         # (B, 8w)


# %% 5. Loss: Eq. (2)-(3) --------------------------------------------------------------------
def nt_xent(z1: torch.Tensor, z2: torch.Tensor, tau: float) -> torch.Tensor:
    """Eq. (2)-(3), NT-Xent over the 2N views: s = cosine similarity; for each anchor i, the
    positive is the other view of the same series and the denominator runs over all 2N - 1
    other views; the mean over the 2N anchors (both directions of each pair, Eq. 2)."""
    N = z1.size(0)
    z = F.normalize(torch.cat([z1, z2]), dim=-1)             # (2N, D) unit vectors
    sim = z @ z.T / tau                                       # (2N, 2N) s(z_i, z_k) / tau
    sim = sim.masked_fill(torch.eye(2 * N, dtype=torch.bool, device=z.device), float("-inf"))  # 1[k != i]
    pos = torch.cat([torch.arange(N, 2 * N), torch.arange(N)]).to(z.device)   # positive of i is i +/- N
    return F.cross_entropy(sim, pos)                          # Eq. (3) per anchor, Eq. (2) mean


# %% 6. Pre-training: the min-max game of Sec. 3.2 ------------------------------------------------
class GradReverse(torch.autograd.Function):
    """Identity forward, negated gradient backward. Placed on the views, it turns one backward of
    L into +dL for the encoder and projector (they minimise L) and -dL for LEAVES (it maximises L)."""

    @staticmethod
    def forward(ctx, x):
        return x.view_as(x)

    @staticmethod
    def backward(ctx, g):
        return -g


def game_step(xb, leaves: Leaves, encoder, projector, tau: float, opt_model=None, opt_view=None):
    """One batch of Sec. 3.2: two views from one module (independent noise), L = NT-Xent of their
    projections, one backward, both players step. min over encoder/projector, max over LEAVES.
    Either optimiser may be None (that player is fixed). Returns the loss (a float)."""
    learn_views = leaves.fixed_sigma is None
    v1, v2 = leaves(xb), leaves(xb)                           # (B, C, T) each
    if learn_views:
        v1, v2 = GradReverse.apply(v1), GradReverse.apply(v2)  # LEAVES ascends L
    loss = nt_xent(projector(encoder(v1)), projector(encoder(v2)), tau)   # Eq. (2)
    for opt in (opt_model, opt_view):
        if opt is not None:
            opt.zero_grad(set_to_none=True)
    loss.backward()
    for opt in (opt_model, opt_view):
        if opt is not None:
            opt.step()
    return loss.item()


def make_encoder(in_channels: int, args: Args, device) -> Encoder:
    """The encoder every run starts from: seeded by args.seed, so --views none (which has no
    pre-training) starts from the same initial weights as the pre-trained run of that seed."""
    torch.manual_seed(args.seed)
    return Encoder(in_channels, args.base_width).to(device)


def pretrain(x: np.ndarray, args: Args, device, log=print, callback=None):
    """SimCLR pre-training on x (N, C, T) in [0, 1] with LEAVES (learned) or fixed views; no
    labels. Returns (encoder, init_encoder, leaves module, history, stats): init_encoder is a
    separate copy of the encoder's own initial weights, taken before the first step (the
    random-init baseline and the from-scratch start).
    callback(step, encoder), if given, is called before the first update (step 0) and after every
    optimiser step, with the encoder as main would evaluate it at that point; it must not
    change the model or draw from the global random streams (learning curves, benchmarks/).
    """
    encoder = make_encoder(x.shape[1], args, device)
    init_encoder = copy.deepcopy(encoder)                     # the random-init baseline, own copy
    projector = nn.Linear(encoder.out_dim, args.proj_dim).to(device)    # no nonlinearity (code)
    projector.requires_grad_(not args.freeze_projector)
    fixed = args.simclr_sigma if args.views == "simclr" else None
    leaves = Leaves(args.eta, args.max_segments, args.mixtures, args.knots, fixed).to(device)
    model_params = list(encoder.parameters()) + [p for p in projector.parameters() if p.requires_grad]
    opt_model = torch.optim.Adam(model_params, lr=args.lr)
    opt_view = torch.optim.Adam(leaves.parameters(), lr=args.view_lr) if fixed is None else None
    rng = np.random.default_rng(args.seed)                    # batch order
    N = len(x)
    bs = min(args.batch_size, N)
    per_epoch = N // bs                                       # drop_last: every batch has bs >= 2
    xt = torch.from_numpy(x).to(device)
    history = [{"epoch": 0, "loss": float("nan"), **leaves.log()}]   # the start of Fig. 5
    t_start = time.perf_counter()
    if callback is not None:
        callback(0, encoder)
    for epoch in range(1, args.epochs + 1):
        t_epoch, losses = time.perf_counter(), []
        order = rng.permutation(N)
        for b in range(per_epoch):
            xb = xt[torch.from_numpy(order[b * bs:(b + 1) * bs]).to(device)]   # (B, C, T)
            losses.append(game_step(xb, leaves, encoder, projector, args.temperature, opt_model, opt_view))
            if callback is not None:
                callback((epoch - 1) * per_epoch + b + 1, encoder)
        history.append({"epoch": epoch, "loss": float(np.mean(losses)), **leaves.log()})
        if args.log:
            k = history[-1]
            terms = {"sJ": k["sigma_jitter"], "sS": k["sigma_scale"], "sM": k["sigma_magw"], "K": k["K"]}
            log(progress_line(epoch, args.epochs, k["loss"], terms, per_epoch * bs,
                              time.perf_counter() - t_epoch, time.perf_counter() - t_start))
    stats = {"train_time_s": time.perf_counter() - t_start, "iters": per_epoch * args.epochs,
             "iters_per_epoch": per_epoch, "batch_size": bs}
    return encoder, init_encoder, leaves, history, stats


# %% 7. Evaluation: fine-tuning (Sec. 4) and the shared linear probe ------------------------------
class Classifier(nn.Module):
    """Encoder + the code's fine-tuning head: Dropout(0.5), Linear(D, 1024), Linear(1024, 512),
    Linear(512, classes), no activations in between (as the code)."""

    def __init__(self, encoder: Encoder, n_classes: int):
        super().__init__()
        self.encoder = encoder
        self.head = nn.Sequential(nn.Dropout(0.5), nn.Linear(encoder.out_dim, 1024), nn.Linear(1024, 512),
                                  nn.Linear(512, n_classes))

    def forward(self, x):                                     # (B, C, T) -> (B, classes)
        return self.head(self.encoder(x))


def average_ranks(s: np.ndarray) -> np.ndarray:
    """1-based ranks of s, ties sharing their average rank."""
    _, inv, counts = np.unique(s, return_inverse=True, return_counts=True)   # inv: index among sorted values
    return (np.cumsum(counts) - (counts - 1) / 2)[inv]        # average rank of each distinct value


def positive_class(name: str, class_names: list) -> int | None:
    """Index of the positive class of a two-class set, chosen BY NAME: Apnea-ECG's "apnea"
    (Sec. 4.1; its labels sort to apnea = 0, normal = 1), else the second label in data.py's
    order. None for more than two classes."""
    if len(class_names) != 2:
        return None
    want = POSITIVE_CLASS.get(name)
    return list(class_names).index(want) if want in class_names else 1


def metrics(logits: torch.Tensor, y: np.ndarray, positive: int | None = None) -> dict:
    """Accuracy, macro-F1 (labels in truth or prediction), macro one-vs-rest AUC of
    softmax(logits) (classes with positives and negatives in y), and, given the index of the
    positive class of a two-class problem, sensitivity = recall of the positive class and
    specificity = recall of the other one."""
    p = torch.softmax(logits.double(), dim=1).cpu().numpy()  # (N, classes)
    y = np.asarray(y)
    pred = p.argmax(1)
    f1s = []
    for c in np.unique(np.concatenate([y, pred])):
        tp, fp, fn = np.sum((pred == c) & (y == c)), np.sum((pred == c) & (y != c)), np.sum((pred != c) & (y == c))
        f1s.append(2 * tp / (2 * tp + fp + fn))
    aucs = []
    for c in range(p.shape[1]):
        pos = y == c
        n_pos, n_neg = int(pos.sum()), int((~pos).sum())
        if n_pos and n_neg:                                   # Mann-Whitney U / (n_pos n_neg)
            r = average_ranks(p[:, c])
            aucs.append((r[pos].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))
    out = {"accuracy": float(np.mean(pred == y)), "macro_f1": float(np.mean(f1s)),
           "auc": float(np.mean(aucs)) if aucs else float("nan")}
    if positive is not None and p.shape[1] == 2:
        neg = 1 - positive
        out["sensitivity"] = float(np.mean(pred[y == positive] == positive)) if (y == positive).any() else float("nan")
        out["specificity"] = float(np.mean(pred[y == neg] == neg)) if (y == neg).any() else float("nan")
    return out


@torch.no_grad()
def predict(model: nn.Module, x: np.ndarray, batch_size: int, device) -> torch.Tensor:
    """Eval-mode outputs of model on x (N, C, T), batched; returned on the CPU."""
    was = model.training
    model.eval()
    out = torch.cat([model(torch.from_numpy(x[i:i + batch_size]).to(device)).cpu()
                     for i in range(0, len(x), batch_size)])
    model.train(was)
    return out


def embed(encoder: Encoder, x: np.ndarray, batch_size: int, device) -> torch.Tensor:
    """Frozen representations for the linear probe: eval-mode encoder (BN running statistics),
    global average pool over time. x (N, C, T) -> (N, 8w)."""
    return predict(encoder, x, batch_size, device)


def finetune(encoder: Encoder, x_tr, y_tr, x_va, y_va, n_classes: int, args: Args, device, seed: int):
    """Sec. 4: copy the encoder, add the head, train everything (not frozen) with cross-entropy,
    Adam + StepLR(10, 0.1). The epoch kept is the one with the best validation macro-F1 (ties:
    the earlier), never chosen on test (deviation 8). Returns (model, per-epoch log, best epoch)."""
    torch.manual_seed(seed)
    model = Classifier(copy.deepcopy(encoder), n_classes).to(device)
    opt = torch.optim.Adam(model.parameters(), lr=args.finetune_lr)
    sched = torch.optim.lr_scheduler.StepLR(opt, step_size=10, gamma=0.1)
    rng = np.random.default_rng(seed)
    bs = min(args.batch_size, len(x_tr))
    xt, yt = torch.from_numpy(x_tr).to(device), torch.from_numpy(np.asarray(y_tr)).long().to(device)
    best, best_state, log = -1.0, copy.deepcopy(model.state_dict()), []
    for epoch in range(1, args.finetune_epochs + 1):
        model.train()
        order = rng.permutation(len(x_tr))
        losses = []
        for i in range(0, len(order), bs):
            idx = torch.from_numpy(order[i:i + bs]).to(device)
            if len(idx) < 2:                                  # BatchNorm needs two samples
                continue
            loss = F.cross_entropy(model(xt[idx]), yt[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            losses.append(loss.item())
        sched.step()
        val = metrics(predict(model, x_va, bs, device), y_va)
        log.append({"epoch": epoch, "loss": float(np.mean(losses)), "val_macro_f1": val["macro_f1"],
                    "val_accuracy": val["accuracy"]})
        if val["macro_f1"] > best:                            # validation split, never test
            best, best_state, best_epoch = val["macro_f1"], copy.deepcopy(model.state_dict()), epoch
    model.load_state_dict(best_state)
    return model, log, best_epoch


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
def plot_strengths(history: list, path, title: str = "") -> None:
    """Fig. 5: the learned strengths per epoch (sigma_J, sigma_S, sigma_M, K) and the TimeDis mixture."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    ep = [h["epoch"] for h in history]
    fig, ax = plt.subplots(1, 3, figsize=(11, 3.2))
    for key, lab in (("sigma_jitter", "jitter"), ("sigma_scale", "scale"), ("sigma_magw", "MagW")):
        ax[0].plot(ep, [h[key] for h in history], label=f"sigma {lab}")
    ax[0].set_title("magnitude strengths (bound eta + eps)", fontsize=9)
    ax[0].legend(fontsize=8)
    ax[1].plot(ep, [h["K"] for h in history], color="k")
    ax[1].set_title("permutation K", fontsize=9)
    t = np.linspace(-3, 3, 400)
    for h, c in ((history[0], "0.6"), (history[-1], "C3")):
        dens = sum(p * np.exp(-0.5 * ((t - m) / s) ** 2) / (s * math.sqrt(2 * math.pi))
                   for p, m, s in zip(h["phi"], h["mu"], h["sd"]))
        ax[2].plot(np.tanh(t), dens / (1 - np.tanh(t) ** 2), color=c, label=f"epoch {h['epoch']}")
    ax[2].set_title("TimeDis: density of positions lambda = tanh(s)", fontsize=9)
    ax[2].set_xlabel("position (-1 first step, 1 last)")
    ax[2].legend(fontsize=8)
    for a in ax[:2]:
        a.set_xlabel("epoch")
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_views(x: np.ndarray, leaves: Leaves, path, title: str = "") -> None:
    """Fig. 1: one series (first channel) and two views from the final module."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    with torch.no_grad():
        xb = torch.from_numpy(x[None]).to(leaves.raw.device).repeat(2, 1, 1)
        v = leaves(xb).cpu().numpy()
    fig, ax = plt.subplots(figsize=(8, 3))
    ax.plot(x[0], color="k", lw=1.5, label="original")
    ax.plot(v[0, 0], lw=1, label="view 1")
    ax.plot(v[1, 0], lw=1, label="view 2")
    ax.set_title(title, fontsize=9)
    ax.set_xlabel("time step")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def prepare(args: Args):
    """Load, check, min-max. Returns (dataset, x_tr, y_tr, x_va, y_va, x_te, y_te)."""
    ds = data.load_dataset(args.dataset, data_dir=args.data_dir or None,
                           val_fraction=args.val_fraction, seed=args.seed)
    if ds.task != "classification":
        raise UserError(f"{ds.name} is a regression set; leaves.py evaluates classification")
    x_tr, y_tr, x_va, y_va = ds.X_train, ds.y_train, ds.X_val, ds.y_val
    if ds.length < MIN_LENGTH:
        raise UserError(f"{ds.name}: series of length {ds.length} are too short; the ResNet-18-1D "
                        f"encoder halves the length four times and needs at least {MIN_LENGTH} steps")
    if len(x_tr) < 2 or len(x_va) < 1:
        raise UserError(f"{ds.name}: {len(x_tr)} training and {len(x_va)} validation series; fine-tuning "
                        "needs at least 2 and 1 (raise --val-fraction if the validation split is empty)")
    return ds, minmax(x_tr), y_tr, minmax(x_va), y_va, minmax(ds.X_test), ds.y_test


def evaluate(models: dict, encoders: dict, labelled, val, test, args: Args, device, positive) -> tuple:
    """The only step that reads the test split, after every choice is made. models: name ->
    fine-tuned Classifier (its epoch already chosen on validation); encoders: name -> frozen
    encoder for the shared linear probe, fitted on the labelled training series (C chosen on
    validation inside linear_eval, never on test). Returns (eval, probe selection): eval holds
    only test metrics; the probes' C and validation accuracy go to the selection."""
    (x_lab, y_lab), (x_va, y_va), (x_te, y_te) = labelled, val, test
    ev, chosen = {}, {}
    for name, model in models.items():
        prefix = {"finetune": "", "scratch_finetune": "scratch_"}[name]   # accuracy, scratch_accuracy, ...
        ev.update({prefix + k: v for k, v in metrics(predict(model, x_te, args.batch_size, device), y_te,
                                                     positive).items()})
    for name, enc in encoders.items():                        # "probe", "random_init_probe"
        z = [embed(enc, x, args.batch_size, device) for x in (x_lab, x_va, x_te)]
        pr = linear_eval(z[0], y_lab, z[1], y_va, z[2], y_te)
        ev.update({f"{name}_accuracy": pr["accuracy"], f"{name}_macro_f1": pr["macro_f1"]})
        chosen.update({f"{name}_C": pr["C"], f"{name}_val_accuracy": pr["val_accuracy"]})
    return ev, chosen


def main(args: Args) -> dict:
    # BOILERPLATE (same in every method file): CPU settings, seeding, device, data
    setup_torch(variable_shapes=False, threads=args.threads or None)   # flush denormals; fixed shapes: oneDNN on
    set_seed(args.seed)
    device = get_device(args.device)
    resolve(args, "")                                         # flag checks before loading anything
    ds, x_tr, y_tr, x_va, y_va, x_te, y_te = prepare(args)
    name, n_classes = ds.name, ds.n_classes
    args = resolve(args, name)
    positive = positive_class(name, ds.class_names)
    lab = label_subset(y_tr, args.label_fraction, args.seed)  # the labelled subset, drawn from TRAIN
    x_lab, y_lab = x_tr[lab], y_tr[lab]
    method = METHOD if args.views == "leaves" else f"{METHOD}_{args.views}"
    print(f"[{METHOD}] {name} seed={args.seed} device={device} views={args.views} preset={args.preset} "
          f"tau={args.temperature} M={args.mixtures} | x (N, C, T) = ({len(x_tr) + len(x_va)}, "
          f"{x_tr.shape[1]}, {x_tr.shape[2]}) train+val, {len(x_te)} test, {n_classes} classes, "
          f"{len(lab)} labelled" + (f", positive class {ds.class_names[positive]!r}" if positive is not None else ""))
    run_dir = make_run_dir(args.out_dir, name, method, args.seed)

    # 1. METHOD: pre-train on every training series (train + val), no label, no test series
    history, stats, encoder = [], {"train_time_s": 0.0}, None
    if args.views != "none":
        encoder, init_encoder, leaves, history, stats = pretrain(unlabelled_pool(x_tr, x_va), args, device)
        print(f"pre-trained {stats['iters']} steps ({args.epochs} epochs of {stats['iters_per_epoch']} "
              f"batches of {stats['batch_size']}) in {stats['train_time_s']:.1f} s")
    else:
        init_encoder = make_encoder(x_tr.shape[1], args, device)    # the pre-trained run's own start

    # 2. choices on validation only: the fine-tuning epoch of each network (Sec. 4, deviation 8)
    starts = {}                                               # name -> the encoder fine-tuning starts from
    if encoder is not None:
        starts["finetune"] = encoder                          # the pre-trained network
        if args.scratch_eval:
            starts["scratch_finetune"] = init_encoder         # supervised row: same network, same init
    else:
        starts["finetune"] = init_encoder                     # --views none: the run is from scratch
    models, selection = {}, {}
    for key, start in starts.items():
        models[key], log, epoch = finetune(start, x_lab, y_lab, x_va, y_va, n_classes, args, device, args.seed)
        selection.update({f"{key}_epoch": epoch, f"{key}_val_log": log})
    probes = {}                                               # frozen encoders for the linear probe
    if encoder is not None:
        probes["probe"] = encoder
    if args.random_init_eval:
        probes["random_init_probe"] = init_encoder

    # 3. the one step that reads the test split
    ev, chosen = evaluate(models, probes, (x_lab, y_lab), (x_va, y_va), (x_te, y_te), args, device, positive)
    selection.update(chosen)

    if encoder is not None:
        plot_history(history[1:], run_dir / "loss.png", f"{name} {args.views} seed {args.seed}: NT-Xent")
        plot_strengths(history, run_dir / "strengths.png", f"{name} {args.views} seed {args.seed}")
        plot_views(x_tr[0], leaves, run_dir / "views.png", f"{name}: a training series and two views "
                   f"({args.views}, after pre-training)")
        if args.save_model:
            save_checkpoint(run_dir / "encoder.pt", encoder.state_dict(), args,
                            extra={"init_state_dict": init_encoder.state_dict()})
    line = (f"fine-tuned{' from scratch' if encoder is None else ''} | acc {100 * ev['accuracy']:.1f} | "
            f"macro-F1 {100 * ev['macro_f1']:.1f} | AUC {ev['auc']:.3f}"
            + (f" | sens {ev['sensitivity']:.3f} spec {ev['specificity']:.3f}" if "sensitivity" in ev else "")
            + f" | epoch {selection['finetune_epoch']} (val)")
    if "scratch_accuracy" in ev:
        line += (f"\nfrom scratch | acc {100 * ev['scratch_accuracy']:.1f} | macro-F1 "
                 f"{100 * ev['scratch_macro_f1']:.1f} | epoch {selection['scratch_finetune_epoch']} (val)")
    if "probe_accuracy" in ev:
        line += (f"\nlinear probe | acc {100 * ev['probe_accuracy']:.1f} | macro-F1 {100 * ev['probe_macro_f1']:.1f}"
                 f" | C {selection['probe_C']} (val)")
    if "random_init_probe_accuracy" in ev:
        line += f" | random-init encoder probe acc {100 * ev['random_init_probe_accuracy']:.1f}"
    print(line)
    res = write_results(run_dir, method, name, args.seed, args, history, ev, stats["train_time_s"], device,
                        extra={"selection": selection, "label_free": True, "label_note": "",
                               "positive_class": ds.class_names[positive] if positive is not None else None,
                               "pretrain_steps": {k: stats[k] for k in ("iters", "iters_per_epoch", "batch_size")
                                                  if k in stats},
                               "n_labelled": int(len(lab))})
    print(f"saved {run_dir / 'results.json'}")
    res["run_dir"] = str(run_dir)
    return res


if __name__ == "__main__":
    cli(main, Args)
