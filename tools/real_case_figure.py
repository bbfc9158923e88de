"""Figure: a held-out real case, its reference label, and the segmentations of two models.

One axial slice through the largest tumor cross-section: the four sequences, then the
reference and each model's segmentation over the FLAIR (edema green, necrotic / non-enhancing
core yellow, enhancing tumor red). The segmentations are those that
``tools/evaluate_real_cases.py`` wrote under ``<report folder>/predictions/<model>/``. Run
from the repository root::

    python tools/real_case_figure.py --case ../shared/data/real/TCGA-FG-6692 \\
        --report runs/fig_v1 runs/fig_v2 --out docs/images/real_case_v1_v2.png
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import SimpleITK as sitk

REPOSITORY = Path(__file__).resolve().parents[1]
COLOURS = {1: (1.0, 0.85, 0.0), 2: (0.1, 0.8, 0.2), 4: (0.9, 0.1, 0.1), 3: (0.9, 0.1, 0.1)}


def overlay(background: np.ndarray, label: np.ndarray) -> np.ndarray:
    """RGB picture: ``background`` in grey with ``label``'s BraTS labels coloured (alpha 0.5)."""
    low, high = np.percentile(background[background > 0], [1, 99.5]) if background.any() else (0, 1)
    grey = np.clip((background - low) / max(high - low, 1e-6), 0, 1)
    picture = np.repeat(grey[..., None], 3, axis=-1)
    for value, colour in COLOURS.items():
        inside = label == value
        picture[inside] = 0.5 * picture[inside] + 0.5 * np.asarray(colour)
    return picture


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--case", type=Path, required=True, help="labelled case folder")
    parser.add_argument(
        "--report", type=Path, nargs="+", required=True, help="evaluate_real_cases output folders"
    )
    parser.add_argument("--out", type=Path, required=True, help="PNG file")
    arguments = parser.parse_args()

    sys.path.insert(0, str(REPOSITORY / "EoFormerSegmentation"))
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from EoFormerSegmentationLib.training.datasets import find_case_files

    files = find_case_files(arguments.case, require_label=True)

    def axial(path: Path) -> np.ndarray:
        return sitk.GetArrayFromImage(sitk.ReadImage(str(path)))  # (z, y, x)

    sequences = {key: axial(files.images[key]) for key in ("t1", "t1ce", "t2", "flair")}
    reference = axial(files.label)
    z = int(np.argmax((reference > 0).sum(axis=(1, 2))))
    panels = [
        (key.upper() if key != "t1ce" else "T1ce", sequences[key][z], None) for key in sequences
    ]
    panels.append(("reference", sequences["flair"][z], reference[z]))
    for folder in arguments.report:
        report = json.loads((folder / "report.json").read_text(encoding="utf-8"))
        for name, entry in report["models"].items():
            prediction = axial(folder / "predictions" / name / f"{files.name}.nii.gz")
            scores = entry["chosen"]["per_case"][files.name]
            dice = " / ".join(f"{scores[r]['dice']:.2f}" for r in ("WT", "TC", "ET"))
            panels.append((f"{name}\nDice {dice}", sequences["flair"][z], prediction[z]))

    figure, axes = plt.subplots(1, len(panels), figsize=(2.6 * len(panels), 3.2))
    for axis, (title, background, label) in zip(axes, panels):
        picture = overlay(background, label if label is not None else np.zeros_like(background))
        axis.imshow(np.flipud(picture))
        axis.set_title(title, fontsize=8)
        axis.set_axis_off()
    figure.suptitle(
        f"{files.name} (held out), axial slice {z}: edema green, core yellow, enhancing red; "
        "Dice WT / TC / ET",
        fontsize=9,
    )
    figure.tight_layout()
    arguments.out.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(arguments.out, dpi=90)
    print(arguments.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
