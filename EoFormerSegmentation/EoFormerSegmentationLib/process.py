"""The engine's background process, as the 3D Slicer module runs it.

One run of ``python -m EoFormerSegmentationLib <command>`` (the ``eoformer`` command line) with
Slicer's Python, its output read without blocking Slicer's GUI, progress lines told apart from
the log, and a Cancel that stops the whole process tree. Needs Qt (Slicer's ``qt`` module) only
for its polling timer; everything else is the standard library.
"""

from __future__ import annotations

import json
import logging
import os
import queue
import re
import signal
import subprocess
import threading
import time
from typing import Callable, Dict, List, Optional

__all__ = ["EngineProcess", "engine_environment", "wait_until_finished"]


def wait_until_finished(task, timeout_seconds: Optional[float], what: str) -> None:
    """Poll a background task (``poll()``, ``finished``, ``cancelled``, ``cancel()``) until it
    has ended; for scripts and tests, the GUI polls with a timer.

    Raises:
        TimeoutError: still running after ``timeout_seconds`` (the task is cancelled first
            and waited for).
    """
    deadline = None if timeout_seconds is None else time.monotonic() + timeout_seconds
    while not task.finished:
        task.poll()
        if task.finished:
            break
        if deadline is not None and time.monotonic() > deadline and not task.cancelled:
            task.cancel()
            wait_until_finished(task, None, what)
            raise TimeoutError(f"{what} did not finish within {timeout_seconds:g} s")
        time.sleep(0.05)


def engine_environment(module_folder: str, eoformer_home: str) -> Dict[str, str]:
    """Variables for the engine process (and for it only, never for Slicer's own process).

    Args:
        module_folder: the folder that holds ``EoFormerSegmentationLib`` (put first on
            ``PYTHONPATH``).
        eoformer_home: the folder of the user's models and saved training cases
            (``EOFORMER_HOME``).

    Returns:
        ``PYTHONPATH``, ``EOFORMER_HOME``, unbuffered output, and UTF-8 for the output and the
        file names (``PYTHONIOENCODING``, ``PYTHONUTF8``): on Windows, Python otherwise writes
        the console code page, which mangles non-ASCII patient or folder names in the log.
    """
    python_path = os.environ.get("PYTHONPATH", "")
    return {
        "PYTHONPATH": module_folder + (os.pathsep + python_path if python_path else ""),
        "EOFORMER_HOME": eoformer_home,
        "PYTHONUNBUFFERED": "1",
        "PYTHONIOENCODING": "utf-8",
        "PYTHONUTF8": "1",
    }


class EngineProcess:
    """One run of the ``eoformer`` command line in a background process.

    The process gets its own process group (session), so that Cancel also stops the Python
    interpreter that Slicer's ``PythonSlicer`` launcher starts as its child. Its output is read
    by a thread and handled on the main thread by a ``qt.QTimer``: progress lines
    (``EOFORMER-PROGRESS <fraction> <message>``, or JSON lines ``{"progress": <fraction>,
    "message": ...}``) go to ``onProgress``, every other line to ``onLog``, and
    ``eoformer <command>: error: <message>`` is kept as the user-facing error.

    Args:
        arguments: the full command line (executable first).
        environment: variables added to the current environment.
        onProgress: called with (fraction 0-1, message).
        onLog: called with each output line.
        onExit: called once with this object when the process has ended and its output is read.
    """

    POLL_INTERVAL_MS = 100
    KILL_GRACE_SECONDS = 4.0
    PROGRESS_PATTERN = re.compile(r"^EOFORMER-PROGRESS\s+([-+0-9.eE]+)\s*(.*)$")
    ERROR_PATTERN = re.compile(r"^eoformer [\w-]+: error: (.*)$")

    def __init__(
        self,
        arguments: List[str],
        environment: Optional[Dict[str, str]] = None,
        onProgress: Optional[Callable[[float, str], None]] = None,
        onLog: Optional[Callable[[str], None]] = None,
        onExit: Optional[Callable[[EngineProcess], None]] = None,
    ):
        self.arguments = [str(argument) for argument in arguments]
        self.environment = dict(environment or {})
        self.onProgress = onProgress
        self.onLog = onLog
        self.onExit = onExit
        self.returnCode: Optional[int] = None
        self.userError = ""
        self.outputLines: List[str] = []
        self.cancelled = False
        self.finished = False
        self._process = None
        self._lines: queue.Queue[Optional[str]] = queue.Queue()
        self._readerDone = False
        self._cancelTime: Optional[float] = None
        self._killed = False
        self._timer = None

    def start(self) -> None:
        """Start the process and the polling timer."""
        environment = os.environ.copy()
        environment.update(self.environment)
        options = dict(
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=environment,
            text=True,
            encoding="utf-8",
            errors="replace",
            bufsize=1,
        )
        if os.name == "nt":
            options["creationflags"] = (
                subprocess.CREATE_NEW_PROCESS_GROUP | subprocess.CREATE_NO_WINDOW
            )
        else:
            options["start_new_session"] = True
        logging.info("EoFormer: " + subprocess.list2cmdline(self.arguments))
        self._process = subprocess.Popen(self.arguments, **options)
        threading.Thread(target=self._readOutput, daemon=True).start()
        import qt  # PythonQt: exists only inside 3D Slicer

        self._timer = qt.QTimer()
        self._timer.setInterval(self.POLL_INTERVAL_MS)
        self._timer.timeout.connect(self.poll)
        self._timer.start()

    def isRunning(self) -> bool:
        """True until the process has ended and all its output was handled."""
        return self._process is not None and not self.finished

    def cancel(self) -> None:
        """Ask the process to stop (SIGTERM / taskkill); it is killed if still alive after
        :attr:`KILL_GRACE_SECONDS`."""
        if not self.isRunning() or self.cancelled:
            return
        self.cancelled = True
        self._cancelTime = time.monotonic()
        self._signalProcessGroup(force=os.name == "nt")

    def wait(self, timeoutSeconds: Optional[float] = None) -> None:
        """Block until the process has ended (for scripts and tests; the GUI uses the timer).

        Raises:
            TimeoutError: still running after ``timeoutSeconds`` (the process is cancelled).
        """
        wait_until_finished(self, timeoutSeconds, "the engine")

    def poll(self) -> None:
        """Handle new output; finish when the process has ended. Called by the timer."""
        if self.finished or self._process is None:
            return
        while True:
            try:
                line = self._lines.get_nowait()
            except queue.Empty:
                break
            if line is None:
                self._readerDone = True
            else:
                self._handleLine(line)
        exited = self._process.poll() is not None
        if self.cancelled and not self._killed:
            if time.monotonic() - self._cancelTime > self.KILL_GRACE_SECONDS:
                # whatever ignored the polite request (the interpreter that the launcher
                # started may outlive the launcher) is killed
                self._killed = True
                self._signalProcessGroup(force=True)
        if exited and self._readerDone:
            self._finish()

    def _readOutput(self) -> None:
        try:
            for line in self._process.stdout:
                self._lines.put(line.rstrip("\r\n"))
        finally:
            self._lines.put(None)

    @classmethod
    def parseProgress(cls, line: str) -> Optional[tuple]:
        """(fraction, message) of a progress line, or None for any other line."""
        progressMatch = cls.PROGRESS_PATTERN.match(line)
        if progressMatch:
            fraction, message = progressMatch.group(1), progressMatch.group(2).strip()
        elif line.startswith("{") and '"progress"' in line:
            try:
                record = json.loads(line)
                fraction, message = record["progress"], str(record.get("message", ""))
            except (ValueError, KeyError, TypeError):
                return None
        else:
            return None
        try:
            return min(max(float(fraction), 0.0), 1.0), message
        except (TypeError, ValueError):
            return None

    def _handleLine(self, line: str) -> None:
        self.outputLines.append(line)
        progress = self.parseProgress(line)
        if progress is not None:
            if self.onProgress:
                self.onProgress(*progress)
            return
        errorMatch = self.ERROR_PATTERN.match(line)
        if errorMatch:
            self.userError = errorMatch.group(1).strip()
        if self.onLog:
            self.onLog(line)

    def _signalProcessGroup(self, force: bool) -> None:
        if self._process is None:
            return
        if os.name == "nt":
            subprocess.run(
                ["taskkill", "/T", "/F", "/PID", str(self._process.pid)],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                creationflags=subprocess.CREATE_NO_WINDOW,
            )
            return
        try:
            os.killpg(self._process.pid, signal.SIGKILL if force else signal.SIGTERM)
        except (ProcessLookupError, PermissionError):
            pass

    def _finish(self) -> None:
        if self._timer is not None:
            self._timer.stop()
        self.returnCode = self._process.returncode
        self._process.stdout.close()
        self.finished = True
        if self.onExit:
            self.onExit(self)

    def failureMessage(self) -> str:
        """The user-facing error, or the last lines of output for an unexpected failure."""
        if self.userError:
            return self.userError
        tail = "\n".join(self.outputLines[-15:])
        message = f"The EoFormer engine stopped with exit code {self.returnCode}."
        return message + (f"\n\n{tail}" if tail else "")
