"""Check that brain extraction never cuts off tumor, on every labelled case available.

Each case's T1 goes through the engine's brain extraction on the network grid (as
``eoformer segment --skull-strip on`` does), and the reference whole-tumor voxels outside the
mask (margin included) are counted. Run from the repository root::

    python tools/brain_extraction_tumor_check.py ../shared/data/brats ../shared/data/real/TCGA-FG-6692
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import SimpleITK as sitk

REPOSITORY = Path(__file__).resolve().parents[1]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("folders", nargs="+", type=Path, help="folders of labelled cases")
    parser.add_argument("--json", type=Path, help="write the per-case table here")
    arguments = parser.parse_args()

    sys.path.insert(0, str(REPOSITORY / "EoFormerSegmentation"))
    from EoFormerSegmentationLib.brain_extraction import extract_brain
    from EoFormerSegmentationLib.geometry import image_to_array, network_grid, resample_onto
    from EoFormerSegmentationLib.training.datasets import discover_cases

    rows = []
    for case in discover_cases([str(f) for f in arguments.folders], require_label=True):
        t1 = sitk.ReadImage(str(case.images["t1"]), sitk.sitkFloat32)
        grid = network_grid(sitk.ReadImage(str(case.images["t1ce"])))
        brain = extract_brain(image_to_array(resample_onto(t1, grid)), source="t1")
        label = sitk.ReadImage(str(case.label))
        tumor = image_to_array(resample_onto(label, grid, sitk.sitkNearestNeighbor)) > 0
        outside = int(np.count_nonzero(tumor & ~brain.mask))
        rows.append(
            {
                "case": case.name,
                "brain_ml": round(brain.volume_ml, 1),
                "whole_tumor_ml": round(float(tumor.sum()) / 1000.0, 1),
                "tumor_voxels_outside_mask": outside,
                "seconds": round(brain.seconds, 1),
            }
        )
        print(json.dumps(rows[-1]), flush=True)
    cut = [row["case"] for row in rows if row["tumor_voxels_outside_mask"]]
    summary = {
        "cases": len(rows),
        "cases_with_tumor_outside_mask": cut,
        "brain_ml_range": [min(r["brain_ml"] for r in rows), max(r["brain_ml"] for r in rows)],
    }
    print(json.dumps(summary))
    if arguments.json:
        arguments.json.write_text(json.dumps({"rows": rows, "summary": summary}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
