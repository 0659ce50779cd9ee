"""rosbag2 I/O for stereo sequences with the pure-Python ``rosbags`` library (no rclpy needed).

Writing: a synthetic sequence (:func:`~stereo_depth_ros.core.synthetic.generate_sequence`) becomes a
rosbag2 (MCAP by default, sqlite3 as an option, standard ``metadata.yaml``) with left/right
``image_rect`` (rgb8) and ``camera_info`` at a given rate, plus ground-truth depth (32FC1 metres).
Reading: any rosbag2 holding a rectified pair; topics are options, frames are paired by their
header stamps (exact), camera_info by stamp or, if a driver publishes it at another rate, the latest
one received.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import numpy as np
from rosbags.rosbag2 import Reader, StoragePlugin, Writer
from rosbags.typesys import Stores, get_typestore

from .core.camera import StereoCamera
from .core.synthetic import StereoSample, generate_sequence

__all__ = ["BagError", "StereoTopics", "BagFrame", "write_synthetic_bag", "write_samples", "read_stereo_bag",
           "raw_messages", "write_raw"]

TYPESTORE = get_typestore(Stores.ROS2_KILTED)
_T = TYPESTORE.types
IMAGE, CAMERA_INFO = "sensor_msgs/msg/Image", "sensor_msgs/msg/CameraInfo"


class BagError(ValueError):
    """A bag that cannot be used as a stereo sequence (missing topics, unreadable, bad messages)."""


@dataclass(frozen=True)
class StereoTopics:
    """Topic names in a bag (absolute)."""

    left_image: str = "/stereo/left/image_rect"
    right_image: str = "/stereo/right/image_rect"
    left_info: str = "/stereo/left/camera_info"
    right_info: str = "/stereo/right/camera_info"
    ground_truth_depth: str = "/stereo/ground_truth/depth"


@dataclass
class BagFrame:
    """One stereo frame read from a bag.

    Attributes:
        stamp_ns: header stamp of the left image (nanoseconds).
        left, right: the image messages (rosbags dataclasses; convert with :func:`image_array`).
        left_info, right_info: camera_info messages.
        ground_truth_depth: ``(H, W)`` float32 metres (NaN = no GT) or None when the bag has none.
    """

    stamp_ns: int
    left: object
    right: object
    left_info: object
    right_info: object
    ground_truth_depth: np.ndarray | None

    def camera(self) -> StereoCamera:
        li, ri = self.left_info, self.right_info
        return StereoCamera.from_camera_info(li.width, li.height, li.k, li.p, ri.p, ri.k, (ri.width, ri.height))


def _header(stamp_ns: int, frame_id: str) -> object:
    stamp = _T["builtin_interfaces/msg/Time"](sec=stamp_ns // 1_000_000_000, nanosec=stamp_ns % 1_000_000_000)
    return _T["std_msgs/msg/Header"](stamp=stamp, frame_id=frame_id)


def _image(array: np.ndarray, encoding: str, stamp_ns: int, frame_id: str) -> object:
    array = np.ascontiguousarray(array)
    height, width = array.shape[:2]
    data = np.frombuffer(array.tobytes(), dtype=np.uint8)
    return _T[IMAGE](header=_header(stamp_ns, frame_id), height=height, width=width, encoding=encoding,
                     is_bigendian=0, step=data.size // height, data=data)


def _camera_info(camera: StereoCamera, right: bool, stamp_ns: int, frame_id: str) -> object:
    p = camera.P_right() if right else camera.P_left()
    k = p[:, :3].copy()
    roi = _T["sensor_msgs/msg/RegionOfInterest"](x_offset=0, y_offset=0, height=0, width=0, do_rectify=False)
    return _T[CAMERA_INFO](
        header=_header(stamp_ns, frame_id), height=camera.height, width=camera.width, distortion_model="plumb_bob",
        d=np.zeros(5), k=k.ravel().astype(np.float64), r=np.eye(3).ravel(), p=p.ravel().astype(np.float64),
        binning_x=0, binning_y=0, roi=roi)


def image_array(msg: object) -> np.ndarray:
    """``(H, W)`` / ``(H, W, C)`` array view of a rosbags Image message (rgb8, mono8, 32FC1, 16UC1...)."""
    from .ros.conversions import image_encoding  # pure numpy codec, no rclpy at import time

    enc = image_encoding(msg.encoding)
    dtype = np.dtype(enc.dtype).newbyteorder(">" if msg.is_bigendian else "<")
    row = np.frombuffer(bytes(msg.data), dtype=np.uint8)
    if row.size < msg.step * msg.height:
        raise BagError(f"image data holds {row.size} bytes, expected step*height = {msg.step * msg.height}")
    rows = row[: msg.step * msg.height].reshape(msg.height, msg.step)[:, : msg.width * enc.channels * dtype.itemsize]
    out = rows.copy().view(dtype).reshape(msg.height, msg.width, enc.channels).astype(dtype.newbyteorder("="))
    return out[..., 0] if enc.channels == 1 else out


def write_samples(
    path: str | Path,
    samples: "Iterator[StereoSample] | list[StereoSample]",
    rate_hz: float = 10.0,
    storage: str = "mcap",
    topics: StereoTopics = StereoTopics(),
    start_ns: int = 1_700_000_000_000_000_000,
    frame_id: str = "left_optical_frame",
) -> Path:
    """Write stereo samples as a rosbag2 at ``rate_hz`` (message time = header stamp)."""
    if rate_hz <= 0:
        raise ValueError(f"rate_hz: expected a positive rate, got {rate_hz}")
    if storage not in ("mcap", "sqlite3"):
        raise ValueError(f"storage: expected 'mcap' or 'sqlite3', got {storage!r}")
    path = Path(path)
    if path.exists():
        raise ValueError(f"path: {path} already exists (rosbag2 writes a new folder)")
    plugin = StoragePlugin.MCAP if storage == "mcap" else StoragePlugin.SQLITE3
    period = int(round(1e9 / rate_hz))
    with Writer(path, version=9, storage_plugin=plugin) as writer:
        conns = {
            "left_image": writer.add_connection(topics.left_image, IMAGE, typestore=TYPESTORE),
            "right_image": writer.add_connection(topics.right_image, IMAGE, typestore=TYPESTORE),
            "left_info": writer.add_connection(topics.left_info, CAMERA_INFO, typestore=TYPESTORE),
            "right_info": writer.add_connection(topics.right_info, CAMERA_INFO, typestore=TYPESTORE),
            "ground_truth_depth": writer.add_connection(topics.ground_truth_depth, IMAGE, typestore=TYPESTORE),
        }
        for index, sample in enumerate(samples):
            stamp = start_ns + index * period
            camera = StereoCamera.from_intrinsics(sample.width, sample.height, sample.focal, sample.baseline, sample.cx, sample.cy)
            to8 = lambda im: np.clip(np.round(im * 255.0), 0, 255).astype(np.uint8)  # noqa: E731
            msgs = {
                "left_info": _camera_info(camera, False, stamp, frame_id),
                "right_info": _camera_info(camera, True, stamp, frame_id.replace("left", "right")),
                "left_image": _image(to8(sample.left), "rgb8", stamp, frame_id),
                "right_image": _image(to8(sample.right), "rgb8", stamp, frame_id.replace("left", "right")),
                "ground_truth_depth": _image(sample.depth_left.astype(np.float32), "32FC1", stamp, frame_id),
            }
            for key, msg in msgs.items():
                writer.write(conns[key], stamp, TYPESTORE.serialize_cdr(msg, msg.__msgtype__))
    return path


def write_synthetic_bag(
    path: str | Path, seed: int, num_frames: int, width: int = 640, height: int = 480, domain: str = "outdoor",
    rate_hz: float = 10.0, storage: str = "mcap", topics: StereoTopics = StereoTopics(),
) -> Path:
    """Render a synthetic sequence (one static scene, a moving camera) into a rosbag2."""
    return write_samples(path, generate_sequence(seed, num_frames, width, height, domain), rate_hz, storage, topics)


def _open(path: str | Path) -> Reader:
    """An opened rosbags Reader; any failure becomes a :class:`BagError` naming the path."""
    try:
        reader = Reader(Path(path))
        reader.open()
    except Exception as exc:  # rosbags raises its own error types for every kind of bad bag
        raise BagError(f"cannot open rosbag2 {path}: {exc}") from exc
    return reader


def read_stereo_bag(path: str | Path, topics: StereoTopics = StereoTopics(), require_ground_truth: bool = False) -> Iterator[BagFrame]:
    """Stereo frames of a rosbag2 in stamp order, paired by header stamp.

    Raises:
        BagError: unreadable bag, or a required topic missing (the message lists what the bag has).
    """
    reader = _open(path)
    try:
        available = {c.topic: c.msgtype for c in reader.connections}
        required = [topics.left_image, topics.right_image, topics.left_info, topics.right_info]
        if require_ground_truth:
            required.append(topics.ground_truth_depth)
        missing = [t for t in required if t not in available]
        if missing:
            raise BagError(f"{path} lacks topic(s) {missing}; it has {sorted(available)} "
                           "(choose others with the topic options)")
        wanted = [c for c in reader.connections if c.topic in required + [topics.ground_truth_depth]]
        pending: dict[int, dict[str, object]] = {}
        latest_info: dict[str, object] = {}
        names = {topics.left_image: "left", topics.right_image: "right", topics.left_info: "left_info",
                 topics.right_info: "right_info", topics.ground_truth_depth: "gt"}
        for connection, _, raw in reader.messages(connections=wanted):
            msg = TYPESTORE.deserialize_cdr(raw, connection.msgtype)
            name = names[connection.topic]
            stamp = int(msg.header.stamp.sec) * 1_000_000_000 + int(msg.header.stamp.nanosec)
            if name in ("left_info", "right_info"):
                latest_info[name] = msg
            pending.setdefault(stamp, {})[name] = msg
            for key in sorted(pending):
                parts = pending[key]
                has_gt = topics.ground_truth_depth in available
                if "left" in parts and "right" in parts and (not has_gt or "gt" in parts):
                    li = parts.get("left_info", latest_info.get("left_info"))
                    ri = parts.get("right_info", latest_info.get("right_info"))
                    if li is None or ri is None:
                        continue
                    gt = image_array(parts["gt"]).astype(np.float32) if "gt" in parts else None
                    del pending[key]
                    yield BagFrame(key, parts["left"], parts["right"], li, ri, gt)
    finally:
        reader.close()


def raw_messages(path: str | Path, topic_names: list[str]) -> Iterator[tuple[str, str, int, bytes]]:
    """``(topic, msgtype, bag time ns, CDR bytes)`` of the given topics in bag-time order (for playback)."""
    reader = _open(path)
    try:
        available = {c.topic for c in reader.connections}
        missing = [t for t in topic_names if t not in available]
        if missing:
            raise BagError(f"{path} lacks topic(s) {missing}; it has {sorted(available)}")
        wanted = [c for c in reader.connections if c.topic in topic_names]
        for connection, timestamp, raw in reader.messages(connections=wanted):
            yield connection.topic, connection.msgtype, int(timestamp), bytes(raw)
    finally:
        reader.close()


def write_raw(path: str | Path, messages: list[tuple[str, str, int, bytes]], storage: str = "mcap") -> Path:
    """Write ``(topic, msgtype, time ns, CDR bytes)`` records (e.g. recorded node outputs) as a rosbag2."""
    path = Path(path)
    if path.exists():
        raise ValueError(f"path: {path} already exists (rosbag2 writes a new folder)")
    plugin = StoragePlugin.MCAP if storage == "mcap" else StoragePlugin.SQLITE3
    with Writer(path, version=9, storage_plugin=plugin) as writer:
        connections: dict[str, object] = {}
        for topic, msgtype, timestamp, raw in sorted(messages, key=lambda m: m[2]):
            if topic not in connections:
                connections[topic] = writer.add_connection(topic, msgtype, typestore=TYPESTORE)
            writer.write(connections[topic], timestamp, raw)
    return path

