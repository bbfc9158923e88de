"""Draw the README's figure of the module's output: the three editable sub-regions (what the
Segment Editor shows and edits) and the three BraTS regions made of them (what the results
table and the evaluation report), on the sample case's T1ce.

Run from the repository root::

    python Testing/slicer/segments_and_regions_figure.py
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import SimpleITK as sitk
from EoFormerSegmentationLib import labels
from EoFormerSegmentationLib.segmentation_file import read_label_map

REPOSITORY = Path(__file__).resolve().parents[2]
SAMPLE = REPOSITORY / "EoFormerSegmentation" / "Resources" / "SampleData"
FIGURE = REPOSITORY / "Resources" / "Screenshots" / "segments_and_regions.png"


def draw(path: Path = FIGURE) -> Path:
    """Write the figure (two panels, one axial slice through the tumor) and return its path."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    t1ce = sitk.GetArrayFromImage(sitk.ReadImage(str(SAMPLE / "TCGA-FG-6692_t1ce.nrrd")))
    label_xyz, _image = read_label_map(SAMPLE / "TCGA-FG-6692_reference.seg.nrrd")
    label = label_xyz.transpose(2, 1, 0)  # (z, y, x) like t1ce
    z = int(np.argmax((label == 4).sum(axis=(1, 2))))
    gray = t1ce[z].astype(float)
    gray = np.clip(gray / np.percentile(gray[gray > 0], 99.5), 0, 1)
    rows, columns = np.nonzero(label[z])
    box = (
        slice(max(rows.min() - 12, 0), rows.max() + 12),
        slice(max(columns.min() - 12, 0), columns.max() + 12),
    )
    figure, axes = plt.subplots(1, 2, figsize=(8, 4.3), dpi=110)
    filled = np.repeat(gray[..., None], 3, axis=2)
    for spec in labels.SUBREGION_SEGMENTS:
        mask = label[z] == spec["label"]
        filled[mask] = 0.35 * filled[mask] + 0.65 * np.array(spec["color"])
    axes[0].imshow(filled[box], interpolation="nearest")
    axes[0].set_title("Segments you edit (no overlap)", fontsize=10)
    axes[1].imshow(gray[box], cmap="gray", interpolation="nearest")
    for spec, region in zip(labels.SEGMENTS, labels.labels_to_regions(label[z])):
        axes[1].contour(region[box], levels=[0.5], colors=[spec["color"]], linewidths=1.6)
    axes[1].set_title("Regions reported (WT, TC, ET)", fontsize=10)
    for axis in axes:
        axis.set_xticks([])
        axis.set_yticks([])
    handles = [
        plt.Line2D([], [], color=spec["color"], lw=6, label=spec["name"])
        for spec in labels.SUBREGION_SEGMENTS
    ] + [
        plt.Line2D(
            [],
            [],
            color=spec["color"],
            lw=1.6,
            label=f"{spec['name']} (region)",
        )
        for spec in labels.SEGMENTS[:2]
    ]
    figure.legend(handles=handles, loc="lower center", ncol=3, fontsize=8, frameon=False)
    figure.tight_layout(rect=(0, 0.1, 1, 1))
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path)
    plt.close(figure)
    return path


if __name__ == "__main__":
    print(draw())
