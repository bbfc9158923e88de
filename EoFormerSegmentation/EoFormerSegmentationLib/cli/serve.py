"""``eoformer serve``: the processing server, so that Slicer on a laptop segments on a GPU
machine (see :mod:`EoFormerSegmentationLib.server` for the HTTP API)."""

from __future__ import annotations

import argparse
import importlib.util
import logging
import sys
from pathlib import Path

from EoFormerSegmentationLib.cli.options import positive_float, positive_int
from EoFormerSegmentationLib.errors import InputError

__all__ = ["add_arguments", "run", "SERVER_EXTRA", "SERVER_PACKAGES", "server_packages_missing"]

SERVER_EXTRA = (
    'needs the [server] extra: pip install -e ".[server]" (fastapi, uvicorn, python-multipart)'
)


SERVER_PACKAGES = {
    "fastapi": "fastapi",
    "uvicorn": "uvicorn",
    "python_multipart": "python-multipart",
}
"""Module name -> package name of what the server needs beyond the engine."""


def server_packages_missing() -> list:
    """Names of the server's packages that are not installed."""
    return [
        package
        for module, package in SERVER_PACKAGES.items()
        if importlib.util.find_spec(module) is None
    ]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--host",
        default="127.0.0.1",
        help="address to listen on (default 127.0.0.1: this machine only); any other address "
        "needs --token-file",
    )
    parser.add_argument("--port", type=positive_int, default=8765, help="port (default 8765)")
    parser.add_argument(
        "--token-file",
        metavar="FILE",
        help="file holding the bearer token that every request must carry (keep it mode 0600)",
    )
    parser.add_argument("--model", help="model checkpoint (default: the bundled model)")
    parser.add_argument("--device", default="auto", help="auto (default), cpu or cuda")
    parser.add_argument(
        "--max-upload-mb",
        type=positive_float,
        default=512.0,
        help="largest upload of one job, the four files together, MB (default 512)",
    )
    parser.add_argument(
        "--queue",
        type=positive_int,
        default=8,
        help="most jobs waiting; more are answered 429 with Retry-After (default 8)",
    )
    parser.add_argument(
        "--result-timeout-min",
        type=positive_float,
        default=60.0,
        help="minutes a finished job's result waits for its download before it is deleted "
        "(default 60)",
    )
    parser.add_argument(
        "--work-folder",
        metavar="DIR",
        help="where the private temporary folder of the uploads is made (default: the "
        "system's temporary folder)",
    )


def run(args: argparse.Namespace) -> int:
    from EoFormerSegmentationLib.server_access import check_bind_address, read_token_file

    token = read_token_file(Path(args.token_file)) if args.token_file else None
    check_bind_address(args.host, token)
    if args.work_folder and not Path(args.work_folder).is_dir():
        raise InputError(f"--work-folder {args.work_folder}: not a folder")
    missing = server_packages_missing()
    if missing:
        print(
            f"eoformer serve: error: {', '.join(missing)} not installed; the server {SERVER_EXTRA}",
            file=sys.stderr,
        )
        return 2
    import uvicorn

    from EoFormerSegmentationLib.server import ServerSettings, create_app

    settings = ServerSettings(
        model_path=Path(args.model) if args.model else None,
        device=args.device,
        token=token,
        max_upload_mb=args.max_upload_mb,
        queue_size=args.queue,
        result_timeout_s=args.result_timeout_min * 60.0,
        work_folder=Path(args.work_folder) if args.work_folder else None,
    )
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    app = create_app(settings)
    print(
        f"eoformer serve: listening on http://{args.host}:{args.port} "
        f"({'token required' if token else 'no token: this machine only'}); Ctrl+C stops",
        file=sys.stderr,
    )
    uvicorn.run(app, host=args.host, port=args.port, log_level="info")
    return 0
