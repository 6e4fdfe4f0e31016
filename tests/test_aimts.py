"""aimts.py: each part against an independent reference (naive loops from the equations, matplotlib,
torch's own layers), the wrong versions a reader might write, and the 2-process DDP step."""
import math
import os
import socket
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

import aimts as m

ROOT = Path(__file__).resolve().parents[1]
TINY = dict(repr_dims=8, hidden_dims=4, depth=1, proj_dims=4, image_width=2)


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
    assert torch.allclose(m.instance_repr(torch.arange(24.).reshape(1, 2, 3, 4)),
                          torch.tensor([[14., 15., 16., 17.]]))   # mean over M, then max over T


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
                             ("naive_si", "naive", {"naive", "loss"})):
        model.args = m.Args(**TINY, dropout=0.0, alpha=0.7, beta=0.6, loss_terms=terms)
        o = model(x, *batch, "joint")
        assert o["loss"] == o[key] and set(o) == keys         # only the terms the row needs
    hook.remove()
    assert rows == [4 * 11, 4 * 11, 4]                       # series-image only: no views encoded


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


@pytest.mark.parametrize("T,M", [(150, 1), (29, 12), (300, 4)])
def test_rasteriser_ink_iou_against_matplotlib(T, M):
    x = charts(3, T, M, seed=T)
    lo, hi = x.min((0, 1)), x.max((0, 1))
    ours = m.render(torch.from_numpy(x), torch.from_numpy(lo), torch.from_numpy(hi)).permute(0, 2, 3, 1).numpy()
    for b in range(3):
        ref = mpl_chart(x[b], lo, hi)
        assert ref.shape == ours[b].shape
        a, o = ref.min(-1) < 0.9, ours[b].min(-1) < 0.9
        assert (a & o).sum() / (a | o).sum() >= 0.8


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
    assert s.per_epoch == 100


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


DDP_CHILD = textwrap.dedent("""
    import os, sys, torch
    sys.path.insert(0, {root!r})
    import aimts as m
    from test_aimts_ddp_data import batch, model_and_opt
    rank, world, dev = m.setup_distributed(torch.device("cpu"))
    model, opt = model_and_opt()
    net = m.wrap_distributed(model, world, dev)
    x, lo, hi = batch(rank)
    m.pretrain_step(net, opt, x, lo, hi, torch.Generator().manual_seed(7 + rank), 0.1, "joint")
    if rank == 0:
        torch.save(model.state_dict(), {out!r})
    torch.distributed.destroy_process_group()
""")

DDP_DATA = textwrap.dedent("""
    import torch, aimts as m
    def batch(r):
        x = torch.randn(6, 20, 2, generator=torch.Generator().manual_seed(100 + r), dtype=torch.float64)
        return x, x.amin((0, 1)), x.amax((0, 1))
    def model_and_opt():
        torch.manual_seed(0)
        model = m.AimTS(m.Args(repr_dims=8, hidden_dims=4, depth=1, proj_dims=4, image_width=2, dropout=0.0)).double()
        return model, torch.optim.SGD(model.parameters(), lr=0.5)
""")


def test_two_process_gloo_step_equals_mean_of_per_process_losses(tmp_path):
    (tmp_path / "test_aimts_ddp_data.py").write_text(DDP_DATA)
    out = tmp_path / "ddp.pt"
    (tmp_path / "child.py").write_text(DDP_CHILD.format(root=str(ROOT), out=str(out)))
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    procs = []
    for r in range(2):
        env = dict(os.environ, RANK=str(r), LOCAL_RANK=str(r), WORLD_SIZE="2", MASTER_ADDR="127.0.0.1",
                   MASTER_PORT=str(port), OMP_NUM_THREADS="1", PYTHONPATH=f"{tmp_path}{os.pathsep}{ROOT}")
        procs.append(subprocess.Popen([sys.executable, str(tmp_path / "child.py")], env=env, cwd=tmp_path,
                                      stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
    for p in procs:
        _, err = p.communicate(timeout=120)
        assert p.returncode == 0, err
    sys.path.insert(0, str(tmp_path))
    try:
        from test_aimts_ddp_data import batch, model_and_opt
    finally:
        sys.path.remove(str(tmp_path))
    model, opt = model_and_opt()                             # one process, both batches
    losses = []
    for r in range(2):
        x, lo, hi = batch(r)
        losses.append(model(x, *m.prepare_batch(x, lo, hi, torch.Generator().manual_seed(7 + r), 0.1), "joint")["loss"])
    opt.zero_grad()
    ((losses[0] + losses[1]) / 2).backward()                 # mean of the two batches' losses
    opt.step()
    got = torch.load(out)
    for k, v in model.state_dict().items():
        if v.dtype.is_floating_point and "running" not in k:
            assert torch.allclose(got[k], v, atol=1e-6), k
    changed = [k for k, v in model.state_dict().items() if "weight" in k]
    assert changed


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
    run = Path(res["run_dir"])
    assert (run / "results.json").exists() and (run / "loss.png").exists() and (run / "examples.png").exists()
    res2 = m.main(m.Args(**{**tiny, "batch_size": 4}, **TINY, load=str(run / "encoder.pt"), ft_epochs=1,
                         few_shot=0.2, out_dir=str(tmp_path / "runs"), log=False))
    assert res2["history"] == [] and 0 <= res2["eval"]["accuracy"] <= 1


@pytest.mark.parametrize("flags,msg", [
    (["--loss-terms", "bogus"], "--loss-terms"),
    (["--few-shot", "5"], "--few-shot"),
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
