"""Loss on the three overlapping region channels (WT, TC, ET)."""

from __future__ import annotations

import torch
from monai.losses import DiceLoss
from torch import nn

__all__ = ["RegionLoss"]


class RegionLoss(nn.Module):
    """Soft Dice + binary cross-entropy on sigmoid region channels.

    The regions overlap (ET within TC within WT), so each output channel is an independent
    sigmoid, not a softmax over classes. Dice is computed over the whole batch
    (``batch=True``), so that crops without tumour do not dominate it; the cross-entropy is
    :class:`torch.nn.BCEWithLogitsLoss`. Both are computed in float32, also under autocast.

    Args:
        dice_weight: weight of the Dice term.
        bce_weight: weight of the cross-entropy term.
    """

    def __init__(self, dice_weight: float = 1.0, bce_weight: float = 1.0) -> None:
        super().__init__()
        self.dice_weight = dice_weight
        self.bce_weight = bce_weight
        self.dice = DiceLoss(sigmoid=True, batch=True, smooth_nr=1e-5, smooth_dr=1e-5)
        self.bce = nn.BCEWithLogitsLoss()

    def forward(self, logits: torch.Tensor, regions: torch.Tensor) -> torch.Tensor:
        """Loss of ``logits`` ``(B, 3, X, Y, Z)`` against 0/1 ``regions`` of the same shape."""
        logits = logits.float()
        regions = regions.float()
        return self.dice_weight * self.dice(logits, regions) + self.bce_weight * self.bce(
            logits, regions
        )
