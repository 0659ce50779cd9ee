"""Proxy disparity labels for self-supervised adaptation: OpenCV SGBM's confident pixels.

On real images the pixels that OpenCV SGBM keeps after its left-right check, uniqueness test and
speckle filter are mostly right (Middlebury, our measurement: 2-9 % of them off by more than 2 px
at 76-97 % density), and they are right exactly where a photometric loss is weakest to tell right
from wrong: thin structures and depth edges. MAD++ (continual adaptation for deep stereo)
supervises online adaptation with such sparse labels from "any off-the-shelf stereo algorithm";
the network fills the holes. Two additions of ours, both measured on the real development scenes:

* the penalty is L1 **truncated** at ``truncation`` pixels, so a wrong label (a mismatch SGBM's
  checks let through) pulls with a bounded force: with untruncated L1, 100 steps left Teddy at
  19.0 % bad-2 (frozen 19.8, SGBM 18.0); truncated at 3-10 px, 13.6-15.1 %;
* SGBM's holes are mostly occlusions, where the right answer is the **background** behind the
  occluder. The classic SGM fill (Hirschmüller 2008) gives every hole the lower of the nearest
  valid disparities to its left and right on the same row; these filled labels enter with their
  own weight. On Art (24 % occluded pixels) 100 steps reached 28.0-28.8 % bad-2 with them and
  34.8 % without (SGBM 31.1 %); on Reindeer 16.2-18.1 against 22.5 (SGBM 23.8). On Teddy, whose
  holes are more often mismatches than occlusions, they cost about a point (14.6 against 13.6).

Measured with ``stereo_depth_evaluate --path ../shared/realdata/middlebury motorcycle
--adapt-steps 100`` and variations of ``--adapt-set`` (the README has the table).

Everything here runs on the host (OpenCV); :func:`proxy_loss` is torch and differentiable in the
prediction.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from .checks import check_tensor
from .sgbm import SgbmBackend

__all__ = ["ProxyLabels", "fill_background", "sgbm_proxy", "labels_from_disparity", "proxy_loss", "score_labels", "AGREEMENT_PX"]

AGREEMENT_PX = 2.0
"""A prediction agrees with a proxy label when they differ by at most this (pixels)."""


@dataclass
class ProxyLabels:
    """Proxy labels of a batch.

    Attributes:
        disparity: ``(B, 1, H, W)`` float32 label in pixels (0 where there is none).
        valid: ``(B, 1, H, W)`` bool, the matcher's own confident pixels.
        filled: ``(B, 1, H, W)`` bool, holes given the background's disparity (disjoint from ``valid``).
        reference: optional ``(B, 1, H, W)`` disparity of the network as it was before adaptation
            (pixels): a second hypothesis for the photometric gate
            (:func:`~stereo_depth_ros.core.self_supervision.gate_labels`).
        learnable: optional ``(B, 1, H, W)`` bool, set by the gate with a reference: the pixels where
            the matcher's label beat the reference (something to learn; elsewhere the label holds
            the network where it started).
    """

    disparity: torch.Tensor
    valid: torch.Tensor
    filled: torch.Tensor
    reference: torch.Tensor | None = None
    learnable: torch.Tensor | None = None

    @property
    def density(self) -> float:
        """Share of pixels with a confident label (``valid``), in [0, 1]."""
        return float(self.valid.float().mean())


def fill_background(disparity: np.ndarray) -> np.ndarray:
    """Fill NaN holes row by row with the lower of the nearest valid disparities to the left and right.

    A hole next to a depth edge is usually occluded background, whose disparity is the smaller of
    its two neighbours (SGM's occlusion filling). A row without any valid pixel stays NaN.

    Args:
        disparity: ``(H, W)`` float disparity in pixels, NaN = hole.

    Returns:
        ``(H, W)`` float32, holes filled where the row has a valid pixel.
    """
    if not isinstance(disparity, np.ndarray) or disparity.ndim != 2:
        got = f"shape {disparity.shape}" if isinstance(disparity, np.ndarray) else type(disparity).__name__
        raise ValueError(f"disparity: expected an (H, W) array in pixels with NaN holes, got {got}")
    height, width = disparity.shape
    valid = np.isfinite(disparity)
    columns = np.arange(width)[None, :]
    left_index = np.maximum.accumulate(np.where(valid, columns, -1), axis=1)
    right_index = np.minimum.accumulate(np.where(valid, columns, width)[:, ::-1], axis=1)[:, ::-1]
    rows = np.arange(height)[:, None]
    safe = np.nan_to_num(disparity, nan=np.inf)
    from_left = np.where(left_index >= 0, safe[rows, np.clip(left_index, 0, width - 1)], np.inf)
    from_right = np.where(right_index < width, safe[rows, np.clip(right_index, 0, width - 1)], np.inf)
    out = np.where(valid, disparity, np.minimum(from_left, from_right)).astype(np.float32)
    out[~np.isfinite(out)] = np.nan
    return out


def _to_numpy_image(image: torch.Tensor) -> np.ndarray:
    """``(3, H, W)`` tensor in [0, 1] -> ``(H, W, 3)`` float32 numpy on the host."""
    return image.detach().float().clamp(0.0, 1.0).permute(1, 2, 0).cpu().numpy()


@torch.no_grad()
def sgbm_proxy(left: torch.Tensor, right: torch.Tensor, matcher: SgbmBackend, fill: bool = True) -> ProxyLabels:
    """SGBM's confident disparities of each pair, with background-filled holes.

    Args:
        left, right: ``(B, 3, H, W)`` rectified images in ``[0, 1]`` (any device).
        matcher: the SGBM backend (its search range, left-right check, uniqueness, speckle filter).
        fill: also label the holes through :func:`fill_background`.

    Returns:
        :class:`ProxyLabels` on the images' device.
    """
    check_tensor(left, "left", ("B", 3, "H", "W"))
    check_tensor(right, "right", ("B", 3, "H", "W"))
    if left.shape != right.shape:
        raise ValueError(f"right: expected shape {tuple(left.shape)} like left, got {tuple(right.shape)}")
    disparities = np.stack([matcher(_to_numpy_image(left[b]), _to_numpy_image(right[b])) for b in range(left.shape[0])])
    return labels_from_disparity(disparities, left.device, fill)


def labels_from_disparity(disparity: np.ndarray, device: torch.device | str = "cpu", fill: bool = True) -> ProxyLabels:
    """Proxy labels from a matcher's disparities (NaN in its holes), already computed.

    Args:
        disparity: ``(B, H, W)`` (or ``(H, W)``) float disparity in pixels, NaN where the matcher has
            no confident value.
        device: where the labels go.
        fill: also label the holes through :func:`fill_background`.

    Returns:
        :class:`ProxyLabels` ``(B, 1, H, W)``.
    """
    if not isinstance(disparity, np.ndarray) or disparity.ndim not in (2, 3):
        got = f"shape {disparity.shape}" if isinstance(disparity, np.ndarray) else type(disparity).__name__
        raise ValueError(f"disparity: expected a (B, H, W) or (H, W) array in pixels with NaN holes, got {got}")
    batch = disparity[None] if disparity.ndim == 2 else disparity
    labels, valids, filleds = [], [], []
    for d in batch:
        valid = np.isfinite(d)
        if fill:
            d = fill_background(d)
        filled = np.isfinite(d) & ~valid
        labels.append(np.nan_to_num(d, nan=0.0))
        valids.append(valid)
        filleds.append(filled)
    as_tensor = lambda arrays: torch.from_numpy(np.stack(arrays)[:, None]).to(device)  # noqa: E731
    return ProxyLabels(as_tensor(labels).float(), as_tensor(valids), as_tensor(filleds))


def proxy_loss(
    disparity: torch.Tensor, labels: ProxyLabels, truncation: float = 10.0, fill_weight: float = 1.0
) -> tuple[torch.Tensor, dict[str, float]]:
    """Truncated L1 between the prediction and the proxy labels.

    ``sum(w * min(|d - p|, truncation)) / sum(w)`` with ``w = 1`` on confident labels,
    ``fill_weight`` on filled ones, 0 elsewhere.

    Args:
        disparity: ``(B, 1, H, W)`` predicted disparity in pixels (with gradient).
        labels: :class:`ProxyLabels` of the same size.
        truncation: largest per-pixel penalty in pixels (> 0).
        fill_weight: weight of the background-filled labels (0 ignores them).

    Returns:
        ``(loss, stats)``: the scalar loss (0 without any label) and ``density`` (share of
        confident labels), ``agreement`` (share of them within :data:`AGREEMENT_PX` of the
        prediction), ``epe`` (mean ``|d - p|`` on them, pixels).
    """
    check_tensor(disparity, "disparity", ("B", 1, "H", "W"))
    if labels.disparity.shape != disparity.shape:
        raise ValueError(f"labels: expected shape {tuple(disparity.shape)} like the disparity, "
                         f"got {tuple(labels.disparity.shape)}")
    if not truncation > 0:
        raise ValueError(f"truncation: expected a positive number of pixels, got {truncation}")
    if not fill_weight >= 0:
        raise ValueError(f"fill_weight: expected a weight >= 0, got {fill_weight}")
    error = (disparity - labels.disparity).abs()
    weight = labels.valid.to(error.dtype) + fill_weight * labels.filled.to(error.dtype)
    total = weight.sum()
    loss = (error.clamp(max=truncation) * weight).sum() / total.clamp(min=1.0)
    with torch.no_grad():
        on_valid = error[labels.valid]
        stats = {
            "density": labels.density,
            "learnable": float(labels.learnable.float().mean()) if labels.learnable is not None else float("nan"),
            "agreement": float((on_valid <= AGREEMENT_PX).float().mean()) if on_valid.numel() else float("nan"),
            "epe": float(on_valid.mean()) if on_valid.numel() else float("nan"),
        }
    return loss, stats


@torch.no_grad()
def score_labels(
    prediction: torch.Tensor, labels: ProxyLabels, ground_truth: torch.Tensor, threshold: float = AGREEMENT_PX,
) -> dict[str, float]:
    """How good a set of proxy labels is against the ground truth, and how much of the prediction's
    error it could correct (what limits adaptation by these labels).

    Args:
        prediction: ``(B, 1, H, W)`` the network's disparity (pixels).
        labels: :class:`ProxyLabels` of the same size (``learnable`` set when they went through the
            photometric gate with a reference).
        ground_truth: ``(B, 1, H, W)`` disparity in pixels; non-finite or ``<= 0`` is unknown.
        threshold: a disparity is right within this many pixels.

    Returns:
        Percentages over the known pixels: ``wrong`` (the prediction off by more than
        ``threshold``), ``valid_density`` and ``valid_bad`` (the matcher's confident labels and the
        share of them that are wrong), ``filled_bad``; over the prediction's wrong pixels:
        ``fixable_valid`` / ``fixable_filled`` (a right confident / filled label),
        ``misleading`` (a wrong label) and ``unlabelled``; with ``learnable``: ``learnable``
        (share of known pixels), ``learnable_precision`` (share of them right) and ``learnable_fixes``
        (share of the wrong pixels that get a right label through the gate).
    """
    check_tensor(prediction, "prediction", ("B", 1, "H", "W"))
    for name, tensor in (("labels.disparity", labels.disparity), ("ground_truth", ground_truth)):
        if tensor.shape != prediction.shape:
            raise ValueError(f"{name}: expected shape {tuple(prediction.shape)} like the prediction, got {tuple(tensor.shape)}")
    known = torch.isfinite(ground_truth) & (ground_truth > 0)
    if not bool(known.any()):
        raise ValueError("ground_truth: expected some known pixels (finite, > 0), got none")
    gt = torch.where(known, ground_truth, torch.zeros_like(ground_truth))
    wrong = known & ((prediction - gt).abs() > threshold)
    right_label = (labels.disparity - gt).abs() <= threshold
    valid, filled = labels.valid & known, labels.filled & known
    pct = lambda part, whole: 100.0 * float(part.sum()) / max(1, int(whole.sum()))  # noqa: E731
    scores = {
        "wrong": pct(wrong, known), "valid_density": pct(valid, known), "valid_bad": pct(valid & ~right_label, valid),
        "filled_bad": pct(filled & ~right_label, filled),
        "fixable_valid": pct(wrong & valid & right_label, wrong), "fixable_filled": pct(wrong & filled & right_label, wrong),
        "misleading": pct(wrong & (valid | filled) & ~right_label, wrong), "unlabelled": pct(wrong & ~valid & ~filled, wrong),
    }
    if labels.learnable is not None:
        learnable = labels.learnable & known
        scores.update(learnable=pct(learnable, known), learnable_precision=pct(learnable & right_label, learnable),
                      learnable_fixes=pct(wrong & learnable & right_label, wrong))
    return scores
