"""Fixtures shared by every test folder."""

from pathlib import Path

import pytest

REPOSITORY = Path(__file__).resolve().parents[1]
REAL_DATA = REPOSITORY.parent / "shared" / "data" / "real"


@pytest.fixture(scope="session")
def repository_root() -> Path:
    """The repository's top folder."""
    return REPOSITORY


@pytest.fixture(scope="session")
def real_data_dir() -> Path:
    """Folder of the real BraTS-layout cases (``../shared/data/real`` beside the repository)."""
    if not REAL_DATA.is_dir():
        raise FileNotFoundError(f"real data not found at {REAL_DATA}")
    return REAL_DATA
