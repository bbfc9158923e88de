"""Pre-processing shared by inference and training, so that both see the same inputs.

Arrays are channel-first, ``(C, X, Y, Z)``, channels in the order T1, T1ce, T2, FLAIR.
Voxels that are zero in every channel are background (outside the skull-stripped brain).
"""

from __future__ import annotations

from typing import Tuple

import numpy as np

__all__ = ["normalize_intensity", "brain_mask", "brain_bounding_box", "pad_to_multiple"]


def brain_mask(images: np.ndarray) -> np.ndarray:
    """Voxels that are non-zero in any channel.

    Args:
        images: ``(C, X, Y, Z)`` array.

    Returns:
        Boolean ``(X, Y, Z)`` mask.
    """
    return np.any(images != 0, axis=0)


def normalize_intensity(images: np.ndarray) -> np.ndarray:
    """Per-channel z-score over the non-zero (brain) voxels of that channel.

    Background voxels stay 0. A channel whose brain voxels are constant is only shifted to zero
    mean (no division by a zero standard deviation).

    Args:
        images: ``(C, X, Y, Z)`` array of raw intensities.

    Returns:
        ``float32`` array of the same shape.
    """
    images = np.asarray(images, dtype=np.float32)
    normalized = np.zeros_like(images, dtype=np.float32)
    for channel in range(images.shape[0]):
        values = images[channel]
        inside = values != 0
        if not inside.any():
            continue
        brain_values = values[inside].astype(np.float64)
        mean = brain_values.mean()
        std = brain_values.std()
        scale = 1.0 / std if std > 1e-8 else 1.0
        normalized[channel][inside] = ((brain_values - mean) * scale).astype(np.float32)
    return normalized


def brain_bounding_box(images: np.ndarray, margin: int = 8) -> Tuple[slice, slice, slice]:
    """Bounding box of the brain (voxels non-zero in any channel), grown by ``margin``.

    Args:
        images: ``(C, X, Y, Z)`` array.
        margin: voxels added on every side, clipped to the array.

    Returns:
        Three slices (x, y, z). The whole array when no voxel is non-zero.
    """
    mask = brain_mask(images)
    if not mask.any():
        return tuple(slice(0, n) for n in mask.shape)
    box = []
    for axis in range(3):
        other_axes = tuple(a for a in range(3) if a != axis)
        present = np.flatnonzero(mask.any(axis=other_axes))
        start = max(int(present[0]) - margin, 0)
        stop = min(int(present[-1]) + 1 + margin, mask.shape[axis])
        box.append(slice(start, stop))
    return tuple(box)


def pad_to_multiple(array: np.ndarray, multiple: int = 16) -> Tuple[np.ndarray, Tuple[slice, ...]]:
    """Zero-pad the last three axes up to a multiple of ``multiple``.

    Padding is split evenly before and after, so the content stays centred.

    Args:
        array: array whose last three axes are spatial.
        multiple: required multiple of each spatial size (16 for EoFormer).

    Returns:
        The padded array and the slices (over all axes) that cut the original back out.
    """
    spatial = array.shape[-3:]
    pads = []
    for size in spatial:
        total = (-size) % multiple
        pads.append((total // 2, total - total // 2))
    leading = [(0, 0)] * (array.ndim - 3)
    padded = np.pad(array, leading + pads, mode="constant")
    undo = tuple([slice(None)] * (array.ndim - 3)) + tuple(
        slice(before, before + size) for (before, _), size in zip(pads, spatial)
    )
    return padded, undo
