"""Whole-brain inference: one pass over the cropped brain, windows again above the size cap."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from EoFormerSegmentationLib import inference
from EoFormerSegmentationLib.errors import InputError


class _CountingNetwork(torch.nn.Module):
    """A point-wise network (the same answer whatever the window) that counts its passes."""

    def __init__(self) -> None:
        super().__init__()
        self.layer = torch.nn.Conv3d(4, 3, 1)
        self.shapes = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.shapes.append(tuple(x.shape[2:]))
        return self.layer(x)


def _volume(shape=(4, 144, 160, 128)) -> np.ndarray:
    return np.random.default_rng(0).normal(size=shape).astype(np.float32)


def test_whole_mode_runs_the_brain_in_one_pass_with_the_same_answer():
    torch.manual_seed(0)
    network = _CountingNetwork()
    volume = _volume()
    whole = inference.predict_probabilities(network, volume, torch.device("cpu"), mode="whole")
    assert network.shapes == [(144, 160, 128)]
    network.shapes.clear()
    windows = inference.predict_probabilities(network, volume, torch.device("cpu"))
    assert len(network.shapes) > 1 and max(max(s) for s in network.shapes) <= 128
    assert whole.shape == (3, 144, 160, 128)
    np.testing.assert_allclose(whole, windows, atol=1e-5)


def test_a_volume_above_the_cap_falls_back_to_windows(monkeypatch):
    monkeypatch.setattr(inference, "WHOLE_VOLUME_MAX_VOXELS", 100_000)
    network = _CountingNetwork()
    inference.predict_probabilities(
        network, _volume((4, 64, 64, 48)), torch.device("cpu"), mode="whole", roi_size=32
    )
    assert len(network.shapes) > 1 and all(max(s) <= 32 for s in network.shapes)


def test_an_unknown_mode_is_refused():
    with pytest.raises(InputError, match="--inference fast"):
        inference.predict_probabilities(
            _CountingNetwork(), _volume((4, 16, 16, 16)), torch.device("cpu"), mode="fast"
        )
