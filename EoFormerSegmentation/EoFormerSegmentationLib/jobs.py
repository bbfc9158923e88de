"""The processing server's jobs: a bounded queue, one worker, states, progress and clean-up.

A job is four uploaded sequences in a private folder plus its :class:`JobOptions`. One worker
thread runs the jobs in the order they came, each with the same engine call as ``eoformer
segment`` (:func:`~EoFormerSegmentationLib.engine.segment_files`), reporting the engine's
progress and polling its cancel request. A job's folder is deleted when its result was
downloaded, when it failed or was cancelled, or ``result_timeout_s`` after it finished.

Nothing here knows about HTTP (that is :mod:`~EoFormerSegmentationLib.server`), so the queue is
tested and used without a web framework. Logs name jobs by their random id only: never a file
name (uploaded names may hold a patient's name) nor any image content.
"""

from __future__ import annotations

import collections
import json
import logging
import math
import os
import secrets
import shutil
import tempfile
import threading
import time
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Deque, Dict, Mapping, Optional

from EoFormerSegmentationLib.errors import Cancelled, InputError

__all__ = [
    "JOB_STATES",
    "FINISHED_STATES",
    "IMAGE_SUFFIXES",
    "OUTPUT_FORMATS",
    "JobOptions",
    "Job",
    "QueueFull",
    "JobQueue",
    "RunJob",
    "engine_job_runner",
    "check_job_inputs",
    "public_message",
    "image_suffix",
]

LOG = logging.getLogger("eoformer.serve")

JOB_STATES = ("queued", "running", "done", "failed", "cancelled")
"""Every state of a job, in the order a successful job goes through them."""
FINISHED_STATES = ("done", "failed", "cancelled")

IMAGE_SUFFIXES = (".nii.gz", ".nii", ".nrrd", ".mha")
"""Single-file image formats an upload may have (the engine reads each of them)."""

OUTPUT_FORMATS = ("seg.nrrd", "nii.gz")
"""``seg.nrrd``: Slicer segmentation (three overlapping segments); ``nii.gz``: label map."""

ProgressCallback = Callable[[float, str], None]
RunJob = Callable[["Job", ProgressCallback, Callable[[], bool]], Path]
"""Runs one job: ``(job, progress, should_cancel) -> the result archive`` in ``job.folder``."""

_TRUE = ("1", "true", "yes", "on")
_FALSE = ("0", "false", "no", "off", "")


def _flag(name: str, text: str) -> bool:
    value = text.strip().lower()
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise InputError(f"{name}={text!r}: expected true or false")


def _choice(name: str, text: str, choices) -> str:
    if text not in choices:
        raise InputError(f"{name}={text!r}: expected one of {', '.join(choices)}")
    return text


@dataclass(frozen=True)
class JobOptions:
    """How one job is segmented (the options of ``eoformer segment`` a client may choose).

    Args:
        tta: test-time augmentation, 8 flips averaged (8 times slower).
        label_convention: ``brats2020`` (ET = 4) or ``brats2023`` (ET = 3), for a label map.
        register: co-registration of T1, T2 and FLAIR to the T1ce: ``auto``, ``on``, ``off``.
        skull_strip: brain extraction: ``auto``, ``on``, ``off``.
        output_format: ``seg.nrrd`` (Slicer segmentation) or ``nii.gz`` (BraTS label map).
        uncertainty: also return the uncertainty map (``uncertainty.nii.gz``, bits 0-1).
        inference: ``window`` (overlapping 128³ windows) or ``whole``.
    """

    tta: bool = False
    label_convention: str = "brats2020"
    register: str = "auto"
    skull_strip: str = "auto"
    output_format: str = "seg.nrrd"
    uncertainty: bool = False
    inference: str = "window"

    @classmethod
    def from_fields(cls, fields: Mapping[str, str]) -> JobOptions:
        """Options from the text fields of an upload; unknown fields are refused.

        Raises:
            InputError: an unknown field or a value out of its choices, named.
        """
        from EoFormerSegmentationLib.brain_extraction import SKULL_STRIP_MODES
        from EoFormerSegmentationLib.labels import CONVENTIONS
        from EoFormerSegmentationLib.registration import REGISTER_MODES

        known = set(cls.__dataclass_fields__)
        unknown = sorted(set(fields) - known)
        if unknown:
            raise InputError(
                f"unknown field(s) {', '.join(unknown)}; options are {', '.join(sorted(known))}"
            )
        values: Dict[str, object] = {}
        for name in ("tta", "uncertainty"):
            if name in fields:
                values[name] = _flag(name, fields[name])
        choices = {
            "label_convention": CONVENTIONS,
            "register": REGISTER_MODES,
            "skull_strip": SKULL_STRIP_MODES,
            "output_format": OUTPUT_FORMATS,
            "inference": ("window", "whole"),
        }
        for name, allowed in choices.items():
            if name in fields:
                values[name] = _choice(name, fields[name], tuple(allowed))
        return cls(**values)

    def to_json(self) -> Dict[str, object]:
        """The options as a JSON object."""
        return {name: getattr(self, name) for name in self.__dataclass_fields__}


def image_suffix(file_name: str) -> str:
    """The image suffix of an uploaded file's name (lower case), used for the saved file.

    Only the suffix of the client's name is kept: the file is saved as ``<sequence><suffix>``
    in the job's folder, so that no client-chosen name or path reaches the file system.

    Raises:
        InputError: a suffix the server does not take.
    """
    lowered = file_name.lower()
    for suffix in IMAGE_SUFFIXES:
        if lowered.endswith(suffix):
            return suffix
    raise InputError(
        f"an uploaded file's name must end with one of {', '.join(IMAGE_SUFFIXES)} "
        "(the suffix tells its format)"
    )


def public_message(message: str, folder: Path) -> str:
    """``message`` with the job folder's path taken out (clients never see server paths)."""
    return message.replace(str(folder) + os.sep, "").replace(str(folder), "the job")


@dataclass
class Job:
    """One segmentation request.

    Attributes:
        id: random URL-safe id (128 bits): the only name the job has in logs and URLs.
        folder: its private folder (inputs, then the result archive).
        inputs: ``t1``, ``t1ce``, ``t2``, ``flair`` -> uploaded file in ``folder``.
        options: how to segment.
        upload_bytes: size of the four uploads together.
        state: one of :data:`JOB_STATES`.
        progress: 0-1.
        message: what the job is doing now.
        error: why it failed (no server path in it).
        result: the result archive once ``done``.
    """

    id: str
    folder: Path
    inputs: Dict[str, Path]
    options: JobOptions
    upload_bytes: int = 0
    state: str = "queued"
    progress: float = 0.0
    message: str = "waiting in the queue"
    error: Optional[str] = None
    result: Optional[Path] = None
    submitted_at: float = field(default_factory=time.time)
    started_at: Optional[float] = None
    finished_at: Optional[float] = None
    finished_monotonic: Optional[float] = None
    cancel_requested: threading.Event = field(default_factory=threading.Event)

    def status(self, queue_position: Optional[int] = None) -> Dict[str, object]:
        """The job as a JSON object (what ``GET /jobs/{id}`` answers)."""
        return {
            "id": self.id,
            "state": self.state,
            "progress": round(self.progress, 4),
            "message": self.message,
            "error": self.error,
            "queue_position": queue_position,
            "options": self.options.to_json(),
            "submitted_at": self.submitted_at,
            "started_at": self.started_at,
            "finished_at": self.finished_at,
            "result_ready": self.state == "done" and self.result is not None,
        }


class QueueFull(Exception):
    """The queue holds as many waiting jobs as it may; try again after ``retry_after_s``."""

    def __init__(self, capacity: int, retry_after_s: int):
        super().__init__(
            f"the queue is full ({capacity} jobs waiting); try again in {retry_after_s} s"
        )
        self.capacity = capacity
        self.retry_after_s = retry_after_s


class JobQueue:
    """A bounded queue of jobs run one at a time, in order, by one worker thread.

    A slot is reserved before an upload is read (:meth:`reserve`), so a full queue is
    answered before any byte is stored; the upload then becomes a job (:meth:`submit`) or
    gives its slot back (:meth:`release`). Waiting jobs and reserved slots together never
    exceed ``capacity``; the running job does not count.

    Args:
        run_job: runs one job (see :data:`RunJob`), e.g. :func:`engine_job_runner`.
        capacity: most jobs waiting (uploads included), at least 1.
        result_timeout_s: seconds a finished job's result and status are kept, s.
        work_folder: where the private folder of all jobs is created (default: the system's
            temporary folder). The private folder has mode 0700 and is removed by :meth:`stop`.
    """

    def __init__(
        self,
        run_job: RunJob,
        capacity: int = 8,
        result_timeout_s: float = 3600.0,
        work_folder: Optional[Path] = None,
    ):
        if capacity < 1:
            raise ValueError("the queue needs room for at least one job")
        self.run_job = run_job
        self.capacity = int(capacity)
        self.result_timeout_s = float(result_timeout_s)
        self.root = Path(tempfile.mkdtemp(prefix="eoformer-serve-", dir=work_folder))
        os.chmod(self.root, 0o700)
        self._jobs: Dict[str, Job] = {}
        self._waiting: Deque[str] = collections.deque()
        self._reserved = 0
        self._running: Optional[str] = None
        self._lock = threading.Lock()
        self._wake = threading.Condition(self._lock)
        self._stopping = threading.Event()
        self._threads: list = []
        self._job_seconds: Deque[float] = collections.deque(maxlen=10)

    # -- life cycle ------------------------------------------------------------------------

    def start(self) -> None:
        """Start the worker and the clean-up threads."""
        for target, name in ((self._work, "eoformer-worker"), (self._expire, "eoformer-cleanup")):
            thread = threading.Thread(target=target, name=name, daemon=True)
            thread.start()
            self._threads.append(thread)

    def stop(self, timeout_s: float = 30.0) -> None:
        """Cancel the running job, stop the threads and delete every job's files."""
        self._stopping.set()
        with self._wake:
            for job in self._jobs.values():
                job.cancel_requested.set()
            self._wake.notify_all()
        for thread in self._threads:
            thread.join(timeout_s)
        shutil.rmtree(self.root, ignore_errors=True)
        with self._lock:
            self._jobs.clear()
            self._waiting.clear()

    # -- submitting ------------------------------------------------------------------------

    def retry_after_s(self) -> int:
        """Seconds after which a slot is likely free: about one job's duration."""
        average = sum(self._job_seconds) / len(self._job_seconds) if self._job_seconds else 30.0
        return max(1, int(math.ceil(average)))

    def reserve(self) -> None:
        """Reserve a slot for an upload.

        Raises:
            QueueFull: as many jobs are waiting as the queue holds.
        """
        with self._lock:
            if self._stopping.is_set() or len(self._waiting) + self._reserved >= self.capacity:
                raise QueueFull(self.capacity, self.retry_after_s())
            self._reserved += 1

    def release(self) -> None:
        """Give back a reserved slot (the upload was refused or broken off)."""
        with self._lock:
            self._reserved = max(self._reserved - 1, 0)

    def new_job_folder(self) -> Path:
        """A new private folder (mode 0700) for one job's files."""
        return Path(tempfile.mkdtemp(prefix="job-", dir=self.root))

    def submit(
        self,
        folder: Path,
        inputs: Mapping[str, Path],
        options: JobOptions,
        upload_bytes: int = 0,
    ) -> Job:
        """Queue a job in its reserved slot; the worker runs it after the jobs before it."""
        job = Job(
            id=secrets.token_urlsafe(16),
            folder=folder,
            inputs=dict(inputs),
            options=options,
            upload_bytes=upload_bytes,
        )
        with self._wake:
            self._reserved = max(self._reserved - 1, 0)
            self._jobs[job.id] = job
            self._waiting.append(job.id)
            self._wake.notify_all()
        LOG.info("job %s queued (%.1f MB uploaded)", job.id, upload_bytes / 1e6)
        return job

    # -- reading and cancelling ------------------------------------------------------------

    def get(self, job_id: str) -> Optional[Job]:
        """The job, or None when it is unknown or was removed."""
        with self._lock:
            return self._jobs.get(job_id)

    def status(self, job_id: str) -> Optional[Dict[str, object]]:
        """The job's status with its place in the queue (0: next), or None when unknown."""
        with self._lock:
            job = self._jobs.get(job_id)
            if job is None:
                return None
            position = list(self._waiting).index(job_id) if job.state == "queued" else None
            return job.status(position)

    def counts(self) -> Dict[str, int]:
        """Waiting jobs (uploads included), the running job (0 or 1) and the capacity."""
        with self._lock:
            return {
                "waiting": len(self._waiting) + self._reserved,
                "running": int(self._running is not None),
                "capacity": self.capacity,
            }

    def cancel(self, job_id: str) -> Optional[Dict[str, object]]:
        """Cancel a job: a waiting job at once, a running one at the engine's next check.

        A finished job's files are deleted (its result is discarded). Returns the status
        after the request, or None when the job is unknown.
        """
        with self._lock:
            job = self._jobs.get(job_id)
            if job is None:
                return None
            job.cancel_requested.set()
            if job.state == "queued":
                self._waiting.remove(job_id)
                self._finish(job, "cancelled", "cancelled before it started")
            elif job.state == "running":
                job.message = "cancelling"
            elif job.result is not None:
                job.result = None
                job.message = "result deleted"
                shutil.rmtree(job.folder, ignore_errors=True)
            status = job.status()
        LOG.info("job %s: cancel requested", job_id)
        return status

    def take_result(self, job_id: str) -> Optional[Path]:
        """The archive of a finished job, or None when it has none (see :meth:`forget`)."""
        with self._lock:
            job = self._jobs.get(job_id)
            return job.result if job is not None and job.state == "done" else None

    def forget(self, job_id: str) -> None:
        """Delete a job's files and record (after its result was downloaded)."""
        with self._lock:
            job = self._jobs.pop(job_id, None)
        if job is not None:
            shutil.rmtree(job.folder, ignore_errors=True)
            LOG.info("job %s: result downloaded, files deleted", job_id)

    # -- the worker ------------------------------------------------------------------------

    def _finish(self, job: Job, state: str, message: str, error: Optional[str] = None) -> None:
        """Mark a job finished (lock held); inputs are deleted, only a result is kept."""
        job.state, job.message, job.error = state, message, error
        job.finished_at, job.finished_monotonic = time.time(), time.monotonic()
        if state == "done":
            job.progress = 1.0
            for path in job.inputs.values():
                Path(path).unlink(missing_ok=True)
        else:
            shutil.rmtree(job.folder, ignore_errors=True)

    def _next_job(self) -> Optional[Job]:
        with self._wake:
            while not self._waiting and not self._stopping.is_set():
                self._wake.wait(1.0)
            if self._stopping.is_set():
                return None
            job = self._jobs[self._waiting.popleft()]
            job.state, job.started_at, job.message = "running", time.time(), "starting"
            self._running = job.id
            return job

    def _work(self) -> None:
        while True:
            job = self._next_job()
            if job is None:
                return
            LOG.info("job %s started", job.id)
            started = time.monotonic()

            def progress(fraction: float, message: str, job: Job = job) -> None:
                job.progress = min(max(float(fraction), job.progress), 1.0)
                if not job.cancel_requested.is_set():
                    job.message = message

            try:
                result = self.run_job(job, progress, job.cancel_requested.is_set)
            except Cancelled:
                outcome = ("cancelled", "cancelled", None)
            except InputError as error:
                message = public_message(str(error), job.folder)
                outcome = ("failed", "failed", message)
            except Exception as error:  # the server goes on with the next job
                LOG.exception("job %s: unexpected failure", job.id)
                outcome = ("failed", "failed", f"internal error ({type(error).__name__})")
            else:
                outcome = ("done", "done", None)
            seconds = time.monotonic() - started
            with self._lock:
                self._running = None
                if outcome[0] == "done":
                    self._job_seconds.append(seconds)
                    if job.cancel_requested.is_set():  # cancelled as it finished
                        outcome = ("cancelled", "cancelled", None)
                    else:
                        job.result = result
                self._finish(job, *outcome)
            LOG.info("job %s %s after %.1f s", job.id, job.state, seconds)

    def _expire(self) -> None:
        interval = min(max(self.result_timeout_s / 4.0, 0.05), 30.0)
        while not self._stopping.wait(interval):
            self.expire_finished()

    def expire_finished(self) -> int:
        """Remove jobs finished more than ``result_timeout_s`` ago; how many were removed."""
        now = time.monotonic()
        with self._lock:
            expired = [
                job
                for job in self._jobs.values()
                if job.finished_monotonic is not None
                and now - job.finished_monotonic > self.result_timeout_s
            ]
            for job in expired:
                del self._jobs[job.id]
        for job in expired:
            shutil.rmtree(job.folder, ignore_errors=True)
            LOG.info("job %s: not downloaded in time, files deleted", job.id)
        return len(expired)


_CHECKS = threading.BoundedSemaphore(2)


def check_job_inputs(inputs: Mapping[str, Path]) -> None:
    """Read the four uploads the way the engine does, to refuse bad ones at upload.

    At most two uploads are checked at a time, so that many clients at once cannot hold many
    sets of images in memory.

    Raises:
        InputError: the engine's message (a file unreadable, truncated, not 3D, all zero, not
            overlapping the T1ce...), naming the upload by its sequence.
    """
    from EoFormerSegmentationLib.volumes import read_sequences

    with _CHECKS:
        read_sequences(inputs)


def engine_job_runner(model, device: str = "auto") -> RunJob:
    """Runs jobs with :func:`~EoFormerSegmentationLib.engine.segment_files` and ``model``.

    The result archive (``result.zip``, stored uncompressed: the images are compressed
    already) holds ``segmentation.seg.nrrd`` or ``segmentation.nii.gz``, ``report.json``
    (the report of ``eoformer segment --json``, ``output`` being the file's name) and, when
    asked for, ``uncertainty.nii.gz``.

    Args:
        model: a :class:`~EoFormerSegmentationLib.models.LoadedModel`, loaded once.
        device: ``auto``, ``cpu`` or ``cuda``.
    """
    from EoFormerSegmentationLib.engine import segment_files

    def run(job: Job, progress: ProgressCallback, should_cancel: Callable[[], bool]) -> Path:
        options = job.options
        output = job.folder / f"segmentation.{options.output_format}"
        uncertainty = job.folder / "uncertainty.nii.gz" if options.uncertainty else None
        result = segment_files(
            job.inputs["t1"],
            job.inputs["t1ce"],
            job.inputs["t2"],
            job.inputs["flair"],
            output,
            model=model,
            device=device,
            tta=options.tta,
            register=options.register,
            skull_strip=options.skull_strip,
            label_convention=options.label_convention,
            progress=progress,
            should_cancel=should_cancel,
            uncertainty_output=uncertainty,
            inference=options.inference,
        )
        report = result.report()
        report["output"] = output.name
        report_text = public_message(json.dumps(report, indent=2), job.folder)
        archive = job.folder / "result.zip"
        with zipfile.ZipFile(archive, "w", compression=zipfile.ZIP_STORED) as bundle:
            bundle.write(output, output.name)
            bundle.writestr("report.json", report_text + "\n")
            if uncertainty is not None:
                bundle.write(uncertainty, uncertainty.name)
        for path in (output, uncertainty):
            if path is not None:
                path.unlink(missing_ok=True)
        return archive

    return run
