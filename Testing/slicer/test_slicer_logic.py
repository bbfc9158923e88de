"""The module's Logic without the engine: picking inputs by name, input problems, training
cases saved for fine-tuning (dependency installation: test_slicer_dependencies.py)."""

from __future__ import annotations

import json

import numpy as np
import pytest
from EoFormerSegmentationLib import labels


def add_volume(name, shape=(4, 5, 6), value=1, class_name="vtkMRMLScalarVolumeNode"):
    import slicer

    node = slicer.mrmlScene.AddNewNodeByClass(class_name, name)
    slicer.util.updateVolumeFromArray(node, np.full(shape, value, dtype=np.int16))
    return node


@pytest.mark.parametrize(
    "name, role",
    [
        ("t1", "t1"),
        ("BraTS20_Training_001_t1", "t1"),
        ("BraTS-GLI-00001-000-t1n", "t1"),
        ("3D T1w MPRAGE", "t1"),
        ("t1ce", "t1ce"),
        ("BraTS20_Training_001_t1ce", "t1ce"),
        ("BraTS-GLI-00001-000-t1c", "t1ce"),
        ("T1Gd", "t1ce"),
        ("T1 post", "t1ce"),
        ("T2", "t2"),
        ("AX_T2W", "t2"),
        ("BraTS-GLI-00001-000-t2w", "t2"),
        ("FLAIR", "flair"),
        ("AX T2 FLAIR", "flair"),
        ("BraTS-GLI-00001-000-t2f", "flair"),
        ("MRHead", None),
        ("t12", None),
        ("Segmentation", None),
    ],
)
def test_sequence_is_recognised_from_the_volume_name(module, name, role):
    assert module.EoFormerSegmentationLogic.sequenceForVolumeName(name) == role


def test_matching_fills_only_empty_roles_with_distinct_most_recent_volumes(
    module, scene, eoformer_home
):
    logic = module.EoFormerSegmentationLogic()
    chosen_by_user = add_volume("MRHead")
    add_volume("old t1")
    add_volume("T2")
    add_volume("FLAIR")
    newest_t1 = add_volume("new t1")
    t1ce = add_volume("t1ce")
    add_volume("t1ce label", class_name="vtkMRMLLabelMapVolumeNode")
    hidden = add_volume("t2 hidden copy")
    hidden.SetHideFromEditors(True)

    candidates = logic.candidateInputVolumes()
    assert "t1ce label" not in [node.GetName() for node in candidates]
    assert hidden not in candidates

    empty = dict.fromkeys(module.SEQUENCE_ROLES)
    matches = logic.matchInputVolumes(candidates, empty)
    assert {role: node.GetName() for role, node in matches.items()} == {
        "t1": "new t1",
        "t1ce": "t1ce",
        "t2": "T2",
        "flair": "FLAIR",
    }
    # a role the user filled is left alone, and no volume is used twice
    matches = logic.matchInputVolumes(candidates, dict(empty, t1=chosen_by_user, t2=newest_t1))
    assert set(matches) == {"t1ce", "flair"} and matches["t1ce"] is t1ce


def test_input_problems_say_what_is_missing_or_repeated(module, scene, eoformer_home):
    logic = module.EoFormerSegmentationLogic()
    assert logic.inputProblems(dict.fromkeys(module.SEQUENCE_ROLES)) == [
        "Select the T1 volume",
        "Select the T1ce volume",
        "Select the T2 volume",
        "Select the FLAIR volume",
    ]
    volumes = {role: add_volume(role) for role in module.SEQUENCE_ROLES}
    assert logic.inputProblems(volumes) == []
    problems = logic.inputProblems(dict(volumes, flair=volumes["t2"], t1=None))
    assert problems == [
        "Select the T1 volume",
        "T2 and FLAIR are the same volume (t2); pick four different volumes",
    ]


def test_starting_with_bad_inputs_raises_a_message_and_leaves_the_scene(
    module, scene, eoformer_home
):
    logic = module.EoFormerSegmentationLogic()
    volumes = {role: add_volume(role) for role in module.SEQUENCE_ROLES}
    nodes_before = scene.GetNumberOfNodes()
    with pytest.raises(ValueError, match="T1 and T2 are the same volume"):
        logic.startSegmentation(dict(volumes, t2=volumes["t1"]))
    transformed = dict(volumes)
    volumes["flair"].SetNodeReferenceID("transform", add_volume("not a transform").GetID())
    with pytest.raises(ValueError, match="FLAIR volume flair is under a transform"):
        logic.startSegmentation(transformed)
    assert scene.GetNumberOfNodes() == nodes_before + 1


@pytest.fixture
def sample_case(module, scene, eoformer_home):
    """The sample case in the scene: role -> volume, and the reference segmentation."""
    import SampleData

    module.registerSampleData()
    nodes = SampleData.downloadSamples(module.SAMPLE_NAME)
    return dict(zip(module.SEQUENCE_ROLES, nodes[:4])), nodes[4]


def test_training_case_is_saved_in_the_layout_the_engine_reads(module, sample_case, eoformer_home):
    import SimpleITK as sitk
    import slicer
    from EoFormerSegmentationLib.training.datasets import find_case_files

    volumes, reference = sample_case
    logic = module.EoFormerSegmentationLogic()
    nodes_before = [
        slicer.mrmlScene.GetNthNode(i) for i in range(slicer.mrmlScene.GetNumberOfNodes())
    ]
    folder = logic.addFineTuneCase(volumes, reference, caseName="patient 1")
    # no node is left in the scene: no copies of the volumes, no temporary label maps, no
    # orphan display or storage nodes
    assert [
        slicer.mrmlScene.GetNthNode(i) for i in range(slicer.mrmlScene.GetNumberOfNodes())
    ] == nodes_before

    assert folder == eoformer_home / "finetune-cases" / "patient_1"
    assert sorted(path.name for path in folder.iterdir()) == [
        "case.json",
        "flair.nrrd",
        "seg.nrrd",
        "t1.nrrd",
        "t1ce.nrrd",
        "t2.nrrd",
    ]
    case = find_case_files(folder)
    assert set(case.images) == {"t1", "t1ce", "t2", "flair"}
    assert case.label.name == "seg.nrrd"
    description = json.loads((folder / "case.json").read_text())
    assert description["segmentation"] == "TCGA-FG-6692_reference"

    # the labels are exactly what the segments show, voxel for voxel on the T1ce grid
    written = sitk.GetArrayFromImage(sitk.ReadImage(str(folder / "seg.nrrd")))  # (K, J, I)
    t1ce_voxels = slicer.util.arrayFromVolume(volumes["t1ce"])
    assert written.shape == t1ce_voxels.shape
    for spec in labels.SUBREGION_SEGMENTS:
        expected = slicer.util.arrayFromSegmentBinaryLabelmap(
            reference, spec["id"], volumes["t1ce"]
        )
        np.testing.assert_array_equal(written == spec["label"], expected > 0)
        assert description["voxels"][spec["name"]] == int(expected.sum())

    # the case is listed again after a restart
    assert module.EoFormerSegmentationLogic().fineTuneCases() == [folder]
    with pytest.raises(ValueError, match="exists already"):
        logic.addFineTuneCase(volumes, reference, caseName="patient 1")
    logic.removeFineTuneCase(folder)
    assert logic.fineTuneCases() == []


def test_training_case_needs_the_three_segments(module, sample_case, eoformer_home):
    volumes, reference = sample_case
    reference.GetSegmentation().RemoveSegment("ET")
    logic = module.EoFormerSegmentationLogic()
    with pytest.raises(ValueError, match="has no Enhancing tumor segment"):
        logic.addFineTuneCase(volumes, reference)
    assert logic.fineTuneCases() == []
    assert not any((logic.fineTuneCasesFolder()).glob(".*")), (
        "a partial case folder was left behind"
    )
