"""Test set-up: the repository root on sys.path, and the real data files shipped in tests/data."""
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
REAL_DATA = ROOT / "tests" / "data"          # small real files shipped with the project (SOURCES.md)


@pytest.fixture
def real_data() -> Path:
    """tests/data: the real files every test reads (UCR/UEA .ts with ARFF/TSV copies, TF-C .pt, WFDB
    records; tests/data/SOURCES.md), laid out as data.py's cache (ucr_uea/<Name>/, tfc/<Name>/, raw/).
    Shipped with the project, so a user's clone runs every test on real data and none skips for lack of it."""
    return REAL_DATA


@pytest.fixture(autouse=True)
def _no_user_cache(monkeypatch, tmp_path):
    """Tests never touch the user's cache or a real mirror."""
    monkeypatch.setenv("TS_DATA_DIR", str(tmp_path / "cache"))
    monkeypatch.delenv("TS_DATA_MIRROR", raising=False)


@pytest.fixture
def tiny():
    """Smallest settings every method file accepts."""
    return dict(dataset="synthetic", epochs=1, batch_size=8)


def pretraining_pools(module, monkeypatch, tmp_path, **args) -> list:
    """The arrays `module.main` hands to `pretrain` for one small file, run twice: with its labels,
    then with the training labels permuted (which changes data.py's stratified validation carve).
    A label-free pre-training gets the same pool in the same order both times. -> [pool, pool]."""
    rng = np.random.default_rng(3)
    X, y = rng.standard_normal((40, 1, 32)).astype(np.float32), np.arange(40) % 4
    pools = []

    class Stop(Exception):
        pass

    def stop(x, *a, **k):
        pools.append(x)
        raise Stop

    monkeypatch.setattr(module, "pretrain", stop)
    for labels in (y, rng.permutation(y)):
        f = tmp_path / f"set{len(pools)}.npz"
        np.savez(f, X_train=X, y_train=labels, X_test=X[:8], y_test=y[:8])
        with pytest.raises(Stop):
            module.main(module.Args(dataset=str(f), out_dir=str(tmp_path), **args))
    return pools
