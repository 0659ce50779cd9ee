"""Procedural planar scenes: rectified stereo pairs and camera-motion sequences with exact ground truth.

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
* **Textures** (:mod:`.textures`). Each surface carries a periodic texture defined in the surface's
  own 2D coordinates, so a 3D point has the same colour in both views. Textures are mip-mapped and
  the level of detail is computed from the 3D point and the rig (not from the view), which
  prevents aliasing while keeping both views consistent.
* **Photometry** (:mod:`.photometry`). Each view gets its own gain / colour cast, gamma,
  vignetting, slight blur and noise (read + shot). ``photometric=False`` turns all of that off so
  the views agree exactly up to texture sampling.

Array conventions: see :mod:`.sample`. Everything is deterministic from the integer seed
(``np.random.default_rng``, no global state). Only numpy and OpenCV (texture resampling and blur)
are used.
"""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass
from typing import Iterator

import cv2
import numpy as np

from .photometry import PhotometricParams, finish_pair, sample_photometric
from .sample import Camera, DomainConfig, StereoSample, check_seed, get_domain, make_camera
from .textures import (LOD_BIAS, SMALL_TEX_SIZE, TEX_SIZE, Texture, make_texture, sample_level, sample_mipmap,
                       weighted_choice)

__all__ = ["generate_planar_sample", "generate_sequence"]

_FULL_TURN_SPEED = 0.05  # metres per frame from which sequences get their full yaw / pitch / roll
_TAG_SAMPLE = 0x5E11
_TAG_SEQUENCE = 0x5E9
_TAG_SEQUENCE_NOISE = 0x9015E


# --------------------------------------------------------------------------------------------------
# Scene geometry
# --------------------------------------------------------------------------------------------------


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
    texture: Texture  # already lit: texture colour * constant shading of this surface

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


def _hit(cp: _CamPlane, surf: _Surface, x: np.ndarray, y: np.ndarray, cam: Camera) -> tuple[np.ndarray, np.ndarray]:
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


def _bbox(surf: _Surface, rot: np.ndarray, origin: np.ndarray, cam: Camera) -> tuple[int, int, int, int] | None:
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


def _corner_rays(cam: Camera) -> np.ndarray:
    """The four image-corner rays ``(x, y, 1)`` at the outer pixel edges, ``(4, 3)``."""
    xs = [(-0.5 - cam.cx) / cam.focal, (cam.width - 0.5 - cam.cx) / cam.focal]
    ys = [(-0.5 - cam.cy) / cam.focal, (cam.height - 0.5 - cam.cy) / cam.focal]
    return np.array([[x, y, 1.0] for x in xs for y in ys])


def _plane_terms(normal: np.ndarray, rig: _Rig, cam: Camera) -> tuple[np.ndarray, np.ndarray]:
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
                   texture: Texture) -> _Surface:
    e_s, e_t = _in_plane_axes(normal, direction)
    return _Surface(shape, normal * offset, e_s, e_t, normal, (math.inf, math.inf), 0.0, None, texture)


def _shade(rng: np.random.Generator, cfg: DomainConfig, normal: np.ndarray, light: np.ndarray) -> np.ndarray:
    ambient = rng.uniform(*cfg.ambient_range)
    lambert = abs(float(normal @ light))
    albedo = rng.uniform(0.75, 1.0)
    return (albedo * (ambient + (1.0 - ambient) * lambert) * np.asarray(cfg.light_colour)).astype(np.float32)


def _texel_size(rng: np.random.Generator, cfg: DomainConfig, depth: float, cam: Camera) -> float:
    return float(rng.uniform(*cfg.pixels_per_texel) * depth / cam.focal)


def _fit_wall(rng: np.random.Generator, cfg: DomainConfig, cam: Camera, rig: _Rig,
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


def _build_scene(rng: np.random.Generator, cfg: DomainConfig, cam: Camera, rig: _Rig, wall_target: float,
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
                       make_texture(rng, cfg, cfg.background_texture_weights,
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
                make_texture(rng, cfg, cfg.background_texture_weights, _texel_size(rng, cfg, ref_depth, cam),
                              _shade(rng, cfg, ground_normal, light))))

    n_objects = int(rng.integers(cfg.num_objects[0], cfg.num_objects[1] + 1))
    span = cam.max_disparity - cam.min_disparity
    d_top = cam.fb / (cam.z_near + forward) - 0.03 * span
    short = min(cam.width, cam.height)
    for _ in range(n_objects):
        shape = weighted_choice(rng, cfg.shape_weights)
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
        size = TEX_SIZE if 2.0 * max(half) / texel > SMALL_TEX_SIZE else SMALL_TEX_SIZE
        texture = make_texture(rng, cfg, cfg.texture_weights, texel, _shade(rng, cfg, normal, light), size)
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


def _make_view(scene: _Scene, rot: np.ndarray, origin: np.ndarray, cam: Camera) -> _View:
    return _View(rot, origin, tuple(_cam_plane(s, rot, origin) for s in scene.surfaces),
                 tuple(_bbox(s, rot, origin, cam) for s in scene.surfaces))


def _pixel_rays(cam: Camera) -> tuple[np.ndarray, np.ndarray]:
    xs = ((np.arange(cam.width, dtype=np.float64) - cam.cx) / cam.focal).astype(np.float32)
    ys = ((np.arange(cam.height, dtype=np.float64) - cam.cy) / cam.focal).astype(np.float32)
    return xs, ys


def _zbuffer(scene: _Scene, view: _View, cam: Camera) -> tuple[np.ndarray, np.ndarray]:
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


def _texture_view(scene: _Scene, view: _View, cam: Camera, zbuf: np.ndarray, index: np.ndarray,
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
        if _max_footprint(cp, cam, view.boxes[k], float(z.min()), float(z.max()), tex.texel) * 2.0 ** LOD_BIAS <= 1.0:
            rgba = sample_level(tex.levels, 0, s, t)  # magnified everywhere: the exact LOD would be 0
        else:
            # Footprint of one pixel on the plane (major axis, texels), from the rig midpoint's ray.
            xc = x + np.float32(side) * half_b / z  # left: x - B/(2Z), right: x + B/(2Z)
            r2 = xc * xc + y * y + np.float32(1.0)
            cos_term = np.maximum(np.abs(_affine(cp.n, xc, y)), np.float32(0.05) * np.sqrt(r2))
            footprint = z * r2 / (np.float32(cam.focal * tex.texel) * cos_term)
            lod = np.log2(np.maximum(footprint, np.float32(1e-6))) + np.float32(LOD_BIAS)
            rgba = sample_mipmap(tex.levels, s, t, lod)
        image_c[pix] = rgba.view(np.complex128).reshape(-1)
    return cv2.cvtColor(image.reshape(height, width, 4), cv2.COLOR_RGBA2RGB)


def _max_footprint(cp: _CamPlane, cam: Camera, box: tuple[int, int, int, int] | None, z_min: float, z_max: float,
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


def _occlusion(scene: _Scene, src: _View, dst: _View, cam: Camera, depth: np.ndarray, disparity: np.ndarray,
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


def _render(scene: _Scene, cam: Camera, rot: np.ndarray, origin: np.ndarray,
            photometric: tuple[PhotometricParams, PhotometricParams] | None, noise_rng: np.random.Generator,
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
    img_left, img_right = finish_pair(img_left, img_right, photometric, noise_rng)
    return StereoSample(
        left=img_left, right=img_right, disparity_left=disp_left, disparity_right=disp_right,
        depth_left=depth_left, occlusion_left=occ_left, occlusion_right=occ_right,
        focal=cam.focal, cx=cam.cx, cy=cam.cy, baseline=cam.baseline, width=cam.width, height=cam.height,
        pose=pose, domain=domain)



# --------------------------------------------------------------------------------------------------
# Public generators
# --------------------------------------------------------------------------------------------------


def _wall_target(rng: np.random.Generator, cfg: DomainConfig, cam: Camera) -> float:
    """Smallest disparity of the background wall (pixels), a little above ``min_disparity``."""
    span = cam.max_disparity - cam.min_disparity
    margin = min(0.01 * cam.min_disparity, 0.005 * span)
    return cam.min_disparity + margin + min(rng.uniform(0.0, cfg.wall_disparity_fraction), 0.9) * span


def generate_planar_sample(seed: int, width: int = 640, height: int = 480, domain: str = "indoor",
                           min_disparity: float | None = None, max_disparity: float | None = None, *,
                           photometric: bool = True) -> StereoSample:
    """Render one random rectified stereo pair of planar surfaces with exact ground truth.

    Args:
        seed: non-negative integer; the same arguments give bit-identical arrays.
        width, height: image size in pixels (each >= 32).
        domain: the name of a planar domain in ``DOMAINS`` ("indoor", "outdoor", "photo").
        min_disparity, max_disparity: disparity range in pixels at this resolution; None uses the
            domain's defaults scaled by ``width / 640``. Requires ``0 < min < max < width``.
        photometric: False renders both views without gain, gamma, vignetting, blur or noise.

    Returns:
        A ``StereoSample`` (``pose`` None) whose disparities all lie in ``[min, max]``.
    """
    seed = check_seed(seed)
    cfg = get_domain(domain)
    if cfg.generator != "planar":
        raise ValueError(f"domain: expected a planar domain, got {domain!r} (generator {cfg.generator!r})")
    cam = make_camera(cfg, width, height, min_disparity, max_disparity)
    rng = np.random.default_rng([seed, _TAG_SAMPLE])
    rig = _Rig((np.eye(3),), (np.zeros(3),))
    scene = _build_scene(rng, cfg, cam, rig, _wall_target(rng, cfg, cam), 0.0, 0.0)
    if scene is None:  # cannot happen for a single camera (a fronto-parallel wall always fits)
        raise RuntimeError("internal error: could not place the background wall")
    photo = sample_photometric(rng, cfg) if photometric else None
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
    seed = check_seed(seed)
    cfg = get_domain(domain)
    if cfg.generator != "planar":
        raise ValueError(f"domain: expected a planar domain for sequences, got {domain!r} "
                         f"(generator {cfg.generator!r})")
    cam = make_camera(cfg, width, height, min_disparity, max_disparity)
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
    photo = sample_photometric(rng, cfg) if photometric else None
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
