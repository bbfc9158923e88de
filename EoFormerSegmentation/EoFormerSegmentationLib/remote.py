"""The client of the processing server (``eoformer serve``), as the Slicer module uses it.

:class:`ServerClient` speaks the server's HTTP API (see :mod:`EoFormerSegmentationLib.server`)
with the standard library only (``urllib``), so Slicer needs no new package; every failure is a
:class:`ServerError` whose message tells the user what happened (connection refused, wrong
token, full queue, upload too large, the server gone). :class:`RemoteSegmentation` runs one
job in a background thread (upload, progress, download) and hands its events to Slicer's main
thread with a ``qt.QTimer``, with the interface of
:class:`~EoFormerSegmentationLib.process.EngineProcess`, so the module treats a local run and a
server run alike.
"""

from __future__ import annotations

import http.client
import json
import logging
import os
import queue
import socket
import ssl
import threading
import urllib.error
import urllib.parse
import urllib.request
import uuid
import zipfile
from pathlib import Path
from typing import Any, Callable, Dict, Iterator, List, Mapping, Optional

__all__ = ["ServerError", "ServerClient", "RemoteSegmentation", "SEQUENCE_FIELDS"]

SEQUENCE_FIELDS = ("t1", "t1ce", "t2", "flair")
"""The file fields of an upload, one per sequence."""

_CHUNK_BYTES = 1 << 20


class ServerError(RuntimeError):
    """A request to the processing server failed; the message is for the user.

    Attributes:
        status: the HTTP status (401, 413, 429...), or None when no answer came.
        retry_after_s: for a full queue (429), seconds the server asks to wait.
    """

    def __init__(
        self, message: str, status: Optional[int] = None, retry_after_s: Optional[int] = None
    ):
        super().__init__(message)
        self.status = status
        self.retry_after_s = retry_after_s


class _Cancelled(Exception):
    """The upload was broken off by a cancel."""


class ServerClient:
    """Requests to one processing server.

    Args:
        url: the server's address, ``http://host:port`` or ``https://host[/prefix]`` behind a
            TLS reverse proxy.
        token: the bearer token ("" when the server has none).
        timeout_s: seconds to wait for an answer (an upload may take longer: the time-out
            applies to each network read and write, not to the whole upload).

    Raises:
        ServerError: the address is not an ``http://`` or ``https://`` URL.
    """

    def __init__(self, url: str, token: str = "", timeout_s: float = 30.0):
        url = (url or "").strip().rstrip("/")
        parts = urllib.parse.urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise ServerError(
                f"{url or '(empty)'}: not a server address; expected http://host:port or "
                "https://host"
            )
        self.url = url
        self.token = (token or "").strip()
        self.timeout_s = timeout_s

    # -- requests ------------------------------------------------------------------------

    def _headers(self, extra: Optional[Mapping[str, str]] = None) -> Dict[str, str]:
        headers = {"Accept": "application/json"}
        if self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        headers.update(extra or {})
        return headers

    def _open(self, method: str, path: str, body: Any = None, headers=None):
        request = urllib.request.Request(
            self.url + path, data=body, method=method, headers=self._headers(headers)
        )
        try:
            return urllib.request.urlopen(request, timeout=self.timeout_s)
        except urllib.error.HTTPError as error:
            raise self._http_error(error, path) from None
        except urllib.error.URLError as error:
            if isinstance(error.reason, _Cancelled):
                raise error.reason from None
            raise self._network_error(error.reason) from None
        except _Cancelled:
            raise
        except (OSError, http.client.HTTPException) as error:
            raise self._network_error(error) from None

    def _json(self, method: str, path: str, body: Any = None, headers=None) -> Any:
        with self._open(method, path, body, headers) as response:
            try:
                return json.loads(response.read().decode("utf-8"))
            except (OSError, http.client.HTTPException) as error:
                raise self._network_error(error) from None
            except ValueError:
                raise ServerError(
                    f"{self.url} answered something other than the EoFormer server's JSON: is "
                    "this the right address?"
                ) from None

    def _network_error(self, reason: Any) -> ServerError:
        if isinstance(reason, ConnectionRefusedError):
            text = "connection refused: is `eoformer serve` running there, on this port?"
        elif isinstance(reason, socket.gaierror):
            text = "unknown host name: check the address"
        elif isinstance(reason, (socket.timeout, TimeoutError)):
            text = f"no answer within {self.timeout_s:g} s"
        elif isinstance(reason, ssl.SSLError):
            text = f"secure connection (TLS) failed ({reason})"
        elif isinstance(
            reason,
            (
                ConnectionResetError,
                BrokenPipeError,
                ConnectionAbortedError,
                http.client.HTTPException,
            ),
        ):
            text = "the server closed the connection (it stopped, restarted, or refused the upload)"
        else:
            text = str(reason)
        return ServerError(f"cannot reach the EoFormer server at {self.url}: {text}")

    def _http_error(self, error: urllib.error.HTTPError, path: str) -> ServerError:
        try:
            detail = json.loads(error.read().decode("utf-8")).get("detail")
        except Exception:  # a proxy's HTML page, or nothing
            detail = None
        detail = detail if isinstance(detail, str) else None
        status = error.code
        if status == 401:
            message = (
                f"the EoFormer server at {self.url} refused the token "
                f"({detail or 'unauthorized'}): check the token"
            )
        elif status == 429:
            retry = error.headers.get("Retry-After", "")
            seconds = int(retry) if retry.isdigit() else None
            wait = f"; try again in {seconds} s" if seconds else "; try again later"
            return ServerError(
                f"the EoFormer server's queue is full{wait}", status, retry_after_s=seconds
            )
        elif status == 413:
            message = detail or "the upload is larger than the server accepts"
        elif status == 404 and path.startswith("/jobs/"):
            message = (
                "the server no longer knows this job (it was restarted, or the result "
                "expired before it was downloaded)"
            )
        elif status == 404:
            message = f"{self.url} has no {path}: is this the address of `eoformer serve`?"
        elif status in (502, 503, 504):
            message = (
                f"the EoFormer server at {self.url} is not available (HTTP {status}: a proxy "
                "could not reach it)"
            )
        elif status >= 500:
            message = f"the EoFormer server failed (HTTP {status}): {detail or 'server error'}"
        else:
            message = detail or f"HTTP {status} from the EoFormer server"
        return ServerError(message, status)

    # -- the API -------------------------------------------------------------------------

    def health(self) -> Dict[str, Any]:
        """The server's state: version, device, model, queue, ``max_upload_mb``."""
        answer = self._json("GET", "/health")
        if not isinstance(answer, dict) or answer.get("status") != "ok":
            raise ServerError(f"{self.url} is not an EoFormer server, or it is not ready")
        return answer

    def models(self) -> List[Dict[str, Any]]:
        """The server's model: name, SHA-256, card."""
        return self._json("GET", "/models")

    def submit(
        self,
        files: Mapping[str, Path],
        options: Optional[Mapping[str, Any]] = None,
        should_cancel: Optional[Callable[[], bool]] = None,
    ) -> Dict[str, Any]:
        """Upload one case; the new job's status (``id``, ``state``, ``queue_position``).

        The files are streamed from disk (never held whole in memory).

        Args:
            files: ``t1``, ``t1ce``, ``t2``, ``flair`` -> image file (``.nii.gz``, ``.nii``,
                ``.nrrd``, ``.mha``); the server keeps only the name's suffix.
            options: the job's options (``tta``, ``label_convention``, ``register``,
                ``skull_strip``, ``output_format``, ``uncertainty``, ``inference``).
            should_cancel: polled while uploading; True breaks the upload off.
        """
        boundary = f"eoformer-{uuid.uuid4().hex}"
        parts: List[tuple] = []
        for name, value in (options or {}).items():
            text = ("true" if value else "false") if isinstance(value, bool) else str(value)
            head = (
                f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n{text}\r\n'
            ).encode()
            parts.append((head, None))
        for name in SEQUENCE_FIELDS:
            path = Path(files[name])
            # only the suffix matters to the server: never send the file's own name
            suffix = "".join(path.suffixes[-2:]) if path.name.endswith(".gz") else path.suffix
            head = (
                f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"; '
                f'filename="{name}{suffix}"\r\nContent-Type: application/octet-stream\r\n\r\n'
            ).encode()
            parts.append((head, path))
        tail = f"--{boundary}--\r\n".encode()
        length = len(tail) + sum(
            len(head) + (path.stat().st_size + 2 if path is not None else 0) for head, path in parts
        )

        def body() -> Iterator[bytes]:
            for head, path in parts:
                yield head
                if path is None:
                    continue
                with open(path, "rb") as stream:
                    while True:
                        if should_cancel is not None and should_cancel():
                            raise _Cancelled()
                        chunk = stream.read(_CHUNK_BYTES)
                        if not chunk:
                            break
                        yield chunk
                yield b"\r\n"
            yield tail

        headers = {
            "Content-Type": f"multipart/form-data; boundary={boundary}",
            "Content-Length": str(length),
        }
        try:
            return self._json("POST", "/jobs", body(), headers)
        except ServerError as error:
            if error.status is not None:
                raise
            # a server that refuses an upload (a full queue) may close the connection before
            # the whole upload was sent: ask it why
            try:
                queue = self.health().get("queue") or {}
            except ServerError:
                raise error from None
            if queue.get("waiting", 0) >= queue.get("capacity", 1):
                raise ServerError(
                    "the EoFormer server's queue is full; try again later", 429
                ) from None
            raise

    def status(self, job_id: str) -> Dict[str, Any]:
        """The job's state, progress (0-1), message, place in the queue and error."""
        return self._json("GET", f"/jobs/{urllib.parse.quote(job_id)}")

    def cancel(self, job_id: str) -> Dict[str, Any]:
        """Cancel the job (or discard its result)."""
        return self._json("DELETE", f"/jobs/{urllib.parse.quote(job_id)}")

    def download(self, job_id: str, archive: Path) -> Path:
        """Save the job's result zip to ``archive``; the server then deletes the job's files."""
        archive = Path(archive)
        with self._open("GET", f"/jobs/{urllib.parse.quote(job_id)}/result") as response:
            try:
                with open(archive, "wb") as stream:
                    while True:
                        chunk = response.read(_CHUNK_BYTES)
                        if not chunk:
                            break
                        stream.write(chunk)
            except (OSError, http.client.HTTPException) as error:
                archive.unlink(missing_ok=True)
                if isinstance(error, OSError) and error.filename:
                    raise
                raise self._network_error(error) from None
        return archive

    @staticmethod
    def extract(archive: Path, destinations: Mapping[str, Path]) -> Dict[str, Any]:
        """Copy the archive's members to their destinations; the report as a dictionary.

        Args:
            archive: what :meth:`download` saved.
            destinations: member name (``segmentation.nii.gz``, ``report.json``,
                ``uncertainty.nii.gz``...) -> file to write.

        Raises:
            ServerError: a member is missing or the archive is damaged.
        """
        try:
            with zipfile.ZipFile(archive) as bundle:
                names = set(bundle.namelist())
                missing = sorted(set(destinations) - names)
                if missing:
                    raise ServerError(
                        f"the server's result lacks {', '.join(missing)} (it holds "
                        f"{', '.join(sorted(names))}): ask for the matching output format"
                    )
                for name, destination in destinations.items():
                    with bundle.open(name) as source, open(destination, "wb") as target:
                        while True:
                            chunk = source.read(_CHUNK_BYTES)
                            if not chunk:
                                break
                            target.write(chunk)
                return json.loads(bundle.read("report.json").decode("utf-8"))
        except (zipfile.BadZipFile, KeyError, ValueError) as error:
            raise ServerError(f"the server's result is damaged ({error})") from None


class RemoteSegmentation:
    """One segmentation on the processing server, run in the background.

    A thread checks the server (``/health``: is the upload within its limit?), uploads the
    four files, follows the job and downloads the result into ``destinations``; a
    ``qt.QTimer`` on the main thread hands its progress and log lines to the callbacks, so
    Slicer never waits for the network. :meth:`cancel` deletes the job on the server.

    Has the attributes and methods of :class:`~EoFormerSegmentationLib.process.EngineProcess`
    that its callers use: ``returnCode`` (0: the result was written), ``userError``,
    ``cancelled``, ``finished``, ``outputLines``, :meth:`start`, :meth:`isRunning`,
    :meth:`cancel`, :meth:`wait`, :meth:`poll`, :meth:`failureMessage`.

    Args:
        client: the server.
        files: ``t1``, ``t1ce``, ``t2``, ``flair`` -> image file to upload.
        options: the job's options (see :meth:`ServerClient.submit`).
        destinations: member of the result archive -> file to write (see
            :meth:`ServerClient.extract`).
        onProgress: called with (fraction 0-1, message).
        onLog: called with each log line.
        onExit: called once with this object when the run has ended.
    """

    POLL_INTERVAL_MS = 100
    STATUS_INTERVAL_S = 0.5

    def __init__(
        self,
        client: ServerClient,
        files: Mapping[str, Path],
        options: Mapping[str, Any],
        destinations: Mapping[str, Path],
        onProgress: Optional[Callable[[float, str], None]] = None,
        onLog: Optional[Callable[[str], None]] = None,
        onExit: Optional[Callable[[RemoteSegmentation], None]] = None,
    ):
        self.client = client
        self.files = {key: Path(path) for key, path in files.items()}
        self.options = dict(options)
        self.destinations = {name: Path(path) for name, path in destinations.items()}
        self.onProgress = onProgress
        self.onLog = onLog
        self.onExit = onExit
        self.returnCode: Optional[int] = None
        self.userError = ""
        self.outputLines: List[str] = []
        self.cancelled = False
        self.finished = False
        self.jobId: Optional[str] = None
        self.report: Optional[Dict[str, Any]] = None
        self._events: queue.Queue = queue.Queue()
        self._cancel = threading.Event()
        self._thread: Optional[threading.Thread] = None
        self._timer = None
        self._archive: Optional[Path] = None
        self._finished_on_server = False  # nothing of the job is left on the server

    def start(self) -> None:
        """Start the background thread and the polling timer."""
        self._thread = threading.Thread(target=self._run, name="eoformer-remote", daemon=True)
        self._thread.start()
        try:
            import qt  # PythonQt: exists only inside 3D Slicer
        except ImportError:  # scripts without Slicer call wait()
            return
        self._timer = qt.QTimer()
        self._timer.setInterval(self.POLL_INTERVAL_MS)
        self._timer.timeout.connect(self.poll)
        self._timer.start()

    def isRunning(self) -> bool:
        """True until the run has ended and all its events were handled."""
        return self._thread is not None and not self.finished

    def cancel(self) -> None:
        """Stop: break the upload off, or delete the job on the server."""
        if not self.isRunning() or self.cancelled:
            return
        self.cancelled = True
        self._cancel.set()

    def wait(self, timeoutSeconds: Optional[float] = None) -> None:
        """Block until the run has ended (for scripts and tests; the GUI uses the timer).

        Raises:
            TimeoutError: still running after ``timeoutSeconds`` (the job is cancelled).
        """
        from EoFormerSegmentationLib.process import wait_until_finished

        wait_until_finished(self, timeoutSeconds, "the server")

    def poll(self) -> None:
        """Hand the thread's events to the callbacks. Called by the timer."""
        if self.finished:
            return
        while True:
            try:
                event = self._events.get_nowait()
            except queue.Empty:
                return
            kind = event[0]
            if kind == "progress":
                if self.onProgress:
                    self.onProgress(event[1], event[2])
            elif kind == "log":
                self.outputLines.append(event[1])
                if self.onLog:
                    self.onLog(event[1])
            elif kind == "exit":
                self.returnCode, self.userError = event[1], event[2]
                self._finish()
                return

    def failureMessage(self) -> str:
        """The user-facing error."""
        return self.userError or f"The EoFormer server run ended with code {self.returnCode}."

    def _finish(self) -> None:
        if self._timer is not None:
            self._timer.stop()
        self.finished = True
        if self.onExit:
            self.onExit(self)

    def _log(self, text: str) -> None:
        self._events.put(("log", text))

    def _run(self) -> None:
        try:
            code, error = self._segment()
        except _Cancelled:
            code, error = 1, ""
        except ServerError as failure:
            code, error = 1, str(failure)
        except OSError as failure:  # a local file that cannot be read or written
            code, error = 1, f"{failure.filename or ''}: {failure.strerror or failure}"
        except Exception as failure:  # never leave the module waiting
            logging.exception("EoFormer: the server run failed")
            code, error = 1, f"unexpected error: {failure}"
        finally:
            if self._archive is not None:
                self._archive.unlink(missing_ok=True)
        if code != 0 and self.jobId is not None and not self._finished_on_server:
            try:  # leave nothing behind on the server
                self.client.cancel(self.jobId)
            except ServerError:
                pass
        self._events.put(("exit", code, error))

    def _segment(self) -> tuple:
        health = self.client.health()
        size = sum(path.stat().st_size for path in self.files.values())
        limit_mb = float(health.get("max_upload_mb") or 0)
        if limit_mb and size > limit_mb * 1e6:
            raise ServerError(
                f"the four volumes take {size / 1e6:.0f} MB; the EoFormer server accepts "
                f"{limit_mb:g} MB",
                413,
            )
        self._log(
            f"Server {self.client.url}: model {health.get('model')} on {health.get('device')}; "
            f"uploading {size / 1e6:.1f} MB"
        )
        self._events.put(("progress", 0.0, "uploading to the server"))
        status = self.client.submit(self.files, self.options, self._cancel.is_set)
        self.jobId = str(status["id"])
        self._log(f"Server job {self.jobId} queued")
        lastMessage = None
        while True:
            if self._cancel.is_set():
                self.client.cancel(self.jobId)
                self._finished_on_server = True
                self._log(f"Server job {self.jobId} cancelled")
                return 1, ""
            state = status.get("state")
            if state == "queued":
                ahead = status.get("queue_position") or 0
                message = f"waiting in the server's queue ({ahead} job(s) ahead)"
            else:
                message = str(status.get("message") or state)
            self._events.put(("progress", float(status.get("progress") or 0.0), message))
            if message != lastMessage:
                self._log(f"server: {message}")
                lastMessage = message
            if state == "done":
                break
            if state in ("failed", "cancelled"):
                self._finished_on_server = True
                raise ServerError(status.get("error") or f"the job was {state} on the server")
            self._cancel.wait(self.STATUS_INTERVAL_S)
            status = self.client.status(self.jobId)
        folder = next(iter(self.destinations.values())).parent
        self._archive = folder / f"server-result-{os.getpid()}-{self.jobId[:8]}.zip"
        self.client.download(self.jobId, self._archive)
        self._finished_on_server = True  # the server deletes a job once its result was sent
        self.report = self.client.extract(self._archive, self.destinations)
        self._log(f"Server job {self.jobId} downloaded")
        return 0, ""
