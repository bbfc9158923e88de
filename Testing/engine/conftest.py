"""Fixtures for the engine tests: a tiny random model and a small case."""

from __future__ import annotations

from pathlib import Path
from typing import Dict

import pytest
from engine_cases import TINY_MODEL_CONFIG, write_case


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory) -> Path:
    """A random-weight EoFormer checkpoint with reduced widths and its model card."""
    import torch
    from EoFormerSegmentationLib.models import save_checkpoint
    from EoFormerSegmentationLib.network.eoformer import EoFormer

    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("model") / "tiny_random.pt"
    save_checkpoint(path, EoFormer(**TINY_MODEL_CONFIG), {"description": "random weights"})
    return path


@pytest.fixture
def small_case(tmp_path) -> Dict[str, Path]:
    """Four small co-registered sequences (48 mm cube, 1 mm) with a bright "lesion"."""
    return write_case(tmp_path / "case")
