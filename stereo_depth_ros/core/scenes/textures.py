"""Periodic, mip-mapped surface textures for the scene generators.

Procedural patterns (value noise, 1/f "natural" noise, stripes, checkers, gradients, blobs, nearly
flat) and crops of natural photographs (scikit-image's, :data:`PHOTO_NAMES`) mirrored into a
periodic tile. A texture is an RGB tile of ``T x T`` texels (``T`` a power of two) with its mip
pyramid; it is looked up at texel coordinates defined on the surface itself (not in the image), so
the same 3D point gets the same colour in both views, and the level of detail is chosen by the
caller from the pixel footprint on the surface, which prevents aliasing.

Only numpy and OpenCV (resampling and filtering) are used; randomness comes from the caller's
``np.random.Generator``.
"""

from __future__ import annotations

import functools
import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import cv2
import numpy as np

if TYPE_CHECKING:
    from .sample import DomainConfig

__all__ = [
    "EXCLUDED_PHOTO_NAMES",
    "LOD_BIAS",
    "PHOTO_NAMES",
    "SMALL_TEX_SIZE",
    "TEXTURE_KINDS",
    "TEX_SIZE",
    "Texture",
    "is_excluded_photo",
    "load_photo_folder",
    "make_texture",
    "photo_tile",
    "sample_level",
    "sample_mipmap",
    "skimage_photos",
    "texture_from_image",
    "weighted_choice",
]

TEXTURE_KINDS: tuple[str, ...] = ("value_noise", "natural", "stripes", "checkers", "gradient", "blobs", "flat", "photo")
"""Names of the texture generators: procedural ones, and ``photo`` (crops of the natural photographs
scikit-image ships, :data:`PHOTO_NAMES`, mirrored into a periodic tile)."""

PHOTO_NAMES: tuple[str, ...] = ("astronaut", "brick", "camera", "cat", "chelsea", "coffee", "grass", "gravel",
                                "hubble_deep_field", "immunohistochemistry", "moon", "page", "rocket", "retina",
                                "coins", "horse", "text")
"""scikit-image photographs used by the ``photo`` textures (shipped inside its wheel, no download)."""

TEX_SIZE = 256
"""Texels per side of background textures (periodic, power of two)."""
SMALL_TEX_SIZE = 128
"""Texels per side of textures of objects that span fewer than ``TEX_SIZE`` texels."""
LOD_BIAS = 0.5
"""Mip level bias (log2 units) callers add to the level of detail: > 0 trades a little sharpness for
less aliasing."""


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
def skimage_photos() -> tuple[np.ndarray, ...]:
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


def photo_tile(rng: np.random.Generator, size: int, photos: tuple[np.ndarray, ...] | None = None) -> np.ndarray:
    """A periodic ``(size, size, 3)`` float32 tile: a random crop of a photograph mirrored in x and y.

    ``photos``: ``(H, W, 3)`` RGB images, float32 in [0, 1] or uint8 (None: :func:`skimage_photos`).
    """
    if photos is None:
        photos = skimage_photos()
    photo = photos[int(rng.integers(len(photos)))]
    half = size // 2
    scale = rng.uniform(0.5, 1.5)  # texel scale variety: resample the photo first
    height, width = photo.shape[:2]
    crop = max(4, min(int(round(half / scale)), height, width))
    y, x = int(rng.integers(height - crop + 1)), int(rng.integers(width - crop + 1))
    patch = np.ascontiguousarray(photo[y:y + crop, x:x + crop])
    if patch.dtype == np.uint8:
        patch = patch.astype(np.float32) * np.float32(1.0 / 255.0)
    patch = cv2.resize(patch, (half, half), interpolation=cv2.INTER_AREA if crop > half else cv2.INTER_LINEAR)
    top = np.concatenate([patch, patch[:, ::-1]], axis=1)
    return np.ascontiguousarray(np.concatenate([top, top[::-1]], axis=0), dtype=np.float32)


EXCLUDED_PHOTO_NAMES: tuple[str, ...] = ("art", "cones", "tsukuba", "venus", "motorcycle", "kitti_raw")
"""Scenes kept out of every texture (the development scenes real-data figures are scored on): a
photograph whose path has a name starting with one of these (case-insensitive) is never loaded."""

_EXCLUDED_PATTERN = re.compile(r"(?<![a-z])(" + "|".join(EXCLUDED_PHOTO_NAMES) + ")")
_PHOTO_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".ppm")
_PHOTO_MAX_SIDE = 640  # folder photographs are shrunk to this longest side (uint8 in memory)


def is_excluded_photo(path: str | Path) -> bool:
    """True when ``path`` names one of the :data:`EXCLUDED_PHOTO_NAMES` scenes in any of its parts."""
    return _EXCLUDED_PATTERN.search(Path(path).as_posix().lower()) is not None


@functools.lru_cache(maxsize=4)
def _load_photo_folder(folder: str) -> tuple[np.ndarray, ...]:
    root = Path(folder)
    files = sorted(f for f in root.rglob("*")
                   if f.is_file() and f.suffix.lower() in _PHOTO_EXTENSIONS and f.stem.lower().endswith("_left")
                   and not is_excluded_photo(f.relative_to(root)))
    photos = []
    for f in files:
        image = cv2.imread(str(f), cv2.IMREAD_COLOR)  # grey files come back with three equal channels
        if image is None:
            raise ValueError(f"photo_dir: expected readable images, could not decode {f}")
        scale = _PHOTO_MAX_SIDE / max(image.shape[:2])
        if scale < 1.0:
            image = cv2.resize(image, (max(1, round(image.shape[1] * scale)), max(1, round(image.shape[0] * scale))),
                               interpolation=cv2.INTER_AREA)
        photos.append(np.ascontiguousarray(image[:, :, ::-1]))  # BGR -> RGB
    if not photos:
        raise ValueError(f"photo_dir: expected left images named '*_left.png' (or .jpg, ...) under {folder}, "
                         "found none")
    return tuple(photos)


def load_photo_folder(folder: str | Path) -> tuple[np.ndarray, ...]:
    """The left images of a folder of stereo pairs, as ``(H, W, 3)`` uint8 RGB photographs for textures.

    Every file under ``folder`` (recursively) whose name ends in ``_left`` (``.png``, ``.jpg``,
    ``.jpeg``, ``.bmp``, ``.ppm``) is loaded and shrunk to at most 640 pixels on its longest side,
    except the :data:`EXCLUDED_PHOTO_NAMES` scenes (a file or sub-folder named after one is
    skipped). Sorted by path, so a seed gives the same textures wherever the folder holds the same
    files. Loaded once per process and folder. ``ValueError`` if ``folder`` is not a folder, is one
    of the excluded scenes, or holds no such image.
    """
    path = Path(folder)
    if not path.is_dir():
        raise ValueError(f"photo_dir: expected a folder of stereo pairs, got {str(folder)!r} (not a folder)")
    if is_excluded_photo(path.resolve().name):
        raise ValueError(f"photo_dir: {str(folder)!r} is an excluded development scene {EXCLUDED_PHOTO_NAMES}")
    return _load_photo_folder(str(path.resolve()))


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


def sample_level(levels: list[np.ndarray], level: int, x0: np.ndarray, y0: np.ndarray) -> np.ndarray:
    """Bilinear lookup in mip ``level`` at level-0 texel coords ``x0, y0`` (``(N,)``) -> ``(N, 4)``."""
    n = levels[level].shape[0] - 1
    scale = np.float32(0.5 ** level)
    offset = np.float32(0.5 * scale - 0.5)
    return _remap_points(levels[level], _wrap(x0 * scale + offset, n), _wrap(y0 * scale + offset, n))


def sample_mipmap(levels: list[np.ndarray], x0: np.ndarray, y0: np.ndarray, lod: np.ndarray) -> np.ndarray:
    """Trilinear lookup: level-0 texel coords ``x0, y0`` and level of detail ``lod`` (all ``(N,)``) -> ``(N, 4)``."""
    if x0.size == 0:
        return np.empty((0, 4), np.float32)
    top = len(levels) - 1
    if float(lod.max()) <= 0.0:  # magnification everywhere: level 0 only
        return sample_level(levels, 0, x0, y0)
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
        fine = sample_level(levels, int(level), xs, ys)
        coarse = sample_level(levels, int(level) + 1, xs, ys)
        coarse -= fine
        coarse *= fs
        coarse += fine
        if present.size == 1:
            return coarse
        out_c[sel] = coarse.view(np.complex128).reshape(-1)
    return out


def weighted_choice(rng: np.random.Generator, weights: tuple[tuple[str, float], ...]) -> str:
    """One name of ``weights`` (``(name, weight)`` pairs), drawn with probability proportional to its weight."""
    names = [k for k, _ in weights]
    p = np.array([w for _, w in weights], np.float64)
    return names[int(rng.choice(len(names), p=p / p.sum()))]


@dataclass(frozen=True, eq=False)
class Texture:
    """A periodic texture: its kind, mip ``levels`` (see :func:`sample_level`), the size of a
    level-0 texel on the surface in metres and a texel offset that decorrelates surfaces."""

    kind: str
    levels: list[np.ndarray]
    texel: float  # metres per level-0 texel
    offset: tuple[float, float]  # texel offset


def make_texture(rng: np.random.Generator, cfg: DomainConfig, weights: tuple[tuple[str, float], ...],
                 texel: float, shade: np.ndarray, size: int = TEX_SIZE,
                 photos: tuple[np.ndarray, ...] | None = None) -> Texture:
    """A random periodic ``(size, size, 3)`` texture (plus mip levels) with texels of ``texel`` metres,
    multiplied by the surface's constant RGB ``shade`` (lighting and albedo). ``photos``: the
    photographs ``photo`` textures crop (None: scikit-image's, :func:`skimage_photos`)."""
    kind = weighted_choice(rng, weights)
    weak = rng.random() < cfg.weak_texture_prob or kind == "flat"
    contrast = rng.uniform(*(cfg.weak_contrast_range if weak else cfg.contrast_range))
    if kind == "photo":  # the photograph's own colours, contrast-scaled about its mean, lit like the rest
        tile = photo_tile(rng, size, photos)
        mean = tile.mean(axis=(0, 1), keepdims=True)
        tile = np.clip(mean + contrast * (tile - mean) + rng.normal(0.0, cfg.colour_jitter, 3), 0.02, 0.98)
        rgba = np.zeros((size, size, 4), np.float32)
        rgba[:, :, :3] = tile * shade.astype(np.float32)
        return Texture(kind, _mip_pyramid(rgba), float(texel),
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
    return Texture(kind, _mip_pyramid(rgba), float(texel),
                   (float(rng.uniform(0, size)), float(rng.uniform(0, size))))


def texture_from_image(image: np.ndarray, texel: float, offset: tuple[float, float] = (0.0, 0.0),
                       kind: str = "image") -> Texture:
    """A :class:`Texture` from an explicit periodic ``(T, T, 3)`` RGB tile (float, [0, 1]; ``T`` a
    power of two) whose texels measure ``texel`` metres on the surface; ``offset`` in texels."""
    image = np.asarray(image)
    size = image.shape[0] if image.ndim == 3 else 0
    if image.ndim != 3 or image.shape != (size, size, 3) or size < 1 or size & (size - 1):
        raise ValueError(f"image: expected a (T, T, 3) tile with T a power of two, got shape {image.shape}")
    if not (math.isfinite(texel) and texel > 0.0):
        raise ValueError(f"texel: expected a size in metres > 0, got {texel!r}")
    rgba = np.zeros((size, size, 4), np.float32)
    rgba[:, :, :3] = image
    return Texture(kind, _mip_pyramid(rgba), float(texel), (float(offset[0]), float(offset[1])))
