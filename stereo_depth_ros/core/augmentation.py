"""Stereo photometric augmentation shared by supervised and unlabeled training."""

from __future__ import annotations

import torch

from .checks import check_same_batch_and_size, check_tensor

__all__ = ["jitter_views"]


def jitter_views(
    left: torch.Tensor,
    right: torch.Tensor,
    generator: torch.Generator,
    gain: tuple[float, float] = (0.8, 0.4),
    gamma: tuple[float, float] = (0.75, 0.5),
    bias: float = 0.1,
    noise: float = 0.02,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Independent photometric jitter per view and sample, as two cameras differ.

    Per view and sample: a gain per channel in ``[gain[0], gain[0] + gain[1]]``, a gamma in
    ``[gamma[0], gamma[0] + gamma[1]]``, a brightness offset in ``[-bias/2, bias/2]`` and Gaussian
    noise of standard deviation up to ``noise``. Deterministic for a given ``generator`` state
    (drawn on the CPU, then moved to the images' device).

    Args:
        left, right: ``(B, 3, H, W)`` images in ``[0, 1]``.
        generator: a CPU generator.

    Returns:
        The jittered ``(left, right)``, clamped to ``[0, 1]``.
    """
    check_tensor(left, "left", ("B", 3, "H", "W"))
    check_same_batch_and_size(left, "left", right, "right")
    device = left.device
    params = torch.rand(2, left.shape[0], 6, generator=generator).to(device)
    images = []
    for view, image in enumerate((left, right)):
        p = params[view]
        g = gain[0] + gain[1] * p[:, 0:3].view(-1, 3, 1, 1)
        e = gamma[0] + gamma[1] * p[:, 3].view(-1, 1, 1, 1)
        b = bias * (p[:, 4].view(-1, 1, 1, 1) - 0.5)
        n = noise * p[:, 5].view(-1, 1, 1, 1) * torch.randn(image.shape, generator=generator).to(device)
        images.append((image.clamp(1e-6, 1).pow(e) * g + b + n).clamp(0, 1))
    return images[0], images[1]
