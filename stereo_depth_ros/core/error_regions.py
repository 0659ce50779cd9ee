"""Where a disparity map's errors are: its ground-truth pixels split into four disjoint regions.

A whole-image bad-2 says how many pixels are wrong, not why. Stereo methods fail in different places
(a learned network on occlusions and depth edges, a local matcher on weak texture), so
:func:`error_regions` splits the ground-truth pixels of a scene, in this order of precedence:

* ``occluded``: the scene's occlusion mask (the left pixel is hidden in the right view, so no
  matcher can see its match; the right answer is the background's disparity);
* ``edges``: within ``edge_radius_px`` (4-connected steps) of a depth edge, a jump of more than
  ``edge_jump_px`` between two neighbouring ground-truth pixels (edge fattening, thin structures);
* ``weak_texture``: the least textured ``weak_fraction`` of the scene's ground-truth pixels, by the
  mean squared image gradient in a ``window_px`` box (matching is ambiguous there);
* ``rest``: everything else.

:func:`count_bad_by_region` counts the pixels whose error exceeds a threshold in each region (holes
count as errors, as in the "all" metrics of :mod:`.metrics`), so the regions' points add up to the
whole-image bad-k. numpy only: no ROS, no torch.
"""

from __future__ import annotations

import numpy as np

from .metrics import _check_map, gt_valid_mask, prediction_valid_mask

__all__ = ["REGIONS", "error_regions", "count_bad_by_region"]

REGIONS = ("occluded", "edges", "weak_texture", "rest")


def _dilate(mask: np.ndarray, steps: int) -> np.ndarray:
    """Grow ``mask`` by ``steps`` 4-connected steps (a diamond of that radius)."""
    out = mask.copy()
    for _ in range(steps):
        grown = out.copy()
        grown[1:] |= out[:-1]
        grown[:-1] |= out[1:]
        grown[:, 1:] |= out[:, :-1]
        grown[:, :-1] |= out[:, 1:]
        out = grown
    return out


def _box_mean(x: np.ndarray, window: int) -> np.ndarray:
    """Mean over a ``window`` x ``window`` box (edge-replicated borders), via an integral image."""
    half = window // 2
    padded = np.pad(x, ((half + 1, half), (half + 1, half)), mode="edge")
    padded[0, :] = 0.0
    padded[:, 0] = 0.0
    integral = padded.cumsum(axis=0).cumsum(axis=1)
    h, w = x.shape
    total = (integral[window:window + h, window:window + w] - integral[:h, window:window + w]
             - integral[window:window + h, :w] + integral[:h, :w])
    return total / (window * window)


def error_regions(
    gt: np.ndarray,
    image: np.ndarray,
    occlusion: np.ndarray | None = None,
    *,
    edge_jump_px: float = 1.5,
    edge_radius_px: int = 3,
    weak_fraction: float = 0.25,
    window_px: int = 9,
) -> dict[str, np.ndarray]:
    """Split the ground-truth pixels into the disjoint :data:`REGIONS` (see the module docstring).

    Args:
        gt: ``(H, W)`` ground-truth disparity in pixels (finite ``> 0`` = known).
        image: ``(H, W)`` or ``(H, W, C)`` left image (any numeric range; channels are averaged).
        occlusion: optional ``(H, W)`` bool, True where the left pixel is occluded in the right view;
            without it ``occluded`` is empty.
        edge_jump_px: a disparity difference between neighbouring known pixels above this is a depth edge.
        edge_radius_px: pixels within this many 4-connected steps of an edge are ``edges`` (``>= 0``).
        weak_fraction: share of the known pixels, in ``[0, 1]``, taken as ``weak_texture`` (the least
            textured ones, before the occluded and edge pixels are taken out).
        window_px: odd box size of the texture measure, in pixels.

    Returns:
        ``{region: (H, W) bool}`` for every name in :data:`REGIONS`; disjoint, and together exactly the
        known ground-truth pixels.

    Raises:
        ValueError: arrays of the wrong shape or type, or a setting out of range.
    """
    gt = _check_map(gt, "gt")
    shape = gt.shape
    if not isinstance(image, np.ndarray) or image.shape[:2] != shape or image.ndim not in (2, 3):
        got = f"shape {image.shape}" if isinstance(image, np.ndarray) else type(image).__name__
        raise ValueError(f"image: expected an (H, W) or (H, W, C) array with (H, W) = {shape}, got {got}")
    if occlusion is not None and not (isinstance(occlusion, np.ndarray) and occlusion.dtype == np.bool_
                                      and occlusion.shape == shape):
        got = f"{occlusion.dtype} {occlusion.shape}" if isinstance(occlusion, np.ndarray) else type(occlusion).__name__
        raise ValueError(f"occlusion: expected a boolean numpy array of shape {shape}, got {got}")
    if not edge_jump_px > 0:
        raise ValueError(f"edge_jump_px: expected a positive number of pixels, got {edge_jump_px!r}")
    if isinstance(edge_radius_px, bool) or not isinstance(edge_radius_px, int) or edge_radius_px < 0:
        raise ValueError(f"edge_radius_px: expected an integer >= 0 (pixels), got {edge_radius_px!r}")
    if not 0.0 <= weak_fraction <= 1.0:
        raise ValueError(f"weak_fraction: expected a share in [0, 1], got {weak_fraction!r}")
    if isinstance(window_px, bool) or not isinstance(window_px, int) or window_px < 1 or window_px % 2 == 0:
        raise ValueError(f"window_px: expected an odd positive integer (pixels), got {window_px!r}")

    known = gt_valid_mask(gt)
    g = np.where(known, gt.astype(np.float64), 0.0)
    jump = np.zeros(shape, dtype=bool)
    horizontal = known[:, 1:] & known[:, :-1] & (np.abs(g[:, 1:] - g[:, :-1]) > edge_jump_px)
    vertical = known[1:] & known[:-1] & (np.abs(g[1:] - g[:-1]) > edge_jump_px)
    jump[:, 1:] |= horizontal
    jump[:, :-1] |= horizontal
    jump[1:] |= vertical
    jump[:-1] |= vertical

    grey = image.astype(np.float64).mean(axis=2) if image.ndim == 3 else image.astype(np.float64)
    gy, gx = np.gradient(grey)
    texture = _box_mean(gx * gx + gy * gy, window_px)
    weak = np.zeros(shape, dtype=bool)
    if known.any() and weak_fraction > 0:
        weak = known & (texture <= np.quantile(texture[known], weak_fraction))

    occluded = known & occlusion if occlusion is not None else np.zeros(shape, dtype=bool)
    edges = known & _dilate(jump, edge_radius_px) & ~occluded
    weak_texture = weak & ~occluded & ~edges
    rest = known & ~occluded & ~edges & ~weak_texture
    return {"occluded": occluded, "edges": edges, "weak_texture": weak_texture, "rest": rest}


def count_bad_by_region(
    pred: np.ndarray, gt: np.ndarray, regions: dict[str, np.ndarray], threshold_px: float = 2.0
) -> dict[str, int]:
    """Pixels of each region whose error exceeds ``threshold_px`` (holes count as errors).

    Args:
        pred: ``(H, W)`` predicted disparity in pixels (NaN, infinite or ``<= 0`` = hole).
        gt: ``(H, W)`` ground-truth disparity in pixels.
        regions: ``{name: (H, W) bool}``, e.g. from :func:`error_regions`.
        threshold_px: the error threshold (bad-2: 2 px).

    Returns:
        ``{name: count}`` in the order of ``regions``.

    Raises:
        ValueError: arrays of different shapes, or a threshold that is not positive.
    """
    gt = _check_map(gt, "gt")
    pred = _check_map(pred, "pred", gt.shape)
    if not threshold_px > 0:
        raise ValueError(f"threshold_px: expected a positive number of pixels, got {threshold_px!r}")
    with np.errstate(invalid="ignore"):
        bad = ~prediction_valid_mask(pred) | (np.abs(pred.astype(np.float64) - gt.astype(np.float64)) > threshold_px)
    bad &= gt_valid_mask(gt)
    out = {}
    for name, mask in regions.items():
        if not (isinstance(mask, np.ndarray) and mask.dtype == np.bool_ and mask.shape == gt.shape):
            got = f"{mask.dtype} {mask.shape}" if isinstance(mask, np.ndarray) else type(mask).__name__
            raise ValueError(f"regions[{name!r}]: expected a boolean array of shape {gt.shape}, got {got}")
        out[name] = int((bad & mask).sum())
    return out
