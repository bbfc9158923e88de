"""Pre-processing shared by inference and training."""

import numpy as np
from EoFormerSegmentationLib.preprocessing import (
    brain_bounding_box,
    normalize_intensity,
    pad_to_multiple,
)


def test_zscore_over_brain_keeps_background_zero():
    rng = np.random.default_rng(1)
    images = np.zeros((2, 10, 10, 10), dtype=np.float32)
    images[:, 2:8, 3:7, 1:9] = rng.uniform(100, 900, size=(2, 6, 4, 8))
    normalized = normalize_intensity(images)
    inside = images[0] != 0
    for channel in range(2):
        values = normalized[channel][inside]
        assert abs(values.mean()) < 1e-5
        assert abs(values.std() - 1) < 1e-4
        assert np.all(normalized[channel][~inside] == 0)


def test_constant_or_empty_channel_does_not_divide_by_zero():
    images = np.zeros((2, 4, 4, 4), dtype=np.float32)
    images[0, 1:3, 1:3, 1:3] = 7.0
    normalized = normalize_intensity(images)
    assert np.isfinite(normalized).all()
    assert np.all(normalized == 0)


def test_brain_box_covers_brain_with_margin_and_clips():
    images = np.zeros((1, 20, 20, 20))
    images[0, 5:9, 0:3, 15:20] = 1
    box = brain_bounding_box(images, margin=2)
    assert box == (slice(3, 11), slice(0, 5), slice(13, 20))


def test_pad_to_multiple_is_undone_by_its_slices():
    array = np.arange(2 * 17 * 16 * 33, dtype=np.float32).reshape(2, 17, 16, 33)
    padded, undo = pad_to_multiple(array, 16)
    assert padded.shape == (2, 32, 16, 48)
    assert np.array_equal(padded[undo], array)
