"""Key and shape conversion from the authors' EoFormer state dict (github.com/sd0809/EoFormer).

Differences between their module tree and ours:

- point-wise layers of the attention mixers are 1x1x1 ``Conv3d`` there, ``nn.Linear`` here
  (weights reshaped from (C, C, 1, 1, 1) to (C, C));
- their edge branch ``conv1x1x1_<type>`` stores the 1x1x1 convolution as ``k0``/``b0``, the
  scale with shape (C, 1, 1, 1, 1) and the fixed filter as a ``mask`` parameter; ours is
  ``branches.<name>.pointwise`` with a (C,) scale and the filter as a constant buffer (their
  masks are checked against it, then dropped);
- their ``sobelx`` / ``sobelz`` differentiate along the last / first spatial axis: they are our
  ``sobel_z`` / ``sobel_x`` (``sobely`` is ``sobel_y``);
- the last decoder up-sampling layer and the output block are our ``head``.
"""

from __future__ import annotations

import re
from typing import Callable, Dict, Mapping, Tuple

import torch

from .edge_mixers import laplacian_kernel, sobel_kernel

__all__ = ["convert_official_state_dict"]

_BRANCH_NAMES = {"sbx": "sobel_z", "sby": "sobel_y", "sbz": "sobel_x", "lpl": "laplacian"}
_BRANCH_KERNELS: Dict[str, Callable[[], torch.Tensor]] = {
    "sobel_x": lambda: sobel_kernel(0),
    "sobel_y": lambda: sobel_kernel(1),
    "sobel_z": lambda: sobel_kernel(2),
    "laplacian": laplacian_kernel,
}
_BRANCH_PARAMETERS = {
    "k0": "pointwise.weight",
    "b0": "pointwise.bias",
    "scale": "scale",
    "bias": "bias",
}

_DOWNSAMPLING = re.compile(r"encoder\.downsample_layers\.(\d+)\.(.+)")
_ATTENTION = re.compile(
    r"encoder\.stages\.(\d+)\.(\d+)\.token_mixer\.(keys|queries|values|reprojection)\.weight"
)
_UPSAMPLING = re.compile(
    r"decoder\.upsample_layers\.(\d+)\.(norm|transp_conv\.conv|conv_block\.conv)\.(.+)"
)
_EDGE_CONV = re.compile(r"decoder\.stages\.(\d+)\.(\d+)\.token_mixer\.conv3x3x3\.(.+)")
_EDGE_BRANCH = re.compile(
    r"decoder\.stages\.(\d+)\.(\d+)\.token_mixer\.conv1x1x1_(sbx|sby|sbz|lpl)\.(k0|b0|scale|bias|mask)"
)
_OUTPUT = re.compile(r"out\.conv\.conv\.(weight|bias)")


def convert_official_state_dict(
    state_dict: Mapping[str, torch.Tensor],
) -> Dict[str, torch.Tensor]:
    """Rename and reshape the original implementation's weights to :class:`EoFormer`'s.

    Keys that no rule knows are passed through unchanged (so that the caller reports them as
    unexpected).

    Args:
        state_dict: the original ``EoFormer`` state dict (optionally with a ``module.`` prefix).

    Returns:
        A state dict for :class:`~.eoformer.EoFormer`, without the fixed filters.

    Raises:
        ValueError: a stored Sobel / Laplacian mask differs from EoFormer's filter.
    """
    state_dict = {
        (key[len("module.") :] if key.startswith("module.") else key): value
        for key, value in state_dict.items()
    }
    upsampling_indices = [
        int(match.group(1)) for key in state_dict if (match := _UPSAMPLING.fullmatch(key))
    ]
    head_index = max(upsampling_indices, default=-1)
    converted: Dict[str, torch.Tensor] = {}
    for key, value in state_dict.items():
        new = _convert_entry(key, value, head_index)
        if new is not None:
            converted[new[0]] = new[1]
    return converted


def _convert_entry(
    key: str, value: torch.Tensor, head_index: int
) -> Tuple[str, torch.Tensor] | None:
    if match := _DOWNSAMPLING.fullmatch(key):
        return f"encoder.downsampling.{match.group(1)}.{match.group(2)}", value
    if match := _ATTENTION.fullmatch(key):
        return key, value.reshape(value.shape[0], value.shape[1])
    if match := _UPSAMPLING.fullmatch(key):
        index, layer, parameter = int(match.group(1)), match.group(2), match.group(3)
        renamed = {"norm": "norm", "transp_conv.conv": "transposed_conv", "conv_block.conv": "conv"}
        prefix = "head" if index == head_index else f"decoder.upsampling.{index}"
        return f"{prefix}.{renamed[layer]}.{parameter}", value
    if match := _EDGE_CONV.fullmatch(key):
        stage, block, parameter = match.groups()
        return f"decoder.stages.{stage}.{block}.token_mixer.conv.conv3x3x3.{parameter}", value
    if match := _EDGE_BRANCH.fullmatch(key):
        stage, block, branch_type, parameter = match.groups()
        branch = _BRANCH_NAMES[branch_type]
        if parameter == "mask":
            expected = _BRANCH_KERNELS[branch]().to(value.dtype).expand(value.shape[0], 1, 3, 3, 3)
            if value.shape != expected.shape or not torch.equal(value, expected):
                raise ValueError(f"{key}: the fixed filter is not EoFormer's {branch} filter")
            return None
        if parameter == "scale":
            value = value.reshape(-1)
        prefix = f"decoder.stages.{stage}.{block}.token_mixer.conv.branches.{branch}"
        return f"{prefix}.{_BRANCH_PARAMETERS[parameter]}", value
    if match := _OUTPUT.fullmatch(key):
        return f"head.classifier.{match.group(1)}", value
    return key, value
