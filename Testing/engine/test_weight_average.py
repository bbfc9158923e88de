"""Averaging the weights of two fine-tuned models into one (tools/average_weights.py)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import torch
from engine_cases import TINY_MODEL_CONFIG
from EoFormerSegmentationLib.models import file_sha256, load_checkpoint, save_checkpoint
from EoFormerSegmentationLib.network.eoformer import EoFormer

REPOSITORY = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPOSITORY / "tools"))
import average_weights  # noqa: E402


def _model(path: Path, seed: int, **config) -> Path:
    torch.manual_seed(seed)
    return save_checkpoint(path, EoFormer(**{**TINY_MODEL_CONFIG, **config}), {"note": seed})


def _output(path: Path) -> torch.Tensor:
    torch.manual_seed(7)
    image = torch.randn(1, 4, 32, 32, 32)
    with torch.no_grad():
        return load_checkpoint(path).model(image)


def test_the_average_is_the_weighted_mean_of_every_weight(tmp_path):
    first, second = _model(tmp_path / "a.pt", 1), _model(tmp_path / "b.pt", 2)
    out = tmp_path / "soup.pt"
    average_weights.main(
        ["--model", str(first), "--model", str(second), "--weight", "1", "--weight", "3"]
        + ["--out", str(out)]
    )
    states = [load_checkpoint(path).model.state_dict() for path in (first, second, out)]
    for key, value in states[2].items():
        torch.testing.assert_close(value, 0.25 * states[0][key] + 0.75 * states[1][key])
    card = json.loads(out.with_suffix(".json").read_text())
    assert card["name"] == "soup"
    assert [m["sha256"] for m in card["weight_average"]["members"]] == [
        file_sha256(first),
        file_sha256(second),
    ]
    assert [m["weight"] for m in card["weight_average"]["members"]] == [0.25, 0.75]
    assert card["sha256"] == file_sha256(out)


def test_a_model_averaged_with_itself_predicts_the_same(tmp_path):
    first = _model(tmp_path / "a.pt", 1)
    copy = tmp_path / "copy.pt"
    copy.write_bytes(first.read_bytes())
    out = tmp_path / "soup.pt"
    average_weights.main(["--model", str(first), "--model", str(copy), "--out", str(out)])
    torch.testing.assert_close(_output(out), _output(first))


def test_models_of_different_layouts_are_refused_and_nothing_is_written(tmp_path):
    first = _model(tmp_path / "a.pt", 1)
    other = _model(tmp_path / "b.pt", 2, head_channels=4)
    out = tmp_path / "soup.pt"
    with pytest.raises(SystemExit, match="network settings differ"):
        average_weights.main(["--model", str(first), "--model", str(other), "--out", str(out)])
    assert not out.exists()


def test_an_existing_file_is_not_overwritten(tmp_path):
    first, second = _model(tmp_path / "a.pt", 1), _model(tmp_path / "b.pt", 2)
    out = tmp_path / "soup.pt"
    out.write_bytes(b"keep")
    with pytest.raises(SystemExit, match="exists"):
        average_weights.main(["--model", str(first), "--model", str(second), "--out", str(out)])
    assert out.read_bytes() == b"keep"
