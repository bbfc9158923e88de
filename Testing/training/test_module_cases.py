"""Case folders written by the Slicer module: four volumes and a .seg.nrrd with WT/TC/ET."""

from __future__ import annotations

import numpy as np
import pytest
import SimpleITK as sitk
import slicerio
from EoFormerSegmentationLib.errors import InputError
from EoFormerSegmentationLib.labels import SEGMENTS, labels_to_regions
from EoFormerSegmentationLib.training.datasets import discover_cases, load_case
from tiny_cases import tiny_case_arrays


def write_module_case(folder, arrays, segmentation_box=None, regions=("WT", "TC", "ET")):
    """Volumes as NRRD (LPS axes, 1 mm) and the tumour as an overlapping-segment .seg.nrrd.

    ``segmentation_box``: (start, stop) voxel corners of a cropped segmentation extent, as
    Slicer writes segmentations that cover only part of the reference volume.
    """
    folder.mkdir(parents=True)
    for sequence in ("t1", "t1ce", "t2", "flair"):
        image = sitk.GetImageFromArray(arrays[sequence].transpose(2, 1, 0))  # array is [x, y, z]
        sitk.WriteImage(image, str(folder / f"{sequence}.nrrd"))
    masks = labels_to_regions(arrays["seg"])
    start, stop = segmentation_box or ((0, 0, 0), arrays["seg"].shape)
    box = tuple(slice(a, b) for a, b in zip(start, stop))
    ijk_to_lps = np.eye(4)
    ijk_to_lps[:3, 3] = start
    segmentation = slicerio.create_segmentation(
        tuple(b - a for a, b in zip(start, stop)), ijk_to_lps
    )
    for segment, mask in zip(SEGMENTS, masks):
        if segment["id"] in regions:
            slicerio.add_segment(
                segmentation,
                mask[box],
                {"id": segment["id"], "name": segment["name"], "color": list(segment["color"])},
            )
    slicerio.write_segmentation(str(folder / "Segmentation.seg.nrrd"), segmentation)
    return folder


@pytest.mark.parametrize("cropped", [False, True])
def test_module_case_converts_segments_to_brats_labels(tmp_path, cropped):
    arrays = tiny_case_arrays(seed=4)
    label = arrays["seg"]
    tumour = np.argwhere(label > 0)
    box = (tuple(tumour.min(0) - 1), tuple(tumour.max(0) + 2)) if cropped else None
    folder = write_module_case(tmp_path / "case_from_slicer", arrays, segmentation_box=box)

    (case,) = discover_cases(tmp_path)
    assert case.name == "case_from_slicer" and case.label.name == "Segmentation.seg.nrrd"
    loaded = load_case(case, crop_to_brain=False)
    # the volumes' LPS axes come back in RAS order: x and y reversed
    expected = label[::-1, ::-1, :]
    assert loaded.label.shape == expected.shape
    # NCR = TC - ET -> 1, ED = WT - TC -> 2, ET -> 4 (BraTS 2020)
    np.testing.assert_array_equal(loaded.label, expected)
    assert set(np.unique(loaded.label)) == {0, 1, 2, 4}
    t1ce = loaded.image[1]
    assert t1ce[expected == 4].mean() > t1ce[expected == 2].mean() + 1
    assert folder.is_dir()


def test_module_case_without_tumour_segments_is_refused(tmp_path):
    arrays = tiny_case_arrays(seed=4)
    write_module_case(tmp_path / "case_from_slicer", arrays, regions=())
    (case,) = discover_cases(tmp_path)
    with pytest.raises(InputError, match="case_from_slicer.*no Whole tumor"):
        load_case(case)
