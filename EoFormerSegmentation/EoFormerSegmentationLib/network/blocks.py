"""MetaFormer building blocks of EoFormer: norms, activations, MLP, token mixers, resampling.

Every module takes and returns (B, C, X, Y, Z) volumes, except the point-wise modules
(:class:`StarReLU`, :class:`ChannelScale`, :class:`Mlp` and the ``nn.LayerNorm`` over channels),
which act on the last dimension of (..., C) voxel tokens; see :mod:`.layout`.

One block class, :class:`MetaFormerBlock`, serves the encoder and the decoder; what differs is
the token mixer passed to it (:class:`SepConvMixer`,
:class:`~.attention.EfficientAttention`, or the edge-oriented mixers of :mod:`.edge_mixers`).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from monai.networks.layers import DropPath
from torch import nn

from .cpu_kernels import linear_rows
from .layout import inference_fast_path, map_voxel_rows, volume_from_tokens, voxel_tokens

__all__ = [
    "ChannelScale",
    "Downsampling",
    "MetaFormerBlock",
    "Mlp",
    "SepConvMixer",
    "SkipUpsampling",
    "StarReLU",
    "TokenMixer",
    "UpsamplingHead",
    "channel_layer_norm",
]

#: eps of the LayerNorms of the MetaFormer blocks and the down-sampling layers.
BLOCK_NORM_EPS = 1e-6


def channel_layer_norm(dim: int) -> nn.LayerNorm:
    """LayerNorm over the channels of (..., C) tokens, with a scale and no bias (eps 1e-6)."""
    return nn.LayerNorm(dim, eps=BLOCK_NORM_EPS, bias=False)


class StarReLU(nn.Module):
    """StarReLU activation, ``scale * relu(x) ** 2 + bias`` with a learnable scalar scale and bias.

    Args:
        scale: initial scale.
        bias: initial bias.
    """

    def __init__(self, scale: float = 1.0, bias: float = 0.0) -> None:
        super().__init__()
        self.scale = nn.Parameter(torch.full((1,), float(scale)))
        self.bias = nn.Parameter(torch.full((1,), float(bias)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.scale * F.relu(x).square() + self.bias

    def forward_in_place(self, x: torch.Tensor, relu_applied: bool = False) -> torch.Tensor:
        """The same function, overwriting ``x`` (inference only; returns ``x``).

        Args:
            x: the input, overwritten.
            relu_applied: ``x`` already holds ``relu(x)`` (fused into the layer before).
        """
        if not relu_applied:
            x = x.relu_()
        return x.square_().mul_(self.scale).add_(self.bias)


class ChannelScale(nn.Module):
    """Learnable per-channel scale of (..., C) tokens (the MetaFormer "res scale").

    Args:
        dim: channels.
        init_value: initial scale of every channel.
    """

    def __init__(self, dim: int, init_value: float = 1.0) -> None:
        super().__init__()
        self.scale = nn.Parameter(torch.full((dim,), float(init_value)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.scale


class Mlp(nn.Module):
    """Channel MLP of (..., C) tokens: Linear (C -> ratio*C), StarReLU, Linear (ratio*C -> C).

    Args:
        dim: channels.
        mlp_ratio: expansion of the hidden layer.
    """

    def __init__(self, dim: int, mlp_ratio: float = 4.0) -> None:
        super().__init__()
        self.hidden_features = int(mlp_ratio * dim)
        self.fc1 = nn.Linear(dim, self.hidden_features, bias=False)
        self.act = StarReLU()
        self.fc2 = nn.Linear(self.hidden_features, dim, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.act(self.fc1(x)))

    def add_to_rows(self, residual: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """``residual + mlp(x)`` for (n, C) rows, in place where possible (inference only)."""
        hidden = linear_rows(x, self.fc1.weight, relu=True)
        hidden = self.act.forward_in_place(hidden, relu_applied=True)
        return linear_rows(hidden, self.fc2.weight).add_(residual)


class TokenMixer(nn.Module):
    """Base class of the token mixers: a voxel-wise prologue, a spatial mixing step, a voxel-wise
    epilogue.

    ``forward(x) = epilogue(mix(prologue(x)))``. Splitting off the voxel-wise parts lets
    :class:`MetaFormerBlock` run them, during inference, inside its cache-blocked voxel loops
    together with the norms, residual sums and MLP. Subclasses implement :meth:`mix` and
    optionally :meth:`prologue` / :meth:`epilogue` (identity by default).

    Args:
        dim: channels of the input and output.
        hidden_channels: channels between prologue and epilogue.
    """

    def __init__(self, dim: int, hidden_channels: int) -> None:
        super().__init__()
        self.dim = dim
        self.hidden_channels = hidden_channels

    def prologue(self, tokens: torch.Tensor, inference: bool = False) -> torch.Tensor:
        """Voxel-wise step on (..., dim) tokens -> (..., hidden_channels).

        With ``inference`` (autograd off, (n, C) rows) it may work in place on its own
        intermediates and use inference-only kernels.
        """
        return tokens

    def mix(self, x: torch.Tensor) -> torch.Tensor:
        """Spatial mixing of a (B, hidden_channels, X, Y, Z) volume."""
        raise NotImplementedError

    def epilogue(self, tokens: torch.Tensor, inference: bool = False) -> torch.Tensor:
        """Voxel-wise step on (..., hidden_channels) tokens -> (..., dim); ``inference`` as in
        :meth:`prologue`."""
        return tokens

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        hidden = volume_from_tokens(self.prologue(voxel_tokens(x)))
        return volume_from_tokens(self.epilogue(voxel_tokens(self.mix(hidden))))


class SepConvMixer(TokenMixer):
    """Separable-convolution token mixer of the ConvFormer blocks (encoder stages 0 and 1).

    Point-wise expansion (C -> expansion*C), StarReLU, depth-wise 3x3x3 convolution (zero
    padding), point-wise projection back to C; no biases.

    Args:
        dim: channels.
        expansion_ratio: expansion of the depth-wise layer.
    """

    def __init__(self, dim: int, expansion_ratio: float = 2.0) -> None:
        hidden = int(expansion_ratio * dim)
        super().__init__(dim, hidden)
        self.pwconv1 = nn.Linear(dim, hidden, bias=False)
        self.act1 = StarReLU()
        self.dwconv = nn.Conv3d(hidden, hidden, 3, padding=1, groups=hidden, bias=False)
        self.pwconv2 = nn.Linear(hidden, dim, bias=False)

    def prologue(self, tokens: torch.Tensor, inference: bool = False) -> torch.Tensor:
        if inference:
            hidden = linear_rows(tokens, self.pwconv1.weight, relu=True)
            return self.act1.forward_in_place(hidden, relu_applied=True)
        return self.act1(self.pwconv1(tokens))

    def mix(self, x: torch.Tensor) -> torch.Tensor:
        return self.dwconv(x)

    def epilogue(self, tokens: torch.Tensor, inference: bool = False) -> torch.Tensor:
        return linear_rows(tokens, self.pwconv2.weight) if inference else self.pwconv2(tokens)


class MetaFormerBlock(nn.Module):
    """``x = x + TokenMixer(Norm(x)); x = x + Mlp(Norm(x))`` on (B, C, X, Y, Z) volumes.

    The norms are LayerNorms over channels with a scale and no bias. With ``res_scale`` the
    shortcut (identity) paths are scaled per channel by learnable factors (initialised to 1):
    ``x = s1 * x + TokenMixer(Norm(x))``, likewise for the MLP.

    During inference (eval mode, autograd off) the voxel-wise work runs in two cache-blocked
    loops over voxels, norm1 + mixer prologue, then mixer epilogue + residual + norm2 + MLP +
    residual, so that only the mixer's spatial step reads and writes whole volumes.

    Args:
        dim: channels.
        token_mixer: a :class:`TokenMixer` of ``dim`` channels.
        mlp_ratio: expansion of the MLP.
        drop_path: stochastic-depth probability of both residual branches (training only).
        res_scale: learnable per-channel scales of the shortcut paths.
    """

    def __init__(
        self,
        dim: int,
        token_mixer: TokenMixer,
        mlp_ratio: float = 4.0,
        drop_path: float = 0.0,
        res_scale: bool = False,
    ) -> None:
        super().__init__()
        self.dim = dim
        self.norm1 = channel_layer_norm(dim)
        self.token_mixer = token_mixer
        self.drop_path1 = DropPath(drop_path) if drop_path > 0 else nn.Identity()
        self.res_scale1 = ChannelScale(dim) if res_scale else nn.Identity()
        self.norm2 = channel_layer_norm(dim)
        self.mlp = Mlp(dim, mlp_ratio)
        self.drop_path2 = DropPath(drop_path) if drop_path > 0 else nn.Identity()
        self.res_scale2 = ChannelScale(dim) if res_scale else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if inference_fast_path(self):
            return self._forward_in_voxel_blocks(x)
        mixed = self.token_mixer(volume_from_tokens(self.norm1(voxel_tokens(x))))
        tokens = self.res_scale1(voxel_tokens(x)) + self.drop_path1(voxel_tokens(mixed))
        tokens = self.res_scale2(tokens) + self.drop_path2(self.mlp(self.norm2(tokens)))
        return volume_from_tokens(tokens)

    def _forward_in_voxel_blocks(self, x: torch.Tensor) -> torch.Tensor:
        mixer = self.token_mixer
        hidden = map_voxel_rows(
            lambda rows: mixer.prologue(self.norm1(rows), inference=True),
            [x],
            mixer.hidden_channels,
            mixer.hidden_channels,
        )
        mixed = mixer.mix(hidden)
        return map_voxel_rows(
            self._residuals_and_mlp_rows,
            [x, mixed],
            self.dim,
            max(self.mlp.hidden_features, mixer.hidden_channels),
        )

    def _residuals_and_mlp_rows(self, x: torch.Tensor, mixed: torch.Tensor) -> torch.Tensor:
        x = self.res_scale1(x) + self.token_mixer.epilogue(mixed, inference=True)
        return self.mlp.add_to_rows(self.res_scale2(x), self.norm2(x))


class Downsampling(nn.Module):
    """Strided 3x3x3 convolution (halves each spatial size) with optional channel LayerNorms.

    Args:
        in_channels: input channels.
        out_channels: output channels.
        pre_norm: LayerNorm over the input channels before the convolution.
        post_norm: LayerNorm over the output channels after it.
    """

    def __init__(
        self, in_channels: int, out_channels: int, pre_norm: bool = False, post_norm: bool = False
    ) -> None:
        super().__init__()
        self.pre_norm = channel_layer_norm(in_channels) if pre_norm else nn.Identity()
        self.conv = nn.Conv3d(in_channels, out_channels, 3, stride=2, padding=1)
        self.post_norm = channel_layer_norm(out_channels) if post_norm else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = volume_from_tokens(self.pre_norm(voxel_tokens(x)))
        x = self.conv(x)
        return volume_from_tokens(self.post_norm(voxel_tokens(x)))


class SkipUpsampling(nn.Module):
    """Decoder up-sampling: GroupNorm, 2x transposed convolution, concatenation with the
    encoder skip, 3x3x3 convolution (no biases).

    Args:
        in_channels: channels of the coarse input.
        out_channels: channels after the transposed convolution and of the output.
        skip_channels: channels of the encoder skip.
    """

    def __init__(self, in_channels: int, out_channels: int, skip_channels: int) -> None:
        super().__init__()
        self.norm = nn.GroupNorm(1, in_channels)
        self.transposed_conv = nn.ConvTranspose3d(
            in_channels, out_channels, 2, stride=2, bias=False
        )
        self.conv = nn.Conv3d(out_channels + skip_channels, out_channels, 3, padding=1, bias=False)

    def forward(self, x: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        upsampled = self.transposed_conv(self.norm(x))
        return self.conv(torch.cat((upsampled, skip), dim=1))


class UpsamplingHead(nn.Module):
    """Last up-sampling to the input resolution and the 1x1x1 output convolution.

    GroupNorm, 2x transposed convolution (no bias), then a 1x1x1 convolution with bias giving
    the logits. Both convolutions are linear, so during inference they run as one per-voxel
    matrix product (each input voxel gives the logits of its 2x2x2 output block) and the wide
    full-resolution features are never formed; the logits come out (B, C, X, Y, Z)-contiguous.

    Args:
        in_channels: input channels.
        hidden_channels: channels after the transposed convolution.
        out_channels: output channels (logits).
    """

    def __init__(self, in_channels: int, hidden_channels: int, out_channels: int) -> None:
        super().__init__()
        self.norm = nn.GroupNorm(1, in_channels)
        self.transposed_conv = nn.ConvTranspose3d(
            in_channels, hidden_channels, 2, stride=2, bias=False
        )
        self.classifier = nn.Conv3d(hidden_channels, out_channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.norm(x)
        if inference_fast_path(self):
            return self._upsample_logits_per_voxel(x)
        return self.classifier(self.transposed_conv(x))

    def _upsample_logits_per_voxel(self, x: torch.Tensor) -> torch.Tensor:
        batch, channels, size_x, size_y, size_z = x.shape
        classifier = self.classifier.weight.flatten(1)  # (out, hidden)
        out_channels = classifier.shape[0]
        # (in, 2, 2, 2, out): input channel -> logits at each position of the 2x2x2 block
        weight = torch.einsum("ihabc,oh->iabco", self.transposed_conv.weight, classifier)
        bias = self.classifier.bias.repeat(8)
        weight = weight.reshape(channels, -1).t().contiguous()  # (8 * out, in)
        blocks = linear_rows(voxel_tokens(x).reshape(-1, channels), weight, bias)
        blocks = blocks.view(batch, size_x, size_y, size_z, 2, 2, 2, out_channels)
        logits = blocks.permute(0, 7, 1, 4, 2, 5, 3, 6)  # (B, out, X, 2, Y, 2, Z, 2)
        return logits.reshape(batch, out_channels, 2 * size_x, 2 * size_y, 2 * size_z)
