"""Grids and resampling between the user's images and the network's space.

The network works on a 1 mm isotropic grid whose axes point to patient Right, Anterior and
Superior (RAS), covering the reference (T1ce) image; arrays on it are indexed ``[x, y, z]``.
For a BraTS NIfTI file on a 1 mm grid this is exactly what ``nibabel.as_closest_canonical``
gives, the orientation the training code reads. SimpleITK's physical space is LPS (mm).
"""

from __future__ import annotations

from typing import List, Optional

import numpy as np
import SimpleITK as sitk

from EoFormerSegmentationLib.volumes import physical_bounds

__all__ = [
    "NETWORK_SPACING_MM",
    "network_grid",
    "resample_onto",
    "image_to_array",
    "array_to_image",
    "grid_differences",
]

NETWORK_SPACING_MM = 1.0

# RAS-pointing axes expressed in SimpleITK's LPS physical space.
_RAS_DIRECTION = (-1.0, 0.0, 0.0, 0.0, -1.0, 0.0, 0.0, 0.0, 1.0)


def network_grid(reference: sitk.Image, spacing_mm: float = NETWORK_SPACING_MM) -> sitk.Image:
    """An empty RAS-aligned grid of ``spacing_mm`` voxels that covers ``reference``.

    When the reference is itself axis-aligned with that spacing, the grid's voxel centres are
    the reference's voxel centres (so resampling onto it only reorders voxels).

    Args:
        reference: the image whose physical extent is covered (the T1ce).
        spacing_mm: voxel size, mm.

    Returns:
        A ``uint8`` image of zeros defining size, spacing, origin and direction.
    """
    low, high = physical_bounds(reference)
    extent = high - low
    size = np.maximum(np.round(extent / spacing_mm - 1e-3).astype(int), 1)
    size = np.where(size * spacing_mm < extent - 1e-3, size + 1, size)
    # Centre the grid on the reference's extent. In LPS, R and A are the negative x and y.
    center = (low + high) / 2.0
    half = (size - 1) * spacing_mm / 2.0
    origin = np.array([center[0] + half[0], center[1] + half[1], center[2] - half[2]])
    grid = sitk.Image([int(s) for s in size], sitk.sitkUInt8)
    grid.SetSpacing([spacing_mm] * 3)
    grid.SetDirection(_RAS_DIRECTION)
    grid.SetOrigin(origin.tolist())
    return grid


def resample_onto(
    image: sitk.Image,
    grid: sitk.Image,
    interpolator: int = sitk.sitkLinear,
    transform: Optional[sitk.Transform] = None,
    default_value: float = 0.0,
) -> sitk.Image:
    """Resample ``image`` onto the geometry of ``grid``.

    Args:
        image: the image to resample (left untouched).
        grid: the target geometry (size, spacing, origin, direction).
        interpolator: ``sitk.sitkLinear`` for intensities and probabilities,
            ``sitk.sitkNearestNeighbor`` for labels.
        transform: maps points of ``grid`` space to ``image`` space (a registration result);
            identity when ``None``.
        default_value: value outside ``image``.
    """
    return sitk.Resample(
        image,
        grid,
        transform or sitk.Transform(),
        interpolator,
        default_value,
        image.GetPixelID(),
    )


def image_to_array(image: sitk.Image) -> np.ndarray:
    """Voxel array indexed ``[x, y, z]`` (SimpleITK's own arrays are ``[z, y, x]``)."""
    return sitk.GetArrayFromImage(image).transpose(2, 1, 0)


def array_to_image(array: np.ndarray, grid: sitk.Image) -> sitk.Image:
    """Image with the voxels of ``array`` (indexed ``[x, y, z]``) and the geometry of ``grid``."""
    image = sitk.GetImageFromArray(np.ascontiguousarray(np.asarray(array).transpose(2, 1, 0)))
    image.CopyInformation(grid)
    return image


def _rounded(values, digits: int = 4) -> tuple:
    return tuple(round(float(value), digits) + 0.0 for value in values)


def grid_differences(
    image: sitk.Image, reference: sitk.Image, spacing_tolerance_mm: float = 1e-4
) -> List[str]:
    """How the grid of ``image`` differs from that of ``reference``, one phrase per property.

    Size, spacing (mm), origin (LPS, mm) and direction are compared; each differing property
    is named with both values, e.g. ``"origin (0.0, 0.0, 0.0) vs (5.0, 0.0, 0.0) mm"``.

    Args:
        image: the image to compare.
        reference: the grid it should have.
        spacing_tolerance_mm: differences below this are ignored (origin: 10 times it;
            direction: 1e-4 per cosine).

    Returns:
        An empty list when the grids are the same.
    """
    differences = []
    if image.GetSize() != reference.GetSize():
        differences.append(f"size {image.GetSize()} vs {reference.GetSize()} voxels")
    if not np.allclose(image.GetSpacing(), reference.GetSpacing(), atol=spacing_tolerance_mm):
        differences.append(
            f"spacing {_rounded(image.GetSpacing())} vs {_rounded(reference.GetSpacing())} mm"
        )
    if not np.allclose(image.GetOrigin(), reference.GetOrigin(), atol=10 * spacing_tolerance_mm):
        differences.append(
            f"origin {_rounded(image.GetOrigin(), 3)} vs {_rounded(reference.GetOrigin(), 3)} mm"
        )
    if not np.allclose(image.GetDirection(), reference.GetDirection(), atol=1e-4):
        differences.append(
            f"direction {_rounded(image.GetDirection())} vs {_rounded(reference.GetDirection())}"
        )
    return differences
