"""Raw scans in the module: the brain-extraction choice reaches the engine, and what the engine
did around the network (registrations, brain extraction) is told in the log."""

from __future__ import annotations

import pytest
from module_panel import open_module_panel
from slicer_module_helpers import load_sample, process_events


class _Stop(Exception):
    pass


@pytest.fixture
def panel(module, scene, eoformer_home):
    nodes = load_sample()
    widget, parent = open_module_panel(module)
    process_events()
    yield widget, nodes
    widget.cleanup()
    parent.deleteLater()


@pytest.mark.parametrize("choice, expected", [(0, "auto"), (1, "on"), (2, "off")])
def test_the_brain_extraction_choice_reaches_the_engine(
    panel, module, monkeypatch, choice, expected
):
    widget, _nodes = panel
    combo = widget.ui.skullStripComboBox
    assert combo.count() == 3
    combo.setCurrentIndex(choice)
    parameters = widget.logic.getParameterNode()
    assert parameters.skullStrip.value == expected

    seen = {}

    def engine_command(command, arguments):
        seen["arguments"] = list(arguments)
        raise _Stop

    monkeypatch.setattr(widget.logic, "engineCommand", engine_command)
    with pytest.raises(_Stop):
        widget.logic.startSegmentation(
            widget.currentInputVolumes(), skullStrip=parameters.skullStrip.value
        )
    arguments = seen["arguments"]
    assert arguments[arguments.index("--skull-strip") + 1] == expected
    # without the co-registration box the engine decides per sequence (no --register)
    assert "--register" not in arguments


def test_the_log_tells_registrations_and_the_brain_volume(module):
    report = {
        "processing": {
            "registration": {
                "t2": {"rotation_deg": 3.01, "translation_mm": 2.11, "warnings": []},
            },
            "brain_extraction": {"source": "t1", "brain_volume_ml": 1434.6, "warnings": []},
        },
        "notes": [],
    }
    lines = module.processingSummary(report)
    assert lines == [
        "T2 registered to T1ce: 3.0 degrees, 2.1 mm.",
        "Brain extracted from T1: 1435 mL.",
    ]
    assert module.processingSummary({}) == []
