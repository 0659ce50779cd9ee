"""Typed configuration of the disparity networks, one frozen dataclass per architecture.

Every config carries ``architecture`` (the name :func:`~stereo_depth_ros.core.network.model.build_network`
dispatches on) and ``max_disparity``; :func:`config_from_dict` reads a weights sidecar's ``"config"``
(sidecars written before there was a choice have no ``architecture`` and are MADNet-style).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Union

__all__ = ["ARCHITECTURES", "CostVolumeConfig", "NetworkConfig", "AnyNetworkConfig", "config_from_dict", "default_config"]


def _tuples(cls: type, values: dict[str, Any]) -> dict[str, Any]:
    """``values`` checked against ``cls``'s fields, JSON lists turned back into (nested) tuples."""
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = set(values) - set(fields)
    if unknown:
        raise ValueError(f"{cls.__name__}: unknown fields {sorted(unknown)}; expected a subset of {sorted(fields)}")

    def convert(v: Any) -> Any:
        return tuple(convert(x) for x in v) if isinstance(v, (list, tuple)) else v

    converted = dict(values)
    for key, value in values.items():
        if isinstance(value, (list, tuple)):
            converted[key] = convert(value)
    return converted


def _check_channels(name: str, channels: Any, count: int) -> None:
    if (not isinstance(channels, tuple) or len(channels) != count
            or any(isinstance(c, bool) or not isinstance(c, int) or c <= 0 for c in channels)):
        raise ValueError(f"{name}: expected {count} positive integer sizes, got {channels!r}")


@dataclass(frozen=True)
class NetworkConfig:
    """Shape of the coarse-to-fine stereo network (MADNet-style, :mod:`.madnet`).

    Level ``l`` (1..6) works at stride ``2**l``. The coarsest level searches disparities
    ``0..ceil(max_disparity / 2**6)`` with a full correlation; every finer level warps the right
    features by the upsampled disparity and searches a residual ``-radius..radius``.

    Attributes:
        architecture: always ``"madnet"`` (sidecars without the field are MADNet-style).
        max_disparity: largest disparity (pixels at full resolution) the network is built for.
        encoder_channels: feature channels of levels 1..6.
        decoder_channels: hidden channels of the disparity decoder at each level 1..6.
        refinement_channels: hidden channels of the dilated refinement stage (at level 2).
        refinement_dilations: dilation of each refinement conv.
        correlation_radius: residual search radius at levels 1..5 (pixels of that level).
        output_level: the finest level that is decoded; the output is upsampled from there.
    """

    max_disparity: int = 192
    encoder_channels: tuple[int, ...] = (16, 32, 64, 96, 128, 160)
    decoder_channels: tuple[tuple[int, ...], ...] = (
        (32, 24, 16),
        (64, 48, 32),
        (96, 64, 32),
        (96, 64, 32),
        (96, 64, 32),
        (96, 64, 32),
    )
    refinement_channels: int = 48
    refinement_dilations: tuple[int, ...] = (1, 2, 4, 8, 1)
    correlation_radius: int = 2
    output_level: int = 1
    extra: dict[str, Any] = field(default_factory=dict)
    architecture: str = "madnet"

    def __post_init__(self) -> None:
        if self.architecture != "madnet":
            raise ValueError(f"architecture: NetworkConfig describes 'madnet', got {self.architecture!r} "
                             f"(config_from_dict picks the config class of an architecture)")
        if not isinstance(self.max_disparity, int) or self.max_disparity < 16:
            raise ValueError(f"max_disparity: expected an integer >= 16 pixels, got {self.max_disparity!r}")
        if len(self.encoder_channels) != 6 or any(int(c) <= 0 for c in self.encoder_channels):
            raise ValueError(f"encoder_channels: expected 6 positive sizes, got {self.encoder_channels}")
        if len(self.decoder_channels) != 6 or any(len(c) == 0 or min(c) <= 0 for c in self.decoder_channels):
            raise ValueError(f"decoder_channels: expected 6 non-empty tuples of positive sizes, got {self.decoder_channels}")
        if self.refinement_channels <= 0 or not self.refinement_dilations:
            raise ValueError("refinement: expected positive channels and at least one dilation, "
                             f"got {self.refinement_channels}, {self.refinement_dilations}")
        if not 1 <= self.correlation_radius <= 8:
            raise ValueError(f"correlation_radius: expected 1..8, got {self.correlation_radius}")
        if self.output_level not in (1, 2):
            raise ValueError(f"output_level: expected 1 or 2, got {self.output_level}")

    @property
    def num_levels(self) -> int:
        return 6

    @property
    def stride(self) -> int:
        """Input sizes are padded to a multiple of this (the coarsest stride)."""
        return 2**self.num_levels

    @property
    def coarse_search(self) -> int:
        """Largest disparity searched at the coarsest level, in pixels of that level."""
        return -(-self.max_disparity // self.stride)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> "NetworkConfig":
        return cls(**_tuples(cls, values))


@dataclass(frozen=True)
class CostVolumeConfig:
    """Shape of the full-range cost-volume network (:mod:`.costvolume`).

    A shared feature extractor runs down to level ``volume_level`` (stride ``2**volume_level``);
    there a group-wise correlation volume searches every disparity ``0..max_disparity /
    2**volume_level`` (pixels of that level), a 2D hourglass of inverted-residual blocks aggregates
    it (disparities as channels, LightStereo-style) and a soft-argmin turns it into a disparity;
    every finer level down to ``output_level`` warps the right features by the upsampled disparity,
    searches a residual ``-correlation_radius..correlation_radius`` and decodes a residual from it,
    the left features, the left image and the image's reconstruction error.

    Attributes:
        architecture: always ``"costvolume"``.
        max_disparity: largest disparity (pixels at full resolution) the volume searches.
        volume_level: level of the cost volume: 3 (1/8) or 2 (1/4).
        feature_channels: feature channels of levels 1..volume_level.
        groups: correlation groups (each a cosine similarity of ``C / groups`` channels); must divide
            the channels of the volume level.
        aggregation_channels: channels of the hourglass at the volume level and the two coarser levels.
        expansion: expansion factor of the inverted-residual blocks.
        decoder_channels: hidden channels of the residual decoder at each finer level
            ``output_level..volume_level - 1`` (finest first).
        correlation_radius: residual search radius of the finer levels (pixels of that level).
        output_level: the finest level decoded (1 or 2); the output is upsampled from there.
        context_level: 0 (none), or a level ``output_level..volume_level`` whose disparity a dilated
            context stage refines (:class:`~.layers.Refinement` on the left features, the disparity,
            the left image and its reconstruction error): its reach, ``sum(context_dilations)`` + 2
            pixels of that level, spans occlusions that the residual decoders' four 3x3
            convolutions cannot. Its output starts at zero, so weights without it load unchanged.
        context_channels: channels of the context stage.
        context_dilations: dilation of each of its 3x3 convolutions.
        hypothesis_level: 0 (none), or a finer level ``output_level..volume_level - 1`` where, before
            its residual decoder, a selector chooses per pixel among the upsampled disparity and the
            smallest and largest disparity within ``hypothesis_radius`` pixels, by how well each
            matches (:class:`~.hypotheses.HypothesisSelector`): a way across the depth edges that
            the volume fattens. It starts with 91 % of the weight on the upsampled disparity (all of it where
            the three agree), so it can be added to trained weights.
        hypothesis_radius: the neighbourhood's half side, pixels of ``hypothesis_level``.
        hypothesis_channels: hidden channels of the selector.
    """

    max_disparity: int = 192
    volume_level: int = 3
    feature_channels: tuple[int, ...] = (16, 32, 64)
    groups: int = 8
    aggregation_channels: tuple[int, ...] = (64, 96, 128)
    expansion: int = 4
    decoder_channels: tuple[tuple[int, ...], ...] = ((32, 24, 16), (64, 48, 32))
    correlation_radius: int = 2
    output_level: int = 1
    context_level: int = 0
    context_channels: int = 32
    context_dilations: tuple[int, ...] = (1, 2, 4, 8, 16, 1)
    hypothesis_level: int = 0
    hypothesis_radius: int = 8
    hypothesis_channels: int = 32
    extra: dict[str, Any] = field(default_factory=dict)
    architecture: str = "costvolume"

    def __post_init__(self) -> None:
        if self.architecture != "costvolume":
            raise ValueError(f"architecture: CostVolumeConfig describes 'costvolume', got {self.architecture!r}")
        if self.volume_level not in (2, 3):
            raise ValueError(f"volume_level: expected 2 (1/4) or 3 (1/8), got {self.volume_level!r}")
        if (isinstance(self.max_disparity, bool) or not isinstance(self.max_disparity, int) or self.max_disparity < 16
                or self.max_disparity % 2**self.volume_level):
            raise ValueError(f"max_disparity: expected an integer >= 16 pixels and a multiple of {2**self.volume_level} "
                             f"(the volume's stride), got {self.max_disparity!r}")
        _check_channels("feature_channels", self.feature_channels, self.volume_level)
        _check_channels("aggregation_channels", self.aggregation_channels, 3)
        if isinstance(self.groups, bool) or not isinstance(self.groups, int) or self.groups < 1 \
                or self.feature_channels[-1] % self.groups:
            raise ValueError(f"groups: expected a positive integer dividing the volume level's "
                             f"{self.feature_channels[-1]} channels, got {self.groups!r}")
        if isinstance(self.expansion, bool) or not isinstance(self.expansion, int) or self.expansion < 1:
            raise ValueError(f"expansion: expected an integer >= 1, got {self.expansion!r}")
        if self.output_level not in (1, 2) or self.output_level >= self.volume_level:
            raise ValueError(f"output_level: expected 1 or 2 and below volume_level {self.volume_level}, "
                             f"got {self.output_level!r}")
        finer = self.volume_level - self.output_level
        if (not isinstance(self.decoder_channels, tuple) or len(self.decoder_channels) != finer
                or any(not isinstance(c, tuple) or not c or any(not isinstance(v, int) or v <= 0 for v in c)
                       for c in self.decoder_channels)):
            raise ValueError(f"decoder_channels: expected {finer} non-empty tuples of positive sizes (levels "
                             f"{self.output_level}..{self.volume_level - 1}), got {self.decoder_channels!r}")
        if not 1 <= self.correlation_radius <= 8:
            raise ValueError(f"correlation_radius: expected 1..8, got {self.correlation_radius!r}")
        if self.context_level != 0 and not self.output_level <= self.context_level <= self.volume_level:
            raise ValueError(f"context_level: expected 0 (none) or a level {self.output_level}..{self.volume_level}, "
                             f"got {self.context_level!r}")
        if isinstance(self.context_channels, bool) or not isinstance(self.context_channels, int) \
                or self.context_channels < 1:
            raise ValueError(f"context_channels: expected a positive integer, got {self.context_channels!r}")
        if (not isinstance(self.context_dilations, tuple) or not self.context_dilations
                or any(isinstance(d, bool) or not isinstance(d, int) or d < 1 for d in self.context_dilations)):
            raise ValueError(f"context_dilations: expected a non-empty tuple of positive integers, "
                             f"got {self.context_dilations!r}")
        if self.hypothesis_level != 0 and not self.output_level <= self.hypothesis_level < self.volume_level:
            raise ValueError(f"hypothesis_level: expected 0 (none) or a level {self.output_level}.."
                             f"{self.volume_level - 1} (below the volume), got {self.hypothesis_level!r}")
        for name in ("hypothesis_radius", "hypothesis_channels"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name}: expected a positive integer, got {value!r}")

    @property
    def search(self) -> int:
        """Largest disparity of the volume, in pixels of the volume level."""
        return self.max_disparity // 2**self.volume_level

    @property
    def stride(self) -> int:
        """Input sizes are padded to a multiple of this (the hourglass's coarsest stride)."""
        return 2 ** (self.volume_level + 2)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> "CostVolumeConfig":
        return cls(**_tuples(cls, values))


AnyNetworkConfig = Union[NetworkConfig, CostVolumeConfig]

#: Architecture name -> its config class.
ARCHITECTURES: dict[str, type] = {"madnet": NetworkConfig, "costvolume": CostVolumeConfig}


def default_config(architecture: str) -> AnyNetworkConfig:
    """The default config of ``architecture`` (one of :data:`ARCHITECTURES`)."""
    if architecture not in ARCHITECTURES:
        raise ValueError(f"architecture: expected one of {sorted(ARCHITECTURES)}, got {architecture!r}")
    return ARCHITECTURES[architecture]()


def config_from_dict(values: dict[str, Any]) -> AnyNetworkConfig:
    """The config a weights file's ``"config"`` describes; without ``architecture`` it is ``"madnet"``
    (every sidecar written before the choice existed).

    Raises:
        ValueError: not a dict, an unknown architecture, unknown fields or invalid values.
    """
    if not isinstance(values, dict):
        raise ValueError(f"config: expected a dict of fields, got {type(values).__name__}")
    architecture = values.get("architecture", "madnet")
    if architecture not in ARCHITECTURES:
        raise ValueError(f"architecture: expected one of {sorted(ARCHITECTURES)}, got {architecture!r}")
    return ARCHITECTURES[architecture].from_dict(values)
