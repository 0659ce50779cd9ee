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
    status = lambda: _status(harness, "input")  # noqa: E731
    deadline = time.time() + 10
    found = False
    for k in range(200):  # a driver publishing images but no camera_info: nothing can be paired
        left, right, _, _ = stereo_messages(sample, 20.0 + 0.05 * k)
        harness.pubs["left"].publish(left)
        harness.pubs["right"].publish(right)
        harness.spin_until(lambda: False, timeout=0.05)
        s = status()
        if s is not None and s.level == DiagnosticStatus.ERROR:
            found = "left_image, right_image arrive but never form a stereo set: nothing on left_info, right_info" in s.message
            break
        if time.time() > deadline:
            break
    assert found, status().message if status() else None
    harness.publish(*stereo_messages(sample, 31.0))
    assert harness.spin_until(lambda: harness.node.stats.processed == 1)


def test_input_that_stops_is_a_warning_not_an_error(harness, sample):
    """End of a bag: after the timeout the input status is WARN "no input", and the start-up frame
    does not hold the pipeline at WARN."""
    harness.node.set_parameters([Parameter("diagnostics.input_timeout", value=0.5)])
    for k in range(3):
        harness.publish(*stereo_messages(sample, 40.0 + k))
        assert harness.spin_until(lambda: harness.node.stats.processed == k + 1)
    status = lambda: _status(harness, "input")  # noqa: E731
    assert harness.spin_until(lambda: (s := status()) is not None and s.level == DiagnosticStatus.WARN
                              and s.message.startswith("no input for"), timeout=10)
    assert all(st.level != DiagnosticStatus.ERROR for array in harness.received["diag"] for st in array.status
               if st.name.endswith(": input"))


def test_time_jump_back_is_followed_at_once(harness, sample):
    """A bag loop: stamps jump back by 100 s; the first pair after the jump is processed."""
    for k in range(2):
        harness.publish(*stereo_messages(sample, 200.0 + k))
        assert harness.spin_until(lambda: harness.node.stats.processed == k + 1)
    harness.publish(*stereo_messages(sample, 100.0))
    assert harness.spin_until(lambda: harness.node.stats.processed == 3, timeout=30)
    # The node counts a frame before its depth reaches our subscriber: wait for the delivery too.
    assert harness.spin_until(lambda: harness.received["depth"][-1].header.stamp.sec == 100, timeout=10)
    assert harness.node.stats.processed == 3 and harness.node.stats.time_jumps >= 1
    harness.publish(*stereo_messages(sample, 100.0))  # a true duplicate is still refused
    assert harness.spin_until(lambda: harness.node.stats.rejected["bad_stamp"] >= 1, timeout=10)
    harness.publish(*stereo_messages(sample, 101.0))
    assert harness.spin_until(lambda: harness.node.stats.processed == 4, timeout=30)


def test_cached_camera_info_pairs_images_with_the_latest_info(sample):
    """cache_camera_info: camera_info stamped apart from the images (or sent once) still works;
    one older than camera_info_timeout is reported as stale."""
    h = Harness([Parameter("adaptation.enabled", value=False), Parameter("sensor_qos", value="reliable"),
                 Parameter("device", value="cpu"), Parameter("cache_camera_info", value=True),
                 Parameter("camera_info_timeout", value=2.0), Parameter("diagnostics.period", value=0.2)])
    try:
        left, right, li, ri = stereo_messages(sample, 50.0)
        h.pubs["left"].publish(left)
        h.pubs["right"].publish(right)
        assert h.spin_until(lambda: h.node.stats.rejected["no_camera_info"] >= 1, timeout=15)
        _, _, li, ri = stereo_messages(sample, 50.3)  # camera_info with its own stamps
        h.pubs["left_info"].publish(li)
        h.pubs["right_info"].publish(ri)
        h.spin_until(lambda: False, timeout=0.3)
        left, right, _, _ = stereo_messages(sample, 51.0)
        h.pubs["left"].publish(left)
        h.pubs["right"].publish(right)
        assert h.spin_until(lambda: h.node.stats.processed == 1, timeout=30)
        left, right, _, _ = stereo_messages(sample, 60.0)  # 9.7 s after the last camera_info
        h.pubs["left"].publish(left)
        h.pubs["right"].publish(right)
        assert h.spin_until(lambda: h.node.stats.rejected["stale_camera_info"] >= 1, timeout=15)
        assert "camera_info is 9.700 s away" in h.node.stats.last_rejection
    finally:
        h.close()


@pytest.mark.parametrize("width, height, key", [(1, 1, "too_small"), (31, 64, "too_small"), (1921, 64, "too_large")])
def test_image_size_limits_by_device(harness, width, height, key):
    image = numpy_to_image(np.zeros((height, width, 3), np.uint8), "rgb8")
    camera = StereoCamera.from_intrinsics(width, height, 100.0, 0.1)
    infos = [camera_info_msg(camera), camera_info_msg(camera)]
    infos[1].p = list(camera.P_right().ravel())
    for m in (image, *infos):
        m.header.stamp.sec = 70
    harness.publish(image, image, *infos)
    assert harness.spin_until(lambda: harness.node.stats.rejected[key] == 1, timeout=15)
    assert ("below the minimum 32x32" if key == "too_small" else "maximum 1920x1200") in harness.node.stats.last_rejection


def test_single_pass_mode_skips_the_right_view(sample):
    h = Harness([Parameter("adaptation.enabled", value=False), Parameter("sensor_qos", value="reliable"),
                 Parameter("device", value="cpu"), Parameter("validity.left_right_check", value=False),
                 Parameter("output.cloud_color", value=False)])
    try:
        h.publish(*stereo_messages(sample, 80.0))
        assert h.spin_until(lambda: h.received["depth"] and h.received["points"])
        depth = image_to_numpy(h.received["depth"][0])
        valid = np.isfinite(depth)
        assert 0.5 < valid.mean() <= 1.0
        assert np.median(np.abs(depth[valid] - sample.depth_left[valid]) / sample.depth_left[valid]) < 0.1
        cloud = h.received["points"][0]
        assert [f.name for f in cloud.fields] == ["x", "y", "z"] and cloud.point_step == 12
    finally:
        h.close()


def test_stereo_image_proc_names_and_integer_values_are_accepted(sample):
    h = Harness([Parameter("adaptation.enabled", value=False), Parameter("device", value="cpu"),
                 Parameter("approximate_sync_tolerance_seconds", value=0.02), Parameter("use_color", value=False),
                 Parameter("use_system_default_qos", value=True), Parameter("validity.max_depth", value=20)])
    try:
        c = h.node.config
        assert c.slop == 0.02 and not c.output_cloud_color and c.sensor_qos == "system_default"
        assert c.validity_max_depth == 20.0 and isinstance(c.validity_max_depth, float)
        assert h.node.set_parameters([Parameter("validity.max_depth", value=30)])[0].successful  # INTEGER for a double
        assert h.node.config.validity_max_depth == 30.0
        result = h.node.set_parameters([Parameter("validity.max_depth", value="far")])[0]
        assert not result.successful and "validity.max_depth: expected float" in result.reason
    finally:
        h.close()


def test_core_log_lines_reach_the_ros_logger_throttled(harness):
    import logging

    lines = []
    bridge = harness.node._log_bridge
    bridge._ros = type("Recorder", (), {"warning": lines.append, "error": lines.append, "info": lines.append})()
    core = logging.getLogger("stereo_depth_ros.core.adaptation")
    for k in range(5):
        core.warning("adaptation rolled back to the %s: %s", "initial weights", f"reason {k}")
    assert len(lines) == 1 and "adaptation rolled back to the initial weights: reason 0" in lines[0]
    assert bridge.snapshot()["WARNING"] == 5
    bridge._last.clear()
    core.warning("adaptation rolled back to the %s: %s", "initial weights", "reason 5")
    assert "(4 more like it" in lines[-1]


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



_SAVE_FOREVER = """
import sys, torch
from stereo_depth_ros.core.network import StereoNet
from stereo_depth_ros.core.network.weights import save_weights
net = StereoNet()
print("ready", flush=True)
while True:
    save_weights(net, sys.argv[1], {"note": "saved in a loop until killed"})
"""


def test_no_temp_file_survives_a_restart_after_kill_9_during_a_save(tmp_path):
    """A writer killed with SIGKILL in the middle of saves leaves ``.<name>.<pid>.*.tmp`` behind;
    the node removes them on start and loads the last complete save."""
    import signal
    import subprocess
    import sys
    import time

    target = tmp_path / "adapted.safetensors"
    leftovers: list = []
    for _ in range(20):  # the kill must land inside a write at least once
        writer = subprocess.Popen([sys.executable, "-c", _SAVE_FOREVER, str(target)], stdout=subprocess.PIPE)
        assert writer.stdout.readline().strip() == b"ready"
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and not target.is_file():  # one complete save first
            time.sleep(0.001)
        while time.monotonic() < deadline and not list(tmp_path.glob(".adapted.*.tmp")):
            time.sleep(0.001)
        writer.send_signal(signal.SIGKILL)
        writer.wait()
        leftovers = list(tmp_path.glob(".adapted.*.tmp"))
        if leftovers and target.is_file():
            break
    assert leftovers, "no kill landed inside a save"
    h = Harness([Parameter("adaptation.enabled", value=False),
                 Parameter("adaptation.weights_path", value=str(target)),
                 Parameter("adaptation.resume", value=True)])
    try:
        assert not list(tmp_path.glob(".*.tmp"))
        assert h.node.model_source.startswith("adapted"), h.node.model_source  # the last complete save loads
    finally:
        h.close()


def test_fused_output_reports_its_sources_on_diagnostics(harness, sample):
    """By default the node publishes SGBM fused with the network: the shares of the published
    pixels from each source reach /diagnostics through real topics; with fusion off they are NaN."""
    harness.publish(*stereo_messages(sample, 50.0))
    assert harness.spin_until(lambda: len(harness.received["depth"]) == 1)

    def shares() -> dict[str, float] | None:
        status = _status(harness, "pipeline")
        if status is None:
            return None
        values = {kv.key: kv.value for kv in status.values}
        if values.get("frames_processed") != str(harness.node.stats.processed) or "source_agree" not in values:
            return None
        return {k: values[k] for k in ("fusion", "source_network", "source_sgbm", "source_agree")}

    assert harness.spin_until(lambda: (s := shares()) is not None and s["source_agree"] != "nan", timeout=5)
    s = shares()
    assert s["fusion"] == "sgbm"
    numbers = [float(s[k]) for k in ("source_network", "source_sgbm", "source_agree")]
    assert sum(numbers) == pytest.approx(1.0, abs=1e-4) and float(s["source_agree"]) > 0.3  # a textured synthetic scene
    harness.node.set_parameters([Parameter("output.fusion", value="none")])
    harness.publish(*stereo_messages(sample, 51.0))
    assert harness.spin_until(lambda: len(harness.received["depth"]) == 2)
    assert harness.spin_until(lambda: (s := shares()) is not None and s["source_agree"] == "nan", timeout=5)
    assert shares()["fusion"] == "none" and harness.node.stats.processed == 2


def test_adapting_upsampled_without_fusion_labels_with_sgbm_on_the_frame_as_it_is(sample, tmp_path, monkeypatch):
    """With the network's input upsampled and ``output.fusion: none``, adaptation still gets SGBM's
    labels of the frame as it is (``run_matcher``, as the fused output would), not SGBM on the
    upsampled images that the adapter would otherwise compute itself."""
    from stereo_depth_ros.core.adaptation import AdaptationWorker, proxy_matcher
    from stereo_depth_ros.core.pipeline import run_matcher, scaled_size

    submitted = []
    submit = AdaptationWorker.submit

    def recording_submit(self, left, right, matcher_disparity=None):
        submitted.append((tuple(left.shape), matcher_disparity))
        return submit(self, left, right, matcher_disparity)

    monkeypatch.setattr(AdaptationWorker, "submit", recording_submit)
    h = Harness([Parameter("inference_scale", value=1.25), Parameter("output.fusion", value="none"),
                 Parameter("adaptation.enabled", value=True), Parameter("sensor_qos", value="reliable"),
                 Parameter("device", value="cpu")])
    try:
        h.publish(*stereo_messages(sample, 90.0))
        assert h.spin_until(lambda: h.received["depth"] and submitted)
        height, width = sample.left.shape[:2]
        size = scaled_size(height, width, 1.25)
        (shape, labels), = submitted
        assert shape == (1, 3, *size) and labels is not None and labels.shape == (1, *size)
        matcher = proxy_matcher(h.node.config.adaptation(), h.node.max_disparity)
        left, right = (torch.from_numpy(np.round(np.clip(image, 0, 1) * 255).astype(np.float32) / 255.0)
                       .permute(2, 0, 1)[None] for image in (sample.left, sample.right))  # as sent: rgb8
        np.testing.assert_array_equal(labels[0], run_matcher(matcher, left, right, size))
    finally:
        h.close()


def test_weights_that_name_a_scale_run_at_it_and_adapted_saves_keep_it(sample, tmp_path):
    """``inference_scale`` 0 (the default) runs the network at the scale its weights name (their
    metadata's ``inference_scale``, written by ``--frame-scale`` fine-tuning): it reaches /diagnostics,
    the depth stays right, and weights the node adapts and saves name the same scale."""
    from stereo_depth_ros.core.network.weights import load_model, load_weights, save_weights

    model, meta = load_model()
    scaled = tmp_path / "scaled.safetensors"
    save_weights(model, scaled, {"training_command": meta.get("training_command"), "inference_scale": 1.25})
    adapted = tmp_path / "adapted.safetensors"
    h = Harness([Parameter("weights", value=str(scaled)), Parameter("adaptation.enabled", value=False),
                 Parameter("adaptation.weights_path", value=str(adapted)), Parameter("diagnostics.period", value=0.2),
                 Parameter("sensor_qos", value="reliable"), Parameter("device", value="cpu")])
    try:
        assert h.node.config.inference_scale == 0.0 and h.node.weights_scale == 1.25
        h.publish(*stereo_messages(sample, 90.0))
        assert h.spin_until(lambda: h.received["depth"])
        depth = image_to_numpy(h.received["depth"][0])
        valid = np.isfinite(depth)
        assert np.median(np.abs(depth[valid] - sample.depth_left[valid]) / sample.depth_left[valid]) < 0.1

        def reported() -> str | None:
            status = _status(h, "model")
            return None if status is None else {kv.key: kv.value for kv in status.values}.get("inference_scale")

        assert h.spin_until(lambda: reported() is not None, timeout=5) and float(reported()) == 1.25
        ok, _ = h.node._save_adapted()
        assert ok and load_weights(adapted)[1]["inference_scale"] == 1.25
    finally:
        h.close()
