"""The networks' shared interface and the factory that builds one from its config.

Every architecture has its own module (:mod:`.madnet`: the MADNet-style coarse-to-fine network
:class:`StereoNet`; :mod:`.costvolume`: the full-range cost-volume network :class:`CostVolumeNet`);
all return a :class:`StereoOutput` and split their parameters into MAD :meth:`~StereoNetwork.blocks`.
Code that builds a network from a config (weights files, training) goes through
:func:`build_network`, so a weights file of either architecture loads everywhere.
"""

from __future__ import annotations

from .base import StereoNetwork, StereoOutput
from .config import AnyNetworkConfig, CostVolumeConfig, NetworkConfig
from .costvolume import CostVolumeNet
from .madnet import StereoNet

__all__ = ["CostVolumeNet", "StereoNet", "StereoNetwork", "StereoOutput", "build_network"]


def build_network(config: AnyNetworkConfig | None = None) -> StereoNetwork:
    """A freshly initialised network of the architecture ``config`` describes (None: MADNet-style defaults).

    Raises:
        ValueError: ``config`` is not one of the network config classes.
    """
    if config is None or isinstance(config, NetworkConfig):
        return StereoNet(config)
    if isinstance(config, CostVolumeConfig):
        return CostVolumeNet(config)
    raise ValueError(f"config: expected a NetworkConfig or CostVolumeConfig, got {type(config).__name__}")
