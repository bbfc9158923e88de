"""Figure for the README: synthetic cases beside the real case, sequence by sequence.

One row per case (synthetic seeds first, the real case ``TCGA-FG-6692`` last), columns T1,
T1ce, T2, FLAIR and the label over the T1ce; the axial slice with the largest tumor
cross-section, in radiological display (patient's right on the left, anterior up). Run from
the repository root::

    python Testing/synthetic/synthetic_vs_real_figure.py --out docs/images/synthetic_vs_real.png
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Dict, List, Tuple

import numpy as np

REPOSITORY = Path(__file__).resolve().parents[2]
REAL_CASE = REPOSITORY.parent / "shared" / "data" / "real" / "TCGA-FG-6692"
SEQUENCES = ("t1", "t1ce", "t2", "flair")
LABEL_COLOURS = {1: (0.95, 0.85, 0.25), 2: (0.33, 0.73, 0.33), 4: (0.90, 0.22, 0.20)}


def canonical(array: np.ndarray, affine: np.ndarray) -> np.ndarray:
    """``array`` reoriented to RAS+ axes (x to the right, y anterior, z superior)."""
    import nibabel as nib

    image = nib.as_closest_canonical(nib.Nifti1Image(array, affine))
    return np.asarray(image.dataobj)


def real_case() -> Tuple[List[np.ndarray], np.ndarray]:
    import nibabel as nib

    images = []
    for sequence in SEQUENCES:
        image = nib.load(str(REAL_CASE / f"{sequence}.nii.gz"))
        images.append(canonical(image.get_fdata(dtype=np.float32), image.affine))
    label_image = nib.load(str(REAL_CASE / "seg_consensus.nii.gz"))
    label = canonical(np.asarray(label_image.dataobj).astype(np.uint8), label_image.affine)
    return images, label


def synthetic_case(seed: int) -> Tuple[List[np.ndarray], np.ndarray]:
    sys.path.insert(0, str(REPOSITORY / "EoFormerSegmentation"))
    from EoFormerSegmentationLib.synthetic import generate_case

    case = generate_case(seed)
    images = [canonical(case.images[c], case.affine) for c in range(4)]
    return images, canonical(case.label, case.affine)


def display(slice_xy: np.ndarray) -> np.ndarray:
    """An axial slice (x, y) as screen rows and columns, radiological convention."""
    return slice_xy.T[::-1, ::-1]  # rows: anterior at the top; columns: patient's right left


def window(image: np.ndarray, brain: np.ndarray) -> np.ndarray:
    low, high = np.percentile(image[brain], (1, 99))
    return np.clip((image - low) / max(high - low, 1e-6), 0, 1)


def overlay(grey: np.ndarray, label: np.ndarray) -> np.ndarray:
    rgb = np.repeat(grey[..., None], 3, axis=-1)
    for value, colour in LABEL_COLOURS.items():
        rgb[label == value] = 0.45 * rgb[label == value] + 0.55 * np.array(colour)
    return rgb


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", required=True, type=Path, help="PNG file to write")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    arguments = parser.parse_args()

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows: Dict[str, Tuple[List[np.ndarray], np.ndarray]] = {
        f"synthetic seed {seed}": synthetic_case(seed) for seed in arguments.seeds
    }
    rows["real: TCGA-FG-6692"] = real_case()

    columns = ["T1", "T1ce", "T2", "FLAIR", "label on T1ce"]
    figure, axes = plt.subplots(
        len(rows), len(columns), figsize=(2.6 * len(columns), 2.75 * len(rows)), dpi=100
    )
    for row, (title, (images, label)) in enumerate(rows.items()):
        z = int(np.argmax((label > 0).sum(axis=(0, 1))))
        brain = images[0] > 0
        # crop to the brain's extent on this slice (plus a margin), same for every column
        xs, ys = np.nonzero(brain[:, :, z])
        box = (slice(max(xs.min() - 4, 0), xs.max() + 5), slice(max(ys.min() - 4, 0), ys.max() + 5))
        panels = [display(window(image, brain)[box + (z,)]) for image in images]
        panels.append(overlay(panels[1], display(label[box + (z,)])))
        for column, panel in enumerate(panels):
            axis = axes[row, column]
            axis.imshow(panel, cmap="gray", interpolation="nearest")
            axis.set_xticks([])
            axis.set_yticks([])
            if row == 0:
                axis.set_title(columns[column], fontsize=11)
            if column == 0:
                axis.set_ylabel(title, fontsize=11)
    figure.text(
        0.5,
        0.005,
        "axial slices through the largest tumor cross-section, radiological convention "
        "(patient's right on the left); label: NCR yellow, ED green, ET red",
        ha="center",
        fontsize=9,
    )
    figure.tight_layout(rect=(0, 0.02, 1, 1))
    arguments.out.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(arguments.out, dpi=100)
    print(f"wrote {arguments.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
