"""The ament_python package is well formed and builds and tests with colcon."""

import os
import pathlib
import shutil
import subprocess
import sys
import xml.etree.ElementTree as ET

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]


def test_package_xml_declares_the_dependencies():
    root = ET.parse(ROOT / "package.xml").getroot()
    assert root.get("format") == "3" and root.findtext("name") == "stereo_depth_ros"
    exec_deps = {e.text for e in root.findall("exec_depend")}
    for dep in ("rclpy", "sensor_msgs", "stereo_msgs", "diagnostic_msgs", "std_srvs", "message_filters",
                "cv_bridge", "launch_ros", "python3-numpy", "python3-torch", "python3-opencv"):
        assert dep in exec_deps, dep
    assert any("open3d" in d for d in exec_deps) and any("rosbags" in d for d in exec_deps)
    assert "python3-pytest" in {e.text for e in root.findall("test_depend")}
    assert root.find("export/build_type").text == "ament_python"
    assert (ROOT / "resource" / "stereo_depth_ros").is_file()


def test_every_package_xml_dependency_is_a_checked_rosdep_key():
    """``rosdep install`` resolves every key: each is in the list of keys checked against rosdistro,
    none is one found absent, and the pip-only dependency is documented for the ROS-native path."""
    import yaml

    checked = yaml.safe_load((ROOT / "test" / "rosdep_keys.yaml").read_text())
    root = ET.parse(ROOT / "package.xml").getroot()
    tags = ("depend", "exec_depend", "build_depend", "build_export_depend", "test_depend", "buildtool_depend")
    keys = [e.text.strip() for tag in tags for e in root.findall(tag)]
    assert keys and not [k for k in keys if k not in checked["keys"]], "unchecked rosdep keys"
    assert not set(keys) & set(checked["absent"])
    assert "pip install safetensors" in (ROOT / "README.md").read_text()


def _colcon() -> str:
    candidate = pathlib.Path(sys.executable).parent / "colcon"
    found = str(candidate) if candidate.exists() else shutil.which("colcon")
    if not found:
        pytest.skip("colcon is not installed (make test installs it)")
    return found


def test_colcon_build_and_test_in_a_workspace(tmp_path):
    colcon = _colcon()
    src = tmp_path / "src" / "stereo_depth_ros"
    shutil.copytree(ROOT, src, ignore=shutil.ignore_patterns(
        ".git", ".venv", "build", "install", "log", "__pycache__", "*.egg-info", "demo_output", "out"))
    env = {k: v for k, v in os.environ.items() if not k.startswith(("COLCON_", "AMENT_PREFIX"))}
    build = subprocess.run([colcon, "build", "--event-handlers", "console_direct-"], cwd=tmp_path, env=env,
                           capture_output=True, text=True, timeout=300)
    assert build.returncode == 0, build.stdout + build.stderr
    share = tmp_path / "install" / "stereo_depth_ros" / "share" / "stereo_depth_ros"
    assert (share / "package.xml").is_file()
    assert (tmp_path / "install" / "stereo_depth_ros" / "share" / "ament_index" / "resource_index" / "packages" / "stereo_depth_ros").is_file()
    assert (tmp_path / "install" / "stereo_depth_ros" / "lib" / "stereo_depth_ros" / "stereo_depth_demo").is_file()
    # colcon test runs the package's pytest suite; a fast file keeps this test short.
    test = subprocess.run([colcon, "test", "--event-handlers", "console_direct-", "--pytest-args", "test/test_camera.py"],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert test.returncode == 0, test.stdout + test.stderr
    result = subprocess.run([colcon, "test-result", "--verbose"], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr
    summary = [line for line in result.stdout.splitlines() if line.startswith("Summary:")]
    assert summary and " 0 errors, 0 failures" in summary[0] and not summary[0].startswith("Summary: 0 tests"), result.stdout
