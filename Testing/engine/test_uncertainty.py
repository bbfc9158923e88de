"""The uncertainty map: on the T1ce grid, high exactly where the answer is in doubt."""

from __future__ import annotations

import numpy as np
import pytest
import SimpleITK as sitk
from engine_cases import write_case
from EoFormerSegmentationLib.errors import InputError
from EoFormerSegmentationLib.uncertainty import (
    binary_entropy,
    uncertainty_map,
    uncertainty_summary,
)


def soft_bright_voxels_as_tumor(monkeypatch) -> None:
    """Stand-in network: probability rises smoothly with the normalised T1ce (sigmoid).

    Inside the bright cube the probability is near 1, in the brain near 0; only voxels whose
    intensity the resampling mixed (the cube's surface) get probabilities in between, so the
    known answer is: the doubt lies on the tumor's boundary and nowhere else.
    """
    from EoFormerSegmentationLib import engine

    def network(loaded, volume, *arguments, **keywords):
        t1ce = volume[1]
        probability = 1.0 / (1.0 + np.exp(-4.0 * (t1ce - 2.0)))
        probability[t1ce == 0] = 0.0
        return np.repeat(probability[None].astype(np.float32), 3, axis=0), "cpu"

    monkeypatch.setattr(engine, "_run_network", network)


def test_entropy_is_zero_when_sure_and_one_bit_at_a_coin_toss():
    values = binary_entropy(np.array([0.0, 1.0, 0.5, 0.11, 0.89]))
    assert values[0] == pytest.approx(0.0, abs=1e-5)
    assert values[1] == pytest.approx(0.0, abs=1e-5)
    assert values[2] == pytest.approx(1.0)
    assert values[3] == pytest.approx(0.5, abs=0.01)
    assert values[4] == pytest.approx(0.5, abs=0.01)


def test_summary_counts_uncertain_millilitres_and_a_confidence():
    probabilities = np.zeros((3, 10, 10, 10), np.float32)
    probabilities[:, 2:6, 2:6, 2:6] = 0.99  # 64 sure voxels
    probabilities[0, 6, 2:6, 2:6] = 0.5  # 16 doubtful WT voxels
    masks = probabilities > 0.5
    summary = uncertainty_summary(probabilities, masks, voxel_volume_ml=0.001)
    assert summary["WT"]["uncertain_ml"] == pytest.approx(0.016)
    assert summary["WT"]["confidence"] == pytest.approx(1 - 16 / 80, abs=1e-4)
    assert summary["ET"]["confidence"] == 1.0
    assert uncertainty_map(probabilities).shape == (10, 10, 10)


def test_segment_writes_the_map_on_the_t1ce_grid_with_doubt_on_the_boundary(
    tmp_path, tiny_model, monkeypatch
):
    from EoFormerSegmentationLib.engine import segment_files

    soft_bright_voxels_as_tumor(monkeypatch)
    # an anisotropic T1ce grid, the others at 1 mm
    paths = write_case(
        tmp_path / "case",
        grids={"t1ce": {"size": (40, 44, 20), "spacing": (1.2, 1.1, 2.5)}},
    )
    output = tmp_path / "seg.nii.gz"
    uncertainty = tmp_path / "uncertainty.nii.gz"
    result = segment_files(
        paths["t1"],
        paths["t1ce"],
        paths["t2"],
        paths["flair"],
        output,
        model_path=tiny_model,
        device="cpu",
        register="off",
        uncertainty_output=uncertainty,
    )
    written = sitk.ReadImage(str(uncertainty))
    t1ce = sitk.ReadImage(str(paths["t1ce"]))
    assert written.GetSize() == t1ce.GetSize()
    np.testing.assert_allclose(written.GetSpacing(), t1ce.GetSpacing(), atol=1e-6)
    np.testing.assert_allclose(written.GetOrigin(), t1ce.GetOrigin(), atol=1e-4)
    np.testing.assert_allclose(written.GetDirection(), t1ce.GetDirection(), atol=1e-6)
    values = sitk.GetArrayFromImage(written)
    assert values.min() >= 0.0 and values.max() <= 1.0

    # every uncertain voxel lies on the boundary of the segmented tumor, within one voxel
    labels = sitk.GetArrayFromImage(sitk.ReadImage(str(output))) > 0
    from scipy import ndimage

    boundary = ndimage.binary_dilation(labels) & ~ndimage.binary_erosion(labels)
    near_boundary = ndimage.binary_dilation(boundary)
    uncertain = values > 0.5
    assert uncertain.sum() > 0
    assert not (uncertain & ~near_boundary).any()
    assert not uncertain[ndimage.binary_erosion(labels, iterations=2)].any()

    report = result.report()
    assert set(report["uncertainty"]) == {"WT", "TC", "ET"}
    for region in report["uncertainty"].values():
        assert 0.0 <= region["confidence"] <= 1.0
        assert region["uncertain_ml"] > 0


def test_without_the_map_nothing_more_is_written(tmp_path, tiny_model, monkeypatch):
    from EoFormerSegmentationLib.engine import segment_files

    soft_bright_voxels_as_tumor(monkeypatch)
    paths = write_case(tmp_path / "case")
    output = tmp_path / "out" / "seg.nii.gz"
    output.parent.mkdir()
    result = segment_files(
        *(paths[k] for k in ("t1", "t1ce", "t2", "flair")),
        output,
        model_path=tiny_model,
        device="cpu",
    )
    assert "uncertainty" not in result.report()
    assert [p.name for p in output.parent.iterdir()] == ["seg.nii.gz"]


def test_a_segmentation_file_name_for_the_map_is_refused(tmp_path, tiny_model):
    from EoFormerSegmentationLib.engine import segment_files

    paths = write_case(tmp_path / "case")
    with pytest.raises(InputError, match="uncertainty map is an image"):
        segment_files(
            *(paths[k] for k in ("t1", "t1ce", "t2", "flair")),
            tmp_path / "seg.nii.gz",
            model_path=tiny_model,
            uncertainty_output=tmp_path / "map.seg.nrrd",
        )
    assert not (tmp_path / "seg.nii.gz").exists()
