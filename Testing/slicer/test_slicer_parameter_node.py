"""The panel's widgets hold every value of the parameter node as it is: a spin box whose range
or decimals cannot show a default would silently change it (Qt clamps and rounds, and the
parameter node wrapper writes the shown value back)."""

from __future__ import annotations

import pytest
from module_panel import open_module_panel


def test_connecting_the_panel_keeps_every_default(module, scene, eoformer_home):
    import slicer

    defaults = module.EoFormerSegmentationParameterNode(
        slicer.mrmlScene.AddNewNodeByClass("vtkMRMLScriptedModuleNode", "defaults")
    )
    expected = {
        name: defaults.getValue(name)
        for name in module.EoFormerSegmentationParameterNode.allParameters
    }
    panel, _parent = open_module_panel(module)
    parameters = panel.logic.getParameterNode()
    for name in ("fineTuneIterations", "fineTuneLearningRate", "device", "testTimeAugmentation"):
        assert parameters.getValue(name) == pytest.approx(expected[name]), name
    assert panel.ui.fineTuneLearningRateSpinBox.value() == pytest.approx(1e-4)
    panel.cleanup()


def test_a_spin_box_that_cannot_show_the_value_changes_it_as_in_slicer(module, scene):
    """The stand-in is as strict as Slicer: a value outside a spin box's range is clamped."""
    import slicer
    from PySide6.QtWidgets import QSpinBox

    spin = QSpinBox()
    spin.setProperty("SlicerParameterName", "fineTuneIterations")
    spin.setMaximum(50)
    parameters = module.EoFormerSegmentationParameterNode(
        slicer.mrmlScene.AddNewNodeByClass("vtkMRMLScriptedModuleNode", "p")
    )
    gui = type("Gui", (), {})()
    gui.spin = spin
    parameters.connectGui(gui)
    assert parameters.fineTuneIterations == 50
