"""Finding, checking and loading training cases."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from EoFormerSegmentationLib.errors import InputError
from EoFormerSegmentationLib.training.datasets import (
    SEQUENCES,
    CaseCropStream,
    discover_cases,
    load_case,
)
from EoFormerSegmentationLib.training.transforms import training_transforms
from tiny_cases import LPS_AFFINE, tiny_case_arrays, write_case


def test_brats2020_naming_is_found(tmp_path):
    for index in (2, 1):
        write_case(tmp_path / "MICCAI_BraTS2020_TrainingData", f"BraTS20_Training_00{index}")
    cases = discover_cases(tmp_path)
    assert [case.name for case in cases] == ["BraTS20_Training_001", "BraTS20_Training_002"]
    case = cases[0]
    assert case.images["t1"].name == "BraTS20_Training_001_t1.nii.gz"
    assert case.images["t1ce"].name == "BraTS20_Training_001_t1ce.nii.gz"
    assert case.images["flair"].name == "BraTS20_Training_001_flair.nii.gz"
    assert case.label.name == "BraTS20_Training_001_seg.nii.gz"


def test_brats2023_naming_is_found(tmp_path):
    write_case(tmp_path, "BraTS-GLI-00000-000", naming="brats2023")
    (case,) = discover_cases(tmp_path)
    assert case.images == {
        "t1": case.folder / "BraTS-GLI-00000-000-t1n.nii.gz",
        "t1ce": case.folder / "BraTS-GLI-00000-000-t1c.nii.gz",
        "t2": case.folder / "BraTS-GLI-00000-000-t2w.nii.gz",
        "flair": case.folder / "BraTS-GLI-00000-000-t2f.nii.gz",
    }
    assert case.label.name == "BraTS-GLI-00000-000-seg.nii.gz"
    loaded = load_case(case)
    assert set(np.unique(loaded.label)) == {0, 1, 2, 3}  # BraTS 2023 ET value kept


def test_plain_naming_of_the_real_case(real_data_dir):
    # t1/t1ce/t2/flair + seg_consensus; the algorithms/ sub-folder is not a case
    (case,) = discover_cases(real_data_dir / "TCGA-FG-6692")
    assert case.name == "TCGA-FG-6692"
    assert case.label.name == "seg_consensus.nii.gz"
    loaded = load_case(case)
    assert loaded.image.shape[0] == 4 and loaded.image.dtype == np.float32
    assert loaded.label.shape == loaded.image.shape[1:]
    assert set(np.unique(loaded.label)) <= {0, 1, 2, 4}
    assert (loaded.label > 0).sum() > 10_000  # the tumour is still there after cropping


def test_unlabelled_real_case_is_named_in_the_error(real_data_dir):
    with pytest.raises(InputError, match="BraTS-GLI-00001-000.*no label"):
        discover_cases(real_data_dir)


def test_folder_without_cases(tmp_path):
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "readme.txt").write_text("nothing here")
    with pytest.raises(InputError, match="no recognisable cases"):
        discover_cases(tmp_path)


def test_missing_folder(tmp_path):
    with pytest.raises(InputError, match="not found"):
        discover_cases(tmp_path / "absent")


def test_missing_sequence_names_case_and_sequence(tmp_path):
    write_case(tmp_path, "BraTS20_Training_001")
    write_case(tmp_path, "BraTS20_Training_002", skip=("flair",))
    with pytest.raises(InputError, match="BraTS20_Training_002.*missing the flair image"):
        discover_cases(tmp_path)


def test_missing_label_names_case(tmp_path):
    write_case(tmp_path, "BraTS-GLI-00007-000", naming="brats2023", skip=("seg",))
    with pytest.raises(InputError, match="BraTS-GLI-00007-000.*no label"):
        discover_cases(tmp_path)
    (case,) = discover_cases(tmp_path, require_label=False)
    assert case.label is None


@pytest.mark.parametrize(
    "bad_value, message", [(7, "label values 7 are not BraTS labels"), (3, "both 3 and 4")]
)
def test_labels_outside_the_convention(tmp_path, bad_value, message):
    label = tiny_case_arrays()["seg"].copy()
    label[0, 0, 0] = bad_value
    write_case(tmp_path, "BraTS20_Training_009", label=label)
    (case,) = discover_cases(tmp_path)
    with pytest.raises(InputError, match=f"BraTS20_Training_009.*{message}"):
        load_case(case)


def test_images_on_different_grids_are_refused(tmp_path):
    case_dir = write_case(tmp_path, "BraTS20_Training_001")
    path = case_dir / "BraTS20_Training_001_t2.nii.gz"
    nib.save(nib.Nifti1Image(np.ones((30, 32, 32), np.int16), LPS_AFFINE), str(path))
    (case,) = discover_cases(tmp_path)
    with pytest.raises(InputError, match="BraTS20_Training_001.*_t2.nii.gz is not on the grid"):
        load_case(case)


def test_loaded_case_is_ras_normalised_and_keeps_labels(tmp_path):
    arrays = tiny_case_arrays(shape=(32, 32, 32), seed=3)
    write_case(tmp_path, "BraTS20_Training_003", seed=3)
    (case,) = discover_cases(tmp_path)
    loaded = load_case(case, crop_to_brain=False)
    # the files are stored L->R and P->A flipped (LPS); arrays come back in RAS order
    expected_label = arrays["seg"][::-1, ::-1, :]
    np.testing.assert_array_equal(loaded.label, expected_label)
    assert np.allclose(loaded.affine[:3, :3], np.eye(3))
    for index, sequence in enumerate(SEQUENCES):
        brain = expected_label >= 0
        brain &= arrays[sequence][::-1, ::-1, :] != 0
        values = loaded.image[index][brain]
        assert abs(values.mean()) < 1e-3 and abs(values.std() - 1) < 1e-3
        assert np.all(loaded.image[index][~brain] == 0)
    # ET is the brightest T1ce region: channel order is t1, t1ce, t2, flair
    t1ce = loaded.image[1]
    assert t1ce[expected_label == 4].mean() > t1ce[expected_label == 2].mean() + 1


def test_cropping_to_the_brain_keeps_every_label_voxel(tmp_path):
    write_case(tmp_path, "BraTS20_Training_004", shape=(48, 40, 36))
    (case,) = discover_cases(tmp_path)
    full = load_case(case, crop_to_brain=False)
    cropped = load_case(case)
    assert cropped.image.shape[1:] < full.image.shape[1:]
    assert (cropped.label > 0).sum() == (full.label > 0).sum()
    # the affine moves with the crop: voxel (0,0,0) of the crop is the crop box's corner
    start = [box[0] for box in cropped.metadata["crop_box"]]
    np.testing.assert_allclose(
        cropped.affine[:3, 3], full.affine[:3, :3] @ start + full.affine[:3, 3]
    )


def test_crop_stream_gives_tumour_biased_region_crops(tiny_dataset):
    cases = discover_cases(tiny_dataset)
    stream = CaseCropStream(cases, training_transforms(crop_size=16, crops_per_case=2), seed=1)
    crops = [crop for crop, _ in zip(stream, range(12))]
    for crop in crops:
        assert crop["image"].shape == (4, 16, 16, 16)
        assert crop["label"].shape == (3, 16, 16, 16)
        regions = crop["label"].numpy().astype(bool)
        assert np.all(regions[1] <= regions[0]) and np.all(regions[2] <= regions[1])
    with_tumour = sum(bool(crop["label"][0].any()) for crop in crops)
    assert with_tumour >= 6  # two of three crops are centred on tumour
    assert {crop["name"] for crop in crops} == {case.name for case in cases}


def test_same_case_given_twice(tmp_path):
    case_dir = write_case(tmp_path, "BraTS20_Training_001")
    with pytest.raises(InputError, match="given twice"):
        discover_cases([case_dir, Path(tmp_path)])


def test_training_on_nifti_does_not_need_simpleitk(tiny_dataset):
    # GPU training machines may lack SimpleITK: it is imported only for .seg.nrrd / NRRD cases
    script = (
        "import sys\n"
        "from EoFormerSegmentationLib.cli import train\n"
        "from EoFormerSegmentationLib.training import finetune, trainer\n"
        "from EoFormerSegmentationLib.training.datasets import discover_cases, load_case\n"
        f"load_case(discover_cases({str(tiny_dataset)!r})[0])\n"
        "print('SimpleITK' in sys.modules)\n"
    )
    completed = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=120
    )
    assert completed.returncode == 0, completed.stderr
    assert completed.stdout.strip() == "False"
