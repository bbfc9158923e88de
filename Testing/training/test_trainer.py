"""Training: loss goes down, checkpoints, resuming, the CSV log, several processes."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from EoFormerSegmentationLib.cli import main
from EoFormerSegmentationLib.errors import Cancelled, InputError
from EoFormerSegmentationLib.models import load_checkpoint
from EoFormerSegmentationLib.training.trainer import (
    LOG_COLUMNS,
    TrainingConfig,
    WarmupCosine,
    build_model,
    train,
)
from tiny_cases import TINY_MODEL_CONFIG, TINY_WIDTHS

HERE = Path(__file__).resolve().parent


def read_log(run_dir: Path):
    with open(run_dir / "log.csv", newline="") as stream:
        reader = csv.DictReader(stream)
        assert reader.fieldnames == LOG_COLUMNS
        return list(reader)


def tiny_config(run_dir: Path, data: Path, **changes) -> TrainingConfig:
    settings = dict(
        out_dir=str(run_dir),
        data=[str(data)],
        val_fraction=0.34,
        iterations=6,
        batch_size=2,
        crop=32,
        lr=1e-2,
        warmup=2,
        workers=0,
        val_every=2,
        log_every=1,
        model_config=dict(TINY_MODEL_CONFIG),
    )
    settings.update(changes)
    return TrainingConfig(**settings)


def test_a_few_steps_reduce_the_loss(tmp_path, tiny_dataset):
    run_dir = tmp_path / "run"
    result = train(
        tiny_config(run_dir, tiny_dataset, iterations=30, warmup=3, val_every=30),
        progress_bar=False,
    )
    assert result.step == 30
    rows = read_log(run_dir)
    losses = [float(row["loss"]) for row in rows]
    assert [int(row["step"]) for row in rows] == list(range(1, 31))
    assert sum(losses[-5:]) / 5 < sum(losses[:5]) / 5 - 0.15
    # validation Dice on the held-out case is logged at the validation step
    assert rows[-1]["val_dice_WT"] and 0.0 <= float(rows[-1]["val_dice_mean"]) <= 1.0
    assert not rows[0]["val_dice_WT"]

    loaded = load_checkpoint(run_dir / "best.pt")
    card = loaded.card
    assert card["training"]["step"] == 30
    assert len(card["training_data"]["cases"]) == 2 and len(card["validation"]["cases"]) == 1
    assert set(card["training_data"]["cases"]).isdisjoint(card["validation"]["cases"])
    assert card["config"]["encoder_dims"] == TINY_MODEL_CONFIG["encoder_dims"]
    assert card["sha256"] == loaded.sha256


def test_interrupted_run_resumes_from_its_last_checkpoint(tmp_path, tiny_dataset):
    run_dir = tmp_path / "run"
    steps_seen = []

    def cancel_after_step_three() -> bool:
        steps_seen.append(1)
        return len(steps_seen) == 3

    with pytest.raises(Cancelled):
        train(
            tiny_config(run_dir, tiny_dataset),
            should_cancel=cancel_after_step_three,
            progress_bar=False,
        )
    saved = torch.load(run_dir / "last_state.pt", weights_only=False)
    assert saved["state"]["step"] == 2  # the last validation before the interruption

    result = train(tiny_config(run_dir, tiny_dataset), resume=True, progress_bar=False)
    assert result.step == 6
    rows = read_log(run_dir)
    assert [int(row["step"]) for row in rows] == [1, 2, 3, 4, 5, 6]  # step 3 redone once
    saved = torch.load(run_dir / "last_state.pt", weights_only=False)
    assert saved["state"]["step"] == 6
    adam_steps = {float(s["step"]) for s in saved["optimizer"]["state"].values()}
    assert adam_steps == {6.0}  # the optimiser state continued rather than restarted
    # the learning-rate schedule continued where it stopped
    schedule = WarmupCosine(2, 6)
    for row in rows:
        expected = 1e-2 * schedule(int(row["step"]) - 1)  # the rate used by that step
        assert float(row["lr"]) == pytest.approx(expected, rel=1e-3)
    assert load_checkpoint(run_dir / "last.pt").card["training"]["step"] == 6


def test_run_folder_is_not_overwritten_and_resume_needs_a_run(tmp_path, tiny_dataset):
    run_dir = tmp_path / "run"
    with pytest.raises(InputError, match="nothing to resume"):
        train(tiny_config(run_dir, tiny_dataset), resume=True, progress_bar=False)
    train(tiny_config(run_dir, tiny_dataset, iterations=2), progress_bar=False)
    with pytest.raises(InputError, match="already holds a training run"):
        train(tiny_config(run_dir, tiny_dataset, iterations=2), progress_bar=False)


def test_train_command_with_worker_processes(tmp_path, tiny_dataset, capsys):
    run_dir = tmp_path / "run"
    common = ["--crop", "32", "--workers", "2", "--no-progress", "--val-every", "2"]
    status = main(
        [
            "train",
            "--data",
            str(tiny_dataset),
            "--out",
            str(run_dir),
            "--iterations",
            "2",
            "--model-widths",
            TINY_WIDTHS,
            "--batch-size",
            "2",
            *common,
        ]
    )
    assert status == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert summary["step"] == 2 and Path(summary["best"]).is_file()
    assert json.loads((run_dir / "config.json").read_text())["workers"] == 2

    assert main(["train", "--out", str(run_dir), "--resume", "--iterations", "4", *common]) == 0
    assert json.loads(capsys.readouterr().out.strip().splitlines()[-1])["step"] == 4
    assert [int(row["step"]) for row in read_log(run_dir)][-1] == 4

    assert main(["train", "--out", str(run_dir), "--resume", "--lr", "1"]) == 2
    assert "only" in capsys.readouterr().err


def test_train_command_errors_name_the_problem(tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    status = main(["train", "--data", str(tmp_path / "empty"), "--out", str(tmp_path / "run")])
    assert status == 2
    assert "no recognisable cases" in capsys.readouterr().err
    assert main(["train", "--out", str(tmp_path / "run")]) == 2
    assert "--synthetic-cases" in capsys.readouterr().err
    assert not (tmp_path / "run").exists()


def test_two_processes_hold_identical_weights(tmp_path, tiny_dataset):
    environment = dict(os.environ, OMP_NUM_THREADS="1")
    environment.pop("RANK", None)
    environment.pop("WORLD_SIZE", None)
    completed = subprocess.run(
        [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--standalone",
            "--nproc_per_node",
            "2",
            str(HERE / "ddp_train_worker.py"),
            str(tiny_dataset),
            str(tmp_path),
        ],
        env=environment,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert completed.returncode == 0, completed.stderr[-3000:]
    rank0 = torch.load(tmp_path / "rank0.pt")
    rank1 = torch.load(tmp_path / "rank1.pt")
    assert rank0.keys() == rank1.keys()
    for key in rank0:
        assert torch.equal(rank0[key], rank1[key]), key
    # the weights did train (they differ from the seeded initialisation)
    torch.manual_seed(0)
    initial = build_model(dict(TINY_MODEL_CONFIG)).state_dict()
    assert any(not torch.equal(initial[key], rank0[key]) for key in rank0)
    # only rank 0 wrote the run folder; its checkpoint holds the shared weights
    rows = read_log(tmp_path / "run")
    assert [int(row["step"]) for row in rows] == [1, 2, 3, 4]
    card = load_checkpoint(tmp_path / "run" / "last.pt").card
    assert card["training"]["processes"] == 2 and card["training"]["samples_seen"] == 8
    final = load_checkpoint(tmp_path / "run" / "last.pt").model.state_dict()
    for key in rank0:
        assert torch.equal(final[key], rank0[key]), key


def test_carvemix_is_recorded_in_the_card_and_its_probability_checked(tmp_path, tiny_dataset):
    with pytest.raises(InputError, match="--carvemix 1.5"):
        train(tiny_config(tmp_path / "bad", tiny_dataset, carvemix=1.5), progress_bar=False)
    run_dir = tmp_path / "run"
    train(tiny_config(run_dir, tiny_dataset, iterations=2, carvemix=0.5), progress_bar=False)
    card = load_checkpoint(run_dir / "last.pt").card
    assert "CarveMix, p 0.5" in card["training"]["augmentation"]


def test_thick_slice_share_is_recorded_in_the_card_and_checked(tmp_path, tiny_dataset):
    with pytest.raises(InputError, match="--thick-slices 1.5"):
        train(
            tiny_config(tmp_path / "bad", tiny_dataset, augmentation="strong", thick_slices=1.5),
            progress_bar=False,
        )
    with pytest.raises(InputError, match="needs --augmentation strong"):
        train(tiny_config(tmp_path / "basic", tiny_dataset, thick_slices=0.6), progress_bar=False)
    run_dir = tmp_path / "run"
    config = tiny_config(
        run_dir, tiny_dataset, iterations=2, augmentation="strong", thick_slices=0.6
    )
    train(config, progress_bar=False)
    card = load_checkpoint(run_dir / "last.pt").card
    assert (
        "simulated thick slices (2-7 mm along one axis, p 0.6)" in card["training"]["augmentation"]
    )
