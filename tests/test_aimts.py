"""aimts.py: each part against an independent reference (naive loops from the equations, matplotlib,
torch's own layers); the wiring inside the real pre-training loop (spies on what each loss receives);
the protocol from outside main (the test split reaches one final evaluation, the random-init baseline
is the encoder's own initial weights, fine-tuning trains everything on the training split); the
defaults against the paper (PAPER_DEFAULTS); two gloo processes through main."""
import json
import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

import aimts as m

ROOT = Path(__file__).resolve().parents[1]
TINY = dict(repr_dims=8, hidden_dims=4, depth=1, proj_dims=4, image_width=2)

# CONTRACT F: every Args default, with where it comes from (paper place, a numbered deviation in
# aimts.py's header, or plumbing the paper has no opinion on). A changed default fails the test below.
PAPER_DEFAULTS = {
    "dataset": ("GunPoint", "plumbing"),
    "pretrain": ("ArrowHead,BasicMotions,JapaneseVowels", "deviation 16"),   # paper: the 19 TSER sets
    "data_dir": ("", "plumbing"),
    "load": ("", "plumbing"),
    "few_shot": (0.0, "Sec. V-A-1-b"),          # the training set fine-tunes; Table V's fractions are flags
    "loss_terms": ("full", "Eq. (1)"),
    "paper_sizes": (False, "deviation 16"),
    "repr_dims": (128, "deviation 16"),          # official 512
    "hidden_dims": (32, "deviation 16"),         # official 64
    "depth": (6, "deviation 16"),                # official 10
    "proj_dims": (128, "deviation 16"),          # official 128, paper silent
    "image_width": (16, "deviation 16"),         # ResNet-18: 64
    "image_weights": ("", "deviation 8"),        # random init (official: ImageNet weights)
    "freeze_image": (False, "Sec. IV-A"),        # both encoders are optimised
    "alpha": (0.7, "Sec. V-E-1"),                # Fig. 7(a): best at 0.7 (official code 0.9)
    "beta": (0.9, "Sec. V-E-2"),
    "gamma": (0.1, "Sec. V-E-3"),
    "tau0": (1.0, "deviation 3"),
    "tau_si": (0.1, "deviation 3"),
    "dropout": (0.1, "deviation 16"),
    "batch_size": (16, "Sec. V-A-3"),
    "lr": (7e-4, "deviation 9"),                 # paper 7e-3
    "warmup_epochs": (1, "deviation 9"),
    "epochs": (1, "deviation 16"),               # paper 2
    "max_iters": (20, "deviation 16"),
    "ft_epochs": (36, "deviation 10"),
    "ft_batch_size": (8, "Sec. V-F"),
    "ft_lr": (1e-3, "Sec. V-A-3"),
    "val_fraction": (0.2, "deviation 10"),
    "scratch": (True, "plumbing"),
    "probe": (True, "plumbing"),
    "seed": (1, "deviation 16"),                 # paper 3407
    "threads": (0, "plumbing"),
    "device": ("auto", "plumbing"),
    "out_dir": ("runs", "plumbing"),
    "save_model": (True, "plumbing"),
    "log": (True, "plumbing"),
}


def test_args_defaults_are_the_paper_table():
    import dataclasses
    import re
    fields = {f.name: f.default for f in dataclasses.fields(m.Args)}
    assert set(fields) == set(PAPER_DEFAULTS)                # one row for every field, no stale rows
    for name, (value, source) in PAPER_DEFAULTS.items():
        assert fields[name] == value and type(fields[name]) is type(value), (name, fields[name], value)
        assert re.fullmatch(r"(Sec\. [IVX]+(-[A-Z](-\d+)?(-[a-z])?)?|Eq\. \(\d+\)|Table [IVX]+|Fig\. \d+\([a-z]\)"
                            r"|deviation \d+|plumbing)", source), (name, source)
    header = m.__doc__
    for n in {int(src.split()[1]) for _, src in PAPER_DEFAULTS.values() if src.startswith("deviation")}:
        assert re.search(rf"^  {n}\. ", header, re.M), f"deviation {n} is not in aimts.py's header"


def g(seed=0):
    return torch.Generator().manual_seed(seed)


def unit(*shape, seed=0):
    return F.normalize(torch.randn(*shape, generator=g(seed), dtype=torch.float64), dim=-1)


# --------------------------------------------------------------------------- Eq. (9) geodesic mixup
def test_geodesic_mixup_properties():
    u, v = unit(64, 16, seed=1), unit(64, 16, seed=2)
    lam = torch.rand(64, generator=g(3), dtype=torch.float64)
    mix = m.geodesic_mixup(3 * u, 0.5 * v, lam)              # non-unit inputs are normalised first
    assert torch.allclose(mix.norm(dim=-1), torch.ones(64, dtype=torch.float64), atol=1e-5)
    theta = torch.acos((u * v).sum(-1))
    ang_v = torch.acos((mix * v).sum(-1).clamp(-1, 1))
    ang_u = torch.acos((mix * u).sum(-1).clamp(-1, 1))
    assert torch.allclose(ang_v, lam * theta, atol=1e-6)      # the angle to v is lam theta
    assert torch.allclose(ang_u, (1 - lam) * theta, atol=1e-6)  # on the arc between them
    assert torch.allclose(m.geodesic_mixup(u, v, torch.ones(64)), u, atol=1e-6)   # lam = 1 gives u
    assert torch.allclose(m.geodesic_mixup(u, v, torch.zeros(64)), v, atol=1e-6)  # lam = 0 gives v
    ref = (u * torch.sin(lam * theta)[:, None] + v * torch.sin((1 - lam) * theta)[:, None]) / torch.sin(theta)[:, None]
    assert torch.allclose(mix, ref, atol=1e-8)               # Eq. (9) as printed


def test_geodesic_mixup_exact_angles_small_and_large_any_shape():
    thetas = torch.tensor([2e-3, 5e-3, 0.05, 0.3, 0.9, 2.0, 3.0], dtype=torch.float64)
    e = torch.eye(8, dtype=torch.float64)
    v = e[0].expand(7, 8)
    u = torch.cos(thetas)[:, None] * e[0] + torch.sin(thetas)[:, None] * e[1]
    lam = torch.tensor([0.5, 0.3, 0.9, 0.2, 0.7, 0.4, 0.6], dtype=torch.float64)
    mix = m.geodesic_mixup(u, v, lam)
    ang = torch.atan2(mix[:, 1], mix[:, 0])                  # angle to v in the (e0, e1) plane
    assert torch.allclose(ang, lam * thetas, atol=1e-7, rtol=1e-6)   # also where the lerp guard acts
    assert torch.allclose(m.geodesic_mixup(u, v, lam[:, None]), mix, atol=1e-12)   # lam as a column
    Q, _ = torch.linalg.qr(torch.randn(8, 8, generator=g(40), dtype=torch.float64))   # a rotation
    mix3 = m.geodesic_mixup((u @ Q)[:, None] * 2, (v @ Q)[:, None] * 3, lam[:, None])  # (7, 1, 8), unnormalised
    assert mix3.shape == (7, 1, 8) and torch.allclose(mix3[:, 0] @ Q.T, mix, atol=1e-12)


def test_geodesic_mixup_identical_and_opposite_inputs_are_safe():
    u = unit(8, 16, seed=4).requires_grad_(True)
    out = m.geodesic_mixup(u, u.detach().clone(), torch.full((8,), 0.3))
    out.sum().backward()
    assert torch.isfinite(out).all() and torch.isfinite(u.grad).all()
    assert torch.allclose(out, u.detach(), atol=1e-6)
    near = F.normalize(u.detach() + 1e-4 * unit(8, 16, seed=5), dim=-1)
    assert torch.isfinite(m.geodesic_mixup(u.detach(), near, torch.full((8,), 0.5))).all()
    assert torch.isfinite(m.geodesic_mixup(u.detach(), -u.detach(), torch.full((8,), 0.5))).all()


# --------------------------------------------------------------------------- Eq. (3)-(6)
def naive_tau(d, tau0):
    """Eq. (3) for one sample, per anchor a: softmax of d over the row's 2G - 1 non-self entries with
    the positive's d = -inf, plus tau0."""
    n = d.shape[0]
    G = n // 2
    tau = np.full((n, n), tau0)
    for a in range(n):
        negs = [b for b in range(n) if b != a and b != (a + G) % n]
        if not negs:
            continue
        den = sum(math.exp(d[a, b]) for b in negs)
        for b in negs:
            tau[a, b] = tau0 + math.exp(d[a, b]) / den
    return tau


def naive_intra(v, tau):
    """Eq. (4), anchors from both views (deviation 2): for sample i, anchor a, -log exp(s_pos) /
    sum_{b != a} exp(s_ab), s_ab = v_a . v_b / tau_ab; mean over 2G B anchors."""
    B, n, _ = v.shape
    total = 0.0
    for i in range(B):
        for a in range(n):
            s = {b: float(v[i, a] @ v[i, b]) / tau[i, a, b] for b in range(n) if b != a}
            total += -(s[(a + n // 2) % n] - math.log(sum(math.exp(x) for x in s.values())))
    return total / (B * n)


def naive_inter(z1, z2, tau=1.0):
    """Eq. (5) with anchors from both views: positive z~_i, negatives the other 2B - 2 prototypes."""
    B = len(z1)
    z = torch.cat([z1, z2])
    total = 0.0
    for i in range(2 * B):
        num = float(z[i] @ z[(i + B) % (2 * B)]) / tau
        den = sum(math.exp(float(z[i] @ z[j]) / tau) for j in range(2 * B) if j != i)
        total += -(num - math.log(den))
    return total / (2 * B)


def test_adaptive_tau_matches_eq3_and_its_properties():
    G, B = 5, 3
    d = torch.rand(B, 2 * G, 2 * G, generator=g(6), dtype=torch.float64) * 3
    d = (d + d.transpose(1, 2)) / 2
    tau = m.adaptive_tau(d, tau0=0.7)
    for i in range(B):
        np.testing.assert_allclose(tau[i].numpy(), naive_tau(d[i].numpy(), 0.7), atol=1e-12)
    idx = torch.arange(2 * G)
    assert (tau[:, idx, (idx + G) % (2 * G)] == 0.7).all()   # positives get exactly tau0
    neg = ~torch.eye(2 * G, dtype=torch.bool) & ~torch.eye(2 * G, dtype=torch.bool).roll(G, 1)
    assert torch.allclose(((tau - 0.7) * neg).sum(-1), torch.ones(B, 2 * G, dtype=torch.float64))
    a, row = 0, d[0, 0]                                       # tau grows with distance along a row
    order = [b for b in torch.argsort(row).tolist() if neg[a, b]]
    assert all(tau[0, a, order[k]] <= tau[0, a, order[k + 1]] for k in range(len(order) - 1))
    assert (m.adaptive_tau(torch.rand(2, 2, 2), 1.0) == 1.0).all()   # G = 1: no negatives
    big = d.clone()
    big[0] = big[0] * 300 + 700                              # rows far apart in scale: stable softmax per row
    tb = m.adaptive_tau(big, 1.0)
    assert torch.isfinite(tb).all()
    for i in range(B):
        rows = big[i].numpy() - big[i].numpy().max()          # shift-invariant reference, no overflow
        np.testing.assert_allclose(tb[i].numpy(), naive_tau(rows, 1.0), atol=1e-12)


@pytest.mark.parametrize("G", [1, 2, 5])
def test_intra_loss_matches_naive_loop(G):
    B = 3
    v = torch.randn(B, 2 * G, 6, generator=g(7), dtype=torch.float64)
    d = torch.rand(B, 2 * G, 2 * G, generator=g(8), dtype=torch.float64)
    tau = m.adaptive_tau(d, 1.0)
    got = m.intra_prototype_loss(v, tau)
    assert abs(got.item() - naive_intra(v, tau)) < 1e-6
    if G == 1:
        assert got.item() == 0.0                             # only the positive in the row


def test_intra_loss_at_tau0_is_ntxent_over_the_2g_views():
    B, G = 2, 3
    v = torch.randn(B, 2 * G, 5, generator=g(9), dtype=torch.float64)
    got = m.intra_prototype_loss(v, torch.ones(B, 2 * G, 2 * G, dtype=torch.float64))
    ref = np.mean([naive_inter(v[i, :G], v[i, G:]) for i in range(B)])  # NT-Xent of views k vs k+G
    assert abs(got.item() - ref) < 1e-9


def test_inter_loss_matches_naive_loop():
    z1, z2 = (torch.randn(5, 7, generator=g(s), dtype=torch.float64) for s in (10, 11))
    assert abs(m.inter_prototype_loss(z1, z2).item() - naive_inter(z1, z2)) < 1e-6
    assert abs(m.inter_prototype_loss(z1, z2, 0.5).item() - naive_inter(z1, z2, 0.5)) < 1e-6


def test_prototype_is_projection_of_mean_view_representation(monkeypatch):
    torch.manual_seed(0)
    model = m.AimTS(m.Args(**TINY, dropout=0.0)).double()
    model.proj_pro = nn.Identity()                           # identity P^TS
    seen = {}
    monkeypatch.setattr(m, "inter_prototype_loss", lambda z1, z2: seen.update(z1=z1, z2=z2) or z1.sum() * 0)
    x = torch.randn(4, 20, 2, generator=g(12), dtype=torch.float64)
    views, img, lam = m.prepare_batch(x, x.amin((0, 1)), x.amax((0, 1)), g(13), 0.1)
    model.eval()
    model(x, views, img, lam, "joint")
    r = torch.stack([m.instance_repr(model.encoder(views[k])) for k in range(10)])   # (2G, B, D)
    assert torch.allclose(seen["z1"], r[:5].mean(0), atol=1e-10)   # Eq. (2): mean over view-1 set
    assert torch.allclose(seen["z2"], r[5:].mean(0), atol=1e-10)


def test_instance_repr_is_mean_over_variables_then_max_over_time():
    """An input on which the orders of mean and max over M and T all differ: variable 0 peaks at t = 0,
    variable 1 at t = 1. max_t mean_M = 0.5 (ours), mean_M max_t = 1, max_M mean_t = 0.4,
    mean_t max_M = 0.73."""
    h = torch.tensor([[[[1.0], [0.0], [0.2]], [[0.0], [1.0], [0.0]]]])   # (B=1, M=2, T=3, D=1)
    got = m.instance_repr(h)
    assert got.shape == (1, 1) and abs(got.item() - 0.5) < 1e-7
    for other in (h.amax(2).mean(1), h.mean(2).amax(1), h.amax(1).mean(1)):
        assert not torch.allclose(got, other)
    x = torch.randn(3, 5, 7, 4, generator=g(45))             # (B, M, T, D): a loop over b, d, t
    ref = torch.tensor([[max(x[b, :, t, d].mean().item() for t in range(7)) for d in range(4)] for b in range(3)])
    assert torch.allclose(m.instance_repr(x), ref, atol=1e-6)


# --------------------------------------------------------------------------- Eq. (7)-(12)
def naive_si(u, v, tau):
    B = len(u)
    u, v = F.normalize(u, dim=-1), F.normalize(v, dim=-1)
    tot = 0.0
    for i in range(B):
        tot += -(float(u[i] @ v[i]) / tau - math.log(sum(math.exp(float(u[i] @ v[j]) / tau) for j in range(B))))
        tot += -(float(v[i] @ u[i]) / tau - math.log(sum(math.exp(float(v[i] @ u[j]) / tau) for j in range(B))))
    return tot / (2 * B)


def naive_mix(u, v, mix, tau):
    """Eq. (10)-(11) with the positive in place of the anchor's own mix (deviation 4)."""
    B = len(u)
    u, v = F.normalize(u, dim=-1), F.normalize(v, dim=-1)
    tot = 0.0
    for a in (u, v):
        for i in range(B):
            pos = float(u[i] @ v[i]) / tau
            den = math.exp(pos) + sum(math.exp(float(a[i] @ mix[j]) / tau) for j in range(B) if j != i)
            tot += -(pos - math.log(den))
    return tot / (2 * B)


def test_series_image_losses_match_naive_loops():
    u, v = torch.randn(6, 8, generator=g(14), dtype=torch.float64), torch.randn(6, 8, generator=g(15), dtype=torch.float64)
    assert abs(m.series_image_loss(u, v, 0.1).item() - naive_si(u, v, 0.1)) < 1e-6
    mix = m.geodesic_mixup(u, v, torch.rand(6, generator=g(16), dtype=torch.float64))
    assert abs(m.mixup_loss(u, v, mix, 0.1).item() - naive_mix(u, v, mix, 0.1)) < 1e-6


def test_naive_loss_closed_form_for_aligned_orthogonal_pairs():
    B, tau = 5, 0.1
    e = torch.eye(B, 8, dtype=torch.float64)
    assert abs(m.series_image_loss(e, e, tau).item() - math.log(1 + (B - 1) * math.exp(-1 / tau))) < 1e-9


def test_mixup_loss_at_lambda0_image_half_equals_image_to_series_term():
    u, v = unit(6, 8, seed=17), unit(6, 8, seed=18)
    mix = m.geodesic_mixup(u, v, torch.zeros(6))             # m_j = v_j
    s = u @ v.T / 0.1
    i2s = F.cross_entropy(s, torch.arange(6))
    pos = (u * v).sum(-1) / 0.1
    s_img = torch.where(torch.eye(6, dtype=torch.bool), pos.diag_embed(), u @ mix.T / 0.1)
    assert torch.allclose(F.cross_entropy(s_img, torch.arange(6)), i2s, atol=1e-9)
    ser = F.cross_entropy(torch.where(torch.eye(6, dtype=torch.bool), pos.diag_embed(), v @ mix.T / 0.1), torch.arange(6))
    assert abs(m.mixup_loss(u, v, mix, 0.1).item() - (i2s.item() + ser.item()) / 2) < 1e-9


def test_total_loss_combines_terms_as_eq1_6_12(monkeypatch):
    torch.manual_seed(0)
    args = m.Args(**TINY, dropout=0.0, alpha=0.7, beta=0.6)
    model = m.AimTS(args).double()
    x = torch.randn(4, 16, 1, generator=g(19), dtype=torch.float64)
    batch = m.prepare_batch(x, x.amin((0, 1)), x.amax((0, 1)), g(20), 0.1)
    model.eval()
    out = model(x, *batch, "joint")
    assert abs(out["proto"].item() - (0.7 * out["inter"] + 0.3 * out["intra"]).item()) < 1e-12   # Eq. (6)
    assert abs(out["si"].item() - (0.6 * out["naive"] + 0.4 * out["mix"]).item()) < 1e-12       # Eq. (12)
    assert abs(out["loss"].item() - (out["proto"] + out["si"]).item()) < 1e-12                  # Eq. (1)
    warm = model(x, *batch, "warmup")
    assert set(warm) == {"naive", "mix", "si", "loss"} and warm["loss"] == warm["si"]
    rows = []
    hook = model.encoder.register_forward_hook(lambda mod, inp, out: rows.append(inp[0].shape[0]))
    for terms, key, keys in (("inter", "inter", {"inter", "loss"}), ("proto", "proto", {"inter", "intra", "proto", "loss"}),
                             ("naive_si", "naive", {"naive", "loss"}), ("si", "si", {"naive", "mix", "si", "loss"})):
        model.args = m.Args(**TINY, dropout=0.0, alpha=0.7, beta=0.6, loss_terms=terms)
        for phase in ("warmup", "joint"):                     # an ablation row is the same row in every phase
            o = model(x, *batch, phase)
            assert o["loss"] == o[key] and set(o) == keys, (terms, phase)   # only the terms the row needs
    hook.remove()
    assert rows == [4 * 11] * 4 + [4] * 4                    # series-image only: no views encoded


def test_view_distances_are_rms_differences_of_the_inputs():
    views = torch.randn(6, 3, 10, 2, generator=g(42), dtype=torch.float64)   # (2G, B, T, M)
    d = m.view_distances(views)
    assert d.shape == (3, 6, 6)
    for b in range(3):
        for j in range(6):
            for k in range(6):
                ref = math.sqrt(((views[j, b] - views[k, b]) ** 2).mean().item())
                assert abs(d[b, j, k].item() - ref) < 1e-6


# --------------------------------------------------------------------------- augmentations
def test_augmentations_keep_shape_no_nan_fresh_draws():
    x = torch.randn(6, 50, 3, generator=g(21))
    x[0, 40:] = float("nan")                                 # variable length: NaN padding
    views = m.make_views(x, g(22))
    assert views.shape == (10, 6, 50, 3) and torch.isfinite(views).all()
    for k in range(5):                                       # the two views of augmentation k differ
        assert not torch.allclose(views[k], views[5 + k])
    a1, a2 = m.make_views(x, g(23)), m.make_views(x, g(23))
    assert torch.equal(a1, a2)                               # seeded


def test_resample_is_linear_interpolation_with_clamped_ends():
    x = torch.randn(2, 9, 3, generator=g(43), dtype=torch.float64)
    pos = torch.tensor([[0.0, 0.5, 3.25, 7.0, 7.9, 8.0, 8.0], [8.0, 2.0, 0.0, 1e-3, 4.5, 7.5, 6.0]], dtype=torch.float64)
    out = m.resample(x, pos)
    for b in range(2):
        for j in range(pos.size(1)):
            p = pos[b, j].item()
            i = min(int(math.floor(p)), 7)
            ref = x[b, i] * (1 - (p - i)) + x[b, i + 1] * (p - i)   # x read at p, linearly
            assert torch.allclose(out[b, j], ref, atol=1e-12)
    one = torch.randn(2, 1, 3, dtype=torch.float64)          # a single step: every read is that step
    assert torch.equal(m.resample(one, torch.zeros(2, 4, dtype=torch.float64)), one.expand(2, 4, 3))


def test_window_slice_start_covers_its_whole_range():
    T, B = 20, 2000
    x = torch.arange(T, dtype=torch.float64)[None, :, None].expand(B, T, 1).contiguous()
    first = m.window_slice(x, g(44))[:, 0, 0]                 # ramp: output 0 reads the window's first step
    starts = torch.round(first).long()
    assert set(starts.tolist()) == set(range(T - 10))         # U{0, ..., T - w - 1}, w = T / 2


def test_jitter_and_scaling_statistics():
    x = torch.ones(200, 100, 3)
    j = m.jitter(x, g(24)) - 1
    assert abs(j.std().item() - 0.3) < 0.01 and abs(j.mean().item()) < 0.01
    s = m.scaling(x, g(25))
    assert torch.allclose(s, s[:, :1].expand_as(s))          # one factor per (sample, variable)
    f = s[:, 0]
    assert abs(f.std().item() - 0.5) < 0.05 and abs(f.mean().item() - 1) < 0.05
    assert f[:, 0].ne(f[:, 1]).all()                         # variables get their own factor


def test_window_slice_equals_interpolate_of_the_window():
    x = torch.randn(8, 40, 2, generator=g(26), dtype=torch.float64)
    out = m.window_slice(x, g(27))
    starts = set()
    for b in range(8):
        hits = [s for s in range(0, 20) if torch.allclose(
            F.interpolate(x[b, s:s + 20].T[None], size=40, mode="linear", align_corners=False)[0].T, out[b])]
        assert len(hits) == 1, hits
        starts.add(hits[0])
    assert len(starts) > 2                                    # a start per sample


def naive_pchip(xk, yk, xq):
    """PCHIP from Fritsch & Carlson (1980) as scipy documents it, one query at a time."""
    n = len(xk)
    h = [xk[i + 1] - xk[i] for i in range(n - 1)]
    dl = [(yk[i + 1] - yk[i]) / h[i] for i in range(n - 1)]
    d = [0.0] * n
    for k in range(1, n - 1):
        if dl[k - 1] * dl[k] > 0:
            w1, w2 = 2 * h[k] + h[k - 1], h[k] + 2 * h[k - 1]
            d[k] = (w1 + w2) / (w1 / dl[k - 1] + w2 / dl[k])

    def edge(h0, h1, m0, m1):
        dd = ((2 * h0 + h1) * m0 - h0 * m1) / (h0 + h1)
        if np.sign(dd) != np.sign(m0):
            dd = 0.0
        elif np.sign(m0) != np.sign(m1) and abs(dd) > abs(3 * m0):
            dd = 3 * m0
        return dd
    d[0] = edge(h[0], h[1], dl[0], dl[1])
    d[-1] = edge(h[-1], h[-2], dl[-1], dl[-2])
    out = []
    for q in xq:
        k = min(max(int(np.searchsorted(xk, q, side="right")) - 1, 0), n - 2)
        t = (q - xk[k]) / h[k]
        out.append((2 * t ** 3 - 3 * t ** 2 + 1) * yk[k] + (t ** 3 - 2 * t ** 2 + t) * h[k] * d[k]
                   + (-2 * t ** 3 + 3 * t ** 2) * yk[k + 1] + (t ** 3 - t ** 2) * h[k] * d[k + 1])
    return np.array(out)


def test_pchip_matches_reference_loop():
    rng = np.random.default_rng(0)
    xk = np.sort(rng.uniform(0, 10, 9))
    yk = np.stack([rng.normal(size=9), np.cumsum(rng.uniform(0, 1, 9)), np.r_[0, 1, 1, 2, -1, -1, 3, 0, 5.]])
    xq = np.linspace(xk[0], xk[-1], 57)
    got = m.pchip(torch.tensor(xk), torch.tensor(yk), torch.tensor(xq)).numpy()
    for r in range(3):
        np.testing.assert_allclose(got[r], naive_pchip(xk, yk[r], xq), atol=1e-10)
    xk2 = np.array([0.0, 10, 11, 12, 22])                     # uneven ends: the end-slope limiter acts
    yk2 = np.array([[0.0, 1, -49, -48, -50], [0, -1, 49, 50, 40]])
    xq2 = np.linspace(0, 22, 89)
    got2 = m.pchip(torch.tensor(xk2), torch.tensor(yk2), torch.tensor(xq2)).numpy()
    for r in range(2):
        np.testing.assert_allclose(got2[r], naive_pchip(xk2, yk2[r], xq2), atol=1e-10)


def test_time_warp_is_monotone_with_fixed_ends_and_speed_ratio():
    T = 1011                                                  # anchors fall on whole steps (every 10)
    pos = m.warp_positions(16, T, g(28), "cpu", torch.float64)
    assert (pos.diff(dim=1) > 0).all()
    assert torch.allclose(pos[:, 0], torch.zeros(16, dtype=torch.float64), atol=1e-9)
    assert torch.allclose(pos[:, -1], torch.full((16,), T - 1.0, dtype=torch.float64), atol=1e-9)
    seg = pos[:, ::10].diff(dim=1)                           # distance covered per anchor interval
    ratio = seg.amax(1) / seg.amin(1)
    assert (ratio <= 10 + 1e-6).all() and (ratio > 9.9).all()   # max / min speed = 10
    x = torch.arange(T, dtype=torch.float64)[None, :, None].expand(16, T, 2)
    assert torch.allclose(m.time_warp(x, g(28))[..., 0], pos)   # reads x at the warped positions
    assert not torch.allclose(pos[0], pos[1])                # fresh warp per sample


def test_window_warp_draws_start_and_scale_as_specified():
    """Start ~ U{1, ..., T - w - 2}, scale in {0.5, 2}, both per sample, drawn from `gen` in this order;
    the read position of output step j, written per sample from the description in the docstring."""
    T, B = 40, 3000
    w = math.ceil(0.3 * T)
    x = torch.arange(T, dtype=torch.float64)[None, :, None].expand(B, T, 1).contiguous()
    out = m.window_warp(x, g(41))[..., 0]
    g2 = g(41)
    start = torch.randint(1, T - w - 1, (B,), generator=g2)
    s = torch.tensor([0.5, 2.0], dtype=torch.float64)[torch.randint(0, 2, (B,), generator=g2)]
    assert start.min() == 1 and start.max() == T - w - 2
    for b in range(0, B, 97):
        L = T - w + w * s[b].item()
        for j in range(T):
            q = max((j + 0.5) * L / T - 0.5, 0.0)
            st = start[b].item()
            ref = q if q < st else (st + (q - st) / s[b].item() if q < st + w * s[b].item() else q - w * s[b].item() + w)
            assert abs(out[b, j].item() - min(ref, T - 1)) < 1e-9


def test_window_warp_stretches_the_window_by_its_scale():
    T = 100
    x = torch.arange(T, dtype=torch.float64)[None, :, None].expand(32, T, 1).contiguous()
    out = m.window_warp(x, g(29))[..., 0]                    # on a ramp, output = read position
    assert (out.diff(dim=1) >= -1e-9).all() and out[:, 0].ge(0).all() and out[:, -1].le(T - 1).all()
    slopes = out.diff(dim=1)[:, 1:-1]                        # the ends may be clamped
    ratio = slopes.amax(1) / slopes.amin(1).clamp_min(1e-9)  # outside slope / inside slope (or back)
    assert ((ratio - 2).abs() < 1e-6).all()                  # the window is read 2x slower or faster
    n_low = (slopes < slopes.amin(1, keepdim=True) * 1.01).sum(1)   # steps at the lower speed
    x5 = x[:, :5].contiguous()                               # T - w - 2 = 1: the shortest warped length
    assert not torch.equal(m.window_warp(x5, g(0)), x5)
    assert len(set(n_low.tolist())) > 2                      # both scales drawn, starts vary by sample
    small = torch.randn(2, 4, 1)
    assert torch.equal(m.window_warp(small, g(0)), small)    # too short: no-op


# --------------------------------------------------------------------------- encoder
class RefBlock(nn.Module):
    """Official TS2Vec ConvBlock: GELU -> conv -> GELU -> conv, + residual (1x1 where needed)."""

    def __init__(self, cin, cout, dil, final):
        super().__init__()
        self.c1 = nn.Conv1d(cin, cout, 3, padding=dil, dilation=dil)
        self.c2 = nn.Conv1d(cout, cout, 3, padding=dil, dilation=dil)
        self.p = nn.Conv1d(cin, cout, 1) if cin != cout or final else None

    def forward(self, x):
        res = x if self.p is None else self.p(x)
        return self.c2(F.gelu(self.c1(F.gelu(x)))) + res


def test_encoder_equals_reference_per_variable_and_facts():
    torch.manual_seed(0)
    enc = m.Encoder(12, 8, 3, dropout=0.1).double()
    ref = [RefBlock(8, 8, 2 ** i, False) for i in range(3)] + [RefBlock(8, 12, 8, True)]
    for rb, b in zip(ref, enc.blocks):
        rb.c1.load_state_dict(b.conv1.state_dict()); rb.c2.load_state_dict(b.conv2.state_dict())
        if rb.p is not None:
            rb.p.load_state_dict(b.projector.state_dict())
    ref = nn.Sequential(*ref).double()
    x = torch.randn(3, 40, 4, generator=g(30), dtype=torch.float64)
    x[1, 30:, 2] = float("nan")
    enc.eval()
    h = enc(x)
    assert h.shape == (3, 4, 40, 12)
    for v in range(4):                                        # each variable alone, zero for NaN
        xv = torch.nan_to_num(x[:, :, v:v + 1])
        hv = ref(enc.input_fc(xv).transpose(1, 2)).transpose(1, 2)
        assert torch.allclose(h[:, v], hv, atol=1e-10)
    perm = torch.tensor([2, 0, 3, 1])
    assert torch.allclose(enc(x[..., perm]), h[:, perm], atol=1e-12)
    assert torch.allclose(m.instance_repr(enc(x[..., perm])), m.instance_repr(h), atol=1e-12)
    enc.train()
    assert not torch.allclose(enc(x), enc(x))                # dropout active in training
    n = sum(p.numel() for p in m.Encoder(512, 64, 10).parameters())
    assert n == 1_166_208                                    # the official encoder's used parameters


def test_dilated_conv_equals_torch_conv():
    torch.manual_seed(0)
    c = m.DilatedConv(3, 5, 4).double()
    ref = nn.Conv1d(3, 5, 3, padding=4, dilation=4).double()
    ref.load_state_dict(c.state_dict())
    for T in (3, 9, 30):
        x = torch.randn(2, 3, T, dtype=torch.float64)
        assert torch.allclose(c(x), ref(x), atol=1e-12)


def test_embed_is_eval_encoder_max_over_time_per_variable():
    torch.manual_seed(0)
    enc = m.Encoder(6, 4, 1)
    x = np.random.default_rng(0).normal(size=(5, 20, 3)).astype(np.float32)
    z = m.embed(enc, x, 2, "cpu")
    enc.eval()
    h = enc(torch.from_numpy(x))
    assert torch.allclose(z, torch.cat([h[:, v].amax(1) for v in range(3)], 1), atol=1e-6)
    clf = m.Classifier(enc, 3, 4).eval()
    assert torch.allclose(clf(torch.from_numpy(x)), clf.head(z), atol=1e-5)


# --------------------------------------------------------------------------- rasteriser
def mpl_chart(x, lo, hi, cell=64):
    """matplotlib drawing the same chart the official ConstructDataset draws: a subplot per variable,
    `*` markers of size 1 joined by 1 pt lines, no ticks, no margins. x (T, M) -> (H, W, 3)."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    T, M = x.shape
    gg = math.ceil(math.sqrt(M))
    fig = plt.figure(figsize=(gg * cell / 100, gg * cell / 100), dpi=100, frameon=False)
    for v in range(M):
        ax = fig.add_subplot(gg, gg, v + 1)
        ax.plot(np.arange(T), x[:, v], "-", linewidth=1, markersize=1, marker="*", color=list(m.COLOURS)[v])
        ax.set_xlim(0, T)
        ax.set_ylim(lo[v], hi[v])
        ax.set_xticks([])
        ax.set_yticks([])
    fig.subplots_adjust(top=1, bottom=0, right=1, left=0, hspace=0, wspace=0)
    fig.canvas.draw()
    img = np.asarray(fig.canvas.buffer_rgba())[..., :3] / 255.0
    plt.close(fig)
    return img


def charts(B, T, M, seed):
    rng = np.random.default_rng(seed)
    t = np.linspace(0, 1, T)
    x = np.sin(2 * np.pi * rng.uniform(1, 3, (B, 1, M)) * t[None, :, None] + rng.uniform(0, 6, (B, 1, M)))
    return (x + 0.15 * rng.normal(size=x.shape)).astype(np.float64)


@pytest.mark.parametrize("T,M", [(150, 1), (29, 12), (300, 4), (150, 2), (60, 3)])
def test_rasteriser_ink_iou_against_matplotlib(T, M):
    x = charts(3, T, M, seed=T)
    lo, hi = x.min((0, 1)), x.max((0, 1))
    ours = m.render(torch.from_numpy(x), torch.from_numpy(lo), torch.from_numpy(hi)).permute(0, 2, 3, 1).numpy()
    for b in range(3):
        ref = mpl_chart(x[b], lo, hi)
        assert ref.shape == ours[b].shape
        a, o = ref.min(-1) < 0.9, ours[b].min(-1) < 0.9
        assert (a & o).sum() / (a | o).sum() >= 0.85        # 0.87-0.94 here; a 2 px inner frame: 0.80-0.84


@pytest.mark.parametrize("M", [1, 2, 3, 5, 10])
def test_rasteriser_frame_equals_matplotlibs(M):
    """Charts with no data (all NaN) are the frame alone: the same ink as matplotlib's, pixel for pixel
    (1 px where two charts meet, 2 px past a chart with no neighbour, nothing on the far image edges),
    and the same grey levels within 0.05 (antialiased spills at a few corners differ by <= 0.04)."""
    x = np.full((1, 10, M), np.nan)
    lo, hi = -np.ones(M), np.ones(M)
    ref = mpl_chart(x[0], lo, hi).min(-1)
    ours = m.render(torch.from_numpy(x), torch.from_numpy(lo), torch.from_numpy(hi))[0].min(0).values.numpy()
    assert ours.shape == ref.shape
    np.testing.assert_array_equal(ours < 0.9, ref < 0.9)
    assert np.abs(ours - ref).max() < 0.05
    dark = lambda img, col: [r for r in range(img.shape[0]) if img[r, col] < 0.5]   # noqa: E731
    assert dark(ours, 10) == dark(ref, 10)                    # the dark rows across the first column of charts


def test_rasteriser_layout_orientation_colours_and_gaps():
    import matplotlib.colors as mc
    for M, side in ((1, 64), (2, 128), (4, 128), (5, 192), (10, 256)):
        img = m.render(torch.zeros(2, 30, M), -torch.ones(M), torch.ones(M))
        assert img.shape == (2, 3, side, side) and img.min() >= 0 and img.max() <= 1
    T = 64
    ramp = torch.linspace(0, 1, T)[None, :, None].repeat(1, 1, 5)          # rises in every variable
    img = m.render(ramp, torch.zeros(5), torch.ones(5))[0]                  # (3, 192, 192)
    names = list(m.COLOURS)
    for v in range(5):
        r0, c0 = (v // 3) * 64, (v % 3) * 64
        cell = img[:, r0:r0 + 64, c0:c0 + 64]
        ink = cell.min(0).values < 0.5
        ink[:3], ink[:, :3], ink[-3:], ink[:, -3:] = False, False, False, False   # ignore the frame
        rows = ink.nonzero()
        left = rows[rows[:, 1] < 10][:, 0].float().mean()
        right = rows[rows[:, 1] > 54][:, 0].float().mean()
        assert left > 50 and right < 14                      # min at the bottom, max at the top
        rgb = cell[:, 30:34, 30:34].reshape(3, -1)            # the ramp's middle: solid line
        darkest = rgb[:, rgb.sum(0).argmin()]
        assert torch.allclose(darkest, torch.tensor(mc.to_rgb(names[v])), atol=0.02), names[v]
    assert (img[:, 130:, 130:] == 1).all()                   # unused cell stays white (past the frame)
    gap = torch.linspace(0, 1, T)[None, :, None].clone()
    gap[0, 20:40] = float("nan")                              # missing values leave a gap
    cell = m.render(gap, torch.zeros(1), torch.ones(1))[0]
    assert (cell[:, 5:60, 26:34] == 1).all()
    assert (cell[:, 5:60, 5:15] < 1).any()


def test_rasteriser_off_chart_values_stay_in_their_own_chart():
    x = torch.zeros(3, 30, 2)
    x[1, 10:20, 0] = 1e4                                      # far above the y-limits
    x[1, 25, 0] = -1e4                                        # far below
    img = m.render(x, -torch.ones(2), torch.ones(2))
    calm = x.clone()
    calm[1, :, 0] = 0
    ref = m.render(calm, -torch.ones(2), torch.ones(2))
    assert torch.equal(img[0], ref[0]) and torch.equal(img[2], ref[2])   # other samples untouched
    assert torch.equal(img[1, :, :, 64:], ref[1, :, :, 64:])  # the other variable's chart untouched
    col = 64 * 9.5 / 30                                        # where the line leaves through the top
    assert (img[1, :, 2:4, int(col) - 2:int(col) + 3] < 0.5).any()
    assert img.min() >= 0 and img.max() <= 1


def test_colour_table_follows_the_official_order():
    import matplotlib.colors as mc
    tab = m.colour_table(40, "cpu", torch.float64)
    for v, name in enumerate(["green", "black", "blue", "brown", "chartreuse", "chocolate", "coral", "crimson",
                              "blueviolet", "darkblue"]):
        assert torch.allclose(tab[v], torch.tensor(mc.to_rgb(name), dtype=torch.float64), atol=1e-9)
    for v, name in enumerate(m.COLOURS):
        assert torch.allclose(tab[v], torch.tensor(mc.to_rgb(name), dtype=torch.float64), atol=1e-9)
    assert len(m.COLOURS) == 38 and tab.shape == (40, 3)


# --------------------------------------------------------------------------- data: pool, sampler, few-shot
def test_source_sampler_one_source_per_batch_in_proportion_to_size():
    sizes = [100, 300, 600]
    s = m.SourceSampler(sizes, 10, np.random.default_rng(0))
    counts, seen = np.zeros(3), [[] for _ in sizes]
    for _ in range(3000):
        k, idx = s.next()
        counts[k] += 1
        assert len(idx) == 10 and idx.max() < sizes[k]
        seen[k].extend(idx.tolist())
    np.testing.assert_allclose(counts / counts.sum(), [0.1, 0.3, 0.6], atol=0.03)
    first = seen[0][:100]
    assert sorted(first) == list(range(100))                 # a whole pass before reshuffling
    assert sorted(seen[0][100:200]) == list(range(100))      # and again after it
    assert first != list(range(100))                         # shuffled ...
    assert seen[0][100:200] != first                         # ... and reshuffled for the next pass
    assert s.per_epoch == 100


def test_source_sampler_leftovers_and_small_sources():
    """Deviation 15: fewer than B left in a pass -> reshuffle (the last N mod B of a pass are dropped);
    a source smaller than B gives all of it, each series once."""
    s = m.SourceSampler([10], 4, np.random.default_rng(1))
    batches = [s.next()[1].tolist() for _ in range(4)]
    assert [len(b) for b in batches] == [4, 4, 4, 4]
    assert len(set(batches[0] + batches[1])) == 8            # 2 of 10 left over, then a new pass
    small = m.SourceSampler([3], 8, np.random.default_rng(2))
    for _ in range(3):
        assert sorted(small.next()[1].tolist()) == [0, 1, 2]


def test_source_sampler_processes_share_one_sequence_dealt_round_robin():
    """Under torchrun: process r takes batches r, r + world, ... of the one sequence that a single
    process draws, so the processes together make one pass per epoch, never the same batch twice."""
    sizes = [30, 50]
    one = m.SourceSampler(sizes, 4, np.random.default_rng(5))
    seq = [(k, i.tolist()) for k, i in (one.draw() for _ in range(12))]
    for world in (2, 3):
        dealt = [m.SourceSampler(sizes, 4, np.random.default_rng(5), r, world) for r in range(world)]
        got = [[(k, i.tolist()) for k, i in (d.next() for _ in range(12 // world))] for d in dealt]
        for r in range(world):
            assert got[r] == seq[r::world]
        assert dealt[0].per_epoch == one.per_epoch == 20     # batches per epoch, all processes together


def test_few_shot_split_deterministic_every_class_proportional():
    y = np.repeat(np.arange(6), [3, 10, 40, 7, 1, 100])
    for f in (0.05, 0.15, 0.2):
        a, b = m.few_shot_indices(y, f, 1), m.few_shot_indices(y, f, 1)
        assert np.array_equal(a, b)
        assert set(np.unique(y[a])) == set(range(6))
        for c in range(6):
            n_c = (y == c).sum()
            assert abs((y[a] == c).sum() - max(1, f * n_c)) <= 1
            assert (y[a] == c).sum() == max(1, round(f * n_c))     # round(f n_c), at least one
    assert not np.array_equal(m.few_shot_indices(y, 0.2, 1), m.few_shot_indices(y, 0.2, 2))


def test_pool_names_leave_the_target_out():
    assert m.pool_names("GunPoint,ECG200", "ecg200") == ["GunPoint"]
    assert len(m.pool_names("TSER", "x")) == 19 and m.pool_names("none", "x") == []
    assert "ECG200" not in m.pool_names("UCR", "ECG200") and len(m.pool_names("UCR", "ECG200")) == 127


# --------------------------------------------------------------------------- training, DDP, main
def test_pretrain_step_is_seeded_and_finite():
    torch.manual_seed(0)
    x = torch.randn(8, 24, 2, generator=g(31))
    lo, hi = x.amin((0, 1)), x.amax((0, 1))

    def run():
        torch.manual_seed(0)
        model = m.AimTS(m.Args(**TINY))
        opt = torch.optim.AdamW(model.parameters(), lr=1e-2)
        return [m.pretrain_step(model, opt, x, lo, hi, g(1), 0.1, "joint")["loss"] for _ in range(4)]
    a, b = run(), run()
    assert a == b and np.isfinite(a).all()


# --------------------------------------------------------------------------- wiring inside the real pretrain loop
def small_sources(sizes=(12, 10), T=24, seed=0):
    rng = np.random.default_rng(seed)
    return [m.Source(f"s{i}", rng.standard_normal((n, 1 + i, T))) for i, n in enumerate(sizes)]


def pargs(**kw):
    base = dict(TINY, batch_size=4, warmup_epochs=1, epochs=1, max_iters=2, log=False)
    return m.Args(**{**base, **kw})


def spy_model(monkeypatch, rec):
    """Replace AimTS inside pretrain by a subclass that records its initial encoder, every forward
    call (inputs, phase) and every head's outputs."""
    class Spy(m.AimTS):
        def __init__(self, args):
            super().__init__(args)
            rec["init"] = {k: v.detach().clone() for k, v in self.encoder.state_dict().items()}
            rec["model"] = self
            for name in ("proj_pro", "proj_ts", "proj_img"):
                getattr(self, name).register_forward_hook(
                    lambda mod, inp, out, name=name: rec.setdefault(name, []).append((inp[0], out)))

        def forward(self, x, views, img, lam, phase):
            rec.setdefault("calls", []).append(dict(x=x, views=views, img=img, lam=lam, phase=phase))
            rec["phase"] = phase
            return super().forward(x, views, img, lam, phase)
    monkeypatch.setattr(m, "AimTS", Spy)


LOSS_FNS = ("adaptive_tau", "intra_prototype_loss", "inter_prototype_loss", "series_image_loss",
            "geodesic_mixup", "mixup_loss")


def spy_losses(monkeypatch, rec):
    """Record every call of the loss functions forward() calls: (name, phase, bound arguments with
    defaults, output)."""
    import inspect
    for name in LOSS_FNS:
        fn = getattr(m, name)

        def wrapper(*a, _fn=fn, _name=name, _sig=inspect.signature(fn), **k):
            b = _sig.bind(*a, **k)
            b.apply_defaults()
            out = _fn(*a, **k)
            rec.setdefault("loss_calls", []).append((_name, rec.get("phase"), dict(b.arguments), out))
            return out
        monkeypatch.setattr(m, name, wrapper)


def calls_of(rec, name):
    return [c for c in rec["loss_calls"] if c[0] == name]


def test_pretrain_loop_wires_temperatures_and_heads_to_their_losses(monkeypatch):
    """In the real loop: Eq. (3) gets tau0, Eq. (5) raw dot products / 1, Eq. (7)-(11) tau_si;
    the prototype losses take P^pro's outputs, the series-image losses u = P^I(image) and v = P^TS(series)
    (in that order), the mixup loss the mix of exactly those u, v with the step's lambda, and the
    intra loss the tau that Eq. (3) produced."""
    rec = {}
    spy_model(monkeypatch, rec)
    spy_losses(monkeypatch, rec)
    m.pretrain(small_sources(), pargs(tau0=0.7, tau_si=0.3, dropout=0.0), "cpu")
    is_out = lambda t, head: any(t is o for _, o in rec[head])   # noqa: E731
    G2 = 2 * len(m.AUGMENTATIONS)
    for _, phase, a, out in calls_of(rec, "adaptive_tau"):
        assert a["tau0"] == 0.7 and phase == "joint"
    taus = [out for *_, out in calls_of(rec, "adaptive_tau")]
    for _, _, a, _ in calls_of(rec, "inter_prototype_loss"):
        assert a["tau"] == 1.0 and is_out(a["z1"], "proj_pro") and is_out(a["z2"], "proj_pro")
    intra = calls_of(rec, "intra_prototype_loss")
    assert intra and len(intra) == len(taus)
    for (_, _, a, _), tau in zip(intra, taus):
        assert a["tau"] is tau
        v = a["v"]
        B = v.size(0)
        assert any(o.shape[0] == G2 * B and torch.equal(v, o.view(G2, B, -1).transpose(0, 1)) for _, o in rec["proj_pro"])
    si = calls_of(rec, "series_image_loss")
    assert {c[1] for c in si} == {"warmup", "joint"}
    for _, _, a, _ in si:
        assert a["tau"] == 0.3 and is_out(a["u"], "proj_img") and is_out(a["v"], "proj_ts")
    mixes = calls_of(rec, "geodesic_mixup")
    mix_losses = calls_of(rec, "mixup_loss")
    assert len(mixes) == len(mix_losses) == len(si) == len(rec["calls"])
    for (_, _, g_a, g_out), (_, _, l_a, _), (_, _, s_a, _), call in zip(mixes, mix_losses, si, rec["calls"]):
        assert g_a["u"] is s_a["u"] and g_a["v"] is s_a["v"] and g_a["lam"] is call["lam"]   # Eq. (9) on u, v
        assert l_a["u"] is s_a["u"] and l_a["v"] is s_a["v"] and l_a["m"] is g_out and l_a["tau"] == 0.3


def test_pretrain_loop_positives_images_and_series_are_paired(monkeypatch):
    """Views: with augmentations that are deterministic and distinct, view k and view G + k of Fig. 4(a)
    are the same augmentation: the intra loss sees equal representations exactly at k and k +/- G
    (its positives, tested against the naive loop), the two prototypes of Eq. (2) are equal. Images:
    each step's image batch is the rendering of the same series in the same order. Series side of
    Eq. (7): P^TS reads the ORIGINAL series' representation, not a view's."""
    augs = tuple((lambda x, gen, k=k: x * (k + 2) + k) for k in range(5))
    monkeypatch.setattr(m, "AUGMENTATIONS", augs)
    rec = {}
    spy_model(monkeypatch, rec)
    spy_losses(monkeypatch, rec)
    src = small_sources(sizes=(12,))
    checked = []

    def check_series_input(mod, inp):
        x = rec["calls"][-1]["x"]
        with torch.no_grad():
            r = m.instance_repr(rec["model"].encoder(torch.nan_to_num(x)))
        checked.append(torch.allclose(inp[0], r, atol=1e-6))
    real_init = m.AimTS.__init__

    def init_with_hook(self, args):
        real_init(self, args)
        self.proj_ts.register_forward_pre_hook(check_series_input)
    monkeypatch.setattr(m.AimTS, "__init__", init_with_hook)
    m.pretrain(src, pargs(dropout=0.0), "cpu")
    G = len(augs)
    for _, _, a, _ in calls_of(rec, "intra_prototype_loss"):
        v = a["v"]
        for k in range(2 * G):
            for j in range(2 * G):
                same = torch.allclose(v[:, k], v[:, j], atol=1e-6)
                assert same == (j % G == k % G), (k, j)
    for _, _, a, _ in calls_of(rec, "inter_prototype_loss"):
        assert torch.allclose(a["z1"], a["z2"], atol=1e-6)
    lo, hi = torch.from_numpy(src[0].lo), torch.from_numpy(src[0].hi)
    for call in rec["calls"]:
        assert torch.equal(call["img"], m.render(call["x"], lo, hi))
    assert checked and all(checked)


def test_pretrain_returns_the_swa_average_of_the_joint_steps_and_the_initial_weights(monkeypatch):
    rec, snaps = {}, []
    spy_model(monkeypatch, rec)
    real_step = m.pretrain_step

    def step(model, *a):
        out = real_step(model, *a)
        snaps.append((a[-1], {k: v.detach().clone() for k, v in model.encoder.state_dict().items()}))
        return out
    monkeypatch.setattr(m, "pretrain_step", step)
    enc, init, hist, stats = m.pretrain(small_sources(), pargs(max_iters=3), "cpu")
    joint = [sd for phase, sd in snaps if phase == "joint"]
    assert len(joint) == 3 and len(snaps) == 6
    for k, v in enc.state_dict().items():
        assert torch.allclose(v, sum(sd[k] for sd in joint) / 3, atol=1e-6), k      # uniform average
    assert any(not torch.allclose(v, joint[-1][k]) for k, v in enc.state_dict().items())   # not the last weights
    assert type(init) is m.Encoder and init is not rec["model"].encoder
    assert {k: v.shape for k, v in init.state_dict().items()} == {k: v.shape for k, v in enc.state_dict().items()}
    assert all(torch.equal(v, rec["init"][k]) for k, v in init.state_dict().items())        # before any step
    assert any(not torch.equal(v, rec["init"][k]) for k, v in rec["model"].encoder.state_dict().items())


def test_pretrain_batches_are_shuffled_passes_over_each_source(monkeypatch):
    """Series i of the source carries the value i, so every step's batch names its indices: each
    pass of 3 batches covers the 12 series once, in a shuffled order that changes between passes."""
    x = np.repeat(np.arange(12.0)[:, None, None], 20, axis=2) + np.linspace(0, 0.1, 20)   # (12, 1, 20)
    src = m.Source("ids", x)
    key = src.x[:, 0, 0]
    seen = []
    real_step = m.pretrain_step

    def step(model, opt, xb, *a):
        seen.append([int(np.argmin(np.abs(key - v))) for v in xb[:, 0, 0].tolist()])
        return real_step(model, opt, xb, *a)
    monkeypatch.setattr(m, "pretrain_step", step)
    m.pretrain([src], pargs(max_iters=0, warmup_epochs=1, epochs=2), "cpu")
    assert len(seen) == 9                                    # 3 epochs of ceil(12 / 4) batches
    passes = [sum(seen[i:i + 3], []) for i in (0, 3, 6)]
    for p in passes:
        assert sorted(p) == list(range(12))
        assert p != list(range(12))
    assert passes[0] != passes[1] or passes[1] != passes[2]


def test_in_the_real_loop_the_pretraining_optimiser_descends(monkeypatch):
    """Inside the real pretrain loop, the first optimiser step moves the trained parameters against
    the gradient of the loss just backpropagated (AdamW's first step is -lr * sign(g) plus a decay
    of lr * 0.01 * p): sum(dp * g) < 0. Catches: an optimiser that maximises (maximize=True)."""
    seen, real = [], m.pretrain_step

    def step(model, opt, x, *a):
        params = [p for p in model.parameters() if p.requires_grad]
        before = [p.detach().clone() for p in params]
        out = real(model, opt, x, *a)
        seen.append(sum(float(((p.detach() - b) * p.grad).sum()) for p, b in zip(params, before) if p.grad is not None))
        return out
    monkeypatch.setattr(m, "pretrain_step", step)
    m.pretrain(small_sources(), pargs(max_iters=2), "cpu")
    assert len(seen) == 4 and seen[0] < 0


def test_an_epoch_is_ceil_n_over_b_batches_over_the_whole_pool(monkeypatch):
    """Deviation 15: one epoch = ceil(N / B) batches over the pool (N: every series of every source),
    the last partial batch counted, for all processes together; with --max-iters 0 each phase takes
    exactly that many steps per epoch. Catches: floor(N / B) (short of one pass; the tests above
    use sizes that B divides), a per-process count."""
    assert m.SourceSampler([10, 7], 4, np.random.default_rng(0)).per_epoch == 5          # 17 / 4 = 4.25
    assert m.SourceSampler([10, 7], 4, np.random.default_rng(0), 1, 2).per_epoch == 5    # all processes
    sizes = []
    real_step = m.pretrain_step

    def step(model, opt, xb, *a):
        sizes.append(len(xb))
        return real_step(model, opt, xb, *a)
    monkeypatch.setattr(m, "pretrain_step", step)
    *_, stats = m.pretrain(small_sources((12, 10)), pargs(max_iters=0, warmup_epochs=1, epochs=2), "cpu")
    assert stats["steps_per_epoch"] == 6 and len(sizes) == stats["steps"] == 3 * 6   # ceil(22 / 4) = 6


def test_paper_sizes_restore_the_official_sizes_and_epochs(monkeypatch):
    """--paper-sizes (deviation 16): D 512, CNN width 64, depth 10, ResNet-18 (image width 64), 2 joint
    epochs, no step cap; the sizes the paper and code share stay. Catches: a value drifting in
    main's override (PAPER_DEFAULTS pins only the CPU defaults)."""
    seen = []

    class Stop(Exception):
        pass

    def check(a):
        seen.append(a)
        raise Stop
    monkeypatch.setattr(m, "check_args", check)
    with pytest.raises(Stop):
        m.main(m.Args(paper_sizes=True, log=False))
    a = seen[0]
    assert (a.repr_dims, a.hidden_dims, a.depth, a.image_width, a.epochs, a.max_iters) == (512, 64, 10, 64, 2, 0)
    assert (a.proj_dims, a.batch_size, a.ft_batch_size, a.dropout, a.warmup_epochs) == (128, 16, 8, 0.1, 1)


@pytest.mark.parametrize("terms,expect", [
    ("full", {"warmup": {"series_image_loss", "geodesic_mixup", "mixup_loss"},
              "joint": {"adaptive_tau", "intra_prototype_loss", "inter_prototype_loss", "series_image_loss",
                        "geodesic_mixup", "mixup_loss"}}),
    ("si", {"warmup": {"series_image_loss", "geodesic_mixup", "mixup_loss"},
            "joint": {"series_image_loss", "geodesic_mixup", "mixup_loss"}}),
    ("naive_si", {"warmup": {"series_image_loss"}, "joint": {"series_image_loss"}}),
    ("proto", {"joint": {"adaptive_tau", "intra_prototype_loss", "inter_prototype_loss"}}),
    ("inter", {"joint": {"inter_prototype_loss"}}),
])
def test_ablation_rows_compute_only_their_terms_in_every_phase(monkeypatch, terms, expect):
    rec = {}
    spy_model(monkeypatch, rec)
    spy_losses(monkeypatch, rec)
    _, _, hist, _ = m.pretrain(small_sources(), pargs(loss_terms=terms, max_iters=1), "cpu")
    got = {}
    for name, phase, *_ in rec["loss_calls"]:
        got.setdefault(phase, set()).add(name)
    assert got == expect
    assert [h["phase"] for h in hist] == [p for p in ("warmup", "joint") if p in expect]


def write_npz(path, n=24, T=32, M=1, seed=0, classes=2):
    rng = np.random.default_rng(seed)
    y = np.arange(n) % classes
    X = (np.sin(np.linspace(0, 6, T) * (1 + y[:, None, None])) + 0.2 * rng.normal(size=(n, M, T))).astype(np.float32)
    np.savez(path, X=X, y=y)
    return str(path)


def test_main_smoke_finetune_scratch_probe_and_load(tmp_path, tiny):
    pool = write_npz(tmp_path / "poolA.npz", M=2) + "," + write_npz(tmp_path / "poolB.npz", T=20, seed=1)
    args = m.Args(**{**tiny, "batch_size": 4}, **TINY, pretrain=pool, warmup_epochs=1, max_iters=2,
                  ft_epochs=1, out_dir=str(tmp_path / "runs"), log=False)
    res = m.main(args)
    ev = res["eval"]
    for k in ("accuracy", "scratch_accuracy", "probe_accuracy", "random_init_probe_accuracy"):
        assert 0 <= ev[k] <= 1
    assert [h["phase"] for h in res["history"]] == ["warmup"] * 2 + ["joint"] * 2
    assert {"probe_C", "random_init_probe_C", "finetune_epoch", "scratch_finetune_epoch", "finetune_val_log"} <= set(res["selection"])
    assert res["label_free"] is True and res["n_labelled"] == 48
    run = Path(res["run_dir"])
    assert (run / "results.json").exists() and (run / "loss.png").exists() and (run / "examples.png").exists()
    res2 = m.main(m.Args(**{**tiny, "batch_size": 4}, **TINY, load=str(run / "encoder.pt"), ft_epochs=1,
                         few_shot=0.2, out_dir=str(tmp_path / "runs"), log=False))
    assert res2["history"] == [] and 0 <= res2["eval"]["accuracy"] <= 1


# --------------------------------------------------------------------------- the protocol, from outside main
def pool_files(tmp_path):
    return write_npz(tmp_path / "poolA.npz", M=2) + "," + write_npz(tmp_path / "poolB.npz", T=20, seed=1)


def main_args(tmp_path, **kw):
    base = dict(TINY, dataset="synthetic", pretrain=pool_files(tmp_path), batch_size=4, warmup_epochs=1,
                epochs=1, max_iters=2, ft_epochs=2, out_dir=str(tmp_path / "runs"), log=False)
    return m.Args(**{**base, **kw})


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """One small pre-training run (seed 3) and its encoder.pt, shared by the tests that only load it."""
    tmp = tmp_path_factory.mktemp("trained")
    res = m.main(main_args(tmp, seed=3, scratch=False, probe=False, ft_epochs=1, max_iters=1))
    return res, Path(res["run_dir"]) / "encoder.pt"


def spy_finetune(monkeypatch, rec):
    real = m.finetune

    def spy(encoder, x, y, *a, **k):
        rec.setdefault("finetune", []).append(dict(enc={n: v.detach().clone() for n, v in encoder.state_dict().items()},
                                                    x=x.copy(), y=y.copy()))
        return real(encoder, x, y, *a, **k)
    monkeypatch.setattr(m, "finetune", spy)


def test_finetune_takes_no_evaluation_data_and_trains_every_parameter():
    import inspect
    params = set(inspect.signature(m.finetune).parameters)
    assert params == {"encoder", "x", "y", "n_classes", "args", "device", "seed"}
    torch.manual_seed(0)
    enc = m.Encoder(8, 4, 1)
    before = {k: v.clone() for k, v in enc.state_dict().items()}
    rng = np.random.default_rng(0)
    x, y = rng.standard_normal((12, 32, 2)).astype(np.float32), np.arange(12) % 3
    model, log = m.finetune(enc, x, y, 3, m.Args(ft_epochs=2, dropout=0.0), "cpu", 0)
    assert [e["epoch"] for e in log] == [1, 2] and all(np.isfinite(e["train_loss"]) for e in log)
    assert all(torch.equal(v, before[k]) for k, v in enc.state_dict().items())   # a copy is trained
    for name, p in model.named_parameters():                                        # encoder AND head
        init = before[name[len("encoder."):]] if name.startswith("encoder.") else None
        if init is not None:
            assert not torch.equal(p.detach(), init), name


def test_finetune_batches_are_shuffled_anew_every_epoch(monkeypatch):
    """Fine-tuning draws batches of ft_batch_size from a fresh shuffle of the labelled series every
    epoch, each series once per epoch (a last batch of one is skipped: BatchNorm). Series i carries
    the value i. Catches: batches in stored order, one order reused for every epoch."""
    x = np.repeat(np.arange(13.0)[:, None, None], 32, axis=1).astype(np.float32) + np.zeros((1, 1, 2), np.float32)
    y = np.arange(13) % 3
    rows, real_fwd = [], m.Classifier.forward

    def spy(self, xb):
        if self.training:
            rows.append([int(v) for v in xb[:, 0, 0].tolist()])
        return real_fwd(self, xb)
    monkeypatch.setattr(m.Classifier, "forward", spy)
    torch.manual_seed(0)
    m.finetune(m.Encoder(8, 4, 1), x, y, 3, m.Args(ft_epochs=3, ft_batch_size=4, dropout=0.0), "cpu", 0)
    assert [len(b) for b in rows] == [4, 4, 4] * 3                # 13 = 3 * 4 + 1: the single is skipped
    epochs = [sum(rows[i:i + 3], []) for i in (0, 3, 6)]
    assert all(len(set(e)) == 12 for e in epochs)                 # each series at most once per epoch
    assert epochs[0] != sorted(epochs[0]) and len({tuple(e) for e in epochs}) == 3


def test_main_test_split_reaches_only_the_final_evaluation(monkeypatch, tmp_path):
    """Same train data, a different test split (noise, permuted labels): pre-training history, every
    selected value, both saved encoders identical; only eval differs."""
    import dataclasses
    import data
    real = data.load_dataset

    def noisy(name, *a, **k):
        ds = real(name, *a, **k)
        if name == "synthetic":
            r = np.random.default_rng(9)
            ds = dataclasses.replace(ds, X_test=r.standard_normal(ds.X_test.shape).astype(np.float32),
                                     y_test=r.permutation(ds.y_test))
        return ds
    res = [m.main(main_args(tmp_path, ft_epochs=1))]
    monkeypatch.setattr(data, "load_dataset", noisy)
    res.append(m.main(main_args(tmp_path, ft_epochs=1)))
    assert res[0]["history"] == res[1]["history"] and res[0]["history"]
    assert res[0]["selection"] == res[1]["selection"] and res[0]["selection"]["probe_C"] in (0.01, 0.1, 1.0, 10.0, 100.0)
    assert res[0]["eval"] != res[1]["eval"]
    cks = [torch.load(Path(r["run_dir"]) / "encoder.pt") for r in res]
    for key in ("state_dict", "init_state_dict"):
        assert all(torch.equal(cks[0][key][k], cks[1][key][k]) for k in cks[0][key])
    assert res[0]["label_free"] is True and res[0]["label_note"] == ""


class _MarkedTestArray(np.ndarray):
    """The test split's arrays, marked: a slice of one is one too."""


def test_only_the_final_evaluation_reads_the_test_split(monkeypatch, tmp_path, trained):
    """Every function main calls that receives the (marked) test arrays is called by final_evaluation,
    which main calls once: no fine-tuning epoch, C or early stop can be chosen on test."""
    import dataclasses
    import inspect
    real_load = m.load_target

    def load(args):
        ds, x_tr, x_te = real_load(args)
        return dataclasses.replace(ds, y_test=ds.y_test.view(_MarkedTestArray)), x_tr, x_te.view(_MarkedTestArray)
    monkeypatch.setattr(m, "load_target", load)
    readers, finals = [], []
    for name in ("accuracy", "embed", "finetune", "linear_eval", "pretrain", "labelled_set", "final_evaluation"):
        fn = getattr(m, name)

        def spy(*a, _fn=fn, _name=name, **k):
            if any(isinstance(v, _MarkedTestArray) for v in list(a) + list(k.values())):
                (finals if _name == "final_evaluation" else readers).append((_name, inspect.stack()[1].function))
            return _fn(*a, **k)
        monkeypatch.setattr(m, name, spy)
    m.main(main_args(tmp_path, load=str(trained[1]), ft_epochs=2))
    assert finals == [("final_evaluation", "main")]
    assert readers and {caller for _, caller in readers} == {"final_evaluation"}, readers
    assert {name for name, _ in readers} == {"accuracy", "embed", "linear_eval"}


def test_main_evaluates_the_swa_encoder_against_its_own_initial_weights(monkeypatch, tmp_path):
    """Fine-tuning and the probe get the encoder pretrain returns (the SWA average) and, as the
    random-init baseline, that encoder's own weights before the first step (same class, same size);
    encoder.pt holds both."""
    rec, seen = {}, {}
    spy_finetune(monkeypatch, rec)
    real_pretrain, real_embed = m.pretrain, m.embed

    def pretrain(*a, **k):
        out = real_pretrain(*a, callback=lambda step, e: seen.setdefault(step, {n: v.detach().clone() for n, v in
                                                                              e.state_dict().items()}), **k)
        seen["returned"] = {n: v.detach().clone() for n, v in out[0].state_dict().items()}
        return out
    monkeypatch.setattr(m, "pretrain", pretrain)
    monkeypatch.setattr(m, "embed", lambda net, *a: rec.setdefault("embed", []).append(
        {n: v.detach().clone() for n, v in net.state_dict().items()}) or real_embed(net, *a))
    res = m.main(main_args(tmp_path))
    same = lambda a, b: a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)   # noqa: E731
    pre, scratch = rec["finetune"]
    assert same(pre["enc"], seen["returned"]) and same(scratch["enc"], seen[0])
    assert not same(seen[0], seen["returned"])
    assert [same(e, seen["returned"]) for e in rec["embed"]] == [True, True, False, False]   # probe: train, test
    assert all(same(e, seen[0]) for e in rec["embed"][2:])                                 # random-init probe
    ck = torch.load(Path(res["run_dir"]) / "encoder.pt")
    assert same(ck["state_dict"], seen["returned"]) and same(ck["init_state_dict"], seen[0])


def test_load_builds_the_baseline_from_the_checkpoint_also_an_old_one(monkeypatch, tmp_path, trained):
    """--load with the default size flags: the loaded encoder and its baseline both have the checkpoint's
    sizes (not the flags'), and the baseline is the checkpoint's init_state_dict. A checkpoint without
    it is rebuilt as pre-training built it, with a note."""
    path = trained[1]
    ck = torch.load(path)
    old = tmp_path / "old_encoder.pt"
    torch.save({"state_dict": ck["state_dict"], "args": ck["args"]}, old)
    for p, note in ((path, False), (old, True)):
        rec = {}
        spy_finetune(monkeypatch, rec)
        r = m.main(m.Args(dataset="synthetic", load=str(p), ft_epochs=1, probe=False, out_dir=str(tmp_path / "runs"),
                          log=False))
        pre, scratch = rec["finetune"]
        n = lambda sd: sum(v.numel() for v in sd.values())   # noqa: E731
        assert n(pre["enc"]) == n(scratch["enc"]) == n(ck["state_dict"]) < n(m.Encoder(128, 32, 6).state_dict())
        assert all(torch.equal(scratch["enc"][k], ck["init_state_dict"][k]) for k in scratch["enc"])
        assert all(torch.equal(pre["enc"][k], ck["state_dict"][k]) for k in pre["enc"])
        assert bool(r["baseline_note"]) == note and r["history"] == []


def test_fine_tuning_and_few_shot_use_the_whole_training_split(monkeypatch, tmp_path, trained):
    """Without --few-shot fine-tuning gets every training series; with it, round(f n_c) of each class
    (at least one) counted on the whole training split, every one a training series; the probe sees
    the same labelled series (fit + held out)."""
    import data
    ds = data.standardize(data.load_dataset("synthetic", val_fraction=0.0, seed=1))
    train_rows = {r.tobytes() for r in np.ascontiguousarray(ds.X_train.transpose(0, 2, 1))}
    n_c = np.bincount(ds.y_train)
    real_eval = m.linear_eval
    for f in (0.0, 0.1):
        rec = {}
        spy_finetune(monkeypatch, rec)
        monkeypatch.setattr(m, "linear_eval", lambda ztr, ytr, zva, yva, *a: rec.setdefault("probe", []).append(
            len(ytr) + len(yva)) or real_eval(ztr, ytr, zva, yva, *a))
        m.main(main_args(tmp_path, few_shot=f, scratch=False, ft_epochs=1, load=str(trained[1])))
        (ft,) = rec["finetune"]
        want = n_c if f == 0 else np.maximum(1, np.round(f * n_c)).astype(int)
        assert np.array_equal(np.bincount(ft["y"], minlength=len(n_c)), want), (f, np.bincount(ft["y"]), want)
        assert all(r.tobytes() in train_rows for r in ft["x"])
        assert rec["probe"] == [len(ft["y"])] * 2


def test_distributed_two_gloo_processes_step_and_main(tmp_path, trained):
    """Two CPU processes under torchrun's environment (gloo, a file store), tests/aimts_ddp_helpers.py:
    1) one DDP step, each process on its own batch, equals one process stepping on the mean of the two
       batches' losses (float64, 1e-6);
    2) main with --load: only rank 0 fine-tunes and writes results;
    3) main pre-training: one batch sequence dealt to the two processes (an epoch is one pass over
       the pool in all), a one-series source left out (not skipped by one process while the other
       waits in its all-reduce), both processes end with the same weights, only rank 0 writes."""
    import aimts_ddp_helpers as h
    enc = trained[1]
    code = (f"import sys; sys.path[:0] = [{str(ROOT / 'tests')!r}, {str(ROOT)!r}]; import aimts_ddp_helpers as h; "
            f"h.run_child(int(sys.argv[1]), {str(tmp_path)!r}, {pool_files(tmp_path)!r}, {str(enc)!r})")
    procs = []
    for r in range(2):
        env = dict(os.environ, WORLD_SIZE="2", RANK=str(r), LOCAL_RANK=str(r), OMP_NUM_THREADS="1")
        procs.append(subprocess.Popen([sys.executable, "-c", code, str(r)], env=env, cwd=tmp_path,
                                      stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
    try:
        for p in procs:
            _, err = p.communicate(timeout=120)
            assert p.returncode == 0, err[-3000:]
    finally:
        for p in procs:
            p.kill()
    model, opt = h.model_and_opt()                           # 1) one process, both batches
    losses = []
    for r in range(2):
        x, lo, hi = h.batch(r)
        losses.append(model(x, *m.prepare_batch(x, lo, hi, torch.Generator().manual_seed(7 + r), 0.1), "joint")["loss"])
    opt.zero_grad()
    ((losses[0] + losses[1]) / 2).backward()                 # mean of the two batches' losses
    opt.step()
    got = torch.load(tmp_path / "ddp_step.pt")
    for k, v in model.state_dict().items():
        if v.dtype.is_floating_point and "running" not in k:
            assert torch.allclose(got[k], v, atol=1e-6), k
    out = [json.loads((tmp_path / f"out{r}.json").read_text()) for r in range(2)]
    assert out[0]["load_keys"] and out[1]["load_keys"] == []                  # 2) --load: rank 0 only
    assert out[1]["pretrain_keys"] == [] and "history" in out[0]["pretrain_keys"]
    assert not list((tmp_path / "runs1").glob("*")) and len(list((tmp_path / "runs0").glob("*"))) == 2
    res = out[0]                                               # 3) pre-training
    sizes = list(res["pool"].values())                         # poolA, poolB; the one-series source left out
    per_epoch = math.ceil(math.ceil(sum(sizes) / 4) / 2)      # batches of 4 in all, half per process
    assert res["steps"] == 2 * per_epoch and res["left_out"] == ["one"] and res["world"] == 2
    seq = m.SourceSampler(sizes, 4, np.random.default_rng(1))
    want = [[s, i.tolist()] for s, i in (seq.draw() for _ in range(2 * res["steps"]))]
    assert out[0]["batches"] == want[0::2] and out[1]["batches"] == want[1::2]
    assert out[0]["weights"] == out[1]["weights"]              # DDP kept the processes in step




@pytest.mark.parametrize("flags,msg", [
    (["--loss-terms", "bogus"], "--loss-terms"),
    (["--few-shot", "5"], "--few-shot"),
    (["--val-fraction", "1"], "--val-fraction"),
    (["--load", "/nonexistent/encoder.pt"], "--load"),
    (["--pretrain", "synthetic"], "leaves no pre-training data"),
    (["--batch-size", "1"], "at least 2"),
    (["--repr-dims", "0"], "positive"),
    (["--dataset", "NoSuchSet"], "unknown dataset"),
])
def test_bad_input_is_a_user_error(flags, msg, capsys):
    from common import cli
    with pytest.raises(SystemExit) as e:
        cli(m.main, m.Args, ["--dataset", "synthetic", "--out-dir", "/nonexistent-never-written", *flags])
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("error:") and msg in err and err.count("\n") == 1


def test_cli_prints_one_error_line_no_traceback():
    out = subprocess.run([sys.executable, "aimts.py", "--dataset", "synthetic", "--few-shot", "1.5"], cwd=ROOT,
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 2 and out.stderr.startswith("error: --few-shot") and "Traceback" not in out.stderr
