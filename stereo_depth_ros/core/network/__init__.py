"""The disparity networks: configurations, layers, one module per architecture, weights and a
numpy-facing estimator."""

from .config import CostVolumeConfig, NetworkConfig, config_from_dict
from .model import CostVolumeNet, StereoNet, StereoNetwork, StereoOutput, build_network

__all__ = ["CostVolumeConfig", "CostVolumeNet", "NetworkConfig", "StereoNet", "StereoNetwork", "StereoOutput",
           "build_network", "config_from_dict"]
