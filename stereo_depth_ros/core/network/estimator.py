"""Numpy-facing disparity estimation with the network (what tools and the node call)."""

from __future__ import annotations

import os
from typing import Any

import numpy as np
import torch

from .model import StereoNetwork
from .weights import load_model

__all__ = ["StereoEstimator", "image_to_tensor", "predict_left_right", "prepare_for_inference"]


def prepare_for_inference(model: StereoNetwork, device: torch.device | str) -> StereoNetwork:
    """Eval mode on ``device``; on CPU also the channels-last layout, which oneDNN runs much faster
    (640x480 on 2 cores: 199 -> 114 ms in our measurement, outputs equal to 1e-3 px)."""
    device = torch.device(device)
    model = model.to(device).eval()
    if device.type == "cpu":
        model = model.to(memory_format=torch.channels_last)
    return model


def image_to_tensor(image: np.ndarray, device: torch.device | str = "cpu") -> torch.Tensor:
    """``(H, W)`` / ``(H, W, 1|3)`` image (float in ``[0, 1]`` or uint8/uint16) -> ``(1, 3, H, W)`` float32."""
    array = np.asarray(image)
    if array.ndim == 2:
        array = array[..., None]
    if array.ndim != 3 or array.shape[-1] not in (1, 3):
        raise ValueError(f"image: expected (H, W), (H, W, 1) or (H, W, 3), got shape {array.shape}")
    if array.dtype == np.uint8:
        t = torch.from_numpy(np.ascontiguousarray(array)).to(device).float().div_(255.0)
    elif array.dtype == np.uint16:
        t = torch.from_numpy(array.astype(np.float32) / 65535.0).to(device)
    elif np.issubdtype(array.dtype, np.floating):
        t = torch.from_numpy(np.ascontiguousarray(array, dtype=np.float32)).to(device)
    else:
        raise ValueError(f"image: expected uint8, uint16 or float values, got dtype {array.dtype}")
    t = t.permute(2, 0, 1).unsqueeze(0)
    if t.shape[1] == 1:
        t = t.expand(1, 3, -1, -1)
    return t.contiguous()


def predict_left_right(model: StereoNetwork, left: torch.Tensor, right: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Left and right disparity ``(B, 1, H, W)`` each, in one batched forward pass.

    The right disparity is the left disparity of the mirrored rig: flip both images horizontally
    and swap them, predict, flip back. Call under ``torch.inference_mode()`` for inference.
    """
    batch = left.shape[0]
    both = model(torch.cat([left, torch.flip(right, [-1])]), torch.cat([right, torch.flip(left, [-1])])).disparity
    return both[:batch], torch.flip(both[batch:], [-1])


class StereoEstimator:
    """Runs a disparity network (:class:`~.model.StereoNetwork`, any architecture) on numpy images.

    Args:
        model: the network (put in eval mode).
        device: where to run it.
        metadata: weights metadata (shown in diagnostics and reports).
    """

    name = "network"

    def __init__(self, model: StereoNetwork, device: str | torch.device = "cpu", metadata: dict[str, Any] | None = None) -> None:
        self.device = torch.device(device)
        self.model = prepare_for_inference(model, self.device)
        self.metadata = metadata or {}

    @classmethod
    def from_weights(cls, path: str | os.PathLike[str] | None = None, device: str | torch.device = "cpu") -> "StereoEstimator":
        """Load weights (the shipped default when ``path`` is None) onto ``device``."""
        model, meta = load_model(path, device)
        return cls(model, device, meta)

    @torch.inference_mode()
    def predict(self, left: torch.Tensor, right: torch.Tensor) -> torch.Tensor:
        """``(B, 3, H, W)`` images in ``[0, 1]`` -> ``(B, 1, H, W)`` disparity in pixels."""
        return self.model(left.to(self.device), right.to(self.device)).disparity

    @torch.inference_mode()
    def predict_both(self, left: torch.Tensor, right: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Left and right disparity ``(B, 1, H, W)`` each (see :func:`predict_left_right`)."""
        return predict_left_right(self.model, left.to(self.device), right.to(self.device))

    def __call__(self, left: np.ndarray, right: np.ndarray) -> np.ndarray:
        """``(H, W, 3)`` images (float ``[0, 1]`` or uint8) -> ``(H, W)`` float32 disparity in pixels."""
        lt, rt = image_to_tensor(left, self.device), image_to_tensor(right, self.device)
        if lt.shape != rt.shape:
            raise ValueError(f"left/right: expected equal sizes, got {tuple(left.shape)} and {tuple(right.shape)}")
        return self.predict(lt, rt)[0, 0].float().cpu().numpy()
