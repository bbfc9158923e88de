"""``eoformer segment`` on a real BraTS case, from files to files, as a user runs it."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest
import SimpleITK as sitk
from engine_cases import SEQUENCES, bright_voxels_as_tumor, file_digest, segment_arguments

CASE = "TCGA-FG-6692"


@pytest.fixture(scope="module")
def real_case(real_data_dir) -> dict:
    return {sequence: real_data_dir / CASE / f"{sequence}.nii.gz" for sequence in SEQUENCES}


def run_eoformer(arguments: list) -> subprocess.CompletedProcess:
    environment = dict(os.environ, OMP_NUM_THREADS="2")
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
    assert report["model"]["sha256"] == file_digest(tiny_model)
    # the inputs are untouched and nothing but the output was written beside it
    assert {sequence: file_digest(path) for sequence, path in real_case.items()} == digests
    assert [path.name for path in output.parent.iterdir()] == [output.name]


def test_brats2023_convention_labels_enhancing_tumor_3(
    small_case, tiny_model, tmp_path, monkeypatch
):
    from EoFormerSegmentationLib.cli import main

    bright_voxels_as_tumor(monkeypatch)  # the bright "lesion" becomes ET, TC and WT

    output = tmp_path / "case.nrrd"
    arguments = segment_arguments(small_case, output, tiny_model, "--label-convention", "brats2023")
    assert main(arguments) == 0
    values = set(np.unique(sitk.GetArrayFromImage(sitk.ReadImage(str(output)))))
    assert values == {0, 3}


def test_seg_nrrd_reads_back_in_slicerio_with_named_nested_segments(
    real_case, tiny_model, tmp_path
):
    import slicerio
    from EoFormerSegmentationLib.cli import main
    from EoFormerSegmentationLib.labels import SEGMENTS

    output = tmp_path / f"{CASE}.seg.nrrd"
    assert main(segment_arguments(real_case, output, tiny_model)) == 0

    segmentation = slicerio.read_segmentation(str(output))
    segments = {segment["name"]: segment for segment in segmentation["segments"]}
    assert list(segments) == [segment["name"] for segment in SEGMENTS]
    for expected in SEGMENTS:
        found = segments[expected["name"]]
        np.testing.assert_allclose(found["color"], expected["color"], atol=1e-3)
        assert "terminology" in found and found["terminology"]["category"]

    masks = {
        expected["id"]: slicerio.segment_mask(segmentation, expected["name"])
        for expected in SEGMENTS
    }
    assert masks["WT"].any()
    # overlapping as BraTS defines them: ET within TC within WT
    assert not (masks["ET"] & ~masks["TC"]).any()
    assert not (masks["TC"] & ~masks["WT"]).any()
    t1ce = sitk.ReadImage(str(real_case["t1ce"]))
    assert tuple(masks["WT"].shape[-3:]) == tuple(t1ce.GetSize())
