"""``eoformer evaluate``: BraTS Dice and HD95 of a segmentation against a reference."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from EoFormerSegmentationLib.errors import InputError

__all__ = ["add_arguments", "run", "read_label_map"]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--pred", help="predicted label map (BraTS labels) or .seg.nrrd")
    parser.add_argument(
        "--ref", help="reference label map (BraTS labels, ET as 4 or 3) or .seg.nrrd"
    )
    parser.add_argument("--json", metavar="REPORT", help="also write the scores to this file")
    cohort = parser.add_argument_group(
        "cohort", "instead of --pred/--ref: segment labelled cases with a model and score them"
    )
    cohort.add_argument(
        "--cases",
        nargs="+",
        metavar="DIR",
        help="BraTS-layout data folders or case folders with labels",
    )
    cohort.add_argument("--model", help="model checkpoint (default: the bundled model)")
    cohort.add_argument("--device", default="auto", help="auto (default), cpu or cuda")
    cohort.add_argument("--tta", action="store_true", help="flip test-time augmentation")
    cohort.add_argument(
        "--predictions", metavar="DIR", help="also write each prediction to DIR/<case>.nii.gz"
    )


def read_label_map(path: str):
    """A BraTS label array ``[x, y, z]`` and its SimpleITK image from a label map or .seg.nrrd."""
    import SimpleITK as sitk

    from EoFormerSegmentationLib.geometry import array_to_image, image_to_array
    from EoFormerSegmentationLib.labels import REGIONS, check_label_values, regions_to_labels
    from EoFormerSegmentationLib.segmentation_file import read_seg_nrrd

    file = Path(path)
    if not file.exists():
        raise InputError(f"{file}: file not found")
    if file.name.lower().endswith(".seg.nrrd"):
        regions = read_seg_nrrd(file)
        masks = np.stack([image_to_array(regions[r]) for r in REGIONS])
        reference = regions[REGIONS[0]]
        label = regions_to_labels(masks)
        return label, array_to_image(label, reference)
    try:
        image = sitk.ReadImage(str(file))
    except RuntimeError as error:
        raise InputError(f"{file}: cannot read the label map ({error})") from error
    if image.GetDimension() != 3 or image.GetNumberOfComponentsPerPixel() != 1:
        raise InputError(f"{file}: expected a 3D label map, got {image.GetDimension()}D")
    array = image_to_array(image)
    if not np.all(np.equal(np.mod(array, 1), 0)):
        raise InputError(f"{file}: the label map has non-integer values")
    check_label_values(array, str(file))
    return array.astype(np.uint8), image


def _write_json(path: str, report: dict) -> None:
    from EoFormerSegmentationLib.models import atomic_write

    with atomic_write(path) as temporary:
        temporary.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")


def _run_cohort(args: argparse.Namespace) -> int:
    import sys

    from tqdm import tqdm

    from EoFormerSegmentationLib.evaluation import evaluate_cases
    from EoFormerSegmentationLib.models import default_model_path

    model = args.model or default_model_path()
    if model is None:
        raise InputError("no model given (--model) and no bundled model is installed")
    bar = tqdm(unit="case", file=sys.stderr)

    def progress(done: int, total: int, name: str) -> None:
        bar.total = total
        bar.set_description(name)
        bar.update(done - bar.n)

    try:
        report = evaluate_cases(
            model,
            args.cases,
            device=args.device,
            tta=args.tta,
            predictions_dir=args.predictions,
            progress=progress,
        )
    finally:
        bar.close()
    print(
        f"{'case':<28}" + "".join(f"{r + ' Dice':>10}{r + ' HD95':>10}" for r in report["summary"])
    )
    for case in report["cases"]:
        print(
            f"{case['case']:<28}"
            + "".join(f"{v['dice']:>10.4f}{v['hd95']:>10.2f}" for v in case["scores"].values())
        )
    print(
        f"{'mean':<28}"
        + "".join(
            f"{v['dice_mean']:>10.4f}{v['hd95_mean']:>10.2f}" for v in report["summary"].values()
        )
    )
    if args.json:
        _write_json(args.json, report)
    print(json.dumps(report["summary"]))
    return 0


def run(args: argparse.Namespace) -> int:
    from EoFormerSegmentationLib.cli.segment import check_report_path
    from EoFormerSegmentationLib.metrics import evaluate_labels

    check_report_path(args.json, {"--pred": args.pred, "--ref": args.ref})
    if args.cases:
        if args.pred or args.ref:
            raise InputError("give either --pred and --ref, or --cases, not both")
        return _run_cohort(args)
    if not (args.pred and args.ref):
        raise InputError("give --pred and --ref (or --cases with a model)")

    prediction, prediction_image = read_label_map(args.pred)
    reference, reference_image = read_label_map(args.ref)
    if (
        prediction.shape != reference.shape
        or not np.allclose(prediction_image.GetSpacing(), reference_image.GetSpacing(), atol=1e-4)
        or not np.allclose(prediction_image.GetOrigin(), reference_image.GetOrigin(), atol=1e-3)
    ):
        raise InputError(
            f"{args.pred}: its grid (size {prediction_image.GetSize()}, spacing "
            f"{prediction_image.GetSpacing()}) differs from the reference {args.ref} (size "
            f"{reference_image.GetSize()}, spacing {reference_image.GetSpacing()})"
        )
    scores = evaluate_labels(prediction, reference, reference_image.GetSpacing())
    print(f"{'region':<8}{'Dice':>8}{'HD95 mm':>10}")
    for region, values in scores.items():
        print(f"{region:<8}{values['dice']:>8.4f}{values['hd95']:>10.2f}")
    report = {"prediction": str(args.pred), "reference": str(args.ref), "scores": scores}
    if args.json:
        _write_json(args.json, report)
    print(json.dumps(report))
    return 0
