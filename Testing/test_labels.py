"""BraTS label conventions: what a user's label files mean as regions and back."""

import numpy as np
import pytest
from EoFormerSegmentationLib.errors import InputError
from EoFormerSegmentationLib.labels import (
    SEGMENTS,
    check_label_values,
    labels_to_regions,
    regions_to_labels,
    segment_terminology,
)


def test_regions_of_brats2020_and_2023_labels_agree():
    label_2020 = np.array([0, 1, 2, 4, 4, 2], dtype=np.uint8)
    label_2023 = np.where(label_2020 == 4, 3, label_2020)
    for label in (label_2020, label_2023):
        whole, core, enhancing = labels_to_regions(label)
        assert whole.tolist() == [False, True, True, True, True, True]
        assert core.tolist() == [False, True, False, True, True, False]
        assert enhancing.tolist() == [False, False, False, True, True, False]


@pytest.mark.parametrize("convention,et", [("brats2020", 4), ("brats2023", 3)])
def test_labels_round_trip_through_regions(convention, et):
    rng = np.random.default_rng(0)
    label = rng.choice([0, 1, 2, et], size=(6, 7, 8)).astype(np.uint8)
    assert np.array_equal(regions_to_labels(labels_to_regions(label), convention), label)


def test_regions_are_nested_before_labelling():
    # ET outside TC and WT still counts as ET; TC outside WT as core.
    regions = np.zeros((3, 3), dtype=bool)
    regions[2, 0] = True  # ET only
    regions[1, 1] = True  # TC only
    regions[0, 2] = True  # WT only
    assert regions_to_labels(regions).tolist() == [4, 1, 2]


def test_bad_label_values_name_the_source():
    with pytest.raises(InputError, match="case7_seg.nii.gz.*5"):
        check_label_values(np.array([0, 1, 5]), "case7_seg.nii.gz")
    with pytest.raises(InputError, match="both 3 and 4"):
        check_label_values(np.array([0, 3, 4]), "mixed.nii.gz")
    check_label_values(np.array([0, 1, 2, 4]), "fine.nii.gz")


def test_segments_have_names_colors_and_terminology():
    assert [segment["name"] for segment in SEGMENTS] == [
        "Whole tumor",
        "Tumor core",
        "Enhancing tumor",
    ]
    for segment in SEGMENTS:
        assert all(0.0 <= channel <= 1.0 for channel in segment["color"])
        fields = segment_terminology(segment).split("~")
        assert len(fields) == 7
        assert fields[2] == "SCT^108369006^Neoplasm"
        assert segment["name"] in fields[3]
