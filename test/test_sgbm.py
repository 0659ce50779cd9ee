"""SgbmBackend on hand-made textured pairs with a known (constant or planar) disparity."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from stereo_depth_ros.core.sgbm import SgbmBackend, default_max_disparity


def textured_pair(
    height: int, width: int, a: float, b: float = 0.0, c: float = 0.0, seed: int = 0
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A random texture on the plane ``d(u, v) = a + b*u + c*v`` seen by a rectified pair.

    The left pixel ``u`` shows texture column ``u``; it appears in the right image at ``u - d``,
    so the right pixel ``u'`` shows texture column ``(u' + a + c*v) / (1 - b)``.
    """
    rng = np.random.default_rng(seed)
    margin = 64
    texture = cv2.GaussianBlur(rng.random((height, width + 2 * margin, 3)).astype(np.float32), (0, 0), 1.0)
    texture = (texture - texture.min()) / (texture.max() - texture.min())
    v, u = np.mgrid[0:height, 0:width].astype(np.float32)
    left = cv2.remap(texture, u + margin, v, cv2.INTER_LINEAR)
    right = cv2.remap(texture, (u + a + c * v) / (1.0 - b) + margin, v, cv2.INTER_LINEAR)
    return left, right, (a + b * u + c * v).astype(np.float32)


def test_constant_disparity_is_recovered():
    left, right, gt = textured_pair(120, 160, a=8.0)
    disp = SgbmBackend()(left, right)
    assert disp.shape == (120, 160) and disp.dtype == np.float32
    valid = np.isfinite(disp)
    assert valid.mean() > 0.85
    err = np.abs(disp[valid] - gt[valid])
    assert np.median(err) < 0.25 and (err <= 1.0).mean() > 0.98
    # the band whose match lies left of the right image (u < 8) has no disparity
    assert np.isnan(disp[:, :6]).mean() > 0.9


def test_planar_disparity_is_recovered():
    left, right, gt = textured_pair(120, 160, a=10.0, b=0.05, c=0.03, seed=1)
    disp = SgbmBackend()(left, right)
    valid = np.isfinite(disp)
    assert valid.mean() > 0.8
    err = np.abs(disp[valid] - gt[valid])
    assert err.mean() < 0.3 and (err <= 1.0).mean() > 0.97


def test_holes_are_nan_and_values_respect_min_disparity():
    left, right, _ = textured_pair(120, 160, a=12.0, seed=2)
    other, _, _ = textured_pair(120, 160, a=12.0, seed=5)
    right[:, 50:100] = other[:, 50:100]  # left columns 62..111 have no correspondence any more
    disp = SgbmBackend(min_disparity=2)(left, right)
    finite = disp[np.isfinite(disp)]
    assert finite.min() >= 2.0 and not np.isinf(disp).any()
    assert np.isnan(disp[:, 70:100]).mean() > 0.9
    assert np.isfinite(disp[:, 120:]).mean() > 0.9


def test_pad_left_recovers_the_left_band():
    left, right, _ = textured_pair(96, 160, a=6.0, seed=3)
    unpadded = SgbmBackend(pad_left=False)(left, right)
    assert np.isnan(unpadded[:, :48]).all()  # OpenCV's invalid band: numDisparities = 48 columns
    padded = SgbmBackend()(left, right)
    assert np.isfinite(padded[:, 10:48]).mean() > 0.9


def test_configuration():
    sgbm = SgbmBackend()
    assert sgbm.name == "sgbm"
    assert sgbm.num_disparities(640) == 192 and sgbm.num_disparities(160) == 48
    assert sgbm.num_disparities(1280) == 384 and sgbm.num_disparities(100) == 32
    assert default_max_disparity(320) == 96
    assert SgbmBackend(max_disparity=100).num_disparities(640) == 112
    assert SgbmBackend(max_disparity=100, min_disparity=4).num_disparities(640) == 96
    p = sgbm.params(640)
    assert (p["P1"], p["P2"], p["blockSize"]) == (8 * 3 * 25, 32 * 3 * 25, 5)
    grey = SgbmBackend(color=False, block_size=7, mode="hh4")
    assert (grey.p1, grey.p2) == (8 * 49, 32 * 49)
    left, right, _ = textured_pair(48, 64, a=4.0)
    assert grey(left, right).shape == (48, 64)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(block_size=4), "block_size: expected an odd"),
        (dict(block_size=0), "block_size: expected an integer"),
        (dict(mode="fast"), "mode: expected one of"),
        (dict(max_disparity=-5), "max_disparity: expected a finite positive"),
        (dict(max_disparity="a"), "max_disparity: expected a positive number"),
        (dict(max_disparity=8, min_disparity=10), "max_disparity: expected more than"),
        (dict(p1=100, p2=50), "p2: expected p2 > p1"),
        (dict(uniqueness_ratio=-1), "uniqueness_ratio"),
    ],
)
def test_bad_configuration_raises(kwargs, message):
    with pytest.raises(ValueError, match=message):
        SgbmBackend(**kwargs)


@pytest.mark.parametrize(
    "left, right, message",
    [
        ([[0.0]], np.zeros((8, 8, 3), np.float32), "left: expected a numpy array"),
        (np.zeros((8, 8), np.float32), np.zeros((8, 8), np.float32), r"left: expected shape \(H, W, 3\)"),
        (np.zeros((8, 8, 3), np.uint8), np.zeros((8, 8, 3), np.uint8), "left: expected a floating-point"),
        (np.zeros((8, 8, 3), np.float32), np.zeros((8, 9, 3), np.float32), "right: expected shape"),
        (np.full((8, 8, 3), np.nan, np.float32), np.zeros((8, 8, 3), np.float32), "finite"),
    ],
)
def test_bad_images_raise(left, right, message):
    with pytest.raises(ValueError, match=message):
        SgbmBackend()(left, right)
