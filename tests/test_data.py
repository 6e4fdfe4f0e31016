"""data.py on the real files in tests/data, and its checks at the door."""
from dataclasses import replace

import numpy as np
import pytest
import torch

import data

# name: (n_train, n_test, channels, max length, classes), as tests/data/SOURCES.md lists them
UCR_UEA = {
    "GunPoint": (50, 150, 1, 150, 2),
    "ArrowHead": (36, 175, 1, 251, 3),
    "ItalyPowerDemand": (67, 1029, 1, 24, 2),
    "BasicMotions": (40, 40, 6, 100, 4),
    "JapaneseVowels": (270, 370, 12, 29, 9),
    "PickupGestureWiimoteZ": (50, 50, 1, 361, 10),
}



@pytest.mark.parametrize("name", sorted(UCR_UEA))
def test_real_ucr_uea_files(real_data, name):
    n_tr, n_te, c, L, k = UCR_UEA[name]
    ds = data.load_dataset(name, data_dir=real_data, val_fraction=0)
    assert ds.X_train.shape == (n_tr, c, L) and ds.X_test.shape == (n_te, c, L)
    assert ds.X_train.dtype == np.float32 and ds.y_train.dtype == np.int64
    assert ds.n_classes == k and len(ds.X_val) == 0
    assert set(np.unique(ds.y_train)) == set(range(k))
    assert ds.y_test.min() >= 0 and ds.y_test.max() < k
    # NaN appears only as end padding: every series is observed up to its length and not after
    for X, lens in ((ds.X_train, ds.len_train), (ds.X_test, ds.len_test)):
        t = np.arange(X.shape[2])
        obs = ~np.isnan(X).all(axis=1)
        assert (obs == (t[None, :] < lens[:, None])).all()


def test_label_strings_and_order(real_data):
    ds = data.load_dataset("BasicMotions", data_dir=real_data, val_fraction=0)
    assert ds.class_names == ["Badminton", "Running", "Standing", "Walking"]  # sorted training labels
    raw = data.read_ts(real_data / "ucr_uea/BasicMotions/BasicMotions_TRAIN.ts")[2]
    assert [ds.class_names[i] for i in ds.y_train] == list(raw)
    # numeric labels sort as numbers, not strings
    assert data._label_order(["10", "2", "1"]) == ["1", "2", "10"]


def test_variable_length_japanese_vowels(real_data):
    ds = data.load_dataset("JapaneseVowels", data_dir=real_data, val_fraction=0)
    assert ds.variable_length
    assert ds.len_train.min() == 7 and ds.len_train.max() == 26
    assert ds.len_test.min() == 7 and ds.len_test.max() == 29
    # lengths agree with a count of the comma-separated values on each data line
    lines = [l for l in open(real_data / "ucr_uea/JapaneseVowels/JapaneseVowels_TRAIN.ts")
             if l.strip() and not l.startswith(("#", "@"))]
    assert [len(l.split(":")[0].split(",")) for l in lines] == ds.len_train.tolist()
    assert np.isnan(ds.X_train[ds.len_train < 29][:, :, -1]).all()


def test_aeon_equal_length_variants_as_user_files(real_data):
    d = data.load_dataset(str(real_data / "ucr_uea_aeon_variants/PickupGestureWiimoteZ/PickupGestureWiimoteZ_eq_TRAIN.ts"),
                          val_fraction=0)
    assert d.X_train.shape == (50, 1, 361) and not d.variable_length and d.n_classes == 10
    c = data.load_dataset(str(real_data / "tser/Covid3Month_disc/Covid3Month_disc_TEST.ts"))
    assert c.n_classes == 3 and c.class_names == ["0.0", "1.0", "2.0"]


@pytest.mark.parametrize("name", ["GunPoint"])
def test_tsv_copy_gives_identical_arrays(real_data, name):
    X_ts, _, y_ts, _ = data.read_ts(real_data / f"ucr_uea/{name}/{name}_TRAIN.ts")
    X_tsv, y_tsv = data.read_ucr_tsv(real_data / f"ucr_uea_alt_formats/{name}/{name}_TRAIN.tsv")
    np.testing.assert_array_equal(X_ts, X_tsv)
    assert [float(v) for v in y_ts] == [float(v) for v in y_tsv]


@pytest.mark.parametrize("name,split", [("GunPoint", "TRAIN"), ("BasicMotions", "TRAIN"), ("BasicMotions", "TEST")])
def test_arff_copy_gives_identical_arrays(real_data, name, split):
    X_ts, _, y_ts, _ = data.read_ts(real_data / f"ucr_uea/{name}/{name}_{split}.ts")
    X_arff, y_arff = data.read_arff(real_data / f"ucr_uea_alt_formats/{name}/{name}_{split}.arff")
    np.testing.assert_array_equal(X_ts, X_arff)
    assert list(y_ts) == list(y_arff)


def test_arff_pair_as_user_file(real_data):
    a = data.load_dataset(str(real_data / "ucr_uea_alt_formats/BasicMotions/BasicMotions_TEST.arff"), val_fraction=0)
    b = data.load_dataset("BasicMotions", data_dir=real_data, val_fraction=0)
    np.testing.assert_array_equal(a.X_train, b.X_train)
    assert a.class_names == b.class_names and (a.y_test == b.y_test).all()


@pytest.mark.parametrize("rel,shape,k", [
    ("tfc/Epilepsy/train.pt", (60, 1, 178), 2), ("tfc/Epilepsy/val.pt", (20, 1, 178), 2),
    ("tfc/Gesture/train.pt", (320, 3, 206), 8),
    ("tfc/Gesture/val.pt", (120, 3, 206), 8), ("tfc/Gesture/test.pt", (120, 3, 206), 8)])
def test_real_tfc_files(real_data, rel, shape, k):
    X, y = data.read_pt(real_data / rel)
    assert X.shape == shape and X.dtype == np.float32 and y.dtype == np.int64 and len(y) == shape[0]
    assert np.isfinite(X).all()
    assert sorted(set(y.tolist())) == list(range(k))       # labels already 0..K-1 in the release


def test_tfc_folder_with_train_and_val_only_through_load_dataset(real_data, tmp_path):
    """tfc/Epilepsy has train.pt and val.pt only: with a test.pt beside them it loads by path."""
    for s in ("train", "val"):
        (tmp_path / f"{s}.pt").symlink_to(real_data / f"tfc/Epilepsy/{s}.pt")
    (tmp_path / "test.pt").symlink_to(real_data / "tfc/Epilepsy/val.pt")
    ds = data.load_dataset(str(tmp_path / "train.pt"))
    # test.pt is val.pt here, so the release's val is refused and validation is carved from train
    assert (len(ds.X_train), len(ds.X_val), len(ds.X_test)) == (48, 12, 20) and ds.n_classes == 2
    _assert_val_apart_from_test(ds)


def _assert_val_apart_from_test(ds):
    test_rows = {r.tobytes() for r in ds.X_test.reshape(len(ds.X_test), -1)}
    assert not any(r.tobytes() in test_rows for r in ds.X_val.reshape(len(ds.X_val), -1))


def test_validation_split_equal_to_test_is_replaced(tmp_path, capsys):
    rng = np.random.default_rng(0)
    X, y = rng.normal(size=(30, 1, 8)), np.arange(30) % 2
    np.savez(tmp_path / "d.npz", X_train=X[:20], y_train=y[:20], X_val=X[20:26], y_val=y[20:26],
             X_test=X[20:26][::-1], y_test=y[20:26][::-1])          # the same series, reordered
    ds = data.load_dataset(str(tmp_path / "d.npz"))
    assert (len(ds.X_train), len(ds.X_val), len(ds.X_test)) == (16, 4, 6)      # 20% of 20, stratified
    _assert_val_apart_from_test(ds)
    assert "carved from train" in capsys.readouterr().err
    np.savez(tmp_path / "p.npz", X_train=X[:20], y_train=y[:20], X_val=X[20:26], y_val=y[20:26],
             X_test=np.concatenate([X[20:23], X[26:]]), y_test=np.concatenate([y[20:23], y[26:]]))
    ds = data.load_dataset(str(tmp_path / "p.npz"))
    assert len(ds.X_val) == 6 and "3 of 6 validation series are identical" in capsys.readouterr().err


def test_pt_with_numpy_arrays_loads_without_pickle(tmp_path):
    torch.save({"samples": np.ones((4, 2, 5), np.float64), "labels": np.array([0, 1, 0, 1])}, tmp_path / "n.pt")
    X, y = data.read_pt(tmp_path / "n.pt")
    assert X.shape == (4, 2, 5) and X.dtype == np.float32 and y.tolist() == [0, 1, 0, 1]


def test_tfc_release_by_name(real_data):
    ds = data.load_dataset("Gesture", data_dir=real_data)
    # TF-C's Gesture val.pt holds the same 120 series as test.pt: validation is carved from train
    assert (len(ds.X_train), len(ds.X_val), len(ds.X_test)) == (256, 64, 120)
    _assert_val_apart_from_test(ds)
    assert ds.X_train.shape[1:] == (3, 206) and ds.n_classes == 8
    # the name "Epilepsy" is the UEA problem; the TF-C release is "TFC-Epilepsy"
    assert "TFC-Epilepsy" in data.list_datasets("tfc") and "Epilepsy" in data.list_datasets("uea")


def test_registry_sizes_and_unknown_names():
    assert len(data.list_datasets("ucr")) == 128 and len(data.list_datasets("uea")) == 30
    assert len(data.list_datasets("tfc")) == 8 and len(data.list_datasets("tser")) == 19
    assert len(set(data.list_datasets())) == len(data.list_datasets())
    with pytest.raises(ValueError, match="GunPoint"):
        data.load_dataset("GunPont")
    with pytest.raises(ValueError, match="SleepEEG"):
        data.load_dataset("SleepEG")
    assert data._resolve_name("gunpoint") == "GunPoint"
    with pytest.raises(ValueError, match="load_recordings"):
        data.load_dataset("HARTH")


def test_validation_is_stratified_and_from_train_only(real_data):
    full = data.load_dataset("ArrowHead", data_dir=real_data, val_fraction=0)
    ds = data.load_dataset("ArrowHead", data_dir=real_data, val_fraction=0.2, seed=3)
    np.testing.assert_array_equal(ds.X_test, full.X_test)                 # test untouched
    both = np.concatenate([ds.X_train, ds.X_val])
    assert len(both) == len(full.X_train)
    key = lambda X: sorted(map(bytes, np.nan_to_num(X).reshape(len(X), -1)))
    assert key(both) == key(full.X_train)                                  # a partition of train
    for c in range(ds.n_classes):                                          # every class in val
        n = (full.y_train == c).sum()
        assert (ds.y_val == c).sum() == max(1, round(0.2 * n))
    again = data.load_dataset("ArrowHead", data_dir=real_data, val_fraction=0.2, seed=3)
    np.testing.assert_array_equal(again.y_val, ds.y_val)
    other = data.load_dataset("ArrowHead", data_dir=real_data, val_fraction=0.2, seed=4)
    assert not np.array_equal(other.X_val, ds.X_val)


def test_stratified_split_keeps_one_of_each():
    y = np.array([0, 0, 1, 2, 2, 2])
    keep, held = data.stratified_split(y, 0.5, seed=0)
    assert set(y[keep]) == {0, 1, 2}               # singleton class 1 stays in train
    assert set(y[held]) == {0, 2}
    assert len(np.intersect1d(keep, held)) == 0 and len(keep) + len(held) == len(y)


def test_standardize_uses_train_statistics_only():
    ds = data.make_synthetic()
    shifted = data.Dataset(**{**ds.__dict__, "X_test": ds.X_test + 100})
    z = data.standardize(shifted)
    assert abs(np.nanmean(z.X_train)) < 1e-5 and abs(np.nanstd(z.X_train) - 1) < 1e-4
    assert np.nanmean(z.X_test) > 50               # test shift survives: no test statistics used


def test_user_npz_and_pt(tmp_path):
    rng = np.random.default_rng(0)
    X, y = rng.normal(size=(40, 2, 30)), np.repeat(["a", "b"], 20)
    np.savez(tmp_path / "mine.npz", X=X, y=y)
    ds = data.load_dataset(str(tmp_path / "mine.npz"))
    assert ds.class_names == ["a", "b"] and ds.X_train.shape[1:] == (2, 30)
    assert len(ds.X_train) + len(ds.X_val) + len(ds.X_test) == 40
    np.savez(tmp_path / "split.npz", X_train=X[:30, 0], y_train=y[:30], X_test=X[30:, 0], y_test=y[30:])
    ds2 = data.load_dataset(str(tmp_path / "split.npz"), val_fraction=0)
    assert ds2.X_train.shape == (30, 1, 30) and len(ds2.X_test) == 10
    for s, sl in (("train", slice(0, 30)), ("test", slice(30, 40))):
        torch.save({"samples": torch.tensor(X[sl]), "labels": torch.tensor((y[sl] == "b").astype(int))},
                   tmp_path / f"{s}.pt")
    ds3 = data.load_dataset(str(tmp_path / "train.pt"))
    assert ds3.X_train.shape[1:] == (2, 30) and ds3.n_classes == 2


def test_pt_that_needs_pickle_is_refused_clearly(tmp_path):
    from fractions import Fraction   # any class outside torch's allow-list needs pickle to load
    torch.save({"samples": Fraction(1, 2), "labels": torch.zeros(3)}, tmp_path / "bad.pt")
    with pytest.raises(ValueError, match="needs Python pickle"):
        data.read_pt(tmp_path / "bad.pt")


def test_bad_input_is_refused_at_the_door(tmp_path):
    y = np.array(["a", "b"] * 5)
    X = np.zeros((10, 1, 8))
    X[3] = np.nan
    np.savez(tmp_path / "nan.npz", X=X, y=y)
    with pytest.raises(ValueError, match="entirely missing"):
        data.load_dataset(str(tmp_path / "nan.npz"))
    X[3] = np.inf
    np.savez(tmp_path / "inf.npz", X=X, y=y)
    with pytest.raises(ValueError, match="inf"):
        data.load_dataset(str(tmp_path / "inf.npz"))
    np.savez(tmp_path / "rank.npz", X=np.zeros((10, 1, 2, 8)), y=y)
    with pytest.raises(ValueError, match=r"\(N, C, L\)"):
        data.load_dataset(str(tmp_path / "rank.npz"))
    np.savez(tmp_path / "unseen.npz", X_train=np.zeros((4, 8)), y_train=["a", "a", "b", "b"],
             X_test=np.zeros((2, 8)), y_test=["a", "c"])
    with pytest.raises(ValueError, match="'c' never occurs in train"):
        data.load_dataset(str(tmp_path / "unseen.npz"))
    np.savez(tmp_path / "tiny.npz", X_train=np.zeros((1, 8)), y_train=["a"], X_test=np.zeros((1, 8)), y_test=["a"])
    with pytest.raises(ValueError, match="at least 2"):
        data.load_dataset(str(tmp_path / "tiny.npz"))
    with pytest.raises(FileNotFoundError):
        data.load_dataset(str(tmp_path / "nothing.npz"))


def test_ts_parser_features(tmp_path):
    """Missing values, unequal lengths, regression targets, comments, labels with spaces around."""
    (tmp_path / "r_TRAIN.ts").write_text(
        "# comment\n@problemName r\n@timeStamps false\n@missing true\n@univariate false\n@dimensions 2\n"
        "@equalLength false\n@targetlabel true\n@data\n1,2,?,4:5,6,7,8:0.5\n1,2:3,4:1.25\n\n1,2,3:4,5,6:-2\n")
    (tmp_path / "r_TEST.ts").write_text((tmp_path / "r_TRAIN.ts").read_text())
    X, lens, y, h = data.read_ts(tmp_path / "r_TRAIN.ts")
    assert X.shape == (3, 2, 4) and lens.tolist() == [4, 2, 3]
    assert np.isnan(X[0, 0, 2]) and X[0, 1, 3] == 8 and np.isnan(X[1, :, 2:]).all()
    assert [float(v) for v in y] == [0.5, 1.25, -2.0]
    ds = data.load_dataset(str(tmp_path / "r_TRAIN.ts"), val_fraction=0)
    assert ds.task == "regression" and (ds.y_train == -1).all() and ds.n_classes == 0
    assert ds.targets["train"].tolist() == [0.5, 1.25, -2.0] and ds.len_train.tolist() == [4, 2, 3]
    # trailing '?' is a missing value inside the series, not the end of it
    (tmp_path / "m_TRAIN.ts").write_text("@classLabel true a b\n@data\n1,2,3,4:a\n1,2,?,?:b\n5,6,7,?:a\n3,3,3,3:b\n")
    (tmp_path / "m_TEST.ts").write_text("@classLabel\ttrue a b\n@data\n1,2,3,4:a\n")   # tab in the header
    m = data.load_dataset(str(tmp_path / "m_TRAIN.ts"), val_fraction=0)
    assert m.len_train.tolist() == [4, 4, 4, 4] and not m.variable_length
    # a single regression file: split into train/test, targets kept
    (tmp_path / "single.ts").write_text("@targetlabel true\n@data\n" + "".join(f"{i},1,2:{i / 10}\n" for i in range(20)))
    s = data.load_dataset(str(tmp_path / "single.ts"), val_fraction=0.2)
    assert s.task == "regression" and len(s.X_test) == 5 and len(s.X_val) == 3 and len(s.targets["val"]) == 3
    (tmp_path / "u_TRAIN.ts").write_text("@classLabel false\n@data\n1,2\n3,4\n")
    (tmp_path / "u_TEST.ts").write_text("@classLabel false\n@data\n1,2\n")
    with pytest.raises(ValueError, match="no class labels"):
        data.load_dataset(str(tmp_path / "u_TRAIN.ts"))
    with pytest.raises(ValueError, match="val_fraction"):
        data.load_dataset("synthetic", val_fraction=1.5)
    (tmp_path / "bad.ts").write_text("@data\n1,2:3\n1,2\n")
    with pytest.raises(ValueError, match="bad.ts:3"):
        data.read_ts(tmp_path / "bad.ts")


def test_synthetic_is_deterministic_and_labelled():
    a, b = data.load_dataset("synthetic"), data.load_dataset("synthetic")
    np.testing.assert_array_equal(a.X_train, b.X_train)
    assert a.n_classes == 3 and a.X_train.dtype == np.float32 and len(a.X_val) > 0


# --------------------------------------------------------------------------- issue 11: input the loaders vouch for
def _ts_pair(tmp_path, name, header, rows_train, rows_test=None, encoding="utf-8"):
    for split, rows in (("TRAIN", rows_train), ("TEST", rows_test or rows_train)):
        (tmp_path / f"{name}_{split}.ts").write_bytes((header + "@data\n" + rows).encode(encoding))
    return str(tmp_path / f"{name}_TRAIN.ts")


def test_header_flags_are_read_one_way(tmp_path):
    """@targetLabel / @classLabel / @timeStamps: key and value in any case, extra words after the flag."""
    rows = "1,2,3:0.5\n2,3,4:1.5\n3,4,5:2.5\n4,5,6:3.5\n"
    for header in ("@targetLabel True\n", "@TARGETLABEL true x\n", "@targetlabel\tTRUE\n"):
        ds = data.load_dataset(_ts_pair(tmp_path, "r", header, rows), val_fraction=0)
        assert ds.task == "regression" and ds.X_train.shape == (4, 1, 3), header
        assert ds.targets["train"].tolist() == [0.5, 1.5, 2.5, 3.5]
    for header in ("@targetlabel false\n@classLabel True a b\n", "@classlabel TRUE a b\n"):
        ds = data.load_dataset(_ts_pair(tmp_path, "c", header, "1,2:a\n3,4:b\n5,6:a\n7,8:b\n"), val_fraction=0)
        assert ds.task == "classification" and ds.class_names == ["a", "b"] and ds.X_train.shape[1:] == (1, 2)
    with pytest.raises(ValueError, match="timeStamps"):
        data.read_ts(_ts_pair(tmp_path, "t", "@timestamps True\n@classLabel true a\n", "1,2:a\n"))
    assert data._task({"targetlabel": "True"}) == "regression"


def test_labels_are_decoded_strictly_and_never_empty(tmp_path):
    rows = "1,2:café\n3,4:cafë\n5,6:café\n7,8:cafë\n"
    ds = data.load_dataset(_ts_pair(tmp_path, "u", "@classLabel true\n", rows), val_fraction=0)
    assert ds.class_names == ["café", "cafë"]                         # UTF-8: two classes
    (tmp_path / "k.ts").write_bytes("# auteur: Frédéric\n@classLabel true\n@data\n1,2:a\n".encode("latin-1"))
    assert list(data.read_ts(tmp_path / "k.ts")[2]) == ["a"]           # a Latin-1 comment is no label
    with pytest.raises(ValueError, match="UTF-8"):                    # Latin-1 bytes: refused, not merged
        data.load_dataset(_ts_pair(tmp_path, "l", "@classLabel true\n", rows, encoding="latin-1"))
    with pytest.raises(ValueError, match=r"e_TRAIN.ts:5: empty class label"):
        data.load_dataset(_ts_pair(tmp_path, "e", "@classLabel true\n", "1,2:a\n3,4:b\n5,6:\n"))
    with pytest.raises(ValueError, match="empty"):
        data.read_ts(_ts_pair(tmp_path, "g", "@targetLabel true\n", "1,2:0.5\n3,4: \n"))
    (tmp_path / "x_TRAIN.arff").write_text("@data\n1,2,a\n3,4,\n")
    with pytest.raises(ValueError, match="empty class label"):
        data.read_arff(tmp_path / "x_TRAIN.arff")
    (tmp_path / "x_TRAIN.arff").write_bytes("@data\n1,2,café\n3,4,cafë\n".encode("latin-1"))
    with pytest.raises(ValueError, match="UTF-8"):
        data.read_arff(tmp_path / "x_TRAIN.arff")
    (tmp_path / "x_TRAIN.tsv").write_text("a\t1\t2\n\t3\t4\n")
    with pytest.raises(ValueError, match="empty class label"):
        data.read_ucr_tsv(tmp_path / "x_TRAIN.tsv")
    np.savez(tmp_path / "e.npz", X=np.zeros((6, 1, 4)), y=np.array(["a", "b", "", "a", "b", ""]))
    with pytest.raises(ValueError, match="empty"):
        data.load_dataset(str(tmp_path / "e.npz"))


def test_torch_lower_bound_has_no_known_weights_only_bypass(tmp_path, monkeypatch):
    """CVE-2025-32434 (fixed in 2.6) and CVE-2026-24747 (fixed in 2.10) let a .pt run code under
    weights_only=True: requirements.txt asks for 2.10, and read_pt refuses an older torch."""
    import re
    from pathlib import Path
    req = (Path(__file__).resolve().parents[1] / "requirements.txt").read_text()
    lo = re.search(r"^torch\s*>=\s*(\d+)\.(\d+)", req, re.M)
    assert lo and (int(lo[1]), int(lo[2])) >= (2, 10)
    torch.save({"samples": torch.zeros(4, 1, 5), "labels": torch.tensor([0, 1, 0, 1])}, tmp_path / "ok.pt")
    for old in ("2.5.1", "2.6.0+cpu", "2.9.1"):
        monkeypatch.setattr(torch, "__version__", old)
        with pytest.raises(ValueError, match="CVE-2025-32434"):
            data.read_pt(tmp_path / "ok.pt")
    monkeypatch.setattr(torch, "__version__", "2.10.0")
    assert data.read_pt(tmp_path / "ok.pt")[0].shape == (4, 1, 5)


class _RunsCode:
    """Unpickling this runs exec(...), which creates the file `marker`: what a malicious data file does."""
    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return exec, (f"open({self.marker!r}, 'w').close()",)


def test_npz_that_needs_pickle_is_refused_and_runs_nothing(tmp_path):
    marker = tmp_path / "pwned"
    y = np.empty(4, dtype=object)
    y[:] = [_RunsCode(marker), "a", "b", "a"]
    np.savez(tmp_path / "evil.npz", X=np.zeros((4, 1, 5)), y=y)
    with pytest.raises(ValueError, match="pickle"):
        data.load_dataset(str(tmp_path / "evil.npz"))
    assert not marker.exists()


def test_pt_with_only_some_numpy_globals_is_refused_and_runs_nothing(tmp_path):
    """numpy arrays pass the allow-list; one more global that runs code must refuse the whole file."""
    marker = tmp_path / "pwned"
    torch.save({"samples": np.ones((4, 1, 5)), "labels": np.array([0, 1, 0, 1]), "x": _RunsCode(marker)},
               tmp_path / "train.pt")
    with pytest.raises(ValueError, match="needs Python pickle"):
        data.read_pt(tmp_path / "train.pt")
    assert not marker.exists()


def test_standardize_matches_a_per_channel_loop():
    rng = np.random.default_rng(0)
    scale = np.array([1.0, 10.0, 100.0])[None, :, None]
    X = (rng.normal(size=(20, 3, 16)) * scale + 5 * scale).astype(np.float32)
    X[3, :, 10:] = np.nan                                     # an end-padded series
    Xte = (rng.normal(size=(7, 3, 16)) * scale).astype(np.float32)
    ds = data.Dataset("s", X, np.zeros(20, np.int64), X[:2], np.zeros(2, np.int64), Xte, np.zeros(7, np.int64),
                      np.full(20, 16), np.full(2, 16), np.full(7, 16), class_names=["a", "b"])
    z = data.standardize(ds)
    for c in range(3):                                        # Eq.: (x - mean_c) / std_c over train series and steps
        v = X[:, c, :].astype(np.float64).ravel()
        v = v[~np.isnan(v)]
        mu, sd = v.mean(), v.std()
        np.testing.assert_allclose(z.X_test[:, c], (Xte[:, c] - mu) / sd, rtol=1e-4, atol=1e-4)
        np.testing.assert_allclose(z.X_val[:, c], (X[:2, c] - mu) / sd, rtol=1e-4, atol=1e-4)
    v = X.astype(np.float64)[~np.isnan(X)]
    g = data.standardize(ds, per="global")
    np.testing.assert_allclose(g.X_test, (Xte - v.mean()) / v.std(), rtol=1e-4, atol=1e-4)
    assert np.isnan(z.X_train[3, :, 10:]).all() and not np.isnan(z.X_train[3, :, :10]).any()
    assert z.X_train.dtype == z.X_val.dtype == z.X_test.dtype == np.float32
    # a channel constant in train has std 0: it is only centred (divided by 1), never divided by 0
    flat = replace(ds, X_train=np.concatenate([X[:, :2], np.full((20, 1, 16), 3.0, np.float32)], axis=1))
    zf = data.standardize(flat)
    assert (zf.X_train[:, 2] == 0).all()
    np.testing.assert_allclose(zf.X_test[:, 2], Xte[:, 2] - 3.0, rtol=1e-5, atol=1e-4)


def test_stratified_split_holds_out_one_of_every_class():
    y = np.repeat([0, 1, 2, 3], [2, 3, 10, 1])
    for fraction, seed in ((0.1, 0), (0.1, 5), (0.3, 1)):
        keep, held = data.stratified_split(y, fraction, seed)
        assert len(np.intersect1d(keep, held)) == 0 and len(keep) + len(held) == len(y)
        for c, n in ((0, 2), (1, 3), (2, 10)):               # round(fraction * n) may be 0: still one
            assert (y[held] == c).sum() == min(max(round(fraction * n), 1), n - 1)
        assert (y[keep] == 3).sum() == 1                       # a singleton class stays in train
    for fraction in (0.6, 0.9):                                # a large fraction still keeps one of each
        keep, held = data.stratified_split(y, fraction, 0)
        assert sorted(set(y[keep])) == [0, 1, 2, 3] and (y[keep] == 3).sum() == 1
        assert [(y[held] == c).sum() for c in range(3)] == [1, 2, min(round(fraction * 10), 9)]
    keep, held = data.stratified_split(y, 0.0, 0)
    assert len(held) == 0
