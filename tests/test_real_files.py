"""The real data files shipped in tests/data: unchanged (SHA-256 against SOURCES.md) and loadable."""
import hashlib
import re

import numpy as np

import data


def test_shipped_files_match_their_recorded_sha256(real_data):
    rows = re.findall(r"^\| `([^`]+)` \|.*\| `([0-9a-f]{64})` \|$", (real_data / "SOURCES.md").read_text(), re.M)
    shipped = sorted(str(p.relative_to(real_data)) for p in real_data.rglob("*") if p.is_file() and p.name != "SOURCES.md")
    assert sorted(r for r, _ in rows) == shipped, "tests/data and its SOURCES.md table list different files"
    for rel, digest in rows:
        assert hashlib.sha256((real_data / rel).read_bytes()).hexdigest() == digest, rel
    assert sum((real_data / r).stat().st_size for r, _ in rows) < 10_000_000     # the project's budget (issue 14: 10 MB)


def test_shipped_files_load_by_name_and_by_path(real_data):
    gp = data.load_dataset("GunPoint", data_dir=real_data, val_fraction=0)
    assert gp.X_train.shape == (50, 1, 150) and gp.X_test.shape == (150, 1, 150) and gp.n_classes == 2
    bm = data.load_dataset("BasicMotions", data_dir=real_data, val_fraction=0)
    assert bm.X_train.shape == (40, 6, 100) and bm.n_classes == 4
    assert bm.class_names == ["Badminton", "Running", "Standing", "Walking"]
    for split, n in (("train", 60), ("val", 20)):
        X, y = data.read_pt(real_data / f"tfc/Epilepsy/{split}.pt")
        assert X.shape == (n, 1, 178) and sorted(np.unique(y).tolist()) == [0, 1]
    X, lengths, y, header = data.read_ts(real_data / "tser/Covid3Month_disc/Covid3Month_disc_TEST.ts")
    assert X.shape == (61, 1, 84) and (lengths == 84).all() and len(set(y)) == 3
    assert np.isfinite(gp.X_train).all() and np.isfinite(bm.X_test).all()
