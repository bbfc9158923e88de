"""Fixtures of the training tests."""

from __future__ import annotations

from pathlib import Path
from typing import Dict

import pytest
from tiny_cases import TINY_MODEL_CONFIG, write_case


@pytest.fixture
def tiny_dataset(tmp_path: Path) -> Path:
    """A data folder with three BraTS-2020-named 32^3 cases."""
    data = tmp_path / "data"
    for index in range(3):
        write_case(data, f"BraTS20_Training_{index + 1:03d}", seed=index)
    return data


@pytest.fixture
def tiny_model_config() -> Dict[str, object]:
    return dict(TINY_MODEL_CONFIG)
