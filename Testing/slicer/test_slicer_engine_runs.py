"""The Logic runs the real engine in a background process, through the stand-in scene.

The engine is ``PythonSlicer -m EoFormerSegmentationLib segment`` with a tiny random-weight
model (the segments are not meant to be right, only well-formed); the ``PythonSlicer`` of the
tests starts Python as a child process, as Slicer's launcher does.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import pytest
from EoFormerSegmentationLib import labels
from EoFormerSegmentationLib.models import file_sha256
from slicer_module_helpers import (
    finetune_arguments,
    living_processes_in_group,
    load_case_volumes,
    pump_until,
    scene_nodes,
)

CASE = "TCGA-FG-6692"


@pytest.fixture
def real_case(module, scene, eoformer_home, real_data_dir, python_slicer):
    """The real case's four volumes in the scene, named as a user would have them."""
    return load_case_volumes(
        real_data_dir / CASE, {role: f"{CASE} {role.upper()}" for role in module.SEQUENCE_ROLES}
    )


def snapshot(volumes):
    """What must not change in an input volume: voxels, geometry, name, storage."""
    import slicer
    from slicer import _mrml

    return {
        role: (
            slicer.util.arrayFromVolume(node).copy(),
            _mrml.ijkToRasArray(node),
            node.GetName(),
            node.GetStorageNode().GetID(),
        )
        for role, node in volumes.items()
    }


def assert_unchanged(volumes, before):
    import slicer
    from slicer import _mrml

    for role, node in volumes.items():
        voxels, ijk_to_ras, name, storage_id = before[role]
        np.testing.assert_array_equal(slicer.util.arrayFromVolume(node), voxels)
        np.testing.assert_array_equal(_mrml.ijkToRasArray(node), ijk_to_ras)
        assert (node.GetName(), node.GetStorageNode().GetID()) == (name, storage_id)


def subregion_masks(segmentation_node, reference_volume):
    """NCR, ED, ET masks of the segmentation on the reference grid."""
    import slicer

    return [
        slicer.util.arrayFromSegmentBinaryLabelmap(
            segmentation_node, segment["id"], reference_volume
        )
        > 0
        for segment in labels.SUBREGION_SEGMENTS
    ]


def temporary_work_folders():
    import slicer

    return sorted(Path(slicer.app.temporaryPath).glob("EoFormer-*"))


def test_segmentation_runs_in_the_background_and_writes_three_subregion_segments(
    module, real_case, tiny_model
):
    import slicer

    logic = module.EoFormerSegmentationLogic()
    before = snapshot(real_case)
    nodes_before = scene_nodes()
    progress, log, outcomes = [], [], []
    process = logic.startSegmentation(
        real_case,
        modelPath=str(tiny_model),
        device="cpu",
        onProgress=lambda fraction, message: progress.append((fraction, message)),
        onLog=log.append,
        onFinished=outcomes.append,
    )
    assert process.isRunning() and not outcomes  # returned at once; the GUI is free
    pump_until(lambda: outcomes)
    outcome = outcomes[0]
    assert outcome.status == "succeeded", outcome.errorMessage
    result = outcome.result
    node = result.segmentationNode
    # the segmentation and its display node are all that was added: no temporary label
    # volume, no orphan display or storage node
    added = [n for n in scene_nodes() if n not in nodes_before]

    # three non-overlapping sub-region segments, named, colored and coded
    segmentation = node.GetSegmentation()
    assert list(segmentation.GetSegmentIDs()) == ["NCR", "ED", "ET"]
    for segment_id, spec in zip(segmentation.GetSegmentIDs(), labels.SUBREGION_SEGMENTS):
        segment = segmentation.GetSegment(segment_id)
        assert segment.GetName() == spec["name"]
        assert segment.GetColor() == pytest.approx(spec["color"])
        assert segment.GetTerminology() == labels.segment_terminology(spec)
    assert node.GetNodeReference("referenceImageGeometryRef") is real_case["t1ce"]
    assert node.GetName() == f"{CASE} T1CE tumor"
    assert node.GetDisplayNode() is not None

    # on the T1ce grid, disjoint; the BraTS regions' volumes reported (1000 voxels per mL)
    necrotic, edema, enhancing = subregion_masks(node, real_case["t1ce"])
    assert not (necrotic & edema).any() and not ((necrotic | edema) & enhancing).any()
    whole, core = necrotic | edema | enhancing, necrotic | enhancing
    report = result.report
    for spec, mask in zip(labels.SEGMENTS, (whole, core, enhancing)):
        assert result.volumesMl[spec["name"]] == pytest.approx(mask.sum() / 1000.0, abs=1e-3)
    reported = report["volumes_ml"]
    assert [result.volumesMl[s["name"]] for s in labels.SEGMENTS] == pytest.approx(
        [reported.get(s["id"], reported.get(s["name"])) for s in labels.SEGMENTS], abs=1e-3
    )

    # the output names the model, the device and the time
    assert result.modelName == "tiny_random" and result.modelSha256 == file_sha256(tiny_model)
    assert node.GetAttribute("EoFormer.ModelName") == "tiny_random"
    assert (
        "tiny_random" in node.GetDescription() and "not for clinical use" in node.GetDescription()
    )
    assert "cpu" in result.device.lower() and result.seconds > 0

    # progress went forward; the inputs and the rest of the scene are untouched; no files left
    fractions = [fraction for fraction, _message in progress]
    assert fractions and fractions == sorted(fractions) and 0 <= fractions[0] and fractions[-1] <= 1
    assert_unchanged(real_case, before)
    assert added == [node, node.GetDisplayNode()]
    assert all(n in scene_nodes() for n in nodes_before)
    assert temporary_work_folders() == []

    # running again into the same node replaces the three segments and keeps the user's own
    notes = segmentation.AddEmptySegment("notes", "My notes", (0.1, 0.2, 0.9))
    notes_mask = np.zeros_like(whole, dtype=np.uint8)
    notes_mask[10:20, 30:40, 50:60] = 1
    slicer.util.updateSegmentBinaryLabelmapFromArray(notes_mask, node, notes, real_case["t1ce"])
    slicer.util.updateSegmentBinaryLabelmapFromArray(
        np.ones_like(notes_mask), node, "ED", real_case["t1ce"]
    )
    segmentation.GetSegment("NCR").SetName("edited core")
    again = logic.segment(
        real_case, node, modelPath=str(tiny_model), device="cpu", timeoutSeconds=240
    )
    assert again.segmentationNode is node
    assert list(segmentation.GetSegmentIDs()) == ["NCR", "ED", "ET", "notes"]
    assert segmentation.GetSegment("NCR").GetName() == "Necrotic tumor core"
    for mask_before, mask_after in zip(
        (necrotic, edema, enhancing), subregion_masks(node, real_case["t1ce"])
    ):
        np.testing.assert_array_equal(mask_after, mask_before)
    np.testing.assert_array_equal(
        slicer.util.arrayFromSegmentBinaryLabelmap(node, "notes", real_case["t1ce"]), notes_mask
    )
    assert_unchanged(real_case, before)


def test_cancel_stops_the_engine_within_seconds_and_leaves_the_scene(module, real_case, tiny_model):
    logic = module.EoFormerSegmentationLogic()
    nodes_before = scene_nodes()
    outcomes, log = [], []
    process = logic.startSegmentation(
        real_case,
        modelPath=str(tiny_model),
        device="cpu",
        onLog=log.append,
        onFinished=outcomes.append,
    )
    pump_until(lambda: process.outputLines or outcomes, timeout_seconds=60)  # the engine is up
    assert not outcomes
    cancelled_at = time.monotonic()
    process.cancel()
    pump_until(lambda: outcomes, timeout_seconds=30)
    assert time.monotonic() - cancelled_at < process.KILL_GRACE_SECONDS + 3
    assert outcomes[0].status == "cancelled"
    assert scene_nodes() == nodes_before
    assert temporary_work_folders() == []
    assert living_processes_in_group(process._process.pid) == []  # nothing is left running


def test_engine_input_errors_come_back_as_messages(module, real_case, tmp_path):
    logic = module.EoFormerSegmentationLogic()
    nodes_before = scene_nodes()
    missing_model = tmp_path / "no_such_model.pt"
    with pytest.raises(module.EngineError) as raised:
        logic.segment(real_case, modelPath=str(missing_model), device="cpu", timeoutSeconds=120)
    assert raised.value.userError
    message = str(raised.value)
    assert str(missing_model) in message and "Traceback" not in message
    assert scene_nodes() == nodes_before


def test_finetune_on_a_saved_case_writes_a_new_model_and_cancel_writes_none(
    module, scene, eoformer_home, tiny_model, python_slicer
):
    import SampleData

    module.registerSampleData()
    nodes = SampleData.downloadSamples(module.SAMPLE_NAME)
    volumes = dict(zip(module.SEQUENCE_ROLES, nodes[:4]))
    logic = module.EoFormerSegmentationLogic()
    case = logic.addFineTuneCase(volumes, nodes[4], caseName="sample")

    outcomes, progress = [], []
    process = logic.startFineTune(
        str(tiny_model),
        [case],
        iterations=2,
        learningRate=1e-4,
        modelName="site_a",
        device="cpu",
        extraArguments=finetune_arguments(),
        onProgress=lambda fraction, message: progress.append(message),
        onFinished=outcomes.append,
    )
    pump_until(lambda: outcomes)
    outcome = outcomes[0]
    assert outcome.status == "succeeded", outcome.errorMessage
    new_model = outcome.result.modelPath
    assert new_model == logic.modelsFolder() / "site_a.pt" and new_model.is_file()
    card = json.loads(new_model.with_suffix(".json").read_text())
    assert card["fine_tuning"]["parent"]["sha256"] == file_sha256(tiny_model)
    assert any("loss" in message for message in progress)
    assert [label for label, _path in logic.availableModels()][1:] == ["Fine-tuned: site_a"]
    with pytest.raises(ValueError, match="exists already"):
        logic.startFineTune(str(tiny_model), [case], modelName="site_a")

    outcomes.clear()
    process = logic.startFineTune(
        str(tiny_model),
        [case],
        iterations=500,
        modelName="site_b",
        device="cpu",
        extraArguments=finetune_arguments(),
        onFinished=outcomes.append,
    )
    pump_until(lambda: process.outputLines or outcomes, timeout_seconds=60)
    process.cancel()
    pump_until(lambda: outcomes, timeout_seconds=30)
    assert outcomes[0].status == "cancelled"
    assert sorted(path.name for path in logic.modelsFolder().iterdir()) == [
        "site_a.json",
        "site_a.pt",
    ]
