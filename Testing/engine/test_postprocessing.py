"""Post-processing: nesting, removal of specks, and a tiny ET handed over to the core."""

from __future__ import annotations

import numpy as np
from EoFormerSegmentationLib.postprocessing import PostprocessingSettings, postprocess_regions

VOXEL_ML = 0.001  # 1 mm voxels


def probabilities_with(**regions) -> np.ndarray:
    probabilities = np.zeros((3, 40, 40, 40), np.float32)
    for index, name in enumerate(("WT", "TC", "ET")):
        for box in regions.get(name, []):
            probabilities[index][box] = 0.9
    return probabilities


BIG = (slice(5, 30), slice(5, 30), slice(5, 30))  # 15.6 mL
CORE = (slice(10, 25), slice(10, 25), slice(10, 25))  # 3.4 mL
SPECK = (slice(35, 37), slice(35, 37), slice(35, 37))  # 8 voxels, 0.008 mL


def test_inner_regions_are_nested_in_outer_ones():
    # ET voxels confidently predicted outside TC and WT belong to all three
    outside = (slice(2, 10), slice(2, 10), slice(2, 10))  # 0.512 mL, partly outside BIG
    probabilities = probabilities_with(WT=[BIG], TC=[CORE], ET=[outside])
    whole, core, enhancing = postprocess_regions(probabilities, VOXEL_ML)
    assert enhancing[outside].all() and core[outside].all() and whole[outside].all()
    assert not (enhancing & ~core).any()
    assert not (core & ~whole).any()


def test_specks_are_removed_with_everything_inside_them():
    whole, core, enhancing = postprocess_regions(
        probabilities_with(WT=[BIG, SPECK], TC=[CORE, SPECK], ET=[CORE]), VOXEL_ML
    )
    assert not whole[SPECK].any() and not core[SPECK].any()
    assert whole[BIG].all()


def test_a_tiny_enhancing_tumor_becomes_necrotic_core():
    small_enhancing = (slice(12, 18), slice(12, 18), slice(12, 18))  # 0.216 mL < 0.3 mL
    probabilities = probabilities_with(WT=[BIG], TC=[CORE], ET=[small_enhancing])
    whole, core, enhancing = postprocess_regions(probabilities, VOXEL_ML)
    assert not enhancing.any()
    assert core[small_enhancing].all()  # still tumor core, i.e. NCR

    kept = postprocess_regions(
        probabilities, VOXEL_ML, PostprocessingSettings(min_enhancing_ml=0.0)
    )[2]
    assert kept[small_enhancing].all()


def test_a_large_enhancing_tumor_is_kept():
    whole, core, enhancing = postprocess_regions(
        probabilities_with(WT=[BIG], TC=[CORE], ET=[CORE]), VOXEL_ML
    )
    assert enhancing[CORE].all()
    assert enhancing.sum() == 15**3
