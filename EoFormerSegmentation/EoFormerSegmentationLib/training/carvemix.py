"""CarveMix: a real tumour, carved out with its label, pasted into another training brain.

With few labelled cases the network sees few tumour appearances. CarveMix (Zhang et al.,
MICCAI 2021) multiplies them: a region around one case's tumour (all four sequences and its
label) replaces the same region of another case. BraTS cases share one atlas space (SRI24,
1 mm), so the donor's tumour lands where it was, inside a different brain with a different
contrast and, often, a tumour of its own elsewhere.

The carved region is every voxel within ``d`` mm of the donor's tumour, ``d`` drawn per mix,
restricted to voxels that are brain in both cases (the background stays 0, as the network
always sees it). Inside the region image and label come from the donor, outside it from the
target, so the label stays exact where the image changed.
"""

from __future__ import annotations

from typing import Dict, Optional, Sequence

import numpy as np
from scipy import ndimage

from EoFormerSegmentationLib.training.datasets import LoadedCase

__all__ = ["MARGIN_MM", "carve_mix", "donor_offset"]

MARGIN_MM = (0.0, 10.0)
"""Default range of the distance (mm) around the donor's tumour that is carved out with it."""


def donor_offset(target: LoadedCase, donor: LoadedCase) -> Optional[np.ndarray]:
    """Voxel offset ``o`` with donor voxel ``i`` at target voxel ``i + o``, or ``None``.

    ``None`` when the two grids do not line up voxel for voxel (other spacing or axes, or an
    origin that is not a whole number of voxels away), as for cases outside a common atlas.
    """
    target_axes, donor_axes = target.affine[:3, :3], donor.affine[:3, :3]
    if not np.allclose(target_axes, donor_axes, atol=1e-3):
        return None
    offset = np.linalg.solve(target_axes, donor.affine[:3, 3] - target.affine[:3, 3])
    whole = np.round(offset)
    if not np.allclose(offset, whole, atol=1e-2):
        return None
    return whole.astype(int)


def _overlap(shape_a: Sequence[int], shape_b: Sequence[int], offset: np.ndarray) -> tuple:
    """Slices of A and B over their common voxels, B's voxel ``i`` lying at A's ``i + offset``."""
    slices_a, slices_b = [], []
    for size_a, size_b, shift in zip(shape_a, shape_b, offset):
        start_a, stop_a = max(0, shift), min(size_a, size_b + shift)
        if stop_a <= start_a:
            return None
        slices_a.append(slice(start_a, stop_a))
        slices_b.append(slice(start_a - shift, stop_a - shift))
    return tuple(slices_a), tuple(slices_b)


def carve_mix(
    target: LoadedCase,
    donor: LoadedCase,
    rng: np.random.Generator,
    margin_mm: Sequence[float] = MARGIN_MM,
) -> Optional[Dict[str, object]]:
    """``target`` with ``donor``'s tumour region pasted in, as a training-transform dictionary.

    Args:
        target: the case that receives the tumour (labelled).
        donor: the case whose tumour is carved out (labelled, with tumour).
        rng: draws the carving distance.
        margin_mm: range of the carving distance around the donor's tumour, in mm.

    Returns:
        ``{"image", "label", "name"}`` with new arrays (the inputs are not changed), or
        ``None`` when the cases cannot be mixed: no label, no donor tumour, grids that do not
        line up, or no donor tumour inside the target's brain.
    """
    if target.label is None or donor.label is None:
        return None
    offset = donor_offset(target, donor)
    if offset is None:
        return None
    common = _overlap(target.label.shape, donor.label.shape, offset)
    if common is None:
        return None
    in_target, in_donor = common
    spacing = np.sqrt((donor.affine[:3, :3] ** 2).sum(axis=0))
    distance = float(rng.uniform(*margin_mm))
    tumour = donor.label[in_donor] > 0
    if not tumour.any():
        return None
    # distance to the tumour only within its bounding box grown by the carving distance
    grow = np.ceil(distance / spacing).astype(int) + 1
    where = np.argwhere(tumour)
    low = np.maximum(where.min(axis=0) - grow, 0)
    high = np.minimum(where.max(axis=0) + 1 + grow, tumour.shape)
    box = tuple(slice(a, b) for a, b in zip(low, high))
    near = ndimage.distance_transform_edt(~tumour[box], sampling=spacing) <= distance
    region = np.zeros(tumour.shape, dtype=bool)
    region[box] = near
    donor_image = donor.image[(slice(None),) + in_donor]
    target_image = target.image[(slice(None),) + in_target]
    region &= np.any(donor_image != 0, axis=0) & np.any(target_image != 0, axis=0)
    if not np.any(region & tumour):
        return None
    image = target.image.copy()
    label = target.label.copy()
    pasted_image = image[(slice(None),) + in_target]
    pasted_image[:, region] = donor_image[:, region]
    pasted_label = label[in_target]
    pasted_label[region] = donor.label[in_donor][region]
    return {"image": image, "label": label, "name": f"{target.name}+{donor.name}"}
