"""Helpers of the processing-server tests: a server on a free loopback port, raw requests."""

from __future__ import annotations

import http.client
import json
import os
import socket
import threading
import time
import uuid
import zipfile
from pathlib import Path
from typing import Callable, Dict, Iterable, Mapping, Optional, Tuple, Union

from EoFormerSegmentationLib.errors import Cancelled

__all__ = [
    "RunningServer",
    "start_server",
    "multipart_body",
    "request",
    "blocking_runner",
    "files_under",
]


class RunningServer:
    """A uvicorn server in a thread of the test process; :meth:`stop` ends it.

    Attributes:
        url: ``http://127.0.0.1:<port>``.
        port: the free port it listens on.
        app: the FastAPI application.
    """

    def __init__(self, app, server, thread: threading.Thread, port: int):
        self.app, self._server, self._thread, self.port = app, server, thread, port
        self.url = f"http://127.0.0.1:{port}"

    @property
    def queue(self):
        return self.app.state.queue

    def stop(self) -> None:
        self._server.should_exit = True
        self._thread.join(30)
        assert not self._thread.is_alive(), "the test server did not stop"


def start_server(settings, run_job=None) -> RunningServer:
    """Start ``create_app(settings, run_job)`` on a free loopback port and wait until it serves."""
    import uvicorn
    from EoFormerSegmentationLib.server import create_app

    app = create_app(settings, run_job)
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    config = uvicorn.Config(app, log_level="warning", lifespan="on", timeout_graceful_shutdown=5)
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            server.should_exit = True
            raise RuntimeError("the test server did not start")
        time.sleep(0.02)
    return RunningServer(app, server, thread, port)


def multipart_body(
    files: Mapping[str, Union[Path, Tuple[str, bytes]]], fields: Optional[Mapping[str, str]] = None
) -> Tuple[bytes, str]:
    """A ``multipart/form-data`` body and its content type.

    Args:
        files: field -> a file (sent under its own name) or ``(file name, bytes)``.
        fields: text fields.
    """
    boundary = uuid.uuid4().hex
    chunks = []
    for name, value in (fields or {}).items():
        chunks.append(
            f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n{value}\r\n'.encode()
        )
    for name, value in files.items():
        file_name, data = (value.name, value.read_bytes()) if isinstance(value, Path) else value
        chunks.append(
            f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"; '
            f'filename="{file_name}"\r\nContent-Type: application/octet-stream\r\n\r\n'.encode()
            + data
            + b"\r\n"
        )
    chunks.append(f"--{boundary}--\r\n".encode())
    return b"".join(chunks), f"multipart/form-data; boundary={boundary}"


def request(
    url: str,
    method: str,
    path: str,
    token: Optional[str] = None,
    body: Union[bytes, Iterable[bytes], None] = None,
    headers: Optional[Dict[str, str]] = None,
    chunked: bool = False,
) -> Tuple[int, Dict[str, str], object]:
    """One raw HTTP request: (status, headers in lower case, JSON or bytes of the answer)."""
    host, port = url.split("//")[1].split(":")
    connection = http.client.HTTPConnection(host, int(port), timeout=60)
    headers = dict(headers or {})
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    try:
        connection.request(method, path, body=body, headers=headers, encode_chunked=chunked)
        response = connection.getresponse()
        data = response.read()
        answer_headers = {key.lower(): value for key, value in response.getheaders()}
    finally:
        connection.close()
    if answer_headers.get("content-type", "").startswith("application/json"):
        return response.status, answer_headers, json.loads(data)
    return response.status, answer_headers, data


def blocking_runner(release: threading.Event) -> Callable:
    """A job runner that holds each job until ``release`` is set (then writes a small zip),
    and raises ``Cancelled`` when the job is cancelled meanwhile."""

    def run(job, progress, should_cancel) -> Path:
        progress(0.5, "working")
        while not release.wait(0.02):
            if should_cancel():
                raise Cancelled("cancelled")
        archive = job.folder / "result.zip"
        with zipfile.ZipFile(archive, "w") as bundle:
            bundle.writestr("report.json", json.dumps({"job": job.id}))
        return archive

    return run


def files_under(folder: Path) -> list:
    """Every file (not folder) under ``folder``; folders that the server deletes while they
    are walked are skipped (``os.walk`` ignores them, ``Path.rglob`` would raise)."""
    return sorted(Path(root) / name for root, _, names in os.walk(folder) for name in names)
