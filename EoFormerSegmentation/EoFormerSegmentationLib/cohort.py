"""Segmenting a cohort: every case under a folder, with one model, resumable, sharded.

Steps, in each process:

1. load the model once;
2. find the cases under the folder (:func:`discover_cohort`): case folders in every layout that
   training recognises (BraTS 2020/2021, BraTS 2023, plain, folders written by the Slicer
   module; labels not needed) and DICOM study folders whose four series are matched to the
   sequences by their description
   (:func:`~EoFormerSegmentationLib.dicom_study.sequence_from_description`);
3. take this process's share: with ``torchrun`` (or ``RANK`` / ``WORLD_SIZE`` in the
   environment) process ``r`` of ``w`` takes cases ``r, r + w, r + 2w...`` of the sorted list;
4. skip the cases whose result and record exist already, made by the same model (resume);
5. read the next cases in DataLoader worker processes while the network runs, segment each
   with :func:`~EoFormerSegmentationLib.engine.segment_images`, and write its result and its
   record (``<case>.json``: volumes in mL, model, device, seconds, warnings or error) in a
   writer thread, atomically. A case that fails is recorded with its error; the run goes on;
6. write ``volumes.csv`` (one row per case, in case order) once every case has its record:
   rank 0 after the others finished (``torchrun``), or whichever shard finishes last when the
   shards run as independent jobs (a SLURM array).
"""

from __future__ import annotations

import concurrent.futures
import csv
import io
import json
import os
import time
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any, Callable, Dict, Iterator, List, Mapping, Optional, Sequence, Tuple, Union

from EoFormerSegmentationLib.dicom_study import is_dicom_study, match_dicom_series, sub_folders
from EoFormerSegmentationLib.errors import Cancelled, InputError
from EoFormerSegmentationLib.files import atomic_write, check_creatable_folder

__all__ = [
    "OUTPUT_FORMATS",
    "CSV_NAME",
    "CSV_COLUMNS",
    "CohortCase",
    "CohortSummary",
    "discover_cohort",
    "read_cohort_case",
    "shard",
    "segment_cohort",
]

PathLike = Union[str, "os.PathLike[str]"]

OUTPUT_FORMATS = ("seg.nrrd", "nii.gz")
"""Result formats: a Slicer segmentation (three overlapping segments) or a BraTS label map."""

CSV_NAME = "volumes.csv"
CSV_COLUMNS = (
    "case",
    "status",
    "WT_mL",
    "TC_mL",
    "ET_mL",
    "output",
    "model",
    "sha256",
    "device",
    "seconds",
    "warnings",
    "error",
)
"""Columns of ``volumes.csv``; ``status`` is ``done``, ``failed`` or ``missing``."""

_RECORD_FORMAT = "eoformer-cohort-case"
_GROUP_TIMEOUT = timedelta(days=7)  # the shards of a large cohort may finish hours apart


# --------------------------------------------------------------------------- cases
@dataclass(frozen=True)
class CohortCase:
    """One case of a cohort, as found on disk.

    Attributes:
        case_id: the case folder's path below the cohort folder (``site1/case007``, with
            ``/``), or its name when the cohort folder is the case; the result is written to
            ``<out>/<case_id>.<format>``.
        folder: the case folder.
        images: sequence (``t1``, ``t1ce``, ``t2``, ``flair``) -> image file; empty for a
            DICOM study, whose series are matched when the case is read.
        dicom: the folder is a DICOM study.
        problem: why the case cannot be segmented (an incomplete case folder), found while
            discovering; the case is then recorded as failed without being read.
    """

    case_id: str
    folder: Path
    images: Dict[str, Path] = field(default_factory=dict)
    dicom: bool = False
    problem: Optional[str] = None


def discover_cohort(folder: PathLike, exclude: Sequence[PathLike] = ()) -> List[CohortCase]:
    """Every case under ``folder``, sorted by case id.

    A case is a folder holding sequence files in one of the layouts of
    :mod:`~EoFormerSegmentationLib.training.datasets` (labels are not needed), or a DICOM
    study: a folder holding DICOM files of several series, directly or one series per
    sub-folder. Case folders are looked for down to
    :data:`~EoFormerSegmentationLib.training.datasets.MAX_SEARCH_DEPTH` levels below
    ``folder``; hidden folders and ``exclude`` (the output folder) are not searched. An
    incomplete case folder is returned with its ``problem`` rather than stopping the search.

    Args:
        folder: the cohort folder (or a single case folder).
        exclude: folders not to search.

    Returns:
        The cases.

    Raises:
        InputError: ``folder`` does not exist or holds no recognisable case.
    """
    from EoFormerSegmentationLib.training.datasets import (
        MAX_SEARCH_DEPTH,
        find_case_files,
        is_case_folder,
    )

    root = Path(folder)
    if not root.is_dir():
        raise InputError(f"--cases {root}: the folder does not exist")
    excluded = {Path(path).resolve() for path in exclude}
    cases: List[CohortCase] = []

    def case_id(path: Path) -> str:
        relative = path.relative_to(root).as_posix()
        return path.resolve().name if relative == "." else relative

    def walk(path: Path, depth: int) -> None:
        if path.resolve() in excluded:
            return
        if is_case_folder(path):
            try:
                files = find_case_files(path, require_label=False)
            except InputError as error:
                cases.append(CohortCase(case_id(path), path, problem=str(error)))
            else:
                cases.append(CohortCase(case_id(path), path, images=dict(files.images)))
            return
        if is_dicom_study(path):
            cases.append(CohortCase(case_id(path), path, dicom=True))
            return
        if depth > 0:
            for child in sub_folders(path):
                walk(child, depth - 1)

    walk(root, MAX_SEARCH_DEPTH)
    if not cases:
        raise InputError(
            f"--cases {root}: no recognisable cases (a case is a folder with T1, T1ce, T2 and "
            "FLAIR images named <case>_t1/_t1ce/_t2/_flair (BraTS 2020/2021), "
            "<case>-t1n/-t1c/-t2w/-t2f (BraTS 2023) or t1/t1ce/t2/flair, or a DICOM study "
            "folder with their four series)"
        )
    return sorted(cases, key=lambda case: case.case_id)


def read_cohort_case(case: CohortCase) -> Dict[str, Any]:
    """Read and check the four sequences of a case.

    Returns:
        Sequence -> ``float32`` SimpleITK image (see
        :func:`~EoFormerSegmentationLib.volumes.read_sequences`).

    Raises:
        InputError: the case is incomplete, its series cannot be matched, or an image is bad.
    """
    from EoFormerSegmentationLib.volumes import read_sequences

    if case.problem:
        raise InputError(case.problem)
    if case.dicom:
        matched = match_dicom_series(case.folder)
        return read_sequences(
            {key: item.folder for key, item in matched.items()},
            series={key: item.uid for key, item in matched.items()},
        )
    return read_sequences(case.images)


# --------------------------------------------------------------------------- sharding
def shard(cases: Sequence[CohortCase], rank: int, world_size: int) -> List[CohortCase]:
    """The cases of process ``rank`` among ``world_size``: every ``world_size``-th, from ``rank``.

    Every case belongs to exactly one process; the split depends only on the sorted case list.
    """
    if world_size < 1 or not 0 <= rank < world_size:
        raise InputError(f"process {rank} of {world_size}: expected 0 <= RANK < WORLD_SIZE")
    return list(cases[rank::world_size])


def _environment_rank() -> Tuple[int, int, int]:
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    return rank, world_size, local_rank


# --------------------------------------------------------------------------- records
def _result_path(out: Path, case: CohortCase, output_format: str) -> Path:
    return out / f"{case.case_id}.{output_format}"


def _record_path(out: Path, case: CohortCase) -> Path:
    return out / f"{case.case_id}.json"


def _read_record(out: Path, case: CohortCase) -> Optional[Dict[str, Any]]:
    try:
        record = json.loads(_record_path(out, case).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(record, dict) or record.get("format") != _RECORD_FORMAT:
        return None
    return record


def _is_done(out: Path, case: CohortCase, output_format: str, model_hashes: Sequence[str]) -> bool:
    """The case's result exists, with its record, made by this model (or its raw-scan model)."""
    record = _read_record(out, case)
    return (
        record is not None
        and record.get("status") == "done"
        and record.get("model", {}).get("sha256") in model_hashes
        and record.get("output") == _result_path(out, case, output_format).name
        and _result_path(out, case, output_format).is_file()
    )


def _write_record(out: Path, case: CohortCase, record: Dict[str, Any]) -> None:
    with atomic_write(_record_path(out, case)) as temporary:
        temporary.write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")


def _failure_record(case: CohortCase, error: BaseException, loaded: Any, seconds: float) -> dict:
    message = str(error) if isinstance(error, InputError) else f"{type(error).__name__}: {error}"
    return {
        "format": _RECORD_FORMAT,
        "case": case.case_id,
        "folder": str(case.folder),
        "status": "failed",
        "error": " ".join(message.split()),
        "model": {"name": loaded.name, "sha256": loaded.sha256},
        "seconds": round(seconds, 3),
    }


def _csv_row(case: CohortCase, record: Optional[Dict[str, Any]]) -> Dict[str, str]:
    if record is None:
        return {"case": case.case_id, "status": "missing", "error": "no result was recorded"}
    volumes = record.get("volumes_ml") or {}
    model = record.get("model") or {}
    return {
        "case": case.case_id,
        "status": str(record.get("status", "")),
        **{
            f"{region}_mL": f"{volumes[region]:.3f}"
            for region in ("WT", "TC", "ET")
            if region in volumes
        },
        "output": str(record.get("output") or ""),
        "model": str(model.get("name", "")),
        "sha256": str(model.get("sha256", "")),
        "device": str(record.get("device", "")),
        "seconds": f"{float(record.get('seconds', 0.0)):.2f}",
        "warnings": "; ".join(record.get("notes") or []),
        "error": str(record.get("error") or ""),
    }


def _write_csv(out: Path, cases: Sequence[CohortCase]) -> List[Dict[str, str]]:
    rows = [_csv_row(case, _read_record(out, case)) for case in cases]
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=CSV_COLUMNS, restval="", lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    with atomic_write(out / CSV_NAME) as temporary:
        temporary.write_text(buffer.getvalue(), encoding="utf-8")
    return rows


# --------------------------------------------------------------------------- reading ahead
class _CaseReader:
    """A map-style dataset: item ``i`` is case ``i`` read from disk, or the reason it failed."""

    def __init__(self, cases: Sequence[CohortCase]):
        self.cases = list(cases)

    def __len__(self) -> int:
        return len(self.cases)

    def __getitem__(self, index: int) -> Dict[str, Any]:
        started = time.perf_counter()
        item: Dict[str, Any] = {"index": index, "images": None, "error": None}
        try:
            item["images"] = read_cohort_case(self.cases[index])
        except Exception as error:  # recorded as the case's failure; the run goes on
            item["error"] = error
        item["read_s"] = time.perf_counter() - started
        return item


def _single(batch: List[Dict[str, Any]]) -> Dict[str, Any]:
    return batch[0]


def _read_ahead(cases: Sequence[CohortCase], workers: int) -> Iterator[Dict[str, Any]]:
    """The cases read in ``workers`` processes, up to two cases per worker ahead of their use."""
    from torch.utils.data import DataLoader

    loader = DataLoader(
        _CaseReader(cases),  # type: ignore[arg-type]
        batch_size=1,
        shuffle=False,
        num_workers=workers,
        collate_fn=_single,
        prefetch_factor=2 if workers > 0 else None,
    )
    return iter(loader)


# --------------------------------------------------------------------------- the run
@dataclass
class CohortSummary:
    """What a cohort run did.

    Attributes:
        cases: cases found under the cohort folder (all processes together).
        share: this process's cases.
        segmented: cases this process segmented now.
        skipped: cases of this process whose result existed already (resume).
        failed: cases of this process that failed now, as ``(case id, error)``.
        csv: ``volumes.csv``, when this process wrote it.
        failed_total: failed cases in ``volumes.csv`` (all processes), when it was written.
        seconds: wall-clock time of this process's run, s.
        rank: this process's rank; ``world_size``: the number of processes.
        model_name, model_sha256: the model.
        raw_scan_model: name and sha256 of its companion for raw scans, when it has one.
    """

    cases: int
    share: int
    segmented: int = 0
    skipped: int = 0
    failed: List[Tuple[str, str]] = field(default_factory=list)
    csv: Optional[Path] = None
    failed_total: Optional[int] = None
    seconds: float = 0.0
    rank: int = 0
    world_size: int = 1
    model_name: str = ""
    model_sha256: str = ""
    raw_scan_model: Optional[Dict[str, str]] = None

    @property
    def model_hashes(self) -> List[str]:
        """SHA-256 of the model and of its raw-scan companion: the files a result may come from."""
        companion = (self.raw_scan_model or {}).get("sha256")
        return [self.model_sha256] + ([companion] if companion else [])

    @property
    def any_failed(self) -> bool:
        """True when a case failed (in ``volumes.csv`` when written, else in this share)."""
        return bool(self.failed) or bool(self.failed_total)

    @property
    def cases_per_hour(self) -> Optional[float]:
        """Cases segmented per hour of wall-clock time by this process."""
        if not self.segmented or self.seconds <= 0:
            return None
        return self.segmented * 3600.0 / self.seconds

    def report(self) -> Dict[str, Any]:
        """JSON-serialisable form."""
        return {
            "cases": self.cases,
            "process": {"rank": self.rank, "world_size": self.world_size, "cases": self.share},
            "segmented": self.segmented,
            "skipped": self.skipped,
            "failed": [{"case": case, "error": error} for case, error in self.failed],
            "failed_total": self.failed_total,
            "csv": str(self.csv) if self.csv else None,
            "seconds": round(self.seconds, 3),
            "cases_per_hour": round(self.cases_per_hour, 2) if self.cases_per_hour else None,
            "model": {
                "name": self.model_name,
                "sha256": self.model_sha256,
                **({"raw_scan_model": self.raw_scan_model} if self.raw_scan_model else {}),
            },
        }


CaseProgress = Optional[Callable[[int, int, Dict[str, Any]], None]]


def _start_process_group(world_size: int) -> bool:
    """Join the ``torchrun`` process group (gloo: only barriers are needed) when launched so."""
    import torch.distributed as dist

    if world_size <= 1 or not dist.is_available() or dist.is_initialized():
        return False
    if "MASTER_ADDR" not in os.environ:  # independent shards (a SLURM array): no group
        return False
    dist.init_process_group(backend="gloo", timeout=_GROUP_TIMEOUT)
    return True


def _device_for(device: str, world_size: int, local_rank: int) -> str:
    """One GPU per process: ``cuda:<LOCAL_RANK>`` for ``auto`` / ``cuda`` with several processes."""
    import torch

    request = (device or "auto").lower()
    if world_size > 1 and request in ("auto", "cuda", "gpu") and torch.cuda.is_available():
        index = local_rank % torch.cuda.device_count()
        torch.cuda.set_device(index)  # brain extraction's "cuda" is this GPU too
        return f"cuda:{index}"
    return device


def segment_cohort(
    cases_folder: PathLike,
    out: PathLike,
    *,
    model_path: Optional[PathLike] = None,
    output_format: str = "seg.nrrd",
    skip_existing: bool = True,
    device: str = "auto",
    tta: bool = False,
    register: str = "auto",
    skull_strip: str = "auto",
    raw_scan_model: str = "auto",
    label_convention: str = "brats2020",
    overlap: float = 0.5,
    sw_batch_size: Optional[int] = None,
    inference: str = "auto",
    workers: int = 1,
    rank: Optional[int] = None,
    world_size: Optional[int] = None,
    progress: CaseProgress = None,
    on_start: Optional[Callable[[int, int, int], None]] = None,
) -> CohortSummary:
    """Segment every case under ``cases_folder`` into ``out`` (this process's share).

    Writes ``<out>/<case>.<format>`` and ``<out>/<case>.json`` (its record: volumes in mL,
    model, device, seconds, warnings or error) per case, atomically, and ``<out>/volumes.csv``
    once every case has its record. See the module's docstring for the steps.

    Args:
        cases_folder: the cohort folder (see :func:`discover_cohort`).
        out: the output folder (created); it may lie inside ``cases_folder``.
        model_path: checkpoint; the bundled model when ``None``.
        output_format: ``seg.nrrd`` (Slicer segmentation) or ``nii.gz`` (BraTS label map in
            ``label_convention``).
        skip_existing: keep the results that exist with their record and were made by this
            model (an interrupted run goes on where it stopped); when False every case of the
            share is segmented again and its result replaced.
        device: ``auto``, ``cpu`` or ``cuda``; with several processes on a machine with GPUs,
            process ``LOCAL_RANK`` uses GPU ``LOCAL_RANK``.
        register, skull_strip, raw_scan_model, tta, label_convention, overlap, sw_batch_size,
            inference: as in :func:`~EoFormerSegmentationLib.engine.segment_images`.
        workers: processes reading the next cases while the network runs (0: read in this
            process, between cases).
        rank, world_size: this process's share; from ``RANK`` / ``WORLD_SIZE`` (set by
            ``torchrun``) when ``None``.
        progress: called after each case with (cases done, cases to do, the case's record).
        on_start: called once the cases are known, with (cases in the cohort, cases of this
            process, of which already done).

    Returns:
        The :class:`CohortSummary`.

    Raises:
        InputError: bad arguments, a missing or unusable model, a cohort folder without
            cases, an output folder that cannot be written (before any case is read).
    """
    from EoFormerSegmentationLib.engine import segment_images, write_result
    from EoFormerSegmentationLib.inference import check_inference_mode
    from EoFormerSegmentationLib.models import default_model_path, load_checkpoint

    started = time.perf_counter()
    if output_format not in OUTPUT_FORMATS:
        raise InputError(f"--format {output_format}: expected one of {', '.join(OUTPUT_FORMATS)}")
    check_inference_mode(inference)
    if workers < 0:
        raise InputError(f"--workers {workers}: expected 0 or more")
    environment_rank, environment_world, local_rank = _environment_rank()
    rank = environment_rank if rank is None else rank
    world_size = environment_world if world_size is None else world_size
    out = Path(out)
    check_creatable_folder(out, f"--out {out}")
    if model_path is None:
        model_path = default_model_path()
        if model_path is None:
            raise InputError("no model given (--model) and no bundled model is installed")
    loaded = load_checkpoint(model_path)
    cases = discover_cohort(cases_folder, exclude=[out])
    mine = shard(cases, rank, world_size)
    group = _start_process_group(world_size)
    try:
        summary = CohortSummary(
            cases=len(cases),
            share=len(mine),
            rank=rank,
            world_size=world_size,
            model_name=loaded.name,
            model_sha256=loaded.sha256,
            raw_scan_model=(
                {"name": loaded.raw_scan_model.name, "sha256": loaded.raw_scan_model.sha256}
                if loaded.raw_scan_model is not None and raw_scan_model == "auto"
                else None
            ),
        )
        out.mkdir(parents=True, exist_ok=True)
        to_do = [
            case
            for case in mine
            if not (skip_existing and _is_done(out, case, output_format, summary.model_hashes))
        ]
        summary.skipped = len(mine) - len(to_do)
        if on_start is not None:
            on_start(len(cases), len(mine), summary.skipped)
        settings = {
            "device": device,
            "tta": tta,
            "register": register,
            "skull_strip": skull_strip,
            "raw_scan_model": raw_scan_model,
            "label_convention": label_convention,
            "overlap": overlap,
            "sw_batch_size": sw_batch_size,
            "inference": inference,
        }
        _segment_share(
            to_do,
            out,
            output_format,
            loaded,
            settings,
            workers,
            local_rank,
            summary,
            progress,
            segment_images,
            write_result,
        )
        _merge(out, cases, summary, group)
    finally:
        if group:
            import torch.distributed as dist

            dist.destroy_process_group()
    summary.seconds = time.perf_counter() - started
    return summary


def _segment_share(
    to_do: Sequence[CohortCase],
    out: Path,
    output_format: str,
    loaded: Any,
    settings: Mapping[str, Any],
    workers: int,
    local_rank: int,
    summary: CohortSummary,
    progress: CaseProgress,
    segment_images: Callable[..., Any],
    write_result: Callable[..., Any],
) -> None:
    """Segment ``to_do``: read ahead in workers, network here, writes in a thread.

    Results and records are written, and ``progress`` is called, in one writer thread, in case
    order, each case as soon as its files are written; at most one write waits at a time.
    """
    if not to_do:
        return
    items = _read_ahead(to_do, workers)  # workers start before CUDA is initialised here
    device = _device_for(str(settings["device"]), summary.world_size, local_rank)
    options = {name: value for name, value in settings.items() if name != "device"}
    done = 0
    process = {"rank": summary.rank, "world_size": summary.world_size}

    def finish(record: Dict[str, Any]) -> None:
        nonlocal done
        done += 1
        if record["status"] == "done":
            summary.segmented += 1
        else:
            summary.failed.append((record["case"], record["error"]))
        if progress is not None:
            progress(done, len(to_do), record)

    def record_failure(case: CohortCase, error: BaseException, seconds: float) -> None:
        record = _failure_record(case, error, loaded, seconds)
        record["process"] = process
        _write_record(out, case, record)
        finish(record)

    def write(case: CohortCase, result: Any, seconds_before: float) -> None:
        write_started = time.perf_counter()
        try:
            write_result(result, _result_path(out, case, output_format), overwrite=True)
            report = result.report()
            record = {
                "format": _RECORD_FORMAT,
                "case": case.case_id,
                "folder": str(case.folder),
                "status": "done",
                **report,
                "output": result.output.name,
                "seconds": round(seconds_before + time.perf_counter() - write_started, 3),
            }
        except Exception as error:  # a full disk, a read-only folder: recorded, run goes on
            record = _failure_record(
                case, error, loaded, seconds_before + time.perf_counter() - write_started
            )
        record["process"] = process
        _write_record(out, case, record)
        finish(record)

    with concurrent.futures.ThreadPoolExecutor(max_workers=1) as writer:
        pending: Optional[concurrent.futures.Future] = None
        for item in items:
            case = to_do[item["index"]]
            seconds = float(item["read_s"])
            result = None
            if item["error"] is None:
                network_started = time.perf_counter()
                try:
                    result = segment_images(
                        item["images"],
                        loaded,
                        device=device,
                        **options,
                    )
                    result.timings_s = {"read": seconds, **result.timings_s}
                except Cancelled:
                    raise
                except Exception as error:  # a bad case must not stop the cohort
                    item["error"] = error
                seconds += time.perf_counter() - network_started
            del item["images"]
            if pending is not None:
                pending.result()  # raises what the writer raised (a record it could not write)
            if result is None:
                pending = writer.submit(record_failure, case, item["error"], seconds)
            else:
                pending = writer.submit(write, case, result, seconds)
        if pending is not None:
            pending.result()


def _merge(out: Path, cases: Sequence[CohortCase], summary: CohortSummary, group: bool) -> None:
    """Write ``volumes.csv`` when every case has its record.

    In a ``torchrun`` group, rank 0 writes it once every rank has finished its share, and tells
    every rank how many cases failed: all ranks then end together with the same exit status
    (``torchrun`` stops the other processes as soon as one ends with an error).
    """
    if group:
        import torch.distributed as dist

        dist.barrier()
        failed_total: List[Optional[int]] = [None]
        if summary.rank == 0:
            rows = _write_csv(out, cases)
            summary.csv = out / CSV_NAME
            failed_total[0] = sum(1 for row in rows if row["status"] != "done")
        dist.broadcast_object_list(failed_total, src=0)
        summary.failed_total = failed_total[0]
        return
    if summary.world_size > 1 and not all(
        (_read_record(out, case) or {}).get("model", {}).get("sha256") in summary.model_hashes
        for case in cases
    ):
        return  # independent shards: the last one to finish writes the table
    rows = _write_csv(out, cases)
    summary.csv = out / CSV_NAME
    summary.failed_total = sum(1 for row in rows if row["status"] != "done")
