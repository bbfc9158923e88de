"""The sample case: registered with Sample Data, small, and a faithful copy of the real case."""

from __future__ import annotations

import numpy as np
import pytest
from slicer_module_helpers import MODULE_FOLDER

SAMPLE_FOLDER = MODULE_FOLDER / "Resources" / "SampleData"


def test_sample_case_is_a_few_megabytes_with_attribution():
    sizes = {path.name: path.stat().st_size for path in SAMPLE_FOLDER.iterdir()}
    assert sum(sizes.values()) < 9e6, sizes
    readme = (SAMPLE_FOLDER / "README.md").read_text(encoding="utf-8")
    for required in (
        "CC BY",
        "The Cancer Imaging Archive",
        "BraTS Toolkit",
        "not\nfor clinical use",
    ):
        assert required in readme, required


@pytest.fixture
def loaded_sample(module, scene, eoformer_home):
    import SampleData

    module.registerSampleData()
    return SampleData.downloadSamples(module.SAMPLE_NAME)


def test_sample_data_loads_four_volumes_picked_by_name_and_a_reference(module, loaded_sample):
    names = [node.GetName() for node in loaded_sample]
    assert names == [f"TCGA-FG-6692_{role}" for role in ("t1", "t1ce", "t2", "flair")] + [
        "TCGA-FG-6692_reference"
    ]
    logic = module.EoFormerSegmentationLogic()
    matches = logic.matchInputVolumes(
        logic.candidateInputVolumes(), dict.fromkeys(module.SEQUENCE_ROLES)
    )
    assert {role: node.GetName() for role, node in matches.items()} == {
        role: f"TCGA-FG-6692_{role}" for role in module.SEQUENCE_ROLES
    }
    reference = loaded_sample[-1]
    assert reference.IsA("vtkMRMLSegmentationNode")
    segmentation = reference.GetSegmentation()
    # the sub-regions that Apply produces, so that the tutorial compares like with like
    assert [segmentation.GetSegment(i).GetName() for i in segmentation.GetSegmentIDs()] == [
        "Necrotic tumor core",
        "Edema",
        "Enhancing tumor",
    ]


def test_sample_volumes_match_the_real_case_voxel_for_voxel(loaded_sample, real_data_dir):
    """Every sample voxel has the intensity of the real case's voxel at the same RAS position,
    and the reference segments equal the consensus label's regions."""
    import SimpleITK as sitk
    import slicer
    from EoFormerSegmentationLib import labels
    from slicer import _mrml

    case = real_data_dir / "TCGA-FG-6692"
    for node, role in zip(loaded_sample[:4], ("t1", "t1ce", "t2", "flair")):
        original = sitk.ReadImage(str(case / f"{role}.nii.gz"))
        original_voxels = sitk.GetArrayFromImage(original)  # (z, y, x), LPS
        sample_voxels = slicer.util.arrayFromVolume(node)
        assert sample_voxels.dtype == np.int16
        # the sample's first voxel, in RAS, mapped back to an index of the original (LPS) file
        first_ras = _mrml.ijkToRasArray(node) @ np.array([0, 0, 0, 1.0])
        first_lps = (-first_ras[0], -first_ras[1], first_ras[2])
        start = original.TransformPhysicalPointToIndex(first_lps)
        k, j, i = sample_voxels.shape
        crop = original_voxels[
            start[2] : start[2] + k, start[1] : start[1] + j, start[0] : start[0] + i
        ]
        np.testing.assert_array_equal(sample_voxels, crop)
        # nothing of the brain was cut off
        assert np.count_nonzero(crop) == np.count_nonzero(original_voxels)

    consensus = sitk.GetArrayFromImage(sitk.ReadImage(str(case / "seg_consensus.nii.gz")))
    reference = loaded_sample[4]
    t1ce = loaded_sample[1]
    for segment in labels.SUBREGION_SEGMENTS:
        mask = slicer.util.arrayFromSegmentBinaryLabelmap(reference, segment["id"], t1ce)
        assert mask.sum() == (consensus == segment["label"]).sum() > 0
