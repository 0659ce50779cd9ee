import pytest
import torch

from stereo_depth_ros.core import masks as M
from stereo_depth_ros.core.warping import warp_right_to_left


def step_scene(width: int = 40, height: int = 4, near: float = 8.0, far: float = 2.0, edge: int = 20):
    """Left disparity: background ``far`` left of ``edge``, a nearer surface ``near`` from ``edge`` on."""
    d = torch.full((1, 1, height, width), far, dtype=torch.float64)
    d[..., edge:] = near
    return d


def test_occlusion_mask_marks_background_hidden_by_nearer_surface():
    d = step_scene()
    occluded = M.occlusion_mask(d)
    # Background pixels u in [edge - (near - far), edge) land where the near surface lands: hidden.
    expected = torch.zeros_like(occluded)
    expected[..., 14:20] = True
    assert torch.equal(occluded, expected)
    assert not M.occlusion_mask(torch.full((1, 1, 3, 10), 4.0)).any()


def test_occlusion_matches_brute_force_on_random_disparity():
    gen = torch.Generator().manual_seed(0)
    d = torch.rand(2, 1, 5, 30, generator=gen, dtype=torch.float64) * 10
    occluded = M.occlusion_mask(d)
    for b in range(2):
        for v in range(5):
            for u in range(30):
                hit = any(d[b, 0, v, u2] - (u2 - u) >= d[b, 0, v, u] for u2 in range(u + 1, 30))
                assert bool(occluded[b, 0, v, u]) == hit


def test_out_of_view_and_depth_range():
    d = torch.full((1, 1, 2, 10), 3.0)
    valid = M.out_of_view_mask(d)
    assert not valid[..., :3].any() and valid[..., 3:].all()
    depth = torch.tensor([[[[0.05, 0.5, 5.0, 50.0, float("nan")]]]])
    assert M.depth_range_mask(depth, 0.1, 10.0).tolist() == [[[[False, True, True, False, False]]]]
    with pytest.raises(ValueError, match="max_depth"):
        M.depth_range_mask(depth, 5.0, 1.0)


def test_left_right_check_flags_inconsistent_pixels():
    d_left = torch.full((1, 1, 3, 12), 2.0)
    d_right = torch.full((1, 1, 3, 12), 2.0)
    d_right[..., 5] = 6.0  # left pixel u = 7 reads d_R(5)
    valid = M.left_right_check(d_left, d_right, max_difference=1.0)
    assert not valid[..., 7].any() and not valid[..., :2].any()
    assert valid[..., 2:7].all() and valid[..., 8:].all()


def test_photometric_mask_and_compute_validity_on_a_consistent_scene():
    gen = torch.Generator().manual_seed(1)
    right = torch.rand(1, 3, 8, 40, generator=gen, dtype=torch.float64)
    d = step_scene(height=8)
    left, _ = warp_right_to_left(right, d)
    # Left disparity and right disparity of this scene.
    d_right = torch.full_like(d, 2.0)
    d_right[..., 12:] = 8.0
    config = M.ValidityConfig(lr_max_difference=1.0, photometric_max=0.2, min_depth=0.5, max_depth=40.0)
    result = M.compute_validity(d, 100.0, 0.1, left, right, d_right, config)
    assert set(result.components) == {"positive", "in_view", "depth_range", "not_occluded", "left_right", "photometric"}
    # Out of view (u < 2) and occluded (14..19) are invalid; the rest is trusted.
    assert not result.mask[..., :2].any() and not result.mask[..., 14:20].any()
    assert result.mask[..., 2:14].all() and result.mask[..., 20:].all()
    assert (result.confidence[result.mask] > 0.5).all() and (result.confidence[~result.mask] == 0).all()
    assert result.photometric_error.shape == (1, 1, 8, 40)
    torch.testing.assert_close(result.depth[..., 0, 0], torch.tensor([[5.0]], dtype=torch.float64))
    # Wrong disparity: photometric test fails where the texture no longer matches.
    bad = M.compute_validity(d + 3.3, 100.0, 0.1, left, right, None, config)
    assert bad.mask.double().mean() < 0.5 * result.mask.double().mean()
    assert M.photometric_mask(torch.tensor([[[[0.1, 0.3]]]]), 0.2).tolist() == [[[[True, False]]]]


def test_depth_range_in_compute_validity_uses_focal_and_baseline():
    d = torch.tensor([[[[1.0, 10.0, 100.0]]]])
    result = M.compute_validity(d, 100.0, 0.1, config=M.ValidityConfig(min_depth=0.5, max_depth=5.0, use_occlusion=False))
    # depths 10, 1, 0.1 m; u - d must also stay inside the image (only u=2, d=1 qualifies).
    assert result.components["depth_range"].tolist() == [[[[False, True, False]]]]


@pytest.mark.parametrize(
    "call, message",
    [
        (lambda: M.ValidityConfig(lr_max_difference=-1.0), "lr_max_difference"),
        (lambda: M.ValidityConfig(min_depth=5.0, max_depth=1.0), "max_depth"),
        (lambda: M.compute_validity(torch.rand(1, 1, 4, 4), 1.0, 1.0, left=torch.rand(1, 3, 4, 4)), "both left and right"),
        (lambda: M.compute_validity(torch.rand(1, 1, 4, 4), 1.0, 1.0, torch.rand(1, 3, 4, 5), torch.rand(1, 3, 4, 5)), "left: expected batch 1 and size"),
        (lambda: M.occlusion_mask(torch.rand(4, 4)), r"disparity_left: expected shape \(B, 1, H, W\)"),
        (lambda: M.photometric_mask(torch.rand(1, 1, 2, 2), 0.0), "threshold"),
    ],
)
def test_rejects_bad_arguments(call, message):
    with pytest.raises(ValueError, match=message):
        call()


def test_compute_validity_components_equal_the_single_tests():
    """compute_validity shares intermediate maps for speed; each component must still be exactly
    what the single-test function (or the photometric error of the warp) says."""
    gen = torch.Generator().manual_seed(4)
    d_left = torch.rand(2, 1, 12, 50, generator=gen) * 20 - 2
    d_left[0, 0, 0, :4] = torch.tensor([float("nan"), float("inf"), -float("inf"), 0.0])
    d_right = d_left + torch.randn(2, 1, 12, 50, generator=gen) * 1.5
    left = torch.rand(2, 3, 12, 50, generator=gen)
    right = torch.rand(2, 3, 12, 50, generator=gen)
    config = M.ValidityConfig(lr_max_difference=1.5, photometric_max=0.25, min_depth=0.5, max_depth=40.0)
    result = M.compute_validity(d_left, 100.0, 0.2, left, right, d_right, config)
    c = result.components
    positive = torch.isfinite(d_left) & (d_left > 0)
    assert torch.equal(c["positive"], positive)
    assert torch.equal(c["in_view"], M.out_of_view_mask(d_left))
    depth = torch.where(positive, 20.0 / torch.where(positive, d_left, torch.ones_like(d_left)), torch.zeros_like(d_left))
    assert torch.equal(c["depth_range"], M.depth_range_mask(depth, 0.5, 40.0))
    torch.testing.assert_close(result.depth, depth)
    # The occlusion and left-right tests agree wherever the disparity is usable at all.
    assert torch.equal(c["not_occluded"] & positive, ~M.occlusion_mask(d_left) & positive)
    usable = positive & c["in_view"]  # left_right_check includes the in-view test
    assert torch.equal(c["left_right"] & usable, M.left_right_check(d_left, d_right, 1.5) & positive)
    from stereo_depth_ros.core.losses import photometric_error

    grey = lambda image: image.mean(dim=1, keepdim=True)  # noqa: E731
    clean = torch.nan_to_num(d_left, nan=0.0, posinf=0.0, neginf=0.0)
    error = photometric_error(warp_right_to_left(grey(right), clean)[0], grey(left))
    torch.testing.assert_close(result.photometric_error, error, atol=1e-5, rtol=0)
    expected = positive & c["in_view"] & c["depth_range"] & c["not_occluded"] & c["left_right"] & c["photometric"]
    assert torch.equal(result.mask, expected)
    assert (result.confidence[~expected] == 0).all() and (result.confidence[expected] >= 0).all()
