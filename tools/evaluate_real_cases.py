"""Score models on held-out labelled cases and choose the post-processing on them.

Every case is segmented once per model with the engine (probabilities kept); the
post-processing rules of :class:`~EoFormerSegmentationLib.postprocessing.PostprocessingSettings`
are then swept over a grid on those probabilities, and the setting with the best mean Dice of
the *last* model (the candidate) over the three regions is chosen (ties: the simpler, earlier
setting of the grid). Then each region's own threshold is swept in turn and kept where it
raises the mean Dice without growing any region's mean HD95 by more than 1 mm. The whole
choice is also made again without each case and scored on it (leave one case out,
``chosen_on_other_cases``): what the choice is worth on a case that did not make it. Dice and
HD95 are reported per case and region for every model, with the default and with the chosen
post-processing. Run from the repository root::

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

from EoFormerSegmentationLib.engine import RAW_SCAN_MODEL_MODES, segment_images  # noqa: E402
from EoFormerSegmentationLib.evaluation import summarize  # noqa: E402
from EoFormerSegmentationLib.geometry import array_to_image  # noqa: E402
from EoFormerSegmentationLib.inference import INFERENCE_MODES  # noqa: E402
from EoFormerSegmentationLib.labels import (  # noqa: E402
    REGIONS,
    labels_to_regions,
    regions_to_labels,
)
from EoFormerSegmentationLib.metrics import dice, evaluate_labels, hd95  # noqa: E402
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
    "min_core_fraction": [0.0, 0.1, 0.25],
}
"""Post-processing settings swept (every combination; threshold 0.5)."""

REGION_THRESHOLDS = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7)
"""Each region's own threshold, swept after the rules above (WT, then TC, then ET)."""

HD95_TOLERANCE_MM = 1.0
"""A region's own threshold is kept only if no region's mean HD95 grows by more than this: a
lower threshold that wins Dice by adding a fragment far from the tumor is not a better draft."""


def settings_grid() -> List[PostprocessingSettings]:
    keys = list(GRID)
    return [
        PostprocessingSettings(**dict(zip(keys, values)))
        for values in itertools.product(*(GRID[key] for key in keys))
    ]


class SweptCases:
    """The candidate's probabilities near the tumor, case by case, and the Dice and HD95 of any
    post-processing settings on any of them (each computed once)."""

    def __init__(self) -> None:
        self.cases: List[tuple] = []
        self._dice: Dict[tuple, List[float]] = {}
        self._hd95: Dict[tuple, List[float]] = {}

    def add(self, probabilities, reference_regions, spacing) -> None:
        # Dice and HD95 only depend on voxels that may be tumor: keep their bounding box
        box = _bounding_box((probabilities.max(axis=0) > 0.05) | reference_regions[0])
        cropped = (probabilities[(slice(None), *box)], [r[box] for r in reference_regions])
        self.cases.append((*cropped, tuple(float(s) for s in spacing)))

    def _masks(self, case: int, settings: PostprocessingSettings) -> np.ndarray:
        probabilities, _, spacing = self.cases[case]
        return postprocess_regions(probabilities, float(np.prod(spacing)) / 1000.0, settings)

    @staticmethod
    def _key(case: int, settings: PostprocessingSettings) -> tuple:
        return case, tuple(sorted(settings.to_json().items()))

    def scores(self, case: int, settings: PostprocessingSettings) -> tuple:
        """Dice of WT, TC and ET, and their HD95 (mm)."""
        key = self._key(case, settings)
        if key not in self._hd95:
            _, reference_regions, spacing = self.cases[case]
            masks = self._masks(case, settings)
            self._hd95[key] = [hd95(masks[i], reference_regions[i], spacing) for i in range(3)]
        return self.region_dice(case, settings), self._hd95[key]

    def region_dice(self, case: int, settings: PostprocessingSettings) -> List[float]:
        """Dice of WT, TC and ET (HD95, far slower, only when asked for)."""
        key = self._key(case, settings)
        if key not in self._dice:
            masks = self._masks(case, settings)
            self._dice[key] = [dice(masks[i], self.cases[case][1][i]) for i in range(3)]
        return self._dice[key]

    def dice(self, case: int, settings: PostprocessingSettings) -> float:
        """Mean Dice of the three regions."""
        return float(np.mean(self.region_dice(case, settings)))

    def mean(self, settings: PostprocessingSettings, cases: List[int]) -> float:
        """Mean Dice over the regions and ``cases``."""
        return float(np.mean([self.dice(case, settings) for case in cases]))

    def mean_hd95(self, settings: PostprocessingSettings, cases: List[int]) -> np.ndarray:
        """Mean HD95 of WT, TC and ET over ``cases``."""
        return np.mean([self.scores(case, settings)[1] for case in cases], axis=0)


def choose_settings(
    swept: SweptCases, grid: List[PostprocessingSettings], cases: List[int]
) -> PostprocessingSettings:
    """The best rules of ``grid`` on ``cases``, then each region's threshold in turn, kept only
    where it raises the mean Dice of these cases and no region's mean HD95 grows by more than
    :data:`HD95_TOLERANCE_MM`."""
    means = [swept.mean(settings, cases) for settings in grid]
    chosen = grid[int(np.argmax(means))]
    if len(grid) == 1:  # fixed settings: nothing to choose
        return chosen
    best = max(means)
    limit = swept.mean_hd95(chosen, cases) + HD95_TOLERANCE_MM
    # nearest to the common threshold first: of two equally good values, the milder one stays
    values = sorted(REGION_THRESHOLDS, key=lambda value: abs(value - chosen.threshold))
    for region in ("wt", "tc", "et"):
        for value in values:
            if value == chosen.threshold:
                continue
            trial = dataclasses.replace(chosen, **{f"threshold_{region}": value})
            score = swept.mean(trial, cases)
            if score > best + 1e-4 and (swept.mean_hd95(trial, cases) <= limit).all():
                best, chosen = score, trial
    return chosen


def cross_validated(
    swept: SweptCases, grid: List[PostprocessingSettings], names: List[str]
) -> Dict[str, Any]:
    """Leave one case out: the settings chosen on the other cases, scored on the one left out.

    The settings chosen on all cases are scored on the same cases that chose them, which
    flatters them; this is what the choice is worth on a case it has not seen."""
    per_case = {}
    for left_out, name in enumerate(names):
        others = [case for case in range(len(names)) if case != left_out]
        settings = choose_settings(swept, grid, others)
        dice_scores, hd95_scores = swept.scores(left_out, settings)
        per_case[name] = {
            "settings": settings.to_json(),
            "dice": dict(zip(REGIONS, dice_scores)),
            "hd95": dict(zip(REGIONS, hd95_scores)),
        }

    def mean_of(metric: str) -> Dict[str, float]:
        return {
            r: float(np.mean([entry[metric][r] for entry in per_case.values()])) for r in REGIONS
        }

    means = mean_of("dice")
    return {
        "per_case": per_case,
        "dice_mean": means,
        "hd95_mean": mean_of("hd95"),
        "mean_dice": float(np.mean(list(means.values()))),
    }


def _bounding_box(mask: np.ndarray, margin: int = 2) -> tuple:
    if not mask.any():
        return tuple(slice(0, 1) for _ in mask.shape)
    points = np.argwhere(mask)
    low = np.maximum(points.min(axis=0) - margin, 0)
    high = np.minimum(points.max(axis=0) + 1 + margin, mask.shape)
    return tuple(slice(int(a), int(b)) for a, b in zip(low, high))


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
    parser.add_argument(
        "--raw-scan-model",
        default="auto",
        choices=RAW_SCAN_MODEL_MODES,
        help="off: every model segments raw scans itself, never through its companion",
    )
    parser.add_argument("--inference", default="window", choices=INFERENCE_MODES)
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
    swept = SweptCases()
    kept: Dict[str, Dict[str, Any]] = {}
    kept_images: Dict[str, Dict[str, Any]] = {}
    brains: Dict[str, Dict[str, np.ndarray]] = {}
    for model_path in arguments.model:
        loaded = load_checkpoint(model_path)
        key = str(model_path)
        kept[key] = {}
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
                raw_scan_model=arguments.raw_scan_model,
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
            if model_path == arguments.model[-1]:  # only the candidate's sweep is used
                swept.add(probabilities, labels_to_regions(reference), spacing)
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
    every_case = list(range(len(cases)))
    chosen = choose_settings(swept, grid, every_case)
    report: Dict[str, Any] = {
        "cases": [case.name for case in cases],
        "chosen": chosen.to_json(),
        "chosen_on": models[candidate]["name"],
        "chosen_on_other_cases": (
            cross_validated(swept, grid, [case.name for case in cases])
            if len(grid) > 1 and len(cases) > 2
            else None
        ),
        "inference": {
            "mode": arguments.inference,
            "overlap": arguments.overlap,
            "sw_batch_size": arguments.sw_batch_size,
            "tta": arguments.tta,
            "raw_scan_model": arguments.raw_scan_model,
        },
        "default": default.to_json(),
        "sweep": [
            {"settings": settings.to_json(), "mean_dice": swept.mean(settings, every_case)}
            for settings in grid
        ],
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
    if report["chosen_on_other_cases"]:
        print(
            "Dice WT / TC / ET of the candidate with the settings chosen on the other cases "
            "(leave one out): "
            + " / ".join(f"{v:.3f}" for v in report["chosen_on_other_cases"]["dice_mean"].values())
            + f" (mean {report['chosen_on_other_cases']['mean_dice']:.3f}; chosen on all "
            f"cases: {swept.mean(chosen, every_case):.3f})"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
