"""stereo_depth_ros.ros.conversions: Image, CameraInfo, DisparityImage and PointCloud2 <-> numpy."""

from __future__ import annotations

import array
import sys
from dataclasses import astuple

import numpy as np
import pytest
from sensor_msgs.msg import CameraInfo, Image, PointCloud2, PointField, RegionOfInterest
from std_msgs.msg import Header

from stereo_depth_ros.core.camera import CameraModelError, StereoCamera
from stereo_depth_ros.core.pointcloud import depth_to_points, organized_xyzrgb, unpack_rgb
from stereo_depth_ros.ros import conversions as conv
from stereo_depth_ros.ros.conversions import (
    ConversionError,
    DisparityError,
    ImageDecodeError,
    ImageEncodeError,
    PointCloudError,
    camera_from_info,
    camera_info_msg,
    depth_image_msg,
    disparity_image_msg,
    image_to_numpy,
    image_to_rgb8,
    image_to_rgb_float,
    numpy_to_image,
    pointcloud2_msg,
    pointcloud2_to_numpy,
)

RNG = np.random.default_rng(0)
H, W = 5, 7

# encoding -> (dtype, channels)
ENCODINGS = {
    "mono8": (np.uint8, 1), "mono16": (np.uint16, 1), "rgb8": (np.uint8, 3), "bgr8": (np.uint8, 3),
    "rgba8": (np.uint8, 4), "bgra8": (np.uint8, 4), "rgb16": (np.uint16, 3), "bgr16": (np.uint16, 3),
    "8UC1": (np.uint8, 1), "8UC3": (np.uint8, 3), "8UC4": (np.uint8, 4), "16UC1": (np.uint16, 1),
    "16SC1": (np.int16, 1), "32SC1": (np.int32, 1), "32FC1": (np.float32, 1), "32FC3": (np.float32, 3),
    "64FC1": (np.float64, 1),
}


def _random(dtype: type, channels: int, height: int = H, width: int = W) -> np.ndarray:
    shape = (height, width) if channels == 1 else (height, width, channels)
    if np.issubdtype(dtype, np.floating):
        return RNG.standard_normal(shape).astype(dtype)
    info = np.iinfo(dtype)
    return RNG.integers(info.min, info.max, size=shape, endpoint=True, dtype=dtype)


def _header(sec: int = 12, nanosec: int = 345, frame: str = "left_camera_optical_frame") -> Header:
    header = Header(frame_id=frame)
    header.stamp.sec, header.stamp.nanosec = sec, nanosec
    return header


def _raw_image(encoding: str, height: int, width: int, step: int, data: bytes, bigendian: bool = False) -> Image:
    msg = Image(height=height, width=width, encoding=encoding, is_bigendian=int(bigendian), step=step)
    msg.data = array.array("B", data)
    return msg


def _camera(width: int = 64, height: int = 48, fx: float = 50.0, baseline: float = 0.12) -> StereoCamera:
    return StereoCamera.from_intrinsics(width, height, fx, baseline, cx=31.0, cy=23.5)


def _info(camera: StereoCamera, right: bool) -> CameraInfo:
    msg = CameraInfo(width=camera.width, height=camera.height, distortion_model="plumb_bob")
    msg.k = camera.K_numpy().reshape(-1)
    msg.r = np.eye(3).reshape(-1)
    msg.p = (camera.P_right() if right else camera.P_left()).reshape(-1)
    return msg


# ============================================================================ images: round trips
@pytest.mark.parametrize("encoding", sorted(ENCODINGS))
@pytest.mark.parametrize("big_endian", [False, True], ids=["le", "be"])
def test_every_encoding_round_trips(encoding: str, big_endian: bool) -> None:
    dtype, channels = ENCODINGS[encoding]
    original = _random(dtype, channels)
    msg = numpy_to_image(original, encoding, _header(), big_endian=big_endian)
    assert (msg.height, msg.width, msg.encoding) == (H, W, encoding)
    assert msg.step == W * channels * np.dtype(dtype).itemsize
    assert len(msg.data) == msg.step * H
    assert msg.is_bigendian == (1 if big_endian and np.dtype(dtype).itemsize > 1 else 0)
    assert isinstance(msg.data, array.array)
    decoded = image_to_numpy(msg)
    assert decoded.dtype == np.dtype(dtype) and decoded.dtype.isnative
    assert decoded.shape == original.shape
    np.testing.assert_array_equal(decoded, original)


def test_header_is_copied_not_shared() -> None:
    header = _header()
    msg = numpy_to_image(np.zeros((2, 3), np.uint8), "mono8", header)
    assert msg.header == header and msg.header is not header
    header.stamp.sec = 99
    assert msg.header.stamp.sec == 12


def test_hand_made_big_endian_16uc1_and_32fc1_decode() -> None:
    values16 = np.array([[1, 256, 65535], [4660, 0, 43981]], dtype=">u2")
    decoded = image_to_numpy(_raw_image("16UC1", 2, 3, 6, values16.tobytes(), bigendian=True))
    np.testing.assert_array_equal(decoded, values16.astype(np.uint16))
    assert decoded.dtype == np.uint16 and decoded.dtype.isnative
    # The same bytes read as little-endian give byte-swapped numbers: is_bigendian matters.
    swapped = image_to_numpy(_raw_image("16UC1", 2, 3, 6, values16.tobytes(), bigendian=False))
    assert swapped[0, 0] == 256 and swapped[0, 1] == 1
    values32 = np.array([[1.5, -2.25], [np.pi, 1e-3]], dtype=">f4")
    decoded = image_to_numpy(_raw_image("32FC1", 2, 2, 8, values32.tobytes(), bigendian=True))
    np.testing.assert_array_equal(decoded, values32.astype(np.float32))


@pytest.mark.parametrize("encoding", ["mono8", "rgb8", "bgra8", "16UC1", "32FC1", "rgb16"])
@pytest.mark.parametrize("big_endian", [False, True], ids=["le", "be"])
def test_step_padding_is_honoured(encoding: str, big_endian: bool) -> None:
    dtype, channels = ENCODINGS[encoding]
    original = _random(dtype, channels)
    row_bytes = W * channels * np.dtype(dtype).itemsize
    step = row_bytes + 13  # odd padding: rows are not even aligned to the element size
    rows = original.astype(np.dtype(dtype).newbyteorder(">" if big_endian else "<")).reshape(H, -1)
    padded = bytearray()
    for r in range(H):
        padded += rows[r].tobytes() + bytes([0xEE]) * 13
    msg = _raw_image(encoding, H, W, step, bytes(padded), bigendian=big_endian)
    np.testing.assert_array_equal(image_to_numpy(msg), original)


def test_zero_copy_view_of_msg_data() -> None:
    original = _random(np.uint8, 3, 48, 64)
    msg = numpy_to_image(original, "rgb8")
    decoded = image_to_numpy(msg)
    assert np.shares_memory(decoded, np.frombuffer(msg.data, dtype=np.uint8))
    assert not decoded.flags.writeable, "the view must not let callers modify the message"
    # Padded rows: still a view.
    padded = _raw_image("mono8", 2, 3, 5, bytes([1, 2, 3, 0, 0, 4, 5, 6, 0, 0]))
    view = image_to_numpy(padded)
    assert np.shares_memory(view, np.frombuffer(padded.data, dtype=np.uint8))
    np.testing.assert_array_equal(view, [[1, 2, 3], [4, 5, 6]])
    # Native-order multi-byte data: a view too; big-endian data needs a swapped copy.
    depth = numpy_to_image(np.ones((3, 4), np.float32), "32FC1")
    assert np.shares_memory(image_to_numpy(depth), np.frombuffer(depth.data, dtype=np.uint8))
    swapped = numpy_to_image(np.ones((3, 4), np.float32), "32FC1", big_endian=True)
    if sys.byteorder == "little":
        assert not np.shares_memory(image_to_numpy(swapped), np.frombuffer(swapped.data, dtype=np.uint8))


def test_numpy_to_image_accepts_non_contiguous_and_single_channel_3d() -> None:
    base = _random(np.uint8, 3, 10, 12)
    view = base[::2, ::3]
    np.testing.assert_array_equal(image_to_numpy(numpy_to_image(view, "rgb8")), view)
    mono = _random(np.uint8, 1)
    np.testing.assert_array_equal(image_to_numpy(numpy_to_image(mono[..., None], "mono8")), mono)


# ============================================================================ images: errors
@pytest.mark.parametrize(
    "msg, match",
    [
        (_raw_image("yuv422", 2, 2, 4, bytes(8)), "expected one of .*got 'yuv422'"),
        (_raw_image("bayer_rggb8", 2, 2, 2, bytes(4)), "bayer_rggb8"),
        (_raw_image("", 2, 2, 2, bytes(4)), "got ''"),
        (_raw_image("rgb8", 2, 2, 6, bytes(11)), r"expected step\*height = 6\*2 = 12 bytes .* got 11"),
        (_raw_image("rgb8", 2, 2, 5, bytes(10)), r"at least width\*bytes_per_pixel = 2\*3 = 6 .* got step 5"),
        (_raw_image("16UC1", 2, 3, 4, bytes(8)), r"at least .* = 6 .* got step 4"),
        (_raw_image("mono8", 0, 4, 4, b""), "non-empty image, got 4x0"),
        (_raw_image("mono8", 3, 0, 0, b""), "non-empty image, got 0x3"),
    ],
    ids=["yuv", "bayer", "empty-encoding", "short-data", "short-step", "short-step-16", "zero-height", "zero-width"],
)
def test_bad_images_raise_image_decode_error(msg: Image, match: str) -> None:
    with pytest.raises(ImageDecodeError, match=match) as info:
        image_to_numpy(msg)
    assert isinstance(info.value, ValueError) and isinstance(info.value, ConversionError)
    with pytest.raises(ImageDecodeError):
        image_to_rgb_float(msg)


@pytest.mark.parametrize(
    "array_, encoding, match",
    [
        (np.zeros((2, 2), np.float64), "32FC1", "expects dtype float32, got float64"),
        (np.zeros((2, 2, 3), np.uint8), "mono8", r"expects shape \(H, W\), got \(2, 2, 3\)"),
        (np.zeros((2, 2), np.uint8), "rgb8", r"expects shape \(H, W, 3\), got \(2, 2\)"),
        (np.zeros((2, 2, 4), np.uint8), "rgb8", r"expects shape \(H, W, 3\)"),
        (np.zeros((2, 2), np.uint8), "yuv422", "got 'yuv422'"),
        (np.zeros((0, 2), np.uint8), "mono8", "non-empty"),
        ([[1, 2]], "mono8", "expected a numpy array, got list"),
    ],
)
def test_bad_arrays_raise_image_encode_error(array_: np.ndarray, encoding: str, match: str) -> None:
    with pytest.raises(ImageEncodeError, match=match):
        numpy_to_image(array_, encoding)


def test_unknown_backend_and_missing_cv_bridge() -> None:
    msg = numpy_to_image(np.zeros((2, 2), np.uint8), "mono8")
    with pytest.raises(ValueError, match="backend"):
        image_to_numpy(msg, backend="opencv")  # type: ignore[arg-type]
    if not conv.cv_bridge_available():
        with pytest.raises(ImportError, match="cv_bridge"):
            image_to_numpy(msg, backend="cv_bridge")
    np.testing.assert_array_equal(image_to_numpy(msg, backend="auto"), np.zeros((2, 2), np.uint8))


class _FakeBridge:
    """Stands in for cv_bridge.CvBridge where it is not installed: a strided copy in the message's
    byte order; fails, like cv_bridge, on a ``step`` that is not a multiple of the element size."""

    def imgmsg_to_cv2(self, msg: Image, desired_encoding: str = "passthrough") -> np.ndarray:
        assert desired_encoding == "passthrough"
        enc = conv.image_encoding(msg.encoding)
        dtype = enc.dtype.newbyteorder(">" if msg.is_bigendian else "<")
        if msg.step % dtype.itemsize:
            raise TypeError("buffer is not a multiple of the element size")
        shape = (msg.height, msg.step // dtype.itemsize // enc.channels, enc.channels)
        image = np.ndarray(shape, dtype, buffer=msg.data)[:, : msg.width]
        image = image[..., 0] if enc.channels == 1 else image
        return image.copy()  # values right; dtype in the message's byte order (non-native if big-endian)


def test_cv_bridge_backend_plumbing_with_a_stand_in(monkeypatch: pytest.MonkeyPatch) -> None:
    """The cv_bridge code path (normalised byte order, wrapped errors), exercised without cv_bridge."""
    monkeypatch.setattr(conv, "cv_bridge_available", lambda: True)
    monkeypatch.setattr(conv, "_cv_bridge", lambda: _FakeBridge())
    for encoding, big_endian in (("16UC1", True), ("32FC1", False), ("bgr8", False), ("rgb16", True)):
        dtype, channels = ENCODINGS[encoding]
        original = _random(dtype, channels)
        msg = numpy_to_image(original, encoding, big_endian=big_endian)
        for backend in ("cv_bridge", "auto"):
            decoded = image_to_numpy(msg, backend=backend)
            assert decoded.dtype == np.dtype(dtype) and decoded.dtype.isnative
            np.testing.assert_array_equal(decoded, image_to_numpy(msg, backend="numpy"))
    odd = _raw_image("16UC1", 1, 2, 5, bytes(5))
    with pytest.raises(ImageDecodeError, match="cv_bridge could not decode a 2x1 16UC1 image with step 5"):
        image_to_numpy(odd, backend="cv_bridge")
    with pytest.raises(ImageDecodeError, match="expected one of"):  # validated before cv_bridge is called
        image_to_numpy(_raw_image("yuv422", 2, 2, 4, bytes(8)), backend="cv_bridge")


@pytest.mark.skipif(not conv.cv_bridge_available(), reason="cv_bridge is not importable (pip ROS wheels)")
@pytest.mark.parametrize("encoding", ["mono8", "mono16", "rgb8", "bgr8", "rgba8", "bgra8", "8UC1", "8UC3", "16UC1", "32FC1"])
@pytest.mark.parametrize("big_endian", [False, True], ids=["le", "be"])
@pytest.mark.parametrize("padding", [0, 8])
def test_cv_bridge_and_numpy_codecs_agree(encoding: str, big_endian: bool, padding: int) -> None:
    dtype, channels = ENCODINGS[encoding]
    original = _random(dtype, channels, 6, 10)
    msg = numpy_to_image(original, encoding, big_endian=big_endian)
    if padding:  # re-pack with padded rows (a multiple of the element size: cv_bridge needs that)
        rows = np.frombuffer(msg.data, np.uint8).reshape(6, msg.step)
        padded = np.concatenate([rows, np.zeros((6, padding), np.uint8)], axis=1)
        msg.step += padding
        msg.data = array.array("B", padded.tobytes())
    ours, bridge = image_to_numpy(msg, backend="numpy"), image_to_numpy(msg, backend="cv_bridge")
    assert ours.dtype == bridge.dtype and ours.shape == bridge.shape
    np.testing.assert_array_equal(ours, bridge)
    np.testing.assert_array_equal(ours, original)


# ============================================================================ network input
@pytest.mark.parametrize(
    "encoding, make, expected",
    [
        ("rgb8", lambda a: a, lambda a: a / 255.0),
        ("bgr8", lambda a: a[..., ::-1], lambda a: a / 255.0),
        ("8UC3", lambda a: a[..., ::-1], lambda a: a / 255.0),
        ("rgba8", lambda a: np.concatenate([a, np.full(a.shape[:2] + (1,), 7, np.uint8)], -1), lambda a: a / 255.0),
        ("bgra8", lambda a: np.concatenate([a[..., ::-1], np.full(a.shape[:2] + (1,), 7, np.uint8)], -1), lambda a: a / 255.0),
        ("mono8", lambda a: a[..., 0], lambda a: np.repeat(a[..., :1], 3, -1) / 255.0),
        ("8UC1", lambda a: a[..., 1], lambda a: np.repeat(a[..., 1:2], 3, -1) / 255.0),
    ],
)
def test_rgb_float_from_8bit(encoding: str, make, expected) -> None:
    rgb = _random(np.uint8, 3, 6, 8)
    out = image_to_rgb_float(numpy_to_image(np.ascontiguousarray(make(rgb)), encoding))
    assert out.shape == (6, 8, 3) and out.dtype == np.float32
    np.testing.assert_allclose(out, expected(rgb.astype(np.float64)), rtol=0, atol=1e-6)


def test_rgb_float_from_16bit_and_float() -> None:
    mono16 = np.array([[0, 65535, 32768]], np.uint16)
    out = image_to_rgb_float(numpy_to_image(mono16, "mono16", big_endian=True))
    np.testing.assert_allclose(out[..., 0], mono16 / 65535.0, atol=1e-6)
    assert out.max() == 1.0  # the largest value maps to exactly 1
    np.testing.assert_array_equal(out[..., 0], out[..., 2])
    bgr16 = _random(np.uint16, 3, 3, 4)
    np.testing.assert_allclose(image_to_rgb_float(numpy_to_image(bgr16, "bgr16")), bgr16[..., ::-1] / 65535.0, atol=1e-6)
    grey = np.array([[-0.5, 0.25, 1.5]], np.float32)
    out = image_to_rgb_float(numpy_to_image(grey, "32FC1"))
    np.testing.assert_array_equal(out[0, :, 1], [0.0, 0.25, 1.0])
    assert out.min() >= 0 and out.max() <= 1


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_rgb_float_rejects_non_finite_pixels(bad: float) -> None:
    grey = np.full((3, 4), 0.5, np.float32)
    grey[1, 2] = bad
    with pytest.raises(ImageDecodeError, match="expected finite values .* got 1 NaN/Inf of 12"):
        image_to_rgb_float(numpy_to_image(grey, "32FC1"))


@pytest.mark.parametrize("encoding", ["16SC1", "64FC1", "8UC2", "32FC3"])
def test_rgb_float_rejects_non_intensity_encodings(encoding: str) -> None:
    dtype, channels = ENCODINGS.get(encoding, (np.uint8, 2))
    with pytest.raises(ImageDecodeError, match=f"intensity image .* got '{encoding}'"):
        image_to_rgb_float(numpy_to_image(np.zeros((2, 2, channels) if channels > 1 else (2, 2), dtype), encoding))


def test_rgb_float_with_padded_step() -> None:
    rows = [bytes([10, 20, 30, 40, 50, 60]) + b"\x00\x00", bytes([70, 80, 90, 100, 110, 120]) + b"\x00\x00"]
    out = image_to_rgb_float(_raw_image("bgr8", 2, 2, 8, b"".join(rows)))
    np.testing.assert_allclose(out[0, 0], np.array([30, 20, 10]) / 255.0, atol=1e-6)
    np.testing.assert_allclose(out[1, 1], np.array([120, 110, 100]) / 255.0, atol=1e-6)


# ============================================================================ depth images
def test_depth_image_32fc1_and_16uc1() -> None:
    depth = np.array([[1.0, np.nan, -1.0], [0.0, np.inf, 2.5004]], np.float64)
    metres = image_to_numpy(depth_image_msg(depth, _header()))
    assert metres.dtype == np.float32
    np.testing.assert_array_equal(np.isnan(metres), [[False, True, True], [True, True, False]])
    np.testing.assert_allclose(metres[~np.isnan(metres)], [1.0, 2.5004], rtol=1e-6)
    millimetres = image_to_numpy(depth_image_msg(np.append(depth, [[70.0, 1e-4, 3.0]], 0), encoding="16UC1"))
    np.testing.assert_array_equal(millimetres, [[1000, 0, 0], [0, 0, 2500], [0, 0, 3000]])
    with pytest.raises(ImageEncodeError, match="expected '32FC1' or '16UC1'"):
        depth_image_msg(depth, encoding="mono8")  # type: ignore[arg-type]
    with pytest.raises(ImageEncodeError, match=r"\(H, W\) floating"):
        depth_image_msg(np.zeros((2, 2), np.uint16))


# ============================================================================ camera
def test_camera_from_info_reads_p_and_baseline() -> None:
    camera = _camera()
    model = camera_from_info(_info(camera, False), _info(camera, True))
    assert astuple(model) == pytest.approx(astuple(camera), rel=1e-12)
    assert model.baseline == pytest.approx(0.12)


def test_camera_info_msg_round_trips_through_camera_from_info() -> None:
    camera = _camera(width=80, height=60, fx=70.0)
    msg = camera_info_msg(camera, _header())
    assert (msg.width, msg.height, msg.distortion_model) == (80, 60, "plumb_bob")
    assert list(msg.d) == [0.0] * 5
    np.testing.assert_array_equal(np.asarray(msg.r).reshape(3, 3), np.eye(3))
    np.testing.assert_array_equal(np.asarray(msg.k).reshape(3, 3), camera.K_numpy())
    np.testing.assert_array_equal(np.asarray(msg.p).reshape(3, 4), camera.P_left())
    assert msg.header == _header()
    assert astuple(camera_from_info(msg, _info(camera, True))) == pytest.approx(astuple(camera), rel=1e-12)


@pytest.mark.parametrize(
    "mutate, match",
    [
        (lambda left, right: right.p.__setitem__(3, +6.0), "baseline must be positive"),
        (lambda left, right: right.p.__setitem__(3, 0.0), "baseline must be positive"),
        (lambda left, right: right.p.__setitem__(0, 51.0), "fx disagree"),
        (lambda left, right: setattr(right, "width", 32), "sizes disagree"),
        (lambda left, right: setattr(left, "k", np.zeros(9)), "uncalibrated"),
        (lambda left, right: setattr(right, "p", np.zeros(12)), "uncalibrated"),
    ],
    ids=["negative-baseline", "zero-baseline", "fx", "size", "uncalibrated-k", "uncalibrated-p"],
)
def test_camera_from_info_errors_are_value_errors(mutate, match: str) -> None:
    camera = _camera()
    left, right = _info(camera, False), _info(camera, True)
    mutate(left, right)
    with pytest.raises(CameraModelError, match=match) as info:
        camera_from_info(left, right)
    assert isinstance(info.value, ValueError)


# ============================================================================ disparity
def test_disparity_image_fields_match_camera() -> None:
    camera = _camera()
    disparity = np.full((48, 64), 20.0, np.float32)
    disparity[:, :5] = np.nan  # left border: no match
    invalid = np.zeros((48, 64), bool)
    invalid[40:, :] = True  # bottom rows masked (occlusion)
    msg = disparity_image_msg(disparity, camera, _header(), 0.0, 64.0, 0.25, invalid_mask=invalid)
    assert msg.header == _header() and msg.image.header == _header()
    assert msg.f == pytest.approx(camera.fx) and msg.t == pytest.approx(camera.baseline)
    assert (msg.min_disparity, msg.max_disparity, msg.delta_d) == (0.0, 64.0, 0.25)
    assert msg.image.encoding == "32FC1" and (msg.image.height, msg.image.width) == (48, 64)
    values = image_to_numpy(msg.image)
    bad = np.isnan(disparity) | invalid
    np.testing.assert_array_equal(values[bad], -1.0)
    assert (values[bad] < msg.min_disparity).all()
    np.testing.assert_array_equal(values[~bad], 20.0)
    roi = msg.valid_window
    assert (roi.x_offset, roi.y_offset, roi.width, roi.height) == (5, 0, 59, 40)
    # Depth from the message's own fields: Z = f * t / d.
    assert msg.f * msg.t / values[0, 10] == pytest.approx(camera.fx * camera.baseline / 20.0)


def test_disparity_below_min_is_invalid_and_explicit_valid_window() -> None:
    camera = _camera(width=8, height=4)
    disparity = np.full((4, 8), 5.0, np.float32)
    disparity[0, 0] = 1.0  # below min_disparity=2
    msg = disparity_image_msg(disparity, camera, None, 2.0, 10.0, 1.0, valid_window=(1, 1, 6, 2))
    values = image_to_numpy(msg.image)
    assert values[0, 0] == conv.disparity_invalid_value(2.0) == 1.0
    roi = msg.valid_window
    assert (roi.x_offset, roi.y_offset, roi.width, roi.height) == (1, 1, 6, 2)
    window = RegionOfInterest(x_offset=0, y_offset=0, width=8, height=4)
    assert disparity_image_msg(disparity, camera, None, 2.0, 10.0, 1.0, valid_window=window).valid_window.width == 8
    nothing = disparity_image_msg(np.full((4, 8), np.nan, np.float32), camera, None, 0.0, 10.0, 1.0)
    assert (nothing.valid_window.width, nothing.valid_window.height) == (0, 0)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(disparity=np.zeros((4, 9), np.float32)), r"expected shape \(4, 8\) of the camera"),
        (dict(disparity=np.zeros((4, 8), np.int32)), "floating array"),
        (dict(min_disparity=5.0, max_disparity=5.0), "finite min < max"),
        (dict(max_disparity=np.inf), "finite min < max"),
        (dict(delta_d=0.0), "delta_d: expected a positive"),
        (dict(invalid_mask=np.zeros((4, 8), np.uint8)), "bool array of shape"),
        (dict(invalid_mask=np.zeros((3, 8), bool)), "bool array of shape"),
        (dict(valid_window=(0, 0, 9, 4)), "inside the 8x4 image"),
        (dict(valid_window=(0, 0, 4)), "expected \\(x_offset"),
    ],
)
def test_disparity_errors(kwargs: dict, match: str) -> None:
    args = dict(disparity=np.zeros((4, 8), np.float32), camera=_camera(width=8, height=4), header=None,
                min_disparity=0.0, max_disparity=10.0, delta_d=1.0)
    args.update(kwargs)
    with pytest.raises(DisparityError, match=match):
        disparity_image_msg(**args)


# ============================================================================ point clouds
def _cloud_inputs(height: int = 48, width: int = 64) -> tuple[np.ndarray, np.ndarray, np.ndarray, StereoCamera]:
    camera = _camera(width, height)
    depth = RNG.uniform(0.5, 8.0, (height, width)).astype(np.float32)
    depth[0, :] = np.nan
    depth[-1, -1] = 0.0
    depth[height // 2, width // 3] = np.inf
    rgb = _random(np.uint8, 3, height, width)
    return depth, rgb, organized_xyzrgb(depth, camera.K_numpy(), rgb), camera


def _assert_layout(msg: PointCloud2) -> None:
    assert [(f.name, f.offset, f.datatype, f.count) for f in msg.fields] == [
        ("x", 0, PointField.FLOAT32, 1), ("y", 4, PointField.FLOAT32, 1),
        ("z", 8, PointField.FLOAT32, 1), ("rgb", 12, PointField.FLOAT32, 1)]
    assert msg.point_step == 16 and msg.row_step == 16 * msg.width and not msg.is_bigendian
    assert len(msg.data) == msg.row_step * msg.height


def test_organised_cloud_layout_and_values() -> None:
    depth, rgb, points, camera = _cloud_inputs()
    msg = pointcloud2_msg(points, _header())
    _assert_layout(msg)
    assert (msg.height, msg.width, msg.is_dense) == (48, 64, False)
    assert msg.header == _header()
    back = pointcloud2_to_numpy(msg)
    assert back.shape == (48, 64)
    xyz = np.stack([back["x"], back["y"], back["z"]], -1)
    np.testing.assert_array_equal(xyz, depth_to_points(depth, camera.K_numpy()))
    assert np.isnan(xyz[0]).all() and np.isnan(xyz[-1, -1]).all() and np.isnan(xyz[24, 21]).all()
    np.testing.assert_array_equal(unpack_rgb(np.ascontiguousarray(back["rgb"])), rgb)
    assert np.shares_memory(back, np.frombuffer(msg.data, np.uint8)) and not back.flags.writeable


@pytest.mark.parametrize("k", [2, 3, 5])
def test_decimated_cloud(k: int) -> None:
    depth, rgb, points, camera = _cloud_inputs()
    msg = pointcloud2_msg(points, decimation=k)
    _assert_layout(msg)
    assert (msg.height, msg.width) == (len(range(0, 48, k)), len(range(0, 64, k)))
    back = pointcloud2_to_numpy(msg)
    expected = depth_to_points(depth, camera.K_numpy())[::k, ::k]
    np.testing.assert_array_equal(np.stack([back["x"], back["y"], back["z"]], -1), expected)
    np.testing.assert_array_equal(unpack_rgb(np.ascontiguousarray(back["rgb"])), rgb[::k, ::k])


@pytest.mark.parametrize("k", [1, 2])
def test_dense_cloud_keeps_only_finite_points(k: int) -> None:
    depth, rgb, points, camera = _cloud_inputs()
    msg = pointcloud2_msg(points, _header(), dense=True, decimation=k)
    _assert_layout(msg)
    xyz = depth_to_points(depth, camera.K_numpy())[::k, ::k].reshape(-1, 3)
    keep = np.isfinite(xyz).all(axis=1)
    assert (msg.height, msg.width, msg.is_dense) == (1, int(keep.sum()), True)
    back = pointcloud2_to_numpy(msg)[0]
    np.testing.assert_array_equal(np.stack([back["x"], back["y"], back["z"]], -1), xyz[keep])
    np.testing.assert_array_equal(unpack_rgb(np.ascontiguousarray(back["rgb"])), rgb[::k, ::k].reshape(-1, 3)[keep])


def test_unorganised_cloud_keeps_nan_points() -> None:
    _, _, points, _ = _cloud_inputs(4, 6)
    msg = pointcloud2_msg(points, organized=False)
    _assert_layout(msg)
    assert (msg.height, msg.width, msg.is_dense) == (1, 24, False)


def test_dense_cloud_with_no_valid_point_is_empty() -> None:
    _, _, points, _ = _cloud_inputs(4, 6)
    points["z"] = np.nan
    msg = pointcloud2_msg(points, dense=True)
    assert (msg.height, msg.width, len(msg.data), msg.is_dense) == (1, 0, 0, True)
    assert pointcloud2_to_numpy(msg).shape == (1, 0)


def test_cloud_accepts_reordered_fields() -> None:
    _, _, points, _ = _cloud_inputs(4, 6)
    other = np.empty((4, 6), dtype=[("rgb", "<f4"), ("z", ">f4"), ("y", "<f4"), ("x", "<f4"), ("pad", "u1")])
    for name in ("x", "y", "z", "rgb"):
        other[name] = points[name]
    a, b = pointcloud2_msg(other), pointcloud2_msg(points)
    assert bytes(a.data) == bytes(b.data)


@pytest.mark.parametrize(
    "points, kwargs, match",
    [
        (np.zeros((4, 6, 3), np.float32), {}, "structured array with float32 fields x, y, z, rgb"),
        (np.zeros((4, 6), dtype=[("x", "<f4"), ("y", "<f4"), ("z", "<f4")]), {}, "fields x, y, z, rgb"),
        (np.zeros(6, dtype=conv.POINTCLOUD_DTYPE), {}, r"\(H, W\) structured"),
        (np.zeros((4, 6), dtype=[("x", "<f8"), ("y", "<f4"), ("z", "<f4"), ("rgb", "<f4")]), {}, "field 'x' must be float32"),
        (np.zeros((4, 6), dtype=conv.POINTCLOUD_DTYPE), {"decimation": 0}, "decimation: expected an integer >= 1, got 0"),
        (np.zeros((4, 6), dtype=conv.POINTCLOUD_DTYPE), {"decimation": 1.5}, "decimation"),
    ],
)
def test_cloud_errors(points: np.ndarray, kwargs: dict, match: str) -> None:
    with pytest.raises(PointCloudError, match=match):
        pointcloud2_msg(points, **kwargs)


def test_reader_handles_foreign_layouts() -> None:
    """A big-endian cloud with padding, a uint8 field with count 3, and padded rows."""
    dtype = np.dtype({"names": ["x", "intensity", "rgb"], "formats": [">f4", ">u2", ("u1", (3,))],
                      "offsets": [0, 4, 8], "itemsize": 12})
    points = np.zeros((2, 3), dtype)
    points["x"] = np.arange(6, dtype=np.float32).reshape(2, 3)
    points["intensity"] = 1000 + np.arange(6).reshape(2, 3)
    points["rgb"] = np.arange(18, dtype=np.uint8).reshape(2, 3, 3)
    rows = [points[r].tobytes() + b"\x00" * 4 for r in range(2)]
    msg = PointCloud2(height=2, width=3, is_bigendian=True, point_step=12, row_step=40, is_dense=True)
    msg.fields = [PointField(name="x", offset=0, datatype=PointField.FLOAT32, count=1),
                  PointField(name="intensity", offset=4, datatype=PointField.UINT16, count=1),
                  PointField(name="rgb", offset=8, datatype=PointField.UINT8, count=3)]
    msg.data = array.array("B", b"".join(rows))
    back = pointcloud2_to_numpy(msg)
    np.testing.assert_array_equal(back["x"], points["x"])
    np.testing.assert_array_equal(back["intensity"], points["intensity"])
    np.testing.assert_array_equal(back["rgb"], points["rgb"])
    assert back["x"].dtype.isnative


@pytest.mark.parametrize(
    "change, match",
    [
        (dict(row_step=10), r"row_step: expected at least width\*point_step"),
        (dict(height=5), r"expected row_step\*height"),
        (dict(point_step=8), "inside point_step 8"),
    ],
)
def test_reader_errors(change: dict, match: str) -> None:
    _, _, points, _ = _cloud_inputs(2, 3)
    msg = pointcloud2_msg(points)
    for key, value in change.items():
        setattr(msg, key, value)
    with pytest.raises(PointCloudError, match=match):
        pointcloud2_to_numpy(msg)
    msg = pointcloud2_msg(points)
    msg.fields[1].datatype = 42
    with pytest.raises(PointCloudError, match="unknown datatype 42"):
        pointcloud2_to_numpy(msg)


# ============================================================================ cloud colours
@pytest.mark.parametrize("encoding", ["rgb8", "bgr8", "rgba8", "bgra8", "mono8", "8UC3", "mono16", "bgr16", "32FC1"])
def test_rgb8_matches_the_float_decoding(encoding: str) -> None:
    enc = conv.image_encoding(encoding)
    if enc.dtype.kind == "f":
        array_ = RNG.uniform(-0.2, 1.2, (5, 7)).astype(np.float32)
    else:
        shape = (5, 7) if enc.channels == 1 else (5, 7, enc.channels)
        array_ = RNG.integers(0, np.iinfo(enc.dtype).max + 1, size=shape).astype(enc.dtype)
    msg = numpy_to_image(array_, encoding)
    rgb8 = image_to_rgb8(msg)
    assert rgb8.shape == (5, 7, 3) and rgb8.dtype == np.uint8
    # The colour of the float input the network sees, to within the 16-bit high-byte truncation.
    expected = image_to_rgb_float(msg) * 255.0
    np.testing.assert_allclose(rgb8.astype(np.float64), expected, atol=1.0 if enc.dtype.itemsize == 2 else 0.5)
    if enc.dtype.itemsize == 1:
        assert np.shares_memory(rgb8, conv._raw_bytes(msg.data))  # a view, no copy


def test_rgb8_rejects_non_intensity_encodings() -> None:
    with pytest.raises(ImageDecodeError, match="intensity"):
        image_to_rgb8(numpy_to_image(np.zeros((2, 2), np.int16), "16SC1"))
