"""The launch file, and the node as its own process started with a params file."""

from __future__ import annotations

import ast
import importlib.util
import os
import pathlib
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import rclpy
import yaml
from rclpy.executors import SingleThreadedExecutor
from rclpy.node import Node
from rclpy.qos import QoSProfile, QoSReliabilityPolicy
from sensor_msgs.msg import CameraInfo, Image

from stereo_depth_ros.core.synthetic import generate_sample
from stereo_depth_ros.ros.conversions import image_to_numpy
from stereo_depth_ros.ros.params import PARAMS

from test_node import stereo_messages

ROOT = pathlib.Path(__file__).resolve().parents[1]
LAUNCH = ROOT / "launch" / "stereo_depth.launch.py"


def _constants(path: pathlib.Path) -> dict:
    tree = ast.parse(path.read_text())
    return {t.id: ast.literal_eval(node.value) for node in tree.body if isinstance(node, ast.Assign)
            for t in node.targets if isinstance(t, ast.Name) and isinstance(node.value, (ast.Constant, ast.Tuple))}


def test_launch_file_names_things_that_exist_and_are_installed():
    names = _constants(LAUNCH)
    setup = (ROOT / "setup.py").read_text()
    assert f'"{names["EXECUTABLE"]} = stereo_depth_ros.ros.node:main"' in setup
    for name in names["CONFIG_FILES"]:
        assert (ROOT / "config" / name).is_file(), name
    assert 'glob("config/*")' in setup and 'glob("launch/*.launch.py")' in setup
    source = LAUNCH.read_text()
    for argument in ("namespace", "params_file", "use_sim_time", "left_image", "right_image", "left_info", "right_info", "log_level"):
        assert f'DeclareLaunchArgument("{argument}"' in source
    if importlib.util.find_spec("launch_ros") is None:
        pytest.skip("launch_ros is not importable here (pip path): the file's names were checked instead")
    spec = importlib.util.spec_from_file_location("stereo_depth_launch", LAUNCH)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    description = module.generate_launch_description()
    assert any(type(e).__name__ == "Node" for e in description.entities)


def test_params_yaml_lists_every_parameter_with_its_default():
    data = yaml.safe_load((ROOT / "config" / "stereo_depth.yaml").read_text())["/**"]["ros__parameters"]

    def flatten(d, prefix=""):
        for k, v in d.items():
            if isinstance(v, dict):
                yield from flatten(v, f"{prefix}{k}.")
            else:
                yield f"{prefix}{k}", v

    values = dict(flatten(data))
    assert values == {p.name: p.default for p in PARAMS}


def test_generated_parameter_files_are_up_to_date():
    from stereo_depth_ros.ros.params import parameters_markdown, params_yaml

    assert (ROOT / "config" / "stereo_depth.yaml").read_text() == params_yaml(), \
        "regenerate: python -m stereo_depth_ros.ros.params --yaml > config/stereo_depth.yaml"
    assert (ROOT / "docs" / "parameters.md").read_text() == parameters_markdown(), \
        "regenerate: python -m stereo_depth_ros.ros.params --markdown > docs/parameters.md"


def test_node_process_with_params_file_publishes_and_saves_on_shutdown(tmp_path):
    domain = 150 + os.getpid() % 60
    weights = tmp_path / "adapted.safetensors"
    params = tmp_path / "params.yaml"
    params.write_text(yaml.safe_dump({"/**": {"ros__parameters": {
        "device": "cpu", "sensor_qos": "reliable", "adaptation": {"enabled": True, "mode": "full", "weights_path": str(weights)},
        "diagnostics": {"period": 0.5}}}}))
    env = dict(os.environ, ROS_DOMAIN_ID=str(domain), ROS_AUTOMATIC_DISCOVERY_RANGE="LOCALHOST",
               FASTDDS_DEFAULT_PROFILES_FILE=str(ROOT / "config" / "fastdds_profile.xml"), PYTHONUNBUFFERED="1")
    process = subprocess.Popen([sys.executable, "-m", "stereo_depth_ros.ros.node", "--ros-args", "--params-file", str(params),
                                "-r", "__ns:=/cam"], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    context = rclpy.Context()
    rclpy.init(context=context, domain_id=domain)
    probe = Node("probe", context=context)
    qos = QoSProfile(depth=10, reliability=QoSReliabilityPolicy.RELIABLE)
    pubs = [probe.create_publisher(t, f"/cam/{n}", qos) for t, n in
            ((Image, "left/image_rect"), (Image, "right/image_rect"), (CameraInfo, "left/camera_info"), (CameraInfo, "right/camera_info"))]
    depth: list[Image] = []
    probe.create_subscription(Image, "/cam/depth/image", depth.append, qos)
    # 320x256 as in test_node: at 256 px wide the cost-volume network's 1/8 volume has 32 columns for
    # its 24 disparity bins, and its median relative error on this frame is 0.14 (0.07 at 320x256).
    sample = generate_sample(9, width=320, height=256, domain="indoor")
    executor = SingleThreadedExecutor(context=context)
    executor.add_node(probe)
    try:
        deadline, stamp = time.time() + 90, 1.0
        while len(depth) < 3 and time.time() < deadline:
            if process.poll() is not None:
                break
            for pub, msg in zip(pubs, stereo_messages(sample, stamp)):
                pub.publish(msg)
            stamp += 0.1
            end = time.time() + 0.5
            while time.time() < end:
                executor.spin_once(timeout_sec=0.05)
        assert len(depth) >= 3, "no depth from the node process"
        first = depth[0]
        assert first.encoding == "32FC1" and (first.height, first.width) == (256, 320)
        d = image_to_numpy(first)
        ok = np.isfinite(d)
        assert ok.mean() > 0.3 and np.median(np.abs(d[ok] - sample.depth_left[ok]) / sample.depth_left[ok]) < 0.1
    finally:
        process.send_signal(signal.SIGINT)
        try:
            output, _ = process.communicate(timeout=60)
        except subprocess.TimeoutExpired:
            process.kill()
            output, _ = process.communicate()
        executor.shutdown()
        probe.destroy_node()
        rclpy.shutdown(context=context)
    assert process.returncode == 0, output
    assert "ready on cpu" in output
    assert weights.is_file(), output  # adapted weights saved on shutdown
