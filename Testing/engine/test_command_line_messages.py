"""Messages that tell the user what is wrong and what to do: the grid property that differs,
the extra that ``synth`` and ``train`` need, and no empty folder after a failed ``synth``."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
from EoFormerSegmentationLib.cli import build_parser, main

REPOSITORY_README = Path(__file__).resolve().parents[2] / "README.md"


def label_file(path, origin=(0.0, 0.0, 0.0), spacing=(1.0, 1.0, 1.0), direction=None):
    label = np.zeros((20, 20, 20), np.uint8)
    label[5:12, 5:12, 5:12] = 2
    label[7:10, 7:10, 7:10] = 4
    image = sitk.GetImageFromArray(label)
    image.SetOrigin(origin)
    image.SetSpacing(spacing)
    if direction is not None:
        image.SetDirection(direction)
    sitk.WriteImage(image, str(path))
    return path


@pytest.mark.parametrize(
    "changed, expected",
    [
        ({"origin": (5.0, 0.0, 0.0)}, "origin (5.0, 0.0, 0.0) vs (0.0, 0.0, 0.0)"),
        ({"spacing": (1.0, 1.0, 2.0)}, "spacing (1.0, 1.0, 2.0) vs (1.0, 1.0, 1.0)"),
        ({"direction": (0, 1, 0, 1, 0, 0, 0, 0, 1)}, "direction"),
    ],
    ids=["origin", "spacing", "direction"],
)
def test_evaluate_names_the_grid_property_that_differs(changed, expected, tmp_path, capsys):
    prediction = label_file(tmp_path / "pred.nii.gz", **changed)
    reference = label_file(tmp_path / "ref.nii.gz")
    assert main(["evaluate", "--pred", str(prediction), "--ref", str(reference)]) == 2
    message = capsys.readouterr().err
    assert expected in message
    assert str(prediction) in message and str(reference) in message
    assert message.count("size") == 0  # the sizes are the same: not mentioned


@pytest.mark.parametrize("command", ["synth", "train"])
def test_help_says_which_extra_synth_and_train_need(command, capsys):
    with pytest.raises(SystemExit):
        build_parser(command).parse_args([command, "--help"])
    assert "[train]" in capsys.readouterr().out
    with pytest.raises(SystemExit):
        build_parser().parse_args(["--help"])
    assert "[train]" in capsys.readouterr().out


def test_readme_install_mentions_the_train_extra():
    text = REPOSITORY_README.read_text(encoding="utf-8")
    install = text[text.index("## Command line") :]
    assert '.[train]"' in install[: install.index("| command |")]


def test_synth_without_nilearn_names_the_extra_and_creates_nothing(tmp_path, monkeypatch, capsys):
    real_find_spec = importlib.util.find_spec

    def find_spec(name, *arguments):
        return None if name == "nilearn" else real_find_spec(name, *arguments)

    monkeypatch.setattr(importlib.util, "find_spec", find_spec)
    out = tmp_path / "new" / "synthetic"
    assert main(["synth", "--out", str(out), "--cases", "1"]) == 2
    assert "[train]" in capsys.readouterr().err
    assert not (tmp_path / "new").exists()


def test_a_failed_synth_leaves_no_empty_folder(tmp_path, monkeypatch, capsys):
    from EoFormerSegmentationLib.cli import synth

    def failing(job):
        raise OSError(28, "No space left on device", str(tmp_path / "new"))

    monkeypatch.setattr(synth, "_generate_and_write", failing)
    out = tmp_path / "new" / "synthetic"
    assert main(["synth", "--out", str(out), "--cases", "1"]) == 2
    assert "No space left on device" in capsys.readouterr().err
    assert not (tmp_path / "new").exists()
