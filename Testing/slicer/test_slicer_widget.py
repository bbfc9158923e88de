"""The module panel (real Qt widgets from the .ui file, stand-in Slicer) without the engine:
inputs picked from names, the Apply button's state and tooltip, model choice, installation."""

from __future__ import annotations

import json

import pytest
from module_panel import open_module_panel
from slicer_module_helpers import load_sample, process_events


@pytest.fixture
def panel(module, scene, eoformer_home):
    widget, parent = open_module_panel(module)
    yield widget
    widget.cleanup()
    parent.deleteLater()


def selected_names(widget):
    return {
        role: (
            node.GetName()
            if (node := getattr(widget.ui, f"{role}VolumeSelector").currentNode())
            else None
        )
        for role in ("t1", "t1ce", "t2", "flair")
    }


def test_inputs_are_picked_from_names_when_the_module_opens(module, scene, eoformer_home):
    load_sample()
    widget, parent = open_module_panel(module)
    assert selected_names(widget) == {
        role: f"TCGA-FG-6692_{role}" for role in ("t1", "t1ce", "t2", "flair")
    }
    parameters = widget.logic.getParameterNode()
    assert parameters.t1ceVolume.GetName() == "TCGA-FG-6692_t1ce"
    widget.cleanup()


def test_inputs_are_picked_when_volumes_are_added_and_user_choices_stay(panel):
    import slicer

    assert selected_names(panel) == dict.fromkeys(("t1", "t1ce", "t2", "flair"))
    other = slicer.mrmlScene.AddNewNodeByClass("vtkMRMLScalarVolumeNode", "MRHead")
    selector = panel.ui.t1VolumeSelector
    selector.setCurrentIndex(selector.findData(other.GetID()))  # what choosing in the list does
    load_sample()
    process_events()
    assert selected_names(panel) == {
        "t1": "MRHead",
        "t1ce": "TCGA-FG-6692_t1ce",
        "t2": "TCGA-FG-6692_t2",
        "flair": "TCGA-FG-6692_flair",
    }


def test_apply_is_enabled_only_with_four_distinct_volumes_and_its_tooltip_says_why(panel):
    import slicer

    button = panel.ui.applyButton
    assert not button.isEnabled()
    assert button.toolTip().splitlines() == [
        "Select the T1 volume",
        "Select the T1ce volume",
        "Select the T2 volume",
        "Select the FLAIR volume",
    ]
    nodes = load_sample()
    process_events()
    assert button.isEnabled() and button.text() == "Apply"
    assert button.toolTip() == "Segment the whole tumor, tumor core and enhancing tumor."

    panel.ui.flairVolumeSelector.setCurrentNode(nodes[2])  # T2 picked twice
    assert not button.isEnabled()
    assert (
        button.toolTip()
        == "T2 and FLAIR are the same volume (TCGA-FG-6692_t2); pick four different volumes"
    )
    panel.ui.flairVolumeSelector.setCurrentNode(None)
    assert button.toolTip() == "Select the FLAIR volume"
    slicer.mrmlScene.RemoveNode(nodes[1])
    process_events()
    assert "Select the T1ce volume" in button.toolTip().splitlines()


def test_declining_the_installation_starts_nothing(panel, module, monkeypatch):
    import slicer

    load_sample()
    process_events()
    monkeypatch.setattr(
        module.EoFormerSegmentationLogic,
        "missingDependencies",
        lambda self, path=None: [
            "torch is not installed",
            "monai 1.2.0 is too old (1.3 or newer needed)",
        ],
    )
    slicer.util._confirmAnswers.append(False)
    nodes_before = slicer.mrmlScene.GetNumberOfNodes()
    panel.ui.applyButton.click()
    kind, text, _options = slicer.util._messages[-1]
    assert kind == "confirm" and "torch is not installed" in text and "monai 1.2.0" in text
    assert panel._task is None and panel.ui.applyButton.text() == "Apply"
    assert "Installation declined" in panel.ui.logTextEdit.toPlainText()
    assert slicer.mrmlScene.GetNumberOfNodes() == nodes_before


def test_models_of_the_user_folder_are_offered_and_bundled_model_is_the_default(
    panel, eoformer_home
):
    import slicer

    folder = panel.logic.modelsFolder()
    folder.mkdir(parents=True)
    (folder / "site_a.pt").write_bytes(b"weights")
    (folder / "site_a.json").write_text(
        json.dumps({"name": "site_a", "description": "tuned on 3 cases"})
    )
    (folder / ".site_b.pt.partial.pt").write_bytes(b"half")
    panel.refreshModelList()
    combo = panel.ui.modelComboBox
    labels = [combo.itemText(index) for index in range(combo.count())]
    assert labels[0].startswith("Bundled: ")
    assert labels[1:] == ["Fine-tuned: site_a", "Model file..."]
    parameters = panel.logic.getParameterNode()
    assert parameters.modelPath == ""

    combo.setCurrentIndex(1)
    assert parameters.modelPath == str(folder / "site_a.pt")
    panel.ui.showModelCardButton.click()
    kind, text, options = slicer.util._messages[-1]
    assert kind == "info" and "site_a" in text and "tuned on 3 cases" in text

    panel.ui.useBundledModelButton.click()
    assert parameters.modelPath == "" and combo.currentIndex() == 0
