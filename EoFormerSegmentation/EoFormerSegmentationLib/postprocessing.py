"""From probabilities to WT / TC / ET masks: threshold, nesting, small-component cleanup."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

__all__ = ["PostprocessingSettings", "postprocess_regions"]


@dataclass
class PostprocessingSettings:
    """Post-processing settings.

    Attributes:
        threshold: probability above which a voxel belongs to a region.
        min_component_ml: connected components of the whole tumor smaller than this (mL) are
            removed (isolated false positives), together with TC and ET inside them.
        min_enhancing_ml: when the whole enhancing tumor is smaller than this (mL), it is
            relabelled as necrotic / non-enhancing core (NCR). A common BraTS practice: a tiny
            predicted ET is more often a false positive than a true one, and an empty ET on a
            case without ET scores Dice 1 instead of 0. 0 disables it.
    """

    threshold: float = 0.5
    min_component_ml: float = 0.1
    min_enhancing_ml: float = 0.3


def postprocess_regions(
    probabilities: np.ndarray, voxel_volume_ml: float, settings: PostprocessingSettings = None
) -> np.ndarray:
    """Binary WT / TC / ET masks from their probabilities.

    Args:
        probabilities: ``(3, X, Y, Z)`` probabilities (0-1) of WT, TC, ET.
        voxel_volume_ml: volume of one voxel, mL.
        settings: thresholds; defaults of :class:`PostprocessingSettings` when ``None``.

    Returns:
        Boolean ``(3, X, Y, Z)`` masks, nested (ET within TC within WT).
    """
    settings = settings or PostprocessingSettings()
    masks = probabilities > settings.threshold
    whole, core, enhancing = masks[0], masks[1], masks[2]
    # Nesting: a voxel confidently in an inner region belongs to the outer ones too.
    core = core | enhancing
    whole = whole | core

    if settings.min_component_ml > 0 and whole.any():
        components, count = ndimage.label(whole, structure=np.ones((3, 3, 3), bool))
        sizes = ndimage.sum_labels(whole, components, index=np.arange(1, count + 1))
        small = np.flatnonzero(sizes * voxel_volume_ml < settings.min_component_ml) + 1
        if len(small):
            removed = np.isin(components, small)
            whole &= ~removed
            core &= ~removed
            enhancing &= ~removed

    if (
        settings.min_enhancing_ml > 0
        and enhancing.sum() * voxel_volume_ml < settings.min_enhancing_ml
    ):
        enhancing = np.zeros_like(enhancing)  # its voxels stay in TC, i.e. become NCR
    return np.stack([whole, core, enhancing])
