"""``eoformer finetune``: adapt a model to a few corrected cases.

Example::

    eoformer finetune --model EoFormerSegmentation/Resources/Models/eoformer_glioma_real_v2.pt \\
        --cases ../shared/data/real/TCGA-FG-6692 --out ~/.eoformer/models/my_site.pt

Progress goes to stderr (a progress bar), or, with ``--progress-json``, to stdout as one JSON
object per line: ``{"progress": 0.12, "message": "iteration 12/100, loss 0.4321"}``; the last
line of stdout is a JSON summary ``{"output": ..., "sha256": ..., ...}``. SIGTERM cancels the
run cleanly: exit status 130 and no file written.
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
from pathlib import Path

from EoFormerSegmentationLib.cli.options import (
    check_model_file,
    fraction,
    non_negative_int,
    positive_float,
    positive_int,
)
from EoFormerSegmentationLib.errors import InputError
from EoFormerSegmentationLib.files import check_creatable_folder

__all__ = ["add_arguments", "run"]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``eoformer finetune``."""
    parser.add_argument(
        "--model", metavar="CKPT", help="model to start from (default: the bundled model)"
    )
    parser.add_argument(
        "--cases",
        nargs="+",
        required=True,
        metavar="DIR",
        help="labelled case folders, or folders of cases (BraTS layouts or "
        "folders written by the Slicer module with a .seg.nrrd)",
    )
    parser.add_argument(
        "--out",
        required=True,
        metavar="NEW_CKPT",
        help="the new model file (.pt); its model card is written beside it",
    )
    parser.add_argument("--iterations", type=positive_int, help="maximum steps (default 200)")
    parser.add_argument("--lr", type=positive_float, help="peak learning rate (default 1e-4)")
    parser.add_argument(
        "--freeze",
        choices=("encoder", "none"),
        help="keep the encoder fixed (default) or train everything",
    )
    parser.add_argument(
        "--replay",
        metavar="SYNTH_DIR|synthetic|none",
        help="cases mixed in so that the model does not forget: 'synthetic' "
        "(default; generated on the fly), 'none', or a folder of cases such as "
        "one written by 'eoformer synth'",
    )
    parser.add_argument(
        "--replay-cases", type=non_negative_int, metavar="N", help="replay cases (4)"
    )
    parser.add_argument(
        "--replay-fraction", type=fraction, metavar="F", help="share of replay crops (0.3)"
    )
    parser.add_argument(
        "--crop", type=positive_int, help="crop edge in voxels (128 on GPU, 96 on CPU)"
    )
    parser.add_argument(
        "--batch-size", type=positive_int, help="crops per step (2 on GPU, 1 on CPU)"
    )
    parser.add_argument(
        "--patience",
        type=non_negative_int,
        help="early stop after N steps without improvement (30; 0: never)",
    )
    parser.add_argument("--device", help="auto (default), cpu or cuda")
    parser.add_argument(
        "--amp",
        choices=("auto", "bf16", "fp16", "none"),
        help="mixed precision (auto: on CUDA only)",
    )
    parser.add_argument("--seed", type=non_negative_int, help="random seed (0)")
    parser.add_argument("--name", help="model name in the model card (default: file stem)")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing NEW_CKPT")
    parser.add_argument(
        "--progress-json",
        action="store_true",
        help="progress as JSON lines on stdout instead of a progress bar",
    )


_SETTING_OPTIONS = (
    "iterations",
    "lr",
    "freeze",
    "replay",
    "replay_cases",
    "replay_fraction",
    "crop",
    "batch_size",
    "patience",
    "device",
    "amp",
    "seed",
)


def run(args: argparse.Namespace) -> int:
    """Run ``eoformer finetune``; returns the exit status."""
    from EoFormerSegmentationLib.models import default_model_path, file_sha256
    from EoFormerSegmentationLib.training.finetune import FinetuneSettings, finetune

    model_path = args.model or default_model_path()
    if model_path is None:
        raise InputError("--model is required: no bundled model is installed")
    out_path = Path(args.out)
    if out_path.is_dir():
        raise InputError(f"--out {out_path}: is a folder; give a .pt file name")
    check_creatable_folder(out_path.parent, f"--out {out_path}")
    check_model_file(model_path)
    overrides = {
        option: getattr(args, option)
        for option in _SETTING_OPTIONS
        if getattr(args, option, None) is not None
    }
    settings = FinetuneSettings(**overrides)

    cancelled = {"flag": False}

    def on_terminate(signum, frame) -> None:
        cancelled["flag"] = True

    previous = signal.signal(signal.SIGTERM, on_terminate)
    bar = None
    if args.progress_json:

        def report(fraction: float, message: str) -> None:
            print(json.dumps({"progress": round(fraction, 4), "message": message}), flush=True)
    else:
        from tqdm.auto import tqdm

        bar = tqdm(total=settings.iterations, desc="fine-tune", unit="step", file=sys.stderr)

        def report(fraction: float, message: str) -> None:
            bar.n = round(fraction * settings.iterations)
            bar.set_postfix_str(message, refresh=False)
            bar.refresh()

    try:
        output = finetune(
            model_path,
            [Path(case) for case in args.cases],
            Path(args.out),
            settings=settings,
            overwrite=args.overwrite,
            name=args.name,
            progress=report,
            should_cancel=lambda: cancelled["flag"],
        )
    finally:
        signal.signal(signal.SIGTERM, previous)
        if bar is not None:
            bar.close()
    card = json.loads(output.with_suffix(".json").read_text(encoding="utf-8"))
    tuning = card.get("fine_tuning", {})
    print(
        json.dumps(
            {
                "output": str(output),
                "model_card": str(output.with_suffix(".json")),
                "sha256": file_sha256(output),
                "parent_sha256": tuning.get("parent", {}).get("sha256"),
                "iterations_run": tuning.get("iterations_run"),
                "stopped_early": tuning.get("stopped_early"),
                "loss_first": tuning.get("loss_first"),
                "loss_last": tuning.get("loss_last"),
            }
        ),
        flush=True,
    )
    return 0
