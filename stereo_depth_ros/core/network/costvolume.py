"""The full-range cost-volume stereo network (architecture ``"costvolume"``).

What the lightweight networks that generalise to real cameras share (StereoNet, AnyNet, CoEx,
LightStereo, Fast-ACVNet): every disparity of the range is compared at a coarse level, and the
comparison is aggregated before a disparity is picked. Here:

1. one shared feature extractor runs on ``cat([left, right])`` down to the volume level ``V``
   (default 3, stride 8);
2. :func:`groupwise_correlation` compares left and right features at every shift
   ``0..max_disparity / 2**V`` (pixels of level ``V``): ``G`` groups of channels, each a cosine
   similarity, built with one product per shift (no ``unfold``, no data-dependent shapes: a fixed
   loop that a CUDA graph records once);
3. :class:`CostAggregation`, a 2D hourglass of inverted-residual blocks over the volume with the
   disparities as channels (LightStereo), guided by the left features, turns it into one score per
   disparity; a learnable gain times the raw correlation is added to the scores, so that even
   before training the scores peak at the best match;
4. a soft-argmin (softmax-weighted mean of the disparities) gives a sub-pixel disparity at level ``V``;
5. every finer level down to ``output_level`` (default 1, stride 2) upsamples the disparity, warps
   the right features and the right image by it, searches a residual ``-r..r`` and decodes a residual
   from that search, the left features, the left image and the image's reconstruction error;
6. the finest level is upsampled bilinearly to the input size.

Optionally (``context_level``, off in the weights trained so far) a dilated context stage refines one
level's disparity after its decoder: the residual decoders see four 3x3 neighbourhoods, too little
to carry the background's disparity across an occlusion as wide as the disparity jump beside it
(the shipped network is two thirds wrong on occluded pixels, of synthetic scenes as of real ones).
Its output starts at zero, so it can be added to trained weights and trained on top. Tried once at
level 2 (3500 steps beside a plain run, docs/pretraining.md): no better than the plain run, on
occluded pixels or elsewhere.

Optionally (``hypothesis_level``, off by default) a :class:`~.hypotheses.HypothesisSelector` at one
finer level chooses, before that level's decoder, among the upsampled disparity and the smallest and
largest disparity of its neighbourhood, by how well each matches: a way across the depth edges that
the 1/8 volume fattens, which no ``±r`` residual search reaches.

No BatchNorm (batch-1 online updates stay safe). Each level's feature stage and its head
(aggregation at ``V``, residual decoder below, and the context stage at its level) form one MAD
block (:meth:`CostVolumeNet.blocks`), as in the MADNet-style network.
"""

from __future__ import annotations

from collections import OrderedDict

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..checks import check_tensor
from ..warping import warp_right_to_left
from .base import HypothesisChoice, StereoNetwork, StereoOutput, prepare_images
from .config import CostVolumeConfig
from .hypotheses import HypothesisSelector
from .layers import (DisparityDecoder, FeaturePyramid, Refinement, concat_channels, correlation, half_resolution,
                     unit_channels)

__all__ = ["CostAggregation", "CostVolumeNet", "InvertedResidual", "groupwise_correlation", "soft_argmin"]

_SLOPE = 0.2


def groupwise_correlation(left: torch.Tensor, right: torch.Tensor, max_shift: int, groups: int) -> torch.Tensor:
    """Full-range group-wise correlation volume (cosine similarity per group of channels).

    ``cost[g, s](u) = <left_g(u), right_g(u - s)> / (|left_g(u)| |right_g(u - s)|)`` for every group
    ``g`` of ``C / groups`` channels and every shift ``s = 0..max_shift``, in ``[-1, 1]``; where
    ``u - s`` falls left of the right feature map the cost is 0.

    Args:
        left, right: ``(B, C, H, W)`` features of the left and right view (one level).
        max_shift: largest shift searched, pixels of this level (``>= 0``).
        groups: channel groups (must divide ``C``).

    Returns:
        ``(B, groups, max_shift + 1, H, W)`` costs.
    """
    check_tensor(left, "left", ("B", "C", "H", "W"))
    if right.shape != left.shape:
        raise ValueError(f"right: expected the shape of left {tuple(left.shape)}, got {tuple(right.shape)}")
    if isinstance(max_shift, bool) or not isinstance(max_shift, int) or max_shift < 0:
        raise ValueError(f"max_shift: expected an integer >= 0 (pixels), got {max_shift!r}")
    batch, channels, height, width = left.shape
    if isinstance(groups, bool) or not isinstance(groups, int) or groups < 1 or channels % groups:
        raise ValueError(f"groups: expected a positive integer dividing the {channels} channels, got {groups!r}")
    shape = (batch, groups, channels // groups, height, width)
    left_n = unit_channels(left.reshape(shape), dim=2)
    right_n = unit_channels(right.reshape(shape), dim=2)
    volume = left_n.new_zeros(batch, groups, max_shift + 1, height, width)
    for s in range(min(max_shift, width - 1) + 1):  # shifts beyond the width only see zeros
        volume[:, :, s, :, s:] = (left_n[..., s:] * right_n[..., : width - s]).sum(dim=2)
    return volume


def soft_argmin(scores: torch.Tensor) -> torch.Tensor:
    """Softmax-weighted mean of the disparities ``0..D-1``: ``(B, D, H, W)`` scores (higher = better
    match) -> ``(B, 1, H, W)`` disparity in pixels of the scores' level, in ``[0, D - 1]``."""
    check_tensor(scores, "scores", ("B", "D", "H", "W"))
    disparities = torch.arange(scores.shape[1], device=scores.device, dtype=scores.dtype).view(1, -1, 1, 1)
    return (torch.softmax(scores, dim=1) * disparities).sum(dim=1, keepdim=True)


class InvertedResidual(nn.Module):
    """MobileNetV2 block without normalisation: 1x1 expand, 3x3 depthwise (stride 1 or 2), 1x1 project;
    a skip connection when the shape is kept. ``(B, C_in, H, W) -> (B, C_out, H/stride, W/stride)``."""

    def __init__(self, in_channels: int, out_channels: int, stride: int = 1, expansion: int = 4) -> None:
        super().__init__()
        hidden = in_channels * expansion
        self.body = nn.Sequential(
            nn.Conv2d(in_channels, hidden, 1),
            nn.LeakyReLU(_SLOPE, inplace=True),
            nn.Conv2d(hidden, hidden, 3, stride, padding=1, groups=hidden),
            nn.LeakyReLU(_SLOPE, inplace=True),
            nn.Conv2d(hidden, out_channels, 1),
        )
        self.skip = stride == 1 and in_channels == out_channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.body(x)
        return x + out if self.skip else out


class CostAggregation(nn.Module):
    """2D aggregation of a cost volume whose disparities are channels (LightStereo-style hourglass).

    Input: the volume ``(B, G * D, h, w)``, the raw cost ``(B, D, h, w)`` (its mean over groups) and
    the left features ``(B, C, h, w)``; output: scores ``(B, D, h, w)`` (higher = better match) =
    the hourglass's output + a learnable gain x the raw cost.

    Args:
        volume_channels: ``G * D``.
        feature_channels: ``C``.
        channels: hourglass channels at ``h`` and at the two coarser levels (``h/2``, ``h/4``).
        expansion: inverted-residual expansion.
        disparities: ``D``.
    """

    def __init__(self, volume_channels: int, feature_channels: int, channels: tuple[int, ...], expansion: int,
                 disparities: int) -> None:
        super().__init__()
        a0, a1, a2 = channels
        self.stem = nn.Sequential(nn.Conv2d(volume_channels + feature_channels, a0, 1), nn.LeakyReLU(_SLOPE, inplace=True),
                                  InvertedResidual(a0, a0, 1, expansion))
        self.down1 = nn.Sequential(InvertedResidual(a0, a1, 2, expansion), InvertedResidual(a1, a1, 1, expansion))
        self.down2 = nn.Sequential(InvertedResidual(a1, a2, 2, expansion), InvertedResidual(a2, a2, 1, expansion))
        self.up1 = nn.Conv2d(a2, a1, 1)
        self.fuse1 = InvertedResidual(a1, a1, 1, expansion)
        self.up0 = nn.Conv2d(a1, a0, 1)
        self.fuse0 = InvertedResidual(a0, a0, 1, expansion)
        self.head = nn.Conv2d(a0, disparities, 3, padding=1)
        nn.init.normal_(self.head.weight, std=1e-3)  # scores start as the gain x the raw correlation
        nn.init.zeros_(self.head.bias)
        self.gain = nn.Parameter(torch.tensor(10.0))  # softmax of 10 x cosine similarity: a clear peak

    def forward(self, volume: torch.Tensor, raw: torch.Tensor, features: torch.Tensor) -> torch.Tensor:
        x0 = self.stem(concat_channels([volume, features]))
        x1 = self.down1(x0)
        x2 = self.down2(x1)
        y1 = self.fuse1(x1 + self.up1(F.interpolate(x2, size=x1.shape[-2:], mode="bilinear", align_corners=False)))
        y0 = self.fuse0(x0 + self.up0(F.interpolate(y1, size=x0.shape[-2:], mode="bilinear", align_corners=False)))
        return self.head(y0) + self.gain * raw


class CostVolumeNet(StereoNetwork):
    """Full-range cost-volume stereo network (see the module docstring)."""

    def __init__(self, config: CostVolumeConfig | None = None) -> None:
        super().__init__()
        if config is not None and not isinstance(config, CostVolumeConfig):
            raise ValueError(f"config: expected a CostVolumeConfig (architecture 'costvolume'), got {type(config).__name__}")
        self.config = config or CostVolumeConfig()
        c = self.config
        self.features = FeaturePyramid(c.feature_channels)
        disparities = c.search + 1
        self.aggregation = CostAggregation(c.groups * disparities, c.feature_channels[-1], c.aggregation_channels,
                                           c.expansion, disparities)
        radius_channels = 2 * c.correlation_radius + 1
        self.decoders = nn.ModuleDict({
            f"level{level}": DisparityDecoder(radius_channels + c.feature_channels[level - 1] + 1 + 6,
                                              c.decoder_channels[level - c.output_level])
            for level in range(c.volume_level - 1, c.output_level - 1, -1)
        })
        self.context: Refinement | None = None
        if c.context_level:
            self.context = Refinement(c.feature_channels[c.context_level - 1] + 1 + 6, c.context_channels,
                                      c.context_dilations)
            nn.init.zeros_(self.context.head.weight)  # starts as the identity: weights without it load unchanged
        self.hypotheses: HypothesisSelector | None = None
        if c.hypothesis_level:
            self.hypotheses = HypothesisSelector(c.feature_channels[c.hypothesis_level - 1], c.hypothesis_channels,
                                                 c.hypothesis_radius)

    # ------------------------------------------------------------------ structure
    def blocks(self) -> "OrderedDict[str, list[nn.Module]]":
        """Modules grouped per level, coarse to fine: the feature stage + the aggregation (volume level)
        or the residual decoder (finer levels)."""
        c = self.config
        groups: OrderedDict[str, list[nn.Module]] = OrderedDict()
        groups[f"level{c.volume_level}"] = [self.features.levels[c.volume_level - 1], self.aggregation]
        for level in range(c.volume_level - 1, c.output_level - 1, -1):
            groups[f"level{level}"] = [self.features.levels[level - 1], self.decoders[f"level{level}"]]
        if c.output_level == 2:  # the level-1 feature stage still feeds level 2
            groups["level2"].insert(0, self.features.levels[0])
        if self.context is not None:
            groups[f"level{c.context_level}"].append(self.context)
        if self.hypotheses is not None:
            groups[f"level{c.hypothesis_level}"].append(self.hypotheses)
        return groups

    # ------------------------------------------------------------------ forward
    def cost_volume(self, left: torch.Tensor, right: torch.Tensor) -> torch.Tensor:
        """The raw volume of a pair, before aggregation: ``(B, 3, H, W)`` images in ``[0, 1]`` ->
        ``(B, groups, search + 1, H_p / 2^V, W_p / 2^V)`` (see :func:`groupwise_correlation`)."""
        c = self.config
        images, (batch, _, _), _ = prepare_images(left, right, c.stride, self.features.levels[0].down[0].weight)
        feat = self.features(images)[c.volume_level - 1]
        return groupwise_correlation(feat[:batch], feat[batch:], c.search, c.groups)

    def _context(self, disparity: torch.Tensor, features: torch.Tensor, images: torch.Tensor, batch: int,
                 level: int) -> torch.Tensor:
        """The context stage at ``level``: ``disparity`` ``(B, 1, h, w)`` (pixels of that level) plus
        the residual :attr:`context` decodes from the left features, the disparity, the left image and
        its reconstruction error; ``features`` and ``images`` are that level's, left and right stacked."""
        image_left, image_right = images[:batch], images[batch:]
        recon, _ = warp_right_to_left(image_right, disparity.to(image_right.dtype), padding_mode="border")
        scale = self.config.max_disparity / (2**level)
        inputs = concat_channels([features[:batch], disparity / scale, image_left, (image_left - recon).abs()])
        return disparity + self.context(inputs)

    def forward(self, left: torch.Tensor, right: torch.Tensor) -> StereoOutput:
        """Predict the left disparity.

        Args:
            left, right: ``(B, 3, H, W)`` (or ``(B, 1, H, W)`` grey) rectified images in ``[0, 1]``,
                any size; internally padded (replicate) to a multiple of ``config.stride`` and cropped back.

        Raises:
            ValueError: not a pair of ``(B, 1|3, H, W)`` tensors of one size, device and dtype.

        Returns:
            :class:`StereoOutput`: the disparity in pixels, ``levels`` ``output_level..volume_level``.
        """
        c = self.config
        images, (batch, height, width), (pad_h, pad_w) = prepare_images(
            left, right, c.stride, self.features.levels[0].down[0].weight)
        features = self.features(images)
        top = c.volume_level
        f_left, f_right = features[top - 1][:batch], features[top - 1][batch:]
        volume = groupwise_correlation(f_left, f_right, c.search, c.groups)
        scores = self.aggregation(volume.flatten(1, 2), volume.mean(dim=1), f_left)
        disparity = soft_argmin(scores)
        pooled = [half_resolution(images)]  # the images at levels 1, 2, ... (sizes are multiples of the stride)
        while len(pooled) < (top if c.context_level == top else top - 1):
            pooled.append(half_resolution(pooled[-1]))
        if c.context_level == top:
            disparity = self._context(disparity, features[top - 1], pooled[top - 1], batch, top)
        levels: dict[int, torch.Tensor] = {top: disparity}
        choice: HypothesisChoice | None = None
        for level in range(top - 1, c.output_level - 1, -1):
            f_left, f_right = features[level - 1][:batch], features[level - 1][batch:]
            image_left, image_right = pooled[level - 1][:batch], pooled[level - 1][batch:]
            up = F.interpolate(disparity, scale_factor=2, mode="bilinear", align_corners=False) * 2
            scale = c.max_disparity / (2**level)  # conditions the disparity input to ~[0, 1]
            if c.hypothesis_level == level:
                up, logits, candidates = self.hypotheses(up, f_left, f_right, image_left, image_right, scale)
                choice = HypothesisChoice(level, logits, candidates)
            warped, _ = warp_right_to_left(f_right, up.to(f_right.dtype), padding_mode="zeros")
            cost = correlation(f_left, warped, -c.correlation_radius, c.correlation_radius)
            recon, _ = warp_right_to_left(image_right, up.to(image_right.dtype), padding_mode="border")
            inputs = concat_channels([cost, f_left, up / scale, image_left, (image_left - recon).abs()])
            disparity = up + self.decoders[f"level{level}"](inputs)
            if c.context_level == level:
                disparity = self._context(disparity, features[level - 1], pooled[level - 1], batch, level)
            levels[level] = disparity
        factor = 2**c.output_level
        full = F.interpolate(disparity, scale_factor=factor, mode="bilinear", align_corners=False) * factor
        full = full[..., :height, :width].clamp(min=0.0)
        return StereoOutput(disparity=full, levels=levels, padded_size=(height + pad_h, width + pad_w), hypotheses=choice)
