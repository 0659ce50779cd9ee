"""Supervised multi-scale loss for training on synthetic ground truth."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ..checks import check_tensor
from .base import HypothesisChoice
from .model import StereoOutput

__all__ = ["HYPOTHESIS_WEIGHT", "LEVEL_WEIGHTS", "edge_weights", "hypothesis_loss", "supervised_loss"]

# Weight of each decoded level's loss (upsampled to full resolution); the final output weighs 1.
LEVEL_WEIGHTS = {6: 0.2, 5: 0.2, 4: 0.3, 3: 0.5, 2: 0.7, 1: 0.7}
# Weight of the hypothesis selector's cross-entropy (networks with one).
HYPOTHESIS_WEIGHT = 1.0


def hypothesis_loss(choice: HypothesisChoice, target: torch.Tensor, mask: torch.Tensor,
                    padded_size: tuple[int, int], margin_px: float = 1.0) -> torch.Tensor:
    """Cross-entropy of the selector's scores against the hypothesis nearest the ground truth.

    The ground truth is sampled at the centre of each pixel of the selector's level (the target
    padded to ``padded_size``) and scaled to that level's pixels; the pixels scored are those with
    ground truth where the hypotheses differ by more than ``margin_px`` (pixels of the level). Unlike
    a loss on the blended disparity, its gradient does not vanish when the selector is sure and wrong.

    Args:
        choice: the selector's :class:`~.base.HypothesisChoice` (``(B, K, h, w)`` logits and hypotheses).
        target: ``(B, 1, H, W)`` ground-truth disparity, full-resolution pixels.
        mask: ``(B, 1, H, W)`` bool, the usable ground-truth pixels.
        padded_size: ``(H_p, W_p)``, the network's padded input size (``h = H_p / 2^level``).
        margin_px: least spread of the hypotheses for a pixel to count, pixels of the level.

    Returns:
        The mean cross-entropy over the scored pixels (0 when there are none).
    """
    check_tensor(choice.logits, "logits", ("B", "K", "h", "w"))
    if choice.candidates.shape != choice.logits.shape:
        raise ValueError(f"candidates: expected the logits' shape {tuple(choice.logits.shape)}, "
                         f"got {tuple(choice.candidates.shape)}")
    stride = 2**choice.level
    height, width = target.shape[-2:]
    pad = (0, padded_size[1] - width, 0, padded_size[0] - height)
    gt = F.pad(torch.where(mask, target, torch.zeros_like(target)), pad)[..., stride // 2::stride, stride // 2::stride]
    known = F.pad(mask, pad)[..., stride // 2::stride, stride // 2::stride]
    if gt.shape[-2:] != choice.logits.shape[-2:]:
        raise ValueError(f"choice: expected level {choice.level} of a {padded_size} input, "
                         f"{tuple(gt.shape[-2:])} pixels, got {tuple(choice.logits.shape[-2:])}")
    candidates = choice.candidates.detach().float()
    nearest = (candidates - gt.float() / stride).abs().argmin(dim=1)
    spread = candidates.amax(dim=1) - candidates.amin(dim=1)
    scored = known[:, 0] & (spread > margin_px)
    if not bool(scored.any()):
        return choice.logits.sum() * 0.0
    ce = F.cross_entropy(choice.logits.float(), nearest, reduction="none")
    return (ce * scored).sum() / scored.sum()


def edge_weights(target: torch.Tensor, radius_px: int, weight: float, jump_px: float = 1.5) -> torch.Tensor:
    """Per-pixel loss weights that stress the pixels near depth edges.

    A depth edge is a jump of more than ``jump_px`` between two horizontally or vertically
    neighbouring pixels of ``target``; every pixel within ``radius_px`` of one (a square window)
    weighs ``weight``, the others 1. The network's errors on real scenes sit there: it spreads the
    foreground's disparity onto the background up to 16-32 px from the edge (``docs/pretraining.md``).

    Args:
        target: ``(B, 1, H, W)`` ground-truth disparity in pixels.
        radius_px: reach of the band around each edge, pixels (``>= 0``).
        weight: the band's weight (``>= 1``; 1 gives uniform weights).
        jump_px: smallest disparity difference between neighbours that makes an edge, pixels (``> 0``).

    Returns:
        ``(B, 1, H, W)`` weights, no gradient.
    """
    check_tensor(target, "target", ("B", 1, "H", "W"))
    if isinstance(radius_px, bool) or not isinstance(radius_px, int) or radius_px < 0:
        raise ValueError(f"radius_px: expected an integer >= 0 (pixels), got {radius_px!r}")
    if not weight >= 1.0:
        raise ValueError(f"weight: expected a weight >= 1, got {weight!r}")
    if not jump_px > 0:
        raise ValueError(f"jump_px: expected a positive number of pixels, got {jump_px!r}")
    with torch.no_grad():
        t = torch.nan_to_num(target.float())
        jump = torch.zeros_like(t, dtype=torch.bool)
        horizontal = (t[..., :, 1:] - t[..., :, :-1]).abs() > jump_px
        vertical = (t[..., 1:, :] - t[..., :-1, :]).abs() > jump_px
        jump[..., :, 1:] |= horizontal
        jump[..., :, :-1] |= horizontal
        jump[..., 1:, :] |= vertical
        jump[..., :-1, :] |= vertical
        near = F.max_pool2d(jump.float(), 2 * radius_px + 1, stride=1, padding=radius_px) > 0
        return torch.where(near, torch.full_like(t, float(weight)), torch.ones_like(t))


def supervised_loss(
    output: StereoOutput, target: torch.Tensor, valid: torch.Tensor, max_disparity: float,
    pixel_weights: torch.Tensor | None = None,
) -> tuple[torch.Tensor, dict[str, float]]:
    """Smooth-L1 between every level's prediction (at full resolution, full-res pixels) and the GT.

    Args:
        output: network output for a ``(B, 3, H, W)`` batch.
        target: ``(B, 1, H, W)`` ground-truth disparity in pixels.
        valid: ``(B, 1, H, W)`` bool, pixels with usable ground truth.
        max_disparity: GT above this (pixels) is ignored.
        pixel_weights: optional ``(B, 1, H, W)`` non-negative weights (e.g. :func:`edge_weights`);
            each term is then the weighted mean over the usable pixels. ``None``: every pixel weighs 1.

    Returns:
        ``(loss, terms)``: the scalar loss and each level's value as floats (``"final"``, ``"level3"``...;
        ``"hypotheses"``: :func:`hypothesis_loss`, for networks with a hypothesis selector).
    """
    check_tensor(target, "target", ("B", 1, "H", "W"))
    check_tensor(valid, "valid", ("B", 1, "H", "W"), floating=False)
    height, width = target.shape[-2:]
    mask = valid & torch.isfinite(target) & (target > 0) & (target < max_disparity)
    if pixel_weights is None:
        weights = mask.float()
    else:
        check_tensor(pixel_weights, "pixel_weights", ("B", 1, "H", "W"))
        if pixel_weights.shape != target.shape:
            raise ValueError(f"pixel_weights: expected the target's shape {tuple(target.shape)}, "
                             f"got {tuple(pixel_weights.shape)}")
        weights = mask.float() * pixel_weights.float().clamp(min=0.0)
    count = weights.sum().clamp(min=1)
    gt = torch.where(mask, target, torch.zeros_like(target))

    def term(prediction: torch.Tensor) -> torch.Tensor:
        err = F.smooth_l1_loss(prediction.float(), gt.float(), reduction="none", beta=1.0)
        return (err * weights).sum() / count

    final = term(output.disparity)
    loss = final
    terms = {"final": float(final.detach())}
    for level, weight in LEVEL_WEIGHTS.items():
        if level in output.levels:
            value = term(output.level_at_full_resolution(level, height, width))
            loss = loss + weight * value
            terms[f"level{level}"] = float(value.detach())
    if output.hypotheses is not None:
        value = hypothesis_loss(output.hypotheses, target, mask, output.padded_size)
        loss = loss + HYPOTHESIS_WEIGHT * value
        terms["hypotheses"] = float(value.detach())
    return loss, terms
