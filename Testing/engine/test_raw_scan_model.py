"""The companion model for raw scans: chosen when the engine had to co-register or
skull-strip the scans itself, named in every output, and never silently missing."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from cohort_cases import write_small_case
from engine_cases import TINY_MODEL_CONFIG
from EoFormerSegmentationLib.cli import main
from EoFormerSegmentationLib.engine import segment_files
from EoFormerSegmentationLib.errors import InputError
from EoFormerSegmentationLib.models import RAW_SCAN_MODEL_KEY, load_checkpoint


def _save(path: Path, seed: int, card: dict) -> Path:
    import torch
    from EoFormerSegmentationLib.models import save_checkpoint
    from EoFormerSegmentationLib.network.eoformer import EoFormer

    torch.manual_seed(seed)
    return save_checkpoint(path, EoFormer(**TINY_MODEL_CONFIG), card)


@pytest.fixture(scope="module")
def model_pair(tmp_path_factory) -> Path:
    """``main.pt`` whose card names ``raw.pt`` (beside it) as its model for raw scans."""
    folder = tmp_path_factory.mktemp("pair")
    _save(folder / "raw.pt", 1, {"name": "tiny_raw"})
    return _save(folder / "main.pt", 0, {"name": "tiny_main", RAW_SCAN_MODEL_KEY: "raw.pt"})


def test_the_card_brings_its_raw_scan_model_along(model_pair):
    loaded = load_checkpoint(model_pair)
    assert loaded.raw_scan_model is not None and loaded.raw_scan_model.name == "tiny_raw"
    assert loaded.raw_scan_model.sha256 != loaded.sha256 and not loaded.notes
    assert load_checkpoint(model_pair, with_raw_scan_model=False).raw_scan_model is None


def test_a_missing_raw_scan_model_is_said_not_hidden(tmp_path):
    path = _save(tmp_path / "main.pt", 0, {"name": "alone", RAW_SCAN_MODEL_KEY: "gone.pt"})
    loaded = load_checkpoint(path)
    assert loaded.raw_scan_model is None
    assert "gone.pt" in loaded.notes[0] and "missing" in loaded.notes[0]


def test_a_raw_scan_model_outside_the_model_folder_is_refused(tmp_path):
    path = _save(tmp_path / "main.pt", 0, {RAW_SCAN_MODEL_KEY: "../elsewhere/raw.pt"})
    with pytest.raises(InputError, match="main.pt.*file name beside it"):
        load_checkpoint(path)


def test_prepared_scans_keep_the_main_model(model_pair, tmp_path):
    case = write_small_case(tmp_path / "case")
    result = segment_files(
        **case, model_path=model_pair, device="cpu", register="off", skull_strip="off"
    )
    assert result.model_name == "tiny_main"
    assert result.processing["model"]["name"] == "tiny_main"
    assert not any("raw scans" in note for note in result.notes)


def test_scans_registered_here_go_to_the_raw_scan_model_and_say_so(model_pair, tmp_path, capsys):
    case = write_small_case(tmp_path / "case")
    output = tmp_path / "out.seg.nrrd"
    report_path = tmp_path / "report.json"
    arguments = ["segment", "--model", str(model_pair), "--device", "cpu", "--progress", "none"]
    arguments += ["--register", "on", "--skull-strip", "off", "--json", str(report_path)]
    arguments += [f"--{key}={value}" for key, value in case.items()]
    assert main([*arguments, "--output", str(output)]) == 0
    report = json.loads(report_path.read_text(encoding="utf-8"))
    raw = load_checkpoint(model_pair).raw_scan_model
    assert report["model"] == {"name": "tiny_raw", "sha256": raw.sha256}
    assert "co-registered here" in report["processing"]["model"]["why"]
    assert any("tiny_raw" in note and "raw scans" in note for note in report["notes"])
    assert "tiny_raw" in output.read_text(encoding="latin-1", errors="ignore")[:4000]

    # --raw-scan-model off: the model given segments every scan
    off = tmp_path / "off.seg.nrrd"
    assert main([*arguments, "--output", str(off), "--raw-scan-model", "off"]) == 0
    report = json.loads(report_path.read_text(encoding="utf-8"))
    assert report["model"]["name"] == "tiny_main"
    assert "--raw-scan-model off" in report["processing"]["model"]["why"]
    capsys.readouterr()


def test_a_cohort_resumes_over_results_of_the_raw_scan_model(model_pair, tmp_path, capsys):
    cases = tmp_path / "cohort"
    write_small_case(cases / "case_1")
    write_small_case(cases / "case_2")
    out = tmp_path / "results"
    arguments = ["segment", "--cases", str(cases), "--out", str(out), "--model", str(model_pair)]
    arguments += ["--device", "cpu", "--progress", "none", "--register", "on"]
    arguments += ["--skull-strip", "off", "--workers", "0"]
    assert main(arguments) == 0
    first = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert first["segmented"] == 2 and first["model"]["raw_scan_model"]["name"] == "tiny_raw"
    records = [json.loads(path.read_text()) for path in sorted(out.glob("case_*.json"))]
    assert [record["model"]["name"] for record in records] == ["tiny_raw", "tiny_raw"]
    assert main(arguments) == 0
    second = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert second["skipped"] == 2 and second["segmented"] == 0
