"""EoFormer (She et al., MICCAI 2023): the brain-tumour segmentation network.

Input: (B, in_channels, X, Y, Z) float volumes (T1, T1ce, T2, FLAIR, z-scored over the brain),
each spatial size a multiple of :attr:`EoFormer.size_multiple` (16 voxels).
Output: (B, out_channels, X, Y, Z) logits, channels WT, TC, ET (apply a sigmoid for
probabilities).

Architecture (the defaults reproduce the authors' published network: 6.38 M parameters for 4
inputs and 3 outputs, 6.40 M when their fixed Sobel / Laplacian masks are counted as they store
them):

- Efficient Hybrid Encoder: four stages, each a strided 3x3x3 convolution (downsampling by 2)
  followed by MetaFormer blocks. Stages 0-1 (32, 64 channels) mix tokens with separable
  convolutions (ConvFormer blocks), stage 2 and the bottleneck (128, 256 channels) with 3D
  efficient attention (one head per 32 channels) and learnable residual scales.
- Decoder: three up-sampling stages (GroupNorm, transposed convolution, concatenation with the
  encoder skip, 3x3x3 convolution), each followed by MetaFormer blocks whose token mixers
  alternate EoS (Sobel) and EoL (Laplacian); the last stage has residual scales.
- Head: a last up-sampling to full resolution (GroupNorm, transposed convolution, 16 channels)
  and a 1x1x1 convolution.

``model.fuse()`` collapses every EoS / EoL into one 3x3x3 convolution for inference.

Inference (eval mode under ``torch.no_grad()`` or ``torch.inference_mode()``) takes a faster
path that computes the same function: volumes are kept channels-last and the voxel-wise work
(norms, MLPs, residual sums) runs on cache-sized blocks of voxels (see :mod:`.layout`). With
autograd on, the plain, differentiable path runs.
"""

from __future__ import annotations

from typing import Any, Dict, List, Mapping, Sequence

import torch
from torch import nn

from .attention import EfficientAttention
from .blocks import Downsampling, MetaFormerBlock, SepConvMixer, SkipUpsampling, UpsamplingHead
from .edge_mixers import EdgeMixer, EoL, EoS
from .layout import to_channels_last
from .official_weights import convert_official_state_dict

__all__ = ["EoFormer", "EfficientHybridEncoder", "EdgeOrientedDecoder", "load_official_state_dict"]


def _drop_path_rates(rate: float, count: int) -> List[float]:
    return [float(value) for value in torch.linspace(0, rate, count)] if count else []


class EfficientHybridEncoder(nn.Module):
    """EoFormer's encoder: four down-sampling stages of MetaFormer blocks.

    Stages 0-1 use :class:`~.blocks.SepConvMixer`, stages 2-3
    :class:`~.attention.EfficientAttention` (``max(1, dim // attention_head_channels)`` heads)
    with learnable residual scales. Stochastic depth grows linearly from 0 to ``drop_path``
    over the blocks.

    Args:
        in_channels: input channels.
        dims: channels of the four stages.
        depths: blocks per stage.
        mlp_ratio: MLP expansion.
        sepconv_expansion: expansion of the separable-convolution mixer.
        attention_head_channels: channels per attention head (heads = dim // this, at least 1).
        drop_path: largest stochastic-depth probability.
    """

    def __init__(
        self,
        in_channels: int,
        dims: Sequence[int],
        depths: Sequence[int],
        mlp_ratio: float = 4.0,
        sepconv_expansion: float = 2.0,
        attention_head_channels: int = 32,
        drop_path: float = 0.0,
    ) -> None:
        super().__init__()
        channels = [in_channels, *dims]
        self.downsampling = nn.ModuleList(
            Downsampling(channels[i], channels[i + 1], pre_norm=i > 0, post_norm=i == 0)
            for i in range(len(dims))
        )
        rates = iter(_drop_path_rates(drop_path, sum(depths)))
        self.stages = nn.ModuleList()
        for stage, (dim, depth) in enumerate(zip(dims, depths)):
            attention = stage >= 2

            def mixer(dim: int = dim, attention: bool = attention) -> nn.Module:
                if attention:
                    return EfficientAttention(dim, max(1, dim // attention_head_channels))
                return SepConvMixer(dim, sepconv_expansion)

            self.stages.append(
                nn.Sequential(
                    *(
                        MetaFormerBlock(dim, mixer(), mlp_ratio, next(rates), res_scale=attention)
                        for _ in range(depth)
                    )
                )
            )

    def forward(self, x: torch.Tensor) -> List[torch.Tensor]:
        """Return the output of every stage, finest first."""
        features = []
        for downsampling, stage in zip(self.downsampling, self.stages):
            x = stage(downsampling(x))
            features.append(x)
        return features


class EdgeOrientedDecoder(nn.Module):
    """EoFormer's decoder: up-sampling with encoder skips, then EoS / EoL MetaFormer blocks.

    Blocks alternate EoS and EoL mixers (starting with EoS); the last stage has learnable
    residual scales. Stochastic depth falls linearly from ``drop_path`` to 0 over the blocks.

    Args:
        encoder_dims: channels of the encoder stages (the last one is the decoder's input,
            the others are the skips, used coarsest first).
        dims: channels of the decoder stages.
        depths: blocks per stage.
        mlp_ratio: MLP expansion.
        drop_path: largest stochastic-depth probability.
    """

    def __init__(
        self,
        encoder_dims: Sequence[int],
        dims: Sequence[int],
        depths: Sequence[int],
        mlp_ratio: float = 4.0,
        drop_path: float = 0.0,
    ) -> None:
        super().__init__()
        channels = [encoder_dims[-1], *dims]
        skips = list(encoder_dims[-2::-1])
        self.upsampling = nn.ModuleList(
            SkipUpsampling(channels[i], channels[i + 1], skips[i]) for i in range(len(dims))
        )
        rates = iter(_drop_path_rates(drop_path, sum(depths))[::-1])
        mixers = (EoS, EoL)
        self.stages = nn.ModuleList(
            nn.Sequential(
                *(
                    MetaFormerBlock(
                        dim,
                        mixers[block % 2](dim),
                        mlp_ratio,
                        next(rates),
                        res_scale=stage == len(dims) - 1,
                    )
                    for block in range(depth)
                )
            )
            for stage, (dim, depth) in enumerate(zip(dims, depths))
        )

    def forward(self, features: Sequence[torch.Tensor]) -> torch.Tensor:
        """Decode the encoder's stage outputs (finest first) to the finest skip's resolution."""
        x = features[-1]
        for upsampling, stage, skip in zip(self.upsampling, self.stages, features[-2::-1]):
            x = stage(upsampling(x, skip))
        return x


class EoFormer(nn.Module):
    """The EoFormer segmentation network.

    Args:
        in_channels: input channels (default 4: T1, T1ce, T2, FLAIR).
        out_channels: output channels (default 3: WT, TC, ET logits).
        encoder_dims: channels of the four encoder stages.
        encoder_depths: blocks per encoder stage.
        decoder_dims: channels of the three decoder stages.
        decoder_depths: blocks per decoder stage.
        head_channels: channels after the last up-sampling, before the 1x1x1 output convolution.
        mlp_ratio: MLP expansion of every block.
        sepconv_expansion: expansion of the separable-convolution mixers (encoder stages 0-1).
        attention_head_channels: channels per efficient-attention head.
        drop_path: largest stochastic-depth probability (training only; 0 disables it).

    Attributes:
        size_multiple: every spatial size of the input must be a multiple of it (16 voxels).
        config: the constructor arguments as a JSON-serialisable dict;
            ``EoFormer(**model.config)`` rebuilds the same network.
    """

    size_multiple = 16

    def __init__(
        self,
        in_channels: int = 4,
        out_channels: int = 3,
        encoder_dims: Sequence[int] = (32, 64, 128, 256),
        encoder_depths: Sequence[int] = (2, 2, 2, 2),
        decoder_dims: Sequence[int] = (128, 64, 32),
        decoder_depths: Sequence[int] = (2, 2, 2),
        head_channels: int = 16,
        mlp_ratio: float = 4.0,
        sepconv_expansion: float = 2.0,
        attention_head_channels: int = 32,
        drop_path: float = 0.0,
    ) -> None:
        super().__init__()
        if len(encoder_dims) != 4 or len(encoder_depths) != 4:
            raise ValueError("encoder_dims and encoder_depths need 4 entries (4 encoder stages)")
        if len(decoder_dims) != 3 or len(decoder_depths) != 3:
            raise ValueError("decoder_dims and decoder_depths need 3 entries (3 decoder stages)")
        self.config: Dict[str, Any] = {
            "in_channels": int(in_channels),
            "out_channels": int(out_channels),
            "encoder_dims": [int(d) for d in encoder_dims],
            "encoder_depths": [int(d) for d in encoder_depths],
            "decoder_dims": [int(d) for d in decoder_dims],
            "decoder_depths": [int(d) for d in decoder_depths],
            "head_channels": int(head_channels),
            "mlp_ratio": float(mlp_ratio),
            "sepconv_expansion": float(sepconv_expansion),
            "attention_head_channels": int(attention_head_channels),
            "drop_path": float(drop_path),
        }
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.encoder = EfficientHybridEncoder(
            in_channels,
            encoder_dims,
            encoder_depths,
            mlp_ratio,
            sepconv_expansion,
            attention_head_channels,
            drop_path,
        )
        self.decoder = EdgeOrientedDecoder(
            encoder_dims, decoder_dims, decoder_depths, mlp_ratio, drop_path
        )
        self.head = UpsamplingHead(decoder_dims[-1], head_channels, out_channels)

    def check_input(self, x: torch.Tensor) -> None:
        """Raise ``ValueError`` unless ``x`` is (B, in_channels, X, Y, Z) with each of X, Y, Z a
        multiple of :attr:`size_multiple`."""
        if x.dim() != 5 or x.shape[1] != self.in_channels:
            raise ValueError(
                f"EoFormer expects a (batch, {self.in_channels}, X, Y, Z) tensor, "
                f"got shape {tuple(x.shape)}"
            )
        spatial = tuple(x.shape[2:])
        if any(size % self.size_multiple for size in spatial):
            raise ValueError(
                f"EoFormer needs every spatial size to be a multiple of {self.size_multiple} "
                f"voxels; got spatial size {spatial} (pad the volume first)"
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Segment ``x`` (B, in_channels, X, Y, Z); return (B, out_channels, X, Y, Z) logits."""
        self.check_input(x)
        features = self.encoder(to_channels_last(x))
        return self.head(self.decoder(features)).contiguous()

    @property
    def edge_mixers(self) -> List[EdgeMixer]:
        """The EoS / EoL token mixers of the decoder."""
        return [module for module in self.modules() if isinstance(module, EdgeMixer)]

    @property
    def is_fused(self) -> bool:
        """True after :meth:`fuse`."""
        return any(mixer.is_fused for mixer in self.edge_mixers)

    def fuse(self) -> EoFormer:
        """Collapse every EoS / EoL into one 3x3x3 convolution, in place, for inference.

        The outputs stay equal (up to rounding). The model is put in eval mode and can no longer
        be trained (``train()`` raises); save or fine-tune weights before fusing. Calling it
        again does nothing. Returns the model.
        """
        for mixer in self.edge_mixers:
            mixer.fuse()
        return self.eval()

    def train(self, mode: bool = True) -> EoFormer:
        """Set training mode; refused after :meth:`fuse` (the edge branches are gone)."""
        if mode and self.is_fused:
            raise RuntimeError(
                "this EoFormer was fused for inference (model.fuse()): its edge branches were "
                "replaced by single convolutions, so it cannot be trained; build a new "
                "EoFormer and load the unfused weights to train"
            )
        return super().train(mode)


def load_official_state_dict(model: EoFormer, state_dict: Mapping[str, torch.Tensor]) -> EoFormer:
    """Load weights saved by the authors' EoFormer code (github.com/sd0809/EoFormer) into ``model``.

    ``state_dict`` is what ``torch.save(model.state_dict())`` wrote for their
    ``models.eoformer.EoFormer`` (a ``module.`` prefix from DataParallel is accepted). Keys are
    renamed, point-wise 1x1x1 convolution weights reshaped to linear weights, and the fixed
    Sobel / Laplacian masks checked and dropped. In eval mode the model then computes what
    the original computes.

    Args:
        model: an unfused :class:`EoFormer` whose widths match the weights.
        state_dict: the original implementation's state dict.

    Returns:
        ``model``, with the weights loaded.

    Raises:
        ValueError: ``model`` is fused, keys are missing or unexpected, shapes do not match,
            or a fixed filter differs from EoFormer's Sobel / Laplacian filters.
    """
    if model.is_fused:
        raise ValueError("load the weights before model.fuse()")
    converted = convert_official_state_dict(state_dict)
    expected = model.state_dict()
    missing = sorted(set(expected) - set(converted))
    unexpected = sorted(set(converted) - set(expected))
    if missing or unexpected:
        raise ValueError(
            "the weights do not match this EoFormer: "
            + _describe_keys("missing", missing)
            + ("; " if missing and unexpected else "")
            + _describe_keys("unexpected", unexpected)
        )
    mismatched = [
        f"{key} {tuple(value.shape)} vs {tuple(expected[key].shape)}"
        for key, value in converted.items()
        if value.shape != expected[key].shape
    ]
    if mismatched:
        raise ValueError(
            "weight shapes do not match this EoFormer's widths (weights vs model): "
            + ", ".join(mismatched[:5])
            + (f" and {len(mismatched) - 5} more" if len(mismatched) > 5 else "")
        )
    model.load_state_dict(converted)
    return model


def _describe_keys(kind: str, keys: Sequence[str]) -> str:
    if not keys:
        return ""
    shown = ", ".join(keys[:5])
    more = f" and {len(keys) - 5} more" if len(keys) > 5 else ""
    return f"{len(keys)} {kind} key(s): {shown}{more}"
