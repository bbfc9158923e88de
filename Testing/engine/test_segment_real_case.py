"""``eoformer segment`` on a real BraTS case, from files to files, as a user runs it."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest
import SimpleITK as sitk
from engine_cases import SEQUENCES, file_digest, graded_tumor, segment_arguments

CASE = "TCGA-FG-6692"


@pytest.fixture(scope="module")
def real_case(real_data_dir) -> dict:
    return {sequence: real_data_dir / CASE / f"{sequence}.nii.gz" for sequence in SEQUENCES}


def run_eoformer(arguments: list) -> subprocess.CompletedProcess:
    environment = dict(os.environ)
    environment.setdefault("OMP_NUM_THREADS", "2")
    return subprocess.run(
        [sys.executable, "-m", "EoFormerSegmentationLib", *arguments],
        capture_output=True,
        text=True,
        env=environment,
        timeout=600,
    )


def test_segment_real_case_writes_a_label_map_on_the_t1ce_grid(real_case, tiny_model, tmp_path):
    digests = {sequence: file_digest(path) for sequence, path in real_case.items()}
    output = tmp_path / "out" / f"{CASE}.nii.gz"
    output.parent.mkdir()
    report_file = tmp_path / "report.json"
    completed = run_eoformer(
        segment_arguments(real_case, output, tiny_model, "--json", str(report_file))
    )
    assert completed.returncode == 0, completed.stderr

    label = sitk.ReadImage(str(output))
    t1ce = sitk.ReadImage(str(real_case["t1ce"]))
    assert label.GetSize() == t1ce.GetSize()
    np.testing.assert_allclose(label.GetSpacing(), t1ce.GetSpacing(), atol=1e-6)
    np.testing.assert_allclose(label.GetOrigin(), t1ce.GetOrigin(), atol=1e-4)
    np.testing.assert_allclose(label.GetDirection(), t1ce.GetDirection(), atol=1e-6)
    assert set(np.unique(sitk.GetArrayViewFromImage(label))) <= {0, 1, 2, 4}

    # the last stdout line is the report, the same as the --json file
    report = json.loads(completed.stdout.strip().splitlines()[-1])
    assert report == json.loads(report_file.read_text())
    assert set(report["volumes_ml"]) == {"WT", "TC", "ET"}
    assert report["volumes_ml"]["WT"] >= report["volumes_ml"]["TC"] >= report["volumes_ml"]["ET"]
    assert {"read", "resample", "network", "postprocess", "write", "total"} <= set(
        report["timings_s"]
    )
    assert report["device"] == "cpu"
    assert report["model"]["name"] == "tiny_random"
    # the reported volumes are those of the written label map
    voxel_ml = float(np.prod(t1ce.GetSpacing())) / 1000.0
    labels = sitk.GetArrayViewFromImage(label)
    in_file = {
        "WT": (labels > 0).sum() * voxel_ml,
        "TC": np.isin(labels, (1, 4)).sum() * voxel_ml,
        "ET": (labels == 4).sum() * voxel_ml,
    }
    assert in_file["WT"] > 0
    for region, volume in in_file.items():
        assert report["volumes_ml"][region] == pytest.approx(volume, abs=1e-3)
    assert report["model"]["sha256"] == file_digest(tiny_model)
    # the inputs are untouched and nothing but the output was written beside it
    assert {sequence: file_digest(path) for sequence, path in real_case.items()} == digests
    assert [path.name for path in output.parent.iterdir()] == [output.name]


@pytest.mark.parametrize(
    "convention, expected_values",
    [("brats2020", {0, 1, 2, 4}), ("brats2023", {0, 1, 2, 3})],
)
def test_label_values_follow_the_chosen_convention(
    convention, expected_values, real_case, tiny_model, tmp_path, monkeypatch
):
    from EoFormerSegmentationLib.cli import main

    graded_tumor(monkeypatch)  # NCR, edema and enhancing tumor all present
    output = tmp_path / f"{CASE}.nii.gz"
    arguments = segment_arguments(real_case, output, tiny_model, "--label-convention", convention)
    assert main(arguments) == 0
    assert set(np.unique(sitk.GetArrayViewFromImage(sitk.ReadImage(str(output))))) == (
        expected_values
    )


def test_seg_nrrd_reads_back_in_slicerio_with_named_nested_segments(
    real_case, tiny_model, tmp_path, monkeypatch
):
    import slicerio
    from EoFormerSegmentationLib.engine import segment_files
    from EoFormerSegmentationLib.geometry import image_to_array
    from EoFormerSegmentationLib.labels import SEGMENTS

    graded_tumor(monkeypatch)  # three different regions, so that nesting can be seen
    output = tmp_path / f"{CASE}.seg.nrrd"
    result = segment_files(
        *(real_case[sequence] for sequence in SEQUENCES), output, model_path=tiny_model
    )

    segmentation = slicerio.read_segmentation(str(output))
    segments = {segment["name"]: segment for segment in segmentation["segments"]}
    assert list(segments) == ["Whole tumor", "Tumor core", "Enhancing tumor"]
    for expected in SEGMENTS:
        found = segments[expected["name"]]
        np.testing.assert_allclose(found["color"], expected["color"], atol=1e-3)
        terminology = found["terminology"]
        assert tuple(terminology["category"]) == expected["category"]
        assert tuple(terminology["type"]) == expected["type"]
        assert tuple(terminology["typeModifier"]) == expected["type_modifier"]
        assert tuple(terminology["anatomicRegion"]) == expected["anatomic_region"]

    masks = {
        expected["id"]: slicerio.segment_mask(segmentation, expected["name"]).astype(bool)
        for expected in SEGMENTS
    }
    for region, mask in masks.items():  # the file holds exactly the segmented regions
        np.testing.assert_array_equal(mask, image_to_array(result.regions[region]) > 0)
    # overlapping as BraTS defines them: ET within TC within WT, each one smaller
    assert masks["WT"].sum() > masks["TC"].sum() > masks["ET"].sum() > 0
    assert not (masks["ET"] & ~masks["TC"]).any()
    assert not (masks["TC"] & ~masks["WT"]).any()

    t1ce = sitk.ReadImage(str(real_case["t1ce"]))
    assert masks["WT"].shape == t1ce.GetSize()
    ijk_to_lps = np.asarray(segmentation["ijkToLPS"])
    direction = np.asarray(t1ce.GetDirection()).reshape(3, 3)
    np.testing.assert_allclose(ijk_to_lps[:3, :3], direction * t1ce.GetSpacing(), atol=1e-4)
    np.testing.assert_allclose(ijk_to_lps[:3, 3], t1ce.GetOrigin(), atol=1e-3)
