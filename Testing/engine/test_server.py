"""The processing server (``eoformer serve``) on a free loopback port: results identical to
``eoformer segment``, the token, upload limits, bad uploads, a full queue, cancel, clean-up,
and its client (:mod:`EoFormerSegmentationLib.remote`)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
import zipfile
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("fastapi")
pytest.importorskip("uvicorn")
pytest.importorskip("python_multipart")

import nrrd  # noqa: E402
import SimpleITK as sitk  # noqa: E402
from EoFormerSegmentationLib.cli import main  # noqa: E402
from EoFormerSegmentationLib.engine import segment_files  # noqa: E402
from EoFormerSegmentationLib.remote import RemoteSegmentation, ServerClient, ServerError  # noqa: E402
from EoFormerSegmentationLib.server import ServerSettings  # noqa: E402
from server_cases import (  # noqa: E402
    blocking_runner,
    files_under,
    multipart_body,
    request,
    start_server,
)

TOKEN = "test-token-0123456789abcdef"
SEQUENCES = ("t1", "t1ce", "t2", "flair")


@pytest.fixture
def work_folder(tmp_path) -> Path:
    folder = tmp_path / "server-work"
    folder.mkdir()
    return folder


@pytest.fixture
def serve(tiny_model, work_folder):
    """Starts servers (tiny model, CPU, private folder under ``work_folder``); stops them all."""
    servers = []

    def start(run_job=None, **settings):
        settings = ServerSettings(
            model_path=tiny_model, device="cpu", work_folder=work_folder, **settings
        )
        servers.append(start_server(settings, run_job))
        return servers[-1]

    yield start
    for server in servers:
        server.stop()
    assert files_under(work_folder) == [], "the server left files behind"
    assert list(work_folder.iterdir()) == [], "the server left its private folder behind"


def no_files_soon(folder: Path, timeout_s: float = 10.0) -> bool:
    """True once no file is left under ``folder`` (a job's files are deleted right after its
    result was sent, which the client may see a moment before)."""
    deadline = time.monotonic() + timeout_s
    while files_under(folder) and time.monotonic() < deadline:
        time.sleep(0.02)
    return files_under(folder) == []


def wait_for(client: ServerClient, job_id: str, states=("done", "failed", "cancelled")) -> dict:
    deadline = time.monotonic() + 120
    while True:
        status = client.status(job_id)
        if status["state"] in states:
            return status
        assert time.monotonic() < deadline, status
        time.sleep(0.05)


def test_a_job_gives_what_eoformer_segment_gives_voxel_for_voxel(
    serve, small_case, tiny_model, tmp_path, work_folder
):
    # an NRRD among the NIfTI uploads: the saved upload keeps its format's suffix
    nrrd_t1 = small_case["t1"].with_name("t1.nrrd")
    sitk.WriteImage(sitk.ReadImage(str(small_case["t1"])), str(nrrd_t1))
    files = dict(small_case, t1=nrrd_t1)
    server = serve(token=TOKEN)
    client = ServerClient(server.url, TOKEN)

    status = client.submit(files, {"tta": False, "label_convention": "brats2020"})
    assert status["state"] in ("queued", "running")
    job_folder = server.queue.get(status["id"]).folder
    assert oct(job_folder.stat().st_mode & 0o777) == "0o700"
    assert oct(server.queue.root.stat().st_mode & 0o777) == "0o700"
    # the uploads, each with its format's suffix (the job may already be writing beside them)
    uploads = {path.name for path in job_folder.iterdir() if path.name.startswith(("t", "f"))}
    assert {"t1.nrrd", "t1ce.nii.gz", "t2.nii.gz", "flair.nii.gz"} <= uploads
    done = wait_for(client, status["id"])
    assert done["state"] == "done", done
    assert done["progress"] == 1.0

    archive = client.download(status["id"], tmp_path / "result.zip")
    with zipfile.ZipFile(archive) as bundle:
        assert sorted(bundle.namelist()) == ["report.json", "segmentation.seg.nrrd"]
        bundle.extractall(tmp_path / "served")
    report = json.loads((tmp_path / "served" / "report.json").read_text())
    assert report["output"] == "segmentation.seg.nrrd"
    assert str(work_folder) not in json.dumps(report)

    local = segment_files(
        *(files[key] for key in SEQUENCES),
        tmp_path / "local.seg.nrrd",
        model_path=tiny_model,
        device="cpu",
    )
    served_data, served_header = nrrd.read(str(tmp_path / "served" / "segmentation.seg.nrrd"))
    local_data, local_header = nrrd.read(str(tmp_path / "local.seg.nrrd"))
    np.testing.assert_array_equal(served_data, local_data)
    for key in ("space origin", "space directions", "sizes", "space"):
        np.testing.assert_array_equal(np.asarray(served_header[key]), np.asarray(local_header[key]))
    assert report["volumes_ml"] == local.report()["volumes_ml"]
    assert report["model"] == local.report()["model"]

    # downloaded: the job's files and record are gone (deleted just after the answer was sent)
    assert no_files_soon(work_folder)
    with pytest.raises(ServerError, match="no longer knows this job"):
        client.status(status["id"])


def test_every_request_needs_the_token(serve, small_case, work_folder):
    server = serve(token=TOKEN)
    for token in (None, "wrong-token-0123456789abcdef", TOKEN[:-1]):
        code, headers, answer = request(server.url, "GET", "/health", token)
        assert code == 401 and headers["www-authenticate"] == "Bearer"
        assert "token" in answer["detail"]
    body, content_type = multipart_body(small_case)
    code, _, _ = request(server.url, "POST", "/jobs", None, body, {"Content-Type": content_type})
    assert code == 401
    assert files_under(work_folder) == []  # nothing of the upload was stored
    assert request(server.url, "GET", "/openapi.json")[0] == 401

    code, _, health = request(server.url, "GET", "/health", TOKEN)
    assert code == 200 and health["status"] == "ok" and health["device"] == "cpu"
    code, _, models = request(server.url, "GET", "/models", TOKEN)
    assert code == 200 and len(models[0]["sha256"]) == 64 and isinstance(models[0]["card"], dict)
    code, _, api = request(server.url, "GET", "/openapi.json", TOKEN)
    assert code == 200
    assert {"/health", "/models", "/jobs", "/jobs/{job_id}", "/jobs/{job_id}/result"} <= set(
        api["paths"]
    )
    schema = api["paths"]["/jobs"]["post"]["requestBody"]["content"]["multipart/form-data"]
    assert schema["schema"]["required"] == list(SEQUENCES)

    with pytest.raises(ServerError, match="refused the token") as refused:
        ServerClient(server.url, "wrong-token-0123456789abcdef").health()
    assert refused.value.status == 401


@pytest.mark.parametrize("chunked", [False, True], ids=["content-length", "chunked"])
def test_an_upload_over_the_limit_is_refused_while_it_streams(serve, work_folder, chunked):
    server = serve(max_upload_mb=0.05)
    noise = np.random.default_rng(0).bytes(30_000)
    files = {key: (f"{key}.nii.gz", noise) for key in SEQUENCES}
    body, content_type = multipart_body(files)
    payload = iter([body[i : i + 8192] for i in range(0, len(body), 8192)]) if chunked else body
    code, _, answer = request(
        server.url, "POST", "/jobs", None, payload, {"Content-Type": content_type}, chunked
    )
    assert code == 413
    assert "0.05 MB" in answer["detail"]
    assert files_under(work_folder) == []
    assert server.queue.counts()["waiting"] == 0  # the slot was given back


def test_a_garbage_upload_is_refused_with_the_engines_message(serve, small_case, work_folder):
    server = serve()
    files = dict(small_case, t1=("scan of someone.nii.gz", b"this is not an image" * 50))
    body, content_type = multipart_body(files)
    code, _, answer = request(
        server.url, "POST", "/jobs", None, body, {"Content-Type": content_type}
    )
    assert code == 400
    assert answer["detail"].startswith("t1.nii.gz: ")  # the engine's message, no server path
    assert "T1" in answer["detail"]
    assert str(work_folder) not in answer["detail"] and "someone" not in answer["detail"]
    assert files_under(work_folder) == []

    refusals = {
        "a suffix the server does not read": (
            dict(small_case, t2=("t2.jpg", b"x")),
            {},
            "must end with one of .nii.gz",
        ),
        "a missing sequence": ({k: small_case[k] for k in ("t1", "t1ce", "t2")}, {}, "flair"),
        "an unknown option": (small_case, {"colour": "red"}, "unknown field(s) colour"),
        "a value out of its choices": (small_case, {"register": "maybe"}, "register='maybe'"),
    }
    for name, (files, fields, message) in refusals.items():
        body, content_type = multipart_body(files, fields)
        code, _, answer = request(
            server.url, "POST", "/jobs", None, body, {"Content-Type": content_type}
        )
        assert code == 400, name
        assert message in answer["detail"], (name, answer)
    assert files_under(work_folder) == []


def test_a_full_queue_answers_429_with_retry_after_and_cancel_frees_it(serve, small_case):
    release = threading.Event()
    server = serve(run_job=blocking_runner(release), queue_size=1)
    client = ServerClient(server.url)
    try:
        running = client.submit(small_case)
        wait_for(client, running["id"], states=("running",))
        waiting = client.submit(small_case)
        assert client.status(waiting["id"])["queue_position"] == 0
        body, content_type = multipart_body(small_case)
        code, headers, answer = request(
            server.url, "POST", "/jobs", None, body, {"Content-Type": content_type}
        )
        assert code == 429
        assert int(headers["retry-after"]) >= 1
        assert "queue is full" in answer["detail"]
        with pytest.raises(ServerError, match="queue is full") as full:
            client.submit(small_case)
        assert full.value.status == 429 and full.value.retry_after_s >= 1

        # cancelling the waiting job frees its slot at once; the running job stops too
        assert client.cancel(waiting["id"])["state"] == "cancelled"
        assert client.cancel(running["id"])["state"] in ("running", "cancelled")
        assert wait_for(client, running["id"])["state"] == "cancelled"
        assert server.queue.counts() == {"waiting": 0, "running": 0, "capacity": 1}
        with pytest.raises(ServerError, match="the job is cancelled, not done"):
            client.download(running["id"], Path(os.devnull))
    finally:
        release.set()


def test_cancelling_a_running_engine_job_stops_the_engine(serve, small_case, tiny_model):
    from EoFormerSegmentationLib.jobs import engine_job_runner
    from EoFormerSegmentationLib.models import load_checkpoint

    engine = engine_job_runner(load_checkpoint(tiny_model), "cpu")
    stages = []

    def run(job, progress, should_cancel):
        def held_progress(fraction, message):
            stages.append(message)
            progress(fraction, message)
            deadline = time.monotonic() + 30
            while not should_cancel() and time.monotonic() < deadline:  # hold until cancelled
                time.sleep(0.01)

        return engine(job, held_progress, should_cancel)

    server = serve(run_job=run)
    client = ServerClient(server.url)
    job = client.submit(small_case)
    status = wait_for(client, job["id"], states=("running",))
    while not client.status(job["id"])["message"].startswith("loading"):
        time.sleep(0.02)
    client.cancel(job["id"])
    status = wait_for(client, job["id"])
    assert status["state"] == "cancelled"
    # the engine stopped at its next check, inside the network: nothing after it ran
    assert stages[0] == "loading the model" and "running the network" in stages
    assert not [stage for stage in stages if stage.startswith(("post-processing", "writing"))]


def test_results_not_downloaded_are_deleted_after_the_time_out(serve, small_case, work_folder):
    release = threading.Event()
    release.set()
    server = serve(run_job=blocking_runner(release), result_timeout_s=0.3)
    client = ServerClient(server.url)
    job = client.submit(small_case)
    assert wait_for(client, job["id"])["state"] == "done"
    deadline = time.monotonic() + 10
    while files_under(work_folder) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert files_under(work_folder) == []
    with pytest.raises(ServerError, match="no longer knows this job"):
        client.status(job["id"])


def test_twenty_clients_at_once_all_finish_or_are_refused_cleanly(serve, small_case, work_folder):
    """Each client tries up to three jobs; every attempt ends done or with a clean 429."""
    import resource

    release = threading.Event()
    release.set()
    server = serve(run_job=blocking_runner(release), queue_size=4)
    before_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    outcomes, problems = [], []

    def client_loop() -> None:
        client = ServerClient(server.url)
        for _ in range(3):
            try:
                job = client.submit(small_case)
            except ServerError as error:
                if error.status != 429:
                    problems.append(str(error))
                outcomes.append("refused")
                time.sleep(0.05)
                continue
            try:
                status = wait_for(client, job["id"])
                client.download(job["id"], work_folder.parent / f"{job['id']}.zip")
                (work_folder.parent / f"{job['id']}.zip").unlink()
                outcomes.append(status["state"])
            except Exception as error:  # reported below
                problems.append(repr(error))

    threads = [threading.Thread(target=client_loop) for _ in range(20)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    assert not problems, problems
    assert len(outcomes) == 60
    assert set(outcomes) <= {"done", "refused"} and "done" in outcomes
    grown_mb = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before_kb) / 1024
    assert grown_mb < 300, f"memory grew {grown_mb:.0f} MB"
    assert no_files_soon(work_folder)
    assert server.queue.counts()["waiting"] == 0


def test_serving_beyond_this_machine_needs_a_token(tiny_model, tmp_path, capsys):
    from EoFormerSegmentationLib.server_access import is_loopback

    assert is_loopback("127.0.0.1") and is_loopback("localhost") and is_loopback("::1")
    assert not is_loopback("0.0.0.0") and not is_loopback("::") and not is_loopback("10.0.0.7")
    assert main(["serve", "--host", "0.0.0.0", "--model", str(tiny_model)]) == 2
    assert "--token-file" in capsys.readouterr().err
    short = tmp_path / "token"
    short.write_text("short\n")
    assert main(["serve", "--host", "0.0.0.0", "--token-file", str(short)]) == 2
    assert "too short" in capsys.readouterr().err


def test_serve_without_the_server_packages_names_the_extra(monkeypatch, capsys):
    from EoFormerSegmentationLib.cli import serve

    monkeypatch.setattr(serve, "server_packages_missing", lambda: ["fastapi", "uvicorn"])
    assert main(["serve"]) == 2
    assert 'pip install -e ".[server]"' in capsys.readouterr().err


def test_the_engine_and_the_client_import_no_server_package():
    code = (
        "import sys, EoFormerSegmentationLib.engine, EoFormerSegmentationLib.jobs, "
        "EoFormerSegmentationLib.remote, EoFormerSegmentationLib.server_access, "
        "EoFormerSegmentationLib.cli\n"
        "loaded = [m for m in ('fastapi', 'uvicorn', 'starlette', 'python_multipart') "
        "if m in sys.modules]\n"
        "assert not loaded, loaded"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_the_client_explains_a_server_that_is_not_there(tmp_path):
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    with pytest.raises(ServerError, match="connection refused"):
        ServerClient(f"http://127.0.0.1:{port}").health()
    with pytest.raises(ServerError, match="not a server address"):
        ServerClient("ftp://example.org")


def test_a_remote_segmentation_writes_the_label_map_and_report(serve, small_case, tmp_path):
    server = serve(token=TOKEN)
    events = []
    run = RemoteSegmentation(
        ServerClient(server.url, TOKEN),
        small_case,
        {"output_format": "nii.gz", "uncertainty": True},
        {
            "segmentation.nii.gz": tmp_path / "result.nii.gz",
            "report.json": tmp_path / "report.json",
            "uncertainty.nii.gz": tmp_path / "uncertainty.nii.gz",
        },
        onProgress=lambda fraction, message: events.append(fraction),
        onExit=lambda finished: events.append("exit"),
    )
    run.start()
    run.wait(120)
    assert run.returnCode == 0, run.failureMessage()
    assert events[-1] == "exit" and events[:-1] == sorted(events[:-1])
    label = sitk.ReadImage(str(tmp_path / "result.nii.gz"))
    assert label.GetSize() == sitk.ReadImage(str(small_case["t1ce"])).GetSize()
    assert "uncertainty" in json.loads((tmp_path / "report.json").read_text())
    assert sorted(path.name for path in tmp_path.glob("*.zip")) == []


def test_a_remote_segmentation_refuses_an_upload_over_the_servers_limit(
    serve, small_case, tmp_path
):
    server = serve(max_upload_mb=0.001)
    run = RemoteSegmentation(
        ServerClient(server.url), small_case, {}, {"report.json": tmp_path / "report.json"}
    )
    run.start()
    run.wait(60)
    assert run.returnCode == 1
    assert "the EoFormer server accepts 0.001 MB" in run.failureMessage()
    assert run.jobId is None
