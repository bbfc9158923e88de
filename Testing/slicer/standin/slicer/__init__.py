"""Stand-in of the ``slicer`` package for running the module's code without 3D Slicer.

Only the names that the EoFormer Segmentation module uses exist here, each with the behaviour
Slicer documents; ``Testing/slicer/test_slicer_manifest.py`` checks that every name offered is
in ``../shared/slicer-api/manifest.json``. ``app``, ``mrmlScene`` and ``modules`` exist as in
the application.
"""

import tempfile as _tempfile
import types as _types
from pathlib import Path as _Path

from ._mrml import (
    vtkMRMLLabelMapVolumeNode,
    vtkMRMLNode,
    vtkMRMLScalarVolumeDisplayNode,
    vtkMRMLScalarVolumeNode,
    vtkMRMLScene,
    vtkMRMLScriptedModuleNode,
    vtkMRMLSegmentationDisplayNode,
    vtkMRMLSegmentationNode,
    vtkMRMLSliceCompositeNode,
    vtkMRMLSliceNode,
    vtkMRMLSubjectHierarchyNode,
    vtkMRMLVolumeNode,
    vtkSegment,
    vtkSegmentation,
    vtkSlicerSegmentationsModuleLogic,
    vtkSlicerTerminologiesModuleLogic,
)
from ._widgets import qMRMLNodeComboBox, qMRMLWidget

__all__ = [
    "app",
    "mrmlScene",
    "modules",
    "util",
    "qMRMLNodeComboBox",
    "qMRMLWidget",
    "vtkMRMLLabelMapVolumeNode",
    "vtkMRMLNode",
    "vtkMRMLScalarVolumeDisplayNode",
    "vtkMRMLScalarVolumeNode",
    "vtkMRMLScene",
    "vtkMRMLScriptedModuleNode",
    "vtkMRMLSegmentationDisplayNode",
    "vtkMRMLSegmentationNode",
    "vtkMRMLSliceCompositeNode",
    "vtkMRMLSliceNode",
    "vtkMRMLSubjectHierarchyNode",
    "vtkMRMLVolumeNode",
    "vtkSegment",
    "vtkSegmentation",
    "vtkSlicerSegmentationsModuleLogic",
    "vtkSlicerTerminologiesModuleLogic",
]


class qSlicerApplication:
    """``slicer.app``: paths and the few application services the module uses."""

    def __init__(self, folder: _Path):
        self.temporaryPath = str(folder / "temp")
        self.cachePath = str(folder / "cache")
        self.slicerUserSettingsFilePath = str(folder / "settings" / "Slicer.ini")
        # the release the tests run as (conftest's slicer_release fixture changes it)
        self.majorVersion = 5
        self.minorVersion = 12
        _Path(self.temporaryPath).mkdir(parents=True, exist_ok=True)
        self._connections = []

    def connect(self, signal, slot):
        """QObject.connect with a PythonQt signature string, e.g. "startupCompleted()"."""
        self._connections.append((signal, slot))
        return True

    def processEvents(self):
        from PySide6.QtWidgets import QApplication

        QApplication.processEvents()


_applicationFolder = _Path(_tempfile.mkdtemp(prefix="slicer-standin-"))
app = qSlicerApplication(_applicationFolder)
mrmlScene = vtkMRMLScene()
_segmentationsLogic = vtkSlicerSegmentationsModuleLogic()
_terminologiesLogic = vtkSlicerTerminologiesModuleLogic()
modules = _types.SimpleNamespace(
    segmentations=_types.SimpleNamespace(logic=lambda: _segmentationsLogic),
    terminologies=_types.SimpleNamespace(logic=lambda: _terminologiesLogic),
)

from . import util  # noqa: E402  (util needs the names above)
