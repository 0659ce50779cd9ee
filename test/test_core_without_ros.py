"""The core must import and work on a machine without ROS: checked in a subprocess whose import
system refuses every ROS package, plus a static scan of the sources."""

import ast
import os
import pathlib
import subprocess
import sys

import stereo_depth_ros

CORE = pathlib.Path(stereo_depth_ros.__file__).parent / "core"
ROS_MODULES = ("rclpy", "sensor_msgs", "stereo_msgs", "diagnostic_msgs", "std_srvs", "message_filters", "cv_bridge",
               "launch", "launch_ros", "builtin_interfaces", "rosidl_runtime_py")

BLOCKER = f"""
import importlib.abc, sys
BLOCKED = {ROS_MODULES!r}
class Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split('.')[0] in BLOCKED:
            raise ImportError('ROS is not available here: ' + name)
        return None
sys.meta_path.insert(0, Block())
import pkgutil, importlib, stereo_depth_ros.core as core
names = [m.name for m in pkgutil.walk_packages(core.__path__, 'stereo_depth_ros.core.')]
for n in names:
    importlib.import_module(n)
assert not any(m.split('.')[0] in BLOCKED for m in sys.modules), [m for m in sys.modules if m.split('.')[0] in BLOCKED]
import torch
from stereo_depth_ros.core.warping import warp_right_to_left
out, _ = warp_right_to_left(torch.rand(1, 3, 8, 8), torch.ones(1, 1, 8, 8))
print('imported', len(names), 'core modules')
"""


def test_core_imports_with_ros_unavailable():
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AMENT_", "ROS_", "COLCON_"))}
    result = subprocess.run([sys.executable, "-c", BLOCKER], env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert "imported" in result.stdout


def test_core_sources_import_no_ros_package():
    offenders = []
    for path in CORE.rglob("*.py"):
        tree = ast.parse(path.read_text(), filename=str(path))
        for node in ast.walk(tree):
            names = []
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names = [node.module]
            offenders += [f"{path.name}: {n}" for n in names if n.split(".")[0] in ROS_MODULES]
    assert not offenders, offenders
