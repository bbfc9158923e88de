"""Turn a training run's checkpoint into the bundled model, with its measured model card.

The checkpoint is scored on the held-out synthetic cases and on the labelled real case with
the same code as ``eoformer evaluate --cases``; the scores, the exact training command and
the intended use are added to its model card, and the weights are written (unchanged) to the
bundled model's place. Run from the repository root::

    eoformer synth --out heldout --cases 20 --seed 0
    python tools/bundle_model.py --checkpoint runs/v1/best.pt --synthetic heldout \\
        --training-command "eoformer train ..."

Reports already written by ``eoformer evaluate --cases ... --json`` for the same checkpoint
can be passed with ``--synthetic-report`` / ``--real-report`` instead of scoring again.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any, Dict, Optional

REPOSITORY = Path(__file__).resolve().parents[1]
REAL_CASE = REPOSITORY.parent / "shared" / "data" / "real" / "TCGA-FG-6692"

INTENDED_USE = (
    "Research only. Not a medical device and not for clinical use: its output must not be "
    "used for diagnosis, treatment planning or any other decision about a patient."
)


def scores(report: Dict[str, Any]) -> Dict[str, Any]:
    """The model-card form of an ``evaluate --cases`` report."""
    return {
        "cases": [case["case"] for case in report["cases"]],
        "per_region": report["summary"],
        "per_case": {case["case"]: case["scores"] for case in report["cases"]},
    }


def score(checkpoint: Path, folder: Path, saved: Optional[Path]) -> Dict[str, Any]:
    """Scores of ``checkpoint`` on the cases under ``folder`` (or a saved report of them)."""
    from EoFormerSegmentationLib.evaluation import evaluate_cases
    from EoFormerSegmentationLib.models import file_sha256

    if saved is not None:
        report = json.loads(saved.read_text(encoding="utf-8"))
        if report["model"]["sha256"] != file_sha256(checkpoint):
            raise SystemExit(f"{saved}: scores a different checkpoint than {checkpoint}")
        return report
    return evaluate_cases(checkpoint, [folder], device="cpu")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--checkpoint", required=True, type=Path, help="the run's best.pt")
    parser.add_argument("--synthetic", required=True, type=Path, help="held-out synthetic cases")
    parser.add_argument("--synthetic-report", type=Path, help="saved evaluate report of them")
    parser.add_argument("--real-report", type=Path, help="saved evaluate report, real case")
    parser.add_argument("--training-command", required=True, help="the command that trained it")
    parser.add_argument("--out", type=Path, help="default: the bundled model's place")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing file")
    parser.add_argument(
        "--earlier-stage",
        action="append",
        default=[],
        metavar="CKPT=COMMAND",
        help="a checkpoint this run started from (train --init) and the command that trained "
        "it; repeat for longer chains, earliest first",
    )
    parser.add_argument(
        "--real-case-selected",
        action="store_true",
        help="say in the card that the real case's score was used to choose between candidate "
        "checkpoints (it was still never trained on)",
    )
    arguments = parser.parse_args()

    sys.path.insert(0, str(REPOSITORY / "EoFormerSegmentation"))
    from EoFormerSegmentationLib.models import (
        bundled_model_path,
        file_sha256,
        load_checkpoint,
        save_checkpoint,
    )

    out = arguments.out or bundled_model_path()
    if out.exists() and not arguments.overwrite:
        raise SystemExit(f"{out} exists; add --overwrite to replace it")
    synthetic = score(arguments.checkpoint, arguments.synthetic, arguments.synthetic_report)
    real = score(arguments.checkpoint, REAL_CASE, arguments.real_report)
    dataset = json.loads((arguments.synthetic / "dataset.json").read_text(encoding="utf-8"))

    loaded = load_checkpoint(arguments.checkpoint)
    card = dict(loaded.card)
    card["name"] = out.stem
    card["intended_use"] = INTENDED_USE
    card["training_data"] = dict(
        card.get("training_data", {}),
        real_cases=[],
        note="trained on synthetic cases only; no real patient image was used in training "
        "or validation",
    )
    card["training_command"] = arguments.training_command
    stages = []
    for entry in arguments.earlier_stage:
        path, _, command = entry.partition("=")
        earlier = load_checkpoint(Path(path)).card
        stages.append(
            {
                "sha256": file_sha256(Path(path)),
                "training_command": command,
                **{key: earlier.get(key) for key in ("training_data", "training", "validation")},
            }
        )
    if stages:
        card["earlier_training_stages"] = stages
    card["trained_checkpoint_sha256"] = file_sha256(arguments.checkpoint)
    card["evaluation"] = {
        "metrics": "Dice and HD95 (mm) per region, BraTS conventions (both empty: Dice 1, "
        "HD95 0; one empty: HD95 373.13)",
        "inference": "sliding window 128^3, overlap 0.5, Gaussian blending, no test-time "
        "augmentation, default post-processing",
        "held_out_synthetic": dict(
            scores(synthetic),
            generator_version=dataset.get("generator_version"),
            seeds=dataset.get("seeds"),
            command=f"eoformer synth --out heldout --cases {len(synthetic['cases'])} --seed 0"
            f" && eoformer evaluate --cases heldout --model {out.name}",
        ),
        "real_case": dict(
            scores(real),
            reference="consensus of five BraTS 2020 algorithms (seg_consensus.nii.gz)",
            used_in_training=False,
            used_for_model_selection=arguments.real_case_selected,
        ),
    }
    save_checkpoint(out, loaded.model, card)
    print(json.dumps({"file": str(out), "sha256": file_sha256(out)}, indent=2))
    for kind, report in (("synthetic", synthetic), ("real", real)):
        for region, values in report["summary"].items():
            print(
                f"{kind:9s} {region}: Dice {values['dice_mean']:.3f} +- {values['dice_std']:.3f}"
                f"  HD95 {values['hd95_mean']:.1f} mm"
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
