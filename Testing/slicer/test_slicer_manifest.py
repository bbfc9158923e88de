"""The module calls only what real 3D Slicer offers, and the stand-in offers nothing more.

Checked against ``../shared/slicer-api/manifest.json``:

- every ``slicer.*``, ``slicer.util.*``, ``slicer.packaging.*``, ``slicer.app.*``,
  ``slicer.mrmlScene.*`` and ``SampleData.*`` name in ``EoFormerSegmentation.py``;
- every VTK-style method call (``node.GetName()``): against the MRML class of the receiver when
  the code says what it is (a type annotation, ``AddNewNodeByClass("vtkMRML...")``, a loader's
  return type), otherwise against all MRML/VTK classes;
- every ``self.ui.<widget>.<name>``: the widget exists in the ``.ui`` file and ``<name>`` is a
  property/signal/slot of its class (Slicer classes from the manifest, Qt classes from PySide6);
  Qt properties of Qt classes are only set through their setter methods, because PythonQt turns
  ``widget.text`` into the value and PySide6 into a method;
- every name that the stand-in adds on top of real VTK/Qt objects.
"""

from __future__ import annotations

import ast
import inspect
import xml.etree.ElementTree as ElementTree
from collections import defaultdict

import pytest
import vtk
from slicer_api_manifest import (
    CTK_BASES,
    CTK_NAMES,
    PARAMETER_NODE_WRAPPER_METHODS,
    all_mrml_names,
    manifest,
    mrml_classes,
    mrml_names,
    pyside_class,
    pyside_property_names,
    python_class_methods,
    python_module_names,
    qt_base_class,
    qt_class_names,
    qt_widget_entry,
)
from slicer_module_helpers import MODULE_FILE, UI_FILE

LOADER_RETURN_TYPES = {
    "loadVolume": "vtkMRMLScalarVolumeNode",
    "loadLabelVolume": "vtkMRMLLabelMapVolumeNode",
    "loadSegmentation": "vtkMRMLSegmentationNode",
}


def dotted(node):
    """('slicer', 'util', 'saveNode') for slicer.util.saveNode; None if not a plain chain."""
    parts = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    if isinstance(node, ast.Name):
        parts.append(node.id)
        return tuple(reversed(parts))
    return None


def annotation_class(annotation):
    """The class name an annotation refers to (Optional[...] and "strings" unwrapped)."""
    if annotation is None:
        return None
    if isinstance(annotation, ast.Constant) and isinstance(annotation.value, str):
        annotation = ast.parse(annotation.value, mode="eval").body
    if isinstance(annotation, ast.Subscript):
        return annotation_class(annotation.slice)
    if isinstance(annotation, ast.Attribute):
        return annotation.attr
    if isinstance(annotation, ast.Name):
        return annotation.id
    return None


class ModuleScan(ast.NodeVisitor):
    """Collects what the module file references, with the receiver type where it is known."""

    def __init__(self):
        self.references = []  # (dotted chain, line)
        self.method_calls = []  # (receiver class or None, method, line, receiver text)
        self.ui_usage = []  # (widget, name, how, line): how is "call", "assign" or "read"
        self.imported_modules = set()
        self.aliases = {}
        self._types = [{}]

    # names and their types

    def visit_Import(self, node):
        for alias in node.names:
            bound = alias.asname or alias.name.split(".")[0]
            self.imported_modules.add(bound)
            if alias.asname:
                self.aliases[alias.asname] = tuple(alias.name.split("."))

    def visit_ImportFrom(self, node):
        if node.module and node.module.split(".")[0] == "slicer":
            for alias in node.names:
                self.references.append((tuple(node.module.split(".")) + (alias.name,), node.lineno))
                self.imported_modules.add(alias.asname or alias.name)
        else:
            for alias in node.names:
                self.imported_modules.add(alias.asname or alias.name)

    def visit_FunctionDef(self, node):
        types = dict(self._types[-1])
        for argument in node.args.args + node.args.kwonlyargs:
            kind = annotation_class(argument.annotation)
            if kind:
                types[argument.arg] = kind
        self._types.append(types)
        self.generic_visit(node)
        self._types.pop()

    def visit_AnnAssign(self, node):
        if isinstance(node.target, ast.Name):
            kind = annotation_class(node.annotation)
            if kind:
                self._types[-1][node.target.id] = kind
        self.generic_visit(node)

    def visit_Assign(self, node):
        kind = self._created_type(node.value)
        if kind:
            for target in node.targets:
                if isinstance(target, ast.Name):
                    self._types[-1][target.id] = kind
        self.generic_visit(node)

    def _created_type(self, value):
        if not isinstance(value, ast.Call):
            return None
        chain = dotted(value.func)
        if not chain:
            return None
        if chain[-1] in ("AddNewNodeByClass", "CreateNodeByClass") and value.args:
            if isinstance(value.args[0], ast.Constant):
                return value.args[0].value
        if chain[:2] == ("slicer", "util") and chain[-1] in LOADER_RETURN_TYPES:
            return LOADER_RETURN_TYPES[chain[-1]]
        if chain[0] == "vtk" and len(chain) == 2:
            return "vtk." + chain[1]
        return None

    def receiver_type(self, receiver):
        chain = dotted(receiver)
        if chain == ("slicer", "mrmlScene"):
            return "vtkMRMLScene"
        if chain and len(chain) == 2 and chain[0] == "slicer" and chain[1] in mrml_classes():
            return chain[1]
        if isinstance(receiver, ast.Name):
            return self._types[-1].get(receiver.id)
        return None

    # uses

    def visit_Attribute(self, node):
        chain = dotted(node)
        if chain and chain[0] in self.aliases:
            chain = self.aliases[chain[0]] + chain[1:]
        if chain and chain[0] in ("slicer", "SampleData", "qt"):
            self.references.append((chain, node.lineno))
        if chain and len(chain) >= 4 and chain[:2] == ("self", "ui"):
            return  # handled by the ui visitor below
        self.generic_visit(node)

    def visit_Call(self, node):
        function = node.func
        if isinstance(function, ast.Attribute) and function.attr[:1].isupper():
            receiver = function.value
            chain = dotted(receiver)
            objects = chain == ("slicer", "mrmlScene") or (
                chain and len(chain) == 2 and chain[0] == "slicer" and chain[1] in mrml_classes()
            )
            # functions and classes of modules (slicer.util.X(), subprocess.Popen()) are
            # checked as references, not as methods
            if objects or not (chain and chain[0] in self.imported_modules):
                self.method_calls.append(
                    (
                        self.receiver_type(receiver),
                        function.attr,
                        node.lineno,
                        ast.unparse(receiver),
                    )
                )
        self.generic_visit(node)


class UiUsage(ast.NodeVisitor):
    """``self.ui.<widget>.<name>`` uses and whether they are called, assigned or read."""

    def __init__(self):
        self.uses = []

    def _widget_use(self, node):
        chain = dotted(node)
        if chain and len(chain) >= 4 and chain[:2] == ("self", "ui"):
            return chain[2], chain[3]
        return None

    def visit_Call(self, node):
        use = self._widget_use(node.func)
        if use and len(dotted(node.func)) == 4:
            self.uses.append(use + ("call", node.lineno))
            for argument in node.args + [keyword.value for keyword in node.keywords]:
                self.visit(argument)
            return
        self.generic_visit(node)

    def visit_Assign(self, node):
        for target in node.targets:
            use = self._widget_use(target)
            if use:
                self.uses.append(use + ("assign", node.lineno))
        self.visit(node.value)

    def visit_Attribute(self, node):
        use = self._widget_use(node)
        if use and len(dotted(node)) == 4:
            self.uses.append(use + ("read", node.lineno))
            return
        self.generic_visit(node)


@pytest.fixture(scope="module")
def module_tree():
    return ast.parse(MODULE_FILE.read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def scan(module_tree):
    scanner = ModuleScan()
    scanner.visit(module_tree)
    return scanner


@pytest.fixture(scope="module")
def ui_widget_classes():
    root = ElementTree.parse(UI_FILE).getroot()
    return {widget.get("name"): widget.get("class") for widget in root.iter("widget")}


def reference_problem(chain):
    """Why a slicer/SampleData/qt chain is not part of real Slicer, or None."""
    m = manifest()
    if chain[0] == "qt":
        klass = pyside_class(chain[1]) if len(chain) > 1 else None
        if klass is None and chain[1:] != ("Qt",):
            return f"qt.{chain[1]} is not a Qt class"
        if klass is not None and len(chain) > 2 and not hasattr(klass, chain[2]):
            return f"qt.{chain[1]} has no {chain[2]}"
        return None
    if chain[0] == "SampleData":
        sample = m["scripted_modules"]["SampleData"]
        if len(chain) > 1 and chain[1] not in set(sample["functions"]) | set(sample["classes"]):
            return f"SampleData.{chain[1]} does not exist"
        if len(chain) > 2 and chain[2] not in python_class_methods_of_sampledata(chain[1]):
            return f"SampleData.{chain[1]}.{chain[2]} does not exist"
        return None
    if len(chain) < 2:
        return None
    head = chain[1]
    if head in ("util", "packaging", "i18n", "ScriptedLoadableModule", "parameterNodeWrapper"):
        if len(chain) < 3:
            return None
        section = f"slicer.{head}"
        if head == "parameterNodeWrapper":
            names = set(m[section]["export_names"])
        else:
            names = python_module_names(section)
        return None if chain[2] in names else f"{section}.{chain[2]} does not exist"
    if head == "app":
        if len(chain) < 3:
            return None
        names = qt_class_names("qSlicerApplication") | {"connect"}  # QObject.connect
        return None if chain[2] in names else f"slicer.app.{chain[2]} does not exist"
    if head == "mrmlScene":
        if len(chain) < 3:
            return None
        return (
            None
            if chain[2] in mrml_names("vtkMRMLScene")
            else f"vtkMRMLScene.{chain[2]} does not exist"
        )
    if head == "modules":
        return None  # one attribute per loaded module, e.g. slicer.modules.pytorchutils
    if head in mrml_classes():
        if len(chain) > 2 and chain[2] not in mrml_names(head):
            return f"{head}.{chain[2]} does not exist"
        return None
    if head in m["qt_widgets"]["classes"]:
        return None
    if (
        head in m["slicer"]["documented_attributes"]
        or f"slicer.{head}" in m["slicer"]["submodules"]
    ):
        return None
    return f"slicer.{head} does not exist"


def python_class_methods_of_sampledata(class_name):
    entry = manifest()["scripted_modules"]["SampleData"]["classes"][class_name]
    return set(entry["methods"]) | set(entry.get("init_attributes", []))


def test_module_uses_only_slicer_names_in_the_manifest(scan):
    problems = sorted(
        {
            f"line {line}: {problem}"
            for chain, line in scan.references
            if (problem := reference_problem(chain))
        }
    )
    assert not problems, "\n".join(problems)
    used = {chain[:3] for chain, _ in scan.references if chain[:2] == ("slicer", "util")}
    assert ("slicer", "util", "exportNode") in used and (
        "slicer",
        "util",
        "loadLabelVolume",
    ) in used


def test_module_calls_only_mrml_methods_in_the_manifest(scan):
    problems = []
    typed = 0
    for receiver_type, method, line, receiver in scan.method_calls:
        if receiver_type and receiver_type.startswith("vtk."):
            ok = hasattr(getattr(vtk, receiver_type[4:]), method)
        elif receiver_type in mrml_classes():
            ok = method in mrml_names(receiver_type)
            typed += 1
        elif receiver_type is None:
            ok = method in all_mrml_names() or hasattr(vtk.vtkObject, method)
        else:
            continue  # a class of this module (e.g. EngineProcess) or the standard library
        if not ok:
            problems.append(f"line {line}: {receiver}.{method}() ({receiver_type or 'untyped'})")
    assert not problems, "not in the manifest:\n" + "\n".join(problems)
    # most node calls are checked against their exact class, not only against "any MRML class"
    assert typed >= 25, typed


def widget_names(widget_class):
    """Names usable on a widget of a .ui class, and whether the class is Qt's own."""
    if widget_class in CTK_NAMES:
        base = pyside_class(CTK_BASES[widget_class])
        return CTK_NAMES[widget_class] | set(dir(base)), False
    section, entry = qt_widget_entry(widget_class)
    if entry is not None:
        base = pyside_class(qt_base_class(widget_class))
        return qt_class_names(widget_class) | set(dir(base)), False
    klass = pyside_class(widget_class)
    assert klass is not None, widget_class
    return set(dir(klass)), True


def test_module_uses_only_widgets_of_the_ui_file_and_their_real_names(
    module_tree, ui_widget_classes
):
    visitor = UiUsage()
    visitor.visit(module_tree)
    assert len(visitor.uses) > 40
    problems = []
    for widget, name, how, line in visitor.uses:
        if widget not in ui_widget_classes:
            problems.append(f"line {line}: no widget named {widget} in the .ui file")
            continue
        widget_class = ui_widget_classes[widget]
        names, is_qt_class = widget_names(widget_class)
        if name not in names:
            problems.append(f"line {line}: {widget} ({widget_class}) has no {name}")
        elif is_qt_class and name in pyside_property_names(widget_class):
            problems.append(
                f"line {line}: {widget}.{name} is a Qt property; use its setter/getter method "
                "(PythonQt and PySide6 disagree on property attributes)"
            )
        elif how == "assign" and is_qt_class:
            problems.append(f"line {line}: assigning {widget}.{name} on a Qt class")
    assert not problems, "\n".join(problems)


def test_every_widget_bound_to_the_parameter_node_exists(module, ui_widget_classes):
    root = ElementTree.parse(UI_FILE).getroot()
    bound = {}
    for widget in root.iter("widget"):
        for prop in widget.findall("property"):
            if prop.get("name") == "SlicerParameterName":
                bound[prop.find("string").text] = widget.get("name")
    parameters = set(module.EoFormerSegmentationParameterNode.allParameters)
    assert set(bound) <= parameters, set(bound) - parameters
    assert {
        "t1Volume",
        "t1ceVolume",
        "t2Volume",
        "flairVolume",
        "outputSegmentation",
        "device",
    } <= set(bound)


# The stand-in


def defined_public_names(klass, stop_at):
    """Public attribute names that Python classes between ``klass`` and ``stop_at`` define."""
    names = set()
    for base in klass.__mro__:
        if base is stop_at or base.__module__.startswith(
            ("vtkmodules", "PySide6", "shiboken6", "builtins")
        ):
            continue
        names |= {name for name in vars(base) if not name.startswith("_")}
    return names


def test_standin_python_modules_offer_only_manifest_names(module):
    import SampleData
    import slicer
    import slicer.i18n
    import slicer.packaging
    import slicer.parameterNodeWrapper
    import slicer.ScriptedLoadableModule
    import slicer.util

    def own_names(python_module):
        return {
            name
            for name, value in vars(python_module).items()
            if not name.startswith("_")
            and getattr(value, "__module__", None) == python_module.__name__
        }

    problems = []
    for python_module, section in (
        (slicer.util, "slicer.util"),
        (slicer.packaging, "slicer.packaging"),
        (slicer.i18n, "slicer.i18n"),
        (slicer.ScriptedLoadableModule, "slicer.ScriptedLoadableModule"),
    ):
        extra = own_names(python_module) - python_module_names(section)
        problems += [f"{section}.{name}" for name in extra]
    wrapper_extra = own_names(slicer.parameterNodeWrapper) - set(
        manifest()["slicer.parameterNodeWrapper"]["export_names"]
    )
    problems += [f"slicer.parameterNodeWrapper.{name}" for name in wrapper_extra]
    sample = manifest()["scripted_modules"]["SampleData"]
    problems += [
        f"SampleData.{n}"
        for n in own_names(SampleData) - set(sample["functions"]) - set(sample["classes"])
    ]
    for klass in (SampleData.SampleDataLogic, SampleData.SampleDataSource):
        extra = {
            n for n in vars(klass) if not n.startswith("_")
        } - python_class_methods_of_sampledata(klass.__name__)
        problems += [f"SampleData.{klass.__name__}.{n}" for n in extra]
    for name in slicer.ScriptedLoadableModule.__all__:
        klass = getattr(slicer.ScriptedLoadableModule, name)
        allowed = python_class_methods("slicer.ScriptedLoadableModule", name) | set(dir(object))
        if name == "ScriptedLoadableModuleTest":
            import unittest

            allowed |= set(dir(unittest.TestCase))
        extra = {n for n in vars(klass) if not n.startswith("_")} - allowed
        problems += [f"{name}.{n}" for n in extra]
    wrapped = {n for n in vars(module.EoFormerSegmentationParameterNode) if not n.startswith("_")}
    fields = set(module.EoFormerSegmentationParameterNode.allParameters)
    problems += [
        f"parameter node wrapper .{n}" for n in wrapped - fields - PARAMETER_NODE_WRAPPER_METHODS
    ]
    assert not problems, "the stand-in offers names that Slicer lacks: " + ", ".join(
        sorted(problems)
    )


def test_standin_mrml_classes_offer_only_manifest_methods(module):
    import slicer
    from slicer import _mrml

    problems = []
    checked = 0
    for name, klass in inspect.getmembers(_mrml, inspect.isclass):
        if not issubclass(klass, vtk.vtkObject) or name.startswith("_"):
            continue
        assert name in mrml_classes(), f"{name} is not a MRML class of the manifest"
        # overrides of real VTK methods (GetClassName, Modified) are VTK's names
        extra = (
            defined_public_names(klass, vtk.vtkObject) - mrml_names(name) - set(dir(vtk.vtkObject))
        )
        problems += [f"{name}.{method}" for method in extra]
        checked += 1
    assert checked >= 10
    for name in dir(slicer):
        value = getattr(slicer, name)
        if inspect.isclass(value) and issubclass(value, vtk.vtkObject):
            assert name in mrml_classes(), name
    assert not problems, "not in the manifest: " + ", ".join(sorted(problems))


def test_standin_widgets_and_application_offer_only_real_names(module):
    import ctk
    import qt
    import slicer
    from PySide6.QtWidgets import QComboBox, QGroupBox, QWidget

    problems = []
    for klass, base in ((slicer.qMRMLNodeComboBox, QComboBox), (slicer.qMRMLWidget, QWidget)):
        # names of QWidget (staticMetaObject, showEvent, ...) are the real base class's
        extra = (
            defined_public_names(klass, base) - qt_class_names(klass.__name__) - set(dir(QWidget))
        )
        problems += [f"{klass.__name__}.{n}" for n in extra]
    qwidget_names = set(dir(QWidget))
    extra = (
        defined_public_names(ctk.ctkCollapsibleButton, QGroupBox)
        - CTK_NAMES["ctkCollapsibleButton"]
        - qwidget_names
    )
    problems += [f"ctkCollapsibleButton.{n}" for n in extra]
    app_names = {n for n in vars(type(slicer.app)) if not n.startswith("_")} | {
        n for n in vars(slicer.app) if not n.startswith("_")
    }
    extra = app_names - qt_class_names("qSlicerApplication") - {"connect"}
    problems += [f"slicer.app.{n}" for n in extra]
    top_level = {
        n
        for n in vars(slicer)
        if not n.startswith("_") and not inspect.ismodule(getattr(slicer, n))
    }
    known = (
        set(mrml_classes())
        | set(manifest()["qt_widgets"]["classes"])
        | set(manifest()["qt_application"]["classes"])
    )
    known |= set(manifest()["slicer"]["documented_attributes"])
    problems += [f"slicer.{n}" for n in top_level - known]
    for name in (n for n in vars(qt) if not n.startswith("_")):
        if pyside_class(name) is None and name != "Qt":
            problems.append(f"qt.{name}")
    assert not problems, "the stand-in offers names that Slicer lacks: " + ", ".join(
        sorted(problems)
    )


def test_scan_sees_the_calls_that_matter(scan):
    """Guard against a scanner that silently finds nothing."""
    methods = defaultdict(set)
    for receiver_type, method, _line, _receiver in scan.method_calls:
        methods[receiver_type].add(method)
    assert "SetReferenceImageGeometryParameterFromVolumeNode" in methods["vtkMRMLSegmentationNode"]
    assert "AddEmptySegment" in methods["vtkSegmentation"]
    assert "AddNewNodeByClass" in methods["vtkMRMLScene"]
