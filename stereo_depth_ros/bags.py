"""rosbag2 I/O for stereo sequences with the pure-Python ``rosbags`` library (no rclpy needed).

Writing: a synthetic sequence (:func:`~stereo_depth_ros.core.synthetic.generate_sequence`) becomes a
rosbag2 (MCAP by default, sqlite3 as an option, standard ``metadata.yaml``) with left/right
``image_rect`` (rgb8) and ``camera_info`` at a given rate, plus ground-truth depth (32FC1 metres).
Reading: any rosbag2 holding a rectified pair; topics are options, frames are paired by their
header stamps (exact), camera_info by stamp or, if a driver publishes it at another rate, the latest
one received; ground truth may be sparse in time (a message on the frames that have it) and in
space (NaN where there is none). Recorded sequences (:func:`pair_folder_frames`, with KITTI or
EuRoC timestamps and optional sparse ground-truth disparity) can be played backwards
(:func:`reverse_sequence`).
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Iterable, Iterator, Sequence

import numpy as np
from rosbags.rosbag2 import Reader, StoragePlugin, Writer
from rosbags.typesys import Stores, get_typestore

from .core.camera import StereoCamera
from .core.synthetic import StereoSample, generate_sequence

if TYPE_CHECKING:
    from .core.datasets import EvalSample
    from .core.unlabeled import UnlabeledFrame

__all__ = ["BagError", "StereoTopics", "BagFrame", "CameraFrame", "write_frames", "write_synthetic_bag", "write_samples",
           "scene_camera", "scene_frames", "pair_folder_frames", "parse_timestamp", "reverse_sequence", "read_stereo_bag",
           "raw_messages", "write_raw", "unlabeled_frames_from_bag"]

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


@dataclass
class CameraFrame:
    """One stereo frame to write: the rig, both images and optional ground truth.

    Attributes:
        camera: the rectified rig at the images' size (its ``cx_right`` gives the right P matrix).
        left, right: ``(H, W, 3)`` float32 RGB in ``[0, 1]``.
        depth: ``(H, W)`` float32 ground-truth depth of the left view in metres (NaN = unknown), or None.
    """

    camera: StereoCamera
    left: np.ndarray
    right: np.ndarray
    depth: np.ndarray | None = None


def write_frames(
    path: str | Path,
    frames: "Iterable[CameraFrame]",
    rate_hz: float = 10.0,
    storage: str = "mcap",
    topics: StereoTopics = StereoTopics(),
    start_ns: int = 1_700_000_000_000_000_000,
    frame_id: str = "left_optical_frame",
    stamps_ns: "Sequence[int] | None" = None,
) -> Path:
    """Write stereo frames as a rosbag2 at ``rate_hz`` (message time = header stamp): rgb8 images,
    camera_info (plumb_bob, identity R, P from the rig) and, where given, 32FC1 ground-truth depth.
    ``stamps_ns``: each frame's stamp instead of ``start_ns`` + index / ``rate_hz`` (a recording's own).

    The bag is written into a temporary folder next to ``path`` and renamed at the end, so a failure
    (a bad frame, a full disk) leaves no partial bag behind.
    """
    if rate_hz <= 0:
        raise ValueError(f"rate_hz: expected a positive rate, got {rate_hz}")
    if storage not in ("mcap", "sqlite3"):
        raise ValueError(f"storage: expected 'mcap' or 'sqlite3', got {storage!r}")
    path = Path(path)
    if path.exists():
        raise ValueError(f"path: {path} already exists (rosbag2 writes a new folder)")
    plugin = StoragePlugin.MCAP if storage == "mcap" else StoragePlugin.SQLITE3
    period = int(round(1e9 / rate_hz))
    # Written inside a hidden staging folder under its final name (rosbag2 names the storage file
    # after the bag folder), then moved into place.
    staging = path.with_name(f".{path.name}.partial")
    if staging.exists():
        shutil.rmtree(staging)
    staging.mkdir(parents=True)
    partial = staging / path.name
    to8 = lambda im: np.clip(np.round(im * 255.0), 0, 255).astype(np.uint8)  # noqa: E731
    right_id = frame_id.replace("left", "right") if "left" in frame_id else f"{frame_id}_right"
    try:
        with Writer(partial, version=9, storage_plugin=plugin) as writer:
            conns: dict[str, object] = {}

            def write(key: str, topic: str, msgtype: str, stamp: int, msg: object) -> None:
                if key not in conns:
                    conns[key] = writer.add_connection(topic, msgtype, typestore=TYPESTORE)
                writer.write(conns[key], stamp, TYPESTORE.serialize_cdr(msg, msg.__msgtype__))

            for index, frame in enumerate(frames):
                if stamps_ns is not None:
                    if index >= len(stamps_ns):
                        raise ValueError(f"stamps_ns: expected a stamp for every frame, got {len(stamps_ns)}")
                    stamp = int(stamps_ns[index])
                else:
                    stamp = start_ns + index * period
                if frame.left.shape != frame.right.shape or frame.left.shape[:2] != (frame.camera.height, frame.camera.width):
                    raise ValueError(f"frame {index}: expected left, right and camera of one size, got "
                                     f"{frame.left.shape}, {frame.right.shape}, {frame.camera.width}x{frame.camera.height}")
                write("left_info", topics.left_info, CAMERA_INFO, stamp, _camera_info(frame.camera, False, stamp, frame_id))
                write("right_info", topics.right_info, CAMERA_INFO, stamp, _camera_info(frame.camera, True, stamp, right_id))
                write("left_image", topics.left_image, IMAGE, stamp, _image(to8(frame.left), "rgb8", stamp, frame_id))
                write("right_image", topics.right_image, IMAGE, stamp, _image(to8(frame.right), "rgb8", stamp, right_id))
                if frame.depth is not None:
                    write("ground_truth_depth", topics.ground_truth_depth, IMAGE, stamp,
                          _image(frame.depth.astype(np.float32), "32FC1", stamp, frame_id))
        partial.rename(path)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return path


def write_samples(
    path: str | Path,
    samples: "Iterator[StereoSample] | list[StereoSample]",
    rate_hz: float = 10.0,
    storage: str = "mcap",
    topics: StereoTopics = StereoTopics(),
    start_ns: int = 1_700_000_000_000_000_000,
    frame_id: str = "left_optical_frame",
) -> Path:
    """Write synthetic stereo samples as a rosbag2 (see :func:`write_frames`)."""
    frames = (CameraFrame(StereoCamera.from_intrinsics(s.width, s.height, s.focal, s.baseline, s.cx, s.cy),
                          s.left, s.right, s.depth_left) for s in samples)
    return write_frames(path, frames, rate_hz, storage, topics, start_ns, frame_id)


def scene_camera(sample: "EvalSample") -> StereoCamera:
    """The rectified rig of a dataset scene (needs its focal length and baseline)."""
    if sample.focal is None or sample.baseline is None:
        raise ValueError(f"scene {sample.name!r}: expected a focal length and baseline (calibration), got none")
    height, width = sample.disparity.shape
    cx = (width - 1) / 2.0 if sample.cx is None else sample.cx
    cy = (height - 1) / 2.0 if sample.cy is None else sample.cy
    return StereoCamera(width, height, sample.focal, sample.focal, cx, cy, cx - sample.doffs, sample.baseline)


def scene_frames(sample: "EvalSample", num_frames: int, noise_std: float = 2.0 / 255.0, seed: int = 0) -> Iterator[CameraFrame]:
    """A static camera looking at a dataset scene: ``num_frames`` copies of the pair, each with its
    own sensor noise (independent Gaussian per pixel and view, ``noise_std`` in [0, 1] units; 0
    repeats the pair exactly), with the scene's ground-truth depth ``f B / (d - doffs)``."""
    if num_frames < 1:
        raise ValueError(f"num_frames: expected at least 1, got {num_frames}")
    camera = scene_camera(sample)
    valid = np.isfinite(sample.disparity) & (sample.disparity - camera.doffs > 0)
    depth = np.where(valid, camera.fx * camera.baseline / np.where(valid, sample.disparity - camera.doffs, 1.0),
                     np.nan).astype(np.float32)
    rng = np.random.default_rng(seed)
    for _ in range(num_frames):
        if noise_std > 0:
            left = np.clip(sample.left + rng.normal(0.0, noise_std, sample.left.shape), 0, 1).astype(np.float32)
            right = np.clip(sample.right + rng.normal(0.0, noise_std, sample.right.shape), 0, 1).astype(np.float32)
        else:
            left, right = sample.left, sample.right
        yield CameraFrame(camera, left, right, depth)


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

    Ground truth may be sparse in time: when the bag has the ground-truth topic, a frame's depth is
    the message with the frame's stamp, and a frame without one comes with ``ground_truth_depth``
    None once the images of a later frame are complete (or at the end of the bag). A ground-truth
    message must therefore arrive before the next frame's images (true of the bags this package
    writes, where it shares its frame's stamp and message time).

    Args:
        require_ground_truth: raise when the bag lacks the ground-truth topic (frames without a
            ground-truth message still come, with None).

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
        has_gt = topics.ground_truth_depth in available
        pending: dict[int, dict[str, object]] = {}
        latest_info: dict[str, object] = {}
        latest_pair = -1  # the latest stamp whose left and right images both came
        names = {topics.left_image: "left", topics.right_image: "right", topics.left_info: "left_info",
                 topics.right_info: "right_info", topics.ground_truth_depth: "gt"}

        def release(final: bool) -> Iterator[BagFrame]:
            for key in sorted(pending):
                parts = pending[key]
                if "left" not in parts or "right" not in parts:
                    continue
                if has_gt and "gt" not in parts and not final and latest_pair <= key:
                    continue  # its ground truth may still come
                li = parts.get("left_info", latest_info.get("left_info"))
                ri = parts.get("right_info", latest_info.get("right_info"))
                if li is None or ri is None:
                    continue
                gt = image_array(parts["gt"]).astype(np.float32) if "gt" in parts else None
                del pending[key]
                yield BagFrame(key, parts["left"], parts["right"], li, ri, gt)

        for connection, _, raw in reader.messages(connections=wanted):
            msg = TYPESTORE.deserialize_cdr(raw, connection.msgtype)
            name = names[connection.topic]
            stamp = int(msg.header.stamp.sec) * 1_000_000_000 + int(msg.header.stamp.nanosec)
            if name in ("left_info", "right_info"):
                latest_info[name] = msg
            parts = pending.setdefault(stamp, {})
            parts[name] = msg
            if name in ("left", "right") and "left" in parts and "right" in parts:
                latest_pair = max(latest_pair, stamp)
            yield from release(final=False)
        yield from release(final=True)
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



def parse_timestamp(text: str) -> int:
    """One line of a ``timestamps.txt`` as nanoseconds: an integer (EuRoC: nanoseconds) or a KITTI
    date-time ``YYYY-MM-DD HH:MM:SS[.fraction]`` (up to nanoseconds), read as UTC (KITTI writes
    local time without a zone: the spacing of the stamps is right, their absolute zone is not).

    Raises:
        ValueError: anything else (the message quotes the text).
    """
    import calendar
    import re

    line = text.strip()
    if line.isdigit():
        return int(line)
    match = re.fullmatch(r"(\d{4})-(\d{2})-(\d{2})[ T](\d{2}):(\d{2}):(\d{2})(?:\.(\d{1,9}))?", line)
    if match is None:
        raise ValueError(f"expected nanoseconds or a KITTI date-time 'YYYY-MM-DD HH:MM:SS.fffffffff', got {line!r}")
    year, month, day, hour, minute, second = (int(v) for v in match.groups()[:6])
    if not (1 <= month <= 12 and 1 <= day <= 31 and hour < 24 and minute < 60 and second < 61):
        raise ValueError(f"expected a valid date and time, got {line!r}")
    fraction = int((match.group(7) or "0").ljust(9, "0"))
    return calendar.timegm((year, month, day, hour, minute, second, 0, 0, 0)) * 1_000_000_000 + fraction


def pair_folder_frames(path: str | Path, ground_truth: str | Path | None = None) -> tuple[list[CameraFrame], list[int] | None]:
    """A recorded sequence as bag frames: ``left_*`` / ``right_*`` images (rectified) and a
    ``calib.json`` with ``fx``, ``cx``, ``cy``, ``baseline_m`` (``fy`` defaults to ``fx``; a
    ``P_right`` gives the right principal point), plus optional ``timestamps.txt`` (one per pair,
    nanoseconds as EuRoC or KITTI date-times, see :func:`parse_timestamp`) and optional sparse
    ground-truth disparity.

    Ground truth: ``ground_truth`` names a folder, or else ``gt/`` beside the images is used when it
    exists. Its files are matched to frames by name (``disp_lidar_000.png`` -> ``left_000.png``)
    and read with :func:`~stereo_depth_ros.core.datasets.read_disparity` (KITTI uint16 / 256 PNG,
    0 = no point; ``.pfm``; ``.npy``); frames without a file have none. Disparity ``d`` (pixels)
    becomes depth ``fx * B / (d - doffs)`` (metres) with NaN where there is no point, so that
    :func:`read_stereo_bag`'s reader gets back exactly the same pixels.

    Returns:
        The frames and their stamps (None without timestamps).

    Raises:
        ValueError: missing or bad ``calib.json``, unreadable or mismatched images, a stamp count
            that does not match or an unreadable stamp, a ground-truth folder that is missing, a
            ground-truth file that names no frame or has another size, or a ground-truth disparity
            at or below ``doffs`` (the message names the file).
    """
    from .core.datasets import frame_key, ground_truth_files, read_disparity, read_sequence_calibration
    from .core.unlabeled import load_pair_folder

    root = Path(path)
    calib = read_sequence_calibration(root)
    if ground_truth is not None and not Path(ground_truth).is_dir():
        raise ValueError(f"{ground_truth}: expected a folder of ground-truth disparity files, got no such folder")
    gt_folder = Path(ground_truth) if ground_truth is not None else (root / "gt" if (root / "gt").is_dir() else None)
    pairs = load_pair_folder(root)
    height, width = pairs[0].left.shape[:2]
    camera = StereoCamera(width, height, calib.fx, calib.fy, calib.cx, calib.cy, calib.cx_right, calib.baseline_m)
    keys = [frame_key(pair.name) for pair in pairs]
    gt_files = ground_truth_files(gt_folder, keys) if gt_folder is not None else {}
    frames = []
    for key, pair in zip(keys, pairs):
        if pair.left.shape[:2] != (height, width):
            raise ValueError(f"{pair.name}: expected {width}x{height} like the first pair, got "
                             f"{pair.left.shape[1]}x{pair.left.shape[0]}")
        depth = None
        if key in gt_files:
            disparity = read_disparity(gt_files[key])  # NaN where there is no point
            if disparity.shape != (height, width):
                raise ValueError(f"{gt_files[key]}: expected {width}x{height} like the images, got "
                                 f"{disparity.shape[1]}x{disparity.shape[0]}")
            known = np.isfinite(disparity)
            if np.any(disparity[known] <= camera.doffs):
                raise ValueError(f"{gt_files[key]}: expected disparities above doffs = {camera.doffs:g} px "
                                 f"(cx - cx_right), got {float(disparity[known].min()):g}")
            depth = np.full((height, width), np.nan, np.float32)
            depth[known] = camera.fx * camera.baseline / (disparity[known].astype(np.float64) - camera.doffs)
        frames.append(CameraFrame(camera, pair.left.astype(np.float32) / 255.0, pair.right.astype(np.float32) / 255.0,
                                  depth))
    stamps = None
    stamps_path = root / "timestamps.txt"
    if stamps_path.is_file():
        lines = [line for line in stamps_path.read_text().splitlines() if line.strip()]
        try:
            stamps = [parse_timestamp(line) for line in lines]
        except ValueError as exc:
            raise ValueError(f"{stamps_path}: {exc}") from None
        if len(stamps) != len(frames):
            raise ValueError(f"{stamps_path}: expected {len(frames)} stamps (one per pair), got {len(stamps)}")
    return frames, stamps


def reverse_sequence(frames: Sequence[CameraFrame], stamps: Sequence[int] | None) -> tuple[list[CameraFrame], list[int] | None]:
    """The sequence played backwards, each frame with its own ground truth, stamps still increasing.

    With stamps, the reversed sequence keeps the recording's spacing, reversed: it starts at the
    first original stamp and the gap between played frames ``k`` and ``k + 1`` is the original gap
    between frames ``N - 2 - k`` and ``N - 1 - k``. Without stamps it stays None (the writer's
    fixed rate then applies).

    Raises:
        ValueError: a stamp count that does not match the frames, or stamps not strictly increasing.
    """
    played = list(frames)[::-1]
    if stamps is None:
        return played, None
    if len(stamps) != len(played):
        raise ValueError(f"stamps: expected {len(played)} stamps (one per frame), got {len(stamps)}")
    s = [int(v) for v in stamps]
    if any(b <= a for a, b in zip(s, s[1:])):
        bad = next(i for i, (a, b) in enumerate(zip(s, s[1:])) if b <= a)
        raise ValueError(f"stamps: expected strictly increasing stamps, got {s[bad]} then {s[bad + 1]} at frame {bad + 1}")
    return played, [s[0] + (s[-1] - t) for t in s[::-1]]


def unlabeled_frames_from_bag(path: str | Path, topics: StereoTopics = StereoTopics(),
                              every: int = 1) -> "list[UnlabeledFrame]":
    """Every ``every``-th stereo frame of a rosbag2 (sqlite3 or MCAP) as unlabeled uint8 pairs, for
    training without ground truth (a ground-truth topic, if the bag has one, is ignored).

    Raises:
        BagError: unreadable bag, missing topics (named, with what the bag has), undecodable images
            or a bag without any complete frame.
    """
    from .core.unlabeled import UnlabeledFrame
    from .ros.conversions import image_to_rgb_float  # pure numpy decoding of the messages

    if every < 1:
        raise ValueError(f"every: expected an integer >= 1, got {every}")
    no_gt = StereoTopics(topics.left_image, topics.right_image, topics.left_info, topics.right_info,
                         ground_truth_depth="/stereo_depth_ros/no_ground_truth")
    frames = []
    for index, frame in enumerate(read_stereo_bag(path, no_gt)):
        if index % every:
            continue
        try:
            left, right = (np.clip(np.round(image_to_rgb_float(m) * 255.0), 0, 255).astype(np.uint8)
                           for m in (frame.left, frame.right))
        except ValueError as exc:  # ImageDecodeError
            raise BagError(f"{path}: frame at {frame.stamp_ns * 1e-9:.3f} s: {exc}") from None
        try:
            frames.append(UnlabeledFrame(left, right, f"{Path(path).name}@{frame.stamp_ns}"))
        except ValueError as exc:
            raise BagError(str(exc)) from None
    if not frames:
        raise BagError(f"{path} holds no complete stereo frame on {[topics.left_image, topics.right_image, topics.left_info, topics.right_info]}")
    return frames
