"""Procedural rectified stereo scenes with exact ground truth.

Every image is rendered by ray casting a scene of planar surfaces through a pinhole camera pair,
so disparity, depth and occlusion are exact for every pixel and for any camera pose:

* **Cameras.** A rectified pair with focal length ``f`` (pixels), principal point ``(cx, cy)``
  (pixels, the image centre) and baseline ``B`` (metres). The left camera has the pose
  ``T_world_left``; the right camera is the left one translated by ``+B`` along the left camera's
  x axis (REP 103 optical frame: x right, y down, z forward). A point at depth ``Z`` (metres) seen
  at left pixel ``(u, v)`` has disparity ``d = f * B / Z`` (pixels) and appears at ``(u - d, v)``
  in the right image.
* **Scene.** A background wall that covers every pixel of both views for every frame, optionally a
  ground plane, and a handful of bounded planar objects (rectangles, ellipses, rings, convex
  polygons and thin bars a few pixels wide), each with a random slant, so disparity varies linearly
  across them. Per-view z-buffers give real occlusions. Surfaces are clipped to the depth range
  ``[f*B/max_disparity, f*B/min_disparity]`` (the same interval in both views, because a rectified
  pair shares the depth axis), so every disparity lies in the requested range.
* **Textures.** Each surface carries a periodic procedural texture (value noise, 1/f "natural"
  noise, stripes, checkers, smooth gradients, blobs or nearly flat), defined in the surface's own 2D
  coordinates, so a 3D point has the same colour in both views. Textures are mip-mapped and the
  level of detail is computed from the 3D point and the rig (not from the view), which prevents
  aliasing while keeping both views consistent.
* **Photometry.** Each view gets its own gain / colour cast, gamma, vignetting, slight blur and
  noise (read + shot). ``photometric=False`` turns all of that off so the views agree exactly up
  to texture sampling.

Array conventions: images are ``(H, W, 3)`` float32 RGB in ``[0, 1]``; disparities ``(H, W)``
float32 in pixels; depth ``(H, W)`` float32 in metres; masks ``(H, W)`` bool. Pixel ``(u, v)``
has its centre at column ``u``, row ``v``.

Everything is deterministic from the integer seed (``np.random.default_rng``, no global state).
Only numpy and OpenCV (texture resampling and blur) are used.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import numbers
from dataclasses import dataclass
from statistics import NormalDist
from typing import Iterator

import cv2
import numpy as np

__all__ = [
    "DOMAINS",
    "DomainConfig",
    "SHAPE_KINDS",
    "StereoSample",
    "TEXTURE_KINDS",
    "generate_sample",
    "generate_sequence",
    "get_domain",
    "split_seeds",
]

TEXTURE_KINDS: tuple[str, ...] = ("value_noise", "natural", "stripes", "checkers", "gradient", "blobs", "flat", "photo")
"""Names of the texture generators: procedural ones, and ``photo`` (crops of the natural photographs
scikit-image ships, :data:`PHOTO_NAMES`, mirrored into a periodic tile)."""

PHOTO_NAMES: tuple[str, ...] = ("astronaut", "brick", "camera", "cat", "chelsea", "coffee", "grass", "gravel",
                                "hubble_deep_field", "immunohistochemistry", "moon", "page", "rocket", "retina",
                                "coins", "horse", "text")
"""scikit-image photographs used by the ``photo`` textures (shipped inside its wheel, no download)."""

SHAPE_KINDS: tuple[str, ...] = ("rect", "ellipse", "ring", "polygon", "bar")
"""Names of the bounded object shapes ("bar" is the thin pole/bar structure)."""

MIN_IMAGE_SIZE = 32
"""Smallest accepted width and height, in pixels."""

_TEX_SIZE = 256  # texels per side of background textures (periodic, power of two)
_SMALL_TEX_SIZE = 128  # texels per side of textures of objects that span fewer than _TEX_SIZE texels
_LOD_BIAS = 0.5  # mip level bias (log2 units): > 0 trades a little sharpness for less aliasing
_FULL_TURN_SPEED = 0.05  # metres per frame from which sequences get their full yaw / pitch / roll
_SPLIT_STRIDE = 1_000_000_000
_SPLITS = ("train", "val", "test")
_TAG_SAMPLE = 0x5E11
_TAG_SEQUENCE = 0x5E9
_TAG_SEQUENCE_NOISE = 0x9015E


# --------------------------------------------------------------------------------------------------
# Domains
# --------------------------------------------------------------------------------------------------


def _check_range(name: str, value: tuple[float, float], lo: float, hi: float) -> None:
    if len(value) != 2 or not (lo <= value[0] <= value[1] <= hi):
        raise ValueError(f"DomainConfig.{name}: expected (low, high) with {lo} <= low <= high <= {hi}, got {value!r}")


def _check_weights(name: str, weights: tuple[tuple[str, float], ...], allowed: tuple[str, ...]) -> None:
    if not weights:
        raise ValueError(f"DomainConfig.{name}: expected at least one (kind, weight) pair, got an empty tuple")
    for kind, weight in weights:
        if kind not in allowed:
            raise ValueError(f"DomainConfig.{name}: expected kinds from {allowed}, got {kind!r}")
        if not weight >= 0.0:
            raise ValueError(f"DomainConfig.{name}: expected weights >= 0, got {weight!r} for {kind!r}")
    if sum(w for _, w in weights) <= 0.0:
        raise ValueError(f"DomainConfig.{name}: expected a positive total weight, got {weights!r}")


@dataclass(frozen=True)
class DomainConfig:
    """Visual and geometric statistics of one synthetic domain.

    Disparities are given in pixels for a 640-pixel-wide image and scale linearly with the width.
    Ranges are ``(low, high)`` tuples sampled uniformly unless stated otherwise.
    """

    name: str
    description: str
    texture_weights: tuple[tuple[str, float], ...]
    """Relative probability of each texture generator for objects (names from ``TEXTURE_KINDS``)."""
    background_texture_weights: tuple[tuple[str, float], ...]
    """Relative probability of each texture generator for the background wall and ground."""
    palette: tuple[tuple[float, float, float], ...]
    """Base RGB colours in [0, 1]; textures blend two (jittered) palette colours."""
    colour_jitter: float
    """Standard deviation of the per-texture RGB jitter added to palette colours."""
    contrast_range: tuple[float, float]
    """Texture contrast (fraction of the palette colour difference) for normally textured surfaces."""
    weak_texture_prob: float
    """Probability that a surface is nearly textureless (contrast from ``weak_contrast_range``)."""
    weak_contrast_range: tuple[float, float]
    pixels_per_texel: tuple[float, float]
    """Texel size in pixels at the surface's reference depth (mip-mapping handles minification)."""
    min_disparity: float
    """Default smallest disparity (pixels at 640 px width); the background sits near it."""
    max_disparity: float
    """Default largest disparity (pixels at 640 px width)."""
    focal_factor: float
    """Focal length in pixels divided by the image width."""
    baseline: float
    """Stereo baseline in metres."""
    num_objects: tuple[int, int]
    """Inclusive range of the number of bounded objects in a scene."""
    shape_weights: tuple[tuple[str, float], ...]
    """Relative probability of each object shape (names from ``SHAPE_KINDS``; "bar" = thin)."""
    object_max_slant_deg: float
    """Largest angle between an object's normal and its viewing direction, in degrees."""
    wall_max_slant_deg: float
    """Largest tilt of the background wall away from fronto-parallel, in degrees."""
    wall_disparity_fraction: float
    """The wall's smallest disparity is drawn from ``min + [0, frac] * (max - min)`` (plus a small margin)."""
    ground_prob: float
    """Probability that the scene has a ground plane in front of the wall."""
    ambient_range: tuple[float, float]
    """Ambient fraction of the lighting (the rest is Lambertian from one directional light)."""
    light_colour: tuple[float, float, float]
    gain_range: tuple[float, float]
    """Exposure gain shared by both views."""
    gain_mismatch: float
    """Largest relative gain difference between the left and the right view."""
    colour_cast: float
    """Largest relative per-channel gain deviation (white balance) per view."""
    gamma_range: tuple[float, float]
    gamma_mismatch: float
    """Largest relative gamma difference between the two views."""
    noise_std: tuple[float, float]
    """Additive Gaussian read-noise standard deviation (image units, [0, 1] scale)."""
    shot_noise: tuple[float, float]
    """Signal-dependent noise variance factor: variance = std**2 + shot * intensity."""
    blur_sigma: tuple[float, float]
    """Gaussian blur sigma in pixels, drawn per view (values below 0.2 mean no blur)."""
    vignetting: tuple[float, float]
    """Relative brightness loss in the image corners, drawn per view."""

    def __post_init__(self) -> None:
        if not self.name:
            raise ValueError("DomainConfig.name: expected a non-empty string, got ''")
        _check_weights("texture_weights", self.texture_weights, TEXTURE_KINDS)
        _check_weights("background_texture_weights", self.background_texture_weights, TEXTURE_KINDS)
        _check_weights("shape_weights", self.shape_weights, SHAPE_KINDS)
        if len(self.palette) < 2 or any(len(c) != 3 or not all(0.0 <= x <= 1.0 for x in c) for c in self.palette):
            raise ValueError(f"DomainConfig.palette: expected >= 2 RGB triples in [0, 1], got {self.palette!r}")
        if not 0.0 < self.min_disparity < self.max_disparity:
            raise ValueError("DomainConfig: expected 0 < min_disparity < max_disparity, got "
                             f"{self.min_disparity!r} and {self.max_disparity!r}")
        if not (self.focal_factor > 0.0 and self.baseline > 0.0):
            raise ValueError(f"DomainConfig: expected focal_factor > 0 and baseline > 0, got "
                             f"{self.focal_factor!r} and {self.baseline!r}")
        if not 0 <= self.num_objects[0] <= self.num_objects[1]:
            raise ValueError(f"DomainConfig.num_objects: expected 0 <= low <= high, got {self.num_objects!r}")
        for name in ("weak_texture_prob", "ground_prob", "wall_disparity_fraction"):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"DomainConfig.{name}: expected a value in [0, 1], got {value!r}")
        _check_range("contrast_range", self.contrast_range, 0.0, 1.0)
        _check_range("weak_contrast_range", self.weak_contrast_range, 0.0, 1.0)
        _check_range("pixels_per_texel", self.pixels_per_texel, 0.05, 1e3)
        _check_range("ambient_range", self.ambient_range, 0.0, 1.0)
        _check_range("gain_range", self.gain_range, 0.0, 10.0)
        _check_range("gamma_range", self.gamma_range, 0.05, 10.0)
        _check_range("noise_std", self.noise_std, 0.0, 1.0)
        _check_range("shot_noise", self.shot_noise, 0.0, 1.0)
        _check_range("blur_sigma", self.blur_sigma, 0.0, 10.0)
        _check_range("vignetting", self.vignetting, 0.0, 0.9)
        if not (0.0 <= self.object_max_slant_deg < 89.0 and 0.0 <= self.wall_max_slant_deg < 89.0):
            raise ValueError("DomainConfig: expected slant limits in [0, 89) degrees, got "
                             f"{self.object_max_slant_deg!r} and {self.wall_max_slant_deg!r}")
        if not (0.0 <= self.gain_mismatch < 1.0 and 0.0 <= self.gamma_mismatch < 1.0 and 0.0 <= self.colour_cast < 1.0):
            raise ValueError("DomainConfig: expected gain_mismatch, gamma_mismatch and colour_cast in [0, 1), got "
                             f"{self.gain_mismatch!r}, {self.gamma_mismatch!r}, {self.colour_cast!r}")

    @property
    def texture_probabilities(self) -> dict[str, float]:
        """Object texture generator probabilities (normalised ``texture_weights``)."""
        total = sum(w for _, w in self.texture_weights)
        return {k: w / total for k, w in self.texture_weights}


DOMAINS: dict[str, DomainConfig] = {
    "indoor": DomainConfig(
        name="indoor",
        description="Training-style domain: natural / value-noise textures in muted indoor colours, "
                    "moderate-to-large disparities, mild photometric differences between the views.",
        texture_weights=(("natural", 0.35), ("value_noise", 0.30), ("gradient", 0.08), ("blobs", 0.10),
                         ("stripes", 0.06), ("checkers", 0.05), ("flat", 0.06)),
        background_texture_weights=(("natural", 0.47), ("value_noise", 0.38), ("gradient", 0.08), ("flat", 0.07)),
        palette=((0.86, 0.79, 0.66), (0.56, 0.39, 0.23), (0.50, 0.50, 0.52), (0.90, 0.89, 0.86),
                 (0.32, 0.24, 0.17), (0.46, 0.51, 0.60), (0.52, 0.56, 0.46), (0.71, 0.43, 0.32),
                 (0.66, 0.62, 0.55), (0.22, 0.22, 0.25)),
        colour_jitter=0.04,
        contrast_range=(0.35, 1.0),
        weak_texture_prob=0.10,
        weak_contrast_range=(0.02, 0.08),
        pixels_per_texel=(1.0, 3.0),
        min_disparity=2.0,
        max_disparity=160.0,
        focal_factor=0.8,
        baseline=0.12,
        num_objects=(5, 14),
        shape_weights=(("rect", 0.30), ("ellipse", 0.20), ("ring", 0.08), ("polygon", 0.24), ("bar", 0.18)),
        object_max_slant_deg=60.0,
        wall_max_slant_deg=35.0,
        wall_disparity_fraction=0.15,
        ground_prob=0.5,
        ambient_range=(0.55, 0.8),
        light_colour=(1.0, 0.97, 0.9),
        gain_range=(0.85, 1.15),
        gain_mismatch=0.05,
        colour_cast=0.02,
        gamma_range=(0.9, 1.1),
        gamma_mismatch=0.04,
        noise_std=(0.003, 0.012),
        shot_noise=(0.0, 0.0005),
        blur_sigma=(0.0, 0.5),
        vignetting=(0.0, 0.15),
    ),
    "outdoor": DomainConfig(
        name="outdoor",
        description="Unseen domain: saturated stripes / checkers / blobs, far range with smaller "
                    "disparities, strong gain / gamma / colour mismatch, more noise and vignetting.",
        texture_weights=(("stripes", 0.30), ("checkers", 0.25), ("blobs", 0.25), ("gradient", 0.06),
                         ("natural", 0.06), ("value_noise", 0.04), ("flat", 0.04)),
        background_texture_weights=(("gradient", 0.2), ("blobs", 0.35), ("stripes", 0.2), ("checkers", 0.15),
                                    ("natural", 0.1)),
        palette=((0.20, 0.62, 0.15), (0.30, 0.58, 0.97), (0.97, 0.85, 0.08), (0.88, 0.13, 0.10),
                 (0.97, 0.97, 0.97), (0.05, 0.05, 0.06), (1.00, 0.52, 0.00), (0.00, 0.62, 0.60),
                 (0.80, 0.10, 0.62), (0.10, 0.18, 0.55)),
        colour_jitter=0.06,
        contrast_range=(0.5, 1.0),
        weak_texture_prob=0.15,
        weak_contrast_range=(0.01, 0.05),
        pixels_per_texel=(0.7, 2.5),
        min_disparity=1.0,
        max_disparity=112.0,
        focal_factor=0.7,
        baseline=0.25,
        num_objects=(6, 14),
        shape_weights=(("rect", 0.22), ("ellipse", 0.18), ("ring", 0.10), ("polygon", 0.20), ("bar", 0.30)),
        object_max_slant_deg=70.0,
        wall_max_slant_deg=20.0,
        wall_disparity_fraction=0.04,
        ground_prob=0.75,
        ambient_range=(0.3, 0.55),
        light_colour=(1.0, 1.0, 1.0),
        gain_range=(0.7, 1.4),
        gain_mismatch=0.25,
        colour_cast=0.08,
        gamma_range=(0.7, 1.4),
        gamma_mismatch=0.2,
        noise_std=(0.01, 0.035),
        shot_noise=(0.0005, 0.003),
        blur_sigma=(0.0, 1.0),
        vignetting=(0.1, 0.45),
    ),
}
DOMAINS["photo"] = dataclasses.replace(
    DOMAINS["indoor"],
    name="photo",
    description="The indoor geometry with half of the surfaces textured by natural photographs (scikit-image's: "
                "brick, grass, gravel, coffee, ...) and disparities up to the network's 192 px: closer to real "
                "scenes than procedural noise.",
    texture_weights=(("photo", 0.5), ("natural", 0.17), ("value_noise", 0.15), ("gradient", 0.04), ("blobs", 0.05),
                     ("stripes", 0.03), ("checkers", 0.03), ("flat", 0.03)),
    background_texture_weights=(("photo", 0.5), ("natural", 0.24), ("value_noise", 0.19), ("gradient", 0.04),
                                ("flat", 0.03)),
    max_disparity=192.0,
)
"""Registry of the synthetic domains by name."""


def get_domain(name: str) -> DomainConfig:
    """Return the registered ``DomainConfig`` called ``name`` (``ValueError`` listing the names if unknown)."""
    try:
        return DOMAINS[name]
    except (KeyError, TypeError):
        raise ValueError(f"unknown synthetic domain: expected one of {sorted(DOMAINS)}, got {name!r}") from None


def split_seeds(split: str, count: int) -> list[int]:
    """Return ``count`` seeds for ``split`` ("train", "val" or "test"); the three ranges are disjoint.

    Seeds of split ``i`` are ``i * 10**9 + k`` for ``k = 0 .. count-1``.
    """
    if split not in _SPLITS:
        raise ValueError(f"unknown split: expected one of {list(_SPLITS)}, got {split!r}")
    if isinstance(count, bool) or not isinstance(count, (int, np.integer)) or not 0 <= count <= _SPLIT_STRIDE:
        raise ValueError(f"count: expected an integer in [0, {_SPLIT_STRIDE}], got {count!r}")
    base = _SPLITS.index(split) * _SPLIT_STRIDE
    return list(range(base, base + int(count)))


# --------------------------------------------------------------------------------------------------
# Output
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class StereoSample:
    """One rectified stereo pair with exact ground truth.

    Attributes:
        left, right: ``(H, W, 3)`` float32 RGB images in ``[0, 1]``.
        disparity_left: ``(H, W)`` float32 disparity of every left pixel, pixels, > 0; the point seen
            at left ``(u, v)`` appears at right ``(u - d, v)``.
        disparity_right: ``(H, W)`` float32 disparity of every right pixel, pixels, > 0; the point
            seen at right ``(u, v)`` appears at left ``(u + d, v)``.
        depth_left: ``(H, W)`` float32 depth (z in the left optical frame) in metres,
            ``focal * baseline / disparity_left``.
        occlusion_left: ``(H, W)`` bool, True where the left pixel's 3D point is not visible in the
            right view: hidden by a nearer surface, or ``u - d < 0`` (left of the right image's
            first pixel centre).
        occlusion_right: ``(H, W)`` bool, likewise for right pixels (hidden in the left view or
            ``u + d > W - 1``).
        focal: focal length in pixels (same for x and y).
        cx, cy: principal point in pixels (shared by both rectified views).
        baseline: distance between the optical centres in metres (right = left + baseline * x_left).
        width, height: image size in pixels.
        pose: ``(4, 4)`` float64 ``T_world_left`` for sequence frames (world = the first frame's
            left camera), ``None`` for independent samples.
        domain: name of the domain the sample was drawn from.
    """

    left: np.ndarray
    right: np.ndarray
    disparity_left: np.ndarray
    disparity_right: np.ndarray
    depth_left: np.ndarray
    occlusion_left: np.ndarray
    occlusion_right: np.ndarray
    focal: float
    cx: float
    cy: float
    baseline: float
    width: int
    height: int
    pose: np.ndarray | None = None
    domain: str = ""

    def __repr__(self) -> str:
        d = self.disparity_left
        return (f"StereoSample({self.width}x{self.height}, domain={self.domain!r}, focal={self.focal:.1f}px, "
                f"baseline={self.baseline:.3f}m, disparity_left=[{float(d.min()):.2f}, {float(d.max()):.2f}]px, "
                f"pose={'None' if self.pose is None else 'set'})")

    def K(self) -> np.ndarray:
        """Return the ``(3, 3)`` float64 intrinsic matrix shared by both rectified views."""
        return np.array([[self.focal, 0.0, self.cx], [0.0, self.focal, self.cy], [0.0, 0.0, 1.0]], dtype=np.float64)

    @property
    def depth_right(self) -> np.ndarray:
        """``(H, W)`` float32 depth of every right pixel in metres (z in the right optical frame)."""
        return (self.focal * self.baseline / self.disparity_right).astype(np.float32)


# --------------------------------------------------------------------------------------------------
# Textures (periodic, mip-mapped)
# --------------------------------------------------------------------------------------------------

_GRID_CACHE: dict[int, tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]] = {}


def _texel_grids(size: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Return float32 ``(X, Y)`` texel index grids ``(size, size)`` and, for the half spectrum of
    ``np.fft.rfft2`` (``(size, size // 2 + 1)``), the radial frequency (cycles/texel) and its log
    (0 at the DC term)."""
    grids = _GRID_CACHE.get(size)
    if grids is None:
        idx = np.arange(size, dtype=np.float32)
        fr = np.hypot(np.fft.fftfreq(size)[:, None], np.fft.rfftfreq(size)[None, :]).astype(np.float32)
        log_fr = np.log(np.where(fr > 0.0, fr, np.float32(1.0))).astype(np.float32)
        grids = (np.broadcast_to(idx[None, :], (size, size)), np.broadcast_to(idx[:, None], (size, size)), fr, log_fr)
        _GRID_CACHE[size] = grids
    return grids


def _squash(g: np.ndarray, gain: float = 0.9) -> np.ndarray:
    """Map a zero-mean field to [0, 1] smoothly (float32)."""
    g = g - g.mean()
    std = float(g.std())
    if std > 1e-12:
        g = g / std
    return (0.5 + 0.5 * np.tanh(gain * g)).astype(np.float32)


def _spectral_noise(rng: np.random.Generator, size: int, exponent: float, cutoff: float = 0.3) -> np.ndarray:
    """Periodic Gaussian noise ``(size, size)`` float32 with amplitude spectrum ``f**-exponent``,
    low-passed at ``cutoff`` cycles/texel, zero mean."""
    _, _, fr, log_fr = _texel_grids(size)
    amp = np.exp(np.float32(-exponent) * log_fr - (fr * np.float32(1.0 / cutoff)) ** 2)
    amp[0, 0] = 0.0
    shape = fr.shape
    real = amp * rng.standard_normal(shape, dtype=np.float32)
    spec = real + 1j * (amp * rng.standard_normal(shape, dtype=np.float32))
    return np.fft.irfft2(spec, s=(size, size)).astype(np.float32)


def _value_noise(rng: np.random.Generator, size: int) -> np.ndarray:
    """Periodic multi-scale value noise: random lattices upsampled bicubically and summed."""
    persistence = rng.uniform(0.45, 0.75)
    first = int(rng.integers(1, 4))  # 2, 4 or 8 cells at the coarsest octave
    last = int(rng.integers(5, 8))  # up to 32 .. 128 cells
    acc = np.zeros((size, size), np.float32)
    amp = 1.0
    for octave in range(first, last + 1):
        cells = min(2 ** octave, size)
        scale = size // cells
        grid = rng.random((cells, cells), dtype=np.float32)
        padded = np.pad(grid, 2, mode="wrap")
        up = cv2.resize(padded, ((cells + 4) * scale, (cells + 4) * scale), interpolation=cv2.INTER_CUBIC)
        acc += amp * up[2 * scale:2 * scale + size, 2 * scale:2 * scale + size]
        amp *= persistence
    return _squash(acc, 1.1)


def _integer_wavevector(rng: np.random.Generator, size: int, min_period: float, max_period: float) -> tuple[int, int]:
    """An integer wave vector (cycles per texture) with period in [min_period, max_period] texels."""
    period = math.exp(rng.uniform(math.log(min_period), math.log(max_period)))
    angle = rng.uniform(0.0, math.pi)
    kx, ky = round(size / period * math.cos(angle)), round(size / period * math.sin(angle))
    if kx == 0 and ky == 0:
        kx = 1
    return kx, ky


def _square_wave(phase: np.ndarray, sharpness: float) -> np.ndarray:
    return np.tanh(np.float32(sharpness) * np.sin(phase)) / np.float32(math.tanh(sharpness))


def _texture_field(kind: str, rng: np.random.Generator, size: int) -> np.ndarray:
    """Return a periodic ``(size, size)`` float32 pattern in [0, 1] of the given kind."""
    xg, yg, _, _ = _texel_grids(size)
    omega = np.float32(2.0 * math.pi / size)  # radians per texel for one cycle per texture
    if kind == "natural":
        return _squash(_spectral_noise(rng, size, rng.uniform(0.5, 1.2)), rng.uniform(0.7, 1.3))
    if kind == "value_noise":
        return _value_noise(rng, size)
    if kind == "stripes":
        kx, ky = _integer_wavevector(rng, size, 5.0, 48.0)
        phase = omega * (kx * xg + ky * yg) + np.float32(rng.uniform(0, 2 * math.pi))
        p = 0.5 + 0.5 * _square_wave(phase, rng.uniform(0.4, 4.0))
        if rng.random() < 0.5:  # slight irregularity
            p = p + 0.08 * (_squash(_spectral_noise(rng, size, 1.2)) - 0.5)
        return np.clip(p, 0.0, 1.0).astype(np.float32)
    if kind == "checkers":
        kx, ky = _integer_wavevector(rng, size, 8.0, 64.0)
        sharp = rng.uniform(0.8, 4.0)
        p1 = omega * (kx * xg + ky * yg) + np.float32(rng.uniform(0, 2 * math.pi))
        p2 = omega * (-ky * xg + kx * yg) + np.float32(rng.uniform(0, 2 * math.pi))
        return (0.5 + 0.5 * _square_wave(p1, sharp) * _square_wave(p2, sharp)).astype(np.float32)
    if kind == "gradient":
        choices = ((1, 0), (0, 1), (1, 1), (1, -1))
        kx, ky = choices[int(rng.integers(len(choices)))]
        p = 0.5 + 0.5 * np.cos(omega * (kx * xg + ky * yg) + np.float32(rng.uniform(0, 2 * math.pi)))
        p = 0.8 * p + 0.2 * _squash(_spectral_noise(rng, size, 2.2, cutoff=0.05))
        return p.astype(np.float32)
    if kind == "blobs":
        g = _spectral_noise(rng, size, rng.uniform(1.6, 2.4), cutoff=rng.uniform(0.06, 0.2))
        g = (g - g.mean()) / max(float(g.std()), 1e-12)
        thr = np.float32(rng.uniform(-0.6, 0.6))
        p = 1.0 / (1.0 + np.exp(-np.float32(rng.uniform(3.0, 10.0)) * (g - thr)))
        return (0.85 * p + 0.15 * _squash(_spectral_noise(rng, size, 0.7))).astype(np.float32)
    if kind == "flat":
        return (0.5 + 0.15 * (_squash(_spectral_noise(rng, size, 1.0)) - 0.5)).astype(np.float32)
    raise ValueError(f"texture kind: expected one of {TEXTURE_KINDS}, got {kind!r}")


@functools.lru_cache(maxsize=1)
def _photos() -> tuple[np.ndarray, ...]:
    """The :data:`PHOTO_NAMES` photographs as float32 RGB in [0, 1] (loaded once)."""
    try:
        import skimage.data as data
    except ImportError as exc:
        raise ValueError(f"photo textures need scikit-image (pip install scikit-image): {exc}") from None
    photos = []
    for name in PHOTO_NAMES:
        loader = getattr(data, name, None)
        if loader is None:
            continue
        image = np.asarray(loader())
        if image.ndim == 2:
            image = np.repeat(image[..., None], 3, axis=2)
        image = image[..., :3]
        scale = 255.0 if image.dtype == np.uint8 else float(max(image.max(), 1))
        if image.dtype == bool:
            image, scale = image.astype(np.uint8), 1.0
        photos.append((image.astype(np.float32) / scale).clip(0.0, 1.0))
    if not photos:
        raise ValueError("photo textures: scikit-image ships none of the photographs expected")
    return tuple(photos)


def _photo_tile(rng: np.random.Generator, size: int) -> np.ndarray:
    """A periodic ``(size, size, 3)`` tile: a random crop of a photograph mirrored in x and y."""
    photos = _photos()
    photo = photos[int(rng.integers(len(photos)))]
    half = size // 2
    scale = rng.uniform(0.5, 1.5)  # texel scale variety: resample the photo first
    height, width = photo.shape[:2]
    crop = max(4, min(int(round(half / scale)), height, width))
    y, x = int(rng.integers(height - crop + 1)), int(rng.integers(width - crop + 1))
    patch = cv2.resize(np.ascontiguousarray(photo[y:y + crop, x:x + crop]), (half, half),
                       interpolation=cv2.INTER_AREA if crop > half else cv2.INTER_LINEAR)
    top = np.concatenate([patch, patch[:, ::-1]], axis=1)
    return np.ascontiguousarray(np.concatenate([top, top[::-1]], axis=0), dtype=np.float32)


def _mip_pyramid(texture: np.ndarray) -> list[np.ndarray]:
    """Mip levels of a periodic ``(T, T, 4)`` float32 texture (binomial [1 3 3 1]/8 filter, 2x decimation).

    Level ``l`` is returned as ``(n + 1, n + 1, 4)`` float32 with ``n = T / 2**l`` and one wrapped
    extra row and column, so bilinear lookups at coordinates in ``[0, n]`` never leave the array.
    (Textures carry RGB plus an unused fourth channel: OpenCV's 4-channel lookups are much faster.)
    """
    kernel = np.array([0.25, 0.5, 0.25], np.float32)
    cur = np.ascontiguousarray(texture, dtype=np.float32)
    levels = []
    while True:
        n = cur.shape[0]
        levels.append(cv2.copyMakeBorder(cur, 0, 1, 0, 1, cv2.BORDER_WRAP))
        if n == 1:
            return levels
        padded = cv2.copyMakeBorder(cur, 1, 1, 1, 1, cv2.BORDER_WRAP)
        blurred = cv2.sepFilter2D(padded, -1, kernel, kernel)[1:-1, 1:-1]
        cur = cv2.resize(blurred, (n // 2, n // 2), interpolation=cv2.INTER_AREA).reshape(n // 2, n // 2, 4)


def _remap_points(image: np.ndarray, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Bilinear lookup of a padded ``(n + 1, n + 1, 4)`` mip level at 1D float32 texel coords in
    ``[0, n]`` -> ``(N, 4)`` float32."""
    count = x.size
    cols = 1024  # OpenCV maps must be smaller than 32767 in both dimensions
    rows, rest = divmod(count, cols)
    out = np.empty((count, 4), np.float32)
    if rows:
        n = rows * cols
        out[:n] = cv2.remap(image, x[:n].reshape(rows, cols), y[:n].reshape(rows, cols), cv2.INTER_LINEAR,
                            borderMode=cv2.BORDER_CONSTANT).reshape(n, 4)
    if rest:
        out[rows * cols:] = cv2.remap(image, x[rows * cols:].reshape(1, rest), y[rows * cols:].reshape(1, rest),
                                      cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT).reshape(rest, 4)
    return out


def _wrap(x: np.ndarray, period: int) -> np.ndarray:
    """``x`` modulo ``period`` into ``[0, period]`` (float32; much faster than ``np.mod``)."""
    return x - np.floor(x * np.float32(1.0 / period)) * np.float32(period)


def _sample_level(levels: list[np.ndarray], level: int, x0: np.ndarray, y0: np.ndarray) -> np.ndarray:
    """Bilinear lookup in mip ``level`` at level-0 texel coords ``x0, y0`` (``(N,)``) -> ``(N, 4)``."""
    n = levels[level].shape[0] - 1
    scale = np.float32(0.5 ** level)
    offset = np.float32(0.5 * scale - 0.5)
    return _remap_points(levels[level], _wrap(x0 * scale + offset, n), _wrap(y0 * scale + offset, n))


def _sample_mipmap(levels: list[np.ndarray], x0: np.ndarray, y0: np.ndarray, lod: np.ndarray) -> np.ndarray:
    """Trilinear lookup: level-0 texel coords ``x0, y0`` and level of detail ``lod`` (all ``(N,)``) -> ``(N, 4)``."""
    if x0.size == 0:
        return np.empty((0, 4), np.float32)
    top = len(levels) - 1
    if float(lod.max()) <= 0.0:  # magnification everywhere: level 0 only
        return _sample_level(levels, 0, x0, y0)
    lod = np.clip(lod, np.float32(0.0), np.float32(top))
    lo = np.minimum(lod.astype(np.int32), top - 1)  # lod >= 0, so truncation is floor
    frac = (lod - lo).astype(np.float32)[:, None]
    counts = np.bincount(lo, minlength=top)
    present = np.flatnonzero(counts)
    out = np.empty((x0.size, 4), np.float32)
    out_c = out.view(np.complex128).reshape(-1)  # one element per point: fast scatter
    if present.size > 1:
        order = np.argsort(lo.astype(np.uint8), kind="stable")
        starts = np.concatenate([[0], np.cumsum(counts)])
    for level in present:
        if present.size == 1:
            xs, ys, fs = x0, y0, frac
        else:
            sel = order[starts[level]:starts[level + 1]]
            xs, ys, fs = x0[sel], y0[sel], frac[sel]
        fine = _sample_level(levels, int(level), xs, ys)
        coarse = _sample_level(levels, int(level) + 1, xs, ys)
        coarse -= fine
        coarse *= fs
        coarse += fine
        if present.size == 1:
            return coarse
        out_c[sel] = coarse.view(np.complex128).reshape(-1)
    return out


def _weighted_choice(rng: np.random.Generator, weights: tuple[tuple[str, float], ...]) -> str:
    names = [k for k, _ in weights]
    p = np.array([w for _, w in weights], np.float64)
    return names[int(rng.choice(len(names), p=p / p.sum()))]


@dataclass(frozen=True, eq=False)
class _Texture:
    kind: str
    levels: list[np.ndarray]
    texel: float  # metres per level-0 texel
    offset: tuple[float, float]  # texel offset


def _make_texture(rng: np.random.Generator, cfg: DomainConfig, weights: tuple[tuple[str, float], ...],
                  texel: float, shade: np.ndarray, size: int = _TEX_SIZE) -> _Texture:
    """A random periodic ``(size, size, 3)`` texture (plus mip levels) with texels of ``texel`` metres,
    multiplied by the surface's constant RGB ``shade`` (lighting and albedo)."""
    kind = _weighted_choice(rng, weights)
    weak = rng.random() < cfg.weak_texture_prob or kind == "flat"
    contrast = rng.uniform(*(cfg.weak_contrast_range if weak else cfg.contrast_range))
    if kind == "photo":  # the photograph's own colours, contrast-scaled about its mean, lit like the rest
        tile = _photo_tile(rng, size)
        mean = tile.mean(axis=(0, 1), keepdims=True)
        tile = np.clip(mean + contrast * (tile - mean) + rng.normal(0.0, cfg.colour_jitter, 3), 0.02, 0.98)
        rgba = np.zeros((size, size, 4), np.float32)
        rgba[:, :, :3] = tile * shade.astype(np.float32)
        return _Texture(kind, _mip_pyramid(rgba), float(texel),
                        (float(rng.uniform(0, size)), float(rng.uniform(0, size))))
    pattern = _texture_field(kind, rng, size)
    palette = np.asarray(cfg.palette, np.float32)
    i, j = rng.choice(len(palette), size=2, replace=False)
    c0 = np.clip(palette[i] + rng.normal(0.0, cfg.colour_jitter, 3), 0.02, 0.98).astype(np.float32)
    if rng.random() < 0.75:
        c1 = palette[j] + rng.normal(0.0, cfg.colour_jitter, 3)
    else:  # same hue, other brightness
        c1 = c0 * rng.uniform(0.3, 0.7) if c0.mean() > 0.5 else c0 + (1.0 - c0) * rng.uniform(0.3, 0.7)
    c1 = np.clip(c0 + contrast * (c1 - c0), 0.02, 0.98).astype(np.float32)
    c0 = c0 * shade.astype(np.float32)
    c1 = c1 * shade.astype(np.float32)
    rgba = np.zeros((size, size, 4), np.float32)
    for ch in range(3):
        np.multiply(pattern, c1[ch] - c0[ch], out=rgba[:, :, ch])
        rgba[:, :, ch] += c0[ch]
    return _Texture(kind, _mip_pyramid(rgba), float(texel),
                    (float(rng.uniform(0, size)), float(rng.uniform(0, size))))


# --------------------------------------------------------------------------------------------------
# Scene geometry
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Camera:
    width: int
    height: int
    focal: float
    cx: float
    cy: float
    baseline: float
    min_disparity: float
    max_disparity: float

    @property
    def fb(self) -> float:
        return self.focal * self.baseline

    @property
    def z_near(self) -> float:
        return self.fb / self.max_disparity

    @property
    def z_far(self) -> float:
        return self.fb / self.min_disparity


@dataclass(frozen=True, eq=False)
class _Surface:
    """A planar surface: points ``center + s * e_s + t * e_t`` (metres) with ``(s, t)`` inside the shape."""

    shape: str  # "wall", "ground" (unbounded) or one of SHAPE_KINDS
    center: np.ndarray  # (3,) world, metres
    e_s: np.ndarray  # (3,) unit, in-plane
    e_t: np.ndarray  # (3,) unit, in-plane
    normal: np.ndarray  # (3,) unit
    half: tuple[float, float]  # bounding half extents along e_s, e_t (metres); unused when unbounded
    inner: float  # ring: inner radius ratio
    edges: np.ndarray | None  # polygon: (K, 3) half-planes a*s + b*t <= c
    texture: _Texture  # already lit: texture colour * constant shading of this surface

    @property
    def bounded(self) -> bool:
        return self.shape not in ("wall", "ground")

    def inside(self, s: np.ndarray, t: np.ndarray) -> np.ndarray:
        """Bool mask of in-plane coordinates ``(s, t)`` (metres, any shape) inside the surface."""
        a, b = self.half
        if self.shape in ("rect", "bar"):
            return (np.abs(s) <= a) & (np.abs(t) <= b)
        if self.shape in ("ellipse", "ring"):
            r2 = (s * np.float32(1.0 / a)) ** 2 + (t * np.float32(1.0 / b)) ** 2
            if self.shape == "ring":
                return (r2 <= 1.0) & (r2 >= self.inner ** 2)
            return r2 <= 1.0
        if self.shape == "polygon":
            assert self.edges is not None
            mask = np.ones(s.shape, bool)
            for ea, eb, ec in self.edges:
                mask &= s * np.float32(ea) + t * np.float32(eb) <= np.float32(ec)
            return mask
        return np.ones(s.shape, bool)


@dataclass(frozen=True)
class _Scene:
    surfaces: tuple[_Surface, ...]


@dataclass(frozen=True)
class _CamPlane:
    """A surface expressed for one camera: for the ray ``r = (x, y, 1)`` (camera frame),
    ``Z = num / (n . r)``, ``s = s0 + Z * (a_s . r)``, ``t = t0 + Z * (a_t . r)``."""

    num: float
    n: tuple[float, float, float]
    s0: float
    a_s: tuple[float, float, float]
    t0: float
    a_t: tuple[float, float, float]


def _cam_plane(surf: _Surface, rot: np.ndarray, origin: np.ndarray) -> _CamPlane:
    rel = origin - surf.center
    return _CamPlane(float(surf.normal @ (surf.center - origin)), tuple(float(v) for v in rot.T @ surf.normal),
                     float(surf.e_s @ rel), tuple(float(v) for v in rot.T @ surf.e_s),
                     float(surf.e_t @ rel), tuple(float(v) for v in rot.T @ surf.e_t))


def _affine(coef: tuple[float, float, float], x: np.ndarray, y: np.ndarray) -> np.ndarray:
    return coef[0] * x + coef[1] * y + coef[2]


def _hit(cp: _CamPlane, surf: _Surface, x: np.ndarray, y: np.ndarray, cam: _Camera) -> tuple[np.ndarray, np.ndarray]:
    """Ray-plane intersection for rays ``(x, y, 1)`` (broadcastable float32) -> depth (metres), hit mask."""
    den = _affine(cp.n, x, y)
    with np.errstate(divide="ignore", invalid="ignore"):
        z = cp.num / den
    ok = (z > cam.z_near * (1.0 + 1e-6)) & (z < cam.z_far * (1.0 - 1e-6))  # margins absorb float32 rounding
    if surf.bounded:
        s = cp.s0 + z * _affine(cp.a_s, x, y)
        t = cp.t0 + z * _affine(cp.a_t, x, y)
        ok &= surf.inside(s, t)
    return z, ok


def _bbox(surf: _Surface, rot: np.ndarray, origin: np.ndarray, cam: _Camera) -> tuple[int, int, int, int] | None:
    """Pixel box ``(r0, r1, c0, c1)`` (half-open) that contains the surface's projection, or None."""
    if not surf.bounded:
        return 0, cam.height, 0, cam.width
    a, b = surf.half
    corners = np.array([surf.center + sa * a * surf.e_s + sb * b * surf.e_t
                        for sa in (-1, 1) for sb in (-1, 1)])
    q = (corners - origin) @ rot  # camera coordinates, (4, 3)
    if np.any(q[:, 2] <= 1e-6):
        return 0, cam.height, 0, cam.width
    if np.all(q[:, 2] < cam.z_near) or np.all(q[:, 2] > cam.z_far):
        return None  # entirely clipped (the surface's depths lie between its corners' depths)
    u = cam.focal * q[:, 0] / q[:, 2] + cam.cx
    v = cam.focal * q[:, 1] / q[:, 2] + cam.cy
    c0, c1 = max(int(math.floor(u.min())) - 1, 0), min(int(math.ceil(u.max())) + 2, cam.width)
    r0, r1 = max(int(math.floor(v.min())) - 1, 0), min(int(math.ceil(v.max())) + 2, cam.height)
    if c0 >= c1 or r0 >= r1:
        return None
    return r0, r1, c0, c1


def _rot_xyz(yaw: float, pitch: float, roll: float) -> np.ndarray:
    """Rotation ``Ry(yaw) @ Rx(pitch) @ Rz(roll)`` (radians) in the optical frame (y down)."""
    cy_, sy_ = math.cos(yaw), math.sin(yaw)
    cp_, sp_ = math.cos(pitch), math.sin(pitch)
    cr_, sr_ = math.cos(roll), math.sin(roll)
    ry = np.array([[cy_, 0, sy_], [0, 1, 0], [-sy_, 0, cy_]])
    rx = np.array([[1, 0, 0], [0, cp_, -sp_], [0, sp_, cp_]])
    rz = np.array([[cr_, -sr_, 0], [sr_, cr_, 0], [0, 0, 1]])
    return ry @ rx @ rz


def _unit(v: np.ndarray) -> np.ndarray:
    return v / np.linalg.norm(v)


def _tilt(normal: np.ndarray, angle: float, rng: np.random.Generator) -> np.ndarray:
    """Rotate ``normal`` by ``angle`` radians about a random axis perpendicular to it."""
    helper = np.array([1.0, 0.0, 0.0]) if abs(normal[0]) < 0.9 else np.array([0.0, 1.0, 0.0])
    p = _unit(np.cross(normal, helper))
    q = np.cross(normal, p)
    phi = rng.uniform(0.0, 2.0 * math.pi)
    axis = math.cos(phi) * p + math.sin(phi) * q
    return _unit(math.cos(angle) * normal + math.sin(angle) * np.cross(axis, normal))


def _in_plane_axes(normal: np.ndarray, direction: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Orthonormal ``(e_s, e_t)`` spanning the plane, ``e_s`` as close as possible to ``direction``."""
    d = direction - (direction @ normal) * normal
    if np.linalg.norm(d) < 1e-6:
        d = np.cross(normal, np.array([0.0, 0.0, 1.0]) if abs(normal[2]) < 0.9 else np.array([1.0, 0.0, 0.0]))
    e_s = _unit(d)
    return e_s, np.cross(normal, e_s)


@dataclass(frozen=True)
class _Rig:
    """Camera poses of all frames (left camera rotations and centres, world frame)."""

    rotations: tuple[np.ndarray, ...]
    origins: tuple[np.ndarray, ...]


def _corner_rays(cam: _Camera) -> np.ndarray:
    """The four image-corner rays ``(x, y, 1)`` at the outer pixel edges, ``(4, 3)``."""
    xs = [(-0.5 - cam.cx) / cam.focal, (cam.width - 0.5 - cam.cx) / cam.focal]
    ys = [(-0.5 - cam.cy) / cam.focal, (cam.height - 0.5 - cam.cy) / cam.focal]
    return np.array([[x, y, 1.0] for x in xs for y in ys])


def _plane_terms(normal: np.ndarray, rig: _Rig, cam: _Camera) -> tuple[np.ndarray, np.ndarray]:
    """For the plane ``normal . X = c``: ``g = n_cam . ray`` at every corner of both views of every frame and
    ``h = normal . camera_centre`` (disparity there is ``f B g / (c - h)``), both ``(frames * 2 * 4,)``."""
    rays = _corner_rays(cam)
    gs, hs = [], []
    for rot, origin in zip(rig.rotations, rig.origins):
        g = rays @ (rot.T @ normal)
        for centre in (origin, origin + cam.baseline * rot[:, 0]):
            gs.append(g)
            hs.append(np.full(4, normal @ centre))
    return np.concatenate(gs), np.concatenate(hs)


def _solve_offset(g: np.ndarray, h: np.ndarray, fb: float, target: float, use_max: bool) -> float:
    """Offset ``c`` such that ``min`` (or ``max``) over ``g > 0`` of ``fb * g / (c - h)`` equals ``target``."""
    pos = g > 0
    g, h = g[pos], h[pos]
    lo = float(h.max()) + 1e-9
    hi = lo + 1.0

    def value(c: float) -> float:
        d = fb * g / (c - h)
        return float(d.max() if use_max else d.min())

    while value(hi) > target:
        hi = lo + 2.0 * (hi - lo)
    for _ in range(80):
        mid = 0.5 * (lo + hi)
        if value(mid) > target:
            lo = mid
        else:
            hi = mid
    return hi


def _plane_surface(shape: str, normal: np.ndarray, offset: float, direction: np.ndarray,
                   texture: _Texture) -> _Surface:
    e_s, e_t = _in_plane_axes(normal, direction)
    return _Surface(shape, normal * offset, e_s, e_t, normal, (math.inf, math.inf), 0.0, None, texture)


def _shade(rng: np.random.Generator, cfg: DomainConfig, normal: np.ndarray, light: np.ndarray) -> np.ndarray:
    ambient = rng.uniform(*cfg.ambient_range)
    lambert = abs(float(normal @ light))
    albedo = rng.uniform(0.75, 1.0)
    return (albedo * (ambient + (1.0 - ambient) * lambert) * np.asarray(cfg.light_colour)).astype(np.float32)


def _texel_size(rng: np.random.Generator, cfg: DomainConfig, depth: float, cam: _Camera) -> float:
    return float(rng.uniform(*cfg.pixels_per_texel) * depth / cam.focal)


def _fit_wall(rng: np.random.Generator, cfg: DomainConfig, cam: _Camera, rig: _Rig,
              target: float) -> tuple[np.ndarray, float] | None:
    """A wall ``normal . X = c`` (normal roughly along +z) whose disparity is in range for all frames."""
    cap = cam.max_disparity - 0.01 * (cam.max_disparity - cam.min_disparity)
    slant = math.radians(rng.uniform(0.0, cfg.wall_max_slant_deg))
    base = np.array([0.0, 0.0, 1.0])
    tilted = _tilt(base, max(slant, 1e-3), rng)
    direction = _unit(tilted - (tilted @ base) * base)
    for _ in range(8):
        normal = _unit(math.cos(slant) * base + math.sin(slant) * direction)
        g, h = _plane_terms(normal, rig, cam)
        if np.all(g > 1e-3):
            c = _solve_offset(g, h, cam.fb, target, use_max=False)
            if float((cam.fb * g / (c - h)).max()) <= cap:
                return normal, c
        slant = 0.0 if slant < 0.05 else 0.5 * slant
    return None


def _build_scene(rng: np.random.Generator, cfg: DomainConfig, cam: _Camera, rig: _Rig, wall_target: float,
                 forward: float, lateral_margin: float) -> _Scene | None:
    """Random scene in front of every camera of ``rig``; None if the wall cannot be fitted (caller shrinks motion).

    ``forward``: how far (metres) the cameras travel along +z; objects start at least that much
    beyond the near limit. ``lateral_margin``: extra image fraction on each side where objects may be placed.
    """
    wall = _fit_wall(rng, cfg, cam, rig, wall_target)
    if wall is None:
        return None
    light = _unit(np.array([rng.uniform(-0.6, 0.6), rng.uniform(-1.0, -0.3), rng.uniform(-1.0, -0.2)]))
    wall_normal, wall_c = wall
    centre_depth = wall_c / float(wall_normal[2])
    surfaces: list[_Surface] = [
        _plane_surface("wall", wall_normal, wall_c, np.array([1.0, 0.0, 0.0]),
                       _make_texture(rng, cfg, cfg.background_texture_weights,
                                     _texel_size(rng, cfg, centre_depth, cam), _shade(rng, cfg, wall_normal, light)))]

    ground: tuple[np.ndarray, float] | None = None
    if rng.random() < cfg.ground_prob:
        ground_normal = _unit(_rot_xyz(0.0, math.radians(rng.uniform(-6, 6)), math.radians(rng.uniform(-4, 4)))
                              @ np.array([0.0, 1.0, 0.0]))
        g, h = _plane_terms(ground_normal, rig, cam)
        if np.any(g > 1e-3):
            target = cam.min_disparity + rng.uniform(0.35, 0.9) * (cam.max_disparity - cam.min_disparity)
            c = _solve_offset(g, h, cam.fb, target, use_max=True)
            ground = (ground_normal, c)
            ref_depth = min(cam.fb / target * 2.0, centre_depth)
            surfaces.append(_plane_surface(
                "ground", ground_normal, c, np.array([1.0, 0.0, 0.0]),
                _make_texture(rng, cfg, cfg.background_texture_weights, _texel_size(rng, cfg, ref_depth, cam),
                              _shade(rng, cfg, ground_normal, light))))

    n_objects = int(rng.integers(cfg.num_objects[0], cfg.num_objects[1] + 1))
    span = cam.max_disparity - cam.min_disparity
    d_top = cam.fb / (cam.z_near + forward) - 0.03 * span
    short = min(cam.width, cam.height)
    for _ in range(n_objects):
        shape = _weighted_choice(rng, cfg.shape_weights)
        for _attempt in range(4):  # centre in front of the wall and the ground (seen from frame 0)
            u = rng.uniform(-0.1 - lateral_margin, 1.1 + lateral_margin) * cam.width
            v = rng.uniform(-0.1, 1.1) * cam.height
            ray = np.array([(u - cam.cx) / cam.focal, (v - cam.cy) / cam.focal, 1.0])
            d_back = cam.fb * float(wall_normal @ ray) / wall_c
            if ground is not None and float(ground[0] @ ray) > 0.0:
                d_back = max(d_back, cam.fb * float(ground[0] @ ray) / ground[1])
            d_low = min(1.08 * d_back, d_back + 0.25 * (d_top - d_back))
            if d_low < d_top:
                break
        else:
            continue
        if rng.random() < 0.5:
            disparity = rng.uniform(d_low, d_top)
        else:
            disparity = math.exp(rng.uniform(math.log(d_low), math.log(d_top)))
        depth = cam.fb / disparity
        centre = depth * ray
        to_cam = -_unit(centre)
        if shape == "bar":
            normal = _tilt(to_cam, math.radians(rng.uniform(0.0, min(cfg.object_max_slant_deg, 45.0))), rng)
            pick = rng.random()
            angle = (math.pi / 2 + rng.normal(0, 0.05)) if pick < 0.5 else (
                rng.normal(0, 0.05) if pick < 0.8 else rng.uniform(0, math.pi))
            width_px = rng.uniform(2.0, 7.0)
            length_px = rng.uniform(0.3, 1.2) * cam.height
            half = (0.5 * length_px * depth / cam.focal, 0.5 * width_px * depth / cam.focal)
        else:
            normal = _tilt(to_cam, math.radians(rng.uniform(0.0, cfg.object_max_slant_deg)), rng)
            angle = rng.uniform(0.0, math.pi)
            size_px = math.exp(rng.uniform(math.log(0.08), math.log(0.5))) * short
            aspect = math.exp(rng.uniform(math.log(0.4), math.log(2.5)))
            half_s = 0.5 * size_px * depth / cam.focal
            half = (half_s, half_s * aspect)
        e_s, e_t = _in_plane_axes(normal, np.array([math.cos(angle), math.sin(angle), 0.0]))
        edges = None
        inner = 0.0
        if shape == "ring":
            inner = rng.uniform(0.35, 0.75)
        elif shape == "polygon":
            k = int(rng.integers(3, 8))
            angles = np.sort(rng.uniform(0.0, 2 * math.pi, k))
            while np.diff(np.concatenate([angles, angles[:1] + 2 * math.pi])).max() > math.pi * 0.95:
                angles = np.sort(rng.uniform(0.0, 2 * math.pi, k))  # keep the centre inside
            pts = np.stack([half[0] * np.cos(angles), half[1] * np.sin(angles)], axis=1)
            nxt = np.roll(pts, -1, axis=0)
            edge_normals = np.stack([nxt[:, 1] - pts[:, 1], pts[:, 0] - nxt[:, 0]], axis=1)  # outward (CCW)
            edges = np.concatenate([edge_normals, (edge_normals * pts).sum(1, keepdims=True)], axis=1)
        slant_cos = max(abs(float(normal @ to_cam)), 0.2)
        texel = _texel_size(rng, cfg, depth / slant_cos, cam)
        size = _TEX_SIZE if 2.0 * max(half) / texel > _SMALL_TEX_SIZE else _SMALL_TEX_SIZE
        texture = _make_texture(rng, cfg, cfg.texture_weights, texel, _shade(rng, cfg, normal, light), size)
        surfaces.append(_Surface(shape, centre, e_s, e_t, normal, half, inner, edges, texture))
    return _Scene(tuple(surfaces))


# --------------------------------------------------------------------------------------------------
# Rendering
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _View:
    rot: np.ndarray
    origin: np.ndarray
    planes: tuple[_CamPlane, ...]
    boxes: tuple[tuple[int, int, int, int] | None, ...]


def _make_view(scene: _Scene, rot: np.ndarray, origin: np.ndarray, cam: _Camera) -> _View:
    return _View(rot, origin, tuple(_cam_plane(s, rot, origin) for s in scene.surfaces),
                 tuple(_bbox(s, rot, origin, cam) for s in scene.surfaces))


def _pixel_rays(cam: _Camera) -> tuple[np.ndarray, np.ndarray]:
    xs = ((np.arange(cam.width, dtype=np.float64) - cam.cx) / cam.focal).astype(np.float32)
    ys = ((np.arange(cam.height, dtype=np.float64) - cam.cy) / cam.focal).astype(np.float32)
    return xs, ys


def _zbuffer(scene: _Scene, view: _View, cam: _Camera) -> tuple[np.ndarray, np.ndarray]:
    """Depth ``(H, W)`` float32 metres (inf where nothing) and surface index ``(H, W)`` int16 (-1)."""
    xs, ys = _pixel_rays(cam)
    zbuf = np.full((cam.height, cam.width), np.inf, np.float32)
    index = np.full((cam.height, cam.width), -1, np.int16)
    for k, (surf, cp, box) in enumerate(zip(scene.surfaces, view.planes, view.boxes)):
        if box is None:
            continue
        r0, r1, c0, c1 = box
        z, ok = _hit(cp, surf, xs[None, c0:c1], ys[r0:r1, None], cam)
        zb = zbuf[r0:r1, c0:c1]
        ok &= z < zb
        np.copyto(zb, z, where=ok)
        index[r0:r1, c0:c1][ok] = k
    return zbuf, index


def _texture_view(scene: _Scene, view: _View, cam: _Camera, zbuf: np.ndarray, index: np.ndarray,
                  side: float) -> np.ndarray:
    """Clean ``(H, W, 3)`` float32 image of one view from its z-buffer.

    ``side`` is -1 for the left and +1 for the right camera: the level of detail is computed from
    the 3D point and the ray from the rig's midpoint, so it is identical in both views.
    """
    height, width = zbuf.shape
    flat_index = index.ravel()
    order = np.argsort(flat_index, kind="stable")
    counts = np.bincount(flat_index.astype(np.int64) + 1, minlength=len(scene.surfaces) + 1)
    starts = np.concatenate([[0], np.cumsum(counts)])
    image = np.zeros((height * width, 4), np.float32)
    image_c = image.view(np.complex128).reshape(-1)  # one 16-byte element per pixel: fast scatter
    zflat = zbuf.ravel()
    half_b = np.float32(0.5 * cam.baseline)
    xs, ys = _pixel_rays(cam)
    x_flat = np.tile(xs, height)
    y_flat = np.repeat(ys, width)
    for k, surf in enumerate(scene.surfaces):
        pix = order[starts[k + 1]:starts[k + 2]]
        if pix.size == 0:
            continue
        cp = view.planes[k]
        z = zflat[pix]
        x = x_flat[pix]
        y = y_flat[pix]
        tex = surf.texture
        inv = np.float32(1.0 / tex.texel)
        s = (cp.s0 * inv + np.float32(tex.offset[0])) + z * _affine(tuple(c * inv for c in cp.a_s), x, y)
        t = (cp.t0 * inv + np.float32(tex.offset[1])) + z * _affine(tuple(c * inv for c in cp.a_t), x, y)
        if _max_footprint(cp, cam, view.boxes[k], float(z.min()), float(z.max()), tex.texel) * 2.0 ** _LOD_BIAS <= 1.0:
            rgba = _sample_level(tex.levels, 0, s, t)  # magnified everywhere: the exact LOD would be 0
        else:
            # Footprint of one pixel on the plane (major axis, texels), from the rig midpoint's ray.
            xc = x + np.float32(side) * half_b / z  # left: x - B/(2Z), right: x + B/(2Z)
            r2 = xc * xc + y * y + np.float32(1.0)
            cos_term = np.maximum(np.abs(_affine(cp.n, xc, y)), np.float32(0.05) * np.sqrt(r2))
            footprint = z * r2 / (np.float32(cam.focal * tex.texel) * cos_term)
            lod = np.log2(np.maximum(footprint, np.float32(1e-6))) + np.float32(_LOD_BIAS)
            rgba = _sample_mipmap(tex.levels, s, t, lod)
        image_c[pix] = rgba.view(np.complex128).reshape(-1)
    return cv2.cvtColor(image.reshape(height, width, 4), cv2.COLOR_RGBA2RGB)


def _max_footprint(cp: _CamPlane, cam: _Camera, box: tuple[int, int, int, int] | None, z_min: float, z_max: float,
                   texel: float) -> float:
    """Upper bound of the per-pixel footprint (texels) computed in ``_texture_view`` for depths in
    ``[z_min, z_max]`` within the pixel ``box`` (rows r0:r1, columns c0:c1; the rig-midpoint ray
    may shift by ``B / (2 z_min)``)."""
    r0, r1, c0, c1 = box if box is not None else (0, cam.height, 0, cam.width)
    shift = 0.5 * cam.baseline / z_min
    xr = ((c0 - 0.5 - cam.cx) / cam.focal - shift, (c1 - 0.5 - cam.cx) / cam.focal + shift)
    yr = ((r0 - 0.5 - cam.cy) / cam.focal, (r1 - 0.5 - cam.cy) / cam.focal)
    dots = [cp.n[0] * x + cp.n[1] * y + cp.n[2] for x in xr for y in yr]  # n . r is affine: extremes at corners
    min_dot = 0.0 if min(dots) <= 0.0 <= max(dots) else min(abs(d) for d in dots)
    r2_max = max(x * x for x in xr) + max(y * y for y in yr) + 1.0  # a slight overestimate is harmless
    return z_max * r2_max / (cam.focal * texel * max(min_dot, 0.05))


def _occlusion(scene: _Scene, src: _View, dst: _View, cam: _Camera, depth: np.ndarray, disparity: np.ndarray,
               index: np.ndarray, direction: int) -> np.ndarray:
    """True where the point seen by a ``src`` pixel is hidden in ``dst`` or falls outside it.

    ``direction`` = -1 maps left to right (``u - d``), +1 maps right to left (``u + d``). Only
    bounded surfaces can occlude: both cameras lie on the same side of an unbounded plane.
    """
    height, width = depth.shape
    cols = np.arange(width, dtype=np.float32)
    target_u = cols[None, :] + np.float32(direction) * disparity
    occluded = (target_u < 0.0) | (target_u > width - 1)
    _, ys = _pixel_rays(cam)
    d_min, d_max = float(disparity.min()), float(disparity.max())
    for j, surf in enumerate(scene.surfaces):
        box = dst.boxes[j]
        if not surf.bounded or box is None:
            continue
        r0, r1, c0, c1 = box
        if direction < 0:  # u - d in [c0, c1)
            a0, a1 = int(math.floor(c0 + d_min)), int(math.ceil(c1 + d_max)) + 1
        else:  # u + d in [c0, c1)
            a0, a1 = int(math.floor(c0 - d_max)), int(math.ceil(c1 - d_min)) + 1
        a0, a1 = max(a0, 0), min(a1, width)
        if a0 >= a1:
            continue
        tu = target_u[r0:r1, a0:a1]
        x = (tu - np.float32(cam.cx)) / np.float32(cam.focal)
        z, ok = _hit(dst.planes[j], surf, x, ys[r0:r1, None], cam)
        ok &= z < depth[r0:r1, a0:a1] * np.float32(1.0 - 1e-5)
        ok &= index[r0:r1, a0:a1] != j
        occluded[r0:r1, a0:a1] |= ok
    return occluded


@dataclass(frozen=True)
class _Photometric:
    """Per-view photometric parameters."""

    gain: np.ndarray  # (3,) per-channel gain
    gamma: float
    vignetting: float
    vignette_centre: tuple[float, float]  # relative offset of the vignetting centre
    blur_sigma: float
    noise_std: float
    shot_noise: float


def _sample_photometric(rng: np.random.Generator, cfg: DomainConfig) -> tuple[_Photometric, _Photometric]:
    exposure = rng.uniform(*cfg.gain_range)
    gamma = rng.uniform(*cfg.gamma_range)
    views = []
    for mismatch in (0.5, 1.0):  # the right view differs more from the nominal camera than the left
        gain = exposure * (1.0 + mismatch * rng.uniform(-cfg.gain_mismatch, cfg.gain_mismatch))
        cast = 1.0 + rng.uniform(-cfg.colour_cast, cfg.colour_cast, 3)
        views.append(_Photometric(
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


def _gaussian_noise(rng: np.random.Generator, shape: tuple[int, ...]) -> np.ndarray:
    """Standard normal float32 noise of ``shape``: uniform 16-bit integers mapped through a table
    of the 65536 normal quantiles (truncated at about 4.3 sigma, rescaled to unit variance; about 4x
    faster than ``Generator.standard_normal`` for float32)."""
    if not _NORMAL_LUT:
        dist = NormalDist()
        table = np.array([dist.inv_cdf((i + 0.5) / 65536.0) for i in range(65536)], np.float64)
        _NORMAL_LUT.append((table / table.std()).astype(np.float32))
    return _NORMAL_LUT[0].take(rng.integers(0, 65536, size=shape, dtype=np.uint16))


def _apply_photometric(image: np.ndarray, p: _Photometric, rng: np.random.Generator) -> np.ndarray:
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
    noise = _gaussian_noise(rng, out.shape)
    if p.shot_noise > 0.0:
        noise *= np.sqrt(np.float32(p.noise_std ** 2) + np.float32(p.shot_noise) * out)
    else:
        noise *= np.float32(p.noise_std)
    out += noise
    np.maximum(out, np.float32(0.0), out=out)
    np.minimum(out, np.float32(1.0), out=out)
    return out.astype(np.float32, copy=False)


def _render(scene: _Scene, cam: _Camera, rot: np.ndarray, origin: np.ndarray,
            photometric: tuple[_Photometric, _Photometric] | None, noise_rng: np.random.Generator,
            pose: np.ndarray | None, domain: str) -> StereoSample:
    left = _make_view(scene, rot, origin, cam)
    right = _make_view(scene, rot, origin + cam.baseline * rot[:, 0], cam)
    z_left, idx_left = _zbuffer(scene, left, cam)
    z_right, idx_right = _zbuffer(scene, right, cam)
    if not (np.all(np.isfinite(z_left)) and np.all(np.isfinite(z_right))):
        raise RuntimeError("internal error: the background does not cover every pixel")
    disp_left = (cam.fb / z_left).astype(np.float32)
    disp_right = (cam.fb / z_right).astype(np.float32)
    depth_left = (cam.fb / disp_left).astype(np.float32)
    img_left = _texture_view(scene, left, cam, z_left, idx_left, -1.0)
    img_right = _texture_view(scene, right, cam, z_right, idx_right, +1.0)
    occ_left = _occlusion(scene, left, right, cam, z_left, disp_left, idx_left, -1)
    occ_right = _occlusion(scene, right, left, cam, z_right, disp_right, idx_right, +1)
    if photometric is not None:
        img_left = _apply_photometric(img_left, photometric[0], noise_rng)
        img_right = _apply_photometric(img_right, photometric[1], noise_rng)
    else:
        img_left = np.clip(img_left, 0.0, 1.0)
        img_right = np.clip(img_right, 0.0, 1.0)
    return StereoSample(
        left=img_left, right=img_right, disparity_left=disp_left, disparity_right=disp_right,
        depth_left=depth_left, occlusion_left=occ_left, occlusion_right=occ_right,
        focal=cam.focal, cx=cam.cx, cy=cam.cy, baseline=cam.baseline, width=cam.width, height=cam.height,
        pose=pose, domain=domain)


# --------------------------------------------------------------------------------------------------
# Public generators
# --------------------------------------------------------------------------------------------------


def _check_seed(seed: int) -> int:
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"seed: expected a non-negative integer, got {seed!r}")
    return int(seed)


def _make_camera(cfg: DomainConfig, width: int, height: int, min_disparity: float | None,
                 max_disparity: float | None) -> _Camera:
    for name, value in (("width", width), ("height", height)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < MIN_IMAGE_SIZE:
            raise ValueError(f"{name}: expected an integer >= {MIN_IMAGE_SIZE}, got {value!r}")
    width, height = int(width), int(height)
    scale = width / 640.0
    lo = cfg.min_disparity * scale if min_disparity is None else float(min_disparity)
    hi = cfg.max_disparity * scale if max_disparity is None else float(max_disparity)
    if not (math.isfinite(lo) and math.isfinite(hi) and 0.0 < lo < hi < width):
        raise ValueError(f"disparity range: expected 0 < min_disparity < max_disparity < width ({width}), "
                         f"got min_disparity={lo!r}, max_disparity={hi!r}")
    focal = cfg.focal_factor * width
    return _Camera(width, height, focal, (width - 1) / 2.0, (height - 1) / 2.0, cfg.baseline, lo, hi)


def _wall_target(rng: np.random.Generator, cfg: DomainConfig, cam: _Camera) -> float:
    """Smallest disparity of the background wall (pixels), a little above ``min_disparity``."""
    span = cam.max_disparity - cam.min_disparity
    margin = min(0.01 * cam.min_disparity, 0.005 * span)
    return cam.min_disparity + margin + min(rng.uniform(0.0, cfg.wall_disparity_fraction), 0.9) * span


def generate_sample(seed: int, width: int = 640, height: int = 480, domain: str = "indoor",
                    min_disparity: float | None = None, max_disparity: float | None = None, *,
                    photometric: bool = True) -> StereoSample:
    """Render one random rectified stereo pair with exact ground truth.

    Args:
        seed: non-negative integer; the same arguments give bit-identical arrays.
        width, height: image size in pixels (each >= 32).
        domain: a name from ``DOMAINS`` ("indoor", "outdoor").
        min_disparity, max_disparity: disparity range in pixels at this resolution; None uses the
            domain's defaults scaled by ``width / 640``. Requires ``0 < min < max < width``.
        photometric: False renders both views without gain, gamma, vignetting, blur or noise.

    Returns:
        A ``StereoSample`` (``pose`` None) whose disparities all lie in ``[min, max]``.
    """
    seed = _check_seed(seed)
    cfg = get_domain(domain)
    cam = _make_camera(cfg, width, height, min_disparity, max_disparity)
    rng = np.random.default_rng([seed, _TAG_SAMPLE])
    rig = _Rig((np.eye(3),), (np.zeros(3),))
    scene = _build_scene(rng, cfg, cam, rig, _wall_target(rng, cfg, cam), 0.0, 0.0)
    if scene is None:  # cannot happen for a single camera (a fronto-parallel wall always fits)
        raise RuntimeError("internal error: could not place the background wall")
    photo = _sample_photometric(rng, cfg) if photometric else None
    return _render(scene, cam, np.eye(3), np.zeros(3), photo, rng, None, cfg.name)


@dataclass(frozen=True)
class _Trajectory:
    """Smooth camera motion: forward travel plus sinusoidal sway, bob, yaw, pitch and roll."""

    frames: int
    speed: float
    forward: float  # metres of forward travel range
    ping_pong: bool
    sway: tuple[float, float, float]  # amplitude (m), period (frames), phase
    bob: tuple[float, float, float]
    yaw: tuple[float, float, float]  # amplitude (rad), period, phase
    pitch: tuple[float, float, float]
    roll: tuple[float, float, float]

    def poses(self, scale: float) -> _Rig:
        rots, origins = [], []

        def wave(p: tuple[float, float, float], k: int) -> float:
            amp, period, phase = p
            return scale * amp * (math.sin(2 * math.pi * k / period + phase) - math.sin(phase))

        for k in range(self.frames):
            if self.ping_pong:
                z = 0.5 * self.forward * (1.0 - math.cos(math.pi * self.speed * k / self.forward))
            else:
                z = self.speed * k
            origins.append(np.array([wave(self.sway, k), wave(self.bob, k), scale * z]))
            rots.append(_rot_xyz(wave(self.yaw, k), wave(self.pitch, k), wave(self.roll, k)))
        return _Rig(tuple(rots), tuple(origins))


def generate_sequence(seed: int, num_frames: int, width: int = 640, height: int = 480, domain: str = "outdoor",
                      speed: float = 0.1, min_disparity: float | None = None, max_disparity: float | None = None, *,
                      photometric: bool = True) -> Iterator[StereoSample]:
    """Yield ``num_frames`` stereo pairs of ONE static scene seen from a smoothly moving camera rig.

    The rig drives forward at ``speed`` metres per frame (ping-ponging smoothly when the requested
    travel would not fit in the scene), with sinusoidal sideways sway, vertical bob and slight
    yaw / pitch / roll oscillation (scaled down for speeds below 0.05 m/frame; ``speed=0`` gives a
    fixed rig). Frame 0's left camera defines the world frame (its ``pose`` is the identity).
    Objects are placed in the path's frustum, beyond the distance the rig travels, and the
    background wall is fitted to all poses, so every frame has exact ground truth, the background
    covers every pixel of every frame and all disparities lie in ``[min_disparity, max_disparity]``
    (pixels; None = the domain's default scaled by ``width / 640``). Photometric parameters are
    drawn once per view and kept for the whole sequence; noise is fresh for every frame.

    Args:
        seed: non-negative integer; the same arguments give bit-identical frames.
        num_frames: number of frames (>= 1).
        width, height, domain, min_disparity, max_disparity, photometric: as for ``generate_sample``.
        speed: forward travel per frame in metres (>= 0).

    Arguments are validated immediately (``ValueError``); frames are rendered lazily.
    """
    seed = _check_seed(seed)
    cfg = get_domain(domain)
    cam = _make_camera(cfg, width, height, min_disparity, max_disparity)
    if isinstance(num_frames, bool) or not isinstance(num_frames, (int, np.integer)) or num_frames < 1:
        raise ValueError(f"num_frames: expected an integer >= 1, got {num_frames!r}")
    if isinstance(speed, bool) or not isinstance(speed, numbers.Real) or not (math.isfinite(speed) and speed >= 0.0):
        raise ValueError(f"speed: expected a finite number >= 0 (metres per frame), got {speed!r}")
    num_frames, speed = int(num_frames), float(speed)

    rng = np.random.default_rng([seed, _TAG_SEQUENCE])
    wall_target = _wall_target(rng, cfg, cam)
    wall_depth = cam.fb / wall_target
    max_forward = 0.25 * max(wall_depth - cam.z_near, 0.0)
    wanted = speed * (num_frames - 1)
    ping_pong = wanted > max_forward
    forward = max_forward if ping_pong else wanted

    turn = min(1.0, speed / _FULL_TURN_SPEED)  # a stationary rig does not rotate either

    def osc(amplitude: float, lo: float, hi: float) -> tuple[float, float, float]:
        return amplitude, float(rng.uniform(lo, hi)), float(rng.uniform(0, 2 * math.pi))

    sway_period = rng.uniform(60.0, 180.0)
    traj = _Trajectory(
        frames=num_frames, speed=speed, forward=max(forward, 1e-9), ping_pong=ping_pong,
        sway=(0.5 * speed * sway_period / (2 * math.pi) * rng.uniform(0.3, 1.0), sway_period,
              float(rng.uniform(0, 2 * math.pi))),
        bob=osc(0.1 * speed * 20.0 / (2 * math.pi), 15.0, 40.0),
        yaw=osc(turn * math.radians(rng.uniform(1.0, 4.0)), 80.0, 200.0),
        pitch=osc(turn * math.radians(rng.uniform(0.5, 2.0)), 60.0, 160.0),
        roll=osc(turn * math.radians(rng.uniform(0.0, 0.6)), 70.0, 180.0),
    )
    photo = _sample_photometric(rng, cfg) if photometric else None
    scene_state = rng.bit_generator.state
    scale = 1.0
    for _ in range(12):
        rig = traj.poses(scale)
        rng.bit_generator.state = scene_state  # the same scene whatever the motion scale
        scene = _build_scene(rng, cfg, cam, rig, wall_target, forward * scale, 0.3)
        if scene is not None:
            break
        scale *= 0.5
    else:  # pragma: no cover - a static rig always admits a fronto-parallel wall
        raise RuntimeError("internal error: could not fit the background wall to the trajectory")

    def frames() -> Iterator[StereoSample]:
        for k in range(num_frames):
            rot, origin = rig.rotations[k], rig.origins[k]
            pose = np.eye(4)
            pose[:3, :3] = rot
            pose[:3, 3] = origin
            noise_rng = np.random.default_rng([seed, _TAG_SEQUENCE_NOISE, k])
            yield _render(scene, cam, rot, origin, photo, noise_rng, pose, cfg.name)

    return frames()
