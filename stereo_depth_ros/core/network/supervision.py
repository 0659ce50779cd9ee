"""Supervised multi-scale loss for training on synthetic ground truth."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ..checks import check_tensor
from .model import StereoOutput

__all__ = ["LEVEL_WEIGHTS", "supervised_loss"]

# Weight of each decoded level's loss (upsampled to full resolution); the final output weighs 1.
LEVEL_WEIGHTS = {6: 0.2, 5: 0.2, 4: 0.3, 3: 0.5, 2: 0.7, 1: 0.7}


def supervised_loss(
    output: StereoOutput, target: torch.Tensor, valid: torch.Tensor, max_disparity: float
) -> tuple[torch.Tensor, dict[str, float]]:
    """Smooth-L1 between every level's prediction (at full resolution, full-res pixels) and the GT.

    Args:
        output: network output for a ``(B, 3, H, W)`` batch.
        target: ``(B, 1, H, W)`` ground-truth disparity in pixels.
        valid: ``(B, 1, H, W)`` bool, pixels with usable ground truth.
        max_disparity: GT above this (pixels) is ignored.

    Returns:
        ``(loss, terms)``: the scalar loss and each level's value as floats (``"final"``, ``"level3"``...).
    """
    check_tensor(target, "target", ("B", 1, "H", "W"))
    check_tensor(valid, "valid", ("B", 1, "H", "W"), floating=False)
    height, width = target.shape[-2:]
    mask = valid & torch.isfinite(target) & (target > 0) & (target < max_disparity)
    count = mask.sum().clamp(min=1)
    gt = torch.where(mask, target, torch.zeros_like(target))

    def term(prediction: torch.Tensor) -> torch.Tensor:
        err = F.smooth_l1_loss(prediction.float(), gt.float(), reduction="none", beta=1.0)
        return (err * mask).sum() / count

    final = term(output.disparity)
    loss = final
    terms = {"final": float(final.detach())}
    for level, weight in LEVEL_WEIGHTS.items():
        if level in output.levels:
            value = term(output.level_at_full_resolution(level, height, width))
            loss = loss + weight * value
            terms[f"level{level}"] = float(value.detach())
    return loss, terms
