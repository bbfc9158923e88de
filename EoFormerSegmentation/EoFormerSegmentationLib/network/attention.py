"""3D efficient attention (Shen et al., "Efficient Attention", WACV 2021), the token mixer of
EoFormer's encoder stage 2 and bottleneck.

For each head, with keys ``K`` and queries ``Q`` of shape (n positions, d channels) and values
``V`` (n, d)::

    out = softmax_over_channels(Q) @ (softmax_over_positions(K)^T @ V)

The (d, d) context ``K^T V`` is formed first, so time is O(n d^2) and memory O(n d + d^2)
instead of the O(n^2) of dot-product attention.
"""

from __future__ import annotations

import torch
from torch import nn

from .blocks import TokenMixer
from .layout import volume_from_tokens, voxel_tokens

__all__ = ["EfficientAttention"]


class EfficientAttention(TokenMixer):
    """Multi-head efficient attention over all voxels of a (B, C, X, Y, Z) volume.

    Keys, queries and values are point-wise linear maps (with bias) of the input, split into
    ``num_heads`` groups of ``dim // num_heads`` channels; the attended values of all heads are
    re-projected by a point-wise linear map (with bias).

    All heads are computed together: the (C, C) product ``K^T V`` of all channels is masked to
    its block diagonal, so each head's queries only read its own (d, d) context.

    Args:
        dim: channels C.
        num_heads: heads; must divide ``dim``.
    """

    def __init__(self, dim: int, num_heads: int = 1) -> None:
        if num_heads < 1 or dim % num_heads:
            raise ValueError(f"num_heads ({num_heads}) must be >= 1 and divide dim ({dim})")
        super().__init__(dim, dim)
        self.num_heads = num_heads
        self.head_channels = dim // num_heads
        self.keys = nn.Linear(dim, dim)
        self.queries = nn.Linear(dim, dim)
        self.values = nn.Linear(dim, dim)
        self.reprojection = nn.Linear(dim, dim)
        head_of_channel = torch.arange(dim) // self.head_channels
        self.register_buffer(
            "same_head",
            (head_of_channel[:, None] == head_of_channel[None, :]).float(),
            persistent=False,
        )

    def mix(self, x: torch.Tensor) -> torch.Tensor:
        batch, channels, *spatial = x.shape
        tokens = voxel_tokens(x).reshape(batch, -1, channels)  # (B, n, C)
        keys = self.keys(tokens).softmax(dim=1)  # over positions
        queries = self.queries(tokens)
        queries = queries.view(*queries.shape[:2], self.num_heads, self.head_channels)
        queries = queries.softmax(dim=-1).flatten(2)  # over each head's channels
        values = self.values(tokens)
        context = keys.transpose(1, 2) @ values  # (B, C, C)
        context = context * self.same_head.to(context.dtype)
        attended = self.reprojection(queries @ context)
        return volume_from_tokens(attended.view(batch, *spatial, channels))
