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

RECORDS = ["ptbdb/s0010_re", "emgdb/emg_myopathy", "challenge2015/v102s", "challenge2015/a103l"]
# (tests/data holds mitdb/100's header and annotations but not its 1.95 MB signal file; format 212 is v102s)


@pytest.fixture
def raw(real_data) -> Path:
    return real_data / "raw"


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


def test_header_defaults_and_optional_fields(tmp_path):
    (tmp_path / "r.dat").write_bytes(np.arange(10, dtype="<i2").tobytes())
    (tmp_path / "r.hea").write_text("r 1\nr.dat 16\n")
    D, h = data.read_wfdb(tmp_path / "r.hea", physical=False)          # the .hea path works too
    assert (h.record, h.fs, h.n_samples) == ("r", 250.0, 10) and D.dtype == np.int32 and D.tolist() == [list(range(10))]
    assert h.signals[0] == dict(file="r.dat", fmt="16", spf=1, skew=0, offset=0, gain=200.0, baseline=0, units="mV",
                                adc_res=0, adc_zero=0, init=None, checksum=None, name="sig0")
    (tmp_path / "q.dat").write_bytes(np.arange(12, dtype="<i2").tobytes() + b"\7")   # 6 frames, a stray byte
    (tmp_path / "q.hea").write_text("# comment\nq 2 100/1(0) 5 10:00:00\nq.dat 16 0(5)/uV 12 3\n"
                                    "q.dat 16 400 11 7 1 2 0 lead two  words\n")
    X, q = data.read_wfdb(tmp_path / "q")
    a, b = q.signals
    assert (q.fs, q.n_samples, q.comments) == (100.0, 5, ["comment"])
    assert (a["gain"], a["baseline"], a["units"], a["adc_res"], a["adc_zero"], a["init"], a["name"]) == \
        (200.0, 5, "uV", 12, 3, None, "sig0")
    assert (b["gain"], b["baseline"], b["units"], b["init"], b["checksum"], b["name"]) == (400.0, 7, "mV", 1, 2, "lead two  words")
    np.testing.assert_allclose(X, [(np.arange(0, 10, 2) - 5) / 200, (np.arange(1, 10, 2) - 7) / 400])
    assert X.dtype == np.float32


@pytest.mark.parametrize("line, fields", [
    ("r.dat 16 100", dict(gain=100.0, adc_res=0, adc_zero=0, init=None, checksum=None, name="sig0")),
    ("r.dat 16 100 12", dict(adc_res=12, adc_zero=0, baseline=0, init=None)),
    ("r.dat 16 100 12 4", dict(adc_res=12, adc_zero=4, baseline=4, init=None)),
    ("r.dat 16 100 12 4 0", dict(init=0, checksum=None)),
    ("r.dat 16 100 12 4 0 45", dict(init=0, checksum=45, name="sig0")),
    ("r.dat 16 100 12 4 0 45 0", dict(checksum=45, name="sig0")),
    ("r.dat 16 100 12 4 0 45 0 ECG", dict(name="ECG")),
])
def test_signal_line_with_each_number_of_fields(tmp_path, line, fields):
    (tmp_path / "r.dat").write_bytes(np.arange(10, dtype="<i2").tobytes())
    (tmp_path / "r.hea").write_text(f"r 1 500\n{line}\n")
    h = data.read_wfdb_header(tmp_path / "r.hea")
    assert (h.fs, h.n_samples) == (500.0, 0)                        # no sample count: read from the file size
    assert {k: h.signals[0][k] for k in fields} == fields
    assert data.read_wfdb(tmp_path / "r")[1].n_samples == 10


@pytest.mark.parametrize("text, match", [
    ("r 2 100 6\nr.dat 16\nr.dat 16\n", "holds 5 samples per signal; the header says 6"),
    ("r/2 2 100 10\n", "multi-segment"),
    ("r 3 100 10\nr.dat 16\n", "announces 3 signals, 1 signal lines follow"),
    ("r 1 100 10\nr.dat 16x2\n", "multi-frequency or skewed"),
    ("r 1 100 10\nr.dat 16:3\n", "multi-frequency or skewed"),
    ("r 1 100 10\nr.dat 16a\n", "cannot read the format field '16a'"),
    ("r 1 100 10\nr.dat 16 2x00\n", "cannot read the gain field '2x00'"),
    ("r 1 100 10\nother.dat 16\n", "names the signal file other.dat"),
    ("r 1 100 40\nr.dat 16\n", "holds 10 samples per signal; the header says 40"),
    ("r 1 100 14\nr.dat 212\n", "holds 13 samples per signal; the header says 14"),
    ("\n# only a comment\n", "empty WFDB header"),
])
def test_bad_headers_and_files_are_user_errors(tmp_path, text, match):
    (tmp_path / "r.dat").write_bytes(np.arange(10, dtype="<i2").tobytes())
    (tmp_path / "r.hea").write_text(text)
    with pytest.raises(UserError, match=match):
        data.read_wfdb(tmp_path / "r")


def test_format_16_invalid_sample_is_nan(tmp_path):
    (tmp_path / "r.dat").write_bytes(np.array([-32768, -32767, 5], dtype="<i2").tobytes())
    (tmp_path / "r.hea").write_text("r 1 100 3\nr.dat 16 100 16 0\n")
    X, _ = data.read_wfdb(tmp_path / "r")
    assert np.isnan(X[0, 0]) and X[0, 1] == pytest.approx(-327.67) and X[0, 2] == pytest.approx(0.05)


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


def test_annotation_modifiers_even_aux_and_missing_terminator(tmp_path):
    """NUM/SUB/CHN words, even-length aux text followed by more annotations, no final 0 word, an odd
    trailing byte: all as the WFDB library writes or tolerates them."""
    wfdb = pytest.importorskip("wfdb")
    samples = np.array([5, 10, 20, 2000, 2100])
    wfdb.wrann("r", "atr", samples, symbol=["+", "N", "+", "V", "N"], aux_note=["(J", "", "(AFL", "", ""],
               subtype=np.array([0, 1, 0, 2, 0]), chan=np.array([0, 1, 1, 0, 0]), num=np.array([0, 3, 0, 1, 0]),
               write_dir=str(tmp_path))
    raw = (tmp_path / "r.atr").read_bytes()
    ref = wfdb.rdann(str(tmp_path / "r"), "atr")
    for body in (raw, raw[:-2], raw + b"\0"):               # as written; no final 0 word; odd length
        (tmp_path / "x.atr").write_bytes(body)
        a = data.read_wfdb_annotations(tmp_path / "x.atr")
        assert a.sample.tolist() == samples.tolist() == ref.sample.tolist()
        assert a.symbol == ref.symbol and a.aux == ["(J", "", "(AFL", "", ""]
    (tmp_path / "x.atr").write_bytes(raw[:-2] + b"\1")                         # odd length
    assert data.read_wfdb_annotations(tmp_path / "x.atr").sample.tolist() == samples.tolist()


def test_annotation_skip_edge_cases(tmp_path):
    word = lambda code, val: int((code << 10) | val).to_bytes(2, "little")  # noqa: E731
    (tmp_path / "a.atr").write_bytes(word(59, 0) + (1).to_bytes(2, "little"))
    with pytest.raises(UserError, match="truncated SKIP"):                  # SKIP without its second word
        data.read_wfdb_annotations(tmp_path / "a.atr")
    (tmp_path / "b.atr").write_bytes(word(59, 0) + (1).to_bytes(2, "little") + (5).to_bytes(2, "little"))
    assert data.read_wfdb_annotations(tmp_path / "b.atr").sample.size == 0   # a SKIP alone, at the very end
    (tmp_path / "c.atr").write_bytes(word(59, 0) + (1).to_bytes(2, "little") + (5).to_bytes(2, "little") + word(45, 3))
    c = data.read_wfdb_annotations(tmp_path / "c.atr")
    assert c.sample.tolist() == [65536 + 5 + 3] and c.symbol == ["#45"]    # 32-bit interval, high word first


# --------------------------------------------------------------------------- EDF / EDF+
def _write_edf(path, signals: dict, fs: dict, annotations=(), record=1.0, prange=None):
    edfio = pytest.importorskip("edfio")
    sigs = [edfio.EdfSignal(np.asarray(v, dtype=np.float64), fs[k], label=k, physical_range=prange,
                            physical_dimension="uV" if k.startswith("EEG") else "mV") for k, v in signals.items()]
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
    assert (e.n_records, e.record_duration, e.units) == (4, 30.0, {"EEG Fpz-Cz": "uV", "Event marker": "mV"})
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


def test_edf_record_count_unknown_truncated_or_zero(tmp_path):
    sig = np.arange(400, dtype=np.float64)
    _write_edf(tmp_path / "a.edf", {"EEG": sig}, {"EEG": 100}, record=1.0, prange=(0.0, 400.0))
    raw = (tmp_path / "a.edf").read_bytes()
    hdr = int(raw[184:192])
    (tmp_path / "u.edf").write_bytes(raw[:236] + b"-1".ljust(8) + raw[244:])          # "-1": count from the size
    (tmp_path / "t.edf").write_bytes(raw[:-150])                                      # last record cut short
    (tmp_path / "z.edf").write_bytes(raw[:236] + b"0".ljust(8) + raw[244:hdr])       # header only
    (tmp_path / "x.edf").write_bytes(raw + raw[hdr:hdr + (len(raw) - hdr) // 4])     # one record beyond the count
    u, t, z, x = (data.read_edf(tmp_path / f"{n}.edf") for n in "utzx")
    assert x.n_records == 4 and np.allclose(x.signals["EEG"], sig, atol=0.01)
    assert u.n_records == 4 and np.allclose(u.signals["EEG"], sig, atol=0.01)
    assert t.n_records == 3 and np.allclose(t.signals["EEG"], sig[:300], atol=0.01)
    assert z.n_records == 0 and z.signals["EEG"].shape == (0,)


def test_edf_discontinuous_and_bad_headers_are_refused(tmp_path):
    _write_edf(tmp_path / "a.edf", {"EEG": np.zeros(100)}, {"EEG": 100}, [(0.0, 1.0, "Sleep stage W")])
    raw = (tmp_path / "a.edf").read_bytes()
    assert raw[192:197] == b"EDF+C"
    (tmp_path / "d.edf").write_bytes(raw[:192] + b"EDF+D" + raw[197:])
    with pytest.raises(UserError, match="discontinuous EDF.*only its annotations can"):
        data.read_edf(tmp_path / "d.edf")
    assert data.read_edf(tmp_path / "d.edf", []).annotations == [(0.0, 1.0, "Sleep stage W")]
    (tmp_path / "n.edf").write_bytes(raw[:252] + b"x   " + raw[256:])               # signal count not a number
    with pytest.raises(UserError, match="not an EDF file"):
        data.read_edf(tmp_path / "n.edf")
    (tmp_path / "s.edf").write_bytes(raw[:100])
    with pytest.raises(UserError, match="not an EDF file"):
        data.read_edf(tmp_path / "s.edf")
    (tmp_path / "b.edf").write_bytes(raw.replace(b"Sleep stage W", b"Sleep stage \xff"))  # not UTF-8
    assert data.read_edf(tmp_path / "b.edf", []).annotations == [(0.0, 1.0, "Sleep stage \ufffd")]


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


def test_windowing_edges():
    assert data.activity_windows(np.full(12, 3), 10, 1).tolist() == [0, 1, 2]         # a run from sample 0, to the end
    empty = data.activity_windows(np.array([1, 1]), 10, 3)
    assert empty.size == 0 and empty.dtype == np.int64
    lab = np.array(["N2"] + ["W"] * 100 + ["N3"], dtype=object)
    assert data.sleep_keep(lab, edge=1).tolist() == list(range(102))                 # sleep at both ends
    lab = np.array(["W"] * 100 + ["N2"] + ["W"] * 100, dtype=object)
    assert data.sleep_keep(lab).tolist() == list(range(40, 161))                      # default edge: 60 epochs
    lab = np.array(["W"] * 5 + ["N3"] + ["W"] * 5, dtype=object)
    assert data.sleep_keep(lab, edge=2).tolist() == [3, 4, 5, 6, 7]
    none = data.sleep_keep(np.array(["W"] * 3, dtype=object))
    assert none.size == 0 and none.dtype.kind == "i"
    ecg = np.arange(12000, dtype=np.float32)
    X, y = data.apnea_windows(ecg, data.Annotations(np.array([0, 6000, 6001]), ["N", "A", "A"], [""] * 3))
    assert y == ["normal", "apnea"] and X.dtype == np.float32 and X[1, 0, -1] == 11999   # last window ends at the end
    X, y = data.apnea_windows(ecg, data.Annotations(np.array([0, 1]), ["+", ""], ["(N", ""]))
    assert X.shape == (0, 1, 6000) and X.dtype == np.float32 and y == []
    ann = data.Annotations(np.array([0, 4]), ["+", "+"], ["(AFL", "(J"])
    assert data.rhythm_labels(ann, 6).tolist() == [1, 1, 1, 1, 2, 2]


def test_read_uci_text(tmp_path):
    (tmp_path / "s.dat").write_text("1.5 NaN 3\n4 5 -6e-1\n")
    a = data.read_uci_text(tmp_path / "s.dat", 3)
    assert a.shape == (2, 3) and np.isnan(a[0, 1]) and a[1].tolist() == [4, 5, -0.6]
    (tmp_path / "t.dat").write_text("1 2 3\n4 5\n")
    with pytest.raises(UserError, match="expected 3 numbers on each of 2 lines, read 5"):
        data.read_uci_text(tmp_path / "t.dat", 3)
    (tmp_path / "n.dat").write_bytes(b"1 2 3\n4 5 \xb56\n")                     # a non-ASCII byte
    with pytest.raises(UserError, match="not whitespace-separated numbers"):
        data.read_uci_text(tmp_path / "n.dat", 3)
    (tmp_path / "e.dat").write_text("")
    assert data.read_uci_text(tmp_path / "e.dat", 3).shape == (0, 3)


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
    assert len(data._subject_holdout(subs, 0.04, 0)) == 1                      # rounds to 0: still one
    assert all(len(data._subject_holdout(subs, 0.5, s)) == 5 for s in range(30))   # drawn without replacement


# --------------------------------------------------------------------------- miniature archives, loopback mirror
class Server:
    """Serves a folder laid out as <host>/<path> on 127.0.0.1 (the layout TS_DATA_MIRROR expects)."""

    def __init__(self, root: Path):
        class Quiet(SimpleHTTPRequestHandler):
            def log_message(self, *a):
                pass
        handler = functools.partial(Quiet, directory=str(root))
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def site(tmp_path, monkeypatch):
    """(root folder to fill, start() -> Server); the cache is tmp_path/cache (conftest)."""
    root = tmp_path / "site"
    root.mkdir()
    servers = []
    monkeypatch.setattr(data, "BACKOFF", 0.0)
    monkeypatch.setattr(data, "TIMEOUT", (2.0, 2.0))

    def start():
        s = Server(root)
        servers.append(s)
        monkeypatch.setenv("TS_DATA_MIRROR", s.url)
        return s
    yield root, start
    for s in servers:
        s.close()


def _physionet_db(root: Path, db: str, version: str) -> Path:
    d = root / "physionet.org" / "files" / db / version
    d.mkdir(parents=True, exist_ok=True)
    return d


def _write_listing(d: Path) -> None:
    """PhysioNet's SHA256SUMS.txt for every file in the database folder."""
    lines = [f"{hashlib.sha256(p.read_bytes()).hexdigest()} {p.relative_to(d).as_posix()}"
             for p in sorted(d.rglob("*")) if p.is_file() and p.name != "SHA256SUMS.txt"]
    (d / "SHA256SUMS.txt").write_text("\n".join(lines) + "\n")


def _assert_subject_wise(ds):
    sets = {k: set(v.tolist()) for k, v in ds.subjects.items()}
    assert not (sets["train"] & sets["val"]) and not (sets["train"] & sets["test"]) and not (sets["val"] & sets["test"])
    assert all(len(ds.subjects[k]) == n for k, n in (("train", len(ds.X_train)), ("val", len(ds.X_val)), ("test", len(ds.X_test))))


def test_apnea_ecg_end_to_end(site, monkeypatch):
    wfdb = pytest.importorskip("wfdb")
    root, start = site
    d = _physionet_db(root, "apnea-ecg", "1.0.0")
    monkeypatch.setattr(data, "APNEA_TRAIN", ["a01", "b01", "c01"])
    monkeypatch.setattr(data, "APNEA_TEST", ["x01", "x02"])
    truth = {}
    for k, rec in enumerate(["a01", "b01", "c01", "x01", "x02"]):
        minutes = 4 + k
        sig = (np.repeat(np.arange(minutes), 6000) * 10 + 100 * k)[:, None]    # minute m of record k: 10 m + 100 k
        sig = np.concatenate([sig, sig[:3000]])                                # half a minute more: no label window
        wfdb.wrsamp(rec, fs=100, units=["mV"], sig_name=["ECG"], d_signal=sig.astype(np.int16), fmt=["16"],
                    adc_gain=[200.0], baseline=[0], write_dir=str(d))
        syms = ["A" if (m + k) % 3 == 0 else "N" for m in range(minutes + 1)]
        wfdb.wrann(rec, "apn", np.arange(minutes + 1) * 6000, symbol=syms, write_dir=str(d))
        truth[rec] = syms[:minutes]
    (d / "a01.qrs").write_bytes(b"\0\0")                                      # other files are not fetched
    _write_listing(d)
    server = start()
    ds = data.load_dataset("Apnea-ECG", val_fraction=0.34, seed=0)
    assert ds.X_train.shape[1:] == (1, 6000) and ds.class_names == ["apnea", "normal"]
    assert len(ds.X_test) == 7 + 8 and set(ds.subjects["test"]) == {"x01", "x02"}
    assert len(set(ds.subjects["val"])) == 1 and set(ds.subjects["val"]) | set(ds.subjects["train"]) == {"a01", "b01", "c01"}
    _assert_subject_wise(ds)
    for split in ("train", "val", "test"):                 # every window is its minute, with its minute's label
        X, y, subj = getattr(ds, f"X_{split}"), getattr(ds, f"y_{split}"), ds.subjects[split]
        for x, lab, rec in zip(X, y, subj):
            k = ["a01", "b01", "c01", "x01", "x02"].index(rec)
            m = int(round((x[0, 0] * 200 - 100 * k) / 10))
            assert np.all(x == x[0, 0]) and ds.class_names[lab] == ("apnea" if truth[rec][m] == "A" else "normal")
    assert not (Path(data.data_home()) / "raw/Apnea-ECG/a01.qrs").exists()
    server.close()                                          # second load: from the cache, no network
    again = data.load_dataset("Apnea-ECG", val_fraction=0.34, seed=0)
    assert np.array_equal(again.X_test, ds.X_test, equal_nan=True)
    whole = data.load_dataset("Apnea-ECG", val_fraction=0)                 # no validation subjects
    assert len(whole.X_val) == 0 and len(whole.X_train) == len(ds.X_train) + len(ds.X_val)


def test_afdb_recordings_end_to_end(site, monkeypatch):
    wfdb = pytest.importorskip("wfdb")
    root, start = site
    d = _physionet_db(root, "afdb", "1.0.0")
    recs = ["04015", "04043", "04048", "04126", "04746"]
    monkeypatch.setattr(data, "AFDB_RECORDS", recs)
    rng = np.random.default_rng(0)
    for rec in recs:
        sig = rng.integers(-2000, 2000, size=(2500, 2)).astype(np.int16)
        wfdb.wrsamp(rec, fs=250, units=["mV", "mV"], sig_name=["ECG1", "ECG2"], d_signal=sig, fmt=["212", "212"],
                    adc_gain=[200.0, 200.0], baseline=[0, 0], write_dir=str(d))
        wfdb.wrann(rec, "atr", np.array([10, 1000, 2000]), symbol=["+", "+", "+"], aux_note=["(N", "(AFIB", "(AFL"],
                   write_dir=str(d))
    _write_listing(d)
    start()
    r = data.load_recordings("AFDB", test_fraction=0.2, val_fraction=0.25, seed=1)
    assert (r.fs, r.channel_names, r.class_names) == (250.0, ["ECG1", "ECG2"], ["AFIB", "AFL", "J", "N"])
    assert [x.subject for x in r.test] == ["04746"] and len(r.val) == 1 and len(r.train) == 3
    assert not {x.subject for x in r.train} & {x.subject for x in r.val}
    x = r.train[0]
    ref = wfdb.rdrecord(str(d / x.subject))
    np.testing.assert_allclose(x.signals, ref.p_signal.T, atol=1e-6)
    assert (x.labels[:10] == -1).all() and (x.labels[10:1000] == 3).all() and (x.labels[1000:2000] == 0).all()
    assert (x.labels[2000:] == 1).all()
    with pytest.raises(UserError, match="load_recordings"):
        data.load_dataset("AFDB")


def _harth_csv(n: int, seed: int, extra_index: bool) -> tuple[str, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    sig = rng.normal(0, 1, (n, 6)).round(6)
    codes = np.array([1, 2, 3, 4, 5, 6, 7, 8, 13, 14, 130, 140])[np.arange(n) // 10 % 12]
    head = ("," if extra_index else "") + "timestamp,back_x,back_y,back_z,thigh_x,thigh_y,thigh_z,label"
    rows = [(f"{i}," if extra_index else "") + f"2019-01-12 00:00:{i / 50:06.3f}," + ",".join(f"{v:.6f}" for v in s) + f",{c}"
            for i, (s, c) in enumerate(zip(sig, codes))]
    return head + "\n" + "\n".join(rows) + "\n", sig, codes


def test_harth_recordings_end_to_end(site):
    root, start = site
    subjects = ["S006", "S008", "S009", "S010", "S012"]
    truth, files = {}, {}
    for k, s in enumerate(subjects):
        text, sig, codes = _harth_csv(150 + 10 * k, k, extra_index=(k == 2))
        files[f"harth/{s}.csv"] = text
        truth[s] = (sig, codes)
    z = root / "archive.ics.uci.edu/static/public/779/harth.zip"
    z.parent.mkdir(parents=True)
    with zipfile.ZipFile(z, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, text in files.items():
            zf.writestr(name, text)
    server = start()
    r = data.load_recordings("HARTH", seed=0)
    assert (r.fs, len(r.class_names), r.channel_names[3]) == (50.0, 12, "thigh_x")
    assert [x.subject for x in r.train] == subjects[:4] and [x.subject for x in r.test] == ["S012"] and r.val == []
    for x in r.train + r.test:
        sig, codes = truth[x.subject]
        np.testing.assert_allclose(x.signals, sig.T, atol=1e-6)
        assert x.labels.tolist() == [list(data.HARTH_CODES).index(c) for c in codes]
    server.close()
    assert len(data.load_recordings("HARTH").train) == 4          # offline, from the extracted files
    with pytest.raises(UserError, match="load_recordings"):
        data.load_dataset("HARTH")


def test_sleep_edf_end_to_end(site, monkeypatch):
    pytest.importorskip("edfio")
    root, start = site
    d = _physionet_db(root, "sleep-edfx", "1.0.0")
    (d / "sleep-cassette").mkdir()
    monkeypatch.setattr(data, "SLEEP_WAKE_EDGE", 2)
    stages = ["Sleep stage W"] * 5 + ["Sleep stage 1", "Sleep stage 2", "Sleep stage 3", "Sleep stage 4",
                                      "Movement time", "Sleep stage R", "Sleep stage 2"] + ["Sleep stage W"] * 4
    expect = ["W", "W", "N1", "N2", "N3", "N3", "REM", "N2", "W", "W"]        # 2 wake epochs each side, no movement
    nights = [("00", "1", "C"), ("00", "2", "C"), ("01", "1", "H"), ("02", "1", "J"), ("03", "1", "C"), ("21", "1", "C")]
    for ss, n, letter in nights:
        ne = len(stages)
        eeg = np.repeat(np.arange(ne, dtype=np.float64), 3000) + int(ss)          # epoch e of subject s: e + s
        base = f"sleep-cassette/SC4{ss}{n}E"
        _write_edf(d / f"{base}0-PSG.edf", {"EEG Fpz-Cz": eeg, "EEG Pz-Oz": -eeg, "Event marker": np.zeros(30 * ne)},
                   {"EEG Fpz-Cz": 100, "EEG Pz-Oz": 100, "Event marker": 1}, record=30.0, prange=(-100.0, 100.0))
        ann = [(30.0 * i, 30.0, s) for i, s in enumerate(stages)] + [(30.0 * ne, 600.0, "Sleep stage ?")]
        _write_edf(d / f"{base}{letter}-Hypnogram.edf", {}, {}, ann)
    _write_listing(d)
    start()
    ds = data.load_dataset("Sleep-EDF", val_fraction=0.34, seed=0)
    assert ds.X_train.shape[1:] == (1, 3000) and sorted(ds.class_names) == ["N1", "N2", "N3", "REM", "W"]
    assert set(ds.subjects["test"]) == {"03"} and "21" not in set(np.concatenate(list(ds.subjects.values())))
    _assert_subject_wise(ds)
    assert len(ds.X_train) + len(ds.X_val) + len(ds.X_test) == 5 * len(expect)
    for split in ("train", "val", "test"):
        X, y, subj = getattr(ds, f"X_{split}"), getattr(ds, f"y_{split}"), ds.subjects[split]
        step = 200 / 65535
        epochs = np.round(X[:, 0, 0] - subj.astype(int)).astype(int)
        assert np.all(np.abs(X[:, 0, :] - X[:, 0, :1]) <= step)
        assert [ds.class_names[v] for v in y] == [expect[[3, 4, 5, 6, 7, 8, 10, 11, 12, 13].index(e)] for e in epochs]


def test_ptbxl_end_to_end(site):
    wfdb = pytest.importorskip("wfdb")
    root, start = site
    d = _physionet_db(root, "ptb-xl", "1.0.2")
    (d / "scp_statements.csv").write_text(
        ",description,diagnostic,form,rhythm,diagnostic_class,diagnostic_subclass\n"
        "NORM,normal ECG,1.0,,,NORM,NORM\nIMI,inferior MI,1.0,,,MI,IMI\nNDT,non-diagnostic T,1.0,,,STTC,STTC\n"
        "LVH,left ventricular hypertrophy,1.0,,,HYP,LVH\nCLBBB,complete LBBB,1.0,,,CD,CLBBB\nSR,sinus rhythm,,,1.0,,\n")
    rows = ["ecg_id,patient_id,age,sex,scp_codes,strat_fold,filename_lr,filename_hr"]
    codes = ["{'NORM': 100.0, 'SR': 0.0}", "{'IMI': 15.0}", "{'NDT': 100.0}", "{'LVH': 50.0, 'SR': 0.0}",
             "{'CLBBB': 100.0}", "{'NORM': 80.0, 'NDT': 20.0}", "{'SR': 0.0}"]
    expected = {}
    for i in range(1, 31):
        fold, patient = (i - 1) % 10 + 1, 1000 + (i - 1) % 10 * 3 + (i % 2)   # each patient in one fold
        c = codes[i % len(codes)]
        fname = f"records100/00000/{i:05d}_lr"
        rows.append(f'{i},{patient}.0,50,1,"{c}",{fold},{fname},records500/00000/{i:05d}_hr')
        sig = np.full((1000, 12), i, dtype=np.int16) + np.arange(12, dtype=np.int16)
        (d / "records100/00000").mkdir(parents=True, exist_ok=True)
        wfdb.wrsamp(f"{i:05d}_lr", fs=100, units=["mV"] * 12, d_signal=sig, fmt=["16"] * 12, adc_gain=[1000.0] * 12,
                    baseline=[0] * 12, sig_name=["I", "II", "III", "AVR", "AVL", "AVF"] + [f"V{k}" for k in range(1, 7)],
                    write_dir=str(d / "records100/00000"))
        cls = {"NORM", "MI", "STTC", "HYP", "CD"} & {"NORM" if "NORM" in c else "", "MI" if "IMI" in c else "",
                                                     "STTC" if "NDT" in c else "", "HYP" if "LVH" in c else "", "CD" if "CLBBB" in c else ""}
        if len(cls) == 1:
            expected[i] = (cls.pop(), fold, str(patient))
    (d / "ptbxl_database.csv").write_text("\n".join(rows) + "\n")
    _write_listing(d)
    start()
    ds = data.load_dataset("PTB-XL")
    assert ds.X_train.shape[1:] == (12, 1000)
    got = {}
    for split, folds in (("train", range(1, 9)), ("val", [9]), ("test", [10])):
        X, y = getattr(ds, f"X_{split}"), getattr(ds, f"y_{split}")
        for x, lab, p in zip(X, y, ds.subjects[split]):
            i = int(round(x[0, 0] * 1000))
            np.testing.assert_allclose(x[:, 0], (i + np.arange(12)) / 1000, atol=1e-6)
            got[i] = (ds.class_names[lab], expected[i][1], p)
            assert expected[i][1] in folds
    assert got == expected                                  # every single-label record once, none other
    _assert_subject_wise(ds)
    recs = Path(data.data_home()) / "raw/PTB-XL/records100/00000"
    assert not (recs / "00006_lr.dat").exists() and not (recs / "00005_lr.hea").exists()  # SR only; two classes
    assert len(list(recs.glob("*.dat"))) == len(expected)


def _pamap2_subject(seed: int) -> tuple[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    acts = np.array([0] * 50 + [1] * 1400 + [0] * 30 + [4] * 1000 + [9] * 1200 + [24] * 1300)
    a = np.column_stack([np.arange(len(acts)) / 100, acts, rng.normal(100, 5, len(acts)), rng.normal(0, 1, (len(acts), 51))])
    a[np.arange(len(acts)) % 11 != 0, 2] = np.nan                           # heart rate at ~9 Hz
    a[5:8, 10] = np.nan                                                    # dropped IMU samples
    buf = io.StringIO()
    np.savetxt(buf, a, fmt="%.6f", delimiter=" ")
    text = buf.getvalue().replace("nan", "NaN")                           # PAMAP2 writes NaN
    return text, a


def test_pamap2_end_to_end(site):
    root, start = site
    inner = io.BytesIO()
    truth = {}
    with zipfile.ZipFile(inner, "w", zipfile.ZIP_DEFLATED) as zf:
        for k, s in enumerate(["101", "102", "105", "106"]):
            text, a = _pamap2_subject(k)
            truth[s] = a
            zf.writestr(f"PAMAP2_Dataset/Protocol/subject{s}.dat", text)
            zf.writestr(f"PAMAP2_Dataset/Optional/subject{s}.dat", "1 2 3\n")   # never read
    z = root / "archive.ics.uci.edu/static/public/231/pamap2+physical+activity+monitoring.zip"
    z.parent.mkdir(parents=True)
    with zipfile.ZipFile(z, "w") as zf:
        zf.writestr("PAMAP2_Dataset.zip", inner.getvalue())
        zf.writestr("readme.pdf", b"%PDF")
    start()
    ds = data.load_dataset("PAMAP2")
    assert ds.X_train.shape[1:] == (52, 1000) and ds.class_names == sorted(["lying", "walking", "rope jumping"])
    assert set(ds.subjects["val"]) == {"105"} and set(ds.subjects["test"]) == {"106"}
    _assert_subject_wise(ds)
    # 1400 lying -> starts 0,300 (2 windows); 1000 walking -> 1; 1200 activity 9 -> none (not protocol); 1300 rope -> 2
    assert len(ds.X_train) == 2 * 5 and len(ds.X_test) == 5
    a = truth["106"]
    hr = data.interpolate_nans(a[:, 2:])
    np.testing.assert_allclose(ds.X_test[0], hr[50:1050].T, rtol=1e-6, atol=1e-5)   # first lying window
    np.testing.assert_allclose(ds.X_test[2], hr[1480:2480].T, rtol=1e-6, atol=1e-5)  # the walking window
    assert [ds.class_names[v] for v in ds.y_test] == ["lying", "lying", "walking", "rope jumping", "rope jumping"]
    assert not np.isnan(ds.X_test).any()


# --------------------------------------------------------------------------- failures end in one clear message
def test_unreachable_host_names_the_url_and_the_folder(site):
    root, start = site
    server = start()
    server.close()                                          # nothing listens there any more
    with pytest.raises(data.DownloadError) as e:
        data.load_dataset("Apnea-ECG")
    msg = str(e.value)
    assert "https://physionet.org/files/apnea-ecg/1.0.0/SHA256SUMS.txt" in msg
    assert str(Path(data.data_home()) / "raw" / "Apnea-ECG") in msg
    with pytest.raises(data.DownloadError, match="harth.zip"):
        data.load_recordings("HARTH")


def test_file_that_differs_from_the_listing_is_removed(site, monkeypatch):
    wfdb = pytest.importorskip("wfdb")
    root, start = site
    d = _physionet_db(root, "afdb", "1.0.0")
    monkeypatch.setattr(data, "AFDB_RECORDS", ["04015", "04043"])
    for rec in ["04015", "04043"]:
        wfdb.wrsamp(rec, fs=250, units=["mV"] * 2, sig_name=["a", "b"], d_signal=np.zeros((100, 2), np.int16),
                    fmt=["212"] * 2, adc_gain=[200.0] * 2, baseline=[0] * 2, write_dir=str(d))
        wfdb.wrann(rec, "atr", np.array([0]), symbol=["+"], aux_note=["(N"], write_dir=str(d))
    _write_listing(d)
    (d / "04043.dat").write_bytes(b"\1" * 300)              # the server now sends other bytes
    start()
    with pytest.raises(data.DownloadError, match="SHA-256"):
        data.load_recordings("AFDB")
    assert not (Path(data.data_home()) / "raw/AFDB/04043.dat").exists()


def test_files_placed_by_hand_are_used_without_network(tmp_path, monkeypatch):
    """HARTH CSVs put straight into the folder: no download, no listing needed."""
    folder = Path(data.data_home()) / "raw" / "HARTH"
    folder.mkdir(parents=True)
    for k, s in enumerate(["S006", "S007"]):
        (folder / f"{s}.csv").write_text(_harth_csv(40, k, False)[0])
    monkeypatch.setenv("TS_DATA_MIRROR", "http://127.0.0.1:9")      # would fail if anything were fetched
    r = data.load_recordings("HARTH")
    assert [x.subject for x in r.train + r.test] == ["S006", "S007"]


def test_malformed_files_are_user_errors_not_tracebacks(tmp_path):
    (tmp_path / "r.hea").write_text("r two 100\n")
    with pytest.raises(UserError, match="malformed WFDB header"):
        data.read_wfdb(tmp_path / "r")
    head = b"0".ljust(8) + b" " * 176 + b"512".ljust(8) + b" " * 44 + b"x".ljust(8) + b"1".ljust(8) + b"1".ljust(4)
    (tmp_path / "e.edf").write_bytes(head + b"EEG".ljust(256))
    with pytest.raises(UserError, match="malformed EDF"):
        data.read_edf(tmp_path / "e.edf")
    (tmp_path / "S001.csv").write_text("back_x,back_y,back_z,thigh_x,thigh_y,thigh_z,label\n1,2,3,4,5,six,1\n")
    with pytest.raises(UserError, match="cannot read the values"):
        data.read_harth_csv(tmp_path / "S001.csv")
