"""Every sub-command against bad inputs, bad options and unwritable outputs.

One table: each row is an ``eoformer`` command line that must be refused with exit status 2,
a message naming the file or option (no traceback), nothing written, and the inputs
untouched. A new option or sub-command belongs in this table.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Dict, List, Tuple

import pytest
import torch
from engine_cases import SEQUENCES, file_digest, segment_arguments
from EoFormerSegmentationLib.cli import main


@dataclass
class Sweep:
    """Paths a row of the table may use."""

    case: Dict[str, Path]
    model: Path
    out: Path  # an empty folder: must stay empty
    read_only: Path  # a folder in which nothing can be created
    scratch: Path  # where rows put their bad inputs

    def segment(self, *extra: str, output: Path = None, **inputs: Path) -> List[str]:
        """``eoformer segment`` on the small case, with some inputs replaced."""
        case = dict(self.case, **inputs)
        return segment_arguments(case, output or self.out / "case.seg.nrrd", self.model, *extra)

    def bad_model(self, name: str, change: Callable[[dict], None]) -> Path:
        """A copy of the tiny model whose saved dictionary was changed by ``change``."""
        payload = torch.load(self.model, map_location="cpu", weights_only=True)
        change(payload)
        path = self.scratch / f"{name}.pt"
        torch.save(payload, path)
        return path


def _unwritable_folder(tmp_path: Path) -> Path:
    """A folder in which no file can be created, for whoever runs the tests."""
    folder = tmp_path / "read_only"
    folder.mkdir()
    folder.chmod(0o555)
    try:
        (folder / "probe").touch()
    except PermissionError:
        return folder
    (folder / "probe").unlink()  # the superuser ignores permissions: use a kernel folder
    folder.chmod(0o755)
    for candidate in (Path("/sys/kernel"), Path("/proc/sys")):
        try:
            (candidate / "eoformer-probe").touch()
        except OSError:
            return candidate
    pytest.skip("no folder that refuses writes is available")


@pytest.fixture
def sweep(small_case, tiny_model, tmp_path) -> Sweep:
    out = tmp_path / "out"
    out.mkdir()
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    yield Sweep(small_case, tiny_model, out, _unwritable_folder(tmp_path), scratch)
    if (tmp_path / "read_only").exists():
        (tmp_path / "read_only").chmod(0o755)  # so that pytest can remove it


def truncated_copy(sweep: Sweep, sequence: str) -> Path:
    data = sweep.case[sequence].read_bytes()
    path = sweep.scratch / f"truncated_{sequence}.nii.gz"
    path.write_bytes(data[: len(data) // 2])
    return path


def uncompressed_truncated_copy(sweep: Sweep) -> Path:
    import SimpleITK as sitk

    path = sweep.scratch / "flair.nii"
    sitk.WriteImage(sitk.ReadImage(str(sweep.case["flair"])), str(path))
    data = path.read_bytes()
    path.write_bytes(data[: len(data) * 2 // 3])
    return path


def without_config(payload: dict) -> None:
    del payload["config"]


def with_unknown_setting(payload: dict) -> None:
    payload["config"]["position_embedding"] = True


def with_five_inputs(payload: dict) -> None:
    payload["config"]["in_channels"] = 5


def with_two_outputs(payload: dict) -> None:
    payload["config"]["out_channels"] = 2


def existing_file(sweep: Sweep) -> Path:
    path = sweep.scratch / "not_a_folder"
    path.write_text("a file\n")
    return path


# id -> (command line built from the sweep's paths, text the message must contain)
Row = Callable[[Sweep], Tuple[List[str], str]]
TABLE: Dict[str, Row] = {
    # input files (the output is never written)
    "truncated .nii.gz": lambda s: (
        s.segment(flair=truncated_copy(s, "flair")),
        str(s.scratch / "truncated_flair.nii.gz"),
    ),
    "truncated T1ce .nii.gz": lambda s: (
        s.segment(t1ce=truncated_copy(s, "t1ce")),
        "truncated",
    ),
    "truncated .nii": lambda s: (
        s.segment(flair=uncompressed_truncated_copy(s)),
        "truncated",
    ),
    # numeric options, refused by the parser
    "sw-batch-size 0": lambda s: (s.segment("--sw-batch-size", "0"), "--sw-batch-size"),
    "sw-batch-size text": lambda s: (s.segment("--sw-batch-size", "two"), "--sw-batch-size"),
    "overlap 1": lambda s: (s.segment("--overlap", "1"), "--overlap"),
    "overlap nan": lambda s: (s.segment("--overlap", "nan"), "--overlap"),
    "threads 0": lambda s: (s.segment("--threads", "0"), "--threads"),
    "synth cases 0": lambda s: (["synth", "--out", str(s.out / "d"), "--cases", "0"], "--cases"),
    "synth workers 0": lambda s: (
        ["synth", "--out", str(s.out / "d"), "--cases", "1", "--workers", "0"],
        "--workers",
    ),
    "synth seed -1": lambda s: (
        ["synth", "--out", str(s.out / "d"), "--cases", "1", "--seed", "-1"],
        "--seed",
    ),
    "finetune lr nan": lambda s: (
        ["finetune", "--cases", str(s.scratch), "--out", str(s.out / "m.pt"), "--lr", "nan"],
        "--lr",
    ),
    "finetune iterations 0": lambda s: (
        ["finetune", "--cases", str(s.scratch), "--out", str(s.out / "m.pt"), "--iterations", "0"],
        "--iterations",
    ),
    "finetune replay-fraction 2": lambda s: (
        ["finetune", "--cases", str(s.scratch), "--out", str(s.out / "m.pt")]
        + ["--replay-fraction", "2"],
        "--replay-fraction",
    ),
    "benchmark repeats 0": lambda s: (["benchmark", "--repeats", "0"], "--repeats"),
    "benchmark time-budget -1": lambda s: (["benchmark", "--time-budget", "-1"], "--time-budget"),
    "train lr nan": lambda s: (
        ["train", "--synthetic-cases", "1", "--out", str(s.out / "run"), "--lr", "nan"],
        "--lr",
    ),
    "train workers -1": lambda s: (
        ["train", "--synthetic-cases", "1", "--out", str(s.out / "run"), "--workers", "-1"],
        "--workers",
    ),
    # model files: refused before any image is read
    "model without config": lambda s: (
        s.segment("--model", str(s.bad_model("no_config", without_config))),
        "config",
    ),
    "model with an unknown setting": lambda s: (
        s.segment("--model", str(s.bad_model("unknown_key", with_unknown_setting))),
        "position_embedding",
    ),
    "model with 5 inputs": lambda s: (
        s.segment("--model", str(s.bad_model("five_inputs", with_five_inputs))),
        "in_channels",
    ),
    "model with 2 outputs": lambda s: (
        s.segment("--model", str(s.bad_model("two_outputs", with_two_outputs))),
        "out_channels",
    ),
    "benchmark model without config": lambda s: (
        ["benchmark", "--skip-end-to-end", "--model", str(s.bad_model("b", without_config))],
        str(s.scratch / "b.pt"),
    ),
    "finetune model with 5 inputs": lambda s: (
        ["finetune", "--cases", str(s.scratch), "--out", str(s.out / "m.pt")]
        + ["--model", str(s.bad_model("f", with_five_inputs))],
        str(s.scratch / "f.pt"),
    ),
    "train init without config": lambda s: (
        ["train", "--synthetic-cases", "1", "--out", str(s.out / "run")]
        + ["--init", str(s.bad_model("i", without_config))],
        str(s.scratch / "i.pt"),
    ),
    "train init with an unknown setting": lambda s: (
        ["train", "--synthetic-cases", "1", "--out", str(s.out / "run")]
        + ["--init", str(s.bad_model("j", with_unknown_setting))],
        "position_embedding",
    ),
    # outputs that cannot be written: refused before the work starts
    "segment output in a read-only folder": lambda s: (
        s.segment(output=s.read_only / "case.seg.nrrd"),
        str(s.read_only),
    ),
    "segment json in a read-only folder": lambda s: (
        s.segment("--json", str(s.read_only / "report.json")),
        str(s.read_only),
    ),
    "evaluate json in a read-only folder": lambda s: (
        ["evaluate", "--pred", str(s.case["t1"]), "--ref", str(s.case["t2"])]
        + ["--json", str(s.read_only / "scores.json")],
        str(s.read_only),
    ),
    "evaluate predictions in a read-only folder": lambda s: (
        ["evaluate", "--cases", str(s.scratch), "--model", str(s.model)]
        + ["--predictions", str(s.read_only / "predictions")],
        str(s.read_only),
    ),
    "synth out in a read-only folder": lambda s: (
        ["synth", "--out", str(s.read_only / "synthetic"), "--cases", "1"],
        str(s.read_only),
    ),
    "finetune out in a read-only folder": lambda s: (
        ["finetune", "--model", str(s.model), "--cases", str(s.scratch)]
        + ["--out", str(s.read_only / "m.pt")],
        str(s.read_only),
    ),
    "benchmark json in a read-only folder": lambda s: (
        ["benchmark", "--skip-end-to-end", "--json", str(s.read_only / "bench.json")],
        str(s.read_only),
    ),
    "train out in a read-only folder": lambda s: (
        ["train", "--synthetic-cases", "1", "--out", str(s.read_only / "run")],
        str(s.read_only),
    ),
    "train out is a file": lambda s: (
        ["train", "--synthetic-cases", "1", "--out", str(existing_file(s))],
        str(s.scratch / "not_a_folder"),
    ),
}


def run_command(arguments: List[str]) -> int:
    """``main``'s exit status, also when argparse exits."""
    try:
        return main(arguments)
    except SystemExit as exit:
        return int(exit.code)


def file_states(*folders: Path) -> Dict[Path, str]:
    return {
        path: file_digest(path)
        for folder in folders
        for path in sorted(folder.rglob("*"))
        if path.is_file()
    }


@pytest.mark.parametrize("row", list(TABLE), ids=list(TABLE))
def test_refused_with_exit_2_a_named_cause_and_nothing_written(row, sweep, capsys):
    arguments, named = TABLE[row](sweep)
    inputs = file_states(sweep.case["t1"].parent, sweep.scratch, sweep.model.parent)

    status = run_command(arguments)

    message = capsys.readouterr().err
    assert status == 2, message
    assert named in message
    assert "Traceback" not in message
    assert list(sweep.out.iterdir()) == []  # no output, no temporary, no empty folder
    assert file_states(sweep.case["t1"].parent, sweep.scratch, sweep.model.parent) == inputs


def test_a_bad_model_is_named_before_any_image_is_read(sweep, capsys):
    model = sweep.bad_model("no_config", without_config)
    arguments = sweep.segment("--model", str(model), t1=sweep.scratch / "missing_t1.nii.gz")
    assert run_command(arguments) == 2
    message = capsys.readouterr().err
    assert str(model) in message and "missing_t1" not in message


def test_a_failed_train_init_leaves_no_run_folder(sweep, capsys):
    run_dir = sweep.scratch / "new" / "run"
    model = sweep.bad_model("init", with_five_inputs)
    arguments = ["train", "--synthetic-cases", "1", "--out", str(run_dir), "--init", str(model)]
    assert run_command(arguments) == 2
    assert str(model) in capsys.readouterr().err
    assert not (sweep.scratch / "new").exists()


def test_every_sequence_is_checked_for_truncation(sweep, capsys):
    for sequence in SEQUENCES:
        bad = truncated_copy(sweep, sequence)
        assert run_command(sweep.segment(**{sequence: bad})) == 2
        assert str(bad) in capsys.readouterr().err
    assert list(sweep.out.iterdir()) == []
