"""``eoformer train``: train EoFormer on BraTS-layout folders and/or synthetic cases.

Examples::

    # BraTS 2021 training data, 10% of the cases held out for validation
    eoformer train --data BraTS2021_Training_Data --out runs/brats21

    # synthetic cases generated on the fly (no data on disk)
    eoformer train --synthetic-cases 20000 --out runs/synthetic

    # several GPUs
    torchrun --nproc_per_node 4 -m EoFormerSegmentationLib train --data ... --out ...

    # continue an interrupted run
    eoformer train --out runs/brats21 --resume
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path
from typing import Any, Dict

from EoFormerSegmentationLib.errors import InputError

__all__ = ["add_arguments", "run", "parse_widths"]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``eoformer train`` (defaults are those of ``TrainingConfig``)."""
    data = parser.add_argument_group("data")
    data.add_argument(
        "--data",
        nargs="+",
        metavar="DIR",
        help="BraTS 2020/2021/2023-layout folders of labelled cases (optional "
        "with --synthetic-cases)",
    )
    data.add_argument(
        "--synthetic-cases",
        type=int,
        metavar="N",
        help="train on N synthetic cases generated on the fly (seeds S ... S+N-1, cycled)",
    )
    data.add_argument(
        "--synthetic-seed",
        type=int,
        metavar="S",
        help="first synthetic training seed (default 1000000; seeds 0-999 are "
        "kept for held-out evaluation, 900000-999999 for validation)",
    )
    data.add_argument(
        "--synthetic-fraction",
        type=float,
        metavar="F",
        help="share of synthetic crops when --data is given too (default 0.5)",
    )
    data.add_argument(
        "--val",
        nargs="+",
        metavar="DIR",
        help="validation folders (default: hold out --val-fraction of --data, "
        "or synthetic validation cases for synthetic-only runs)",
    )
    data.add_argument(
        "--val-cases",
        type=int,
        metavar="N",
        help="validation cases used for the validation Dice (default 8)",
    )
    data.add_argument(
        "--val-fraction",
        type=float,
        metavar="F",
        help="share of --data held out when --val is not given (default 0.1)",
    )
    data.add_argument(
        "--crops-per-case",
        type=int,
        metavar="K",
        help="crops per loaded case (default 2; 4 for synthetic cases)",
    )
    data.add_argument(
        "--augmentation",
        choices=("basic", "strong"),
        help="basic (default: flips, intensity jitter) or strong (nnU-Net-style rotation, "
        "scaling, gamma, blur, noise, simulated thick slices; for few real cases)",
    )
    data.add_argument(
        "--carvemix",
        type=float,
        metavar="P",
        help="probability that a training case gets another case's tumour pasted in with its "
        "label (CarveMix; cases in one atlas space, such as BraTS; default 0)",
    )
    data.add_argument(
        "--thick-slices",
        type=float,
        metavar="P",
        help="share of crops that strong augmentation turns into a simulated thick-slice "
        "(2-7 mm) acquisition (default 0.25)",
    )
    data.add_argument(
        "--cache",
        action="store_true",
        default=None,
        help="keep loaded cases in memory (small data sets)",
    )

    run_group = parser.add_argument_group("run")
    run_group.add_argument(
        "--out",
        required=True,
        metavar="RUN_DIR",
        help="run folder: checkpoints, model cards, log.csv",
    )
    run_group.add_argument(
        "--resume", action="store_true", help="continue the run in RUN_DIR from its last checkpoint"
    )
    run_group.add_argument(
        "--iterations", type=int, metavar="N", help="optimisation steps (default 20000)"
    )
    run_group.add_argument(
        "--time-limit",
        type=float,
        metavar="MIN",
        help="stop after MIN minutes of training with a final checkpoint; the learning-rate "
        "schedule follows whichever of steps and time is further along",
    )
    run_group.add_argument(
        "--batch-size", type=int, metavar="B", help="crops per step and process (default 2)"
    )
    run_group.add_argument(
        "--crop", type=int, metavar="VOXELS", help="crop edge, multiple of 16 (default 128)"
    )
    run_group.add_argument("--lr", type=float, help="peak learning rate (default 3e-4)")
    run_group.add_argument("--weight-decay", type=float, help="AdamW weight decay (1e-5)")
    run_group.add_argument(
        "--warmup",
        type=int,
        metavar="STEPS",
        help="linear warm-up steps (default 5%% of --iterations)",
    )
    run_group.add_argument("--grad-clip", type=float, help="gradient norm limit (1.0)")
    run_group.add_argument(
        "--workers", type=int, help="data loader processes per GPU/process (default 4)"
    )
    run_group.add_argument("--device", help="auto (default), cpu, cuda or cuda:N")
    run_group.add_argument(
        "--amp",
        choices=("auto", "bf16", "fp16", "none"),
        help="mixed precision (auto: bf16/fp16 on CUDA, none on CPU)",
    )
    run_group.add_argument(
        "--val-every",
        type=int,
        metavar="N",
        help="validate and checkpoint every N steps (default 500)",
    )
    run_group.add_argument(
        "--log-every", type=int, metavar="N", help="log.csv row every N steps (default 10)"
    )
    run_group.add_argument("--seed", type=int, help="random seed (default 0)")
    run_group.add_argument("--name", help="model name in the model card (default: RUN_DIR)")
    run_group.add_argument("--no-progress", action="store_true", help="no progress bar (for logs)")

    model = parser.add_argument_group("model")
    model.add_argument("--init", metavar="CKPT", help="start from this checkpoint's weights")
    model.add_argument(
        "--model-widths",
        metavar="W0,W1,W2,W3",
        help="channel widths of the four encoder stages (default 32,64,128,256;"
        " smaller for quick tests)",
    )
    model.add_argument(
        "--model-config",
        metavar="JSON",
        help="other EoFormer constructor arguments as a JSON object",
    )


def parse_widths(text: str) -> Dict[str, Any]:
    """EoFormer constructor kwargs for ``--model-widths W0,W1,W2,W3``.

    The encoder stages get ``W0..W3`` channels, the decoder stages ``W2, W1, W0`` and the
    full-resolution head ``W0 / 2``, the proportions of the default network (32, 64, 128, 256).
    """
    try:
        widths = [int(part) for part in text.split(",")]
    except ValueError as error:
        raise InputError(
            f"--model-widths {text}: expected four integers such as 16,32,64,128"
        ) from error
    if len(widths) != 4 or any(width < 1 for width in widths):
        raise InputError(f"--model-widths {text}: expected four positive integers")
    return {
        "encoder_dims": widths,
        "decoder_dims": [widths[2], widths[1], widths[0]],
        "head_channels": max(widths[0] // 2, 2),
    }


_OPTION_TO_FIELD = {
    "data": "data",
    "val": "val",
    "synthetic_cases": "synthetic_cases",
    "synthetic_seed": "synthetic_seed",
    "synthetic_fraction": "synthetic_fraction",
    "val_cases": "val_cases",
    "val_fraction": "val_fraction",
    "crops_per_case": "crops_per_case",
    "cache": "cache",
    "augmentation": "augmentation",
    "carvemix": "carvemix",
    "thick_slices": "thick_slices",
    "iterations": "iterations",
    "time_limit": "time_limit",
    "batch_size": "batch_size",
    "crop": "crop",
    "lr": "lr",
    "weight_decay": "weight_decay",
    "warmup": "warmup",
    "grad_clip": "grad_clip",
    "workers": "workers",
    "device": "device",
    "amp": "amp",
    "val_every": "val_every",
    "log_every": "log_every",
    "seed": "seed",
    "name": "name",
    "init": "init",
}
# what may change when a run is resumed (the rest would make it a different run)
_RESUMABLE = {"iterations", "time_limit", "workers", "device", "val_every", "log_every", "amp"}


def run(args: argparse.Namespace) -> int:
    """Run ``eoformer train``; returns the exit status."""
    from EoFormerSegmentationLib.cli.options import check_run_folder
    from EoFormerSegmentationLib.training.trainer import TrainingConfig, train

    check_run_folder(args.out, None if args.resume else args.init)
    given = {
        field: getattr(args, option)
        for option, field in _OPTION_TO_FIELD.items()
        if getattr(args, option, None) is not None
    }
    for key in ("data", "val", "init"):
        if key in given:
            given[key] = (
                [str(Path(p)) for p in given[key]]
                if isinstance(given[key], list)
                else str(Path(given[key]))
            )
    model_config: Dict[str, Any] = {}
    if args.model_config:
        try:
            model_config.update(json.loads(args.model_config))
        except ValueError as error:
            raise InputError(f"--model-config: not a JSON object ({error})") from error
    if args.model_widths:
        model_config.update(parse_widths(args.model_widths))

    run_dir = Path(args.out)
    if args.resume:
        saved_path = run_dir / "config.json"
        if not saved_path.is_file():
            raise InputError(f"{run_dir}: nothing to resume (no config.json)")
        saved = json.loads(saved_path.read_text(encoding="utf-8"))
        changed = sorted(
            key for key, value in given.items() if key not in _RESUMABLE and saved.get(key) != value
        )
        if changed or model_config:
            raise InputError(
                f"--resume continues the saved run; only {', '.join(sorted(_RESUMABLE))} may "
                f"change (given: {', '.join(changed) or 'model options'})"
            )
        saved.update({key: given[key] for key in given if key in _RESUMABLE})
        saved["out_dir"] = str(run_dir)
        config = TrainingConfig.from_json(saved)
    else:
        config = TrainingConfig(out_dir=str(run_dir), model_config=model_config, **given)

    result = train(config, resume=args.resume, progress_bar=not args.no_progress)
    if int(os.environ.get("RANK", "0")) == 0:
        summary = {
            "run_dir": str(result.run_dir),
            "last": str(result.last_checkpoint),
            "best": str(result.best_checkpoint),
            "step": result.step,
            "best_val_dice_mean": result.best_dice,
        }
        print(json.dumps(summary))
    return 0
