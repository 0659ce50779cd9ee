import pytest
import torch

from stereo_depth_ros.core import losses as L
from stereo_depth_ros.core.warping import warp_left_to_right


def rand(*shape, seed=0, dtype=torch.float64, device="cpu"):
    return torch.rand(*shape, generator=torch.Generator().manual_seed(seed), dtype=dtype).to(device)


def test_ssim_identity_and_range(device, batch):
    x = rand(batch, 3, 10, 12, device=device)
    torch.testing.assert_close(L.ssim(x, x), torch.ones_like(x))
    s = L.ssim(x, rand(batch, 3, 10, 12, seed=1, device=device))
    assert s.shape == x.shape and (s <= 1).all() and (s >= -1).all() and s.mean() < 0.5


def test_ssim_on_a_hand_computed_window():
    # Constant images a and b: SSIM = (2ab + C1) / (a^2 + b^2 + C1) (variances vanish).
    a, b = 0.2, 0.6
    s = L.ssim(torch.full((1, 1, 4, 4), a, dtype=torch.float64), torch.full((1, 1, 4, 4), b, dtype=torch.float64))
    c1 = 0.01**2
    torch.testing.assert_close(s, torch.full_like(s, (2 * a * b + c1) / (a * a + b * b + c1)))


def test_photometric_error_weights_ssim_and_l1():
    x = rand(2, 3, 8, 8)
    assert L.photometric_error(x, x).abs().max() < 1e-12
    y = (x + 0.1).clamp(0, 1)
    pe = L.photometric_error(x, y)
    assert pe.shape == (2, 1, 8, 8)
    expected = (0.85 * ((1 - L.ssim(x, y)) / 2) + 0.15 * (x - y).abs()).mean(1, keepdim=True)
    torch.testing.assert_close(pe, expected)
    torch.testing.assert_close(L.photometric_error(x, y, alpha=0.0), (x - y).abs().mean(1, keepdim=True))
    with pytest.raises(ValueError, match=r"alpha: expected a weight in \[0, 1\]"):
        L.photometric_error(x, y, alpha=1.5)


def test_huber_values():
    r = torch.tensor([-3.0, -0.5, 0.0, 0.5, 3.0], dtype=torch.float64)
    torch.testing.assert_close(L.huber(r, 1.0), torch.tensor([2.5, 0.125, 0.0, 0.125, 2.5], dtype=torch.float64))
    with pytest.raises(ValueError, match="delta"):
        L.huber(r, 0.0)
    with pytest.raises(ValueError, match="floating-point"):
        L.huber(torch.tensor([1, 2]))


def test_smoothness_is_scale_invariant_and_edge_aware():
    image = torch.zeros(1, 1, 8, 8, dtype=torch.float64)
    image[..., 4:] = 1.0  # vertical edge between columns 3 and 4
    d = torch.ones(1, 1, 8, 8, dtype=torch.float64)
    d[..., 4:] = 2.0  # a disparity step at the edge...
    on_edge = L.edge_aware_smoothness(d, image).sum()
    d_off = torch.ones(1, 1, 8, 8, dtype=torch.float64)
    d_off[..., 2:] = 2.0  # ...is cheaper than the same step away from it
    off_edge = L.edge_aware_smoothness(d_off, image).sum()
    assert on_edge < off_edge
    torch.testing.assert_close(L.edge_aware_smoothness(10 * d, image), L.edge_aware_smoothness(d, image))
    assert L.edge_aware_smoothness(torch.full((1, 1, 8, 8), 3.0, dtype=torch.float64), image).abs().max() == 0


def test_left_right_consistency_is_zero_for_consistent_pair():
    d_left = torch.full((2, 1, 6, 20), 3.0, dtype=torch.float64)
    d_right, _ = warp_left_to_right(d_left, d_left)  # constant field: d_R = 3 too
    diff = L.left_right_consistency(d_left, d_right)
    assert diff[..., 3:].abs().max() < 1e-12
    assert L.left_right_consistency(d_left, d_right + 0.5)[..., 3:].sub(0.5).abs().max() < 1e-12


def test_masked_mean():
    v = torch.arange(8, dtype=torch.float64).view(1, 2, 2, 2)
    mask = torch.tensor([[[[True, False], [False, False]]]])
    torch.testing.assert_close(L.masked_mean(v, mask), torch.tensor(2.0, dtype=torch.float64))  # (0 + 4) / 2
    assert L.masked_mean(v, torch.zeros_like(mask)) == 0
    with pytest.raises(ValueError, match="mask: expected shape"):
        L.masked_mean(v, torch.ones(1, 3, 2, 2, dtype=torch.bool))


def test_losses_pass_gradcheck():
    x = rand(2, 2, 5, 6, seed=1).requires_grad_(True)
    y = rand(2, 2, 5, 6, seed=2).requires_grad_(True)
    assert torch.autograd.gradcheck(L.ssim, (x, y))
    assert torch.autograd.gradcheck(L.photometric_error, (x, y))
    d = (rand(2, 1, 5, 6, seed=3) + 1.0).requires_grad_(True)
    assert torch.autograd.gradcheck(L.edge_aware_smoothness, (d, x))
    d_r = (rand(2, 1, 5, 6, seed=4) * 0.5 + 1.2).requires_grad_(True)
    d_l = (rand(2, 1, 5, 6, seed=5) * 0.5 + 1.2).requires_grad_(True)
    assert torch.autograd.gradcheck(L.left_right_consistency, (d_l, d_r))
    r = (rand(10, seed=6) * 4 - 2).requires_grad_(True)
    assert torch.autograd.gradcheck(lambda t: L.huber(t, 0.7), (r,))


@pytest.mark.parametrize(
    "call, message",
    [
        (lambda: L.ssim(torch.rand(1, 3, 4, 4), torch.rand(1, 3, 4, 5)), "y: expected batch 1 and size"),
        (lambda: L.ssim(torch.rand(1, 3, 4, 4), torch.rand(1, 1, 4, 4)), "y: expected 3 channels"),
        (lambda: L.ssim(torch.rand(1, 3, 1, 4), torch.rand(1, 3, 1, 4)), "at least 2x2"),
        (lambda: L.photometric_error(torch.rand(3, 4, 4), torch.rand(3, 4, 4)), r"x: expected shape \(B, C, H, W\)"),
        (lambda: L.edge_aware_smoothness(torch.rand(1, 2, 4, 4), torch.rand(1, 3, 4, 4)), r"disparity: expected shape \(B, 1, H, W\)"),
        (lambda: L.left_right_consistency(torch.rand(1, 1, 4, 4), torch.rand(2, 1, 4, 4)), "disparity_right: expected batch 1"),
    ],
)
def test_rejects_bad_arguments(call, message):
    with pytest.raises(ValueError, match=message):
        call()


def test_census_error_ignores_gain_and_gamma_but_sees_shifts():
    gen = torch.Generator().manual_seed(3)
    x = torch.rand(1, 3, 24, 32, generator=gen, dtype=torch.float64) * 0.8 + 0.1
    assert L.census_error(x, x).abs().max() == 0
    changed = (0.7 * x.pow(1.3) + 0.05).clamp(0, 1)  # gain, gamma and bias: ordering kept
    shifted = torch.roll(x, 2, dims=-1)  # a real 2-pixel misalignment

    def relative(loss):  # cost of the appearance change relative to the cost of the misalignment
        return float(loss(changed, x).mean() / loss(shifted, x).mean())

    assert relative(L.census_error) < 0.1  # measured 0.081
    assert relative(L.census_error) < 0.6 * relative(L.photometric_error)  # SSIM + L1: 0.150
    y = torch.rand(1, 1, 8, 9, generator=gen, dtype=torch.float64, requires_grad=True)
    z = torch.rand(1, 1, 8, 9, generator=gen, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda a, b: L.census_error(a, b, size=3), (y, z))
    with pytest.raises(ValueError, match="odd window"):
        L.census_error(x, x, size=4)


def test_ssim_equals_the_textbook_window_formula():
    """ssim works on window sums; it must equal the mean/variance formula with avg_pool2d."""
    import torch.nn.functional as F

    gen = torch.Generator().manual_seed(7)
    x = torch.rand(2, 3, 17, 23, generator=gen, dtype=torch.float64)
    y = (x + 0.2 * torch.randn(x.shape, generator=gen, dtype=torch.float64)).clamp(0, 1)
    xp, yp = F.pad(x, (1, 1, 1, 1), mode="reflect"), F.pad(y, (1, 1, 1, 1), mode="reflect")
    mx, my = F.avg_pool2d(xp, 3, 1), F.avg_pool2d(yp, 3, 1)
    vx, vy = F.avg_pool2d(xp * xp, 3, 1) - mx * mx, F.avg_pool2d(yp * yp, 3, 1) - my * my
    cxy = F.avg_pool2d(xp * yp, 3, 1) - mx * my
    c1, c2 = 0.01**2, 0.03**2
    expected = (2 * mx * my + c1) * (2 * cxy + c2) / ((mx * mx + my * my + c1) * (vx + vy + c2))
    torch.testing.assert_close(L.ssim(x, y), expected, rtol=0, atol=1e-12)


def test_image_error_function_names_every_adaptation_choice() -> None:
    from typing import get_args, get_type_hints

    from stereo_depth_ros.core.adaptation import AdaptationConfig

    assert set(get_args(get_type_hints(AdaptationConfig)["image_loss"])) == set(L.IMAGE_ERRORS) == {"ssim_l1", "census"}
    a, b = torch.rand(1, 3, 12, 14), torch.rand(1, 3, 12, 14)
    assert torch.equal(L.image_error_function("ssim_l1")(a, b), L.photometric_error(a, b))
    assert torch.equal(L.image_error_function("census")(a, b), L.census_error(a, b))
    with pytest.raises(ValueError, match=r"image_loss: expected one of \['census', 'ssim_l1'\], got 'l2'"):
        L.image_error_function("l2")
