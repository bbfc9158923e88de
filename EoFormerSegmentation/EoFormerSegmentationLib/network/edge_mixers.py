"""Edge-oriented token mixers of the EoFormer decoder: EoS (Sobel) and EoL (Laplacian).

Each mixer is an :class:`EdgeOrientedConv` (a linear, re-parameterisable convolution) followed
by a LayerNorm over channels (no affine parameters) and a per-channel PReLU.

An :class:`EdgeOrientedConv` trains as parallel branches whose outputs are summed:

- a 3x3x3 convolution with bias;
- one :class:`EdgeBranch` per fixed edge filter: a 1x1x1 convolution with bias, then the fixed
  3x3x3 filter applied depth-wise, scaled per channel by a learnable factor, plus a learnable
  bias. EoS has three (Sobel along x, y and z), EoL one (the 7-point Laplacian);
- the identity.

Every branch is linear, so they collapse exactly into one 3x3x3 convolution
(:meth:`EdgeOrientedConv.fused_weight_and_bias`); :meth:`EdgeMixer.fuse` does that once, in
place. Axes: x, y and z are the first, second and third spatial dimensions of a
(B, C, X, Y, Z) volume; "Sobel along x" differentiates along x and smooths along y and z.

Borders: a branch zero-pads its *input* by one voxel before the 1x1x1 convolution, so outside
the volume its intermediate feature equals the 1x1x1 bias. That is what the fused convolution
with zero padding computes, so fused and unfused outputs agree at the border too.
"""

from __future__ import annotations

import types
from typing import Dict, Optional

import torch
import torch.nn.functional as F
from torch import nn

from .blocks import TokenMixer

__all__ = [
    "EdgeBranch",
    "EdgeMixer",
    "EdgeOrientedConv",
    "EoL",
    "EoS",
    "fuse_on_every_forward",
    "laplacian_kernel",
    "sobel_kernel",
]

#: eps of the LayerNorm after the edge-oriented convolution.
MIXER_NORM_EPS = 1e-5


def sobel_kernel(axis: int) -> torch.Tensor:
    """3x3x3 Sobel filter that differentiates along spatial ``axis`` (0 = x, 1 = y, 2 = z).

    The outer product of the central difference ``[-1, 0, 1]`` along ``axis`` and the smoothing
    ``[1, 2, 1]`` along the two other axes (cross-correlation convention, as ``conv3d``): on the
    ramp ``f = axis coordinate`` it gives 32 everywhere away from the border.
    """
    if axis not in (0, 1, 2):
        raise ValueError(f"axis must be 0, 1 or 2, got {axis}")
    smoothing = torch.tensor([1.0, 2.0, 1.0])
    factors = [smoothing, smoothing, smoothing]
    factors[axis] = torch.tensor([-1.0, 0.0, 1.0])
    return torch.einsum("i,j,k->ijk", *factors)


def laplacian_kernel() -> torch.Tensor:
    """3x3x3 seven-point Laplacian: -6 at the centre, 1 at the six face neighbours."""
    kernel = torch.zeros(3, 3, 3)
    kernel[1, 1, 1] = -6.0
    for axis in range(3):
        for side in (0, 2):
            index = [1, 1, 1]
            index[axis] = side
            kernel[tuple(index)] = 1.0
    return kernel


class EdgeBranch(nn.Module):
    """1x1x1 convolution, then a fixed 3x3x3 filter applied depth-wise with a learnable
    per-channel scale and bias.

    Args:
        dim: channels (input and output).
        kernel: fixed (3, 3, 3) filter (not trained, not saved in the state dict).
        init_std: standard deviation of the random initial scale and bias.
    """

    def __init__(self, dim: int, kernel: torch.Tensor, init_std: float = 1e-3) -> None:
        super().__init__()
        self.dim = dim
        self.pointwise = nn.Conv3d(dim, dim, 1)
        self.scale = nn.Parameter(torch.randn(dim) * init_std)
        self.bias = nn.Parameter(torch.randn(dim) * init_std)
        self.register_buffer("kernel", kernel.detach().clone().float(), persistent=False)

    def depthwise_weight(self) -> torch.Tensor:
        """The scaled filter as a depth-wise ``conv3d`` weight, shape (dim, 1, 3, 3, 3)."""
        kernel = self.kernel.to(self.scale.dtype)
        return self.scale.view(-1, 1, 1, 1, 1) * kernel

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # Pad the input, not the 1x1x1 output: outside the volume the feature is then the
        # 1x1x1 bias, exactly what the fused convolution (zero padding) computes.
        features = self.pointwise(F.pad(x, (1, 1, 1, 1, 1, 1)))
        return F.conv3d(features, self.depthwise_weight(), self.bias, groups=self.dim)

    def fused_weight_and_bias(
        self, dtype: Optional[torch.dtype] = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """The single 3x3x3 convolution (zero padding 1) equal to this branch.

        Args:
            dtype: compute in this dtype; default: the parameters' dtype.

        Returns:
            ``(weight, bias)``, shapes (C, C, 3, 3, 3) and (C,).
        """
        dtype = dtype or self.scale.dtype
        pointwise = self.pointwise.weight.flatten(1).to(dtype)  # (out, in)
        scale = self.scale.to(dtype)
        kernel = self.kernel.to(dtype)
        weight = (scale[:, None] * pointwise)[:, :, None, None, None] * kernel
        bias = self.bias.to(dtype) + scale * kernel.sum() * self.pointwise.bias.to(dtype)
        return weight, bias


class EdgeOrientedConv(nn.Module):
    """Sum of a 3x3x3 convolution, edge branches and (optionally) the identity.

    Args:
        dim: channels (input and output).
        kernels: fixed filter of each :class:`EdgeBranch`, by branch name.
        identity: add the input to the output.
    """

    def __init__(self, dim: int, kernels: Dict[str, torch.Tensor], identity: bool = True) -> None:
        super().__init__()
        self.dim = dim
        self.identity = identity
        self.conv3x3x3 = nn.Conv3d(dim, dim, 3, padding=1)
        self.branches = nn.ModuleDict({name: EdgeBranch(dim, k) for name, k in kernels.items()})

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.conv3x3x3(x)
        for branch in self.branches.values():
            y = y + branch(x)
        if self.identity:
            y = y + x
        return y

    def fused_weight_and_bias(
        self, dtype: Optional[torch.dtype] = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """The single 3x3x3 convolution (zero padding 1) equal to this module.

        Args:
            dtype: compute in this dtype (e.g. ``torch.float64`` for an exact fusion);
                default: the parameters' dtype.

        Returns:
            ``(weight, bias)``, shapes (C, C, 3, 3, 3) and (C,), in ``dtype``.
        """
        dtype = dtype or self.conv3x3x3.weight.dtype
        weight = self.conv3x3x3.weight.to(dtype)
        bias = self.conv3x3x3.bias.to(dtype)
        for branch in self.branches.values():
            branch_weight, branch_bias = branch.fused_weight_and_bias(dtype)
            weight = weight + branch_weight
            bias = bias + branch_bias
        if self.identity:
            centre = torch.zeros_like(weight)
            centre[:, :, 1, 1, 1] = torch.eye(self.dim, dtype=dtype, device=weight.device)
            weight = weight + centre
        return weight, bias


class SobelEdgeConv(EdgeOrientedConv):
    """Edge-oriented convolution with Sobel branches along x, y and z (the linear part of EoS).

    Args:
        dim: channels.
        identity: add the input to the output.
    """

    def __init__(self, dim: int, identity: bool = True) -> None:
        kernels = {f"sobel_{name}": sobel_kernel(axis) for axis, name in enumerate("xyz")}
        super().__init__(dim, kernels, identity)


class LaplacianEdgeConv(EdgeOrientedConv):
    """Edge-oriented convolution with a Laplacian branch (the linear part of EoL).

    Args:
        dim: channels.
        identity: add the input to the output.
    """

    def __init__(self, dim: int, identity: bool = True) -> None:
        super().__init__(dim, {"laplacian": laplacian_kernel()}, identity)


class EdgeMixer(TokenMixer):
    """Edge-oriented token mixer: edge-oriented convolution, channel LayerNorm, PReLU.

    Args:
        conv: the edge-oriented convolution (replaced by a plain ``nn.Conv3d`` by :meth:`fuse`).
    """

    def __init__(self, conv: EdgeOrientedConv) -> None:
        super().__init__(conv.dim, conv.dim)
        self.conv: nn.Module = conv
        self.act = nn.PReLU(self.dim)

    @property
    def is_fused(self) -> bool:
        """True once :meth:`fuse` has replaced the branches by one convolution."""
        return not isinstance(self.conv, EdgeOrientedConv)

    def fuse(self) -> EdgeMixer:
        """Replace the edge-oriented convolution by one equal 3x3x3 convolution, in place.

        The fused kernel is computed in float64 and stored in the parameters' dtype. Calling it
        again does nothing. Returns the mixer.
        """
        if self.is_fused:
            return self
        edge_conv = self.conv
        reference = edge_conv.conv3x3x3.weight
        with torch.no_grad():
            weight, bias = edge_conv.fused_weight_and_bias(dtype=torch.float64)
            fused = nn.Conv3d(self.dim, self.dim, 3, padding=1)
            fused.to(device=reference.device, dtype=reference.dtype)
            fused.weight.copy_(weight)
            fused.bias.copy_(bias)
        self.conv = fused
        return self

    def fused_weight_and_bias(
        self, dtype: Optional[torch.dtype] = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """The single 3x3x3 convolution (zero padding 1) equal to :attr:`conv`.

        Args:
            dtype: compute in this dtype; default: the parameters' dtype.

        Returns:
            ``(weight, bias)``, shapes (C, C, 3, 3, 3) and (C,).
        """
        if isinstance(self.conv, EdgeOrientedConv):
            return self.conv.fused_weight_and_bias(dtype)
        dtype = dtype or self.conv.weight.dtype
        return self.conv.weight.to(dtype), self.conv.bias.to(dtype)

    def mix(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x)

    def epilogue(self, tokens: torch.Tensor, inference: bool = False) -> torch.Tensor:
        """Channel LayerNorm (no affine parameters), then PReLU, of (..., C) tokens."""
        normalized = F.layer_norm(tokens, (self.dim,), eps=MIXER_NORM_EPS)
        return F.prelu(normalized.reshape(-1, self.dim), self.act.weight).view(tokens.shape)


def fuse_on_every_forward(model: nn.Module) -> nn.Module:
    """Make every unfused :class:`EdgeMixer` in ``model`` compute its fused kernel on each
    forward pass and convolve once, which is what the original EoFormer implementation does in
    eval mode. For benchmarks that compare with that behaviour; :meth:`EdgeMixer.fuse` (once)
    is the way to run inference. Returns ``model``.
    """
    for mixer in model.modules():
        if isinstance(mixer, EdgeMixer) and not mixer.is_fused:
            mixer.mix = types.MethodType(_mix_with_fresh_fusion, mixer)
    return model


def _mix_with_fresh_fusion(mixer: EdgeMixer, x: torch.Tensor) -> torch.Tensor:
    weight, bias = mixer.fused_weight_and_bias()
    return F.conv3d(x, weight, bias, padding=1)


class EoS(EdgeMixer):
    """Edge-oriented Sobel (EoS) token mixer: 3x3x3 convolution + Sobel-x/y/z branches +
    identity, channel LayerNorm, PReLU.

    Args:
        dim: channels.
    """

    def __init__(self, dim: int) -> None:
        super().__init__(SobelEdgeConv(dim))


class EoL(EdgeMixer):
    """Edge-oriented Laplacian (EoL) token mixer: 3x3x3 convolution + Laplacian branch +
    identity, channel LayerNorm, PReLU.

    Args:
        dim: channels.
    """

    def __init__(self, dim: int) -> None:
        super().__init__(LaplacianEdgeConv(dim))
