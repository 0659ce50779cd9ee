"""The disparity networks: configurations, layers, one module per architecture, weights and a
numpy-facing estimator."""

from .config import NetworkConfig, config_from_dict
from .model import StereoNet, StereoNetwork, StereoOutput, build_network

__all__ = ["NetworkConfig", "StereoNet", "StereoNetwork", "StereoOutput",
           "build_network", "config_from_dict"]
