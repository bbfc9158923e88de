"""``eoformer segment --cases DIR --out OUTDIR``: a folder of cases, resumable, sharded."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
from cohort_cases import CUBE_SIDE_MM, write_dicom_study, write_small_case
from engine_cases import bright_voxels_as_tumor
from EoFormerSegmentationLib.cli import main
from EoFormerSegmentationLib.errors import InputError

BRATS2020 = {
    "t1": "Case_t1.nii.gz",
    "t1ce": "Case_t1ce.nii.gz",
    "t2": "Case_t2.nii.gz",
    "flair": "Case_flair.nii.gz",
}
BRATS2023 = {
    "t1": "Case-t1n.nii.gz",
    "t1ce": "Case-t1c.nii.gz",
    "t2": "Case-t2w.nii.gz",
    "flair": "Case-t2f.nii.gz",
}
MODULE = {"t1": "t1.nrrd", "t1ce": "t1ce.nrrd", "t2": "t2.nrrd", "flair": "flair.nrrd"}
DESCRIPTIONS = ["AX T1 SE", "AX T1 SE POST GD", "T2 TSE AX", "t2_tirm_tra_dark-fluid"]


def read_csv(path: Path):
    with open(path, newline="", encoding="utf-8") as stream:
        return list(csv.DictReader(stream))


def cohort_arguments(cases: Path, out: Path, model: Path, *extra: str) -> list:
    return [
        "segment",
        "--cases",
        str(cases),
        "--out",
        str(out),
        "--model",
        str(model),
        "--device",
        "cpu",
        "--progress",
        "none",
        "--skull-strip",
        "off",
        *extra,
    ]


@pytest.fixture
def cohort(tmp_path) -> Path:
    """Three good cases in three layouts (one nested one level deeper) and one truncated."""
    root = tmp_path / "cohort"
    write_small_case(root / "BraTS20_001", BRATS2020)
    write_small_case(root / "site2" / "BraTS-GLI-00002-000", BRATS2023)
    write_small_case(root / "plain_003")
    broken = write_small_case(root / "truncated_004")
    data = broken["t2"].read_bytes()
    broken["t2"].write_bytes(data[: len(data) // 2])
    return root


def test_every_layout_is_found_and_incomplete_cases_are_named(tmp_path):
    from EoFormerSegmentationLib.cohort import discover_cohort

    root = tmp_path / "cohort"
    write_small_case(root / "a_brats2020", BRATS2020)
    write_small_case(root / "b_brats2023", BRATS2023)
    write_small_case(root / "c_plain")
    write_small_case(root / "d_module", MODULE)
    write_dicom_study(root / "e_dicom", DESCRIPTIONS)
    write_small_case(root / "f_incomplete")
    (root / "f_incomplete" / "flair.nii.gz").unlink()
    # flat studies (every series in one folder) side by side, two levels down
    write_dicom_study(root / "g" / "study1", DESCRIPTIONS, one_folder_per_series=False, study=2)
    write_dicom_study(root / "g" / "study2", DESCRIPTIONS, one_folder_per_series=False, study=3)
    (root / "out").mkdir()

    cases = discover_cohort(root, exclude=[root / "out"])

    assert [case.case_id for case in cases] == [
        "a_brats2020",
        "b_brats2023",
        "c_plain",
        "d_module",
        "e_dicom",
        "f_incomplete",
        "g/study1",
        "g/study2",
    ]
    assert cases[3].images["t1ce"].name == "t1ce.nrrd"
    assert [case.dicom for case in cases] == [False] * 4 + [True, False, True, True]
    assert "missing the flair image" in cases[5].problem
    assert [case.case_id for case in cases if case.problem] == ["f_incomplete"]
    with pytest.raises(InputError, match="no recognisable cases"):
        discover_cohort(root / "out")


@pytest.mark.parametrize(
    "description, sequence",
    [
        ("AX T1 SE", "t1"),
        ("T1_MPRAGE_SAG_pre", "t1"),
        ("T1n", "t1"),
        ("AX T1 POST GD", "t1ce"),
        ("T1+C AX", "t1ce"),
        ("t1_mprage_tra_CE", "t1ce"),
        ("MPRAGE post contrast", "t1ce"),
        ("T2 TSE AX", "t2"),
        ("t2_tse_tra", "t2"),
        ("AX T2 FLAIR", "flair"),
        ("t2_tirm_tra_dark-fluid", "flair"),
        ("T2*-GRE", None),
        ("AX DWI b1000", None),
        ("ADC", None),
        ("3-plane localizer", None),
        ("", None),
    ],
)
def test_series_descriptions_name_the_sequences(description, sequence):
    from EoFormerSegmentationLib.dicom_study import sequence_from_description

    assert sequence_from_description(description) == sequence


@pytest.mark.parametrize("one_folder_per_series", [True, False])
def test_a_dicom_study_is_read_by_its_series_descriptions(tmp_path, one_folder_per_series):
    from EoFormerSegmentationLib.cohort import CohortCase, read_cohort_case

    study = tmp_path / "study"
    write_dicom_study(study, [*DESCRIPTIONS, "AX DWI b1000"], one_folder_per_series)

    images = read_cohort_case(CohortCase("study", study, dicom=True))

    assert images["t1ce"].GetSize() == (32, 32, 16)
    means = {key: float(sitk.GetArrayViewFromImage(image).mean()) for key, image in images.items()}
    # each sequence was written with its own contrast: 1.0, 1.1, 1.2, 1.3 times the same image
    assert means["t1"] < means["t1ce"] < means["t2"] < means["flair"]


def test_ambiguous_dicom_series_are_listed_not_guessed(tmp_path):
    from EoFormerSegmentationLib.dicom_study import match_dicom_series

    study = tmp_path / "study"
    write_dicom_study(study, [*DESCRIPTIONS, "COR T1 POST GD"])

    with pytest.raises(InputError) as raised:
        match_dicom_series(study)
    message = str(raised.value)
    assert "2 series could be T1ce" in message
    assert "'AX T1 SE POST GD' (series2/, 16 files)" in message
    assert "'COR T1 POST GD' (series5/, 16 files)" in message


def test_a_cohort_gives_one_result_per_case_and_a_complete_table(
    cohort, tiny_model, tmp_path, monkeypatch, capsys
):
    from EoFormerSegmentationLib.models import file_sha256
    from EoFormerSegmentationLib.segmentation_file import read_seg_nrrd

    bright_voxels_as_tumor(monkeypatch)
    out = tmp_path / "results"

    status = main(cohort_arguments(cohort, out, tiny_model))

    assert status == 1  # one case failed
    captured = capsys.readouterr()
    assert "truncated_004 failed" in captured.err
    rows = read_csv(out / "volumes.csv")
    assert [row["case"] for row in rows] == [
        "BraTS20_001",
        "plain_003",
        "site2/BraTS-GLI-00002-000",
        "truncated_004",
    ]
    good, failed = rows[:3], rows[3]
    assert failed["status"] == "failed" and "truncated" in failed["error"]
    assert not failed["WT_mL"]
    assert not (out / "truncated_004.seg.nrrd").exists()
    cube_ml = CUBE_SIDE_MM**3 / 1000.0
    for row in good:
        assert row["status"] == "done" and not row["error"]
        assert row["model"] == "tiny_random" and row["sha256"] == file_sha256(tiny_model)
        assert row["device"] == "cpu" and float(row["seconds"]) > 0
        # the network stand-in marks the bright cube: every region is the cube
        for region in ("WT", "TC", "ET"):
            assert float(row[f"{region}_mL"]) == pytest.approx(cube_ml, rel=0.3)
        result = out / f"{row['case']}.seg.nrrd"
        assert row["output"] == result.name
        regions = read_seg_nrrd(result)
        voxels = int(sitk.GetArrayViewFromImage(regions["WT"]).sum())
        assert float(row["WT_mL"]) == pytest.approx(voxels / 1000.0, abs=1e-3)
    record = json.loads((out / "BraTS20_001.json").read_text())
    assert record["processing"]["postprocessing"]
    assert not list(out.rglob(".*partial*"))
    summary = json.loads(captured.out.strip().splitlines()[-1])
    assert summary["segmented"] == 3 and summary["failed_total"] == 1


def test_a_second_run_resumes_and_retries_only_failures(
    cohort, tiny_model, tmp_path, monkeypatch, capsys
):
    from EoFormerSegmentationLib import cohort as cohort_module

    bright_voxels_as_tumor(monkeypatch)
    out = tmp_path / "results"
    seen = []

    def stop_after_two(done, total, record):
        seen.append(record["case"])
        if done == 2:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        cohort_module.segment_cohort(
            cohort,
            out,
            model_path=tiny_model,
            device="cpu",
            skull_strip="off",
            workers=0,
            progress=stop_after_two,
        )
    assert not (out / "volumes.csv").exists()
    written = {path: path.stat().st_mtime_ns for path in out.rglob("*.seg.nrrd")}
    assert len(written) == 2

    assert main(cohort_arguments(cohort, out, tiny_model, "--workers", "0")) == 1
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert summary["skipped"] == 2 and summary["segmented"] == 1
    assert [entry["case"] for entry in summary["failed"]] == ["truncated_004"]
    assert {path: path.stat().st_mtime_ns for path in written} == written  # kept as they were
    assert len(read_csv(out / "volumes.csv")) == 4

    # --no-skip-existing segments every case again
    assert main(cohort_arguments(cohort, out, tiny_model, "--no-skip-existing")) == 1
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert summary["skipped"] == 0 and summary["segmented"] == 3


def test_label_maps_and_the_processing_options_reach_every_case(tmp_path, tiny_model, monkeypatch):
    from EoFormerSegmentationLib import engine
    from EoFormerSegmentationLib.cohort import segment_cohort

    bright_voxels_as_tumor(monkeypatch)
    original = engine.segment_images
    calls = []

    def recording(images, loaded, **options):
        calls.append(options)
        return original(images, loaded, **options)

    monkeypatch.setattr(engine, "segment_images", recording)
    root = tmp_path / "cohort"
    write_small_case(root / "one")
    write_small_case(root / "two")

    summary = segment_cohort(
        root,
        tmp_path / "out",
        model_path=tiny_model,
        output_format="nii.gz",
        device="cpu",
        register="off",
        skull_strip="off",
        label_convention="brats2023",
        workers=1,
    )

    assert summary.segmented == 2 and not summary.any_failed
    assert [(c["register"], c["skull_strip"], c["label_convention"]) for c in calls] == [
        ("off", "off", "brats2023")
    ] * 2
    label = sitk.GetArrayFromImage(sitk.ReadImage(str(tmp_path / "out" / "one.nii.gz")))
    assert set(np.unique(label)) == {0, 3}  # ET as 3 in the BraTS 2023 convention


ENGINE_FLAGS = [
    "--inference", "window", "--overlap", "0.25", "--sw-batch-size", "2", "--tta",
    "--register", "off", "--raw-scan-model", "off", "--label-convention", "brats2023",
]  # fmt: skip
ENGINE_OPTIONS = {
    "inference": "window",
    "overlap": 0.25,
    "sw_batch_size": 2,
    "tta": True,
    "register": "off",
    "skull_strip": "off",
    "raw_scan_model": "off",
    "label_convention": "brats2023",
}


def test_a_cohort_hands_every_engine_option_to_each_case_as_one_case_does(
    tmp_path, tiny_model, monkeypatch, capsys
):
    from EoFormerSegmentationLib import engine

    original = engine.segment_images
    calls = []

    def recording(images, loaded, **options):
        calls.append({name: options.get(name) for name in ENGINE_OPTIONS})
        return original(images, loaded, **options)

    monkeypatch.setattr(engine, "segment_images", recording)
    case = write_small_case(tmp_path / "cohort" / "one")
    single = ["segment", "--model", str(tiny_model), "--device", "cpu", "--progress", "none"]
    for sequence, path in case.items():
        single += [f"--{sequence}", str(path)]
    single += ["--skull-strip", "off", "--output", str(tmp_path / "one.seg.nrrd")]
    assert main(single + ENGINE_FLAGS) == 0
    out = tmp_path / "out"
    assert main(cohort_arguments(tmp_path / "cohort", out, tiny_model, *ENGINE_FLAGS)) == 0
    capsys.readouterr()

    assert calls == [ENGINE_OPTIONS, ENGINE_OPTIONS]  # the single case, then the cohort's case
    record = json.loads((out / "one.json").read_text(encoding="utf-8"))
    assert record["processing"]["inference"] == "window"


def test_a_cohort_refuses_an_unknown_inference_mode_before_reading_a_case(tmp_path, tiny_model):
    from EoFormerSegmentationLib.cohort import segment_cohort

    write_small_case(tmp_path / "cohort" / "one")
    with pytest.raises(InputError, match="--inference sliced"):
        segment_cohort(
            tmp_path / "cohort", tmp_path / "out", model_path=tiny_model, inference="sliced"
        )
    assert not (tmp_path / "out").exists()


def test_shards_share_the_cases_and_the_last_one_writes_the_table(
    tmp_path, tiny_model, monkeypatch
):
    from EoFormerSegmentationLib.cohort import segment_cohort

    bright_voxels_as_tumor(monkeypatch)
    root = tmp_path / "cohort"
    for index in range(5):
        write_small_case(root / f"case{index}")
    out = tmp_path / "out"
    options = dict(model_path=tiny_model, device="cpu", skull_strip="off", workers=0)

    second = segment_cohort(root, out, rank=1, world_size=2, **options)
    assert second.segmented == 2 and second.csv is None  # shard 0 has not run yet
    first = segment_cohort(root, out, rank=0, world_size=2, **options)

    assert first.segmented == 3 and first.csv == out / "volumes.csv"
    rows = read_csv(out / "volumes.csv")
    assert [row["case"] for row in rows] == [f"case{index}" for index in range(5)]
    assert all(row["status"] == "done" for row in rows)
    ranks = {row["case"]: json.loads((out / f"{row['case']}.json").read_text()) for row in rows}
    assert [ranks[f"case{index}"]["process"]["rank"] for index in range(5)] == [0, 1, 0, 1, 0]


def test_torchrun_with_two_processes_segments_every_case_once(tmp_path, tiny_model):
    root = tmp_path / "cohort"
    for index in range(4):
        write_small_case(root / f"case{index}")
    broken = write_small_case(root / "case4")  # in the share of process 0
    broken["flair"].write_bytes(broken["flair"].read_bytes()[:500])
    out = tmp_path / "out"
    environment = dict(os.environ, OMP_NUM_THREADS="1")
    for name in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        environment.pop(name, None)

    completed = subprocess.run(
        [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--standalone",
            "--nproc_per_node",
            "2",
            "-m",
            "EoFormerSegmentationLib",
            *cohort_arguments(root, out, tiny_model, "--workers", "0"),
        ],
        env=environment,
        capture_output=True,
        text=True,
        timeout=300,
    )

    summaries = [json.loads(line) for line in completed.stdout.splitlines() if line.startswith("{")]
    assert completed.returncode != 0  # a case failed
    # both processes finished their share and know that a case failed
    assert sorted(summary["process"]["rank"] for summary in summaries) == [0, 1]
    assert [summary["failed_total"] for summary in summaries] == [1, 1]
    assert sum(summary["segmented"] for summary in summaries) == 4
    rows = read_csv(out / "volumes.csv")
    assert [row["case"] for row in rows] == [f"case{index}" for index in range(5)]
    assert all(row["status"] == "done" and row["WT_mL"] for row in rows[:4])
    assert rows[4]["status"] == "failed" and "truncated" in rows[4]["error"]
    records = [json.loads((out / f"case{index}.json").read_text()) for index in range(5)]
    assert [record["process"]["rank"] for record in records] == [0, 1, 0, 1, 0]
    assert len(list(out.glob("*.seg.nrrd"))) == 4


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--t1", "t1.nii.gz"], "--t1 cannot be used with --cases/--out"),
        (["--overwrite"], "--no-skip-existing"),
        (["--uncertainty", "map.nii.gz"], "--uncertainty cannot be used with --cases/--out"),
    ],
)
def test_mixed_modes_are_refused(tmp_path, tiny_model, capsys, extra, message):
    (tmp_path / "cases").mkdir()
    status = main(cohort_arguments(tmp_path / "cases", tmp_path / "out", tiny_model, *extra))
    assert status == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_a_single_case_names_what_is_missing(tmp_path, capsys):
    assert main(["segment", "--t1", "t1.nii.gz", "--output", "x.seg.nrrd"]) == 2
    assert "missing --t1ce, --t2, --flair" in capsys.readouterr().err
    assert main(["segment", "--cases", str(tmp_path)]) == 2
    assert "missing --out" in capsys.readouterr().err
