"""MR contrasts: tissue intensities per sequence, randomised SynthSeg-style, and artefacts.

Each sequence keeps its tissue ordering (T1: WM > GM > CSF; T2: CSF > GM > WM; FLAIR: lesion
and GM bright, CSF dark; T1ce: T1 plus enhancement) while the levels are drawn at random, as
in SynthSeg (Billot et al., Medical Image Analysis 2023), so that the network learns the
ordering rather than one scanner's values.
"""

from __future__ import annotations

from typing import Dict, Tuple

import numpy as np
from scipy import ndimage

from EoFormerSegmentationLib.synthetic.fields import smooth_noise

__all__ = ["SEQUENCES", "TISSUES", "draw_contrasts", "render_sequence"]

SEQUENCES = ("t1", "t1ce", "t2", "flair")
TISSUES = ("csf", "gm", "wm", "edema", "necrosis", "enhancing")

# (low, high) of each tissue's mean intensity relative to the sequence's brightest tissue.
_RANGES: Dict[str, Dict[str, Tuple[float, float]]] = {
    "t1": {
        "csf": (0.18, 0.32),
        "gm": (0.50, 0.62),
        "wm": (0.72, 0.86),
        "edema": (0.42, 0.56),
        "necrosis": (0.22, 0.38),
        "enhancing": (0.48, 0.62),
    },
    "t1ce": {
        "csf": (0.18, 0.32),
        "gm": (0.48, 0.60),
        "wm": (0.66, 0.80),
        "edema": (0.40, 0.54),
        "necrosis": (0.18, 0.34),
        "enhancing": (0.95, 1.35),
    },
    "t2": {
        "csf": (0.92, 1.05),
        "gm": (0.48, 0.60),
        "wm": (0.32, 0.44),
        "edema": (0.68, 0.86),
        "necrosis": (0.80, 1.02),
        "enhancing": (0.55, 0.72),
    },
    "flair": {
        "csf": (0.08, 0.20),
        "gm": (0.52, 0.64),
        "wm": (0.40, 0.50),
        "edema": (0.82, 1.05),
        "necrosis": (0.40, 0.85),
        "enhancing": (0.68, 0.88),
    },
}


def draw_contrasts(rng: np.random.Generator) -> Dict[str, Dict[str, float]]:
    """Mean intensity of every tissue in every sequence (orderings kept, levels random)."""
    contrasts = {}
    for sequence in SEQUENCES:
        levels = {t: float(rng.uniform(*_RANGES[sequence][t])) for t in TISSUES}
        contrasts[sequence] = levels
    # T1ce is T1 plus enhancement: the non-enhancing tissues follow T1 closely.
    for tissue in ("csf", "gm", "wm", "edema", "necrosis"):
        contrasts["t1ce"][tissue] = contrasts["t1"][tissue] * float(rng.uniform(0.9, 1.02))
    return contrasts


def render_sequence(
    rng: np.random.Generator,
    levels: Dict[str, float],
    tissue_maps: Dict[str, np.ndarray],
    brain: np.ndarray,
) -> np.ndarray:
    """One MR image from soft tissue maps: texture, partial volume, bias, blur, Rician noise.

    Args:
        rng: random generator.
        levels: mean intensity per tissue (from :func:`draw_contrasts`).
        tissue_maps: probability (0-1) of each tissue per voxel; they sum to ~1 in the brain.
        brain: brain mask; the image is 0 outside it (skull-stripped).

    Returns:
        ``float32`` image with positive values in the brain, scaled like raw MR intensities.
    """
    shape = brain.shape
    image = np.zeros(shape, dtype=np.float32)
    for tissue, probability in tissue_maps.items():
        texture = 1.0 + rng.uniform(0.02, 0.07) * smooth_noise(rng, shape, rng.uniform(2, 6))
        image += probability * levels[tissue] * texture
    bias = np.exp(rng.uniform(0.05, 0.25) * smooth_noise(rng, shape, rng.uniform(40, 80), 8.0))
    image *= bias.astype(np.float32)
    sigma = rng.uniform(0.0, 0.7)
    if sigma > 0.2:
        image = ndimage.gaussian_filter(image, sigma)
    noise_level = rng.uniform(0.008, 0.035)
    real = image + noise_level * rng.standard_normal(shape, dtype=np.float32)
    imaginary = noise_level * rng.standard_normal(shape, dtype=np.float32)
    image = np.sqrt(real * real + imaginary * imaginary)
    image *= float(rng.uniform(300.0, 3000.0))
    image[brain <= 0.5] = 0.0
    return image.astype(np.float32)
