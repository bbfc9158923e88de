"""Where the module keeps patient data, what it hands the engine, which volumes it offers and
how it writes them, and where its result appears in the subject hierarchy."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
from module_panel import open_module_panel
from slicer_module_helpers import scene_nodes


def add_volume(name, class_name="vtkMRMLScalarVolumeNode"):
    import slicer

    node = slicer.mrmlScene.AddNewNodeByClass(class_name, name)
    slicer.util.updateVolumeFromArray(node, np.arange(4 * 5 * 6, dtype=np.int16).reshape(4, 5, 6))
    return node


def test_data_folder_is_in_slicer_cache_not_beside_the_settings_and_not_in_the_environment(
    module, scene, monkeypatch
):
    import slicer

    monkeypatch.delenv("EOFORMER_HOME", raising=False)
    logic = module.EoFormerSegmentationLogic()
    assert "EOFORMER_HOME" not in os.environ  # Slicer's own environment is left alone
    folder = logic.dataFolder()
    assert folder == Path(slicer.app.cachePath) / "EoFormer"
    assert Path(slicer.app.slicerUserSettingsFilePath).parent not in (folder, *folder.parents)
    assert logic.fineTuneCasesFolder() == folder / "finetune-cases"
    assert logic.modelsFolder() == folder / "models"
    # the engine's process gets the folder, and UTF-8 output
    environment = logic.engineEnvironment()
    assert environment["EOFORMER_HOME"] == str(folder)
    assert environment["PYTHONIOENCODING"] == "utf-8" and environment["PYTHONUTF8"] == "1"
    assert environment["PYTHONPATH"].split(os.pathsep)[0] == str(Path(module.__file__).parent)


def test_the_user_sees_and_changes_the_data_folder(module, scene, tmp_path, monkeypatch):
    import qt

    monkeypatch.delenv("EOFORMER_HOME", raising=False)
    panel, _parent = open_module_panel(module)
    assert panel.ui.dataFolderLineEdit.text() == str(panel.logic.dataFolder())
    assert "copies of the patient images" in panel.ui.fineTuneHelpLabel.text()
    chosen = tmp_path / "hospital share"
    monkeypatch.setattr(
        qt.QFileDialog, "getExistingDirectory", staticmethod(lambda *args: str(chosen))
    )
    panel.ui.changeDataFolderButton.click()
    assert panel.ui.dataFolderLineEdit.text() == str(chosen)
    # kept as a setting: a new Logic (after a restart) uses it, and so does the engine
    logic = module.EoFormerSegmentationLogic()
    assert logic.fineTuneCasesFolder() == chosen / "finetune-cases"
    assert logic.engineEnvironment()["EOFORMER_HOME"] == str(chosen)
    panel.cleanup()


def test_only_plain_scalar_volumes_are_offered(module, scene, eoformer_home):
    """Vector, tensor and diffusion volumes are subclasses of the scalar volume node; they
    are not offered even when their names look like a sequence."""
    import slicer
    from slicer import _mrml

    class vtkMRMLVectorVolumeNode(_mrml.vtkMRMLScalarVolumeNode):
        pass

    class vtkMRMLDiffusionWeightedVolumeNode(_mrml.vtkMRMLScalarVolumeNode):
        pass

    t1 = add_volume("t1")
    for klass, name in (
        (vtkMRMLVectorVolumeNode, "t2 color"),
        (vtkMRMLDiffusionWeightedVolumeNode, "flair dwi"),
    ):
        node = klass()
        node.SetName(name)
        slicer.mrmlScene.AddNode(node)
    logic = module.EoFormerSegmentationLogic()
    assert logic.candidateInputVolumes() == [t1]


def test_inputs_are_written_without_copies_in_the_scene(module, scene, eoformer_home, tmp_path):
    import SimpleITK as sitk
    import slicer

    volume = add_volume("t1")
    volume.SetSpacing(0.5, 0.5, 5.0)
    added = []
    tag = slicer.mrmlScene.AddObserver(
        slicer.mrmlScene.NodeAddedEvent, lambda caller, event: added.append(event)
    )
    before = scene_nodes()
    try:
        module.EoFormerSegmentationLogic.writeVolumeFile(volume, tmp_path / "t1.nrrd")
    finally:
        slicer.mrmlScene.RemoveObserver(tag)
    assert added == [] and scene_nodes() == before
    assert volume.GetStorageNode() is None  # the user's node is not tied to the file
    written = sitk.ReadImage(str(tmp_path / "t1.nrrd"))
    np.testing.assert_array_equal(
        sitk.GetArrayFromImage(written), slicer.util.arrayFromVolume(volume)
    )
    assert written.GetSpacing() == pytest.approx((0.5, 0.5, 5.0))


def test_new_segmentation_goes_into_the_study_of_the_t1ce(module, scene, eoformer_home, tmp_path):
    import json

    import SimpleITK as sitk
    import slicer

    t1ce = add_volume("t1ce")
    shNode = slicer.vtkMRMLSubjectHierarchyNode.GetSubjectHierarchyNode(slicer.mrmlScene)
    patient = shNode.CreateFolderItem(shNode.GetSceneItemID(), "Patient")
    study = shNode.CreateFolderItem(patient, "MR brain")
    shNode.SetItemParent(shNode.GetItemByDataNode(t1ce), study)
    label = np.zeros((4, 5, 6), np.uint8)
    label[1:3, 1:3, 1:3] = 2
    image = sitk.GetImageFromArray(label)
    image.SetDirection((-1, 0, 0, 0, -1, 0, 0, 0, 1))
    sitk.WriteImage(image, str(tmp_path / "result.nii.gz"))
    (tmp_path / "report.json").write_text(json.dumps({"model": {"name": "m", "sha256": ""}}))
    result = module.EoFormerSegmentationLogic().importSegmentationResult(
        tmp_path / "result.nii.gz", tmp_path / "report.json", t1ce
    )
    item = shNode.GetItemByDataNode(result.segmentationNode)
    assert shNode.GetItemParent(item) == study
