"""Slicer and CTK widgets of the stand-in, as PySide6 widgets.

``QUiLoader`` builds these for the custom classes of the module's ``.ui`` file, so the panel
is made of real Qt widgets. Each class offers the Qt properties, signals and slots that the
manifest lists for the real class (``test_slicer_manifest.py`` checks the names it adds).
Python-side properties keep PythonQt's attribute syntax (``button.collapsed = True``).
"""

from __future__ import annotations

from PySide6.QtCore import Property, Signal
from PySide6.QtWidgets import QComboBox, QGroupBox, QWidget


def _sceneNodes(scene):
    return [scene.GetNthNode(index) for index in range(scene.GetNumberOfNodes())] if scene else []


class qMRMLWidget(QWidget):
    """Container that hands its MRML scene to the MRML widgets inside it."""

    mrmlSceneChanged = Signal(object)

    def __init__(self, parent=None):
        super().__init__(parent)
        self._scene = None

    def mrmlScene(self):
        return self._scene

    def setMRMLScene(self, scene):
        self._scene = scene
        # the .ui connects mrmlSceneChanged(vtkMRMLScene*) to each selector; PySide6 cannot
        # resolve that C++ signature, so the scene is handed over here instead
        for selector in self.findChildren(qMRMLNodeComboBox):
            selector.setMRMLScene(scene)
        self.mrmlSceneChanged.emit(scene)


class qMRMLNodeComboBox(QComboBox):
    """Node selector: lists the scene's nodes of ``nodeTypes`` (by name) plus an optional
    "none" item; ``currentNode()`` / ``setCurrentNode()`` and ``currentNodeChanged``."""

    currentNodeChanged = Signal(object)
    currentNodeIDChanged = Signal(str)

    def __init__(self, parent=None):
        super().__init__(parent)
        self._scene = None
        self._nodeTypes = []
        self._showChildNodeTypes = True
        self._noneEnabled = False
        self._noneDisplay = ""
        self._addEnabled = True
        self._removeEnabled = True
        self._renameEnabled = False
        self._baseName = ""
        self._currentNodeId = None
        self._observedNodes = {}
        self._sceneTags = []
        self.currentIndexChanged.connect(self._onIndexChanged)

    def _getNodeTypes(self):
        return list(self._nodeTypes)

    def _setNodeTypes(self, nodeTypes):
        self._nodeTypes = list(nodeTypes)
        self._refresh()

    def _getShowChildNodeTypes(self):
        return self._showChildNodeTypes

    def _setShowChildNodeTypes(self, show):
        self._showChildNodeTypes = bool(show)
        self._refresh()

    def _getNoneEnabled(self):
        return self._noneEnabled

    def _setNoneEnabled(self, enabled):
        self._noneEnabled = bool(enabled)
        self._refresh()

    def _getNoneDisplay(self):
        return self._noneDisplay

    def _setNoneDisplay(self, text):
        self._noneDisplay = text
        self._refresh()

    def _getAddEnabled(self):
        return self._addEnabled

    def _setAddEnabled(self, enabled):
        self._addEnabled = bool(enabled)

    def _getRemoveEnabled(self):
        return self._removeEnabled

    def _setRemoveEnabled(self, enabled):
        self._removeEnabled = bool(enabled)

    def _getRenameEnabled(self):
        return self._renameEnabled

    def _setRenameEnabled(self, enabled):
        self._renameEnabled = bool(enabled)

    def _getBaseName(self):
        return self._baseName

    def _setBaseName(self, name):
        self._baseName = name

    nodeTypes = Property(list, _getNodeTypes, _setNodeTypes)
    showChildNodeTypes = Property(bool, _getShowChildNodeTypes, _setShowChildNodeTypes)
    noneEnabled = Property(bool, _getNoneEnabled, _setNoneEnabled)
    noneDisplay = Property(str, _getNoneDisplay, _setNoneDisplay)
    addEnabled = Property(bool, _getAddEnabled, _setAddEnabled)
    removeEnabled = Property(bool, _getRemoveEnabled, _setRemoveEnabled)
    renameEnabled = Property(bool, _getRenameEnabled, _setRenameEnabled)
    baseName = Property(str, _getBaseName, _setBaseName)

    def mrmlScene(self):
        return self._scene

    def setMRMLScene(self, scene):
        if self._scene is not None:
            for tag in self._sceneTags:
                self._scene.RemoveObserver(tag)
        self._scene = scene
        self._sceneTags = []
        if scene is not None:
            refresh = self._refreshWhileAlive()
            for event in (scene.NodeAddedEvent, scene.NodeRemovedEvent, scene.EndCloseEvent):
                self._sceneTags.append(scene.AddObserver(event, refresh))
        self._refresh()

    def _refreshWhileAlive(self):
        """An observer callback that refreshes this combo box, and does nothing once the
        widget has been deleted (real Qt/VTK connections end with the widget)."""
        import weakref

        import shiboken6

        widget = weakref.ref(self)

        def refresh(caller, event):
            alive = widget()
            if alive is not None and shiboken6.isValid(alive):
                alive._refresh()

        return refresh

    def _accepts(self, node):
        if node.GetHideFromEditors():
            return False
        if self._showChildNodeTypes:
            return any(node.IsA(nodeType) for nodeType in self._nodeTypes)
        return node.GetClassName() in self._nodeTypes

    def _nodes(self):
        return [node for node in _sceneNodes(self._scene) if self._accepts(node)]

    def _refresh(self):
        nodes = self._nodes()
        for node, tag in list(self._observedNodes.items()):
            if node not in nodes:
                node.RemoveObserver(tag)
                del self._observedNodes[node]
        for node in nodes:
            if node not in self._observedNodes:
                self._observedNodes[node] = node.AddObserver(
                    "ModifiedEvent", self._refreshWhileAlive()
                )
        previous = self._currentNodeId
        self.blockSignals(True)
        try:
            self.clear()
            if self._noneEnabled:
                # "" rather than None as item data: PySide6 miscounts references to None
                # stored in items, which aborts the interpreter after many refreshes
                self.addItem(self._noneDisplay or "None", "")
            for node in nodes:
                self.addItem(node.GetName(), node.GetID())
            index = self.findData(previous) if previous else -1
            if index < 0:
                self._currentNodeId = None
                index = 0 if self.count() else -1
                if not self._noneEnabled and self.count():
                    self._currentNodeId = self.itemData(0) or None
            self.setCurrentIndex(index)
        finally:
            self.blockSignals(False)
        if self._currentNodeId != previous:
            self._emitCurrent()

    def _onIndexChanged(self, index):
        nodeId = (self.itemData(index) or None) if index >= 0 else None
        if nodeId != self._currentNodeId:
            self._currentNodeId = nodeId
            self._emitCurrent()

    def _emitCurrent(self):
        self.currentNodeChanged.emit(self.currentNode())
        self.currentNodeIDChanged.emit(self._currentNodeId or "")

    def currentNode(self):
        if self._currentNodeId is None or self._scene is None:
            return None
        return self._scene.GetNodeByID(self._currentNodeId)

    def setCurrentNode(self, node):
        self.setCurrentNodeID(node.GetID() if node is not None else "")

    def setCurrentNodeID(self, nodeId):
        nodeId = nodeId or None
        index = self.findData(nodeId) if nodeId else (0 if self._noneEnabled else -1)
        if nodeId and index < 0:
            return
        changed = nodeId != self._currentNodeId
        self._currentNodeId = nodeId
        self.blockSignals(True)
        self.setCurrentIndex(index)
        self.blockSignals(False)
        if changed:
            self._emitCurrent()

    def nodeCount(self):
        return len(self._nodes())


class ctkCollapsibleButton(QGroupBox):
    """Titled section whose contents hide when ``collapsed``."""

    contentsCollapsed = Signal(bool)

    def __init__(self, parent=None):
        super().__init__(parent)
        self._text = ""
        self._collapsed = False

    def _getText(self):
        return self._text

    def _setText(self, text):
        self._text = text
        self._updateTitle()

    def _getCollapsed(self):
        return self._collapsed

    def _setCollapsed(self, collapsed):
        self._collapsed = bool(collapsed)
        for child in self.findChildren(QWidget):
            if child.parent() is self:
                child.setVisible(not self._collapsed)
        # collapsed, only the title line is shown, as ctkCollapsibleButton does
        self.setFlat(self._collapsed)
        self.setMaximumHeight(self.fontMetrics().height() + 6 if self._collapsed else 16777215)
        self._updateTitle()
        self.contentsCollapsed.emit(self._collapsed)

    def _updateTitle(self):
        self.setTitle(("\u25b8 " if self._collapsed else "\u25be ") + self._text)

    text = Property(str, _getText, _setText)
    collapsed = Property(bool, _getCollapsed, _setCollapsed)

    def showEvent(self, event):
        # children added by the .ui loader after "collapsed" was set must follow it
        self._setCollapsed(self._collapsed)
        super().showEvent(event)


CUSTOM_WIDGET_CLASSES = (qMRMLWidget, qMRMLNodeComboBox, ctkCollapsibleButton)
