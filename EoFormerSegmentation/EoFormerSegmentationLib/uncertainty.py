"""Where the segmentation is unsure: a per-voxel uncertainty map and a summary per region.

The network gives each voxel a probability per region (WT, TC, ET). A probability near 0 or 1
is a confident answer; one near 0.5 is a guess. The binary entropy
``H(p) = -p log2 p - (1 - p) log2 (1 - p)`` (bits, 0-1) measures this; with test-time
augmentation the probabilities are the mean over the flips, so the entropy also rises where
the flipped predictions disagree. The map is the largest entropy of the three regions at each
voxel: 0 where every region is decided, 1 where one of them is a coin toss.

A voxel is *uncertain* when its entropy exceeds :data:`UNCERTAIN_BITS` (0.5 bits, i.e. the
probability lies between 0.11 and 0.89). A region's *confidence* is
``1 - uncertain / (region + uncertain)`` with volumes in mL: 1 when no voxel in or around the
region is uncertain, 0.5 when the uncertain band is as large as the region itself.

:func:`doubtful_regions` splits the uncertain voxels of a map into connected regions, largest
first, so that a reviewer can visit them one after the other.
"""

from __future__ import annotations

from typing import Dict, List, Tuple

import numpy as np

from EoFormerSegmentationLib.labels import REGIONS

__all__ = [
    "UNCERTAIN_BITS",
    "binary_entropy",
    "doubtful_regions",
    "uncertainty_map",
    "uncertainty_summary",
]

UNCERTAIN_BITS = 0.5
"""Entropy (bits) above which a voxel counts as uncertain (probability 0.11-0.89)."""


def binary_entropy(probabilities: np.ndarray) -> np.ndarray:
    """``H(p)`` in bits, element-wise; 0 at p = 0 or 1, 1 at p = 0.5. ``float32``."""
    p = np.clip(np.asarray(probabilities, dtype=np.float32), 1e-7, 1.0 - 1e-7)
    return (-(p * np.log2(p)) - (1.0 - p) * np.log2(1.0 - p)).astype(np.float32)


def uncertainty_map(probabilities: np.ndarray) -> np.ndarray:
    """Largest binary entropy of the regions at each voxel (bits, 0-1).

    Args:
        probabilities: ``(3, X, Y, Z)`` WT / TC / ET probabilities.

    Returns:
        ``float32`` ``(X, Y, Z)`` map.
    """
    return binary_entropy(probabilities).max(axis=0)


def uncertainty_summary(
    probabilities: np.ndarray, masks: np.ndarray, voxel_volume_ml: float
) -> Dict[str, Dict[str, float]]:
    """Uncertain volume (mL) and confidence (0-1) of each region.

    Args:
        probabilities: ``(3, X, Y, Z)`` WT / TC / ET probabilities.
        masks: ``(3, X, Y, Z)`` final (post-processed) region masks.
        voxel_volume_ml: volume of one voxel, mL.

    Returns:
        ``{"WT": {"uncertain_ml": ..., "confidence": ...}, "TC": ..., "ET": ...}``.
    """
    entropy = binary_entropy(probabilities)
    summary: Dict[str, Dict[str, float]] = {}
    for index, region in enumerate(REGIONS):
        uncertain_ml = float(np.count_nonzero(entropy[index] > UNCERTAIN_BITS)) * voxel_volume_ml
        region_ml = float(np.count_nonzero(masks[index])) * voxel_volume_ml
        total = region_ml + uncertain_ml
        summary[region] = {
            "uncertain_ml": round(uncertain_ml, 3),
            "confidence": round(1.0 - uncertain_ml / total, 4) if total > 0 else 1.0,
        }
    return summary


def doubtful_regions(
    map_array: np.ndarray,
    ijk_to_ras: np.ndarray,
    voxel_ml: float,
    threshold: float = UNCERTAIN_BITS,
) -> List[Tuple[Tuple[float, float, float], float]]:
    """The uncertain voxels of a map as 3-D connected regions, largest first.

    Voxels are connected through faces, edges and corners (26 neighbours), so that a thin,
    oblique band along a tumor boundary stays one region.

    Args:
        map_array: uncertainty map (bits) indexed ``[k, j, i]``, as
            ``slicer.util.arrayFromVolume`` gives it.
        ijk_to_ras: 4x4 IJK-to-RAS matrix of the map's grid (mm).
        voxel_ml: volume of one voxel, mL.
        threshold: a voxel is uncertain above this value (bits).

    Returns:
        ``(centre_ras, volume_ml)`` per region, largest first (ties in voxel order). The
        centre is the region's voxel nearest to its centroid, in RAS mm: a point inside the
        region even when the region is curved.
    """
    from scipy import ndimage

    uncertain = np.asarray(map_array) > threshold
    labelled, count = ndimage.label(uncertain, structure=np.ones((3, 3, 3), dtype=bool))
    if count == 0:
        return []
    sizes = np.bincount(labelled.ravel(), minlength=count + 1)[1:]
    matrix = np.asarray(ijk_to_ras, dtype=float)
    boxes = ndimage.find_objects(labelled)
    regions = []
    for index in sorted(range(count), key=lambda i: (-sizes[i], i)):
        box = boxes[index]
        offset = np.array([axis.start for axis in box], dtype=float)
        kji = np.argwhere(labelled[box] == index + 1).astype(float) + offset
        nearest = kji[np.argmin(((kji - kji.mean(axis=0)) ** 2).sum(axis=1))]
        ijk = np.array([nearest[2], nearest[1], nearest[0], 1.0])
        centre = matrix @ ijk
        regions.append(
            ((float(centre[0]), float(centre[1]), float(centre[2])), float(sizes[index]) * voxel_ml)
        )
    return regions
