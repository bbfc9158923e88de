"""The module's .ui file loads in Qt and holds every widget the module uses; the panel renders."""

from __future__ import annotations

import ast
import re
import xml.etree.ElementTree as ElementTree

from module_panel import open_module_panel, render
from slicer_module_helpers import MODULE_FILE, UI_FILE


def used_widget_names():
    """Names of ``self.ui.<name>`` in the module file."""
    names = set()
    for node in ast.walk(ast.parse(MODULE_FILE.read_text(encoding="utf-8"))):
        if (
            isinstance(node, ast.Attribute)
            and isinstance(node.value, ast.Attribute)
            and node.value.attr == "ui"
            and isinstance(node.value.value, ast.Name)
            and node.value.value.id == "self"
        ):
            names.add(node.attr)
    return names


def ui_with_declared_base_classes() -> str:
    """The .ui text with each Slicer/CTK class replaced by the base class it declares."""
    text = UI_FILE.read_text(encoding="utf-8")
    root = ElementTree.fromstring(text)
    bases = {
        custom.findtext("class"): custom.findtext("extends") for custom in root.iter("customwidget")
    }
    assert bases == {
        "ctkCollapsibleButton": "QWidget",
        "qMRMLNodeComboBox": "QWidget",
        "qMRMLWidget": "QWidget",
    }
    for custom_class, base in bases.items():
        text = text.replace(f'class="{custom_class}"', f'class="{base}"')
    text = re.sub(r"<customwidgets>.*?</customwidgets>", "", text, flags=re.S)
    return re.sub(r"<connections>.*?</connections>", "", text, flags=re.S)


def test_ui_file_loads_in_qt_with_every_widget_the_module_uses(qapp):
    from PySide6.QtCore import QBuffer, QByteArray
    from PySide6.QtUiTools import QUiLoader
    from PySide6.QtWidgets import QWidget

    buffer = QBuffer()
    buffer.setData(QByteArray(ui_with_declared_base_classes().encode("utf-8")))
    buffer.open(QBuffer.ReadOnly)
    loader = QUiLoader()
    panel = loader.load(buffer)
    assert panel is not None, loader.errorString()
    loaded = {child.objectName(): type(child).__name__ for child in panel.findChildren(QWidget)}
    bound_to_parameter_node = {
        child.objectName()
        for child in panel.findChildren(QWidget)
        if child.property("SlicerParameterName")
    }
    assert len(bound_to_parameter_node) == 15
    used = used_widget_names()
    assert len(used) >= 15
    missing = used - set(loaded)
    assert not missing, f"widgets used by the module but not in the .ui file: {sorted(missing)}"
    expected_classes = {
        "applyButton": "QPushButton",
        "progressBar": "QProgressBar",
        "resultsTable": "QTableWidget",
        "logTextEdit": "QPlainTextEdit",
        "modelComboBox": "QComboBox",
        "deviceComboBox": "QComboBox",
        "testTimeAugmentationCheckBox": "QCheckBox",
        "coRegisterCheckBox": "QCheckBox",
        "skullStripComboBox": "QComboBox",
        "uncertaintyMapCheckBox": "QCheckBox",
        "uncertaintyOpacitySlider": "QSlider",
        "nextDoubtfulRegionButton": "QPushButton",
        "show3DButton": "QPushButton",
        "fineTuneCasesList": "QListWidget",
        "fineTuneIterationsSpinBox": "QSpinBox",
        "fineTuneLearningRateSpinBox": "QDoubleSpinBox",
        "processingComboBox": "QComboBox",
        "serverUrlLineEdit": "QLineEdit",
        "serverTokenLineEdit": "QLineEdit",
        "testConnectionButton": "QPushButton",
    }
    for name, class_name in expected_classes.items():
        assert loaded[name] == class_name, (name, loaded[name])
    table = panel.findChild(QWidget, "resultsTable")
    rows = [table.item(row, 0).text() for row in range(table.rowCount())]
    assert rows == ["Whole tumor", "Tumor core", "Enhancing tumor", "Time", "Device", "Model"]


def test_ui_declares_the_four_inputs_output_and_sections():
    root = ElementTree.parse(UI_FILE).getroot()
    classes = {widget.get("name"): widget.get("class") for widget in root.iter("widget")}
    for name in (
        "t1VolumeSelector",
        "t1ceVolumeSelector",
        "t2VolumeSelector",
        "flairVolumeSelector",
    ):
        assert classes[name] == "qMRMLNodeComboBox"
    assert classes["outputSegmentationSelector"] == "qMRMLNodeComboBox"
    for name in ("advancedCollapsibleButton", "fineTuneCollapsibleButton"):
        assert classes[name] == "ctkCollapsibleButton"
    text = UI_FILE.read_text(encoding="utf-8")
    assert "<string>Create new segmentation</string>" in text
    assert "<string>Show model card</string>" in text and "<string>Show 3D</string>" in text


def test_module_panel_renders_with_the_sample_case(module, scene, tmp_path, eoformer_home):
    import SampleData

    module.registerSampleData()
    SampleData.downloadSamples(module.SAMPLE_NAME)
    widget, parent = open_module_panel(module)
    widget.ui.advancedCollapsibleButton.collapsed = False
    path = render(parent, tmp_path / "panel.png")

    from PySide6.QtGui import QImage

    image = QImage(str(path))
    assert image.width() == parent.width() and image.height() > 500
    assert widget.ui.t1ceVolumeSelector.currentNode().GetName() == "TCGA-FG-6692_t1ce"
    assert widget.ui.applyButton.isEnabled()
    widget.cleanup()
