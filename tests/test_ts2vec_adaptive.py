"""Tests for ts2vec_adaptive.py: losses against the equations, cropping, adaptive resolution
bookkeeping (Eq. 5-7, App. B), encoder facts, linear probe, smoke runs, determinism."""
import json
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from conftest import pretraining_pools

import ts2vec_adaptive as m

ROOT = Path(__file__).resolve().parents[1]
TINY = dict(hidden_dims=8, output_dims=8, depth=2, batch_size=8, log=False)

# Every Args default with where it comes from (CONTRACT F). "TS2Vec code" = the official train.py /
# ts2vec.py @ b0088e1 as /work's spec section 7 lists it (TS2Vec's published numbers come from the code);
# "App. D.4" = the adaptive paper's implementation details; "plumbing" = no opinion in either paper.
PAPER_DEFAULTS = {
    "dataset": ("GunPoint", "plumbing"),
    "data_dir": ("", "plumbing"),
    "loss": ("adaptive", "adaptive paper Sec. 3, Eq. (5)-(7): the method this file is about"),
    "measure": ("all", "adaptive paper Fig. 1 and Eq. (5): every resolution is scored every epoch"),
    "fixed_level": (-1, "plumbing (ablation off)"),
    "preset": ("ts2vec", "TS2Vec code: K = 320, depth 10 (PRESETS; paper_adaptive = App. D.4)"),
    "output_dims": (0, "plumbing (0 = from --preset)"),
    "depth": (0, "plumbing (0 = from --preset)"),
    "hidden_dims": (64, "TS2Vec code: hidden_dims 64 (input projection width)"),
    "alpha": (0.5, "deviation 1 (Eq. 3's alpha on the instance term, as the code; 0.5 in both papers' runs)"),
    "temporal_unit": (0, "TS2Vec code: temporal_unit 0"),
    "mask_p": (0.5, "TS2Vec Sec. 3.2: binomial timestamp mask, p = 0.5"),
    "dropout": (0.1, "TS2Vec code: repr_dropout 0.1"),
    "max_train_length": (3000, "TS2Vec code train.py: max_train_length 3000 (deviation 9)"),
    "iters": (0, "TS2Vec code train.py: 200 steps if N*T*C <= 100,000 else 600 (0 = that rule)"),
    "epochs": (0, "plumbing (0 = use --iters)"),
    "batch_size": (8, "TS2Vec code train.py: batch size 8"),
    "lr": (1e-3, "TS2Vec code train.py: AdamW lr 1e-3; App. D.4: 1e-3"),
    "val_fraction": (0.2, "deviation 6 (the probe's C is chosen on a validation split carved from train)"),
    "random_init_eval": (True, "plumbing"),
    "seed": (1, "plumbing"),
    "threads": (0, "plumbing"),
    "device": ("auto", "plumbing"),
    "out_dir": ("runs", "plumbing"),
    "save_model": (False, "plumbing"),
    "log": (True, "plumbing"),
}
PAPER_PRESETS = {"ts2vec": ((320, 10), "TS2Vec code: output_dims 320, depth 10"),
                 "paper_adaptive": ((16, 2), "App. D.4: embedding size K = 16, 2 dilated conv layers")}


# ------------------------------------------------------------------ naive references (float64)
def naive_instance(z1, z2):
    """Eq. (2), one anchor at a time: at timestamp t, anchor a among the 2B vectors (view 1 then
    view 2); positive = same instance in the other view; denominator = every other vector."""
    B, T, _ = z1.shape
    if B == 1:
        return 0.0
    total, n = 0.0, 0
    for t in range(T):
        v = [z1[i, t] for i in range(B)] + [z2[i, t] for i in range(B)]
        for a in range(2 * B):
            pos = (a + B) % (2 * B)
            den = sum(math.exp(float(v[a] @ v[k])) for k in range(2 * B) if k != a)
            total += -float(v[a] @ v[pos]) + math.log(den)
            n += 1
    return total / n


def naive_temporal(z1, z2):
    """Eq. (1), one anchor at a time: for instance i, anchor timestamp a among the 2T vectors;
    positive = same timestamp in the other view; denominator = every other timestamp."""
    B, T, _ = z1.shape
    if T == 1:
        return 0.0
    total, n = 0.0, 0
    for i in range(B):
        v = [z1[i, t] for t in range(T)] + [z2[i, t] for t in range(T)]
        for a in range(2 * T):
            pos = (a + T) % (2 * T)
            den = sum(math.exp(float(v[a] @ v[k])) for k in range(2 * T) if k != a)
            total += -float(v[a] @ v[pos]) + math.log(den)
            n += 1
    return total / n


def _shifted_logits(sim):
    """Published TS2Vec construction: drop the diagonal of each (n x n) similarity matrix by
    taking the strict lower triangle without its last column plus the strict upper triangle
    without its first column, giving (n x n-1) logits; column of k is k for k < row, else k-1."""
    return torch.tril(sim, -1)[..., :-1] + torch.triu(sim, 1)[..., 1:]


def official_instance(z1, z2):
    B = z1.size(0)
    if B == 1:
        return z1.new_zeros(())
    z = torch.cat([z1, z2], 0).transpose(0, 1)                 # (T, 2B, K)
    nll = -F.log_softmax(_shifted_logits(z @ z.transpose(1, 2)), dim=-1)
    i = torch.arange(B)
    return (nll[:, i, B + i - 1].mean() + nll[:, B + i, i].mean()) / 2   # positives after the shift


def official_temporal(z1, z2):
    T = z1.size(1)
    if T == 1:
        return z1.new_zeros(())
    z = torch.cat([z1, z2], 1)                                 # (B, 2T, K)
    nll = -F.log_softmax(_shifted_logits(z @ z.transpose(1, 2)), dim=-1)
    t = torch.arange(T)
    return (nll[:, t, T + t - 1].mean() + nll[:, T + t, t].mean()) / 2


def official_hierarchical(z1, z2, alpha=0.5, temporal_unit=0):
    """The published loop: add alpha*inst + (1-alpha)*temp while length > 1 (temporal from
    level temporal_unit on), max-pool by 2; the length-1 level adds alpha*inst; divide by levels."""
    loss, d = torch.zeros((), dtype=z1.dtype), 0
    while z1.size(1) > 1:
        if alpha != 0:
            loss = loss + alpha * official_instance(z1, z2)
        if d >= temporal_unit and alpha != 1:
            loss = loss + (1 - alpha) * official_temporal(z1, z2)
        d += 1
        z1 = F.max_pool1d(z1.transpose(1, 2), 2).transpose(1, 2)
        z2 = F.max_pool1d(z2.transpose(1, 2), 2).transpose(1, 2)
    if alpha != 0:
        loss = loss + alpha * official_instance(z1, z2)
    return loss / (d + 1)


def rand_views(B, T, K, seed=0, scale=0.5):
    g = torch.Generator().manual_seed(seed)
    return (scale * torch.randn(B, T, K, generator=g, dtype=torch.float64),
            scale * torch.randn(B, T, K, generator=g, dtype=torch.float64))


# ------------------------------------------------------------------ Eq. (1)-(4)
@pytest.mark.parametrize("B,T", [(1, 3), (2, 1), (3, 5), (4, 7)])
def test_instance_and_temporal_losses_match_naive_loops(B, T):
    z1, z2 = rand_views(B, T, 4, seed=B * 10 + T)
    assert abs(m.instance_contrastive_loss(z1, z2).item() - naive_instance(z1, z2)) < 1e-6
    assert abs(m.temporal_contrastive_loss(z1, z2).item() - naive_temporal(z1, z2)) < 1e-6


@pytest.mark.parametrize("B", [1, 2, 8])
@pytest.mark.parametrize("T", [1, 2, 3, 7, 8, 9, 150, 257])
def test_hierarchical_loss_matches_official_formula(B, T):
    for K, (alpha, unit) in zip([4, 32, 4, 32], [(0.5, 0), (0.3, 2), (0.0, 0), (1.0, 0)]):
        z1, z2 = rand_views(B, T, K, seed=T, scale=0.3)
        ours = m.hierarchical_contrastive_loss(z1, z2, alpha, unit)
        ref = official_hierarchical(z1, z2, alpha, unit)
        assert torch.allclose(ours, ref, rtol=1e-6, atol=1e-9), (K, alpha, unit, ours, ref)
    # the two cheap single terms equal the triangle-shift ones too
    assert torch.allclose(m.instance_contrastive_loss(z1, z2), official_instance(z1, z2), rtol=1e-6, atol=1e-9)
    assert torch.allclose(m.temporal_contrastive_loss(z1, z2), official_temporal(z1, z2), rtol=1e-6, atol=1e-9)


def test_masked_diagonal_gradient_matches_official():
    z1, z2 = rand_views(3, 9, 5, seed=1)
    z1.requires_grad_(True), z2.requires_grad_(True)
    g_ours = torch.autograd.grad(m.hierarchical_contrastive_loss(z1, z2), (z1, z2))
    g_ref = torch.autograd.grad(official_hierarchical(z1, z2), (z1, z2))
    for a, b in zip(g_ours, g_ref):
        assert torch.allclose(a, b, rtol=1e-6, atol=1e-10)


@pytest.mark.parametrize("T", [1, 2, 5, 8, 37, 150])
def test_level_decomposition(T):
    z1, z2 = rand_views(4, T, 6, seed=T)
    per = {}
    loss = m.hierarchical_contrastive_loss(z1, z2, per_level=per)
    assert sorted(per) == list(range(int(math.log2(T)) + 1))          # floor(log2 T) + 1 levels
    assert torch.allclose(loss, torch.stack(list(per.values())).mean(), rtol=1e-12)
    a, b = z1, z2                                                     # walk the fine index d
    for d in range(len(per)):
        j = len(per) - 1 - d
        assert 2 ** j <= a.size(1) < 2 ** (j + 1)                     # coarse index j: length ~ 2^j
        if d < len(per) - 1:
            a, b = m.pool(a), m.pool(b)
    assert torch.allclose(per[0], 0.5 * m.instance_contrastive_loss(a, b))   # level 0: no temporal


# ------------------------------------------------------------------ cropping (TS2Vec Sec. 3.2)
def test_random_crop_invariants():
    for seed in range(300):
        rng = np.random.default_rng(seed)
        T, B = int(rng.integers(2, 60)), int(rng.integers(1, 5))
        x = torch.arange(T, dtype=torch.float64).view(1, T, 1).repeat(B, 1, 1)   # x[b, t] = t
        crop_l, (s1, n1), (s2, n2) = m.random_crop(T, B, rng)
        assert 2 <= crop_l <= T and n1 >= crop_l and n2 >= crop_l
        assert (s1 >= 0).all() and (s1 + n1 <= T).all() and (s2 >= 0).all() and (s2 + n2 <= T).all()
        o1 = m.take_per_row(x, s1, n1)[:, -crop_l:]                   # identity "encoder"
        o2 = m.take_per_row(x, s2, n2)[:, :crop_l]
        assert torch.equal(o1, o2)                                    # same absolute timestamps
        assert torch.equal(o1[:, 1:] - o1[:, :-1], torch.ones_like(o1[:, 1:]))   # contiguous


# ------------------------------------------------------------------ adaptive: Eq. (5)-(7), App. B
@pytest.mark.parametrize("level", [0, 2, 5, 9])
def test_only_the_chosen_level_receives_gradient(level):
    z1, z2 = rand_views(3, 45, 5, seed=level)                         # 45 -> levels 0..5
    z1.requires_grad_(True), z2.requires_grad_(True)
    loss, trained, measured = m.adaptive_resolution_loss(z1, z2, level)
    assert trained == min(level, 5)                                   # too short: finest present
    d = 5 - trained
    a, b = z1, z2
    for _ in range(d):
        a, b = m.pool(a), m.pool(b)
    alone = m.level_loss(a, b, 0.5, True)                             # L_j on its own
    assert torch.allclose(loss, alone, rtol=1e-12)
    for g, h in zip(torch.autograd.grad(loss, (z1, z2)), torch.autograd.grad(alone, (z1, z2))):
        assert torch.allclose(g, h, rtol=1e-6, atol=1e-12)
    per = {}
    m.hierarchical_contrastive_loss(z1, z2, per_level=per)            # the with-grad values
    assert sorted(measured) == sorted(per)
    for j in per:
        assert abs(measured[j] - per[j].item()) < 1e-6 * max(1, abs(measured[j]))
    _, _, only = m.adaptive_resolution_loss(z1, z2, level, measure=False)
    assert list(only) == [trained]                                    # cheap path: one level


def test_measured_levels_build_no_graph(monkeypatch):
    calls = []
    real = m.level_loss

    def spy(z1, z2, alpha, temporal):
        out = real(z1, z2, alpha, temporal)
        calls.append((z1.size(1), out.requires_grad))
        return out

    monkeypatch.setattr(m, "level_loss", spy)
    z1, z2 = rand_views(2, 20, 4)
    z1.requires_grad_(True)
    m.adaptive_resolution_loss(z1, z2, level=2)
    assert [c[0] for c in calls] == [20, 10, 5, 2, 1]                 # each level computed once
    assert [c[1] for c in calls] == [False, False, True, False, False]   # only j=2 (length 5) has grad


def test_resolution_scores_hand_computed():
    prev = {0: 2.0, 1: 3.0, 2: 4.0}
    cur = {0: 1.9, 1: 3.1, 5: 0.7}                                    # 2 absent, 5 never seen before
    s = m.resolution_scores(prev, cur)
    e = np.exp([-0.1, 0.1])
    assert sorted(s) == [0, 1]
    assert abs(s[0] - e[0] / e.sum()) < 1e-12 and abs(s[1] - e[1] / e.sum()) < 1e-12
    assert abs(sum(s.values()) - 1) < 1e-12
    assert m.resolution_scores({}, cur) == {}


def test_sampling_frequencies_follow_softmax_of_trend():
    prev = {0: 1.0, 1: 1.0, 2: 1.0, 3: 1.0}
    cur = {0: 0.2, 1: 1.0, 2: 1.7, 3: 2.0}                            # trends -0.8, 0, +0.7, +1.0
    s = m.resolution_scores(prev, cur)
    p = torch.softmax(torch.tensor([-0.8, 0.0, 0.7, 1.0], dtype=torch.float64), 0).numpy()
    rng, n = np.random.default_rng(0), 20000
    counts = np.bincount([m.sample_level(s, rng) for _ in range(n)], minlength=4) / n
    assert np.all(np.abs(counts - p) < 4 * np.sqrt(p * (1 - p) / n)), (counts, p)
    assert counts[3] > counts[2] > counts[1] > counts[0]              # rising loss, more probability


def test_sampler_alignment_carry_forward_and_cold_start():
    smp = m.ResolutionSampler(max_levels=8, rng=np.random.default_rng(0))
    starts = {m.ResolutionSampler(8, np.random.default_rng(s)).level for s in range(200)}
    assert starts == set(range(8))                                    # epoch 0: uniform over 0..R-1
    z1, z2 = rand_views(2, 100, 4)                                    # 7 levels, j = 0..6
    _, _, meas = m.adaptive_resolution_loss(z1, z2, 3)
    smp.record(meas)
    means, scores = smp.end_epoch()
    assert sorted(means) == list(range(7)) and scores == {}           # no previous epoch: uniform
    z1, z2 = rand_views(2, 6, 4, seed=1)                              # crop of 6: only j = 0, 1, 2
    _, _, meas2 = m.adaptive_resolution_loss(z1, z2, 5)
    assert sorted(meas2) == [0, 1, 2]                                 # aligned from the coarse end
    smp.record(meas2)
    means2, scores2 = smp.end_epoch()
    assert sorted(scores2) == [0, 1, 2]                               # absent levels get no score
    for j in range(3, 7):
        assert smp.last[j] == means[j]                                # missing level keeps last value
    for j in range(3):
        assert smp.last[j] == means2[j]
    smp.record({5: means[5] + 1.0, 0: means2[0]})                     # level 5 reappears
    _, scores3 = smp.end_epoch()
    e = np.exp([0.0, 1.0])
    assert abs(scores3[5] - e[1] / e.sum()) < 1e-12                   # delta against the carried value


def test_forced_level_trains_only_that_level(monkeypatch):
    """Spy on the loss the loop really calls: every step trains min(j, finest level present)."""
    calls = []
    real = m.adaptive_resolution_loss

    def spy(z1, z2, level, *a, **k):
        out = real(z1, z2, level, *a, **k)
        calls.append((level, out[1], z1.size(1)))
        return out

    monkeypatch.setattr(m, "adaptive_resolution_loss", spy)
    ds = m.data.load_dataset("synthetic")
    x = ds.X_train.transpose(0, 2, 1).copy()
    for j in (0, 3):
        calls.clear()
        args = m.Args(dataset="synthetic", epochs=3, fixed_level=j, **TINY)
        _, _, hist, stats = m.pretrain(x, args, torch.device("cpu"))
        assert stats["iters"] == 3 * (len(x) // 8) == len(calls)
        assert all(lv == j and tr == min(j, m.n_levels(T) - 1) for lv, tr, T in calls)
        assert sum(sum(h["trained_levels"].values()) for h in hist) == len(calls)


def _one_step_by_hand(x, args, loss_fn):
    """One TS2Vec step written out from the method's parts, with the RNG streams pretrain uses."""
    torch.manual_seed(0)
    K, depth = m.PRESETS[args.preset]
    net = m.Encoder(x.shape[-1], args.output_dims or K, args.hidden_dims, args.depth or depth,
                    args.mask_p, args.dropout)
    init = [p.detach().clone() for p in net.parameters()]
    opt = torch.optim.AdamW(net.parameters(), lr=args.lr)
    rng = np.random.default_rng(args.seed)
    xt = torch.from_numpy(x).float()
    xb = xt[torch.from_numpy(rng.permutation(len(x))[:args.batch_size])]
    crop_l, (s1, n1), (s2, n2) = m.random_crop(xb.size(1), xb.size(0), rng, args.temporal_unit)
    z1 = net(m.take_per_row(xb, s1, n1))[:, -crop_l:]         # overlap = end of view 1
    z2 = net(m.take_per_row(xb, s2, n2))[:, :crop_l]          # overlap = start of view 2
    loss_fn(z1, z2).backward()
    opt.step()
    return [(p0 + p.detach()) / 2 for p0, p in zip(init, net.parameters())]   # SWA of init + step 1


@pytest.mark.parametrize("mode", ["hierarchical", "adaptive"])
def test_one_training_step_equals_a_manual_step(mode):
    """The loop wires crops, overlap, loss and optimiser as the method says (spec 10.5-10.6)."""
    ds = m.data.load_dataset("synthetic")
    x = ds.X_train.transpose(0, 2, 1).copy()
    args = m.Args(dataset="synthetic", iters=1, loss=mode, fixed_level=1, **TINY)
    torch.manual_seed(0)
    swa, _, _, _ = m.pretrain(x, args, torch.device("cpu"))
    if mode == "hierarchical":
        fn = lambda z1, z2: m.hierarchical_contrastive_loss(z1, z2, args.alpha)       # noqa: E731
    else:
        def fn(z1, z2):                                        # Eq. (7): level j = 1 alone
            L = m.n_levels(z1.size(1))
            for _ in range(L - 1 - 1):
                z1, z2 = m.pool(z1), m.pool(z2)
            return m.level_loss(z1, z2, args.alpha, temporal=True)
    expect = _one_step_by_hand(x, args, fn)
    for got, want in zip(swa.parameters(), expect):
        assert torch.allclose(got, want, atol=1e-6)


def test_adaptive_loop_draws_scores_and_records(monkeypatch):
    """Each epoch trains the level drawn for it; from epoch 3 on the draw has Eq. (5) scores."""
    calls = []
    real = m.adaptive_resolution_loss

    def spy(z1, z2, level, *a, **k):
        calls.append(level)
        return real(z1, z2, level, *a, **k)

    monkeypatch.setattr(m, "adaptive_resolution_loss", spy)
    ds = m.data.load_dataset("synthetic")
    x = ds.X_train.transpose(0, 2, 1).copy()
    _, _, hist, stats = m.pretrain(x, m.Args(dataset="synthetic", epochs=8, **TINY), torch.device("cpu"))
    per = stats["iters_per_epoch"]
    assert [calls[e * per:(e + 1) * per] for e in range(8)] == [[h["level"]] * per for h in hist]
    assert len({h["level"] for h in hist}) > 1                       # the level is re-drawn
    assert all(h["scores"] for h in hist[1:]) and not hist[0]["scores"]
    assert all(abs(sum(h["scores"].values()) - 1) < 1e-9 for h in hist[1:])


# ------------------------------------------------------------------ encoder
def test_encoder_facts():
    for preset, n in [("ts2vec", 637_184), ("paper_adaptive", 54_384)]:
        K, depth = m.PRESETS[preset]
        for c in (1, 6):
            net = m.Encoder(c, K, 64, depth)
            assert sum(p.numel() for p in net.parameters()) == n + 64 * c
    torch.manual_seed(0)
    net = m.Encoder(2, 16, 64, 2).eval()                              # receptive field 29
    for T in (1, 2, 33, 64):
        assert net(torch.randn(3, T, 2)).shape == (3, T, 16)
    x = torch.randn(1, 80, 2)
    x2 = x.clone()
    x2[0, 40] += 1.0
    changed = (net(x) - net(x2)).abs().sum(-1)[0] > 0
    assert changed.nonzero().flatten().tolist() == list(range(26, 55))   # |t - 40| <= 14
    xn = x.clone()
    xn[0, 5:9] = float("nan")
    before = xn.clone()
    assert torch.isfinite(net(xn)).all()
    assert torch.equal(torch.isnan(xn), torch.isnan(before))          # input not mutated


def test_dilated_conv_equals_torch_conv():
    torch.manual_seed(0)
    for d, T in [(1, 10), (4, 9), (8, 8), (16, 5)]:
        ours = m.DilatedConv(3, 5, d).double()
        ref = nn.Conv1d(3, 5, 3, padding=d, dilation=d).double()
        ref.load_state_dict(ours.state_dict())
        x = torch.randn(2, 3, T, dtype=torch.float64)
        assert torch.allclose(ours(x), ref(x), atol=1e-12)


def test_timestamp_mask_drops_about_half():
    torch.manual_seed(0)
    net = m.Encoder(1, 8, 8, 1, dropout=0.0).train()
    seen = []
    net.blocks.register_forward_pre_hook(lambda mod, inp: seen.append(inp[0]))
    net(torch.randn(4, 500, 1))
    frac = (seen[0].abs().sum(1) == 0).double().mean().item()         # zeroed latent timestamps
    assert abs(frac - 0.5) < 4 * math.sqrt(0.25 / 2000)


# ------------------------------------------------------------------ training loop rules
def test_iteration_rule_and_exact_step_count():
    assert m.default_iters(np.zeros((100, 1000, 1))) == 200
    assert m.default_iters(np.zeros((100_001, 1, 1))) == 600
    ds = m.data.load_dataset("synthetic")
    x = ds.X_train.transpose(0, 2, 1).copy()
    args = m.Args(dataset="synthetic", iters=7, loss="hierarchical", **TINY)
    _, _, hist, stats = m.pretrain(x, args, torch.device("cpu"))
    assert stats["iters"] == 7 and len(hist) == 7 // (len(x) // 8)  # the partial epoch is not logged


def test_swa_encoder_is_the_equal_weight_average(monkeypatch):
    snaps = []

    class Recording(torch.optim.AdamW):
        def step(self, *a, **k):
            out = super().step(*a, **k)
            snaps.append([p.detach().clone() for g in self.param_groups for p in g["params"]])
            return out

    monkeypatch.setattr(m.torch.optim, "AdamW", Recording)
    ds = m.data.load_dataset("synthetic")
    x = ds.X_train.transpose(0, 2, 1).copy()
    torch.manual_seed(0)
    swa, init, _, _ = m.pretrain(x, m.Args(dataset="synthetic", iters=4, **TINY), torch.device("cpu"))
    assert len(snaps) == 4
    for i, (avg, p0) in enumerate(zip(swa.parameters(), init.parameters())):
        expect = (p0 + sum(s[i] for s in snaps)) / 5                 # initial + 4 steps
        assert torch.allclose(avg, expect, atol=1e-6)


def test_same_seed_same_history_different_seed_differs():
    ds = m.data.load_dataset("synthetic")
    x = ds.X_train.transpose(0, 2, 1).copy()

    def hist(seed):
        torch.manual_seed(seed)
        return m.pretrain(x, m.Args(dataset="synthetic", epochs=3, seed=seed, **TINY), torch.device("cpu"))[2]

    assert hist(3) == hist(3)
    assert hist(3) != hist(4)


# ------------------------------------------------------------------ linear probe
def test_linear_eval_separable_and_deterministic():
    g = torch.Generator().manual_seed(0)
    centers = 6 * torch.randn(3, 10, generator=g)

    def blobs(n):
        y = torch.arange(n) % 3
        return centers[y] + torch.randn(n, 10, generator=g), y

    (a, ya), (b, yb), (c, yc) = blobs(30), blobs(12), blobs(60)
    r1 = m.linear_eval(a, ya, b, yb, c, yc)
    r2 = m.linear_eval(a.numpy(), ya.numpy(), b.numpy(), yb.numpy(), c.numpy(), yc.numpy())
    p1, p2 = r1.pop("pred"), r2.pop("pred")
    assert r1 == r2 and np.array_equal(p1, p2)
    assert r1["accuracy"] == 1.0 and r1["macro_f1"] == 1.0
    shuffled = m.linear_eval(a, ya, b, yb, c, yc[torch.randperm(60, generator=g)])
    assert shuffled["C"] == r1["C"]                                   # test labels never choose C
    assert shuffled["accuracy"] < 0.8


# ------------------------------------------------------------------ smoke runs on real data
def test_main_smoke_on_gunpoint(real_data, tmp_path):
    res = m.main(m.Args(dataset="GunPoint", data_dir=str(real_data), epochs=1, out_dir=str(tmp_path),
                        save_model=True, **TINY))
    run = Path(res["run_dir"])
    saved = json.loads((run / "results.json").read_text())
    for k in ("method", "dataset", "seed", "args", "history", "eval", "time_s", "device", "versions"):
        assert k in saved
    assert len(saved["history"]) == 1 and math.isfinite(saved["history"][0]["loss"])
    assert 0 <= saved["eval"]["accuracy"] <= 1 and 0 <= saved["eval"]["random_init_accuracy"] <= 1
    for f in ("loss.png", "resolution.png", "encoder.pt"):
        assert (run / f).stat().st_size > 0


def test_cli_smoke(real_data, tmp_path):
    out = subprocess.run([sys.executable, "ts2vec_adaptive.py", "--dataset", "GunPoint",
                          "--data-dir", str(real_data), "--epochs", "1", "--loss", "hierarchical",
                          "--hidden-dims", "8", "--output-dims", "8", "--depth", "2",
                          "--no-random-init-eval", "--threads", "1", "--out-dir", str(tmp_path)],
                         cwd=ROOT, check=True, capture_output=True, text=True, timeout=120)
    assert "epoch 1/1" in out.stdout and "linear eval" in out.stdout
    (f,) = tmp_path.glob("*/results.json")
    assert json.loads(f.read_text())["method"] == "ts2vec_adaptive_hierarchical"


# ================================================================== parts against independent references
# Each test below names the plausible wrong version it exists to catch.

class RefSamePadConv(nn.Module):
    """Official SamePadConv, written here from its structure: padding = receptive_field // 2,
    one step removed from the end when the receptive field is even (never for kernel 3)."""

    def __init__(self, c_in, c_out, k, dilation):
        super().__init__()
        rf = (k - 1) * dilation + 1
        self.conv = nn.Conv1d(c_in, c_out, k, padding=rf // 2, dilation=dilation)
        self.remove = 1 if rf % 2 == 0 else 0

    def forward(self, x):
        out = self.conv(x)
        return out[:, :, :-self.remove] if self.remove else out


class RefConvBlock(nn.Module):
    """Official ConvBlock: GELU before each conv, residual, 1x1 projector where widths change or final."""

    def __init__(self, c_in, c_out, dilation, final):
        super().__init__()
        self.conv1 = RefSamePadConv(c_in, c_out, 3, dilation)
        self.conv2 = RefSamePadConv(c_out, c_out, 3, dilation)
        self.projector = nn.Conv1d(c_in, c_out, 1) if (c_in != c_out or final) else None

    def forward(self, x):
        residual = x if self.projector is None else self.projector(x)
        x = F.gelu(x)
        x = self.conv1(x)
        x = F.gelu(x)
        x = self.conv2(x)
        return x + residual


class RefTSEncoder(nn.Module):
    """Official TSEncoder structure, with the timestamp mask passed in (True = keep)."""

    def __init__(self, c_in, K, hidden, depth, dropout):
        super().__init__()
        self.input_fc = nn.Linear(c_in, hidden)
        chans = [hidden] * depth + [K]
        self.blocks = nn.Sequential(*[RefConvBlock(chans[i - 1] if i > 0 else hidden, chans[i], 2 ** i,
                                                   final=(i == len(chans) - 1)) for i in range(len(chans))])
        self.repr_dropout = nn.Dropout(dropout)

    def forward(self, x, mask):
        nan_mask = ~x.isnan().any(dim=-1)
        x = x.clone()
        x[~nan_mask] = 0
        x = self.input_fc(x)
        mask = mask & nan_mask
        x[~mask] = 0
        x = self.blocks(x.transpose(1, 2))
        return self.repr_dropout(x).transpose(1, 2)


def _ref_state(ours):
    """Our state dict in the reference's names (conv weights live one level deeper there)."""
    out = {}
    for k, v in ours.state_dict().items():
        k = k.replace(".conv1.", ".conv1.conv.").replace(".conv2.", ".conv2.conv.")
        out[k] = v
    return out


@pytest.mark.parametrize("c_in,K,hidden,depth,T", [(1, 8, 6, 2, 37), (3, 5, 5, 3, 12), (2, 7, 4, 4, 9)])
def test_encoder_equals_official_structure_in_eval_mode(c_in, K, hidden, depth, T):
    """Catches: activation after the conv, a missing residual or projector, wrong dilations, padding."""
    torch.manual_seed(c_in + depth)
    ours = m.Encoder(c_in, K, hidden, depth, mask_p=0.5, dropout=0.1).double().eval()
    ref = RefTSEncoder(c_in, K, hidden, depth, 0.1).double().eval()
    ref.load_state_dict(_ref_state(ours))
    x = torch.randn(3, T, c_in, dtype=torch.float64)
    x[1, :4] = float("nan")                                           # missing steps are zeroed first
    keep = torch.ones(3, T, dtype=torch.bool)                         # eval: official mask 'all_true'
    assert torch.allclose(ours(x), ref(x, keep), atol=1e-12)


def test_encoder_training_mask_and_dropout_equal_the_reference():
    """Catches: mask applied after the projection's bias is lost, mask drawn once per batch, dropout gone."""
    torch.manual_seed(0)
    ours = m.Encoder(2, 6, 5, 2, mask_p=0.5, dropout=0.0).double().train()
    ref = RefTSEncoder(2, 6, 5, 2, 0.0).double().train()
    ref.load_state_dict(_ref_state(ours))
    x = torch.randn(4, 30, 2, dtype=torch.float64)
    torch.manual_seed(7)
    out = ours(x)
    torch.manual_seed(7)
    keep = torch.rand(4, 30) < 0.5                                    # the same draw, made here
    assert torch.allclose(out, ref(x, keep), atol=1e-12)
    assert not (keep == keep[:1]).all()                               # the mask differs per instance
    drop = m.Encoder(2, 6, 5, 2, mask_p=1.0, dropout=0.5).double()
    drop.load_state_dict(ours.state_dict())
    drop.train()
    a, b = drop(x), drop(x)
    zero = (a == 0).double().mean().item()
    assert 0.35 < zero < 0.65 and not torch.equal(a, b)              # dropout active in training
    drop.eval()
    assert torch.equal(drop(x), drop(x))                              # and off in eval
    assert torch.allclose(drop(x), ref.eval()(x, torch.ones(4, 30, dtype=torch.bool)), atol=1e-12)


def test_random_crop_distribution():
    """Catches: an overlap that never reaches the full length, one offset shared by the batch,
    views whose overlaps hold different timestamps."""
    rng = np.random.default_rng(0)
    T, B, n = 12, 6, 4000
    lengths, shared = [], 0
    for _ in range(n):
        crop_l, (s1, n1), (s2, n2) = m.random_crop(T, B, rng)
        lengths.append(crop_l)
        assert (s1 + n1 - crop_l == s2).all()                          # overlap: same absolute steps
        shared += len(set(s1.tolist())) == 1
    counts = np.bincount(lengths, minlength=T + 1)[2:]
    assert counts.min() > 0 and counts[-1] > 0                        # every overlap length 2..T occurs
    p = 1 / (T - 1)                                                   # uniform over 2..T, as official
    assert np.all(np.abs(counts / n - p) < 5 * np.sqrt(p * (1 - p) / n))
    assert shared < n * 0.5                                           # offsets differ across instances
    crop_l, (s1, n1), (s2, n2) = m.random_crop(8, 4, np.random.default_rng(1), temporal_unit=2)
    assert crop_l >= 8                                                # 2^(unit+1): the coarsest level exists


def test_centerize_against_a_per_series_loop():
    """Catches: padding moved the wrong way, equal-length series changed, odd padding split wrongly."""
    rng = np.random.default_rng(0)
    x = rng.normal(size=(5, 11, 2))
    obs = [11, 4, 7, 1, 10]
    for i, L in enumerate(obs):
        x[i, L:] = np.nan
    x[4, :1] = np.nan                                                 # one leading NaN already
    out = m.centerize(x)
    for i in range(5):
        observed = ~np.isnan(x[i]).all(-1)
        lead, trail = observed.argmax(), observed[::-1].argmax()
        want_lead = (lead + trail) // 2                               # half the padding in front
        got = ~np.isnan(out[i]).all(-1)
        assert got.argmax() == want_lead and got.sum() == observed.sum()
        np.testing.assert_array_equal(out[i][got], x[i][observed])    # values kept, in order
    same = rng.normal(size=(3, 9, 1))
    assert m.centerize(same) is same


def _x(n=24, T=40, C=1, seed=0):
    return np.random.default_rng(seed).normal(size=(n, T, C)).astype(np.float32)


def test_max_train_length_window_is_random_and_applied(monkeypatch):
    """Catches: the window never applied, always the same window."""
    seen = []
    real_take = m.take_per_row

    def spy(xb, start, length):
        seen.append((xb.size(1), xb[0, 0, 0].item()))
        return real_take(xb, start, length)

    monkeypatch.setattr(m, "take_per_row", spy)
    x = np.tile(np.arange(40, dtype=np.float32)[None, :, None], (24, 1, 1))   # x[n, t] = t
    m.pretrain(x, m.Args(dataset="synthetic", iters=12, max_train_length=16, **TINY), torch.device("cpu"))
    assert {T for T, _ in seen} == {16}
    assert len({first for _, first in seen}) > 3                      # window starts vary (0..24)


@pytest.mark.parametrize("measure", ["all", "probe"])
def test_sampler_scores_decide_the_next_level(monkeypatch, measure):
    """Catches: a sampler that computes the Eq. (5) scores and then draws uniformly."""
    monkeypatch.setattr(m, "resolution_scores", lambda prev, cur: {2: 1.0, 0: 0.0, 1: 0.0} if cur and prev else {})
    args = m.Args(dataset="synthetic", epochs=6, measure=measure, **TINY)
    _, _, hist, _ = m.pretrain(_x(T=32), args, torch.device("cpu"))
    assert [h["level"] for h in hist[2:]] == [2] * 4                  # epochs 3.. follow the scores
    monkeypatch.undo()                                                # the real Eq. (5) from here on
    smp = m.ResolutionSampler(6, np.random.default_rng(0))
    smp.last = {j: 1.0 for j in range(6)}
    smp.record({j: 1.0 + 40.0 * (j == 4) for j in range(6)})         # level 4's loss jumped
    smp.end_epoch()
    assert smp.level == 4


def test_probe_measures_the_first_batch_only(monkeypatch):
    """Catches: --measure probe measuring every batch (no saving) or none (no scores)."""
    flags = []
    real = m.adaptive_resolution_loss

    def spy(z1, z2, level, alpha, unit, measure):
        flags.append(measure)
        return real(z1, z2, level, alpha, unit, measure)

    monkeypatch.setattr(m, "adaptive_resolution_loss", spy)
    args = m.Args(dataset="synthetic", epochs=3, measure="probe", **TINY)
    _, _, hist, stats = m.pretrain(_x(n=24, T=32), args, torch.device("cpu"))
    per = stats["iters_per_epoch"]
    assert per == 3 and flags == [True, False, False] * 3
    assert all(h["level_losses"] for h in hist) and hist[2]["scores"]   # scores from the probe batch


def test_embed_is_the_eval_encoder_max_pooled():
    """Catches: mean pooling as the main number, evaluation in training mode (mask and dropout on)."""
    torch.manual_seed(0)
    net = m.Encoder(1, 6, 5, 2, dropout=0.5).train()
    x = _x(n=5, T=20)
    zmax, zavg = m.embed(net, x, 2, torch.device("cpu"))
    assert net.training                                               # mode restored
    net.eval()
    with torch.no_grad():
        h = net(torch.from_numpy(x))
    assert torch.allclose(zmax, h.amax(1), atol=1e-6) and torch.allclose(zavg, h.mean(1), atol=1e-6)


def test_main_reports_the_max_pooled_probe_as_accuracy(monkeypatch, tmp_path):
    """Catches: main swapping max and average pooling in what it reports."""
    def fake_embed(net, x, bs, device):
        n = len(x)
        return torch.full((n, 2), 1.0), torch.full((n, 2), 2.0)      # max marked 1, avg marked 2

    def fake_probe(z_train, *rest):
        acc = 0.25 if float(z_train[0, 0]) == 1.0 else 0.75
        return {"accuracy": acc, "macro_f1": acc, "C": 1.0, "val_accuracy": None}

    monkeypatch.setattr(m, "embed", fake_embed)
    monkeypatch.setattr(m, "linear_eval", fake_probe)
    res = m.main(m.Args(dataset="synthetic", iters=2, out_dir=str(tmp_path), **TINY))
    assert res["eval"]["accuracy"] == 0.25 and res["eval"]["accuracy_avgpool"] == 0.75
    assert res["eval"]["random_init_accuracy"] == 0.25


# ------------------------------------------------------------------ bad input at the door
def _npz(path, **arrays):
    np.savez(path, **arrays)
    return str(path)


def _bad_inputs(tmp):
    rng = np.random.default_rng(0)
    X, y = rng.normal(size=(10, 2, 30)), np.arange(10) % 2
    (tmp / "notes.npz").write_text("this is not an archive")
    (tmp / "bad.csv").write_text("1,2,3\n")
    (tmp / "Bad_TRAIN.ts").write_text("@problemName x\n@data\n1,2,abc:0\n")
    (tmp / "Bad_TEST.ts").write_text("@problemName x\n@data\n1,2,3:0\n")
    nan = X.copy()
    nan[3] = np.nan
    return {
        "unknown name": (["--dataset", "GunPiont"], "Closest names"),
        "missing file": (["--dataset", str(tmp / "nope.npz")], "no such file"),
        "npz keys": (["--dataset", _npz(tmp / "keys.npz", A=X)], "expected arrays"),
        "npz channels": (["--dataset", _npz(tmp / "ch.npz", X_train=X, y_train=y, X_test=X[:, :1], y_test=y)],
                         "different channel counts"),
        "not an npz": (["--dataset", str(tmp / "notes.npz")], "not a readable .npz"),
        "object npz": (["--dataset", _npz(tmp / "obj.npz", X=np.array([X[0], X[1, 0]], dtype=object), y=y[:2])],
                       "not a readable .npz"),
        "one class": (["--dataset", _npz(tmp / "one.npz", X=X, y=np.zeros(10))], "one class"),
        "file type": (["--dataset", str(tmp / "bad.csv")], "unsupported file type"),
        "bad .ts": (["--dataset", str(tmp / "Bad_TRAIN.ts")], "cannot parse"),
        "all-NaN series": (["--dataset", _npz(tmp / "nan.npz", X=nan, y=y)], "entirely missing"),
        "bad --loss": (["--dataset", "synthetic", "--loss", "triplet"], "--loss"),
        "too short": (["--dataset", _npz(tmp / "short.npz", X=X[:, :, :1], y=y)], "too short"),
    }


def test_bad_input_gets_one_error_line_and_exit_2(tmp_path, capsys):
    """A user's mistake prints `error: ...` (what is wrong, how to fix it) and no traceback."""
    import common
    for what, (argv, expect) in _bad_inputs(tmp_path).items():
        with pytest.raises(SystemExit) as e:
            common.cli(m.main, m.Args, argv + ["--out-dir", str(tmp_path / "runs"), "--no-log"])
        err = capsys.readouterr().err.strip()
        assert e.value.code == 2, what
        assert err.startswith("error: ") and expect in err and "Traceback" not in err, (what, err)


# ------------------------------------------------------------------ survivors of mutation testing, killed
def test_centerize_series_padded_at_the_end_only():
    """The usual NaN padding (no series starts with NaN) must still be centred; odd paddings round down."""
    x = np.arange(2 * 8, dtype=float).reshape(2, 8, 1)
    x[0, 5:] = np.nan                                                 # 3 trailing: 1 moves to the front
    x[1, 7:] = np.nan                                                 # 1 trailing: stays at the end
    out = m.centerize(x)
    assert np.isnan(out[0, :1, 0]).all() and np.isnan(out[0, 6:, 0]).all()
    np.testing.assert_array_equal(out[0, 1:6, 0], x[0, :5, 0])
    np.testing.assert_array_equal(out[1], x[1])
    y = np.arange(6, dtype=float).reshape(1, 6, 1)
    y[0, :1] = np.nan                                                 # 1 leading, 0 trailing: moves to the end
    full = np.arange(6, dtype=float).reshape(1, 6, 1) + 10
    out = m.centerize(np.concatenate([y, full]))
    assert np.isnan(out[0, 5, 0]) and not np.isnan(out[0, :5, 0]).any()
    np.testing.assert_array_equal(out[1], full[0])                    # each series gets its own shift


def test_sampler_epoch_means_average_the_batches():
    smp = m.ResolutionSampler(4, np.random.default_rng(0))
    smp.record({0: 1.0, 1: 4.0})
    smp.record({0: 3.0})
    means, _ = smp.end_epoch()
    assert means == {0: 2.0, 1: 4.0}                                  # mean over the batches that measured j


@pytest.mark.parametrize("unit", [1, 2])
def test_measured_levels_match_hierarchical_with_a_temporal_unit(unit):
    z1, z2 = rand_views(3, 40, 4, seed=unit)
    per = {}
    m.hierarchical_contrastive_loss(z1, z2, temporal_unit=unit, per_level=per)
    for level in range(6):
        _, _, measured = m.adaptive_resolution_loss(z1, z2, level, temporal_unit=unit)
        for j in per:
            assert abs(float(measured[j]) - per[j].item()) < 1e-9, (level, j)


def test_encoder_defaults_are_ts2vec_and_dilated_conv_is_a_drop_in_conv1d():
    net = m.Encoder(1)
    assert (net.input_fc.out_features, len(net.blocks), net.blocks[-1].conv2.out_channels) == (64, 11, 320)
    assert net.mask_p == 0.5 and net.repr_dropout.p == 0.1
    conv = m.DilatedConv(2, 3, 4).double()
    x = torch.randn(2, 2, 11, dtype=torch.float64)
    assert torch.allclose(nn.Conv1d.forward(conv, x), conv(x), atol=1e-12)   # torch's own path agrees


def _official_crop(T, B, rng, temporal_unit=0):
    """The official fit loop's draws, transcribed (np.random.randint(low, high) -> rng.integers):
    crop_l, crop_left, crop_eleft, crop_eright, then one crop_offset per instance."""
    crop_l = rng.integers(low=2 ** (temporal_unit + 1), high=T + 1)
    crop_left = rng.integers(T - crop_l + 1)
    crop_right = crop_left + crop_l
    crop_eleft = rng.integers(crop_left + 1)
    crop_eright = rng.integers(low=crop_right, high=T + 1)
    crop_offset = rng.integers(low=-crop_eleft, high=T - crop_eright + 1, size=B)
    view1 = (crop_offset + crop_eleft, crop_right - crop_eleft)      # x[offset + eleft : offset + right]
    view2 = (crop_offset + crop_left, crop_eright - crop_left)       # x[offset + left : offset + eright]
    return int(crop_l), view1, view2


def test_random_crop_draws_equal_the_official_fit_loop():
    for seed in range(200):
        T, B = 2 + seed % 40, 1 + seed % 5
        ours = m.random_crop(T, B, np.random.default_rng(seed), temporal_unit=0)
        ref = _official_crop(T, B, np.random.default_rng(seed))
        assert ours[0] == ref[0]
        for (s, n), (rs, rn) in zip(ours[1:], ref[1:]):
            np.testing.assert_array_equal(s, rs)
            assert n == rn


# ================================================================== defaults and wiring (issue 14)
def test_args_defaults_are_the_papers():
    """Catches: a default that is not the paper's (or the code's) value, e.g. batch 16, mask 0.9."""
    import dataclasses
    got = {f.name: f.default for f in dataclasses.fields(m.Args)}
    assert set(got) == set(PAPER_DEFAULTS)
    assert {k: v for k, (v, _) in PAPER_DEFAULTS.items()} == got
    assert {k: v for k, (v, _) in PAPER_PRESETS.items()} == m.PRESETS
    net = m.Encoder(1)                                                # Encoder's own defaults = the preset
    assert (net.blocks[-1].conv2.out_channels, len(net.blocks) - 1) == PAPER_PRESETS["ts2vec"][0]
    opt = []
    real = torch.optim.AdamW

    class Spy(real):
        def __init__(self, params, **kw):
            super().__init__(params, **kw)
            opt.append(kw)

    import unittest.mock
    with unittest.mock.patch.object(m.torch.optim, "AdamW", Spy):
        m.pretrain(_x(n=8, T=8), m.Args(dataset="synthetic", iters=1, **TINY), torch.device("cpu"))
    assert opt == [{"lr": 1e-3}]                                      # torch's AdamW defaults otherwise (spec 7)


def _rows(n=20, T=12, seed=0):
    """Series whose every value names its row: x[i, t, 0] = i + small noise (|noise| < 0.05)."""
    rng = np.random.default_rng(seed)
    return (np.arange(n, dtype=np.float32)[:, None, None] + 0.01 * rng.standard_normal((n, T, 1))).astype(np.float32)


def test_batches_are_shuffled_each_epoch_without_repeats(monkeypatch):
    """Catches: batches never shuffled (rows in stored order), one order drawn once and reused every
    epoch, rows drawn with replacement."""
    batches = []
    real = m.take_per_row

    def spy(xb, start, length):
        batches.append(tuple(torch.round(xb[:, 0, 0]).long().tolist()))
        return real(xb, start, length)

    monkeypatch.setattr(m, "take_per_row", spy)
    x = _rows()
    _, _, _, stats = m.pretrain(x, m.Args(dataset="synthetic", epochs=5, loss="hierarchical", **TINY),
                                torch.device("cpu"))
    per, bs = stats["iters_per_epoch"], stats["batch_size"]
    steps = batches[::2]                                              # take_per_row runs twice a step (two views)
    assert batches[1::2] == steps and len(steps) == 5 * per and (per, bs) == (2, 8)
    epochs = [sum(steps[e * per:(e + 1) * per], ()) for e in range(5)]
    for rows in epochs:
        assert len(set(rows)) == per * bs                             # no row twice in an epoch (drop_last)
    assert len(set(epochs)) == 5                                      # a new order every epoch
    assert all(list(rows) != sorted(rows) for rows in epochs)         # not the stored order
    assert set(sum(epochs, ())) == set(range(len(x)))                 # every row is seen


def test_the_loop_hands_each_loss_its_args_and_the_overlap_of_the_two_views(monkeypatch):
    """Inside the real loop: alpha and temporal_unit reach the losses and the crop (not 0.5 / 0 written
    in), z1 is the LAST crop_l outputs of view 1 and z2 the FIRST crop_l outputs of view 2, from two
    encoder calls. Catches: hard-coded loss arguments, an overlap taken from the wrong end, views swapped."""
    outs, crops, calls = [], [], []
    real_forward, real_crop = m.Encoder.forward, m.random_crop
    real_hier, real_adapt = m.hierarchical_contrastive_loss, m.adaptive_resolution_loss

    def forward(self, x):
        out = real_forward(self, x)
        if self.training:
            outs.append(out.detach().clone())
        return out

    def crop(T, B, rng, temporal_unit=0):
        r = real_crop(T, B, rng, temporal_unit)
        crops.append((r[0], temporal_unit))
        return r

    def hier(z1, z2, alpha=0.5, temporal_unit=0, per_level=None):
        calls.append(("hier", z1.detach().clone(), z2.detach().clone(), alpha, temporal_unit))
        return real_hier(z1, z2, alpha, temporal_unit, per_level)

    def adapt(z1, z2, level, alpha=0.5, temporal_unit=0, measure=True):
        calls.append(("adapt", z1.detach().clone(), z2.detach().clone(), alpha, temporal_unit))
        return real_adapt(z1, z2, level, alpha, temporal_unit, measure)

    monkeypatch.setattr(m.Encoder, "forward", forward)
    monkeypatch.setattr(m, "random_crop", crop)
    monkeypatch.setattr(m, "hierarchical_contrastive_loss", hier)
    monkeypatch.setattr(m, "adaptive_resolution_loss", adapt)
    for loss in ("hierarchical", "adaptive"):
        outs.clear(), crops.clear(), calls.clear()
        args = m.Args(dataset="synthetic", iters=4, loss=loss, alpha=0.3, temporal_unit=1, **TINY)
        m.pretrain(_x(n=16, T=24), args, torch.device("cpu"))
        assert len(calls) == len(crops) == 4 and len(outs) == 8
        for k, (kind, z1, z2, alpha, unit) in enumerate(calls):
            crop_l, crop_unit = crops[k]
            assert kind == loss[:len(kind)] and alpha == 0.3 and unit == 1 and crop_unit == 1
            assert torch.equal(z1, outs[2 * k][:, -crop_l:])              # view 1, its end
            assert torch.equal(z2, outs[2 * k + 1][:, :crop_l])           # view 2, its start


def test_main_evaluates_and_saves_the_swa_encoder_and_its_own_initial_weights(monkeypatch, real_data, tmp_path):
    """The encoder main probes and writes is the SWA average (not the last iterate), and the random-init
    baseline is that encoder's own weights before the first optimiser step, in a separate copy.
    Catches: pretrain returning the raw network, a random-init baseline that is the trained encoder or
    a fresh draw, encoder.pt holding other weights than the ones evaluated."""
    swas, nets, first, embedded = [], [], {}, []
    real_avg, real_embed, real_init = torch.optim.swa_utils.AveragedModel, m.embed, m.Encoder.__init__

    class Avg(real_avg):
        def __init__(self, model, *a, **k):
            super().__init__(model, *a, **k)
            swas.append(self)

    def init(self, *a, **k):
        real_init(self, *a, **k)
        nets.append(self)

    def pre_hook(opt, args, kwargs):
        if not first:
            first.update({k: v.detach().clone() for k, v in nets[0].state_dict().items()})

    def embed(net, x, bs, device):
        embedded.append((net, {k: v.detach().clone() for k, v in net.state_dict().items()}))
        return real_embed(net, x, bs, device)

    monkeypatch.setattr(m.torch.optim.swa_utils, "AveragedModel", Avg)
    monkeypatch.setattr(m.Encoder, "__init__", init)
    monkeypatch.setattr(m, "embed", embed)
    import torch.optim.optimizer as optimizer
    handle = optimizer.register_optimizer_step_pre_hook(pre_hook)
    try:
        res = m.main(m.Args(dataset="GunPoint", data_dir=str(real_data), iters=6, out_dir=str(tmp_path),
                            save_model=True, **TINY))
    finally:
        handle.remove()
    (swa,), raw = swas, nets[0]
    trained = [e for e in embedded if e[0] is swa.module]
    baseline = [e for e in embedded if e[0] is not swa.module]
    assert len(trained) == len(baseline) == 3                         # train, val, test of each encoder
    init_net = baseline[0][0]
    assert all(e[0] is init_net for e in baseline) and init_net is not raw
    assert all(torch.equal(first[k], v) for e in baseline for k, v in e[1].items())
    assert not any(p.data_ptr() == q.data_ptr() for p in init_net.parameters() for q in raw.parameters())
    ck = torch.load(Path(res["run_dir"]) / "encoder.pt", weights_only=True)
    final_avg = swa.module.state_dict()
    assert all(torch.equal(ck["state_dict"][k], v) for k, v in final_avg.items())
    assert all(torch.equal(ck["init_state_dict"][k], v) for k, v in first.items())
    assert any(not torch.equal(final_avg[k], v) for k, v in raw.state_dict().items())   # the average, not the last step
    assert res["selection"]["probe_C"] in (0.01, 0.1, 1.0, 10.0, 100.0) and res["label_free"] is True


def test_pretraining_pool_order_does_not_follow_the_labels(monkeypatch, tmp_path):
    """Label-free (contract A): permuting a file's training labels changes data.py's stratified
    validation carve (which series are train, which val) but not the pool pre-training reads, nor
    its order, so not its batches. Catches: pre-training on concatenate([train, val]), whose row
    order follows the labels through the carve (found in issue 14's review)."""
    pools = pretraining_pools(m, monkeypatch, tmp_path, log=False)
    assert np.array_equal(pools[0], pools[1])
    X = np.random.default_rng(3).standard_normal((40, 1, 32)).astype(np.float32)   # the file's series
    assert sorted(r.tobytes() for r in pools[0]) == sorted(r.tobytes() for r in np.ascontiguousarray(X.transpose(0, 2, 1)))
