"""Synthetic stereo scenes with exact ground truth: the home of scene generation.

Modules:

* :mod:`.sample`: the :class:`StereoSample` record, the named domains (:data:`DOMAINS`,
  :func:`get_domain`, :func:`split_seeds`) and the rectified camera rig they share.
* :mod:`.textures`: periodic mip-mapped textures, procedural and from photographs.
* :mod:`.photometry`: the per-view camera model (gain, gamma, vignetting, blur, noise).
* :mod:`.planar`: procedural planar scenes, single pairs and camera-motion sequences.

:func:`generate_sample` renders one pair of any domain by seed.
"""

from __future__ import annotations

from .planar import generate_planar_sample, generate_sequence
from .sample import DOMAINS, MIN_IMAGE_SIZE, SHAPE_KINDS, DomainConfig, StereoSample, get_domain, split_seeds
from .textures import PHOTO_NAMES, TEXTURE_KINDS

__all__ = [
    "DOMAINS",
    "DomainConfig",
    "MIN_IMAGE_SIZE",
    "PHOTO_NAMES",
    "SHAPE_KINDS",
    "StereoSample",
    "TEXTURE_KINDS",
    "generate_sample",
    "generate_sequence",
    "get_domain",
    "split_seeds",
]


def generate_sample(seed: int, width: int = 640, height: int = 480, domain: str = "indoor",
                    min_disparity: float | None = None, max_disparity: float | None = None, *,
                    photometric: bool = True) -> StereoSample:
    """Render one random rectified stereo pair of ``domain`` with exact ground truth.

    Args:
        seed: non-negative integer; the same arguments give bit-identical arrays.
        width, height: image size in pixels (each >= 32).
        domain: a name from ``DOMAINS``.
        min_disparity, max_disparity: disparity range in pixels at this resolution; None uses the
            domain's defaults scaled by ``width / 640``. Requires ``0 < min < max < width``.
        photometric: False renders both views without gain, gamma, vignetting, blur or noise.

    Returns:
        A ``StereoSample`` (``pose`` None) whose disparities all lie in ``[min, max]``.
    """
    return generate_planar_sample(seed, width, height, domain, min_disparity, max_disparity, photometric=photometric)
