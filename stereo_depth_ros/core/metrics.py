"""Stereo evaluation metrics: disparity (EPE, bad-k, D1-all, density) and depth (AbsRel, RMSE, δ<1.25).

All arrays are numpy ``(H, W)``: disparities in pixels, depths in metres. ROS-free, torch-free.

Which pixels are evaluated
--------------------------
* **GT-valid**: ground-truth disparity finite and ``> 0`` (KITTI's 16-bit PNGs store 0 for "no
  ground truth"; decode them to 0 or NaN first). An optional boolean ``mask`` (``True`` = evaluate)
  is intersected with it: pass ``~occlusion`` for non-occluded ("noc") numbers, or another method's
  valid pixels to compare two methods on the same support.
* **Hole**: a predicted disparity that is NaN, infinite or ``<= 0`` (no estimate, or an estimate at
  infinite depth). OpenCV SGBM's invalid pixels become NaN in :mod:`.sgbm`.

Every metric is computed two ways (a :class:`DisparityEvaluation` holds both):

* ``all`` -- over all GT-valid pixels; holes count as errors:
    - bad-k, D1-all and δ<1.25: a hole is a failure (always counted as bad / outlier / not within δ);
    - EPE: a hole's error is ``|d_gt|`` (the hole is read as the prediction ``d = 0``);
    - AbsRel and RMSE: the same rule carried over to depth. ``d = 0`` means infinite depth, which the
      usual prediction clamp ``Z_pred <- clip(Z_pred, min_depth, max_depth)`` turns into ``max_depth``;
      so a hole contributes ``|max_depth - Z_gt| / Z_gt`` to AbsRel and ``(max_depth - Z_gt)^2`` to
      the RMSE mean -- the largest error a clamped prediction can have for a near pixel. With the
      default ``max_depth = 80 m`` (the KITTI/Eigen convention) holes dominate the "all" depth
      numbers of a sparse method by design; read them with the density.
* ``valid`` -- over the method's own valid pixels ∩ GT-valid (holes are left out).

``density`` is the percentage of evaluated GT-valid pixels that carry a prediction.

Depth metrics (need ``focal`` in pixels and ``baseline`` in metres): ``Z = f·B / d`` for prediction
and ground truth; the predicted depth is clamped to ``[min_depth, max_depth]`` (a tiny positive
disparity would otherwise give an unbounded error); pixels whose *ground-truth* depth lies outside
``[min_depth, max_depth]`` are left out of the depth metrics only (Eigen et al. practice), so the
depth pixel count can be smaller than the disparity pixel count. Without calibration the depth
metrics are NaN.

Aggregation over samples (:func:`aggregate`) adds the per-sample sums and counts and divides once:
a pixel-weighted mean ("mean of sums"), not the mean of per-sample means. Every evaluated pixel of
the data set weighs the same, so a frame with few GT pixels does not weigh as much as a full one.
RMSE is aggregated as ``sqrt(sum of squared errors / depth pixels)``.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields
from typing import Any, Iterable, Sequence

import numpy as np

__all__ = [
    "BAD_THRESHOLDS",
    "D1_ABS_THRESHOLD",
    "D1_REL_THRESHOLD",
    "DELTA_THRESHOLD",
    "MetricSet",
    "DisparityEvaluation",
    "gt_valid_mask",
    "prediction_valid_mask",
    "sparsification",
    "evaluate_disparity",
    "aggregate",
    "DISPARITY_BANDS",
    "band_edges",
    "evaluate_by_disparity",
]

BAD_THRESHOLDS = (1.0, 2.0, 3.0)  # pixels, for bad-1 / bad-2 / bad-3 (error strictly greater)
D1_ABS_THRESHOLD = 3.0  # pixels (KITTI 2015 D1: error > 3 px AND > 5 % of the ground truth)
D1_REL_THRESHOLD = 0.05
DELTA_THRESHOLD = 1.25  # max(Z/Z*, Z*/Z) < 1.25
DISPARITY_BANDS = (0.0, 16.0, 32.0, 64.0, 96.0, 128.0, math.inf)  # pixels, edges of evaluate_by_disparity's bands


@dataclass(frozen=True)
class MetricSet:
    """Sufficient statistics of one evaluation mode; the metrics are properties computed from them.

    Keeping sums (not means) makes aggregation over samples exact (see :func:`aggregate`).

    Attributes:
        pixels: number of pixels in the disparity metrics.
        sum_abs_error: sum of ``|d - d_gt|`` in pixels.
        sum_error: sum of the signed error ``d - d_gt`` in pixels (a hole reads as ``d = 0``).
        bad1, bad2, bad3: counts of pixels with error ``> 1, 2, 3`` px (holes included in "all").
        d1: count of KITTI D1 outliers (error ``> 3`` px and ``> 5 %`` of ``d_gt``).
        depth_pixels: number of pixels in the depth metrics (GT depth within the depth range).
        sum_abs_rel: sum of ``|Z - Z_gt| / Z_gt``.
        sum_sq_error: sum of ``(Z - Z_gt)^2`` in square metres.
        delta1: count of pixels with ``max(Z/Z_gt, Z_gt/Z) < 1.25``.
    """

    pixels: int = 0
    sum_abs_error: float = 0.0
    sum_error: float = 0.0
    bad1: int = 0
    bad2: int = 0
    bad3: int = 0
    d1: int = 0
    depth_pixels: int = 0
    sum_abs_rel: float = 0.0
    sum_sq_error: float = 0.0
    delta1: int = 0

    def __add__(self, other: "MetricSet") -> "MetricSet":
        if not isinstance(other, MetricSet):
            return NotImplemented
        return MetricSet(**{f.name: getattr(self, f.name) + getattr(other, f.name) for f in fields(self)})

    @staticmethod
    def _ratio(num: float, den: int, scale: float = 1.0) -> float:
        return scale * num / den if den > 0 else math.nan

    @property
    def epe(self) -> float:
        """End-point error: mean absolute disparity error in pixels (NaN without pixels)."""
        return self._ratio(self.sum_abs_error, self.pixels)

    @property
    def bias(self) -> float:
        """Mean signed disparity error ``d - d_gt`` in pixels: negative = too far (NaN without pixels)."""
        return self._ratio(self.sum_error, self.pixels)

    @property
    def bad1_pct(self) -> float:
        """Percentage of pixels with error > 1 px."""
        return self._ratio(self.bad1, self.pixels, 100.0)

    @property
    def bad2_pct(self) -> float:
        """Percentage of pixels with error > 2 px."""
        return self._ratio(self.bad2, self.pixels, 100.0)

    @property
    def bad3_pct(self) -> float:
        """Percentage of pixels with error > 3 px."""
        return self._ratio(self.bad3, self.pixels, 100.0)

    @property
    def d1_all(self) -> float:
        """KITTI D1 (percentage of pixels with error > 3 px and > 5 % of the ground truth)."""
        return self._ratio(self.d1, self.pixels, 100.0)

    @property
    def abs_rel(self) -> float:
        """Mean ``|Z - Z_gt| / Z_gt`` (a fraction, not a percentage)."""
        return self._ratio(self.sum_abs_rel, self.depth_pixels)

    @property
    def rmse(self) -> float:
        """Root mean square depth error in metres."""
        return math.sqrt(self.sum_sq_error / self.depth_pixels) if self.depth_pixels > 0 else math.nan

    @property
    def delta1_pct(self) -> float:
        """Percentage of depth pixels with ``max(Z/Z_gt, Z_gt/Z) < 1.25``."""
        return self._ratio(self.delta1, self.depth_pixels, 100.0)

    def metrics(self) -> dict[str, float]:
        """The metric values: ``epe``, ``bias`` (px), ``bad1/bad2/bad3/d1_all/delta1`` (%), ``abs_rel``, ``rmse`` (m)."""
        return {
            "epe": self.epe,
            "bias": self.bias,
            "bad1": self.bad1_pct,
            "bad2": self.bad2_pct,
            "bad3": self.bad3_pct,
            "d1_all": self.d1_all,
            "abs_rel": self.abs_rel,
            "rmse": self.rmse,
            "delta1": self.delta1_pct,
            "pixels": self.pixels,
            "depth_pixels": self.depth_pixels,
        }

    def sums(self) -> dict[str, float]:
        """The raw sums and counts (JSON-friendly), enough to re-aggregate later."""
        return asdict(self)


@dataclass(frozen=True)
class DisparityEvaluation:
    """Result of evaluating one prediction (or an aggregate of several).

    Attributes:
        all: metrics over all evaluated GT-valid pixels, holes counted as errors.
        valid: metrics over the prediction's valid pixels ∩ evaluated GT-valid pixels.
        gt_pixels: evaluated GT-valid pixels (GT-valid ∩ mask).
        predicted_pixels: those of them with a valid (finite, > 0) prediction.
    """

    all: MetricSet
    valid: MetricSet
    gt_pixels: int
    predicted_pixels: int

    @property
    def density(self) -> float:
        """Percentage of evaluated GT-valid pixels that have a prediction (NaN without GT pixels)."""
        return 100.0 * self.predicted_pixels / self.gt_pixels if self.gt_pixels > 0 else math.nan

    def __add__(self, other: "DisparityEvaluation") -> "DisparityEvaluation":
        if not isinstance(other, DisparityEvaluation):
            return NotImplemented
        return DisparityEvaluation(
            all=self.all + other.all,
            valid=self.valid + other.valid,
            gt_pixels=self.gt_pixels + other.gt_pixels,
            predicted_pixels=self.predicted_pixels + other.predicted_pixels,
        )

    def to_dict(self, include_sums: bool = False) -> dict[str, Any]:
        """JSON-friendly ``{"all": {...}, "valid": {...}, "density": %, ...}`` (NaN kept as float NaN)."""
        out: dict[str, Any] = {
            "all": self.all.metrics(),
            "valid": self.valid.metrics(),
            "density": self.density,
            "gt_pixels": self.gt_pixels,
            "predicted_pixels": self.predicted_pixels,
        }
        if include_sums:
            out["sums"] = {"all": self.all.sums(), "valid": self.valid.sums()}
        return out


def _check_map(x: Any, name: str, shape: tuple[int, ...] | None = None) -> np.ndarray:
    if not isinstance(x, np.ndarray):
        raise ValueError(f"{name}: expected a numpy array of shape (H, W) in pixels, got {type(x).__name__}")
    if x.ndim != 2:
        raise ValueError(f"{name}: expected shape (H, W), got {x.shape}")
    if shape is not None and x.shape != shape:
        raise ValueError(f"{name}: expected shape {shape} like the ground truth, got {x.shape}")
    if not (np.issubdtype(x.dtype, np.floating) or np.issubdtype(x.dtype, np.integer)):
        raise ValueError(f"{name}: expected a real-valued array, got dtype {x.dtype}")
    return x


def _check_calibration(value: Any, name: str) -> float:
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{name}: expected a finite positive number, got {type(value).__name__}") from None
    if not (math.isfinite(v) and v > 0):
        raise ValueError(f"{name}: expected a finite positive number, got {value}")
    return v


def gt_valid_mask(gt: np.ndarray) -> np.ndarray:
    """``(H, W)`` bool: ground-truth disparity finite and ``> 0``."""
    gt = _check_map(gt, "gt")
    g = gt.astype(np.float64, copy=False)
    return np.isfinite(g) & (g > 0)


def prediction_valid_mask(pred: np.ndarray) -> np.ndarray:
    """``(H, W)`` bool: predicted disparity finite and ``> 0`` (everything else is a hole)."""
    pred = _check_map(pred, "pred")
    p = pred.astype(np.float64, copy=False)
    return np.isfinite(p) & (p > 0)


def _disparity_sums(signed: np.ndarray, gt: np.ndarray, holes: np.ndarray) -> dict[str, Any]:
    """Disparity sums over a 1-D selection of signed errors; ``holes`` fail every thresholded metric."""
    t1, t2, t3 = BAD_THRESHOLDS
    err = np.abs(signed)
    d1 = (err > D1_ABS_THRESHOLD) & (err > D1_REL_THRESHOLD * gt)
    return {
        "pixels": int(err.size),
        "sum_abs_error": float(err.sum()),
        "sum_error": float(signed.sum()),
        "bad1": int(np.count_nonzero((err > t1) | holes)),
        "bad2": int(np.count_nonzero((err > t2) | holes)),
        "bad3": int(np.count_nonzero((err > t3) | holes)),
        "d1": int(np.count_nonzero(d1 | holes)),
    }


def _depth_sums(z: np.ndarray, z_gt: np.ndarray, holes: np.ndarray) -> dict[str, Any]:
    if z.size == 0:
        return {"depth_pixels": 0, "sum_abs_rel": 0.0, "sum_sq_error": 0.0, "delta1": 0}
    diff = z - z_gt
    ratio = np.maximum(z / z_gt, z_gt / z)
    return {
        "depth_pixels": int(z.size),
        "sum_abs_rel": float((np.abs(diff) / z_gt).sum()),
        "sum_sq_error": float((diff * diff).sum()),
        "delta1": int(np.count_nonzero((ratio < DELTA_THRESHOLD) & ~holes)),
    }


def evaluate_disparity(
    pred: np.ndarray,
    gt: np.ndarray,
    focal: float | None = None,
    baseline: float | None = None,
    mask: np.ndarray | None = None,
    min_depth: float = 1e-3,
    max_depth: float = 80.0,
    doffs: float = 0.0,
) -> DisparityEvaluation:
    """Evaluate a predicted disparity map against ground truth (see the module docstring for the rules).

    Args:
        pred: ``(H, W)`` predicted disparity in pixels; NaN / inf / ``<= 0`` are holes.
        gt: ``(H, W)`` ground-truth disparity in pixels; only finite ``> 0`` pixels are evaluated.
        focal: rectified focal length in pixels, for the depth metrics (with ``baseline``).
        baseline: stereo baseline in metres. With either missing the depth metrics are NaN.
        mask: optional ``(H, W)`` bool, ``True`` where to evaluate (e.g. ``~occlusion`` or another
            method's valid pixels); intersected with GT-valid.
        min_depth, max_depth: depth range in metres: predicted depth is clamped to it, a hole counts
            as ``max_depth``, and GT depths outside it are left out of the depth metrics.
        doffs: ``cx_left - cx_right`` in pixels: depths are ``f B / (d - doffs)`` (0 for most rigs;
            Middlebury 2014 scenes such as Motorcycle have their principal points apart).

    Returns:
        A :class:`DisparityEvaluation` with the ``all`` (holes as errors) and ``valid`` metric sets.

    Raises:
        ValueError: non-array or non-2-D inputs, shape mismatches, a non-boolean mask, a
            non-positive focal/baseline, or an empty or inverted depth range.
    """
    gt = _check_map(gt, "gt")
    pred = _check_map(pred, "pred", gt.shape)
    if mask is not None:
        if not isinstance(mask, np.ndarray) or mask.dtype != np.bool_:
            got = f"dtype {mask.dtype}" if isinstance(mask, np.ndarray) else type(mask).__name__
            raise ValueError(f"mask: expected a boolean numpy array of shape {gt.shape}, got {got}")
        if mask.shape != gt.shape:
            raise ValueError(f"mask: expected shape {gt.shape} like the ground truth, got {mask.shape}")
    if (focal is None) != (baseline is None):
        raise ValueError(
            f"focal and baseline: expected both (depth metrics) or neither, got focal={focal}, baseline={baseline}"
        )
    with_depth = focal is not None
    if with_depth:
        fb = _check_calibration(focal, "focal") * _check_calibration(baseline, "baseline")
    min_depth = _check_calibration(min_depth, "min_depth")
    max_depth = _check_calibration(max_depth, "max_depth")
    if not min_depth < max_depth:
        raise ValueError(f"min_depth, max_depth: expected min_depth < max_depth, got {min_depth} and {max_depth}")

    evaluated = gt_valid_mask(gt)
    if mask is not None:
        evaluated &= mask
    g = gt[evaluated].astype(np.float64)
    p = pred[evaluated].astype(np.float64)
    has_pred = np.isfinite(p) & (p > 0)
    holes = ~has_pred
    p_filled = np.where(has_pred, p, 0.0)  # a hole reads as d = 0 for the EPE
    signed = p_filled - g

    all_sums = _disparity_sums(signed, g, holes)
    valid_sums = _disparity_sums(signed[has_pred], g[has_pred], holes[has_pred])

    if with_depth:
        g_shifted, p_shifted = g - doffs, p_filled - doffs
        z_gt = np.where(g_shifted > 0, fb / np.where(g_shifted > 0, g_shifted, 1.0), np.inf)
        in_range = (z_gt >= min_depth) & (z_gt <= max_depth)
        ahead = has_pred & (p_shifted > 0)
        safe_p = np.where(ahead, p_shifted, 1.0)
        z = np.where(ahead, np.clip(fb / safe_p, min_depth, max_depth), max_depth)
        all_sums.update(_depth_sums(z[in_range], z_gt[in_range], holes[in_range]))
        sel = in_range & has_pred
        valid_sums.update(_depth_sums(z[sel], z_gt[sel], holes[sel]))

    return DisparityEvaluation(
        all=MetricSet(**all_sums),
        valid=MetricSet(**valid_sums),
        gt_pixels=int(g.size),
        predicted_pixels=int(np.count_nonzero(has_pred)),
    )


def aggregate(evaluations: Iterable[DisparityEvaluation]) -> DisparityEvaluation:
    """Pixel-weighted aggregate of several evaluations (sums and counts added, divided once).

    This is the mean over all evaluated pixels of the data set, not the mean of per-sample means.
    An empty input gives an evaluation with zero pixels (its metrics are NaN).

    Raises:
        ValueError: an element that is not a :class:`DisparityEvaluation`.
    """
    total = DisparityEvaluation(MetricSet(), MetricSet(), 0, 0)
    for i, ev in enumerate(evaluations):
        if not isinstance(ev, DisparityEvaluation):
            raise ValueError(f"evaluations[{i}]: expected a DisparityEvaluation, got {type(ev).__name__}")
        total = total + ev
    return total


def band_edges(edges: Iterable[float]) -> list[float]:
    """Check disparity band edges: at least two strictly increasing numbers in pixels (``math.inf`` allowed).

    Returns:
        The edges as a list of floats.

    Raises:
        ValueError: non-numbers, fewer than two edges, NaN, or edges not strictly increasing.
    """
    try:
        e = [float(x) for x in edges]
    except (TypeError, ValueError):
        raise ValueError(f"edges: expected numbers (pixels), got {edges!r}") from None
    if len(e) < 2 or any(math.isnan(x) for x in e) or any(b <= a for a, b in zip(e, e[1:])):
        raise ValueError(f"edges: expected >= 2 strictly increasing band edges in pixels, got {e}")
    return e


def evaluate_by_disparity(
    pred: np.ndarray,
    gt: np.ndarray,
    edges: Iterable[float] = DISPARITY_BANDS,
    mask: np.ndarray | None = None,
    **kwargs: Any,
) -> list[DisparityEvaluation]:
    """Evaluate ``pred`` separately on each band ``edges[i] <= d_gt < edges[i+1]`` of ground-truth disparity.

    Where in the disparity range a method fails (large disparities = near surfaces) is invisible
    in the whole-image EPE, which the many small disparities of a typical scene dominate.

    Args:
        pred, gt: ``(H, W)`` predicted and ground-truth disparity in pixels (as :func:`evaluate_disparity`).
        edges: at least two strictly increasing band edges in pixels (``math.inf`` allowed last).
        mask: optional ``(H, W)`` bool, intersected with every band.
        **kwargs: ``focal``, ``baseline``, ``min_depth``, ``max_depth`` of :func:`evaluate_disparity`.

    Returns:
        One :class:`DisparityEvaluation` per band (``len(edges) - 1``); a band without GT pixels
        has zero pixels (NaN metrics). Aggregate each band over samples with :func:`aggregate`.

    Raises:
        ValueError: bad edges (see :func:`band_edges`), plus the errors of :func:`evaluate_disparity`.
    """
    e = band_edges(edges)
    gt = _check_map(gt, "gt")
    g = gt.astype(np.float64, copy=False)
    if mask is not None and not (isinstance(mask, np.ndarray) and mask.dtype == np.bool_ and mask.shape == gt.shape):
        got = f"{mask.dtype} {mask.shape}" if isinstance(mask, np.ndarray) else type(mask).__name__
        raise ValueError(f"mask: expected a boolean numpy array of shape {gt.shape}, got {got}")
    out = []
    for lo, hi in zip(e, e[1:]):
        with np.errstate(invalid="ignore"):
            band = (g >= lo) & (g < hi)
        if mask is not None:
            band &= mask
        out.append(evaluate_disparity(pred, gt, mask=band, **kwargs))
    return out


def sparsification(pred: np.ndarray, confidence: np.ndarray, gt: np.ndarray, densities: Sequence[float],
                   threshold: float = 2.0) -> list[float]:
    """Bad-``threshold`` (%) of the most confident predictions, at each density (the sparsification curve).

    The ground-truth pixels are ranked by ``confidence`` (ties broken by position, holes last);
    at density ``q`` the first ``round(q * N)`` of the ``N`` ground-truth pixels are kept, and the
    share of them off by more than ``threshold`` pixels (or holes) is reported.

    Args:
        pred: ``(H, W)`` predicted disparity in pixels (NaN / ``<= 0`` = hole).
        confidence: ``(H, W)`` any real score, higher = more trusted.
        gt: ``(H, W)`` ground-truth disparity (non-finite / ``<= 0`` = unknown, not counted).
        densities: fractions in ``(0, 1]`` of the ground-truth pixels to keep.
        threshold: the bad-pixel threshold in pixels.

    Returns:
        One bad-``threshold`` percentage per density (NaN without ground truth).
    """
    pred = _check_map(pred, "pred")
    confidence = _check_map(confidence, "confidence")
    gt = _check_map(gt, "gt")
    if pred.shape != gt.shape or confidence.shape != gt.shape:
        raise ValueError(f"pred, confidence: expected the ground truth's shape {gt.shape}, got {pred.shape} and {confidence.shape}")
    if any(not 0.0 < float(q) <= 1.0 for q in densities):
        raise ValueError(f"densities: expected fractions in (0, 1], got {list(densities)}")
    valid = gt_valid_mask(gt)
    if not valid.any():
        return [math.nan for _ in densities]
    has = prediction_valid_mask(pred)[valid]
    error = np.abs(np.where(has, pred[valid], 0.0).astype(np.float64) - gt[valid])
    wrong = ~has | (error > threshold)
    score = np.where(has, np.nan_to_num(confidence[valid].astype(np.float64), nan=-np.inf), -np.inf)
    order = np.argsort(-score, kind="stable")
    cumulative = np.cumsum(wrong[order])
    out = []
    for q in densities:
        keep = max(1, int(round(float(q) * wrong.size)))
        out.append(100.0 * float(cumulative[keep - 1]) / keep)
    return out
