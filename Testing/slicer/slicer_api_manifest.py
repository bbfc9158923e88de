"""Name lookups in ``../shared/slicer-api/manifest.json`` (the API of real 3D Slicer).

The manifest lists what Slicer itself declares; names that Slicer inherits from VTK, Qt or CTK
are not in it. Those are checked against the real ``vtk`` and ``PySide6`` packages, and the few
CTK names used (CTK headers are not part of the manifest) against :data:`CTK_NAMES`.
"""

from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path
from typing import Dict, Set

MANIFEST_PATH = (
    Path(__file__).resolve().parents[2].parent / "shared" / "slicer-api" / "manifest.json"
)

CTK_NAMES = {
    # ctkCollapsibleButton (CTK/Libs/Widgets/ctkCollapsibleButton.h): a QAbstractButton with
    # the "collapsed" property and the contentsCollapsed(bool) signal
    "ctkCollapsibleButton": {"collapsed", "contentsCollapsed", "text"},
}
CTK_BASES = {"ctkCollapsibleButton": "QAbstractButton"}

MRML_CLASSES_OUTSIDE_MANIFEST = {
    # MRML classes that every supported Slicer release has but whose headers the manifest's
    # extraction did not include; only the names used here, each read in Slicer's header
    # (Libs/MRML/Core/<class>.h), where they have been since Slicer 4 and still are in 5.8-5.12.
    # The superclass named is the nearest one the manifest lists.
    "vtkMRMLSliceNode": {
        "superclass": "vtkMRMLNode",
        "python_method_names": ["GetLayoutName", "GetSliceToRAS", "JumpSliceByCentering"],
        "static_method_names": ["JumpAllSlices"],
        "enum_constants": ["DefaultJumpSlice", "CenteredJumpSlice", "OffsetJumpSlice"],
    },
    "vtkMRMLSliceCompositeNode": {
        "superclass": "vtkMRMLNode",
        "python_method_names": [
            "GetBackgroundVolumeID",
            "SetBackgroundVolumeID",
            "GetForegroundVolumeID",
            "SetForegroundVolumeID",
            "GetForegroundOpacity",
            "SetForegroundOpacity",
            "GetLayoutName",
        ],
    },
    "vtkMRMLScalarVolumeDisplayNode": {
        # vtkMRMLScalarVolumeDisplayNode.h (window/level, threshold) below
        # vtkMRMLVolumeDisplayNode, a vtkMRMLDisplayNode
        "superclass": "vtkMRMLDisplayNode",
        "python_method_names": [
            "GetAutoWindowLevel",
            "SetAutoWindowLevel",
            "GetWindowLevelMin",
            "GetWindowLevelMax",
            "SetWindowLevelMinMax",
            "GetApplyThreshold",
            "SetApplyThreshold",
            "GetLowerThreshold",
            "SetLowerThreshold",
        ],
    },
}
"""Names of real Slicer classes that the manifest does not cover, checked like manifest names."""

PARAMETER_NODE_WRAPPER_METHODS = {
    # set on every @parameterNodeWrapper class by Slicer's parameterNodeWrapper/wrapper.py
    # (_processClass); the manifest lists the package's module-level names only
    "allParameters",
    "default",
    "isCached",
    "dataType",
    "getValue",
    "setValue",
    "connectGui",
    "connectParametersToGui",
    "disconnectGui",
    "StartModify",
    "EndModify",
    "AddObserver",
    "RemoveObserver",
    "Modified",
    "parameterNode",
}


@lru_cache(maxsize=1)
def manifest() -> Dict:
    return json.loads(MANIFEST_PATH.read_text(encoding="utf-8"))


def python_module_names(section: str) -> Set[str]:
    """Functions, classes and constants of a Python module section (e.g. ``slicer.util``)."""
    entry = manifest()[section]
    return (
        set(entry.get("functions", {}))
        | set(entry.get("classes", {}))
        | set(entry.get("constants", []))
    )


def python_class_methods(section: str, class_name: str) -> Set[str]:
    entry = manifest()[section]["classes"][class_name]
    return (
        set(entry.get("methods", {}))
        | set(entry.get("special_methods", {}))
        | set(entry.get("init_attributes", []))
        | set(entry.get("class_attributes", []))
    )


def mrml_classes() -> Dict:
    """MRML classes of the manifest, plus :data:`MRML_CLASSES_OUTSIDE_MANIFEST`."""
    return {**MRML_CLASSES_OUTSIDE_MANIFEST, **manifest()["mrml"]["classes"]}


def mrml_chain(class_name: str):
    classes = mrml_classes()
    chain = []
    while class_name in classes:
        chain.append(class_name)
        class_name = classes[class_name]["superclass"]
    return chain


def mrml_names(class_name: str) -> Set[str]:
    """Python-callable methods, static methods and enum constants of a MRML class and its
    Slicer superclasses."""
    names: Set[str] = set()
    for name in mrml_chain(class_name):
        entry = mrml_classes()[name]
        names |= set(entry.get("python_method_names", []))
        names |= set(entry.get("static_method_names", []))
        names |= set(entry.get("enum_constants", []))
    return names


def all_mrml_names() -> Set[str]:
    names: Set[str] = set()
    for class_name in mrml_classes():
        names |= mrml_names(class_name)
    return names


def qt_widget_entry(class_name: str):
    for section in ("qt_widgets", "qt_application"):
        classes = manifest()[section]["classes"]
        if class_name in classes:
            return section, classes[class_name]
    return None, None


def qt_class_names(class_name: str) -> Set[str]:
    """Properties, signals, slots and invokables of a Slicer Qt class and its Slicer superclasses,
    plus PythonQt decorator methods."""
    names: Set[str] = set()
    decorators = manifest()["pythonqt_decorators"]["classes"]
    while class_name:
        section, entry = qt_widget_entry(class_name)
        if entry is None:
            break
        names |= set(entry.get("property_names", [])) | set(entry.get("python_callable_names", []))
        if class_name in decorators:
            names |= set(decorators[class_name]["methods"]) | set(
                decorators[class_name]["static_methods"]
            )
        class_name = entry.get("superclass")
    return names


def qt_base_class(class_name: str) -> str:
    """The first Qt (not Slicer) base class of a Slicer Qt class, e.g. ``QWidget``."""
    while True:
        section, entry = qt_widget_entry(class_name)
        if entry is None:
            return CTK_BASES.get(class_name, class_name)
        class_name = entry.get("superclass")


def pyside_class(class_name: str):
    """The PySide6 class of a Qt class name, or None."""
    from PySide6 import QtCore, QtGui, QtWidgets

    for module in (QtWidgets, QtGui, QtCore):
        if hasattr(module, class_name):
            return getattr(module, class_name)
    return None


def pyside_property_names(class_name: str) -> Set[str]:
    """Qt property names of a Qt class (PythonQt exposes them as attributes)."""
    klass = pyside_class(class_name)
    if klass is None:
        return set()
    meta = klass.staticMetaObject
    return {meta.property(index).name() for index in range(meta.propertyCount())}
