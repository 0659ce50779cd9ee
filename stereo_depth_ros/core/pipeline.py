"""One stereo frame through the core: disparity of both views, validity, depth.

Shared by the node and the offline tools so that what is evaluated is what is published: the
tools call :func:`process_frame`; the node calls its two steps (:func:`predict_disparities`, then
:func:`~stereo_depth_ros.core.masks.compute_validity`) itself, to time each as its own stage.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Any, Callable, Mapping

import numpy as np

import torch
import torch.nn.functional as F

from .camera import StereoCamera
from .checks import check_same_batch_and_size, check_tensor
from .fusion import Fusion, fuse_disparities
from .masks import Validity, ValidityConfig, _channel_mean, compute_validity
from .network.estimator import predict_left_right
from .network.model import StereoNet
from .pointcloud import organized_xyzrgb_tensor

__all__ = ["PRECISIONS", "FrameResult", "MAX_INFERENCE_SCALE", "scaled_size", "network_size",
           "weights_inference_scale", "resize_images", "predict_left", "upsamples", "upsampled_labels",
           "adaptation_labels", "predict_disparities", "run_matcher", "matcher_at_size", "fuse_and_validate",
           "process_frame", "frame_outputs", "outputs_from_disparities", "MAP_CHANNELS"]

PRECISIONS = ("fp32", "bf16")
"""Network precisions: float32, or bfloat16 autocast (for GPUs; the disparity comes back as float32)."""


@dataclass
class FrameResult:
    """Everything the node publishes for a frame.

    Attributes:
        disparity_left, disparity_right: ``(1, 1, H, W)`` disparity in pixels at the input size
            (``disparity_right`` None in single-pass mode: no left-right check configured).
        validity: masks, confidence, depth (metres, 0 where the disparity is not positive) and the
            photometric error, see :class:`~stereo_depth_ros.core.masks.Validity`.
        fusion: with a matcher's disparity, the published (fused) disparity and each pixel's source
            (``disparity_left`` is then the fused one); None otherwise.
    """

    disparity_left: torch.Tensor
    disparity_right: torch.Tensor | None
    validity: Validity
    fusion: Fusion | None = None


def resize_images(image: torch.Tensor, size: tuple[int, int] | None) -> torch.Tensor:
    """Images ``(B, C, H, W)`` resized to ``size`` ``(height, width)`` (antialiased bilinear);
    the tensor itself when ``size`` is None or already its size.

    Enlarging on both axes, antialiasing is bilinear interpolation itself (its triangle filter is
    one pixel wide): plain bilinear gives the same values (to 6e-5 of the range, the weights'
    rounding) in about half the time (a 640x480 image to 768x576 on 2 cores: 0.75 against 1.34 ms).
    """
    if size is None or tuple(size) == tuple(image.shape[-2:]):
        return image
    return F.interpolate(image, size=size, mode="bilinear", align_corners=False, antialias=not upsamples(image, size))


MAX_INFERENCE_SCALE = 2.0
"""Largest ``inference_scale``: upsampling further costs 4x the pixels for detail the images lack."""


def weights_inference_scale(metadata: Mapping[str, Any]) -> float:
    """The ``inference_scale`` a weights file asks to run at (its metadata's ``"inference_scale"``,
    written by ``stereo_depth_train --unlabeled --frame-scale``: the scale it was fine-tuned at), 1.0
    when it names none. Adapted weights carry the scale of the weights they were adapted from.

    Raises:
        ValueError: the metadata names a scale outside ``(0, MAX_INFERENCE_SCALE]``.
    """
    value = metadata.get("inference_scale")
    if value is None:
        return 1.0
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0.0 < float(value) <= MAX_INFERENCE_SCALE:
        raise ValueError(f"weights metadata inference_scale: expected a factor in (0, {MAX_INFERENCE_SCALE:g}], "
                         f"got {value!r}")
    return float(value)


def scaled_size(height: int, width: int, scale: float) -> tuple[int, int]:
    """``(height, width)`` times ``scale``, rounded, at least 32 pixels per side (so the network's
    pyramid keeps a few levels): the network input size for an ``inference_scale``. Below 1 the
    network runs faster on fewer pixels; above 1 (at most 2) it runs on upsampled images, slower,
    and matches finer detail than its stride-8 cost volume sees at the image's own size."""
    if not 0.0 < float(scale) <= MAX_INFERENCE_SCALE:
        raise ValueError(f"scale: expected a factor in (0, {MAX_INFERENCE_SCALE:g}], got {scale}")
    return max(32, round(height * scale)), max(32, round(width * scale))


def network_size(height: int, width: int, scale: float) -> tuple[int, int] | None:
    """The network's input ``(height, width)`` for a ``height x width`` image at ``inference_scale``
    ``scale``: None at 1.0 (the image as it is, whatever its size), else :func:`scaled_size`."""
    return None if scale == 1.0 else scaled_size(height, width, scale)


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
    disparity = model(resize_images(left, inference_size), resize_images(right, inference_size)).disparity
    return _upsample_disparity(disparity, size)


def _precision(precision: str, device: torch.device) -> contextlib.AbstractContextManager:
    if precision not in PRECISIONS:
        raise ValueError(f"precision: expected one of {list(PRECISIONS)}, got {precision!r}")
    return torch.autocast(device.type, dtype=torch.bfloat16, enabled=precision == "bf16")


@torch.inference_mode()
def predict_disparities(
    model: StereoNet,
    left: torch.Tensor,
    right: torch.Tensor,
    inference_size: tuple[int, int] | None = None,
    precision: str = "fp32",
    right_view: bool = True,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Left and right disparity at the input size (the right one from the mirrored pair).

    Args:
        model: the network (eval mode, on the images' device).
        left, right: ``(1, 3, H, W)`` rectified images in ``[0, 1]``.
        inference_size: ``(height, width)`` to run the network at (disparity is resized and
            rescaled back to the input's pixels), or None for the input size.
        precision: one of :data:`PRECISIONS` (``"bf16"``: the network under bfloat16 autocast).
        right_view: also the right disparity (a second, mirrored pass: half of the CPU frame
            time); False returns None for it (single-pass mode).

    Returns:
        ``(disparity_left, disparity_right)``, ``(1, 1, H, W)`` float32 each, in pixels.
    """
    check_tensor(left, "left", (1, 3, "H", "W"))
    check_tensor(right, "right", (1, 3, "H", "W"))
    check_same_batch_and_size(left, "left", right, "right")
    size = tuple(left.shape[-2:])
    small_left, small_right = resize_images(left, inference_size), resize_images(right, inference_size)
    with _precision(precision, left.device):
        if right_view:
            disp_l, disp_r = predict_left_right(model, small_left, small_right)
        else:
            disp_l, disp_r = model(small_left, small_right).disparity, None
    disp_l = disp_l.float()
    disp_r = disp_r.float() if disp_r is not None else None
    if tuple(disp_l.shape[-2:]) == size:
        return disp_l, disp_r
    return _upsample_disparity(disp_l, size), (_upsample_disparity(disp_r, size) if disp_r is not None else None)


def run_matcher(matcher: Callable[[np.ndarray, np.ndarray], np.ndarray], left: torch.Tensor, right: torch.Tensor,
                size: tuple[int, int] | None = None) -> np.ndarray:
    """A classical matcher (SGBM) on a pair, its disparity at the network's input size: the disparity
    the fusion and adaptation's labels share.

    A smaller ``size`` resizes the images first (SGBM on what the network sees, faster). A larger one
    (``inference_scale`` above 1) does not: SGBM runs on the images as they are and its disparity is
    brought to ``size`` (:func:`matcher_at_size`: nearest, rescaled). Upsampling gives the network's
    stride-8 cost volume finer detail, but SGBM's fixed block and penalties match worse on
    interpolated pixels (the KITTI raw drive's five LiDAR frames, the node's SGBM settings: bad-3
    41.2 % at 66.9 % density on the images upsampled 1.2x against 36.2 % at 72.1 % as they are).

    Args:
        matcher: ``(left, right) -> (h, w)`` disparity in pixels, NaN holes, on ``(h, w, 3)`` float
            images in ``[0, 1]`` (e.g. :class:`~stereo_depth_ros.core.sgbm.SgbmBackend`).
        left, right: ``(1, 3, H, W)`` images in ``[0, 1]`` (any device).
        size: ``(h, w)`` of the network's input, None: the images' own.

    Returns:
        ``(h, w)`` float32 disparity in pixels of that size, NaN in the matcher's holes.
    """
    check_tensor(left, "left", (1, 3, "H", "W"))
    check_same_batch_and_size(left, "left", right, "right")
    upsampled = upsamples(left, size)
    host = [resize_images(t, None if upsampled else size)[0].permute(1, 2, 0).float().cpu().numpy()
            for t in (left, right)]
    disparity = matcher(host[0], host[1])
    if upsampled:
        return matcher_at_size(torch.from_numpy(disparity)[None, None], tuple(size))[0, 0].numpy()
    return disparity


def upsamples(image: torch.Tensor, size: tuple[int, int] | None) -> bool:
    """Whether the network's input ``size`` ``(h, w)`` enlarges ``(B, C, H, W)`` images (an
    ``inference_scale`` above 1): then SGBM, for the fused output and for adaptation's labels alike,
    matches the images as they are (:func:`run_matcher`), not the upsampled ones."""
    return size is not None and size[0] >= image.shape[-2] and size[1] >= image.shape[-1] and \
        tuple(size) != tuple(image.shape[-2:])


def upsampled_labels(matcher: Callable[[np.ndarray, np.ndarray], np.ndarray] | None, left: torch.Tensor,
                     right: torch.Tensor, size: tuple[int, int] | None) -> np.ndarray | None:
    """The SGBM labels adaptation is handed for a pair ``(1, 3, H, W)`` whose network input ``size``
    enlarges it: ``(1, h, w)`` disparity of the pair as it is, brought to ``size`` (:func:`run_matcher`),
    as the fused output computes it. None when ``size`` does not enlarge the pair (the adapter's own
    SGBM on the images it is given is then the same thing) or without a ``matcher`` (no SGBM labels).
    The node and the offline replay (through :func:`adaptation_labels`), the test-time backends and
    the adaptation benchmark all ask here."""
    if matcher is None or not upsamples(left, size):
        return None
    return run_matcher(matcher, left, right, size)[None]


def adaptation_labels(fused: np.ndarray | None, matcher: Callable[[np.ndarray, np.ndarray], np.ndarray] | None,
                      left: torch.Tensor, right: torch.Tensor, size: tuple[int, int] | None) -> np.ndarray | None:
    """The SGBM labels a frame's adaptation step is handed (with ``proxy: sgbm``): the ``(h, w)``
    disparity the fused output already computed (``fused``, :func:`run_matcher`'s), else, with the
    fusion off, :func:`upsampled_labels` of the pair; ``(1, h, w)`` or None (the adapter labels the
    images it is given itself). The node and the offline replay ask here."""
    return fused[None] if fused is not None else upsampled_labels(matcher, left, right, size)


def matcher_at_size(disparity: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """A matcher's disparity ``(B, 1, h, w)`` (NaN holes) at ``size`` ``(height, width)``, rescaled to
    that image's pixels: nearest-neighbour, so holes stay holes and no value is invented.

    Pixel centres are aligned (``nearest-exact``: output pixel ``j`` takes input pixel
    ``floor((j + 0.5) * h / height)``), as the bilinear resize of the images is; torch's plain
    ``nearest`` takes ``floor(j * h / height)``, up to one input pixel to the left and above, so a
    disparity brought to 1.2x and back moved 4 of every 5 pixels by one.
    """
    check_tensor(disparity, "disparity", ("B", 1, "h", "w"))
    if tuple(disparity.shape[-2:]) == tuple(size):
        return disparity
    return F.interpolate(disparity, size=size, mode="nearest-exact") * (size[1] / disparity.shape[-1])


@torch.inference_mode()
def fuse_and_validate(
    disparity_left: torch.Tensor,
    disparity_right: torch.Tensor | None,
    left: torch.Tensor,
    right: torch.Tensor,
    camera: StereoCamera,
    validity_config: ValidityConfig,
    matcher_disparity: torch.Tensor | None = None,
    fusion_margin: float = 0.5,
) -> tuple[torch.Tensor, Validity, Fusion | None]:
    """The published disparity and its validity: the network's, or fused with a matcher's.

    Args:
        disparity_left, disparity_right: ``(1, 1, H, W)`` the network's disparities in pixels
            (``disparity_right`` None in single-pass mode).
        left, right: ``(1, 3, H, W)`` rectified images in ``[0, 1]``.
        camera: the rig at the images' resolution.
        validity_config: thresholds.
        matcher_disparity: ``(1, 1, h, w)`` a matcher's (SGBM's) checked disparity in pixels of its
            own size, NaN in its holes (resized here when ``h, w`` differ), or None: no fusion.
        fusion_margin: see :func:`~stereo_depth_ros.core.fusion.fuse_disparities`.

    Returns:
        ``(disparity, validity, fusion)``: the published ``(1, 1, H, W)`` disparity, its
        :class:`~stereo_depth_ros.core.masks.Validity`, and the :class:`~stereo_depth_ros.core.fusion.Fusion`
        (None without a matcher).
    """
    fusion = None
    disparity = disparity_left
    if matcher_disparity is not None:
        matcher = matcher_at_size(matcher_disparity.to(disparity_left.device, torch.float32),
                                  tuple(disparity_left.shape[-2:]))
        fusion = fuse_disparities(disparity_left, matcher, _channel_mean(left).float(), _channel_mean(right).float(),
                                  fusion_margin)
        disparity = fusion.disparity
    validity = compute_validity(disparity, camera.fx, camera.baseline, left, right, disparity_right, validity_config,
                                camera.doffs, fusion)
    return disparity, validity, fusion


@torch.inference_mode()
def process_frame(
    model: StereoNet,
    left: torch.Tensor,
    right: torch.Tensor,
    camera: StereoCamera,
    validity_config: ValidityConfig,
    inference_size: tuple[int, int] | None = None,
    precision: str = "fp32",
    matcher_disparity: torch.Tensor | None = None,
    fusion_margin: float = 0.5,
) -> FrameResult:
    """Predict both disparities (:func:`predict_disparities`), fuse, validate, convert to depth.

    Single-pass mode: with ``validity_config.lr_max_difference`` None (no left-right check) the
    right disparity is not predicted at all.

    Args:
        model: the network (eval mode, on the images' device).
        left, right: ``(1, 3, H, W)`` rectified images in ``[0, 1]``.
        camera: the rig at the images' resolution.
        validity_config: thresholds.
        inference_size: ``(height, width)`` to run the network at (disparity is rescaled back), or
            None for the input size.
        precision: the network's, see :func:`predict_disparities`.
        matcher_disparity, fusion_margin: a matcher's disparity to fuse with, see
            :func:`fuse_and_validate` (None: the network alone).

    Returns:
        :class:`FrameResult` at the input resolution.
    """
    check_tensor(left, "left", (1, 3, "H", "W"))
    height, width = left.shape[-2:]
    if (camera.width, camera.height) != (width, height):
        raise ValueError(f"camera: expected a {width}x{height} rig like the images, got {camera.width}x{camera.height}")
    right_view = validity_config.lr_max_difference is not None
    disp_l, disp_r = predict_disparities(model, left, right, inference_size, precision, right_view)
    disparity, validity, fusion = fuse_and_validate(disp_l, disp_r, left, right, camera, validity_config,
                                                    matcher_disparity, fusion_margin)
    return FrameResult(disparity, disp_r, validity, fusion)


MAP_CHANNELS = ("disparity", "disparity_right", "mask", "depth", "confidence", "photometric_error", "source")
"""Channels of :func:`frame_outputs`' ``maps``, in order."""


@torch.inference_mode()
def frame_outputs(
    model: StereoNet,
    left: torch.Tensor,
    right: torch.Tensor,
    camera: StereoCamera,
    validity_config: ValidityConfig,
    inference_size: tuple[int, int] | None = None,
    precision: str = "fp32",
    cloud: bool = True,
    rgb: torch.Tensor | None = None,
    matcher_disparity: torch.Tensor | None = None,
    fusion_margin: float = 0.5,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Everything the node publishes for a frame, as two tensors on the images' device.

    :func:`process_frame`, then the published maps and the organised point cloud, computed where
    the images are (the GPU on CUDA) so that the host receives them in two copies and no tensor work
    is left for it. Pure tensor work, no host synchronisation. It is :func:`predict_disparities`
    followed by :func:`outputs_from_disparities`; the node replays the two halves as two CUDA graphs
    (:class:`~stereo_depth_ros.core.cuda_graph.CudaGraphRunner`) and, with a matcher, runs it on the
    CPU between them while the GPU computes the first.

    Args:
        model, left, right, camera, validity_config, inference_size, precision: as
            :func:`process_frame`; ``left``/``right`` ``(1, 3, H, W)`` in ``[0, 1]``.
        cloud: also compute the point cloud.
        rgb: ``(H, W, 3)`` uint8 colours of the points (None: ``round(255 * left)``).
        matcher_disparity, fusion_margin: see :func:`process_frame`.

    Returns:
        ``(maps, points)``: ``maps`` ``(7, H, W)`` float32 with the channels of :data:`MAP_CHANNELS`
        (the published left disparity and the right one in pixels, the right one NaN in single-pass mode, mask as 0/1, depth in metres with NaN outside the mask, confidence,
        photometric error, source code of :mod:`~stereo_depth_ros.core.fusion`, all network
        without a matcher); ``points`` ``(H, W, 4)`` float32 from
        :func:`~stereo_depth_ros.core.pointcloud.organized_xyzrgb_tensor`, or None without ``cloud``.
    """
    check_tensor(left, "left", (1, 3, "H", "W"))
    right_view = validity_config.lr_max_difference is not None
    disp_l, disp_r = predict_disparities(model, left, right, inference_size, precision, right_view)
    return outputs_from_disparities(disp_l, disp_r, left, right, camera, validity_config, cloud, rgb,
                                    matcher_disparity, fusion_margin)


@torch.inference_mode()
def outputs_from_disparities(
    disparity_left: torch.Tensor,
    disparity_right: torch.Tensor | None,
    left: torch.Tensor,
    right: torch.Tensor,
    camera: StereoCamera,
    validity_config: ValidityConfig,
    cloud: bool = True,
    rgb: torch.Tensor | None = None,
    matcher_disparity: torch.Tensor | None = None,
    fusion_margin: float = 0.5,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """The second half of :func:`frame_outputs`: from the network's disparities to the published
    maps and point cloud (fusion, masks, depth, cloud). Pure tensor work, no host synchronisation.

    Args:
        disparity_left, disparity_right: ``(1, 1, H, W)`` the network's disparities in pixels at the
            image size (:func:`predict_disparities`; ``disparity_right`` None in single-pass mode).
        left, right, camera, validity_config, cloud, rgb, matcher_disparity, fusion_margin: as
            :func:`frame_outputs`.

    Returns:
        ``(maps, points)`` as :func:`frame_outputs`.
    """
    check_tensor(left, "left", (1, 3, "H", "W"))
    height, width = left.shape[-2:]
    if (camera.width, camera.height) != (width, height):
        raise ValueError(f"camera: expected a {width}x{height} rig like the images, got {camera.width}x{camera.height}")
    disparity, validity, fusion = fuse_and_validate(disparity_left, disparity_right, left, right, camera,
                                                    validity_config, matcher_disparity, fusion_margin)
    v = validity
    mask = v.mask[0, 0]
    depth = torch.where(mask, v.depth[0, 0].float(), torch.full_like(mask, float("nan"), dtype=torch.float32))
    disp_r = disparity_right[0, 0] if disparity_right is not None else torch.full_like(depth, float("nan"))
    source = fusion.source[0, 0].float() if fusion is not None else torch.zeros_like(depth)
    maps = torch.stack([disparity[0, 0], disp_r, mask.float(), depth,
                        v.confidence[0, 0].float(), v.photometric_error[0, 0].float(), source])
    points = None
    if cloud:
        if rgb is None:
            rgb = (left[0] * 255.0).round().clamp(0, 255).to(torch.uint8).permute(1, 2, 0)
        points = organized_xyzrgb_tensor(depth, camera.K_numpy(), rgb)
    return maps, points
