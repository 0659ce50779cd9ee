"""The coarse-to-fine stereo network.

One shared feature pyramid runs on ``cat([left, right])``; at the coarsest level a correlation cost
volume over ``0..ceil(max_disparity / 64)`` feeds the first disparity decoder; every finer level
upsamples the disparity, warps the right features into the left view with it (``grid_sample``,
see :mod:`stereo_depth_ros.core.warping`), correlates over ``-r..r`` and decodes a residual. A
dilated refinement stage sits at level 2. Each level's encoder stage and decoder form one *block*
(:meth:`StereoNet.blocks`) so online adaptation can update one block at a time (MADNet's MAD).
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..checks import check_same_batch_and_size, check_tensor
from ..warping import warp_right_to_left
from .config import NetworkConfig
from .layers import DisparityDecoder, FeaturePyramid, Refinement, correlation

__all__ = ["StereoNet", "StereoOutput"]

_MEAN = 0.45
_STD = 0.225


@dataclass
class StereoOutput:
    """Network output.

    Attributes:
        disparity: ``(B, 1, H, W)`` left disparity in pixels at the input resolution, ``>= 0``.
        levels: per decoded level ``l``: ``(B, 1, H_p / 2^l, W_p / 2^l)`` disparity in pixels *of that
            level* (``H_p, W_p`` = input size padded to a multiple of 64), before clamping.
        padded_size: ``(H_p, W_p)``.
    """

    disparity: torch.Tensor
    levels: dict[int, torch.Tensor]
    padded_size: tuple[int, int]

    def select(self, items: slice) -> "StereoOutput":
        """The output of the batch items ``items`` (a slice of ``B``): every tensor sliced alike."""
        if not isinstance(items, slice):
            raise ValueError(f"items: expected a slice of the batch, got {type(items).__name__}")
        return StereoOutput(self.disparity[items], {k: v[items] for k, v in self.levels.items()}, self.padded_size)

    def level_at_full_resolution(self, level: int, height: int, width: int) -> torch.Tensor:
        """Level ``level``'s disparity upsampled to the input size, in full-resolution pixels ``(B, 1, H, W)``."""
        d = self.levels[level]
        up = F.interpolate(d, size=self.padded_size, mode="bilinear", align_corners=False) * (2**level)
        return up[..., :height, :width]


class StereoNet(nn.Module):
    """Compact MADNet-style stereo network (no BatchNorm: batch-1 online updates are safe)."""

    def __init__(self, config: NetworkConfig | None = None) -> None:
        super().__init__()
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

    def block_parameters(self, name: str) -> list[nn.Parameter]:
        """Parameters of one block of :meth:`blocks`."""
        blocks = self.blocks()
        if name not in blocks:
            raise ValueError(f"block: expected one of {list(blocks)}, got {name!r}")
        return [p for m in blocks[name] for p in m.parameters()]

    # ------------------------------------------------------------------ forward
    def forward(self, left: torch.Tensor, right: torch.Tensor) -> StereoOutput:
        """Predict the left disparity.

        Args:
            left, right: ``(B, 3, H, W)`` (or ``(B, 1, H, W)`` grey) rectified images in ``[0, 1]``,
                any size; internally padded (replicate) to a multiple of 64 and cropped back.

        Returns:
            :class:`StereoOutput` with the disparity in pixels.
        """
        check_tensor(left, "left", ("B", "C", "H", "W"))
        check_tensor(right, "right", ("B", "C", "H", "W"))
        check_same_batch_and_size(left, "left", right, "right")
        if left.shape[1] != right.shape[1] or left.shape[1] not in (1, 3):
            raise ValueError(f"left/right: expected 1 or 3 channels each, got {left.shape[1]} and {right.shape[1]}")
        if left.shape[1] == 1:
            left, right = left.expand(-1, 3, -1, -1), right.expand(-1, 3, -1, -1)
        c = self.config
        batch, _, height, width = left.shape
        stride = c.stride
        pad_h, pad_w = (-height) % stride, (-width) % stride
        images = torch.cat([left, right], dim=0)
        if pad_h or pad_w:
            images = F.pad(images, (0, pad_w, 0, pad_h), mode="replicate")
        images = (images - _MEAN) / _STD
        if self.features.levels[0].down[0].weight.is_contiguous(memory_format=torch.channels_last):
            images = images.contiguous(memory_format=torch.channels_last)  # match the weights' layout
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
