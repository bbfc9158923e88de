"""Synthetic glioma cases: deformed template anatomy + a drawn tumour + random MR contrasts.

A case is deterministic for its seed. Arrays are indexed ``[x, y, z]`` on a 1 mm RAS grid of
240 x 240 x 155 voxels (what ``nibabel.as_closest_canonical`` gives for a BraTS NIfTI), with
the brain placed where BraTS puts it, skull-stripped (0 outside the brain).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, Sequence, Tuple

import numpy as np
from scipy import ndimage

from EoFormerSegmentationLib.synthetic.anatomy import load_template
from EoFormerSegmentationLib.synthetic.contrast import SEQUENCES, draw_contrasts, render_sequence
from EoFormerSegmentationLib.synthetic.fields import smooth_noise
from EoFormerSegmentationLib.synthetic.tumor import draw_tumor_plan, tumor_labels

__all__ = ["GENERATOR_VERSION", "SyntheticCase", "generate_case", "write_case"]

GENERATOR_VERSION = "1.1"

BRATS_SHAPE = (240, 240, 155)
# Centre of the brain in BraTS's 240 x 240 x 155 grid after as_closest_canonical (voxels).
_BRAIN_CENTER = np.array([121.0, 109.0, 72.0])


@dataclass
class SyntheticCase:
    """One synthetic case.

    Attributes:
        images: ``float32`` ``(4, X, Y, Z)``, channels T1, T1ce, T2, FLAIR; 0 outside the brain.
        label: ``uint8`` ``(X, Y, Z)`` BraTS 2020 labels (1 NCR, 2 ED, 4 ET).
        affine: 4 x 4 voxel-to-RAS matrix (1 mm voxels).
        params: what was drawn (seed, generator version, tumour kind, sizes, contrasts).
    """

    images: np.ndarray
    label: np.ndarray
    affine: np.ndarray
    params: Dict[str, Any] = field(default_factory=dict)


def _rotation(angles: Sequence[float]) -> np.ndarray:
    ax, ay, az = angles
    rx = np.array([[1, 0, 0], [0, np.cos(ax), -np.sin(ax)], [0, np.sin(ax), np.cos(ax)]])
    ry = np.array([[np.cos(ay), 0, np.sin(ay)], [0, 1, 0], [-np.sin(ay), 0, np.cos(ay)]])
    rz = np.array([[np.cos(az), -np.sin(az), 0], [np.sin(az), np.cos(az), 0], [0, 0, 1]])
    return rz @ ry @ rx


def _sample(volume: np.ndarray, coordinates: np.ndarray) -> np.ndarray:
    return ndimage.map_coordinates(
        volume, coordinates, order=1, mode="constant", cval=0.0, prefilter=False
    ).astype(np.float32)


def generate_case(seed: int, shape: Tuple[int, int, int] = BRATS_SHAPE) -> SyntheticCase:
    """Generate one synthetic glioma case.

    Args:
        seed: the case's seed; the same seed always gives the same case.
        shape: grid size in 1 mm voxels (BraTS: 240 x 240 x 155). Smaller shapes scale the
            brain down to fit (for quick tests).

    Returns:
        A :class:`SyntheticCase`.
    """
    rng = np.random.default_rng(seed)
    template = load_template()
    shape = tuple(int(n) for n in shape)
    fit = min(1.0, min(s / t for s, t in zip(shape, (150, 180, 140))))
    center_out = _BRAIN_CENTER * np.array(shape) / np.array(BRATS_SHAPE)
    center_template = (np.array(template.gm.shape) - 1) / 2.0

    # Affine part: rotation (+-8 deg), scale, shift (+-4 mm). The matrix maps output to
    # template coordinates; 1.0-1.18 shrinks the (large) template brain to the 1.3-1.7 M
    # voxels of BraTS brains.
    matrix = _rotation(rng.uniform(-0.14, 0.14, 3)) @ np.diag(rng.uniform(1.0, 1.18, 3) / fit)
    shift = rng.uniform(-4, 4, 3)

    # Work only in the box of the output that the brain can reach.
    half = np.abs(np.linalg.inv(matrix)) @ (np.array(template.gm.shape) / 2.0) + 6
    lo = np.maximum(np.floor(center_out - half).astype(int), 0)
    hi = np.minimum(np.ceil(center_out + half).astype(int), np.array(shape))
    box = tuple(slice(a, b) for a, b in zip(lo, hi))
    box_shape = tuple(int(b - a) for a, b in zip(lo, hi))
    grid = np.stack(
        np.meshgrid(*[np.arange(a, b, dtype=np.float32) for a, b in zip(lo, hi)], indexing="ij")
    )
    relative = grid - (center_out + shift)[:, None, None, None].astype(np.float32)
    coordinates = np.einsum("ij,j...->i...", matrix.astype(np.float32), relative)
    coordinates += center_template[:, None, None, None].astype(np.float32)
    # Elastic part: smooth displacement of a few mm.
    elastic_mm = rng.uniform(1.0, 4.0)
    for axis in range(3):
        coordinates[axis] += elastic_mm * smooth_noise(rng, box_shape, rng.uniform(18, 32), 6.0)

    # Where can the tumour sit? Deep white matter of the deformed brain (sampled coarsely).
    coarse = coordinates[:, ::4, ::4, ::4]
    white_coarse = _sample(template.wm, coarse.reshape(3, -1)).reshape(coarse.shape[1:])
    brain_coarse = _sample(template.brain, coarse.reshape(3, -1)).reshape(coarse.shape[1:])
    depth = ndimage.distance_transform_edt(brain_coarse > 0.5) * 4.0
    candidates = np.argwhere((white_coarse > 0.5) & (depth > 14.0)) * 4
    if len(candidates) == 0:
        candidates = np.argwhere(brain_coarse > 0.5) * 4
    plan = draw_tumor_plan(rng, candidates.astype(np.float64))

    # Mass effect: anatomy pushed away from the main focus (sample from nearer the centre).
    if plan.mass_effect_mm > 0:
        main = plan.lesions[0]
        offset = (
            grid
            - main.center[:, None, None, None].astype(np.float32)
            - lo[:, None, None, None].astype(np.float32)
        )
        distance = np.sqrt((offset**2).sum(0)) + 1e-3
        reach = main.radii.mean() * 1.8
        push = plan.mass_effect_mm * np.exp(-((distance / reach) ** 2))
        coordinates -= np.einsum(
            "ij,j...->i...", matrix.astype(np.float32), offset / distance * push
        )

    flat = coordinates.reshape(3, -1)
    maps = {
        name: _sample(getattr(template, name), flat).reshape(box_shape)
        for name in ("gm", "wm", "csf", "brain")
    }
    brain = maps["brain"] > 0.5

    label_box = tumor_labels(rng, plan, box_shape, maps["wm"], maps["brain"], maps["csf"])
    # Tumour tissue replaces normal tissue, with a soft (partial-volume) border.
    tumour = {
        "edema": ndimage.gaussian_filter((label_box == 2).astype(np.float32), 0.7),
        "necrosis": ndimage.gaussian_filter((label_box == 1).astype(np.float32), 0.7),
        "enhancing": ndimage.gaussian_filter((label_box == 4).astype(np.float32), 0.6),
    }
    tumour_total = np.clip(sum(tumour.values()), 0.0, 1.0)
    normal = 1.0 - tumour_total
    tissue_maps = {
        "csf": maps["csf"] * normal,
        "gm": maps["gm"] * normal,
        "wm": maps["wm"] * normal,
        **tumour,
    }
    contrasts = draw_contrasts(rng)
    if plan.kind == "low-grade":  # non-enhancing tumour: its core looks like edema
        for sequence in SEQUENCES:
            contrasts[sequence]["necrosis"] = 0.5 * (
                contrasts[sequence]["necrosis"] + contrasts[sequence]["edema"]
            )
    images = np.zeros((4, *shape), dtype=np.float32)
    for channel, sequence in enumerate(SEQUENCES):
        images[(channel, *box)] = render_sequence(
            rng, contrasts[sequence], tissue_maps, maps["brain"]
        )
    label = np.zeros(shape, dtype=np.uint8)
    label[box] = label_box
    label[images[0] == 0] = 0

    volumes = {
        name: float(np.isin(label, values).sum()) / 1000.0
        for name, values in (("WT", (1, 2, 4)), ("TC", (1, 4)), ("ET", (4,)))
    }
    params = {
        "seed": int(seed),
        "generator_version": GENERATOR_VERSION,
        "shape": list(shape),
        "tumor": plan.describe(),
        "elastic_mm": round(float(elastic_mm), 2),
        "volumes_ml": {k: round(v, 2) for k, v in volumes.items()},
        "contrasts": {s: {t: round(v, 3) for t, v in c.items()} for s, c in contrasts.items()},
        "brain_voxels": int(brain.sum()),
    }
    return SyntheticCase(images=images, label=label, affine=np.eye(4), params=params)


def write_case(case: SyntheticCase, out_dir: Path, case_id: str) -> Path:
    """Write a case in the BraTS layout: ``<out_dir>/<case_id>/<case_id>_t1.nii.gz`` etc.

    Args:
        case: from :func:`generate_case`.
        out_dir: dataset folder.
        case_id: case folder and file prefix.

    Returns:
        The case folder.
    """
    import nibabel as nib

    folder = Path(out_dir) / case_id
    folder.mkdir(parents=True, exist_ok=False)
    for channel, sequence in enumerate(SEQUENCES):
        image = nib.Nifti1Image(case.images[channel], case.affine)
        nib.save(image, str(folder / f"{case_id}_{sequence}.nii.gz"))
    nib.save(nib.Nifti1Image(case.label, case.affine), str(folder / f"{case_id}_seg.nii.gz"))
    return folder
