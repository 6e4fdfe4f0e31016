"""dynacl.py on continuous recordings (issue 15) and the protocol around its equations (issue 14).

HARTH and AFDB run end to end through `main`, downloaded from miniature archives in the hosts' real
layouts (the UCI zip of S0xx.csv files; PhysioNet's afdb/1.0.0 tree with .hea/.dat/.atr and its
SHA256SUMS.txt) served by a loopback mirror. The miniatures are built here from REAL recordings
shipped in tests/data (SOURCES.md): the Daphnet accelerometer CSV re-laid out as HARTH's back / thigh
columns at 50 Hz, and the first 120 s of MIT-BIH record 100 resampled to 250 Hz and written as AFDB
records with `wfdb` (a dev requirement). The signals are real; the activity / rhythm labels are laid
out here (known segments, some ending mid-frame, some on a frame's midpoint, an unlabelled stretch),
so every frame's label can be computed by hand. Frame features are recomputed with numpy's FFT (not
torch.stft), frame labels with a loop over frames, sequences by cutting each subject by hand.

Protocol (CONTRACT.md): the test split reaches the final evaluation step only; pre-training reads no
label (except the declared class-run order); the random-init baseline is the trained encoder's own
initial weights; validation in stored order is a contiguous block; what reaches each loss inside
the real pretrain loop; batches are shuffled every epoch.
"""
import hashlib
import inspect
import json
import threading
import zipfile
from collections import Counter
from dataclasses import replace
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pytest
import torch

import data
import dynacl as m
from common import UserError, cli, load_checkpoint

torch.set_num_threads(1)
RAW = Path(__file__).resolve().parent / "data" / "raw"
TINY = dict(widths="8,4", batch_size=4, log=False, threads=1, kmeans_restarts=1, cluster_per_class=30)

# HARTH miniature: five subjects cut from the Daphnet excerpt (50 Hz samples [a, b)); S012 (the last
# ID) is the test subject. S006 holds 60 s = 119 frames: exactly one T = 119 sequence.
HARTH_SUBJECTS = {"S006": (0, 3000), "S008": (3000, 3625), "S009": (3625, 4250), "S010": (4250, 4875),
                  "S012": (4875, 5500)}
# AFDB miniature: five records cut from MIT-BIH 100 at 250 Hz; rhythm notes (sample, rhythm) per record.
AFDB_SUBJECTS = {"04015": (0, 15000), "04043": (15000, 18750), "04048": (18750, 22500),
                 "04126": (22500, 26250), "04746": (26250, 30000)}
AFDB_NOTES = {"04015": [(0, "N"), (4000, "AFIB"), (9000, "AFL"), (12100, "N")],   # 9000 = 72 x 125: a tie frame
              "04043": [(300, "AFIB"), (2000, "J")],                             # samples before 300: unlabelled
              "04048": [(0, "N"), (1000, "AFIB")],
              "04126": [(0, "AFIB"), (2500, "N"), (3000, "AFL")],
              "04746": [(0, "AFIB"), (1200, "AFL"), (2600, "N"), (3100, "J")]}


# ------------------------------------------------------------------ real signals, re-laid out
def harth_signal() -> np.ndarray:
    """Daphnet S06R02E0 (64 Hz, irregular 15-16 ms stamps, mg) -> (5500, 6) in g on a 20-ms grid:
    back_x/y/z = trunk fwd/vert/lateral, thigh_x/y/z = leg fwd/vert/lateral (linear interpolation
    at the real time stamps)."""
    path = RAW / "daphnet" / "S06R02E0.csv"
    stamps = np.loadtxt(path, delimiter=",", skiprows=1, usecols=[0], dtype=str)
    t = (stamps.astype("datetime64[us]") - stamps[0].astype("datetime64[us]")).astype(np.float64) / 1e6
    a = np.loadtxt(path, delimiter=",", skiprows=1, usecols=range(1, 10))
    grid = np.arange(5500) * 0.02
    assert grid[-1] <= t[-1]
    return np.stack([np.interp(grid, t, a[:, c]) for c in (6, 7, 8, 3, 4, 5)], 1) / 1000.0


def harth_codes() -> np.ndarray:
    """Per-sample HARTH activity codes: standing (6) until the walking starts (~20 s into the real
    excerpt), then walking (1), a 3.6-s shuffling (3) bout in every subject (its start on a frame's
    midpoint: a 25 / 25 tie), and 1.2 s of a code outside HARTH's twelve (0: unlabelled) in S006."""
    c = np.ones(5500, dtype=np.int64)
    c[:1000] = 6
    for a, _ in HARTH_SUBJECTS.values():
        c[a + 300:a + 480] = 3                                # a + 300 is a multiple of 25
    c[1500:1560] = 0
    return c


def ecg_signal() -> np.ndarray:
    """The first 120 s of MIT-BIH 100 (2 leads, 360 Hz, format 212) -> (2, 30000) mV at 250 Hz."""
    return ecg_signal_360()[1]


def ecg_signal_360():
    import tempfile
    with tempfile.TemporaryDirectory() as d:
        (Path(d) / "100.dat").write_bytes((RAW / "mitdb" / "100_first120s.dat").read_bytes())
        (Path(d) / "100.hea").write_text("100 2 360 43200\n100.dat 212 200 11 1024\n100.dat 212 200 11 1024\n")
        x, _ = data.read_wfdb(Path(d) / "100")                # (2, 43200) mV
    t, grid = np.arange(43200) / 360.0, np.arange(30000) / 250.0
    return x, np.stack([np.interp(grid, t, ch) for ch in x]).astype(np.float32)


# ------------------------------------------------------------------ archives in the hosts' layouts
def _listing(d: Path) -> None:
    lines = [f"{hashlib.sha256(p.read_bytes()).hexdigest()} {p.relative_to(d).as_posix()}"
             for p in sorted(d.rglob("*")) if p.is_file() and p.name != "SHA256SUMS.txt"]
    (d / "SHA256SUMS.txt").write_text("\n".join(lines) + "\n")


@pytest.fixture(scope="module")
def harth_site(tmp_path_factory) -> Path:
    """archive.ics.uci.edu/static/public/779/harth.zip holding harth/S0xx.csv (one with an index column)."""
    root = tmp_path_factory.mktemp("harth_site")
    sig, codes = harth_signal(), harth_codes()
    z = root / "archive.ics.uci.edu/static/public/779/harth.zip"
    z.parent.mkdir(parents=True)
    with zipfile.ZipFile(z, "w", zipfile.ZIP_DEFLATED) as zf:
        for k, (s, (a, b)) in enumerate(HARTH_SUBJECTS.items()):
            index = k == 2                                    # some real files carry an unnamed index column
            head = ("," if index else "") + "timestamp,back_x,back_y,back_z,thigh_x,thigh_y,thigh_z,label"
            rows = [(f"{i}," if index else "") + f"2019-01-12 00:{i // 3000:02d}:{(i % 3000) / 50:06.3f},"
                    + ",".join(f"{v:.6f}" for v in sig[a + i]) + f",{codes[a + i]}" for i in range(b - a)]
            zf.writestr(f"harth/{s}.csv", head + "\n" + "\n".join(rows) + "\n")
    return root


@pytest.fixture(scope="module")
def afdb_site(tmp_path_factory) -> Path:
    """physionet.org/files/afdb/1.0.0/ with <rec>.hea/.dat (format 212, 250 Hz)/.atr and SHA256SUMS.txt."""
    pytest.importorskip("wfdb")
    root = tmp_path_factory.mktemp("afdb_site")
    d = root / "physionet.org/files/afdb/1.0.0"
    d.mkdir(parents=True)
    (d / "04015.qrs").write_bytes(b"\0\0")                    # other files of the release are not fetched
    write_afdb_release(d, AFDB_SUBJECTS, AFDB_NOTES)          # the records, then the listing of all files
    return root


def write_afdb_release(d: Path, records: dict, notes: dict) -> None:
    """Records {name: (a, b)} cut from the real ECG at 250 Hz, each with its rhythm notes
    [(sample, rhythm)], written with wfdb (format 212) into d, plus the SHA256SUMS.txt listing."""
    import wfdb
    d.mkdir(parents=True, exist_ok=True)
    ecg = ecg_signal()
    for rec, (a, b) in records.items():
        dig = np.clip(np.round(ecg[:, a:b].T * 200), -2048, 2047).astype(np.int16)
        wfdb.wrsamp(rec, fs=250, units=["mV", "mV"], sig_name=["ECG1", "ECG2"], d_signal=dig, fmt=["212", "212"],
                    adc_gain=[200.0, 200.0], baseline=[0, 0], write_dir=str(d))
        s, r = zip(*notes[rec])
        wfdb.wrann(rec, "atr", np.array(s), symbol=["+"] * len(s), aux_note=[f"({x}" for x in r], write_dir=str(d))
    _listing(d)


def afdb_all_records() -> tuple[dict, dict]:
    """All 23 AFDB record names (data.AFDB_RECORDS), so the unpatched command line finds every file
    it asks for: the five records above, and 18 more of 60 s (one T = 119 sequence each), cut from the
    same real ECG at shifted offsets, with four rhythm stretches each in a rotated order."""
    records, notes = dict(AFDB_SUBJECTS), dict(AFDB_NOTES)
    order = ["N", "AFIB", "AFL", "J"]
    for k, rec in enumerate(r for r in data.AFDB_RECORDS if r not in AFDB_SUBJECTS):
        a = (k * 750) % 15000
        records[rec] = (a, a + 15000)
        notes[rec] = [(s, order[(k + j) % 4]) for j, s in enumerate((0, 3700, 7600, 11300))]
    return records, notes


@pytest.fixture(scope="module")
def afdb_full_site(tmp_path_factory) -> Path:
    """physionet.org/files/afdb/1.0.0/ holding all 23 records (afdb_all_records)."""
    pytest.importorskip("wfdb")
    root = tmp_path_factory.mktemp("afdb_full_site")
    write_afdb_release(root / "physionet.org/files/afdb/1.0.0", *afdb_all_records())
    return root


@pytest.fixture
def mirror(monkeypatch):
    """start(root): serve root on 127.0.0.1 and point TS_DATA_MIRROR at it."""
    servers = []
    monkeypatch.setattr(data, "BACKOFF", 0.0)

    def start(root: Path):
        handler = partial(SimpleHTTPRequestHandler, directory=str(root))
        handler.log_message = lambda *a: None
        srv = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        threading.Thread(target=srv.serve_forever, daemon=True).start()
        servers.append(srv)
        monkeypatch.setenv("TS_DATA_MIRROR", f"http://127.0.0.1:{srv.server_address[1]}")
    yield start
    for srv in servers:
        srv.shutdown()
        srv.server_close()


@pytest.fixture
def afdb_records(monkeypatch):
    monkeypatch.setattr(data, "AFDB_RECORDS", list(AFDB_SUBJECTS))


# ------------------------------------------------------------------ references written from Sec. 4
def ref_frames(sig: np.ndarray, fs: int) -> np.ndarray:
    """Sec. 4 by hand: 1-s periodic Hann window, 0.5-s hop, no padding, |rfft| per channel,
    channel-major. sig (C, L) -> (1 + (L - fs) // (fs / 2), C * (fs // 2 + 1))."""
    n, hop = fs, fs // 2
    w = 0.5 - 0.5 * np.cos(2 * np.pi * np.arange(n) / n)
    starts = range(0, sig.shape[1] - n + 1, hop)
    return np.array([np.concatenate([np.abs(np.fft.rfft(ch[s:s + n] * w)) for ch in sig]) for s in starts])


def ref_labels(lab: np.ndarray, fs: int) -> list:
    """Deviation 10 by hand: majority class of the frame's samples (tie: lower id); -1 if any sample is -1."""
    n, hop, out = fs, fs // 2, []
    for s in range(0, len(lab) - n + 1, hop):
        seg = lab[s:s + n].tolist()
        if min(seg) < 0:
            out.append(-1)
        else:
            cnt = Counter(seg)
            top = max(cnt.values())
            out.append(min(c for c, v in cnt.items() if v == top))
    return out


def harth_class_ids(codes: np.ndarray) -> np.ndarray:
    order = list(data.HARTH_CODES)
    return np.array([order.index(c) if c in order else -1 for c in codes])


def afdb_class_ids(rec: str) -> np.ndarray:
    a, b = AFDB_SUBJECTS[rec]
    lab = np.full(b - a, -1)
    for s, r in AFDB_NOTES[rec]:
        lab[s:] = data.AFDB_RHYTHMS.index(r)
    return lab


def run(tmp_path, **kw):
    return m.main(m.Args(**{**TINY, "epochs": 1, "out_dir": str(tmp_path / "runs"), **kw}))


def spy(monkeypatch, name, log):
    """Replace m.<name> by a wrapper that logs its arguments by parameter name, then calls it."""
    real = getattr(m, name)
    sig = inspect.signature(real)

    def wrapper(*a, **k):
        bound = sig.bind(*a, **k)
        bound.apply_defaults()
        log.append(dict(bound.arguments))
        return real(*a, **k)
    monkeypatch.setattr(m, name, wrapper)


# ------------------------------------------------------------------ HARTH end to end
def test_harth_end_to_end_through_the_mirror(harth_site, mirror, tmp_path, capsys, monkeypatch):
    """`python dynacl.py --dataset HARTH` with the defaults of Sec. 4 (T = 119, 156 features):
    subject-wise split, frame counts by hand, one sequence (only S006 holds 60 s), the probe's
    test rows = the labelled frames of the test subject, its accuracy beside the random init."""
    mirror(harth_site)
    seen, pre = [], []
    spy(monkeypatch, "linear_eval", seen)
    spy(monkeypatch, "pretrain", pre)
    res = run(tmp_path, dataset="HARTH", save_model=True)
    assert len(pre) == 1 and pre[0]["name"] == "HARTH"        # the name that picks deviation 3's preset
    out = capsys.readouterr().out
    d = res["data"]
    frames = {s: 1 + (b - a - 50) // 25 for s, (a, b) in HARTH_SUBJECTS.items()}
    assert d["subjects"]["test"] == ["S012"] and len(d["subjects"]["val"]) == 1 and len(d["subjects"]["fit"]) == 3
    assert sorted(sum(d["subjects"].values(), [])) == sorted(HARTH_SUBJECTS)        # each subject in one split
    for split in ("fit", "val", "test"):
        assert d["frames"][split] == sum(frames[s] for s in d["subjects"][split])
    assert (d["features"], d["seq_len"], d["sequences"], d["split_by"]) == (156, 119, 1, "subject")
    assert res["train"]["seq_len"] == 119 and res["label_free"] is True and res["label_note"] == ""
    codes = harth_codes()
    a, b = HARTH_SUBJECTS["S012"]
    n_test = sum(v >= 0 for v in ref_labels(harth_class_ids(codes[a:b]), 50))
    assert len(seen) == 2 and all(len(c["z_test"]) == len(c["y_test"]) == n_test for c in seen)   # trained, random init
    assert set(res["selection"]) == {"probe_C", "probe_val_accuracy", "random_init_probe_C", "random_init_probe_val_accuracy"}
    assert 0 <= res["eval"]["accuracy"] <= 1 and 0 <= res["eval"]["random_init_accuracy"] <= 1
    assert "linear eval" in out and "random-init enc." in out
    assert "no label read" in out and "frame label = majority" in out
    saved = json.loads((Path(res["run_dir"]) / "results.json").read_text())
    assert saved["data"]["subjects"] == d["subjects"] and saved["label_free"] is True
    ck = load_checkpoint(Path(res["run_dir"]) / "encoder.pt")
    assert set(ck) >= {"state_dict", "init_state_dict", "args"}


def test_harth_frames_labels_and_sequences_by_hand(harth_site, mirror):
    """prepare() on the served HARTH miniature with T = 10: every pre-training sequence is 10
    consecutive frames of ONE subject (recomputed with numpy's FFT, z-scored with the fit
    subjects' statistics), cut from its start (tail dropped); every probe row carries the majority
    label of its frame; frames with an unlabelled sample are pre-trained on but not probed."""
    mirror(harth_site)
    args = m.Args(dataset="HARTH", seq_len=10, probe_rows=0, **TINY)
    st = m.prepare(args, 1)
    sig, lab = harth_signal(), harth_class_ids(harth_codes())
    feats = {s: ref_frames(sig[a:b].T, 50) for s, (a, b) in HARTH_SUBJECTS.items()}
    labels = {s: np.array(ref_labels(lab[a:b], 50)) for s, (a, b) in HARTH_SUBJECTS.items()}
    sub = st.info["subjects"]
    fit = np.concatenate([feats[s] for s in sub["fit"]])
    mu, sd = fit.mean(0), fit.std(0)
    z = {s: (f - mu) / np.where(sd > 1e-8, sd, 1) for s, f in feats.items()}
    want = [z[s][k * 10:(k + 1) * 10] for s in sub["fit"] + sub["val"] for k in range(len(z[s]) // 10)]
    assert st.seq_train.shape == (len(want), 10, 156)
    for w, got in zip(want, st.seq_train):                    # fit subjects, then val subjects, in time order
        np.testing.assert_allclose(got, w, atol=2e-4, rtol=1e-4)
    for split, x, y in (("fit", st.x_train, st.y_train), ("val", st.x_val, st.y_val), ("test", st.x_test, st.y_test)):
        ks = np.concatenate([labels[s] for s in sub[split]])
        zs = np.concatenate([z[s] for s in sub[split]])
        assert np.array_equal(y, ks[ks >= 0])                 # the labelled frames, in time order
        np.testing.assert_allclose(x, zs[ks >= 0], atol=2e-4, rtol=1e-4)
    s006 = labels["S006"]
    assert (s006 == -1).sum() == 4                            # the 1.2-s unlabelled stretch touches 4 frames
    assert np.flatnonzero(labels["S008"] == 2).tolist() == list(range(12, 19))   # > 25 of 50 samples shuffling
    assert labels["S008"][11] == 0                            # the tie frame [275, 325): walking (lower id)
    assert sorted(set(st.y_train) | set(st.y_val)) == [0, 2, 5]          # walking, shuffling, standing
    assert st.info["labelled_frames"]["fit"] + st.info["labelled_frames"]["val"] == \
        sum((labels[s] >= 0).sum() for s in sub["fit"] + sub["val"])


@pytest.mark.parametrize("name, preset", [("HARTH", (1e-30, 1e-5)), ("AFDB", (1.0, 0.3))])
def test_recordings_dynacl_m_presets_reach_the_loss(name, preset, harth_site, afdb_site, afdb_records, mirror,
                                                     monkeypatch):
    """Deviation 3 / App. C: the served set's MSE weight and mask fraction (HARTH 1e-30 / 1e-5, ECG
    1 / 0.3) reach training_loss (prepare names the set, pretrain picks the preset by that name, as
    main does)."""
    mirror(harth_site if name == "HARTH" else afdb_site)
    seen = []
    spy(monkeypatch, "training_loss", seen)
    args = m.Args(**{**TINY, "epochs": 1}, dataset=name, variant="dynacl-m", seq_len=10)
    st = m.prepare(args, 1)
    m.pretrain(st.seq_train, args, torch.device("cpu"), st.name)
    assert st.name == name and seen and {(c["mse_weight"], c["mask_fraction"]) for c in seen} == {preset}


# ------------------------------------------------------------------ AFDB end to end
def test_afdb_end_to_end_through_the_mirror(afdb_site, afdb_records, mirror, tmp_path, monkeypatch):
    """`python dynacl.py --dataset AFDB`: 2 leads x 126 bins = 252 features, T = 119 (04015 holds
    60 s), records split by subject; the probe leaves out N (Table 3), the clustering keeps all 4
    rhythms (App. D); only the four files of each record and the listing are fetched."""
    mirror(afdb_site)
    probe, clusters, pre = [], [], []
    spy(monkeypatch, "linear_eval", probe)
    spy(monkeypatch, "cluster_scores", clusters)
    spy(monkeypatch, "pretrain", pre)
    res = run(tmp_path, dataset="AFDB")
    assert [c["name"] for c in pre] == ["AFDB"]
    d = res["data"]
    assert d["subjects"]["test"] == ["04746"] and sorted(sum(d["subjects"].values(), [])) == sorted(AFDB_SUBJECTS)
    frames = {r: 1 + (b - a - 250) // 125 for r, (a, b) in AFDB_SUBJECTS.items()}
    assert frames["04015"] == 119
    for split in ("fit", "val", "test"):
        assert d["frames"][split] == sum(frames[r] for r in d["subjects"][split])
    assert (d["features"], d["sequences"], d["probe_classes"]) == (252, 1, ["AFIB", "AFL", "J"])
    test_labels = np.array(ref_labels(afdb_class_ids("04746"), 250))
    assert len(probe) == 2
    for c in probe:
        assert np.array_equal(np.asarray(c["y_test"]), test_labels[(test_labels >= 0) & (test_labels != 3)])
        assert 3 not in np.asarray(c["y_train"]).tolist() and 3 not in np.asarray(c["y_val"]).tolist()
    assert len(clusters) == 2 and all(3 in np.asarray(c["y"]).tolist() for c in clusters)   # N is clustered
    cache = Path(data.data_home()) / "raw" / "AFDB"
    assert not (cache / "04015.qrs").exists() and (cache / "04746.atr").exists()


CLI_SMALL = ["--epochs", "1", "--widths", "8,4", "--threads", "1", "--kmeans-restarts", "1", "--cluster-per-class", "30"]


def _command_line(dataset: str, out: Path) -> tuple[str, dict]:
    """`python dynacl.py --dataset <dataset>`, the real entry point in its own process (the mirror
    and the cache reach it through TS_DATA_MIRROR / TS_DATA_DIR), small sizes. (stdout, results.json)"""
    import subprocess
    import sys
    done = subprocess.run([sys.executable, "dynacl.py", "--dataset", dataset, *CLI_SMALL, "--out-dir", str(out)],
                          cwd=Path(m.__file__).parent, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    (f,) = out.glob("*/results.json")
    return done.stdout, json.loads(f.read_text())


def test_harth_and_afdb_command_lines_through_the_mirror(harth_site, afdb_full_site, mirror, tmp_path):
    """What a user types: `python dynacl.py --dataset HARTH` and `--dataset AFDB`, unpatched (AFDB
    asks for all 23 records of data.AFDB_RECORDS), downloaded through the loopback mirror: the STFT
    line (156 / 252 features, T = 119), the probe's accuracy printed beside the random-init
    encoder's, subjects on one side of the split each."""
    for name, site, feats, subjects in (("HARTH", harth_site, 156, set(HARTH_SUBJECTS)),
                                        ("AFDB", afdb_full_site, 252, set(data.AFDB_RECORDS))):
        mirror(site)
        out, res = _command_line(name, tmp_path / name)
        assert f"STFT frames of {feats} features (1-s Hann, 0.5-s hop)" in out and "T = 119" in out, out
        acc = [ln for ln in out.splitlines() if ln.startswith(("linear eval", "random-init enc."))]
        assert [ln.split("|")[0].strip() for ln in acc] == ["linear eval", "random-init enc."], out
        assert all("| acc " in ln for ln in acc)
        assert 0 <= res["eval"]["accuracy"] <= 1 and 0 <= res["eval"]["random_init_accuracy"] <= 1
        sub = res["data"]["subjects"]
        assert sorted(sum(sub.values(), [])) == sorted(subjects) and res["label_free"] is True
        assert (res["data"]["features"], res["data"]["seq_len"], res["data"]["split_by"]) == (feats, 119, "subject")
    assert res["data"]["probe_classes"] == ["AFIB", "AFL", "J"]


def test_afdb_frame_labels_by_hand(afdb_site, afdb_records, mirror):
    """Rhythm labels per frame: the rhythm holding most of the frame's 250 samples, ties to the
    lower id (04015's AFIB -> AFL change on a frame's midpoint), unlabelled frames before 04043's
    first rhythm note kept out of the probe."""
    mirror(afdb_site)
    st = m.prepare(m.Args(dataset="AFDB", seq_len=5, probe_rows=0, **TINY), 1)
    sub = st.info["subjects"]
    lab = {r: np.array(ref_labels(afdb_class_ids(r), 250)) for r in AFDB_SUBJECTS}
    assert lab["04043"][:3].tolist() == [-1, -1, -1] and lab["04043"][3] == 0
    assert lab["04015"][71] == 0 and lab["04015"][72] == 1     # [8875, 9125): 125 AFIB / 125 AFL -> AFIB
    for split, y, keep in (("fit", st.y_train, (0, 1, 2)), ("val", st.y_val, (0, 1, 2)), ("test", st.y_test, (0, 1, 2, 3))):
        ks = np.concatenate([lab[r] for r in sub[split]])
        assert np.array_equal(y, ks[np.isin(ks, keep)])
    assert st.info["frames"]["fit"] + st.info["frames"]["val"] - st.info["labelled_frames"]["fit"] - \
        st.info["labelled_frames"]["val"] == 3                # pre-trained on, not probed
    ecg = ecg_signal()
    a, b = AFDB_SUBJECTS["04043"]
    f = ref_frames(ecg[:, a:b].astype(np.float64), 250)
    assert f.shape == (1 + (b - a - 250) // 125, 252)


# ------------------------------------------------------------------ a user's own recording
def own_npz(path: Path, subjects=True, gap=None) -> dict:
    """The HARTH miniature as a user's file: signal (6, 5500), labels per sample (HARTH codes, 0 =
    unlabelled is written as -1), fs, and per-sample subject ids."""
    codes = harth_codes()
    arrays = dict(signal=harth_signal().T.astype(np.float32), labels=np.where(codes == 0, -1, codes), fs=50.0)
    if gap is not None:
        arrays["signal"][:, gap[0]:gap[1]] = np.nan
    if subjects:
        arrays["subject"] = np.concatenate([[s] * (b - a) for s, (a, b) in HARTH_SUBJECTS.items()])
    np.savez(path, **arrays)
    return arrays


def test_own_recording_npz_is_framed_like_harth(harth_site, mirror, tmp_path):
    """The same signal as a .npz (signal, labels, fs, subject) gives HARTH's sequences exactly, and
    runs end to end through main."""
    own_npz(tmp_path / "rec.npz")
    a = m.prepare(m.Args(dataset=str(tmp_path / "rec.npz"), seq_len=10, **TINY), 1)
    mirror(harth_site)
    h = m.prepare(m.Args(dataset="HARTH", seq_len=10, **TINY), 1)
    assert a.info["subjects"] == h.info["subjects"] and a.info["frames"] == h.info["frames"]
    np.testing.assert_allclose(a.seq_train, h.seq_train, atol=2e-4, rtol=1e-4)   # the CSV holds 6 decimals
    assert a.name == "rec" and a.info["class_names"] == ["1", "3", "6"]
    res = run(tmp_path, dataset=str(tmp_path / "rec.npz"))
    assert res["dataset"] == "rec" and res["data"]["sequences"] == 1 and res["label_free"]


def test_own_recording_one_subject_splits_in_time_and_gaps_are_never_crossed(tmp_path):
    """No subject ids: each recording's first 80% train, the last 20% test, the last 20% of the
    training part validates (contiguous blocks). A NaN stretch is a gap: frames and sequences
    stop before it and start after it."""
    arr = own_npz(tmp_path / "one.npz", subjects=False, gap=(2000, 2010))
    st = m.prepare(m.Args(dataset=str(tmp_path / "one.npz"), seq_len=10, probe_rows=0, **TINY), 1)
    assert st.info["split_by"] == "time" and st.info["subjects"] == {"fit": ["0"], "val": ["0"], "test": ["0"]}
    cut = int(round(0.8 * 5500))                              # 4400: test = [4400, 5500)
    vcut = int(round(0.8 * cut))                              # 3520: val = [3520, 4400)
    pieces = {"fit": [(0, 2000), (2010, vcut)], "val": [(vcut, cut)], "test": [(cut, 5500)]}
    for split, ps in pieces.items():
        assert st.info["frames"][split] == sum(1 + (b - a - 50) // 25 for a, b in ps), split
        assert st.info["stretches"][split] == len(ps)
    sig = arr["signal"].astype(np.float64)
    f = {split: [ref_frames(sig[:, a:b], 50) for a, b in ps] for split, ps in pieces.items()}
    fit = np.concatenate(f["fit"])
    mu, sd = fit.mean(0), fit.std(0)
    want = [((x - mu) / sd)[k * 10:(k + 1) * 10] for s in ("fit", "val") for x in f[s] for k in range(len(x) // 10)]
    assert st.seq_train.shape[0] == len(want)
    for w, got in zip(want, st.seq_train):
        np.testing.assert_allclose(got, w, atol=2e-4, rtol=1e-4)


def test_own_recording_csv_with_time_column_and_text_labels(tmp_path):
    """A CSV with time (s), subject, text labels ('' = unlabelled) and a time jump (a gap): the
    same frames as the .npz with NaN at the gap."""
    sig, codes = harth_signal(), harth_codes()
    names = {1: "walk", 3: "shuffle", 6: "stand", 0: ""}
    subj = np.concatenate([[s] * (b - a) for s, (a, b) in HARTH_SUBJECTS.items()])
    keep = np.r_[0:2000, 2010:5500]                           # 10 samples missing: the clock jumps 0.22 s
    rows = ["time,subject,ax,ay,az,label"] + [f"{i * 0.02:.2f},{subj[i]},{sig[i, 0]:.6f},{sig[i, 1]:.6f},"
                                              f"{sig[i, 2]:.6f},{names[codes[i]]}" for i in keep]
    (tmp_path / "rec.csv").write_text("\n".join(rows) + "\n")
    st = m.prepare(m.Args(dataset=str(tmp_path / "rec.csv"), seq_len=10, probe_rows=0, **TINY), 1)
    assert st.info["class_names"] == ["shuffle", "stand", "walk"] and st.info["channels"] == 3
    assert abs(st.info["fs"] - 50) < 1e-6
    arrays = dict(signal=np.where(np.isin(np.arange(5500), keep), sig[:, :3].T, np.nan).astype(np.float32),
                  labels=np.array([names[c] for c in codes]), fs=50.0, subject=subj)
    np.savez(tmp_path / "same.npz", **arrays)
    ref = m.prepare(m.Args(dataset=str(tmp_path / "same.npz"), seq_len=10, probe_rows=0, **TINY), 1)
    assert st.info["frames"] == ref.info["frames"] and st.info["stretches"] == ref.info["stretches"]
    np.testing.assert_allclose(st.seq_train, ref.seq_train, atol=1e-4)
    assert np.array_equal(st.y_train, ref.y_train) and np.array_equal(st.y_test, ref.y_test)


def _bad_files(tmp_path):
    ok = dict(signal=np.random.default_rng(0).standard_normal((2, 2000)).astype(np.float32),
              labels=np.arange(2000) // 500 % 2, fs=50.0)
    cases = {
        "missing": (dict(signal=ok["signal"], labels=ok["labels"]), "no fs array"),
        "transposed": ({**ok, "signal": ok["signal"].T}, "save signal.T"),
        "length": ({**ok, "labels": ok["labels"][:-5]}, "2000 samples but labels has 1995"),
        "fs": ({**ok, "fs": -1.0}, "sampling rate"),
        "one_class": ({**ok, "labels": np.zeros(2000, np.int64)}, "at least two"),
        "short": ({**ok, "signal": ok["signal"][:, :30], "labels": np.arange(30) % 2}, "no training frames"),
        "seq": ({**ok, "subject": np.repeat(["a", "b", "c"], [800, 600, 600])}, "fewer than T = 119"),
        "inf": ({**ok, "signal": np.where(np.arange(2000) == 7, np.inf, ok["signal"]).astype(np.float32)}, "inf"),
    }
    out = []
    for name, (arrays, msg) in cases.items():
        np.savez(tmp_path / f"{name}.npz", **arrays)
        out.append((tmp_path / f"{name}.npz", msg))
    (tmp_path / "nolabel.csv").write_text("time,x\n0,1\n0.02,2\n")
    (tmp_path / "notime.csv").write_text("x,label\n1,a\n2,b\n")
    (tmp_path / "text.csv").write_text("time,x,label\n0,1,a\n0.02,one,b\n")
    out += [(tmp_path / "nolabel.csv", "`label` column"), (tmp_path / "notime.csv", "`time`"),
            (tmp_path / "text.csv", "cannot read the values")]
    return out


def test_bad_recording_layouts_are_one_error_line(tmp_path, capsys):
    for path, msg in _bad_files(tmp_path):
        with pytest.raises(SystemExit) as e:
            cli(m.main, m.Args, ["--dataset", str(path), "--out-dir", str(tmp_path), "--widths", "4,4"])
        err = capsys.readouterr().err
        assert e.value.code == 2 and err.startswith("error: ") and err.count("\n") == 1, (path.name, err)
        assert msg in err, (path.name, err)
    own_npz(tmp_path / "ok.npz")
    with pytest.raises(UserError, match="class-runs"):
        m.main(m.Args(dataset=str(tmp_path / "ok.npz"), order="class-runs", **TINY))


# ------------------------------------------------------------------ the contract, on recordings
def _recordings(noise_test=False, permute=None, seed=0):
    """HARTH-shaped Recordings in memory (the real signal), as data.load_recordings returns them."""
    sig, lab = harth_signal().T.astype(np.float32), harth_class_ids(harth_codes())
    recs = {s: data.Recording(s, sig[:, a:b].copy(), lab[a:b].copy()) for s, (a, b) in HARTH_SUBJECTS.items()}
    rng = np.random.default_rng(seed)
    if permute:                                               # other classes, shifted in time
        ids = rng.permutation(12)
        for s in permute:
            lab = np.roll(recs[s].labels, 137)
            recs[s] = replace(recs[s], labels=np.where(lab >= 0, ids[lab], -1))
    test = recs["S012"]
    if noise_test:
        test = data.Recording("S012", rng.standard_normal(test.signals.shape).astype(np.float32),
                              rng.permutation(test.labels))
    return data.Recordings("HARTH", 50.0, ["c"] * 6, list(data.HARTH_CODES.values()),
                           [recs["S006"], recs["S008"], recs["S010"]], [recs["S009"]], [test])


def _run_with(recs, out: Path):
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(data, "load_recordings", lambda *a, **k: recs)
        res = m.main(m.Args(**{**TINY, "dataset": "HARTH", "seq_len": 10, "epochs": 2, "save_model": True,
                               "probe_rows": 40, "out_dir": str(out)}))
    return res, load_checkpoint(Path(res["run_dir"]) / "encoder.pt")


@pytest.fixture(scope="module")
def baseline_recordings_run(tmp_path_factory):
    return _run_with(_recordings(), tmp_path_factory.mktemp("baseline"))


def _same_weights(a, b):
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_recordings_test_split_reaches_only_the_final_evaluation(baseline_recordings_run, tmp_path):
    """CONTRACT B: the test subject replaced by noise with permuted labels: history, every value
    chosen on validation and both saved encoders are identical; only "eval" moves."""
    r1, c1 = baseline_recordings_run
    r2, c2 = _run_with(_recordings(noise_test=True), tmp_path)
    assert r1["history"] == r2["history"] and r1["selection"] == r2["selection"]
    assert _same_weights(c1["state_dict"], c2["state_dict"]) and _same_weights(c1["init_state_dict"], c2["init_state_dict"])
    assert r1["eval"]["accuracy"] != r2["eval"]["accuracy"] or r1["eval"]["dbi_true"] != r2["eval"]["dbi_true"]


def test_recordings_pretraining_reads_no_label(baseline_recordings_run, tmp_path):
    """Other classes for every training and validation subject's samples, shifted in time: pre-training
    (history, weights) is identical: the order is the recording's own, the z-score uses every fit
    frame. (The probe's choice may move: it reads the labels.)"""
    r1, c1 = baseline_recordings_run
    r2, c2 = _run_with(_recordings(permute=("S006", "S008", "S009", "S010")), tmp_path)
    assert r1["history"] == r2["history"] and _same_weights(c1["state_dict"], c2["state_dict"])
    assert r1["label_free"] and r2["label_free"] and r1["label_note"] == ""


# ------------------------------------------------------------------ the contract, on sets of windows
def _windows(n_train=120, n_test=60, seed=0, test_noise=False, permute=False):
    """A time-ordered set of windows: a slow regime signal, windows of (1, 12), labels = regimes."""
    rng = np.random.default_rng(seed)
    y = np.repeat(np.arange(n_train // 12) % 3, 12)
    X = (np.eye(3)[y] @ rng.standard_normal((3, 12)) + 0.3 * rng.standard_normal((n_train, 12)))[:, None]
    yte = np.arange(n_test) % 3
    Xte = rng.standard_normal((n_test, 1, 12)) if test_noise else (np.eye(3)[yte] @ rng.standard_normal((3, 12)))[:, None]
    ytr = rng.permutation(y) if permute else y
    return X.astype(np.float32), ytr, Xte.astype(np.float32), (rng.permutation(yte) if test_noise else yte)


def _load_windows(monkeypatch, arrays, calls=None):
    X, y, Xte, yte = arrays

    def load(name, data_dir=None, val_fraction=0.2, seed=0):
        if calls is not None:
            calls.append(val_fraction)
        return data._assemble("toy", X, y, Xte, yte, val_fraction=val_fraction, seed=seed)
    monkeypatch.setattr(data, "load_dataset", load)


def test_stored_order_validation_is_one_contiguous_block(monkeypatch):
    """Issue 14: in --order stored the validation rows are the last block of the training rows, and
    pre-training sees every training row in stored order (a random carve would cut about
    val_fraction of the adjacent pairs)."""
    X, y, Xte, yte = _windows()
    X[:, 0, 0] = np.arange(len(X))                            # the row index, readable after the z-score
    calls = []
    _load_windows(monkeypatch, (X, y, Xte, yte), calls)
    st = m.prepare(m.Args(dataset="toy", order="stored", seq_len=4, probe_rows=0, val_fraction=0.25), 1)
    assert calls == [0.0]                                     # data.py carves nothing at random
    stream = st.seq_train.reshape(-1, 12)[:, 0]
    assert np.all(np.diff(stream) > 0) and len(stream) == len(X)   # every row, in stored order
    fit_id, val_id = st.x_train[:, 0], st.x_val[:, 0]
    assert len(val_id) == 30 and np.all(np.diff(val_id) > 0) and fit_id.max() < val_id.min()
    assert np.array_equal(st.y_val, y[-30:]) and np.array_equal(st.y_train, y[:-30])
    assert np.allclose(st.x_train.mean(0), 0, atol=1e-5) and np.allclose(st.x_train.std(0), 1, atol=1e-4)   # fit rows' statistics
    assert "the last 30 rows (one block)" in st.note and st.label_free


def _run_windows(arrays, out: Path, order: str):
    with pytest.MonkeyPatch.context() as mp:
        _load_windows(mp, arrays)
        res = m.main(m.Args(**{**TINY, "dataset": "toy", "order": order, "seq_len": 4, "epochs": 2,
                               "save_model": True, "probe_rows": 50, "out_dir": str(out)}))
    return res, load_checkpoint(Path(res["run_dir"]) / "encoder.pt")


@pytest.fixture(scope="module")
def baseline_windows_runs(tmp_path_factory):
    return {order: _run_windows(_windows(), tmp_path_factory.mktemp(order), order) for order in ("stored", "class-runs")}


def test_stored_order_pretraining_reads_no_label(baseline_windows_runs, tmp_path):
    """Permuted training labels: same stream, same history, same weights (the old random,
    label-stratified validation carve changed the stream with the labels)."""
    r1, c1 = baseline_windows_runs["stored"]
    r2, c2 = _run_windows(_windows(permute=True), tmp_path, "stored")
    assert r1["history"] == r2["history"] and _same_weights(c1["state_dict"], c2["state_dict"])
    assert r1["label_free"] is True


@pytest.mark.parametrize("order", ["stored", "class-runs"])
def test_windows_test_split_reaches_only_the_final_evaluation(baseline_windows_runs, tmp_path, order):
    """A different test split (noise, permuted labels, another size): history, selection and the
    saved encoders are identical. The probe's row cap draws from its own stream (it once shared one
    with the clustering subset, which is drawn from the TEST labels)."""
    r1, c1 = baseline_windows_runs[order]
    r2, c2 = _run_windows(_windows(n_test=45, test_noise=True), tmp_path, order)
    assert r1["history"] == r2["history"] and r1["selection"] == r2["selection"]
    assert _same_weights(c1["state_dict"], c2["state_dict"]) and _same_weights(c1["init_state_dict"], c2["init_state_dict"])
    assert r1["eval"] != r2["eval"]


def test_class_runs_declare_that_pretraining_read_labels(monkeypatch, tmp_path, capsys):
    """The one declared exception: the class-run order is built from the training labels. Printed,
    in results.json (label_free False, label_note) and in the data note; the test rows keep their
    stored order (the probe and the scores ignore order)."""
    X, y, Xte, yte = _windows()
    _load_windows(monkeypatch, (X, y, Xte, yte))
    st = m.prepare(m.Args(dataset="toy", seq_len=4), 1)
    assert st.order == "class-runs" and not st.label_free and "training labels" in st.label_note
    assert st.label_note in st.note
    res = m.main(m.Args(dataset="toy", seq_len=4, epochs=1, out_dir=str(tmp_path), **TINY))
    out = capsys.readouterr().out
    assert res["label_free"] is False and res["label_note"] == m.CLASS_RUN_LABEL_NOTE
    assert f"note: {m.CLASS_RUN_LABEL_NOTE}" in out and "labels unused" not in out
    saved = json.loads((Path(res["run_dir"]) / "results.json").read_text())
    assert saved["label_free"] is False and m.CLASS_RUN_LABEL_NOTE in saved["data_note"]
    r2 = _windows(permute=True)                               # and permuted labels DO change the stream
    _load_windows(monkeypatch, r2)
    st2 = m.prepare(m.Args(dataset="toy", seq_len=4), 1)
    assert not np.array_equal(st.seq_train, st2.seq_train)


def test_class_runs_leave_the_test_rows_as_stored(monkeypatch):
    X, y, Xte, yte = _windows()
    Xte[:, 0, 0] = np.arange(len(Xte))
    _load_windows(monkeypatch, (X, y, Xte, yte))
    st = m.prepare(m.Args(dataset="toy", seq_len=4), 1)
    assert np.all(np.diff(st.x_test[:, 0]) > 0) and np.array_equal(st.y_test, yte)


# ------------------------------------------------------------------ baselines and wiring in the real loop
def test_evaluated_encoders_are_the_trained_one_and_its_own_init(monkeypatch, tmp_path):
    """CONTRACT D: the probe embeds with the encoder pretrain returned (after the last step), then
    with a separate copy of its step-0 weights; encoder.pt holds both."""
    _load_windows(monkeypatch, _windows())
    states, embeds = {}, []
    real_pretrain, real_embed = m.pretrain, m.embed

    def pretrain(*a, **k):
        out = real_pretrain(*a, callback=lambda step, e: states.setdefault(step, {n: v.clone() for n, v in e.state_dict().items()}), **k)
        states["net"], states["init_net"] = out[0], out[1]
        return out
    monkeypatch.setattr(m, "pretrain", pretrain)
    monkeypatch.setattr(m, "embed", lambda net, x, **k: embeds.append({n: v.clone() for n, v in net.state_dict().items()}) or real_embed(net, x, **k))
    res = m.main(m.Args(dataset="toy", order="stored", seq_len=4, epochs=3, save_model=True, out_dir=str(tmp_path), **TINY))
    last = max(k for k in states if isinstance(k, int))
    assert last == res["train"]["steps"] and last >= 3
    assert len(embeds) == 6                                   # fit / val / test rows, two encoders
    assert all(_same_weights(e, states[last]) for e in embeds[:3])
    assert all(_same_weights(e, states[0]) for e in embeds[3:])
    assert states["init_net"] is not states["net"] and not _same_weights(states[0], states[last])
    ck = load_checkpoint(Path(res["run_dir"]) / "encoder.pt")
    assert _same_weights(ck["state_dict"], states[last]) and _same_weights(ck["init_state_dict"], states[0])
    assert sum(v.numel() for v in ck["state_dict"].values()) == sum(v.numel() for v in ck["init_state_dict"].values())


def _seqs(S=12, T=6, D=5):
    x = np.random.default_rng(0).standard_normal((S, T, D)).astype(np.float32)
    x[:, 0, 0] = np.arange(S)                                 # sequence id, readable in each batch
    return x


def test_batches_are_reshuffled_every_epoch_and_cover_each_sequence_once(monkeypatch):
    seen = []
    real = m.training_loss
    monkeypatch.setattr(m, "training_loss", lambda net, x, *a: seen.append(x[:, 0, 0].tolist()) or real(net, x, *a))
    m.pretrain(_seqs(), m.Args(**{**TINY, "batch_size": 4, "epochs": 3}), torch.device("cpu"), "x")
    epochs = [sum(seen[i:i + 3], []) for i in (0, 3, 6)]
    assert all(sorted(e) == list(range(12)) for e in epochs)  # drop_last: 12 = 3 x 4, each once
    assert len({tuple(e) for e in epochs}) == 3 and epochs[0] != list(range(12))


def test_pretrain_hands_each_flag_to_its_loss(monkeypatch):
    """Inside the real pretrain loop: --temperature and --negatives reach MP-Xent (DynaCL);
    --temperature, --margin, --margin-gamma, --negatives reach the margin loss, --threshold and
    --pseudo-labels the pseudo-labels, --mask-fraction the mask, and the masked input (not x)
    reaches the encoder while the pseudo-labels see the unmasked x (DynaCL-M)."""
    calls = {k: [] for k in ("mp_xent", "margin_mp_xent", "pseudo_labels", "mask_input")}
    for k in calls:
        spy(monkeypatch, k, calls[k])
    seqs = _seqs()
    m.pretrain(seqs, m.Args(**{**TINY, "epochs": 1}, temperature=0.37, negatives="sequence"), torch.device("cpu"), "x")
    assert calls["mp_xent"] and all((c["tau"], c["negatives"]) == (0.37, "sequence") for c in calls["mp_xent"])
    assert not calls["mask_input"] and not calls["margin_mp_xent"]
    for k in calls:
        calls[k].clear()
    args = m.Args(**{**TINY, "epochs": 1}, variant="dynacl-m", temperature=0.3, margin=2.5, margin_gamma=0.2,
                  threshold=0.6, pseudo_labels="code", negatives="code", mask_fraction=0.45, mse_weight=0.3)
    m.pretrain(seqs, args, torch.device("cpu"), "SleepEEG")
    assert calls["margin_mp_xent"] and all((c["tau"], c["margin"], c["gamma"], c["negatives"]) == (0.3, 2.5, 0.2, "code")
                                           for c in calls["margin_mp_xent"])
    assert calls["pseudo_labels"] and all((c["threshold"], c["mode"]) == (0.6, "code") for c in calls["pseudo_labels"])
    assert calls["mask_input"] and all(c["fraction"] == 0.45 for c in calls["mask_input"])
    assert torch.equal(calls["pseudo_labels"][0]["x"], calls["mask_input"][0]["x"])   # Y from the unmasked batch
    assert not calls["mp_xent"]
    for k in calls:
        calls[k].clear()
    m.pretrain(seqs, m.Args(**{**TINY, "epochs": 1}, variant="dynacl-m", margin_term=False), torch.device("cpu"), "AFDB")
    assert calls["mp_xent"] and not calls["margin_mp_xent"] and all(c["fraction"] == 0.3 for c in calls["mask_input"])


def test_frame_labels_rule_edges():
    """frame_labels against the hand rule on random piecewise labels, and the edges: a recording
    shorter than a frame gives none; a tie goes to the lower id; one unlabelled sample is enough."""
    rng = np.random.default_rng(0)
    lab = np.repeat(rng.integers(-1, 4, 80), rng.integers(1, 40, 80))
    assert m.frame_labels(lab, 50, 25, 4).tolist() == ref_labels(lab, 50)
    assert m.frame_labels(lab[:49], 50, 25, 4).shape == (0,)
    tie = np.r_[np.full(25, 2), np.full(25, 1)]
    assert m.frame_labels(tie, 50, 25, 3).tolist() == [1]
    one = np.r_[np.full(49, 2), [-1]]
    assert m.frame_labels(one, 50, 25, 3).tolist() == [-1]
    assert len(m.frame_labels(np.zeros(10_001, np.int64), 250, 125, 4)) == 1 + (10_001 - 250) // 125


def test_a_subject_with_several_recordings_stays_on_one_side(tmp_path):
    """Subject ids A, B, A, C, E, D, E in one file: A's and E's two recordings each stay on one side
    of the split (the split counts subjects, not recordings: E, the last ID, is the test subject)."""
    rng = np.random.default_rng(3)
    order = ["A", "B", "A", "C", "E", "D", "E"]
    subj = np.repeat(order, 400)
    np.savez(tmp_path / "multi.npz", signal=rng.standard_normal((2, len(subj))).astype(np.float32),
             labels=np.arange(len(subj)) // 100 % 2, fs=50.0, subject=subj)
    for seed in range(6):
        r = data.load_recordings(str(tmp_path / "multi.npz"), val_fraction=0.25, seed=seed)
        sides = {s: {k for k, recs in (("train", r.train), ("val", r.val), ("test", r.test)) if s in [x.subject for x in recs]}
                 for s in "ABCDE"}
        assert all(len(v) == 1 for v in sides.values()), sides
        assert [x.subject for x in r.test] == ["E", "E"] and sum(x.subject == "A" for x in r.train + r.val) == 2
    st = m.prepare(m.Args(dataset=str(tmp_path / "multi.npz"), seq_len=5, **TINY), 1)
    assert st.info["stretches"]["fit"] + st.info["stretches"]["val"] == 5 and st.info["stretches"]["test"] == 2
