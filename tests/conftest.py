import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = ROOT.parent / "shared" / "data"
CREDITCARD = SHARED_DATA / "creditcard" / "creditcard_1722.csv"


def fresh_python(code: str) -> str:
    """What ``code`` prints, run in a fresh interpreter (what a module imports, or a
    process's own memory, is only seen there); it must succeed."""
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    return done.stdout


@pytest.fixture(autouse=True, scope="session")
def _splitmesh_home(tmp_path_factory) -> None:
    """Keys splitmesh keeps for the user (the local audit key) go to a throwaway home."""
    os.environ["SPLITMESH_HOME"] = str(tmp_path_factory.mktemp("splitmesh-home"))


@pytest.fixture(autouse=True)
def shared_catalog(tmp_path, monkeypatch) -> Path:
    """The catalog runs record into by default (the user's shared one), one per test."""
    path = tmp_path / "shared-catalog.db"
    monkeypatch.setenv("SPLITMESH_CATALOG", str(path))
    return path


@pytest.fixture
def creditcard_path() -> Path:
    if not CREDITCARD.is_file():
        pytest.skip(f"real data not present: {CREDITCARD} (kept outside the project, see README)")
    return CREDITCARD


ML100K = SHARED_DATA / "ml-100k"
HM_SAMPLE = SHARED_DATA / "hm-sample"


@pytest.fixture
def ml100k_path() -> Path:
    if not (ML100K / "u.data").is_file():
        pytest.skip(f"real data not present: {ML100K} (kept outside the project, see README)")
    return ML100K


@pytest.fixture
def hm_sample_path() -> Path:
    if not (HM_SAMPLE / "transactions_train.csv").is_file():
        pytest.skip(f"real data not present: {HM_SAMPLE} (kept outside the project, see README)")
    return HM_SAMPLE
