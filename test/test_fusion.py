"""Per-pixel fusion of the network's and SGBM's disparity (core/fusion.py) and the masks and
confidence it feeds: an analytic pair where each hypothesis is right on a known half."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from stereo_depth_ros.core.camera import StereoCamera
from stereo_depth_ros.core.fusion import (SOURCE_AGREE, SOURCE_MATCHER, SOURCE_NETWORK, fuse_disparities,
                                          prefers_candidate, reconstruction_error, source_shares)
from stereo_depth_ros.core.masks import ValidityConfig, compute_validity
from stereo_depth_ros.core.metrics import sparsification
from stereo_depth_ros.core.pipeline import fuse_and_validate, matcher_at_size

H, W, D = 48, 96, 6.0  # the pair's true disparity is D everywhere


def _pair(seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """A random-texture left image and the right image that sees it shifted by D pixels:
    right(x) = left(x + D), so left pixel u is right pixel u - D: true disparity D everywhere."""
    rng = np.random.default_rng(seed)
    wide = rng.random((H, W + int(D)), dtype=np.float32)
    wide = (wide + np.roll(wide, 1, 1) + np.roll(wide, 1, 0)) / 3  # a little spatial correlation
    left = torch.from_numpy(wide[:, :W].copy())[None, None].repeat(1, 3, 1, 1)
    right = torch.from_numpy(wide[:, int(D):].copy())[None, None].repeat(1, 3, 1, 1)
    return left, right


def _hypotheses() -> tuple[torch.Tensor, torch.Tensor]:
    """The network right on the left half (wrong by 9 px on the right half), the matcher right on
    the right half (wrong by 4 px on the left half), with a hole in columns 60-69 (network wrong there)."""
    network = torch.full((1, 1, H, W), D)
    network[..., W // 2:] = D + 9
    matcher = torch.full((1, 1, H, W), D)
    matcher[..., :W // 2] = D + 4
    matcher[..., 60:70] = float("nan")
    return network, matcher


def test_reconstruction_error_is_zero_through_the_true_disparity_and_not_elsewhere():
    left, right = _pair()
    inner = (slice(None), slice(None), slice(2, -2), slice(int(D) + 2, -2))
    assert float(reconstruction_error(torch.full((1, 1, H, W), D), left, right)[inner].max()) < 1e-5
    assert float(reconstruction_error(torch.full((1, 1, H, W), D + 3), left, right)[inner].mean()) > 0.05


def test_prefers_candidate_needs_the_margin():
    a, b = torch.full((1, 1, 2, 2), 0.6), torch.full((1, 1, 2, 2), 1.0)
    assert prefers_candidate(a, b, 0.0).all() and prefers_candidate(a, b, 0.3).all()
    assert not prefers_candidate(a, b, 0.5).any()
    with pytest.raises(ValueError, match="margin"):
        prefers_candidate(a, b, 1.0)


@pytest.mark.parametrize("margin", [0.0, 0.5])
def test_fusion_takes_the_right_hypothesis_on_each_half(margin):
    left, right = _pair()
    network, matcher = _hypotheses()
    fused = fuse_disparities(network, matcher, left, right, margin)
    columns = torch.arange(W)
    # Away from the image borders and, the error being windowed (SSIM 3x3), 2 px from where a
    # hypothesis changes value (columns 48, 60, 70).
    checked = (columns >= int(D) + 2) & (columns < W - 2)
    for edge in (W // 2, 60, 70):
        checked &= (columns - edge).abs() > 2
    good = checked & ((columns < 60) | (columns >= 70))  # the hole: the network is the only (wrong) hypothesis
    assert torch.allclose(fused.disparity[..., good], torch.tensor(D))
    assert (fused.disparity[..., 60:70] == D + 9).all() and not torch.isnan(fused.disparity).any()
    # Sources: the network where it is right and SGBM wrong, SGBM where it is right, the network in the hole.
    assert (fused.source[..., checked & (columns < W // 2)] == SOURCE_NETWORK).all()
    assert (fused.source[..., good & (columns >= W // 2)] == SOURCE_MATCHER).all()
    assert (fused.source[..., 60:70] == SOURCE_NETWORK).all()
    shares = source_shares(fused.source)
    assert sum(shares.values()) == pytest.approx(1.0) and shares["agree"] == 0.0


def test_agreeing_hypotheses_publish_the_matcher_and_are_marked():
    left, right = _pair()
    network = torch.full((1, 1, H, W), D + 1.5)  # within 2 px of the matcher: they agree
    fused = fuse_disparities(network, torch.full((1, 1, H, W), D), left, right)
    assert (fused.source == SOURCE_AGREE).all() and torch.allclose(fused.disparity, torch.tensor(D))


def test_source_shares_count_the_valid_pixels_only():
    source = torch.tensor([[[[0, 1, 2, 2], [2, 2, 1, 0]]]], dtype=torch.uint8)
    valid = torch.tensor([[[[True, False, True, True], [True, False, True, False]]]])
    # Valid: 0, 2, 2 | 2, 1 -> one network, one sgbm, three agree.
    assert source_shares(source, valid) == pytest.approx({"network": 0.2, "sgbm": 0.2, "agree": 0.6})
    assert source_shares(source) == pytest.approx({"network": 0.25, "sgbm": 0.25, "agree": 0.5})
    assert source_shares(source, torch.zeros_like(valid)) == {"network": 0.0, "sgbm": 0.0, "agree": 0.0}
    with pytest.raises(ValueError, match="valid"):
        source_shares(source, valid[..., :2])


def test_fusion_rejects_bad_arguments():
    network, matcher = _hypotheses()
    left, right = _pair()
    with pytest.raises(ValueError, match="matcher"):
        fuse_disparities(network, matcher[..., :10], left, right)
    with pytest.raises(ValueError, match="agreement_px"):
        fuse_disparities(network, matcher, left, right, agreement_px=0.0)


def test_masks_trust_the_matcher_pixels_and_test_the_network_ones():
    """SGBM's pixels passed SGBM's own checks: the network's photometric test does not apply to
    them; network pixels are tested; agreement ranks first in the confidence."""
    left, right = _pair()
    network = torch.full((1, 1, H, W), D)
    network[..., 30:64] = D + 9  # wrong on columns 30-63: a large photometric error
    matcher = torch.full((1, 1, H, W), D)  # right (agreeing with the network) elsewhere...
    matcher[..., 30:64] = D + 5  # ... wrong, and disagreeing, on columns 30-63...
    matcher[..., 40:56] = float("nan")  # ... with a hole: the network alone there, and wrong
    fused = fuse_disparities(network, matcher, left, right, margin=0.5)
    config = ValidityConfig(lr_max_difference=None, photometric_max=0.3, min_depth=0.0, max_depth=1e9)
    v = compute_validity(fused.disparity, 1.0, 1.0, left, right, None, config, fusion=fused)
    plain = compute_validity(fused.disparity, 1.0, 1.0, left, right, None, config)
    in_view = (torch.arange(W) - fused.disparity >= 0)
    matcher_only = (fused.source == SOURCE_MATCHER) & in_view
    network_only = (fused.source == SOURCE_NETWORK) & in_view
    agree = (fused.source == SOURCE_AGREE) & in_view
    assert int(matcher_only.sum()) > 100 and int(network_only.sum()) > 100 and int(agree.sum()) > 1000
    assert v.mask[matcher_only].all()  # SGBM's (wrong) pixels are exempt from the network's tests...
    assert float(plain.mask[matcher_only].float().mean()) < 0.3  # ... which would refuse most of them
    # The same tests as without fusion on the network's pixels (away from other sources: the masks
    # reuse the fusion's per-hypothesis error, whose SSIM window does not mix sources).
    other = torch.nn.functional.max_pool2d((fused.source != SOURCE_NETWORK).float(), 3, 1, 1) > 0
    interior = network_only & ~other
    assert int(interior.sum()) > 50 and torch.equal(v.mask[interior], plain.mask[interior])
    assert float(v.confidence[agree].min()) >= 0.7 - 1e-6 and float(v.confidence[matcher_only].max()) <= 0.6 + 1e-6
    assert float(v.confidence[network_only].max()) <= 0.5 + 1e-6
    assert torch.equal(v.components["matcher"], fused.source != SOURCE_NETWORK)


def test_fuse_and_validate_resizes_the_matcher_and_keeps_its_holes():
    left, right = _pair()
    camera = StereoCamera(W, H, 100.0, 100.0, (W - 1) / 2, (H - 1) / 2, (W - 1) / 2, 0.1)
    small = torch.full((1, 1, H // 2, W // 2), D / 2)
    small[..., :, 30:35] = float("nan")
    up = matcher_at_size(small, (H, W))
    assert up.shape == (1, 1, H, W) and torch.isnan(up[..., 60:70]).all() and torch.allclose(up[..., :50], torch.tensor(D))
    network = torch.full((1, 1, H, W), D + 9)
    disparity, validity, fusion = fuse_and_validate(network, None, left, right, camera,
                                                    ValidityConfig(lr_max_difference=None), small)
    assert fusion is not None and (fusion.source[..., 60:70] == SOURCE_NETWORK).all()
    # Pixel centres stay aligned: up by 1.2x and back is every pixel itself (plain nearest shifted 4 in 5).
    ramp = torch.arange(40.0).repeat(1, 1, 25, 1)
    there_and_back = matcher_at_size(matcher_at_size(ramp, (30, 48)), (25, 40))
    assert torch.allclose(there_and_back, ramp, atol=1e-5)
    half = matcher_at_size(torch.arange(8.0).view(1, 1, 1, 8), (1, 4))  # pixel j of 4 covers 2j and 2j + 1
    assert torch.equal(half[0, 0, 0], torch.tensor([1.0, 3.0, 5.0, 7.0]) / 2)
    assert torch.allclose(disparity[..., int(D) + 2:58], torch.tensor(D))
    alone, _, none = fuse_and_validate(network, None, left, right, camera, ValidityConfig(lr_max_difference=None))
    assert none is None and alone is network


def test_sparsification_of_a_known_ranking():
    gt = np.full((4, 10), 5.0, np.float32)
    pred = gt.copy()
    pred[:, 5:] = 9.0  # the right half wrong
    confidence = np.zeros_like(gt)
    confidence[:, :5] = 1.0
    assert sparsification(pred, confidence, gt, [0.5, 1.0]) == [0.0, 50.0]
    assert sparsification(pred, -confidence, gt, [0.5]) == [100.0]  # the wrong half ranked first
    pred[0, 0] = np.nan  # a hole is wrong and ranks last: a wrong pixel of the other half moves up
    assert sparsification(pred, confidence, gt, [0.5, 1.0]) == [5.0, 52.5]
    with pytest.raises(ValueError, match="densities"):
        sparsification(pred, confidence, gt, [0.0])
