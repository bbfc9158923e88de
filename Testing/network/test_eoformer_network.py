"""The EoFormer network: shapes, sizes, parameter count, fusion, the two inference code paths."""

import json

import pytest
import torch
from EoFormerSegmentationLib.network import layout
from EoFormerSegmentationLib.network.edge_mixers import EdgeBranch, EdgeMixer
from EoFormerSegmentationLib.network.eoformer import EoFormer
from torch import nn

# Reduced widths so that every test runs in well under a second on a CPU.
TINY = {
    "encoder_dims": (4, 8, 32, 64),
    "encoder_depths": (1, 1, 1, 1),
    "decoder_dims": (16, 8, 4),
    "decoder_depths": (2, 2, 2),
    "head_channels": 4,
}


def randomize(model: nn.Module, seed: int = 0) -> nn.Module:
    """Give every parameter a random non-default value.

    The published initialisation makes the edge-branch scales and biases ~1e-3, which would
    hide a wrong fusion; norms, activations and residual scales are also moved away from 1 / 0.
    """
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, parameter in model.named_parameters():
            noise = torch.randn(parameter.shape, generator=generator, dtype=torch.float64)
            if parameter.dim() == 1 and name.endswith(("norm1.weight", "norm2.weight", "scale")):
                value = 1.0 + 0.2 * noise
            elif parameter.dim() == 1:
                value = 0.5 * noise
            else:
                value = parameter.double() * (1.0 + 0.1 * noise)
            parameter.copy_(value)
    for module in model.modules():
        if isinstance(module, EdgeBranch):
            with torch.no_grad():
                module.scale.copy_(torch.randn(module.dim, generator=generator) * 0.5)
    return model


def tiny_model(dtype: torch.dtype = torch.float32, seed: int = 0) -> EoFormer:
    torch.manual_seed(seed)
    return randomize(EoFormer(**TINY), seed).to(dtype).eval()


def test_default_architecture_has_the_published_parameter_count():
    model = EoFormer()
    parameters = sum(p.numel() for p in model.parameters())
    assert abs(parameters - 6.40e6) / 6.40e6 < 0.01, parameters


def test_config_is_json_and_rebuilds_the_same_network():
    model = EoFormer(**TINY, drop_path=0.1)
    rebuilt = EoFormer(**json.loads(json.dumps(model.config)))
    assert rebuilt.config == model.config
    assert {k: v.shape for k, v in rebuilt.state_dict().items()} == {
        k: v.shape for k, v in model.state_dict().items()
    }


def test_output_has_input_size_and_out_channels():
    model = tiny_model()
    x = torch.randn(2, 4, 32, 16, 48)
    with torch.inference_mode():
        y = model(x)
    assert y.shape == (2, 3, 32, 16, 48)
    assert y.dtype == torch.float32 and torch.isfinite(y).all()


@pytest.mark.parametrize("shape", [(16, 16, 20), (24, 32, 32), (32, 8, 32)])
def test_sizes_not_multiple_of_16_are_refused(shape):
    model = EoFormer(**TINY).eval()
    with pytest.raises(ValueError, match="multiple of 16") as error:
        model(torch.zeros(1, 4, *shape))
    assert str(shape) in str(error.value)
    assert EoFormer.size_multiple == 16


def test_wrong_channel_count_is_refused():
    with pytest.raises(ValueError, match="4"):
        EoFormer(**TINY).eval()(torch.zeros(1, 3, 16, 16, 16))


def _input_with_strong_borders(shape, dtype, seed=1):
    # A large offset makes the zero padding at the volume border matter everywhere.
    generator = torch.Generator().manual_seed(seed)
    return (torch.randn(shape, generator=generator, dtype=torch.float64) * 2.0 + 3.0).to(dtype)


@pytest.mark.parametrize(("dtype", "tolerance"), [(torch.float32, 1e-4), (torch.float64, 1e-10)])
def test_fused_model_equals_unfused_model(dtype, tolerance):
    model = tiny_model(dtype)
    x = _input_with_strong_borders((1, 4, 32, 32, 16), dtype)
    with torch.inference_mode():
        unfused = model(x)
        fused = model.fuse()(x)
    output_range = (unfused.max() - unfused.min()).item()
    assert output_range > 0.1
    assert (fused - unfused).abs().max().item() <= tolerance * output_range


def test_fuse_leaves_one_convolution_per_mixer_and_is_idempotent():
    model = tiny_model()
    mixers = model.edge_mixers
    assert len(mixers) == sum(TINY["decoder_depths"])
    assert not model.is_fused
    assert model.fuse() is model
    assert model.is_fused and not model.training
    convolutions = [[m for m in mixer.modules() if isinstance(m, nn.Conv3d)] for mixer in mixers]
    assert all(len(found) == 1 for found in convolutions)
    assert all(conv[0].kernel_size == (3, 3, 3) for conv in convolutions)
    assert not any(isinstance(m, EdgeBranch) for m in model.modules())

    x = torch.randn(1, 4, 16, 16, 16)
    with torch.inference_mode():
        before = model(x)
        model.fuse()
        after = model(x)
    assert all(mixer.conv is conv[0] for mixer, conv in zip(mixers, convolutions))
    assert torch.equal(before, after)


def test_fused_model_refuses_training():
    model = tiny_model().fuse()
    with pytest.raises(RuntimeError, match="fused"):
        model.train()
    model.eval()  # still allowed


@pytest.mark.parametrize(("dtype", "tolerance"), [(torch.float32, 1e-5), (torch.float64, 1e-10)])
def test_inference_path_equals_autograd_path(monkeypatch, dtype, tolerance):
    """Inference runs voxel-wise work in cache-sized blocks, in place, with oneDNN matrix
    products on CPU (float32); it must compute what the plain (differentiable) path computes,
    block boundaries included."""
    monkeypatch.setattr(layout, "CHUNK_ELEMENTS", 1000)  # many blocks, ragged last block
    model = tiny_model(dtype)
    x = _input_with_strong_borders((2, 4, 16, 32, 16), dtype)
    with torch.inference_mode():
        blocked = model(x)
    plain = model(x)  # eval mode with autograd on: the whole-tensor path
    assert plain.requires_grad
    output_range = (plain.max() - plain.min()).item()
    assert (blocked - plain.detach()).abs().max().item() <= tolerance * output_range


def test_training_step_runs_with_drop_path():
    torch.manual_seed(0)
    model = EoFormer(**TINY, drop_path=0.2).train()
    x = torch.randn(2, 4, 16, 16, 16)
    loss = model(x).square().mean()
    loss.backward()
    edge_scales = [m.scale.grad for m in model.modules() if isinstance(m, EdgeBranch)]
    assert all(g is not None and torch.isfinite(g).all() for g in edge_scales)
    assert all(isinstance(m, EdgeMixer) and not m.is_fused for m in model.edge_mixers)
