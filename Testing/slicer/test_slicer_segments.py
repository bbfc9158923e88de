"""The segments a user gets and edits: non-overlapping BraTS sub-regions, imported without
leaving nodes behind, coded with a terminology Slicer has loaded, and stored for fine-tuning
exactly as the Segment Editor shows them."""

from __future__ import annotations

import json

import numpy as np
import pytest
from EoFormerSegmentationLib import labels
from slicer_module_helpers import scene_nodes

SHAPE = (12, 14, 16)  # (K, J, I)


def brats_labels():
    """A small tumor: edema around a necrotic core with an enhancing rim (BraTS 2020 values)."""
    label = np.zeros(SHAPE, np.uint8)
    label[2:10, 3:11, 4:12] = 2
    label[4:8, 5:9, 6:10] = 4
    label[5:7, 6:8, 7:9] = 1
    return label


@pytest.fixture
def engine_result(module, scene, eoformer_home, tmp_path):
    """Four input volumes and an engine result (label map + report) on the T1ce grid."""
    import SimpleITK as sitk
    import slicer

    volumes = {}
    for role in module.SEQUENCE_ROLES:
        node = slicer.mrmlScene.AddNewNodeByClass("vtkMRMLScalarVolumeNode", f"case {role}")
        node.SetSpacing(1.0, 1.0, 2.0)
        node.SetOrigin(-8.0, -7.0, -12.0)
        slicer.util.updateVolumeFromArray(node, np.ones(SHAPE, np.int16))
        volumes[role] = node
    image = sitk.GetImageFromArray(brats_labels())
    image.SetSpacing((1.0, 1.0, 2.0))
    image.SetOrigin((8.0, 7.0, -12.0))  # the same voxels in LPS
    image.SetDirection((-1, 0, 0, 0, -1, 0, 0, 0, 1))
    label_path = tmp_path / "result.nii.gz"
    sitk.WriteImage(image, str(label_path))
    report_path = tmp_path / "report.json"
    report_path.write_text(
        json.dumps({"model": {"name": "tiny", "sha256": "ab" * 32}, "device": "cpu"})
    )
    return volumes, label_path, report_path


def segment_masks(segmentation_node, reference):
    from slicer import _mrml

    segmentation = segmentation_node.GetSegmentation()
    masks = {}
    for segment_id in segmentation.GetSegmentIDs():
        segment = segmentation.GetSegment(segment_id)
        np.testing.assert_allclose(segment._ijkToRas, _mrml.ijkToRasArray(reference))
        masks[segment.GetName()] = segment._mask.astype(bool)
    return masks


def paint_with_segment_editor(segmentation_node, segment_id, mask):
    """Paint ``mask`` into a segment as the Segment Editor does by default ("Modify other
    segments: overwrite all"): the voxels are added to this segment and removed from all
    others."""
    segmentation = segmentation_node.GetSegmentation()
    for other_id in segmentation.GetSegmentIDs():
        segment = segmentation.GetSegment(other_id)
        if other_id == segment_id:
            segment._mask = (segment._mask.astype(bool) | mask).astype(np.uint8)
        else:
            segment._mask = (segment._mask.astype(bool) & ~mask).astype(np.uint8)


def test_result_is_three_non_overlapping_subregions_and_the_region_volumes(module, engine_result):
    volumes, label_path, report_path = engine_result
    logic = module.EoFormerSegmentationLogic()
    before = scene_nodes()
    result = logic.importSegmentationResult(label_path, report_path, volumes["t1ce"])
    node = result.segmentationNode

    # only the segmentation and its display node were added: the label volume that was read,
    # and its display and storage nodes, are gone
    assert [n for n in scene_nodes() if n not in before] == [node, node.GetDisplayNode()]

    masks = segment_masks(node, volumes["t1ce"])
    assert list(masks) == ["Necrotic tumor core", "Edema", "Enhancing tumor"]
    label = brats_labels()
    for spec in labels.SUBREGION_SEGMENTS:
        np.testing.assert_array_equal(masks[spec["name"]], label == spec["label"])
    assert (sum(m.astype(int) for m in masks.values()) <= 1).all()
    # 2 mm^3 voxels: WT, TC and ET volumes of the BraTS regions, in mL
    voxel_ml = 2.0 / 1000.0
    assert result.volumesMl == pytest.approx(
        {
            "Whole tumor": (label > 0).sum() * voxel_ml,
            "Tumor core": ((label == 1) | (label == 4)).sum() * voxel_ml,
            "Enhancing tumor": (label == 4).sum() * voxel_ml,
        }
    )
    assert "Whole tumor" in node.GetDescription()


def test_editing_with_overwrite_stores_the_case_the_user_sees(module, engine_result):
    """Painting edema over part of the core with the editor's default overwrite keeps the
    segments consistent, and the saved training case has exactly the painted labels."""
    import SimpleITK as sitk

    volumes, label_path, report_path = engine_result
    logic = module.EoFormerSegmentationLogic()
    node = logic.importSegmentationResult(label_path, report_path, volumes["t1ce"]).segmentationNode
    painted = np.zeros(SHAPE, bool)
    painted[4:7, 5:9, 6:10] = True  # over necrotic core and enhancing rim
    paint_with_segment_editor(node, "ED", painted)

    seen = np.zeros(SHAPE, np.uint8)
    for spec in labels.SUBREGION_SEGMENTS:
        seen[segment_masks(node, volumes["t1ce"])[spec["name"]]] = spec["label"]
    assert (seen[painted] == 2).all()

    before = scene_nodes()
    case = logic.addFineTuneCase(volumes, node, caseName="edited")
    assert scene_nodes() == before
    stored = sitk.GetArrayFromImage(sitk.ReadImage(str(case / "seg.nrrd")))
    np.testing.assert_array_equal(stored, seen)
    # what training reads from the case is the same
    from EoFormerSegmentationLib.segmentation_file import read_label_map

    label_xyz, _image = read_label_map(case / "seg.nrrd")
    np.testing.assert_array_equal(label_xyz.transpose(2, 1, 0), seen)


def test_overlapping_subregions_are_refused_with_voxel_counts(module, engine_result):
    volumes, label_path, report_path = engine_result
    logic = module.EoFormerSegmentationLogic()
    node = logic.importSegmentationResult(label_path, report_path, volumes["t1ce"]).segmentationNode
    segment = node.GetSegmentation().GetSegment("NCR")
    overlap = np.zeros(SHAPE, bool)
    overlap[2, 3, 4:7] = True  # 3 edema voxels also painted as core, overlap allowed
    segment._mask = (segment._mask.astype(bool) | overlap).astype(np.uint8)
    with pytest.raises(ValueError, match="3 voxels belong to more than one"):
        logic.addFineTuneCase(volumes, node, caseName="overlap")
    assert logic.fineTuneCases() == []


def test_segment_terminology_is_in_a_list_that_the_module_loads(module, scene):
    """Slicer's terminology selector finds every code of the segments: the module loads its
    terminology file at startup, and each segment's context, category, type and modifier
    are in it."""
    import slicer
    import vtk

    parent = type("Parent", (), {"path": module.__file__})()
    slicer.app._connections.clear()
    module.EoFormerSegmentation(parent)
    startup = [slot for signal, slot in slicer.app._connections if signal == "startupCompleted()"]
    for slot in startup:
        slot()
    loaded = vtk.vtkStringArray()
    slicer.modules.terminologies.logic().GetLoadedTerminologyNames(loaded)
    names = [loaded.GetValue(i) for i in range(loaded.GetNumberOfValues())]
    assert labels.TERMINOLOGY_CONTEXT in names

    content = json.loads(module.terminologyFilePath().read_text(encoding="utf-8"))
    categories = content["SegmentationCodes"]["Category"]

    def codes(entry):
        return (entry["CodingSchemeDesignator"], entry["CodeValue"], entry["CodeMeaning"])

    for spec in labels.SUBREGION_SEGMENTS + labels.SEGMENTS:
        fields = labels.segment_terminology(spec).split("~")
        assert fields[0] == content["SegmentationCategoryTypeContextName"]
        category = next(c for c in categories if "^".join(codes(c)) == fields[1])
        type_ = next(t for t in category["Type"] if "^".join(codes(t)) == fields[2])
        if fields[3] != "^^":
            assert any("^".join(codes(m)) == fields[3] for m in type_.get("Modifier", []))
        # the anatomic region is from the list that Slicer loads by default
        assert fields[4] == "Anatomic codes - DICOM master list"
    # the editable sub-regions have standard SNOMED CT codes only
    for spec in labels.SUBREGION_SEGMENTS[:2]:
        assert spec["type"][0] == "SCT" and spec["type_modifier"] == ("", "", "")
