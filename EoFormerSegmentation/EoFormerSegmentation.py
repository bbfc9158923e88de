"""EoFormer Segmentation: brain-tumor segmentation from four MRI sequences in 3D Slicer.

The module is thin: it writes the four input volumes to a temporary folder, runs the shared
engine (``python -m EoFormerSegmentationLib segment``, the same code as the ``eoformer``
command line) in a background process with Slicer's Python
(``EoFormerSegmentationLib.process``), and writes the result back as three non-overlapping
segments, the BraTS sub-regions (Necrotic tumor core, Edema, Enhancing tumor), which the
Segment Editor edits without one segment erasing another. The overlapping regions that BraTS
evaluates (whole tumor, tumor core, enhancing tumor) are reported as volumes. Fine-tuning
runs ``eoformer finetune`` the same way. The packages the engine needs are checked by
version (``EoFormerSegmentationLib.dependency_handler``).

Coordinates: Slicer nodes are in RAS; files are written by Slicer's own writers (NRRD, LPS on
disk). The engine returns a BraTS 2020 label map (1 NCR, 2 ED, 4 ET) on the T1ce grid.
"""

import contextlib
import enum
import json
import logging
import os
import re
import shutil
import sys
import tempfile
import threading
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Callable, Dict, List, Optional

import numpy as np
import qt
import vtk

import slicer
from slicer import vtkMRMLScalarVolumeNode, vtkMRMLSegmentationNode
from slicer.i18n import tr as _
from slicer.i18n import translate
from slicer.parameterNodeWrapper import WithinRange, parameterNodeWrapper
from slicer.ScriptedLoadableModule import (
    ScriptedLoadableModule,
    ScriptedLoadableModuleLogic,
    ScriptedLoadableModuleTest,
    ScriptedLoadableModuleWidget,
)
from slicer.util import VTKObservationMixin

# The engine package lives next to this file; its labels and models modules need only numpy
# and the standard library, so they import before PyTorch is installed.
from EoFormerSegmentationLib import dependency_handler as eoformerDependencies
from EoFormerSegmentationLib import labels as eoformerLabels
from EoFormerSegmentationLib import models as eoformerModels
from EoFormerSegmentationLib import uncertainty as eoformerUncertainty
from EoFormerSegmentationLib.process import EngineProcess, engine_environment
from EoFormerSegmentationLib.remote import RemoteSegmentation, ServerClient, ServerError

__all__ = [
    "EoFormerSegmentation",
    "EoFormerSegmentationParameterNode",
    "EoFormerSegmentationWidget",
    "EoFormerSegmentationLogic",
    "EoFormerSegmentationTest",
    "BrainExtraction",
    "ComputeDevice",
    "EngineProcess",
    "EngineError",
    "TaskOutcome",
    "SegmentationResult",
    "FineTuneResult",
    "SEQUENCE_ROLES",
    "registerSampleData",
]

SEQUENCE_ROLES = ("t1", "t1ce", "t2", "flair")
"""Input roles, in the engine's channel order."""

SEQUENCE_LABELS = {"t1": "T1", "t1ce": "T1ce", "t2": "T2", "flair": "FLAIR"}

SEQUENCE_KEYWORDS = {
    "t1": ("t1", "t1n", "t1w"),
    "t1ce": ("t1ce", "t1c", "t1gd", "post", "t1post"),
    "t2": ("t2", "t2w"),
    "flair": ("flair", "t2f", "t2flair"),
}
"""Volume-name tokens that identify each sequence (lower case; see sequenceForVolumeName)."""

SAMPLE_CATEGORY = "EoFormer"
SAMPLE_NAME = "EoFormerGlioma1"
SAMPLE_CASE = "TCGA-FG-6692"

SAMPLE_SHA256 = {
    # the files in Resources/SampleData (checked by Testing/slicer/test_slicer_sample_data.py)
    "TCGA-FG-6692_t1.nrrd": "9ec73ff323b2b9cc7bf348cfba83f1034621cffbefc01c0290d58805ec818c46",
    "TCGA-FG-6692_t1ce.nrrd": "4a9268de4dd90f5e7cb68cc391f65cac409bfafd021c17b6db9155ae8f7b81e7",
    "TCGA-FG-6692_t2.nrrd": "92dba1f1e11da9cf119433d8cdcd06378092fc651181b67613023948a11902cf",
    "TCGA-FG-6692_flair.nrrd": "1bdf6ce57473515cee37ac2431e2fbd6f6ffa7dd7804ca5bef4d54f637ff59b8",
    "TCGA-FG-6692_reference.seg.nrrd": "8673206353b7b1087e133a8ea568798daad72d640412d7237871383164273313",
}
"""SHA-256 of the sample files: Sample Data notices an updated extension without hashing the
files at every start."""

DATA_FOLDER_SETTING = "EoFormer/DataFolder"
"""Application setting: the folder of fine-tuned models and saved training cases."""

PROCESSING_SETTING = "EoFormer/Processing"
"""Application setting: where segmentation runs, ``local`` (this computer) or ``server``."""
SERVER_URL_SETTING = "EoFormer/ServerURL"
"""Application setting: the address of the EoFormer processing server (``eoformer serve``)."""
SERVER_TOKEN_SETTING = "EoFormer/ServerToken"
"""Application setting: the processing server's bearer token."""

SELF_TEST_ENGINE_VARIABLE = "EOFORMER_SELFTEST_ENGINE"
"""Set to 1 to make the self-test also segment the sample case with the engine."""

UNCERTAINTY_COLOR_NODE_ID = "vtkMRMLColorTableNodeIron"
"""Colour table of the uncertainty overlay: Slicer's built-in Iron (red to yellow), a warm map
that stands out on grey MRI."""

UNCERTAINTY_OVERLAY_MIN_BITS = 0.1
"""Uncertainty (bits) below which the overlay is transparent, so that decided voxels keep the
T1ce's own grey values (0.1 bits: a probability below 0.013 or above 0.987)."""

MODEL_ATTRIBUTE_NAME = "EoFormer.ModelName"
MODEL_ATTRIBUTE_SHA256 = "EoFormer.ModelSha256"

PAPER_CITATION = (
    "She D., Zhang Y., Zhang Z., Li H., Yan Z., Sun X. EoFormer: Edge-oriented Transformer for "
    "Brain Tumor Segmentation. MICCAI 2023, LNCS 14223, pp. 333-343. "
    "doi:10.1007/978-3-031-43901-8_32"
)


def slicerVersionAtLeast(major: int, minor: int) -> bool:
    """Whether this Slicer is release ``major.minor`` or newer. Every name that not all
    supported releases (5.8, 5.10, 5.12) have is used behind this guard, naming the first
    release that has it."""
    return (int(slicer.app.majorVersion), int(slicer.app.minorVersion)) >= (major, minor)


#
# EoFormerSegmentation
#


class EoFormerSegmentation(ScriptedLoadableModule):
    """Module description shown in Slicer's module panel and Help & Acknowledgement section."""

    def __init__(self, parent):
        ScriptedLoadableModule.__init__(self, parent)
        self.parent.title = _("EoFormer Segmentation")
        self.parent.categories = [translate("qSlicerAbstractCoreModule", "Segmentation")]
        self.parent.dependencies = []
        self.parent.contributors = ["EoFormer for 3D Slicer contributors (SlicerEoFormer project)"]
        self.parent.helpText = _(
            """
Segments a brain tumor (glioma) from four MRI sequences: T1, T1 after contrast (T1ce), T2 and
FLAIR, with the EoFormer network (She et al., MICCAI 2023). The result is three editable,
non-overlapping segments, the BraTS sub-regions <b>Necrotic tumor core</b>, <b>Edema</b> and
<b>Enhancing tumor</b>; the results table gives the volumes of the regions that BraTS
evaluates: whole tumor (all three), tumor core (necrotic core and enhancing tumor) and
enhancing tumor.
<ol>
<li>Load the four volumes (or <i>Sample Data</i> &gt; EoFormer &gt; EoFormerGlioma1). They are
picked from their names (t1, t1ce, t2, flair, ...) when the module opens; change any of them.</li>
<li>Press <b>Apply</b>. The work runs in the background; <b>Cancel</b> stops it and leaves the
scene as it was.</li>
<li>Correct the segments in the Segment Editor (painting one sub-region takes the voxels from
the others, as it should). The <i>Fine-tune</i> section adapts the model to your corrected
cases; saved cases are copies of the patient images, kept in the folder shown there.</li>
</ol>
Every output names the model used: the segmentation's description and attributes, the results
table and the log record the model's name and SHA-256.
<p><b>Research software, not for clinical use.</b> The results have not been validated for
diagnosis or treatment decisions.</p>
"""
        )
        self.parent.acknowledgementText = _(
            """
EoFormer network: {citation}. The module runs the EoFormer engine of this extension
(PyTorch, MONAI, SimpleITK). Sample data: TCGA glioma case TCGA-FG-6692 from The Cancer
Imaging Archive (CC BY), preprocessed with BraTS Toolkit. Not for clinical use.
"""
        ).format(citation=PAPER_CITATION)
        slicer.app.connect("startupCompleted()", registerSampleData)
        slicer.app.connect("startupCompleted()", loadTerminology)


#
# Terminology
#


def terminologyFilePath() -> Path:
    """The module's segment terminology (category, type and modifier codes of its segments)."""
    return Path(__file__).resolve().parent / "Resources" / eoformerLabels.TERMINOLOGY_FILE_NAME


def loadTerminology() -> str:
    """Load the module's terminology into Slicer, so that the terminology selector of the
    Segment Editor shows the codes of its segments. Returns the loaded context name ("" if the
    Terminologies module is not available)."""
    if not hasattr(slicer.modules, "terminologies"):
        return ""
    terminologiesLogic: slicer.vtkSlicerTerminologiesModuleLogic = (
        slicer.modules.terminologies.logic()
    )
    return terminologiesLogic.LoadTerminologyFromFile(str(terminologyFilePath()))


#
# Sample data
#


def sampleDataFolder() -> Path:
    """Folder of the sample case shipped with the module."""
    return Path(__file__).resolve().parent / "Resources" / "SampleData"


def registerSampleData() -> None:
    """Register the sample case (four MRI volumes and a reference segmentation) in Sample Data.

    The files ship with the module, so they are "downloaded" from local file URIs into
    Slicer's cache; checksums (:data:`SAMPLE_SHA256`) let the cache notice when the extension
    is updated.
    """
    import SampleData

    folder = sampleDataFolder()
    files = [
        (f"{SAMPLE_CASE}_{role}.nrrd", f"{SAMPLE_CASE}_{role}", "VolumeFile")
        for role in SEQUENCE_ROLES
    ]
    files.append(
        (f"{SAMPLE_CASE}_reference.seg.nrrd", f"{SAMPLE_CASE}_reference", "SegmentationFile")
    )
    paths = [folder / fileName for fileName, _nodeName, _fileType in files]
    if not all(path.is_file() for path in paths):
        logging.warning(f"EoFormer sample data is incomplete in {folder}; not registered")
        return
    if slicerVersionAtLeast(5, 12):
        SampleData.SampleDataLogic.registerCustomSampleDataCategory(
            SAMPLE_CATEGORY, title=_("EoFormer")
        )
    SampleData.SampleDataLogic.registerCustomSampleDataSource(
        category=SAMPLE_CATEGORY,
        sampleName=SAMPLE_NAME,
        thumbnailFileName=str(folder / f"{SAMPLE_CASE}.png"),
        uris=[path.as_uri() for path in paths],
        fileNames=[f"EoFormer-{fileName}" for fileName, _nodeName, _fileType in files],
        nodeNames=[nodeName for _fileName, nodeName, _fileType in files],
        loadFileTypes=[fileType for _fileName, _nodeName, fileType in files],
        checksums=[f"SHA256:{SAMPLE_SHA256[path.name]}" for path in paths],
    )


#
# EoFormerSegmentationParameterNode
#


class ComputeDevice(enum.Enum):
    """Where the engine runs (the value is the engine's ``--device`` argument)."""

    AUTO = "auto"
    GPU = "cuda"
    CPU = "cpu"

    def label(self) -> str:
        """Text shown in the device selector."""
        return {
            ComputeDevice.AUTO: _("Auto (GPU if available)"),
            ComputeDevice.GPU: _("GPU (CUDA)"),
            ComputeDevice.CPU: _("CPU"),
        }[self]


def processingSummary(report: dict) -> List[str]:
    """Lines for the log: the registrations and the brain extraction of an engine report."""
    processing = report.get("processing") or {}
    lines = []
    for sequence, motion in (processing.get("registration") or {}).items():
        lines.append(
            _("{sequence} registered to T1ce: {degrees:.1f} degrees, {mm:.1f} mm.").format(
                sequence=sequence.upper(),
                degrees=float(motion.get("rotation_deg", 0.0)),
                mm=float(motion.get("translation_mm", 0.0)),
            )
        )
    brain = processing.get("brain_extraction")
    if brain:
        lines.append(
            _("Brain extracted from {sequence}: {volume:.0f} mL.").format(
                sequence=str(brain.get("source", "")).upper(),
                volume=float(brain.get("brain_volume_ml", 0.0)),
            )
        )
    return lines  # the engine's warnings reach the log with its own output


class BrainExtraction(enum.Enum):
    """Skull stripping before segmentation (the value is the engine's ``--skull-strip``)."""

    AUTO = "auto"
    ON = "on"
    OFF = "off"

    def label(self) -> str:
        """Text shown in the brain-extraction selector."""
        return {
            BrainExtraction.AUTO: _("Automatic (when the scan has skull and scalp)"),
            BrainExtraction.ON: _("Always"),
            BrainExtraction.OFF: _("Never (images are skull-stripped)"),
        }[self]


@parameterNodeWrapper
class EoFormerSegmentationParameterNode:
    """The module's state, saved with the scene.

    t1Volume, t1ceVolume, t2Volume, flairVolume - the four input MRI volumes.
    outputSegmentation - segmentation that receives the three segments (None: create one).
    modelPath - checkpoint file; empty for the bundled model.
    device - where the engine runs.
    testTimeAugmentation - average mirrored predictions.
    uncertaintyMap - also compute the uncertainty map and show it over the T1ce.
    coRegister - rigidly register T1, T2 and FLAIR to the T1ce first (when off, a sequence
        is registered only if its grid differs from the T1ce's).
    skullStrip - brain extraction before segmentation.
    show3D - show the segments as surfaces in 3D.
    fineTuneSegmentation - corrected segmentation added as a training case.
    fineTuneIterations, fineTuneLearningRate - fine-tuning settings.
    fineTuneModelName - file name (without .pt) of the next fine-tuned model.
    """

    t1Volume: vtkMRMLScalarVolumeNode
    t1ceVolume: vtkMRMLScalarVolumeNode
    t2Volume: vtkMRMLScalarVolumeNode
    flairVolume: vtkMRMLScalarVolumeNode
    outputSegmentation: vtkMRMLSegmentationNode
    modelPath: str = ""
    device: ComputeDevice = ComputeDevice.AUTO
    testTimeAugmentation: bool = False
    uncertaintyMap: bool = False
    coRegister: bool = False
    skullStrip: BrainExtraction = BrainExtraction.AUTO
    show3D: bool = False
    fineTuneSegmentation: vtkMRMLSegmentationNode
    fineTuneIterations: Annotated[int, WithinRange(1, 100000)] = 100
    fineTuneLearningRate: Annotated[float, WithinRange(1e-6, 1e-2)] = 1e-4
    fineTuneModelName: str = ""


#
# Results and background processes
#


class EngineError(RuntimeError):
    """The engine failed. ``userError`` is True for bad input (a message for the user)."""

    def __init__(self, message: str, userError: bool = False):
        super().__init__(message)
        self.userError = userError


@dataclass
class SegmentationResult:
    """What a segmentation run produced.

    Attributes:
        segmentationNode: the segmentation holding the three segments.
        volumesMl: segment name -> volume in mL (from the engine's report).
        seconds: wall time of the whole run, from Apply to segments written, in seconds.
        device: the device the engine used, as it reported it.
        modelName, modelSha256: the model that produced the segments.
        report: the engine's JSON report.
        uncertaintyNode: the uncertainty map (bits, 0-1, on the T1ce grid), when asked for.
        uncertainMl: segment name -> volume of its uncertain voxels in mL (with the map).
    """

    segmentationNode: object
    volumesMl: Dict[str, float]
    seconds: float
    device: str
    modelName: str
    modelSha256: str
    report: Dict[str, object] = field(default_factory=dict)
    uncertaintyNode: object = None
    uncertainMl: Dict[str, float] = field(default_factory=dict)


@dataclass
class FineTuneResult:
    """A fine-tuned model written into the user's model folder (checkpoint and its card)."""

    modelPath: Path
    card: Dict[str, object]
    seconds: float


@dataclass
class TaskOutcome:
    """How a background run ended.

    Attributes:
        status: ``"succeeded"``, ``"failed"`` or ``"cancelled"``.
        result: :class:`SegmentationResult` or :class:`FineTuneResult` on success.
        errorMessage: what went wrong, for the user.
        userError: True when the engine rejected the input (a message, not a crash).
    """

    status: str
    result: object = None
    errorMessage: str = ""
    userError: bool = False


#
# EoFormerSegmentationWidget
#


class EoFormerSegmentationWidget(ScriptedLoadableModuleWidget, VTKObservationMixin):
    """The module panel: inputs, output, options, Apply/Cancel, results and fine-tuning."""

    def __init__(self, parent=None) -> None:
        ScriptedLoadableModuleWidget.__init__(self, parent)
        VTKObservationMixin.__init__(self)
        self.logic = None
        self._parameterNode = None
        self._parameterNodeGuiTag = None
        self._task: Optional[EngineProcess] = None
        self._taskKind = ""
        self._autoFillScheduled = False
        self._updatingModelComboBox = False
        self._installing = False
        self._uncertaintyNode = None
        self._doubtfulRegions: List[tuple] = []
        self._nextDoubtfulRegion = 0
        self._overlayOpacity = 0.5  # the opacity slider's, kept from its valueChanged signal
        self._useServer = False  # Advanced, Processing (kept from the widgets' signals)
        self._serverUrl = ""
        self._serverToken = ""

    def setup(self) -> None:
        """Build the panel from the .ui file and connect it."""
        ScriptedLoadableModuleWidget.setup(self)
        uiWidget = slicer.util.loadUI(self.resourcePath("UI/EoFormerSegmentation.ui"))
        self.layout.addWidget(uiWidget)
        self.ui = slicer.util.childWidgetVariables(uiWidget)
        uiWidget.setMRMLScene(slicer.mrmlScene)

        self.logic = EoFormerSegmentationLogic()

        self.addObserver(slicer.mrmlScene, slicer.mrmlScene.StartCloseEvent, self.onSceneStartClose)
        self.addObserver(slicer.mrmlScene, slicer.mrmlScene.EndCloseEvent, self.onSceneEndClose)
        self.addObserver(slicer.mrmlScene, slicer.mrmlScene.NodeAddedEvent, self.onNodeAdded)

        self.ui.applyButton.clicked.connect(self.onApplyButton)
        self.ui.showModelCardButton.clicked.connect(self.onShowModelCard)
        self.ui.modelComboBox.currentIndexChanged.connect(self.onModelSelected)
        self.ui.show3DButton.toggled.connect(self.onShow3DToggled)
        self.ui.uncertaintyOpacitySlider.valueChanged.connect(self.onUncertaintyOpacityChanged)
        self.ui.nextDoubtfulRegionButton.clicked.connect(self.onNextDoubtfulRegion)
        self.ui.addCaseButton.clicked.connect(self.onAddCase)
        self.ui.removeCaseButton.clicked.connect(self.onRemoveCase)
        self.ui.fineTuneButton.clicked.connect(self.onFineTuneButton)
        self.ui.useBundledModelButton.clicked.connect(self.onUseBundledModel)
        self.ui.changeDataFolderButton.clicked.connect(self.onChangeDataFolder)
        self.setupProcessing()

        self.refreshModelList()
        self.refreshFineTuneCases()
        self.initializeParameterNode()

    def setupProcessing(self) -> None:
        """Advanced, Processing: this computer or a server, filled from Slicer's settings.

        The values are kept from the widgets' change signals (Qt properties read differently
        in PythonQt and PySide) and written back to the settings at each change.
        """
        useServer, url, token = self.logic.serverSettings()
        self._useServer, self._serverUrl, self._serverToken = useServer, url, token
        self.ui.processingComboBox.addItem(_("This computer"))
        self.ui.processingComboBox.addItem(_("Server"))
        self.ui.processingComboBox.setCurrentIndex(1 if useServer else 0)
        self.ui.serverUrlLineEdit.setText(url)
        self.ui.serverTokenLineEdit.setText(token)
        self.ui.processingComboBox.currentIndexChanged.connect(self.onProcessingChanged)
        self.ui.serverUrlLineEdit.textChanged.connect(self.onServerUrlChanged)
        self.ui.serverTokenLineEdit.textChanged.connect(self.onServerTokenChanged)
        self.ui.testConnectionButton.clicked.connect(self.onTestConnection)

    def onProcessingChanged(self, index: int) -> None:
        """Segment on this computer (0) or on the server (1)."""
        if not isinstance(index, int) or index < 0:  # only the currentIndexChanged(int) overload
            return
        self._useServer = index == 1
        self._storeServerSettings()

    def onServerUrlChanged(self, text: str) -> None:
        """Keep the server's address."""
        self._serverUrl = text
        self._storeServerSettings()

    def onServerTokenChanged(self, text: str) -> None:
        """Keep the server's token."""
        self._serverToken = text
        self._storeServerSettings()

    def _storeServerSettings(self) -> None:
        self.logic.setServerSettings(self._useServer, self._serverUrl, self._serverToken)
        self.updateGUI()

    def onTestConnection(self) -> None:
        """Ask the server (in the background) whether it runs and takes the token."""
        try:
            client = ServerClient(self._serverUrl, self._serverToken, timeout_s=10.0)
        except ServerError as error:
            slicer.util.errorDisplay(str(error), windowTitle=_("EoFormer server"))
            return
        self.ui.testConnectionButton.setEnabled(False)
        self.appendLog(_("Testing the connection to {url}...").format(url=client.url))

        def onDone(health: Optional[dict], error: str) -> None:
            self.updateGUI()
            if health is None:
                self.appendLog(error)
                slicer.util.errorDisplay(error, windowTitle=_("EoFormer server not available"))
                return
            message = self.logic.describeServer(client.url, health)
            self.appendLog(message)
            slicer.util.infoDisplay(message, windowTitle=_("EoFormer server"))

        self.logic.checkServer(client, onDone)

    def cleanup(self) -> None:
        """Called when the application closes: stop a running process."""
        if self._task is not None and self._task.isRunning():
            self._task.cancel()
            self._task.wait()
        self.removeObservers()

    def enter(self) -> None:
        """Called each time the user opens this module."""
        self.initializeParameterNode()
        self.refreshModelList()
        self.refreshFineTuneCases()

    def exit(self) -> None:
        """Called each time the user opens a different module."""
        if self._parameterNode:
            self._parameterNode.disconnectGui(self._parameterNodeGuiTag)
            self._parameterNodeGuiTag = None
            self.removeObserver(self._parameterNode, vtk.vtkCommand.ModifiedEvent, self.updateGUI)

    def onSceneStartClose(self, caller, event) -> None:
        """The scene is about to close: stop the run and forget the parameter node."""
        if self._task is not None and self._task.isRunning():
            self._task.cancel()
        self.forgetDoubtfulRegions()
        self.setParameterNode(None)

    def onSceneEndClose(self, caller, event) -> None:
        """The scene was closed: start again with a fresh parameter node if shown."""
        if self.parent.isEntered:
            self.initializeParameterNode()

    def onNodeAdded(self, caller, event) -> None:
        """Fill empty input selectors once the new node is set up (its name may come later)."""
        if not self._autoFillScheduled:
            self._autoFillScheduled = True
            qt.QTimer.singleShot(0, self.autoFillInputs)

    def initializeParameterNode(self) -> None:
        """Make sure the parameter node exists and is observed; fill empty inputs."""
        self.setParameterNode(self.logic.getParameterNode())
        self.autoFillInputs()

    def setParameterNode(self, inputParameterNode) -> None:
        """Connect the GUI to ``inputParameterNode`` (None disconnects)."""
        if self._parameterNode:
            self._parameterNode.disconnectGui(self._parameterNodeGuiTag)
            self.removeObserver(self._parameterNode, vtk.vtkCommand.ModifiedEvent, self.updateGUI)
        self._parameterNode = inputParameterNode
        if self._parameterNode:
            # widgets with a "SlicerParameterName" property in the .ui are bound to the node
            self._parameterNodeGuiTag = self._parameterNode.connectGui(self.ui)
            self.addObserver(self._parameterNode, vtk.vtkCommand.ModifiedEvent, self.updateGUI)
        self.updateGUI()

    def autoFillInputs(self) -> None:
        """Fill the empty input selectors from volume names (t1, t1ce, t2, flair, ...)."""
        self._autoFillScheduled = False
        if not self._parameterNode:
            return
        current = self.currentInputVolumes()
        matches = self.logic.matchInputVolumes(self.logic.candidateInputVolumes(), current)
        for role, volumeNode in matches.items():
            setattr(self._parameterNode, role + "Volume", volumeNode)

    def currentInputVolumes(self) -> Dict[str, Optional[vtkMRMLScalarVolumeNode]]:
        """The four selected volumes by role (None where nothing is selected)."""
        if not self._parameterNode:
            return {role: None for role in SEQUENCE_ROLES}
        return {role: getattr(self._parameterNode, role + "Volume") for role in SEQUENCE_ROLES}

    def updateGUI(self, caller=None, event=None) -> None:
        """Enable buttons and set tooltips from the parameter node and the running task."""
        running = self._task is not None and self._task.isRunning()
        segmenting = running and self._taskKind == "segment"
        fineTuning = running and self._taskKind == "finetune"

        problems = self.logic.inputProblems(self.currentInputVolumes())
        if self._installing:
            problems = [_("Wait for the installation of the Python packages to finish.")]
        if segmenting:
            self.ui.applyButton.setText(_("Cancel"))
            self.ui.applyButton.setToolTip(_("Stop the segmentation; the scene stays as it was."))
            self.ui.applyButton.setEnabled(True)
        else:
            self.ui.applyButton.setText(_("Apply"))
            if fineTuning:
                self.ui.applyButton.setToolTip(_("Wait for fine-tuning to finish or cancel it."))
            elif problems:
                self.ui.applyButton.setToolTip("\n".join(problems))
            else:
                self.ui.applyButton.setToolTip(
                    _("Segment the whole tumor, tumor core and enhancing tumor.")
                )
            self.ui.applyButton.setEnabled(not problems and not fineTuning)

        if fineTuning:
            self.ui.fineTuneButton.setText(_("Cancel fine-tuning"))
            self.ui.fineTuneButton.setEnabled(True)
        else:
            self.ui.fineTuneButton.setText(_("Fine-tune"))
            casesAvailable = bool(self.logic.fineTuneCases())
            self.ui.fineTuneButton.setEnabled(
                casesAvailable and not segmenting and not self._installing
            )
            self.ui.fineTuneButton.setToolTip(
                _("Fine-tune the selected model on the training cases.")
                if casesAvailable
                else _("Add at least one training case first.")
            )
        caseProblems = list(problems)
        if not (self._parameterNode and self._parameterNode.fineTuneSegmentation):
            caseProblems.append(_("Select the corrected segmentation"))
        self.ui.addCaseButton.setEnabled(not caseProblems and not running)
        self.ui.addCaseButton.setToolTip(
            "\n".join(caseProblems)
            if caseProblems
            else _("Save the four input volumes and the corrected segmentation as a training case.")
        )
        self.ui.useBundledModelButton.setEnabled(not running)
        self.ui.nextDoubtfulRegionButton.setEnabled(bool(self._doubtfulRegions))
        self.ui.nextDoubtfulRegionButton.setToolTip(
            _("Centre the slice views on the next uncertain region, largest first.")
            if self._doubtfulRegions
            else _("Segment with the uncertainty map on to find where the model is unsure.")
        )
        self.ui.modelComboBox.setEnabled(not running)
        self.ui.changeDataFolderButton.setEnabled(not running and not self._installing)
        self.ui.processingComboBox.setEnabled(not running)
        for widget in (self.ui.serverUrlLineEdit, self.ui.serverTokenLineEdit):
            widget.setEnabled(self._useServer and not running)
        self.ui.testConnectionButton.setEnabled(self._useServer and bool(self._serverUrl.strip()))
        self.ui.dataFolderLineEdit.setText(str(self.logic.dataFolder()))
        self._selectModelInComboBox()

    # Segmentation

    def onApplyButton(self) -> None:
        """Apply starts a segmentation; while one runs, the same button cancels it."""
        if self._task is not None and self._task.isRunning():
            self._task.cancel()
            self.appendLog(_("Cancelling..."))
            return
        # a server segments with its own engine: nothing to install here
        if not self._useServer and not self.ensureDependencies():
            return
        parameters = self._parameterNode
        with self.showErrors(_("Failed to start the segmentation.")):
            server = self.logic.serverClient()
            self.ui.logTextEdit.clear()
            self.ui.progressBar.setValue(0)
            self.ui.progressBar.setFormat(_("Starting..."))
            self._taskKind = "segment"
            self._task = self.logic.startSegmentation(
                self.currentInputVolumes(),
                outputSegmentation=parameters.outputSegmentation,
                modelPath=parameters.modelPath,
                device=parameters.device.value,
                testTimeAugmentation=parameters.testTimeAugmentation,
                coRegister=parameters.coRegister,
                skullStrip=parameters.skullStrip.value,
                uncertaintyMap=parameters.uncertaintyMap,
                server=server,
                onProgress=self.onSegmentationProgress,
                onLog=self.appendLog,
                onFinished=self.onSegmentationFinished,
            )
        self.updateGUI()

    def onSegmentationProgress(self, fraction: float, message: str) -> None:
        """Show engine progress in the progress bar."""
        self.ui.progressBar.setValue(int(round(fraction * 1000)))
        self.ui.progressBar.setFormat(f"{message} (%p%)" if message else "%p%")

    def onSegmentationFinished(self, outcome: TaskOutcome) -> None:
        """Show results, or the error, when the segmentation has ended."""
        self._task = None
        if outcome.status == "succeeded":
            result = outcome.result
            self.ui.progressBar.setValue(1000)
            self.ui.progressBar.setFormat(_("Done"))
            if self._parameterNode:
                self._parameterNode.outputSegmentation = result.segmentationNode
                if not self._parameterNode.fineTuneSegmentation:
                    self._parameterNode.fineTuneSegmentation = result.segmentationNode
            self.showResults(result)
            if self._parameterNode and self._parameterNode.show3D:
                self.logic.setShow3D(result.segmentationNode, True)
            if result.uncertaintyNode is not None:
                self.showUncertainty(result)
        elif outcome.status == "cancelled":
            self.ui.progressBar.setValue(0)
            self.ui.progressBar.setFormat(_("Cancelled"))
            self.appendLog(_("Cancelled; the scene was not changed."))
        else:
            self.ui.progressBar.setValue(0)
            self.ui.progressBar.setFormat(_("Failed"))
            self.appendLog(outcome.errorMessage)
            title = _("Cannot segment") if outcome.userError else _("Segmentation failed")
            slicer.util.errorDisplay(outcome.errorMessage, windowTitle=title)
        self.updateGUI()

    def showResults(self, result: SegmentationResult) -> None:
        """Fill the results table: volumes (mL, with the uncertain volume when the map was
        made), time, device and model."""
        volumeTexts = []
        for segment in eoformerLabels.SEGMENTS:
            text = _("{volume:.2f} mL").format(volume=result.volumesMl.get(segment["name"], 0.0))
            if segment["name"] in result.uncertainMl:
                text = _("{volume} (uncertain {uncertain:.2f} mL)").format(
                    volume=text, uncertain=result.uncertainMl[segment["name"]]
                )
            volumeTexts.append(text)
        values = [
            *volumeTexts,
            _("{seconds:.1f} s").format(seconds=result.seconds),
            result.device,
            f"{result.modelName} ({result.modelSha256[:12]})",
        ]
        for row, value in enumerate(values):
            self.ui.resultsTable.setItem(row, 1, qt.QTableWidgetItem(value))
        self.ui.resultsCollapsibleButton.collapsed = False
        self.appendLog(
            _("Segmented in {seconds:.1f} s on {device} with model {model}.").format(
                seconds=result.seconds, device=result.device, model=result.modelName
            )
        )
        for line in processingSummary(result.report):
            self.appendLog(line)

    # Uncertainty

    def showUncertainty(self, result: SegmentationResult) -> None:
        """Show the uncertainty map over the T1ce and find its doubtful regions."""
        t1ceVolumeNode = self.currentInputVolumes()["t1ce"]
        self.logic.showUncertaintyMap(
            result.uncertaintyNode,
            t1ceVolumeNode,
            self._overlayOpacity,
        )
        self._uncertaintyNode = result.uncertaintyNode
        self._doubtfulRegions = self.logic.doubtfulRegions(result.uncertaintyNode)
        self._nextDoubtfulRegion = 0
        self.appendLog(
            _(
                "Uncertainty map {name}: {count} doubtful regions ({volume:.2f} mL); "
                "Next doubtful region shows them, largest first."
            ).format(
                name=result.uncertaintyNode.GetName(),
                count=len(self._doubtfulRegions),
                volume=sum(volumeMl for _centre, volumeMl in self._doubtfulRegions),
            )
        )

    def forgetDoubtfulRegions(self) -> None:
        """Forget the regions of the last map (the scene is closing)."""
        self._uncertaintyNode = None
        self._doubtfulRegions = []
        self._nextDoubtfulRegion = 0

    def onUncertaintyOpacityChanged(self, value: int) -> None:
        """The opacity slider (0-100) sets the foreground opacity of the slice views."""
        self._overlayOpacity = value / 100.0
        if self._uncertaintyNode is not None:
            self.logic.setOverlayOpacity(value / 100.0)

    def onNextDoubtfulRegion(self) -> None:
        """Centre the slice views on the next doubtful region (largest first, then around)."""
        if not self._doubtfulRegions:
            return
        index = self._nextDoubtfulRegion % len(self._doubtfulRegions)
        centreRas, volumeMl = self._doubtfulRegions[index]
        self.logic.centreSliceViews(centreRas)
        self._nextDoubtfulRegion = index + 1
        self.appendLog(
            _(
                "Doubtful region {number} of {count}: {volume:.2f} mL at R {r:.1f}, A {a:.1f}, "
                "S {s:.1f} mm."
            ).format(
                number=index + 1,
                count=len(self._doubtfulRegions),
                volume=volumeMl,
                r=centreRas[0],
                a=centreRas[1],
                s=centreRas[2],
            )
        )

    def onShow3DToggled(self, checked: bool) -> None:
        """Show or hide the surfaces of the output segmentation."""
        if self._parameterNode and self._parameterNode.outputSegmentation:
            self.logic.setShow3D(self._parameterNode.outputSegmentation, checked)

    def appendLog(self, text: str) -> None:
        """Add a line to the log box and Slicer's log."""
        self.ui.logTextEdit.appendPlainText(text)
        logging.info(text)

    @contextlib.contextmanager
    def showErrors(self, title: str):
        """Show an exception in an error dialog and the log instead of raising it.

        ``ValueError`` is bad input: only its message is shown. Anything else also gets the
        traceback as details.
        """
        try:
            yield
        except ValueError as error:
            self.appendLog(f"{title} {error}")
            slicer.util.errorDisplay(str(error), windowTitle=title)
        except Exception as error:
            logging.exception(title)
            self.appendLog(f"{title} {error}")
            slicer.util.errorDisplay(
                f"{title}\n\n{error}", windowTitle=title, detailedText=traceback.format_exc()
            )

    # Models

    def refreshModelList(self) -> None:
        """List the bundled model, the fine-tuned models of the user's folder and a file choice."""
        self._updatingModelComboBox = True
        try:
            self.ui.modelComboBox.clear()
            for label, path in self.logic.availableModels():
                self.ui.modelComboBox.addItem(label, path)
            self.ui.modelComboBox.addItem(_("Model file..."), "<file>")
        finally:
            self._updatingModelComboBox = False
        self._selectModelInComboBox()

    def _selectModelInComboBox(self) -> None:
        if self._parameterNode is None or not hasattr(self, "ui"):
            return
        wanted = self._parameterNode.modelPath
        index = self.ui.modelComboBox.findData(wanted)
        if index < 0:
            self._updatingModelComboBox = True
            try:
                self.ui.modelComboBox.insertItem(
                    self.ui.modelComboBox.findData("<file>"),
                    _("File: {name}").format(name=Path(wanted).stem),
                    wanted,
                )
            finally:
                self._updatingModelComboBox = False
            index = self.ui.modelComboBox.findData(wanted)
        self._updatingModelComboBox = True
        try:
            self.ui.modelComboBox.setCurrentIndex(index)
        finally:
            self._updatingModelComboBox = False

    def onModelSelected(self, index: int) -> None:
        """Store the chosen model; "Model file..." asks for a checkpoint file."""
        if self._updatingModelComboBox or self._parameterNode is None:
            return
        if not isinstance(index, int) or index < 0:  # only the currentIndexChanged(int) overload
            return
        path = self.ui.modelComboBox.itemData(index)
        if path == "<file>":
            path = qt.QFileDialog.getOpenFileName(
                slicer.util.mainWindow(),
                _("Choose an EoFormer model"),
                str(self.logic.modelsFolder()),
                _("EoFormer models (*.pt *.pth)"),
            )
            if not path:
                self._selectModelInComboBox()
                return
        self._parameterNode.modelPath = path or ""

    def onShowModelCard(self) -> None:
        """Show the selected model's card (training data, metrics, provenance)."""
        with self.showErrors(_("Cannot read the model card.")):
            modelPath = self.logic.resolveModelPath(self._parameterNode.modelPath)
            card = eoformerModels.read_model_card(modelPath)
            text = self.logic.describeModelCard(modelPath, card)
            slicer.util.infoDisplay(
                text,
                windowTitle=_("Model card"),
                detailedText=json.dumps(card, indent=2, default=str),
            )

    def onUseBundledModel(self) -> None:
        """Go back to the model that ships with the extension."""
        if self._parameterNode:
            self._parameterNode.modelPath = ""

    # Dependencies

    def ensureDependencies(self) -> bool:
        """Install PyTorch, MONAI and the rest (or newer versions of them) on first use, after
        the user agrees. Apply and Fine-tune are disabled and each step is logged while the
        installation runs."""
        requirementsPath = self.resourcePath("requirements.txt")
        missing = self.logic.missingDependencies(requirementsPath)
        if not missing:
            with self.showErrors(_("Checking the Python packages failed.")):
                self.logic.ensureRequirementsWithSlicer(requirementsPath)
            return True
        message = _(
            "EoFormer needs these Python packages in Slicer:\n\n{problems}\n\nInstall them "
            "now? PyTorch is a large download (up to a few GB with GPU support) and "
            "installation can take several minutes."
        ).format(problems="\n".join(missing))
        if not slicer.util.confirmOkCancelDisplay(message, windowTitle=_("Install packages")):
            self.appendLog(
                _("Installation declined; EoFormer cannot run: {problems}.").format(
                    problems="; ".join(missing)
                )
            )
            return False
        self._installing = True
        self.updateGUI()
        self.ui.progressBar.setFormat(_("Installing Python packages..."))
        slicer.app.processEvents()
        try:
            with slicer.util.WaitCursor():
                self.logic.installDependencies(requirementsPath, onLog=self._logAndRepaint)
        except Exception as error:
            logging.exception("EoFormer: installing the packages failed")
            self.appendLog(_("Installing the packages failed: {error}").format(error=error))
            slicer.util.errorDisplay(
                _(
                    "Installing the packages failed: {error}\n\nInstall the PyTorch extension "
                    "from the Extensions Manager, restart Slicer and press Apply again."
                ).format(error=error),
                windowTitle=_("Installation failed"),
                detailedText=traceback.format_exc(),
            )
            return False
        finally:
            self._installing = False
            self.ui.progressBar.setFormat("%p%")
            self.updateGUI()
        still = self.logic.missingDependencies(requirementsPath)
        if still:
            slicer.util.errorDisplay(
                _(
                    "These packages are still missing: {problems}. Restart Slicer and try again."
                ).format(problems="; ".join(still)),
                windowTitle=_("Installation incomplete"),
            )
            return False
        return True

    def _logAndRepaint(self, text: str) -> None:
        self.appendLog(text)
        slicer.app.processEvents()

    # Data folder

    def onChangeDataFolder(self) -> None:
        """Let the user choose where training cases and fine-tuned models are kept."""
        folder = qt.QFileDialog.getExistingDirectory(
            slicer.util.mainWindow(),
            _("Folder for training cases (copies of patient images) and fine-tuned models"),
            str(self.logic.dataFolder()),
        )
        if not folder:
            return
        self.logic.setDataFolder(Path(folder))
        self.appendLog(
            _("Training cases and fine-tuned models are now kept in {folder}").format(folder=folder)
        )
        self.refreshModelList()
        self.refreshFineTuneCases()
        self.updateGUI()

    # Fine-tuning

    def refreshFineTuneCases(self) -> None:
        """List the saved training cases."""
        self.ui.fineTuneCasesList.clear()
        for caseFolder in self.logic.fineTuneCases():
            item = qt.QListWidgetItem(caseFolder.name)
            item.setToolTip(str(caseFolder))
            self.ui.fineTuneCasesList.addItem(item)

    def onAddCase(self) -> None:
        """Save the current inputs and the corrected segmentation as a training case."""
        with self.showErrors(_("Failed to add the training case.")), slicer.util.WaitCursor():
            caseFolder = self.logic.addFineTuneCase(
                self.currentInputVolumes(), self._parameterNode.fineTuneSegmentation
            )
            self.appendLog(_("Training case saved in {folder}").format(folder=caseFolder))
        self.refreshFineTuneCases()
        self.updateGUI()

    def onRemoveCase(self) -> None:
        """Delete the selected training case after confirmation."""
        item = self.ui.fineTuneCasesList.currentItem()
        if item is None:
            return
        caseFolder = self.logic.fineTuneCasesFolder() / item.text()
        if not slicer.util.confirmOkCancelDisplay(
            _("Delete the training case {name} from disk?").format(name=item.text()),
            windowTitle=_("Remove case"),
        ):
            return
        with self.showErrors(_("Failed to remove the training case.")):
            self.logic.removeFineTuneCase(caseFolder)
        self.refreshFineTuneCases()
        self.updateGUI()

    def onFineTuneButton(self) -> None:
        """Start fine-tuning; while it runs, the same button cancels it."""
        if self._task is not None and self._task.isRunning():
            self._task.cancel()
            self.appendLog(_("Cancelling fine-tuning..."))
            return
        if not self.ensureDependencies():
            return
        parameters = self._parameterNode
        with self.showErrors(_("Failed to start fine-tuning.")):
            self.ui.fineTuneProgressBar.setValue(0)
            self.ui.fineTuneProgressBar.setFormat(_("Starting..."))
            self.ui.fineTuneStatusLabel.setText("")
            self._taskKind = "finetune"
            self._task = self.logic.startFineTune(
                modelPath=parameters.modelPath,
                caseFolders=self.logic.fineTuneCases(),
                iterations=parameters.fineTuneIterations,
                learningRate=parameters.fineTuneLearningRate,
                modelName=parameters.fineTuneModelName,
                device=parameters.device.value,
                onProgress=self.onFineTuneProgress,
                onLog=self.appendLog,
                onFinished=self.onFineTuneFinished,
            )
        self.updateGUI()

    def onFineTuneProgress(self, fraction: float, message: str) -> None:
        """Show fine-tuning progress and the latest loss."""
        self.ui.fineTuneProgressBar.setValue(int(round(fraction * 1000)))
        self.ui.fineTuneProgressBar.setFormat("%p%")
        self.ui.fineTuneStatusLabel.setText(message)

    def onFineTuneFinished(self, outcome: TaskOutcome) -> None:
        """Select the new model, or report why there is none."""
        self._task = None
        if outcome.status == "succeeded":
            result = outcome.result
            self.ui.fineTuneProgressBar.setValue(1000)
            self.ui.fineTuneProgressBar.setFormat(_("Done"))
            self.ui.fineTuneStatusLabel.setText(
                _("New model {name} selected ({seconds:.0f} s).").format(
                    name=result.modelPath.stem, seconds=result.seconds
                )
            )
            self.refreshModelList()
            if self._parameterNode:
                self._parameterNode.modelPath = str(result.modelPath)
                self._parameterNode.fineTuneModelName = ""
        elif outcome.status == "cancelled":
            self.ui.fineTuneProgressBar.setValue(0)
            self.ui.fineTuneProgressBar.setFormat(_("Cancelled"))
            self.ui.fineTuneStatusLabel.setText(_("Cancelled; no model was written."))
        else:
            self.ui.fineTuneProgressBar.setValue(0)
            self.ui.fineTuneProgressBar.setFormat(_("Failed"))
            self.appendLog(outcome.errorMessage)
            title = _("Cannot fine-tune") if outcome.userError else _("Fine-tuning failed")
            slicer.util.errorDisplay(outcome.errorMessage, windowTitle=title)
        self.updateGUI()


#
# EoFormerSegmentationLogic
#


class EoFormerSegmentationLogic(ScriptedLoadableModuleLogic):
    """Everything the module does, without widgets (usable from scripts and tests).

    The engine runs in a separate process with Slicer's Python (``PythonSlicer``); this class
    converts nodes to files and files back to segments.

    Data folder (:meth:`dataFolder`): the user's fine-tuned models (``models/``, where the
    engine puts them when ``EOFORMER_HOME`` is this folder) and saved training cases
    (``finetune-cases/``, copies of patient images). It is the ``EoFormer/DataFolder``
    application setting, else ``EOFORMER_HOME`` when the user set it, else ``EoFormer`` in
    Slicer's cache folder. ``EOFORMER_HOME`` is given to the engine's process only.
    """

    def __init__(self) -> None:
        ScriptedLoadableModuleLogic.__init__(self)

    def getParameterNode(self) -> EoFormerSegmentationParameterNode:
        """The module's parameter node (created on first use)."""
        return EoFormerSegmentationParameterNode(super().getParameterNode())

    # Data folder

    @staticmethod
    def dataFolder() -> Path:
        """Folder of the user's fine-tuned models and saved training cases."""
        chosen = str(qt.QSettings().value(DATA_FOLDER_SETTING, "") or "")
        if chosen:
            return Path(chosen)
        if os.environ.get("EOFORMER_HOME"):
            return Path(os.environ["EOFORMER_HOME"])
        return Path(slicer.app.cachePath) / "EoFormer"

    @staticmethod
    def setDataFolder(folder: Optional[Path]) -> None:
        """Keep models and training cases in ``folder`` from now on (None: the default)."""
        settings = qt.QSettings()
        if folder:
            settings.setValue(DATA_FOLDER_SETTING, str(folder))
        else:
            settings.remove(DATA_FOLDER_SETTING)

    # Processing server

    @staticmethod
    def serverSettings() -> tuple:
        """(segment on the server, its address, its token), from Slicer's settings."""
        settings = qt.QSettings()
        return (
            str(settings.value(PROCESSING_SETTING, "local") or "local") == "server",
            str(settings.value(SERVER_URL_SETTING, "") or ""),
            str(settings.value(SERVER_TOKEN_SETTING, "") or ""),
        )

    @staticmethod
    def setServerSettings(useServer: bool, url: str, token: str) -> None:
        """Keep where to segment, and the server's address and token, in Slicer's settings."""
        settings = qt.QSettings()
        settings.setValue(PROCESSING_SETTING, "server" if useServer else "local")
        settings.setValue(SERVER_URL_SETTING, url.strip())
        settings.setValue(SERVER_TOKEN_SETTING, token.strip())

    def serverClient(self) -> Optional[ServerClient]:
        """The processing server chosen in the settings, or None to segment on this computer.

        Raises:
            ServerError: "Server" is chosen without a usable address.
        """
        useServer, url, token = self.serverSettings()
        if not useServer:
            return None
        if not url.strip():
            raise ServerError(
                _("Enter the address of the EoFormer server (Advanced, Processing: Server).")
            )
        return ServerClient(url, token)

    @staticmethod
    def checkServer(client: ServerClient, onDone: Callable[[Optional[dict], str], None]) -> None:
        """Ask the server whether it runs and takes the token, without blocking Slicer.

        The request runs in a thread; ``onDone(health, error)`` is called on the main thread
        with the server's ``/health`` answer, or None and the reason it failed.
        """
        outcome: Dict[str, object] = {}

        def ask() -> None:
            try:
                outcome["health"] = client.health()
            except Exception as error:  # ServerError, or anything unexpected: told the user
                outcome["error"] = str(error)

        thread = threading.Thread(target=ask, daemon=True)
        thread.start()

        def poll() -> None:
            if thread.is_alive():
                qt.QTimer.singleShot(100, poll)
                return
            onDone(outcome.get("health"), str(outcome.get("error", "")))

        qt.QTimer.singleShot(100, poll)

    @staticmethod
    def describeServer(url: str, health: dict) -> str:
        """One paragraph on a server's ``/health`` answer: model, device, queue, upload limit."""
        queue = health.get("queue") or {}
        return _(
            "The EoFormer server at {url} answers: model {model} on {device}, {waiting} job(s) "
            "waiting (room for {capacity}), uploads up to {limit:g} MB."
        ).format(
            url=url,
            model=health.get("model", "?"),
            device=health.get("device", "?"),
            waiting=queue.get("waiting", 0),
            capacity=queue.get("capacity", "?"),
            limit=float(health.get("max_upload_mb") or 0),
        )

    def modelsFolder(self) -> Path:
        """Folder of the user's fine-tuned models (``models/`` in :meth:`dataFolder`)."""
        return self.dataFolder() / "models"

    # Inputs

    @staticmethod
    def sequenceForVolumeName(name: str) -> Optional[str]:
        """The sequence a volume name refers to, or None.

        The name is split into lower-case alphanumeric tokens; a token equal to one of
        :data:`SEQUENCE_KEYWORDS` matches that sequence. When several sequences match, the
        longest keyword (the most specific) wins: ``t1ce`` beats ``t1``, ``flair`` beats ``t2``,
        ``T1 post`` is a T1ce. A tie between different sequences gives None.

        Args:
            name: the node name, e.g. ``"BraTS20_Training_001_t1ce"``.
        """
        tokens = set(re.split(r"[^0-9a-z]+", name.lower()))
        bestRole, bestLength, tie = None, 0, False
        for role, keywords in SEQUENCE_KEYWORDS.items():
            for keyword in keywords:
                if keyword in tokens:
                    if len(keyword) > bestLength:
                        bestRole, bestLength, tie = role, len(keyword), False
                    elif len(keyword) == bestLength and role != bestRole:
                        tie = True
        return None if tie else bestRole

    @staticmethod
    def candidateInputVolumes() -> List[vtkMRMLScalarVolumeNode]:
        """Scalar volumes of the scene that a user could pick: exactly
        ``vtkMRMLScalarVolumeNode`` (no label maps, vector, tensor or diffusion volumes, which
        are its subclasses), not hidden."""
        volumeNodes = []
        for volumeNode in slicer.util.getNodesByClass("vtkMRMLScalarVolumeNode"):
            if volumeNode.GetClassName() != "vtkMRMLScalarVolumeNode":
                continue
            if volumeNode.GetHideFromEditors():
                continue
            volumeNodes.append(volumeNode)
        return volumeNodes

    def matchInputVolumes(
        self,
        volumeNodes: List[vtkMRMLScalarVolumeNode],
        current: Dict[str, Optional[vtkMRMLScalarVolumeNode]],
    ) -> Dict[str, vtkMRMLScalarVolumeNode]:
        """Volumes for the empty roles of ``current``, matched by name.

        A volume already selected for another role is not used again; among several matches
        the most recently added volume (last in ``volumeNodes``) is taken.

        Args:
            volumeNodes: candidates, in the order they were added to the scene.
            current: role -> selected volume (None where empty).

        Returns:
            role -> volume, only for roles that were empty and have a match.
        """
        used = {node.GetID() for node in current.values() if node is not None}
        matches = {}
        for role in SEQUENCE_ROLES:
            if current.get(role) is not None:
                continue
            for volumeNode in reversed(volumeNodes):
                if volumeNode.GetID() in used:
                    continue
                if self.sequenceForVolumeName(volumeNode.GetName() or "") == role:
                    matches[role] = volumeNode
                    used.add(volumeNode.GetID())
                    break
        return matches

    @staticmethod
    def inputProblems(volumes: Dict[str, Optional[vtkMRMLScalarVolumeNode]]) -> List[str]:
        """What keeps the four inputs from being used; an empty list when they are fine.

        Args:
            volumes: role -> selected volume.

        Returns:
            One sentence per problem: a missing sequence, or one volume picked twice.
        """
        problems = []
        for role in SEQUENCE_ROLES:
            if volumes.get(role) is None:
                problems.append(
                    _("Select the {sequence} volume").format(sequence=SEQUENCE_LABELS[role])
                )
        seen: Dict[str, str] = {}
        for role in SEQUENCE_ROLES:
            volumeNode = volumes.get(role)
            if volumeNode is None:
                continue
            if volumeNode.GetID() in seen:
                problems.append(
                    _(
                        "{first} and {second} are the same volume ({name}); pick four different volumes"
                    ).format(
                        first=SEQUENCE_LABELS[seen[volumeNode.GetID()]],
                        second=SEQUENCE_LABELS[role],
                        name=volumeNode.GetName(),
                    )
                )
            else:
                seen[volumeNode.GetID()] = role
        return problems

    def _checkInputs(self, volumes: Dict[str, Optional[vtkMRMLScalarVolumeNode]]) -> None:
        problems = self.inputProblems(volumes)
        if problems:
            raise ValueError("; ".join(problems))
        for role in SEQUENCE_ROLES:
            volumeNode: vtkMRMLScalarVolumeNode = volumes[role]
            if volumeNode.GetImageData() is None:
                raise ValueError(
                    _("The {sequence} volume {name} has no image data").format(
                        sequence=SEQUENCE_LABELS[role], name=volumeNode.GetName()
                    )
                )
            if volumeNode.GetParentTransformNode() is not None:
                raise ValueError(
                    _(
                        "The {sequence} volume {name} is under a transform. Harden the transform "
                        "first (Data module, right-click the volume, Harden transform)."
                    ).format(sequence=SEQUENCE_LABELS[role], name=volumeNode.GetName())
                )

    # Files

    @staticmethod
    def writeVolumeFile(volumeNode: vtkMRMLScalarVolumeNode, path: Path) -> None:
        """Write a volume with its geometry (uncompressed NRRD), leaving the node untouched.

        ``slicer.util.exportNode`` writes the node's own voxels: no copy in the scene, no
        change to its storage (file name, modified state).
        """
        voxels = slicer.util.arrayFromVolume(volumeNode)
        if voxels.ndim != 3:
            raise ValueError(
                _("{name} has {count} components per voxel; a scalar volume is needed").format(
                    name=volumeNode.GetName(), count=voxels.shape[-1]
                )
            )
        if not slicer.util.exportNode(volumeNode, str(path), {"useCompression": 0}):
            raise RuntimeError(_("Cannot write {path}").format(path=path))

    @staticmethod
    def removeNodeWithHelpers(node) -> None:
        """Remove a temporary node and the display and storage nodes that readers and writers
        created for it (the scene does not remove those by itself)."""
        helpers = [node.GetDisplayNode(), node.GetStorageNode()]
        slicer.mrmlScene.RemoveNode(node)
        for helper in helpers:
            if helper is not None:
                slicer.mrmlScene.RemoveNode(helper)

    @staticmethod
    def findSegment(segmentationNode: vtkMRMLSegmentationNode, segment: dict) -> str:
        """ID of the segment for one of ``labels.SUBREGION_SEGMENTS`` or ``labels.SEGMENTS``
        (by ID, then by name); "" if none."""
        segmentation: slicer.vtkSegmentation = segmentationNode.GetSegmentation()
        if segmentation.GetSegment(segment["id"]) is not None:
            return segment["id"]
        return segmentation.GetSegmentIdBySegmentName(segment["name"]) or ""

    def writeSubregionSegments(
        self,
        segmentationNode: vtkMRMLSegmentationNode,
        labelNode: slicer.vtkMRMLLabelMapVolumeNode,
    ) -> None:
        """Create or replace the Necrotic tumor core, Edema and Enhancing tumor segments from a
        BraTS label map, in one import through the Segmentations module.

        Other segments of the node are kept. Names, colors and terminology come from
        ``EoFormerSegmentationLib.labels.SUBREGION_SEGMENTS``. The label node's voxels are
        renumbered in place (1 NCR, 2 ED, 3 ET: the position in the list of segment IDs that
        the import fills); it is a temporary node of the caller.

        Args:
            segmentationNode: the node to update.
            labelNode: BraTS labels (1 NCR, 2 ED, 4 or 3 ET) on the grid of the result.
        """
        labelMap = slicer.util.arrayFromVolume(labelNode)
        eoformerLabels.check_label_values(labelMap, labelNode.GetName())
        labelMap[labelMap == 4] = 3
        slicer.util.arrayFromVolumeModified(labelNode)
        segmentation: slicer.vtkSegmentation = segmentationNode.GetSegmentation()
        segmentIds = vtk.vtkStringArray()
        for segmentSpec in eoformerLabels.SUBREGION_SEGMENTS:
            segmentId = self.findSegment(segmentationNode, segmentSpec)
            if not segmentId:
                segmentId = segmentation.AddEmptySegment(
                    segmentSpec["id"], segmentSpec["name"], segmentSpec["color"]
                )
            segmentIds.InsertNextValue(segmentId)
        segmentationsLogic: slicer.vtkSlicerSegmentationsModuleLogic = (
            slicer.modules.segmentations.logic()
        )
        if not segmentationsLogic.ImportLabelmapToSegmentationNode(
            labelNode, segmentationNode, segmentIds
        ):
            raise RuntimeError(_("Cannot import the label map into the segmentation"))
        for index, segmentSpec in enumerate(eoformerLabels.SUBREGION_SEGMENTS):
            segment: slicer.vtkSegment = segmentation.GetSegment(segmentIds.GetValue(index))
            segment.SetName(segmentSpec["name"])
            segment.SetColor(*segmentSpec["color"])
            terminology = eoformerLabels.segment_terminology(segmentSpec)
            if slicerVersionAtLeast(5, 10):
                segment.SetTerminology(terminology)
            else:  # Slicer 5.8 keeps the terminology in a tag
                segment.SetTag(segment.GetTerminologyEntryTagName(), terminology)

    def subregionLabelMap(
        self,
        segmentationNode: vtkMRMLSegmentationNode,
        referenceVolumeNode: vtkMRMLScalarVolumeNode,
    ) -> np.ndarray:
        """The BraTS label map (1 NCR, 2 ED, 4 ET) that a segmentation shows, on the grid of
        ``referenceVolumeNode``, exported through the Segmentations module.

        The segmentation holds either the sub-region segments (Necrotic tumor core, Edema,
        Enhancing tumor) or the region segments (Whole tumor, Tumor core, Enhancing tumor).

        Raises:
            ValueError: a segment is missing, or voxels are in more than one sub-region (or
                outside the region that should contain them): the message gives the voxel
                counts, because the case would not be what the user sees.
        """
        specs = eoformerLabels.SUBREGION_SEGMENTS
        segmentIds = [self.findSegment(segmentationNode, spec) for spec in specs]
        subregions = True
        if not all(segmentIds):
            regionIds = [
                self.findSegment(segmentationNode, spec) for spec in eoformerLabels.SEGMENTS
            ]
            if all(regionIds):
                specs, segmentIds, subregions = eoformerLabels.SEGMENTS, regionIds, False
            else:
                missing = [spec["name"] for spec, found in zip(specs, segmentIds) if not found]
                raise ValueError(
                    _("The segmentation {name} has no {segments} segment").format(
                        name=segmentationNode.GetName(), segments=", ".join(missing)
                    )
                )
        masks = [
            self._exportSegmentMask(segmentationNode, segmentId, referenceVolumeNode)
            for segmentId in segmentIds
        ]
        if subregions:
            overlap = int((np.sum(masks, axis=0) > 1).sum())
            if overlap:
                raise ValueError(
                    _(
                        "{count} voxels belong to more than one of {segments} in {name}. Each "
                        "voxel must have one label: correct the segments in the Segment "
                        "Editor (with 'Modify other segments' set to overwrite)."
                    ).format(
                        count=overlap,
                        segments=", ".join(spec["name"] for spec in specs),
                        name=segmentationNode.GetName(),
                    )
                )
            label = np.zeros(masks[0].shape, np.uint8)
            for spec, mask in zip(specs, masks):
                label[mask] = spec["label"]
            return label
        whole, core, enhancing = masks
        outside = {
            _("Tumor core outside Whole tumor"): int((core & ~whole).sum()),
            _("Enhancing tumor outside Tumor core"): int((enhancing & ~core).sum()),
        }
        if any(outside.values()):
            raise ValueError(
                _(
                    "The regions of {name} are not nested ({counts} voxels); stored as labels "
                    "they would differ from what you see. Correct them, or segment again to get "
                    "the non-overlapping sub-regions."
                ).format(
                    name=segmentationNode.GetName(),
                    counts=", ".join(f"{text}: {count}" for text, count in outside.items()),
                )
            )
        return eoformerLabels.regions_to_labels(np.stack(masks))

    def _exportSegmentMask(
        self,
        segmentationNode: vtkMRMLSegmentationNode,
        segmentId: str,
        referenceVolumeNode: vtkMRMLScalarVolumeNode,
    ) -> np.ndarray:
        """One segment as a boolean ``(K, J, I)`` mask on the reference grid."""
        labelNode: slicer.vtkMRMLLabelMapVolumeNode = slicer.mrmlScene.AddNewNodeByClass(
            "vtkMRMLLabelMapVolumeNode", slicer.mrmlScene.GenerateUniqueName("EoFormerExport")
        )
        try:
            labelNode.SetHideFromEditors(True)
            segmentationsLogic: slicer.vtkSlicerSegmentationsModuleLogic = (
                slicer.modules.segmentations.logic()
            )
            if not segmentationsLogic.ExportSegmentsToLabelmapNode(
                segmentationNode,
                [segmentId],
                labelNode,
                referenceVolumeNode,
                slicer.vtkSegmentation.EXTENT_REFERENCE_GEOMETRY,
            ):
                raise RuntimeError(_("Cannot export the segment {id}").format(id=segmentId))
            return slicer.util.arrayFromVolume(labelNode) > 0
        finally:
            self.removeNodeWithHelpers(labelNode)

    def placeInStudyOf(self, node, referenceNode) -> None:
        """Put ``node`` in the subject hierarchy folder (the study) that holds ``referenceNode``."""
        shNode: slicer.vtkMRMLSubjectHierarchyNode = (
            slicer.vtkMRMLSubjectHierarchyNode.GetSubjectHierarchyNode(slicer.mrmlScene)
        )
        referenceItem = shNode.GetItemByDataNode(referenceNode)
        item = shNode.GetItemByDataNode(node)
        if referenceItem and item:
            shNode.SetItemParent(item, shNode.GetItemParent(referenceItem))

    # Models

    def availableModels(self) -> List[tuple]:
        """(label, path) of the models to choose from; the bundled model has path ""."""
        bundledPath = eoformerModels.bundled_model_path()
        bundledCard = eoformerModels.read_model_card(bundledPath) if bundledPath.is_file() else {}
        bundledName = bundledCard.get("name") or eoformerModels.BUNDLED_MODEL_NAME
        models = [(_("Bundled: {name}").format(name=bundledName), "")]
        modelFolder = self.modelsFolder()
        if modelFolder.is_dir():
            for path in sorted(modelFolder.glob("*.pt")):
                if path.name.startswith("."):
                    continue  # a partial write
                models.append((_("Fine-tuned: {name}").format(name=path.stem), str(path)))
        return models

    @staticmethod
    def resolveModelPath(modelPath: str) -> Path:
        """The checkpoint file for a parameter value ("" is the bundled model)."""
        if modelPath:
            return Path(modelPath)
        return eoformerModels.bundled_model_path()

    @staticmethod
    def describeModelCard(modelPath: Path, card: dict) -> str:
        """A few lines about a model for the model-card dialog."""
        if not card:
            return _("{path}\n\nThis model has no model card.").format(path=modelPath)
        lines = [str(card.get("name") or modelPath.stem)]
        trainingData = card.get("training_data")
        if isinstance(trainingData, dict):
            # a summary, not the case list (the file beside the model has every detail)
            trainingData = trainingData.get("note") or _("{count} cases").format(
                count=len(trainingData.get("real_cases") or trainingData.get("cases") or [])
            )
        heldOut = ((card.get("evaluation") or {}).get("held_out_real") or {}).get("summary")
        if isinstance(heldOut, dict) and all(region in heldOut for region in ("WT", "TC", "ET")):
            heldOut = _("Dice WT {wt:.2f}, TC {tc:.2f}, ET {et:.2f} on {count} real cases").format(
                wt=heldOut["WT"]["dice_mean"],
                tc=heldOut["TC"]["dice_mean"],
                et=heldOut["ET"]["dice_mean"],
                count=len(card["evaluation"]["held_out_real"].get("cases") or []),
            )
        else:
            heldOut = None
        limits = card.get("known_limits") or card.get("limitations")
        if isinstance(limits, list):
            limits = "; ".join(str(limit) for limit in limits)
        for title, value in (
            (_("Description"), card.get("description")),
            (_("Training data"), trainingData),
            (_("Held-out results"), heldOut),
            (_("Intended use"), card.get("intended_use")),
            (_("Limitations"), limits),
        ):
            if value:
                lines.append(f"{title}: {value}")
        rawScanModel = card.get(eoformerModels.RAW_SCAN_MODEL_KEY)
        if rawScanModel:
            lines.append(
                _(
                    "Raw scans (co-registered or skull-stripped before segmentation) are "
                    "segmented by its companion model {name}."
                ).format(name=Path(str(rawScanModel)).stem)
            )
        if card.get("fine_tuning"):
            lines.append(_("Fine-tuned from a parent model (see details)."))
        if card.get("sha256"):
            lines.append(f"SHA-256: {card['sha256']}")
        lines.append(str(modelPath))
        return "\n\n".join(lines)

    # Dependencies

    def engineRequirements(self, requirementsPath: Optional[str] = None) -> list:
        """What the engine needs: torch (:data:`dependency_handler.TORCH_MINIMUM_VERSION`) and
        the module's ``requirements.txt``."""
        path = requirementsPath or str(
            Path(__file__).resolve().parent / "Resources" / "requirements.txt"
        )
        return [
            eoformerDependencies.Requirement("torch", eoformerDependencies.TORCH_MINIMUM_VERSION),
            *eoformerDependencies.read_requirements(path),
        ]

    def missingDependencies(self, requirementsPath: Optional[str] = None) -> List[str]:
        """What keeps the engine from running in Slicer's Python, one sentence per package:
        not installed, or older than the engine needs (an old torch or MONAI left by another
        extension counts as missing)."""
        return eoformerDependencies.requirement_problems(self.engineRequirements(requirementsPath))

    def installDependencies(
        self, requirementsPath: str, onLog: Optional[Callable[[str], None]] = None
    ) -> None:
        """Install what is missing or too old.

        PyTorch comes from the PyTorch Utils module when it is there (it picks the CUDA build
        that fits the GPU); the other requirements from ``requirements.txt``, with
        ``slicer.packaging.pip_ensure`` on Slicer 5.12 and later (always called: it installs
        only what is missing) and pip before. pip never touches torch or SimpleITK: they are
        skipped and pinned to the installed builds by a constraints file.

        Args:
            requirementsPath: the module's ``requirements.txt``.
            onLog: called with a line for each step.

        Raises:
            RuntimeError: PyTorch could not be installed.
        """
        log = onLog or logging.info
        torchProblems = [
            p for p in self.missingDependencies(requirementsPath) if p.startswith("torch ")
        ]
        if torchProblems:
            torchRequirement = f"torch>={eoformerDependencies.TORCH_MINIMUM_VERSION}"
            if hasattr(slicer.modules, "pytorchutils"):
                log(
                    _("Installing PyTorch with PyTorch Utils ({requirement})...").format(
                        requirement=torchRequirement
                    )
                )
                import PyTorchUtils

                torch = PyTorchUtils.PyTorchUtilsLogic().installTorch(
                    askConfirmation=False,
                    torchVersionRequirement=f">={eoformerDependencies.TORCH_MINIMUM_VERSION}",
                )
                if torch is None:
                    raise RuntimeError(_("PyTorch was not installed"))
            else:
                log(
                    _("Installing PyTorch with pip ({requirement})...").format(
                        requirement=torchRequirement
                    )
                )
                slicer.util.pip_install([torchRequirement])
        log(
            _("Installing {packages}...").format(
                packages=", ".join(
                    str(r) for r in eoformerDependencies.read_requirements(requirementsPath)
                )
            )
        )
        constraintsPath = self.writeConstraints()
        try:
            if slicerVersionAtLeast(5, 12):
                import slicer.packaging as slicerPackaging

                slicerPackaging.pip_ensure(
                    slicerPackaging.load_requirements(requirementsPath),
                    constraints=str(constraintsPath),
                    skip_packages=list(eoformerDependencies.PROTECTED_PACKAGES),
                    prompt_install=False,
                    requester="EoFormer",
                )
            else:
                requirements = [
                    str(requirement)
                    for requirement in eoformerDependencies.read_requirements(requirementsPath)
                    if requirement.name not in eoformerDependencies.PROTECTED_PACKAGES
                ]
                slicer.util.pip_install([*requirements, "--constraint", str(constraintsPath)])
        finally:
            constraintsPath.unlink(missing_ok=True)
        log(_("Installation finished."))

    @staticmethod
    def writeConstraints() -> Path:
        """A pip constraints file that pins torch and SimpleITK to the installed builds."""
        constraintsPath = Path(slicer.app.temporaryPath) / "EoFormer-constraints.txt"
        constraintsPath.write_text(
            "\n".join(eoformerDependencies.constraint_lines()) + "\n", encoding="utf-8"
        )
        return constraintsPath

    def ensureRequirementsWithSlicer(self, requirementsPath: str) -> None:
        """On Slicer 5.12 and later, let ``slicer.packaging.pip_ensure`` check the requirements
        (it asks before installing anything, and does nothing when all are there)."""
        if slicerVersionAtLeast(5, 12):
            import slicer.packaging as slicerPackaging

            constraintsPath = self.writeConstraints()
            try:
                slicerPackaging.pip_ensure(
                    slicerPackaging.load_requirements(requirementsPath),
                    constraints=str(constraintsPath),
                    skip_packages=list(eoformerDependencies.PROTECTED_PACKAGES),
                    requester="EoFormer",
                )
            finally:
                constraintsPath.unlink(missing_ok=True)

    # Background runs

    @staticmethod
    def pythonExecutable() -> str:
        """Slicer's Python launcher (``PythonSlicer``), which runs the engine.

        Raises:
            RuntimeError: it cannot be found.
        """
        found = shutil.which("PythonSlicer")
        if found:
            return found
        besideExecutable = Path(sys.executable).parent / (
            "PythonSlicer.exe" if os.name == "nt" else "PythonSlicer"
        )
        if besideExecutable.is_file():
            return str(besideExecutable)
        raise RuntimeError(_("PythonSlicer was not found; it is needed to run the EoFormer engine"))

    def engineCommand(self, command: str, arguments: List[str]) -> List[str]:
        """Command line that runs ``eoformer <command> <arguments>`` with Slicer's Python."""
        return [self.pythonExecutable(), "-m", "EoFormerSegmentationLib", command, *arguments]

    def engineEnvironment(self) -> Dict[str, str]:
        """Variables for the engine process only (Slicer's own environment is not changed):
        the module folder on the Python path, ``EOFORMER_HOME`` (:meth:`dataFolder`),
        unbuffered UTF-8 output."""
        return engine_environment(str(Path(__file__).resolve().parent), str(self.dataFolder()))

    def startSegmentation(
        self,
        volumes: Dict[str, vtkMRMLScalarVolumeNode],
        outputSegmentation: Optional[vtkMRMLSegmentationNode] = None,
        modelPath: str = "",
        device: str = "auto",
        testTimeAugmentation: bool = False,
        coRegister: bool = False,
        skullStrip: str = "auto",
        uncertaintyMap: bool = False,
        server: Optional[ServerClient] = None,
        onProgress: Optional[Callable[[float, str], None]] = None,
        onLog: Optional[Callable[[str], None]] = None,
        onFinished: Optional[Callable[[TaskOutcome], None]] = None,
    ) -> EngineProcess:
        """Segment the tumor in the background.

        The four volumes are written to a temporary folder and the engine runs in a separate
        process. When it succeeds, the three segments are written into ``outputSegmentation``
        (a new segmentation when None) and ``onFinished`` gets a :class:`TaskOutcome` with a
        :class:`SegmentationResult`. When it fails or is cancelled, the scene is not changed.

        Args:
            volumes: role (``t1``, ``t1ce``, ``t2``, ``flair``) -> volume node.
            outputSegmentation: segmentation to update, or None to create one.
            modelPath: checkpoint file; "" for the bundled model.
            device: ``"auto"``, ``"cuda"`` or ``"cpu"``.
            testTimeAugmentation: average mirrored predictions.
            coRegister: rigidly register T1, T2 and FLAIR to the T1ce first (otherwise only
                the sequences whose grid differs from the T1ce's).
            skullStrip: brain extraction: ``"auto"`` (when a sequence is not skull-stripped),
                ``"on"`` or ``"off"``.
            uncertaintyMap: also load the engine's uncertainty map (bits, 0-1) as a volume
                (see :meth:`importUncertaintyMap`) and report the uncertain volume per region.
            server: segment on this EoFormer processing server instead of this computer (its
                model and device; ``modelPath`` and ``device`` are not used): the volumes are
                uploaded, its progress followed, the label map and report downloaded.
            onProgress: called with (fraction 0-1, message).
            onLog: called with each line of the engine's output.
            onFinished: called once when the run has ended.

        Returns:
            The running :class:`EngineProcess`, or :class:`RemoteSegmentation` with a server
            (``cancel()`` stops it; on a server it deletes the job).
        """
        self._checkInputs(volumes)
        startTime = time.monotonic()
        workFolder = Path(tempfile.mkdtemp(prefix="EoFormer-", dir=slicer.app.temporaryPath))
        try:
            arguments = []
            for role in SEQUENCE_ROLES:
                path = workFolder / f"{role}.nrrd"
                self.writeVolumeFile(volumes[role], path)
                arguments += [f"--{role}", str(path)]
            labelPath = workFolder / "result.nii.gz"
            reportPath = workFolder / "report.json"
            arguments += ["--output", str(labelPath), "--json", str(reportPath)]
            arguments += ["--progress", "lines", "--device", device]
            if modelPath:
                arguments += ["--model", str(modelPath)]
            if testTimeAugmentation:
                arguments.append("--tta")
            if coRegister:
                arguments.append("--register")
            arguments += ["--skull-strip", skullStrip]
            uncertaintyPath = workFolder / "uncertainty.nii.gz"
            if uncertaintyMap:
                arguments += ["--uncertainty", str(uncertaintyPath)]
            # a server needs no local engine (nor PythonSlicer)
            command = self.engineCommand("segment", arguments) if server is None else []
        except Exception:
            shutil.rmtree(workFolder, ignore_errors=True)
            raise

        def onExit(process: EngineProcess) -> None:
            try:
                if process.cancelled:
                    outcome = TaskOutcome("cancelled")
                elif process.returnCode != 0:
                    outcome = TaskOutcome(
                        "failed",
                        errorMessage=process.failureMessage(),
                        userError=bool(process.userError),
                    )
                else:
                    try:
                        result = self.importSegmentationResult(
                            labelPath, reportPath, volumes["t1ce"], outputSegmentation
                        )
                        if uncertaintyMap:
                            result.uncertaintyNode = self.importUncertaintyMap(
                                uncertaintyPath, volumes["t1ce"]
                            )
                            result.uncertainMl = self._uncertainVolumesFromReport(result.report)
                        result.seconds = time.monotonic() - startTime
                        outcome = TaskOutcome("succeeded", result=result)
                    except Exception as error:
                        logging.exception("EoFormer: importing the result failed")
                        outcome = TaskOutcome(
                            "failed",
                            errorMessage=_("Cannot read the engine's result: {error}").format(
                                error=error
                            ),
                        )
            finally:
                shutil.rmtree(workFolder, ignore_errors=True)
            if onFinished:
                onFinished(outcome)

        if server is not None:
            destinations = {"segmentation.nii.gz": labelPath, "report.json": reportPath}
            if uncertaintyMap:
                destinations["uncertainty.nii.gz"] = uncertaintyPath
            options = {
                "tta": bool(testTimeAugmentation),
                "register": "on" if coRegister else "auto",
                "skull_strip": skullStrip,
                "output_format": "nii.gz",  # a label map, imported like the local engine's
                "uncertainty": bool(uncertaintyMap),
            }
            volumeFiles = {role: workFolder / f"{role}.nrrd" for role in SEQUENCE_ROLES}
            process = RemoteSegmentation(
                server, volumeFiles, options, destinations, onProgress, onLog, onExit
            )
        else:
            process = EngineProcess(command, self.engineEnvironment(), onProgress, onLog, onExit)
        try:
            process.start()
        except Exception:
            shutil.rmtree(workFolder, ignore_errors=True)
            raise
        return process

    def segment(
        self,
        volumes: Dict[str, vtkMRMLScalarVolumeNode],
        outputSegmentation: Optional[vtkMRMLSegmentationNode] = None,
        timeoutSeconds: Optional[float] = None,
        **options,
    ) -> SegmentationResult:
        """Segment and wait for the result (for scripts and the self-test).

        Takes the arguments of :meth:`startSegmentation`.

        Raises:
            EngineError: the engine failed (``userError`` tells whether the input was bad).
        """
        outcomes: List[TaskOutcome] = []
        process = self.startSegmentation(
            volumes, outputSegmentation, onFinished=outcomes.append, **options
        )
        process.wait(timeoutSeconds)
        outcome = outcomes[0]
        if outcome.status != "succeeded":
            raise EngineError(outcome.errorMessage or outcome.status, outcome.userError)
        return outcome.result

    def importSegmentationResult(
        self,
        labelPath: Path,
        reportPath: Path,
        t1ceVolumeNode: vtkMRMLScalarVolumeNode,
        outputSegmentation: Optional[vtkMRMLSegmentationNode] = None,
    ) -> SegmentationResult:
        """Write the engine's label map into the three sub-region segments.

        The label map is loaded once and imported through the Segmentations module; the
        temporary label volume and its display and storage nodes are removed. A new
        segmentation goes into the study (subject hierarchy folder) of the T1ce.

        Args:
            labelPath: BraTS label map (1 NCR, 2 ED, 4 ET) on the T1ce grid.
            reportPath: the engine's JSON report (volumes in mL, device, model).
            t1ceVolumeNode: the T1ce input; it becomes the segmentation's reference geometry.
            outputSegmentation: segmentation to update, or None to create one.
        """
        report = json.loads(Path(reportPath).read_text(encoding="utf-8"))
        labelNode = slicer.util.loadLabelVolume(str(labelPath), {"show": False})
        segmentationNode = outputSegmentation
        try:
            labelNode.SetHideFromEditors(True)
            labelMap = slicer.util.arrayFromVolume(labelNode)
            eoformerLabels.check_label_values(labelMap, str(labelPath))
            regionMasks = eoformerLabels.labels_to_regions(labelMap)
            voxelVolumeMl = float(np.prod(labelNode.GetSpacing())) / 1000.0
            if segmentationNode is None:
                segmentationNode = slicer.mrmlScene.AddNewNodeByClass(
                    "vtkMRMLSegmentationNode",
                    slicer.mrmlScene.GenerateUniqueName(f"{t1ceVolumeNode.GetName()} tumor"),
                )
                self.placeInStudyOf(segmentationNode, t1ceVolumeNode)
            segmentationNode.CreateDefaultDisplayNodes()
            segmentationNode.SetReferenceImageGeometryParameterFromVolumeNode(t1ceVolumeNode)
            self.writeSubregionSegments(segmentationNode, labelNode)
        finally:
            self.removeNodeWithHelpers(labelNode)

        modelName, modelSha256 = self._modelFromReport(report)
        segmentationNode.SetAttribute(MODEL_ATTRIBUTE_NAME, modelName)
        segmentationNode.SetAttribute(MODEL_ATTRIBUTE_SHA256, modelSha256)
        volumesMl = self._volumesFromReport(report)
        for segmentSpec, mask in zip(eoformerLabels.SEGMENTS, regionMasks):
            volumesMl.setdefault(segmentSpec["name"], float(mask.sum()) * voxelVolumeMl)
        segmentationNode.SetDescription(
            _(
                "Necrotic tumor core, Edema and Enhancing tumor segmented by EoFormer model "
                "{name} (SHA-256 {sha256}). Whole tumor {whole:.2f} mL, tumor core {core:.2f} mL, "
                "enhancing tumor {enhancing:.2f} mL. Research use only, not for clinical use."
            ).format(
                name=modelName,
                sha256=modelSha256,
                whole=volumesMl["Whole tumor"],
                core=volumesMl["Tumor core"],
                enhancing=volumesMl["Enhancing tumor"],
            )
        )
        return SegmentationResult(
            segmentationNode=segmentationNode,
            volumesMl=volumesMl,
            seconds=float((report.get("timings_s") or {}).get("total") or 0.0),
            device=str(report.get("device") or ""),
            modelName=modelName,
            modelSha256=modelSha256,
            report=report,
        )

    def importUncertaintyMap(
        self, mapPath: Path, t1ceVolumeNode: vtkMRMLScalarVolumeNode
    ) -> vtkMRMLScalarVolumeNode:
        """Load the engine's uncertainty map as a volume named "<T1ce name> uncertainty".

        The map is on the T1ce grid; the node takes the T1ce's IJK-to-RAS matrix exactly, so
        that it lines up voxel for voxel. It goes into the T1ce's study and keeps no link to
        the temporary file (saving the scene writes it anew).

        Args:
            mapPath: the map written by ``eoformer segment --uncertainty`` (bits, 0-1).
            t1ceVolumeNode: the T1ce input.

        Raises:
            ValueError: the map is not on the T1ce's grid.
        """
        mapNode = slicer.util.loadVolume(
            str(mapPath),
            {
                "name": slicer.mrmlScene.GenerateUniqueName(
                    f"{t1ceVolumeNode.GetName()} uncertainty"
                ),
                "show": False,
            },
        )
        shape = slicer.util.arrayFromVolume(mapNode).shape
        expected = slicer.util.arrayFromVolume(t1ceVolumeNode).shape
        if shape != expected:
            self.removeNodeWithHelpers(mapNode)
            raise ValueError(
                _("The uncertainty map has {shape} voxels, the T1ce {expected}").format(
                    shape=shape, expected=expected
                )
            )
        ijkToRas = vtk.vtkMatrix4x4()
        t1ceVolumeNode.GetIJKToRASMatrix(ijkToRas)
        mapNode.SetIJKToRASMatrix(ijkToRas)
        storageNode = mapNode.GetStorageNode()
        if storageNode is not None:
            mapNode.SetAndObserveStorageNodeID(None)
            slicer.mrmlScene.RemoveNode(storageNode)
        self.placeInStudyOf(mapNode, t1ceVolumeNode)
        return mapNode

    @staticmethod
    def showUncertaintyMap(
        mapNode: vtkMRMLScalarVolumeNode,
        backgroundVolumeNode: vtkMRMLScalarVolumeNode,
        opacity: float = 0.5,
    ) -> None:
        """Show the uncertainty map as the foreground layer over ``backgroundVolumeNode`` in
        the slice views: Iron colours, window 0-1 bits, transparent where the model is sure
        (below :data:`UNCERTAINTY_OVERLAY_MIN_BITS`).

        Args:
            mapNode: the map (:meth:`importUncertaintyMap`).
            backgroundVolumeNode: the volume underneath, usually the T1ce.
            opacity: foreground opacity, 0-1.
        """
        mapNode.CreateDefaultDisplayNodes()
        displayNode: slicer.vtkMRMLScalarVolumeDisplayNode = mapNode.GetDisplayNode()
        displayNode.SetAndObserveColorNodeID(UNCERTAINTY_COLOR_NODE_ID)
        displayNode.SetAutoWindowLevel(0)
        displayNode.SetWindowLevelMinMax(0.0, 1.0)
        displayNode.SetLowerThreshold(UNCERTAINTY_OVERLAY_MIN_BITS)
        displayNode.SetApplyThreshold(1)
        slicer.util.setSliceViewerLayers(
            background=backgroundVolumeNode,
            foreground=mapNode,
            foregroundOpacity=min(max(float(opacity), 0.0), 1.0),
        )

    @staticmethod
    def setOverlayOpacity(opacity: float) -> None:
        """Opacity (0-1) of the foreground layer of every slice view."""
        slicer.util.setSliceViewerLayers(foregroundOpacity=min(max(float(opacity), 0.0), 1.0))

    @staticmethod
    def doubtfulRegions(mapNode: vtkMRMLScalarVolumeNode) -> List[tuple]:
        """The uncertain regions of a map, largest first: ``(centre RAS mm, volume mL)`` each
        (see ``EoFormerSegmentationLib.uncertainty.doubtful_regions``)."""
        ijkToRas = vtk.vtkMatrix4x4()
        mapNode.GetIJKToRASMatrix(ijkToRas)
        return eoformerUncertainty.doubtful_regions(
            slicer.util.arrayFromVolume(mapNode),
            slicer.util.arrayFromVTKMatrix(ijkToRas),
            float(np.prod(mapNode.GetSpacing())) / 1000.0,
        )

    @staticmethod
    def centreSliceViews(centreRas) -> None:
        """Centre every slice view on a point (RAS mm)."""
        r, a, s = (float(value) for value in centreRas)
        slicer.vtkMRMLSliceNode.JumpAllSlices(
            slicer.mrmlScene, r, a, s, slicer.vtkMRMLSliceNode.CenteredJumpSlice
        )

    @staticmethod
    def _uncertainVolumesFromReport(report: dict) -> Dict[str, float]:
        """Segment name -> uncertain mL from the report's ``uncertainty`` (keyed by region ID
        or name)."""
        reported = report.get("uncertainty") or {}
        uncertainMl = {}
        for segmentSpec in eoformerLabels.SEGMENTS:
            for key in (segmentSpec["id"], segmentSpec["name"]):
                if isinstance(reported.get(key), dict):
                    uncertainMl[segmentSpec["name"]] = float(reported[key].get("uncertain_ml", 0))
                    break
        return uncertainMl

    @staticmethod
    def _modelFromReport(report: dict) -> tuple:
        model = report.get("model") or {}
        if isinstance(model, dict):
            return str(model.get("name") or ""), str(model.get("sha256") or "")
        return str(model), str(report.get("model_sha256") or "")

    @staticmethod
    def _volumesFromReport(report: dict) -> Dict[str, float]:
        """Segment name -> mL from the report's ``volumes_ml`` (keyed by region ID or name)."""
        reported = report.get("volumes_ml") or {}
        volumesMl = {}
        for segmentSpec in eoformerLabels.SEGMENTS:
            for key in (segmentSpec["id"], segmentSpec["name"]):
                if key in reported:
                    volumesMl[segmentSpec["name"]] = float(reported[key])
                    break
        return volumesMl

    @staticmethod
    def setShow3D(segmentationNode: vtkMRMLSegmentationNode, show: bool) -> None:
        """Show the segments as surfaces in 3D views, or remove the surfaces."""
        if show:
            segmentationNode.CreateDefaultDisplayNodes()
            segmentationNode.CreateClosedSurfaceRepresentation()
            displayNode: slicer.vtkMRMLSegmentationDisplayNode = segmentationNode.GetDisplayNode()
            displayNode.SetVisibility3D(True)
        else:
            segmentationNode.RemoveClosedSurfaceRepresentation()

    # Fine-tuning

    def fineTuneCasesFolder(self) -> Path:
        """Folder of the saved training cases (``finetune-cases/`` in :meth:`dataFolder`)."""
        return self.dataFolder() / "finetune-cases"

    def fineTuneCases(self) -> List[Path]:
        """Saved training cases: folders with four volumes and a label map, by name."""
        folder = self.fineTuneCasesFolder()
        if not folder.is_dir():
            return []
        return sorted(
            path
            for path in folder.iterdir()
            if path.is_dir()
            and not path.name.startswith(".")
            and (any(path.glob("seg.nrrd")) or any(path.glob("*.seg.nrrd")))
        )

    def addFineTuneCase(
        self,
        volumes: Dict[str, vtkMRMLScalarVolumeNode],
        segmentationNode: Optional[vtkMRMLSegmentationNode],
        caseName: str = "",
    ) -> Path:
        """Save copies of the four volumes and the corrected labels as a training case.

        The case folder holds ``t1.nrrd``, ``t1ce.nrrd``, ``t2.nrrd``, ``flair.nrrd`` and
        ``seg.nrrd``, the BraTS label map (1 NCR, 2 ED, 4 ET) on the T1ce grid exactly as the
        segments show it: the layout that ``eoformer finetune --cases`` reads. It appears in
        the folder only when complete.

        Args:
            volumes: role -> volume node.
            segmentationNode: segmentation with the Necrotic tumor core, Edema and Enhancing
                tumor segments (or Whole tumor, Tumor core and Enhancing tumor), found by ID
                or name.
            caseName: folder name; default from the T1ce volume name and the time.

        Returns:
            The case folder.

        Raises:
            ValueError: a missing segment, or segments that overlap (with voxel counts).
        """
        self._checkInputs(volumes)
        if segmentationNode is None:
            raise ValueError(_("Select the corrected segmentation"))
        t1ceVolumeNode = volumes["t1ce"]
        labelMap = self.subregionLabelMap(segmentationNode, t1ceVolumeNode)
        if not caseName:
            caseName = f"{t1ceVolumeNode.GetName()}-{time.strftime('%Y%m%d-%H%M%S')}"
        caseName = re.sub(r"[^0-9A-Za-z._-]+", "_", caseName).strip("._") or "case"
        casesFolder = self.fineTuneCasesFolder()
        caseFolder = casesFolder / caseName
        if caseFolder.exists():
            raise ValueError(_("A training case named {name} exists already").format(name=caseName))
        casesFolder.mkdir(parents=True, exist_ok=True)
        partialFolder = Path(tempfile.mkdtemp(prefix=f".{caseName}.", dir=casesFolder))
        labelNode = None
        try:
            for role in SEQUENCE_ROLES:
                self.writeVolumeFile(volumes[role], partialFolder / f"{role}.nrrd")
            labelNode = slicer.mrmlScene.AddNewNodeByClass(
                "vtkMRMLLabelMapVolumeNode", slicer.mrmlScene.GenerateUniqueName("EoFormerCase")
            )
            labelNode.SetHideFromEditors(True)
            ijkToRas = vtk.vtkMatrix4x4()
            t1ceVolumeNode.GetIJKToRASMatrix(ijkToRas)
            labelNode.SetIJKToRASMatrix(ijkToRas)
            slicer.util.updateVolumeFromArray(labelNode, labelMap)
            if not slicer.util.exportNode(labelNode, str(partialFolder / "seg.nrrd"), {}):
                raise RuntimeError(_("Cannot write the labels of the training case"))
            description = {
                "volumes": {role: volumes[role].GetName() for role in SEQUENCE_ROLES},
                "segmentation": segmentationNode.GetName(),
                "labels": "BraTS 2020: 1 necrotic tumor core, 2 edema, 4 enhancing tumor",
                "voxels": {
                    spec["name"]: int((labelMap == spec["label"]).sum())
                    for spec in eoformerLabels.SUBREGION_SEGMENTS
                },
                "saved": time.strftime("%Y-%m-%dT%H:%M:%S"),
            }
            (partialFolder / "case.json").write_text(
                json.dumps(description, indent=2), encoding="utf-8"
            )
            os.replace(partialFolder, caseFolder)
        except Exception:
            shutil.rmtree(partialFolder, ignore_errors=True)
            raise
        finally:
            if labelNode is not None:
                self.removeNodeWithHelpers(labelNode)
        return caseFolder

    def removeFineTuneCase(self, caseFolder: Path) -> None:
        """Delete a saved training case."""
        caseFolder = Path(caseFolder)
        if caseFolder.parent.resolve() != self.fineTuneCasesFolder().resolve():
            raise ValueError(_("{folder} is not a saved training case").format(folder=caseFolder))
        shutil.rmtree(caseFolder)

    def startFineTune(
        self,
        modelPath: str,
        caseFolders: List[Path],
        iterations: int = 100,
        learningRate: float = 1e-4,
        modelName: str = "",
        device: str = "auto",
        extraArguments: Optional[List[str]] = None,
        onProgress: Optional[Callable[[float, str], None]] = None,
        onLog: Optional[Callable[[str], None]] = None,
        onFinished: Optional[Callable[[TaskOutcome], None]] = None,
    ) -> EngineProcess:
        """Fine-tune a model on saved training cases in the background.

        The new model goes into the user's model folder (never over the bundled model); the
        engine writes it atomically, so a failed or cancelled run leaves no file behind.

        Args:
            modelPath: the parent checkpoint; "" for the bundled model.
            caseFolders: training cases (see :meth:`addFineTuneCase`).
            iterations: optimisation steps.
            learningRate: peak learning rate.
            modelName: file name of the new model (without ``.pt``); default with the date.
            device: ``"auto"``, ``"cuda"`` or ``"cpu"``.
            extraArguments: more ``eoformer finetune`` options.
            onProgress: called with (fraction 0-1, message with the loss).
            onLog: called with each line of the engine's output.
            onFinished: called once with a :class:`TaskOutcome` (a :class:`FineTuneResult` on
                success).
        """
        if not caseFolders:
            raise ValueError(_("Add at least one training case first"))
        parentPath = self.resolveModelPath(modelPath)
        if not parentPath.is_file():
            raise ValueError(_("The model file {path} does not exist").format(path=parentPath))
        if not modelName:
            modelName = f"eoformer_finetuned_{time.strftime('%Y%m%d-%H%M%S')}"
        modelName = re.sub(r"[^0-9A-Za-z._-]+", "_", modelName).strip("._")
        if modelName.endswith(".pt"):
            modelName = modelName[: -len(".pt")]
        outputPath = self.modelsFolder() / f"{modelName}.pt"
        if outputPath.exists():
            raise ValueError(
                _("A model named {name} exists already; choose another name").format(name=modelName)
            )
        arguments = ["--model", str(parentPath), "--cases", *[str(path) for path in caseFolders]]
        arguments += ["--out", str(outputPath), "--iterations", str(int(iterations))]
        arguments += ["--lr", f"{learningRate:g}", "--device", device, "--progress-json"]
        arguments += list(extraArguments or [])
        command = self.engineCommand("finetune", arguments)
        startTime = time.monotonic()

        def onExit(process: EngineProcess) -> None:
            if process.cancelled:
                outcome = TaskOutcome("cancelled")
            elif process.returnCode != 0 or not outputPath.is_file():
                outcome = TaskOutcome(
                    "failed",
                    errorMessage=process.failureMessage(),
                    userError=bool(process.userError),
                )
            else:
                outcome = TaskOutcome(
                    "succeeded",
                    result=FineTuneResult(
                        modelPath=outputPath,
                        card=eoformerModels.read_model_card(outputPath),
                        seconds=time.monotonic() - startTime,
                    ),
                )
            if onFinished:
                onFinished(outcome)

        process = EngineProcess(command, self.engineEnvironment(), onProgress, onLog, onExit)
        process.start()
        return process


#
# EoFormerSegmentationTest
#


class EoFormerSegmentationTest(ScriptedLoadableModuleTest):
    """Self-test, run by "Reload and Test" and by the extension's ctest.

    The fast tests need neither PyTorch nor MONAI (extension build machines have neither): the
    panel, the sample data, and a label map turned into segments and back. Segmenting the
    sample case with the engine runs only when the engine's packages are installed or the
    ``EOFORMER_SELFTEST_ENGINE`` environment variable is 1.
    """

    def setUp(self):
        """Start from an empty scene."""
        slicer.mrmlScene.Clear()

    def runTest(self):
        """Run all tests."""
        self.setUp()
        self.test_PanelAndSampleData()
        self.setUp()
        self.test_LabelMapRoundTrip()
        logic = EoFormerSegmentationLogic()
        if os.environ.get(SELF_TEST_ENGINE_VARIABLE) == "1" or not logic.missingDependencies():
            self.setUp()
            self.test_SegmentSampleCase()
        else:
            self.delayDisplay(
                "Engine test skipped: PyTorch and MONAI are not installed "
                f"(set {SELF_TEST_ENGINE_VARIABLE}=1 to run it)"
            )

    def test_PanelAndSampleData(self):
        """The panel builds, the sample case loads and its four volumes are picked by name."""
        import SampleData

        self.delayDisplay("Loading the sample case")
        registerSampleData()
        nodes = SampleData.downloadSamples(SAMPLE_NAME)
        self.assertEqual(len(nodes), 5)
        parent = slicer.qMRMLWidget()
        parent.setLayout(qt.QVBoxLayout())
        parent.setMRMLScene(slicer.mrmlScene)
        widget = EoFormerSegmentationWidget(parent)
        widget.setup()
        volumes = widget.currentInputVolumes()
        self.assertEqual(
            [volumes[role].GetName() for role in SEQUENCE_ROLES],
            [f"{SAMPLE_CASE}_{role}" for role in SEQUENCE_ROLES],
        )
        self.assertEqual(widget.logic.inputProblems(volumes), [])
        widget.cleanup()
        parent.deleteLater()
        slicer.app.processEvents()

    def test_LabelMapRoundTrip(self):
        """BraTS labels -> three sub-region segments -> the same labels (no engine needed)."""
        logic = EoFormerSegmentationLogic()
        reference = slicer.mrmlScene.AddNewNodeByClass("vtkMRMLScalarVolumeNode", "t1ce")
        reference.SetSpacing(1.0, 1.0, 2.0)
        slicer.util.updateVolumeFromArray(reference, np.zeros((6, 7, 8), np.int16))
        labels = np.zeros((6, 7, 8), np.uint8)
        labels[1:3, 2:5, 2:6] = 2
        labels[2, 3, 3:5] = 1
        labels[2, 3, 5] = 4
        labelNode: slicer.vtkMRMLLabelMapVolumeNode = slicer.mrmlScene.AddNewNodeByClass(
            "vtkMRMLLabelMapVolumeNode", "labels"
        )
        labelNode.SetSpacing(1.0, 1.0, 2.0)
        slicer.util.updateVolumeFromArray(labelNode, labels.copy())
        segmentationNode: vtkMRMLSegmentationNode = slicer.mrmlScene.AddNewNodeByClass(
            "vtkMRMLSegmentationNode", "tumor"
        )
        segmentationNode.SetReferenceImageGeometryParameterFromVolumeNode(reference)
        logic.writeSubregionSegments(segmentationNode, labelNode)
        logic.removeNodeWithHelpers(labelNode)
        segmentation = segmentationNode.GetSegmentation()
        self.assertEqual(
            [segmentation.GetSegment(i).GetName() for i in segmentation.GetSegmentIDs()],
            [spec["name"] for spec in eoformerLabels.SUBREGION_SEGMENTS],
        )
        np.testing.assert_array_equal(logic.subregionLabelMap(segmentationNode, reference), labels)
        self.delayDisplay("Test passed: label map round trip")

    def test_SegmentSampleCase(self):
        """Sample data in, three segments with plausible volumes out, inputs unchanged."""
        import SampleData

        self.delayDisplay("Loading the sample case")
        registerSampleData()
        SampleData.downloadSamples(SAMPLE_NAME)
        logic = EoFormerSegmentationLogic()
        volumes = logic.matchInputVolumes(
            logic.candidateInputVolumes(), {role: None for role in SEQUENCE_ROLES}
        )
        self.assertEqual(sorted(volumes), sorted(SEQUENCE_ROLES))
        self.assertEqual(logic.inputProblems(volumes), [])
        t1ceBefore = slicer.util.arrayFromVolume(volumes["t1ce"]).copy()

        self.delayDisplay("Segmenting (this takes about a minute on a CPU)")
        missing = logic.missingDependencies()
        self.assertEqual(missing, [], f"install {missing} first (press Apply once)")
        result = logic.segment(volumes, device="auto", timeoutSeconds=1800)

        segmentation = result.segmentationNode.GetSegmentation()
        names = [
            segmentation.GetSegment(segmentation.GetNthSegmentID(index)).GetName()
            for index in range(segmentation.GetNumberOfSegments())
        ]
        self.assertEqual(names, [spec["name"] for spec in eoformerLabels.SUBREGION_SEGMENTS])
        volumesMl = [result.volumesMl[segment["name"]] for segment in eoformerLabels.SEGMENTS]
        whole, core, enhancing = volumesMl
        # the sample tumor's reference volumes are WT 30.2, TC 9.3 and ET 6.8 mL
        self.assertGreater(whole, 3.0)
        self.assertLess(whole, 300.0)
        self.assertLessEqual(core, whole + 1e-6)
        self.assertLessEqual(enhancing, core + 1e-6)
        self.assertTrue(result.modelName)
        self.assertEqual(
            result.segmentationNode.GetAttribute(MODEL_ATTRIBUTE_NAME), result.modelName
        )
        np.testing.assert_array_equal(slicer.util.arrayFromVolume(volumes["t1ce"]), t1ceBefore)
        self.delayDisplay(
            "Test passed: WT {:.1f} mL, TC {:.1f} mL, ET {:.1f} mL".format(*volumesMl)
        )
