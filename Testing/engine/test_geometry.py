"""The output lands on the T1ce's grid, and at the right physical place, whatever the inputs'
grids: oblique directions, anisotropic voxels, a different size and spacing per sequence."""

from __future__ import annotations

import numpy as np
import pytest
import SimpleITK as sitk
from engine_cases import (
    brain_with_cube,
    bright_voxels_as_tumor,
    rasterise,
    rotation,
    segment_arguments,
    write_case,
)

CUBE_CENTRE_MM = (14.0, -10.0, 8.0)
CUBE_SIDE_MM = 28.0

MIXED_GRIDS = {
    # the reference: oblique, anisotropic (thick slices), not centred on the world origin
    "t1ce": {
        "size": (150, 150, 46),
        "spacing": (0.9, 0.9, 3.0),
        "direction": rotation(25.0, 12.0),
        "centre": (2.0, -3.0, 1.0),
    },
    "t1": {"size": (120, 120, 120), "spacing": (1.0, 1.0, 1.0), "direction": np.eye(3)},
    "t2": {"size": (100, 110, 90), "spacing": (1.25, 1.2, 1.4), "direction": rotation(-15.0, 0.0)},
    "flair": {"size": (66, 66, 66), "spacing": (2.0, 2.0, 2.0), "direction": rotation(5.0, -20.0)},
}


def physical_centroid(mask_image: sitk.Image) -> np.ndarray:
    mask = sitk.GetArrayViewFromImage(mask_image) > 0
    k, j, i = np.nonzero(mask)
    index = np.stack([i, j, k], axis=1).mean(axis=0)
    return np.array(mask_image.TransformContinuousIndexToPhysicalPoint(index.tolist()))


@pytest.fixture
def mixed_case(tmp_path):
    values = brain_with_cube(cube_centre_mm=CUBE_CENTRE_MM, cube_side_mm=CUBE_SIDE_MM)
    return write_case(tmp_path / "mixed", MIXED_GRIDS, values)


def test_output_has_exactly_the_t1ce_grid(mixed_case, tiny_model, tmp_path):
    from EoFormerSegmentationLib.cli import main

    output = tmp_path / "mixed.nii.gz"
    assert main(segment_arguments(mixed_case, output, tiny_model)) == 0
    label, t1ce = sitk.ReadImage(str(output)), sitk.ReadImage(str(mixed_case["t1ce"]))
    assert label.GetSize() == t1ce.GetSize()
    np.testing.assert_allclose(label.GetSpacing(), t1ce.GetSpacing(), atol=1e-6)
    np.testing.assert_allclose(label.GetOrigin(), t1ce.GetOrigin(), atol=1e-4)
    np.testing.assert_allclose(label.GetDirection(), t1ce.GetDirection(), atol=1e-6)


def test_a_cube_in_physical_space_comes_back_at_the_same_place(mixed_case, tiny_model, monkeypatch):
    from EoFormerSegmentationLib.engine import segment_files

    bright_voxels_as_tumor(monkeypatch)
    result = segment_files(
        *(mixed_case[s] for s in ("t1", "t1ce", "t2", "flair")), model_path=tiny_model
    )
    whole = result.regions["WT"]

    t1ce = sitk.ReadImage(str(mixed_case["t1ce"]))
    grid = MIXED_GRIDS["t1ce"]
    expected = rasterise(
        brain_with_cube(cube_centre_mm=CUBE_CENTRE_MM, cube_side_mm=CUBE_SIDE_MM), **grid
    )
    expected_mask = sitk.GetArrayViewFromImage(expected) > 500
    found_mask = sitk.GetArrayViewFromImage(whole) > 0
    assert whole.GetSize() == t1ce.GetSize()

    dice = 2 * (expected_mask & found_mask).sum() / (expected_mask.sum() + found_mask.sum())
    assert dice > 0.9
    # centroid within a quarter of a T1ce voxel along each of its axes: a half-voxel shift
    # (voxel corner taken for voxel centre somewhere on the way) must not pass
    offset_mm = physical_centroid(whole) - np.array(CUBE_CENTRE_MM)
    voxel_axes = np.asarray(t1ce.GetDirection()).reshape(3, 3) * t1ce.GetSpacing()
    assert np.all(np.abs(np.linalg.solve(voxel_axes, offset_mm)) < 0.25)
    # the cube's volume is kept (28 mm side: 21.95 mL)
    assert result.volumes_ml["WT"] == pytest.approx(CUBE_SIDE_MM**3 / 1000, rel=0.1)


def test_same_geometry_for_a_seg_nrrd_output(mixed_case, tiny_model, tmp_path):
    import slicerio
    from EoFormerSegmentationLib.cli import main

    output = tmp_path / "mixed.seg.nrrd"
    assert main(segment_arguments(mixed_case, output, tiny_model)) == 0
    segmentation = slicerio.read_segmentation(str(output))
    t1ce = sitk.ReadImage(str(mixed_case["t1ce"]))
    assert tuple(segmentation["voxels"].shape[-3:]) == t1ce.GetSize()
    # slicerio gives the IJK-to-LPS matrix of the voxel array
    ijk_to_lps = np.asarray(segmentation["ijkToLPS"])
    direction = np.asarray(t1ce.GetDirection()).reshape(3, 3)
    np.testing.assert_allclose(ijk_to_lps[:3, :3], direction * t1ce.GetSpacing(), atol=1e-4)
    np.testing.assert_allclose(ijk_to_lps[:3, 3], t1ce.GetOrigin(), atol=1e-3)
