"""Tests for dynacl.py: each loss against a naive per-anchor loop written from its equation
(float64), the encoder against a reference written here, the data parts (STFT, class-run stream,
sequences, z-score, pseudo-labels, masking), the evaluation parts (probe, scores, k-means, DBI,
silhouette) against independent references, the SleepEEG path through a loopback mirror, bad
input at the door, and short runs (loss goes down, same seed same history)."""
import io
import json
import math
import subprocess
import sys
import threading
import zipfile
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import dynacl as m
from common import UserError, cli

ROOT = Path(__file__).resolve().parents[1]
torch.set_num_threads(1)                                      # tiny tensors: threads only cost
TINY = dict(widths="16,8,4", batch_size=4, log=False, threads=1, kmeans_restarts=2, cluster_per_class=20)


def rand_z(B, T, Fd=5, seed=0, scale=1.0):
    g = torch.Generator().manual_seed(seed)
    return scale * torch.randn(B, T, Fd, generator=g, dtype=torch.float64)


# ------------------------------------------------------------------ naive references (float64)
def _cos(a, b):
    return float(a @ b) / (float(a.norm()) * float(b.norm()))


def naive_mp_xent(z, tau, negatives, positives=2):
    """Eq. (1) / Eq. (2)-(3) one anchor at a time. Members are (sequence, step) pairs; the
    negative set of (b, t) is every member of the batch (batch), or of sequence b (sequence);
    'code' first flattens the batch into one sequence."""
    if negatives == "code":
        z = z.reshape(1, -1, z.shape[-1])
        negatives = "sequence"
    B, T, _ = z.shape

    def e(a, b):
        return math.exp(_cos(z[a], z[b]) / tau)

    def members(b):
        return [(b, k) for k in range(T)] if negatives == "sequence" else [(i, k) for i in range(B) for k in range(T)]

    losses = []
    for b in range(B):
        for t in range(T):
            if positives == 1:
                if t + 1 >= T:
                    continue
                num = e((b, t), (b, t + 1))
                den = sum(e((b, t), k) for k in members(b) if k not in ((b, t), (b, t + 1)))
            else:
                if t == 0 or t == T - 1:
                    continue                                  # Fig. 2: edges are not anchors
                num = e((b, t), (b, t - 1)) + e((b, t), (b, t + 1))
                den = sum(e((b, t), k) for k in members(b) if k not in ((b, t - 1), (b, t), (b, t + 1)))
                den += sum(e((b, t - 1), l) for l in members(b) if l not in ((b, t - 1), (b, t)))
            losses.append(-math.log(num / den))
    return sum(losses) / len(losses)


def naive_margin(z, y, tau, margin, gamma, negatives):
    """The official LS_MARGIN_LOSS per anchor: terms x(s, Y_a) of the anchor-side instance a."""
    if negatives == "code":
        z, y = z.reshape(1, -1, z.shape[-1]), y.reshape(1, -1)
        negatives = "sequence"
    B, T, _ = z.shape

    def x(a, b):
        s, ya = _cos(z[a], z[b]), float(y[a])
        g = -(1 - ya) * 0.5 * s ** 2 + ya * 0.5 * max(0.0, margin - s) ** 2
        return math.exp(gamma * g / tau)

    def e(a, b):
        return math.exp(_cos(z[a], z[b]) / tau)

    def members(b):
        return [(b, k) for k in range(T)] if negatives == "sequence" else [(i, k) for i in range(B) for k in range(T)]

    losses = []
    for b in range(B):
        for t in range(1, T - 1):
            num = e((b, t), (b, t - 1)) + e((b, t), (b, t + 1))
            den = (sum(x((b, t - 1), l) for l in members(b) if l != (b, t - 1)) - e((b, t), (b, t - 1))
                   + sum(x((b, t), k) for k in members(b) if k != (b, t)) - num)
            losses.append(-math.log(num / (den + num)))
    return sum(losses) / len(losses)


def official_style_mp_xent(features, tau):
    """The published LS_HATCL_LOSS structure on a flat (M, F) matrix: column sums of the exp
    matrix with zeroed diagonal, positives from its first lower diagonal."""
    f = F.normalize(features, dim=-1)
    E = torch.exp(f @ f.T / tau)
    E = E - torch.diag(E.diag())
    low = torch.diagonal(E, offset=-1)
    num = low[1:] + low[:-1]
    den = E[:, :-2].sum(0) - low[:-1] + E[:, 1:-1].sum(0) - (low[1:] + low[:-1])
    return -torch.log(num / den).mean()


# ------------------------------------------------------------------ Eq. (1)-(3): MP-Xent
@pytest.mark.parametrize("B,T", [(1, 3), (2, 4), (3, 6)])
@pytest.mark.parametrize("negatives", ["batch", "sequence", "code"])
def test_mp_xent_matches_naive_loop(B, T, negatives):
    z = rand_z(B, T, seed=B * 10 + T)
    for tau in (0.5, 0.2):
        got = m.mp_xent(z, tau, negatives).item()
        assert abs(got - naive_mp_xent(z, tau, negatives)) < 1e-10, (negatives, tau)


@pytest.mark.parametrize("negatives", ["batch", "sequence", "code"])
def test_single_positive_case_is_eq1(negatives):
    z = rand_z(3, 5, seed=4)
    assert abs(m.mp_xent(z, 0.5, negatives, positives=1).item() - naive_mp_xent(z, 0.5, negatives, 1)) < 1e-10


def test_code_preset_equals_the_official_flattened_loss():
    z = rand_z(4, 7, seed=2)
    ref = official_style_mp_xent(z.reshape(-1, 5), 0.5)
    assert torch.allclose(m.mp_xent(z, 0.5, "code"), ref, atol=1e-12)
    assert not torch.allclose(m.mp_xent(z, 0.5, "batch"), ref, atol=1e-6)   # the default differs


def test_batch_and_sequence_agree_for_one_sequence_and_differ_otherwise():
    z = rand_z(1, 9, seed=1)
    assert torch.allclose(m.mp_xent(z, 0.5, "batch"), m.mp_xent(z, 0.5, "sequence"), atol=1e-12)
    assert torch.allclose(m.mp_xent(z, 0.5, "batch"), m.mp_xent(z, 0.5, "code"), atol=1e-12)
    z = rand_z(3, 9, seed=1)
    assert not torch.allclose(m.mp_xent(z, 0.5, "batch"), m.mp_xent(z, 0.5, "sequence"), atol=1e-6)


def test_no_positive_crosses_a_sequence():
    """Batch mode: permuting whole sequences changes nothing; making the last step of one sequence
    equal to the first of the next (a cross-boundary 'positive') changes the loss only through
    the negatives (the code preset treats that pair as positive and gains much more)."""
    z = rand_z(4, 6, seed=3)
    perm = torch.tensor([2, 0, 3, 1])
    for neg in ("batch", "sequence"):
        assert torch.allclose(m.mp_xent(z, 0.5, neg), m.mp_xent(z[perm], 0.5, neg), atol=1e-12)
    assert not torch.allclose(m.mp_xent(z, 0.5, "code"), m.mp_xent(z[perm], 0.5, "code"), atol=1e-6)
    z2 = z.clone()
    z2[1, 0] = z2[0, -1]                                      # identical across the boundary
    assert abs(m.mp_xent(z2, 0.5, "batch").item() - naive_mp_xent(z2, 0.5, "batch")) < 1e-10


def test_mp_xent_invariances_smoothness_and_gradcheck():
    z = rand_z(2, 8, seed=5)
    q, _ = torch.linalg.qr(rand_z(1, 5, Fd=5, seed=6)[0])     # (5, 5) orthogonal
    scale = torch.rand(2, 8, 1, dtype=torch.float64) + 0.5
    for neg in ("batch", "sequence"):
        base = m.mp_xent(z, 0.5, neg)
        assert torch.allclose(base, m.mp_xent(z @ q, 0.5, neg), atol=1e-12)
        assert torch.allclose(base, m.mp_xent(z * scale, 0.5, neg), atol=1e-12)
    t = torch.linspace(0, 3, 20, dtype=torch.float64)
    smooth = torch.stack([torch.cos(t), torch.sin(t), 0.1 * t], -1)[None]   # (1, 20, 3) slow drift
    shuffled = smooth[:, torch.randperm(20, generator=torch.Generator().manual_seed(0))]
    assert m.mp_xent(smooth).item() < m.mp_xent(shuffled).item()
    zg = rand_z(2, 5, Fd=3, seed=7).requires_grad_(True)
    assert torch.autograd.gradcheck(lambda a: m.mp_xent(a, 0.5, "batch"), (zg,))


def test_mp_xent_refuses_too_short_sequences_and_defaults():
    with pytest.raises(ValueError, match="length 2 have no anchor"):
        m.mp_xent(rand_z(2, 2))
    with pytest.raises(ValueError, match="got 'flat'"):
        m.mp_xent(rand_z(2, 4), negatives="flat")
    z = rand_z(2, 5, seed=11)
    assert abs(m.mp_xent(z).item() - naive_mp_xent(z, 0.5, "batch")) < 1e-10   # tau 0.5, batch, Eq. (2)


# ------------------------------------------------------------------ Eq. (4)-(6): DynaCL-M
@pytest.mark.parametrize("negatives", ["batch", "sequence", "code"])
def test_margin_loss_matches_naive_loop(negatives):
    z = rand_z(2, 5, seed=8)
    y = torch.tensor([[0, 1, 1, 0, 1], [1, 0, 0, 1, 1]], dtype=torch.float64)
    for margin, gamma in ((5.0, 0.05), (0.7, 1.0)):
        got = m.margin_mp_xent(z, y, 0.5, margin, gamma, negatives).item()
        assert abs(got - naive_margin(z, y, 0.5, margin, gamma, negatives)) < 1e-10
    z3, y3 = z[:, :3], y[:, :3]                               # T = 3: one anchor per sequence
    assert abs(m.margin_mp_xent(z3, y3, 0.3, 5.0, 0.05, negatives).item() - naive_margin(z3, y3, 0.3, 5.0, 0.05, negatives)) < 1e-10
    if negatives == "batch":                                  # defaults: tau 0.5, m 5, gamma 0.05, batch
        assert abs(m.margin_mp_xent(z, y).item() - naive_margin(z, y, 0.5, 5.0, 0.05, "batch")) < 1e-10


def test_margin_code_preset_equals_official_column_form():
    """LS_MARGIN_LOSS's structure on the flat matrix: Y broadcast along columns, column sums."""
    z = rand_z(3, 4, seed=9)
    y = (torch.rand(3, 4, generator=torch.Generator().manual_seed(1)) > 0.5).double()
    f = F.normalize(z.reshape(12, -1), dim=-1)
    s = f @ f.T
    low = torch.diagonal(s, offset=-1)
    num = torch.exp(low[1:] / 0.5) + torch.exp(low[:-1] / 0.5)
    yv = y.reshape(-1)
    g = -(1 - yv) * 0.5 * s ** 2 + yv * 0.5 * torch.clamp(5 - s, min=0) ** 2   # broadcast: column l has Y_l
    X = torch.exp(0.05 * g / 0.5)
    X = X - torch.diag(X.diag())
    den = X[:, :-2].sum(0) - torch.exp(low[:-1] / 0.5) + X[:, 1:-1].sum(0) - num
    ref = -torch.log(num / (den + num)).mean()
    assert torch.allclose(m.margin_mp_xent(z, y, 0.5, 5.0, 0.05, "code"), ref, atol=1e-12)


def test_margin_with_all_ones_rewards_collapse():
    t = torch.linspace(0, 6, 24, dtype=torch.float64)
    z = torch.stack([torch.cos(t), torch.sin(t), 0 * t], -1).reshape(2, 12, 3)   # a good embedding
    y = torch.ones(2, 12, dtype=torch.float64)
    collapsed = z[:1, :1].expand(2, 12, -1).clone()
    assert m.margin_mp_xent(collapsed, y).item() < m.margin_mp_xent(z, y).item()
    assert m.mp_xent(collapsed).item() > m.mp_xent(z).item()   # plain MP-Xent does not


def test_pseudo_labels_zero_exactly_where_similar():
    ang = torch.tensor([0.0, 0.3, 1.5, 1.6, 3.0, 3.05], dtype=torch.float64)   # consecutive angle steps
    x = torch.stack([torch.cos(ang), torch.sin(ang)], -1)[None]                # (1, 6, 2)
    cos = torch.cos(ang[1:] - ang[:-1])                                        # cos(x_t, x_t+1)
    for thr in (0.4, float(cos[1]), 0.99):
        y = m.pseudo_labels(x, thr)
        assert y.shape == (1, 6)
        assert y.dtype == x.dtype and torch.equal(y[0, :-1], (cos < thr).double())   # 0 exactly where cos >= thr
        assert y[0, -1] == 1                                                   # no successor
    assert (m.pseudo_labels(x, float(cos[1]))[0, 1] == 0)                      # equality counts as similar
    assert torch.equal(m.pseudo_labels(x, 0.4, "code"), torch.ones(1, 6, dtype=torch.float64))   # the bug
    xb = torch.cat([x, x.flip(1)])                                             # labels per sequence
    yb = m.pseudo_labels(xb, 0.4)
    assert torch.equal(yb[0], m.pseudo_labels(x, 0.4)[0]) and torch.equal(yb[1], m.pseudo_labels(x.flip(1), 0.4)[0])


def test_mask_fraction_independence_and_identity():
    torch.manual_seed(0)
    x = torch.randn(8, 50, 30) + 5                            # no exact zeros
    for p in (0.0, 0.3, 0.9):
        xm = m.mask_input(x, p)
        zero = xm == 0
        n = zero.numel()
        assert abs(zero.double().mean().item() - p) <= 4 * math.sqrt(p * (1 - p) / n) + 1e-12
        assert torch.equal(xm[~zero], x[~zero])               # kept values untouched
    zero = m.mask_input(x, 0.5) == 0
    assert not torch.equal(zero[0], zero[1]) and not torch.equal(zero[:, 0], zero[:, 1])   # per element
    assert torch.equal(m.mask_input(x, 0.0), x)


def test_mse_is_the_elementwise_mean():
    a, b = rand_z(2, 3, seed=1), rand_z(2, 3, seed=2)
    assert torch.allclose(m.mse_loss(a, b), ((a - b) ** 2).sum() / a.numel())
    assert torch.allclose(m.mse_loss(a, b), F.mse_loss(a, b))


def test_redrawn_projector_mse_is_l2_shrinkage_in_expectation():
    """Over many redraws, mean MSE ~= mean(z^2) + E[(Px)^2] (spec test 9)."""
    torch.manual_seed(0)
    P = m.Projector(6, 4).double()
    x, z = rand_z(1, 50, Fd=6, seed=1), rand_z(1, 50, Fd=4, seed=2).abs()
    vals, px2 = [], []
    for _ in range(3000):
        P.redraw()
        with torch.no_grad():
            t = P(x)
        vals.append(m.mse_loss(z, t).item())
        px2.append((t ** 2).mean().item())
    assert abs(np.mean(vals) - ((z ** 2).mean().item() + np.mean(px2))) < 0.02
    assert not any(p.requires_grad for p in P.parameters())


def _batch(seed=0, B=3, T=6, D=7):
    return rand_z(B, T, Fd=D, seed=seed).float()


def test_dynacl_m_loss_wiring_and_ablation_rows(monkeypatch):
    x = _batch()
    net = m.Encoder(7, (8, 6, 4))
    proj = m.Projector(7, 4)
    base = dict(dataset="synthetic", variant="dynacl-m")
    seen = []
    real_mask = m.mask_input
    monkeypatch.setattr(m, "mask_input", lambda a, p: seen.append(p) or real_mask(a, p))
    rows = [(True, True, "batch", "fixed"), (True, False, "sequence", "fixed"), (False, True, "sequence", "code"),
            (True, True, "code", "code")]
    for mse, margin_term, neg, pl in rows:
        args = m.Args(**base, mse=mse, margin_term=margin_term, projector="frozen", negatives=neg, pseudo_labels=pl)
        torch.manual_seed(3)
        loss, terms = m.training_loss(net, x, args, proj, 0.4, 0.3)
        torch.manual_seed(3)
        z = net(real_mask(x, 0.3) if mse else x)              # same draw of the mask
        y = m.pseudo_labels(x, args.threshold, pl)
        c = m.margin_mp_xent(z, y, 0.5, 5.0, 0.05, neg) if margin_term else m.mp_xent(z, 0.5, neg)
        mse_v = m.mse_loss(z, proj(x).detach())
        want = 0.4 * mse_v + 0.6 * c if mse else c
        assert torch.allclose(loss, want, atol=1e-6), (mse, margin_term, neg, pl)
        expect = ({"mse": mse_v.item()} if mse else {}) | {("margin_mp_xent" if margin_term else "mp_xent"): c.item()}
        assert terms.keys() == expect.keys() and all(abs(terms[k] - v) < 1e-5 for k, v in expect.items())
    assert seen == [0.3, 0.3, 0.3]                            # no mask in the MP-Xent + margin row
    y_fixed, y_code = m.pseudo_labels(x, 0.4), m.pseudo_labels(x, 0.4, "code")
    assert not torch.equal(y_fixed, y_code)                   # so the rows above test the flag
    w0 = proj.weight.clone()
    m.training_loss(net, x, m.Args(**base, projector="frozen"), proj, 0.4, 0.3)
    assert torch.equal(proj.weight, w0)
    m.training_loss(net, x, m.Args(**base, projector="redraw"), proj, 0.4, 0.3)
    assert not torch.equal(proj.weight, w0)


def test_dynacl_loss_is_plain_mp_xent_on_unmasked_input():
    x = _batch(1)
    net = m.Encoder(7, (8, 6, 4))
    for neg in ("batch", "sequence", "code"):
        loss, terms = m.training_loss(net, x, m.Args(negatives=neg, temperature=0.3), None, 0.4, 0.3)
        assert torch.allclose(loss, m.mp_xent(net(x), 0.3, neg)) and list(terms) == ["mp_xent"]


def naive_pseudo_labels(x, thr):
    """Sec. 3.2 per instance: Y_t = 0 if cos(x_t, x_t+1) >= thr, else 1; no successor -> 1."""
    B, T, _ = x.shape
    return torch.tensor([[0.0 if t + 1 < T and _cos(x[b, t], x[b, t + 1]) >= thr else 1.0 for t in range(T)]
                         for b in range(B)], dtype=torch.float64)


def test_dynacl_m_uses_its_own_tau_margin_gamma_threshold_and_weight():
    """training_loss passes --temperature, --margin, --margin-gamma and --threshold (not the
    defaults) to Eq. (2)/(5) and the pseudo-labels, checked against the naive loops; mask 0 so
    the result is deterministic."""
    torch.manual_seed(0)
    x = rand_z(3, 6, Fd=7, seed=21)
    net = m.Encoder(7, (8, 6, 4)).double()
    proj = m.Projector(7, 4).double()
    cos = [_cos(x[b, t], x[b, t + 1]) for b in range(3) for t in range(5)]
    thr = float(np.mean(sorted(cos)[7:9]))                    # between two cosines: no tie at the threshold
    assert not torch.equal(naive_pseudo_labels(x, thr), naive_pseudo_labels(x, 0.4))   # the flag matters
    hp = dict(temperature=0.4, margin=2.0, margin_gamma=0.3, threshold=thr, projector="frozen")
    for neg in ("batch", "sequence"):
        for mse, margin_term in ((False, True), (True, True), (True, False)):
            args = m.Args(dataset="synthetic", variant="dynacl-m", negatives=neg, mse=mse, margin_term=margin_term, **hp)
            loss, _ = m.training_loss(net, x, args, proj, 0.25, 0.0)
            z = net(x).detach()
            c = (naive_margin(z, naive_pseudo_labels(x, thr), 0.4, 2.0, 0.3, neg) if margin_term
                 else naive_mp_xent(z, 0.4, neg))
            want = 0.25 * ((z - proj(x)) ** 2).mean().item() + 0.75 * c if mse else c
            assert abs(loss.item() - want) < 1e-9, (neg, mse, margin_term)


def test_pretrain_resolves_dynacl_m_presets_and_explicit_values(monkeypatch):
    """Deviation 3 presets (the authors' runs: SleepEEG w 0.4 p 0.3, HARTH w 1e-30 p 1e-5 (App. C),
    ECG w 1 p 0.3, others as SleepEEG) reach training_loss; explicit 0 is a value, not 'preset'."""
    seqs = _stream_seqs(T=4, S=4, D=3)
    seen = []
    real = m.training_loss
    monkeypatch.setattr(m, "training_loss", lambda net, x, args, proj, w, p: seen.append((w, p)) or real(net, x, args, proj, w, p))
    cases = [("SleepEEG", {}, (0.4, 0.3)), ("HARTH", {}, (1e-30, 1e-5)), ("AFDB", {}, (1.0, 0.3)),
             ("Gesture", {}, (0.4, 0.3)), ("SleepEEG", dict(mse_weight=0.0, mask_fraction=0.0), (0.0, 0.0)),
             ("HARTH", dict(mse_weight=0.7, mask_fraction=0.5), (0.7, 0.5))]
    for name, kw, want in cases:
        seen.clear()
        _, _, _, stats = m.pretrain(seqs, m.Args(variant="dynacl-m", **dict(TINY, epochs=1, **kw)), torch.device("cpu"), name)
        assert seen and set(seen) == {want}, (name, kw, seen)
        assert (stats["mse_weight"], stats["mask_fraction"]) == want


# ================================================================== loss numerics, the margin's door
# (issue 14, loss side). Every sum of Eq. (1)-(2) and of the margin term is taken in log space with
# the left-out terms masked; float32 must agree with the float64 loops above at small tau.
def naive_log_negative_sums(u, tau, negatives, drop_positives=True):
    """log sum_k e_t,k per instance t, one at a time: k runs over t's negative set without t
    itself and, with drop_positives, without t - 1 and t + 1 of t's own sequence."""
    B, T, _ = u.shape
    out = torch.empty(B, T, dtype=torch.float64)
    for b in range(B):
        for t in range(T):
            keep = [(b, k) for k in range(T)] if negatives == "sequence" else [(i, k) for i in range(B) for k in range(T)]
            drop = {(b, t)} | ({(b, t - 1), (b, t + 1)} if drop_positives else set())
            terms = [math.exp(_cos(u[b, t], u[i, k]) / tau) for i, k in keep if (i, k) not in drop]
            out[b, t] = math.log(sum(terms)) if terms else -math.inf
    return out


@pytest.mark.parametrize("negatives", ["batch", "sequence"])
def test_log_negative_sums_equal_the_masked_logsumexp(negatives):
    """The faster equivalent (hand-written backward) against the plain masked logsumexp (autograd)
    and a naive loop: values, gradients, gradcheck, both regimes (tau >= 1/40: no max, symmetric
    backward; below: row max); T = 3 with sequence negatives leaves the middle row without any
    negative (-inf, zero gradient, not NaN)."""
    for B, T, tau in ((3, 7, 0.3), (3, 7, 0.02), (2, 3, 0.02), (2, 3, 0.5)):
        u = F.normalize(rand_z(B, T, seed=12 + T), dim=-1).requires_grad_(True)
        w = torch.randn(B, T, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
        fast = m.log_negative_sums(u, tau, negatives)
        slow = m.masked_logsumexp(u, lambda s: s / tau, negatives, drop_positives=True)
        want = naive_log_negative_sums(u.detach(), tau, negatives)
        assert torch.equal(torch.isinf(fast), torch.isinf(want)) and torch.equal(torch.isinf(slow), torch.isinf(want))
        finite = torch.isfinite(want)
        assert torch.allclose(fast[finite], want[finite], atol=1e-12) and torch.allclose(slow[finite], want[finite], atol=1e-12)
        wf = torch.where(finite, w, torch.zeros_like(w))
        g_fast, = torch.autograd.grad((fast.masked_fill(~finite, 0) * wf).sum(), u)
        g_slow, = torch.autograd.grad((slow.masked_fill(~finite, 0) * wf).sum(), u)
        assert torch.isfinite(g_fast).all() and torch.allclose(g_fast, g_slow, atol=1e-10)
        if finite.all():
            assert torch.autograd.gradcheck(lambda a: m.log_negative_sums(a, tau, negatives), (u,))
    assert (~finite).sum() == (2 if negatives == "sequence" else 0)   # T = 3: row 1 of each sequence
    u = F.normalize(rand_z(2, 5, seed=3), dim=-1)             # the plain version, self only (margin's rows)
    assert torch.allclose(m.masked_logsumexp(u, lambda s: s / 0.4, negatives, drop_positives=False),
                          naive_log_negative_sums(u, 0.4, negatives, drop_positives=False), atol=1e-12)


@pytest.mark.parametrize("tau", [0.05, 0.01])
def test_mp_xent_float32_is_finite_at_small_tau(tau):
    """Small batches of spread-out embeddings: exp(1 / tau) of the self term dwarfs the rest of a
    row, so "full row minus self" cancelled in float32 (NaN at tau = 0.05 before). In log space the
    float32 loss and its gradient are finite and equal the float64 loop from the equations."""
    worst = 0.0
    for seed in range(6):
        z64 = rand_z(2, 5, Fd=32, seed=seed)
        for negatives in ("batch", "sequence", "code"):
            z = z64.float().requires_grad_(True)
            loss = m.mp_xent(z, tau, negatives)
            loss.backward()
            assert torch.isfinite(loss) and torch.isfinite(z.grad).all(), (seed, negatives)
            want = naive_mp_xent(z64, tau, negatives)
            worst = max(worst, abs(loss.item() - want) / max(1.0, abs(want)))
            for positives in (1,):
                got1 = m.mp_xent(z64.float(), tau, negatives, positives).item()
                assert abs(got1 - naive_mp_xent(z64, tau, negatives, positives)) < 1e-4 * max(1.0, abs(got1))
    assert worst < 1e-4, worst
    if tau == 0.05:                                           # the authors' structure is finite here too
        assert math.isfinite(official_style_mp_xent(rand_z(2, 5, Fd=32, seed=0).float().reshape(10, 32), tau).item())


def test_mp_xent_float32_rows_far_below_the_largest_term():
    """tau = 0.01 with near-duplicate negatives (cosines ~ 1: terms near e^100, beyond float32
    without a max) and rows whose terms all sit far below the matrix's largest: only a max taken
    per row keeps both finite and exact (a max over the whole matrix, or none, does not)."""
    ang = 0.002 * torch.arange(18, dtype=torch.float64)
    z = torch.stack([torch.cos(ang), torch.sin(ang)], -1).reshape(2, 9, 2)   # all within 2 degrees
    z[0, 4] = -z[0, 4]                                        # opposite to every other instance
    # anchor 4 of sequence 0 between d1 and d2 (cos(d1, d2) = -0.2), every other instance opposite to
    # it and near-duplicates of each other: both sums of anchor 4's denominator sit near e^-20 while
    # the matrix's largest term is near e^100
    d1, d2 = torch.tensor([1.0, 0.0, 0.0]), torch.tensor([-0.2, 0.96 ** 0.5, 0.0])
    mid = F.normalize(d1 + d2, dim=0)
    far = torch.stack([-mid + 0.002 * k * torch.tensor([0.0, 0.0, 1.0]) for k in range(18)]).reshape(2, 9, 3)
    far[0, 3], far[0, 4], far[0, 5] = d1, mid, d2
    for zz in (z, far.double()):
        for negatives in ("batch", "sequence", "code"):
            got = m.mp_xent(zz.float(), 0.01, negatives).item()
            want = naive_mp_xent(zz, 0.01, negatives)
            assert math.isfinite(got) and abs(got - want) < 1e-4 * max(1.0, abs(want)), (negatives, got, want)


def test_mp_xent_float32_matches_float64_on_a_sleepeeg_sized_batch():
    """8 sequences of 300 near-duplicate neighbours (a trained-like embedding): float32 equals
    float64 at the paper's tau and at tau = 0.05, in all three negative modes."""
    g = torch.Generator().manual_seed(0)
    z = torch.rand(8, 15, 1, 32, generator=g, dtype=torch.float64).repeat(1, 1, 20, 1).reshape(8, 300, 32)
    z = z + 1e-3 * torch.rand(8, 300, 32, generator=g, dtype=torch.float64)
    for tau in (0.5, 0.05):
        for negatives in ("batch", "sequence", "code"):
            a, b = m.mp_xent(z.float(), tau, negatives).item(), m.mp_xent(z, tau, negatives).item()
            assert abs(a - b) < 2e-5 * max(1.0, abs(b)), (tau, negatives, a, b)


def test_m_margin_is_eq5_as_coded():
    """M_margin by hand, -(1 - Y) s^2 / 2 + Y max(0, m - s)^2 / 2, scale 1 by default; the scale
    multiplies it; Y broadcast per row."""
    s = torch.tensor([[-1.0, -0.3, 0.2], [0.9, 1.0, 0.5]], dtype=torch.float64)
    y = torch.tensor([[0.0], [1.0]], dtype=torch.float64)
    want = torch.tensor([[-0.5 * v * v for v in row] if yy == 0 else [0.5 * max(0.0, 0.7 - v) ** 2 for v in row]
                         for row, yy in zip(s.tolist(), (0, 1))], dtype=torch.float64)
    assert torch.allclose(m.m_margin(s, y, 0.7), want, atol=1e-15)
    assert torch.allclose(m.m_margin(s, y, 0.7, 3.0), 3 * want, atol=1e-15)


def test_margin_min_members_is_the_exact_bound():
    """A collapsed embedding (every s = 1) with Y = 0 (fixed) or Y = 1 (code) reaches the bound:
    one instance fewer than margin_min_members gives a NaN loss, the bound itself a finite one equal
    to the naive loop. Defaults: 5, the old "T < 5" rule."""
    assert m.margin_min_members(0.5) == 5 and m.margin_min_members(0.5, 5.0, 0.05, "fixed") == 5
    cases = [(0.5, 5.0, 0.05, "fixed"), (0.3, 5.0, 0.05, "fixed"), (0.5, 0.7, 1.0, "fixed"), (0.2, 5.0, 0.1, "code"),
             (0.5, 5.0, -0.02, "fixed")]
    for tau, margin, gamma, mode in cases:
        n = m.margin_min_members(tau, margin, gamma, mode)
        assert 3 <= n <= 60, (tau, margin, gamma, mode, n)
        for T, ok in ((n - 1, False), (n, True)):
            if T < 3:
                continue
            z = torch.ones(1, T, 4, dtype=torch.float64)      # collapsed: every cosine is 1
            y = torch.full((1, T), 0.0 if mode == "fixed" else 1.0, dtype=torch.float64)
            if mode == "fixed" and gamma < 0:                 # gamma < 0: the smallest term has Y = 1, s = -1
                z = torch.ones(1, T, 4, dtype=torch.float64)
                z[0, 1::2] *= -1                              # alternate directions: s = -1 for odd distances
                y = torch.ones(1, T, dtype=torch.float64)
            loss = m.margin_mp_xent(z, y, tau, margin, gamma, "sequence")
            if ok:
                assert torch.isfinite(loss) and abs(loss.item() - naive_margin(z, y, tau, margin, gamma, "sequence")) < 1e-9
            elif not (mode == "fixed" and gamma < 0):
                assert torch.isnan(loss), (tau, margin, gamma, mode, T)
    assert m.margin_min_members(0.01) > 10 ** 40              # tiny tau: effectively never defined
    # by hand, 2 (N - 1) x_min > e^(1/tau): Y = 1 only, defaults m 5, gamma 0.05, tau 0.2: x_min = e^(0.05 * 8 / 0.2) = e^2,
    # N - 1 > e^3 / 2 = 10.04 -> 12; m 0.7: g >= 0, x_min = 1, N - 1 > e^2 / 2 = 3.69 -> 5 (tau 0.5);
    # gamma -0.02 (fixed): the smallest term has Y = 1, s = -1, g = 18: N - 1 > e^(2 + 0.72) / 2 = 7.59 -> 9
    assert m.margin_min_members(0.2, pseudo_labels="code") == 12
    assert m.margin_min_members(0.5, 0.7, 0.05, "code") == 5
    assert m.margin_min_members(0.5, 5.0, -0.02, "fixed") == 9


def _margin_args(**kw):
    return m.Args(dataset="synthetic", variant="dynacl-m", **dict(TINY, **kw))


@pytest.mark.parametrize("negatives", ["batch", "code"])
def test_margin_refused_with_one_sequence_per_batch(negatives, tmp_path):
    """Batch and code negatives with B = 1 are sequence negatives: T = 4 is refused at the door
    (--batch-size 1), and inside pretrain when the data hold a single sequence; T = 5 runs, and so
    does T = 4 with two sequences per batch (8 instances), which sequence negatives refuse."""
    with pytest.raises(UserError, match="log of 0 or less with 4 instances"):
        m.main(_margin_args(negatives=negatives, seq_len=4, batch_size=1, out_dir=str(tmp_path)))
    x = np.random.default_rng(0).standard_normal((1, 4, 6)).astype(np.float32)   # S = 1 sequence: B = 1
    with pytest.raises(UserError, match="needs at least 5"):
        m.pretrain(x, _margin_args(negatives=negatives, epochs=1), torch.device("cpu"))
    m.check_args(_margin_args(negatives=negatives, seq_len=2 * 4, batch_size=1, epochs=1))   # 8 >= 5
    m.check_args(_margin_args(negatives=negatives, seq_len=4, batch_size=2))   # 8 instances: defined
    x5 = np.random.default_rng(0).standard_normal((1, 5, 6)).astype(np.float32)
    x24 = np.random.default_rng(1).standard_normal((2, 4, 6)).astype(np.float32)   # B = 2, T = 4: 8 instances
    for seqs in (x5, x24):
        _, _, hist, _ = m.pretrain(seqs, _margin_args(negatives=negatives, epochs=2, batch_size=2), torch.device("cpu"))
        assert all(math.isfinite(h["loss"]) for h in hist)
    with pytest.raises(UserError, match="with 4 instances"):    # the same T = 4 per sequence is refused there
        m.pretrain(x24, _margin_args(negatives="sequence", epochs=1, batch_size=2), torch.device("cpu"))


def test_margin_door_follows_temperature_gamma_and_mode():
    """The bound depends on tau, gamma and the pseudo-label mode, not only on T: tau 0.2 needs 86
    instances per set (refused with sequence negatives and T = 50, accepted with 8 x 50 batch
    negatives); the same flags without the margin term, or with the plain DynaCL, pass."""
    assert m.margin_min_members(0.2, 5.0, 0.05, "fixed") == 86
    with pytest.raises(UserError, match="needs at least 86"):
        m.check_args(_margin_args(temperature=0.2, negatives="sequence", seq_len=50))
    m.check_args(_margin_args(temperature=0.2, negatives="batch", seq_len=50, batch_size=8))
    m.check_args(_margin_args(temperature=0.2, negatives="sequence", seq_len=50, margin_term=False))
    m.check_args(m.Args(dataset="synthetic", temperature=0.2, negatives="sequence", seq_len=50))
    with pytest.raises(UserError, match="--temperature 0.5 --margin 5 --margin-gamma 0.01"):
        m.check_args(_margin_args(margin_gamma=0.01, negatives="sequence", seq_len=4))
    assert m.margin_min_members(0.5, 5.0, 0.05, "code") == 3   # Y = 1 always: x >= e^0.8, 2 (N-1) e^0.8 > e^2
    m.check_args(_margin_args(pseudo_labels="code", negatives="sequence", seq_len=4))   # 4 >= 3 with Y = 1


def test_margin_float32_matches_float64_where_defined():
    """In log space the margin loss in float32 equals the float64 loop, also at tau = 0.1 with the
    authors' Y = 1 everywhere and gamma 0.2 (where the log's argument stays positive: bound 2), and
    at tau = 0.02, where the x-terms overflow float32 unless summed in log space."""
    g = torch.Generator().manual_seed(4)
    z = torch.rand(3, 6, 8, generator=g, dtype=torch.float64)
    assert max(m.margin_min_members(0.1, 5.0, 0.2, "code"), m.margin_min_members(0.02, 5.0, 0.2, "code"), m.margin_min_members(0.5)) <= 6
    for tau, gamma, y in ((0.5, 0.05, (torch.rand(3, 6, generator=g) > 0.5).double()),
                          (0.1, 0.2, torch.ones(3, 6, dtype=torch.float64)),
                          (0.02, 0.2, torch.ones(3, 6, dtype=torch.float64))):   # x-terms up to e^180: inf as plain sums
        for negatives in ("batch", "sequence", "code"):
            want = naive_margin(z, y, tau, 5.0, gamma, negatives)
            got = m.margin_mp_xent(z.float(), y.float(), tau, 5.0, gamma, negatives).item()
            assert abs(got - want) < 1e-4 * max(1.0, abs(want)), (tau, negatives, got, want)


# ------------------------------------------------------------------ encoder (App. A)
def reference_encoder(net, x):
    """Per instance: h <- relu(batchnorm(W h + b)) three times, BatchNorm over all B*T instances
    (training) or with running statistics (eval). Written from App. A with the weights of net."""
    h = x.reshape(-1, x.shape[-1]).double()
    convs = [mod for mod in net.modules() if isinstance(mod, torch.nn.Conv1d)]
    bns = [mod for mod in net.modules() if isinstance(mod, torch.nn.BatchNorm1d)]
    for conv, bn in zip(convs, bns):
        h = h @ conv.weight[:, :, 0].double().T + conv.bias.double()
        if net.training:
            mu, var = h.mean(0), h.var(0, unbiased=False)
        else:
            mu, var = bn.running_mean.double(), bn.running_var.double()
        h = (h - mu) / torch.sqrt(var + bn.eps) * bn.weight.double() + bn.bias.double()
        h = torch.relu(h)
    return h.reshape(x.shape[0], x.shape[1], -1)


def test_encoder_equals_reference_in_train_and_eval_mode():
    torch.manual_seed(0)
    net = m.Encoder(156).double()
    assert sum(p.numel() for p in net.parameters()) == 30_880      # ~31k for D = 156 (spec)
    for bn in (mod for mod in net.modules() if isinstance(mod, torch.nn.BatchNorm1d)):
        torch.nn.init.uniform_(bn.weight, 0.5, 1.5)
        torch.nn.init.uniform_(bn.bias, -0.2, 0.2)
    x = torch.randn(3, 11, 156, dtype=torch.float64)
    net.train()
    assert torch.allclose(net(x), reference_encoder(net, x), atol=1e-10)
    net.eval()
    assert torch.allclose(net(x), reference_encoder(net, x), atol=1e-10)
    z = net(x)
    assert z.shape == (3, 11, 32) and (z >= 0).all()
    x2 = x.clone()
    x2[1, 4] += 1.0
    changed = ((net(x2) - z).abs().sum(-1) > 0).nonzero().tolist()
    assert changed == [[1, 4]]                                # kernel 1: only that instance moves


def test_embed_is_the_eval_mode_encoder_per_instance():
    torch.manual_seed(0)
    net = m.Encoder(7, (8, 6, 4)).train()
    net(torch.randn(4, 10, 7))                                # move the running statistics
    x = np.random.default_rng(0).standard_normal((25, 7)).astype(np.float32)
    e = m.embed(net, x, batch_size=10)
    assert net.training                                       # mode restored
    net.eval()
    want = torch.cat([net(torch.from_numpy(x[i:i + 1])[None])[0] for i in range(25)])
    assert torch.allclose(e, want, atol=1e-6)
    assert m.embed(net, x[:0]).shape == (0, 4)


# ------------------------------------------------------------------ data: STFT, streams, sequences
def test_stft_shapes_and_peak_bin():
    fs, f = 50, 7.0
    t = torch.arange(3000) / fs
    x = 0.01 * torch.randn(6, 3000, generator=torch.Generator().manual_seed(0))
    x[2] += torch.sin(2 * math.pi * f * t)
    feats = m.stft_features(x, fs)
    assert feats.shape == (119, 156)                          # 3000 / 25 - 1 frames, 6 x 26 bins
    ch2 = feats[:, 2 * 26:3 * 26]                             # channel-major stacking
    assert (ch2.argmax(1) == round(f * 50 / fs)).all()
    assert feats[:, :2 * 26].max() < 0.2 * ch2.max()
    assert m.stft_features(torch.randn(2, 15000), 250).shape == (119, 252)   # 2 leads, 126 bins


def test_stft_frame_equals_hand_dft():
    x = torch.randn(1, 120, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    feats = m.stft_features(x, fs=40)                          # n_fft 40, hop 20
    n = np.arange(40)
    w = 0.5 - 0.5 * np.cos(2 * np.pi * n / 40)                # periodic Hann
    for frame in (0, 3):
        seg = x[0, frame * 20:frame * 20 + 40].numpy() * w
        dft = np.abs([np.sum(seg * np.exp(-2j * np.pi * k * n / 40)) for k in range(21)])
        assert np.allclose(feats[frame].numpy(), dft, atol=1e-9)
    assert feats.shape[0] == 1 + (120 - 40) // 20             # no centring padding


def test_class_run_stream_keeps_every_window_once_with_the_asked_mean():
    y = np.repeat(np.arange(5), 4000)
    rng = np.random.default_rng(0)
    order = m.class_run_order(y, 20.0, rng)
    assert np.array_equal(np.sort(order), np.arange(len(y)))  # a permutation
    assert order.dtype == np.int64 and m.class_run_order(np.zeros(0, np.int64), 20.0, rng).dtype == np.int64
    runs = m.label_runs(y[order])
    assert abs(runs.mean() - 20) < 1.5                        # geometric, mean 20 (few cut short)
    assert abs((runs == 1).mean() - 1 / 20) < 0.02            # P(1) = p for Geometric(p)
    assert np.all(np.diff(y[order])[np.cumsum(runs)[:-1] - 1] != 0)   # runs switch class
    ones = m.label_runs(y[m.class_run_order(y, 1.0, np.random.default_rng(1))])
    assert ones.mean() < 1.01                                 # mean 1: every run is one window
    short = m.label_runs(y[m.class_run_order(y, 3.0, np.random.default_rng(1))])
    assert abs(short.mean() - 3) < 0.3
    yi = np.array([0] * 400 + [1] * 1600)                     # imbalanced, two classes: runs alternate
    ri = m.label_runs(yi[m.class_run_order(yi, 20.0, np.random.default_rng(2))])
    assert abs(ri.mean() - 20) < 3 and ri.max() < 200         # no long leftover run at the end
    # windows inside a class come in random order, not as stored
    c0 = order[y[order] == 0]
    assert not np.array_equal(c0, np.sort(c0))


def test_label_runs_and_order_report():
    assert m.label_runs(np.array([0, 0, 1, 0, 2, 2, 2])).tolist() == [2, 1, 1, 3]
    y = np.repeat(np.arange(5), 200)
    assert m.order_report(y)["time_ordered"] and m.order_report(y)["mean_run"] == 200
    shuffled = np.random.default_rng(0).permutation(y)
    rep = m.order_report(shuffled)
    assert not rep["time_ordered"] and 0.5 < rep["ratio"] < 2


def test_sequences_and_train_only_zscore():
    x = np.arange(23 * 2, dtype=np.float32).reshape(23, 2)
    s = m.to_sequences(x, 5)
    assert s.shape == (4, 5, 2) and np.array_equal(s[1, 0], x[5]) and np.array_equal(s[3, 4], x[19])
    tr = np.array([[0.0, 1.0, np.nan], [2.0, 1.0, 4.0]], dtype=np.float32)
    te = np.array([[4.0, 3.0, np.nan]], dtype=np.float32)
    a, b = m.zscore(tr, te)
    assert a.dtype == np.float32 and b.dtype == np.float32
    assert np.allclose(a[:, 0], [-1, 1]) and np.allclose(b[0], [3, 2, 0])   # train stats (sd 0 -> 1); NaN -> 0


# ------------------------------------------------------------------ evaluation parts
def test_probe_predictions_agree_with_linear_eval_and_scores_by_hand():
    g = torch.Generator().manual_seed(0)
    centers = torch.randn(3, 6, generator=g)

    def blobs(n):
        y = torch.arange(n) % 3
        return centers[y] + torch.randn(n, 6, generator=g), y

    (a, ya), (b, yb), (c, yc) = blobs(60), blobs(30), blobs(90)
    r = m.linear_eval(a, ya, b, yb, c, yc)
    pred = r["pred"]
    assert pred.shape == (90,)
    sc = m.classification_scores(yc, pred)
    assert abs(sc["accuracy"] - r["accuracy"]) < 1e-12 and abs(sc["macro_f1"] - r["macro_f1"]) < 1e-12
    yt, yp = torch.tensor([0, 0, 0, 1, 1, 2]), torch.tensor([0, 0, 1, 1, 2, 2])
    s = m.classification_scores(yt, yp)
    P, R = [1, 1 / 2, 1 / 2], [2 / 3, 1 / 2, 1]
    f1 = [2 * p * q / (p + q) for p, q in zip(P, R)]
    assert abs(s["macro_precision"] - np.mean(P)) < 1e-12 and abs(s["macro_recall"] - np.mean(R)) < 1e-12
    assert abs(s["macro_f1"] - np.mean(f1)) < 1e-12
    assert abs(s["weighted_f1"] - np.dot(f1, [3, 2, 1]) / 6) < 1e-12
    assert abs(s["accuracy"] - 4 / 6) < 1e-12
    assert m.classification_scores(torch.tensor([1]), torch.tensor([1]))["weighted_f1"] == 1.0
    s2 = m.classification_scores(torch.tensor([0, 0, 1, 2]), torch.tensor([0, 3, 1, 1]))
    P2, R2 = [1, 1 / 2, 0, 0], [1 / 2, 1, 0, 0]               # class 2 never predicted, 3 never true
    assert abs(s2["macro_precision"] - np.mean(P2)) < 1e-12 and abs(s2["macro_recall"] - np.mean(R2)) < 1e-12


def naive_dbi(z, lab):
    ks = sorted(set(lab.tolist()))
    c = {k: z[lab == k].mean(0) for k in ks}
    S = {k: np.mean(np.linalg.norm(z[lab == k] - c[k], axis=1)) for k in ks}
    return np.mean([max((S[i] + S[j]) / np.linalg.norm(c[i] - c[j]) for j in ks if j != i) for i in ks])


def naive_silhouette(z, lab):
    out = []
    for i in range(len(z)):
        own = [j for j in range(len(z)) if lab[j] == lab[i] and j != i]
        if not own:
            out.append(0.0)
            continue
        a = np.mean([np.linalg.norm(z[i] - z[j]) for j in own])
        b = min(np.mean([np.linalg.norm(z[i] - z[j]) for j in range(len(z)) if lab[j] == k])
                for k in set(lab.tolist()) if k != lab[i])
        out.append((b - a) / max(a, b) if max(a, b) > 0 else 0.0)   # sklearn: 0 where a = b = 0
    return np.mean(out)


def test_dbi_and_silhouette_match_naive_loops():
    rng = np.random.default_rng(0)
    z = rng.standard_normal((40, 3))
    lab = rng.integers(0, 3, 40)
    lab[0] = 3                                                # a singleton cluster: s = 0
    lab[1:3] = 4                                              # a pair: a_i = the one distance
    assert abs(m.davies_bouldin(torch.from_numpy(z), torch.from_numpy(lab)) - naive_dbi(z, lab)) < 1e-8
    assert abs(m.silhouette(torch.from_numpy(z), torch.from_numpy(lab)) - naive_silhouette(z, lab)) < 1e-8
    two = (z[:, 0] > 0).astype(np.int64)                      # exactly two clusters is enough
    assert abs(m.davies_bouldin(torch.from_numpy(z), torch.from_numpy(two)) - naive_dbi(z, two)) < 1e-8
    assert abs(m.silhouette(torch.from_numpy(z), torch.from_numpy(two)) - naive_silhouette(z, two)) < 1e-8
    rows = torch.tensor([[0.0, 0.0], [0.0, 0.0], [5.0, 5.0], [5.0, 5.0]])   # constant rows, two places
    assert m.silhouette(rows, torch.tensor([0, 0, 1, 1])) == 1.0
    tie = np.array([[0.0], [0.0], [0.0], [0.0], [5.0]])       # a = b = 0 for the first four points
    tl = np.array([0, 0, 1, 1, 2])
    assert abs(m.silhouette(torch.from_numpy(tie), torch.from_numpy(tl)) - naive_silhouette(tie, tl)) < 1e-12
    const = torch.ones(10, 3)
    assert math.isnan(m.silhouette(const, torch.arange(10) % 2))
    assert math.isnan(m.davies_bouldin(const, torch.arange(10) % 2))
    assert math.isnan(m.davies_bouldin(torch.from_numpy(z), torch.zeros(40, dtype=torch.long)))
    scores = m.cluster_scores(const, np.arange(10) % 2, 2, 2, 1)
    assert all(math.isnan(v) for v in scores.values())


def test_kmeans_recovers_separated_blobs_and_is_seeded():
    g = torch.Generator().manual_seed(0)
    true = torch.arange(90) % 3
    z = 10 * torch.eye(3)[true] + 0.3 * torch.randn(90, 3, generator=g)
    lab = m.kmeans(z, 3, restarts=5, seed=1)
    for k in range(3):                                        # each found cluster is one true class
        assert len(set(true[lab == k].tolist())) == 1
    assert len(set(lab.tolist())) == 3
    assert torch.equal(lab, m.kmeans(z, 3, restarts=5, seed=1))
    assert torch.equal(m.kmeans(z[:30], 3), m.kmeans(z[:30], 3, restarts=10, iters=100, seed=1))   # defaults
    # the restart with the lowest inertia wins: one restart can fail, ten do not
    inert = lambda l: sum(((z[l == k] - z[l == k].mean(0)) ** 2).sum().item() for k in set(l.tolist()))   # noqa: E731
    assert inert(m.kmeans(z, 3, restarts=10, seed=3)) <= min(inert(m.kmeans(z, 3, restarts=1, seed=s)) for s in range(5)) + 1e-9


def test_balanced_subset():
    y = np.array([0] * 50 + [1] * 7 + [2] * 30)
    idx = m.balanced_subset(y, 10, np.random.default_rng(0))
    assert np.bincount(y[idx]).tolist() == [10, 7, 10] and len(set(idx)) == 27   # App. D: a rare class gives what it has
    assert np.all(np.diff(idx) > 0)
    idx = m.balanced_subset(y, 5, np.random.default_rng(0))
    assert np.bincount(y[idx]).tolist() == [5, 5, 5]


# ------------------------------------------------------------------ training runs
def _stream_seqs(T=8, S=16, D=6, seed=0):
    """Sequences of a slow two-regime signal: consecutive instances are similar."""
    rng = np.random.default_rng(seed)
    y = np.repeat(rng.integers(0, 2, S * T // 8), 8)[:S * T]
    x = np.eye(2)[y] @ rng.standard_normal((2, D)) + 0.3 * rng.standard_normal((S * T, D))
    return m.to_sequences(x.astype(np.float32), T)


def test_short_run_lowers_the_loss_and_same_seed_same_history():
    seqs = _stream_seqs()

    def run(seed, **kw):
        torch.manual_seed(seed)
        return m.pretrain(seqs, m.Args(seed=seed, **dict(TINY, **{"epochs": 15, **kw})), torch.device("cpu"), "x")[2]

    h = run(1)
    assert h[-1]["loss"] < h[0]["loss"] - 0.05
    assert h == run(1)
    assert h != run(2)
    hm = run(1, variant="dynacl-m", epochs=3)
    assert set(hm[0]["loss_terms"]) == {"margin_mp_xent", "mse"}


def test_main_synthetic_writes_results(tmp_path, monkeypatch):
    sizes = []
    real = m.linear_eval
    monkeypatch.setattr(m, "linear_eval", lambda *a: sizes.append([len(v) for v in a]) or real(*a))
    res = m.main(m.Args(dataset="synthetic", epochs=2, out_dir=str(tmp_path), save_model=True,
                        probe_rows=20, **TINY))
    assert sizes and all(s[0] == 20 and s[1] <= 20 and s[4] == 48 for s in sizes)   # fit/val capped, test whole
    run = Path(res["run_dir"])
    saved = json.loads((run / "results.json").read_text())
    for k in ("accuracy", "macro_precision", "macro_recall", "macro_f1", "weighted_f1", "dbi_kmeans",
              "silhouette_true", "random_init_accuracy", "random_init_dbi_kmeans"):
        assert k in saved["eval"], k
    assert saved["order"] == "class-runs" and "SIMULATED" in saved["data_note"]
    for f in ("loss.png", "embedding.png", "embedding_random_init.png", "encoder.pt"):
        assert (run / f).stat().st_size > 0


def _serve(folder: Path):
    handler = partial(SimpleHTTPRequestHandler, directory=str(folder))
    handler.log_message = lambda *a: None
    srv = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    return srv


def test_sleepeeg_end_to_end_through_loopback_mirror(tmp_path, monkeypatch, capsys):
    """A miniature TF-C SleepEEG release (train/val/test.pt, samples (N, 1, 200), time-ordered
    label runs) zipped at the figshare path data.py asks for, served over 127.0.0.1."""
    rng = np.random.default_rng(0)
    n = 600
    y = np.repeat(rng.integers(0, 5, n // 30), 30)            # sleep-stage-like runs of 30 rows
    y[:5] = np.arange(5)                                      # every class occurs
    X = (np.eye(5)[y] @ rng.standard_normal((5, 200)) + 0.5 * rng.standard_normal((n, 200)))[:, None]
    files = {}
    for split, (a, b) in {"train": (X, y), "val": (X[:50], y[:50]), "test": (X[50:100], y[50:100])}.items():
        buf = io.BytesIO()
        torch.save({"samples": torch.from_numpy(a).float(), "labels": torch.from_numpy(b)}, buf)
        files[f"{split}.pt"] = buf.getvalue()
    url = m.data.TFC["SleepEEG"][0].split("://")[1]
    dest = tmp_path / "mirror" / url
    dest.parent.mkdir(parents=True)
    with zipfile.ZipFile(dest, "w") as zf:
        for name, content in files.items():
            zf.writestr(name, content)
    srv = _serve(tmp_path / "mirror")
    try:
        monkeypatch.setenv("TS_DATA_MIRROR", f"http://127.0.0.1:{srv.server_address[1]}")
        res = m.main(m.Args(dataset="SleepEEG", data_dir=str(tmp_path / "cache"), seq_len=20, epochs=2,
                            out_dir=str(tmp_path / "runs"), **TINY))
    finally:
        srv.shutdown()
        srv.server_close()
    out = capsys.readouterr().out
    assert "look time-ordered" in out and "(S, T, D)" in out
    assert "blocks 19 fit + 5 val | 6 test, T = 20" in out          # 30 blocks: 80/20, then 80/20
    assert res["train"]["seq_len"] == 20 and res["dataset"] == "SleepEEG"
    assert res["order"] == "stored" and res["label_free"] is True and res["label_note"] == ""
    assert (tmp_path / "cache" / "tfc" / "SleepEEG" / "train.pt").exists()


def test_prepare_sleepeeg_uses_178_features_and_block_split(monkeypatch):
    n = 3000
    y = np.repeat(np.arange(5), n // 5)
    X = np.random.default_rng(0).standard_normal((n, 1, 200)).astype(np.float32)
    ds = m.data._assemble("SleepEEG", X, y, X[10:20], y[10:20], X[:10], y[:10])   # val apart from test
    monkeypatch.setattr(m.data, "load_dataset", lambda *a, **k: ds)
    st = m.prepare(m.Args(seq_len=100), 1)
    assert st.seq_train.shape == (24, 100, 178)               # 30 blocks: 24 train (incl. 5 val) + 6 test
    assert len(st.x_val) == 500 and len(st.x_test) == 600
    mu = X[:1900, 0, :178].mean(0)
    sd = X[:1900, 0, :178].std(0)
    assert np.allclose(st.x_train[0], (X[0, 0, :178] - mu) / sd, atol=1e-4)   # train rows' statistics
    assert np.array_equal(st.y_test, y[2400:])                 # the LAST blocks are test


def test_prepare_zscores_every_split_with_train_statistics(monkeypatch):
    """Non-SleepEEG path: the z-score is fitted on the train split only (deviation 8) and applied
    to val and test, whose own statistics differ on purpose."""
    rng = np.random.default_rng(3)
    Xtr = (5 + 2 * rng.standard_normal((40, 1, 3))).astype(np.float32)
    Xva = (1 + 3 * rng.standard_normal((10, 1, 3))).astype(np.float32)
    Xte = (-20 + 7 * rng.standard_normal((12, 1, 3))).astype(np.float32)
    y = lambda n: np.arange(n) % 2                             # noqa: E731
    ds = m.data._assemble("toy", Xtr, y(40), Xte, y(12), Xva, y(10))
    monkeypatch.setattr(m.data, "load_dataset", lambda *a, **k: ds)
    st = m.prepare(m.Args(dataset="toy", order="stored", seq_len=4), 1)
    a = ds.X_train[:, 0].astype(np.float64)
    mu, sd = a.mean(0), a.std(0)
    for got, X in ((st.x_train, ds.X_train), (st.x_val, ds.X_val), (st.x_test, ds.X_test)):
        assert np.allclose(got, (X[:, 0] - mu) / sd, atol=1e-4)
    assert abs(st.x_test.mean()) > 5                          # test keeps its offset from train


def test_defaults_are_the_papers(monkeypatch):
    """App. C / Sec. 4 values: tau 0.5, margin 5, threshold 0.4, batch 8, AdamW lr 1e-3, widths
    128/64/32 (App. A); SleepEEG sequences of T = 300 when --seq-len is not given."""
    a = m.Args()
    assert (a.temperature, a.margin, a.threshold, a.batch_size, a.lr) == (0.5, 5.0, 0.4, 8, 1e-3)
    assert m.parse_widths(a.widths) == (128, 64, 32)
    n = 3000
    y = np.repeat(np.arange(5), n // 5)
    X = np.random.default_rng(0).standard_normal((n, 1, 200)).astype(np.float32)
    ds = m.data._assemble("SleepEEG", X, y, X[10:20], y[10:20], X[:10], y[:10])
    monkeypatch.setattr(m.data, "load_dataset", lambda *a, **k: ds)
    assert m.prepare(m.Args(), 1).seq_train.shape[1:] == (300, 178)


def test_stored_order_keeps_rows(monkeypatch):
    n = 64
    y = np.arange(n) % 2
    X = np.arange(n * 3, dtype=np.float32).reshape(n, 1, 3)
    ds = m.data._assemble("toy", X, y, X[8:16], y[8:16], X[:8], y[:8])
    monkeypatch.setattr(m.data, "load_dataset", lambda *a, **k: ds)
    st = m.prepare(m.Args(dataset="toy", order="stored", seq_len=4), 1)
    assert np.array_equal(st.seq_train.reshape(-1, 3)[:, 0], st.x_train[:64, 0][:len(st.seq_train) * 4])
    assert np.all(np.diff(st.x_train[:, 0]) > 0)              # stored order: rows ascend as stored
    st2 = m.prepare(m.Args(dataset="toy", order="class-runs", seq_len=4), 1)
    assert not np.all(np.diff(st2.x_train[:, 0]) > 0)


@pytest.mark.parametrize("order", ["class-runs", "stored"])
def test_reordered_rows_keep_their_own_labels(monkeypatch, order):
    """Issue 14: the class-run order moves the training rows; their labels must move with them, in
    the probe's fit rows as in its validation and test rows. Feature 0 of every row IS its label
    (z-scored, so one value per class) and feature 1 its stored index. Catches: x_tr reordered and
    y_tr left as stored (the probe would fit on other rows' labels; no loss test sees it)."""
    n = 90
    y = np.random.default_rng(3).integers(0, 3, n)
    X = np.stack([y.astype(np.float32), np.arange(n, dtype=np.float32)], 1)[:, None, :]   # (N, 1, 2)
    ds = m.data._assemble("toy", X[:60], y[:60], X[60:75], y[60:75], X[75:], y[75:])
    monkeypatch.setattr(m.data, "load_dataset", lambda *a, **k: ds)
    st = m.prepare(m.Args(dataset="toy", order=order, seq_len=4, probe_rows=0), 1)
    value = {}
    for x, lab in ((st.x_train, st.y_train), (st.x_val, st.y_val), (st.x_test, st.y_test)):
        assert len(x) == len(lab) and len(x)
        for v, c in zip(x[:, 0].round(5), lab):
            assert value.setdefault(int(c), v) == v, f"{order}: a row of class {c} carries another class's series"
    assert len(set(value.values())) == 3
    if order == "class-runs":                                 # the rows really were reordered
        assert not np.all(np.diff(st.x_train[:, 1]) > 0)


# ------------------------------------------------------------------ bad input at the door
@pytest.mark.parametrize("kw,msg", [
    (dict(variant="simclr"), "--variant"), (dict(negatives="all"), "--negatives"),
    (dict(order="time"), "--order"), (dict(seq_len=2), "T >= 3"), (dict(temperature=0.0), "temperature"),
    (dict(mask_fraction=1.0), "mask-fraction"), (dict(widths="128,x"), "--widths"),
    (dict(run_mean=0.5), "run-mean"), (dict(pseudo_labels="paper"), "--pseudo-labels"),
    (dict(variant="dynacl-m", negatives="sequence", seq_len=4), "log of 0")])
def test_bad_flags_are_user_errors(kw, msg):
    with pytest.raises(UserError, match=msg):
        m.main(m.Args(dataset="synthetic", **dict(TINY, **kw)))


def test_too_few_instances_for_a_sequence(tmp_path):
    X = np.random.default_rng(0).standard_normal((12, 1, 5)).astype(np.float32)
    y = np.arange(12) % 2
    np.savez(tmp_path / "small.npz", X_train=X, y_train=y, X_test=X, y_test=y)
    with pytest.raises(UserError, match="no sequence"):
        m.main(m.Args(dataset=str(tmp_path / "small.npz"), seq_len=50, **TINY))


def test_cli_bad_input_prints_one_line(tmp_path, capsys):
    bad = tmp_path / "notes.npz"
    bad.write_text("not an archive")
    for argv in (["--variant", "simclr"], ["--dataset", str(bad)], ["--dataset", "NoSuchSet"],
                 ["--dataset", str(tmp_path / "missing.npz")]):
        with pytest.raises(SystemExit) as exit_:
            cli(m.main, m.Args, argv + ["--out-dir", str(tmp_path)])
        err = capsys.readouterr().err
        assert exit_.value.code == 2 and err.startswith("error: ") and err.count("\n") == 1, err
    out = subprocess.run([sys.executable, "dynacl.py", "--seq-len", "2"], cwd=ROOT,   # the real entry point
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 2 and out.stderr.startswith("error: ") and "Traceback" not in out.stderr


def test_cli_smoke(tmp_path):
    out = subprocess.run([sys.executable, "dynacl.py", "--dataset", "synthetic", "--epochs", "1",
                          "--widths", "8,4", "--variant", "dynacl-m", "--threads", "1",
                          "--no-random-init-eval", "--out-dir", str(tmp_path)],
                         cwd=ROOT, check=True, capture_output=True, text=True, timeout=120)
    assert "epoch 1/1" in out.stdout and "linear eval" in out.stdout and "simulated" in out.stdout
    (f,) = tmp_path.glob("*/results.json")
    assert json.loads(f.read_text())["method"] == "dynacl_m"


# ================================================================== CONTRACT F: every default and its source
# (block owned by the data / protocol work, issue 14; the loss tests above are separate)
PAPER_DEFAULTS = {
    "dataset": ("SleepEEG", "Sec. 4"),                      # one of the paper's three sets, the only window release
    "data_dir": ("", "plumbing"),
    "variant": ("dynacl", "Sec. 4.2"),                      # Table 3: DynaCL, not DynaCL-M, is the one to use
    "mse": (True, "Sec. 3.3"),                              # DynaCL-M = masking + MSE + margin
    "margin_term": (True, "Sec. 3.3"),
    "negatives": ("batch", "deviation 1"),
    "temperature": (0.5, "App. C"),
    "seq_len": (0, "Sec. 4"),                               # 0 = T 300 (SleepEEG), 119 (HARTH, ECG)
    "order": ("auto", "deviation 11"),
    "run_mean": (20.0, "deviation 11"),
    "widths": ("128,64,32", "App. A"),
    "mse_weight": (-1.0, "deviation 3"),                    # -1 = the per-dataset preset
    "mask_fraction": (-1.0, "deviation 3"),
    "margin": (5.0, "App. C"),
    "threshold": (0.4, "App. C"),
    "margin_gamma": (0.05, "deviation 5"),
    "pseudo_labels": ("fixed", "deviation 4"),
    "projector": ("redraw", "deviation 6"),
    "epochs": (0, "deviation 9"),
    "batch_size": (8, "Sec. 4"),
    "lr": (1e-3, "Sec. 4"),
    "weight_decay": (0.01, "Sec. 4"),                       # AdamW; no decay is given: torch's default, as the code runs
    "test_fraction": (0.2, "App. C"),                       # 80-20 split
    "val_fraction": (0.2, "deviation 7"),                   # C chosen on validation (the paper has no validation)
    "probe_rows": (50_000, "deviation 7"),
    "cluster_per_class": (1000, "App. D"),
    "kmeans_restarts": (10, "deviation 7"),
    "random_init_eval": (True, "Table 3"),                  # its "Random Init." row
    "seed": (1, "plumbing"),
    "threads": (0, "plumbing"),
    "device": ("auto", "plumbing"),
    "out_dir": ("runs", "plumbing"),
    "save_model": (False, "plumbing"),
    "log": (True, "plumbing"),
}


def test_paper_defaults_table_covers_every_field_with_its_source():
    import dataclasses
    import re
    fields = {f.name: f.default for f in dataclasses.fields(m.Args)}
    assert set(PAPER_DEFAULTS) == set(fields), set(PAPER_DEFAULTS) ^ set(fields)
    header = m.__doc__
    for name, (value, source) in PAPER_DEFAULTS.items():
        assert fields[name] == value and type(fields[name]) is type(value), (name, fields[name], value)
        assert re.fullmatch(r"(Sec\. [\d.]+|Table \d+|App\. [A-D]|deviation \d+|plumbing)", source), (name, source)
        dev = re.fullmatch(r"deviation (\d+)", source)
        if dev:                                               # the numbered deviation exists in the header
            assert re.search(rf"^ {{1,2}}{dev.group(1)}\. ", header, re.M), (name, source)
    n_dev = len(re.findall(r"^ {1,2}\d+\. ", header.split("Where we differ")[1].split("Run:")[0], re.M))
    assert n_dev == 11                                        # numbered 1..11, none missing
