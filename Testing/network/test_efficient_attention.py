"""3D efficient attention matches a direct computation of its formula."""

import pytest
import torch
from EoFormerSegmentationLib.network.attention import EfficientAttention


def naive_efficient_attention(module: EfficientAttention, x: torch.Tensor) -> torch.Tensor:
    """One head and one batch item at a time, straight from the formula:
    out_h = softmax_channels(Q_h) (softmax_positions(K_h)^T V_h)."""
    batch, channels, *spatial = x.shape
    d = channels // module.num_heads
    outputs = []
    for b in range(batch):
        tokens = x[b].reshape(channels, -1).T  # (n, C)
        keys = tokens @ module.keys.weight.T + module.keys.bias
        queries = tokens @ module.queries.weight.T + module.queries.bias
        values = tokens @ module.values.weight.T + module.values.bias
        heads = []
        for h in range(module.num_heads):
            k = torch.softmax(keys[:, h * d : (h + 1) * d], dim=0)  # over positions
            q = torch.softmax(queries[:, h * d : (h + 1) * d], dim=1)  # over channels
            v = values[:, h * d : (h + 1) * d]
            context = torch.zeros(d, d, dtype=x.dtype)
            for i in range(tokens.shape[0]):
                context += torch.outer(k[i], v[i])
            heads.append(q @ context)
        attended = torch.cat(heads, dim=1) @ module.reprojection.weight.T + module.reprojection.bias
        outputs.append(attended.T.reshape(channels, *spatial))
    return torch.stack(outputs)


@pytest.mark.parametrize("num_heads", [1, 2, 4])
def test_efficient_attention_matches_naive_computation(num_heads):
    torch.manual_seed(num_heads)
    module = EfficientAttention(8, num_heads).double()
    x = torch.randn(2, 8, 3, 4, 5, dtype=torch.float64)
    expected = naive_efficient_attention(module, x)
    assert torch.allclose(module(x), expected, atol=1e-12)
    with torch.inference_mode():
        assert torch.allclose(module.eval()(x), expected, atol=1e-12)


def test_heads_must_divide_channels():
    with pytest.raises(ValueError, match="divide"):
        EfficientAttention(8, 3)
