"""A bundled model's post-processing can be chosen again without touching its weights: the card
gets the new settings and the held-out scores they give, and keeps what they replace."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
from engine_cases import TINY_MODEL_CONFIG
from EoFormerSegmentationLib.models import file_sha256, load_checkpoint, save_checkpoint
from EoFormerSegmentationLib.postprocessing import PostprocessingSettings

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "tools"))
import bundle_model  # noqa: E402

OLD = {"threshold": 0.5, "min_component_ml": 0.1}
NEW = {"threshold": 0.5, "min_component_ml": 0.1, "threshold_wt": 0.2}


def _summary(wt: float) -> dict:
    return {region: {"dice_mean": wt, "hd95_mean": 5.0} for region in ("WT", "TC", "ET")}


def _report(path: Path, sha256: str, cases: list, chosen: dict, wt: float) -> Path:
    entry = {"sha256": sha256, "chosen": {"summary": _summary(wt), "per_case": {}}}
    entry["default"] = entry["chosen"]
    report = {"cases": cases, "chosen": chosen, "sweep": [], "models": {"m": entry}}
    report["chosen_on_other_cases"] = {"mean_dice": wt - 0.01}
    path.write_text(json.dumps(report), encoding="utf-8")
    return path


@pytest.fixture
def bundled(tmp_path) -> Path:
    from EoFormerSegmentationLib.network.eoformer import EoFormer

    held_out = {"cases": [{"case": "a"}, {"case": "b"}], "summary": _summary(0.7)}
    thick = {"cases": ["a_thick"], "summary": _summary(0.6)}
    card = {"postprocessing": OLD, "evaluation": {"held_out_real": held_out, "thick": thick}}
    return save_checkpoint(tmp_path / "model.pt", EoFormer(**TINY_MODEL_CONFIG), card)


def test_new_post_processing_goes_into_the_card_and_the_weights_stay(bundled, tmp_path):
    sha256 = file_sha256(bundled)
    report = _report(tmp_path / "r.json", sha256, ["a", "b"], NEW, 0.8)
    extra = _report(tmp_path / "x.json", sha256, ["a_raw"], NEW, 0.75)
    bundle_model.update_postprocessing(bundled, report, [f"full_path_raw={extra}"])
    assert file_sha256(bundled) == sha256
    loaded = load_checkpoint(bundled)
    assert PostprocessingSettings.from_card(loaded.card).threshold_wt == 0.2
    held_out = loaded.card["evaluation"]["held_out_real"]
    assert held_out["summary"]["WT"]["dice_mean"] == 0.8
    assert held_out["earlier_postprocessing"] == [{"postprocessing": OLD, "summary": _summary(0.7)}]
    assert held_out["postprocessing_chosen_on_other_cases"]["mean_dice"] == pytest.approx(0.79)
    assert loaded.card["evaluation"]["full_path_raw"]["summary"]["WT"]["dice_mean"] == 0.75
    assert "scored_with_postprocessing" not in loaded.card["evaluation"]["full_path_raw"]
    assert loaded.card["evaluation"]["thick"]["scored_with_postprocessing"] == OLD  # not again
    bundle_model.update_postprocessing(bundled, report, [])  # the same settings, again
    again = load_checkpoint(bundled).card["evaluation"]["held_out_real"]
    assert len(again["earlier_postprocessing"]) == 1


def test_a_report_on_other_cases_or_other_settings_is_refused(bundled, tmp_path):
    sha256 = file_sha256(bundled)
    before = (tmp_path / "model.json").read_text(encoding="utf-8")
    with pytest.raises(SystemExit, match="other cases"):
        bundle_model.update_postprocessing(
            bundled, _report(tmp_path / "r.json", sha256, ["a", "c"], NEW, 0.8), []
        )
    report = _report(tmp_path / "r.json", sha256, ["a", "b"], NEW, 0.8)
    extra = _report(tmp_path / "x.json", sha256, ["a_raw"], OLD, 0.75)
    with pytest.raises(SystemExit, match="other post-processing"):
        bundle_model.update_postprocessing(bundled, report, [f"raw={extra}"])
    assert (tmp_path / "model.json").read_text(encoding="utf-8") == before
    with pytest.raises(SystemExit, match="does not score this checkpoint"):
        bundle_model.update_postprocessing(
            bundled, _report(tmp_path / "r.json", "0" * 64, ["a", "b"], NEW, 0.8), []
        )
