"""Figure: the uncertainty map over a real case, beside the segmentation and the reference.

The case is segmented with the bundled model as ``eoformer segment --uncertainty`` does; one
axial slice through the largest tumor cross-section shows the T1ce with the map as a colour
overlay (the module's Iron-like colours, transparent below 0.1 bit), the segmentation's
outline and the reference's. Run from the repository root::

    python tools/uncertainty_figure.py --case ../shared/data/real/TCGA-FG-6692 \\
        --out docs/images/uncertainty_overlay.png
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import SimpleITK as sitk

REPOSITORY = Path(__file__).resolve().parents[1]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--case", type=Path, required=True, help="labelled case folder")
    parser.add_argument("--model", type=Path, help="checkpoint (default: the bundled model)")
    parser.add_argument("--out", type=Path, required=True, help="PNG file")
    arguments = parser.parse_args()

    sys.path.insert(0, str(REPOSITORY / "EoFormerSegmentation"))
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from EoFormerSegmentationLib.engine import segment_images
    from EoFormerSegmentationLib.models import default_model_path, load_checkpoint
    from EoFormerSegmentationLib.training.datasets import find_case_files
    from EoFormerSegmentationLib.volumes import read_sequences

    files = find_case_files(arguments.case, require_label=True)
    images = read_sequences(files.images)
    loaded = load_checkpoint(arguments.model or default_model_path())
    result = segment_images(images, loaded, device="cpu", uncertainty=True)

    t1ce = sitk.GetArrayFromImage(images["t1ce"])  # (z, y, x)
    doubt = sitk.GetArrayFromImage(result.uncertainty)
    predicted = sitk.GetArrayFromImage(result.label_map) > 0
    reference = sitk.GetArrayFromImage(sitk.ReadImage(str(files.label))) > 0
    z = int(np.argmax(reference.sum(axis=(1, 2))))

    figure, axes = plt.subplots(1, 2, figsize=(9, 4.6))
    high = np.percentile(t1ce[t1ce > 0], 99.5)
    for axis in axes:
        axis.imshow(np.flipud(t1ce[z]), cmap="gray", vmax=high)
        axis.set_axis_off()
    shown = np.ma.masked_less(doubt[z], 0.1)
    overlay = axes[1].imshow(np.flipud(shown), cmap="inferno", vmin=0, vmax=1, alpha=0.75)
    for axis in axes:
        axis.contour(np.flipud(predicted[z]), levels=[0.5], colors="cyan", linewidths=0.8)
        axis.contour(np.flipud(reference[z]), levels=[0.5], colors="lime", linewidths=0.8)
    summary = result.uncertainty_summary or {}
    axes[0].set_title("T1ce: whole tumor, model (cyan) and reference (green)", fontsize=8)
    axes[1].set_title(
        "uncertainty (bits); WT confidence "
        f"{summary.get('WT', {}).get('confidence', 0):.2f}, "
        f"uncertain {summary.get('WT', {}).get('uncertain_ml', 0):.1f} mL",
        fontsize=8,
    )
    figure.colorbar(overlay, ax=axes[1], fraction=0.046, pad=0.02)
    figure.suptitle(f"{files.name}, axial slice {z}, model {loaded.name}", fontsize=9)
    figure.tight_layout()
    arguments.out.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(arguments.out, dpi=90)
    print(arguments.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
