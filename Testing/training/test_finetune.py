"""Fine-tuning: model card, atomic writes, cancellation, the bundled model left untouched."""

from __future__ import annotations

import datetime
import json
from pathlib import Path

import pytest
import torch
from EoFormerSegmentationLib.cli import main
from EoFormerSegmentationLib.errors import Cancelled, InputError
from EoFormerSegmentationLib.models import file_sha256, load_checkpoint, save_checkpoint
from EoFormerSegmentationLib.training import finetune as finetune_module
from EoFormerSegmentationLib.training.datasets import discover_cases, load_case
from EoFormerSegmentationLib.training.finetune import finetune
from EoFormerSegmentationLib.training.trainer import build_model
from tiny_cases import TINY_MODEL_CONFIG, write_case

FAST = dict(crop=32, batch_size=1, device="cpu", patience=0)


@pytest.fixture
def bundled_model(tmp_path, monkeypatch) -> Path:
    """A tiny model standing in for the bundled one (EOFORMER_BUNDLED_MODEL points at it)."""
    folder = tmp_path / "Resources" / "Models"
    torch.manual_seed(0)
    model = build_model(dict(TINY_MODEL_CONFIG))
    path = save_checkpoint(
        folder / "bundled.pt",
        model,
        {"name": "bundled", "training_data": {"synthetic": {"seeds": [1_000_000, 1_000_099]}}},
    )
    monkeypatch.setenv("EOFORMER_BUNDLED_MODEL", str(path))
    return path


@pytest.fixture
def corrected_case(tmp_path) -> Path:
    return write_case(tmp_path / "corrected", "BraTS20_Training_042", seed=5)


def files_in(folder: Path):
    return sorted(path.name for path in folder.iterdir())


def test_finetune_writes_a_model_card_and_leaves_the_bundled_model_alone(
    tmp_path, bundled_model, corrected_case
):
    bundled_bytes = bundled_model.read_bytes()
    out_dir = tmp_path / "user_models"
    messages = []
    output = finetune(
        bundled_model,
        [corrected_case],
        out_dir / "site.pt",
        iterations=4,
        lr=1e-3,
        replay="none",
        progress=lambda fraction, message: messages.append((fraction, message)),
        **FAST,
    )
    assert output == out_dir / "site.pt"
    assert files_in(out_dir) == ["site.json", "site.pt"]  # no temporary file left behind
    assert bundled_model.read_bytes() == bundled_bytes

    card = json.loads((out_dir / "site.json").read_text())
    tuning = card["fine_tuning"]
    assert tuning["parent"]["sha256"] == file_sha256(bundled_model)
    assert tuning["parent"]["name"] == "bundled"
    assert [case["name"] for case in tuning["cases"]] == ["BraTS20_Training_042"]
    assert tuning["settings"]["iterations"] == 4 and tuning["settings"]["lr"] == 1e-3
    assert tuning["settings"]["freeze"] == "encoder"
    assert tuning["iterations_run"] == 4
    date = datetime.datetime.fromisoformat(card["date"])
    assert abs(datetime.datetime.now(datetime.timezone.utc) - date).total_seconds() < 600
    assert card["sha256"] == file_sha256(output)
    assert messages[-1][0] == 1.0 and any("loss" in message for _, message in messages)

    # encoder frozen: its weights are the parent's; the decoder learned
    parent = load_checkpoint(bundled_model).model.state_dict()
    child = load_checkpoint(output).model.state_dict()
    encoder_keys = [key for key in parent if key.startswith("encoder.")]
    decoder_keys = [key for key in parent if key.startswith("decoder.")]
    assert encoder_keys and decoder_keys
    assert all(torch.equal(parent[key], child[key]) for key in encoder_keys)
    assert any(not torch.equal(parent[key], child[key]) for key in decoder_keys)


def test_bundled_model_is_never_the_output(tmp_path, bundled_model, corrected_case):
    before = file_sha256(bundled_model)
    with pytest.raises(InputError, match="bundled model"):
        finetune(
            bundled_model,
            [corrected_case],
            bundled_model,
            iterations=1,
            replay="none",
            overwrite=True,
            **FAST,
        )
    # the same file reached through another path is refused as well
    alias = bundled_model.parent / ".." / "Models" / bundled_model.name
    with pytest.raises(InputError, match="bundled model"):
        finetune(
            bundled_model,
            [corrected_case],
            alias,
            iterations=1,
            replay="none",
            overwrite=True,
            **FAST,
        )
    assert file_sha256(bundled_model) == before
    assert files_in(bundled_model.parent) == ["bundled.json", "bundled.pt"]


def test_cancelled_finetune_writes_nothing(tmp_path, bundled_model, corrected_case):
    out_dir = tmp_path / "user_models"
    out_dir.mkdir()
    polls = []

    def cancel_during_the_third_step() -> bool:
        polls.append(1)  # polled once per case loaded, after the replay, then every step
        return len(polls) >= 5

    with pytest.raises(Cancelled):
        finetune(
            bundled_model,
            [corrected_case],
            out_dir / "site.pt",
            iterations=50,
            replay="none",
            should_cancel=cancel_during_the_third_step,
            **FAST,
        )
    assert files_in(out_dir) == []


def test_existing_output_is_kept_without_overwrite(tmp_path, bundled_model, corrected_case):
    out = tmp_path / "site.pt"
    out.write_bytes(b"previous model")
    with pytest.raises(InputError, match="exists"):
        finetune(bundled_model, [corrected_case], out, iterations=1, replay="none", **FAST)
    assert out.read_bytes() == b"previous model"


def test_synthetic_replay_uses_training_seeds(tmp_path, bundled_model, corrected_case, monkeypatch):
    replay_source = write_case(tmp_path / "replay_source", "replay", seed=9)
    replay_case = load_case(discover_cases(replay_source)[0])
    seeds_generated = []

    def fake_synthetic_case(seed: int):
        seeds_generated.append(seed)
        return replay_case

    monkeypatch.setattr(finetune_module, "synthetic_case", fake_synthetic_case)
    output = finetune(
        bundled_model,
        [corrected_case],
        tmp_path / "replayed.pt",
        iterations=3,
        replay_cases=2,
        replay_fraction=0.5,
        **FAST,
    )
    # the parent was trained on seeds from 1 000 000: replay draws from those, never 0-999
    assert seeds_generated == [1_000_000, 1_000_001]
    replay = json.loads(output.with_suffix(".json").read_text())["fine_tuning"]["replay"]
    assert replay == {"kind": "synthetic", "seeds": [1_000_000, 1_000_001]}


def test_finetune_command(tmp_path, bundled_model, corrected_case, capsys):
    replay_dir = tmp_path / "synthetic"
    write_case(replay_dir, "synthetic-1000000", seed=7)
    out = tmp_path / "models" / "mine.pt"
    status = main(
        [
            "finetune",
            "--cases",
            str(corrected_case.parent),
            "--out",
            str(out),
            "--iterations",
            "3",
            "--lr",
            "5e-4",
            "--freeze",
            "none",
            "--replay",
            str(replay_dir),
            "--crop",
            "32",
            "--device",
            "cpu",
            "--progress-json",
        ]
    )  # no --model: the bundled model is the default
    assert status == 0
    lines = capsys.readouterr().out.strip().splitlines()
    progress = [json.loads(line) for line in lines[:-1]]
    assert progress[-1]["progress"] == 1.0
    assert any("loss" in entry["message"] for entry in progress)
    summary = json.loads(lines[-1])
    assert summary["output"] == str(out) and summary["sha256"] == file_sha256(out)
    assert summary["parent_sha256"] == file_sha256(bundled_model)
    card = json.loads(out.with_suffix(".json").read_text())
    assert card["fine_tuning"]["settings"]["freeze"] == "none"
    assert card["fine_tuning"]["replay"]["cases"] == ["synthetic-1000000"]

    status = main(["finetune", "--cases", str(corrected_case), "--out", str(bundled_model)])
    assert status == 2 and "bundled model" in capsys.readouterr().err
