"""Test set-up: the repository root on sys.path, and the real data files shipped in tests/data."""
import sys
from pathlib import Path

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
