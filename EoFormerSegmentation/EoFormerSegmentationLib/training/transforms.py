"""Training and validation transforms (MONAI dictionary transforms).

Input dictionaries hold ``"image"``: ``float32 (4, X, Y, Z)`` z-scored T1, T1ce, T2, FLAIR
(0 outside the brain) and ``"label"``: a BraTS label map ``(X, Y, Z)`` (1 NCR, 2 ED, 4 or 3 ET).
Output dictionaries hold ``"image"`` and ``"label"`` as tensors, the label as three float
region channels WT, TC, ET (0 or 1), the order of the network's outputs.
"""

from __future__ import annotations

from typing import Dict, Hashable, Mapping, Sequence, Union

import numpy as np
import torch
from monai.transforms import (
    Compose,
    CropForegroundd,
    EnsureTyped,
    MapTransform,
    RandCropByPosNegLabeld,
    RandFlipd,
    RandScaleIntensityd,
    RandShiftIntensityd,
    SpatialPadd,
)

from EoFormerSegmentationLib.labels import labels_to_regions

__all__ = [
    "LabelsToRegionsd",
    "is_brain",
    "training_transforms",
    "validation_transforms",
]

KEYS = ("image", "label")


def is_brain(image: Union[np.ndarray, torch.Tensor]) -> Union[np.ndarray, torch.Tensor]:
    """Foreground test for z-scored images: any non-zero voxel is brain (values may be < 0)."""
    return image != 0


class LabelsToRegionsd(MapTransform):
    """BraTS label map ``(X, Y, Z)`` or ``(1, X, Y, Z)`` -> float regions ``(3, X, Y, Z)``.

    Uses :func:`EoFormerSegmentationLib.labels.labels_to_regions` (WT, TC, ET; ET may be 4 or 3).

    Args:
        keys: keys of the label maps to convert.
    """

    def __call__(self, data: Mapping[Hashable, object]) -> Dict[Hashable, object]:
        result = dict(data)
        for key in self.key_iterator(result):
            label = result[key]
            array = label.cpu().numpy() if isinstance(label, torch.Tensor) else np.asarray(label)
            if array.ndim == 4:
                array = array[0]
            result[key] = labels_to_regions(array).astype(np.float32)
        return result


class _AddChannel(MapTransform):
    """``(X, Y, Z)`` -> ``(1, X, Y, Z)`` for the label, as MONAI's spatial transforms expect."""

    def __call__(self, data: Mapping[Hashable, object]) -> Dict[Hashable, object]:
        result = dict(data)
        for key in self.key_iterator(result):
            array = np.asarray(result[key])
            if array.ndim == 3:
                result[key] = array[None]
        return result


def training_transforms(
    crop_size: Union[int, Sequence[int]] = 128,
    crops_per_case: int = 2,
    positive_fraction: float = 2.0 / 3.0,
    intensity_scale: float = 0.1,
    intensity_shift: float = 0.1,
) -> Compose:
    """Random tumour-biased crops with flips and intensity jitter.

    Steps: crop to the brain's bounding box; pad to at least ``crop_size``;
    ``crops_per_case`` random crops, each centred on a tumour voxel with probability
    ``positive_fraction`` (else on any voxel); labels -> WT/TC/ET channels; flips along each
    axis (p = 0.5 each); per-channel intensity scale ``1 + U(-s, s)`` and shift ``U(-o, o)``
    (in units of the z-scored intensities).

    Args:
        crop_size: crop edge in voxels (128 for training, as in the paper).
        crops_per_case: crops drawn from each case per visit; the transform returns a list.
        positive_fraction: share of crops centred on tumour (cases without tumour fall back
            to random crops).
        intensity_scale: ``s`` above.
        intensity_shift: ``o`` above.

    Returns:
        A MONAI ``Compose`` returning a list of ``crops_per_case`` dictionaries.
    """
    positive = max(positive_fraction, 0.0)
    negative = max(1.0 - positive_fraction, 0.0)
    return Compose(
        [
            _AddChannel(keys="label"),
            CropForegroundd(keys=KEYS, source_key="image", select_fn=is_brain, margin=2),
            SpatialPadd(keys=KEYS, spatial_size=crop_size),
            RandCropByPosNegLabeld(
                keys=KEYS,
                label_key="label",
                spatial_size=crop_size,
                pos=positive,
                neg=negative,
                num_samples=crops_per_case,
                allow_smaller=True,
            ),
            LabelsToRegionsd(keys="label"),
            RandFlipd(keys=KEYS, prob=0.5, spatial_axis=0),
            RandFlipd(keys=KEYS, prob=0.5, spatial_axis=1),
            RandFlipd(keys=KEYS, prob=0.5, spatial_axis=2),
            RandScaleIntensityd(keys="image", factors=intensity_scale, prob=1.0, channel_wise=True),
            RandShiftIntensityd(keys="image", offsets=intensity_shift, prob=1.0, channel_wise=True),
            EnsureTyped(keys=KEYS, data_type="tensor", dtype=torch.float32, track_meta=False),
        ]
    )


def validation_transforms() -> Compose:
    """Whole (brain-cropped) volumes with WT/TC/ET label channels, for sliding-window Dice."""
    return Compose(
        [
            _AddChannel(keys="label"),
            CropForegroundd(keys=KEYS, source_key="image", select_fn=is_brain, margin=2),
            LabelsToRegionsd(keys="label"),
            EnsureTyped(keys=KEYS, data_type="tensor", dtype=torch.float32, track_meta=False),
        ]
    )
