"""What every disparity network of the package shares: its output and its interface.

A network (:class:`StereoNetwork`) takes a rectified pair and returns a :class:`StereoOutput`; its
:meth:`~StereoNetwork.blocks` split the parameters into the groups that MAD adaptation updates one at
a time. Each architecture lives in its own module (:mod:`.madnet`, :mod:`.costvolume`);
:func:`~stereo_depth_ros.core.network.model.build_network` builds one from its config.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..checks import check_same_batch_and_size, check_tensor

__all__ = ["HypothesisChoice", "StereoNetwork", "StereoOutput", "prepare_images"]

_MEAN = 0.45
_STD = 0.225


@dataclass
class HypothesisChoice:
    """What a :class:`~.hypotheses.HypothesisSelector` chose among, for a loss on the choice itself.

    Attributes:
        level: the level it ran at.
        logits: ``(B, K, h, w)`` its scores of the ``K`` hypotheses (before the softmax).
        candidates: ``(B, K, h, w)`` the hypotheses, disparities in pixels of that level.
    """

    level: int
    logits: torch.Tensor
    candidates: torch.Tensor

    def select(self, items: slice) -> "HypothesisChoice":
        """The choice of the batch items ``items`` (a slice of ``B``)."""
        return HypothesisChoice(self.level, self.logits[items], self.candidates[items])


@dataclass
class StereoOutput:
    """Network output.

    Attributes:
        disparity: ``(B, 1, H, W)`` left disparity in pixels at the input resolution, ``>= 0``.
        levels: per decoded level ``l``: ``(B, 1, H_p / 2^l, W_p / 2^l)`` disparity in pixels *of that
            level* (``H_p, W_p`` = input size padded to a multiple of the network's stride), before
            clamping. Which levels exist depends on the architecture (MADNet-style: 1..6; the
            cost-volume network: 1..3).
        padded_size: ``(H_p, W_p)``.
        hypotheses: the hypothesis selector's choice (networks with one), else ``None``.
    """

    disparity: torch.Tensor
    levels: dict[int, torch.Tensor]
    padded_size: tuple[int, int]
    hypotheses: HypothesisChoice | None = None

    def select(self, items: slice) -> "StereoOutput":
        """The output of the batch items ``items`` (a slice of ``B``): every tensor sliced alike."""
        if not isinstance(items, slice):
            raise ValueError(f"items: expected a slice of the batch, got {type(items).__name__}")
        return StereoOutput(self.disparity[items], {k: v[items] for k, v in self.levels.items()}, self.padded_size,
                            None if self.hypotheses is None else self.hypotheses.select(items))

    def level_at_full_resolution(self, level: int, height: int, width: int) -> torch.Tensor:
        """Level ``level``'s disparity upsampled to the input size, in full-resolution pixels ``(B, 1, H, W)``."""
        if level not in self.levels:
            raise ValueError(f"level: expected one of the decoded levels {sorted(self.levels)}, got {level!r}")
        d = self.levels[level]
        up = F.interpolate(d, size=self.padded_size, mode="bilinear", align_corners=False) * (2**level)
        return up[..., :height, :width]


def prepare_images(left: torch.Tensor, right: torch.Tensor, stride: int,
                   layout_of: torch.Tensor | None = None) -> tuple[torch.Tensor, tuple[int, int, int], tuple[int, int]]:
    """Check a pair and stack it for a shared feature extractor.

    Args:
        left, right: ``(B, 3, H, W)`` (or ``(B, 1, H, W)`` grey) images in ``[0, 1]``.
        stride: pad (replicate, bottom and right) ``H`` and ``W`` up to a multiple of this.
        layout_of: a 4-D weight; when it is channels-last the images are made so too (oneDNN runs a
            convolution whose input and weights share the layout much faster).

    Returns:
        ``(images, (B, H, W), (pad_h, pad_w))`` with ``images`` = ``cat([left, right])`` normalised
        (``(x - 0.45) / 0.225``), ``(2B, 3, H + pad_h, W + pad_w)``.
    """
    check_tensor(left, "left", ("B", "C", "H", "W"))
    check_tensor(right, "right", ("B", "C", "H", "W"))
    check_same_batch_and_size(left, "left", right, "right")
    if left.shape[1] != right.shape[1] or left.shape[1] not in (1, 3):
        raise ValueError(f"left/right: expected 1 or 3 channels each, got {left.shape[1]} and {right.shape[1]}")
    if left.shape[1] == 1:
        left, right = left.expand(-1, 3, -1, -1), right.expand(-1, 3, -1, -1)
    batch, _, height, width = left.shape
    pad_h, pad_w = (-height) % stride, (-width) % stride
    images = torch.cat([left, right], dim=0)
    if pad_h or pad_w:
        images = F.pad(images, (0, pad_w, 0, pad_h), mode="replicate")
    images = (images - _MEAN) / _STD
    if layout_of is not None and layout_of.is_contiguous(memory_format=torch.channels_last):
        images = images.contiguous(memory_format=torch.channels_last)  # match the weights' layout
    return images, (batch, height, width), (pad_h, pad_w)


class StereoNetwork(nn.Module):
    """Interface of the disparity networks (no BatchNorm anywhere: batch-1 online updates are safe).

    Subclasses set :attr:`config` (a frozen dataclass with at least ``architecture`` and
    ``max_disparity``), implement :meth:`forward` and :meth:`blocks`.
    """

    config: Any

    def forward(self, left: torch.Tensor, right: torch.Tensor) -> StereoOutput:  # pragma: no cover - abstract
        """``(B, 3, H, W)`` (or grey ``(B, 1, H, W)``) rectified images in ``[0, 1]``, any size ->
        :class:`StereoOutput` with the left disparity in pixels."""
        raise NotImplementedError

    def blocks(self) -> "OrderedDict[str, list[nn.Module]]":  # pragma: no cover - abstract
        """Modules grouped into blocks, coarse to fine, that partition every parameter (MAD)."""
        raise NotImplementedError

    def block_parameters(self, name: str) -> list[nn.Parameter]:
        """Parameters of one block of :meth:`blocks`."""
        blocks = self.blocks()
        if name not in blocks:
            raise ValueError(f"block: expected one of {list(blocks)}, got {name!r}")
        return [p for m in blocks[name] for p in m.parameters()]
