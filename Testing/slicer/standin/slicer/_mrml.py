"""MRML scene and nodes of the stand-in, on real VTK objects.

Each class offers only method names that ``../shared/slicer-api/manifest.json`` lists for the
class of the same name (or one of its superclasses); ``test_slicer_manifest.py`` checks this.
Geometry follows Slicer: a volume's voxel array is ``(K, J, I)`` (slowest axis first) and its
IJK-to-RAS matrix is ``directions * spacing`` plus the origin, in RAS millimetres.

Segments keep their binary labelmap as a private numpy array ``(K, J, I)`` with the IJK-to-RAS
matrix of the grid it is on (real Slicer keeps a ``vtkOrientedImageData``).
"""

from __future__ import annotations

import itertools

import numpy as np
import vtk
from vtk.util import numpy_support

_NODE_CLASSES = {}


def _registered(cls):
    _NODE_CLASSES[cls.__name__] = cls
    return cls


class vtkMRMLNode(vtk.vtkObject):
    """Base of all stand-in nodes: ID, name, attributes, references, batched Modified events."""

    def __init__(self):
        super().__init__()
        self._id = None
        self._scene = None
        self._name = ""
        self._description = ""
        self._attributes = {}
        self._hideFromEditors = False
        self._references = {}
        self._modifyDepth = 0
        self._modifiedPending = False
        self._singletonTag = None

    def GetClassName(self):
        return type(self).__name__

    def IsA(self, className):
        return int(any(klass.__name__ == className for klass in type(self).__mro__))

    def GetID(self):
        return self._id

    def GetScene(self):
        return self._scene

    def GetName(self):
        return self._name

    def SetName(self, name):
        if name != self._name:
            self._name = name
            self.Modified()

    def GetDescription(self):
        return self._description

    def SetDescription(self, description):
        self._description = description
        self.Modified()

    def SetAttribute(self, name, value):
        self._attributes[name] = value
        self.Modified()

    def GetAttribute(self, name):
        return self._attributes.get(name)

    def GetAttributeNames(self):
        return tuple(self._attributes)

    def RemoveAttribute(self, name):
        self._attributes.pop(name, None)
        self.Modified()

    def GetHideFromEditors(self):
        return int(self._hideFromEditors)

    def SetHideFromEditors(self, hide):
        self._hideFromEditors = bool(hide)
        self.Modified()

    def SetNodeReferenceID(self, role, referencedNodeId):
        if referencedNodeId:
            self._references[role] = referencedNodeId
        else:
            self._references.pop(role, None)
        self.Modified()

    def SetAndObserveNodeReferenceID(self, role, referencedNodeId):
        self.SetNodeReferenceID(role, referencedNodeId)

    def GetNodeReferenceID(self, role):
        return self._references.get(role)

    def GetNodeReference(self, role):
        referencedNodeId = self._references.get(role)
        if referencedNodeId is None or self._scene is None:
            return None
        return self._scene.GetNodeByID(referencedNodeId)

    def SetSingletonTag(self, tag):
        self._singletonTag = tag

    def GetSingletonTag(self):
        return self._singletonTag

    def StartModify(self):
        self._modifyDepth += 1
        return self._modifyDepth - 1

    def EndModify(self, previous):
        self._modifyDepth = previous
        if self._modifyDepth == 0 and self._modifiedPending:
            self._modifiedPending = False
            super().Modified()
        return self._modifyDepth

    def Modified(self):
        if self._modifyDepth > 0:
            self._modifiedPending = True
        else:
            super().Modified()


@_registered
class vtkMRMLScriptedModuleNode(vtkMRMLNode):
    """Parameter node: string parameters plus node references."""

    def __init__(self):
        super().__init__()
        self._parameters = {}
        self._moduleName = ""

    def SetParameter(self, name, value):
        if self._parameters.get(name) != str(value):
            self._parameters[name] = str(value)
            self.Modified()

    def GetParameter(self, name):
        return self._parameters.get(name, "")

    def HasParameter(self, name):
        return name in self._parameters

    def UnsetParameter(self, name):
        self._parameters.pop(name, None)
        self.Modified()

    def GetParameterNames(self):
        return tuple(self._parameters)

    def SetModuleName(self, name):
        self._moduleName = name

    def GetModuleName(self):
        return self._moduleName


class vtkMRMLStorableNode(vtkMRMLNode):
    def GetStorageNode(self):
        return self.GetNodeReference("storage")

    def SetAndObserveStorageNodeID(self, storageNodeID):
        self.SetNodeReferenceID("storage", storageNodeID)


class vtkMRMLTransformableNode(vtkMRMLStorableNode):
    def GetParentTransformNode(self):
        return self.GetNodeReference("transform")


class vtkMRMLDisplayableNode(vtkMRMLTransformableNode):
    def GetDisplayNode(self):
        return self.GetNodeReference("display")

    def CreateDefaultDisplayNodes(self):
        pass


class _HelperNode(vtkMRMLNode):
    """Storage or volume display node created by readers and writers (no public API of its own)."""

    def __init__(self, className="vtkMRMLStorageNode"):
        super().__init__()
        self._className = className

    def GetClassName(self):
        return self._className


class vtkMRMLVolumeNode(vtkMRMLDisplayableNode):
    """Image data plus IJK-to-RAS geometry (origin, spacing, axis directions)."""

    def __init__(self):
        super().__init__()
        self._imageData = None
        self._origin = np.zeros(3)
        self._spacing = np.ones(3)
        self._directions = np.eye(3)

    def GetImageData(self):
        return self._imageData

    def SetAndObserveImageData(self, imageData):
        self._imageData = imageData
        self.Modified()

    def GetOrigin(self):
        return tuple(self._origin)

    def SetOrigin(self, *origin):
        self._origin = np.array(origin[0] if len(origin) == 1 else origin, dtype=float)
        self.Modified()

    def GetSpacing(self):
        return tuple(self._spacing)

    def SetSpacing(self, *spacing):
        self._spacing = np.array(spacing[0] if len(spacing) == 1 else spacing, dtype=float)
        self.Modified()

    def GetIJKToRASDirectionMatrix(self, matrix):
        for row in range(3):
            for column in range(3):
                matrix.SetElement(row, column, self._directions[row, column])

    def SetIJKToRASDirectionMatrix(self, matrix):
        self._directions = np.array(
            [[matrix.GetElement(row, column) for column in range(3)] for row in range(3)]
        )
        self.Modified()

    def GetIJKToRASMatrix(self, matrix):
        ijkToRas = _ijkToRasArray(self)
        for row in range(4):
            for column in range(4):
                matrix.SetElement(row, column, ijkToRas[row, column])

    def SetIJKToRASMatrix(self, matrix):
        ijkToRas = np.array([[matrix.GetElement(r, c) for c in range(4)] for r in range(4)])
        spacing = np.linalg.norm(ijkToRas[:3, :3], axis=0)
        self._spacing = spacing
        self._directions = ijkToRas[:3, :3] / spacing
        self._origin = ijkToRas[:3, 3].copy()
        self.Modified()

    def GetRASToIJKMatrix(self, matrix):
        rasToIjk = np.linalg.inv(_ijkToRasArray(self))
        for row in range(4):
            for column in range(4):
                matrix.SetElement(row, column, rasToIjk[row, column])


def _ijkToRasArray(volumeNode):
    ijkToRas = np.eye(4)
    ijkToRas[:3, :3] = volumeNode._directions * volumeNode._spacing
    ijkToRas[:3, 3] = volumeNode._origin
    return ijkToRas


@_registered
class vtkMRMLScalarVolumeNode(vtkMRMLVolumeNode):
    def CreateDefaultDisplayNodes(self):
        """A scalar volume display node (grey, automatic window/level), as in Slicer."""
        if self.GetDisplayNode() is not None or self._scene is None:
            return
        displayNode = self._scene.AddNewNodeByClass("vtkMRMLScalarVolumeDisplayNode")
        self.SetNodeReferenceID("display", displayNode.GetID())


@_registered
class vtkMRMLLabelMapVolumeNode(vtkMRMLScalarVolumeNode):
    def CreateDefaultDisplayNodes(self):
        pass


class vtkMRMLDisplayNode(vtkMRMLNode):
    def __init__(self):
        super().__init__()
        self._visibility = True
        self._visibility3D = True

    def GetVisibility(self):
        return int(self._visibility)

    def SetVisibility(self, visible):
        self._visibility = bool(visible)
        self.Modified()

    def GetVisibility3D(self):
        return int(self._visibility3D)

    def SetVisibility3D(self, visible):
        self._visibility3D = bool(visible)
        self.Modified()

    def GetColorNodeID(self):
        return self.GetNodeReferenceID("colorNodeID")

    def SetAndObserveColorNodeID(self, colorNodeID):
        self.SetNodeReferenceID("colorNodeID", colorNodeID)


@_registered
class vtkMRMLScalarVolumeDisplayNode(vtkMRMLDisplayNode):
    """Window/level (automatic until set otherwise) and threshold of a scalar volume's display;
    Slicer's defaults: automatic window/level, no threshold."""

    def __init__(self):
        super().__init__()
        self._autoWindowLevel = 1
        self._windowLevelMinMax = (0.0, 0.0)
        self._applyThreshold = 0
        self._lowerThreshold = float(-(2**15))

    def GetAutoWindowLevel(self):
        return self._autoWindowLevel

    def SetAutoWindowLevel(self, automatic):
        self._autoWindowLevel = int(automatic)
        self.Modified()

    def SetWindowLevelMinMax(self, minimum, maximum):
        self._windowLevelMinMax = (float(minimum), float(maximum))
        self.Modified()

    def GetWindowLevelMin(self):
        return self._windowLevelMinMax[0]

    def GetWindowLevelMax(self):
        return self._windowLevelMinMax[1]

    def GetApplyThreshold(self):
        return self._applyThreshold

    def SetApplyThreshold(self, apply):
        self._applyThreshold = int(apply)
        self.Modified()

    def GetLowerThreshold(self):
        return self._lowerThreshold

    def SetLowerThreshold(self, threshold):
        self._lowerThreshold = float(threshold)
        self.Modified()


@_registered
class vtkMRMLSegmentationDisplayNode(vtkMRMLDisplayNode):
    def __init__(self):
        super().__init__()
        self._segmentVisibility = {}

    def GetSegmentVisibility(self, segmentId):
        return int(self._segmentVisibility.get(segmentId, True))

    def SetSegmentVisibility(self, segmentId, visible):
        self._segmentVisibility[segmentId] = bool(visible)
        self.Modified()


class vtkSegment(vtk.vtkObject):
    """A segment: name, color, tags and (privately) its binary labelmap."""

    def __init__(self):
        super().__init__()
        self._name = ""
        self._color = (0.5, 0.5, 0.5)
        self._tags = {}
        self._mask = None  # (K, J, I) uint8
        self._ijkToRas = None  # 4x4 array of the mask's grid

    @staticmethod
    def GetTerminologyEntryTagName():
        return "TerminologyEntry"

    def GetName(self):
        return self._name

    def SetName(self, name):
        self._name = name
        self.Modified()

    def GetColor(self):
        return self._color

    def SetColor(self, *color):
        self._color = tuple(float(c) for c in (color[0] if len(color) == 1 else color))
        self.Modified()

    def SetTag(self, name, value):
        self._tags[name] = str(value)
        self.Modified()

    def HasTag(self, name):
        return name in self._tags

    def RemoveTag(self, name):
        self._tags.pop(name, None)

    def SetTerminology(self, terminology):
        self.SetTag(self.GetTerminologyEntryTagName(), terminology)

    def GetTerminology(self):
        return self._tags.get(self.GetTerminologyEntryTagName(), "")

    def HasTerminology(self):
        return int(self.GetTerminologyEntryTagName() in self._tags)


class vtkSegmentation(vtk.vtkObject):
    """Ordered segments by ID."""

    EXTENT_REFERENCE_GEOMETRY = 0
    EXTENT_UNION_OF_SEGMENTS = 1
    EXTENT_UNION_OF_SEGMENTS_PADDED = 2
    EXTENT_UNION_OF_EFFECTIVE_SEGMENTS = 3
    EXTENT_UNION_OF_EFFECTIVE_SEGMENTS_PADDED = 4

    def __init__(self):
        super().__init__()
        self._segments = {}
        self._representations = {"Binary labelmap"}

    def AddEmptySegment(self, segmentId="", segmentName="", color=None):
        if not segmentId:
            segmentId = self.GenerateUniqueSegmentID("Segment")
        elif segmentId in self._segments:
            segmentId = self.GenerateUniqueSegmentID(segmentId)
        segment = vtkSegment()
        segment.SetName(segmentName or segmentId)
        if color is not None:
            segment.SetColor(*color)
        self._segments[segmentId] = segment
        self.Modified()
        return segmentId

    def GenerateUniqueSegmentID(self, base):
        if base not in self._segments:
            return base
        for index in itertools.count(1):
            candidate = f"{base}_{index}"
            if candidate not in self._segments:
                return candidate

    def GetSegment(self, segmentId):
        return self._segments.get(segmentId)

    def RemoveSegment(self, segmentId):
        self._segments.pop(segmentId, None)
        self.Modified()

    def GetNumberOfSegments(self):
        return len(self._segments)

    def GetNthSegmentID(self, index):
        return list(self._segments)[index]

    def GetSegmentIDs(self):
        return tuple(self._segments)

    def GetSegmentIdBySegmentName(self, name):
        for segmentId, segment in self._segments.items():
            if segment.GetName().lower() == name.lower():
                return segmentId
        return ""

    def ContainsRepresentation(self, name):
        return int(name in self._representations)


@_registered
class vtkMRMLSegmentationNode(vtkMRMLDisplayableNode):
    def __init__(self):
        super().__init__()
        self._segmentation = vtkSegmentation()

    @staticmethod
    def GetReferenceImageGeometryReferenceRole():
        return "referenceImageGeometryRef"

    def GetSegmentation(self):
        return self._segmentation

    def SetReferenceImageGeometryParameterFromVolumeNode(self, volumeNode):
        self.SetNodeReferenceID(self.GetReferenceImageGeometryReferenceRole(), volumeNode.GetID())

    def CreateDefaultDisplayNodes(self):
        if self.GetDisplayNode() is not None or self._scene is None:
            return
        displayNode = self._scene.AddNewNodeByClass("vtkMRMLSegmentationDisplayNode")
        self.SetNodeReferenceID("display", displayNode.GetID())

    def CreateClosedSurfaceRepresentation(self):
        self._segmentation._representations.add("Closed surface")
        return True

    def RemoveClosedSurfaceRepresentation(self):
        self._segmentation._representations.discard("Closed surface")


@_registered
class vtkMRMLSubjectHierarchyNode(vtkMRMLNode):
    """The scene's one subject hierarchy: items for data nodes (created as nodes are added,
    under the scene item) and folders, each with a parent."""

    def __init__(self):
        super().__init__()
        self._sceneItem = 1
        self._nextItem = 2
        self._parents = {}  # item -> parent item
        self._dataNodes = {}  # item -> node

    @staticmethod
    def GetSubjectHierarchyNode(scene):
        return scene.GetFirstNodeByClass("vtkMRMLSubjectHierarchyNode")

    def GetSceneItemID(self):
        return self._sceneItem

    def _addItem(self, parent, node=None):
        item = self._nextItem
        self._nextItem += 1
        self._parents[item] = parent
        if node is not None:
            self._dataNodes[item] = node
        return item

    def CreateFolderItem(self, parentItemID, name):
        return self._addItem(parentItemID)

    def GetItemByDataNode(self, dataNode):
        for item, node in self._dataNodes.items():
            if node is dataNode:
                return item
        if dataNode is None or self._scene is None or not self._scene.IsNodePresent(dataNode):
            return 0
        return self._addItem(self._sceneItem, dataNode)

    def GetItemDataNode(self, itemID):
        return self._dataNodes.get(itemID)

    def GetItemParent(self, itemID):
        return self._parents.get(itemID, 0)

    def SetItemParent(self, itemID, parentItemID):
        if itemID in self._parents:
            self._parents[itemID] = parentItemID
            self.Modified()

    def GetNumberOfItemChildren(self, itemID, recursive=False):
        return sum(1 for parent in self._parents.values() if parent == itemID)


class vtkSlicerSegmentationsModuleLogic(vtk.vtkObject):
    """``slicer.modules.segmentations.logic()``: label map import and export (static methods)."""

    @staticmethod
    def ImportLabelmapToSegmentationNode(
        labelmapNode, segmentationNode, updatedSegmentIDs, userMessages=None
    ):
        """Label value ``n`` fills segment ``updatedSegmentIDs[n - 1]`` (created if absent;
        emptied when the value does not occur), on the grid of the label map."""
        if not isinstance(updatedSegmentIDs, vtk.vtkStringArray):
            raise TypeError("the stand-in imports with a vtkStringArray of segment IDs")
        labels = voxelArray(labelmapNode)
        segmentation = segmentationNode.GetSegmentation()
        for index in range(updatedSegmentIDs.GetNumberOfValues()):
            segmentId = updatedSegmentIDs.GetValue(index)
            if segmentation.GetSegment(segmentId) is None:
                segmentation.AddEmptySegment(segmentId, segmentId)
            segment = segmentation.GetSegment(segmentId)
            segment._mask = (labels == index + 1).astype(np.uint8)
            segment._ijkToRas = ijkToRasArray(labelmapNode)
        segmentationNode.Modified()
        return True

    @staticmethod
    def ExportSegmentsToLabelmapNode(
        segmentationNode,
        segmentIDs,
        labelmapNode,
        referenceVolumeNode=None,
        extentComputationMode=vtkSegmentation.EXTENT_UNION_OF_EFFECTIVE_SEGMENTS,
        colorTableNode=None,
    ):
        """Segments ``segmentIDs`` as label values 1, 2, ... (a later segment overwrites an
        earlier one where they overlap) on the grid of ``referenceVolumeNode``; the label map
        gets a display node, as in Slicer."""
        if isinstance(segmentIDs, vtk.vtkStringArray):
            segmentIDs = [segmentIDs.GetValue(i) for i in range(segmentIDs.GetNumberOfValues())]
        if referenceVolumeNode is None:
            raise NotImplementedError("the stand-in exports onto a reference volume's grid")
        if extentComputationMode != vtkSegmentation.EXTENT_REFERENCE_GEOMETRY:
            raise NotImplementedError("the stand-in exports the whole reference geometry")
        import slicer

        shape = voxelArray(referenceVolumeNode).shape[:3]
        labels = np.zeros(shape, np.uint8)
        for value, segmentId in enumerate(segmentIDs, start=1):
            mask = slicer.util._segmentMaskOnGrid(segmentationNode, segmentId, referenceVolumeNode)
            labels[mask > 0] = value
        labelmapNode.SetIJKToRASMatrix(
            slicer.util.vtkMatrixFromArray(ijkToRasArray(referenceVolumeNode))
        )
        setVoxelArray(labelmapNode, labels)
        if labelmapNode.GetDisplayNode() is None and labelmapNode.GetScene() is not None:
            display = labelmapNode.GetScene().AddNode(
                _HelperNode("vtkMRMLLabelMapVolumeDisplayNode")
            )
            labelmapNode.SetNodeReferenceID("display", display.GetID())
        return True


class vtkSlicerTerminologiesModuleLogic(vtk.vtkObject):
    """``slicer.modules.terminologies.logic()``: the loaded category-and-type lists."""

    def __init__(self):
        super().__init__()
        self._terminologies = {}

    def LoadTerminologyFromFile(self, filePath):
        """Load a ``SegmentationCategoryTypeModifier`` JSON file; returns its context name
        ("" when the file is not a terminology)."""
        import json

        try:
            with open(filePath, encoding="utf-8") as stream:
                content = json.load(stream)
            name = content["SegmentationCategoryTypeContextName"]
            content["SegmentationCodes"]["Category"]
        except (OSError, ValueError, KeyError, TypeError):
            return ""
        self._terminologies[name] = content
        return name

    def GetLoadedTerminologyNames(self, terminologyNames):
        terminologyNames.Reset()
        for name in self._terminologies:
            terminologyNames.InsertNextValue(name)


@_registered
class vtkMRMLSliceNode(vtkMRMLNode):
    """A slice view's plane: ``SliceToRAS`` (axes and centre, RAS mm) of view ``LayoutName``."""

    DefaultJumpSlice = -1
    CenteredJumpSlice = 0
    OffsetJumpSlice = 1

    def __init__(self):
        super().__init__()
        self._layoutName = ""
        self._sliceToRas = np.eye(4)
        self._jumpMode = self.OffsetJumpSlice  # Slicer's default
        self._viewGroup = 0

    def GetLayoutName(self):
        return self._layoutName

    def GetSliceToRAS(self):
        matrix = vtk.vtkMatrix4x4()
        for row in range(4):
            for column in range(4):
                matrix.SetElement(row, column, self._sliceToRas[row, column])
        return matrix

    def JumpSliceByCentering(self, r, a, s):
        """Move the plane so that its centre is the point."""
        self._sliceToRas[:3, 3] = (r, a, s)
        self.Modified()

    def _jumpSliceByOffsetting(self, r, a, s):
        """Move the plane along its normal only, until it contains the point."""
        normal = self._sliceToRas[:3, 2]
        point = np.array((r, a, s), dtype=float)
        self._sliceToRas[:3, 3] += normal * float(np.dot(point - self._sliceToRas[:3, 3], normal))
        self.Modified()

    @staticmethod
    def JumpAllSlices(scene, r, a, s, jumpMode=-1, viewGroup=-1, exclude=None):
        """Every slice node of the scene (of ``viewGroup``, unless -1), but ``exclude``, jumps
        to the point: centred, offset, or each in its own mode (``DefaultJumpSlice``)."""
        for node in list(scene._nodes):
            if not isinstance(node, vtkMRMLSliceNode) or node is exclude:
                continue
            if viewGroup != -1 and node._viewGroup != viewGroup:
                continue
            mode = node._jumpMode if jumpMode == vtkMRMLSliceNode.DefaultJumpSlice else jumpMode
            if mode == vtkMRMLSliceNode.CenteredJumpSlice:
                node.JumpSliceByCentering(r, a, s)
            else:
                node._jumpSliceByOffsetting(r, a, s)


@_registered
class vtkMRMLSliceCompositeNode(vtkMRMLNode):
    """The layers (background, foreground and its opacity) of slice view ``LayoutName``."""

    def __init__(self):
        super().__init__()
        self._layoutName = ""
        self._backgroundVolumeID = None
        self._foregroundVolumeID = None
        self._foregroundOpacity = 0.0  # Slicer's default

    def GetLayoutName(self):
        return self._layoutName

    def GetBackgroundVolumeID(self):
        return self._backgroundVolumeID

    def SetBackgroundVolumeID(self, volumeID):
        self._backgroundVolumeID = volumeID
        self.Modified()

    def GetForegroundVolumeID(self):
        return self._foregroundVolumeID

    def SetForegroundVolumeID(self, volumeID):
        self._foregroundVolumeID = volumeID
        self.Modified()

    def GetForegroundOpacity(self):
        return self._foregroundOpacity

    def SetForegroundOpacity(self, opacity):
        self._foregroundOpacity = float(opacity)
        self.Modified()


_SLICE_VIEW_ORIENTATIONS = {
    # slice-to-RAS axes (columns: slice x, slice y, normal) of Slicer's default views
    "Red": np.array([[-1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]]),
    "Yellow": np.array([[0.0, 0.0, 1.0], [-1.0, 0.0, 0.0], [0.0, 1.0, 0.0]]),
    "Green": np.array([[-1.0, 0.0, 0.0], [0.0, 0.0, 1.0], [0.0, 1.0, 0.0]]),
}


def addSliceViews(scene):
    """What Slicer's layout creates for its axial (Red), sagittal (Yellow) and coronal
    (Green) views: one singleton slice node and one slice composite node each."""
    for name, axes in _SLICE_VIEW_ORIENTATIONS.items():
        sliceNode = vtkMRMLSliceNode()
        sliceNode._layoutName = name
        sliceNode._sliceToRas[:3, :3] = axes
        sliceNode.SetName(name)
        sliceNode.SetSingletonTag(name)
        scene.AddNode(sliceNode)
        compositeNode = vtkMRMLSliceCompositeNode()
        compositeNode._layoutName = name
        compositeNode.SetSingletonTag(name)
        scene.AddNode(compositeNode)


@_registered
class vtkMRMLScene(vtk.vtkObject):
    """Nodes by ID, with the scene events the module observes."""

    NodeAboutToBeAddedEvent = 0x2000
    NodeAddedEvent = 0x2001
    NodeAboutToBeRemovedEvent = 0x2002
    NodeRemovedEvent = 0x2003
    StartCloseEvent = 0xD001
    EndCloseEvent = 0xD002

    def __init__(self):
        super().__init__()
        self._nodes = []
        self._idCounters = {}
        self._addSubjectHierarchy()

    def _addSubjectHierarchy(self):
        """Slicer's scene always has its subject hierarchy node (re-created when cleared)."""
        node = vtkMRMLSubjectHierarchyNode()
        node.SetName("SubjectHierarchy")
        node.SetSingletonTag("SubjectHierarchy")
        self.AddNode(node)

    def CreateNodeByClass(self, className):
        if className in _NODE_CLASSES:
            return _NODE_CLASSES[className]()
        return _HelperNode(className)

    def AddNode(self, node):
        className = node.GetClassName()
        self._idCounters[className] = self._idCounters.get(className, 0) + 1
        node._id = f"{className}{self._idCounters[className]}"
        node._scene = self
        self._nodes.append(node)
        self.InvokeEvent(self.NodeAddedEvent, node)
        return node

    def AddNewNodeByClass(self, className, nodeBaseName=""):
        node = self.CreateNodeByClass(className)
        node.SetName(self.GenerateUniqueName(nodeBaseName or className.replace("vtkMRML", "")))
        return self.AddNode(node)

    def RemoveNode(self, node):
        if node not in self._nodes:
            return
        self._nodes.remove(node)
        node._scene = None
        self.InvokeEvent(self.NodeRemovedEvent, node)

    def GetNodeByID(self, nodeId):
        for node in self._nodes:
            if node.GetID() == nodeId:
                return node
        return None

    def GetNodesByClass(self, className):
        collection = vtk.vtkCollection()
        for node in self._nodes:
            if node.IsA(className):
                collection.AddItem(node)
        return collection

    def GetFirstNodeByClass(self, className):
        for node in self._nodes:
            if node.IsA(className):
                return node
        return None

    def GetFirstNodeByName(self, name):
        for node in self._nodes:
            if node.GetName() == name:
                return node
        return None

    def GetNumberOfNodes(self):
        return len(self._nodes)

    def GetNthNode(self, index):
        return self._nodes[index]

    def IsNodePresent(self, node):
        return int(node in self._nodes)

    def GenerateUniqueName(self, baseName):
        names = {node.GetName() for node in self._nodes}
        if baseName not in names:
            return baseName
        for index in itertools.count(1):
            candidate = f"{baseName}_{index}"
            if candidate not in names:
                return candidate

    def GetSingletonNode(self, singletonTag, className):
        for node in self._nodes:
            if node.IsA(className) and node.GetSingletonTag() == singletonTag:
                return node
        return None

    def Clear(self, removeSingletons=0):
        """Remove all nodes; singletons (parameter nodes) stay, emptied, unless asked."""
        self.InvokeEvent(self.StartCloseEvent)
        for node in list(self._nodes):
            if isinstance(node, vtkMRMLSubjectHierarchyNode):
                self.RemoveNode(node)
                continue
            if node.GetSingletonTag() and not removeSingletons:
                node._references.clear()
                if isinstance(node, vtkMRMLScriptedModuleNode):
                    node._parameters.clear()
                continue
            self.RemoveNode(node)
        if self.GetFirstNodeByClass("vtkMRMLSubjectHierarchyNode") is None:
            self._addSubjectHierarchy()
        self.InvokeEvent(self.EndCloseEvent)


def voxelArray(volumeNode):
    """``(K, J, I)`` numpy view of a volume's scalars (the stand-in of arrayFromVolume)."""
    imageData = volumeNode.GetImageData()
    if imageData is None:
        raise RuntimeError(f"{volumeNode.GetName()} has no image data")
    dimensions = imageData.GetDimensions()
    scalars = numpy_support.vtk_to_numpy(imageData.GetPointData().GetScalars())
    components = imageData.GetNumberOfScalarComponents()
    shape = tuple(reversed(dimensions)) + ((components,) if components > 1 else ())
    return scalars.reshape(shape)


def setVoxelArray(volumeNode, voxels):
    """Deep-copy ``voxels`` (K, J, I) into a new image of the volume."""
    voxels = np.ascontiguousarray(voxels)
    imageData = vtk.vtkImageData()
    imageData.SetDimensions(*reversed(voxels.shape[:3]))
    vtkArray = numpy_support.numpy_to_vtk(voxels.reshape(-1), deep=True)
    imageData.GetPointData().SetScalars(vtkArray)
    volumeNode.SetAndObserveImageData(imageData)


def ijkToRasArray(volumeNode):
    """4x4 IJK-to-RAS matrix of a volume as a numpy array."""
    return _ijkToRasArray(volumeNode)
