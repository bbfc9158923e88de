"""``eoformer synth``: write synthetic glioma cases in the BraTS layout.

Example::

    eoformer synth --out ~/data/synthetic --cases 200 --seed 1000 --workers 8

Case ``i`` (0-based) is generated from seed ``S + i`` and written to
``<out>/synthetic-<seed>/synthetic-<seed>_{t1,t1ce,t2,flair,seg}.nii.gz`` (1 mm, RAS,
skull-stripped, BraTS 2020 labels 0/1/2/4). The output is the same whatever ``--workers`` is.
A ``dataset.json`` beside the cases records the generator version, the seeds and the counts.
Existing case folders are never overwritten. Needs the ``[train]`` extra (nilearn, whose
package holds the brain template): ``pip install 'eoformer-segmentation[train]'``.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import json
import multiprocessing
from pathlib import Path
from typing import Dict, List, Tuple

from EoFormerSegmentationLib.cli.options import non_negative_int, positive_int
from EoFormerSegmentationLib.errors import InputError
from EoFormerSegmentationLib.files import atomic_write, check_creatable_folder

__all__ = ["add_arguments", "run", "case_name", "case_seeds"]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``eoformer synth``."""
    parser.add_argument("--out", required=True, metavar="DIR", help="dataset folder to write")
    parser.add_argument(
        "--cases", required=True, type=positive_int, metavar="N", help="number of cases"
    )
    parser.add_argument(
        "--seed",
        type=non_negative_int,
        default=0,
        metavar="S",
        help="seed of the first case (default 0)",
    )
    parser.add_argument(
        "--workers",
        type=positive_int,
        default=1,
        metavar="K",
        help="processes generating cases in parallel (default 1)",
    )


def case_name(seed: int) -> str:
    """Folder name and file prefix of the synthetic case generated from ``seed``."""
    return f"synthetic-{int(seed)}"


def case_seeds(first_seed: int, count: int) -> List[int]:
    """Seeds of the ``count`` cases of a dataset whose first seed is ``first_seed``."""
    return [int(first_seed) + index for index in range(int(count))]


def _generate_and_write(job: Tuple[int, str]) -> Dict[str, object]:
    from EoFormerSegmentationLib.synthetic import generate_case, write_case

    seed, out_dir = job
    case = generate_case(seed)
    write_case(case, Path(out_dir), case_name(seed))
    return {
        "case": case_name(seed),
        "seed": seed,
        "kind": case.params.get("tumor", {}).get("kind"),
        "volumes_ml": case.params.get("volumes_ml"),
    }


def run(args: argparse.Namespace) -> int:
    """Generate the cases; returns the exit status (0)."""
    if args.cases < 1:
        raise InputError(f"--cases must be at least 1 (got {args.cases})")
    if args.seed < 0:
        raise InputError(f"--seed must not be negative (got {args.seed})")
    if args.workers < 1:
        raise InputError(f"--workers must be at least 1 (got {args.workers})")
    if importlib.util.find_spec("nilearn") is None:
        raise InputError(
            "eoformer synth needs the brain template of the 'nilearn' package, which is not "
            "installed: pip install 'eoformer-segmentation[train]'"
        )
    out_dir = Path(args.out)
    if out_dir.exists() and not out_dir.is_dir():
        raise InputError(f"--out {out_dir} exists and is not a folder")
    check_creatable_folder(out_dir, f"--out {out_dir}")
    seeds = case_seeds(args.seed, args.cases)
    existing = [case_name(s) for s in seeds if (out_dir / case_name(s)).exists()]
    if existing:
        shown = ", ".join(existing[:3]) + (" ..." if len(existing) > 3 else "")
        raise InputError(
            f"{out_dir}: {len(existing)} case folder(s) already exist ({shown}); "
            "choose another --out or --seed (existing cases are never overwritten)"
        )
    created = [folder for folder in (out_dir, *out_dir.parents) if not folder.exists()]
    out_dir.mkdir(parents=True, exist_ok=True)
    try:
        return _write_dataset(out_dir, seeds, args.workers)
    except BaseException:
        for folder in created:  # a failed run leaves no empty folder behind
            with contextlib.suppress(OSError):
                folder.rmdir()
        raise


def _write_dataset(out_dir: Path, seeds: List[int], workers: int) -> int:
    from tqdm import tqdm

    from EoFormerSegmentationLib.synthetic import GENERATOR_VERSION

    jobs = [(seed, str(out_dir)) for seed in seeds]
    progress = tqdm(total=len(jobs), unit="case", desc="synth")
    if workers == 1:
        records = []
        for job in jobs:
            records.append(_generate_and_write(job))
            progress.update()
    else:
        context = multiprocessing.get_context("spawn")
        with context.Pool(min(workers, len(jobs))) as pool:
            records = []
            for record in pool.imap(_generate_and_write, jobs):
                records.append(record)
                progress.update()
    progress.close()

    description = {
        "name": "EoFormer synthetic glioma cases",
        "generator": "EoFormerSegmentationLib.synthetic",
        "generator_version": GENERATOR_VERSION,
        "first_seed": seeds[0],
        "seeds": seeds,
        "count": len(records),
        "kinds": {
            kind: sum(r["kind"] == kind for r in records)
            for kind in sorted({str(r["kind"]) for r in records})
        },
        "layout": "BraTS 2020: <case>/<case>_{t1,t1ce,t2,flair,seg}.nii.gz, 1 mm RAS, "
        "labels 0 background, 1 NCR, 2 ED, 4 ET",
        "cases": records,
    }
    dataset_file = out_dir / "dataset.json"
    if dataset_file.exists():  # a folder extended with new seeds: keep one file per run
        dataset_file = out_dir / f"dataset-{seeds[0]}-{seeds[-1]}.json"
    with atomic_write(dataset_file) as temporary:
        temporary.write_text(json.dumps(description, indent=2) + "\n", encoding="utf-8")
    print(f"wrote {len(records)} cases to {out_dir} ({dataset_file.name})")
    return 0
