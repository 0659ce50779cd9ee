"""Procedural rectified stereo scenes with exact ground truth (the package's historical entry point).

Scene generation lives in :mod:`stereo_depth_ros.core.scenes`; this module re-exports its public
names so that ``from stereo_depth_ros.core.synthetic import generate_sample`` keeps working (for the
planar domains of ``DOMAINS`` and the FlyingThings-like ``"objects"`` domain of ``OBJECT_DOMAINS``).
"""

from __future__ import annotations

from .scenes import (DOMAINS, MIN_IMAGE_SIZE, OBJECT_DOMAINS, PHOTO_NAMES, SHAPE_KINDS, TEXTURE_KINDS, DomainConfig,
                     StereoSample, generate_sample, generate_sequence, get_domain, split_seeds)

__all__ = [
    "DOMAINS",
    "DomainConfig",
    "MIN_IMAGE_SIZE",
    "OBJECT_DOMAINS",
    "PHOTO_NAMES",
    "SHAPE_KINDS",
    "StereoSample",
    "TEXTURE_KINDS",
    "generate_sample",
    "generate_sequence",
    "get_domain",
    "split_seeds",
]
