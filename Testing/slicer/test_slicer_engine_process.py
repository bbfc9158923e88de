"""The background process wrapper: progress and error lines, exit codes, and Cancel stopping the
whole process tree behind Slicer's ``PythonSlicer`` launcher."""

from __future__ import annotations

import textwrap
import time

import pytest
from slicer_module_helpers import living_processes_in_group, pump_until

REPORTING_SCRIPT = textwrap.dedent(
    """
    import json, sys
    print("EOFORMER-PROGRESS 0.25 reading images", file=sys.stderr, flush=True)
    print(json.dumps({"progress": 0.5, "message": "iteration 1/2, loss 0.5"}), flush=True)
    print("plain output", flush=True)
    print("eoformer segment: error: t1.nrrd: the image is empty", file=sys.stderr, flush=True)
    sys.exit(2)
    """
)

SLEEPING_SCRIPT = textwrap.dedent(
    """
    import signal, sys, time
    if "--ignore-term" in sys.argv:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
    print("started", flush=True)
    time.sleep(120)
    """
)


def run_script(module, launcher, script, *arguments, progress=None, log=None):
    outcomes = []
    process = module.EngineProcess(
        [str(launcher), "-c", script, *arguments],
        onProgress=None if progress is None else (lambda f, m: progress.append((f, m))),
        onLog=None if log is None else log.append,
        onExit=outcomes.append,
    )
    process.start()
    return process, outcomes


def test_progress_and_error_lines_are_told_apart(module, qapp, python_slicer):
    progress, log = [], []
    process, outcomes = run_script(
        module, python_slicer, REPORTING_SCRIPT, progress=progress, log=log
    )
    pump_until(lambda: outcomes, timeout_seconds=60)
    assert progress == [(0.25, "reading images"), (0.5, "iteration 1/2, loss 0.5")]
    assert log == ["plain output", "eoformer segment: error: t1.nrrd: the image is empty"]
    assert process.returnCode == 2 and not process.cancelled
    assert process.failureMessage() == "t1.nrrd: the image is empty"


def test_unexpected_failures_report_the_exit_code_and_the_last_lines(module, qapp, python_slicer):
    process, outcomes = run_script(module, python_slicer, "import sys; print('boom'); sys.exit(3)")
    process.wait(timeoutSeconds=60)
    assert outcomes == [process] and process.returnCode == 3
    assert process.failureMessage().startswith("The EoFormer engine stopped with exit code 3.")
    assert process.failureMessage().endswith("boom")


@pytest.mark.parametrize("ignore_terminate", [False, True], ids=["polite", "stubborn"])
def test_cancel_stops_the_launcher_and_the_python_it_started(
    module, qapp, python_slicer, ignore_terminate
):
    arguments = ["--ignore-term"] if ignore_terminate else []
    process, outcomes = run_script(module, python_slicer, SLEEPING_SCRIPT, *arguments)
    pump_until(lambda: process.outputLines, timeout_seconds=60)
    cancelled_at = time.monotonic()
    process.cancel()
    pump_until(lambda: outcomes, timeout_seconds=30)
    elapsed = time.monotonic() - cancelled_at
    assert process.cancelled and process.finished
    if ignore_terminate:
        assert process.KILL_GRACE_SECONDS <= elapsed < process.KILL_GRACE_SECONDS + 3
    else:
        assert elapsed < 2
    assert living_processes_in_group(process._process.pid) == []
