"""Validity of predicted disparity: which left pixels the node can trust.

Each test is a small function returning a ``(B, 1, H, W)`` bool mask (True = valid, except
:func:`occlusion_mask`, which marks occluded pixels); :func:`compute_validity` combines them with
thresholds from :class:`ValidityConfig` into one mask and a confidence in ``[0, 1]``. Masks are
not differentiable and run under ``torch.no_grad``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from .checks import check_positive, check_same_batch_and_size, check_tensor
from .fusion import Fusion
from .geometry import disparity_to_depth
from .losses import left_right_consistency, photometric_error
from .warping import sample_columns


def _channel_mean(image: torch.Tensor) -> torch.Tensor:
    """``(B, C, H, W)`` -> ``(B, 1, H, W)`` mean over channels (slice sums: a channel reduction is
    several times slower on CPU)."""
    total = image[:, :1]
    for c in range(1, image.shape[1]):
        total = total + image[:, c:c + 1]
    return total * (1.0 / image.shape[1]) if image.shape[1] > 1 else total

__all__ = [
    "ValidityConfig",
    "Validity",
    "out_of_view_mask",
    "left_right_check",
    "occlusion_mask",
    "photometric_mask",
    "depth_range_mask",
    "compute_validity",
]


@dataclass(frozen=True)
class ValidityConfig:
    """Thresholds of the validity tests; ``None`` disables a test.

    Attributes:
        lr_max_difference: left-right check threshold in pixels. 3 px: on the real development
            scenes a 1 px check threw away more right pixels than wrong ones (15.2 % of the
            ground-truth pixels right, 9.0 % wrong, median over scenes); at 3 px 4.4 % and 5.4 %.
        photometric_max: largest photometric error (``0.85 (1-SSIM)/2 + 0.15 L1``) accepted.
        min_depth, max_depth: accepted depth range in metres.
        use_occlusion: drop pixels that the left disparity itself says are occluded in the right view.
        min_disparity: disparities at or below this (pixels) are invalid (depth would be unbounded).
    """

    lr_max_difference: float | None = 3.0
    photometric_max: float | None = 0.3
    min_depth: float = 0.1
    max_depth: float = 100.0
    use_occlusion: bool = True
    min_disparity: float = 0.0

    def __post_init__(self) -> None:
        if self.lr_max_difference is not None:
            check_positive(self.lr_max_difference, "lr_max_difference")
        if self.photometric_max is not None:
            check_positive(self.photometric_max, "photometric_max")
        check_positive(self.min_depth, "min_depth", allow_zero=True)
        check_positive(self.max_depth, "max_depth")
        check_positive(self.min_disparity, "min_disparity", allow_zero=True)
        if self.max_depth <= self.min_depth:
            raise ValueError(f"max_depth: expected more than min_depth={self.min_depth}, got {self.max_depth}")


@dataclass
class Validity:
    """Result of :func:`compute_validity`.

    Attributes:
        mask: ``(B, 1, H, W)`` bool, True where every enabled test passes.
        confidence: ``(B, 1, H, W)`` in ``[0, 1]``, 0 where ``mask`` is False.
        depth: ``(B, 1, H, W)`` depth in metres, 0 where the disparity is not positive.
        photometric_error: ``(B, 1, H, W)`` error of the right->left reconstruction of the
            luminance (mean of the channels), or None when no images were given.
        components: the individual bool masks by name (``"in_view"``, ``"left_right"``, ...).
    """

    mask: torch.Tensor
    confidence: torch.Tensor
    depth: torch.Tensor
    photometric_error: torch.Tensor | None
    components: dict[str, torch.Tensor] = field(default_factory=dict)


def out_of_view_mask(disparity_left: torch.Tensor) -> torch.Tensor:
    """Valid where the left pixel's match ``u - d`` lies inside the right image.

    Args:
        disparity_left: ``(B, 1, H, W)`` left disparity in pixels.

    Returns:
        ``(B, 1, H, W)`` bool.
    """
    check_tensor(disparity_left, "disparity_left", ("B", 1, "H", "W"))
    width = disparity_left.shape[-1]
    u = torch.arange(width, device=disparity_left.device, dtype=disparity_left.dtype).view(1, 1, 1, width)
    target = u - disparity_left
    return torch.isfinite(target) & (target >= 0) & (target <= width - 1)


def left_right_check(
    disparity_left: torch.Tensor, disparity_right: torch.Tensor, max_difference: float = 1.0
) -> torch.Tensor:
    """Valid where ``|d_L(u) - d_R(u - d_L(u))| <= max_difference`` (pixels) and the match is in view.

    Args:
        disparity_left, disparity_right: ``(B, 1, H, W)`` disparities in pixels.
        max_difference: threshold in pixels.

    Returns:
        ``(B, 1, H, W)`` bool.
    """
    check_positive(max_difference, "max_difference")
    difference = left_right_consistency(disparity_left, disparity_right)
    return (difference <= max_difference) & out_of_view_mask(disparity_left)


def occlusion_mask(disparity_left: torch.Tensor) -> torch.Tensor:
    """Left pixels hidden in the right view according to the left disparity itself.

    Left pixel ``u`` lands at ``u - d(u)`` in the right image. A pixel ``u' > u`` lands on it or
    to its left when ``d(u') - u' >= d(u) - u``: the nearer surface at ``u'`` hides ``u``. So ``u``
    is occluded iff the running maximum of ``d - u`` over the pixels to its right reaches
    ``d(u) - u``, an ``O(H W)`` reverse cumulative maximum.

    Args:
        disparity_left: ``(B, 1, H, W)`` left disparity in pixels.

    Returns:
        ``(B, 1, H, W)`` bool, True = occluded.
    """
    check_tensor(disparity_left, "disparity_left", ("B", 1, "H", "W"))
    width = disparity_left.shape[-1]
    u = torch.arange(width, device=disparity_left.device, dtype=disparity_left.dtype).view(1, 1, 1, width)
    return _occluded_from_key(torch.nan_to_num(disparity_left, nan=-1e9, posinf=-1e9, neginf=-1e9) - u)


def _occluded_from_key(key: torch.Tensor) -> torch.Tensor:
    """Occlusion from ``key = d - u`` ``(B, 1, H, W)`` (finite): True where a pixel to the right
    has a key at least as large."""
    # Maximum over u' >= u (reverse cummax), then shift by one to get u' > u.
    suffix_max = torch.flip(torch.cummax(torch.flip(key, dims=[-1]), dim=-1).values, dims=[-1])
    strictly_right = torch.cat([suffix_max[..., 1:], torch.full_like(suffix_max[..., :1], -float("inf"))], dim=-1)
    return strictly_right >= key


def photometric_mask(error: torch.Tensor, threshold: float) -> torch.Tensor:
    """Valid where the per-pixel photometric error is at most ``threshold``.

    Args:
        error: ``(B, 1, H, W)`` photometric error.
        threshold: largest accepted error.

    Returns:
        ``(B, 1, H, W)`` bool.
    """
    check_tensor(error, "error", ("B", 1, "H", "W"))
    check_positive(threshold, "threshold")
    return torch.isfinite(error) & (error <= threshold)


def depth_range_mask(depth: torch.Tensor, min_depth: float, max_depth: float) -> torch.Tensor:
    """Valid where ``min_depth <= depth <= max_depth`` (metres) and finite.

    Args:
        depth: ``(B, 1, H, W)`` depth in metres.

    Returns:
        ``(B, 1, H, W)`` bool.
    """
    check_tensor(depth, "depth", ("B", 1, "H", "W"))
    check_positive(min_depth, "min_depth", allow_zero=True)
    check_positive(max_depth, "max_depth")
    if max_depth <= min_depth:
        raise ValueError(f"max_depth: expected more than min_depth={min_depth}, got {max_depth}")
    return torch.isfinite(depth) & (depth >= min_depth) & (depth <= max_depth) & (depth > 0)


@torch.no_grad()
def compute_validity(
    disparity_left: torch.Tensor,
    focal: float | torch.Tensor,
    baseline: float | torch.Tensor,
    left: torch.Tensor | None = None,
    right: torch.Tensor | None = None,
    disparity_right: torch.Tensor | None = None,
    config: ValidityConfig = ValidityConfig(),
    doffs: float = 0.0,
    fusion: Fusion | None = None,
) -> Validity:
    """Combine every available validity test into a mask and a confidence.

    Tests: positive finite disparity, match in view, depth range, occlusion (if enabled), left-right
    check (if ``disparity_right`` is given), photometric error of the right->left reconstruction (if
    ``left`` and ``right`` are given). The confidence multiplies linear terms ``1 - x / threshold``
    of the left-right difference and the photometric error, zero where the mask is False.

    With ``fusion`` (``disparity_left`` is then the fused disparity, :mod:`.fusion`), a pixel whose
    value is the matcher's has passed the matcher's own checks (its left-right check, uniqueness
    test and speckle filter): the network's occlusion, left-right and photometric tests do not
    apply to it, only positivity, view and depth range. Agreement of the two hypotheses is the
    strongest evidence measured on the real development scenes, so the confidence ranks the pixels
    ``agree`` (``0.7 + 0.3 p``), then the matcher's alone (``0.6 p``), then the network's alone
    (``0.5 x`` today's product), with ``p = 1 - error / photometric_max``: 3.7 %, 23.5 % and about
    70 % of them off by more than 2 px there (median over scenes).

    Args:
        disparity_left: ``(B, 1, H, W)`` left disparity in pixels.
        focal: rectified ``fx`` in pixels (number or ``(B,)``).
        baseline: metres (number or ``(B,)``).
        left, right: ``(B, C, H, W)`` rectified images in ``[0, 1]`` (optional, both or neither).
        disparity_right: ``(B, 1, H, W)`` right disparity in pixels (optional).
        config: thresholds.
        doffs: ``cx_left - cx_right`` in pixels (:attr:`StereoCamera.doffs`): depth is
            ``f B / (d - doffs)``; 0 for rigs with equal principal points.
        fusion: the per-pixel sources of a fused ``disparity_left``
            (:func:`~stereo_depth_ros.core.fusion.fuse_disparities`), or None for the network alone.

    Returns:
        :class:`Validity`; with ``fusion`` its ``components`` also hold ``"matcher"``, the pixels
        exempt from the network's tests.
    """
    check_tensor(disparity_left, "disparity_left", ("B", 1, "H", "W"))
    if fusion is not None and (fusion.source.shape != disparity_left.shape or fusion.source.device != disparity_left.device):
        raise ValueError(f"fusion.source: expected shape {tuple(disparity_left.shape)} on {disparity_left.device} like "
                         f"disparity_left, got {tuple(fusion.source.shape)} on {fusion.source.device}")
    if (left is None) != (right is None):
        raise ValueError("compute_validity: expected both left and right images or neither, got only one")
    if not isinstance(config, ValidityConfig):
        raise ValueError(f"config: expected a ValidityConfig, got {type(config).__name__}")
    if disparity_right is not None:
        check_tensor(disparity_right, "disparity_right", ("B", 1, "H", "W"))
        check_same_batch_and_size(disparity_left, "disparity_left", disparity_right, "disparity_right")
    if left is not None and right is not None:
        check_tensor(left, "left", ("B", "C", "H", "W"))
        check_tensor(right, "right", ("B", "C", "H", "W"))
        check_same_batch_and_size(disparity_left, "disparity_left", left, "left")
        check_same_batch_and_size(disparity_left, "disparity_left", right, "right")
    # This runs on every published frame, so the tests share their intermediate maps (one
    # finiteness test, one cleaned disparity, one warp for the image and the right disparity)
    # instead of calling the single-test functions above; tests pin that both agree.
    d = disparity_left
    width = d.shape[-1]
    finite = torch.isfinite(d)
    clean = torch.where(finite, d, torch.zeros_like(d))  # non-finite -> 0: never positive, never occludes
    positive = clean > max(config.min_disparity, 0.0)
    # f B / (d - doffs) where positive, else 0 (disparity_to_depth without its repeated finiteness tests).
    scale = disparity_to_depth(torch.ones_like(d[:, :, :1, :1]), focal, baseline)
    if doffs:
        shifted = clean - float(doffs)
        positive = positive & (shifted > 0)
        depth = torch.where(positive, scale / torch.where(positive, shifted, torch.ones_like(d)), torch.zeros_like(d))
    else:
        depth = torch.where(positive, scale / clean, torch.zeros_like(d))
    u = torch.arange(width, device=d.device, dtype=d.dtype).view(1, 1, 1, width)
    match = u - clean  # where the left pixel lands in the right image
    components: dict[str, torch.Tensor] = {
        "positive": positive,
        "in_view": finite & (match >= 0) & (match <= width - 1),
        "depth_range": (depth >= config.min_depth) & (depth <= config.max_depth) & (depth > 0),
    }
    if config.use_occlusion:
        components["not_occluded"] = ~_occluded_from_key(-match)

    use_lr = disparity_right is not None and config.lr_max_difference is not None
    use_images = left is not None and right is not None
    sources = []
    # With a fusion the reconstruction error of every published pixel is known already (on the
    # same luminance): the image is not warped again.
    known_error = fusion.error if fusion is not None and fusion.error is not None else None
    if use_images and known_error is None:
        # Luminance is enough to judge a match and costs a third of RGB.
        left_grey = _channel_mean(left).to(d.dtype)
        sources.append(_channel_mean(right).to(d.dtype))
    if use_lr:
        sources.append(disparity_right)
    # One warp of the right luminance and the right disparity to the left view.
    warped = sample_columns(torch.cat(sources, dim=1), match) if sources else None

    confidence = torch.ones_like(d)
    photo_term = None
    if use_lr:
        difference = (clean - warped[:, -1:]).abs()
        components["left_right"] = finite & (difference <= config.lr_max_difference)
        confidence = confidence * (1 - difference / config.lr_max_difference).clamp(0, 1)
    error = None
    if use_images:
        error = known_error.to(d.dtype) if known_error is not None else photometric_error(warped[:, :1], left_grey)
        if config.photometric_max is not None:
            components["photometric"] = error <= config.photometric_max
            photo_term = (1 - error / config.photometric_max).clamp(0, 1)
            confidence = confidence * photo_term
    mask = positive.clone()
    if fusion is None:
        for component in components.values():
            mask &= component
    else:
        always = ("positive", "in_view", "depth_range")
        network_tests = torch.ones_like(mask)
        for name, component in components.items():
            if name in always:
                mask &= component
            else:
                network_tests &= component
        from_matcher = fusion.from_matcher
        mask &= from_matcher | network_tests
        components["matcher"] = from_matcher
        p = photo_term if photo_term is not None else torch.ones_like(confidence)
        confidence = torch.where(fusion.agree, 0.7 + 0.3 * p, torch.where(from_matcher, 0.6 * p, 0.5 * confidence))
    confidence = torch.where(mask, confidence, torch.zeros_like(confidence))
    return Validity(mask=mask, confidence=confidence, depth=depth, photometric_error=error, components=components)
