"""Cohort evaluation: segment labelled cases with a model and score them (BraTS Dice, HD95).

This is how the numbers of the model card are measured.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence, Union

import numpy as np

from EoFormerSegmentationLib.labels import REGIONS

__all__ = ["evaluate_cases", "summarize"]

PathLike = Union[str, Path]


def summarize(per_case: List[Dict[str, Any]]) -> Dict[str, Dict[str, float]]:
    """Mean and standard deviation of Dice and HD95 per region over cases."""
    summary: Dict[str, Dict[str, float]] = {}
    for region in REGIONS:
        dices = [case["scores"][region]["dice"] for case in per_case]
        distances = [case["scores"][region]["hd95"] for case in per_case]
        summary[region] = {
            "dice_mean": float(np.mean(dices)),
            "dice_std": float(np.std(dices)),
            "hd95_mean": float(np.mean(distances)),
            "hd95_median": float(np.median(distances)),
        }
    return summary


def evaluate_cases(
    model_path: PathLike,
    folders: Sequence[PathLike],
    *,
    device: str = "auto",
    tta: bool = False,
    predictions_dir: Optional[PathLike] = None,
    progress: Optional[Callable[[int, int, str], None]] = None,
) -> Dict[str, Any]:
    """Segment every labelled case under ``folders`` and score it against its label.

    Args:
        model_path: checkpoint to evaluate.
        folders: BraTS-layout data folders or case folders (see
            :func:`~EoFormerSegmentationLib.training.datasets.discover_cases`).
        device: ``auto``, ``cpu`` or ``cuda``.
        tta: flip test-time augmentation.
        predictions_dir: when given, each prediction is written there as
            ``<case>.nii.gz`` (BraTS 2020 labels).
        progress: called with (cases done, total, case name).

    Returns:
        ``{"model": ..., "cases": [{"case", "scores", "volumes_ml", "seconds"}], "summary": ...}``.
    """
    from EoFormerSegmentationLib.engine import segment_images
    from EoFormerSegmentationLib.geometry import image_to_array
    from EoFormerSegmentationLib.metrics import evaluate_labels
    from EoFormerSegmentationLib.models import load_checkpoint
    from EoFormerSegmentationLib.segmentation_file import read_label_map, write_label_map
    from EoFormerSegmentationLib.training.datasets import discover_cases
    from EoFormerSegmentationLib.volumes import read_sequences

    cases = discover_cases(list(folders), require_label=True)
    loaded = load_checkpoint(model_path)
    per_case: List[Dict[str, Any]] = []
    for index, case in enumerate(cases):
        started = time.perf_counter()
        images = read_sequences(case.images)
        result = segment_images(images, loaded, device=device, tta=tta)
        reference, reference_image = read_label_map(str(case.label))
        prediction = image_to_array(result.label_map)
        if prediction.shape != reference.shape:
            from EoFormerSegmentationLib.errors import InputError

            raise InputError(
                f"{case.label}: the label's grid {reference.shape} differs from the case's "
                f"T1ce grid {prediction.shape}"
            )
        scores = evaluate_labels(prediction, reference, reference_image.GetSpacing())
        if predictions_dir is not None:
            Path(predictions_dir).mkdir(parents=True, exist_ok=True)
            write_label_map(
                Path(predictions_dir) / f"{case.name}.nii.gz",
                result.label_map,
                "brats2020",
                loaded.name,
                loaded.sha256,
            )
        per_case.append(
            {
                "case": case.name,
                "scores": scores,
                "volumes_ml": result.volumes_ml,
                "seconds": time.perf_counter() - started,
                "device": result.device,
            }
        )
        if progress is not None:
            progress(index + 1, len(cases), case.name)
    return {
        "model": {"name": loaded.name, "sha256": loaded.sha256, "path": str(model_path)},
        "cases": per_case,
        "summary": summarize(per_case),
    }
