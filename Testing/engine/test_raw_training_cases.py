"""Training cases that look like raw scans: a real labelled case placed into a real head,
acquired with a random clinical protocol, then prepared by the engine as it prepares any scan.

The network learns from what it will be given only if the label stays on the tumor through
every step: the head, the acquisition, the registration and the brain extraction.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
from EoFormerSegmentationLib.engine import prepare_images
from EoFormerSegmentationLib.errors import InputError
from EoFormerSegmentationLib.training.datasets import find_case_files, load_case

REPOSITORY = Path(__file__).resolve().parents[2]
SHARED = REPOSITORY.parent / "shared" / "data"
CASE = SHARED / "brats" / "BraTS2021_00031"
PD_HEAD = SHARED / "raw-heads" / "niivue__niivue-demo-images__chris_PD" / "chris_PD.nii.gz"

sys.path.insert(0, str(REPOSITORY / "tools"))
import simulate_raw_cases as simulate  # noqa: E402


@pytest.fixture(scope="module")
def prepared_case(tmp_path_factory):
    images, label, name = simulate.read_case(CASE)
    protocol = simulate.random_acquisitions(np.random.default_rng(3))
    acquired, carried, on_head_grid = simulate.raw_case(images, [label], PD_HEAD, protocol)
    folder = tmp_path_factory.mktemp("raw") / f"{name}_raw"
    prepared = simulate.write_prepared(folder, acquired, on_head_grid)
    return protocol, acquired, on_head_grid[0], folder, prepared


def test_a_random_protocol_is_a_clinical_one():
    for seed in range(20):
        protocol = simulate.random_acquisitions(np.random.default_rng(seed))
        assert set(protocol) == {"t1", "t1ce", "t2", "flair"}
        for spacing, tilt, (about_z, about_x, shift) in protocol.values():
            assert max(spacing) <= 7.0 and min(spacing) >= 0.45
            assert abs(tilt) <= 10 and abs(about_z) <= 5 and abs(about_x) <= 5
            assert np.all(np.abs(shift) <= 4)
        # the T1ce is a 2-D acquisition of thick slabs, never moved: the reference follows it
        assert max(protocol["t1ce"][0]) >= 3.0
        assert protocol["t1ce"][2] == (0.0, 0.0, [0.0, 0.0, 0.0])


def test_the_prepared_case_is_what_the_engine_gives_the_network(prepared_case):
    _, acquired, _, folder, prepared = prepared_case
    # the scans were acquired on grids of their own, with the skull on
    assert len({image.GetSpacing() for image in acquired.values()}) > 1
    files = find_case_files(folder)
    case = load_case(files)
    assert case.image.shape[0] == 4
    # registration and brain extraction ran, as in `eoformer segment`
    assert set(prepared.processing["registration"]) == {"t1", "t2", "flair"}
    assert 1000 <= prepared.processing["brain_extraction"]["brain_volume_ml"] <= 2000
    t1ce = sitk.ReadImage(str(folder / "t1ce.nii.gz"))
    assert t1ce.GetSpacing() == pytest.approx((1.0, 1.0, 1.0))
    written = sitk.GetArrayFromImage(t1ce)
    # zero outside the extracted brain, which fills a brain-sized part of the file only
    assert 0.9 <= np.count_nonzero(written) / 1e3 / prepared.brain.volume_ml <= 1.1


def test_the_label_stays_on_the_tumor(prepared_case):
    _, _, label_on_head_grid, folder, _ = prepared_case
    case = load_case(find_case_files(folder))
    tumor = case.label > 0
    # every voxel of the tumor carried into the head survives the brain extraction
    carried_ml = np.count_nonzero(sitk.GetArrayViewFromImage(label_on_head_grid)) / 1e3
    assert tumor.sum() / 1e3 == pytest.approx(carried_ml, rel=0.02)
    flair = case.image[3]  # z-scored over the brain
    inside = flair[tumor].mean()
    outside = flair[(~tumor) & (flair != 0)].mean()
    # the edema of this case is bright on FLAIR: the label sits on it, not beside it
    assert inside > outside + 1.0, (inside, outside)


def test_the_brain_keeps_its_own_voxels_inside_the_head(prepared_case):
    # the head is fitted around the case's brain: before acquisition, the brain (and its label)
    # is on its own 1 mm grid, widened but never resampled, so the only resampling of the
    # answer is the acquisition itself, as on a scanner
    _, _, label_on_head_grid, _, _ = prepared_case
    images, label, _ = simulate.read_case(CASE)
    original = sitk.GetArrayFromImage(label)
    assert label_on_head_grid.GetSpacing() == pytest.approx(label.GetSpacing())
    back = sitk.Resample(label_on_head_grid, label, sitk.Transform(), sitk.sitkNearestNeighbor)
    assert np.array_equal(sitk.GetArrayFromImage(back), original)
    assert np.count_nonzero(sitk.GetArrayViewFromImage(label_on_head_grid)) == np.count_nonzero(
        original
    )
    # and the head around it: the widened grid holds more than the brain's box
    assert np.prod(label_on_head_grid.GetSize()) > np.prod(label.GetSize())


def test_prepare_images_refuses_an_unknown_mode(prepared_case):
    _, acquired, _, _, _ = prepared_case
    with pytest.raises(InputError, match="skull-strip"):
        prepare_images(dict(acquired), skull_strip="sometimes")


def test_a_raw_looking_case_is_traced_back_to_the_case_it_was_made_from():
    for variants in (1, 3):
        for variant in range(variants):
            name = simulate.raw_case_name("BraTS2021_00031", variant, variants)
            assert simulate.original_case(name) == "BraTS2021_00031"
    assert simulate.original_case("BraTS2021_00031") is None
    assert simulate.original_case("BraTS2021_00031_thick5mm") is None


def test_training_heads_leave_out_the_non_commercial_one():
    # a model trained on these cases is shipped: a CC BY-NC head must not be among them
    heads = simulate.shippable_heads()
    assert PD_HEAD not in heads
    assert len(heads) == 2 and all(head.is_file() for head in heads)


def test_the_fixed_protocols_leave_out_what_they_say():
    assert simulate.fixed_protocol("clinical") == simulate.ACQUISITIONS
    isotropic = simulate.fixed_protocol("isotropic")
    axial = simulate.fixed_protocol("axial", thickness=3.0)
    for protocol, spacing in ((isotropic, (1.0, 1.0, 1.0)), (axial, (1.0, 1.0, 3.0))):
        assert set(protocol) == set(simulate.SEQUENCES)
        for acquired_spacing, tilt, (about_z, about_x, shift) in protocol.values():
            assert tuple(acquired_spacing) == spacing
            assert tilt == about_z == about_x == 0.0 and not any(shift)
    with pytest.raises(ValueError, match="unknown protocol"):
        simulate.fixed_protocol("oblique")
