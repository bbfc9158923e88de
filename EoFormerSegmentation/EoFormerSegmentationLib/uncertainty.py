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
"""

from __future__ import annotations

from typing import Dict

import numpy as np

from EoFormerSegmentationLib.labels import REGIONS

__all__ = ["UNCERTAIN_BITS", "binary_entropy", "uncertainty_map", "uncertainty_summary"]

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
