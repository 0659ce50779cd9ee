"""The node through real rclpy topics: outputs, bad inputs, parameters and services."""

from __future__ import annotations

import itertools
import os
import sys
import time

import numpy as np
import pytest
import rclpy
import torch
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus
from rclpy.executors import SingleThreadedExecutor
from rclpy.node import Node
from rclpy.parameter import Parameter
from rclpy.qos import QoSProfile, QoSReliabilityPolicy
from sensor_msgs.msg import CameraInfo, Image, PointCloud2
from std_srvs.srv import SetBool, Trigger
from stereo_msgs.msg import DisparityImage

from stereo_depth_ros.core.camera import StereoCamera
from stereo_depth_ros.core.pointcloud import depth_to_points
from stereo_depth_ros.core.synthetic import generate_sample
from stereo_depth_ros.ros.conversions import camera_info_msg, image_to_numpy, numpy_to_image, pointcloud2_to_numpy
from stereo_depth_ros.ros.node import StereoDepthNode, set_gil_switch_interval

_domains = itertools.count((os.getpid() % 50) + 101)
RELIABLE = QoSProfile(depth=10, reliability=QoSReliabilityPolicy.RELIABLE)


class Harness:
    """A node under test plus a probe node publishing inputs and recording outputs."""

    def __init__(self, overrides: list[Parameter]) -> None:
        self.context = rclpy.Context()
        rclpy.init(context=self.context, domain_id=next(_domains) % 232)
        self.node = StereoDepthNode(context=self.context, parameter_overrides=overrides)
        self.probe = Node("probe", context=self.context)
        self.executor = SingleThreadedExecutor(context=self.context)
        self.executor.add_node(self.node)
        self.executor.add_node(self.probe)
        self.pubs = {
            "left": self.probe.create_publisher(Image, "left/image_rect", RELIABLE),
            "right": self.probe.create_publisher(Image, "right/image_rect", RELIABLE),
            "left_info": self.probe.create_publisher(CameraInfo, "left/camera_info", RELIABLE),
            "right_info": self.probe.create_publisher(CameraInfo, "right/camera_info", RELIABLE),
        }
        self.received: dict[str, list] = {k: [] for k in ("depth", "disparity", "points", "confidence", "error", "info", "diag")}
        for key, (msg_type, topic) in {
            "depth": (Image, "depth/image"), "disparity": (DisparityImage, "disparity"), "points": (PointCloud2, "points2"),
            "confidence": (Image, "confidence"), "error": (Image, "reconstruction_error"), "info": (CameraInfo, "depth/camera_info"),
            "diag": (DiagnosticArray, "/diagnostics"),
        }.items():
            self.probe.create_subscription(msg_type, topic, self.received[key].append, RELIABLE if key != "diag" else 10)

    def publish(self, left: Image, right: Image, left_info: CameraInfo, right_info: CameraInfo) -> None:
        for key, msg in (("left_info", left_info), ("right_info", right_info), ("left", left), ("right", right)):
            self.pubs[key].publish(msg)

    def spin_until(self, predicate, timeout: float = 30.0) -> bool:
        deadline = time.time() + timeout
        while time.time() < deadline:
            self.executor.spin_once(timeout_sec=0.05)
            if predicate():
                return True
        return False

    def close(self) -> None:
        self.node.shutdown()
        self.executor.shutdown()
        self.node.destroy_node()
        self.probe.destroy_node()
        rclpy.shutdown(context=self.context)


def stereo_messages(sample, stamp_s: float, frame_id: str = "left_optical", baseline: float | None = None):
    camera = StereoCamera.from_intrinsics(sample.width, sample.height, sample.focal,
                                          sample.baseline if baseline is None else abs(baseline) or 0.1, sample.cx, sample.cy)
    msgs = []
    for image in (sample.left, sample.right):
        msg = numpy_to_image(np.clip(np.round(image * 255), 0, 255).astype(np.uint8), "rgb8")
        msgs.append(msg)
    infos = [camera_info_msg(camera), camera_info_msg(camera)]
    infos[1].p = list(camera.P_right().ravel())
    if baseline is not None:
        p = list(infos[1].p)
        p[3] = -camera.fx * baseline
        infos[1].p = p
    for m in msgs + infos:
        m.header.stamp.sec = int(stamp_s)
        m.header.stamp.nanosec = int(round((stamp_s % 1) * 1e9))
        m.header.frame_id = frame_id
    return msgs[0], msgs[1], infos[0], infos[1]


@pytest.fixture(scope="module")
def sample():
    return generate_sample(4, width=320, height=256, domain="indoor")


@pytest.fixture(params=["cpu", pytest.param("cuda", marks=pytest.mark.skipif(
    not torch.cuda.is_available(), reason="needs a CUDA GPU"))])
def device(request):
    return request.param


@pytest.fixture
def harness():
    h = Harness([Parameter("adaptation.enabled", value=False), Parameter("diagnostics.period", value=0.2),
                 Parameter("sensor_qos", value="reliable"), Parameter("device", value="cpu")])
    yield h
    h.close()


@pytest.fixture
def device_harness(device):
    """The harness on each device: on CUDA the frame is one CUDA graph replay with the cloud made on the GPU."""
    h = Harness([Parameter("adaptation.enabled", value=False), Parameter("diagnostics.period", value=0.2),
                 Parameter("sensor_qos", value="reliable"), Parameter("device", value=device)])
    yield h
    h.close()


def test_publishes_every_output_consistent_with_the_input(device_harness, device, sample):
    harness = device_harness
    harness.publish(*stereo_messages(sample, 100.25))
    assert harness.spin_until(lambda: all(harness.received[k] for k in ("depth", "disparity", "points", "confidence", "error", "info")))
    depth_msg = harness.received["depth"][0]
    assert depth_msg.encoding == "32FC1" and (depth_msg.height, depth_msg.width) == (256, 320)
    for key in ("depth", "disparity", "points", "confidence", "error", "info"):
        header = harness.received[key][0].header
        assert header.frame_id == "left_optical" and (header.stamp.sec, header.stamp.nanosec) == (100, 250_000_000)
    depth = image_to_numpy(depth_msg)
    valid = np.isfinite(depth)
    assert 0.5 < valid.mean() <= 1.0
    rel = np.abs(depth[valid] - sample.depth_left[valid]) / sample.depth_left[valid]
    assert np.median(rel) < 0.1  # depth close to the ground truth on valid pixels

    disparity = harness.received["disparity"][0]
    assert disparity.f == pytest.approx(sample.focal) and disparity.t == pytest.approx(sample.baseline)
    assert disparity.min_disparity == 0.0 and disparity.max_disparity >= 192 and disparity.image.encoding == "32FC1"
    d = image_to_numpy(disparity.image)
    both = valid & (d > 0)
    np.testing.assert_allclose(depth[both], disparity.f * disparity.t / d[both], rtol=1e-4)

    cloud = pointcloud2_to_numpy(harness.received["points"][0])
    assert cloud.shape == (256, 320)
    xyz = np.stack([cloud["x"], cloud["y"], cloud["z"]], -1)
    np.testing.assert_allclose(xyz, depth_to_points(depth, sample.K()), rtol=1e-5, atol=1e-6, equal_nan=True)
    assert image_to_numpy(harness.received["confidence"][0]).shape == (256, 320)
    assert np.isfinite(image_to_numpy(harness.received["error"][0])).all()

    assert harness.spin_until(lambda: _status(harness, "model") is not None, timeout=5)
    model_status = _status(harness, "model")
    values = {kv.key: kv.value for kv in model_status.values}
    assert model_status.level == DiagnosticStatus.OK and values["compile"] == "off" and values["device"].startswith(device)
    if device == "cuda":  # the frame ran as a captured graph, not eagerly (a status sent after the frame says so)
        def captured() -> bool:
            status = _status(harness, "model")
            kvs = {kv.key: kv.value for kv in status.values}
            return kvs["cuda_graphs"] == "on" and int(kvs["cuda_graph_captures"]) >= 1

        assert harness.spin_until(captured, timeout=5)


def _status(h: Harness, task: str) -> DiagnosticStatus | None:
    for array in reversed(h.received["diag"]):
        for status in array.status:
            if status.name.endswith(f": {task}"):
                return status
    return None


@pytest.mark.parametrize("problem", ["size_mismatch", "encoding", "short_data", "baseline", "nan", "duplicate", "too_large",
                                     "intrinsics", "info_size"])
def test_bad_input_is_skipped_reported_and_the_next_frame_works(harness, sample, problem):
    harness.publish(*stereo_messages(sample, 10.0))
    assert harness.spin_until(lambda: len(harness.received["depth"]) == 1)
    left, right, li, ri = stereo_messages(sample, 11.0)
    if problem == "size_mismatch":
        small = generate_sample(4, width=256, height=256, domain="indoor")
        right = stereo_messages(small, 11.0)[1]
    elif problem == "encoding":
        left.encoding = "yuv422"
    elif problem == "short_data":
        left.data = bytes(left.data)[: len(left.data) // 2]
    elif problem == "baseline":
        left, right, li, ri = stereo_messages(sample, 11.0, baseline=-0.1)
    elif problem == "nan":
        values = np.full((sample.height, sample.width), 0.5, np.float32)
        values[3, 3] = np.nan
        left = numpy_to_image(values, "32FC1", left.header)
    elif problem == "duplicate":
        left, right, li, ri = stereo_messages(sample, 10.0)
    elif problem == "intrinsics":
        p = list(ri.p)
        p[0] *= 1.1  # right focal length disagrees with the left one
        ri.p = p
    elif problem == "info_size":
        li.width = ri.width = sample.width + 16
    elif problem == "too_large":
        big = np.zeros((8, 4096, 3), np.uint8)
        left = numpy_to_image(big, "rgb8", left.header)
        right = numpy_to_image(big, "rgb8", right.header)
        li.width = ri.width = 4096
        li.height = ri.height = 8
    harness.publish(left, right, li, ri)
    assert harness.spin_until(lambda: sum(harness.node.stats.rejected.values()) == 1, timeout=15)
    assert harness.spin_until(lambda: (s := _status(harness, "input")) is not None and s.level == DiagnosticStatus.ERROR, timeout=5)
    harness.publish(*stereo_messages(sample, 12.0))
    assert harness.spin_until(lambda: len(harness.received["depth"]) == 2 and harness.node.stats.processed == 2)


def test_parameters_are_validated_and_applied(harness):
    node = harness.node
    assert node.set_parameters([Parameter("validity.max_depth", value=20.0)])[0].successful
    assert node.config.validity_max_depth == 20.0
    result = node.set_parameters([Parameter("validity.min_depth", value=30.0)])[0]
    assert not result.successful and "below validity.max_depth" in result.reason
    assert not node.set_parameters([Parameter("adaptation.mode", value="sometimes")])[0].successful
    assert not node.set_parameters([Parameter("device", value="cuda")])[0].successful  # read-only
    assert node.set_parameters([Parameter("adaptation.learning_rate", value=2e-5)])[0].successful
    assert node.config.adaptation().learning_rate == 2e-5


def test_the_node_sets_the_gil_switch_interval_and_zero_keeps_it():
    previous = sys.getswitchinterval()
    try:
        sys.setswitchinterval(0.004)
        for milliseconds, expected in ((2.0, 0.002), (0.0, 0.002)):  # 0 leaves what the process had
            h = Harness([Parameter("adaptation.enabled", value=False), Parameter("device", value="cpu"),
                         Parameter("gil_switch_interval_ms", value=milliseconds)])
            try:
                assert sys.getswitchinterval() == pytest.approx(expected)
            finally:
                h.close()
        with pytest.raises(ValueError, match="expected >= 0"):
            set_gil_switch_interval(-1.0)
    finally:
        sys.setswitchinterval(previous)


def test_services(harness, tmp_path):
    node = harness.node

    def call(srv_type, name, request):
        client = harness.probe.create_client(srv_type, name)
        assert client.wait_for_service(timeout_sec=5)
        future = client.call_async(request)
        assert harness.spin_until(future.done, timeout=10)
        return future.result()

    result = call(SetBool, "/stereo_depth/enable_adaptation", SetBool.Request(data=True))
    assert result.success and node.config.adaptation_enabled
    assert call(Trigger, "/stereo_depth/reset_adaptation", Trigger.Request()).success
    saved = call(Trigger, "/stereo_depth/save_weights", Trigger.Request())
    assert not saved.success and "weights_path is empty" in saved.message


def test_missing_camera_info_is_an_error_and_recovers(harness, sample):
    harness.node.set_parameters([Parameter("diagnostics.input_timeout", value=0.5)])
    left, right, li, ri = stereo_messages(sample, 20.0)
    harness.pubs["left"].publish(left)
    harness.pubs["right"].publish(right)  # no camera_info: nothing can be paired
    status = lambda: _status(harness, "input")  # noqa: E731
    assert harness.spin_until(lambda: (s := status()) is not None and s.level == DiagnosticStatus.ERROR
                              and "camera_info missing" in s.message, timeout=10)
    harness.publish(*stereo_messages(sample, 21.0))
    assert harness.spin_until(lambda: harness.node.stats.processed == 1)


def test_backlog_keeps_the_newest_pair_and_latency_bounded(harness, sample):
    for k in range(12):  # far faster than the node can process on a CPU
        harness.publish(*stereo_messages(sample, 30.0 + 0.01 * k))
        harness.executor.spin_once(timeout_sec=0.01)
    assert harness.spin_until(lambda: harness.node._slot is None and harness.node.stats.processed >= 2, timeout=60)
    stats = harness.node.stats
    assert stats.dropped > 0 and stats.processed + stats.dropped == stats.received
    # The last frame processed is the newest one published: nothing stale was worked through.
    assert harness.spin_until(lambda: harness.received["depth"] and harness.received["depth"][-1].header.stamp.nanosec == 110_000_000, timeout=30)
    assert stats.processed < 12

