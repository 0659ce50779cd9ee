"""OpenCV semi-global block matching (StereoSGBM) as a disparity backend.

This is the matcher behind ROS ``stereo_image_proc``'s SGBM mode (``stereo_algorithm: 1``), set up
the way OpenCV's own ``stereo_match`` sample sets it up, so that the comparison with the network is
against a properly configured classical baseline:

* ``numDisparities`` covers the requested maximum disparity, rounded up to a multiple of 16. By
  default the maximum is 192 px for a 640 px wide image and scales with the width
  (``192 * W / 640``, e.g. 48 px at 160 px width).
* ``blockSize`` 5; smoothness penalties ``P1 = 8 * cn * blockSize^2`` and ``P2 = 32 * cn * blockSize^2``
  with ``cn`` the number of image channels (3 for the default colour matching).
* ``uniquenessRatio`` 10 %, speckle filter (window 100 px, range 2 px), ``disp12MaxDiff`` 1 px
  (left-right check), ``preFilterCap`` 63.
* mode ``MODE_SGBM_3WAY`` by default (fastest; ``"sgbm"`` = 5 directions, ``"hh"`` = 8 directions
  full DP, ``"hh4"`` = 4 directions).
* ``pad_left``: OpenCV leaves the first ``minDisparity + numDisparities`` columns invalid because
  their full search range would leave the right image. Padding both images on the left by that
  many black columns and cropping the result back lets SGBM match those columns wherever their
  correspondence is actually inside the right image. Set ``pad_left=False`` to reproduce
  ``stereo_image_proc`` exactly (it reports that band through ``valid_window`` instead).

Output: ``(H, W)`` float32 disparity in pixels (OpenCV's 16x fixed point divided by 16), NaN where
OpenCV marks a pixel invalid (raw value ``< 16 * minDisparity``).
"""

from __future__ import annotations

import math
from typing import Any

import cv2
import numpy as np

__all__ = ["SgbmBackend", "SGBM_MODES", "default_max_disparity"]

SGBM_MODES: dict[str, int] = {
    "sgbm": cv2.StereoSGBM_MODE_SGBM,
    "hh": cv2.StereoSGBM_MODE_HH,
    "sgbm_3way": cv2.StereoSGBM_MODE_SGBM_3WAY,
    "hh4": cv2.StereoSGBM_MODE_HH4,
}

_REFERENCE_WIDTH = 640
_REFERENCE_MAX_DISPARITY = 192.0


def default_max_disparity(width: int) -> float:
    """The default search range in pixels: 192 px at 640 px width, proportional to the width."""
    return _REFERENCE_MAX_DISPARITY * width / _REFERENCE_WIDTH


def _check_int(value: Any, name: str, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise ValueError(f"{name}: expected an integer >= {minimum}, got {value!r}")
    return int(value)


def _check_image(x: Any, name: str) -> np.ndarray:
    if not isinstance(x, np.ndarray):
        raise ValueError(f"{name}: expected a numpy array of shape (H, W, 3) float32 in [0, 1], got {type(x).__name__}")
    if x.ndim != 3 or x.shape[2] != 3:
        raise ValueError(f"{name}: expected shape (H, W, 3), got {x.shape}")
    if not np.issubdtype(x.dtype, np.floating):
        raise ValueError(f"{name}: expected a floating-point image in [0, 1], got dtype {x.dtype}")
    if x.shape[0] < 1 or x.shape[1] < 1:
        raise ValueError(f"{name}: expected a non-empty image, got shape {x.shape}")
    return x


class SgbmBackend:
    """OpenCV StereoSGBM on rectified ``(H, W, 3)`` float images in ``[0, 1]``.

    Args:
        max_disparity: largest disparity to search (pixels); ``None`` = ``192 * W / 640`` for the
            width of each input. ``numDisparities`` is this minus ``min_disparity``, rounded up to
            a multiple of 16.
        min_disparity: smallest disparity searched (pixels, OpenCV ``minDisparity``).
        block_size: odd matching window size (pixels).
        mode: ``"sgbm_3way"`` (default), ``"sgbm"``, ``"hh"`` or ``"hh4"``.
        color: match on the colour images (``cn = 3``); ``False`` converts to grey (``cn = 1``,
            like ``stereo_image_proc`` on ``image_rect``). The penalties scale with ``cn``.
        p1, p2: smoothness penalties; ``None`` = ``8 * cn * bs^2`` and ``32 * cn * bs^2``.
        uniqueness_ratio: margin (%) by which the best cost must beat the second best.
        speckle_window_size: largest speckle (pixels) removed; 0 disables the speckle filter.
        speckle_range: largest disparity change (pixels) within a connected component.
        disp12_max_diff: largest left-right disagreement (pixels); negative disables the check.
        pre_filter_cap: clip of the x-derivative pre-filter.
        pad_left: pad on the left so that the left border band can be matched (module docstring).
        max_disparity_limit: with ``max_disparity`` None, the width-proportional default is capped
            at this (pixels), e.g. a network's own range; None: no cap.

    Attributes:
        name: ``"sgbm"``.
    """

    name = "sgbm"

    def __init__(
        self,
        max_disparity: float | None = None,
        min_disparity: int = 0,
        block_size: int = 5,
        mode: str = "sgbm_3way",
        color: bool = True,
        p1: int | None = None,
        p2: int | None = None,
        uniqueness_ratio: int = 10,
        speckle_window_size: int = 100,
        speckle_range: int = 2,
        disp12_max_diff: int = 1,
        pre_filter_cap: int = 63,
        pad_left: bool = True,
        max_disparity_limit: float | None = None,
    ) -> None:
        if max_disparity is not None:
            try:
                max_disparity = float(max_disparity)
            except (TypeError, ValueError):
                raise ValueError(f"max_disparity: expected a positive number or None, got {max_disparity!r}") from None
            if not (math.isfinite(max_disparity) and max_disparity > 0):
                raise ValueError(f"max_disparity: expected a finite positive number or None, got {max_disparity}")
        if isinstance(min_disparity, bool) or not isinstance(min_disparity, (int, np.integer)):
            raise ValueError(f"min_disparity: expected an integer, got {min_disparity!r}")
        if max_disparity is not None and max_disparity <= min_disparity:
            raise ValueError(
                f"max_disparity: expected more than min_disparity={min_disparity}, got {max_disparity}"
            )
        block_size = _check_int(block_size, "block_size", 1)
        if block_size % 2 == 0:
            raise ValueError(f"block_size: expected an odd integer, got {block_size}")
        if mode not in SGBM_MODES:
            raise ValueError(f"mode: expected one of {sorted(SGBM_MODES)}, got {mode!r}")
        cn = 3 if color else 1
        self.max_disparity = max_disparity
        self.min_disparity = int(min_disparity)
        self.block_size = block_size
        self.mode = mode
        self.color = bool(color)
        self.p1 = _check_int(p1, "p1", 0) if p1 is not None else 8 * cn * block_size**2
        self.p2 = _check_int(p2, "p2", 0) if p2 is not None else 32 * cn * block_size**2
        if self.p2 <= self.p1:
            raise ValueError(f"p2: expected p2 > p1 = {self.p1}, got {self.p2}")
        self.uniqueness_ratio = _check_int(uniqueness_ratio, "uniqueness_ratio", 0)
        self.speckle_window_size = _check_int(speckle_window_size, "speckle_window_size", 0)
        self.speckle_range = _check_int(speckle_range, "speckle_range", 0)
        if isinstance(disp12_max_diff, bool) or not isinstance(disp12_max_diff, (int, np.integer)):
            raise ValueError(f"disp12_max_diff: expected an integer (negative disables), got {disp12_max_diff!r}")
        self.disp12_max_diff = int(disp12_max_diff)
        self.pre_filter_cap = _check_int(pre_filter_cap, "pre_filter_cap", 1)
        self.pad_left = bool(pad_left)
        if max_disparity_limit is not None and not (math.isfinite(float(max_disparity_limit)) and max_disparity_limit > min_disparity):
            raise ValueError(f"max_disparity_limit: expected a finite number above min_disparity={min_disparity} or None, "
                             f"got {max_disparity_limit!r}")
        self.max_disparity_limit = None if max_disparity_limit is None else float(max_disparity_limit)
        self._matchers: dict[tuple[int, int], Any] = {}

    # ------------------------------------------------------------------ configuration
    def num_disparities(self, width: int, max_disparity: float | None = None) -> int:
        """OpenCV ``numDisparities`` used for images ``width`` pixels wide (a multiple of 16), for
        ``max_disparity`` (None: the backend's own)."""
        top = max_disparity if max_disparity is not None else self.max_disparity
        if top is None:
            top = default_max_disparity(width)
            if self.max_disparity_limit is not None:
                top = min(top, self.max_disparity_limit)
        return max(16, int(math.ceil((top - self.min_disparity) / 16.0)) * 16)

    def params(self, width: int, max_disparity: float | None = None) -> dict[str, Any]:
        """The OpenCV parameters used for images ``width`` pixels wide (for reports)."""
        return {
            "minDisparity": self.min_disparity,
            "numDisparities": self.num_disparities(width, max_disparity),
            "blockSize": self.block_size,
            "P1": self.p1,
            "P2": self.p2,
            "disp12MaxDiff": self.disp12_max_diff,
            "preFilterCap": self.pre_filter_cap,
            "uniquenessRatio": self.uniqueness_ratio,
            "speckleWindowSize": self.speckle_window_size,
            "speckleRange": self.speckle_range,
            "mode": self.mode,
            "color": self.color,
            "pad_left": self.pad_left,
        }

    def _matcher(self, width: int, max_disparity: float | None = None) -> Any:
        """The OpenCV matcher for (unpadded) images ``width`` pixels wide, created once per width and range."""
        key = (width, self.num_disparities(width, max_disparity))
        matcher = self._matchers.get(key)
        if matcher is None:
            p = self.params(width, max_disparity)
            matcher = cv2.StereoSGBM_create(
                minDisparity=p["minDisparity"],
                numDisparities=p["numDisparities"],
                blockSize=p["blockSize"],
                P1=p["P1"],
                P2=p["P2"],
                disp12MaxDiff=p["disp12MaxDiff"],
                preFilterCap=p["preFilterCap"],
                uniquenessRatio=p["uniquenessRatio"],
                speckleWindowSize=p["speckleWindowSize"],
                speckleRange=p["speckleRange"],
                mode=SGBM_MODES[self.mode],
            )
            self._matchers[key] = matcher
        return matcher

    # ------------------------------------------------------------------ inference
    def _to_uint8(self, image: np.ndarray) -> np.ndarray:
        u8 = (np.clip(image, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)
        if not self.color:
            return cv2.cvtColor(u8, cv2.COLOR_RGB2GRAY)
        return np.ascontiguousarray(u8[..., ::-1])  # OpenCV's channel order (SGBM sums over channels)

    def __call__(self, left: np.ndarray, right: np.ndarray, max_disparity: float | None = None) -> np.ndarray:
        """Disparity of the left image.

        Args:
            left, right: rectified ``(H, W, 3)`` float RGB images in ``[0, 1]`` (NaN not allowed).
            max_disparity: this pair's search range in pixels (a scene's known range); None: the
                backend's ``max_disparity``.

        Returns:
            ``(H, W)`` float32 disparity in pixels, NaN where SGBM found no reliable match.

        Raises:
            ValueError: wrong type, shape, dtype, non-finite values, or different sizes.
        """
        left = _check_image(left, "left")
        right = _check_image(right, "right")
        if left.shape != right.shape:
            raise ValueError(f"right: expected shape {left.shape} like left, got {right.shape}")
        if not (np.isfinite(left).all() and np.isfinite(right).all()):
            raise ValueError("left, right: expected finite pixel values, got NaN or inf")
        if max_disparity is not None and not (math.isfinite(max_disparity) and max_disparity > self.min_disparity):
            raise ValueError(f"max_disparity: expected a finite number above min_disparity={self.min_disparity}, "
                             f"got {max_disparity}")
        height, width = left.shape[:2]
        left_u8, right_u8 = self._to_uint8(left), self._to_uint8(right)
        pad = self.min_disparity + self.num_disparities(width, max_disparity) if self.pad_left else 0
        pad = max(pad, 0)
        if pad:
            left_u8 = cv2.copyMakeBorder(left_u8, 0, 0, pad, 0, cv2.BORDER_CONSTANT, value=0)
            right_u8 = cv2.copyMakeBorder(right_u8, 0, 0, pad, 0, cv2.BORDER_CONSTANT, value=0)
        raw = self._matcher(width, max_disparity).compute(left_u8, right_u8)
        raw = raw[:, pad:]
        disparity = raw.astype(np.float32) / float(cv2.StereoMatcher_DISP_SCALE)
        disparity[raw < self.min_disparity * cv2.StereoMatcher_DISP_SCALE] = np.nan
        return disparity
