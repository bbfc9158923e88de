"""Run by ``torchrun`` in test_trainer.py: train a few steps and save this rank's weights.

Usage: ``torchrun --standalone --nproc_per_node 2 ddp_train_worker.py DATA_DIR OUT_DIR``
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import torch
from EoFormerSegmentationLib.training.trainer import TrainingConfig, train
from tiny_cases import TINY_MODEL_CONFIG


def main(data_dir: str, out_dir: str) -> None:
    out = Path(out_dir)
    config = TrainingConfig(
        out_dir=str(out / "run"),
        data=[data_dir],
        val_fraction=0.34,
        iterations=4,
        batch_size=1,
        crop=32,
        lr=1e-2,
        workers=0,
        val_every=2,
        log_every=1,
        device="cpu",
        model_config=TINY_MODEL_CONFIG,
    )
    result = train(config, progress_bar=False)
    torch.save(result.model.state_dict(), out / f"rank{os.environ['RANK']}.pt")


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
