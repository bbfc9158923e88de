"""Stand-in of ``slicer.ScriptedLoadableModule``: the four base classes of a scripted module."""

import os
import unittest

import slicer

__all__ = [
    "ScriptedLoadableModule",
    "ScriptedLoadableModuleWidget",
    "ScriptedLoadableModuleLogic",
    "ScriptedLoadableModuleTest",
]


class ScriptedLoadableModule:
    def __init__(self, parent):
        self.parent = parent
        self.moduleName = self.__class__.__name__
        parent.title = ""
        parent.categories = []
        parent.dependencies = []
        parent.contributors = []
        parent.helpText = ""
        parent.acknowledgementText = ""

    def resourcePath(self, filename):
        return os.path.join(os.path.dirname(self.parent.path), "Resources", filename)


class ScriptedLoadableModuleWidget:
    def __init__(self, parent=None):
        from PySide6.QtWidgets import QVBoxLayout

        self.moduleName = self.__class__.__name__
        if self.moduleName.endswith("Widget"):
            self.moduleName = self.moduleName[: -len("Widget")]
        self.developerMode = False
        if not parent:
            self.parent = slicer.qMRMLWidget()
            self.parent.setLayout(QVBoxLayout())
            self.parent.setMRMLScene(slicer.mrmlScene)
        else:
            self.parent = parent
        self.layout = self.parent.layout()
        if not parent:
            self.setup()
            self.parent.show()

    def resourcePath(self, filename):
        return os.path.join(
            os.path.dirname(slicer.util.modulePath(self.moduleName)), "Resources", filename
        )

    def setup(self):
        pass

    def cleanup(self):
        pass


class ScriptedLoadableModuleLogic:
    def __init__(self, parent=None):
        self.moduleName = self.__class__.__name__
        if self.moduleName.endswith("Logic"):
            self.moduleName = self.moduleName[: -len("Logic")]
        self.isSingletonParameterNode = True

    def getParameterNode(self):
        parameterNode = slicer.mrmlScene.GetSingletonNode(
            self.moduleName, "vtkMRMLScriptedModuleNode"
        )
        if parameterNode is None:
            parameterNode = slicer.mrmlScene.AddNode(self.createParameterNode())
        return parameterNode

    def createParameterNode(self):
        node = slicer.mrmlScene.CreateNodeByClass("vtkMRMLScriptedModuleNode")
        node.SetSingletonTag(self.moduleName)
        node.SetName(slicer.mrmlScene.GenerateUniqueName(self.moduleName))
        node.SetAttribute("ModuleName", self.moduleName)
        return node


class ScriptedLoadableModuleTest(unittest.TestCase):
    def delayDisplay(self, message, requestedDelay=None, msec=None):
        slicer.util.delayDisplay(message)

    def setUp(self):
        pass

    def tearDown(self):
        pass

    def runTest(self):
        pass
