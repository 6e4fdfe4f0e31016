"""Test set-up: the repository root on sys.path, and the real data files beside the project."""
import os
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
SHARED_DATA = Path(os.environ.get("TS_SHARED_DATA", ROOT.parent / "shared" / "data"))


@pytest.fixture
def shared_data() -> Path:
    """../shared/data (real UCR/UEA .ts and TF-C .pt files). Skips in a user's clone without it."""
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
