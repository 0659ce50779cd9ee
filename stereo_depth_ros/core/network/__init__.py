"""The disparity network: configuration, layers, model, weights and a numpy-facing estimator."""

from .config import NetworkConfig
from .model import StereoNet, StereoOutput

__all__ = ["NetworkConfig", "StereoNet", "StereoOutput"]
