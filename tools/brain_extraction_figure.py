"""Figure: the brain masks that EoFormer's brain extraction finds on the real raw heads.

Each head of ``../shared/data/raw-heads`` is resampled onto the network grid (1 mm, RAS) as
``eoformer segment`` does, its brain extracted, and three orthogonal slices through the mask's
centre drawn with the mask's outline, the brain volume and the time taken. Run from the
repository root::

    python tools/brain_extraction_figure.py --out docs/images/brain_extraction.png
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import SimpleITK as sitk

REPOSITORY = Path(__file__).resolve().parents[1]
RAW_HEADS = REPOSITORY.parent / "shared" / "data" / "raw-heads"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, default=REPOSITORY / "docs/images/brain_extraction.png")
    arguments = parser.parse_args()

    sys.path.insert(0, str(REPOSITORY / "EoFormerSegmentation"))
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from EoFormerSegmentationLib.brain_extraction import (
        check_brain_mask,
        extract_brain,
        looks_skull_stripped,
    )
    from EoFormerSegmentationLib.geometry import image_to_array, network_grid, resample_onto

    heads = sorted(RAW_HEADS.glob("*/*.nii.gz"))
    figure, axes = plt.subplots(len(heads), 3, figsize=(9, 3.3 * len(heads)))
    facts = []
    for row, path in enumerate(heads):
        image = sitk.ReadImage(str(path), sitk.sitkFloat32)
        head = image_to_array(resample_onto(image, network_grid(image)))
        brain = check_brain_mask(extract_brain(head, source=path.name))
        centre = np.round(np.argwhere(brain.mask).mean(axis=0)).astype(int)
        views = [
            ("axial", head[:, :, centre[2]], brain.mask[:, :, centre[2]]),
            ("coronal", head[:, centre[1], :], brain.mask[:, centre[1], :]),
            ("sagittal", head[centre[0], :, :], brain.mask[centre[0], :, :]),
        ]
        for column, (name, picture, mask) in enumerate(views):
            axis = axes[row, column]
            # RAS arrays: transpose and flip so that superior / anterior point up
            axis.imshow(np.flipud(picture.T), cmap="gray", vmax=np.percentile(head, 99.5))
            axis.contour(np.flipud(mask.T), levels=[0.5], colors="lime", linewidths=1.0)
            axis.set_axis_off()
            axis.text(0.02, 0.02, name, color="yellow", fontsize=8, transform=axis.transAxes)
        spacing = "x".join(f"{s:.2g}" for s in image.GetSpacing())
        axes[row, 1].set_title(
            f"{path.name} ({spacing} mm)\nbrain {brain.volume_ml:.0f} mL, "
            f"{brain.seconds:.1f} s; skull-stripped input: {looks_skull_stripped(head, 0.001)}",
            fontsize=9,
        )
        facts.append(
            {
                "image": path.name,
                "spacing_mm": list(image.GetSpacing()),
                "brain_ml": round(brain.volume_ml, 1),
                "seconds": round(brain.seconds, 1),
                "warnings": brain.warnings,
            }
        )
    figure.suptitle("Brain extraction (deepbet) on real heads with skull and scalp")
    figure.tight_layout()
    arguments.out.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(arguments.out, dpi=80)
    print(json.dumps(facts, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
