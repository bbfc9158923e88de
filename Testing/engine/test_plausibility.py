"""Implausible results (a huge whole tumor, a tumor running along the image's edge) are
written, but never silently: a warning in the command's output and in the report's notes."""

from __future__ import annotations

import json

import numpy as np
from engine_cases import brain_with_cube, segment_arguments, write_case
from EoFormerSegmentationLib.cli import main
from EoFormerSegmentationLib.postprocessing import PlausibilityLimits, plausibility_warnings

VOXEL_ML = 0.001  # 1 mm voxels


def masks_with(whole: np.ndarray) -> np.ndarray:
    return np.stack([whole, np.zeros_like(whole), np.zeros_like(whole)])


def test_a_tumor_inside_the_brain_gets_no_warning():
    whole = np.zeros((100, 100, 80), bool)
    whole[30:60, 30:60, 20:50] = True  # 27 mL, away from the edges
    assert plausibility_warnings(masks_with(whole), VOXEL_ML) == []


def test_a_whole_tumor_over_400_ml_is_implausible():
    whole = np.zeros((120, 120, 100), bool)
    whole[10:-10, 10:-10, 10:-10] = True  # 100 x 100 x 80 voxels = 800 mL
    warnings = plausibility_warnings(masks_with(whole), VOXEL_ML)
    assert len(warnings) == 1
    assert "800 mL" in warnings[0] and "skull" in warnings[0]


def test_a_tumor_along_the_image_edge_is_implausible():
    whole = np.zeros((100, 100, 80), bool)
    whole[0:3, 20:80, 10:40] = True  # a rim of "scalp" on the x = 0 face, 30 slices high
    warnings = plausibility_warnings(masks_with(whole), VOXEL_ML)
    assert len(warnings) == 1
    assert "edge of the image on 60 slices" in warnings[0]


def test_a_tumor_touching_the_edge_on_a_few_slices_is_plausible():
    whole = np.zeros((100, 100, 80), bool)
    whole[0:10, 45:50, 40:45] = True  # a tumor cut by a tight field of view: 5 slices
    assert plausibility_warnings(masks_with(whole), VOXEL_ML) == []


def test_the_limits_can_be_changed():
    whole = np.zeros((40, 40, 40), bool)
    whole[5:35, 5:35, 5:35] = True  # 27 mL
    limits = PlausibilityLimits(max_whole_tumor_ml=20.0)
    assert "27 mL" in plausibility_warnings(masks_with(whole), VOXEL_ML, limits)[0]


def test_segment_warns_in_its_output_and_report(tmp_path, tiny_model, monkeypatch, capsys):
    """A head-sized image in which the network marks nearly everything as tumor."""
    from EoFormerSegmentationLib import engine

    def everything_is_tumor(loaded, volume, *arguments, **keywords):
        return np.ones((3, *volume.shape[1:]), np.float32), "cpu"

    monkeypatch.setattr(engine, "_run_network", everything_is_tumor)
    grid = {"size": (50, 50, 40), "spacing": (2.0, 2.0, 2.0), "direction": np.eye(3)}
    case = write_case(
        tmp_path / "case",
        {sequence: grid for sequence in ("t1", "t1ce", "t2", "flair")},
        brain_with_cube(brain_radius_mm=60.0, cube_side_mm=20.0, cube_centre_mm=(0, 0, 0)),
    )
    output, report = tmp_path / "case.nii.gz", tmp_path / "report.json"

    status = main(segment_arguments(case, output, tiny_model, "--json", str(report)))

    assert status == 0 and output.is_file()
    message = capsys.readouterr().err
    notes = json.loads(report.read_text())["notes"]
    assert any("implausible" in note and "mL" in note for note in notes)
    assert any("edge of the image" in note for note in notes)
    for note in notes:
        assert note in message
