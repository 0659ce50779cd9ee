"""Per-pixel fusion of two disparity hypotheses: the network's and a classical matcher's (SGBM).

The node owns two hypotheses for every pixel: the network's disparity and OpenCV SGBM's
left-right-checked disparity (NaN in its holes). Which one a pixel publishes is decided by the
evidence the images give, the same test the adaptation's photometric gate uses
(:func:`~stereo_depth_ros.core.self_supervision.gate_labels`): warp the right image into the left
view through each hypothesis and compare the reconstruction errors (:func:`reconstruction_error`);
a challenger replaces the incumbent only where it reconstructs better by a ``margin``
(:func:`prefers_candidate`).

Which hypothesis is the incumbent was measured, not assumed. On the eight real development scenes
(Middlebury 2001-2005 + Motorcycle, the MADNet-style weights shipped until 2026-12-06, frozen), where
the two disagree by more than 2 px on SGBM's confident pixels SGBM is right about four times as
often as the network (bad-2 23.5 % against 90.8 %, median over scenes), and the reconstruction
error prefers the wrong one there more often than not (choosing by it with no margin: 31.1 %). So
SGBM's checked pixel is the incumbent, and the network must reconstruct clearly better
(``margin``) to replace it; in SGBM's holes the network is the only hypothesis. Where both agree
within :data:`AGREEMENT_PX` the pixel is marked ``agree`` (SGBM's value is kept: on those pixels
it is the more precise, 3.7 % against 5.2 % bad-2), which the masks use as evidence
(:func:`~stereo_depth_ros.core.masks.compute_validity`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch

from .checks import check_same_batch_and_size, check_tensor
from .losses import photometric_error
from .proxy import AGREEMENT_PX  # two disparities agree within this (pixels), as for the proxy labels
from .warping import sample_columns

__all__ = ["SOURCE_NETWORK", "SOURCE_MATCHER", "SOURCE_AGREE", "SOURCE_NAMES", "AGREEMENT_PX", "Fusion",
           "reconstruction_error", "prefers_candidate", "fuse_disparities", "source_shares"]

SOURCE_NETWORK = 0
"""A pixel whose published disparity is the network's (a matcher hole, or the network reconstructs better)."""
SOURCE_MATCHER = 1
"""A pixel whose published disparity is the matcher's, and the network disagrees with it."""
SOURCE_AGREE = 2
"""A pixel where both hypotheses agree within :data:`AGREEMENT_PX` (the matcher's value is published)."""
SOURCE_NAMES = ("network", "sgbm", "agree")
"""Names of the sources, indexed by their code (as reported on ``/diagnostics``)."""

def reconstruction_error(
    disparity: torch.Tensor, left: torch.Tensor, right: torch.Tensor,
    image_error: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] = photometric_error,
) -> torch.Tensor:
    """Per-pixel error of the left image re-sampled from the right one through ``disparity``.

    Left pixel ``u`` is compared with the right image at ``u - d(u)`` (linear interpolation, border
    padding). Non-finite disparities are treated as 0.

    Args:
        disparity: ``(B, 1, H, W)`` left disparity in pixels.
        left, right: ``(B, C, H, W)`` rectified images in ``[0, 1]`` (any number of channels,
            e.g. RGB or luminance).
        image_error: ``(pred, target) -> (B, 1, H, W)`` per-pixel error, e.g.
            :func:`~stereo_depth_ros.core.losses.photometric_error`.

    Returns:
        ``(B, 1, H, W)`` error.
    """
    check_tensor(disparity, "disparity", ("B", 1, "H", "W"))
    check_tensor(left, "left", ("B", "C", "H", "W"))
    check_same_batch_and_size(disparity, "disparity", left, "left")
    check_same_batch_and_size(left, "left", right, "right")
    d = torch.nan_to_num(disparity.to(right.dtype), nan=0.0, posinf=0.0, neginf=0.0)
    width = d.shape[-1]
    u = torch.arange(width, device=d.device, dtype=d.dtype).view(1, 1, 1, width)
    return image_error(sample_columns(right, u - d), left)


def prefers_candidate(candidate_error: torch.Tensor, incumbent_error: torch.Tensor, margin: float) -> torch.Tensor:
    """Where a candidate hypothesis explains the images clearly better than the incumbent.

    ``candidate_error < (1 - margin) * incumbent_error``: with ``margin`` 0 the better
    reconstruction wins, with a larger margin the candidate must lower the error by that fraction;
    where the images barely tell the two apart the incumbent stays.

    Args:
        candidate_error, incumbent_error: ``(B, 1, H, W)`` per-pixel reconstruction errors
            (:func:`reconstruction_error`); ``inf`` where a hypothesis has no value.
        margin: a fraction in ``[0, 1)``.

    Returns:
        ``(B, 1, H, W)`` bool.
    """
    check_tensor(candidate_error, "candidate_error", ("B", 1, "H", "W"))
    check_same_batch_and_size(candidate_error, "candidate_error", incumbent_error, "incumbent_error")
    if not 0.0 <= float(margin) < 1.0:
        raise ValueError(f"margin: expected a fraction in [0, 1), got {margin!r}")
    return candidate_error < (1.0 - float(margin)) * incumbent_error


@dataclass
class Fusion:
    """Result of :func:`fuse_disparities`.

    Attributes:
        disparity: ``(B, 1, H, W)`` fused left disparity in pixels.
        source: ``(B, 1, H, W)`` uint8, :data:`SOURCE_NETWORK`, :data:`SOURCE_MATCHER` or :data:`SOURCE_AGREE`.
        error: ``(B, 1, H, W)`` reconstruction error of each pixel's published hypothesis (on the
            images the fusion was given), reused by the masks instead of warping a third time.
    """

    disparity: torch.Tensor
    source: torch.Tensor
    error: torch.Tensor | None = None

    @property
    def from_matcher(self) -> torch.Tensor:
        """``(B, 1, H, W)`` bool: the published value is the matcher's (agreeing or not)."""
        return self.source != SOURCE_NETWORK

    @property
    def agree(self) -> torch.Tensor:
        """``(B, 1, H, W)`` bool: both hypotheses agree."""
        return self.source == SOURCE_AGREE


@torch.no_grad()
def fuse_disparities(
    network: torch.Tensor, matcher: torch.Tensor, left: torch.Tensor, right: torch.Tensor, margin: float = 0.5,
    image_error: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] = photometric_error,
    agreement_px: float = AGREEMENT_PX,
) -> Fusion:
    """Per pixel, the matcher's checked disparity unless the network reconstructs clearly better.

    Args:
        network: ``(B, 1, H, W)`` the network's left disparity in pixels.
        matcher: ``(B, 1, H, W)`` the matcher's left disparity in pixels, NaN (or non-positive)
            where it has none (its left-right check, uniqueness test or speckle filter refused it).
        left, right: ``(B, C, H, W)`` the rectified images in ``[0, 1]`` the errors are measured on
            (luminance is enough, and a third of RGB's cost).
        margin: the network replaces a matcher pixel only where its reconstruction error is below
            ``(1 - margin)`` times the matcher's (:func:`prefers_candidate`), ``[0, 1)``.
        image_error: per-pixel error of a reconstruction (default: SSIM + L1).
        agreement_px: two disparities within this many pixels agree.

    Returns:
        :class:`Fusion`.
    """
    check_tensor(network, "network", ("B", 1, "H", "W"))
    check_tensor(matcher, "matcher", ("B", 1, "H", "W"))
    check_same_batch_and_size(network, "network", matcher, "matcher")
    if not agreement_px > 0:
        raise ValueError(f"agreement_px: expected a positive number of pixels, got {agreement_px!r}")
    has_matcher = torch.isfinite(matcher) & (matcher > 0)
    matcher_clean = torch.where(has_matcher, matcher, torch.zeros_like(matcher))
    matcher_error = torch.where(has_matcher, reconstruction_error(matcher_clean, left, right, image_error),
                                torch.full_like(matcher, float("inf")))
    network_error = reconstruction_error(network, left, right, image_error)
    use_network = ~has_matcher | prefers_candidate(network_error, matcher_error, margin)
    agree = has_matcher & ((network - matcher_clean).abs() <= agreement_px)
    source = torch.where(use_network & ~agree, torch.full_like(network, SOURCE_NETWORK, dtype=torch.uint8),
                         torch.where(agree, torch.full_like(network, SOURCE_AGREE, dtype=torch.uint8),
                                     torch.full_like(network, SOURCE_MATCHER, dtype=torch.uint8)))
    from_network = source == SOURCE_NETWORK
    disparity = torch.where(from_network, network, matcher_clean)
    return Fusion(disparity, source, torch.where(from_network, network_error, matcher_error))


def source_shares(source: torch.Tensor, valid: torch.Tensor | None = None) -> dict[str, float]:
    """Share of pixels from each source, ``{"network": .., "sgbm": .., "agree": ..}`` summing to 1.

    Args:
        source: ``(B, 1, H, W)`` source codes (:attr:`Fusion.source`).
        valid: optional ``(B, 1, H, W)`` bool: count only these pixels (e.g. the published ones).
    """
    check_tensor(source, "source", ("B", 1, "H", "W"), floating=False)
    if valid is not None and (valid.shape != source.shape or valid.dtype != torch.bool):
        raise ValueError(f"valid: expected a bool tensor of shape {tuple(source.shape)} like source, "
                         f"got {valid.dtype} {tuple(valid.shape)}")
    codes = source.reshape(-1).long()
    # Counting with weights: a third of the time of indexing the valid pixels first.
    weights = valid.reshape(-1).to(torch.float64) if valid is not None else None
    counts = torch.bincount(codes, weights=weights, minlength=len(SOURCE_NAMES))
    total = max(float(weights.sum()) if weights is not None else float(codes.numel()), 1.0)
    return {name: float(counts[code]) / total for code, name in enumerate(SOURCE_NAMES)}
