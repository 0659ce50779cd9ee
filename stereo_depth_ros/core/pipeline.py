"""One stereo frame through the core: disparity of both views, validity, depth.

Shared by the node and the offline tools so that what is evaluated is what is published.
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

__all__ = ["FrameResult", "predict_disparities", "process_frame"]


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
    height, width = left.shape[-2:]
    if inference_size is not None and tuple(inference_size) != (height, width):
        disp_l, disp_r = predict_left_right(model, _resize(left, inference_size), _resize(right, inference_size))
        scale = width / inference_size[1]
        disp_l = F.interpolate(disp_l, size=(height, width), mode="bilinear", align_corners=False) * scale
        disp_r = F.interpolate(disp_r, size=(height, width), mode="bilinear", align_corners=False) * scale
        return disp_l, disp_r
    return predict_left_right(model, left, right)


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
