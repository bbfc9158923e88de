"""The module panel driving the real engine: Apply turns into Cancel, results fill the table,
errors come back as dialogs, and fine-tuning selects the new model."""

from __future__ import annotations

import pytest
from module_panel import open_module_panel
from slicer_module_helpers import (
    finetune_arguments,
    load_sample,
    process_events,
    pump_until,
    scene_nodes,
)


@pytest.fixture
def panel_with_sample(module, scene, eoformer_home, python_slicer, tiny_model):
    """The panel with the sample case picked, the tiny model and the CPU selected."""
    nodes = load_sample()
    widget, parent = open_module_panel(module)
    process_events()
    parameters = widget.logic.getParameterNode()
    parameters.modelPath = str(tiny_model)
    parameters.device = module.ComputeDevice.CPU
    yield widget, parameters, nodes
    widget.cleanup()
    parent.deleteLater()


def test_apply_runs_in_the_background_and_fills_the_results(panel_with_sample):
    import slicer

    panel, parameters, nodes = panel_with_sample
    ui = panel.ui
    assert ui.deviceComboBox.currentText() == "CPU"
    ui.applyButton.click()
    assert ui.applyButton.text() == "Cancel" and ui.applyButton.isEnabled()
    assert not ui.fineTuneButton.isEnabled()
    pump_until(lambda: panel._task is None)

    assert ui.applyButton.text() == "Apply" and ui.progressBar.format() == "Done"
    node = parameters.outputSegmentation
    assert node is not None and ui.outputSegmentationSelector.currentNode() is node
    assert parameters.fineTuneSegmentation is node
    t1ce = nodes[1]
    necrotic, edema, enhancing = (
        slicer.util.arrayFromSegmentBinaryLabelmap(node, segment_id, t1ce) > 0
        for segment_id in ("NCR", "ED", "ET")
    )
    # the table gives the BraTS regions, made of the editable sub-regions
    regions = (necrotic | edema | enhancing, necrotic | enhancing, enhancing)
    for row, region in enumerate(regions):
        assert ui.resultsTable.item(row, 1).text() == f"{region.sum() / 1000.0:.2f} mL"
    assert ui.resultsTable.item(3, 1).text().endswith(" s")
    assert "cpu" in ui.resultsTable.item(4, 1).text().lower()
    assert ui.resultsTable.item(5, 1).text().startswith("tiny_random (")
    assert not ui.resultsCollapsibleButton.collapsed
    assert "Segmented in" in ui.logTextEdit.toPlainText()

    ui.show3DButton.click()
    assert node.GetSegmentation().ContainsRepresentation("Closed surface")
    assert parameters.show3D
    ui.show3DButton.click()
    assert not node.GetSegmentation().ContainsRepresentation("Closed surface")


def test_cancel_from_the_panel_leaves_the_scene_as_it_was(panel_with_sample):
    panel, _parameters, _nodes = panel_with_sample
    nodes_before = scene_nodes()
    panel.ui.applyButton.click()
    task = panel._task
    pump_until(lambda: task.outputLines or task.finished, timeout_seconds=60)
    panel.ui.applyButton.click()  # the Cancel button
    pump_until(lambda: panel._task is None, timeout_seconds=30)
    assert panel.ui.progressBar.format() == "Cancelled"
    assert panel.ui.applyButton.text() == "Apply"
    assert "Cancelled; the scene was not changed." in panel.ui.logTextEdit.toPlainText()
    assert scene_nodes() == nodes_before


def test_engine_errors_are_shown_in_a_dialog_and_the_log(panel_with_sample, tmp_path):
    import slicer

    panel, parameters, _nodes = panel_with_sample
    missing_model = str(tmp_path / "missing.pt")
    parameters.modelPath = missing_model
    panel.ui.applyButton.click()
    pump_until(lambda: panel._task is None)
    kind, text, options = slicer.util._messages[-1]
    assert kind == "error" and options["windowTitle"] == "Cannot segment"
    assert missing_model in text and "Traceback" not in text
    assert text in panel.ui.logTextEdit.toPlainText()
    assert panel.ui.progressBar.format() == "Failed"


def test_finetune_from_the_panel_selects_the_new_model(panel_with_sample, module, monkeypatch):
    from EoFormerSegmentationLib.models import user_model_dir

    panel, parameters, nodes = panel_with_sample
    start = module.EoFormerSegmentationLogic.startFineTune
    monkeypatch.setattr(
        module.EoFormerSegmentationLogic,
        "startFineTune",
        lambda self, **options: start(self, extraArguments=finetune_arguments(), **options),
    )
    ui = panel.ui
    assert not ui.fineTuneButton.isEnabled() and not ui.addCaseButton.isEnabled()
    parameters.fineTuneSegmentation = nodes[4]
    assert ui.addCaseButton.isEnabled()
    ui.addCaseButton.click()
    assert ui.fineTuneCasesList.count() == 1 and ui.fineTuneButton.isEnabled()

    parameters.fineTuneIterations = 2
    parameters.fineTuneModelName = "site a"
    ui.fineTuneButton.click()
    assert ui.fineTuneButton.text() == "Cancel fine-tuning" and not ui.applyButton.isEnabled()
    pump_until(lambda: panel._task is None)

    new_model = user_model_dir() / "site_a.pt"
    assert new_model.is_file(), ui.logTextEdit.toPlainText()
    assert parameters.modelPath == str(new_model)
    assert ui.modelComboBox.currentText() == "Fine-tuned: site_a"
    assert ui.fineTuneStatusLabel.text().startswith("New model site_a selected")
    assert ui.fineTuneButton.text() == "Fine-tune" and ui.applyButton.isEnabled()
    ui.useBundledModelButton.click()
    assert parameters.modelPath == "" and ui.modelComboBox.currentText().startswith("Bundled: ")
