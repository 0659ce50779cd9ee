"""FlyingThings-like stereo scenes: many floating non-planar objects before a structured background.

The recipe of the synthetic data that lightweight stereo networks generalise from (FlyingThings3D;
WMGStereo's ablations: 10-30 floating objects, a background, diffuse and glossy materials and a
wide disparity spread each matter), at CPU cost:

* **Rig.** The domain's rectified pinhole pair (:func:`~.sample.make_camera`): focal length
  ``f = focal_factor * W`` pixels, principal point at the image centre, baseline ``B`` metres; the
  left camera at the origin of the world (= left optical frame, x right, y down, z forward), the
  right one at ``(B, 0, 0)``. Each sample draws its own depth range instead of its own baseline
  (scaling a scene by ``s`` gives the same images as dividing the baseline by ``s``): the
  background's disparity is log-uniform in ``[min, min + wall_disparity_fraction * (max - min)]``
  and the objects' disparities reach up to a per-sample ``d_top`` in ``[0.35, 1] * max``, so the
  disparities of one sample typically span 10:1 or more, up to ``max_disparity`` (192 px at 640 px
  wide for the ``"objects"`` domain of :data:`~.sample.OBJECT_DOMAINS`).
* **Background.** A far plane tilted by up to ``wall_max_slant_deg``, and in most scenes a box room
  around it (a floor with probability ``ground_prob``, side walls, a ceiling), each wall fitted so
  that its depth stays inside ``[f*B/max_disparity, f*B/min_disparity]`` over both views.
* **Objects.** ``num_objects`` (10-30) meshes made with ``open3d.geometry.TriangleMesh.create_*``:
  ellipsoids, boxes, cylinders, cones, tori, polyhedra, thin rods (a few pixels wide) and branches,
  and randomly deformed meshes (vertices displaced along their normals by a smooth random field);
  a random pose and size; depths spread between the background and ``d_top`` (uniform or
  log-uniform in disparity), never nearer than ``f*B/d_top`` (the bounding sphere is checked) and
  inside the room.
* **Rendering.** Open3D's ``RaycastingScene`` casts one ray per pixel centre in each view; the
  hit triangle's plane then gives the exact depth in float64 (``z`` along the optical axis: rays
  are ``(x, y, 1)``), so ``disparity = f * B / z`` is exact for the mesh. Occlusion: a left pixel's
  3D point is occluded when the segment from the right camera to it hits another surface (a second
  ray test, exact, no depth-map tolerance) or when it projects outside the right image; likewise for
  right pixels.
* **Appearance.** Every object has a periodic texture (crops of photographs: scikit-image's and, if
  a folder is given, real left images; or the procedural patterns of :mod:`.textures`) mapped
  triplanarly from its own local coordinates, so the same surface point has the same colour in
  both views; mip-mapped with a level of detail computed from the rig's midpoint (identical in
  both views). Smooth shading (normals interpolated across edges of less than 40 degrees),
  Lambertian light plus ambient, and on some objects glossy (Blinn-Phong) patches whose highlights
  depend on each camera's position, so they differ between the views as on real glossy surfaces.
  Then the camera model of :mod:`.photometry` per view (gain, colour cast, gamma, vignetting, blur,
  read and shot noise) and a small per-view black-level offset. ``photometric=False`` renders the
  view-independent part only (no gloss, offset or camera model).

Deterministic from the seed (one ``np.random.Generator`` for the geometry, a second one drawn from
it for the textures, so that the geometry does not depend on the photographs available; Embree's
traversal is deterministic). Open3D is imported lazily, when a scene is built or rendered. About
0.5 s for a 640x480 pair on one CPU core.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .photometry import PhotometricParams, finish_pair, sample_photometric
from .sample import Camera, DomainConfig, StereoSample, check_seed, get_domain, make_camera
from .textures import (LOD_BIAS, SMALL_TEX_SIZE, TEX_SIZE, Texture, load_photo_folder, make_texture, sample_mipmap,
                       skimage_photos, weighted_choice)

__all__ = [
    "OBJECT_KINDS",
    "Gloss",
    "Lighting",
    "ObjectScene",
    "SceneObject",
    "build_object_scene",
    "generate_objects_sample",
    "make_object",
    "render_object_scene",
]

OBJECT_KINDS: tuple[str, ...] = ("ellipsoid", "box", "cylinder", "cone", "torus", "polyhedron", "rod", "branch",
                                 "blob")
"""Object shapes of the objects domain ("rod" and "branch" are thin, "blob" a deformed sphere)."""

_KIND_WEIGHTS: tuple[tuple[str, float], ...] = (
    ("ellipsoid", 0.14), ("box", 0.16), ("cylinder", 0.12), ("cone", 0.06), ("torus", 0.09), ("polyhedron", 0.08),
    ("rod", 0.12), ("branch", 0.08), ("blob", 0.15))
_DEFORM_PROB = 0.3  # chance that an ellipsoid, cylinder, cone or torus is also deformed
_GLOSS_PROB = 0.35  # chance that an object (or a wall: half that) has glossy patches
_ROOM_PROB = 0.7  # chance of a box room around the far plane (else the far plane alone)
_SIDE_WALL_PROB = 0.5  # per side wall, in a room
_CEILING_PROB = 0.3
_TOP_RANGE = (0.35, 1.0)  # the nearest objects' disparity, as a fraction of max_disparity
_OBJECT_SIZE = (0.03, 0.22)  # object radius in image widths at its depth (log-uniform)
_CREASE_DEG = 40.0  # normals are interpolated across edges sharper than this angle only
_OCCLUSION_EPS = 1e-4  # relative distance along the segment to a point below which a hit is the point itself
_OFFSET_RANGE = 0.02  # per-view black-level offset, image units
_WALL_TEX_SIZE = 2 * TEX_SIZE  # walls span the image: a larger tile repeats (and mirrors photos) less often
_TAG_OBJECTS = 0x0B1EC7


# --------------------------------------------------------------------------------------------------
# Scene description
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Gloss:
    """Glossy (Blinn-Phong) patches of an object: strength ``ks`` (image units at full highlight),
    ``shininess`` exponent, and the patch mask ``smoothstep(level(q))`` over the object's local
    coordinates ``q`` (metres), ``level = 0.5 + 0.5 * mean_k sin(waves_k . q + phases_k)``; the
    mask is 1 where ``level`` exceeds ``threshold`` by ``softness`` (``waves`` empty: glossy all over)."""

    ks: float
    shininess: float
    waves: np.ndarray = field(default_factory=lambda: np.zeros((0, 3)))  # (K, 3) radians per metre
    phases: np.ndarray = field(default_factory=lambda: np.zeros(0))  # (K,)
    threshold: float = 0.5
    softness: float = 0.1

    def mask(self, q: np.ndarray) -> np.ndarray:
        """Patch weight in [0, 1] at local points ``q`` ``(N, 3)`` -> ``(N,)`` float32."""
        if len(self.waves) == 0:
            return np.ones(len(q), np.float32)
        level = 0.5 + 0.5 * np.sin(q.astype(np.float64) @ self.waves.T + self.phases).mean(axis=1)
        x = np.clip((level - self.threshold) / (2.0 * self.softness) + 0.5, 0.0, 1.0)
        return (x * x * (3.0 - 2.0 * x)).astype(np.float32)


@dataclass(frozen=True, eq=False)
class SceneObject:
    """One rigid textured triangle mesh in the world (left optical) frame.

    Attributes:
        vertices: ``(N, 3)`` float64 world positions, metres.
        triangles: ``(M, 3)`` int64 vertex indices.
        corner_normals: ``(M, 3, 3)`` float64 unit normal at each triangle corner (equal to the
            face normal across creases), interpolated with the hit's barycentric coordinates.
        rotation: ``(3, 3)`` local-to-world rotation; ``centre``: ``(3,)`` world position of the
            local origin. Textures are looked up at local coordinates ``R^T (p - centre)``.
        texture: the surface texture (its ``texel`` in metres), colours already times the albedo.
        gloss: glossy patches, or None for a matte object.
        name: what the object is (for debugging and tests).
    """

    vertices: np.ndarray
    triangles: np.ndarray
    corner_normals: np.ndarray
    rotation: np.ndarray
    centre: np.ndarray
    texture: Texture
    gloss: Gloss | None = None
    name: str = ""


@dataclass(frozen=True)
class Lighting:
    """A directional light: unit ``direction`` from the scene towards the light (world frame),
    RGB ``colour`` and the ``ambient`` fraction (the rest is Lambertian)."""

    direction: tuple[float, float, float]
    colour: tuple[float, float, float]
    ambient: float


@dataclass(frozen=True, eq=False)
class ObjectScene:
    """Objects (the background's walls included) and the light that shades them."""

    objects: tuple[SceneObject, ...]
    light: Lighting


def _corner_normals(vertices: np.ndarray, triangles: np.ndarray, crease_deg: float) -> np.ndarray:
    """``(M, 3, 3)`` per-corner unit normals: at each corner, the area-weighted mean of the normals of
    the faces around that vertex that lie within ``crease_deg`` of this face (flat across sharper
    edges; ``crease_deg <= 0``: every triangle flat)."""
    v = vertices[triangles]  # (M, 3, 3)
    fn = np.cross(v[:, 1] - v[:, 0], v[:, 2] - v[:, 0])  # length = twice the area
    unit = fn / np.maximum(np.linalg.norm(fn, axis=1, keepdims=True), 1e-300)
    if crease_deg <= 0.0:
        return np.repeat(unit[:, None, :], 3, axis=1)
    n_faces, n_vertices = len(triangles), len(vertices)
    vert = triangles.ravel()
    face = np.repeat(np.arange(n_faces), 3)
    smooth = np.stack([np.bincount(vert, weights=fn[face, c], minlength=n_vertices) for c in range(3)], axis=1)
    smooth /= np.maximum(np.linalg.norm(smooth, axis=1, keepdims=True), 1e-300)
    normals = smooth[triangles]
    # Where every face around a vertex is within crease/2 of their mean, all pairs are within the
    # crease: the vertex normal is every corner's normal there. Elsewhere, gather the agreeing faces.
    order = np.argsort(vert, kind="stable")
    counts = np.bincount(vert, minlength=n_vertices)
    starts = np.concatenate([[0], np.cumsum(counts)])
    dots = np.einsum("nd,nd->n", unit[face[order]], smooth[vert[order]])
    present = counts > 0
    least = np.ones(n_vertices)
    least[present] = np.minimum.reduceat(dots, starts[:-1][present])
    creased = least < math.cos(math.radians(0.5 * crease_deg))
    rows, cols = np.nonzero(creased[triangles])
    if rows.size:
        width = int(counts[creased].max())
        group = starts[triangles[rows, cols]][:, None] + np.arange(width)[None, :]
        valid = np.arange(width)[None, :] < counts[triangles[rows, cols]][:, None]
        around = face[order][np.where(valid, group, 0)]  # faces around each creased corner (padded)
        agree = np.einsum("ckd,cd->ck", unit[around], unit[rows]) >= math.cos(math.radians(crease_deg))
        summed = np.einsum("ck,ckd->cd", (valid & agree).astype(np.float64), fn[around])
        normals[rows, cols] = summed / np.maximum(np.linalg.norm(summed, axis=1, keepdims=True), 1e-300)
    return normals


def make_object(vertices: np.ndarray, triangles: np.ndarray, texture: Texture, *,
                rotation: np.ndarray | None = None, centre: np.ndarray | None = None, gloss: Gloss | None = None,
                crease_deg: float = _CREASE_DEG, name: str = "") -> SceneObject:
    """A :class:`SceneObject` from a world-frame mesh: ``vertices (N, 3)`` metres, ``triangles (M, 3)``.

    ``rotation`` / ``centre``: the local frame textures are mapped in (default: world axes, the
    origin). Normals are interpolated across edges of less than ``crease_deg`` degrees.
    """
    vertices = np.asarray(vertices, np.float64)
    triangles = np.asarray(triangles, np.int64)
    if vertices.ndim != 2 or vertices.shape[1] != 3 or len(vertices) < 3:
        raise ValueError(f"vertices: expected an (N, 3) array with N >= 3, got shape {vertices.shape}")
    if triangles.ndim != 2 or triangles.shape[1] != 3 or len(triangles) < 1:
        raise ValueError(f"triangles: expected an (M, 3) array with M >= 1, got shape {triangles.shape}")
    if triangles.min() < 0 or triangles.max() >= len(vertices):
        raise ValueError(f"triangles: expected indices in [0, {len(vertices) - 1}], got "
                         f"[{triangles.min()}, {triangles.max()}]")
    if not np.all(np.isfinite(vertices)):
        raise ValueError("vertices: expected finite positions, got NaN or inf")
    v = vertices[triangles]
    area2 = np.linalg.norm(np.cross(v[:, 1] - v[:, 0], v[:, 2] - v[:, 0]), axis=1)
    triangles = triangles[area2 > 1e-12 * float(area2.max())]  # slivers carry no normal
    rot = np.eye(3) if rotation is None else np.asarray(rotation, np.float64)
    if rot.shape != (3, 3) or not np.allclose(rot @ rot.T, np.eye(3), atol=1e-6):
        raise ValueError(f"rotation: expected a (3, 3) rotation matrix, got {rot!r}")
    ctr = np.zeros(3) if centre is None else np.asarray(centre, np.float64).reshape(3)
    return SceneObject(vertices, triangles, _corner_normals(vertices, triangles, crease_deg), rot, ctr, texture,
                       gloss, name)


# --------------------------------------------------------------------------------------------------
# Meshes (Open3D primitives, local frame, bounding radius 1)
# --------------------------------------------------------------------------------------------------


@functools.lru_cache(maxsize=1)
def _open3d() -> Any:
    try:
        import open3d as o3d
    except ImportError as exc:  # pragma: no cover - a dependency of the package
        raise ValueError(f"the objects domain needs Open3D (pip install open3d-cpu): {exc}") from None
    return o3d


def _arrays(mesh: Any) -> tuple[np.ndarray, np.ndarray]:
    return np.asarray(mesh.vertices, np.float64).copy(), np.asarray(mesh.triangles, np.int64).copy()


def _vertex_normals(vertices: np.ndarray, triangles: np.ndarray) -> np.ndarray:
    v = vertices[triangles]
    fn = np.cross(v[:, 1] - v[:, 0], v[:, 2] - v[:, 0])
    normals = np.zeros_like(vertices)
    for k in range(3):
        np.add.at(normals, triangles[:, k], fn)
    return normals / np.maximum(np.linalg.norm(normals, axis=1, keepdims=True), 1e-300)


def _deform(rng: np.random.Generator, vertices: np.ndarray, triangles: np.ndarray, amplitude: float) -> np.ndarray:
    """Displace vertices along their normals by a smooth random field (a sum of 3-6 random sinusoids)."""
    count = int(rng.integers(3, 7))
    waves = rng.normal(size=(count, 3))
    waves *= (rng.uniform(1.5, 5.0, count) / np.linalg.norm(waves, axis=1))[:, None]
    amps = rng.uniform(0.3, 1.0, count)
    amps *= amplitude / amps.sum()
    field = np.sin(vertices @ waves.T + rng.uniform(0.0, 2.0 * math.pi, count)) @ amps
    return vertices + field[:, None] * _vertex_normals(vertices, triangles)


def _cylinder_between(o3d: Any, start: np.ndarray, direction: np.ndarray, length: float, radius: float,
                      resolution: int) -> tuple[np.ndarray, np.ndarray]:
    """A closed cylinder from ``start`` along the unit ``direction``."""
    v, t = _arrays(o3d.geometry.TriangleMesh.create_cylinder(radius=radius, height=length, resolution=resolution,
                                                             split=1))
    z = direction / np.linalg.norm(direction)
    helper = np.array([1.0, 0.0, 0.0]) if abs(z[0]) < 0.9 else np.array([0.0, 1.0, 0.0])
    x = np.cross(helper, z)
    x /= np.linalg.norm(x)
    rot = np.stack([x, np.cross(z, x), z], axis=1)
    return v @ rot.T + start + 0.5 * length * z, t


def _shape_mesh(rng: np.random.Generator, kind: str, thin: float) -> tuple[np.ndarray, np.ndarray]:
    """A closed mesh of ``kind`` in its local frame, bounding radius 1 about the origin.

    ``thin``: radius of rods and branches relative to their half length.
    """
    o3d = _open3d()
    mesh = o3d.geometry.TriangleMesh
    deform = 0.0
    if kind == "ellipsoid":
        v, t = _arrays(mesh.create_sphere(radius=1.0, resolution=16))
        v *= rng.uniform(0.45, 1.0, 3)
        deform = 0.12 if rng.random() < _DEFORM_PROB else 0.0
    elif kind == "blob":
        v, t = _arrays(mesh.create_sphere(radius=1.0, resolution=20))
        v *= rng.uniform(0.6, 1.0, 3)
        deform = rng.uniform(0.15, 0.35)
    elif kind == "box":
        size = rng.uniform(0.25, 1.0, 3)
        v, t = _arrays(mesh.create_box(*size))
        v -= 0.5 * size
    elif kind == "cylinder":
        v, t = _arrays(mesh.create_cylinder(radius=rng.uniform(0.2, 1.0), height=rng.uniform(0.3, 2.0),
                                            resolution=24, split=2))
        deform = 0.08 if rng.random() < _DEFORM_PROB else 0.0
    elif kind == "cone":
        v, t = _arrays(mesh.create_cone(radius=rng.uniform(0.3, 1.0), height=rng.uniform(0.5, 2.0), resolution=24,
                                        split=2))
        v[:, 2] -= 0.5 * v[:, 2].max()
        deform = 0.08 if rng.random() < _DEFORM_PROB else 0.0
    elif kind == "torus":
        v, t = _arrays(mesh.create_torus(torus_radius=1.0, tube_radius=rng.uniform(0.12, 0.45),
                                         radial_resolution=32, tubular_resolution=14))
        deform = 0.06 if rng.random() < _DEFORM_PROB else 0.0
    elif kind == "polyhedron":
        make = (mesh.create_tetrahedron, mesh.create_octahedron, mesh.create_icosahedron)[int(rng.integers(3))]
        v, t = _arrays(make(radius=1.0))
        v *= rng.uniform(0.5, 1.0, 3)
    elif kind == "rod":
        v, t = _cylinder_between(o3d, np.array([0.0, 0.0, -1.0]), np.array([0.0, 0.0, 1.0]), 2.0, thin, 10)
    elif kind == "branch":
        parts = [_cylinder_between(o3d, np.array([0.0, 0.0, -1.0]), np.array([0.0, 0.0, 1.0]), 2.0, thin, 10)]
        for _ in range(int(rng.integers(2, 5))):
            start = np.array([0.0, 0.0, rng.uniform(-0.8, 0.6)])
            tilt, azimuth = math.radians(rng.uniform(25.0, 70.0)), rng.uniform(0.0, 2.0 * math.pi)
            direction = np.array([math.sin(tilt) * math.cos(azimuth), math.sin(tilt) * math.sin(azimuth),
                                  math.cos(tilt)])
            parts.append(_cylinder_between(o3d, start, direction, rng.uniform(0.3, 0.8), thin * rng.uniform(0.5, 0.9),
                                           8))
        offsets = np.cumsum([0] + [len(p[0]) for p in parts[:-1]])
        v = np.concatenate([p[0] for p in parts])
        t = np.concatenate([p[1] + o for p, o in zip(parts, offsets)])
    else:
        raise ValueError(f"object kind: expected one of {OBJECT_KINDS}, got {kind!r}")
    if deform > 0.0:
        v = _deform(rng, v, t, deform)
    v -= 0.5 * (v.max(axis=0) + v.min(axis=0))
    return v / np.linalg.norm(v, axis=1).max(), t


def _random_rotation(rng: np.random.Generator) -> np.ndarray:
    q = rng.normal(size=4)
    w, x, y, z = q / np.linalg.norm(q)
    return np.array([[1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)],
                     [2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)],
                     [2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)]])


def _small_rotation(rng: np.random.Generator, max_deg: float) -> np.ndarray:
    """A rotation about a random axis by up to ``max_deg`` degrees."""
    axis = rng.normal(size=3)
    axis /= np.linalg.norm(axis)
    angle = math.radians(rng.uniform(0.0, max_deg))
    k = np.array([[0.0, -axis[2], axis[1]], [axis[2], 0.0, -axis[0]], [-axis[1], axis[0], 0.0]])
    return np.eye(3) + math.sin(angle) * k + (1.0 - math.cos(angle)) * (k @ k)


# --------------------------------------------------------------------------------------------------
# Scene construction
# --------------------------------------------------------------------------------------------------


def _corner_rays(cam: Camera) -> np.ndarray:
    """The four image-corner rays ``(x, y, 1)`` at the outer pixel edges, ``(4, 3)``."""
    xs = [(-0.5 - cam.cx) / cam.focal, (cam.width - 0.5 - cam.cx) / cam.focal]
    ys = [(-0.5 - cam.cy) / cam.focal, (cam.height - 0.5 - cam.cy) / cam.focal]
    return np.array([[x, y, 1.0] for x in xs for y in ys])


def _camera_centres(cam: Camera) -> np.ndarray:
    return np.array([[0.0, 0.0, 0.0], [cam.baseline, 0.0, 0.0]])


def _plane_offset(normal: np.ndarray, cam: Camera, depth: float, nearest: bool) -> float | None:
    """Offset ``c`` of the plane ``normal . X = c`` whose depth over both views is at least (``nearest``)
    or at most (otherwise) ``depth`` metres, tight at one image corner; None if a view's ray runs
    parallel to or away from the plane where the bound is needed."""
    g = _corner_rays(cam) @ normal  # n . r at the corners (affine in the pixel: extremes at corners)
    h = _camera_centres(cam) @ normal
    if nearest:  # depth along ray = (c - h) / g >= depth wherever g > 0
        if g.max() <= 0.0:
            return None
        return float(h.max() + depth * g.max())
    if g.min() <= 1e-3:
        return None
    return float(h.min() + depth * g.min())


def _quad(normal: np.ndarray, offset: float, extent: float, up: np.ndarray) -> tuple[np.ndarray, np.ndarray,
                                                                                     np.ndarray, np.ndarray]:
    """A square of half side ``extent`` on the plane ``normal . X = offset`` centred on the point
    nearest the origin: vertices ``(4, 3)``, triangles ``(2, 3)``, the local frame (rotation, centre)."""
    e1 = np.cross(up, normal)
    e1 /= np.linalg.norm(e1)
    e2 = np.cross(normal, e1)
    centre = offset * normal
    corners = np.array([centre + extent * (a * e1 + b * e2) for a, b in ((-1, -1), (1, -1), (1, 1), (-1, 1))])
    return corners, np.array([[0, 1, 2], [0, 2, 3]]), np.stack([e1, e2, normal], axis=1), centre


def _texel_size(rng: np.random.Generator, cfg: DomainConfig, depth: float, cam: Camera) -> float:
    return float(rng.uniform(*cfg.pixels_per_texel) * depth / cam.focal)


def _gloss(rng: np.random.Generator, radius: float) -> Gloss:
    ks = rng.uniform(0.15, 0.7)
    shininess = math.exp(rng.uniform(math.log(8.0), math.log(200.0)))
    if rng.random() < 0.4:
        return Gloss(ks, shininess)
    count = int(rng.integers(2, 5))
    waves = rng.normal(size=(count, 3))
    waves *= (rng.uniform(1.5, 4.0, count) / radius / np.linalg.norm(waves, axis=1))[:, None]
    return Gloss(ks, shininess, waves, rng.uniform(0.0, 2.0 * math.pi, count), rng.uniform(0.4, 0.6),
                 rng.uniform(0.03, 0.12))


def _textured(rng: np.random.Generator, cfg: DomainConfig, weights: tuple[tuple[str, float], ...], texel: float,
              extent_m: float, photos: tuple[np.ndarray, ...], size: int | None = None) -> Texture:
    if size is None:
        size = TEX_SIZE if 2.0 * extent_m / texel > SMALL_TEX_SIZE else SMALL_TEX_SIZE
    albedo = np.full(3, rng.uniform(0.6, 1.0), np.float32)
    return make_texture(rng, cfg, weights, texel, albedo, size, photos)


def _background(rng: np.random.Generator, tex_rng: np.random.Generator, cfg: DomainConfig, cam: Camera,
                d_back: float, photos: tuple[np.ndarray, ...]
                ) -> tuple[list[SceneObject], list[tuple[np.ndarray, float]]]:
    """The far plane (its largest depth ``f*B/d_back``) and, in most scenes, a box room around it.

    Returns the wall objects and their planes ``(normal, offset)`` with normals pointing out of the
    room (``normal . X <= offset`` inside).
    """
    z_back = cam.fb / d_back
    z_min = cam.z_near * (1.0 + 1e-3)
    room = _small_rotation(rng, 12.0)
    back = None
    for _ in range(8):
        normal = _small_rotation(rng, cfg.wall_max_slant_deg) @ np.array([0.0, 0.0, 1.0])
        offset = _plane_offset(normal, cam, z_back, nearest=False)
        if offset is not None and _plane_offset(normal, cam, z_min, nearest=True) <= offset:
            back = (normal, offset)
            break
    if back is None:  # fronto-parallel always fits
        normal = np.array([0.0, 0.0, 1.0])
        back = (normal, float(_plane_offset(normal, cam, z_back, nearest=False)))
    planes = [back]
    names = ["far plane"]
    if rng.random() < _ROOM_PROB:
        y_edge = (cam.height - 0.5 - cam.cy) / cam.focal
        x_edge = (cam.width - 0.5 - cam.cx) / cam.focal
        candidates = [("floor", np.array([0.0, 1.0, 0.0]), y_edge, cfg.ground_prob),
                      ("ceiling", np.array([0.0, -1.0, 0.0]), y_edge, _CEILING_PROB),
                      ("left wall", np.array([-1.0, 0.0, 0.0]), x_edge, _SIDE_WALL_PROB),
                      ("right wall", np.array([1.0, 0.0, 0.0]), x_edge, _SIDE_WALL_PROB)]
        for name, axis, edge, prob in candidates:
            if rng.random() >= prob:
                continue
            normal = room @ (_small_rotation(rng, 6.0) @ axis)
            # Where the wall meets the far plane, as a fraction of the half field of view.
            reach = rng.uniform(0.25, 0.95) * edge * z_back
            least = _plane_offset(normal, cam, z_min, nearest=True)
            if least is None:
                continue
            planes.append((normal, max(reach + float(normal @ _camera_centres(cam).mean(axis=0)), least)))
            names.append(name)
    extent = 4.0 * z_back * max(1.0, math.hypot(cam.width, cam.height) / cam.focal)
    walls = []
    for k, ((normal, offset), name) in enumerate(zip(planes, names)):
        up = np.array([0.0, 1.0, 0.0]) if abs(normal[1]) < 0.9 else np.array([0.0, 0.0, 1.0])
        vertices, triangles, rot, centre = _quad(normal, offset, extent, up)
        depth = z_back if k == 0 else 0.5 * (z_back + z_min)
        texture = _textured(tex_rng, cfg, cfg.background_texture_weights, _texel_size(rng, cfg, depth, cam), extent,
                            photos, _WALL_TEX_SIZE)
        gloss = _gloss(rng, 0.3 * z_back) if rng.random() < 0.5 * _GLOSS_PROB else None
        walls.append(make_object(vertices, triangles, texture, rotation=rot, centre=centre, gloss=gloss, name=name))
    return walls, planes


def build_object_scene(rng: np.random.Generator, cfg: DomainConfig, cam: Camera,
                       photos: tuple[np.ndarray, ...] | None = None) -> ObjectScene:
    """A random FlyingThings-like scene for ``cam``: background walls and ``cfg.num_objects`` objects.

    Every surface any ray of either view can see lies between ``cam.z_near`` and ``cam.z_far``.
    ``photos``: the photographs ``photo`` textures crop (None: scikit-image's).
    """
    photos = skimage_photos() if photos is None else photos
    # Textures draw from their own stream: the geometry does not depend on which photographs exist.
    tex_rng = np.random.default_rng(rng.integers(0, 2 ** 63))
    span = cam.max_disparity / cam.min_disparity
    d_back = cam.min_disparity * math.exp(rng.uniform(0.0, math.log(1.0 + cfg.wall_disparity_fraction * (span - 1.0))))
    walls, planes = _background(rng, tex_rng, cfg, cam, d_back, photos)
    d_top = cam.max_disparity * rng.uniform(*_TOP_RANGE)
    z_top = max(cam.fb / d_top, cam.z_near) * (1.0 + 1e-3)  # nothing nearer than this
    light = np.array([rng.uniform(-0.7, 0.7), rng.uniform(-1.0, -0.2), rng.uniform(-1.0, -0.3)])
    light /= np.linalg.norm(light)
    colour = np.clip(np.asarray(cfg.light_colour) * rng.uniform(0.9, 1.1, 3), 0.0, 1.2)
    objects = list(walls)
    d_low = min(1.15 * d_back, 0.9 * d_top)
    n_objects = int(rng.integers(cfg.num_objects[0], cfg.num_objects[1] + 1))
    for _ in range(n_objects):
        kind = weighted_choice(rng, _KIND_WEIGHTS)
        for _attempt in range(6):
            u = rng.uniform(-0.1, 1.1) * cam.width
            v = rng.uniform(-0.1, 1.1) * cam.height
            ray = np.array([(u - cam.cx) / cam.focal, (v - cam.cy) / cam.focal, 1.0])
            if rng.random() < 0.5:
                disparity = rng.uniform(d_low, d_top)
            else:
                disparity = math.exp(rng.uniform(math.log(d_low), math.log(d_top)))
            if kind in ("rod", "branch"):
                half_px = rng.uniform(0.15, 0.6) * cam.height  # half length on screen
                width_px = rng.uniform(1.5, 7.0) if kind == "rod" else rng.uniform(2.0, 8.0)
                thin = 0.5 * width_px / half_px
                size_px = half_px
            else:
                size_px = math.exp(rng.uniform(math.log(_OBJECT_SIZE[0]), math.log(_OBJECT_SIZE[1]))) * cam.width
                thin = 0.0
            grow = size_px * float(np.linalg.norm(ray)) / cam.focal  # radius / depth
            depth = max(cam.fb / disparity, z_top / max(1.0 - grow, 0.2))
            radius = grow * depth
            centre = depth * ray
            if depth - radius < z_top:
                continue
            if all(float(n @ centre) + radius <= c for n, c in planes):
                break
        else:
            continue
        local, triangles = _shape_mesh(rng, kind, thin)
        rot = _random_rotation(rng)
        vertices = (local * radius) @ rot.T + centre
        texel = _texel_size(rng, cfg, depth, cam)
        texture = _textured(tex_rng, cfg, cfg.texture_weights, texel, radius, photos)
        gloss = _gloss(rng, radius) if rng.random() < _GLOSS_PROB else None
        crease = 0.0 if kind in ("box", "polyhedron") else _CREASE_DEG
        objects.append(make_object(vertices, triangles, texture, rotation=rot, centre=centre, gloss=gloss,
                                   crease_deg=crease, name=kind))
    ambient = float(rng.uniform(*cfg.ambient_range))
    return ObjectScene(tuple(objects), Lighting(tuple(float(x) for x in light), tuple(float(x) for x in colour),
                                                ambient))


# --------------------------------------------------------------------------------------------------
# Rendering
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class _Tables:
    """All objects' triangles in one array: planes, corner normals and owning object per triangle."""

    plane_normal: np.ndarray  # (M, 3) float64 unit face normals
    plane_offset: np.ndarray  # (M,) float64: n . X = offset on the triangle
    corner_normals: np.ndarray  # (M, 3, 3) float32
    owner: np.ndarray  # (M,) int64 object index
    first: np.ndarray  # (n_objects,) int64 first triangle of each object


def _tables(scene: ObjectScene) -> _Tables:
    normals, offsets, corners, owner, first = [], [], [], [], []
    count = 0
    for k, obj in enumerate(scene.objects):
        v = obj.vertices[obj.triangles]
        fn = np.cross(v[:, 1] - v[:, 0], v[:, 2] - v[:, 0])
        fn /= np.maximum(np.linalg.norm(fn, axis=1, keepdims=True), 1e-300)
        normals.append(fn)
        offsets.append(np.einsum("md,md->m", fn, v[:, 0]))
        corners.append(obj.corner_normals.astype(np.float32))
        owner.append(np.full(len(obj.triangles), k, np.int64))
        first.append(count)
        count += len(obj.triangles)
    return _Tables(np.concatenate(normals), np.concatenate(offsets), np.concatenate(corners), np.concatenate(owner),
                   np.asarray(first, np.int64))


def _raycasting_scene(scene: ObjectScene) -> Any:
    o3d = _open3d()
    rs = o3d.t.geometry.RaycastingScene(nthreads=1)
    for k, obj in enumerate(scene.objects):
        gid = rs.add_triangles(o3d.core.Tensor(np.ascontiguousarray(obj.vertices, np.float32)),
                               o3d.core.Tensor(np.ascontiguousarray(obj.triangles, np.uint32)))
        if gid != k:  # pragma: no cover - Open3D numbers geometries in insertion order
            raise RuntimeError(f"internal error: Open3D gave geometry id {gid} to object {k}")
    return rs


@dataclass(frozen=True, eq=False)
class _Hits:
    """One view's first hits, flattened ``(H*W,)``: depth z (metres), world point, object, normal."""

    z: np.ndarray  # float64
    points: np.ndarray  # (N, 3) float32
    owner: np.ndarray  # int64
    normal: np.ndarray  # (N, 3) float32 unit shading normal, facing the rig


def _norm(x: np.ndarray) -> np.ndarray:
    """Row lengths of ``(N, 3)`` -> ``(N, 1)``."""
    return np.sqrt(np.einsum("nd,nd->n", x, x))[:, None]


def _cast(rs: Any, tables: _Tables, cam: Camera, origin: np.ndarray, rig_mid: np.ndarray) -> _Hits:
    o3d = _open3d()
    x = ((np.arange(cam.width, dtype=np.float64) - cam.cx) / cam.focal)[None, :].repeat(cam.height, 0).ravel()
    y = ((np.arange(cam.height, dtype=np.float64) - cam.cy) / cam.focal)[:, None].repeat(cam.width, 1).ravel()
    rays = np.empty((x.size, 6), np.float32)
    rays[:, :3] = origin
    rays[:, 3], rays[:, 4], rays[:, 5] = x, y, 1.0
    ans = rs.cast_rays(o3d.core.Tensor(rays), nthreads=1)
    t_hit = ans["t_hit"].numpy()
    if not np.all(np.isfinite(t_hit)):
        raise RuntimeError(f"internal error: {int((~np.isfinite(t_hit)).sum())} rays miss the background")
    tri = tables.first[ans["geometry_ids"].numpy().astype(np.int64)] + ans["primitive_ids"].numpy()
    uv = ans["primitive_uvs"].numpy()
    # Exact depth from the hit triangle's plane (float64; rays (x, y, 1), so the ray parameter is z);
    # Embree's float32 distance where the ray grazes the plane.
    n = np.take(tables.plane_normal, tri, axis=0)
    den = n[:, 0] * x + n[:, 1] * y + n[:, 2]
    with np.errstate(divide="ignore", invalid="ignore"):
        t_plane = (tables.plane_offset[tri] - n @ origin) / den
    z = np.where(np.abs(den) > 1e-3 * np.sqrt(x * x + y * y + 1.0), t_plane, t_hit)
    points = rays[:, 3:] * z.astype(np.float32)[:, None]
    points += origin.astype(np.float32)
    corners = np.take(tables.corner_normals, tri, axis=0)
    u, v = uv[:, 0:1], uv[:, 1:2]
    shading = corners[:, 0] * (np.float32(1.0) - u - v) + corners[:, 1] * u + corners[:, 2] * v
    facing = np.einsum("nd,nd->n", n.astype(np.float32), rig_mid.astype(np.float32) - points) >= 0.0
    shading *= (np.where(facing, np.float32(1.0), np.float32(-1.0))[:, None] / np.maximum(_norm(shading), 1e-30))
    return _Hits(z, points, tables.owner[tri], shading)


def _shade_view(scene: ObjectScene, cam: Camera, hits: _Hits, eye: np.ndarray, rig_mid: np.ndarray,
                gloss: bool) -> np.ndarray:
    """``(H, W, 3)`` float32 linear image of one view (texture * (ambient + Lambert) + highlights)."""
    light = np.asarray(scene.light.direction, np.float32)
    colour = np.asarray(scene.light.colour, np.float32)
    ambient = np.float32(scene.light.ambient)
    # Pixels grouped by object (contiguous slices below); a 16-bit key sorts by radix.
    order = np.argsort(hits.owner.astype(np.int16 if len(scene.objects) < 2 ** 15 else np.int64), kind="stable")
    counts = np.bincount(hits.owner, minlength=len(scene.objects))
    starts = np.concatenate([[0], np.cumsum(counts)])
    points = np.take(hits.points, order, axis=0)
    normals = np.take(hits.normal, order, axis=0)
    # Level of detail from the rig's midpoint (the same for a 3D point in both views): log2 of the
    # pixel footprint on the surface in metres, minus log2(texel) per object below.
    to_mid = rig_mid.astype(np.float32) - points
    dist = _norm(to_mid)[:, 0]
    cos = np.abs(np.einsum("nd,nd->n", normals, to_mid)) / dist
    lod_m = np.log2(dist / (np.float32(cam.focal) * np.maximum(cos, np.float32(0.05)))) + np.float32(LOD_BIAS)
    lambert = np.maximum(normals @ light, np.float32(0.0))
    out = np.empty((len(order), 3), np.float32)
    for k, obj in enumerate(scene.objects):
        lo, hi = int(starts[k]), int(starts[k + 1])
        if lo == hi:
            continue
        p, n = points[lo:hi], normals[lo:hi]
        rot = obj.rotation.astype(np.float32)
        q = (p - obj.centre.astype(np.float32)) @ rot  # local coordinates, metres
        weights = (n @ rot) ** 2
        weights *= weights  # triplanar blend |n_local|^4, less a floor so that most pixels need one or two lookups
        weights /= (weights[:, 0] + weights[:, 1] + weights[:, 2])[:, None]
        weights -= np.float32(0.1)
        np.maximum(weights, np.float32(0.0), out=weights)
        weights /= (weights[:, 0] + weights[:, 1] + weights[:, 2])[:, None]
        tex = obj.texture
        lod = lod_m[lo:hi] - np.float32(math.log2(tex.texel))
        inv = np.float32(1.0 / tex.texel)
        rgb = out[lo:hi]
        rgb[:] = 0.0
        for axis, (a, b) in enumerate(((1, 2), (0, 2), (0, 1))):
            w = weights[:, axis]
            sel = np.flatnonzero(w > 0.0)
            if sel.size == 0:
                continue
            whole = sel.size == hi - lo
            qs = q if whole else np.take(q, sel, axis=0)
            s = qs[:, a] * inv + np.float32(tex.offset[0] + 37.0 * axis)
            t = qs[:, b] * inv + np.float32(tex.offset[1] + 71.0 * axis)
            rgba = sample_mipmap(tex.levels, s, t, lod if whole else lod[sel])
            if whole:
                rgb += w[:, None] * rgba[:, :3]
            else:
                rgb[sel] += w[sel, None] * rgba[:, :3]
        if gloss and obj.gloss is not None:
            view = eye.astype(np.float32) - p
            view /= _norm(view)
            half = view + light
            half /= np.maximum(_norm(half), np.float32(1e-12))
            spec = np.maximum(np.einsum("nd,nd->n", n, half), np.float32(0.0)) ** np.float32(obj.gloss.shininess)
            spec *= np.float32(obj.gloss.ks) * (lambert[lo:hi] > 0.0) * obj.gloss.mask(q)
            rgb *= (ambient + (np.float32(1.0) - ambient) * lambert[lo:hi])[:, None]
            rgb += spec[:, None]
        else:
            rgb *= (ambient + (np.float32(1.0) - ambient) * lambert[lo:hi])[:, None]
    out *= colour
    inverse = np.empty_like(order)
    inverse[order] = np.arange(len(order))
    return np.take(out, inverse, axis=0).reshape(cam.height, cam.width, 3)


def _occluded(rs: Any, cam: Camera, hits: _Hits, disparity: np.ndarray, other: np.ndarray, sign: float) -> np.ndarray:
    """True where a view's hit point is hidden from the ``other`` camera centre (another surface on
    the segment to it) or projects outside the other image (``u + sign * d`` outside ``[0, W - 1]``)."""
    o3d = _open3d()
    rays = np.empty((len(hits.z), 6), np.float32)
    rays[:, :3] = other
    rays[:, 3:] = hits.points - other
    hidden = rs.test_occlusions(o3d.core.Tensor(rays), tnear=0.0, tfar=1.0 - _OCCLUSION_EPS, nthreads=1).numpy()
    target = np.arange(cam.width, dtype=np.float32)[None, :] + np.float32(sign) * disparity
    return hidden.reshape(cam.height, cam.width) | (target < 0.0) | (target > cam.width - 1)


def render_object_scene(scene: ObjectScene, cam: Camera, *,
                        photometric: tuple[PhotometricParams, PhotometricParams] | None = None,
                        offsets: tuple[float, float] = (0.0, 0.0), gloss: bool = True,
                        noise_rng: np.random.Generator | None = None, domain: str = "objects") -> StereoSample:
    """Ray cast ``scene`` in both views of ``cam`` (left camera at the origin, right at ``(B, 0, 0)``).

    Args:
        scene: the objects and light, world = left optical frame (metres).
        cam: the rectified pair (its disparity range is not enforced here: the scene must respect it).
        photometric: per-view camera model (left, right), or None for the clean images.
        offsets: per-view black level added before the camera model (image units).
        gloss: False renders every object matte (no view-dependent highlights).
        noise_rng: the sensor noise's generator (needed with ``photometric``).
        domain: the name recorded in the sample.

    Returns:
        A ``StereoSample`` with exact ``disparity = f * B / z`` in both views and occlusion masks.
        ``RuntimeError`` if a ray misses every surface (the background must cover both views).
    """
    if photometric is not None and noise_rng is None:
        raise ValueError("noise_rng: expected a numpy Generator when photometric parameters are given, got None")
    if not scene.objects:
        raise ValueError("scene: expected at least one object (a background), got none")
    rs = _raycasting_scene(scene)
    tables = _tables(scene)
    left_eye, right_eye = _camera_centres(cam)
    mid = 0.5 * (left_eye + right_eye)
    hits_left = _cast(rs, tables, cam, left_eye, mid)
    hits_right = _cast(rs, tables, cam, right_eye, mid)
    shape = (cam.height, cam.width)
    disp_left = (cam.fb / hits_left.z.reshape(shape)).astype(np.float32)
    disp_right = (cam.fb / hits_right.z.reshape(shape)).astype(np.float32)
    depth_left = (cam.fb / disp_left).astype(np.float32)
    img_left = _shade_view(scene, cam, hits_left, left_eye, mid, gloss)
    img_right = _shade_view(scene, cam, hits_right, right_eye, mid, gloss)
    occ_left = _occluded(rs, cam, hits_left, disp_left, right_eye, -1.0)
    occ_right = _occluded(rs, cam, hits_right, disp_right, left_eye, +1.0)
    if offsets != (0.0, 0.0):
        img_left += np.float32(offsets[0])
        img_right += np.float32(offsets[1])
    if photometric is not None:
        img_left, img_right = np.maximum(img_left, 0.0), np.maximum(img_right, 0.0)
    img_left, img_right = finish_pair(img_left, img_right, photometric, noise_rng)
    return StereoSample(
        left=img_left, right=img_right, disparity_left=disp_left, disparity_right=disp_right,
        depth_left=depth_left, occlusion_left=occ_left, occlusion_right=occ_right,
        focal=cam.focal, cx=cam.cx, cy=cam.cy, baseline=cam.baseline, width=cam.width, height=cam.height,
        pose=None, domain=domain)


# --------------------------------------------------------------------------------------------------
# Public generator
# --------------------------------------------------------------------------------------------------


def generate_objects_sample(seed: int, width: int = 640, height: int = 480, domain: str = "objects",
                            min_disparity: float | None = None, max_disparity: float | None = None, *,
                            photometric: bool = True, photo_dir: str | Path | None = None) -> StereoSample:
    """Render one random FlyingThings-like stereo pair with exact ground truth.

    Args:
        seed: non-negative integer; the same arguments (and photo folder) give bit-identical arrays.
        width, height: image size in pixels (each >= 32).
        domain: a domain of ``DOMAINS`` whose ``generator`` is "objects".
        min_disparity, max_disparity: disparity range in pixels at this resolution; None uses the
            domain's defaults scaled by ``width / 640``. Requires ``0 < min < max < width``.
        photometric: False renders both views without gloss, black-level offsets, gain, gamma,
            vignetting, blur or noise (the view-independent appearance only).
        photo_dir: a folder of stereo pairs whose left images (``*_left.png``) are cropped for
            textures next to scikit-image's photographs (:func:`~.textures.load_photo_folder`;
            the development scenes are never read). For training data only.

    Returns:
        A ``StereoSample`` (``pose`` None) whose disparities all lie in ``[min, max]``.
    """
    seed = check_seed(seed)
    cfg = get_domain(domain)
    if cfg.generator != "objects":
        raise ValueError(f"domain: expected a domain of the objects generator, got {domain!r} ({cfg.generator})")
    cam = make_camera(cfg, width, height, min_disparity, max_disparity)
    photos = skimage_photos()
    if photo_dir is not None:
        photos = photos + load_photo_folder(photo_dir)
    rng = np.random.default_rng([seed, _TAG_OBJECTS])
    scene = build_object_scene(rng, cfg, cam, photos)
    params = sample_photometric(rng, cfg) if photometric else None
    offsets = tuple(float(x) for x in rng.uniform(-_OFFSET_RANGE, _OFFSET_RANGE, 2)) if photometric else (0.0, 0.0)
    return render_object_scene(scene, cam, photometric=params, offsets=offsets, gloss=photometric, noise_rng=rng,
                               domain=cfg.name)
