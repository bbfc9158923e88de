"""Faster CPU kernels for inference, with plain PyTorch fallbacks.

The point-wise layers of EoFormer are matrix products with few input or output channels
(32 -> 128, 128 -> 32, ...) on many voxel rows. PyTorch runs ``F.linear`` on CPU through MKL's
sgemm; oneDNN's matmul (the library PyTorch already uses for its CPU convolutions) runs these
shapes about twice as fast (measured on AMD EPYC, 2 threads: ~200 vs ~400 GFLOP/s). PyTorch
exposes it as ``torch.ops.mkldnn._linear_pointwise``, the kernel behind ``torch.compile``'s CPU
linear layers. It is not a public API, so it is used only after a check at first use that it
exists and agrees with ``F.linear``; otherwise ``F.linear`` runs. It has no autograd formula, so
it serves only inference (no gradients). It is used on x86-64 only, where it was measured.
"""

from __future__ import annotations

import platform
from typing import Optional

import torch
import torch.nn.functional as F

__all__ = ["ONEDNN_LINEAR", "linear_rows", "onednn_linear_available"]

#: Set to False to run the point-wise layers through ``F.linear`` (for comparisons).
ONEDNN_LINEAR = True

_onednn_linear_checked: Optional[bool] = None


def onednn_linear_available() -> bool:
    """True when oneDNN's linear kernel is present and agrees with ``F.linear`` (checked once)."""
    global _onednn_linear_checked
    if _onednn_linear_checked is None:
        _onednn_linear_checked = _check_onednn_linear()
    return _onednn_linear_checked


def _check_onednn_linear() -> bool:
    try:
        if platform.machine().lower() not in ("x86_64", "amd64"):
            return False
        if not torch.backends.mkldnn.is_available():
            return False
        generator = torch.Generator().manual_seed(0)
        x = torch.randn(37, 24, generator=generator)
        weight = torch.randn(40, 24, generator=generator)
        bias = torch.randn(40, generator=generator)
        with torch.no_grad():
            plain = torch.ops.mkldnn._linear_pointwise(x, weight, None, "none", [], "")
            with_relu = torch.ops.mkldnn._linear_pointwise(x, weight, bias, "relu", [], "")
        expected = x @ weight.t()
        return bool(
            plain.shape == expected.shape
            and torch.allclose(plain, expected, atol=1e-4, rtol=1e-4)
            and torch.allclose(with_relu, F.relu(expected + bias), atol=1e-4, rtol=1e-4)
        )
    except (AttributeError, RuntimeError, TypeError, NotImplementedError):
        return False


def linear_rows(
    x: torch.Tensor, weight: torch.Tensor, bias: Optional[torch.Tensor] = None, relu: bool = False
) -> torch.Tensor:
    """``x @ weight.T (+ bias)``, then ReLU if asked, for (n, in) rows; inference only.

    Runs oneDNN's matmul for contiguous float32 CPU rows when :data:`ONEDNN_LINEAR` is set and
    :func:`onednn_linear_available`, else ``F.linear``.

    Args:
        x: (n, in) rows.
        weight: (out, in) weight of an ``nn.Linear``.
        bias: (out,) bias or None.
        relu: apply ``relu`` to the result.

    Returns:
        (n, out) rows.
    """
    if (
        x.device.type == "cpu"
        and x.dtype == torch.float32
        and weight.dtype == torch.float32
        and x.dim() == 2
        and x.is_contiguous()
        and ONEDNN_LINEAR
        and onednn_linear_available()
    ):
        return torch.ops.mkldnn._linear_pointwise(
            x, weight, bias, "relu" if relu else "none", [], ""
        )
    result = F.linear(x, weight, bias)
    return result.relu_() if relu else result
