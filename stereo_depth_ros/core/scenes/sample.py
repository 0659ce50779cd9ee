"""The stereo sample record, the synthetic domains and the camera rig shared by the scene generators.

* :class:`StereoSample`: one rectified pair with exact ground truth (images, disparities, depth,
  occlusion masks, intrinsics, baseline).
* :class:`DomainConfig` and :data:`DOMAINS`: the visual and geometric statistics of each named
  domain; :func:`get_domain` looks one up, :func:`split_seeds` gives disjoint train/val/test seeds.
* :class:`Camera` and :func:`make_camera`: the rectified pinhole pair of a domain at a given image
  size (focal length and principal point in pixels, baseline in metres, disparity range in pixels).

Array conventions: images are ``(H, W, 3)`` float32 RGB in ``[0, 1]``; disparities ``(H, W)``
float32 in pixels; depth ``(H, W)`` float32 in metres; masks ``(H, W)`` bool. Pixel ``(u, v)``
has its centre at column ``u``, row ``v``.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

import numpy as np

from .textures import TEXTURE_KINDS

__all__ = [
    "Camera",
    "DOMAINS",
    "DomainConfig",
    "GENERATORS",
    "MIN_IMAGE_SIZE",
    "OBJECT_DOMAINS",
    "SHAPE_KINDS",
    "StereoSample",
    "check_seed",
    "get_domain",
    "make_camera",
    "split_seeds",
]

SHAPE_KINDS: tuple[str, ...] = ("rect", "ellipse", "ring", "polygon", "bar")
"""Names of the bounded object shapes ("bar" is the thin pole/bar structure)."""

MIN_IMAGE_SIZE = 32
"""Smallest accepted width and height, in pixels."""

GENERATORS: tuple[str, ...] = ("planar", "objects")
"""Names of the scene generators a domain can use (``DomainConfig.generator``)."""

_SPLIT_STRIDE = 1_000_000_000
_SPLITS = ("train", "val", "test")


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
    generator: str = "planar"
    """Which scene generator renders the domain (names from ``GENERATORS``): "planar" (procedural planar
    surfaces, :mod:`.planar`) or "objects" (FlyingThings-like floating meshes, :mod:`.objects`; it
    reads the photometric, texture, lighting and disparity fields, ``num_objects``, ``ground_prob``
    (the floor), ``wall_max_slant_deg`` (the far plane) and ``wall_disparity_fraction`` (the far
    plane's disparity, log-uniform), not ``shape_weights`` or ``object_max_slant_deg``)."""

    def __post_init__(self) -> None:
        if not self.name:
            raise ValueError("DomainConfig.name: expected a non-empty string, got ''")
        if self.generator not in GENERATORS:
            raise ValueError(f"DomainConfig.generator: expected one of {GENERATORS}, got {self.generator!r}")
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
"""Registry of the planar generator's domains by name (:mod:`.planar`)."""

OBJECT_DOMAINS: dict[str, DomainConfig] = {"objects": dataclasses.replace(
    DOMAINS["indoor"],
    name="objects",
    description="FlyingThings-like: 10-30 floating non-planar objects (ellipsoids, boxes, cylinders, cones, tori, "
                "polyhedra, thin rods and branches, deformed meshes) before a far plane or a box room, mostly "
                "textured by photographs, diffuse with glossy patches, disparities from 1 to 192 px with a "
                "spread of 10:1 and more per scene; ray cast with Open3D.",
    texture_weights=(("photo", 0.55), ("natural", 0.12), ("value_noise", 0.10), ("blobs", 0.06), ("stripes", 0.06),
                     ("checkers", 0.05), ("gradient", 0.03), ("flat", 0.03)),
    background_texture_weights=(("photo", 0.6), ("natural", 0.14), ("value_noise", 0.12), ("checkers", 0.04),
                                ("stripes", 0.04), ("gradient", 0.03), ("flat", 0.03)),
    palette=DOMAINS["indoor"].palette + DOMAINS["outdoor"].palette,
    colour_jitter=0.05,
    contrast_range=(0.6, 1.0),
    weak_texture_prob=0.05,
    pixels_per_texel=(0.5, 1.8),
    min_disparity=1.0,
    max_disparity=192.0,
    focal_factor=0.9,
    baseline=0.1,
    num_objects=(10, 30),
    wall_max_slant_deg=25.0,
    wall_disparity_fraction=0.12,
    ground_prob=0.7,
    ambient_range=(0.3, 0.6),
    light_colour=(1.0, 0.98, 0.94),
    gain_range=(0.8, 1.2),
    gain_mismatch=0.1,
    colour_cast=0.04,
    gamma_range=(0.85, 1.15),
    gamma_mismatch=0.06,
    noise_std=(0.002, 0.015),
    shot_noise=(0.0, 0.001),
    blur_sigma=(0.0, 0.7),
    vignetting=(0.0, 0.2),
    generator="objects",
)}
"""Registry of the objects generator's domains by name (:mod:`.objects`). Kept apart from
:data:`DOMAINS`, whose entries share the planar generator's properties (piecewise-planar depth,
sequences); :func:`get_domain` finds a name in either."""


def get_domain(name: str) -> DomainConfig:
    """Return the registered ``DomainConfig`` called ``name`` (``ValueError`` listing the names if unknown)."""
    for registry in (DOMAINS, OBJECT_DOMAINS):
        try:
            return registry[name]
        except (KeyError, TypeError):
            pass
    raise ValueError(f"unknown synthetic domain: expected one of {sorted(DOMAINS) + sorted(OBJECT_DOMAINS)}, "
                     f"got {name!r}")


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
# Camera rig
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Camera:
    """A rectified pinhole pair: ``width x height`` pixels, focal length ``focal`` and principal point
    ``(cx, cy)`` in pixels (shared by both views), ``baseline`` in metres (right = left + baseline * x),
    and the disparity range ``[min_disparity, max_disparity]`` in pixels that scenes must respect."""

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
        """``focal * baseline`` (pixel metres): disparity = ``fb / depth``."""
        return self.focal * self.baseline

    @property
    def z_near(self) -> float:
        """Depth (metres) of the largest disparity."""
        return self.fb / self.max_disparity

    @property
    def z_far(self) -> float:
        """Depth (metres) of the smallest disparity."""
        return self.fb / self.min_disparity


def check_seed(seed: int) -> int:
    """Return ``seed`` as an int (``ValueError`` unless a non-negative integer)."""
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"seed: expected a non-negative integer, got {seed!r}")
    return int(seed)


def make_camera(cfg: DomainConfig, width: int, height: int, min_disparity: float | None,
                max_disparity: float | None) -> Camera:
    """The domain's rig at ``width x height`` pixels (focal ``cfg.focal_factor * width``, centred
    principal point); a disparity bound left None is the domain's, scaled by ``width / 640``."""
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
    return Camera(width, height, focal, (width - 1) / 2.0, (height - 1) / 2.0, cfg.baseline, lo, hi)
