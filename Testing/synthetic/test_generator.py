"""Synthetic glioma cases: reproducible, in the BraTS layout, with each sequence's tissue
ordering and a tumor that looks like one (rim-enhancing core, surrounding edema)."""

from __future__ import annotations

import json

import nibabel as nib
import numpy as np
import pytest
from EoFormerSegmentationLib.cli import main
from EoFormerSegmentationLib.synthetic import GENERATOR_VERSION, generate_case
from EoFormerSegmentationLib.synthetic.contrast import SEQUENCES, draw_contrasts, render_sequence
from EoFormerSegmentationLib.synthetic.tumor import draw_tumor_plan
from scipy import ndimage

T1, T1CE, T2, FLAIR = range(4)


@pytest.fixture(scope="module")
def cases():
    """Two full-size cases (BraTS grid, 240 x 240 x 155 voxels of 1 mm)."""
    return {seed: generate_case(seed) for seed in (0, 1)}


def test_the_same_seed_gives_the_same_case_and_another_seed_another(cases):
    again = generate_case(0)
    np.testing.assert_array_equal(again.label, cases[0].label)
    np.testing.assert_array_equal(again.images, cases[0].images)
    assert again.params == cases[0].params
    assert not np.array_equal(cases[0].label, cases[1].label)


def test_cases_are_brats_sized_skull_stripped_brains(cases):
    for case in cases.values():
        assert case.images.shape == (4, 240, 240, 155)
        brain = case.images[T1] > 0
        assert 1.0e6 < brain.sum() < 2.0e6  # adult brains: 1.0-2.0 L of 1 mm voxels
        for channel in range(4):  # zero outside the brain in every sequence
            assert not case.images[channel][~brain].any()
        assert not case.label[~brain].any()
        # nothing touches the border of the field of view
        assert not brain[[0, -1]].any() and not brain[:, [0, -1]].any()


def test_tumors_have_plausible_sizes_and_nesting(cases):
    for case in cases.values():
        label = case.label
        assert set(np.unique(label)) <= {0, 1, 2, 4}
        whole_ml = (label > 0).sum() / 1000
        core_ml = np.isin(label, (1, 4)).sum() / 1000
        assert 5 < whole_ml < 250
        assert 0 < core_ml < whole_ml
        assert case.params["volumes_ml"]["WT"] == pytest.approx(whole_ml, abs=0.01)


def test_enhancing_rim_surrounds_the_necrotic_core(cases):
    for case in cases.values():
        necrosis, enhancing = case.label == 1, case.label == 4
        if not necrosis.any() or not enhancing.any():
            continue
        shell = ndimage.binary_dilation(necrosis, iterations=2) & ~necrosis
        # just outside the necrosis lies tumor (mostly the enhancing rim), not normal brain
        assert np.isin(case.label[shell], (1, 4)).mean() > 0.6


def test_edema_surrounds_the_core(cases):
    for case in cases.values():
        core = np.isin(case.label, (1, 4))
        shell = ndimage.binary_dilation(core, iterations=2) & ~core & (case.images[T1] > 0)
        assert (case.label[shell] == 2).mean() > 0.5


def relative_intensity(case, channel: int, mask: np.ndarray) -> float:
    """Median intensity in ``mask`` over that of the tumor-free brain, in one sequence."""
    normal = (case.images[T1] > 0) & (case.label == 0)
    return float(np.median(case.images[channel][mask]) / np.median(case.images[channel][normal]))


def test_lesions_look_as_they_do_on_each_sequence(cases):
    for case in cases.values():

        def relative(channel, mask, case=case):
            return relative_intensity(case, channel, mask)

        edema, enhancing = case.label == 2, case.label == 4
        assert relative(FLAIR, edema) > 1.2  # edema is bright on FLAIR
        assert relative(T2, edema) > 1.2  # and on T2
        if enhancing.sum() > 500:
            # enhancement: the rim is much brighter on T1ce than on T1
            assert relative(T1CE, enhancing) > 1.3 * relative(T1, enhancing)


def test_contrasts_keep_each_sequences_tissue_ordering():
    for seed in range(300):
        levels = draw_contrasts(np.random.default_rng(seed))
        t1, t1ce, t2, flair = (levels[s] for s in SEQUENCES)
        assert t1["wm"] > t1["gm"] > t1["csf"]
        assert t2["csf"] > t2["gm"] > t2["wm"]
        assert flair["edema"] > flair["wm"] and flair["gm"] > flair["wm"] > flair["csf"]
        assert t1ce["enhancing"] > max(t1ce["wm"], t1ce["gm"], t1ce["edema"])
        assert t1ce["wm"] > t1ce["gm"] > t1ce["csf"]


def test_rendered_tissues_keep_their_ordering_through_bias_blur_and_noise():
    """A phantom of interleaved CSF, GM and WM stripes (8 mm each, so that the smooth bias
    field affects the three alike), rendered as each sequence."""
    shape = (120, 40, 40)
    stripe = np.arange(shape[0]) // 8 % 3
    slabs = {name: np.zeros(shape, np.float32) for name in ("csf", "gm", "wm")}
    centre = np.zeros(shape[0], bool)
    centre[(np.arange(shape[0]) % 8 >= 2) & (np.arange(shape[0]) % 8 < 6)] = True
    for index, name in enumerate(slabs):
        slabs[name][stripe == index] = 1.0
    brain = np.ones(shape, np.float32)
    for seed in range(5):
        rng = np.random.default_rng(seed)
        contrasts = draw_contrasts(rng)
        levels = {}
        for sequence in SEQUENCES:
            image = render_sequence(rng, contrasts[sequence], slabs, brain)
            levels[sequence] = {
                name: float(np.median(image[(stripe == index) & centre]))
                for index, name in enumerate(slabs)
            }
        assert levels["t1"]["wm"] > levels["t1"]["gm"] > levels["t1"]["csf"]
        assert levels["t2"]["csf"] > levels["t2"]["gm"] > levels["t2"]["wm"]
        assert levels["flair"]["gm"] > levels["flair"]["wm"] > levels["flair"]["csf"]


def test_tumor_plans_cover_high_grade_no_et_low_grade_and_multifocal():
    candidates = np.argwhere(np.ones((10, 10, 10))) * 8.0  # a 72 mm cube of white matter
    plans = [draw_tumor_plan(np.random.default_rng(seed), candidates) for seed in range(300)]
    kinds = [plan.kind for plan in plans]
    assert 0.65 < kinds.count("high-grade") / len(plans) < 0.9
    assert kinds.count("no-et") > 5 and kinds.count("low-grade") > 5
    assert sum(len(plan.lesions) > 1 for plan in plans) > 10
    assert any(plan.mass_effect_mm > 2 for plan in plans)


def test_synth_command_writes_the_brats_layout(tmp_path, capsys):
    out = tmp_path / "synthetic"
    assert main(["synth", "--out", str(out), "--cases", "2", "--seed", "7"]) == 0
    description = json.loads((out / "dataset.json").read_text())
    assert description["generator_version"] == GENERATOR_VERSION
    assert description["seeds"] == [7, 8]
    for seed in (7, 8):
        name = f"synthetic-{seed}"
        files = {s: out / name / f"{name}_{s}.nii.gz" for s in (*SEQUENCES, "seg")}
        assert sorted(p.name for p in (out / name).iterdir()) == sorted(
            p.name for p in files.values()
        )
        images = {s: nib.load(str(path)) for s, path in files.items()}
        for image in images.values():
            assert image.shape == (240, 240, 155)
            np.testing.assert_allclose(image.header.get_zooms(), (1.0, 1.0, 1.0))
            np.testing.assert_allclose(image.affine, images["seg"].affine)
        label = np.asarray(images["seg"].dataobj)
        assert set(np.unique(label)) <= {0, 1, 2, 4}
        assert label.max() > 0

    # existing cases are never overwritten; bad arguments are refused
    before = (out / "synthetic-7" / "synthetic-7_t1.nii.gz").read_bytes()
    capsys.readouterr()
    assert main(["synth", "--out", str(out), "--cases", "1", "--seed", "7"]) == 2
    assert "synthetic-7" in capsys.readouterr().err
    assert (out / "synthetic-7" / "synthetic-7_t1.nii.gz").read_bytes() == before
    with pytest.raises(SystemExit) as refused:  # argparse refuses it: usage and exit 2
        main(["synth", "--out", str(tmp_path / "other"), "--cases", "0"])
    assert refused.value.code == 2
    assert "--cases" in capsys.readouterr().err
    assert not (tmp_path / "other").exists()
