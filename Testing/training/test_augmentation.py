"""The strong (few real cases) augmentation and the simulated thick slices."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from EoFormerSegmentationLib.training.transforms import RandThickSlicesd, training_transforms


def _case(shape=(70, 80, 60)) -> dict:
    """A brain-shaped block of noise with a layered tumor (ET inside NCR inside edema)."""
    rng = np.random.default_rng(0)
    image = np.zeros((4, *shape), np.float32)
    image[:, 5:-5, 5:-5, 5:-5] = rng.normal(size=(4, shape[0] - 10, shape[1] - 10, shape[2] - 10))
    label = np.zeros(shape, np.uint8)
    label[20:50, 20:50, 15:45] = 2
    label[27:43, 27:43, 22:38] = 1
    label[31:39, 31:39, 26:34] = 4
    return {"image": image, "label": label, "name": "block"}


def test_strong_augmentation_gives_crops_of_the_asked_size_with_nested_regions():
    transform = training_transforms(32, crops_per_case=4, augmentation="strong")
    transform.set_random_state(seed=3)
    for _ in range(3):
        for crop in transform(_case()):
            image, regions = crop["image"], crop["label"]
            assert tuple(image.shape) == (4, 32, 32, 32)
            assert tuple(regions.shape) == (3, 32, 32, 32)
            assert set(torch.unique(regions).tolist()) <= {0.0, 1.0}
            whole, core, enhancing = regions.bool()
            assert not (core & ~whole).any() and not (enhancing & ~core).any()
            assert torch.isfinite(image).all()


def test_strong_augmentation_keeps_the_background_exactly_zero():
    case = _case()
    transform = training_transforms(64, crops_per_case=6, augmentation="strong")
    zero_voxels = 0
    for seed in range(4):
        transform.set_random_state(seed=seed)
        for crop in transform(case):
            outside = (crop["image"] == 0).all(dim=0)
            zero_voxels += int(outside.sum())
            # noise and shifts act inside the brain only: no voxel of the background turns
            # non-zero in some channels. Only a simulated thick slab may leave the odd voxel
            # at the brain's edge at 0 in the channel it degraded (the slab beyond was empty).
            partly = ((crop["image"] == 0).any(dim=0)) & ~outside
            assert int(partly.sum()) <= 1e-3 * int((~outside).sum())
    assert zero_voxels > 0


def test_seeding_the_pipeline_seeds_the_intensity_augmentations():
    transform = training_transforms(32, crops_per_case=2, augmentation="strong")
    crops = []
    for _ in range(2):
        np.random.seed(len(crops))  # a different global state each time must not matter
        transform.set_random_state(seed=11)
        crops.append([crop["image"] for crop in transform(_case())])
    for first, second in zip(*crops):
        assert torch.equal(first, second)


def test_an_unknown_augmentation_is_refused():
    with pytest.raises(ValueError, match="augmentation 'heavy'"):
        training_transforms(32, augmentation="heavy")


def test_thick_slices_blur_along_one_axis_only():
    rng = np.random.default_rng(1)
    volume = rng.normal(size=(40, 40, 40)).astype(np.float32)
    thick = RandThickSlicesd.thick_slices(volume, axis=2, thickness=5.0)
    assert thick.shape == volume.shape
    # along z neighbouring voxels are now strongly correlated, along x they are not
    along_z = np.corrcoef(thick[:, :, :-1].ravel(), thick[:, :, 1:].ravel())[0, 1]
    along_x = np.corrcoef(thick[:-1].ravel(), thick[1:].ravel())[0, 1]
    assert along_z > 0.8
    assert abs(along_x) < 0.1
    assert np.array_equal(RandThickSlicesd.thick_slices(volume, 2, 1.0), volume)


def test_thick_slices_leave_the_label_alone():
    transform = RandThickSlicesd(keys="image", prob=1.0, channel_prob=1.0)
    transform.set_random_state(seed=0)
    case = _case()
    out = transform({"image": case["image"].copy(), "label": case["label"].copy()})
    assert np.array_equal(out["label"], case["label"])
    assert not np.array_equal(out["image"], case["image"])
