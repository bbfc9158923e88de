"""Synthetic training cases generated on the fly, so that training needs no data on disk.

Seed ranges of :func:`EoFormerSegmentationLib.synthetic.generator.generate_case` are split so
that what is reported as held-out never touches training:

==========================  =================================================================
seeds                       use
==========================  =================================================================
0 - 999                     held-out evaluation (model card metrics); never used by training,
                            validation or fine-tuning replay
900 000 - 999 999           validation during training (choice of ``best.pt``)
1 000 000 and above         training (and the replay cases of fine-tuning)
==========================  =================================================================
"""

from __future__ import annotations

from typing import Any, Callable, Dict, List, Optional

import numpy as np

from EoFormerSegmentationLib.errors import InputError
from EoFormerSegmentationLib.preprocessing import brain_bounding_box, normalize_intensity
from EoFormerSegmentationLib.training.datasets import CropStream, LoadedCase

__all__ = [
    "EVALUATION_SEEDS",
    "VALIDATION_SEED_START",
    "TRAINING_SEED_START",
    "check_training_seeds",
    "synthetic_case",
    "generator_version",
    "SyntheticCropStream",
]

EVALUATION_SEEDS = range(0, 1000)
"""Seeds of the held-out synthetic cases on which models are evaluated."""

VALIDATION_SEED_START = 900_000
"""First seed of the synthetic validation cases used during training."""

TRAINING_SEED_START = 1_000_000
"""First seed of the synthetic training cases (default of ``--synthetic-seed``)."""


def check_training_seeds(seed_start: int, count: int) -> None:
    """Refuse training seeds that overlap the evaluation or validation ranges.

    Args:
        seed_start: first training seed.
        count: number of training seeds.

    Raises:
        InputError: the range ``[seed_start, seed_start + count)`` overlaps seeds 0-999
            (held-out evaluation) or 900 000-999 999 (validation).
    """
    if count < 1:
        raise InputError(f"--synthetic-cases must be at least 1 (got {count})")
    stop = seed_start + count
    if seed_start < 0:
        raise InputError(f"--synthetic-seed must not be negative (got {seed_start})")
    if seed_start < EVALUATION_SEEDS.stop:
        raise InputError(
            f"synthetic training seeds {seed_start}-{stop - 1} overlap seeds "
            f"0-{EVALUATION_SEEDS.stop - 1}, which are kept for held-out evaluation; "
            f"use --synthetic-seed {TRAINING_SEED_START}"
        )
    if seed_start < TRAINING_SEED_START and stop > VALIDATION_SEED_START:
        raise InputError(
            f"synthetic training seeds {seed_start}-{stop - 1} overlap seeds "
            f"{VALIDATION_SEED_START}-{TRAINING_SEED_START - 1}, which are kept for validation; "
            f"use --synthetic-seed {TRAINING_SEED_START}"
        )


def generator_version() -> Optional[str]:
    """Version string of the synthetic case generator, for model cards (``None`` if unknown)."""
    from EoFormerSegmentationLib.synthetic import generator

    for name in ("GENERATOR_VERSION", "VERSION", "__version__"):
        value = getattr(generator, name, None)
        if value is not None:
            return str(value)
    return None


def synthetic_case(seed: int, crop_to_brain: bool = True, margin: int = 4) -> LoadedCase:
    """One generated case, normalised like a case read from disk.

    Args:
        seed: generator seed (see the table of seed ranges above).
        crop_to_brain: crop to the brain's bounding box plus ``margin`` voxels.
        margin: voxels kept around the brain, per side.

    Returns:
        A :class:`~EoFormerSegmentationLib.training.datasets.LoadedCase` named
        ``synthetic-<seed>`` (BraTS 2020 labels, T1/T1ce/T2/FLAIR z-scored over the brain).
    """
    from EoFormerSegmentationLib.synthetic.generator import generate_case

    case = generate_case(int(seed))
    images = np.asarray(case.images, dtype=np.float32)
    label = np.asarray(case.label, dtype=np.uint8)
    affine = np.asarray(case.affine, dtype=np.float64)
    box = tuple(slice(0, n) for n in images.shape[1:])
    if crop_to_brain:
        box = brain_bounding_box(images, margin=margin)
        outside = label > 0
        outside[box] = False
        if outside.any():
            box = tuple(slice(0, n) for n in images.shape[1:])
    images = images[(slice(None),) + box]
    label = np.ascontiguousarray(label[box])
    affine = affine.copy()
    affine[:3, 3] = affine[:3, 3] + affine[:3, :3] @ np.array([s.start for s in box], float)
    return LoadedCase(
        name=f"synthetic-{int(seed)}",
        image=normalize_intensity(images),
        label=label,
        affine=affine,
        metadata={"seed": int(seed)},
    )


class SyntheticCropStream(CropStream):
    """Training crops of synthetic cases generated inside the DataLoader workers.

    Global case index ``k`` uses seed ``seed_start + k % seed_count``: the stream cycles over a
    fixed, recorded set of ``seed_count`` cases (new random crops and augmentations on every
    pass). Generation is the expensive part, so each case gives ``crops_per_case`` crops
    (set in ``transform``).

    Args:
        transform: see :class:`~EoFormerSegmentationLib.training.datasets.CropStream`.
        seed_start: first generator seed (:data:`TRAINING_SEED_START` by default).
        seed_count: number of distinct cases (seeds ``seed_start`` ... ``+ seed_count - 1``).
        case_factory: ``seed -> LoadedCase`` (default :func:`synthetic_case`); tests pass a
            cheaper one.
        **kwargs: ``seed``, ``rank``, ``world_size``, ``start_case``, ``shuffle_buffer`` of
            :class:`~EoFormerSegmentationLib.training.datasets.CropStream`.
    """

    def __init__(
        self,
        transform: Callable[[Dict[str, Any]], List[Dict[str, Any]]],
        seed_start: int = TRAINING_SEED_START,
        seed_count: int = 100_000,
        case_factory: Optional[Callable[[int], LoadedCase]] = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(transform, **kwargs)
        self.seed_start = int(seed_start)
        self.seed_count = int(seed_count)
        self.case_factory = case_factory or synthetic_case

    def case_at(self, index: int) -> Dict[str, Any]:
        seed = self.seed_start + index % self.seed_count
        return self.case_factory(seed).as_dict()
