"""Launch the stereo depth node.

    ros2 launch stereo_depth_ros stereo_depth.launch.py namespace:=stereo \
        params_file:=/path/params.yaml left_image:=/cam/left/image_rect ...

Arguments: namespace, params_file (default: the package's config/stereo_depth.yaml),
use_sim_time, topic remaps (left_image, right_image, left_info, right_info), log_level, and
fastdds_profile (the shipped large-message profile; empty to keep the environment's).
"""

import os

from ament_index_python.packages import get_package_share_directory
from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument, SetEnvironmentVariable
from launch.conditions import IfCondition
from launch.substitutions import LaunchConfiguration, PythonExpression
from launch_ros.actions import Node

PACKAGE = "stereo_depth_ros"
EXECUTABLE = "stereo_depth_node"
CONFIG_FILES = ("stereo_depth.yaml", "fastdds_profile.xml", "stereo_depth.rviz")


def generate_launch_description() -> LaunchDescription:
    share = get_package_share_directory(PACKAGE)
    config = os.path.join(share, "config")
    args = [
        DeclareLaunchArgument("namespace", default_value="", description="Node namespace"),
        DeclareLaunchArgument("params_file", default_value=os.path.join(config, "stereo_depth.yaml"),
                              description="YAML file with the node's parameters"),
        DeclareLaunchArgument("use_sim_time", default_value="false", description="Use /clock (bag replay)"),
        DeclareLaunchArgument("left_image", default_value="left/image_rect"),
        DeclareLaunchArgument("right_image", default_value="right/image_rect"),
        DeclareLaunchArgument("left_info", default_value="left/camera_info"),
        DeclareLaunchArgument("right_info", default_value="right/camera_info"),
        DeclareLaunchArgument("log_level", default_value="info", description="debug, info, warn, error"),
        DeclareLaunchArgument("fastdds_profile", default_value=os.path.join(config, "fastdds_profile.xml"),
                              description="Fast DDS profile for large messages on one host ('' keeps the environment's)"),
    ]
    profile = LaunchConfiguration("fastdds_profile")
    set_profile = SetEnvironmentVariable("FASTDDS_DEFAULT_PROFILES_FILE", profile,
                                         condition=IfCondition(PythonExpression(["'", profile, "' != ''"])))
    node = Node(
        package=PACKAGE,
        executable=EXECUTABLE,
        name="stereo_depth",
        namespace=LaunchConfiguration("namespace"),
        parameters=[LaunchConfiguration("params_file"), {"use_sim_time": LaunchConfiguration("use_sim_time")}],
        remappings=[
            ("left/image_rect", LaunchConfiguration("left_image")),
            ("right/image_rect", LaunchConfiguration("right_image")),
            ("left/camera_info", LaunchConfiguration("left_info")),
            ("right/camera_info", LaunchConfiguration("right_info")),
        ],
        arguments=["--ros-args", "--log-level", LaunchConfiguration("log_level")],
        output="screen",
    )
    return LaunchDescription(args + [set_profile, node])
