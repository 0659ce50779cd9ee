"""Synthetic stereo scenes with exact ground truth: the home of scene generation.

Modules:

* :mod:`.sample`: the :class:`StereoSample` record, the named domains (:data:`DOMAINS`,
  :func:`get_domain`, :func:`split_seeds`) and the rectified camera rig they share.
* :mod:`.textures`: periodic mip-mapped textures, procedural and from photographs.
* :mod:`.photometry`: the per-view camera model (gain, gamma, vignetting, blur, noise).
* :mod:`.planar`: procedural planar scenes, single pairs and camera-motion sequences.
* :mod:`.objects`: FlyingThings-like scenes, 10-30 floating meshes before a room, ray cast with Open3D.

:func:`generate_sample` renders one pair of any domain by seed (the domain's ``generator`` picks
the module); :func:`generate_sequence` renders camera-motion sequences of the planar domains.
"""

from __future__ import annotations

from pathlib import Path

from .objects import OBJECT_KINDS, generate_objects_sample
from .planar import generate_planar_sample, generate_sequence
from .sample import (DOMAINS, GENERATORS, MIN_IMAGE_SIZE, OBJECT_DOMAINS, SHAPE_KINDS, DomainConfig, StereoSample,
                     get_domain, split_seeds)
from .textures import EXCLUDED_PHOTO_NAMES, PHOTO_NAMES, TEXTURE_KINDS

__all__ = [
    "DOMAINS",
    "DomainConfig",
    "EXCLUDED_PHOTO_NAMES",
    "GENERATORS",
    "MIN_IMAGE_SIZE",
    "OBJECT_DOMAINS",
    "OBJECT_KINDS",
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
                    photometric: bool = True, photo_dir: str | Path | None = None) -> StereoSample:
    """Render one random rectified stereo pair of ``domain`` with exact ground truth.

    Args:
        seed: non-negative integer; the same arguments give bit-identical arrays.
        width, height: image size in pixels (each >= 32).
        domain: a name from ``DOMAINS`` (planar scenes) or ``OBJECT_DOMAINS`` ("objects").
        min_disparity, max_disparity: disparity range in pixels at this resolution; None uses the
            domain's defaults scaled by ``width / 640``. Requires ``0 < min < max < width``.
        photometric: False renders both views without gain, gamma, vignetting, blur or noise (and,
            in the objects domain, without glossy highlights or black-level offsets).
        photo_dir: objects domain only: a folder of stereo pairs whose left images are cropped for
            textures next to scikit-image's photographs (training data only; see
            :func:`~.objects.generate_objects_sample`).

    Returns:
        A ``StereoSample`` (``pose`` None) whose disparities all lie in ``[min, max]``.
    """
    cfg = get_domain(domain)
    if cfg.generator == "objects":
        return generate_objects_sample(seed, width, height, domain, min_disparity, max_disparity,
                                       photometric=photometric, photo_dir=photo_dir)
    if photo_dir is not None:
        raise ValueError(f"photo_dir: only the objects generator's domains read a photo folder, got domain {domain!r}")
    return generate_planar_sample(seed, width, height, domain, min_disparity, max_disparity, photometric=photometric)
