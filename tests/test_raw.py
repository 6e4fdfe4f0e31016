"""Raw-recording datasets (issue 9): readers against reference libraries on real files, and each
dataset's whole path on a miniature archive served in the real host's layout by a loopback server.

Reference readers (dev requirements, never needed at run time): `wfdb` (WFDB records and
annotations, also used to WRITE the miniature WFDB archives) and `edfio` (writes the EDF/EDF+ test
files and reads them back as a second opinion). UCI text files are written here with numpy from the
format description.
"""
import functools
import hashlib
import io
import threading
import zipfile
from collections import Counter
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pytest

import data
from common import UserError

RECORDS = ["mitdb/100", "ptbdb/s0010_re", "emgdb/emg_healthy", "emgdb/emg_myopathy", "emgdb/emg_neuropathy",
           "challenge2015/v102s", "challenge2015/a103l"]


@pytest.fixture
def raw(shared_data) -> Path:
    return shared_data / "raw"


def _checksum(d: np.ndarray) -> int:
    """WFDB header checksum: the sum of a signal's samples as a signed 16-bit number."""
    return int((int(d.astype(np.int64).sum()) + 32768) % 65536 - 32768)


# --------------------------------------------------------------------------- WFDB signals, real files
@pytest.mark.parametrize("rec", RECORDS)
def test_wfdb_signals_match_their_headers(raw, rec):
    D, h = data.read_wfdb(raw / rec, physical=False)
    text = next(ln for ln in (raw / f"{rec}.hea").read_text().splitlines() if ln and not ln.startswith("#")).split()
    assert D.shape == (len(h.signals), h.n_samples)
    for d, s in zip(D, h.signals):                    # first value and checksum written by the recorder
        assert int(d[0]) == s["init"]
        assert _checksum(d) == s["checksum"]
    # signal-file sizes agree with the sample count (212 packs 2 samples into 3 bytes)
    for f in {s["file"] for s in h.signals}:
        sig = [s for s in h.signals if s["file"] == f]
        per = 1.5 if sig[0]["fmt"] == "212" else 2
        assert (raw / rec).with_name(f).stat().st_size == int(per * len(sig) * h.n_samples) + sig[0]["offset"]
    assert text[1] == str(len(h.signals)) and float(text[2]) == h.fs


def test_header_fields(raw):
    h = data.read_wfdb_header(raw / "mitdb/100.hea")
    assert (h.fs, h.n_samples, [s["name"] for s in h.signals]) == (360.0, 650000, ["MLII", "V5"])
    assert [(s["fmt"], s["gain"], s["baseline"], s["adc_res"], s["adc_zero"]) for s in h.signals] == [("212", 200.0, 1024, 11, 1024)] * 2
    p = data.read_wfdb_header(raw / "ptbdb/s0010_re.hea")
    assert {s["file"] for s in p.signals} == {"s0010_re.dat", "s0010_re.xyz"} and p.signals[-1]["name"] == "vz"
    assert "age: 81" in p.comments
    e = data.read_wfdb_header(raw / "emgdb/emg_healthy.hea")          # "10000/mV": no baseline given
    assert (e.signals[0]["gain"], e.signals[0]["baseline"], e.signals[0]["units"]) == (10000.0, 0, "mV")
    m = data.read_wfdb_header(raw / "challenge2015/a103l.hea")         # "16+24": byte offset
    assert (m.signals[0]["offset"], m.signals[2]["units"]) == (24, "NU")


@pytest.mark.parametrize("rec", RECORDS)
def test_wfdb_signals_equal_the_wfdb_package(raw, rec):
    wfdb = pytest.importorskip("wfdb")
    D, _ = data.read_wfdb(raw / rec, physical=False)
    X, _ = data.read_wfdb(raw / rec)
    ref = wfdb.rdrecord(str(raw / rec), physical=False)
    assert np.array_equal(D.T, ref.d_signal)
    np.testing.assert_allclose(X.T, wfdb.rdrecord(str(raw / rec)).p_signal, rtol=1e-6, atol=1e-6)


def test_format_212_odd_count_and_invalid_samples(tmp_path):
    # three 12-bit samples: -2048 (invalid marker), 2047, -1; packed by hand from the format description
    vals = [-2048 & 0xFFF, 2047, -1 & 0xFFF]
    raw = bytes([vals[0] & 0xFF, (vals[0] >> 8) | ((vals[1] >> 8) << 4), vals[1] & 0xFF, vals[2] & 0xFF, vals[2] >> 8])
    (tmp_path / "r.dat").write_bytes(raw)
    (tmp_path / "r.hea").write_text("r 1 100 3\nr.dat 212 100(0)/mV 12 0 -2048 0 0 x\n")
    D, _ = data.read_wfdb(tmp_path / "r", physical=False)
    X, _ = data.read_wfdb(tmp_path / "r")
    assert D.tolist() == [[-2048, 2047, -1]]
    assert np.isnan(X[0, 0]) and X[0, 1] == pytest.approx(20.47) and X[0, 2] == pytest.approx(-0.01)


def test_unsupported_format_is_a_clear_error(tmp_path):
    (tmp_path / "r.hea").write_text("r 1 100 3\nr.dat 310 200 12 0 0 0 0 x\n")
    (tmp_path / "r.dat").write_bytes(b"\0" * 8)
    with pytest.raises(UserError, match="format 310"):
        data.read_wfdb(tmp_path / "r")


# --------------------------------------------------------------------------- WFDB annotations
def test_mitdb_100_beat_annotations(raw):
    a = data.read_wfdb_annotations(raw / "mitdb/100.atr")
    assert Counter(a.symbol) == {"N": 2239, "A": 33, "V": 1, "+": 1}     # PhysioNet's counts for record 100
    assert [x for x in a.aux if x] == ["(N"] and a.symbol[a.aux.index("(N")] == "+"
    assert np.all(np.diff(a.sample) > 0) and a.sample[-1] < 650000


def test_annotations_equal_the_wfdb_package(raw):
    wfdb = pytest.importorskip("wfdb")
    a = data.read_wfdb_annotations(raw / "mitdb/100.atr")
    ref = wfdb.rdann(str(raw / "mitdb/100"), "atr")
    assert np.array_equal(a.sample, ref.sample) and a.symbol == ref.symbol
    assert a.aux == [x.rstrip("\0") for x in ref.aux_note]
    table = wfdb.io.annotation.ann_label_table
    assert {int(k): s for k, s in zip(table.label_store, table.symbol) if int(k) > 0} == \
        {k: s for k, s in data.ANN_SYMBOLS.items() if k > 0}


def test_written_annotations_with_long_gaps_and_aux_read_back(tmp_path):
    """.apn-style (one label a minute, gaps > 1023 samples need SKIP) and rhythm notes, via wfdb.wrann."""
    wfdb = pytest.importorskip("wfdb")
    samples = np.array([0, 6000, 12000, 18000, 300000, 300001, 9_000_000])
    symbols = ["N", "A", "A", "N", "+", "V", "+"]
    aux = ["", "", "", "", "(AFIB", "", "(N"]
    wfdb.wrann("r", "apn", samples, symbol=symbols, aux_note=aux, write_dir=str(tmp_path))
    a = data.read_wfdb_annotations(tmp_path / "r.apn")
    assert a.sample.tolist() == samples.tolist() and a.symbol == symbols and a.aux == aux


# --------------------------------------------------------------------------- EDF / EDF+
def _write_edf(path, signals: dict, fs: dict, annotations=(), record=1.0, prange=None):
    edfio = pytest.importorskip("edfio")
    sigs = [edfio.EdfSignal(np.asarray(v, dtype=np.float64), fs[k], label=k, physical_dimension="uV",
                            physical_range=prange) for k, v in signals.items()]
    edf = edfio.Edf(sigs, data_record_duration=record if sigs else None,
                    annotations=[edfio.EdfAnnotation(*a) for a in annotations])
    edf.write(path)


def test_edf_signals_at_two_rates_and_annotations(tmp_path):
    edfio = pytest.importorskip("edfio")
    rng = np.random.default_rng(0)
    eeg, marker = rng.normal(0, 50, 3000 * 4), rng.normal(0, 1, 30 * 4)
    ann = [(0.0, 30.0, "Sleep stage W"), (30.0, 60.0, "Sleep stage 2"), (95.5, None, "Lights on")]
    _write_edf(tmp_path / "a.edf", {"EEG Fpz-Cz": eeg, "Event marker": marker}, {"EEG Fpz-Cz": 100, "Event marker": 1},
               ann, record=30.0)
    e = data.read_edf(tmp_path / "a.edf")
    assert e.labels == ["EEG Fpz-Cz", "Event marker"] and e.fs == {"EEG Fpz-Cz": 100.0, "Event marker": 1.0}
    assert (e.n_records, e.record_duration, e.units["EEG Fpz-Cz"]) == (4, 30.0, "uV")
    ref = edfio.read_edf(tmp_path / "a.edf")
    for s in ref.signals:
        np.testing.assert_allclose(e.signals[s.label], s.data, rtol=0, atol=1e-9)
    step = (eeg.max() - eeg.min()) / 65535                          # 16-bit quantisation of the writer
    assert np.abs(e.signals["EEG Fpz-Cz"] - eeg).max() <= step
    assert e.annotations == [(a, d, t) for a, d, t in ann]
    only = data.read_edf(tmp_path / "a.edf", ["eeg fpz-cz"])        # channel names match case-insensitively
    assert list(only.signals) == ["EEG Fpz-Cz"]
    with pytest.raises(UserError, match="no signal 'EEG Pz-Oz'"):
        data.read_edf(tmp_path / "a.edf", ["EEG Pz-Oz"])


def test_edf_annotation_only_file(tmp_path):
    ann = [(0.0, 30630.0, "Sleep stage W"), (30630.0, 120.0, "Sleep stage 1"), (30750.0, 30.0, "Movement time")]
    _write_edf(tmp_path / "h.edf", {}, {}, ann)
    assert data.read_edf(tmp_path / "h.edf", []).annotations == ann


def test_not_an_edf_file(tmp_path):
    (tmp_path / "x.edf").write_bytes(b"<html>" + b" " * 300)
    with pytest.raises(UserError, match="not an EDF file"):
        data.read_edf(tmp_path / "x.edf")


# --------------------------------------------------------------------------- preprocessing pieces
def test_sleep_epoch_labels_and_wake_trimming():
    ann = [(0, 300, "Sleep stage W"), (300, 60, "Sleep stage 1"), (360, 30, "Sleep stage 4"),
           (390, 30, "Movement time"), (420, 30, "Sleep stage 3"), (450, 30, "Sleep stage R"),
           (480, 600, "Sleep stage W"), (1080, 99999, "Sleep stage ?")]
    lab = data.sleep_epoch_labels(ann, 40)
    assert lab[:10].tolist() == ["W"] * 10 and lab[10:16].tolist() == ["N1", "N1", "N3", "", "N3", "REM"]
    assert lab[16:36].tolist() == ["W"] * 20 and lab[36:].tolist() == [""] * 4
    keep = data.sleep_keep(lab, edge=3)
    # 3 wake epochs before the first sleep epoch (10) and after the last (15); movement (13) dropped
    assert keep.tolist() == [7, 8, 9, 10, 11, 12, 14, 15, 16, 17, 18]
    assert data.sleep_keep(np.array(["W"] * 5, dtype=object)).size == 0


def test_activity_windows_stay_inside_one_activity():
    labels = np.array([0] * 5 + [1] * 23 + [4] * 10 + [1] * 10)
    st = data.activity_windows(labels, 10, 3)
    assert st.tolist() == [5, 8, 11, 14, 17, 28, 38]
    assert all(len(set(labels[s:s + 10])) == 1 for s in st)


def test_interpolate_nans_is_linear_with_held_ends():
    x = np.array([[np.nan, 1], [2, np.nan], [np.nan, np.nan], [8, 4], [np.nan, np.nan]], dtype=float)
    np.testing.assert_allclose(data.interpolate_nans(x), [[2, 1], [2, 2], [5, 3], [8, 4], [8, 4]])
    assert (data.interpolate_nans(np.full((3, 1), np.nan)) == 0).all()


def test_rhythm_labels_hold_until_the_next_change():
    ann = data.Annotations(np.array([2, 5, 7, 9]), ["+", "N", "+", "+"], ["(AFIB", "", "(SVTA", "(N"])
    assert data.rhythm_labels(ann, 12).tolist() == [-1, -1, 0, 0, 0, 0, 0, -1, -1, 3, 3, 3]


def test_apnea_windows_align_to_the_minute_labels():
    ecg = np.repeat(np.arange(5, dtype=np.float32), 6000)[:-10]          # minute k has value k; last minute cut
    ann = data.Annotations(np.arange(5) * 6000, ["N", "A", "A", "N", "A"], [""] * 5)
    X, y = data.apnea_windows(ecg, ann, 100.0)
    assert X.shape == (4, 1, 6000) and y == ["normal", "apnea", "apnea", "normal"]
    assert [set(np.unique(w)) for w in X[:, 0]] == [{0}, {1}, {2}, {3}]


def test_ptbxl_superclasses_from_diagnostic_statements():
    diag = {"NORM": "NORM", "IMI": "MI", "ASMI": "MI", "NDT": "STTC"}
    assert data.ptbxl_superclasses({"IMI": 15.0, "ASMI": 100.0, "SR": 0.0}, diag) == ["MI"]
    assert data.ptbxl_superclasses({"NORM": 100.0, "NDT": 50.0}, diag) == ["NORM", "STTC"]
    assert data.ptbxl_superclasses({"SR": 0.0}, diag) == []


def test_subject_holdout_is_seeded_and_never_takes_everyone():
    subs = [f"s{i}" for i in range(10)]
    a, b = data._subject_holdout(subs, 0.2, 0), data._subject_holdout(subs, 0.2, 0)
    assert a == b and len(a) == 2 and a <= set(subs)
    assert len(data._subject_holdout(subs[:2], 0.9, 1)) == 1 and data._subject_holdout(subs, 0.0, 0) == set()
