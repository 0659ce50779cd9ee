import math

import pytest
import torch

from stereo_depth_ros.core import geometry as g


def random_rotation_vectors(n: int, angle: float, generator: torch.Generator) -> torch.Tensor:
    axis = torch.randn(n, 3, dtype=torch.float64, generator=generator)
    return axis / axis.norm(dim=1, keepdim=True) * angle


def test_disparity_depth_round_trip_and_invalid(device, batch):
    d = torch.rand(batch, 1, 6, 7, device=device, dtype=torch.float64) * 100 + 0.5
    d[:, :, 0, 0] = 0.0
    d[:, :, 0, 1] = -3.0
    d[:, :, 0, 2] = float("nan")
    z = g.disparity_to_depth(d, 500.0, 0.1)
    assert torch.all(z[:, :, 0, :3] == 0)
    interior = d > 0
    torch.testing.assert_close(z[interior], (50.0 / d)[interior])
    back = g.depth_to_disparity(z, 500.0, 0.1)
    torch.testing.assert_close(back[interior], d[interior])
    assert torch.all(back[:, :, 0, :3] == 0)
    nan_depth = g.disparity_to_depth(d, 500.0, 0.1, invalid_value=float("nan"))
    assert torch.isnan(nan_depth[:, :, 0, :3]).all()


def test_disparity_to_depth_per_batch_calibration_and_gradients():
    d = torch.full((2, 1, 3, 3), 10.0, dtype=torch.float64, requires_grad=True)
    z = g.disparity_to_depth(d, torch.tensor([100.0, 200.0], dtype=torch.float64), 0.5)
    assert z[0].unique().item() == pytest.approx(5.0) and z[1].unique().item() == pytest.approx(10.0)
    d2 = torch.tensor([[[[0.0, 2.0]]]], dtype=torch.float64, requires_grad=True)
    g.disparity_to_depth(d2, 1.0, 1.0).sum().backward()
    assert torch.isfinite(d2.grad).all() and d2.grad[0, 0, 0, 0] == 0


@pytest.mark.parametrize(
    "call, message",
    [
        (lambda: g.disparity_to_depth(torch.ones(1, 2, 4, 4), 1.0, 1.0), r"disparity: expected shape \(B, 1, H, W\)"),
        (lambda: g.disparity_to_depth(torch.ones(4, 4), 1.0, 1.0), "disparity: expected shape"),
        (lambda: g.disparity_to_depth(torch.ones(1, 1, 4, 4, dtype=torch.int64), 1.0, 1.0), "floating-point"),
        (lambda: g.disparity_to_depth(torch.ones(1, 1, 4, 4), -1.0, 1.0), "focal: expected finite positive"),
        (lambda: g.disparity_to_depth(torch.ones(1, 1, 4, 4), 1.0, 0.0), "baseline: expected finite positive"),
        (lambda: g.disparity_to_depth(torch.ones(2, 1, 4, 4), torch.ones(3), 1.0), r"focal: expected a scalar or a tensor of shape \(2,\)"),
        (lambda: g.disparity_to_depth([1.0], 1.0, 1.0), "expected a torch.Tensor"),
        (lambda: g.backproject(torch.ones(1, 1, 4, 4), torch.eye(4)), r"K: expected shape \(3, 3\)"),
        (lambda: g.backproject(torch.ones(2, 1, 4, 4), torch.eye(3).repeat(3, 1, 1)), r"K: expected shape"),
        (lambda: g.backproject(torch.ones(1, 1, 4, 4), torch.zeros(3, 3)), "positive focal"),
        (lambda: g.project(torch.ones(1, 2, 4), torch.eye(3)), r"points: expected a tensor of shape \(B, 3, \*\)"),
        (lambda: g.transform_points(torch.eye(3), torch.ones(1, 3, 5)), r"b_T_a: expected shape \(B, 4, 4\)"),
        (lambda: g.se3_exp(torch.zeros(2, 5)), r"xi: expected shape \(B, 6\)"),
        (lambda: g.so3_log(torch.eye(4).unsqueeze(0)), r"R: expected shape \(B, 3, 3\)"),
        (lambda: g.stereo_transform(-0.1), "baseline: expected finite positive"),
        (lambda: g.pixel_grid(0, 3), "positive size"),
    ],
)
def test_rejects_bad_arguments(call, message):
    with pytest.raises(ValueError, match=message):
        call()


def test_backproject_then_project_returns_pixel_grid(device, batch):
    K = torch.tensor([[420.0, 0, 33.5], [0, 410.0, 21.0], [0, 0, 1]], dtype=torch.float64, device=device)
    depth = torch.rand(batch, 1, 24, 40, dtype=torch.float64, device=device) * 20 + 0.5
    points = g.backproject(depth, K)
    assert points.shape == (batch, 3, 24, 40)
    torch.testing.assert_close(points[:, 2:3], depth)
    pixels = g.project(points, K)
    grid = g.pixel_grid(24, 40, device, torch.float64)[:, :2].expand(batch, -1, -1, -1)
    torch.testing.assert_close(pixels, grid)


def test_random_points_project_to_KX_over_Z(device):
    gen = torch.Generator().manual_seed(1)
    K = torch.tensor([[300.0, 0, 160.0], [0, 310.0, 120.0], [0, 0, 1]], dtype=torch.float64)
    X = torch.randn(2, 3, 500, dtype=torch.float64, generator=gen)
    X[:, 2] = X[:, 2].abs() * 5 + 0.2
    uv = g.project(X.to(device), K.to(device)).cpu()
    expected = (K @ X)[:, :2] / X[:, 2:3]
    torch.testing.assert_close(uv, expected)


def test_project_preserves_sign_of_points_behind_camera():
    K = torch.eye(3, dtype=torch.float64)
    X = torch.tensor([[[1.0, 1.0], [0.0, 0.0], [1e-12, -1e-12]]], dtype=torch.float64)
    uv = g.project(X, K)
    assert uv[0, 0, 0] > 1e5 and uv[0, 0, 1] < -1e5 and torch.isfinite(uv).all()


@pytest.mark.parametrize("angle", [0.0, 1e-6, 1e-3, 0.1, 1.0, 2.5, math.pi - 1e-3, math.pi - 1e-6])
def test_se3_exp_log_round_trip(angle):
    gen = torch.Generator().manual_seed(7)
    w = random_rotation_vectors(16, angle, gen)
    xi = torch.cat([torch.randn(16, 3, dtype=torch.float64, generator=gen), w], dim=1)
    T = g.se3_exp(xi)
    R = T[:, :3, :3]
    torch.testing.assert_close(R @ R.transpose(1, 2), torch.eye(3, dtype=torch.float64).expand(16, 3, 3), atol=1e-12, rtol=0)
    torch.testing.assert_close(torch.linalg.det(R), torch.ones(16, dtype=torch.float64))
    torch.testing.assert_close(g.se3_log(T), xi, atol=1e-9, rtol=0)
    torch.testing.assert_close(g.se3_exp(g.se3_log(T)), T, atol=1e-12, rtol=0)


def test_so3_matches_rodrigues_for_known_rotation():
    w = torch.tensor([[0.0, 0.0, math.pi / 2]], dtype=torch.float64)
    R = g.so3_exp(w)
    expected = torch.tensor([[0.0, -1.0, 0.0], [1.0, 0.0, 0.0], [0.0, 0.0, 1.0]], dtype=torch.float64)
    torch.testing.assert_close(R[0], expected, atol=1e-15, rtol=0)
    torch.testing.assert_close(g.so3_log(R), w)


def test_se3_gradients_are_finite_at_zero():
    xi = torch.zeros(1, 6, dtype=torch.float64, requires_grad=True)
    g.se3_exp(xi).sum().backward()
    assert torch.isfinite(xi.grad).all()
    T = g.se3_exp(torch.zeros(1, 6, dtype=torch.float64)).requires_grad_(True)
    g.se3_log(T).sum().backward()
    assert torch.isfinite(T.grad).all()
    assert torch.autograd.gradcheck(g.se3_exp, (torch.randn(2, 6, dtype=torch.float64, requires_grad=True),))


def test_compose_inverse_and_transform_points():
    gen = torch.Generator().manual_seed(3)
    a = g.se3_exp(torch.randn(4, 6, dtype=torch.float64, generator=gen))
    b = g.se3_exp(torch.randn(4, 6, dtype=torch.float64, generator=gen))
    torch.testing.assert_close(g.se3_compose(a, g.se3_inverse(a)), torch.eye(4, dtype=torch.float64).expand(4, 4, 4))
    torch.testing.assert_close(g.se3_compose(a, b), a @ b)
    X = torch.randn(4, 3, 10, 11, dtype=torch.float64, generator=gen)
    Y = g.transform_points(g.se3_compose(a, b), X)
    torch.testing.assert_close(Y, g.transform_points(a, g.transform_points(b, X)))
    torch.testing.assert_close(g.transform_points(g.se3_inverse(a), g.transform_points(a, X)), X)


def test_stereo_transform_moves_points_by_minus_baseline():
    T = g.stereo_transform(0.12, batch=2, dtype=torch.float64)
    X = torch.tensor([[[1.0], [2.0], [3.0]]], dtype=torch.float64).expand(2, 3, 1)
    torch.testing.assert_close(g.transform_points(T, X)[:, :, 0], torch.tensor([[0.88, 2.0, 3.0]] * 2, dtype=torch.float64))
