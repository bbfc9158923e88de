"""Result files: readable by the other users of a shared folder (umask), never silently
replaced by a concurrent run, and never left behind by a run that fails while writing."""

from __future__ import annotations

import errno
import json
import os
import stat
from pathlib import Path

import numpy as np
import pytest
from engine_cases import file_digest, segment_arguments
from EoFormerSegmentationLib.cli import main


@pytest.fixture
def umask_027():
    previous = os.umask(0o027)
    yield 0o027
    os.umask(previous)


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def empty_network(monkeypatch) -> None:
    """The network replaced by one that finds no tumor (a segmentation in milliseconds)."""
    from EoFormerSegmentationLib import engine

    def network(loaded, volume, *arguments, **keywords):
        return np.zeros((3, *volume.shape[1:]), np.float32), "cpu"

    monkeypatch.setattr(engine, "_run_network", network)


@pytest.mark.parametrize("name", ["case.seg.nrrd", "case.nii.gz"])
def test_results_honour_the_umask(name, small_case, tiny_model, tmp_path, umask_027, monkeypatch):
    empty_network(monkeypatch)
    output, report = tmp_path / name, tmp_path / "report.json"
    assert main(segment_arguments(small_case, output, tiny_model, "--json", str(report))) == 0
    assert mode(output) == 0o640
    assert mode(report) == 0o640


def test_saved_models_and_their_cards_honour_the_umask(tmp_path, umask_027):
    from engine_cases import TINY_MODEL_CONFIG
    from EoFormerSegmentationLib.models import save_checkpoint
    from EoFormerSegmentationLib.network.eoformer import EoFormer

    path = save_checkpoint(tmp_path / "model.pt", EoFormer(**TINY_MODEL_CONFIG), {})
    assert mode(path) == 0o640
    assert mode(path.with_suffix(".json")) == 0o640


def test_a_second_run_writing_the_same_output_refuses(
    small_case, tiny_model, tmp_path, monkeypatch, capsys
):
    """Two runs start with the same --output: the one that finishes second keeps the first
    one's file and exits 2."""
    from EoFormerSegmentationLib import engine

    output = tmp_path / "case.seg.nrrd"

    def network_while_another_run_finishes(loaded, volume, *arguments, **keywords):
        output.write_bytes(b"the other run's result")
        return np.zeros((3, *volume.shape[1:]), np.float32), "cpu"

    monkeypatch.setattr(engine, "_run_network", network_while_another_run_finishes)
    status = main(segment_arguments(small_case, output, tiny_model))

    message = capsys.readouterr().err
    assert status == 2
    assert str(output) in message and "--overwrite" in message
    assert output.read_bytes() == b"the other run's result"
    assert sorted(path.name for path in tmp_path.iterdir()) == ["case", "case.seg.nrrd"]


def test_overwrite_replaces_a_file_written_meanwhile(small_case, tiny_model, tmp_path, monkeypatch):
    from EoFormerSegmentationLib import engine

    output = tmp_path / "case.nii.gz"

    def network(loaded, volume, *arguments, **keywords):
        output.write_bytes(b"the other run's result")
        return np.zeros((3, *volume.shape[1:]), np.float32), "cpu"

    monkeypatch.setattr(engine, "_run_network", network)
    assert main(segment_arguments(small_case, output, tiny_model, "--overwrite")) == 0
    assert output.read_bytes() != b"the other run's result"


def test_a_full_disk_is_reported_and_leaves_nothing(
    small_case, tiny_model, tmp_path, monkeypatch, capsys
):
    import nrrd

    def full_disk(*arguments, **keywords):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    empty_network(monkeypatch)
    monkeypatch.setattr(nrrd, "write", full_disk)
    output_folder = tmp_path / "out"
    output_folder.mkdir()
    output = output_folder / "case.seg.nrrd"

    status = main(segment_arguments(small_case, output, tiny_model))

    message = capsys.readouterr().err
    assert status == 2
    assert str(output) in message and os.strerror(errno.ENOSPC) in message
    assert "Traceback" not in message
    assert list(output_folder.iterdir()) == []


def test_a_report_that_cannot_be_written_takes_the_segmentation_with_it(
    small_case, tiny_model, tmp_path, monkeypatch, capsys
):
    """The image is written first; when the --json report then fails, the run fails and the
    image is removed, so that a re-run is not refused for an existing output."""
    empty_network(monkeypatch)
    output_folder = tmp_path / "out"
    output_folder.mkdir()
    output, report = output_folder / "case.nii.gz", output_folder / "report.json"
    real_write_text = Path.write_text

    def write_text(self, *arguments, **keywords):
        if self.name.startswith(".report.json"):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real_write_text(self, *arguments, **keywords)

    monkeypatch.setattr(Path, "write_text", write_text)
    status = main(segment_arguments(small_case, output, tiny_model, "--json", str(report)))

    message = capsys.readouterr().err
    assert status == 2
    assert str(report) in message and os.strerror(errno.ENOSPC) in message
    assert list(output_folder.iterdir()) == []

    monkeypatch.setattr(Path, "write_text", real_write_text)
    assert main(segment_arguments(small_case, output, tiny_model, "--json", str(report))) == 0
    assert json.loads(report.read_text())["output"] == str(output)


def test_inputs_are_untouched_by_a_failed_write(small_case, tiny_model, tmp_path, monkeypatch):
    import nrrd

    def full_disk(*arguments, **keywords):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    empty_network(monkeypatch)
    monkeypatch.setattr(nrrd, "write", full_disk)
    digests = {key: file_digest(path) for key, path in small_case.items()}
    assert main(segment_arguments(small_case, tmp_path / "case.seg.nrrd", tiny_model)) == 2
    assert {key: file_digest(path) for key, path in small_case.items()} == digests
