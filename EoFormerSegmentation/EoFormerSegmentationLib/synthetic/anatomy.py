"""Healthy brain anatomy: the MNI ICBM152 2009 template shipped inside nilearn's wheel.

The files are read straight from nilearn's package data folder; nilearn itself is not
imported (it is slow to import and pulls in scikit-learn and pandas).
"""

from __future__ import annotations

import functools
import importlib.util
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scipy import ndimage

from EoFormerSegmentationLib.errors import InputError

__all__ = ["TemplateAnatomy", "load_template"]

_FILES = {
    "t1": "mni_icbm152_t1_tal_nlin_sym_09a_converted.nii.gz",
    "gm": "mni_icbm152_gm_tal_nlin_sym_09a_converted.nii.gz",
    "wm": "mni_icbm152_wm_tal_nlin_sym_09a_converted.nii.gz",
}


@dataclass
class TemplateAnatomy:
    """Tissue probability maps (0-1) on the template's 1 mm RAS grid, cropped to the brain.

    Attributes:
        gm, wm, csf: grey matter, white matter and cerebrospinal fluid probabilities.
        brain: soft brain mask (0-1), the union of the three tissues.
    """

    gm: np.ndarray
    wm: np.ndarray
    csf: np.ndarray
    brain: np.ndarray


def template_folder() -> Path:
    """nilearn's package data folder holding the MNI ICBM152 2009 maps."""
    spec = importlib.util.find_spec("nilearn")
    if spec is None or not spec.submodule_search_locations:
        raise InputError(
            "synthetic cases need the MNI ICBM152 template shipped in the 'nilearn' package: "
            "pip install nilearn"
        )
    return Path(list(spec.submodule_search_locations)[0]) / "datasets" / "data"


@functools.lru_cache(maxsize=1)
def load_template() -> TemplateAnatomy:
    """Load (once per process) and derive the tissue maps of the template."""
    import nibabel as nib

    folder = template_folder()
    maps = {}
    for key, name in _FILES.items():
        image = nib.as_closest_canonical(nib.load(str(folder / name)))
        maps[key] = np.asarray(image.get_fdata(dtype=np.float32)) / 255.0
    gm, wm, t1 = maps["gm"], maps["wm"], maps["t1"]
    tissue = gm + wm
    # The brain: grey and white matter, holes (ventricles) filled, grown by ~2 mm to take in
    # the sulcal CSF that surrounds the cortex in a skull-stripped image.
    core = ndimage.binary_fill_holes(ndimage.binary_closing(tissue > 0.35, iterations=3))
    labels, count = ndimage.label(core)
    if count > 1:
        sizes = ndimage.sum(core, labels, range(1, count + 1))
        core = labels == (1 + int(np.argmax(sizes)))
    brain = ndimage.binary_dilation(core, iterations=2)
    brain_soft = ndimage.gaussian_filter(brain.astype(np.float32), 0.8)
    # CSF: what is inside the brain but neither grey nor white matter; dark on the T1 template
    # (ventricles) counts as CSF even where the tissue maps are blurred.
    dark = np.clip((0.45 - t1) / 0.25, 0.0, 1.0) * brain
    csf = np.clip(np.maximum(brain_soft - tissue, dark), 0.0, 1.0)
    total = gm + wm + csf
    scale = np.where(total > 1.0, 1.0 / np.maximum(total, 1e-6), 1.0)
    gm, wm, csf = gm * scale * brain_soft, wm * scale * brain_soft, csf * scale * brain_soft
    box = ndimage.find_objects(brain.astype(np.uint8))[0]
    box = tuple(slice(max(s.start - 4, 0), s.stop + 4) for s in box)
    return TemplateAnatomy(
        gm=np.ascontiguousarray(gm[box], dtype=np.float32),
        wm=np.ascontiguousarray(wm[box], dtype=np.float32),
        csf=np.ascontiguousarray(csf[box], dtype=np.float32),
        brain=np.ascontiguousarray(brain_soft[box], dtype=np.float32),
    )
