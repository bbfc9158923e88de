"""``eoformer benchmark``: speed and memory of EoFormer and of peer networks, side by side.

Examples::

    # the CPU table (2 threads), about 5-10 minutes
    eoformer benchmark --device cpu --json benchmark-cpu.json

    # the GPU table, Markdown for the README
    eoformer benchmark --device cuda --markdown --json benchmark-cuda.json

    # only the networks, no whole-case run
    eoformer benchmark --skip-end-to-end --models eoformer segresnet
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from EoFormerSegmentationLib.cli.options import (
    check_model_file,
    non_negative_int,
    positive_float,
    positive_int,
)
from EoFormerSegmentationLib.errors import InputError
from EoFormerSegmentationLib.files import check_output_file

__all__ = ["add_arguments", "run"]

_NETWORK_CHOICES = ("eoformer", "segresnet", "swinunetr", "unetr")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``eoformer benchmark``."""
    parser.add_argument(
        "--device",
        choices=("cpu", "cuda"),
        help="where to run (default: cuda when PyTorch sees a GPU, else cpu)",
    )
    parser.add_argument(
        "--threads",
        type=positive_int,
        default=2,
        metavar="N",
        help="PyTorch CPU threads of every measurement (default 2, a laptop's share)",
    )
    parser.add_argument(
        "--window",
        type=positive_int,
        default=128,
        metavar="W",
        help="cubic window size in voxels, a multiple of 32 (default 128)",
    )
    parser.add_argument(
        "--repeats",
        type=positive_int,
        metavar="N",
        help="timed forwards per row at most (default 5 on CPU, 20 on CUDA)",
    )
    parser.add_argument(
        "--warmup",
        type=non_negative_int,
        metavar="N",
        help="untimed forwards per row first (default 1 on CPU, 3 on CUDA)",
    )
    parser.add_argument(
        "--time-budget",
        type=positive_float,
        default=20.0,
        metavar="SECONDS",
        help="a row stops timing after this many seconds, once 2 runs are done (default 20)",
    )
    parser.add_argument(
        "--models",
        nargs="+",
        choices=_NETWORK_CHOICES,
        default=list(_NETWORK_CHOICES),
        metavar="NAME",
        help=f"networks to include, among {', '.join(_NETWORK_CHOICES)} (default: all)",
    )
    compile_group = parser.add_mutually_exclusive_group()
    compile_group.add_argument(
        "--compile",
        dest="compile_rows",
        action="store_const",
        const=True,
        help="add torch.compile rows (default on CUDA only)",
    )
    compile_group.add_argument(
        "--no-compile",
        dest="compile_rows",
        action="store_const",
        const=False,
        help="leave out the torch.compile rows",
    )
    parser.add_argument(
        "--case",
        type=Path,
        metavar="DIR",
        help="case folder with t1, t1ce, t2, flair images for the end-to-end time "
        "(default: the real case ../shared/data/real/TCGA-FG-6692 beside the repository)",
    )
    parser.add_argument(
        "--model",
        type=Path,
        metavar="FILE",
        help="checkpoint for the end-to-end time (default: a random-weight full-size EoFormer)",
    )
    parser.add_argument(
        "--end-to-end-runs",
        type=positive_int,
        metavar="N",
        help="whole-case runs, the first cold (default 2 on CPU, 4 on CUDA)",
    )
    parser.add_argument(
        "--skip-end-to-end",
        action="store_true",
        help="do not segment a whole case",
    )
    parser.add_argument(
        "--fine-grid",
        type=positive_float,
        default=0.5,
        metavar="MM",
        help="also segment the case resampled to MM mm (peak memory on fine native grids; "
        "default 0.5)",
    )
    parser.add_argument(
        "--skip-fine-grid", action="store_true", help="leave out the fine-grid whole case"
    )
    parser.add_argument(
        "--raw-case",
        type=Path,
        metavar="DIR",
        help="also segment this case of raw clinical scans (skull on, thick slices, "
        "sequences on their own grids) once in a fresh process: brain extraction and "
        "registration included (for instance a case made by tools/simulate_raw_cases.py)",
    )
    parser.add_argument(
        "--cohort-cases",
        type=non_negative_int,
        default=6,
        metavar="N",
        help="segment a cohort of N copies of the case for cases per hour, with --threads "
        "threads and with all cores (default 6; 0 leaves it out)",
    )
    parser.add_argument(
        "--skip-contention",
        action="store_true",
        help="on CPU, do not time the fused EoFormer and SegResNet again with one core busy",
    )
    parser.add_argument(
        "--in-process",
        action="store_true",
        help="measure every row in this process instead of a fresh one per row (faster, "
        "but allocator caches make CPU memory figures less reliable)",
    )
    parser.add_argument("--json", type=Path, metavar="OUT", help="also write the results as JSON")
    parser.add_argument("--markdown", action="store_true", help="print a Markdown table")
    parser.add_argument("--quiet", action="store_true", help="no progress messages")


def run(args: argparse.Namespace) -> int:
    """Run the benchmark, print the table, write the JSON."""
    import torch

    from EoFormerSegmentationLib.benchmark import format_table, run_benchmark

    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    if device == "cuda" and not torch.cuda.is_available():
        raise InputError("--device cuda: PyTorch sees no CUDA GPU on this machine")
    if args.window < 32 or args.window % 32:
        raise InputError(f"--window {args.window}: use a multiple of 32 voxels (e.g. 128)")
    if args.threads < 1:
        raise InputError(f"--threads {args.threads}: give at least 1")
    if args.case is not None and not args.case.is_dir():
        raise InputError(f"--case {args.case}: not a folder")
    if args.raw_case is not None and not args.raw_case.is_dir():
        raise InputError(f"--raw-case {args.raw_case}: not a folder")
    if args.model is not None and not args.model.is_file():
        raise InputError(f"--model {args.model}: file not found")
    check_model_file(args.model)
    if args.json is not None:
        check_output_file(args.json, "--json")

    def progress(fraction: float, message: str) -> None:
        if not args.quiet:
            print(f"[{fraction:4.0%}] {message}", file=sys.stderr, flush=True)

    result = run_benchmark(
        device=device,
        networks=args.models,
        window=args.window,
        threads=args.threads,
        warmup=args.warmup,
        repeats=args.repeats,
        time_budget_s=args.time_budget,
        compile_rows=args.compile_rows,
        end_to_end=not args.skip_end_to_end,
        case_dir=args.case,
        model_path=args.model,
        end_to_end_runs=args.end_to_end_runs,
        isolate=False if args.in_process else None,
        progress=progress,
        contention=False if args.skip_contention else None,
        fine_grid_mm=None if args.skip_fine_grid else args.fine_grid,
        throughput_cases=args.cohort_cases,
        raw_case_dir=args.raw_case,
    )
    print(format_table(result, markdown=args.markdown), end="")
    if args.json is not None:
        result.write_json(args.json)
        if not args.quiet:
            print(f"results written to {args.json}", file=sys.stderr)
    failed = any(row.error for row in result.rows) or any(
        run.error for run in [result.end_to_end, *result.whole_cases, *result.throughput] if run
    )
    return 1 if failed else 0
