"""Bad input: a message that names the file and the problem, exit status 2, no output, and
the inputs untouched."""

from __future__ import annotations

import numpy as np
import pytest
import SimpleITK as sitk
from engine_cases import file_digest, rotation, segment_arguments, write_case
from EoFormerSegmentationLib.cli import main


def write_image(path, array, spacing=(1.0, 1.0, 1.0), origin=None):
    image = sitk.GetImageFromArray(np.asarray(array, dtype=np.float32))
    if image.GetDimension() == len(spacing):
        image.SetSpacing(spacing)
    if origin is not None:
        image.SetOrigin(origin)
    sitk.WriteImage(image, str(path))
    return path


def brain_array(shape=(48, 48, 48)) -> np.ndarray:
    array = np.zeros(shape, np.float32)
    array[8:-8, 8:-8, 8:-8] = 100.0
    return array


def break_flair(case, tmp_path, kind):
    """Make the FLAIR input bad in one way; return the bad path and words the message needs."""
    flair = tmp_path / "bad_flair.nii.gz"
    if kind == "missing":
        return tmp_path / "no_such_flair.nii.gz", "not found"
    if kind == "unreadable":
        flair.write_bytes(b"this is not an image" * 50)
        return flair, "cannot read"
    if kind == "2d":
        return write_image(flair, brain_array()[24], spacing=(1.0, 1.0)), "2D"
    if kind == "4d":
        array = np.stack([brain_array()] * 3)
        image = sitk.JoinSeries([sitk.GetImageFromArray(a) for a in array])
        sitk.WriteImage(image, str(flair))
        return flair, "4D"
    if kind == "nan":
        array = brain_array()
        array[20, 20, 20] = np.nan
        return write_image(flair, array), "NaN"
    if kind == "infinite":
        array = brain_array()
        array[20, 20, 21] = np.inf
        return write_image(flair, array), "infinite"
    if kind == "all zero":
        return write_image(flair, np.zeros((48, 48, 48))), "all zero"
    if kind == "far away":
        return write_image(flair, brain_array(), origin=(500.0, 500.0, 500.0)), "overlap"
    if kind == "same file twice":
        return case["t2"], "same file"
    if kind == "same file by another path":
        return case["t2"].parent / ".." / case["t2"].parent.name / case["t2"].name, "same file"
    raise ValueError(kind)


BAD_KINDS = [
    "missing",
    "unreadable",
    "2d",
    "4d",
    "nan",
    "infinite",
    "all zero",
    "far away",
    "same file twice",
    "same file by another path",
]


@pytest.mark.parametrize("kind", BAD_KINDS)
def test_bad_flair_is_refused_with_a_clear_message(kind, small_case, tiny_model, tmp_path, capsys):
    bad, words = break_flair(small_case, tmp_path, kind)
    case = dict(small_case, flair=bad)
    existing = [path for path in case.values() if path.exists()]
    digests = {path: file_digest(path) for path in existing}
    output_folder = tmp_path / "out"
    output_folder.mkdir()
    output = output_folder / "case.seg.nrrd"

    status = main(segment_arguments(case, output, tiny_model))

    message = capsys.readouterr().err
    assert status == 2
    named = small_case["t2"] if kind.startswith("same file") else bad
    assert str(named) in message
    assert words.lower() in message.lower()
    assert list(output_folder.iterdir()) == []  # no output, no temporary left behind
    assert {path: file_digest(path) for path in existing} == digests


def test_existing_output_is_kept_unless_overwrite(small_case, tiny_model, tmp_path, capsys):
    output = tmp_path / "case.nii.gz"
    output.write_bytes(b"an earlier result")

    assert main(segment_arguments(small_case, output, tiny_model)) == 2
    assert "--overwrite" in capsys.readouterr().err
    assert output.read_bytes() == b"an earlier result"

    assert main(segment_arguments(small_case, output, tiny_model, "--overwrite")) == 0
    assert sitk.ReadImage(str(output)).GetSize() == (48, 48, 48)
    assert sorted(path.name for path in tmp_path.iterdir()) == ["case", "case.nii.gz"]


def test_output_never_replaces_an_input(small_case, tiny_model, capsys):
    digest = file_digest(small_case["t2"])
    status = main(segment_arguments(small_case, small_case["t2"], tiny_model, "--overwrite"))
    assert status == 2
    assert "input" in capsys.readouterr().err
    assert file_digest(small_case["t2"]) == digest


@pytest.mark.parametrize("report_target", ["t2", "output", "folder"])
def test_json_report_never_replaces_an_input_the_output_or_a_folder(
    report_target, small_case, tiny_model, tmp_path, capsys
):
    output_folder = tmp_path / "out"
    output_folder.mkdir()
    output = output_folder / "case.nii.gz"
    report = {"t2": small_case["t2"], "output": output, "folder": output_folder}[report_target]
    digest = file_digest(small_case["t2"])

    status = main(segment_arguments(small_case, output, tiny_model, "--json", str(report)))

    assert status == 2
    assert f"--json {report}" in capsys.readouterr().err
    assert file_digest(small_case["t2"]) == digest
    assert list(output_folder.iterdir()) == []  # refused before any work


def test_unsupported_output_type_is_refused_before_any_work(
    small_case, tiny_model, tmp_path, capsys
):
    output = tmp_path / "out" / "case.png"
    output.parent.mkdir()
    assert main(segment_arguments(small_case, output, tiny_model)) == 2
    message = capsys.readouterr().err
    assert str(output) in message and ".seg.nrrd" in message
    assert list(output.parent.iterdir()) == []


def test_missing_model_file_is_named(small_case, tmp_path, capsys):
    model = tmp_path / "no_model.pt"
    assert main(segment_arguments(small_case, tmp_path / "out.nii.gz", model)) == 2
    assert str(model) in capsys.readouterr().err
    assert not (tmp_path / "out.nii.gz").exists()


def test_inputs_on_other_grids_are_not_modified(tmp_path, tiny_model):
    grids = {"t1ce": {"direction": rotation(30.0, 0.0), "spacing": (1.1, 1.1, 2.5)}}
    case = write_case(tmp_path / "oblique", grids)
    digests = {key: file_digest(path) for key, path in case.items()}
    assert main(segment_arguments(case, tmp_path / "out.nii.gz", tiny_model, "--register")) == 0
    assert {key: file_digest(path) for key, path in case.items()} == digests
