"""Average the weights of models fine-tuned from the same starting point into one model.

Models trained from the same weights (``eoformer train --init``) usually stay close enough
that the average of their weights is a working network, often better than each of them
("model soup"; Wortsman et al., ICML 2022), at the cost of one model at inference time rather
than an ensemble's several. The weights are averaged tensor by tensor with the given weights
(default: equal); the card is the last model's, with the members recorded under
``weight_average``. Run from the repository root::

    python tools/average_weights.py --model runs/v2.pt --model runs/cand/best.pt \\
        --weight 0.5 --weight 0.5 --out runs/soup/soup_50.pt

Score the result like any checkpoint (``tools/evaluate_real_cases.py``); ``--weight`` sweeps
are cheap, but the cases that choose the weights are then no longer unseen.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import List, Sequence

REPOSITORY = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPOSITORY / "EoFormerSegmentation"))

from EoFormerSegmentationLib.models import (  # noqa: E402
    LoadedModel,
    file_sha256,
    load_checkpoint,
    save_checkpoint,
)


def average(models: Sequence[LoadedModel], weights: Sequence[float]):
    """The network of ``models[-1]`` with every floating-point tensor replaced by the weighted
    mean of the members' (``weights`` sum to 1); other tensors are the last model's.

    Raises:
        SystemExit: the members do not share one network layout.
    """
    import torch

    last = models[-1]
    for member in models[:-1]:
        if member.config != last.config:
            raise SystemExit(
                f"{member.path}: its network settings differ from {last.path}'s; only models "
                "of one layout (fine-tuned from the same start) can be averaged"
            )
    states = [member.model.state_dict() for member in models]
    averaged = {}
    for key, value in states[-1].items():
        if torch.is_floating_point(value):
            averaged[key] = sum(
                weight * state[key].double() for weight, state in zip(weights, states)
            ).to(value.dtype)
        else:
            averaged[key] = value
    last.model.load_state_dict(averaged)
    return last.model


def main(argv: List[str] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", action="append", type=Path, required=True, help="checkpoint")
    parser.add_argument(
        "--weight", action="append", type=float, help="one per --model (default: equal)"
    )
    parser.add_argument("--out", type=Path, required=True, help="the averaged checkpoint")
    parser.add_argument("--name", help="model name (default: the file stem)")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing file")
    arguments = parser.parse_args(argv)
    if len(arguments.model) < 2:
        raise SystemExit("give at least two --model")
    weights = arguments.weight or [1.0] * len(arguments.model)
    if len(weights) != len(arguments.model):
        raise SystemExit(f"{len(weights)} --weight for {len(arguments.model)} --model")
    total = float(sum(weights))
    if total <= 0 or any(weight < 0 for weight in weights):
        raise SystemExit("--weight: the weights must be non-negative with a positive sum")
    weights = [weight / total for weight in weights]
    if arguments.out.exists() and not arguments.overwrite:
        raise SystemExit(f"{arguments.out} exists; add --overwrite to replace it")
    models = [load_checkpoint(path, with_raw_scan_model=False) for path in arguments.model]
    network = average(models, weights)
    card = dict(models[-1].card)
    for key in ("sha256", "file"):
        card.pop(key, None)
    card["name"] = arguments.name or arguments.out.stem
    card["weight_average"] = {
        "method": "weighted mean of every floating-point tensor of the members' weights",
        "members": [
            {"name": member.name, "sha256": member.sha256, "weight": round(weight, 4)}
            for member, weight in zip(models, weights)
        ],
        "card_from": models[-1].name,
    }
    save_checkpoint(arguments.out, network, card)
    print(json.dumps({"file": str(arguments.out), "sha256": file_sha256(arguments.out)}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
