"""``eoformer segment``: WT / TC / ET from four MRI sequences, written as a file.

One case (``--t1 --t1ce --t2 --flair --output``) or a folder of cases (``--cases --out``, see
:mod:`EoFormerSegmentationLib.cohort`).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any, Callable, Dict, Mapping, Optional

from EoFormerSegmentationLib.cli.options import non_negative_int, open_fraction, positive_int
from EoFormerSegmentationLib.errors import InputError, OutputError
from EoFormerSegmentationLib.files import atomic_write, check_output_file, remove_file

__all__ = [
    "add_arguments",
    "run",
    "run_cohort",
    "check_mode",
    "progress_reporter",
    "check_report_path",
]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--t1", help="T1 image file or DICOM series folder (one case)")
    parser.add_argument("--t1ce", help="T1 with contrast (reference grid of the output)")
    parser.add_argument("--t2", help="T2 image")
    parser.add_argument("--flair", help="T2-FLAIR image")
    parser.add_argument(
        "--output",
        help="OUT.seg.nrrd (Slicer segmentation) or a label map (.nii.gz, .nii, .nrrd, .mha)",
    )
    parser.add_argument("--model", help="model checkpoint (default: the bundled model)")
    parser.add_argument("--device", default="auto", help="auto (default), cpu or cuda")
    parser.add_argument(
        "--tta", action="store_true", help="test-time augmentation: average 8 flips (8x slower)"
    )
    parser.add_argument(
        "--register",
        nargs="?",
        const="on",
        default="auto",
        choices=["auto", "on", "off"],
        help="rigid co-registration of T1, T2 and FLAIR to the T1ce: auto (default: the "
        "sequences whose grid differs from the T1ce's), on (all; also plain --register), off",
    )
    parser.add_argument(
        "--skull-strip",
        default="auto",
        choices=["auto", "on", "off"],
        help="brain extraction (deepbet) before segmentation: auto (default: when a sequence "
        "is not skull-stripped), on, off",
    )
    parser.add_argument(
        "--raw-scan-model",
        default="auto",
        choices=["auto", "off"],
        help="auto (default): scans that had to be co-registered or skull-stripped here are "
        "segmented by the model for raw scans that the model's card names (the bundled model "
        "has one); off: the model segments every scan",
    )
    parser.add_argument(
        "--label-convention",
        default="brats2020",
        choices=["brats2020", "brats2023"],
        help="label values of a label-map output: brats2020 (1 NCR, 2 ED, 4 ET, "
        "default) or brats2023 (ET = 3)",
    )
    parser.add_argument("--overwrite", action="store_true", help="replace an existing output")
    parser.add_argument("--json", metavar="REPORT", help="also write the report to this file")
    parser.add_argument(
        "--inference",
        default="auto",
        choices=["auto", "window", "whole"],
        help="auto (default): whole on the CPU, window on a GPU; window: overlapping 128^3 "
        "windows; whole: the cropped brain in one pass (a fraction of the work; windows again "
        "for very large volumes)",
    )
    parser.add_argument(
        "--uncertainty",
        metavar="MAP",
        help="also write a per-voxel uncertainty map (image on the T1ce grid, 0-1 bits: the "
        "largest binary entropy of the three regions; with --tta over the flips' mean); the "
        "report gets each region's uncertain volume (mL) and a 0-1 confidence",
    )
    parser.add_argument(
        "--overlap",
        type=open_fraction,
        default=0.5,
        help="sliding-window overlap fraction, 0 to below 1 (default 0.5)",
    )
    parser.add_argument(
        "--sw-batch-size",
        type=positive_int,
        help="windows per forward pass (default 1 on CPU, 4 on CUDA)",
    )
    parser.add_argument("--threads", type=positive_int, help="CPU threads for PyTorch")
    parser.add_argument(
        "--progress",
        default="auto",
        choices=["auto", "lines", "none"],
        help="auto: progress bar; lines: 'EOFORMER-PROGRESS <fraction> "
        "<message>' lines on stderr (for other programs); none",
    )

    cohort = parser.add_argument_group(
        "cohort",
        "instead of --t1/--t1ce/--t2/--flair/--output: every case under a folder, one result "
        "per case, volumes.csv; several processes with torchrun share the cases",
    )
    cohort.add_argument(
        "--cases",
        metavar="DIR",
        help="folder of cases (BraTS 2020/2021/2023, plain t1/t1ce/t2/flair, folders written by "
        "the Slicer module, DICOM studies)",
    )
    cohort.add_argument("--out", metavar="OUTDIR", help="folder for the results (created)")
    cohort.add_argument(
        "--format",
        default="seg.nrrd",
        choices=["seg.nrrd", "nii.gz"],
        help="seg.nrrd (Slicer segmentation, default) or nii.gz (BraTS label map)",
    )
    cohort.add_argument(
        "--skip-existing",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="keep the results of an earlier run with the same model (default: on; "
        "--no-skip-existing segments every case again)",
    )
    cohort.add_argument(
        "--workers",
        type=non_negative_int,
        default=1,
        help="processes reading the next cases while the network runs (default 1; 0: none)",
    )


COHORT_ONLY = ("cases", "out")
SINGLE_CASE_ONLY = ("t1", "t1ce", "t2", "flair", "output")
SINGLE_CASE_EXTRAS = ("uncertainty",)
"""Options of one case that a cohort run does not take (each case gets its record instead)."""


def check_mode(args: argparse.Namespace) -> bool:
    """True for a cohort run (``--cases``), False for one case; refuse a mix of the two.

    Raises:
        InputError: options of both modes, or a mode's required options missing.
    """
    names = COHORT_ONLY + SINGLE_CASE_ONLY + SINGLE_CASE_EXTRAS
    given = {name for name in names if getattr(args, name, None)}
    if given & set(COHORT_ONLY):
        mixed = [name for name in SINGLE_CASE_ONLY + SINGLE_CASE_EXTRAS if name in given]
        if mixed:
            raise InputError(
                f"--{', --'.join(mixed)} cannot be used with --cases/--out: give either "
                "--t1, --t1ce, --t2, --flair and --output (one case), or --cases DIR and "
                "--out OUTDIR (a folder of cases)"
            )
        missing = [f"--{name}" for name in COHORT_ONLY if name not in given]
        if missing:
            raise InputError(f"--cases DIR and --out OUTDIR go together: missing {missing[0]}")
        if getattr(args, "overwrite", False):
            raise InputError(
                "--overwrite is for --output; with --cases, --no-skip-existing segments every "
                "case again and replaces its result"
            )
        return True
    missing = [f"--{name}" for name in SINGLE_CASE_ONLY if name not in given]
    if missing:
        raise InputError(
            f"missing {', '.join(missing)}: give --t1, --t1ce, --t2, --flair and --output "
            "(one case), or --cases DIR and --out OUTDIR (a folder of cases)"
        )
    return False


def engine_options(args: argparse.Namespace) -> Dict[str, Any]:
    """The options that one case and a cohort both hand to the engine, so that an option of
    the command line reaches every case the same way."""
    return {
        "model_path": args.model,
        "device": args.device,
        "tta": args.tta,
        "register": args.register,
        "skull_strip": args.skull_strip,
        "raw_scan_model": args.raw_scan_model,
        "label_convention": args.label_convention,
        "overlap": args.overlap,
        "sw_batch_size": args.sw_batch_size,
        "inference": args.inference,
    }


def progress_reporter(mode: str) -> tuple:
    """A (fraction, message) callback for the chosen mode, and a function to close it."""
    if mode == "none":
        return None, lambda: None
    if mode == "lines":

        def report(fraction: float, message: str) -> None:
            print(f"EOFORMER-PROGRESS {fraction:.4f} {message}", file=sys.stderr, flush=True)

        return report, lambda: None
    from tqdm import tqdm

    bar = tqdm(total=100, unit="%", file=sys.stderr, bar_format="{l_bar}{bar}| {elapsed}")

    def update(fraction: float, message: str) -> None:
        bar.set_description(message[:40].ljust(40))
        bar.n = int(round(100 * fraction))
        bar.refresh()

    return update, bar.close


def check_report_path(report: Optional[str], files: Mapping[str, Optional[str]]) -> None:
    """Refuse a ``--json`` report path that would replace one of the command's files.

    Checked before any work, so that a mistyped ``--json`` never overwrites an input image (or
    the output) with the report, and never fails after the output was written.

    Args:
        report: the ``--json`` path (nothing is checked when ``None``).
        files: role (``t1``, ``output``, ...) -> path of the command's other files.

    Raises:
        InputError: ``report`` is a folder or the same file as one of ``files``, or its
            folder is missing or not writable.
    """
    if not report:
        return
    report_path = Path(report)
    if report_path.is_dir():
        raise InputError(f"--json {report}: is a folder; give a file name for the report")
    check_output_file(report_path, "--json")
    for role, path in files.items():
        if not path:
            continue
        same = (
            os.path.samefile(report_path, path)
            if report_path.exists() and Path(path).exists()
            else report_path.resolve() == Path(path).resolve()
        )
        if same:
            raise InputError(f"--json {report}: is the {role} file; choose another report file")


def run(args: argparse.Namespace) -> int:
    from EoFormerSegmentationLib.engine import segment_files

    if check_mode(args):
        return run_cohort(args)
    if not 0.0 <= args.overlap < 1.0:
        raise InputError(f"--overlap {args.overlap}: expected a fraction in [0, 1)")
    check_report_path(
        args.json,
        {name: getattr(args, name) for name in ("t1", "t1ce", "t2", "flair", "output")},
    )
    if args.threads is not None:
        import torch

        torch.set_num_threads(max(int(args.threads), 1))
    progress: Optional[Callable[[float, str], None]]
    progress, close = progress_reporter(args.progress)
    try:
        result = segment_files(
            args.t1,
            args.t1ce,
            args.t2,
            args.flair,
            args.output,
            overwrite=args.overwrite,
            progress=progress,
            uncertainty_output=args.uncertainty,
            **engine_options(args),
        )
    finally:
        close()
    report = result.report()
    for note in result.notes:
        print(f"eoformer segment: {note}", file=sys.stderr)
    if args.json:
        try:
            with atomic_write(args.json) as temporary:
                temporary.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
        except OutputError as error:
            # no result without its report: a failing run leaves no output behind
            if result.output is not None:
                remove_file(result.output)
            if args.uncertainty:
                remove_file(args.uncertainty)
            raise OutputError(f"{error}; the segmentation {result.output} was removed") from error
    volumes = ", ".join(f"{k} {v:.1f} mL" for k, v in result.volumes_ml.items())
    print(
        f"wrote {result.output} ({volumes}; model {result.model_name}; "
        f"{result.device}; {result.timings_s['total']:.1f} s)",
        file=sys.stderr,
    )
    print(json.dumps(report))
    return 0


def run_cohort(args: argparse.Namespace) -> int:
    """``eoformer segment --cases DIR --out OUTDIR``: the exit status (1 when a case failed)."""
    from EoFormerSegmentationLib.cohort import segment_cohort

    if not 0.0 <= args.overlap < 1.0:
        raise InputError(f"--overlap {args.overlap}: expected a fraction in [0, 1)")
    check_report_path(args.json, {"--out": args.out})
    if args.threads is not None:
        import torch

        torch.set_num_threads(max(int(args.threads), 1))
    bar = None

    def on_start(cases: int, share: int, skipped: int) -> None:
        nonlocal bar
        if args.progress == "auto" and int(os.environ.get("RANK", "0")) == 0:
            from tqdm import tqdm

            bar = tqdm(total=share - skipped, unit="case", file=sys.stderr, dynamic_ncols=True)
        if skipped:
            print(
                f"eoformer segment: {skipped} of {share} cases done before (--skip-existing)",
                file=sys.stderr,
            )

    def progress(done: int, total: int, record: dict) -> None:
        if record["status"] != "done":
            message = f"eoformer segment: {record['case']} failed: {record['error']}"
            if bar is not None:
                bar.write(message, file=sys.stderr)
            else:
                print(message, file=sys.stderr)
        if bar is not None:
            bar.set_postfix_str(f"{record['case'][-30:]} {record['seconds']:.1f} s")
            bar.update(1)
        elif args.progress == "lines":
            print(
                f"EOFORMER-PROGRESS {done / total:.4f} {record['case']} {record['status']}",
                file=sys.stderr,
                flush=True,
            )

    try:
        summary = segment_cohort(
            args.cases,
            args.out,
            output_format=args.format,
            skip_existing=args.skip_existing,
            workers=args.workers,
            **engine_options(args),
            progress=progress,
            on_start=on_start,
        )
    finally:
        if bar is not None:
            bar.close()
    report = summary.report()
    where = f"process {summary.rank} of {summary.world_size}: " if summary.world_size > 1 else ""
    rate = f", {summary.cases_per_hour:.0f} cases/hour" if summary.cases_per_hour else ""
    print(
        f"eoformer segment: {where}{summary.share} cases: {summary.segmented} segmented, "
        f"{summary.skipped} done before, {len(summary.failed)} failed "
        f"({summary.seconds:.1f} s{rate})",
        file=sys.stderr,
    )
    if summary.csv is not None:
        print(
            f"eoformer segment: {summary.cases} cases, {summary.failed_total} failed; "
            f"volumes in {summary.csv}",
            file=sys.stderr,
        )
    if args.json:
        with atomic_write(args.json) as temporary:
            temporary.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    print(json.dumps(report))
    return 1 if summary.any_failed else 0
