"""Smooth random fields for the synthetic case generator.

Smooth fields (deformations, bias fields, noise-perturbed shapes, textures) are drawn on a coarse
grid and brought to the 1 mm grid with separable linear interpolation (three small matrix
products), which is much cheaper than full-resolution Gaussian filtering.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
from scipy import ndimage

__all__ = ["linear_upsampling_matrix", "upsample", "smooth_noise"]


def linear_upsampling_matrix(coarse_size: int, fine_size: int) -> np.ndarray:
    """Matrix (fine_size, coarse_size) that linearly interpolates a coarse 1D grid.

    Both grids span the same extent (cell-centred): fine index ``i`` sits at coarse coordinate
    ``(i + 0.5) * coarse_size / fine_size - 0.5``, clamped to the coarse grid.

    Args:
        coarse_size: number of coarse samples.
        fine_size: number of fine samples.
    """
    position = (np.arange(fine_size) + 0.5) * coarse_size / fine_size - 0.5
    position = np.clip(position, 0, coarse_size - 1)
    lower = np.floor(position).astype(int)
    upper = np.minimum(lower + 1, coarse_size - 1)
    weight = (position - lower).astype(np.float32)
    matrix = np.zeros((fine_size, coarse_size), np.float32)
    rows = np.arange(fine_size)
    np.add.at(matrix, (rows, lower), 1 - weight)
    np.add.at(matrix, (rows, upper), weight)
    return matrix


def upsample(coarse: np.ndarray, fine_shape: Sequence[int]) -> np.ndarray:
    """Linearly interpolate a 3D coarse field onto a finer grid with the same extent.

    Args:
        coarse: array (a, b, c).
        fine_shape: (X, Y, Z) of the output.

    Returns:
        float32 array of ``fine_shape``.
    """
    field = np.asarray(coarse, np.float32)
    for axis, size in enumerate(fine_shape):
        matrix = linear_upsampling_matrix(field.shape[axis], int(size))
        field = np.moveaxis(np.tensordot(matrix, field, axes=([1], [axis])), 0, axis)
    return np.ascontiguousarray(field, dtype=np.float32)


def smooth_noise(
    rng: np.random.Generator,
    shape: Sequence[int],
    sigma_mm: float,
    coarse_step: float = 4.0,
) -> np.ndarray:
    """Smooth Gaussian noise on a 1 mm grid, drawn on a coarse grid and upsampled.

    Args:
        rng: random generator.
        shape: (X, Y, Z) of the output, 1 mm voxels.
        sigma_mm: correlation length (Gaussian smoothing) in mm; larger = smoother.
        coarse_step: spacing of the coarse grid in mm (keep it below ``sigma_mm``).

    Returns:
        float32 array of ``shape`` with mean ~0 and standard deviation ~1.
    """
    coarse_shape = tuple(max(2, int(np.ceil(size / coarse_step)) + 1) for size in shape)
    noise = rng.standard_normal(coarse_shape).astype(np.float32)
    noise = ndimage.gaussian_filter(noise, sigma_mm / coarse_step, mode="reflect")
    noise -= noise.mean()
    noise /= noise.std() + 1e-6
    return upsample(noise, shape)
