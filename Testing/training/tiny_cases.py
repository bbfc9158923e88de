"""Tiny labelled cases in the BraTS layouts and a tiny network, for fast training tests."""

from __future__ import annotations

from pathlib import Path
from typing import Dict

import nibabel as nib
import numpy as np

# encoder widths 4, 8, 16, 32: about 0.1 M parameters, fast on two CPU cores
TINY_MODEL_CONFIG = {
    "encoder_dims": [4, 8, 16, 32],
    "decoder_dims": [16, 8, 4],
    "head_channels": 2,
}
TINY_WIDTHS = "4,8,16,32"

# BraTS 2020 orientation: axes towards Left, Posterior, Superior, 1 mm
LPS_AFFINE = np.array(
    [[-1.0, 0, 0, 0], [0, -1.0, 0, 239.0], [0, 0, 1.0, 0], [0, 0, 0, 1.0]], dtype=np.float64
)


def tiny_case_arrays(shape=(32, 32, 32), seed: int = 0, et_value: int = 4) -> Dict[str, np.ndarray]:
    """A spherical 'brain' with a tumour: ET rim, NCR core, ED around, in array (file) axes."""
    rng = np.random.default_rng(seed)
    grid = np.stack(np.meshgrid(*[np.arange(n) for n in shape], indexing="ij"))
    center = np.array(shape)[:, None, None, None] / 2.0
    brain = np.sqrt(((grid - center) ** 2).sum(0)) < min(shape) / 2 - 2
    tumour_center = center + rng.integers(-3, 4, size=3)[:, None, None, None]
    distance = np.sqrt(((grid - tumour_center) ** 2).sum(0))
    label = np.zeros(shape, dtype=np.uint8)
    label[(distance < 7) & brain] = 2
    label[distance < 4] = et_value
    label[distance < 2] = 1
    # per-sequence intensity of background brain, NCR, ED, ET
    levels = {
        "t1": (600, 300, 500, 650),
        "t1ce": (600, 250, 500, 1400),
        "t2": (500, 1200, 1100, 900),
        "flair": (400, 700, 1100, 800),
    }
    images = {}
    for sequence, (normal, necrosis, edema, enhancing) in levels.items():
        image = np.where(brain, normal, 0).astype(np.float32)
        image[label == 1] = necrosis
        image[label == 2] = edema
        image[label == et_value] = enhancing
        image += np.where(brain, rng.normal(0, 20, shape), 0).astype(np.float32)
        images[sequence] = image
    images["seg"] = label
    return images


def write_case(
    folder: Path,
    name: str,
    naming: str = "brats2020",
    seed: int = 0,
    shape=(32, 32, 32),
    skip: tuple = (),
    label: np.ndarray = None,
) -> Path:
    """Write a tiny case as NIfTI files named as in BraTS 2020 / 2023 or plainly."""
    case_dir = folder / name
    case_dir.mkdir(parents=True, exist_ok=True)
    arrays = tiny_case_arrays(shape, seed, et_value=3 if naming == "brats2023" else 4)
    if label is not None:
        arrays["seg"] = label
    suffixes = {
        "brats2020": {"t1": "_t1", "t1ce": "_t1ce", "t2": "_t2", "flair": "_flair", "seg": "_seg"},
        "brats2023": {"t1": "-t1n", "t1ce": "-t1c", "t2": "-t2w", "flair": "-t2f", "seg": "-seg"},
    }
    for key, array in arrays.items():
        if key in skip:
            continue
        if naming == "plain":
            filename = f"{'seg_consensus' if key == 'seg' else key}.nii.gz"
        else:
            filename = f"{name}{suffixes[naming][key]}.nii.gz"
        dtype = np.uint8 if key == "seg" else np.int16
        nib.save(nib.Nifti1Image(array.astype(dtype), LPS_AFFINE), str(case_dir / filename))
    return case_dir


def tiny_synthetic_case(seed: int):
    """A stand-in for the synthetic generator: a tiny normalised case named after its seed."""
    from EoFormerSegmentationLib.preprocessing import normalize_intensity
    from EoFormerSegmentationLib.training.datasets import LoadedCase

    arrays = tiny_case_arrays(seed=seed % 1000)
    images = np.stack([arrays[name] for name in ("t1", "t1ce", "t2", "flair")])
    return LoadedCase(
        name=f"synthetic-{seed}",
        image=normalize_intensity(images),
        label=arrays["seg"],
        affine=np.eye(4),
        metadata={"seed": seed},
    )
