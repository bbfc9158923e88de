"""Glioma shapes and sub-regions: necrotic core, enhancing rim, edema along white matter.

Shapes are noise-perturbed level sets (a distorted ellipsoid whose surface is pushed in and out
by smooth noise), as in synthetic-tumour work for segmentation (Hu et al., CVPR 2023).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Dict, List

import numpy as np

from EoFormerSegmentationLib.synthetic.fields import smooth_noise

__all__ = ["TumorPlan", "draw_tumor_plan", "tumor_labels"]


@dataclass
class Lesion:
    """One tumour focus: centre (voxels), radii of the core (mm), edema extent factor."""

    center: np.ndarray
    radii: np.ndarray
    rotation: np.ndarray
    edema_factor: float
    rim_mm: float
    rim_completeness: float
    necrosis_fraction: float


@dataclass
class TumorPlan:
    """What was drawn for a case (stored in the case's ``params``)."""

    kind: str  # "high-grade", "no-et", "low-grade"
    lesions: List[Lesion] = field(default_factory=list)
    white_matter_preference: float = 1.0
    mass_effect_mm: float = 0.0

    def describe(self) -> Dict[str, object]:
        return {
            "kind": self.kind,
            "foci": len(self.lesions),
            "mass_effect_mm": round(self.mass_effect_mm, 2),
            "white_matter_preference": round(self.white_matter_preference, 2),
            "lesions": [
                {
                    "center_voxel": [round(float(c), 1) for c in lesion.center],
                    "radii_mm": [round(float(r), 1) for r in lesion.radii],
                    "edema_factor": round(lesion.edema_factor, 2),
                    "rim_mm": round(lesion.rim_mm, 2),
                    "rim_completeness": round(lesion.rim_completeness, 2),
                }
                for lesion in self.lesions
            ],
        }


def _random_rotation(rng: np.random.Generator) -> np.ndarray:
    q, r = np.linalg.qr(rng.standard_normal((3, 3)))
    return q * np.sign(np.diag(r))


def draw_tumor_plan(rng: np.random.Generator, candidates: np.ndarray) -> TumorPlan:
    """Draw the kind, number, place and size of the tumour foci.

    Args:
        rng: random generator.
        candidates: ``(N, 3)`` voxel coordinates where a focus may be centred (deep white
            matter of the deformed anatomy).
    """
    roll = rng.random()
    kind = "high-grade" if roll < 0.8 else ("no-et" if roll < 0.88 else "low-grade")
    foci = 1 if rng.random() < 0.85 else 2
    plan = TumorPlan(kind=kind, white_matter_preference=float(rng.uniform(0.6, 2.0)))
    first = candidates[rng.integers(len(candidates))].astype(np.float64)
    for index in range(foci):
        if index == 0:
            center = first
        else:  # a satellite focus within a few cm of the first
            near = candidates[np.linalg.norm(candidates - first, axis=1) < 45]
            near = near[np.linalg.norm(near - first, axis=1) > 18]
            if len(near) == 0:
                break
            center = near[rng.integers(len(near))].astype(np.float64)
        scale = rng.uniform(7.0, 22.0) if index == 0 else rng.uniform(5.0, 11.0)
        radii = scale * rng.uniform(0.7, 1.3, size=3)
        plan.lesions.append(
            Lesion(
                center=center,
                radii=radii,
                rotation=_random_rotation(rng),
                edema_factor=float(
                    rng.uniform(1.1, 1.75) if kind != "low-grade" else rng.uniform(1.02, 1.3)
                ),
                rim_mm=float(rng.uniform(2.0, 7.0)),
                rim_completeness=float(rng.uniform(0.7, 1.0)),
                necrosis_fraction=float(rng.uniform(0.0, 0.8)),
            )
        )
    plan.mass_effect_mm = float(rng.uniform(0.0, 0.35) * plan.lesions[0].radii.mean())
    return plan


def _level(lesion: Lesion, grid: np.ndarray, noise: np.ndarray, roughness: float) -> np.ndarray:
    """Normalised ellipsoid distance (1 on the surface), pushed in and out by noise."""
    offset = grid - lesion.center[:, None, None, None]
    local = np.einsum("ij,j...->i...", lesion.rotation.T, offset)
    distance = np.sqrt(sum((local[i] / lesion.radii[i]) ** 2 for i in range(3)))
    return distance * (1.0 + roughness * noise)


def tumor_labels(
    rng: np.random.Generator,
    plan: TumorPlan,
    shape,
    white_matter: np.ndarray,
    brain: np.ndarray,
    csf: np.ndarray,
) -> np.ndarray:
    """BraTS 2020 label map (1 NCR, 2 ED, 4 ET) of the planned tumour.

    Args:
        rng: random generator.
        plan: from :func:`draw_tumor_plan`.
        shape: output shape (voxels, 1 mm).
        white_matter: white matter probability on the output grid (edema follows it).
        brain: brain mask on the output grid (nothing is drawn outside it).
        csf: CSF probability (edema does not fill the ventricles).
    """
    label = np.zeros(shape, dtype=np.uint8)
    inside = brain > 0.5
    for lesion in plan.lesions:
        # Work in a box around the focus only (fast).
        # The edema level below reaches at most ~2.2 x the edema factor in core radii.
        reach = lesion.radii.max() * 2.2 * lesion.edema_factor + 6
        lo = np.maximum(np.floor(lesion.center - reach).astype(int), 0)
        hi = np.minimum(np.ceil(lesion.center + reach).astype(int) + 1, np.array(shape))
        box = tuple(slice(a, b) for a, b in zip(lo, hi))
        box_shape = tuple(b - a for a, b in zip(lo, hi))
        grid = np.stack(
            np.meshgrid(*[np.arange(a, b, dtype=np.float32) for a, b in zip(lo, hi)], indexing="ij")
        )
        shape_noise = smooth_noise(rng, box_shape, rng.uniform(5, 12), coarse_step=3.0)
        core_level = _level(lesion, grid, np.clip(shape_noise, -2.0, 2.0), rng.uniform(0.12, 0.25))
        core = core_level < 1.0

        wm = white_matter[box]
        edema_noise = smooth_noise(rng, box_shape, rng.uniform(6, 14), coarse_step=3.0)
        edema_level = core_level / lesion.edema_factor * (1.0 + 0.2 * np.clip(edema_noise, -2, 2))
        edema_level -= 0.2 * plan.white_matter_preference * (wm - 0.5)
        edema = (edema_level < 1.0) & (csf[box] < 0.6)

        local = np.zeros(box_shape, dtype=np.uint8)
        local[edema] = 2
        if plan.kind == "low-grade":
            local[core] = 1
        else:
            rim_noise = smooth_noise(rng, box_shape, rng.uniform(4, 10), coarse_step=3.0)
            rim_width = lesion.rim_mm / lesion.radii.mean() * (1.0 + 0.4 * rim_noise)
            necrotic = core & (core_level < 1.0 - np.clip(rim_width, 0.05, 0.9))
            rim = core & ~necrotic
            if plan.kind == "no-et":
                local[core] = 1
            else:
                gap_noise = smooth_noise(rng, box_shape, rng.uniform(6, 15), coarse_step=3.0)
                threshold = (
                    np.quantile(gap_noise[rim], 1.0 - lesion.rim_completeness) if rim.any() else 0.0
                )
                enhancing = rim & (gap_noise >= threshold)
                local[core] = 1
                local[enhancing] = 4
                if lesion.necrosis_fraction < 0.15:  # solid enhancing tumour, little necrosis
                    local[necrotic & (rim_noise > 0.5)] = 4
        local[~inside[box]] = 0
        region = label[box]
        # ET (4) wins over NCR (1), which wins over ED (2), where foci overlap.
        priority = np.array([0, 2, 1, 0, 3], dtype=np.int8)
        merged = np.where(priority[local] > priority[region], local, region)
        label[box] = merged
    return label
