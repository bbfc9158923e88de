"""Training and validation transforms (MONAI dictionary transforms).

Input dictionaries hold ``"image"``: ``float32 (4, X, Y, Z)`` z-scored T1, T1ce, T2, FLAIR
(0 outside the brain) and ``"label"``: a BraTS label map ``(X, Y, Z)`` (1 NCR, 2 ED, 4 or 3 ET).
Output dictionaries hold ``"image"`` and ``"label"`` as tensors, the label as three float
region channels WT, TC, ET (0 or 1), the order of the network's outputs.
"""

from __future__ import annotations

from typing import Dict, Hashable, List, Mapping, Optional, Sequence, Union

import numpy as np
import torch
from monai.transforms import (
    CenterSpatialCropd,
    Compose,
    CropForegroundd,
    EnsureTyped,
    MapTransform,
    RandAdjustContrastd,
    RandAffined,
    RandCropByPosNegLabeld,
    RandFlipd,
    RandGaussianNoised,
    RandGaussianSmoothd,
    Randomizable,
    RandScaleIntensityd,
    RandShiftIntensityd,
    SpatialPadd,
)
from scipy import ndimage

from EoFormerSegmentationLib.labels import labels_to_regions

__all__ = [
    "AUGMENTATIONS",
    "LabelsToRegionsd",
    "RandThickSlicesd",
    "THICK_SLICES_PROB",
    "is_brain",
    "training_transforms",
    "validation_transforms",
]

KEYS = ("image", "label")

AUGMENTATIONS = ("basic", "strong")
"""Augmentation levels of :func:`training_transforms`."""


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


THICK_SLICES_PROB = 0.25
"""Default share of training crops that ``strong`` augmentation turns into thick slices."""


class RandThickSlicesd(Randomizable, MapTransform):
    """Simulate a thick-slice (2-D) acquisition interpolated back to 1 mm, along one axis.

    Hospital scans are often axial 2-D acquisitions with 3-7 mm slices; resampled onto the
    network's 1 mm grid they are blurred and stair-stepped along the slice axis. This transform
    averages each slab of ``t`` voxels along one axis (``t`` drawn from ``thickness_range``,
    in voxels = mm at 1 mm), keeps one sample per slab and interpolates linearly back to the
    original size, as the engine's resampling does. The label is left untouched: the network
    learns to recover the 1 mm answer from the thick-slice image. Each channel is degraded
    with probability ``channel_prob`` (sequences of one session may differ), all along the
    same axis.

    Args:
        keys: image keys (``(C, X, Y, Z)`` arrays or tensors).
        prob: probability of applying the transform to a sample.
        thickness_range: (low, high) slice thickness in voxels.
        axis_weights: relative probability of the slice axis being 0, 1 or 2 (RAS arrays:
            2 is axial).
        channel_prob: probability that each channel is degraded when the transform applies.
    """

    def __init__(
        self,
        keys: Union[str, Sequence[str]],
        prob: float = 0.25,
        thickness_range: Sequence[float] = (2.0, 7.0),
        axis_weights: Sequence[float] = (0.2, 0.2, 0.6),
        channel_prob: float = 0.8,
    ) -> None:
        MapTransform.__init__(self, keys)
        self.prob = float(prob)
        self.thickness_range = (float(thickness_range[0]), float(thickness_range[1]))
        weights = np.asarray(axis_weights, dtype=float)
        self.axis_probabilities = weights / weights.sum()
        self.channel_prob = float(channel_prob)
        self._apply = False
        self._axis = 2
        self._thickness = 1.0
        self._channels: Optional[np.ndarray] = None

    def randomize(self, data: Optional[object] = None) -> None:
        self._apply = self.R.rand() < self.prob
        self._axis = int(self.R.choice(3, p=self.axis_probabilities))
        self._thickness = float(self.R.uniform(*self.thickness_range))
        self._channels = self.R.rand(16) < self.channel_prob

    @staticmethod
    def thick_slices(volume: np.ndarray, axis: int, thickness: float) -> np.ndarray:
        """``volume`` (3-D) as if acquired in slabs of ``thickness`` voxels along ``axis``."""
        if thickness <= 1.0:
            return volume
        size = volume.shape[axis]
        slab = ndimage.uniform_filter1d(volume, size=max(int(round(thickness)), 1), axis=axis)
        samples = max(int(round(size / thickness)), 2)
        zoom_down = [1.0, 1.0, 1.0]
        zoom_down[axis] = samples / size
        coarse = ndimage.zoom(slab, zoom_down, order=1, grid_mode=True, mode="nearest")
        zoom_up = [1.0, 1.0, 1.0]
        zoom_up[axis] = size / coarse.shape[axis]
        fine = ndimage.zoom(coarse, zoom_up, order=1, grid_mode=True, mode="nearest")
        # zoom may be one voxel off after rounding: pad or cut back to the original size
        result = np.zeros_like(volume)
        common = tuple(slice(0, min(a, b)) for a, b in zip(volume.shape, fine.shape))
        result[common] = fine[common]
        return result

    def __call__(self, data: Mapping[Hashable, object]) -> Dict[Hashable, object]:
        result = dict(data)
        self.randomize()
        if not self._apply:
            return result
        for key in self.key_iterator(result):
            image = result[key]
            is_tensor = isinstance(image, torch.Tensor)
            array = image.detach().cpu().numpy() if is_tensor else np.asarray(image)
            degraded = np.array(array, dtype=np.float32, copy=True)
            for channel in range(array.shape[0]):
                if self._channels[channel % len(self._channels)]:
                    degraded[channel] = self.thick_slices(
                        degraded[channel], self._axis, self._thickness
                    )
            result[key] = torch.as_tensor(degraded) if is_tensor else degraded
        return result


class _KeepBackgroundZerod(Randomizable, MapTransform):
    """Zero the image outside the brain mask taken when the transform was made.

    Intensity augmentations (noise, blur, shifts) would otherwise make the background, which
    is exactly 0 in every input the engine gives the network, non-zero. It is
    ``Randomizable`` so that seeding the whole pipeline (``Compose.set_random_state``) seeds
    the inner transforms too.

    Args:
        inner: the intensity transforms to apply inside the brain.
    """

    def __init__(self, inner: Compose) -> None:
        MapTransform.__init__(self, keys="image")
        self.inner = inner

    def randomize(self, data: Optional[object] = None) -> None:
        """Nothing to draw here: the inner transforms draw their own parameters."""

    def set_random_state(self, seed=None, state=None):
        self.inner.set_random_state(seed=seed, state=state)
        return self

    def __call__(self, data: Mapping[Hashable, object]) -> Dict[Hashable, object]:
        image = data["image"]
        brain = torch.as_tensor(np.asarray(image) if not isinstance(image, torch.Tensor) else image)
        brain = (brain != 0).any(dim=0, keepdim=True)
        result = dict(self.inner(dict(data)))
        augmented = torch.as_tensor(result["image"])
        result["image"] = augmented * brain.to(augmented.dtype)
        return result


def _flips() -> list:
    """Flips along each axis, p = 0.5 each."""
    return [RandFlipd(keys=KEYS, prob=0.5, spatial_axis=axis) for axis in range(3)]


def _strong_steps(crop: List[int], thick_slices: float) -> list:
    """Spatial and intensity augmentation after the (enlarged) crop, nnU-Net style."""
    intensity = Compose(
        [
            RandScaleIntensityd(keys="image", factors=0.25, prob=0.5, channel_wise=True),
            RandShiftIntensityd(keys="image", offsets=0.2, prob=0.5, channel_wise=True),
            RandAdjustContrastd(keys="image", gamma=(0.7, 1.5), prob=0.3),
            RandGaussianSmoothd(
                keys="image",
                sigma_x=(0.5, 1.0),
                sigma_y=(0.5, 1.0),
                sigma_z=(0.5, 1.0),
                prob=0.15,
            ),
            RandGaussianNoised(keys="image", mean=0.0, std=0.1, prob=0.15),
            RandThickSlicesd(keys="image", prob=thick_slices),
        ]
    )
    return [
        RandAffined(
            keys=KEYS,
            spatial_size=crop,
            prob=0.4,
            rotate_range=(np.pi / 12,) * 3,
            scale_range=(0.15,) * 3,
            mode=("bilinear", "nearest"),
            padding_mode="zeros",
        ),
        CenterSpatialCropd(keys=KEYS, roi_size=crop),
        LabelsToRegionsd(keys="label"),
        *_flips(),
        _KeepBackgroundZerod(intensity),
    ]


def training_transforms(
    crop_size: Union[int, Sequence[int]] = 128,
    crops_per_case: int = 2,
    positive_fraction: float = 2.0 / 3.0,
    intensity_scale: float = 0.1,
    intensity_shift: float = 0.1,
    augmentation: str = "basic",
    thick_slices: float = THICK_SLICES_PROB,
) -> Compose:
    """Random tumour-biased crops with flips and intensity jitter (``basic``) or more.

    Steps: crop to the brain's bounding box; pad to at least ``crop_size``;
    ``crops_per_case`` random crops, each centred on a tumour voxel with probability
    ``positive_fraction`` (else on any voxel); labels -> WT/TC/ET channels; flips along each
    axis (p = 0.5 each); per-channel intensity scale ``1 + U(-s, s)`` and shift ``U(-o, o)``
    (in units of the z-scored intensities).

    ``strong`` (for few real cases, after nnU-Net's augmentation): the random crop is taken
    1.25 times larger, then rotated (up to 15 degrees about each axis) and scaled
    (0.85-1.15) with p = 0.4 and cut to ``crop_size`` around its centre; flips; inside the
    brain, per-channel brightness (x0.75-1.25, p = 0.5) and shift (+-0.2, p = 0.5), gamma
    (0.7-1.5, p = 0.3), Gaussian blur (sigma 0.5-1 voxel, p = 0.15), Gaussian noise (sigma 0.1,
    p = 0.15) and simulated thick slices (2-7 mm along one axis, p = ``thick_slices``,
    :class:`RandThickSlicesd`); the background stays exactly 0.

    Args:
        crop_size: crop edge in voxels (128 for training, as in the paper).
        crops_per_case: crops drawn from each case per visit; the transform returns a list.
        positive_fraction: share of crops centred on tumour (cases without tumour fall back
            to random crops).
        intensity_scale: ``s`` above.
        intensity_shift: ``o`` above.

        augmentation: ``basic`` or ``strong``.
        thick_slices: probability of a simulated thick-slice acquisition (``strong`` only).

    Returns:
        A MONAI ``Compose`` returning a list of ``crops_per_case`` dictionaries.
    """
    if augmentation not in AUGMENTATIONS:
        raise ValueError(f"augmentation {augmentation!r}: use one of {', '.join(AUGMENTATIONS)}")
    positive = max(positive_fraction, 0.0)
    negative = max(1.0 - positive_fraction, 0.0)
    crop = [int(crop_size)] * 3 if np.isscalar(crop_size) else [int(c) for c in crop_size]
    # the strong variant crops larger, so that rotation and scaling bring in no padding
    first_crop = [int(round(c * 1.25)) for c in crop] if augmentation == "strong" else crop
    if augmentation == "strong":
        augment = _strong_steps(crop, thick_slices)
    else:
        augment = [
            LabelsToRegionsd(keys="label"),
            *_flips(),
            RandScaleIntensityd(keys="image", factors=intensity_scale, prob=1.0, channel_wise=True),
            RandShiftIntensityd(keys="image", offsets=intensity_shift, prob=1.0, channel_wise=True),
        ]
    return Compose(
        [
            _AddChannel(keys="label"),
            CropForegroundd(keys=KEYS, source_key="image", select_fn=is_brain, margin=2),
            SpatialPadd(keys=KEYS, spatial_size=first_crop),
            RandCropByPosNegLabeld(
                keys=KEYS,
                label_key="label",
                spatial_size=first_crop,
                pos=positive,
                neg=negative,
                num_samples=crops_per_case,
                allow_smaller=True,
            ),
            *augment,
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
