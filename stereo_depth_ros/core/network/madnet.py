"""The coarse-to-fine stereo network (MADNet-style, architecture ``"madnet"``).

One shared feature pyramid runs on ``cat([left, right])``; at the coarsest level a correlation cost
volume over ``0..ceil(max_disparity / 64)`` feeds the first disparity decoder; every finer level
upsamples the disparity, warps the right features into the left view with it (``grid_sample``,
see :mod:`stereo_depth_ros.core.warping`), correlates over ``-r..r`` and decodes a residual. A
dilated refinement stage sits at level 2. Each level's encoder stage and decoder form one *block*
(:meth:`StereoNet.blocks`) so online adaptation can update one block at a time (MADNet's MAD).
"""

from __future__ import annotations

from collections import OrderedDict

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..warping import warp_right_to_left
from .base import StereoNetwork, StereoOutput, prepare_images
from .config import NetworkConfig
from .layers import DisparityDecoder, FeaturePyramid, Refinement, correlation

__all__ = ["StereoNet"]


class StereoNet(StereoNetwork):
    """Compact MADNet-style stereo network (no BatchNorm: batch-1 online updates are safe)."""

    def __init__(self, config: NetworkConfig | None = None) -> None:
        super().__init__()
        if config is not None and not isinstance(config, NetworkConfig):
            raise ValueError(f"config: expected a NetworkConfig (architecture 'madnet'), got {type(config).__name__}")
        self.config = config or NetworkConfig()
        c = self.config
        enc = c.encoder_channels
        self.features = FeaturePyramid(enc)
        radius_channels = 2 * c.correlation_radius + 1
        decoders = {}
        for level in range(c.num_levels, c.output_level - 1, -1):
            if level == c.num_levels:
                in_channels = (c.coarse_search + 1) + enc[level - 1]
            else:
                in_channels = radius_channels + enc[level - 1] + 1
            decoders[f"level{level}"] = DisparityDecoder(in_channels, c.decoder_channels[level - 1])
        self.decoders = nn.ModuleDict(decoders)
        self.refinement = Refinement(enc[1] + 1, c.refinement_channels, c.refinement_dilations)

    # ------------------------------------------------------------------ structure
    def blocks(self) -> "OrderedDict[str, list[nn.Module]]":
        """Modules grouped per pyramid level, coarse to fine: encoder stage + decoder (+ refinement at 2)."""
        groups: OrderedDict[str, list[nn.Module]] = OrderedDict()
        for level in range(self.config.num_levels, self.config.output_level - 1, -1):
            modules: list[nn.Module] = [self.features.levels[level - 1], self.decoders[f"level{level}"]]
            if level == 2:
                modules.append(self.refinement)
            groups[f"level{level}"] = modules
        if self.config.output_level == 2:  # the level-1 encoder stage still feeds level 2
            groups["level2"].insert(0, self.features.levels[0])
        return groups

    # ------------------------------------------------------------------ forward
    def forward(self, left: torch.Tensor, right: torch.Tensor) -> StereoOutput:
        """Predict the left disparity.

        Args:
            left, right: ``(B, 3, H, W)`` (or ``(B, 1, H, W)`` grey) rectified images in ``[0, 1]``,
                any size; internally padded (replicate) to a multiple of 64 and cropped back.

        Raises:
            ValueError: not a pair of ``(B, 1|3, H, W)`` tensors of one size, device and dtype.

        Returns:
            :class:`StereoOutput` with the disparity in pixels.
        """
        c = self.config
        images, (batch, height, width), (pad_h, pad_w) = prepare_images(
            left, right, c.stride, self.features.levels[0].down[0].weight)
        features = self.features(images)

        levels: dict[int, torch.Tensor] = {}
        disparity: torch.Tensor | None = None
        for level in range(c.num_levels, c.output_level - 1, -1):
            feat = features[level - 1]
            f_left, f_right = feat[:batch], feat[batch:]
            scale = c.max_disparity / (2**level)  # conditions the disparity input to ~[0, 1]
            decoder = self.decoders[f"level{level}"]
            if disparity is None:
                cost = correlation(f_left, f_right, 0, c.coarse_search)
                disparity = decoder(torch.cat([cost, f_left], dim=1))
            else:
                up = F.interpolate(disparity, scale_factor=2, mode="bilinear", align_corners=False) * 2
                warped, _ = warp_right_to_left(f_right, up.to(f_right.dtype), padding_mode="zeros")
                cost = correlation(f_left, warped, -c.correlation_radius, c.correlation_radius)
                disparity = up + decoder(torch.cat([cost, f_left, up / scale], dim=1))
            if level == 2:
                disparity = disparity + self.refinement(torch.cat([f_left, disparity / scale], dim=1))
            levels[level] = disparity

        assert disparity is not None
        factor = 2**c.output_level
        full = F.interpolate(disparity, scale_factor=factor, mode="bilinear", align_corners=False) * factor
        full = full[..., :height, :width].clamp(min=0.0)
        return StereoOutput(disparity=full, levels=levels, padded_size=(height + pad_h, width + pad_w))
