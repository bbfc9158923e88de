"""Brain extraction (skull stripping) for scans that come with skull and scalp.

The network was trained on BraTS images, which are skull-stripped: every voxel outside the
brain is exactly 0. Hospital scans are not, and bright scalp, fat and marrow around the brain
are read as tumor. This module decides whether a scan needs stripping
(:func:`looks_skull_stripped`), computes a brain mask with deepbet (Fisch et al., Computers in
Biology and Medicine 2024; MIT licence, its networks ship inside its wheel, so nothing is
downloaded) and checks that the mask is plausible (:func:`check_brain_mask`).

Arrays are on the network grid (1 mm, RAS, indexed ``[x, y, z]``, see
:mod:`~EoFormerSegmentationLib.geometry`), which is the orientation deepbet expects
(nibabel's closest canonical).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Dict, List, Optional

import numpy as np
from scipy import ndimage

from EoFormerSegmentationLib.errors import InputError

__all__ = [
    "SKULL_STRIP_MODES",
    "STRIPPED_MAX_ML",
    "BRAIN_VOLUME_RANGE_ML",
    "BrainMask",
    "looks_skull_stripped",
    "extract_brain",
    "check_brain_mask",
    "strip",
]

SKULL_STRIP_MODES = ("auto", "on", "off")
"""``--skull-strip`` choices: ``auto`` strips scans that are not already skull-stripped."""

STRIPPED_MAX_ML = 2200.0
"""A skull-stripped scan has at most this many mL of non-zero voxels (adult brains with a
tumor: about 1100-1900 mL); a head with skull and scalp, or a scan whose background is noise
rather than exact zeros, has far more (3000-11000 mL on the real heads we tested)."""

BRAIN_VOLUME_RANGE_ML = (900.0, 2000.0)
"""Plausible adult brain volumes, mL; a mask outside this range is reported."""

_REFUSE_BELOW_ML = 500.0
_REFUSE_ABOVE_ML = 3000.0


@dataclass
class BrainMask:
    """A brain mask and what is known about it.

    Attributes:
        mask: boolean ``(X, Y, Z)`` array on the network grid.
        volume_ml: brain volume, mL (before the safety margin).
        source: the sequence it was computed from (``t1``, ``t1ce``...).
        seconds: time taken.
        warnings: messages for the user (implausible volume, mask touching the border).
    """

    mask: np.ndarray
    volume_ml: float
    source: str
    seconds: float
    warnings: List[str] = field(default_factory=list)

    def report(self) -> Dict[str, object]:
        """JSON-serialisable summary for the segmentation report."""
        return {
            "source": self.source,
            "brain_volume_ml": round(self.volume_ml, 1),
            "seconds": round(self.seconds, 2),
            "warnings": list(self.warnings),
        }


def looks_skull_stripped(channel: np.ndarray, voxel_volume_ml: float) -> bool:
    """True when a scan looks skull-stripped: at most :data:`STRIPPED_MAX_ML` of non-zero voxels.

    Args:
        channel: one sequence on the network grid (any intensity scale).
        voxel_volume_ml: volume of one voxel, mL (0.001 on the 1 mm grid).
    """
    return float(np.count_nonzero(channel)) * voxel_volume_ml <= STRIPPED_MAX_ML


_EXTRACTORS: Dict[str, object] = {}


def _extractor(device: str):
    """deepbet's networks, loaded once per device (they take about a second to load)."""
    if device not in _EXTRACTORS:
        try:
            from deepbet import BrainExtraction
        except ImportError as error:
            raise InputError(
                "brain extraction needs the deepbet package (pip install deepbet); or give "
                "skull-stripped images and --skull-strip off"
            ) from error
        _EXTRACTORS[device] = BrainExtraction(no_gpu=device == "cpu")
    return _EXTRACTORS[device]


def extract_brain(
    channel: np.ndarray,
    source: str = "t1",
    device: str = "cpu",
    margin_mm: float = 2.0,
    voxel_size_mm: float = 1.0,
) -> BrainMask:
    """Brain mask of one sequence with skull and scalp, on the network grid.

    deepbet finds the brain's bounding box at low resolution, segments the brain inside it,
    keeps the largest connected component and fills its holes. The mask is then grown by
    ``margin_mm`` so that a tumor at the brain's surface is never cut off.

    Args:
        channel: ``(X, Y, Z)`` intensities (RAS, 1 mm); T1 or T1ce work best.
        source: name of the sequence, for messages.
        device: ``cpu`` or ``cuda``.
        margin_mm: dilation of the mask, mm.
        voxel_size_mm: voxel edge, mm.

    Returns:
        A :class:`BrainMask` (not yet checked: see :func:`check_brain_mask`).
    """
    started = time.perf_counter()
    extractor = _extractor("cuda" if str(device).startswith("cuda") else "cpu")
    probability = extractor.run_model(np.ascontiguousarray(channel, dtype=np.float32).copy())
    brain = np.asarray(extractor.postprocess(probability > 0.5)).astype(bool)
    voxel_volume_ml = voxel_size_mm**3 / 1000.0
    volume_ml = float(brain.sum()) * voxel_volume_ml
    steps = int(round(margin_mm / voxel_size_mm))
    if steps > 0 and brain.any():
        brain = ndimage.binary_dilation(brain, ndimage.generate_binary_structure(3, 1), steps)
    return BrainMask(
        mask=brain,
        volume_ml=volume_ml,
        source=source,
        seconds=time.perf_counter() - started,
    )


def check_brain_mask(result: BrainMask, border_slices: int = 10) -> BrainMask:
    """Check that a brain mask is plausible; add warnings, or refuse a failed extraction.

    Rules: a brain of under 500 mL or over 3000 mL means that extraction failed (error); one
    outside 900-2000 mL, or touching the edge of the image on ``border_slices`` or more
    slices (the head was cut by the field of view, or the mask leaked), gets a warning.

    Args:
        result: the mask from :func:`extract_brain` (its ``warnings`` are extended).
        border_slices: slices touching the image edge from which a warning is given.

    Returns:
        ``result``.

    Raises:
        InputError: brain extraction failed (message names the sequence and the volume).
    """
    low, high = BRAIN_VOLUME_RANGE_ML
    volume = result.volume_ml
    if volume < _REFUSE_BELOW_ML or volume > _REFUSE_ABOVE_ML:
        raise InputError(
            f"{result.source}: brain extraction failed (brain volume {volume:.0f} mL, expected "
            f"{low:.0f}-{high:.0f} mL); check that the image is a head MRI, or give "
            "skull-stripped images and --skull-strip off"
        )
    if not low <= volume <= high:
        result.warnings.append(
            f"{result.source}: the extracted brain measures {volume:.0f} mL, outside the usual "
            f"{low:.0f}-{high:.0f} mL; check the brain mask and the segmentation"
        )
    touching = _slices_touching_border(result.mask)
    if touching >= border_slices:
        result.warnings.append(
            f"{result.source}: the brain mask reaches the edge of the image on {touching} "
            "slices (the field of view may cut the brain); tumor outside the image is missed"
        )
    return result


def _slices_touching_border(mask: np.ndarray) -> int:
    """Number of (axis-wise) slices whose mask reaches a face of the volume."""
    total = 0
    for axis in range(3):
        for index in (0, mask.shape[axis] - 1):
            face = np.take(mask, index, axis=axis)
            if face.any():
                # count the slices along the other axes that the face's mask spans
                total += int(np.count_nonzero(face.any(axis=0))) if face.ndim == 2 else 1
    return total


def strip(volume: np.ndarray, mask: np.ndarray, out: Optional[np.ndarray] = None) -> np.ndarray:
    """``volume`` ``(C, X, Y, Z)`` with every voxel outside ``mask`` set to 0."""
    result = volume if out is None else out
    np.multiply(volume, mask[None].astype(volume.dtype), out=result)
    return result
