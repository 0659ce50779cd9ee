import numpy as np
import pytest
import torch

from stereo_depth_ros.core import pointcloud as pc
from stereo_depth_ros.core.geometry import backproject, se3_exp

K = np.array([[200.0, 0.0, 31.5], [0.0, 210.0, 23.5], [0.0, 0.0, 1.0]])


def test_depth_to_points_matches_torch_backprojection_and_marks_invalid():
    rng = np.random.default_rng(0)
    depth = (rng.random((48, 64)) * 5 + 0.5).astype(np.float32)
    depth[0, 0] = 0.0
    depth[1, 1] = np.nan
    depth[2, 2] = -1.0
    xyz = pc.depth_to_points(depth, K)
    assert xyz.shape == (48, 64, 3) and xyz.dtype == np.float32
    assert np.isnan(xyz[[0, 1, 2], [0, 1, 2]]).all()
    ref = backproject(torch.from_numpy(np.nan_to_num(depth, nan=0.0)).double()[None, None], torch.from_numpy(K))[0]
    ref = ref.permute(1, 2, 0).numpy()
    ok = np.isfinite(xyz).all(-1)
    np.testing.assert_allclose(xyz[ok], ref[ok], rtol=1e-5, atol=1e-5)


def test_pack_unpack_rgb_and_structured_layout():
    rgb = np.random.default_rng(1).integers(0, 256, size=(4, 5, 3), dtype=np.uint8)
    np.testing.assert_array_equal(pc.unpack_rgb(pc.pack_rgb(rgb)), rgb)
    assert pc.pack_rgb(np.array([[1, 2, 3]], dtype=np.uint8)).view(np.uint32)[0] == (1 << 16) | (2 << 8) | 3
    cloud = pc.organized_xyzrgb(np.full((4, 5), 2.0, np.float32), K, rgb)
    assert cloud.shape == (4, 5) and cloud.dtype.itemsize == 16
    assert [cloud.dtype.fields[n][1] for n in ("x", "y", "z", "rgb")] == [0, 4, 8, 12]
    np.testing.assert_array_equal(pc.unpack_rgb(cloud["rgb"]), rgb)
    with pytest.raises(ValueError, match=r"rgb: expected a \(4, 5, 3\) uint8"):
        pc.organized_xyzrgb(np.ones((4, 5), np.float32), K, rgb.astype(np.float32))


def test_open3d_round_trip_drops_invalid_points():
    xyz = pc.depth_to_points(np.array([[1.0, np.nan], [2.0, 3.0]], np.float32), K)
    colors = np.array([[[255, 0, 0], [0, 255, 0]], [[0, 0, 255], [10, 20, 30]]], np.uint8)
    cloud = pc.to_open3d(xyz, colors)
    points, back = pc.from_open3d(cloud)
    assert points.shape == (3, 3)
    np.testing.assert_allclose(points, xyz.reshape(-1, 3)[[0, 2, 3]], rtol=1e-6)
    np.testing.assert_array_equal(back, colors.reshape(-1, 3)[[0, 2, 3]])


def test_voxel_downsample_and_outlier_removal():
    rng = np.random.default_rng(2)
    plane = np.c_[rng.random((2000, 2)), np.zeros(2000)]
    outliers = np.array([[5.0, 5.0, 5.0], [-4.0, 3.0, 2.0]])
    cloud = pc.to_open3d(np.vstack([plane, outliers]))
    filtered = pc.remove_outliers(cloud, neighbours=20, std_ratio=2.0)
    points, _ = pc.from_open3d(filtered)
    assert len(points) >= 1900 and np.abs(points).max() < 1.5
    coarse = pc.voxel_downsample(cloud, 0.1)
    assert 100 <= len(coarse.points) <= 130  # ~10 x 10 voxels on the plane, plus the two outliers
    with pytest.raises(ValueError, match="voxel_size"):
        pc.voxel_downsample(cloud, 0.0)


def test_icp_recovers_a_known_small_rigid_transform():
    rng = np.random.default_rng(3)
    # A non-degenerate surface: a bumpy patch with structure in every direction.
    uv = rng.random((4000, 2)) * 2 - 1
    surface = np.c_[uv, 0.3 * np.sin(3 * uv[:, 0]) * np.cos(2 * uv[:, 1]) + 3.0]
    T = se3_exp(torch.tensor([[0.02, -0.01, 0.015, 0.01, -0.02, 0.015]], dtype=torch.float64))[0].numpy()
    moved = surface @ T[:3, :3].T + T[:3, 3]
    result = pc.icp_residual(surface, moved, max_correspondence_distance=0.1, num_samples=1000)
    np.testing.assert_allclose(result.transformation, T, atol=2e-3)
    assert result.rmse < 2e-3 and result.fitness > 0.99 and result.num_points == 1000
    # Misaligned clouds (no ICP iterations) leave a clearly larger residual.
    stuck = pc.icp_residual(surface, moved, max_correspondence_distance=0.1, max_iterations=0)
    assert stuck.rmse > 5 * result.rmse


@pytest.mark.parametrize(
    "call, message",
    [
        (lambda: pc.depth_to_points(np.ones((2, 3, 1), np.float32), K), r"depth: expected a \(H, W\) array"),
        (lambda: pc.depth_to_points(np.ones((2, 3), np.int32), K), "floating-point"),
        (lambda: pc.depth_to_points(np.ones((2, 3), np.float32), np.eye(4)), r"K: expected a \(3, 3\)"),
        (lambda: pc.depth_to_points(np.ones((2, 3), np.float32), np.zeros((3, 3))), "positive focal"),
        (lambda: pc.to_open3d(np.ones((5, 2))), r"points: expected \(N, 3\)"),
        (lambda: pc.icp_residual(np.ones((5, 3)), np.full((1, 3), np.nan)), "non-empty"),
        (lambda: pc.icp_residual(np.ones((5, 3)), np.ones((5, 3)), max_correspondence_distance=0), "max_correspondence_distance"),
    ],
)
def test_rejects_bad_arguments(call, message):
    with pytest.raises(ValueError, match=message):
        call()


def test_organized_xyzrgb_equals_backprojection_and_packed_colours():
    rng = np.random.default_rng(3)
    depth = (rng.random((6, 9)) * 4 + 0.2).astype(np.float32)
    depth[0, :3] = [0.0, np.nan, -2.0]
    depth[1, 0] = np.inf
    rgb = rng.integers(0, 256, size=(6, 9, 3), dtype=np.uint8)
    cloud = pc.organized_xyzrgb(depth, K, rgb)
    xyz = pc.depth_to_points(depth, K)
    for i, name in enumerate("xyz"):
        np.testing.assert_allclose(cloud[name], xyz[..., i], rtol=1e-6, atol=1e-7, equal_nan=True)
    assert np.isnan(cloud["z"][[0, 0, 0, 1], [0, 1, 2, 0]]).all()
    np.testing.assert_array_equal(cloud["rgb"].view(np.uint32), pc.pack_rgb(rgb).view(np.uint32))
    # Read-only, non-contiguous colour views (a BGR message's channels reversed) are accepted.
    view = np.ascontiguousarray(rgb[..., ::-1])[..., ::-1]
    view.flags.writeable = False
    np.testing.assert_array_equal(pc.organized_xyzrgb(depth, K, view)["rgb"], cloud["rgb"])
    grey = pc.organized_xyzrgb(depth, K)
    assert (pc.unpack_rgb(grey["rgb"]) == 128).all()


def test_tensor_cloud_matches_numpy_bit_for_bit():
    """The node's GPU cloud (same float32 arithmetic in torch) equals the CPU one, NaN points included."""

    from stereo_depth_ros.core.pointcloud import as_xyzrgb_points, organized_xyzrgb, organized_xyzrgb_tensor

    rng = np.random.default_rng(3)
    depth = rng.uniform(0.2, 40.0, (30, 41)).astype(np.float32)
    depth[1, 2], depth[3, 4], depth[5, 6], depth[7, 8] = np.nan, 0.0, np.inf, -2.0
    K = np.array([[612.37, 0.0, 20.3], [0.0, 598.1, 14.9], [0.0, 0.0, 1.0]])
    rgb = rng.integers(0, 256, (30, 41, 3), dtype=np.uint8)
    for colours in (rgb, None):
        expected = organized_xyzrgb(depth, K, colours)
        got = organized_xyzrgb_tensor(torch.from_numpy(depth), K, None if colours is None else torch.from_numpy(colours))
        assert got.shape == (30, 41, 4) and got.dtype == torch.float32
        assert as_xyzrgb_points(got.numpy()).tobytes() == expected.tobytes()
    with pytest.raises(ValueError, match=r"depth: expected an \(H, W\) floating-point tensor"):
        organized_xyzrgb_tensor(torch.zeros(2, 3, 4), K)
    with pytest.raises(ValueError, match=r"rgb: expected a \(30, 41, 3\) uint8 tensor"):
        organized_xyzrgb_tensor(torch.from_numpy(depth), K, torch.zeros(30, 41, 3))
    with pytest.raises(ValueError, match=r"array: expected a C-contiguous \(H, W, 4\) float32 array"):
        as_xyzrgb_points(np.zeros((3, 4, 3), np.float32))
