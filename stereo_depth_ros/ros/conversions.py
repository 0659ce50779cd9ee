"""Conversions between ROS 2 messages and numpy arrays.

``sensor_msgs/Image`` <-> numpy (zero-copy where possible), the RGB float input of the network,
``CameraInfo`` <-> :class:`~stereo_depth_ros.core.camera.StereoCamera`, ``stereo_msgs/DisparityImage``,
and ``sensor_msgs/PointCloud2`` (x, y, z, rgb FLOAT32 at offsets 0, 4, 8, 12; point_step 16).

Errors: every problem with an input message or array raises a subclass of :class:`ConversionError`
(a ``ValueError``) whose message names what was expected and what came, so a node can catch it, log
a throttled line and skip the frame. Calibration problems raise
:class:`~stereo_depth_ros.core.camera.CameraModelError` (also a ``ValueError``).

Performance notes (DESIGN.md, measured with the Kilted wheels):

* Reading: ``np.frombuffer(msg.data)`` plus a strided view honouring ``step`` and ``is_bigendian``;
  the result shares memory with ``msg.data`` unless bytes must be swapped.
* Writing: the bytes of a C-contiguous array are copied once into an ``array.array('B')`` through a
  memoryview and assigned to ``msg.data`` (~0.04 ms for 640x480 rgb8; ``tobytes()`` is ~0.2 ms, and
  assigning a numpy array element-wise ~100 ms). An ``array.array('B')`` is also the one value the
  generated setter accepts without a per-element check when ``ROS_PYTHON_CHECK_FIELDS=1``.
"""

from __future__ import annotations

import array as pyarray
import functools
import re
from dataclasses import dataclass
from typing import Any, Literal, Sequence

import numpy as np
from builtin_interfaces.msg import Time as TimeMsg
from sensor_msgs.msg import CameraInfo, Image, PointCloud2, PointField, RegionOfInterest
from std_msgs.msg import Header
from stereo_msgs.msg import DisparityImage

from stereo_depth_ros.core.camera import StereoCamera

__all__ = [
    "ConversionError",
    "ImageDecodeError",
    "ImageEncodeError",
    "DisparityError",
    "PointCloudError",
    "ImageEncoding",
    "SUPPORTED_ENCODINGS",
    "image_encoding",
    "cv_bridge_available",
    "image_to_numpy",
    "image_to_rgb8",
    "image_to_rgb_float",
    "numpy_to_image",
    "depth_image_msg",
    "camera_from_info",
    "camera_info_msg",
    "disparity_image_msg",
    "disparity_invalid_value",
    "POINTCLOUD_DTYPE",
    "pointcloud2_msg",
    "pointcloud2_to_numpy",
]

Backend = Literal["numpy", "cv_bridge", "auto"]


# ---------------------------------------------------------------------------------------- errors
class ConversionError(ValueError):
    """A message or array that cannot be converted (base of the errors below)."""


class ImageDecodeError(ConversionError):
    """A ``sensor_msgs/Image`` that cannot be decoded (encoding, size, step, data length, NaN...)."""


class ImageEncodeError(ConversionError):
    """An array that does not fit the requested image encoding (shape, dtype, encoding name)."""


class DisparityError(ConversionError):
    """Disparity inputs that do not make a valid ``stereo_msgs/DisparityImage``."""


class PointCloudError(ConversionError):
    """A point array or ``PointCloud2`` with the wrong layout."""


# ---------------------------------------------------------------------------------------- encodings
@dataclass(frozen=True)
class ImageEncoding:
    """How the pixels of one ``sensor_msgs/Image`` encoding are laid out.

    Attributes:
        name: the encoding string (``"rgb8"``, ``"16UC1"``...).
        dtype: per-channel numpy dtype in native byte order.
        channels: channels per pixel.
        color: channel order for colour interpretation: ``"mono"``, ``"rgb"``, ``"bgr"``, ``"rgba"``,
            ``"bgra"``, or ``None`` where the values are not image intensities (signed, float64...).
    """

    name: str
    dtype: np.dtype
    channels: int
    color: str | None

    @property
    def pixel_bytes(self) -> int:
        """Bytes per pixel (all channels)."""
        return self.dtype.itemsize * self.channels


_NAMED: dict[str, tuple[str, int, str]] = {
    # name: (dtype, channels, colour order) -- sensor_msgs/image_encodings.hpp
    "mono8": ("u1", 1, "mono"),
    "mono16": ("u2", 1, "mono"),
    "rgb8": ("u1", 3, "rgb"),
    "bgr8": ("u1", 3, "bgr"),
    "rgba8": ("u1", 4, "rgba"),
    "bgra8": ("u1", 4, "bgra"),
    "rgb16": ("u2", 3, "rgb"),
    "bgr16": ("u2", 3, "bgr"),
    "rgba16": ("u2", 4, "rgba"),
    "bgra16": ("u2", 4, "bgra"),
}
_GENERIC = re.compile(r"^(8|16|32|64)([USF])C([1-4])$")
_GENERIC_DTYPES = {("8", "U"): "u1", ("8", "S"): "i1", ("16", "U"): "u2", ("16", "S"): "i2",
                   ("32", "S"): "i4", ("32", "F"): "f4", ("64", "F"): "f8"}
# OpenCV convention for untyped unsigned images: 1 channel grey, 3 channels BGR, 4 channels BGRA.
_GENERIC_COLOR = {1: "mono", 3: "bgr", 4: "bgra"}

SUPPORTED_ENCODINGS: tuple[str, ...] = tuple(_NAMED) + tuple(
    f"{bits}{kind}C{c}" for (bits, kind) in _GENERIC_DTYPES for c in (1, 2, 3, 4)
)


@functools.lru_cache(maxsize=64)
def image_encoding(name: str) -> ImageEncoding:
    """The layout of encoding ``name``.

    Raises:
        ImageDecodeError: unsupported encoding (Bayer, YUV, ``32UC1``...); the message lists the
            supported ones.
    """
    if name in _NAMED:
        dtype, channels, color = _NAMED[name]
        return ImageEncoding(name, np.dtype(dtype), channels, color)
    match = _GENERIC.match(name)
    if match and (match.group(1), match.group(2)) in _GENERIC_DTYPES:
        bits, kind, channels = match.group(1), match.group(2), int(match.group(3))
        dtype = np.dtype(_GENERIC_DTYPES[(bits, kind)])
        color: str | None = None
        if kind == "U":
            color = _GENERIC_COLOR.get(channels)
        elif name == "32FC1":
            color = "mono"
        return ImageEncoding(name, dtype, channels, color)
    raise ImageDecodeError(
        f"image encoding: expected one of {', '.join(SUPPORTED_ENCODINGS)}, got {name!r}"
    )


# ---------------------------------------------------------------------------------------- helpers
def _byte_array(array: np.ndarray) -> pyarray.array:
    """The bytes of ``array`` (C order) as the ``array.array('B')`` that ``msg.data`` holds; one copy."""
    contiguous = np.ascontiguousarray(array)
    out = pyarray.array("B")
    if contiguous.nbytes:
        out.frombytes(memoryview(contiguous.reshape(-1)).cast("B"))
    return out


def _raw_bytes(data: Any) -> np.ndarray:
    """``msg.data`` as a flat uint8 array sharing its memory (copied only for a plain list)."""
    try:
        return np.frombuffer(data, dtype=np.uint8)
    except (TypeError, ValueError, BufferError):
        return np.asarray(data, dtype=np.uint8).reshape(-1)


def _copy_header(header: Header | None) -> Header:
    """A new ``std_msgs/Header`` with the same stamp and ``frame_id`` (empty header if None)."""
    if header is None:
        return Header()
    return Header(
        stamp=TimeMsg(sec=header.stamp.sec, nanosec=header.stamp.nanosec), frame_id=header.frame_id
    )


def _describe(array_: Any) -> str:
    if isinstance(array_, np.ndarray):
        return f"array of shape {array_.shape} dtype {array_.dtype}"
    return type(array_).__name__


# ---------------------------------------------------------------------------------------- images
@functools.lru_cache(maxsize=1)
def cv_bridge_available() -> bool:
    """Whether ``cv_bridge`` (an apt ROS install) can be imported here."""
    try:
        import cv_bridge  # noqa: F401
    except ImportError:
        return False
    return True


@functools.lru_cache(maxsize=1)
def _cv_bridge() -> Any:
    from cv_bridge import CvBridge

    return CvBridge()


def _check_image_layout(msg: Image) -> ImageEncoding:
    """Validate size, step and data length of ``msg``; return its encoding.

    Raises:
        ImageDecodeError: zero size, unsupported encoding, ``step < width * bytes_per_pixel``,
            ``len(data) < step * height``.
    """
    height, width, step = int(msg.height), int(msg.width), int(msg.step)
    if height == 0 or width == 0:
        raise ImageDecodeError(f"image: expected a non-empty image, got {width}x{height} ({msg.encoding!r})")
    enc = image_encoding(msg.encoding)
    row_bytes = width * enc.pixel_bytes
    if step < row_bytes:
        raise ImageDecodeError(
            f"image step: expected at least width*bytes_per_pixel = {width}*{enc.pixel_bytes} = {row_bytes} "
            f"bytes for {enc.name}, got step {step}"
        )
    size = len(msg.data)
    if size < step * height:
        raise ImageDecodeError(
            f"image data: expected step*height = {step}*{height} = {step * height} bytes for a "
            f"{width}x{height} {enc.name} image, got {size}"
        )
    return enc


def _decode_numpy(msg: Image, enc: ImageEncoding) -> np.ndarray:
    """The numpy codec: a strided view of ``msg.data``; copies only to swap bytes."""
    height, width, step = int(msg.height), int(msg.width), int(msg.step)
    dtype = enc.dtype.newbyteorder(">" if msg.is_bigendian else "<")
    shape: tuple[int, ...] = (height, width) if enc.channels == 1 else (height, width, enc.channels)
    strides: tuple[int, ...] = (step, enc.pixel_bytes) if enc.channels == 1 else (step, enc.pixel_bytes, dtype.itemsize)
    raw = _raw_bytes(msg.data)
    view = np.ndarray(shape, dtype=dtype, buffer=raw, offset=0, strides=strides)
    if not view.dtype.isnative:
        return view.astype(dtype.newbyteorder("="))
    view.flags.writeable = False
    return view


def _decode_cv_bridge(msg: Image, enc: ImageEncoding) -> np.ndarray:
    """``CvBridge().imgmsg_to_cv2(msg, 'passthrough')``, normalised to native byte order."""
    try:
        result = _cv_bridge().imgmsg_to_cv2(msg, desired_encoding="passthrough")
    except Exception as exc:  # CvBridgeError and numpy errors from inside cv_bridge
        raise ImageDecodeError(
            f"cv_bridge could not decode a {msg.width}x{msg.height} {enc.name} image with step {msg.step}: {exc}"
        ) from exc
    result = np.asarray(result)
    if not result.dtype.isnative:
        result = result.astype(result.dtype.newbyteorder("="))
    return result


def image_to_numpy(msg: Image, backend: Backend = "numpy") -> np.ndarray:
    """Decode a ``sensor_msgs/Image``.

    Args:
        msg: the image. ``step`` may exceed ``width * bytes_per_pixel`` (row padding);
            ``is_bigendian`` is honoured for multi-byte encodings.
        backend: ``"numpy"`` (default; always available, zero-copy), ``"cv_bridge"``
            (``CvBridge().imgmsg_to_cv2(msg, "passthrough")``; ImportError when not installed) or
            ``"auto"`` (cv_bridge when importable, else numpy). Both give identical values.

    Returns:
        ``(H, W)`` for 1-channel encodings, ``(H, W, C)`` otherwise, in the encoding's channel order
        and dtype (uint8 / uint16 / int16 / int32 / float32 / float64), native byte order. With the
        numpy backend and a native-order message the result is a read-only view sharing memory with
        ``msg.data`` (``.copy()`` it to modify or keep it beyond the message).

    Raises:
        ImageDecodeError: unsupported encoding, zero size, ``step`` too small, data too short.
    """
    enc = _check_image_layout(msg)
    if backend == "numpy":
        return _decode_numpy(msg, enc)
    if backend == "cv_bridge":
        if not cv_bridge_available():
            raise ImportError("image_to_numpy(backend='cv_bridge'): cv_bridge is not importable here")
        return _decode_cv_bridge(msg, enc)
    if backend == "auto":
        return _decode_cv_bridge(msg, enc) if cv_bridge_available() else _decode_numpy(msg, enc)
    raise ValueError(f"backend: expected 'numpy', 'cv_bridge' or 'auto', got {backend!r}")


# Channel views giving R, G, B from each colour order (slices, so no copy is made).
_RGB_VIEW = {"rgb": np.s_[..., :3], "rgba": np.s_[..., :3], "bgr": np.s_[..., ::-1], "bgra": np.s_[..., 2::-1]}


def image_to_rgb_float(msg: Image) -> np.ndarray:
    """The network's input: ``(H, W, 3)`` float32 RGB in ``[0, 1]``.

    Mono is replicated to three channels, BGR(A) reordered, alpha dropped; 8-bit divided by 255,
    16-bit by 65535; ``32FC1`` is taken as intensity and clipped to ``[0, 1]``. Untyped ``8UC3`` /
    ``8UC4`` follow OpenCV's BGR(A) order.

    Raises:
        ImageDecodeError: everything :func:`image_to_numpy` raises; encodings that are not intensities
            (signed, float64, 2-channel...); NaN or Inf pixels in a float image.
    """
    enc = _check_image_layout(msg)
    if enc.color is None:
        raise ImageDecodeError(
            f"image encoding: expected an intensity image (mono8/16, rgb(a)8/16, bgr(a)8/16, 8UC1/3/4, "
            f"16UC1/3/4, 32FC1), got {enc.name!r}"
        )
    pixels = _decode_numpy(msg, enc)
    source = pixels[..., None] if enc.color == "mono" else pixels[_RGB_VIEW[enc.color]]
    out = np.empty((int(msg.height), int(msg.width), 3), dtype=np.float32)
    if enc.dtype.kind == "f":
        finite = np.isfinite(pixels)
        if not finite.all():
            raise ImageDecodeError(
                f"image pixels: expected finite values in a {enc.name} image, got "
                f"{int(finite.size - np.count_nonzero(finite))} NaN/Inf of {finite.size}"
            )
        np.clip(source, 0.0, 1.0, out=out, casting="unsafe")
        return out
    np.divide(source, np.float32(np.iinfo(enc.dtype).max), out=out, casting="unsafe")  # max -> exactly 1.0
    return out


def image_to_rgb8(msg: Image) -> np.ndarray:
    """``(H, W, 3)`` uint8 RGB of an intensity image, for colouring point clouds.

    8-bit images come back as a view of ``msg.data`` (channels reordered by slicing, mono
    broadcast to three channels, so the result may be read-only and non-contiguous); 16-bit keep
    their high byte; ``32FC1`` is clipped to ``[0, 1]`` and scaled to 0-255.

    Raises:
        ImageDecodeError: as :func:`image_to_rgb_float`.
    """
    enc = _check_image_layout(msg)
    if enc.color is None:
        raise ImageDecodeError(f"image encoding: expected an intensity image, got {enc.name!r}")
    pixels = _decode_numpy(msg, enc)
    source = pixels[..., None] if enc.color == "mono" else pixels[_RGB_VIEW[enc.color]]
    if enc.dtype.kind == "f":
        source = np.round(np.clip(np.nan_to_num(source, nan=0.0), 0.0, 1.0) * 255.0)
    elif enc.dtype.itemsize == 2:
        source = source >> 8
    if source.dtype != np.uint8:
        source = source.astype(np.uint8)
    return np.broadcast_to(source, (int(msg.height), int(msg.width), 3))


def numpy_to_image(
    array: np.ndarray, encoding: str, header: Header | None = None, *, big_endian: bool = False
) -> Image:
    """Encode an array as a ``sensor_msgs/Image`` (``step = width * bytes_per_pixel``, no padding).

    Args:
        array: ``(H, W)`` (or ``(H, W, 1)``) for 1-channel encodings, ``(H, W, C)`` otherwise, with
            the encoding's dtype (e.g. float32 metres for ``32FC1`` depth, uint16 mm for ``16UC1``).
            Any byte order; written in the requested one.
        encoding: one of :data:`SUPPORTED_ENCODINGS`.
        header: copied into the message (an empty header if None).
        big_endian: write multi-byte values big-endian and set ``is_bigendian``.

    Raises:
        ImageEncodeError: unsupported encoding, wrong dtype, wrong shape, zero size.
    """
    try:
        enc = image_encoding(encoding)
    except ImageDecodeError as exc:
        raise ImageEncodeError(str(exc)) from None
    if not isinstance(array, np.ndarray):
        raise ImageEncodeError(f"numpy_to_image: expected a numpy array, got {type(array).__name__}")
    if array.ndim == 3 and enc.channels == 1 and array.shape[2] == 1:
        array = array[..., 0]
    expected_ndim = 2 if enc.channels == 1 else 3
    if array.ndim != expected_ndim or (expected_ndim == 3 and array.shape[2] != enc.channels):
        want = "(H, W)" if enc.channels == 1 else f"(H, W, {enc.channels})"
        raise ImageEncodeError(f"numpy_to_image: encoding {encoding!r} expects shape {want}, got {array.shape}")
    if array.dtype.kind != enc.dtype.kind or array.dtype.itemsize != enc.dtype.itemsize:
        raise ImageEncodeError(
            f"numpy_to_image: encoding {encoding!r} expects dtype {enc.dtype.name}, got {array.dtype}"
        )
    height, width = array.shape[:2]
    if height == 0 or width == 0:
        raise ImageEncodeError(f"numpy_to_image: expected a non-empty image, got shape {array.shape}")
    target = enc.dtype.newbyteorder(">" if big_endian else "<")
    if array.dtype != target:
        array = array.astype(target)
    msg = Image()
    msg.header = _copy_header(header)
    msg.height, msg.width = int(height), int(width)
    msg.encoding = encoding
    msg.is_bigendian = 1 if big_endian and enc.dtype.itemsize > 1 else 0
    msg.step = int(width * enc.pixel_bytes)
    msg.data = _byte_array(array)
    return msg


def depth_image_msg(
    depth: np.ndarray, header: Header | None = None, encoding: Literal["32FC1", "16UC1"] = "32FC1"
) -> Image:
    """A REP 118 depth image from ``(H, W)`` depth in metres (NaN, inf or <= 0 = invalid).

    ``32FC1``: metres, invalid -> NaN. ``16UC1``: millimetres rounded, invalid or beyond 65.535 m -> 0.

    Raises:
        ImageEncodeError: not a 2-D floating array, or another encoding.
    """
    if not isinstance(depth, np.ndarray) or depth.ndim != 2 or depth.dtype.kind != "f":
        raise ImageEncodeError(f"depth: expected a (H, W) floating array in metres, got {_describe(depth)}")
    valid = np.isfinite(depth) & (depth > 0)
    if encoding == "32FC1":
        return numpy_to_image(np.where(valid, depth, np.nan).astype(np.float32), "32FC1", header)
    if encoding == "16UC1":
        millimetres = np.where(valid, np.round(np.where(valid, depth, 0.0) * 1000.0), 0.0)
        millimetres[millimetres > np.iinfo(np.uint16).max] = 0
        return numpy_to_image(millimetres.astype(np.uint16), "16UC1", header)
    raise ImageEncodeError(f"depth encoding: expected '32FC1' or '16UC1', got {encoding!r}")


# ---------------------------------------------------------------------------------------- camera
def camera_from_info(left: CameraInfo, right: CameraInfo) -> StereoCamera:
    """The rectified stereo model from the left and right ``CameraInfo``.

    Rectified intrinsics come from ``P``; baseline ``B = -P_right[3] / P_right[0]`` (metres).

    Raises:
        CameraModelError (a ``ValueError``): sizes, focal lengths or ``cy`` disagree, a view is
            uncalibrated, or the baseline is not positive.
    """
    return StereoCamera.from_camera_info(
        width=int(left.width),
        height=int(left.height),
        k_left=list(left.k),
        p_left=list(left.p),
        p_right=list(right.p),
        k_right=list(right.k),
        right_size=(int(right.width), int(right.height)),
    )


def camera_info_msg(camera: StereoCamera, header: Header | None = None) -> CameraInfo:
    """``CameraInfo`` of the left rectified view, for ``depth/camera_info`` (RViz DepthCloud).

    ``K`` and ``P`` are the rectified intrinsics (``P[3] = 0``), ``R`` the identity, ``D`` five zeros
    with ``plumb_bob`` (the image is already rectified); size from ``camera``; header copied.
    """
    msg = CameraInfo()
    msg.header = _copy_header(header)
    msg.width, msg.height = int(camera.width), int(camera.height)
    msg.distortion_model = "plumb_bob"
    msg.d = pyarray.array("d", [0.0] * 5)
    msg.k = camera.K_numpy().reshape(-1)
    msg.r = np.eye(3).reshape(-1)
    msg.p = camera.P_left().reshape(-1)
    return msg


# ---------------------------------------------------------------------------------------- disparity
def disparity_invalid_value(min_disparity: float) -> float:
    """The value written for invalid pixels of a DisparityImage: ``min_disparity - 1`` (pixels)."""
    return float(min_disparity) - 1.0


def _bounding_box(valid: np.ndarray) -> RegionOfInterest:
    """Smallest ``RegionOfInterest`` holding every True pixel of ``valid`` (all zero if none)."""
    rows = np.flatnonzero(valid.any(axis=1))
    cols = np.flatnonzero(valid.any(axis=0))
    if rows.size == 0:
        return RegionOfInterest()
    return RegionOfInterest(
        x_offset=int(cols[0]), y_offset=int(rows[0]),
        width=int(cols[-1] - cols[0] + 1), height=int(rows[-1] - rows[0] + 1), do_rectify=False,
    )


def _roi(window: RegionOfInterest | Sequence[int], width: int, height: int) -> RegionOfInterest:
    if isinstance(window, RegionOfInterest):
        x, y, w, h = window.x_offset, window.y_offset, window.width, window.height
    else:
        if len(window) != 4:
            raise DisparityError(f"valid_window: expected (x_offset, y_offset, width, height), got {window!r}")
        x, y, w, h = (int(v) for v in window)
    if x < 0 or y < 0 or w < 0 or h < 0 or x + w > width or y + h > height:
        raise DisparityError(
            f"valid_window: expected a region inside the {width}x{height} image, got "
            f"x={x} y={y} width={w} height={h}"
        )
    return RegionOfInterest(x_offset=int(x), y_offset=int(y), width=int(w), height=int(h), do_rectify=False)


def disparity_image_msg(
    disparity: np.ndarray,
    camera: StereoCamera,
    header: Header | None,
    min_disparity: float,
    max_disparity: float,
    delta_d: float,
    invalid_mask: np.ndarray | None = None,
    valid_window: RegionOfInterest | Sequence[int] | None = None,
) -> DisparityImage:
    """A ``stereo_msgs/DisparityImage`` (image ``32FC1`` in pixels).

    Args:
        disparity: ``(H, W)`` left disparity in pixels at the camera's resolution.
        camera: the rig the disparity belongs to (``camera.scaled(...)`` if it was computed at
            another size); ``f = camera.fx`` (px), ``t = camera.baseline`` (m).
        header: copied into the message and its image (left camera stamp and frame).
        min_disparity, max_disparity: the network's disparity range in pixels.
        delta_d: the smallest resolvable disparity change in pixels (> 0).
        invalid_mask: ``(H, W)`` bool, True where the pixel is invalid.
        valid_window: ``(x_offset, y_offset, width, height)`` or a ``RegionOfInterest`` where the
            network's disparity is defined; default: the bounding box of the valid pixels (all zero
            when no pixel is valid).

    Invalid pixels (masked, NaN/Inf, or below ``min_disparity``) are written as
    :func:`disparity_invalid_value` ``= min_disparity - 1`` so consumers reject them with
    ``d < min_disparity``. Note the message has no field for ``doffs = cx_left - cx_right``;
    ``Z = f*t/d`` holds for rigs with equal principal points.

    Raises:
        DisparityError: shape mismatch with the camera or mask, bad range or ``delta_d``.
    """
    if not isinstance(disparity, np.ndarray) or disparity.ndim != 2 or disparity.dtype.kind != "f":
        raise DisparityError(f"disparity: expected a (H, W) floating array in pixels, got {_describe(disparity)}")
    if disparity.shape != (camera.height, camera.width):
        raise DisparityError(
            f"disparity: expected shape ({camera.height}, {camera.width}) of the camera, got {disparity.shape}"
        )
    lo, hi, step = float(min_disparity), float(max_disparity), float(delta_d)
    if not (np.isfinite(lo) and np.isfinite(hi) and lo < hi):
        raise DisparityError(f"disparity range: expected finite min < max, got min={lo} max={hi}")
    if not (np.isfinite(step) and step > 0):
        raise DisparityError(f"delta_d: expected a positive resolution in pixels, got {delta_d}")
    invalid = ~np.isfinite(disparity) | (disparity < lo)
    if invalid_mask is not None:
        mask_ok = isinstance(invalid_mask, np.ndarray) and invalid_mask.dtype == bool
        if not mask_ok or invalid_mask.shape != disparity.shape:
            raise DisparityError(
                f"invalid_mask: expected a bool array of shape {disparity.shape}, got {_describe(invalid_mask)}"
            )
        invalid |= invalid_mask
    values = np.where(invalid, np.float32(disparity_invalid_value(lo)), disparity).astype(np.float32, copy=False)
    msg = DisparityImage()
    msg.header = _copy_header(header)
    msg.image = numpy_to_image(values, "32FC1", header)
    msg.f = float(camera.fx)
    msg.t = float(camera.baseline)
    msg.min_disparity, msg.max_disparity, msg.delta_d = lo, hi, step
    msg.valid_window = (
        _bounding_box(~invalid) if valid_window is None else _roi(valid_window, camera.width, camera.height)
    )
    return msg


# ---------------------------------------------------------------------------------------- point clouds
POINTCLOUD_DTYPE = np.dtype({"names": ["x", "y", "z", "rgb"], "formats": ["<f4"] * 4, "offsets": [0, 4, 8, 12],
                             "itemsize": 16})
"""The packed point layout of our clouds: x, y, z (metres), rgb (packed float32), 16 bytes."""

_POINT_FIELDS = [
    PointField(name=name, offset=offset, datatype=PointField.FLOAT32, count=1)
    for name, offset in (("x", 0), ("y", 4), ("z", 8), ("rgb", 12))
]

_FIELD_DTYPES = {PointField.INT8: "i1", PointField.UINT8: "u1", PointField.INT16: "i2", PointField.UINT16: "u2",
                 PointField.INT32: "i4", PointField.UINT32: "u4", PointField.FLOAT32: "f4", PointField.FLOAT64: "f8"}


def _as_point_array(points: np.ndarray) -> np.ndarray:
    """``points`` in :data:`POINTCLOUD_DTYPE` (no copy when already so)."""
    names = getattr(getattr(points, "dtype", None), "names", None)
    if not isinstance(points, np.ndarray) or points.ndim != 2 or not names or not {"x", "y", "z", "rgb"} <= set(names):
        raise PointCloudError(
            f"points: expected a (H, W) structured array with float32 fields x, y, z, rgb "
            f"(core.pointcloud.organized_xyzrgb), got {_describe(points)}"
        )
    for name in ("x", "y", "z", "rgb"):
        field_dtype = points.dtype.fields[name][0]
        if field_dtype.kind != "f" or field_dtype.itemsize != 4 or field_dtype.shape != ():
            raise PointCloudError(f"points: field {name!r} must be float32, got {field_dtype}")
    if points.dtype == POINTCLOUD_DTYPE:
        return points
    packed = np.empty(points.shape, dtype=POINTCLOUD_DTYPE)
    for name in ("x", "y", "z", "rgb"):
        packed[name] = points[name]
    return packed


def pointcloud2_msg(
    points: np.ndarray,
    header: Header | None = None,
    organized: bool = True,
    decimation: int = 1,
    dense: bool = False,
    color: bool = True,
) -> PointCloud2:
    """A ``sensor_msgs/PointCloud2`` with fields x, y, z, rgb (FLOAT32, offsets 0/4/8/12, point_step 16),
    or x, y, z only (point_step 12) without ``color``.

    Args:
        points: ``(H, W)`` structured array with float32 fields ``x, y, z`` (metres, NaN = invalid)
            and ``rgb`` (packed ``(r<<16)|(g<<8)|b``), from :func:`core.pointcloud.organized_xyzrgb`.
        header: copied into the message.
        organized: keep the image layout (``height = rows``, NaN points kept, ``is_dense = False``).
        decimation: keep every ``decimation``-th row and column (``points[::k, ::k]``), k >= 1.
        dense: an unorganised cloud instead (``height = 1``) of the finite points only, in row-major
            order, with ``is_dense = True``; takes precedence over ``organized``. ``organized=False``
            without ``dense`` gives ``height = 1`` with the NaN points kept.
        color: keep the ``rgb`` field (stereo_image_proc's ``use_color``); False: x, y, z only.

    Raises:
        PointCloudError: wrong array layout, bad ``decimation``.
    """
    packed = _as_point_array(points)
    if int(decimation) != decimation or decimation < 1:
        raise PointCloudError(f"decimation: expected an integer >= 1, got {decimation!r}")
    k = int(decimation)
    if k > 1:
        packed = packed[::k, ::k]
    is_dense = False
    if dense:
        flat = packed.reshape(-1)
        keep = np.isfinite(flat["x"]) & np.isfinite(flat["y"]) & np.isfinite(flat["z"])
        packed = flat[keep][None, :]
        is_dense = True
    elif not organized:
        packed = packed.reshape(1, -1)
    height, width = packed.shape
    fields = _POINT_FIELDS
    if not color:
        fields = [f for f in _POINT_FIELDS if f.name != "rgb"]
        xyz = np.empty(packed.shape, dtype=np.dtype({"names": ["x", "y", "z"], "formats": ["<f4"] * 3}))
        for name in ("x", "y", "z"):
            xyz[name] = packed[name]
        packed = xyz
    msg = PointCloud2()
    msg.header = _copy_header(header)
    msg.height, msg.width = int(height), int(width)
    msg.fields = [PointField(name=f.name, offset=f.offset, datatype=f.datatype, count=f.count) for f in fields]
    msg.is_bigendian = False
    msg.point_step = packed.dtype.itemsize
    msg.row_step = int(width * packed.dtype.itemsize)
    msg.is_dense = is_dense
    msg.data = _byte_array(packed)
    return msg


def _field_dtype(msg: PointCloud2) -> np.dtype:
    order = ">" if msg.is_bigendian else "<"
    names, formats, offsets = [], [], []
    for field in msg.fields:
        if field.datatype not in _FIELD_DTYPES:
            raise PointCloudError(f"PointCloud2 field {field.name!r}: unknown datatype {field.datatype}")
        base = np.dtype(order + _FIELD_DTYPES[field.datatype])
        names.append(field.name)
        formats.append(base if field.count <= 1 else (base, (int(field.count),)))
        offsets.append(int(field.offset))
    if len(set(names)) != len(names):
        raise PointCloudError(f"PointCloud2 fields: expected unique names, got {names}")
    try:
        return np.dtype({"names": names, "formats": formats, "offsets": offsets, "itemsize": int(msg.point_step)})
    except ValueError as exc:
        raise PointCloudError(
            f"PointCloud2 fields: expected fields inside point_step {msg.point_step}, got "
            f"{[(n, o, str(f)) for n, o, f in zip(names, offsets, formats)]}: {exc}"
        ) from None


def pointcloud2_to_numpy(msg: PointCloud2) -> np.ndarray:
    """Read a ``PointCloud2`` into a ``(height, width)`` structured array with one field per PointField.

    The result is a read-only view of ``msg.data`` (fields at their message offsets) unless the data
    is big-endian, in which case it is copied to native order.

    Raises:
        PointCloudError: unknown datatypes, fields outside ``point_step``, ``row_step`` smaller than
            ``width * point_step``, or data shorter than ``row_step * height``.
    """
    dtype = _field_dtype(msg)
    height, width = int(msg.height), int(msg.width)
    if int(msg.row_step) < width * int(msg.point_step):
        raise PointCloudError(
            f"PointCloud2 row_step: expected at least width*point_step = {width}*{msg.point_step}, got {msg.row_step}"
        )
    if len(msg.data) < int(msg.row_step) * height:
        raise PointCloudError(
            f"PointCloud2 data: expected row_step*height = {msg.row_step}*{height} = "
            f"{int(msg.row_step) * height} bytes, got {len(msg.data)}"
        )
    if height == 0 or width == 0:
        return np.zeros((height, width), dtype=dtype)
    strides = (int(msg.row_step), int(msg.point_step))
    view = np.ndarray((height, width), dtype=dtype, buffer=_raw_bytes(msg.data), strides=strides)
    if msg.is_bigendian:
        return view.astype(dtype.newbyteorder("="))
    view.flags.writeable = False
    return view
