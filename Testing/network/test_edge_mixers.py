"""EoS / EoL: the Sobel and Laplacian branches are what they claim, and fuse exactly."""

import pytest
import torch
from EoFormerSegmentationLib.network.edge_mixers import (
    EdgeBranch,
    EoL,
    EoS,
    laplacian_kernel,
    sobel_kernel,
)

SHAPE = (7, 8, 9)  # X, Y, Z: different sizes so that a mixed-up axis shows


def plain_branch(kernel: torch.Tensor, dim: int = 1) -> EdgeBranch:
    """The branch with an identity 1x1x1 convolution, unit scale and no biases."""
    branch = EdgeBranch(dim, kernel).double()
    with torch.no_grad():
        branch.pointwise.weight.copy_(torch.eye(dim).view(dim, dim, 1, 1, 1))
        branch.pointwise.bias.zero_()
        branch.scale.fill_(1.0)
        branch.bias.zero_()
    return branch


def coordinates() -> list:
    return list(
        torch.meshgrid(*(torch.arange(n, dtype=torch.float64) for n in SHAPE), indexing="ij")
    )


@pytest.mark.parametrize("ramp_axis", [0, 1, 2])
def test_only_the_matching_sobel_responds_to_a_ramp(ramp_axis):
    ramp = coordinates()[ramp_axis][None, None]  # f = x, y or z (voxels)
    interior = (slice(None), slice(None), slice(1, -1), slice(1, -1), slice(1, -1))
    for filter_axis in range(3):
        with torch.no_grad():
            response = plain_branch(sobel_kernel(filter_axis))(ramp)[interior]
        expected = 32.0 if filter_axis == ramp_axis else 0.0  # 2 (difference) * 4 * 4 (smoothing)
        assert torch.allclose(response, torch.full_like(response, expected), atol=1e-9), (
            ramp_axis,
            filter_axis,
        )


def test_laplacian_of_a_quadratic_is_constant():
    x, y, z = coordinates()
    quadratic = (x**2 + 2 * y**2 + 3 * z**2 + x * y - 4 * z)[None, None]
    with torch.no_grad():
        response = plain_branch(laplacian_kernel())(quadratic)[:, :, 1:-1, 1:-1, 1:-1]
    assert torch.allclose(response, torch.full_like(response, 2.0 + 4.0 + 6.0), atol=1e-9)


def test_sobel_and_laplacian_kernels_sum_to_zero():
    for kernel in (sobel_kernel(0), sobel_kernel(1), sobel_kernel(2), laplacian_kernel()):
        assert kernel.sum().item() == 0.0


def randomized(mixer, seed=0):
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for parameter in mixer.parameters():
            parameter.copy_(torch.randn(parameter.shape, generator=generator) * 0.5)
    return mixer.double().eval()


@pytest.mark.parametrize("mixer_class", [EoS, EoL])
def test_fused_mixer_equals_branches_at_the_border(mixer_class):
    mixer = randomized(mixer_class(6))
    # A constant volume: edge filters give zero inside, so only border handling (how the
    # 1x1x1 bias is padded) decides the outer voxels.
    volumes = [
        torch.full((2, 6, *SHAPE), 1.5, dtype=torch.float64),
        torch.randn(2, 6, *SHAPE).double() + 2,
    ]
    with torch.no_grad():
        unfused = [mixer.mix(v) for v in volumes]
        weight, bias = mixer.fused_weight_and_bias()
        assert weight.shape == (6, 6, 3, 3, 3) and bias.shape == (6,)
        mixer.fuse()
        fused = [mixer.mix(v) for v in volumes]
    for a, b in zip(unfused, fused):
        assert (a - b).abs().max().item() < 1e-10
    border = unfused[0].clone()
    border[:, :, 1:-1, 1:-1, 1:-1] = unfused[0][:, :, 1, 1, 1][..., None, None, None]
    assert torch.allclose(border, unfused[0])  # interior constant
    assert not torch.allclose(
        unfused[0][:, :, 0, 0, 0], unfused[0][:, :, 1, 1, 1]
    )  # border differs


def test_mixer_fuse_is_idempotent():
    mixer = randomized(EoS(4))
    mixer.fuse()
    conv = mixer.conv
    mixer.fuse()
    assert mixer.conv is conv and mixer.is_fused
