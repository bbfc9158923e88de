"""Score models on held-out labelled cases and choose the post-processing on them.

Every case is segmented once per model with the engine (probabilities kept); the
post-processing rules of :class:`~EoFormerSegmentationLib.postprocessing.PostprocessingSettings`
are then swept over a grid on those probabilities, and the setting with the best mean Dice of
the *last* model (the candidate) over the three regions is chosen (ties: the simpler, earlier
setting of the grid). Dice and HD95 are reported per case and region for every model, with
the default and with the chosen post-processing. Run from the repository root::

    python tools/evaluate_real_cases.py --cases runs/data/val \\
        --model runs/eoformer_glioma_synthetic_v1.pt \\
        --model runs/v2/best.pt --out runs/real_eval

The first bundled model (synthetic cases only) is in the repository's history::

    git show fb36dbb:EoFormerSegmentation/Resources/Models/eoformer_glioma_synthetic_v1.pt \
        > runs/eoformer_glioma_synthetic_v1.pt

``--postprocessing FILE`` applies a setting chosen before (the ``chosen`` entry of an earlier
report) instead of sweeping, e.g. on simulated thick-slice or raw cases.
"""

from __future__ import annotations

import argparse
import dataclasses
import itertools
import json
import sys
import time
from pathlib import Path
from typing import Any, Dict, List

import numpy as np
import SimpleITK as sitk

REPOSITORY = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPOSITORY / "EoFormerSegmentation"))

from EoFormerSegmentationLib.engine import segment_images  # noqa: E402
from EoFormerSegmentationLib.evaluation import summarize  # noqa: E402
from EoFormerSegmentationLib.geometry import array_to_image  # noqa: E402
from EoFormerSegmentationLib.labels import REGIONS, regions_to_labels  # noqa: E402
from EoFormerSegmentationLib.metrics import dice, evaluate_labels  # noqa: E402
from EoFormerSegmentationLib.models import load_checkpoint  # noqa: E402
from EoFormerSegmentationLib.postprocessing import (  # noqa: E402
    PostprocessingSettings,
    postprocess_regions,
)
from EoFormerSegmentationLib.segmentation_file import read_label_map  # noqa: E402
from EoFormerSegmentationLib.training.datasets import discover_cases  # noqa: E402
from EoFormerSegmentationLib.volumes import read_sequences  # noqa: E402

GRID = {
    "min_component_ml": [0.1, 1.0, 3.0],
    "min_component_fraction": [0.0, 0.1, 0.25],
    "min_enhancing_ml": [0.3, 1.0, 2.0, 4.0],
}
"""Post-processing settings swept (every combination; threshold 0.5)."""


def settings_grid() -> List[PostprocessingSettings]:
    keys = list(GRID)
    return [
        PostprocessingSettings(**dict(zip(keys, values)))
        for values in itertools.product(*(GRID[key] for key in keys))
    ]


def _bounding_box(mask: np.ndarray, margin: int = 2) -> tuple:
    if not mask.any():
        return tuple(slice(0, 1) for _ in mask.shape)
    points = np.argwhere(mask)
    low = np.maximum(points.min(axis=0) - margin, 0)
    high = np.minimum(points.max(axis=0) + 1 + margin, mask.shape)
    return tuple(slice(int(a), int(b)) for a, b in zip(low, high))


def mean_dice(probabilities, reference_regions, voxel_ml, settings) -> float:
    masks = postprocess_regions(probabilities, voxel_ml, settings)
    return float(np.mean([dice(masks[i], reference_regions[i]) for i in range(3)]))


def scores_with(probabilities, reference, spacing, settings) -> Dict[str, Dict[str, float]]:
    voxel_ml = float(np.prod(spacing)) / 1000.0
    masks = postprocess_regions(probabilities, voxel_ml, settings)
    prediction = regions_to_labels(masks, "brats2020")
    scores = evaluate_labels(prediction, reference, spacing)
    for index, region in enumerate(REGIONS):
        scores[region]["volume_ml"] = float(masks[index].sum()) * voxel_ml
    return scores


def uncertainty_versus_errors(probabilities, reference, brain_zyx, spacing, settings):
    """Error rates inside and outside the uncertain voxels (entropy > 0.5 bit), per region.

    Errors are voxels where the post-processed prediction and the reference disagree; the
    rates are over the brain (non-zero T1ce) voxels.
    """
    from EoFormerSegmentationLib.uncertainty import UNCERTAIN_BITS, binary_entropy

    voxel_ml = float(np.prod(spacing)) / 1000.0
    masks = postprocess_regions(probabilities, voxel_ml, settings)
    entropy = binary_entropy(probabilities)
    brain = brain_zyx.transpose(2, 1, 0)  # SimpleITK arrays are [z, y, x]
    result = {}
    for index, (region, values) in enumerate(zip(REGIONS, ((1, 2, 3, 4), (1, 3, 4), (3, 4)))):
        errors = (masks[index] != np.isin(reference, values)) & brain
        uncertain = (entropy[index] > UNCERTAIN_BITS) & brain
        certain = brain & ~uncertain
        result[region] = {
            "uncertain_ml": float(uncertain.sum()) * voxel_ml,
            "error_rate_uncertain": float(errors[uncertain].mean()) if uncertain.any() else 0.0,
            "error_rate_elsewhere": float(errors[certain].mean()) if certain.any() else 0.0,
            "errors_in_uncertain": float(errors[uncertain].sum()) / max(int(errors.sum()), 1),
        }
    return result


def summary(per_case: Dict[str, Dict[str, Dict[str, float]]]) -> Dict[str, Any]:
    """The cohort summary of ``eoformer evaluate --cases``, plus the mean Dice of the regions."""
    result: Dict[str, Any] = summarize([{"scores": scores} for scores in per_case.values()])
    result["mean_dice"] = float(np.mean([result[r]["dice_mean"] for r in REGIONS]))
    return result


def markdown(report: Dict[str, Any]) -> str:
    """Per-case and mean Dice / HD95 of every model (chosen post-processing) as a table."""
    names = list(report["models"])
    header = "| case | " + " | ".join(
        f"{name} Dice WT / TC / ET | {name} HD95 WT / TC / ET (mm)" for name in names
    )
    lines = [header + " |", "|" + " --- |" * (1 + 2 * len(names))]

    def cells(scores: Dict[str, Dict[str, float]], key: str, digits: int) -> str:
        return " / ".join(f"{scores[r][key]:.{digits}f}" for r in REGIONS)

    for case in report["cases"]:
        row = [case]
        for name in names:
            scores = report["models"][name]["chosen"]["per_case"][case]
            row += [cells(scores, "dice", 3), cells(scores, "hd95", 1)]
        lines.append("| " + " | ".join(row) + " |")
    row = ["**mean**"]
    for name in names:
        summary = report["models"][name]["chosen"]["summary"]
        row += [
            "**" + " / ".join(f"{summary[r]['dice_mean']:.3f}" for r in REGIONS) + "**",
            "**" + " / ".join(f"{summary[r]['hd95_mean']:.1f}" for r in REGIONS) + "**",
        ]
    lines.append("| " + " | ".join(row) + " |")
    return "\n".join(lines) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--cases", nargs="+", type=Path, required=True)
    parser.add_argument("--model", action="append", type=Path, required=True)
    parser.add_argument("--out", type=Path, required=True, help="report folder")
    parser.add_argument(
        "--postprocessing",
        type=Path,
        help="report whose 'chosen' to apply, or a model card (.json) whose post-processing to apply",
    )
    parser.add_argument("--device", default="auto")
    parser.add_argument("--tta", action="store_true")
    parser.add_argument("--inference", default="window", choices=("auto", "window", "whole"))
    parser.add_argument("--overlap", type=float, default=0.5, help="sliding-window overlap")
    parser.add_argument("--sw-batch-size", type=int, help="windows per network call")
    parser.add_argument(
        "--ensemble",
        action="store_true",
        help="also score the mean of the given models' probabilities (as one more model)",
    )
    arguments = parser.parse_args()

    cases = discover_cases([str(c) for c in arguments.cases], require_label=True)
    arguments.out.mkdir(parents=True, exist_ok=True)
    fixed = None
    if arguments.postprocessing:
        saved = json.loads(arguments.postprocessing.read_text(encoding="utf-8"))
        # an earlier report's choice, or a model card's post-processing
        fixed = PostprocessingSettings(**saved.get("chosen", saved.get("postprocessing", {})))
    grid = [fixed] if fixed else settings_grid()
    default = PostprocessingSettings()

    models: Dict[str, Any] = {}
    sweep: Dict[str, Dict[int, List[float]]] = {}
    kept: Dict[str, Dict[str, Any]] = {}
    kept_images: Dict[str, Dict[str, Any]] = {}
    brains: Dict[str, Dict[str, np.ndarray]] = {}
    for model_path in arguments.model:
        loaded = load_checkpoint(model_path)
        key = str(model_path)
        kept[key] = {}
        sweep[key] = {index: [] for index in range(len(grid))}
        timings = {}
        processing: Dict[str, Any] = {}
        segmented_by: Dict[str, str] = {}  # the model itself, or its companion for raw scans
        for case in cases:
            started = time.perf_counter()
            images = read_sequences(case.images)
            result = segment_images(
                images,
                loaded,
                device=arguments.device,
                tta=arguments.tta,
                keep_probabilities=True,
                inference=arguments.inference,
                overlap=arguments.overlap,
                sw_batch_size=arguments.sw_batch_size,
            )
            timings[case.name] = {**result.timings_s, "seconds": time.perf_counter() - started}
            processing[case.name] = {**result.processing, "notes": list(result.notes)}
            reference, reference_image = read_label_map(str(case.label))
            spacing = reference_image.GetSpacing()
            probabilities = result.probabilities
            if probabilities.shape[1:] != reference.shape:
                raise SystemExit(f"{case.label}: not on the T1ce grid of {case.name}")
            regions = [np.isin(reference, values) for values in ((1, 2, 3, 4), (1, 3, 4), (3, 4))]
            voxel_ml = float(np.prod(spacing)) / 1000.0
            if model_path == arguments.model[-1]:  # only the candidate's sweep is used
                # Dice only depends on voxels that may be tumor: sweep on their bounding box
                box = _bounding_box((probabilities.max(axis=0) > 0.05) | (reference > 0))
                cropped = probabilities[(slice(None), *box)]
                cropped_regions = [region[box] for region in regions]
                for index, settings in enumerate(grid):
                    score = mean_dice(cropped, cropped_regions, voxel_ml, settings)
                    sweep[key][index].append(score)
            kept[key][case.name] = (probabilities, reference, spacing)
            kept_images.setdefault(key, {})[case.name] = reference_image
            brains.setdefault(key, {})[case.name] = sitk.GetArrayFromImage(images["t1ce"]) != 0
            segmented_by[result.model_sha256] = result.model_name
            print(
                f"{loaded.name} {case.name}: {timings[case.name]['seconds']:.0f} s "
                f"({result.model_name})",
                flush=True,
            )
        models[key] = {
            "name": loaded.name,
            "sha256": loaded.sha256,
            "segmented_by": [{"name": n, "sha256": h} for h, n in segmented_by.items()],
            "timings_s": timings,
            "processing": processing,
        }

    if arguments.ensemble and len(models) > 1:
        members = list(models)
        key = "ensemble"
        name = "ensemble(" + "+".join(models[member]["name"] for member in members) + ")"
        kept[key] = {}
        for case_name in kept[members[0]]:
            mean = np.mean([kept[member][case_name][0] for member in members], axis=0)
            kept[key][case_name] = (mean.astype(np.float32), *kept[members[0]][case_name][1:])
        kept_images[key] = kept_images[members[0]]
        brains[key] = brains[members[0]]
        models[key] = {
            "name": name,
            "members": [
                {"name": models[m]["name"], "sha256": models[m]["sha256"]} for m in members
            ],
        }

    candidate = str(arguments.model[-1])
    means = [float(np.mean(sweep[candidate][index])) for index in range(len(grid))]
    chosen = grid[int(np.argmax(means))]
    report: Dict[str, Any] = {
        "cases": [case.name for case in cases],
        "chosen": dataclasses.asdict(chosen),
        "chosen_on": models[candidate]["name"],
        "inference": {
            "mode": arguments.inference,
            "overlap": arguments.overlap,
            "sw_batch_size": arguments.sw_batch_size,
            "tta": arguments.tta,
        },
        "default": dataclasses.asdict(default),
        "sweep": [{"settings": dataclasses.asdict(s), "mean_dice": m} for s, m in zip(grid, means)],
        "models": {},
    }
    for key, info in models.items():
        entry = dict(info)
        for label, settings in (("default", default), ("chosen", chosen)):
            per_case = {
                name: scores_with(p, ref, spacing, settings)
                for name, (p, ref, spacing) in kept[key].items()
            }
            entry[label] = {"per_case": per_case, "summary": summary(per_case)}
        entry["uncertainty"] = {
            name: uncertainty_versus_errors(p, ref, brains[key][name], spacing, chosen)
            for name, (p, ref, spacing) in kept[key].items()
        }
        report["models"][info["name"]] = entry
        folder = arguments.out / "predictions" / info["name"]
        folder.mkdir(parents=True, exist_ok=True)
        for name, (p, _, _) in kept[key].items():
            image = kept_images[key][name]
            voxel_ml = float(np.prod(image.GetSpacing())) / 1000.0
            labels = regions_to_labels(postprocess_regions(p, voxel_ml, chosen), "brats2020")
            written = array_to_image(labels, image)
            sitk.WriteImage(written, str(folder / f"{name}.nii.gz"), True)
    path = arguments.out / "report.json"
    path.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    (arguments.out / "report.md").write_text(markdown(report), encoding="utf-8")

    for name, entry in report["models"].items():
        for label in ("default", "chosen"):
            s = entry[label]["summary"]
            print(
                f"{name:32s} {label:8s} "
                + "  ".join(
                    f"{r} {s[r]['dice_mean']:.3f} ({s[r]['hd95_mean']:.1f} mm)" for r in REGIONS
                )
            )
    print(f"chosen post-processing: {report['chosen']}; report: {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
