"""The module's "Server" processing, through the stand-in, against a test server on a free
loopback port: the same segments as on this computer, progress and Cancel, and clear messages
with the scene left as it was when the server refuses or is gone."""

from __future__ import annotations

import socket
import sys
import threading
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("fastapi")
pytest.importorskip("uvicorn")

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "engine"))

from engine_cases import write_case  # noqa: E402
from module_panel import open_module_panel  # noqa: E402
from server_cases import blocking_runner, files_under, start_server  # noqa: E402
from slicer_module_helpers import load_case_volumes, process_events, pump_until, scene_nodes  # noqa: E402

TOKEN = "slicer-test-token-0123456789"


@pytest.fixture
def small_volumes(module, scene, eoformer_home, tmp_path):
    """A small four-sequence case (48 mm cube) in the scene, named t1, t1ce, t2, flair."""
    write_case(tmp_path / "case")
    return load_case_volumes(tmp_path / "case", {role: role for role in module.SEQUENCE_ROLES})


@pytest.fixture
def serve(tiny_model, tmp_path):
    """Starts test servers (tiny model, CPU); stops them and checks they left no file."""
    from EoFormerSegmentationLib.server import ServerSettings

    work = tmp_path / "server-work"
    work.mkdir()
    servers = []

    def start(run_job=None, **settings):
        settings = ServerSettings(model_path=tiny_model, device="cpu", work_folder=work, **settings)
        servers.append(start_server(settings, run_job))
        return servers[-1]

    yield start
    for server in servers:
        server.stop()
    assert files_under(work) == []


def masks(node, reference):
    import slicer

    return [
        slicer.util.arrayFromSegmentBinaryLabelmap(node, segment_id, reference) > 0
        for segment_id in ("NCR", "ED", "ET")
    ]


def test_a_server_segmentation_gives_the_same_segments_as_this_computer(
    module, small_volumes, serve, tiny_model, python_slicer
):
    server = serve(token=TOKEN)
    logic = module.EoFormerSegmentationLogic()
    logic.setServerSettings(True, server.url, TOKEN)
    client = logic.serverClient()
    assert client.url == server.url and client.token == TOKEN

    remote = logic.segment(small_volumes, server=client, timeoutSeconds=120)
    local = logic.segment(
        small_volumes, modelPath=str(tiny_model), device="cpu", timeoutSeconds=240
    )
    t1ce = small_volumes["t1ce"]
    for served, computed in zip(
        masks(remote.segmentationNode, t1ce), masks(local.segmentationNode, t1ce)
    ):
        np.testing.assert_array_equal(served, computed)
    assert remote.volumesMl == local.volumesMl
    assert (remote.modelName, remote.modelSha256) == (local.modelName, local.modelSha256)
    segments = remote.segmentationNode.GetSegmentation()
    assert list(segments.GetSegmentIDs()) == ["NCR", "ED", "ET"]


def test_refusals_and_a_server_gone_leave_the_scene_as_it_was(module, small_volumes, serve):
    release = threading.Event()
    busy = serve(run_job=blocking_runner(release), token=TOKEN, queue_size=1)
    logic = module.EoFormerSegmentationLogic()
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        gone = f"http://127.0.0.1:{sock.getsockname()[1]}"
    try:
        first = logic.startSegmentation(small_volumes, server=module.ServerClient(busy.url, TOKEN))
        pump_until(lambda: first.jobId is not None, timeout_seconds=60)
        second = logic.startSegmentation(small_volumes, server=module.ServerClient(busy.url, TOKEN))
        pump_until(lambda: second.jobId is not None, timeout_seconds=60)
        nodes_before = scene_nodes()
        cases = {
            "wrong token": (busy.url, "not-the-token-0123456789", "refused the token"),
            "full queue": (busy.url, TOKEN, "queue is full; try again in"),
            "server gone": (gone, TOKEN, "connection refused"),
        }
        for name, (url, token, message) in cases.items():
            with pytest.raises(module.EngineError, match=message):
                logic.segment(
                    small_volumes, server=module.ServerClient(url, token), timeoutSeconds=60
                )
            assert scene_nodes() == nodes_before, name
        first.cancel()
        second.cancel()
        pump_until(lambda: first.finished and second.finished, timeout_seconds=60)
        assert first.cancelled and second.cancelled
        assert busy.queue.counts()["waiting"] == 0
        assert scene_nodes() == nodes_before
    finally:
        release.set()


@pytest.fixture
def panel(module, small_volumes):
    widget, parent = open_module_panel(module)
    process_events()
    yield widget
    widget.cleanup()
    parent.deleteLater()


def test_the_panel_segments_on_the_server_and_cancel_deletes_the_job(module, panel, serve):
    import qt
    import slicer

    server = serve(token=TOKEN)
    ui = panel.ui
    ui.processingComboBox.setCurrentIndex(1)
    ui.serverUrlLineEdit.setText(server.url)
    ui.serverTokenLineEdit.setText(TOKEN)
    settings = qt.QSettings()
    assert settings.value(module.PROCESSING_SETTING) == "server"
    assert settings.value(module.SERVER_URL_SETTING) == server.url
    assert settings.value(module.SERVER_TOKEN_SETTING) == TOKEN

    ui.testConnectionButton.click()
    pump_until(lambda: slicer.util._messages, timeout_seconds=30)
    kind, text, _options = slicer.util._messages[-1]
    assert kind == "info" and "model tiny_random on cpu" in text

    ui.applyButton.click()
    assert ui.applyButton.text() == "Cancel"
    pump_until(lambda: panel._task is None, timeout_seconds=120)
    assert ui.progressBar.format() == "Done", ui.logTextEdit.toPlainText()
    assert "Server job" in ui.logTextEdit.toPlainText()
    assert ui.resultsTable.item(4, 1).text() == "cpu"

    # Cancel while the server holds the job: the job is deleted, the scene unchanged
    release = threading.Event()
    held = serve(run_job=blocking_runner(release), token=TOKEN)
    ui.serverUrlLineEdit.setText(held.url)
    nodes_before = scene_nodes()
    try:
        ui.applyButton.click()
        task = panel._task
        pump_until(lambda: task.jobId is not None, timeout_seconds=60)
        ui.applyButton.click()  # the Cancel button
        pump_until(lambda: panel._task is None, timeout_seconds=30)
        assert ui.progressBar.format() == "Cancelled"
        assert scene_nodes() == nodes_before
        assert held.queue.status(task.jobId)["state"] == "cancelled"
    finally:
        release.set()
