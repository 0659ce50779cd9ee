"""ROS 2 glue for stereo_depth_ros: message conversions, stereo synchronisation and the node.

Everything here needs rclpy and the message packages (``sensor_msgs``, ``stereo_msgs``); the maths
lives in :mod:`stereo_depth_ros.core`, which imports without ROS. :mod:`stereo_depth_ros.ros.sync`
keeps its synchronisation logic free of rclpy so it can be tested on crafted stamp sequences.
"""
