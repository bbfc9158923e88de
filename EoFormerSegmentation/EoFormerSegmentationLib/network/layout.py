"""Tensor layout helpers shared by the network's modules.

Volumes travel between modules as ``(B, C, X, Y, Z)`` tensors stored *channels-last*
(``torch.channels_last_3d``): the channels of one voxel lie next to each other in memory.
With that storage

- a token view ``(B, X, Y, Z, C)`` (:func:`voxel_tokens`) is a free ``permute``, so point-wise
  layers (``nn.Linear``, ``nn.LayerNorm`` over channels) run on it without copies;
- oneDNN's 3D convolutions, depth-wise or dense, run several times faster on CPU than on the
  default ``(B, C, X, Y, Z)``-contiguous storage.

During inference, point-wise work is done on blocks of voxel rows (:func:`map_voxel_rows`) that
fit in the CPU cache, so wide intermediate tensors (the 4x-expanded MLP features) are never
written to main memory.
"""

from __future__ import annotations

from typing import Callable, Sequence

import torch
from torch import nn

__all__ = [
    "CHUNK_ELEMENTS",
    "INFERENCE_FAST_PATH",
    "inference_fast_path",
    "map_voxel_rows",
    "to_channels_last",
    "voxel_tokens",
    "volume_from_tokens",
]

#: Number of float elements of the widest intermediate tensor per block of voxel rows in
#: :func:`map_voxel_rows` (2**20 floats = 4 MiB in float32: stays in a CPU's L2/L3 cache, and
#: blocks are long enough for efficient matrix products).
CHUNK_ELEMENTS = 1 << 20


#: Set to False to run inference through the plain whole-tensor code (for comparisons).
INFERENCE_FAST_PATH = True


def to_channels_last(volume: torch.Tensor) -> torch.Tensor:
    """Return ``volume`` (B, C, X, Y, Z) stored channels-last (a no-op when it already is)."""
    return volume.contiguous(memory_format=torch.channels_last_3d)


def voxel_tokens(volume: torch.Tensor) -> torch.Tensor:
    """View a (B, C, X, Y, Z) volume as (B, X, Y, Z, C) tokens (free for channels-last storage)."""
    return volume.permute(0, 2, 3, 4, 1)


def volume_from_tokens(tokens: torch.Tensor) -> torch.Tensor:
    """View (B, X, Y, Z, C) tokens as a (B, C, X, Y, Z) volume (the inverse of voxel_tokens)."""
    return tokens.permute(0, 4, 1, 2, 3)


def inference_fast_path(module: nn.Module) -> bool:
    """True when ``module`` may use its in-place, cache-blocked inference code.

    That is in eval mode with autograd off (``torch.no_grad()`` / ``torch.inference_mode()``);
    otherwise modules run the plain whole-tensor code that autograd can differentiate. Both
    compute the same function. :data:`INFERENCE_FAST_PATH` = False turns the fast code off.
    """
    return INFERENCE_FAST_PATH and not module.training and not torch.is_grad_enabled()


def map_voxel_rows(
    function: Callable[..., torch.Tensor],
    volumes: Sequence[torch.Tensor],
    out_channels: int,
    widest_channels: int,
) -> torch.Tensor:
    """Apply a voxel-wise ``function`` to (B, C, X, Y, Z) volumes, one block of voxels at a time.

    ``function`` receives, for each block, one ``(n, C_i)`` tensor of voxel rows per input volume
    and returns ``(n, out_channels)``; it must treat every voxel independently (norms over
    channels, linear layers, activations, residual sums). On CPU the rows are processed in
    blocks small enough for the cache; on other devices in a single block.

    Args:
        function: voxel-wise function of the row blocks; it may work in place on its own
            intermediate tensors.
        volumes: inputs of identical batch and spatial shape, ideally channels-last.
        out_channels: channels of the result.
        widest_channels: channels of the widest intermediate tensor inside ``function``;
            sets the block size.

    Returns:
        A channels-last (B, out_channels, X, Y, Z) volume.
    """
    batch, _, *spatial = volumes[0].shape
    rows = [voxel_tokens(volume).reshape(-1, volume.shape[1]) for volume in volumes]
    total = rows[0].shape[0]
    if volumes[0].device.type == "cpu":
        block = max(1, CHUNK_ELEMENTS // max(widest_channels, 1))
    else:
        block = total
    output = output_rows = None
    for start in range(0, total, block):
        stop = min(start + block, total)
        result = function(*(row[start:stop] for row in rows))
        if output_rows is None:  # the first block fixes the dtype (e.g. under autocast)
            output = result.new_empty((batch, *spatial, out_channels))
            output_rows = output.view(-1, out_channels)
        output_rows[start:stop] = result
    if output is None:
        raise ValueError("map_voxel_rows needs volumes with at least one voxel")
    return volume_from_tokens(output)
