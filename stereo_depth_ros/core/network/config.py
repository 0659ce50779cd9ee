"""Typed configuration of the disparity network."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

__all__ = ["NetworkConfig"]


@dataclass(frozen=True)
class NetworkConfig:
    """Shape of the coarse-to-fine stereo network (MADNet-style).

    Level ``l`` (1..6) works at stride ``2**l``. The coarsest level searches disparities
    ``0..ceil(max_disparity / 2**6)`` with a full correlation; every finer level warps the right
    features by the upsampled disparity and searches a residual ``-radius..radius``.

    Attributes:
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

    def __post_init__(self) -> None:
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
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = set(values) - names
        if unknown:
            raise ValueError(f"NetworkConfig: unknown fields {sorted(unknown)}; expected a subset of {sorted(names)}")
        converted = dict(values)
        for key in ("encoder_channels", "refinement_dilations"):
            if key in converted:
                converted[key] = tuple(int(v) for v in converted[key])
        if "decoder_channels" in converted:
            converted["decoder_channels"] = tuple(tuple(int(v) for v in c) for c in converted["decoder_channels"])
        return cls(**converted)
