import numpy as np
import pytest
import torch

from stereo_depth_ros.core.camera import CameraModelError, StereoCamera


def info(fx=500.0, fy=500.0, cx=319.5, cy=239.5, baseline=0.12, cx_right=None):
    cx_right = cx if cx_right is None else cx_right
    k = [fx, 0, cx, 0, fy, cy, 0, 0, 1]
    p_left = [fx, 0, cx, 0, 0, fy, cy, 0, 0, 0, 1, 0]
    p_right = [fx, 0, cx_right, -fx * baseline, 0, fy, cy, 0, 0, 0, 1, 0]
    return dict(width=640, height=480, k_left=k, p_left=p_left, p_right=p_right, k_right=k)


def test_from_camera_info_reads_rectified_intrinsics_and_baseline():
    cam = StereoCamera.from_camera_info(**info(fx=525.0, fy=520.0, cx=320.0, cy=240.0, baseline=0.075))
    assert cam.fx == 525.0 and cam.fy == 520.0 and cam.cx == 320.0 and cam.cy == 240.0
    assert cam.baseline == pytest.approx(0.075)
    assert cam.doffs == 0.0
    K = cam.K(dtype=torch.float64)
    assert torch.allclose(K, torch.tensor([[525.0, 0, 320.0], [0, 520.0, 240.0], [0, 0, 1]], dtype=torch.float64))
    np.testing.assert_allclose(cam.P_right()[0, 3], -525.0 * 0.075)


def test_round_trip_through_projection_matrices():
    cam = StereoCamera.from_camera_info(**info(cx_right=300.0))
    again = StereoCamera.from_camera_info(640, 480, cam.K_numpy().ravel(), cam.P_left().ravel(), cam.P_right().ravel())
    assert again == cam
    assert cam.doffs == pytest.approx(19.5)


@pytest.mark.parametrize(
    "change, message",
    [
        (dict(baseline=-0.1), "baseline"),
        (dict(baseline=0.0), "baseline"),
    ],
)
def test_rejects_non_positive_baseline(change, message):
    with pytest.raises(CameraModelError, match=message):
        StereoCamera.from_camera_info(**info(**change))


def test_rejects_disagreeing_focal_lengths():
    args = info()
    args["p_right"] = list(args["p_right"])
    args["p_right"][0] = 510.0
    with pytest.raises(ValueError, match="fx disagree"):
        StereoCamera.from_camera_info(**args)


def test_rejects_disagreeing_rows():
    args = info()
    args["p_right"] = list(args["p_right"])
    args["p_right"][6] = 250.0
    with pytest.raises(ValueError, match="cy disagree"):
        StereoCamera.from_camera_info(**args)


def test_rejects_uncalibrated_camera():
    args = info()
    args["k_left"] = [0.0] * 9
    with pytest.raises(ValueError, match="uncalibrated"):
        StereoCamera.from_camera_info(**args)


def test_rejects_size_mismatch_and_bad_matrices():
    with pytest.raises(ValueError, match="sizes disagree"):
        StereoCamera.from_camera_info(**info(), right_size=(320, 240))
    args = info()
    args["p_left"] = [1.0] * 9
    with pytest.raises(ValueError, match="P_left: expected 12 values"):
        StereoCamera.from_camera_info(**args)
    args = info()
    args["p_right"] = list(args["p_right"])
    args["p_right"][3] = float("nan")
    with pytest.raises(ValueError, match="finite"):
        StereoCamera.from_camera_info(**args)


def test_direct_construction_validates():
    with pytest.raises(ValueError, match="focal"):
        StereoCamera(640, 480, -1.0, 500.0, 320.0, 240.0, 320.0, 0.1)
    with pytest.raises(ValueError, match="size"):
        StereoCamera(0, 480, 500.0, 500.0, 320.0, 240.0, 320.0, 0.1)


def test_scaling_keeps_rays_and_scales_disparity():
    cam = StereoCamera.from_camera_info(**info())
    half = cam.scaled(320, 240)
    assert half.fx == pytest.approx(250.0) and half.baseline == cam.baseline
    # A 3D point projects to the scaled pixel centre: u' = (u + 0.5) / 2 - 0.5.
    X = np.array([0.3, -0.2, 2.0])
    u = cam.fx * X[0] / X[2] + cam.cx
    u_half = half.fx * X[0] / X[2] + half.cx
    assert u_half == pytest.approx((u + 0.5) / 2 - 0.5)
    # Disparity scales with the width factor.
    assert half.fx * half.baseline == pytest.approx(cam.fx * cam.baseline / 2)
    with pytest.raises(ValueError, match="positive integer size"):
        cam.scaled(0, 10)


def test_cropping_moves_principal_point():
    cam = StereoCamera.from_camera_info(**info())
    crop = cam.cropped(10, 20, 300, 200)
    assert (crop.cx, crop.cy, crop.width, crop.height) == (cam.cx - 10, cam.cy - 20, 300, 200)
    with pytest.raises(ValueError, match="exceeds"):
        cam.cropped(400, 0, 300, 200)
