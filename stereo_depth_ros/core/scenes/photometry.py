"""The camera's photometric model for the scene generators: per-view gain and colour cast, gamma,
vignetting, slight blur and read + shot noise.

:func:`sample_photometric` draws the parameters of both views of a pair from a domain's ranges (the
right view differs more from the nominal camera than the left); :func:`apply_photometric` applies
one view's parameters to a clean ``(H, W, 3)`` float32 image in ``[0, 1]``.
"""

from __future__ import annotations

from dataclasses import dataclass
from statistics import NormalDist
from typing import TYPE_CHECKING

import cv2
import numpy as np

if TYPE_CHECKING:
    from .sample import DomainConfig

__all__ = ["PhotometricParams", "apply_photometric", "finish_pair", "gaussian_noise", "sample_photometric"]


@dataclass(frozen=True)
class PhotometricParams:
    """Per-view photometric parameters."""

    gain: np.ndarray  # (3,) per-channel gain
    gamma: float
    vignetting: float
    vignette_centre: tuple[float, float]  # relative offset of the vignetting centre
    blur_sigma: float
    noise_std: float
    shot_noise: float


def sample_photometric(rng: np.random.Generator, cfg: DomainConfig) -> tuple[PhotometricParams, PhotometricParams]:
    """Parameters of the left and the right view: a shared exposure and gamma from ``cfg``'s ranges,
    each view off by up to ``cfg.gain_mismatch`` / ``cfg.gamma_mismatch`` (the right one twice as much)."""
    exposure = rng.uniform(*cfg.gain_range)
    gamma = rng.uniform(*cfg.gamma_range)
    views = []
    for mismatch in (0.5, 1.0):  # the right view differs more from the nominal camera than the left
        gain = exposure * (1.0 + mismatch * rng.uniform(-cfg.gain_mismatch, cfg.gain_mismatch))
        cast = 1.0 + rng.uniform(-cfg.colour_cast, cfg.colour_cast, 3)
        views.append(PhotometricParams(
            gain=(gain * cast).astype(np.float32),
            gamma=float(gamma * (1.0 + mismatch * rng.uniform(-cfg.gamma_mismatch, cfg.gamma_mismatch))),
            vignetting=float(rng.uniform(*cfg.vignetting)),
            vignette_centre=(float(rng.uniform(-0.1, 0.1)), float(rng.uniform(-0.1, 0.1))),
            blur_sigma=float(rng.uniform(*cfg.blur_sigma)),
            noise_std=float(rng.uniform(*cfg.noise_std)),
            shot_noise=float(rng.uniform(*cfg.shot_noise)),
        ))
    return views[0], views[1]


_NORMAL_LUT: list[np.ndarray] = []


def gaussian_noise(rng: np.random.Generator, shape: tuple[int, ...]) -> np.ndarray:
    """Standard normal float32 noise of ``shape``: uniform 16-bit integers mapped through a table
    of the 65536 normal quantiles (truncated at about 4.3 sigma, rescaled to unit variance; about 4x
    faster than ``Generator.standard_normal`` for float32)."""
    if not _NORMAL_LUT:
        dist = NormalDist()
        table = np.array([dist.inv_cdf((i + 0.5) / 65536.0) for i in range(65536)], np.float64)
        _NORMAL_LUT.append((table / table.std()).astype(np.float32))
    return _NORMAL_LUT[0].take(rng.integers(0, 65536, size=shape, dtype=np.uint16))


def apply_photometric(image: np.ndarray, p: PhotometricParams, rng: np.random.Generator) -> np.ndarray:
    """Camera model on a clean ``(H, W, 3)`` float32 image in [0, 1] -> ``(H, W, 3)`` float32 in [0, 1]:
    gain / colour cast, vignetting, gamma, blur, then read + shot noise."""
    height, width = image.shape[:2]
    out = image * p.gain[None, None, :]
    np.minimum(out, np.float32(1.0), out=out)
    if p.vignetting > 0.0:
        u = (np.arange(width, dtype=np.float32) - (0.5 + p.vignette_centre[0]) * (width - 1)) / (0.5 * width)
        v = (np.arange(height, dtype=np.float32) - (0.5 + p.vignette_centre[1]) * (height - 1)) / (0.5 * width)
        r2 = (u[None, :] ** 2 + v[:, None] ** 2) / np.float32(1.0 + (height / width) ** 2)
        out *= (1.0 - np.float32(p.vignetting) * np.minimum(r2, np.float32(1.5)))[:, :, None]
    if abs(p.gamma - 1.0) > 1e-6:
        out = cv2.pow(out, p.gamma)
    if p.blur_sigma >= 0.2:
        out = cv2.GaussianBlur(out, (0, 0), p.blur_sigma, borderType=cv2.BORDER_REFLECT)
    noise = gaussian_noise(rng, out.shape)
    if p.shot_noise > 0.0:
        noise *= np.sqrt(np.float32(p.noise_std ** 2) + np.float32(p.shot_noise) * out)
    else:
        noise *= np.float32(p.noise_std)
    out += noise
    np.maximum(out, np.float32(0.0), out=out)
    np.minimum(out, np.float32(1.0), out=out)
    return out.astype(np.float32, copy=False)


def finish_pair(left: np.ndarray, right: np.ndarray, photometric: tuple[PhotometricParams, PhotometricParams] | None,
                rng: np.random.Generator | None) -> tuple[np.ndarray, np.ndarray]:
    """Both rendered views ``(H, W, 3)`` through their camera models (:func:`apply_photometric`, one
    ``rng`` for the noise of both, left first), or, with ``photometric`` None, clipped to ``[0, 1]``."""
    if photometric is None:
        return np.clip(left, 0.0, 1.0), np.clip(right, 0.0, 1.0)
    if rng is None:
        raise ValueError("rng: expected a numpy Generator for the sensor noise, got None")
    return apply_photometric(left, photometric[0], rng), apply_photometric(right, photometric[1], rng)
