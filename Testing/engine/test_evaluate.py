"""``eoformer evaluate`` against the BraTS organisers' evaluation package (panoptica), with the
BraTS conventions for empty regions."""

from __future__ import annotations

import json

import numpy as np
import pytest
import SimpleITK as sitk
from EoFormerSegmentationLib.cli import main
from EoFormerSegmentationLib.labels import labels_to_regions
from EoFormerSegmentationLib.metrics import EMPTY_HD95_MM, evaluate_labels

SPACING = (1.0, 1.2, 2.0)


def ellipsoid(shape, centre, radii) -> np.ndarray:
    grid = np.indices(shape).astype(float)
    distance = sum(((grid[a] - centre[a]) / radii[a]) ** 2 for a in range(3))
    return distance <= 1.0


def brats_label(shape, centre, radii, with_enhancing=True, enhancing_value=4) -> np.ndarray:
    """Edema around a core; the core's rim enhancing (or not)."""
    label = np.zeros(shape, np.uint8)
    label[ellipsoid(shape, centre, [r * 1.6 for r in radii])] = 2
    core = ellipsoid(shape, centre, radii)
    label[core] = 1
    if with_enhancing:
        label[core & ~ellipsoid(shape, centre, [r * 0.6 for r in radii])] = enhancing_value
    return label


PAIRS = {
    "shifted": (
        brats_label((64, 60, 40), (30, 30, 20), (9, 8, 5)),
        brats_label((64, 60, 40), (33, 28, 21), (10, 7, 5)),
    ),
    "no ET in the prediction": (
        brats_label((64, 60, 40), (30, 30, 20), (9, 8, 5), with_enhancing=False),
        brats_label((64, 60, 40), (31, 30, 20), (9, 8, 6)),
    ),
    "two lesions, ET as 3 in the reference": (
        np.maximum(
            brats_label((64, 60, 40), (20, 20, 20), (6, 6, 4)),
            brats_label((64, 60, 40), (45, 40, 20), (5, 6, 4)),
        ),
        brats_label((64, 60, 40), (21, 21, 19), (6, 5, 4), enhancing_value=3),
    ),
}


def panoptica_scores(prediction: np.ndarray, reference: np.ndarray) -> dict:
    from panoptica.metrics import Metric

    scores = {}
    for index, region in enumerate(("WT", "TC", "ET")):
        predicted = labels_to_regions(prediction)[index]
        expected = labels_to_regions(reference)[index]
        scores[region] = {
            "dice": Metric.DSC(expected, predicted),
            "hd95": Metric.HD95(expected, predicted, voxelspacing=SPACING)
            if predicted.any() and expected.any()
            else None,
        }
    return scores


@pytest.mark.parametrize("name", list(PAIRS))
def test_dice_and_hd95_agree_with_panoptica(name):
    prediction, reference = PAIRS[name]
    ours = evaluate_labels(prediction, reference, SPACING)
    theirs = panoptica_scores(prediction, reference)
    for region in ("WT", "TC", "ET"):
        assert ours[region]["dice"] == pytest.approx(theirs[region]["dice"], abs=1e-6)
        if theirs[region]["hd95"] is None:  # one side empty: the BraTS penalty
            assert ours[region]["hd95"] == pytest.approx(EMPTY_HD95_MM)
        else:
            assert ours[region]["hd95"] == pytest.approx(theirs[region]["hd95"], abs=1e-6)


def test_empty_regions_follow_brats_conventions():
    empty = np.zeros((20, 20, 20), np.uint8)
    no_enhancing = empty.copy()
    no_enhancing[5:10, 5:10, 5:10] = 1
    both_empty = evaluate_labels(no_enhancing, no_enhancing, (1, 1, 1))["ET"]
    assert both_empty == {"dice": 1.0, "hd95": 0.0}
    one_empty = evaluate_labels(empty, no_enhancing, (1, 1, 1))["TC"]
    assert one_empty == {"dice": 0.0, "hd95": pytest.approx(373.13)}


def write_label(path, label) -> str:
    image = sitk.GetImageFromArray(label)
    image.SetSpacing(SPACING[::-1])  # numpy (z, y, x) order -> ITK (x, y, z)
    sitk.WriteImage(image, str(path))
    return str(path)


def test_evaluate_command_prints_and_writes_the_scores(tmp_path, capsys):
    prediction, reference = PAIRS["two lesions, ET as 3 in the reference"]
    report = tmp_path / "scores.json"
    arguments = [
        "evaluate",
        "--pred",
        write_label(tmp_path / "pred.nii.gz", prediction),
        "--ref",
        write_label(tmp_path / "ref.nii.gz", reference),
        "--json",
        str(report),
    ]
    assert main(arguments) == 0
    printed = capsys.readouterr().out
    written = json.loads(report.read_text())
    expected = evaluate_labels(
        prediction.transpose(2, 1, 0), reference.transpose(2, 1, 0), SPACING[::-1]
    )
    for region in ("WT", "TC", "ET"):
        assert region in printed
        assert written["scores"][region]["dice"] == pytest.approx(expected[region]["dice"])
        assert written["scores"][region]["hd95"] == pytest.approx(expected[region]["hd95"])


def test_evaluate_refuses_labels_outside_the_conventions(tmp_path, capsys):
    reference = PAIRS["shifted"][1]
    wrong = reference.copy()
    wrong[0, 0, 0] = 7
    bad = write_label(tmp_path / "pred.nii.gz", wrong)
    status = main(
        ["evaluate", "--pred", bad, "--ref", write_label(tmp_path / "r.nii.gz", reference)]
    )
    assert status == 2
    assert bad in capsys.readouterr().err


def test_evaluate_report_never_replaces_the_reference(tmp_path, capsys):
    prediction, reference = PAIRS["shifted"]
    reference_file = write_label(tmp_path / "ref.nii.gz", reference)
    before = (tmp_path / "ref.nii.gz").read_bytes()
    arguments = [
        "evaluate",
        "--pred",
        write_label(tmp_path / "pred.nii.gz", prediction),
        "--ref",
        reference_file,
        "--json",
        reference_file,
    ]
    assert main(arguments) == 2
    assert reference_file in capsys.readouterr().err
    assert (tmp_path / "ref.nii.gz").read_bytes() == before
