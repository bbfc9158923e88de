"""Brain extraction on real heads with skull and scalp, and its use in the engine.

The heads are the three real scans of ``../shared/data/raw-heads`` (a post-contrast T1 of a
tumor patient, a 2-D axial proton-density scan and a thick-slice sagittal T1); the BraTS
cases are skull-stripped already.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
from EoFormerSegmentationLib.brain_extraction import (
    BrainMask,
    check_brain_mask,
    extract_brain,
    looks_skull_stripped,
)
from EoFormerSegmentationLib.errors import InputError
from EoFormerSegmentationLib.geometry import image_to_array, network_grid, resample_onto

SHARED = Path(__file__).resolve().parents[3] / "shared" / "data"
RAW_HEADS = sorted((SHARED / "raw-heads").glob("*/*.nii.gz"))
BRATS_CASE = SHARED / "brats" / "BraTS2021_00014"


def _on_network_grid(path: Path) -> np.ndarray:
    image = sitk.ReadImage(str(path), sitk.sitkFloat32)
    return image_to_array(resample_onto(image, network_grid(image)))


def test_the_three_raw_heads_are_found():
    assert len(RAW_HEADS) == 3, f"expected three raw heads under {SHARED / 'raw-heads'}"


@pytest.mark.parametrize("path", RAW_HEADS, ids=lambda p: p.parent.name.split("__")[-1])
def test_a_real_head_is_recognised_and_its_brain_extracted(path):
    head = _on_network_grid(path)
    assert not looks_skull_stripped(head, 0.001)
    brain = check_brain_mask(extract_brain(head, source="t1"))
    # an adult brain, well inside the head and not the whole head
    assert 1200 <= brain.volume_ml <= 1900, brain.volume_ml
    head_ml = np.count_nonzero(head) / 1000.0
    assert brain.volume_ml < 0.7 * head_ml
    assert brain.warnings == []
    # one compact piece: the mask's centre of mass lies inside it
    centre = np.round(np.argwhere(brain.mask).mean(axis=0)).astype(int)
    assert brain.mask[tuple(centre)]


def test_a_skull_stripped_case_keeps_all_of_its_tumor():
    t1 = _on_network_grid(BRATS_CASE / "BraTS2021_00014_t1.nii.gz")
    label = sitk.ReadImage(str(BRATS_CASE / "BraTS2021_00014_seg.nii.gz"))
    tumor = image_to_array(
        resample_onto(label, network_grid(label), interpolator=sitk.sitkNearestNeighbor)
    )
    assert looks_skull_stripped(t1, 0.001)
    brain = extract_brain(t1, source="t1")
    whole_tumor = tumor > 0
    assert whole_tumor.sum() > 0
    assert np.count_nonzero(whole_tumor & ~brain.mask) == 0


def _mask(volume_ml: float, shape=(200, 200, 200), touching: bool = False) -> BrainMask:
    mask = np.zeros(shape, bool)
    side = int(round((volume_ml * 1000) ** (1 / 3)))
    start = 0 if touching else (shape[0] - side) // 2
    mask[start : start + side, 50 : 50 + side, 50 : 50 + side] = True
    return BrainMask(mask=mask, volume_ml=volume_ml, source="t1", seconds=0.0)


def test_a_failed_extraction_is_refused_with_the_sequence_named():
    with pytest.raises(InputError, match=r"t1: brain extraction failed \(brain volume 120 mL"):
        check_brain_mask(_mask(120))
    with pytest.raises(InputError, match="t1: brain extraction failed"):
        check_brain_mask(_mask(4000, shape=(220, 220, 220)))


def test_an_unusual_brain_volume_or_a_cut_brain_is_reported():
    small = check_brain_mask(_mask(700))
    assert any("700 mL" in warning for warning in small.warnings)
    cut = check_brain_mask(_mask(1500, touching=True))
    assert any("edge of the image" in warning for warning in cut.warnings)
