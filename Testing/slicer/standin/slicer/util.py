"""Stand-in of ``slicer.util``: the functions the module calls, with Slicer's signatures.

Files are read and written with SimpleITK (volumes, converted between Slicer's RAS and the
files' LPS) and slicerio (``.seg.nrrd``). Dialogs do not open; they are recorded in
``_messages`` (kind, text, options) and ``confirmOkCancelDisplay`` answers from
``_confirmAnswers`` (True when empty) so that tests can check what a user would have seen.
"""

from __future__ import annotations

import contextlib
import os
import re
import traceback
import types
from pathlib import Path

import numpy as np
import vtk

import slicer

from . import _mrml

_messages = []
_confirmAnswers = []
_pipInstalls = []

_LPS_FROM_RAS = np.diag([-1.0, -1.0, 1.0, 1.0])


# Nodes and arrays


def getNodesByClass(className, scene=None):
    scene = scene or slicer.mrmlScene
    collection = scene.GetNodesByClass(className)
    return [collection.GetItemAsObject(index) for index in range(collection.GetNumberOfItems())]


def getNode(pattern="*", index=0, scene=None):
    scene = scene or slicer.mrmlScene
    node = scene.GetNodeByID(pattern) or scene.GetFirstNodeByName(pattern)
    if node is None:
        raise slicer.util.MRMLNodeNotFoundException(
            f"could not find nodes in the scene by name or id '{pattern}'"
        )
    return node


class MRMLNodeNotFoundException(Exception):
    pass


def arrayFromVolume(volumeNode):
    return _mrml.voxelArray(volumeNode)


def updateVolumeFromArray(volumeNode, narray):
    _mrml.setVoxelArray(volumeNode, narray)


def arrayFromVolumeModified(volumeNode):
    imageData = volumeNode.GetImageData()
    if imageData is not None:
        imageData.Modified()
    volumeNode.Modified()


def arrayFromVTKMatrix(vmatrix):
    size = 4 if isinstance(vmatrix, vtk.vtkMatrix4x4) else 3
    return np.array([[vmatrix.GetElement(r, c) for c in range(size)] for r in range(size)])


def vtkMatrixFromArray(narray):
    matrix = vtk.vtkMatrix4x4()
    for row in range(4):
        for column in range(4):
            matrix.SetElement(row, column, float(narray[row][column]))
    return matrix


# Reading and writing


def _baseName(path):
    name = Path(path).name
    for suffix in (".seg.nrrd", ".nii.gz", ".nrrd", ".nii", ".mha", ".nhdr"):
        if name.lower().endswith(suffix):
            return name[: -len(suffix)]
    return Path(path).stem


def _addHelperNode(node, role, className):
    helper = slicer.mrmlScene.AddNode(_mrml._HelperNode(className))
    node.SetNodeReferenceID(role, helper.GetID())


def _readVolume(filename, properties, className):
    import SimpleITK as sitk

    image = sitk.ReadImage(str(filename))
    volumeNode = slicer.mrmlScene.CreateNodeByClass(className)
    lpsDirections = np.array(image.GetDirection()).reshape(3, 3)
    ijkToLps = np.eye(4)
    ijkToLps[:3, :3] = lpsDirections * np.array(image.GetSpacing())
    ijkToLps[:3, 3] = image.GetOrigin()
    volumeNode.SetIJKToRASMatrix(vtkMatrixFromArray(_LPS_FROM_RAS @ ijkToLps))
    _mrml.setVoxelArray(volumeNode, sitk.GetArrayFromImage(image))
    volumeNode.SetName(
        properties.get("name") or slicer.mrmlScene.GenerateUniqueName(_baseName(filename))
    )
    slicer.mrmlScene.AddNode(volumeNode)
    if className == "vtkMRMLScalarVolumeNode":
        volumeNode.CreateDefaultDisplayNodes()
    else:
        _addHelperNode(volumeNode, "display", "vtkMRMLLabelMapVolumeDisplayNode")
    _addHelperNode(volumeNode, "storage", "vtkMRMLVolumeArchetypeStorageNode")
    return volumeNode


def _readSegmentation(filename, properties):
    import slicerio

    segmentationData = slicerio.read_segmentation(str(filename))
    ijkToRas = _LPS_FROM_RAS @ np.array(segmentationData["ijkToLPS"])
    segmentationNode = slicer.mrmlScene.CreateNodeByClass("vtkMRMLSegmentationNode")
    segmentationNode.SetName(
        properties.get("name") or slicer.mrmlScene.GenerateUniqueName(_baseName(filename))
    )
    slicer.mrmlScene.AddNode(segmentationNode)
    segmentation = segmentationNode.GetSegmentation()
    for segmentData in segmentationData["segments"]:
        segmentId = segmentation.AddEmptySegment(
            segmentData["id"], segmentData.get("name", ""), segmentData.get("color")
        )
        segment = segmentation.GetSegment(segmentId)
        if "terminology" in segmentData:
            segment.SetTerminology(
                slicerio.segmentation.terminology_entry_to_string(segmentData["terminology"])
            )
        mask = slicerio.segment_mask(segmentationData, segmentData["id"])  # (i, j, k)
        segment._mask = np.ascontiguousarray(mask.transpose(2, 1, 0)).astype(np.uint8)
        segment._ijkToRas = ijkToRas
    segmentationNode.CreateDefaultDisplayNodes()
    _addHelperNode(segmentationNode, "storage", "vtkMRMLSegmentationStorageNode")
    return segmentationNode


def loadNodeFromFile(filename, filetype=None, properties={}, returnNode=False):  # noqa: B006 (Slicer's signature)
    properties = dict(properties)
    if not os.path.isfile(filename):
        raise RuntimeError(f"Failed to load node from file: {filename}")
    if filetype == "SegmentationFile" or str(filename).lower().endswith(".seg.nrrd"):
        return _readSegmentation(filename, properties)
    className = (
        "vtkMRMLLabelMapVolumeNode" if properties.get("labelmap") else "vtkMRMLScalarVolumeNode"
    )
    return _readVolume(filename, properties, className)


def loadVolume(filename, properties={}, returnNode=False):  # noqa: B006 (Slicer's signature)
    return loadNodeFromFile(filename, "VolumeFile", properties)


def loadLabelVolume(filename, properties={}, returnNode=False):  # noqa: B006 (Slicer's signature)
    return loadNodeFromFile(filename, "VolumeFile", dict(properties, labelmap=True))


def loadSegmentation(filename, properties={}, returnNode=False):  # noqa: B006 (Slicer's signature)
    return loadNodeFromFile(filename, "SegmentationFile", properties)


def saveNode(node, filename, properties={}):  # noqa: B006 (Slicer's signature)
    """Write a volume (SimpleITK) or a segmentation (slicerio); adds a storage node like Slicer."""
    properties["nodeID"] = node.GetID()
    properties["fileName"] = filename
    if node.IsA("vtkMRMLVolumeNode"):
        _writeVolume(node, filename, bool(properties.get("useCompression", 1)))
    elif node.IsA("vtkMRMLSegmentationNode"):
        _writeSegmentation(node, filename)
    else:
        return False
    if node.GetStorageNode() is None:
        _addHelperNode(node, "storage", "vtkMRMLStorageNode")
    return True


def exportNode(node, filename, properties={}, world=False):  # noqa: B006 (Slicer's signature)
    """Write a node to a file without changing it or the scene (no storage node is added)."""
    if world:
        raise NotImplementedError("the stand-in exports in the node's own coordinates")
    if node.IsA("vtkMRMLVolumeNode"):
        _writeVolume(node, filename, bool(properties.get("useCompression", 1)))
    elif node.IsA("vtkMRMLSegmentationNode"):
        _writeSegmentation(node, filename)
    else:
        return False
    return True


def _writeVolume(volumeNode, filename, useCompression):
    import SimpleITK as sitk

    image = sitk.GetImageFromArray(np.array(_mrml.voxelArray(volumeNode)))
    ijkToLps = _LPS_FROM_RAS @ _mrml.ijkToRasArray(volumeNode)
    spacing = np.linalg.norm(ijkToLps[:3, :3], axis=0)
    image.SetSpacing(spacing.tolist())
    image.SetDirection((ijkToLps[:3, :3] / spacing).flatten().tolist())
    image.SetOrigin(ijkToLps[:3, 3].tolist())
    sitk.WriteImage(image, str(filename), useCompression)


def _writeSegmentation(segmentationNode, filename):
    import slicerio

    segmentation = segmentationNode.GetSegmentation()
    segments = [segmentation.GetSegment(i) for i in segmentation.GetSegmentIDs()]
    grids = {
        tuple(s._ijkToRas.round(6).flatten()) + s._mask.shape
        for s in segments
        if s._mask is not None
    }
    if len(grids) != 1:
        raise NotImplementedError("the stand-in writes segmentations whose segments share one grid")
    reference = next(s for s in segments if s._mask is not None)
    shapeIjk = tuple(reversed(reference._mask.shape))
    data = slicerio.create_segmentation(shapeIjk, _LPS_FROM_RAS @ reference._ijkToRas)
    for segmentId in segmentation.GetSegmentIDs():
        segment = segmentation.GetSegment(segmentId)
        fields = {"id": segmentId, "name": segment.GetName(), "color": list(segment.GetColor())}
        if segment.GetTerminology():
            fields["terminology"] = slicerio.segmentation.terminology_entry_from_string(
                segment.GetTerminology()
            )
        mask = (
            segment._mask
            if segment._mask is not None
            else np.zeros(reference._mask.shape, np.uint8)
        )
        slicerio.add_segment(data, mask.transpose(2, 1, 0) > 0, fields)
    slicerio.write_segmentation(str(filename), data)


# Segments


def _resampleNearest(mask, sourceIjkToRas, targetIjkToRas, targetShape):
    """Nearest-neighbour resampling of a (K, J, I) mask onto another grid (world coordinates)."""
    if mask.shape == tuple(targetShape) and np.allclose(sourceIjkToRas, targetIjkToRas, atol=1e-5):
        return mask.copy()
    from scipy import ndimage

    targetToSource = np.linalg.inv(sourceIjkToRas) @ targetIjkToRas
    k, j, i = np.meshgrid(*[np.arange(n) for n in targetShape], indexing="ij")
    ijk = np.stack([i.ravel(), j.ravel(), k.ravel(), np.ones(i.size)])
    source = targetToSource @ ijk
    coordinates = np.stack([source[2], source[1], source[0]])  # (k, j, i)
    values = ndimage.map_coordinates(mask, coordinates, order=0, mode="constant", cval=0)
    return values.reshape(targetShape).astype(np.uint8)


def _temporaryLabelVolumeWithOrphanDisplay():
    """What Slicer's segment helpers do: a temporary label volume gets a display node, and
    removing the volume afterwards leaves that display node in the scene."""
    temporary = slicer.mrmlScene.AddNewNodeByClass("vtkMRMLLabelMapVolumeNode", "__temp__")
    _addHelperNode(temporary, "display", "vtkMRMLLabelMapVolumeDisplayNode")
    slicer.mrmlScene.RemoveNode(temporary)


def updateSegmentBinaryLabelmapFromArray(
    narray, segmentationNode, segmentId, referenceVolumeNode=None
):
    if referenceVolumeNode is None:
        referenceVolumeNode = segmentationNode.GetNodeReference(
            slicer.vtkMRMLSegmentationNode.GetReferenceImageGeometryReferenceRole()
        )
        if referenceVolumeNode is None:
            raise RuntimeError("No reference volume is found in the input segmentationNode")
    segment = segmentationNode.GetSegmentation().GetSegment(segmentId)
    if segment is None:
        raise RuntimeError("Importing of segment failed.")
    expected = _mrml.voxelArray(referenceVolumeNode).shape[:3]
    if tuple(narray.shape) != tuple(expected):
        raise RuntimeError(
            f"array shape {narray.shape} does not match the reference volume {expected}"
        )
    _temporaryLabelVolumeWithOrphanDisplay()
    segment._mask = (np.asarray(narray) > 0).astype(np.uint8)
    segment._ijkToRas = _mrml.ijkToRasArray(referenceVolumeNode)
    segmentationNode.Modified()


def arrayFromSegmentBinaryLabelmap(segmentationNode, segmentId, referenceVolumeNode=None):
    _temporaryLabelVolumeWithOrphanDisplay()
    return _segmentMaskOnGrid(segmentationNode, segmentId, referenceVolumeNode)


def _segmentMaskOnGrid(segmentationNode, segmentId, referenceVolumeNode=None):
    """A segment's mask ``(K, J, I)`` resampled (nearest) onto a volume's grid."""
    if referenceVolumeNode is None:
        referenceVolumeNode = segmentationNode.GetNodeReference(
            slicer.vtkMRMLSegmentationNode.GetReferenceImageGeometryReferenceRole()
        )
    segment = segmentationNode.GetSegmentation().GetSegment(segmentId)
    targetShape = _mrml.voxelArray(referenceVolumeNode).shape[:3]
    if segment is None or segment._mask is None:
        return np.zeros(targetShape, np.uint8)
    return _resampleNearest(
        segment._mask, segment._ijkToRas, _mrml.ijkToRasArray(referenceVolumeNode), targetShape
    )


# Slice views


def setSliceViewerLayers(
    background="keep-current",
    foreground="keep-current",
    label="keep-current",
    foregroundOpacity=None,
    labelOpacity=None,
    fit=False,
    rotateToVolumePlane=False,
):
    """Set the layers of every slice view (each ``vtkMRMLSliceCompositeNode``), as Slicer does;
    a node or a node ID per layer, "keep-current" to leave it."""
    if label != "keep-current" or labelOpacity is not None or fit or rotateToVolumePlane:
        raise NotImplementedError("the stand-in sets background and foreground layers only")

    def _nodeID(nodeOrID):
        return nodeOrID.GetID() if isinstance(nodeOrID, slicer.vtkMRMLNode) else nodeOrID

    for compositeNode in getNodesByClass("vtkMRMLSliceCompositeNode"):
        if background != "keep-current":
            compositeNode.SetBackgroundVolumeID(_nodeID(background))
        if foreground != "keep-current":
            compositeNode.SetForegroundVolumeID(_nodeID(foreground))
        if foregroundOpacity is not None:
            compositeNode.SetForegroundOpacity(foregroundOpacity)


# Dialogs


def _record(kind, text, **options):
    _messages.append((kind, text, options))


def errorDisplay(text, windowTitle=None, parent=None, standardButtons=None, **kwargs):
    _record("error", text, windowTitle=windowTitle, **kwargs)


def warningDisplay(text, windowTitle=None, parent=None, standardButtons=None, **kwargs):
    _record("warning", text, windowTitle=windowTitle, **kwargs)


def infoDisplay(text, windowTitle=None, parent=None, standardButtons=None, **kwargs):
    _record("info", text, windowTitle=windowTitle, **kwargs)


def confirmOkCancelDisplay(text, windowTitle=None, parent=None, **kwargs):
    _record("confirm", text, windowTitle=windowTitle, **kwargs)
    return _confirmAnswers.pop(0) if _confirmAnswers else True


def delayDisplay(message, autoCloseMsec=1000, parent=None, **kwargs):
    _record("delay", message)


def showStatusMessage(message, duration=0):
    _record("status", message)


@contextlib.contextmanager
def tryWithErrorDisplay(message=None, show=True, waitCursor=False):
    try:
        yield
    except Exception as error:
        if show:
            errorDisplay(
                f"{message}\n\n{error}" if message else str(error),
                detailedText=traceback.format_exc(),
            )
        raise


class WaitCursor:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


def mainWindow():
    return None


def settingsValue(key, default, converter=lambda v: v, settings=None):
    return default


def toBool(value):
    return str(value).lower() in ("1", "true", "yes", "on")


_pipConstraints = []
"""Contents of the ``--constraint`` files given to :func:`pip_install`, read when pip would."""


def pip_install(requirements, **kwargs):
    _pipInstalls.append(requirements)
    if isinstance(requirements, (list, tuple)) and "--constraint" in requirements:
        path = requirements[list(requirements).index("--constraint") + 1]
        with open(path, encoding="utf-8") as stream:
            _pipConstraints.append(stream.read())


def modulePath(moduleName):
    return getattr(slicer.modules, moduleName.lower()).path


# Widgets


def loadUI(path):
    from PySide6.QtCore import QBuffer, QByteArray
    from PySide6.QtUiTools import QUiLoader

    from . import _widgets

    if not os.path.isfile(path):
        raise RuntimeError(f"Could not load UI file {path}")
    # the .ui's mrmlSceneChanged(vtkMRMLScene*) connections need Slicer's C++ types;
    # qMRMLWidget.setMRMLScene of the stand-in hands the scene to the selectors instead
    text = re.sub(
        r"<connections>.*?</connections>", "", Path(path).read_text(encoding="utf-8"), flags=re.S
    )
    loader = QUiLoader()
    for widgetClass in _widgets.CUSTOM_WIDGET_CLASSES:
        loader.registerCustomWidget(widgetClass)
    buffer = QBuffer()
    buffer.setData(QByteArray(text.encode("utf-8")))
    buffer.open(QBuffer.ReadOnly)
    widget = loader.load(buffer)
    if widget is None:
        raise RuntimeError(f"Could not load UI file {path}: {loader.errorString()}")
    return widget


def childWidgetVariables(widget):
    from PySide6.QtCore import QObject

    ui = types.SimpleNamespace()
    for child in widget.findChildren(QObject):
        if child.objectName() and re.match(r"^[A-Za-z_]\w*$", child.objectName()):
            setattr(ui, child.objectName(), child)
    return ui


class VTKObservationMixin:
    """Same bookkeeping as Slicer's: one observer per (object, event, method)."""

    def __init__(self):
        super().__init__()
        self.__observations = {}

    @property
    def Observations(self):
        return [
            (obj, event, method, group, tag, priority)
            for obj, events in self.__observations.items()
            for event, methods in events.items()
            for method, (group, tag, priority) in methods.items()
        ]

    def addObserver(self, obj, event, method, group="none", priority=0.0):
        methods = self.__observations.setdefault(obj, {}).setdefault(event, {})
        if method in methods:
            return
        methods[method] = (group, obj.AddObserver(event, method, priority), priority)

    def removeObserver(self, obj, event, method):
        try:
            _group, tag, _priority = self.__observations[obj][event].pop(method)
        except KeyError:
            return
        obj.RemoveObserver(tag)

    def removeObservers(self, method=None):
        for obj, events in self.__observations.items():
            for methods in events.values():
                for observedMethod in list(methods):
                    if method is None or observedMethod == method:
                        obj.RemoveObserver(methods.pop(observedMethod)[1])
        if method is None:
            self.__observations.clear()

    def hasObserver(self, obj, event, method):
        return method in self.__observations.get(obj, {}).get(event, {})
