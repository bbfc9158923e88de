"""``eoformer evaluate``: BraTS Dice and HD95 of a segmentation against a reference."""

from __future__ import annotations

import argparse
import json

from EoFormerSegmentationLib.errors import InputError
from EoFormerSegmentationLib.segmentation_file import read_label_map

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


def _write_json(path: str, report: dict) -> None:
    from EoFormerSegmentationLib.files import atomic_write

    with atomic_write(path) as temporary:
        temporary.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")


def _run_cohort(args: argparse.Namespace) -> int:
    import sys

    from tqdm import tqdm

    from EoFormerSegmentationLib.evaluation import evaluate_cases
    from EoFormerSegmentationLib.files import check_creatable_folder
    from EoFormerSegmentationLib.models import default_model_path

    model = args.model or default_model_path()
    if model is None:
        raise InputError("no model given (--model) and no bundled model is installed")
    if args.predictions:
        check_creatable_folder(args.predictions, f"--predictions {args.predictions}")
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
    from EoFormerSegmentationLib.geometry import grid_differences
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
    differences = grid_differences(prediction_image, reference_image)
    if differences:
        raise InputError(
            f"{args.pred}: its grid differs from that of the reference {args.ref}: "
            f"{'; '.join(differences)} (prediction vs reference)"
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
