"""CarveMix: a donor's tumour, with its label, pasted into another brain of the same atlas."""

from __future__ import annotations

import numpy as np
import pytest
from EoFormerSegmentationLib.labels import labels_to_regions
from EoFormerSegmentationLib.training.carvemix import carve_mix, donor_offset
from EoFormerSegmentationLib.training.datasets import CaseCropStream, LoadedCase


def _case(name: str, tumour_at, origin=(0.0, 0.0, 0.0), shape=(40, 40, 30), value=1.0):
    """A brain block (constant ``value`` per channel) with a layered tumour at ``tumour_at``."""
    image = np.zeros((4, *shape), np.float32)
    image[:, 2:-2, 2:-2, 2:-2] = value
    label = np.zeros(shape, np.uint8)
    x, y, z = tumour_at
    label[x - 5 : x + 5, y - 5 : y + 5, z - 5 : z + 5] = 2
    label[x - 3 : x + 3, y - 3 : y + 3, z - 3 : z + 3] = 1
    label[x - 1 : x + 1, y - 1 : y + 1, z - 1 : z + 1] = 4
    image[:, label == 4] = value + 5.0
    affine = np.eye(4)
    affine[:3, 3] = origin
    return LoadedCase(name=name, image=image, label=label, affine=affine)


def test_the_donor_tumour_arrives_with_its_label_and_nothing_else_changes():
    target = _case("target", (10, 10, 10))
    donor = _case("donor", (28, 28, 18), value=-1.0)
    before = target.image.copy(), target.label.copy()
    mixed = carve_mix(target, donor, np.random.default_rng(0), margin_mm=(3.0, 3.0))
    assert mixed is not None and mixed["name"] == "target+donor"
    # the inputs are left alone
    np.testing.assert_array_equal(target.image, before[0])
    np.testing.assert_array_equal(target.label, before[1])
    # both tumours are labelled, each exactly as in its own case
    np.testing.assert_array_equal(mixed["label"][5:15, 5:15, 5:15], target.label[5:15, 5:15, 5:15])
    np.testing.assert_array_equal(
        mixed["label"][23:33, 23:33, 13:23], donor.label[23:33, 23:33, 13:23]
    )
    # the image changed only within 3 mm of the donor's tumour, and there it is the donor's
    changed = np.any(mixed["image"] != target.image, axis=0)
    donor_tumour = donor.label > 0
    assert changed[donor_tumour].all()
    xs, ys, zs = np.nonzero(changed)
    assert xs.min() >= 23 - 3 and xs.max() <= 32 + 3 and zs.min() >= 13 - 3 and zs.max() <= 22 + 3
    np.testing.assert_array_equal(mixed["image"][:, changed], donor.image[:, changed])
    # the regions stay nested, as the loss expects
    whole, core, enhancing = labels_to_regions(mixed["label"])
    assert not (core & ~whole).any() and not (enhancing & ~core).any()


def test_grids_shifted_by_whole_voxels_are_lined_up_in_world_space():
    target = _case("target", (10, 10, 10))
    # the donor's array starts 4 voxels further right: its voxel i is the target's i + 4
    donor = _case("donor", (20, 25, 15), origin=(4.0, 0.0, 0.0))
    np.testing.assert_array_equal(donor_offset(target, donor), [4, 0, 0])
    mixed = carve_mix(target, donor, np.random.default_rng(1), margin_mm=(0.0, 0.0))
    assert mixed is not None
    np.testing.assert_array_equal(mixed["label"][24, 25, 15], donor.label[20, 25, 15])
    assert np.count_nonzero(mixed["label"] == 4) == 2 * np.count_nonzero(donor.label == 4)


def test_the_background_stays_zero_where_the_donor_tumour_leaves_the_target_brain():
    target = _case("target", (10, 10, 10))
    donor = _case("donor", (6, 30, 15), shape=(40, 40, 30))
    target.image[:, :10] = 0  # the target's brain ends at x = 10
    mixed = carve_mix(target, donor, np.random.default_rng(2), margin_mm=(5.0, 5.0))
    assert mixed is not None
    assert not np.any(mixed["image"][:, :10])
    assert not np.any(mixed["label"][:10, 25:35])


@pytest.mark.parametrize(
    "donor_change, why",
    [
        (lambda case: setattr(case, "label", None), "unlabelled donor"),
        (lambda case: case.label.fill(0), "donor without tumour"),
        (lambda case: case.affine.__setitem__((0, 0), 2.0), "other spacing"),
        (lambda case: case.affine.__setitem__((0, 3), 0.5), "half-voxel shift"),
    ],
)
def test_cases_that_cannot_be_mixed_are_left_as_they_are(donor_change, why):
    target = _case("target", (10, 10, 10))
    donor = _case("donor", (28, 28, 18))
    donor_change(donor)
    assert carve_mix(target, donor, np.random.default_rng(0)) is None, why


def test_the_crop_stream_mixes_about_the_asked_share_of_cases_reproducibly():
    cases = [_case(f"case{i}", (10 + 3 * i, 12, 12)) for i in range(4)]

    def names(probability):
        stream = CaseCropStream(cases, lambda data: [data], carvemix=probability, seed=7)
        return [stream.case_at(index)["name"] for index in range(200)]

    mixed = [name for name in names(0.5) if "+" in name]
    assert 60 <= len(mixed) <= 140
    assert all(name.split("+")[0] != name.split("+")[1] for name in mixed)
    assert names(0.5) == names(0.5)
    assert not any("+" in name for name in names(0.0))
