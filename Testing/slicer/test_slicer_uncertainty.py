"""Where the model is unsure, in the module: the checkbox asks the engine for the uncertainty
map, the map is shown over the T1ce, the results give the uncertain volumes, and "Next doubtful
region" centres the slice views on the uncertain regions, largest first."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from EoFormerSegmentationLib.uncertainty import doubtful_regions
from module_panel import open_module_panel
from slicer_module_helpers import load_sample, process_events, pump_until


class _Stop(Exception):
    pass


def slice_centres():
    """Layout name -> centre (RAS mm) of each slice view."""
    import slicer

    centres = {}
    for node in slicer.util.getNodesByClass("vtkMRMLSliceNode"):
        matrix = slicer.util.arrayFromVTKMatrix(node.GetSliceToRAS())
        centres[node.GetLayoutName()] = tuple(matrix[:3, 3])
    return centres


@pytest.fixture
def panel(module, scene, eoformer_home, python_slicer, tiny_model):
    """The panel with the sample case, the tiny model, the CPU and Slicer's three slice views."""
    import slicer
    from slicer import _mrml

    _mrml.addSliceViews(slicer.mrmlScene)
    nodes = load_sample()
    widget, parent = open_module_panel(module)
    process_events()
    parameters = widget.logic.getParameterNode()
    parameters.modelPath = str(tiny_model)
    parameters.device = module.ComputeDevice.CPU
    yield widget, parameters, nodes
    widget.cleanup()
    parent.deleteLater()


def test_doubtful_regions_are_the_uncertain_blobs_largest_first_in_ras():
    uncertainty = np.zeros((20, 30, 40), np.float32)  # [k, j, i]
    uncertainty[2:5, 3:6, 4:7] = 0.9  # 27 voxels around k, j, i = 3, 4, 5
    uncertainty[10:15, 10:15, 10:15] = 0.7  # 125 voxels around 12, 12, 12
    uncertainty[18, 28, 38] = 0.4  # not uncertain (0.5 bits or less)
    ijk_to_ras = np.array(
        [[0.0, 0.0, -2.0, 10.0], [0.0, 1.5, 0.0, -5.0], [3.0, 0.0, 0.0, 1.0], [0, 0, 0, 1]]
    )
    regions = doubtful_regions(uncertainty, ijk_to_ras, voxel_ml=0.009)
    assert len(regions) == 2
    (large_centre, large_ml), (small_centre, small_ml) = regions
    assert large_ml == pytest.approx(125 * 0.009) and small_ml == pytest.approx(27 * 0.009)
    # IJK (i, j, k) = (12, 12, 12) and (5, 4, 3) through the matrix
    assert large_centre == pytest.approx((-14.0, 13.0, 37.0))
    assert small_centre == pytest.approx((4.0, 1.0, 16.0))
    # touching at a corner is one region; nothing uncertain gives no region
    corner = np.zeros((4, 4, 4), np.float32)
    corner[0, 0, 0] = corner[1, 1, 1] = 1.0
    assert len(doubtful_regions(corner, np.eye(4), 0.001)) == 1
    assert doubtful_regions(np.zeros((3, 3, 3)), np.eye(4), 0.001) == []


@pytest.mark.parametrize("checked", [False, True])
def test_the_checkbox_asks_the_engine_for_the_map_only_when_on(panel, monkeypatch, checked):
    widget, parameters, _nodes = panel
    assert parameters.uncertaintyMap is False  # off by default
    widget.ui.uncertaintyMapCheckBox.setChecked(checked)
    assert parameters.uncertaintyMap is checked
    seen = {}

    def engine_command(command, arguments):
        seen["arguments"] = list(arguments)
        raise _Stop

    monkeypatch.setattr(widget.logic, "engineCommand", engine_command)
    with pytest.raises(_Stop):
        widget.logic.startSegmentation(
            widget.currentInputVolumes(), uncertaintyMap=parameters.uncertaintyMap
        )
    arguments = seen["arguments"]
    if checked:
        path = Path(arguments[arguments.index("--uncertainty") + 1])
        assert path.name == "uncertainty.nii.gz" and path.parent.name.startswith("EoFormer-")
    else:
        assert "--uncertainty" not in arguments


def test_apply_with_the_map_shows_it_over_the_t1ce_and_walks_its_regions(panel, module):
    import slicer
    from slicer import _mrml

    widget, parameters, nodes = panel
    ui = widget.ui
    t1ce = nodes[1]
    assert not ui.nextDoubtfulRegionButton.isEnabled()
    ui.uncertaintyMapCheckBox.setChecked(True)
    ui.uncertaintyOpacitySlider.setValue(40)
    ui.applyButton.click()
    pump_until(lambda: widget._task is None)
    assert ui.progressBar.format() == "Done", ui.logTextEdit.toPlainText()

    # the map: a volume named after the T1ce, in its study, on its grid, no temporary file
    uncertainty = slicer.mrmlScene.GetFirstNodeByName(f"{t1ce.GetName()} uncertainty")
    assert uncertainty is not None and uncertainty.IsA("vtkMRMLScalarVolumeNode")
    voxels = slicer.util.arrayFromVolume(uncertainty)
    assert voxels.shape == slicer.util.arrayFromVolume(t1ce).shape
    assert voxels.min() >= 0.0 and voxels.max() <= 1.0
    np.testing.assert_array_equal(_mrml.ijkToRasArray(uncertainty), _mrml.ijkToRasArray(t1ce))
    assert uncertainty.GetStorageNode() is None
    hierarchy = slicer.vtkMRMLSubjectHierarchyNode.GetSubjectHierarchyNode(slicer.mrmlScene)
    assert hierarchy.GetItemParent(hierarchy.GetItemByDataNode(uncertainty)) == (
        hierarchy.GetItemParent(hierarchy.GetItemByDataNode(t1ce))
    )
    assert sorted(Path(slicer.app.temporaryPath).glob("EoFormer-*")) == []

    # shown as the foreground over the T1ce in every slice view, Iron colours, window 0-1
    display = uncertainty.GetDisplayNode()
    assert display.GetColorNodeID() == module.UNCERTAINTY_COLOR_NODE_ID
    assert not display.GetAutoWindowLevel()
    assert (display.GetWindowLevelMin(), display.GetWindowLevelMax()) == (0.0, 1.0)
    assert display.GetApplyThreshold() and 0 < display.GetLowerThreshold() < 0.5
    composites = slicer.util.getNodesByClass("vtkMRMLSliceCompositeNode")
    assert len(composites) == 3
    for composite in composites:
        assert composite.GetBackgroundVolumeID() == t1ce.GetID()
        assert composite.GetForegroundVolumeID() == uncertainty.GetID()
        assert composite.GetForegroundOpacity() == pytest.approx(0.4)
    ui.uncertaintyOpacitySlider.setValue(75)
    assert all(c.GetForegroundOpacity() == pytest.approx(0.75) for c in composites)

    # the results keep their rows and give each region's uncertain volume from the report
    rows = [ui.resultsTable.item(row, 0).text() for row in range(ui.resultsTable.rowCount())]
    assert rows == ["Whole tumor", "Tumor core", "Enhancing tumor", "Time", "Device", "Model"]
    for row in range(3):
        text = ui.resultsTable.item(row, 1).text()
        assert text.endswith(" mL)") and " mL (uncertain " in text, text

    # the button walks the regions, largest first, and centres the views on each
    regions = widget.logic.doubtfulRegions(uncertainty)
    assert regions and ui.nextDoubtfulRegionButton.isEnabled()
    volumes = [volume for _centre, volume in regions]
    assert volumes == sorted(volumes, reverse=True)
    for number, (centre, _volume) in enumerate(regions[:3], start=1):
        ui.nextDoubtfulRegionButton.click()
        for view_centre in slice_centres().values():
            assert view_centre == pytest.approx(centre)
        assert f"Doubtful region {number} of {len(regions)}:" in ui.logTextEdit.toPlainText()


def test_next_doubtful_region_visits_a_known_map_largest_first(panel, module):
    import slicer

    widget, _parameters, nodes = panel
    t1ce = nodes[1]
    shape = slicer.util.arrayFromVolume(t1ce).shape
    uncertainty_voxels = np.zeros(shape, np.float32)
    uncertainty_voxels[20:23, 100:103, 100:103] = 0.8  # 27 voxels
    uncertainty_voxels[60:65, 50:55, 100:105] = 0.9  # 125 voxels
    uncertainty = slicer.mrmlScene.AddNewNodeByClass("vtkMRMLScalarVolumeNode", "known map")
    uncertainty.SetIJKToRASMatrix(slicer.util.vtkMatrixFromArray(_ijk_to_ras(t1ce)))
    slicer.util.updateVolumeFromArray(uncertainty, uncertainty_voxels)
    result = module.SegmentationResult(
        segmentationNode=None,
        volumesMl={},
        seconds=1.0,
        device="cpu",
        modelName="m",
        modelSha256="0" * 64,
        uncertaintyNode=uncertainty,
    )
    widget.showUncertainty(result)
    widget.updateGUI()
    assert widget.ui.nextDoubtfulRegionButton.isEnabled()
    ijk_to_ras = _ijk_to_ras(t1ce)
    expected = [ijk_to_ras @ (102, 52, 62, 1), ijk_to_ras @ (101, 101, 21, 1)]
    expected = [tuple(point[:3]) for point in expected]
    # largest first, then the next, then around again
    for number, centre in zip((1, 2, 1), (expected[0], expected[1], expected[0])):
        widget.ui.nextDoubtfulRegionButton.click()
        assert slice_centres()["Red"] == pytest.approx(centre, abs=1e-6)
        assert slice_centres()["Green"] == pytest.approx(centre, abs=1e-6)
        log = widget.ui.logTextEdit.toPlainText().splitlines()[-1]
        assert log.startswith(f"Doubtful region {number} of 2:")
    voxel_ml = float(np.prod(t1ce.GetSpacing())) / 1000.0
    assert f"{125 * voxel_ml:.2f} mL" in widget.ui.logTextEdit.toPlainText()


def _ijk_to_ras(volume):
    from slicer import _mrml

    return _mrml.ijkToRasArray(volume)
