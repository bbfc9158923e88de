"""Progress reports move forward to the end; a cancelled run stops and writes nothing."""

from __future__ import annotations

import pytest
from engine_cases import segment_arguments
from EoFormerSegmentationLib.cli import main
from EoFormerSegmentationLib.engine import segment_files
from EoFormerSegmentationLib.errors import Cancelled


def test_progress_lines_go_forward_and_end_at_one(small_case, tiny_model, tmp_path, capsys):
    arguments = segment_arguments(small_case, tmp_path / "out.nii.gz", tiny_model)
    arguments[arguments.index("--progress") + 1] = "lines"
    assert main(arguments) == 0
    lines = [
        line.split(maxsplit=2)
        for line in capsys.readouterr().err.splitlines()
        if line.startswith("EOFORMER-PROGRESS")
    ]
    fractions = [float(line[1]) for line in lines]
    assert len(fractions) >= 5
    assert fractions == sorted(fractions)
    assert fractions[-1] == 1.0
    assert all(len(line) == 3 and line[2] for line in lines)  # every report says what it does


@pytest.mark.parametrize("polls_before_cancel", [0, 3])
def test_cancel_stops_the_work_and_writes_nothing(
    small_case, tiny_model, tmp_path, polls_before_cancel
):
    polls = []

    def should_cancel() -> bool:
        polls.append(True)
        return len(polls) > polls_before_cancel

    output = tmp_path / "out.seg.nrrd"
    with pytest.raises(Cancelled):
        segment_files(
            *(small_case[s] for s in ("t1", "t1ce", "t2", "flair")),
            output,
            model_path=tiny_model,
            register=True,
            should_cancel=should_cancel,
        )
    assert not output.exists()
    assert [path.name for path in tmp_path.iterdir()] == ["case"]


def test_running_out_of_gpu_memory_finishes_on_the_cpu_and_progress_never_goes_back(
    small_case, tiny_model, tmp_path, monkeypatch
):
    """The first pass 'runs out of GPU memory' half-way; the engine retries on the CPU."""
    import torch
    from EoFormerSegmentationLib import inference

    real_predict = inference.predict_probabilities
    calls = []

    def predict_that_runs_out_of_memory_once(model, volume, device, **keywords):
        calls.append(str(device))
        if len(calls) == 1:
            keywords["progress"](0.5, "window 4 of 8")
            raise torch.cuda.OutOfMemoryError("CUDA out of memory")
        return real_predict(model, volume, device, **keywords)

    monkeypatch.setattr(inference, "select_device", lambda request: torch.device("cpu"))
    monkeypatch.setattr(inference, "predict_probabilities", predict_that_runs_out_of_memory_once)
    fractions = []
    output = tmp_path / "out.nii.gz"
    result = segment_files(
        *(small_case[s] for s in ("t1", "t1ce", "t2", "flair")),
        output,
        model_path=tiny_model,
        progress=lambda fraction, message: fractions.append(fraction),
    )
    assert len(calls) == 2 and output.exists()
    assert result.device == "cpu"
    assert any("ran out of memory" in note for note in result.notes)
    assert fractions == sorted(fractions) and fractions[-1] == 1.0
