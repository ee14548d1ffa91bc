from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = ROOT.parent / "shared" / "data"
CREDITCARD = SHARED_DATA / "creditcard" / "creditcard_1722.csv"


@pytest.fixture
def creditcard_path() -> Path:
    if not CREDITCARD.is_file():
        pytest.skip(f"real data not present: {CREDITCARD} (kept outside the project, see README)")
    return CREDITCARD
