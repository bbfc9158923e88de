"""BraTS evaluation: Dice and the 95th percentile Hausdorff distance per region.

Conventions of the BraTS challenge: regions WT / TC / ET from labels (ET as 4 or 3); when
prediction and reference are both empty Dice is 1 and HD95 is 0; when only one is empty HD95
is 373.13 mm (the diagonal of the BraTS volume) and Dice is 0.
"""

from __future__ import annotations

from typing import Dict, Sequence

import numpy as np
from scipy import ndimage

from EoFormerSegmentationLib.labels import REGIONS, labels_to_regions

__all__ = ["EMPTY_HD95_MM", "dice", "hd95", "evaluate_labels"]

EMPTY_HD95_MM = 373.13


def dice(prediction: np.ndarray, reference: np.ndarray) -> float:
    """Dice overlap of two boolean masks (1.0 when both are empty)."""
    prediction, reference = prediction.astype(bool), reference.astype(bool)
    total = int(prediction.sum()) + int(reference.sum())
    if total == 0:
        return 1.0
    return 2.0 * int(np.logical_and(prediction, reference).sum()) / total


def _surface(mask: np.ndarray) -> np.ndarray:
    return mask & ~ndimage.binary_erosion(mask, structure=ndimage.generate_binary_structure(3, 1))


def hd95(prediction: np.ndarray, reference: np.ndarray, spacing_mm: Sequence[float]) -> float:
    """95th percentile of the symmetric surface distances, mm (BraTS conventions for empties).

    Distances from every surface voxel of each mask to the other mask's surface are pooled, as
    in the BraTS evaluation tools.
    """
    prediction, reference = prediction.astype(bool), reference.astype(bool)
    if not prediction.any() and not reference.any():
        return 0.0
    if not prediction.any() or not reference.any():
        return EMPTY_HD95_MM
    surface_pred, surface_ref = _surface(prediction), _surface(reference)
    to_ref = ndimage.distance_transform_edt(~surface_ref, sampling=spacing_mm)
    to_pred = ndimage.distance_transform_edt(~surface_pred, sampling=spacing_mm)
    distances = np.concatenate([to_ref[surface_pred], to_pred[surface_ref]])
    return float(np.percentile(distances, 95))


def evaluate_labels(
    prediction: np.ndarray, reference: np.ndarray, spacing_mm: Sequence[float]
) -> Dict[str, Dict[str, float]]:
    """Dice and HD95 of WT, TC and ET between two BraTS label maps on the same grid.

    Args:
        prediction: predicted label map (ET 4 or 3).
        reference: reference label map (ET 4 or 3).
        spacing_mm: voxel size along the array's axes, mm.

    Returns:
        ``{"WT": {"dice": ..., "hd95": ...}, "TC": ..., "ET": ...}``.
    """
    predicted_regions = labels_to_regions(prediction)
    reference_regions = labels_to_regions(reference)
    return {
        region: {
            "dice": dice(predicted_regions[index], reference_regions[index]),
            "hd95": hd95(predicted_regions[index], reference_regions[index], spacing_mm),
        }
        for index, region in enumerate(REGIONS)
    }
