"""The processing server's HTTP API (``eoformer serve``): FastAPI on uvicorn.

Endpoints (every request, the OpenAPI description at ``/openapi.json`` included, needs
``Authorization: Bearer <token>`` when the server has a token):

- ``GET /health``: state, version, device, queue counts, the upload limit.
- ``GET /models``: the model the server runs (name, SHA-256, card).
- ``POST /jobs``: ``multipart/form-data`` with the files ``t1``, ``t1ce``, ``t2``, ``flair``
  (``.nii.gz``, ``.nii``, ``.nrrd`` or ``.mha``) and the optional text fields of
  :class:`~EoFormerSegmentationLib.jobs.JobOptions`; answers 201 with the job's status. 400:
  a bad field or image (the engine's message); 413: larger than ``max_upload_mb``; 429 with
  ``Retry-After``: the queue is full.
- ``GET /jobs/{id}``: state (``queued``, ``running``, ``done``, ``failed``, ``cancelled``),
  progress 0-1 and the stage's message.
- ``GET /jobs/{id}/result``: a zip with ``segmentation.seg.nrrd`` (or ``.nii.gz``),
  ``report.json`` and, when asked for, ``uncertainty.nii.gz``; the job's files are deleted
  once it was sent. 409 while the job is not done.
- ``DELETE /jobs/{id}``: cancel (a running job stops at the engine's next check) or discard.

Uploads are streamed into a private folder (mode 0700) and counted while they arrive; the
client never names a server path. The job queue is :mod:`~EoFormerSegmentationLib.jobs`.
This module needs the ``server`` extra (fastapi, uvicorn, python-multipart) and is imported
only by ``eoformer serve`` and the tests, never by the engine or the Slicer module.
"""

from __future__ import annotations

import hmac
import logging
import shutil
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, List, Optional

from fastapi import FastAPI, HTTPException, Request
from fastapi.responses import FileResponse, JSONResponse
from python_multipart.multipart import MultipartParser, parse_options_header
from starlette.background import BackgroundTask
from starlette.concurrency import run_in_threadpool
from starlette.requests import ClientDisconnect

from EoFormerSegmentationLib import __version__
from EoFormerSegmentationLib.errors import InputError
from EoFormerSegmentationLib.jobs import (
    IMAGE_SUFFIXES,
    OUTPUT_FORMATS,
    JobOptions,
    JobQueue,
    QueueFull,
    RunJob,
    check_job_inputs,
    engine_job_runner,
    image_suffix,
    public_message,
)
from EoFormerSegmentationLib.volumes import SEQUENCES

__all__ = ["ServerSettings", "create_app", "BearerTokenMiddleware"]

LOG = logging.getLogger("eoformer.serve")

_MAX_FIELD_BYTES = 256
_MAX_PARTS = 16
_UNAUTHORIZED_DRAIN_BYTES = 1_000_000


async def _drain_request(receive, limit_bytes: int) -> None:
    """Read and drop up to ``limit_bytes`` of a refused request's body.

    A client still sending its upload when the answer comes would otherwise see the
    connection reset instead of the answer (401, 429) that says why.
    """
    received = 0
    while received <= limit_bytes:
        message = await receive()
        if message["type"] != "http.request":
            return
        received += len(message.get("body", b""))
        if not message.get("more_body", False):
            return


@dataclass
class ServerSettings:
    """How the server runs.

    Args:
        model_path: checkpoint (default: the bundled model).
        device: ``auto``, ``cpu`` or ``cuda``.
        token: the bearer token every request must carry; None only on a loopback address.
        max_upload_mb: most megabytes (10^6 bytes) one job's upload may have, all four files
            together.
        queue_size: most jobs waiting (the running one not counted).
        result_timeout_s: seconds a finished job's result waits for its download, s.
        work_folder: where the private temporary folder is made (default: the system's).
    """

    model_path: Optional[Path] = None
    device: str = "auto"
    token: Optional[str] = None
    max_upload_mb: float = 512.0
    queue_size: int = 8
    result_timeout_s: float = 3600.0
    work_folder: Optional[Path] = None


class BearerTokenMiddleware:
    """Answers 401 to every HTTP request without ``Authorization: Bearer <token>``.

    Checked before the request's body is read, so an upload without the token is never
    stored. The comparison takes the same time whatever the given token
    (:func:`hmac.compare_digest`).
    """

    def __init__(self, app: Any, token: str):
        self.app = app
        self.expected = f"Bearer {token}".encode()

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] == "http":
            given = b""
            for name, value in scope.get("headers", []):
                if name == b"authorization":
                    given = value
            if not hmac.compare_digest(given, self.expected):
                message = (
                    "missing token: send 'Authorization: Bearer <token>'"
                    if not given
                    else "wrong token"
                )
                response = JSONResponse(
                    {"detail": message}, status_code=401, headers={"WWW-Authenticate": "Bearer"}
                )
                await _drain_request(receive, _UNAUTHORIZED_DRAIN_BYTES)
                await response(scope, receive, send)
                return
        await self.app(scope, receive, send)


class UploadTooLarge(Exception):
    """The request body passed the upload limit."""


class _UploadWriter:
    """Writes a streamed ``multipart/form-data`` body into a job's folder.

    Files go to ``<folder>/<field><suffix>`` (the client's file name gives only the suffix);
    text fields are kept in memory (a few bytes each). Every byte is counted against
    ``limit_bytes``.
    """

    def __init__(self, boundary: bytes, folder: Path, limit_bytes: int):
        self.folder = folder
        self.limit_bytes = limit_bytes
        self.received = 0
        self.files: Dict[str, Path] = {}
        self.fields: Dict[str, str] = {}
        self._parts = 0
        self._header_field = b""
        self._header_value = b""
        self._headers: Dict[bytes, bytes] = {}
        self._name: Optional[str] = None
        self._file = None
        self._value = bytearray()
        self.parser = MultipartParser(
            boundary,
            {
                "on_part_begin": self._on_part_begin,
                "on_header_field": self._on_header_field,
                "on_header_value": self._on_header_value,
                "on_header_end": self._on_header_end,
                "on_headers_finished": self._on_headers_finished,
                "on_part_data": self._on_part_data,
                "on_part_end": self._on_part_end,
            },
        )

    def write(self, chunk: bytes) -> None:
        self.received += len(chunk)
        if self.received > self.limit_bytes:
            raise UploadTooLarge()
        self.parser.write(chunk)

    def finish(self) -> None:
        self.parser.finalize()
        self.close()

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None

    def _on_part_begin(self) -> None:
        self._parts += 1
        if self._parts > _MAX_PARTS:
            raise InputError(f"too many parts in the upload (at most {_MAX_PARTS})")
        self._headers, self._name, self._value = {}, None, bytearray()

    def _on_header_field(self, data: bytes, start: int, end: int) -> None:
        self._header_field += data[start:end]

    def _on_header_value(self, data: bytes, start: int, end: int) -> None:
        self._header_value += data[start:end]

    def _on_header_end(self) -> None:
        self._headers[self._header_field.lower()] = self._header_value
        self._header_field, self._header_value = b"", b""

    def _on_headers_finished(self) -> None:
        _, options = parse_options_header(self._headers.get(b"content-disposition", b""))
        name = options.get(b"name", b"").decode("utf-8", "replace")
        if not name:
            raise InputError("an upload part has no field name")
        if name in self.files or name in self.fields:
            raise InputError(f"the field {name} is given twice")
        self._name = name
        if b"filename" in options:
            if name not in SEQUENCES:
                raise InputError(
                    f"the file field {name!r} is not a sequence; expected {', '.join(SEQUENCES)}"
                )
            suffix = image_suffix(options[b"filename"].decode("utf-8", "replace"))
            path = self.folder / f"{name}{suffix}"
            self._file = open(path, "xb")  # closed at the part's end
            self.files[name] = path

    def _on_part_data(self, data: bytes, start: int, end: int) -> None:
        if self._file is not None:
            self._file.write(data[start:end])
        else:
            self._value += data[start:end]
            if len(self._value) > _MAX_FIELD_BYTES:
                raise InputError(f"the field {self._name} is too long")

    def _on_part_end(self) -> None:
        if self._file is not None:
            self.close()
        elif self._name is not None:
            if self._name in SEQUENCES:
                raise InputError(f"{self._name} must be a file (with a file name), not text")
            self.fields[self._name] = self._value.decode("utf-8", "replace")


def _job_request_schema() -> Dict[str, Any]:
    """The OpenAPI description of ``POST /jobs``'s multipart body."""
    image = {"type": "string", "format": "binary", "description": f"{'|'.join(IMAGE_SUFFIXES)}"}
    properties: Dict[str, Any] = {key: dict(image) for key in SEQUENCES}
    properties.update(
        {
            "tta": {"type": "boolean", "default": False},
            "label_convention": {"type": "string", "enum": ["brats2020", "brats2023"]},
            "register": {"type": "string", "enum": ["auto", "on", "off"]},
            "skull_strip": {"type": "string", "enum": ["auto", "on", "off"]},
            "output_format": {"type": "string", "enum": list(OUTPUT_FORMATS)},
            "uncertainty": {"type": "boolean", "default": False},
            "inference": {"type": "string", "enum": ["window", "whole"]},
        }
    )
    return {
        "requestBody": {
            "required": True,
            "content": {
                "multipart/form-data": {
                    "schema": {
                        "type": "object",
                        "required": list(SEQUENCES),
                        "properties": properties,
                    }
                }
            },
        }
    }


def create_app(settings: ServerSettings, run_job: Optional[RunJob] = None) -> FastAPI:
    """The server's FastAPI application.

    The model is loaded here (a bad model file is refused before serving); the job queue
    starts with the application and, when it stops, cancels the running job and deletes every
    job's files.

    Args:
        settings: see :class:`ServerSettings`.
        run_job: runs one job; default :func:`~EoFormerSegmentationLib.jobs.engine_job_runner`
            with the loaded model (the same engine call as ``eoformer segment``).

    Raises:
        InputError: no model, or a model file that cannot be used.
    """
    from EoFormerSegmentationLib.inference import select_device
    from EoFormerSegmentationLib.models import default_model_path, load_checkpoint

    model_path = settings.model_path or default_model_path()
    if model_path is None:
        raise InputError("no model given (--model) and no bundled model is installed")
    loaded = load_checkpoint(model_path)
    device = str(select_device(settings.device))
    if run_job is None:
        run_job = engine_job_runner(loaded, settings.device)
    limit_bytes = int(settings.max_upload_mb * 1_000_000)
    queue = JobQueue(
        run_job,
        capacity=settings.queue_size,
        result_timeout_s=settings.result_timeout_s,
        work_folder=settings.work_folder,
    )

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        queue.start()
        LOG.info("serving model %s on %s", loaded.name, device)
        try:
            yield
        finally:
            queue.stop()

    app = FastAPI(
        title="EoFormer processing server",
        version=__version__,
        description="Brain-tumor segmentation (whole tumor, tumor core, enhancing tumor) from "
        "T1, T1ce, T2 and FLAIR MRI. Research software, not for clinical use.",
        docs_url=None,
        redoc_url=None,
        lifespan=lifespan,
    )
    app.state.queue = queue
    if settings.token:
        app.add_middleware(BearerTokenMiddleware, token=settings.token)

    def unknown(job_id: str) -> HTTPException:
        return HTTPException(
            404,
            f"unknown job {job_id}: it never existed, or its files were deleted (after its "
            f"result was downloaded, or {settings.result_timeout_s:g} s after it finished)",
        )

    @app.get("/health")
    def health() -> Dict[str, Any]:
        """Whether the server runs, and its queue."""
        return {
            "status": "ok",
            "version": __version__,
            "device": device,
            "model": loaded.name,
            "queue": queue.counts(),
            "max_upload_mb": settings.max_upload_mb,
            "result_timeout_s": settings.result_timeout_s,
        }

    @app.get("/models")
    def models() -> List[Dict[str, Any]]:
        """The model this server segments with: name, SHA-256 and model card."""
        return [{"name": loaded.name, "sha256": loaded.sha256, "card": loaded.card}]

    @app.post("/jobs", status_code=201, openapi_extra=_job_request_schema())
    async def submit(request: Request) -> JSONResponse:
        """Upload the four sequences (and options) of one case; the job's status."""
        try:
            queue.reserve()
        except QueueFull as error:
            await _drain_request(request.receive, limit_bytes)
            raise HTTPException(
                429, str(error), headers={"Retry-After": str(error.retry_after_s)}
            ) from None
        folder: Optional[Path] = None
        try:
            content_type, parameters = parse_options_header(request.headers.get("content-type", ""))
            boundary = parameters.get(b"boundary")
            if content_type != b"multipart/form-data" or not boundary:
                raise HTTPException(415, "send the files as multipart/form-data")
            declared = request.headers.get("content-length")
            if declared is not None and declared.isdigit() and int(declared) > limit_bytes:
                raise HTTPException(413, _too_large(settings.max_upload_mb))
            folder = queue.new_job_folder()
            writer = _UploadWriter(boundary, folder, limit_bytes)
            try:
                async for chunk in request.stream():
                    writer.write(chunk)
                writer.finish()
            except UploadTooLarge:
                raise HTTPException(413, _too_large(settings.max_upload_mb)) from None
            except InputError as error:
                raise HTTPException(400, str(error)) from None
            except ClientDisconnect:
                raise HTTPException(400, "the upload was broken off") from None
            finally:
                writer.close()
            missing = [key for key in SEQUENCES if key not in writer.files]
            if missing:
                raise HTTPException(400, f"missing file(s): {', '.join(missing)}")
            try:
                options = JobOptions.from_fields(writer.fields)
                await run_in_threadpool(check_job_inputs, writer.files)
            except InputError as error:
                raise HTTPException(400, public_message(str(error), folder)) from None
            job = queue.submit(folder, writer.files, options, writer.received)
        except BaseException:
            queue.release()
            if folder is not None:
                shutil.rmtree(folder, ignore_errors=True)
            raise
        return JSONResponse(
            queue.status(job.id), status_code=201, headers={"Location": f"/jobs/{job.id}"}
        )

    @app.get("/jobs/{job_id}")
    def job_status(job_id: str) -> Dict[str, Any]:
        """State, progress (0-1), stage message and place in the queue of one job."""
        status = queue.status(job_id)
        if status is None:
            raise unknown(job_id)
        return status

    @app.get(
        "/jobs/{job_id}/result",
        response_class=FileResponse,
        responses={200: {"content": {"application/zip": {}}}},
    )
    def job_result(job_id: str) -> FileResponse:
        """The result as a zip; the job's files are deleted once it was sent."""
        status = queue.status(job_id)
        if status is None:
            raise unknown(job_id)
        archive = queue.take_result(job_id)
        if archive is None:
            detail = status["error"] or f"the job is {status['state']}, not done"
            raise HTTPException(409, detail)
        return FileResponse(
            archive,
            media_type="application/zip",
            filename=f"eoformer-{job_id}.zip",
            background=BackgroundTask(queue.forget, job_id),
        )

    @app.delete("/jobs/{job_id}")
    def cancel(job_id: str) -> Dict[str, Any]:
        """Cancel a waiting or running job, or delete a finished job's result."""
        status = queue.cancel(job_id)
        if status is None:
            raise unknown(job_id)
        return status

    return app


def _too_large(max_upload_mb: float) -> str:
    return (
        f"the upload is larger than this server accepts ({max_upload_mb:g} MB for the four "
        "files together)"
    )
