"""Disparity hypotheses from the neighbourhood, and a learned choice among them.

The cost-volume network fattens foreground objects: at 1/8 resolution every feature sees both sides
of a depth edge, and the disparity it picks there is the foreground's up to 16-32 px (full
resolution) into the background (docs/pretraining.md, "Where the network loses to SGBM"). The
residual decoders of the finer levels search only ``±correlation_radius`` pixels around the
upsampled disparity, far less than the jump they would have to cross, and a regressor does not
learn to carry the background's disparity that far (the context stage, tried at level 2).

Here the jump is given to the network as an explicit choice, as HITNet's and PatchMatch's
propagation do: beside the upsampled disparity ``d``, the smallest and the largest disparity within
``radius`` pixels (``-maxpool(-d)`` and ``maxpool(d)``: the background's and the foreground's on the
two sides of an edge) are hypotheses. Each is scored by how well it matches (a correlation of the
left features with the right features warped by it, at three shifts around it, and the image's
reconstruction error through it); a small convolutional selector turns the given disparity's scores,
the others' scores relative to them, the left features and the left image into one softmax weight
per hypothesis, and the disparity is their weighted mean.
The selector starts with most of the weight on ``d`` (91 %; where the three agree, exactly ``d``), so
it can be added to trained weights and trained on top.
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..checks import check_tensor
from ..warping import warp_right_to_left
from .layers import concat_channels, conv, correlation

__all__ = ["HypothesisSelector", "neighbourhood_hypotheses"]

#: Initial logit of the upsampled disparity against 0 for the others: softmax weight 0.91. Higher, the
#: selector falls into keeping it everywhere before it learns to read the evidence (a saturated
#: softmax passes no gradient to the others): in the test scene of ``test_hypotheses.py`` 6 learned at
#: a learning rate of 3e-4 and not at 1e-3, 3 at both and not at 2e-3.
_KEEP_LOGIT = 3.0


def neighbourhood_hypotheses(disparity: torch.Tensor, radius: int) -> torch.Tensor:
    """The disparity, the smallest and the largest disparity within ``radius`` pixels.

    Args:
        disparity: ``(B, 1, H, W)`` disparity (pixels of its level).
        radius: half the side of the square window (pixels of that level, ``>= 1``).

    Returns:
        ``(B, 3, H, W)``: ``[disparity, window minimum, window maximum]``.
    """
    check_tensor(disparity, "disparity", ("B", 1, "H", "W"))
    if isinstance(radius, bool) or not isinstance(radius, int) or radius < 1:
        raise ValueError(f"radius: expected an integer >= 1 (pixels), got {radius!r}")
    return torch.cat([disparity, -_window_max(-disparity, radius), _window_max(disparity, radius)], dim=1)


def _window_max(x: torch.Tensor, radius: int) -> torch.Tensor:
    """Maximum over the ``(2 radius + 1)^2`` window around each pixel of ``(B, 1, H, W)`` ``x`` (outside
    the map counts as ``-inf``, as max pooling's padding): a row then a column maximum, each by
    doubling (:func:`_running_max`). The same values as one square max pooling; at ``radius`` 8 on a
    144x192 map 0.09 ms against 1.5 ms for the row and column poolings (``max_pool2d`` runs a window
    of 17 element by element)."""
    return _running_max(_running_max(x, radius, dim=3), radius, dim=2)


def _running_max(x: torch.Tensor, radius: int, dim: int) -> torch.Tensor:
    """Maximum over ``[i - radius, i + radius]`` along ``dim`` of ``x``, the same size as ``x``.

    The map is padded with ``-inf``; the maximum over windows of length ``L`` gives the one over
    ``2L`` from two of them ``L`` apart, and the last step combines two windows overlapping by as much
    as needed to reach ``2 radius + 1``: ``log2`` steps of one element-wise maximum each.
    """
    size = 2 * radius + 1
    padding = [0, 0, 0, 0]
    padding[2 * (3 - dim) : 2 * (3 - dim) + 2] = [radius, radius]
    window = F.pad(x, padding, value=float("-inf"))
    length = 1
    while length < size:
        step = min(length, size - length)  # windows of length + step from two of length, step apart
        n = window.shape[dim] - step
        window = torch.maximum(window.narrow(dim, 0, n), window.narrow(dim, step, n))
        length += step
    return window


class HypothesisSelector(nn.Module):
    """Chooses, per pixel, among the upsampled disparity and its neighbourhood's extremes.

    ``forward(disparity, left_features, right_features, left_image, right_image, scale)``:
    ``(B, 1, h, w)`` disparity (pixels of the level), ``(B, C, h, w)`` features of both views,
    ``(B, 3, h, w)`` images of both views at that level and ``scale`` (the level's largest
    disparity, to condition the inputs) -> ``(disparity, logits, candidates)``: the ``(B, 1, h, w)``
    disparity, and the ``(B, 3, h, w)`` scores and hypotheses it came from (for
    :func:`~.supervision.hypothesis_loss`: trained through the disparity alone, the selector learns
    to keep the given disparity everywhere before it learns to read the evidence).

    Args:
        feature_channels: ``C``.
        channels: hidden channels of the selector.
        radius: the neighbourhood's half side (pixels of the level).
    """

    hypotheses = 3
    shifts = 1  # correlation at -1..1 pixels around each hypothesis
    #: The matching evidence is small (cosine differences, reconstruction errors of ~0.1): scaled to ~1.
    evidence_gain = 10.0

    def __init__(self, feature_channels: int, channels: int, radius: int) -> None:
        super().__init__()
        self.radius = radius
        scores = 2 * self.shifts + 1 + 1  # correlations and reconstruction error of one hypothesis
        inputs = scores + (self.hypotheses - 1) * (scores + 1) + feature_channels + 1 + 3
        self.body = nn.Sequential(conv(inputs, channels), conv(channels, channels, dilation=2),
                                  conv(channels, channels, dilation=4))
        self.head = nn.Conv2d(channels, self.hypotheses, 3, padding=1)
        nn.init.normal_(self.head.weight, std=1e-3)
        with torch.no_grad():
            self.head.bias.copy_(torch.tensor([_KEEP_LOGIT] + [0.0] * (self.hypotheses - 1)))

    def _scores(self, candidate: torch.Tensor, left_features: torch.Tensor, right_features: torch.Tensor,
                left_image: torch.Tensor, right_image: torch.Tensor) -> torch.Tensor:
        """How well ``candidate`` ``(B, 1, h, w)`` matches: ``(B, 2 * shifts + 2, h, w)``, the feature
        correlation at ``-shifts..shifts`` around it and the image's mean absolute reconstruction error."""
        warped, _ = warp_right_to_left(right_features, candidate.to(right_features.dtype), padding_mode="zeros")
        recon, _ = warp_right_to_left(right_image, candidate.to(right_image.dtype), padding_mode="border")
        return torch.cat([correlation(left_features, warped, -self.shifts, self.shifts),
                          (left_image - recon).abs().mean(dim=1, keepdim=True)], dim=1)

    def forward(self, disparity: torch.Tensor, left_features: torch.Tensor, right_features: torch.Tensor,
                left_image: torch.Tensor, right_image: torch.Tensor,
                scale: float) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        candidates = neighbourhood_hypotheses(disparity, self.radius)
        views = (left_features, right_features, left_image, right_image)
        given = self._scores(disparity, *views)
        inputs = [given * self.evidence_gain]
        for k in range(1, self.hypotheses):  # each other hypothesis: its evidence against the given one's
            candidate = candidates[:, k : k + 1]
            inputs += [(self._scores(candidate, *views) - given) * self.evidence_gain, (candidate - disparity) / scale]
        inputs += [left_features, disparity / scale, left_image]
        logits = self.head(self.body(concat_channels(inputs)))
        return (torch.softmax(logits, dim=1) * candidates).sum(dim=1, keepdim=True), logits, candidates
