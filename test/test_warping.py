import pytest
import torch
import torch.nn.functional as F

from stereo_depth_ros.core import geometry as g
from stereo_depth_ros.core import warping as w


def textured(batch: int, channels: int, height: int, width: int, device, dtype=torch.float64, seed: int = 0):
    gen = torch.Generator().manual_seed(seed)
    return torch.rand(batch, channels, height, width, generator=gen, dtype=dtype).to(device)


@pytest.mark.parametrize("k", [1, 3, 7])
def test_constant_disparity_shifts_by_exactly_k_pixels(device, batch, k):
    right = textured(batch, 3, 12, 30, device)
    disparity = torch.full((batch, 1, 12, 30), float(k), dtype=torch.float64, device=device)
    left, in_view = w.warp_right_to_left(right, disparity)
    torch.testing.assert_close(left[..., k:], right[..., :-k], atol=1e-12, rtol=0)
    assert not in_view[..., :k].any() and in_view[..., k:].all()
    # left -> right goes the other way: right(u) = left(u + k).
    back, in_view_r = w.warp_left_to_right(right, disparity)
    torch.testing.assert_close(back[..., :-k], right[..., k:], atol=1e-12, rtol=0)
    assert not in_view_r[..., -k:].any() and in_view_r[..., :-k].all()


def test_subpixel_disparity_interpolates_linearly(device):
    right = textured(1, 2, 5, 20, device)
    d = 2.25
    left, _ = w.warp_right_to_left(right, torch.full((1, 1, 5, 20), d, dtype=torch.float64, device=device))
    expected = 0.75 * right[..., 1:-2] + 0.25 * right[..., 0:-3]  # sample at u - 2.25, u = 3..19
    torch.testing.assert_close(left[..., 3:], expected, atol=1e-12, rtol=0)


def test_each_batch_element_uses_its_own_disparity(device):
    right = textured(3, 1, 6, 16, device)
    disparity = torch.stack([torch.full((1, 6, 16), float(k)) for k in (1, 2, 4)]).to(device, torch.float64)
    left, _ = w.warp_right_to_left(right, disparity)
    for i, k in enumerate((1, 2, 4)):
        torch.testing.assert_close(left[i, :, :, k:], right[i, :, :, :-k], atol=1e-12, rtol=0)


@pytest.mark.parametrize("align_corners", [False, True])
def test_pixels_to_grid_is_identity_for_matching_align_corners(align_corners):
    image = textured(2, 3, 7, 9, "cpu")
    pixels = g.pixel_grid(7, 9, dtype=torch.float64)[:, :2].expand(2, -1, -1, -1)
    grid = w.pixels_to_grid(pixels, 7, 9, align_corners)
    out = F.grid_sample(image, grid, mode="bilinear", padding_mode="zeros", align_corners=align_corners)
    torch.testing.assert_close(out, image, atol=1e-12, rtol=0)
    # The other convention shifts the image by a fraction of a pixel: the pairing matters.
    wrong = F.grid_sample(image, grid, mode="bilinear", padding_mode="zeros", align_corners=not align_corners)
    assert (wrong - image).abs().max() > 1e-3


def test_general_warp_with_x_translation_equals_disparity_warp(device, batch):
    f, B = 80.0, 0.25
    K = torch.tensor([[f, 0, 15.5], [0, f, 10.0], [0, 0, 1]], dtype=torch.float64, device=device)
    depth = textured(batch, 1, 20, 32, device, seed=3) * 4 + 2.0  # metres
    right = textured(batch, 3, 20, 32, device, seed=4)
    T = g.stereo_transform(B, batch, torch.float64, device)
    by_pose, valid_pose = w.inverse_warp(right, depth, T, K)
    by_disparity, valid_disp = w.warp_right_to_left(right, f * B / depth)
    torch.testing.assert_close(by_pose, by_disparity, atol=1e-10, rtol=0)
    assert torch.equal(valid_pose, valid_disp)
    # Inverse depth gives the same answer (a common mix-up).
    by_inverse, _ = w.inverse_warp(right, 1.0 / depth, T, K, inverse_depth=True)
    torch.testing.assert_close(by_inverse, by_pose, atol=1e-10, rtol=0)


def test_general_warp_identity_pose_reproduces_image_and_masks_bad_depth():
    K = torch.tensor([[50.0, 0, 8.0], [0, 50.0, 6.0], [0, 0, 1]], dtype=torch.float64)
    image = textured(1, 3, 12, 16, "cpu")
    depth = torch.full((1, 1, 12, 16), 3.0, dtype=torch.float64)
    depth[0, 0, 0, 0] = 0.0
    depth[0, 0, 0, 1] = float("nan")
    out, valid = w.inverse_warp(image, depth, torch.eye(4, dtype=torch.float64), K)
    assert not valid[0, 0, 0, 0] and not valid[0, 0, 0, 1] and valid[0, 0, 1:].all()
    torch.testing.assert_close(out[..., 1:, :], image[..., 1:, :], atol=1e-12, rtol=0)


def test_general_warp_rotation_about_optical_axis():
    # Rolling the source camera by 180 degrees about z maps pixel (u, v) to (2cx - u, 2cy - v).
    K = torch.tensor([[40.0, 0, 7.5], [0, 40.0, 5.5], [0, 0, 1]], dtype=torch.float64)
    image = textured(1, 1, 12, 16, "cpu")
    T = g.se3_exp(torch.tensor([[0, 0, 0, 0, 0, torch.pi]], dtype=torch.float64))
    out, valid = w.inverse_warp(image, torch.full((1, 1, 12, 16), 2.0, dtype=torch.float64), T, K)
    assert valid.all()
    torch.testing.assert_close(out, torch.flip(image, dims=[-1, -2]), atol=1e-9, rtol=0)


def test_warps_pass_gradcheck():
    gen = torch.Generator().manual_seed(5)
    image = torch.rand(2, 2, 5, 9, dtype=torch.float64, generator=gen, requires_grad=True)
    # Non-integer disparities keep bilinear sampling away from its kinks.
    disparity = (torch.rand(2, 1, 5, 9, dtype=torch.float64, generator=gen) * 0.6 + 1.2).requires_grad_(True)
    assert torch.autograd.gradcheck(lambda i, d: w.warp_right_to_left(i, d)[0], (image, disparity))
    assert torch.autograd.gradcheck(lambda i, d: w.warp_left_to_right(i, d)[0], (image, disparity))
    K = torch.tensor([[20.0, 0, 4.0], [0, 20.0, 2.0], [0, 0, 1]], dtype=torch.float64)
    depth = (torch.rand(2, 1, 5, 9, dtype=torch.float64, generator=gen) + 3.0).requires_grad_(True)
    xi = torch.tensor([[-0.1, 0.02, 0.01, 0.01, -0.02, 0.005]], dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(
        lambda i, z, x: w.inverse_warp(i, z, g.se3_exp(x), K, padding_mode="zeros")[0], (image, depth, xi)
    )


@pytest.mark.parametrize(
    "call, message",
    [
        (lambda: w.warp_right_to_left(torch.rand(1, 3, 4, 5), torch.rand(1, 1, 4, 6)), "disparity: expected batch 1 and size"),
        (lambda: w.warp_right_to_left(torch.rand(2, 3, 4, 5), torch.rand(1, 1, 4, 5)), "expected batch 2"),
        (lambda: w.warp_right_to_left(torch.rand(1, 3, 4, 5), torch.rand(1, 2, 4, 5)), r"disparity: expected shape \(B, 1, H, W\)"),
        (lambda: w.warp_right_to_left(torch.rand(3, 4, 5), torch.rand(1, 1, 4, 5)), r"image: expected shape \(B, C, H, W\)"),
        (lambda: w.warp_right_to_left(torch.rand(1, 3, 4, 5), torch.rand(1, 1, 4, 5, dtype=torch.float64)), "dtype"),
        (lambda: w.warp_by_disparity(torch.rand(1, 3, 4, 5), torch.rand(1, 1, 4, 5), "up"), "direction"),
        (lambda: w.pixels_to_grid(torch.rand(1, 3, 4, 5), 4, 5), r"pixels: expected shape \(B, 2, H, W\)"),
        (lambda: w.inverse_warp(torch.rand(1, 3, 4, 5), torch.rand(2, 1, 4, 5), torch.eye(4), torch.eye(3)), "src_image: expected batch 2"),
        (lambda: w.inverse_warp(torch.rand(1, 3, 4, 5), torch.rand(1, 1, 4, 5), torch.eye(3), torch.eye(3)), r"src_T_tgt: expected shape"),
    ],
)
def test_rejects_bad_arguments(call, message):
    with pytest.raises(ValueError, match=message):
        call()


def test_sample_columns_equals_general_sampling_on_the_same_rows():
    gen = torch.Generator().manual_seed(2)
    image = torch.rand(2, 3, 6, 20, generator=gen, dtype=torch.float64)
    columns = torch.rand(2, 1, 6, 20, generator=gen, dtype=torch.float64) * 26 - 3  # some out of view
    rows = torch.arange(6, dtype=torch.float64).view(1, 1, 6, 1).expand(2, 1, 6, 20)
    for padding in ("zeros", "border"):
        expected, _ = w.sample_image(image, torch.cat([columns, rows], dim=1), padding)
        torch.testing.assert_close(w.sample_columns(image, columns, padding), expected, rtol=0, atol=1e-12)
    with pytest.raises(ValueError, match=r"columns: expected shape \(2, 1, 6, W_out\)"):
        w.sample_columns(image, columns[:, :, :5])


def test_channels_last_features_are_sampled_by_gathering_with_grid_samples_values_and_gradients():
    """The network's CPU path: channels-last features take the gathering path; values, gradients and
    the out-of-view rules are grid_sample's, and the result stays channels-last."""
    gen = torch.Generator().manual_seed(4)
    image = torch.rand(2, 5, 6, 20, generator=gen, dtype=torch.float64)
    columns = torch.rand(2, 1, 6, 23, generator=gen, dtype=torch.float64) * 30 - 5  # W_out != W, some out of view
    last = image.contiguous(memory_format=torch.channels_last).requires_grad_(True)
    plain = image.clone().requires_grad_(True)
    assert w._gathers(last, columns, "zeros") and not w._gathers(plain, columns, "zeros")
    for padding in ("zeros", "border"):
        cols_last, cols_plain = columns.clone().requires_grad_(True), columns.clone().requires_grad_(True)
        got, expected = w.sample_columns(last, cols_last, padding), w.sample_columns(plain, cols_plain, padding)
        assert got.is_contiguous(memory_format=torch.channels_last) and not got.is_contiguous()
        torch.testing.assert_close(got, expected, rtol=0, atol=1e-12)
        weights = torch.rand(got.shape, generator=gen, dtype=torch.float64)
        grads = torch.autograd.grad((got * weights).sum(), (last, cols_last))
        expected_grads = torch.autograd.grad((expected * weights).sum(), (plain, cols_plain))
        for a, b in zip(grads, expected_grads):
            torch.testing.assert_close(a, b, rtol=0, atol=1e-9)
    edges = columns.clone()
    # On, inside and past the edges: kinks of the interpolation, so values only.
    edges[0, 0, 0, :6] = torch.tensor([-1.0, -0.5, 0.0, 19.0, 19.5, 20.0])
    for padding in ("zeros", "border"):
        torch.testing.assert_close(w.sample_columns(last, edges, padding), w.sample_columns(plain, edges, padding),
                                   rtol=0, atol=1e-12)
    nan_columns = columns.clone()
    nan_columns[1, 0, 2, 3] = float("nan")  # non-finite columns keep grid_sample's rules: its path
    assert not w._gathers(last, nan_columns, "zeros")
    torch.testing.assert_close(w.sample_columns(last, nan_columns, "zeros"),
                               w.sample_columns(plain, nan_columns, "zeros"), rtol=0, atol=1e-12, equal_nan=True)
    disparity = (torch.rand(2, 1, 6, 20, generator=gen, dtype=torch.float64) * 0.6 + 1.2).requires_grad_(True)
    assert torch.autograd.gradcheck(lambda i, d: w.warp_right_to_left(i, d, "zeros")[0], (last, disparity))
