"""The self-supervised stereo loss shared by online adaptation and training on unlabeled recordings.

    photometric_weight * photometric (0.85 (1-SSIM)/2 + 0.15 L1, or census; auto-masked)
    + smoothness_weight * edge-aware smoothness (mean-normalised disparity)
    + proxy_weight * truncated L1 to proxy labels (OpenCV SGBM's confident pixels, background-filled holes)

No ground truth anywhere: the right image re-sampled into the left view through the predicted
disparity (``grid_sample``) should reproduce the left image, and where SGBM is confident its
disparity is a label (:mod:`.proxy`). :class:`~.adaptation.OnlineAdapter` adds its left-right and
multi-scale options around this; ``stereo_depth_train --unlabeled`` uses it as it is.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Callable

import torch

from .checks import check_same_batch_and_size, check_tensor
from .fusion import prefers_candidate, reconstruction_error
from .losses import edge_aware_smoothness, image_error_function, masked_mean, photometric_error
from .proxy import ProxyLabels, proxy_loss
from .warping import warp_right_to_left

if TYPE_CHECKING:
    from .adaptation import AdaptationConfig

__all__ = ["self_supervised_loss", "gate_labels"]


def self_supervised_loss(
    disparity: torch.Tensor, left: torch.Tensor, right: torch.Tensor, config: "AdaptationConfig",
    labels: ProxyLabels | None = None,
) -> tuple[torch.Tensor, dict[str, float], float]:
    """The loss of a predicted left disparity, with its terms.

    Args:
        disparity: ``(B, 1, H, W)`` predicted left disparity in pixels (with gradient).
        left, right: ``(B, 3, H, W)`` rectified images in ``[0, 1]``.
        config: the weights and options (``photometric_weight``, ``smoothness_weight``,
            ``image_loss``, ``automask``, ``proxy``, ``proxy_weight``, ``proxy_truncation``,
            ``proxy_fill_weight``).
        labels: the proxy labels of the pair; required unless ``config.proxy == "none"``.

    Returns:
        ``(loss, terms, valid_fraction)``: ``terms`` holds ``photometric``, ``smoothness`` and, with a
        proxy, ``proxy``, ``proxy_density`` and ``proxy_agreement``; ``valid_fraction`` is the share
        of pixels in the photometric term (auto-masking).
    """
    check_tensor(disparity, "disparity", ("B", 1, "H", "W"))
    check_tensor(left, "left", ("B", 3, "H", "W"))
    check_same_batch_and_size(disparity, "disparity", left, "left")
    check_same_batch_and_size(left, "left", right, "right")
    c = config
    # Every pixel enters the photometric term (border padding for samples outside the right
    # image): averaging over in-view pixels only lets the network lower the loss by pushing
    # disparities out of view, which is how full adaptation diverged in our first runs.
    image_error = image_error_function(c.image_loss)
    recon, _ = warp_right_to_left(right, disparity, padding_mode="border")
    error = image_error(recon, left)
    mask = torch.ones_like(error, dtype=torch.bool)
    if c.automask:
        with torch.no_grad():
            identity = image_error(right, left)
        mask = error.detach() < identity
    valid_fraction = float(mask.float().mean())
    photo = masked_mean(error, mask)
    smooth = edge_aware_smoothness(disparity, left).mean()
    loss = c.photometric_weight * photo + c.smoothness_weight * smooth
    terms = {"photometric": float(photo.detach()), "smoothness": float(smooth.detach())}
    if c.proxy != "none":
        if labels is None:
            raise ValueError(f"labels: expected proxy labels with proxy={c.proxy!r}, got None")
        if c.proxy_gate == "photometric":
            labels = gate_labels(labels, left, right, error.detach(), image_error, c.proxy_gate_margin)
        proxy, stats = proxy_loss(disparity, labels, c.proxy_truncation, c.proxy_fill_weight)
        loss = loss + c.proxy_weight * proxy
        terms.update(proxy=float(proxy.detach()), proxy_density=stats["density"], proxy_agreement=stats["agreement"])
        if labels.learnable is not None:
            terms["proxy_learnable"] = stats["learnable"]
    return loss, terms, valid_fraction


def gate_labels(
    labels: ProxyLabels, left: torch.Tensor, right: torch.Tensor, prediction_error: torch.Tensor,
    image_error: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] = photometric_error,
    margin: float = 0.0,
) -> ProxyLabels:
    """Keep only the labels that explain the images better than the prediction (Depth Hints).

    Without ``labels.reference``: SGBM's label counts where warping through it gives a per-pixel
    image error below ``(1 - margin)`` times the prediction's. With the reference (the network's
    disparity before adaptation) SGBM's label must beat both the prediction and the reference that
    way; elsewhere the reference is the label wherever the prediction does not reconstruct better
    than it. So the network moves where the images clearly say so, and where they cannot tell
    (weak texture: every candidate reconstructs about equally) it is held where it started instead
    of wandering.

    Args:
        labels: proxy labels ``(B, 1, H, W)``.
        left, right: ``(B, 3, H, W)`` images in ``[0, 1]``.
        prediction_error: ``(B, 1, H, W)`` per-pixel image error of the right image warped through
            the current prediction (no gradient needed).
        image_error: the per-pixel error used for ``prediction_error``.
        margin: a candidate must beat the prediction's error by this fraction (``[0, 1)``): where the
            images barely tell the two apart, nothing pulls.

    Returns:
        The chosen labels: ``valid`` (SGBM's confident pixels, and reference pixels), ``filled``
        (background-filled holes), both cleared where no candidate beats the prediction; with a
        reference also ``learnable``, the pixels whose SGBM label won.
    """
    check_tensor(prediction_error, "prediction_error", ("B", 1, "H", "W"))
    if not 0.0 <= margin < 1.0:
        raise ValueError(f"margin: expected a fraction in [0, 1), got {margin!r}")
    # The same test decides which hypothesis the node publishes (:mod:`.fusion`).
    with torch.no_grad():
        labelled = labels.valid | labels.filled
        proxy_error = torch.where(labelled, reconstruction_error(labels.disparity, left, right, image_error),
                                  torch.full_like(prediction_error, float("inf")))
        if labels.reference is None:
            better = prefers_candidate(proxy_error, prediction_error, margin)
            return ProxyLabels(labels.disparity, labels.valid & better, labels.filled & better)
        reference_error = reconstruction_error(labels.reference, left, right, image_error)
        # SGBM must clearly beat both the prediction and the reference; elsewhere the reference
        # holds wherever the prediction does not reconstruct better than it (ties included).
        use_proxy = prefers_candidate(proxy_error, torch.minimum(prediction_error, reference_error), margin)
        use_reference = ~use_proxy & (reference_error <= prediction_error)
        disparity = torch.where(use_proxy, labels.disparity, labels.reference)
        valid = use_reference | (use_proxy & labels.valid)
        filled = use_proxy & labels.filled
    return ProxyLabels(disparity, valid, filled, labels.reference, use_proxy & labelled)
