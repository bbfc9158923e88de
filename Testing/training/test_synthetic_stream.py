"""Synthetic cases streamed to training: seed ranges, worker partitioning, model card."""

from __future__ import annotations

import json

import pytest
import torch
from EoFormerSegmentationLib.errors import InputError
from EoFormerSegmentationLib.training import synthetic_stream
from EoFormerSegmentationLib.training import trainer as trainer_module
from EoFormerSegmentationLib.training.synthetic_stream import (
    EVALUATION_SEEDS,
    TRAINING_SEED_START,
    SyntheticCropStream,
    check_training_seeds,
)
from EoFormerSegmentationLib.training.trainer import TrainingConfig, train
from EoFormerSegmentationLib.training.transforms import training_transforms
from tiny_cases import TINY_MODEL_CONFIG, tiny_synthetic_case


@pytest.fixture
def tiny_generator(monkeypatch):
    """Replace the synthetic generator by tiny 32^3 cases (the stream and validation use it)."""
    monkeypatch.setattr(synthetic_stream, "synthetic_case", tiny_synthetic_case)
    monkeypatch.setattr(trainer_module, "synthetic_case", tiny_synthetic_case)
    monkeypatch.setattr(trainer_module, "generator_version", lambda: "test-generator-1")


def test_workers_and_ranks_read_disjoint_seeds():
    def stream(rank: int) -> SyntheticCropStream:
        return SyntheticCropStream(
            training_transforms(crop_size=16, crops_per_case=1),
            seed_start=TRAINING_SEED_START,
            seed_count=1000,
            case_factory=tiny_synthetic_case,
            rank=rank,
            world_size=2,
            shuffle_buffer=0,
        )

    seeds_of_rank = []
    for rank in (0, 1):
        loader = torch.utils.data.DataLoader(stream(rank), batch_size=1, num_workers=2)
        names = [batch["name"][0] for batch, _ in zip(loader, range(8))]
        seeds_of_rank.append({int(name.split("-")[1]) - TRAINING_SEED_START for name in names})
    # 2 ranks x 2 workers share the global case order 0, 1, 2, ... without overlap
    assert seeds_of_rank[0] == {0, 1, 4, 5, 8, 9, 12, 13}
    assert seeds_of_rank[1] == {2, 3, 6, 7, 10, 11, 14, 15}


def test_stream_cycles_over_its_seed_range_and_continues_after_resume():
    stream = SyntheticCropStream(
        training_transforms(crop_size=16, crops_per_case=2),
        seed_start=2_000_000,
        seed_count=3,
        case_factory=tiny_synthetic_case,
        start_case=2,
        shuffle_buffer=0,
    )
    names = [crop["name"] for crop, _ in zip(stream, range(8))]
    assert names == [f"synthetic-{2_000_000 + s}" for s in (2, 2, 0, 0, 1, 1, 2, 2)]


@pytest.mark.parametrize(
    "start, count, message",
    [
        (0, 10, "held-out evaluation"),
        (995, 10, "held-out evaluation"),
        (950_000, 10, "validation"),
        (899_999, 2, "validation"),
        (2_000_000, 0, "at least 1"),
    ],
)
def test_training_seeds_never_overlap_evaluation_or_validation(start, count, message):
    with pytest.raises(InputError, match=message):
        check_training_seeds(start, count)


def test_default_training_seeds_are_allowed():
    check_training_seeds(TRAINING_SEED_START, 1_000_000)
    check_training_seeds(EVALUATION_SEEDS.stop, 1000)


def test_synthetic_training_run_records_its_seeds(tmp_path, tiny_generator):

    config = TrainingConfig(
        out_dir=str(tmp_path / "run"),
        synthetic_cases=50,
        synthetic_seed=3_000_000,
        val_cases=2,
        iterations=4,
        batch_size=2,
        crops_per_case=2,
        crop=32,
        workers=0,
        val_every=4,
        model_config=dict(TINY_MODEL_CONFIG),
    )
    result = train(config, progress_bar=False)
    assert result.best_dice is not None
    card = json.loads((tmp_path / "run" / "best.json").read_text())
    synthetic = card["training_data"]["synthetic"]
    assert synthetic["seeds"] == [3_000_000, 3_000_049]
    assert synthetic["generator_version"] == "test-generator-1"
    assert synthetic["cases_generated_at_most"] == 4  # 8 crops, 2 per case
    assert synthetic["held_out_evaluation_seeds"] == [0, 999]
    assert card["validation"]["cases"] == ["synthetic-900000", "synthetic-900001"]


def test_time_limit_ends_the_run_with_a_final_checkpoint(tmp_path, tiny_generator):
    config = TrainingConfig(
        out_dir=str(tmp_path / "run"),
        synthetic_cases=5,
        iterations=1_000_000,
        time_limit=0.02,
        val_cases=0,
        batch_size=1,
        crops_per_case=1,
        crop=16,
        workers=0,
        val_every=1_000_000,
        log_every=1,
        model_config=dict(TINY_MODEL_CONFIG),
    )
    result = train(config, progress_bar=False)
    assert 1 <= result.step < 1_000_000
    card = json.loads((tmp_path / "run" / "last.json").read_text())
    assert card["training"]["step"] == result.step
    assert card["training"]["time_limit_minutes"] == 0.02
    assert 1.2 <= card["training"]["time_s"] < 30
