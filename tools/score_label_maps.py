"""Score label maps against the references of labelled cases, without running a model.

For label maps made elsewhere, such as the predictions on the cases as BraTS prepared them,
carried onto a simulated scan's grid by ``tools/simulate_raw_cases.py --carry``: scored against
that scan's reference, they show what judging on the scan's grid alone costs. Each label map
``LABELS/<case>.nii.gz`` is matched to the case folder of the same name. Run from the
repository root::

    python tools/score_label_maps.py --cases runs/sim/raw --labels runs/sim/raw_carried \\
        --json runs/sim/raw_carried_scores.json
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

REPOSITORY = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPOSITORY / "EoFormerSegmentation"))

from EoFormerSegmentationLib.evaluation import summarize  # noqa: E402
from EoFormerSegmentationLib.labels import REGIONS  # noqa: E402
from EoFormerSegmentationLib.metrics import evaluate_labels  # noqa: E402
from EoFormerSegmentationLib.segmentation_file import read_label_map  # noqa: E402
from EoFormerSegmentationLib.training.datasets import discover_cases  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--cases", nargs="+", type=Path, required=True, help="labelled cases")
    parser.add_argument("--labels", type=Path, required=True, help="folder of <case>.nii.gz")
    parser.add_argument("--json", type=Path, help="write the scores there")
    arguments = parser.parse_args()

    per_case = []
    for case in discover_cases([str(c) for c in arguments.cases], require_label=True):
        path = arguments.labels / f"{case.name}.nii.gz"
        if not path.is_file():
            raise SystemExit(f"{path}: no label map for case {case.name}")
        prediction, predicted_image = read_label_map(str(path))
        reference, reference_image = read_label_map(str(case.label))
        if prediction.shape != reference.shape or not np.allclose(
            predicted_image.GetSpacing(), reference_image.GetSpacing()
        ):
            raise SystemExit(f"{path}: not on the grid of {case.label}")
        scores = evaluate_labels(prediction, reference, reference_image.GetSpacing())
        per_case.append({"case": case.name, "scores": scores})
        print(
            f"{case.name}: "
            + " ".join(f"{r} {scores[r]['dice']:.3f}/{scores[r]['hd95']:.1f}" for r in REGIONS)
        )
    summary = summarize(per_case)
    print(
        "mean: "
        + " ".join(
            f"{r} {summary[r]['dice_mean']:.3f}/{summary[r]['hd95_mean']:.1f} mm" for r in REGIONS
        )
    )
    if arguments.json:
        report = {"cases": per_case, "summary": summary}
        arguments.json.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
