"""Test set-up: the repository root on sys.path, and the real data files beside the project."""
import os
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
SHARED_DATA = Path(os.environ.get("TS_SHARED_DATA", ROOT.parent / "shared" / "data"))
REAL_DATA = ROOT / "tests" / "data"          # small real files shipped with the project (SOURCES.md)


@pytest.fixture
def real_data() -> Path:
    """tests/data: real GunPoint, BasicMotions, TF-C Epilepsy and Covid3Month_disc files, laid out as
    data.py's cache (ucr_uea/<Name>/, tfc/<Name>/). Always present, so a user's clone tests on real data."""
    return REAL_DATA


@pytest.fixture
def shared_data() -> Path:
    """The development copies of the larger real releases (JapaneseVowels, OSULeaf, TF-C Gesture, ARFF
    and TSV copies, ...), beside the project in a development checkout. Tests of these skip in a
    user's clone; everything the small files can test uses `real_data` instead."""
    if not (SHARED_DATA / "ucr_uea").is_dir():
        if os.environ.get("CI"):
            pytest.fail(f"CI needs the real data files at {SHARED_DATA}")
        pytest.skip(f"real data files not found at {SHARED_DATA} (they sit beside the project in "
                    "development checkouts; set TS_SHARED_DATA to point elsewhere)")
    return SHARED_DATA


@pytest.fixture(autouse=True)
def _no_user_cache(monkeypatch, tmp_path):
    """Tests never touch the user's cache or a real mirror."""
    monkeypatch.setenv("TS_DATA_DIR", str(tmp_path / "cache"))
    monkeypatch.delenv("TS_DATA_MIRROR", raising=False)


@pytest.fixture
def tiny():
    """Smallest settings every method file accepts."""
    return dict(dataset="synthetic", epochs=1, batch_size=8)
