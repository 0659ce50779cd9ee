"""stereo_depth_ros: self-adapting stereo depth for ROS 2."""

__version__ = "0.1.0"
