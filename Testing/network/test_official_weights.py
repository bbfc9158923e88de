"""Weights saved by the authors' EoFormer code load and give the authors' outputs.

``fixtures/official_reduced.pt`` holds a reduced-width network in the original implementation's
state-dict format (weights stored in float16, exactly), an input, and the output that the
original implementation computes for it (float64, explicit branches).
"""

from pathlib import Path

import pytest
import torch
from EoFormerSegmentationLib.network.eoformer import EoFormer, load_official_state_dict

FIXTURE = Path(__file__).resolve().parent / "fixtures" / "official_reduced.pt"


@pytest.fixture(scope="module")
def official():
    return torch.load(FIXTURE, weights_only=True)


def official_weights(official):
    return {key: value.float() for key, value in official["state_dict"].items()}


def loaded_model(official) -> EoFormer:
    return load_official_state_dict(
        EoFormer(**official["eoformer_config"]), official_weights(official)
    )


def test_official_weights_give_official_outputs(official):
    model = loaded_model(official).eval()
    x = official["input"].float()
    expected = official["expected_output"]
    with torch.inference_mode():
        unfused = model(x)
        fused = model.fuse()(x)
    assert (unfused.double() - expected).abs().max().item() < 1e-4
    assert (fused.double() - expected).abs().max().item() < 1e-4


def test_official_weights_are_exact_in_float64(official):
    model = loaded_model(official).double().eval()
    with torch.inference_mode():
        output = model(official["input"].double())
    assert (output - official["expected_output"]).abs().max().item() < 1e-10


def test_dataparallel_prefix_is_accepted(official):
    weights = {f"module.{key}": value for key, value in official_weights(official).items()}
    load_official_state_dict(EoFormer(**official["eoformer_config"]), weights)


def test_missing_and_unexpected_keys_are_named(official):
    weights = official_weights(official)
    del weights["decoder.stages.0.0.token_mixer.conv1x1x1_sbx.k0"]
    weights["decoder.extra.weight"] = torch.zeros(1)
    with pytest.raises(ValueError) as error:
        load_official_state_dict(EoFormer(**official["eoformer_config"]), weights)
    message = str(error.value)
    assert "missing" in message and "sobel_z.pointwise.weight" in message
    assert "unexpected" in message and "decoder.extra.weight" in message


def test_weights_of_other_widths_are_refused(official):
    config = official["eoformer_config"]
    full_width = EoFormer(
        encoder_depths=config["encoder_depths"], decoder_depths=config["decoder_depths"]
    )
    with pytest.raises(ValueError, match="shapes do not match"):
        load_official_state_dict(full_width, official_weights(official))


def test_foreign_edge_filter_is_refused(official):
    weights = official_weights(official)
    weights["decoder.stages.2.1.token_mixer.conv1x1x1_lpl.mask"] = torch.ones_like(
        weights["decoder.stages.2.1.token_mixer.conv1x1x1_lpl.mask"]
    )
    with pytest.raises(ValueError, match="laplacian"):
        load_official_state_dict(EoFormer(**official["eoformer_config"]), weights)


def test_fused_model_refuses_weights(official):
    model = EoFormer(**official["eoformer_config"]).fuse()
    with pytest.raises(ValueError, match="fuse"):
        load_official_state_dict(model, official_weights(official))
