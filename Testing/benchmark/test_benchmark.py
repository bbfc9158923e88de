"""The benchmark: FLOP convention, the table and its JSON, and that every optimised inference
path computes what the unoptimised one computes."""

from __future__ import annotations

import copy
import json

import pytest
import torch
from EoFormerSegmentationLib.benchmark import (
    Variant,
    build_network,
    count_flops,
    cpu_has_native_bfloat16,
    format_table,
    forward_window,
    plan_variants,
    prepare_variant,
    run_benchmark,
    seeded_input,
)
from EoFormerSegmentationLib.cli import main
from torch import nn

SMALL_EOFORMER = {
    "encoder_dims": (8, 16, 32, 64),
    "decoder_dims": (32, 16, 8),
    "head_channels": 8,
    "attention_head_channels": 8,
}


def test_flop_counter_counts_two_flops_per_multiply_add():
    # Dense 3x3x3 convolution, 4 -> 8 channels, on an 8 x 6 x 4 volume (zero padding keeps it):
    # each output voxel of each output channel takes 4 * 27 multiply-adds.
    dense = nn.Conv3d(4, 8, 3, padding=1)
    dense_macs = (8 * 6 * 4) * 8 * (4 * 27)
    assert count_flops(dense, (1, 4, 8, 6, 4)) == 2 * dense_macs

    # Depth-wise: each output channel reads one input channel, 27 multiply-adds per voxel;
    # stride 2 halves the output to 4 x 3 x 2.
    depthwise = nn.Conv3d(6, 6, 3, stride=2, padding=1, groups=6)
    depthwise_macs = (4 * 3 * 2) * 6 * 27
    assert count_flops(depthwise, (2, 6, 8, 6, 4)) == 2 * 2 * depthwise_macs


def test_flop_count_leaves_the_model_untouched_and_is_layout_free():
    model = build_network("eoformer", 32, eoformer_config=SMALL_EOFORMER)
    before = {key: value.clone() for key, value in model.state_dict().items()}
    unfused = count_flops(model, (1, 4, 32, 32, 32))
    assert all(torch.equal(before[key], value) for key, value in model.state_dict().items())
    assert next(model.parameters()).device.type == "cpu"
    fused = count_flops(model.fuse(), (1, 4, 32, 32, 32))
    # fusing replaces the 1x1x1 convolutions of the edge branches by nothing
    assert 0 < fused < unfused


def test_benchmark_rows_are_measured_and_compared(tmp_path):
    result = run_benchmark(
        device="cpu",
        networks=["eoformer", "segresnet"],
        window=32,
        threads=1,
        repeats=2,
        eoformer_config=SMALL_EOFORMER,
        end_to_end=False,
    )
    labels = [(row.model, row.variant) for row in result.rows]
    expected = [
        ("EoFormer, unfused", "fp32"),
        ("EoFormer, re-fused every forward (official eval)", "fp32"),
        ("EoFormer, fused", "fp32"),
    ]
    if cpu_has_native_bfloat16():
        expected.append(("EoFormer, fused", "bf16 autocast"))
    expected.append(("SegResNet", "fp32"))
    assert labels == expected
    for row in result.rows:
        assert row.error is None, row.error
        assert row.parameters_m > 0 and row.gflop > 0
        assert row.latency_s > 0 and len(row.latency_runs_s) == 2
        assert row.peak_memory_mib is not None and row.peak_memory_mib >= 0
    eoformer_rows = [row for row in result.rows if row.model.startswith("EoFormer")]
    assert eoformer_rows[0].max_relative_difference == 0
    for row in eoformer_rows:
        tolerance = 5e-2 if row.settings["precision"] == "bfloat16" else 1e-4
        assert row.max_relative_difference < tolerance
    # the fused network has fewer parameters than the trained one (branches merged)
    assert eoformer_rows[2].parameters_m < eoformer_rows[0].parameters_m
    assert result.rows[-1].max_relative_difference is None

    text = format_table(result)
    assert "SegResNet" in text and "GFLOP / 32^3" in text and "Machine:" in text
    markdown = format_table(result, markdown=True)
    assert markdown.splitlines()[0].startswith("| Model | Variant | Params (M)")
    assert "2 FLOPs per multiply-add" in markdown

    written = json.loads(result.write_json(tmp_path / "bench.json").read_text())
    assert written["machine"]["torch"] == torch.__version__
    assert written["machine"]["torch_threads"] == 1
    assert [row["model"] for row in written["rows"]] == [label for label, _ in labels]
    assert written["rows"][-1]["latency_s"] > 0


def test_command_line_prints_the_table_and_writes_json(tmp_path, capsys):
    out = tmp_path / "benchmark.json"
    status = main(
        [
            "benchmark",
            "--device",
            "cpu",
            "--window",
            "32",
            "--threads",
            "1",
            "--repeats",
            "1",
            "--models",
            "eoformer",
            "--skip-end-to-end",
            "--in-process",
            "--markdown",
            "--quiet",
            "--json",
            str(out),
        ]
    )
    assert status == 0
    printed = capsys.readouterr().out
    assert "| EoFormer, fused | fp32 | 6.29 |" in printed  # full size, branches merged
    rows = json.loads(out.read_text())["rows"]
    assert {row["settings"]["fusion"] for row in rows} == {
        "fused",
        "unfused",
        "refused_every_forward",
    }
    assert all(row["latency_s"] > 0 and row["gflop"] > 0 for row in rows)


def test_command_line_rejects_a_window_that_is_not_a_multiple_of_32(capsys):
    assert main(["benchmark", "--window", "40", "--skip-end-to-end"]) == 2
    assert "--window 40" in capsys.readouterr().err


def test_cuda_rows_include_reduced_precision_layout_and_compile():
    labels = {(v.model_label, v.variant_label) for v in plan_variants("cuda", compile_rows=True)}
    assert ("EoFormer, fused", "bf16 autocast") in labels
    assert ("EoFormer, fused", "fp16 autocast") in labels
    assert ("EoFormer, fused", "fp32, channels-last") in labels
    assert ("EoFormer, fused", "fp32, torch.compile") in labels
    assert ("SwinUNETR", "bf16 autocast") in labels
    cpu_labels = {v.variant_label for v in plan_variants("cpu")}
    assert cpu_labels == {"fp32"}
    cpu_labels = {v.variant_label for v in plan_variants("cpu", cpu_bfloat16=True)}
    assert cpu_labels == {"fp32", "bf16 autocast"}


def _autocast_works_on_cpu(dtype: torch.dtype) -> bool:
    try:
        with torch.autocast("cpu", dtype=dtype):
            torch.ones(2, 2) @ torch.ones(2, 2)
    except RuntimeError:
        return False
    return True


OPTIMISED_PATHS = [
    (Variant("eoformer", "fused"), 1e-5),
    (Variant("eoformer", "refused_every_forward"), 1e-5),
    (Variant("eoformer", "fused", channels_last=True), 1e-5),
    (Variant("eoformer", "fused", "bfloat16"), 5e-2),
    (Variant("eoformer", "fused", "float16"), 1e-2),
]


@pytest.mark.parametrize(
    "variant, tolerance",
    OPTIMISED_PATHS,
    ids=[v.variant_label + " " + v.fusion for v, _ in OPTIMISED_PATHS],
)
def test_optimised_paths_give_the_unoptimised_output(variant, tolerance):
    if variant.precision != "float32" and not _autocast_works_on_cpu(
        getattr(torch, variant.precision)
    ):
        # This PyTorch build cannot autocast to this dtype on the CPU: compare float32 paths only.
        variant = Variant("eoformer", variant.fusion, channels_last=variant.channels_last)
        tolerance = 1e-5
    base = build_network("eoformer", 32, eoformer_config=SMALL_EOFORMER, seed=1)
    with torch.no_grad():  # make the edge branches matter as much as the plain convolution
        for name, parameter in base.named_parameters():
            if ".branches." in name:
                parameter.copy_(torch.randn_like(parameter) * 0.3)
    window_input = seeded_input(32, seed=2)
    reference_variant = Variant("eoformer", "unfused")
    reference = forward_window(
        prepare_variant(copy.deepcopy(base), reference_variant), window_input, reference_variant
    )
    output = forward_window(prepare_variant(copy.deepcopy(base), variant), window_input, variant)
    assert output.shape == reference.shape == (1, 3, 32, 32, 32)
    value_range = float(reference.max() - reference.min())
    assert value_range > 0.1
    difference = float((output.float() - reference).abs().max()) / value_range
    assert difference < tolerance


def _small_case(folder):
    """Four 48 mm, 1 mm sequences: a ball of "brain" with a bright cube in it."""
    import numpy as np
    import SimpleITK as sitk

    folder.mkdir(parents=True)
    grid = np.indices((48, 48, 48)) - 23.5
    brain = (grid**2).sum(axis=0) < 20**2
    cube = (np.abs(grid - np.array([4, 0, 0])[:, None, None, None]) < 6).all(axis=0)
    for index, sequence in enumerate(("t1", "t1ce", "t2", "flair")):
        array = (100.0 + 10 * index) * brain + 200.0 * cube
        sitk.WriteImage(
            sitk.GetImageFromArray(array.astype(np.float32)), str(folder / f"{sequence}.nii.gz")
        )
    return folder


def _small_raw_case(folder):
    """The small case with its T2 and FLAIR acquired apart: 3 mm slices, shifted by 2 mm."""
    import SimpleITK as sitk

    _small_case(folder)
    for sequence in ("t2", "flair"):
        path = folder / f"{sequence}.nii.gz"
        image = sitk.ReadImage(str(path))
        grid = sitk.Image([48, 48, 16], sitk.sitkFloat32)
        grid.SetSpacing((1.0, 1.0, 3.0))
        grid.SetOrigin((2.0, 0.0, 0.0))
        sitk.WriteImage(sitk.Resample(image, grid, sitk.Transform(), sitk.sitkLinear), str(path))
    return folder


def test_matmul_peak_busy_core_fine_grid_and_cohort_rows(tmp_path):
    result = run_benchmark(
        device="cpu",
        networks=["eoformer"],
        variants=[Variant("eoformer", "unfused"), Variant("eoformer", "fused")],
        window=32,
        threads=1,
        repeats=1,
        eoformer_config=SMALL_EOFORMER,
        case_dir=_small_case(tmp_path / "case"),
        end_to_end_runs=1,
        fine_grid_mm=0.5,
        throughput_cases=2,
        raw_case_dir=_small_raw_case(tmp_path / "raw_case"),
        isolate=False,
    )
    assert result.machine["matmul_peak_gflops"] > 0
    fused = result.rows[1]
    assert fused.error is None
    assert fused.percent_of_peak == pytest.approx(
        100 * fused.gflop / fused.latency_s / result.machine["matmul_peak_gflops"], rel=0.01
    )
    # the fused row is timed again with one core busy; the reference row is not
    assert fused.latency_busy_core_s > 0
    assert fused.busy_core_slowdown == pytest.approx(fused.latency_busy_core_s / fused.latency_s)
    assert fused.latency_busy_core_adapted_s > 0
    assert fused.busy_core_adapted_slowdown == pytest.approx(
        fused.latency_busy_core_adapted_s / fused.latency_s
    )
    assert result.rows[0].latency_busy_core_s is None
    # the whole case, then the same case on a 0.5 mm grid (twice the voxels per axis)
    assert result.end_to_end.error is None and result.end_to_end.shape == [48, 48, 48]
    # the raw case: its T2 and FLAIR on their own grid, registered within the timed run
    raw = result.whole_cases[0]
    assert raw.error is None, raw.error
    assert raw.case.endswith("raw_case") and raw.shape == [48, 48, 48] and raw.runs_s[0] > 0
    assert set(raw.report["processing"]["registration"]) == {"t2", "flair"}
    fine = result.whole_cases[1]
    assert fine.error is None, fine.error
    assert fine.shape == [96, 96, 96] and fine.peak_memory_mib > 0
    # cohorts of two copies of the case: with the asked threads, and with every core if more
    assert result.throughput and all(run.error is None for run in result.throughput)
    assert all(run.cases == 2 and run.cases_per_hour > 0 for run in result.throughput)
    assert result.throughput[0].threads == 1
    text = format_table(result, markdown=True)
    for expected in (
        "% of matmul peak",
        "1 core busy",
        "adapted",
        "resampled to 0.5 mm",
        "raw_case, raw scans, brain extraction and registration included",
        "cases per hour",
    ):
        assert expected in text
    written = json.loads(result.write_json(tmp_path / "bench.json").read_text())
    assert written["whole_cases"][1]["shape"] == [96, 96, 96]
    assert written["throughput"][0]["cases"] == 2
