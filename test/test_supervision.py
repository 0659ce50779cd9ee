"""core.network.supervision: the edge weights on hand-built disparity maps, and the weighted loss."""

from __future__ import annotations

import pytest
import torch

from stereo_depth_ros.core.network.model import StereoOutput
from stereo_depth_ros.core.network.supervision import edge_weights, supervised_loss


def _step(height: int = 20, width: int = 30) -> torch.Tensor:
    """Disparity 10 px in columns 0-14, 30 px in columns 15-29: one vertical depth edge."""
    gt = torch.full((1, 1, height, width), 10.0)
    gt[..., 15:] = 30.0
    return gt


def test_edge_weights_cover_the_band_around_the_jump_and_nothing_else():
    weights = edge_weights(_step(), radius_px=3, weight=4.0)
    # The jump marks columns 14 and 15; a 7x7 window grows that to columns 11-18 on every row.
    expected = torch.ones(1, 1, 20, 30)
    expected[..., 11:19] = 4.0
    torch.testing.assert_close(weights, expected)
    # A slanted plane (1 px per column) has no edge; a smaller jump threshold makes every column one.
    ramp = torch.arange(30.0).view(1, 1, 1, 30).expand(1, 1, 20, 30)
    assert (edge_weights(ramp, 3, 4.0) == 1).all()
    assert (edge_weights(ramp, 0, 4.0, jump_px=0.5) == 4).all()
    assert (edge_weights(_step(), 5, 1.0) == 1).all()


def test_weighted_loss_is_the_weighted_mean_and_uniform_weights_change_nothing():
    gt = _step()
    # Off by 0.5 px (smooth-L1: 0.125) in the band, by 3 px (2.5) elsewhere.
    prediction = gt + 3.0
    prediction[..., 11:19] = gt[..., 11:19] + 0.5
    output = StereoOutput(disparity=prediction, levels={}, padded_size=(20, 30))
    valid = torch.ones_like(gt, dtype=torch.bool)
    plain, _ = supervised_loss(output, gt, valid, 192.0)
    assert float(plain) == pytest.approx((8 * 0.125 + 22 * 2.5) / 30)
    uniform, _ = supervised_loss(output, gt, valid, 192.0, torch.full_like(gt, 3.0))
    assert float(uniform) == pytest.approx(float(plain))
    weighted, _ = supervised_loss(output, gt, valid, 192.0, edge_weights(gt, 3, 4.0))
    assert float(weighted) == pytest.approx((4 * 8 * 0.125 + 22 * 2.5) / (4 * 8 + 22))


def test_weighted_loss_gradient_is_larger_in_the_band():
    gt = _step()
    prediction = (gt + 3.0).requires_grad_(True)
    output = StereoOutput(disparity=prediction, levels={}, padded_size=(20, 30))
    loss, _ = supervised_loss(output, gt, torch.ones_like(gt, dtype=torch.bool), 192.0, edge_weights(gt, 3, 4.0))
    loss.backward()
    grad = prediction.grad[0, 0]
    assert torch.allclose(grad[:, 11:19], 4 * grad[:, :11].mean().expand(20, 8))


def test_bad_settings_raise_value_errors():
    gt = _step()
    with pytest.raises(ValueError, match="radius_px"):
        edge_weights(gt, -1, 2.0)
    with pytest.raises(ValueError, match="weight"):
        edge_weights(gt, 3, 0.5)
    with pytest.raises(ValueError, match="target"):
        edge_weights(gt[0], 3, 2.0)
    output = StereoOutput(disparity=gt, levels={}, padded_size=(20, 30))
    with pytest.raises(ValueError, match="pixel_weights"):
        supervised_loss(output, gt, torch.ones_like(gt, dtype=torch.bool), 192.0, torch.ones(1, 1, 5, 5))
