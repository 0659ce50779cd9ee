"""One stereo frame through the core: disparity of both views, validity, depth.

Shared by the node and the offline tools so that what is evaluated is what is published: the
tools call :func:`process_frame`; the node calls its two steps (:func:`predict_disparities`, then
:func:`~stereo_depth_ros.core.masks.compute_validity`) itself, to time each as its own stage.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from .camera import StereoCamera
from .checks import check_same_batch_and_size, check_tensor
from .masks import Validity, ValidityConfig, compute_validity
from .network.estimator import predict_left_right
from .network.model import StereoNet

__all__ = ["FrameResult", "scaled_size", "predict_left", "predict_disparities", "process_frame"]


@dataclass
class FrameResult:
    """Everything the node publishes for a frame.

    Attributes:
        disparity_left, disparity_right: ``(1, 1, H, W)`` disparity in pixels at the input size.
        validity: masks, confidence, depth (metres, 0 where the disparity is not positive) and the
            photometric error, see :class:`~stereo_depth_ros.core.masks.Validity`.
    """

    disparity_left: torch.Tensor
    disparity_right: torch.Tensor
    validity: Validity


def _resize(image: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    return F.interpolate(image, size=size, mode="bilinear", align_corners=False, antialias=True)


def scaled_size(height: int, width: int, scale: float) -> tuple[int, int]:
    """``(height, width)`` times ``scale``, rounded, at least 32 pixels per side (so the network's
    pyramid keeps a few levels): the network input size for an ``inference_scale``."""
    if not 0.0 < float(scale) <= 1.0:
        raise ValueError(f"scale: expected a fraction in (0, 1], got {scale}")
    return max(32, round(height * scale)), max(32, round(width * scale))


def _upsample_disparity(disparity: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Disparity ``(B, 1, h, w)`` resized to ``size`` and rescaled to that image's pixels."""
    return F.interpolate(disparity, size=size, mode="bilinear", align_corners=False) * (size[1] / disparity.shape[-1])


@torch.inference_mode()
def predict_left(
    model: StereoNet,
    left: torch.Tensor,
    right: torch.Tensor,
    inference_size: tuple[int, int] | None = None,
) -> torch.Tensor:
    """Left disparity ``(B, 1, H, W)`` in pixels at the input size, the network run at
    ``inference_size`` ``(height, width)`` (None: the input size)."""
    check_tensor(left, "left", ("B", 3, "H", "W"))
    check_same_batch_and_size(left, "left", right, "right")
    size = tuple(left.shape[-2:])
    if inference_size is None or tuple(inference_size) == size:
        return model(left, right).disparity
    return _upsample_disparity(model(_resize(left, inference_size), _resize(right, inference_size)).disparity, size)


@torch.inference_mode()
def predict_disparities(
    model: StereoNet,
    left: torch.Tensor,
    right: torch.Tensor,
    inference_size: tuple[int, int] | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Left and right disparity at the input size (the right one from the mirrored pair).

    Args:
        model: the network (eval mode, on the images' device).
        left, right: ``(1, 3, H, W)`` rectified images in ``[0, 1]``.
        inference_size: ``(height, width)`` to run the network at (disparity is resized and
            rescaled back to the input's pixels), or None for the input size.

    Returns:
        ``(disparity_left, disparity_right)``, ``(1, 1, H, W)`` each, in pixels.
    """
    check_tensor(left, "left", (1, 3, "H", "W"))
    check_tensor(right, "right", (1, 3, "H", "W"))
    check_same_batch_and_size(left, "left", right, "right")
    size = tuple(left.shape[-2:])
    if inference_size is None or tuple(inference_size) == size:
        return predict_left_right(model, left, right)
    disp_l, disp_r = predict_left_right(model, _resize(left, inference_size), _resize(right, inference_size))
    return _upsample_disparity(disp_l, size), _upsample_disparity(disp_r, size)


@torch.inference_mode()
def process_frame(
    model: StereoNet,
    left: torch.Tensor,
    right: torch.Tensor,
    camera: StereoCamera,
    validity_config: ValidityConfig,
    inference_size: tuple[int, int] | None = None,
) -> FrameResult:
    """Predict both disparities (:func:`predict_disparities`), validate, convert to depth.

    Args:
        model: the network (eval mode, on the images' device).
        left, right: ``(1, 3, H, W)`` rectified images in ``[0, 1]``.
        camera: the rig at the images' resolution.
        validity_config: thresholds.
        inference_size: ``(height, width)`` to run the network at (disparity is rescaled back), or
            None for the input size.

    Returns:
        :class:`FrameResult` at the input resolution.
    """
    check_tensor(left, "left", (1, 3, "H", "W"))
    height, width = left.shape[-2:]
    if (camera.width, camera.height) != (width, height):
        raise ValueError(f"camera: expected a {width}x{height} rig like the images, got {camera.width}x{camera.height}")
    disp_l, disp_r = predict_disparities(model, left, right, inference_size)
    validity = compute_validity(disp_l, camera.fx, camera.baseline, left, right, disp_r, validity_config)
    return FrameResult(disp_l, disp_r, validity)
