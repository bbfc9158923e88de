"""Fixtures of the Slicer module tests: the stand-in ``slicer``, a Qt application, a clean scene,
a private EoFormer folder, a ``PythonSlicer`` launcher and a tiny random-weight model.

The stand-in lives in ``standin/`` (``slicer``, ``qt``, ``ctk``, ``SampleData``); it is put
first on ``sys.path`` here, before anything imports ``slicer``.
"""

from __future__ import annotations

import os
import stat
import sys
import types
from pathlib import Path

import pytest

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")


from slicer_module_helpers import MODULE_FILE, MODULE_FOLDER, STANDIN, TINY_MODEL_CONFIG


def _protect_none_from_pyside_refcount_bug() -> None:
    """Give ``None`` a very large reference count (Python < 3.12, where it is not immortal).

    PySide6 releases one reference to ``None`` too many in some widget calls; after a few
    thousand stand-in widget refreshes ``None``'s count reaches zero and the interpreter aborts
    (``none_dealloc``) in the middle of an unrelated test. Real Slicer (PythonQt) is not
    affected; the tests must not be either.
    """
    if sys.version_info < (3, 12):
        import ctypes

        ctypes.c_ssize_t.from_address(id(None)).value += 1 << 40


_protect_none_from_pyside_refcount_bug()

for _path in (str(MODULE_FOLDER), str(STANDIN)):
    if _path in sys.path:
        sys.path.remove(_path)
    sys.path.insert(0, _path)
# "Testing/slicer" (this folder) could have been imported as a namespace package "slicer"
if "slicer" in sys.modules and not hasattr(sys.modules["slicer"], "mrmlScene"):
    del sys.modules["slicer"]


@pytest.fixture(scope="session")
def qapp(tmp_path_factory):
    """The Qt application (offscreen) that timers and widgets need; its settings (what
    ``qt.QSettings()`` reads and writes, Slicer's user settings) live in a temporary folder."""
    from PySide6.QtCore import QSettings
    from PySide6.QtWidgets import QApplication

    application = QApplication.instance() or QApplication([])
    application.setOrganizationName("EoFormerTests")
    application.setApplicationName("SlicerStandIn")
    QSettings.setDefaultFormat(QSettings.IniFormat)
    QSettings.setPath(
        QSettings.IniFormat, QSettings.UserScope, str(tmp_path_factory.mktemp("settings"))
    )
    return application


@pytest.fixture(autouse=True)
def clean_settings(qapp):
    """No application setting carries over from one test to the next."""
    from PySide6.QtCore import QSettings

    QSettings().clear()
    yield
    QSettings().clear()


SUPPORTED_RELEASES = ((5, 8), (5, 10), (5, 12))


@pytest.fixture(params=SUPPORTED_RELEASES, ids=lambda release: "Slicer {}.{}".format(*release))
def slicer_release(request, module, monkeypatch):
    """Run a test as each supported Slicer release: ``slicer.app`` reports the version, and
    before 5.12 ``import slicer.packaging`` fails as it does there."""
    import slicer

    major, minor = request.param
    monkeypatch.setattr(slicer.app, "majorVersion", major)
    monkeypatch.setattr(slicer.app, "minorVersion", minor)
    if (major, minor) < (5, 12):
        monkeypatch.setitem(sys.modules, "slicer.packaging", None)
        monkeypatch.delattr(slicer, "packaging", raising=False)
    return request.param


@pytest.fixture(scope="session")
def module(qapp):
    """The module file imported against the stand-in, registered as ``slicer.modules.eoformersegmentation``."""
    import slicer

    assert Path(slicer.__file__).resolve().is_relative_to(STANDIN), slicer.__file__
    import EoFormerSegmentation

    slicer.modules.eoformersegmentation = types.SimpleNamespace(path=str(MODULE_FILE))
    return EoFormerSegmentation


@pytest.fixture
def scene(module):
    """An empty scene and no recorded dialogs."""
    import slicer

    slicer.mrmlScene.Clear(1)
    slicer.util._messages.clear()
    slicer.util._confirmAnswers.clear()
    yield slicer.mrmlScene
    slicer.mrmlScene.Clear(1)


@pytest.fixture
def eoformer_home(tmp_path, monkeypatch) -> Path:
    """A private ``EOFORMER_HOME`` (user models and saved training cases)."""
    home = tmp_path / "eoformer-home"
    monkeypatch.setenv("EOFORMER_HOME", str(home))
    return home


@pytest.fixture(scope="session")
def python_slicer(tmp_path_factory) -> Path:
    """A ``PythonSlicer`` on PATH that, like Slicer's launcher, starts Python as a child
    process (it does not exec), so that cancelling must stop the whole process group.

    Its Python sees only what Slicer's Python would hold: the packages Slicer ships, torch and
    ``Resources/requirements.txt`` (see ``slicer_python_environment``).
    """
    from slicer_python_environment import write_sitecustomize

    folder = tmp_path_factory.mktemp("slicer-bin")
    hiding = folder / "slicer-python"
    write_sitecustomize(hiding)
    launcher = folder / "PythonSlicer"
    launcher.write_text(
        f'#!/bin/sh\nPYTHONPATH="{hiding}${{PYTHONPATH:+:$PYTHONPATH}}" "{sys.executable}" "$@"\n'
        "exit $?\n",
        encoding="utf-8",
    )
    launcher.chmod(launcher.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
    previous = os.environ.get("PATH", "")
    os.environ["PATH"] = f"{folder}{os.pathsep}{previous}"
    yield launcher
    os.environ["PATH"] = previous


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory) -> Path:
    """A random-weight EoFormer checkpoint with reduced widths, written by ``save_checkpoint``."""
    import torch
    from EoFormerSegmentationLib.models import save_checkpoint
    from EoFormerSegmentationLib.network.eoformer import EoFormer

    torch.manual_seed(0)
    model = EoFormer(**TINY_MODEL_CONFIG)
    path = tmp_path_factory.mktemp("models") / "tiny_random.pt"
    save_checkpoint(path, model, {"name": "tiny_random", "description": "random weights for tests"})
    return path
