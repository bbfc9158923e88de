"""The engine's Python packages in Slicer: checked by version, installed without pip touching
the CUDA torch or Slicer's SimpleITK, on each supported Slicer release, with the panel locked
and the steps logged while the installation runs."""

from __future__ import annotations

import sys
import types
from pathlib import Path

import pytest
from EoFormerSegmentationLib import dependency_handler
from module_panel import open_module_panel
from slicer_module_helpers import MODULE_FOLDER, load_sample, process_events

REQUIREMENTS = str(MODULE_FOLDER / "Resources" / "requirements.txt")

CURRENT = {
    # every requirement installed in a recent version, a CUDA torch, Slicer's SimpleITK
    **{r.name: "99.0" for r in dependency_handler.read_requirements(REQUIREMENTS)},
    "monai": "1.4.0",
    "nibabel": "5.2.1",
    "torch": "2.5.1+cu121",
    "SimpleITK": "2.4.0",
}


@pytest.fixture
def installed(monkeypatch):
    """The distributions the check sees (name -> version); edit it in a test."""
    versions = dict(CURRENT)
    monkeypatch.setattr(dependency_handler, "installed_version", versions.get)
    monkeypatch.setattr(
        dependency_handler.requirement_problems,
        "__defaults__",
        (versions.get,),
    )
    monkeypatch.setattr(dependency_handler.constraint_lines, "__defaults__", (versions.get,))
    return versions


@pytest.fixture
def pytorch_utils(module, monkeypatch, installed):
    """A PyTorch Utils module that "installs" the torch it is asked for."""
    import slicer

    calls = []

    class PyTorchUtilsLogic:
        def installTorch(self, askConfirmation=False, torchVersionRequirement=None, **options):
            calls.append(
                {"askConfirmation": askConfirmation, "requirement": torchVersionRequirement}
            )
            installed["torch"] = "2.6.0+cu124"
            return object()

    monkeypatch.setitem(
        sys.modules, "PyTorchUtils", types.SimpleNamespace(PyTorchUtilsLogic=PyTorchUtilsLogic)
    )
    monkeypatch.setattr(slicer.modules, "pytorchutils", types.SimpleNamespace(), raising=False)
    return calls


def test_an_old_torch_or_monai_left_by_another_extension_counts_as_missing(
    module, installed, eoformer_home
):
    logic = module.EoFormerSegmentationLogic()
    assert logic.missingDependencies(REQUIREMENTS) == []
    installed["torch"] = "2.1.2+cpu"  # imports fine, but has no torch.amp.GradScaler("cuda")
    installed["monai"] = "1.2.0"
    del installed["nibabel"]
    assert logic.missingDependencies(REQUIREMENTS) == [
        "torch 2.1.2+cpu is too old (2.3 or newer needed)",
        "monai 1.2.0 is too old (1.3 or newer needed)",
        "nibabel is not installed",
    ]


def test_versions_compare_by_release_numbers():
    assert dependency_handler.version_at_least("2.3.0+cpu", "2.3")
    assert dependency_handler.version_at_least("2.10.0", "2.3")
    assert not dependency_handler.version_at_least("2.2.9", "2.3")
    assert not dependency_handler.version_at_least("1.3rc1", "1.4")


def test_requirements_leave_out_what_slicer_ships_and_torch():
    names = {requirement.name for requirement in dependency_handler.read_requirements(REQUIREMENTS)}
    assert "monai" in names
    assert not names & {"torch", "SimpleITK", "scipy", "numpy", "slicerio"}


def test_old_torch_is_upgraded_through_pytorch_utils_and_pip_never_touches_it(
    module, slicer_release, installed, pytorch_utils, eoformer_home
):
    import slicer

    installed["torch"] = "2.0.1+cu118"
    slicer.util._pipInstalls.clear()
    log = []
    logic = module.EoFormerSegmentationLogic()
    logic.installDependencies(REQUIREMENTS, onLog=log.append)

    assert pytorch_utils == [{"askConfirmation": False, "requirement": ">=2.3"}]
    if slicer_release >= (5, 12):
        import slicer.packaging

        ensured = slicer.packaging._ensured[-1]
        assert "monai>=1.3" in ensured["requirements"]
        assert {"torch", "SimpleITK"} <= set(ensured["skip_packages"])
        # the torch that PyTorch Utils chose and Slicer's SimpleITK are pinned
        assert "torch==2.6.0+cu124" in ensured["constraints"]
        assert "SimpleITK==2.4.0" in ensured["constraints"]
        assert ensured["requester"] == "EoFormer" and ensured["prompt_install"] is False
        assert slicer.util._pipInstalls == []
    else:
        (arguments,) = slicer.util._pipInstalls
        assert "monai>=1.3" in arguments
        assert not any(argument.startswith(("torch", "SimpleITK")) for argument in arguments)
        assert "--constraint" in arguments
        pins = slicer.util._pipConstraints[-1].split()
        assert "torch==2.6.0+cu124" in pins and "SimpleITK==2.4.0" in pins
        # the constraints file is a temporary file: gone after the installation
        assert not Path(arguments[arguments.index("--constraint") + 1]).exists()
    assert any("PyTorch Utils" in line for line in log) and "Installation finished." in log


def test_slicer_5_12_always_lets_pip_ensure_check_the_requirements(
    module, scene, installed, eoformer_home, monkeypatch
):
    """Nothing missing by our check: Apply still asks slicer.packaging.pip_ensure (it prompts
    the user itself when it finds something missing)."""
    import slicer
    import slicer.packaging

    panel, _parent = open_module_panel(module)
    load_sample()
    process_events()
    monkeypatch.setattr(panel.logic, "startSegmentation", lambda *args, **kwargs: None)
    slicer.packaging._ensured.clear()
    panel.ensureDependencies()
    (ensured,) = slicer.packaging._ensured
    assert ensured["prompt_install"] is True and "torch" in ensured["skip_packages"]
    panel.cleanup()


def test_apply_and_finetune_are_locked_and_the_steps_logged_while_installing(
    module, scene, installed, pytorch_utils, eoformer_home, monkeypatch
):
    import slicer

    panel, _parent = open_module_panel(module)
    load_sample()
    process_events()
    installed["torch"] = "2.0.1"
    states = []
    original = slicer.util.pip_install

    def pip_install(requirements):
        states.append((panel.ui.applyButton.isEnabled(), panel.ui.fineTuneButton.isEnabled()))
        return original(requirements)

    monkeypatch.setattr(slicer.util, "pip_install", pip_install)
    monkeypatch.setattr(slicer.app, "minorVersion", 10)
    monkeypatch.setitem(sys.modules, "slicer.packaging", None)
    assert panel.ui.applyButton.isEnabled()
    assert panel.ensureDependencies()
    assert states == [(False, False)]
    log = panel.ui.logTextEdit.toPlainText()
    assert "Installing PyTorch with PyTorch Utils (torch>=2.3)" in log
    assert "Installing monai>=1.3" in log and "Installation finished." in log
    assert panel.ui.applyButton.isEnabled()
    panel.cleanup()
