"""Rectified stereo camera model built from CameraInfo-like values.

Follows the ROS CameraInfo conventions: the rectified intrinsics of each view come from its
projection matrix ``P`` (3x4), not from ``K``; the right camera's ``P[0, 3] = Tx = -fx * B`` so the
baseline is ``B = -P_right[0, 3] / P_right[0, 0]`` (metres). Depth and disparity relate by
``Z = fx * B / (d - doffs)`` where ``doffs = cx_left - cx_right`` (zero for most rigs).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any, Sequence

import numpy as np
import torch

__all__ = ["StereoCamera", "CameraModelError"]


class CameraModelError(ValueError):
    """A stereo calibration that cannot be used (disagreeing views, bad baseline, uncalibrated)."""


def _as_matrix(values: Any, shape: tuple[int, int], name: str) -> np.ndarray:
    array = np.asarray(values, dtype=np.float64)
    if array.size != shape[0] * shape[1]:
        raise CameraModelError(
            f"{name}: expected {shape[0] * shape[1]} values ({shape[0]}x{shape[1]}), got {array.size}"
        )
    array = array.reshape(shape)
    if not np.all(np.isfinite(array)):
        raise CameraModelError(f"{name}: expected finite values, got {array.tolist()}")
    return array


@dataclass(frozen=True)
class StereoCamera:
    """A rectified stereo pair.

    Attributes:
        width, height: image size in pixels.
        fx, fy: rectified focal lengths of the left view in pixels.
        cx, cy: rectified principal point of the left view in pixels.
        cx_right: rectified principal point x of the right view in pixels.
        baseline: distance between the optical centres in metres (> 0).
    """

    width: int
    height: int
    fx: float
    fy: float
    cx: float
    cy: float
    cx_right: float
    baseline: float

    def __post_init__(self) -> None:
        if int(self.width) != self.width or int(self.height) != self.height:
            raise CameraModelError(f"image size must be integers, got {self.width}x{self.height}")
        if self.width <= 0 or self.height <= 0:
            raise CameraModelError(f"image size must be positive, got {self.width}x{self.height}")
        for name in ("fx", "fy", "cx", "cy", "cx_right", "baseline"):
            if not np.isfinite(getattr(self, name)):
                raise CameraModelError(f"{name} must be finite, got {getattr(self, name)}")
        if self.fx <= 0 or self.fy <= 0:
            raise CameraModelError(
                f"focal lengths must be positive (uncalibrated camera?), got fx={self.fx}, fy={self.fy}"
            )
        if self.baseline <= 0:
            raise CameraModelError(
                f"baseline must be positive (right camera to the right of the left one, "
                f"P_right[0,3] = -fx*B < 0), got B={self.baseline} m"
            )

    # ------------------------------------------------------------------ construction
    @classmethod
    def from_camera_info(
        cls,
        width: int,
        height: int,
        k_left: Sequence[float],
        p_left: Sequence[float],
        p_right: Sequence[float],
        k_right: Sequence[float] | None = None,
        right_size: tuple[int, int] | None = None,
        rtol: float = 1e-6,
    ) -> "StereoCamera":
        """Build the model from the fields of a left and right ``sensor_msgs/CameraInfo``.

        Args:
            width, height: left image size (pixels).
            k_left: left ``K`` (9 values, row-major); only checked for calibration (``K[0] != 0``).
            p_left: left ``P`` (12 values, row-major) giving the rectified intrinsics.
            p_right: right ``P`` (12 values); ``P[3] = -fx * B``.
            k_right: right ``K`` (9 values), checked like ``k_left`` when given.
            right_size: right image ``(width, height)``; must equal the left size when given.
            rtol: relative tolerance when comparing the two views' focal lengths and ``cy``.

        Raises:
            CameraModelError (a ``ValueError``): uncalibrated, disagreeing or non-positive baseline.
        """
        if right_size is not None and (int(right_size[0]), int(right_size[1])) != (int(width), int(height)):
            raise CameraModelError(
                f"left and right image sizes disagree: left {width}x{height}, "
                f"right {right_size[0]}x{right_size[1]}"
            )
        kl = _as_matrix(k_left, (3, 3), "K_left")
        if kl[0, 0] == 0:
            raise CameraModelError("left camera is uncalibrated: K[0] == 0")
        if k_right is not None:
            kr = _as_matrix(k_right, (3, 3), "K_right")
            if kr[0, 0] == 0:
                raise CameraModelError("right camera is uncalibrated: K[0] == 0")
        pl = _as_matrix(p_left, (3, 4), "P_left")
        pr = _as_matrix(p_right, (3, 4), "P_right")
        if pl[0, 0] == 0 or pr[0, 0] == 0:
            raise CameraModelError("camera is uncalibrated: P[0] == 0")
        for name, a, b in (("fx", pl[0, 0], pr[0, 0]), ("fy", pl[1, 1], pr[1, 1]), ("cy", pl[1, 2], pr[1, 2])):
            if not np.isclose(a, b, rtol=rtol, atol=1e-9):
                raise CameraModelError(
                    f"left and right rectified {name} disagree (not a rectified pair?): "
                    f"left {a}, right {b}"
                )
        if pl[0, 3] != 0 and not np.isclose(pl[0, 3], 0.0, atol=1e-9 * abs(pl[0, 0])):
            raise CameraModelError(
                f"left P[0,3] must be 0 (the left camera is the reference), got {pl[0, 3]}"
            )
        baseline = -pr[0, 3] / pr[0, 0]
        if not baseline > 0:
            raise CameraModelError(
                f"baseline must be positive: B = -P_right[3]/P_right[0] = {baseline} m "
                f"(P_right[3] = {pr[0, 3]})"
            )
        return cls(
            width=int(width),
            height=int(height),
            fx=float(pl[0, 0]),
            fy=float(pl[1, 1]),
            cx=float(pl[0, 2]),
            cy=float(pl[1, 2]),
            cx_right=float(pr[0, 2]),
            baseline=float(baseline),
        )

    @classmethod
    def from_intrinsics(
        cls, width: int, height: int, focal: float, baseline: float, cx: float | None = None, cy: float | None = None
    ) -> "StereoCamera":
        """A pair with square pixels, equal principal points and the given focal (px) and baseline (m)."""
        cx = (width - 1) / 2.0 if cx is None else float(cx)
        cy = (height - 1) / 2.0 if cy is None else float(cy)
        return cls(int(width), int(height), float(focal), float(focal), cx, cy, cx, float(baseline))

    # ------------------------------------------------------------------ views
    @property
    def doffs(self) -> float:
        """Disparity offset ``cx_left - cx_right`` in pixels (``Z = fx*B / (d - doffs)``)."""
        return self.cx - self.cx_right

    def K(self, dtype: torch.dtype = torch.float32, device: torch.device | str | None = None) -> torch.Tensor:
        """Rectified left intrinsics as a ``(3, 3)`` tensor."""
        return torch.tensor(
            [[self.fx, 0.0, self.cx], [0.0, self.fy, self.cy], [0.0, 0.0, 1.0]], dtype=dtype, device=device
        )

    def K_numpy(self) -> np.ndarray:
        """Rectified left intrinsics as a ``(3, 3)`` float64 array."""
        return np.array([[self.fx, 0.0, self.cx], [0.0, self.fy, self.cy], [0.0, 0.0, 1.0]])

    def K_right(self, dtype: torch.dtype = torch.float32, device: torch.device | str | None = None) -> torch.Tensor:
        """Rectified right intrinsics as a ``(3, 3)`` tensor."""
        return torch.tensor(
            [[self.fx, 0.0, self.cx_right], [0.0, self.fy, self.cy], [0.0, 0.0, 1.0]], dtype=dtype, device=device
        )

    def P_left(self) -> np.ndarray:
        """Left projection matrix ``(3, 4)`` as in CameraInfo."""
        return np.array([[self.fx, 0.0, self.cx, 0.0], [0.0, self.fy, self.cy, 0.0], [0.0, 0.0, 1.0, 0.0]])

    def P_right(self) -> np.ndarray:
        """Right projection matrix ``(3, 4)`` as in CameraInfo (``Tx = -fx * B``)."""
        return np.array(
            [
                [self.fx, 0.0, self.cx_right, -self.fx * self.baseline],
                [0.0, self.fy, self.cy, 0.0],
                [0.0, 0.0, 1.0, 0.0],
            ]
        )

    def depth_to_disparity_scale(self) -> float:
        """``fx * B`` in pixel-metres: ``d = fx*B / Z + doffs``."""
        return self.fx * self.baseline

    # ------------------------------------------------------------------ resizing
    def scaled(self, width: int, height: int) -> "StereoCamera":
        """The same rig seen at another resolution (e.g. the network's inference size).

        Pixel coordinates scale with the pixel-centre convention: ``u' = (u + 0.5) * sx - 0.5``.
        Disparities scale by ``sx = width / self.width``; the baseline is unchanged.
        """
        if int(width) != width or int(height) != height or width <= 0 or height <= 0:
            raise ValueError(f"scaled(): expected a positive integer size, got {width}x{height}")
        sx = width / self.width
        sy = height / self.height
        return replace(
            self,
            width=int(width),
            height=int(height),
            fx=self.fx * sx,
            fy=self.fy * sy,
            cx=(self.cx + 0.5) * sx - 0.5,
            cy=(self.cy + 0.5) * sy - 0.5,
            cx_right=(self.cx_right + 0.5) * sx - 0.5,
        )

    def cropped(self, x_offset: int, y_offset: int, width: int, height: int) -> "StereoCamera":
        """The rig after cropping both images to ``[y, y+height) x [x, x+width)``."""
        if x_offset < 0 or y_offset < 0 or width <= 0 or height <= 0:
            raise ValueError(f"cropped(): expected non-negative offsets and positive size, got "
                             f"offset ({x_offset}, {y_offset}) size {width}x{height}")
        if x_offset + width > self.width or y_offset + height > self.height:
            raise ValueError(
                f"cropped(): crop {width}x{height}+{x_offset}+{y_offset} exceeds image {self.width}x{self.height}"
            )
        return replace(
            self,
            width=int(width),
            height=int(height),
            cx=self.cx - x_offset,
            cy=self.cy - y_offset,
            cx_right=self.cx_right - x_offset,
        )
