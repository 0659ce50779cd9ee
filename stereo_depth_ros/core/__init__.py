"""ROS-free core of stereo_depth_ros: geometry, warping, losses, masks, network, point clouds.

Nothing in this package imports rclpy or ROS message packages; it is importable and testable on
any machine with torch and numpy.
"""
