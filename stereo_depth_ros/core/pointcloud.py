"""Point clouds from depth: organised numpy arrays, Open3D conversion, filtering and ICP.

Organised arrays keep the image layout (``(H, W, 3)`` XYZ in metres, NaN where invalid) like an
organised ``sensor_msgs/PointCloud2``. Open3D is imported lazily: it is only needed for the
functions that return or take Open3D clouds.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

if TYPE_CHECKING:  # pragma: no cover
    import open3d

__all__ = [
    "open3d_module",
    "depth_to_points",
    "pack_rgb",
    "unpack_rgb",
    "organized_xyzrgb",
    "organized_xyzrgb_tensor",
    "as_xyzrgb_points",
    "to_open3d",
    "from_open3d",
    "voxel_downsample",
    "remove_outliers",
    "IcpResult",
    "icp_residual",
]


def open3d_module() -> Any:
    """The ``open3d`` module (imported on first use, which takes about half a second); ImportError
    with the fix when it cannot be imported."""
    return _open3d()


def _open3d() -> Any:
    try:
        import open3d as o3d
    except ImportError as exc:  # libusb missing is the usual cause on a bare Debian machine
        raise ImportError(
            f"open3d is required for this function but could not be imported ({exc}); "
            "install open3d-cpu==0.20.0 and Debian's libusb-1.0-0"
        ) from exc
    return o3d


def _check_depth(depth: Any) -> np.ndarray:
    if hasattr(depth, "detach"):  # torch tensor
        depth = depth.detach().cpu().numpy()
    if not isinstance(depth, np.ndarray) or depth.ndim != 2:
        got = f"array of shape {depth.shape}" if isinstance(depth, np.ndarray) else type(depth).__name__
        raise ValueError(f"depth: expected a (H, W) array in metres, got {got}")
    if not np.issubdtype(depth.dtype, np.floating):
        raise ValueError(f"depth: expected a floating-point array, got dtype {depth.dtype}")
    return depth


def _check_K(K: Any) -> np.ndarray:
    if hasattr(K, "detach"):
        K = K.detach().cpu().numpy()
    K = np.asarray(K, dtype=np.float64)
    if K.shape != (3, 3):
        raise ValueError(f"K: expected a (3, 3) matrix, got shape {K.shape}")
    if not (K[0, 0] > 0 and K[1, 1] > 0):
        raise ValueError(f"K: expected positive focal lengths, got fx={K[0, 0]}, fy={K[1, 1]}")
    return K


def depth_to_points(depth: np.ndarray, K: np.ndarray) -> np.ndarray:
    """Organised XYZ from depth: ``X = (u - cx) Z / fx``, ``Y = (v - cy) Z / fy``.

    Args:
        depth: ``(H, W)`` depth in metres; NaN, inf or ``<= 0`` is invalid.
        K: ``(3, 3)`` intrinsics (zero skew).

    Returns:
        ``(H, W, 3)`` float32 points in the camera frame, metres; NaN rows where invalid.
    """
    depth = _check_depth(depth)
    K = _check_K(K)
    height, width = depth.shape
    z = depth.astype(np.float32, copy=False)
    valid = np.isfinite(z) & (z > 0)
    z = np.where(valid, z, np.float32(np.nan))
    ray_x, ray_y = _rays(K, height, width)
    return np.stack([z * ray_x[None, :], z * ray_y[:, None], z], axis=-1)


def _rays(K: np.ndarray, height: int, width: int) -> tuple[np.ndarray, np.ndarray]:
    """float32 ``(u - cx) / fx`` ``(W,)`` and ``(v - cy) / fy`` ``(H,)``: X = Z ray_x, Y = Z ray_y."""
    ray_x = (np.arange(width, dtype=np.float32) - np.float32(K[0, 2])) / np.float32(K[0, 0])
    ray_y = (np.arange(height, dtype=np.float32) - np.float32(K[1, 2])) / np.float32(K[1, 1])
    return ray_x, ray_y


def pack_rgb(rgb: np.ndarray) -> np.ndarray:
    """Pack ``(..., 3)`` uint8 RGB into float32 ``(r << 16) | (g << 8) | b`` (the PCL/ROS layout)."""
    rgb = np.asarray(rgb)
    if rgb.shape[-1:] != (3,) or rgb.dtype != np.uint8:
        raise ValueError(f"rgb: expected a (..., 3) uint8 array, got shape {rgb.shape} dtype {rgb.dtype}")
    packed = (rgb[..., 0].astype(np.uint32) << 16) | (rgb[..., 1].astype(np.uint32) << 8) | rgb[..., 2].astype(np.uint32)
    return packed.view(np.float32)


def unpack_rgb(packed: np.ndarray) -> np.ndarray:
    """Inverse of :func:`pack_rgb`: float32 ``(...)`` -> uint8 ``(..., 3)``."""
    packed = np.asarray(packed)
    if packed.dtype != np.float32:
        raise ValueError(f"packed: expected a float32 array, got dtype {packed.dtype}")
    bits = packed.view(np.uint32)
    return np.stack([(bits >> 16) & 0xFF, (bits >> 8) & 0xFF, bits & 0xFF], axis=-1).astype(np.uint8)


def organized_xyzrgb(depth: np.ndarray, K: np.ndarray, rgb: np.ndarray | None = None) -> np.ndarray:
    """Organised XYZRGB as a structured array, the memory layout of our PointCloud2.

    Args:
        depth: ``(H, W)`` depth in metres (invalid -> NaN point).
        K: ``(3, 3)`` intrinsics.
        rgb: ``(H, W, 3)`` uint8 colours (grey if None).

    Returns:
        ``(H, W)`` structured array with float32 fields ``x, y, z, rgb`` (16 bytes per point).
    """
    depth = _check_depth(depth)
    K = _check_K(K)
    height, width = depth.shape
    if rgb is not None:
        rgb = np.asarray(rgb)
        if rgb.shape != (height, width, 3) or rgb.dtype != np.uint8:
            raise ValueError(f"rgb: expected a ({height}, {width}, 3) uint8 array, got shape {rgb.shape} dtype {rgb.dtype}")
    # Written field by field into one (H, W, 4) float32 buffer that is then viewed as the
    # structured points: no temporary XYZ array (this runs per frame in the node).
    out = np.empty((height, width, 4), dtype=np.float32)
    z = out[..., 2]
    z[...] = depth
    np.copyto(z, np.float32(np.nan), where=~((depth > 0) & (depth < np.inf)))  # NaN compares False
    ray_x, ray_y = _rays(K, height, width)
    np.multiply(z, ray_x[None, :], out=out[..., 0])
    np.multiply(z, ray_y[:, None], out=out[..., 1])
    colour = out[..., 3].view(np.uint32)
    if rgb is None:
        colour[...] = (128 << 16) | (128 << 8) | 128
    elif sys.byteorder != "little":
        colour[...] = pack_rgb(rgb).view(np.uint32)
    else:
        # Little-endian bytes b, g, r, 0 of each word are (r << 16) | (g << 8) | b.
        colour_bytes = out[..., 3:].view(np.uint8)
        colour_bytes[..., 0], colour_bytes[..., 1], colour_bytes[..., 2] = rgb[..., 2], rgb[..., 1], rgb[..., 0]
        colour_bytes[..., 3] = 0
    return out.view(_XYZRGB)[..., 0]


_XYZRGB = np.dtype({"names": ["x", "y", "z", "rgb"], "formats": ["<f4"] * 4, "offsets": [0, 4, 8, 12], "itemsize": 16})


def organized_xyzrgb_tensor(depth: torch.Tensor, K: Any, rgb: torch.Tensor | None = None) -> torch.Tensor:
    """:func:`organized_xyzrgb` in torch, on the depth's device (the node's GPU path).

    The same float32 arithmetic as the numpy version, so the two agree bit for bit; the result goes
    to the host in one copy and :func:`as_xyzrgb_points` views it as the structured points.

    Args:
        depth: ``(H, W)`` depth in metres (not positive, infinite or NaN -> NaN point).
        K: ``(3, 3)`` intrinsics (array-like).
        rgb: ``(H, W, 3)`` uint8 colours on the same device (grey if None).

    Returns:
        ``(H, W, 4)`` float32: x, y, z (metres) and the packed ``(r << 16) | (g << 8) | b`` colour bits.
    """
    if not isinstance(depth, torch.Tensor) or depth.ndim != 2 or not depth.is_floating_point():
        got = f"shape {tuple(depth.shape)} dtype {depth.dtype}" if isinstance(depth, torch.Tensor) else type(depth).__name__
        raise ValueError(f"depth: expected an (H, W) floating-point tensor, got {got}")
    K = _check_K(K)
    height, width = depth.shape
    if rgb is not None and (not isinstance(rgb, torch.Tensor) or tuple(rgb.shape) != (height, width, 3)
                            or rgb.dtype != torch.uint8 or rgb.device != depth.device):
        got = f"shape {tuple(rgb.shape)} dtype {rgb.dtype} on {rgb.device}" if isinstance(rgb, torch.Tensor) else type(rgb).__name__
        raise ValueError(f"rgb: expected a ({height}, {width}, 3) uint8 tensor on {depth.device}, got {got}")
    z = depth.float()
    z = torch.where((z > 0) & (z < float("inf")), z, torch.full_like(z, float("nan")))
    # The rays of _rays() made on the device: arange, then float32 tensor ops (a division by a Python
    # scalar may run as a multiplication by its reciprocal, which would not match numpy's bits), and
    # no host->device copy, so this also runs inside a CUDA graph capture.
    def ray(n: int, centre: float, focal: float) -> torch.Tensor:
        full = lambda v: torch.full((), float(np.float32(v)), dtype=torch.float32, device=depth.device)  # noqa: E731
        return (torch.arange(n, dtype=torch.float32, device=depth.device) - full(centre)) / full(focal)

    ray_x, ray_y = ray(width, K[0, 2], K[0, 0]), ray(height, K[1, 2], K[1, 1])
    if rgb is None:
        bits = torch.full((height, width), (128 << 16) | (128 << 8) | 128, dtype=torch.int32, device=depth.device)
    else:
        c = rgb.to(torch.int32)
        bits = (c[..., 0] << 16) | (c[..., 1] << 8) | c[..., 2]
    return torch.stack([z * ray_x[None, :], z * ray_y[:, None], z, bits.view(torch.float32)], dim=-1)


def as_xyzrgb_points(array: np.ndarray) -> np.ndarray:
    """View an ``(H, W, 4)`` float32 array (:func:`organized_xyzrgb_tensor` on the host) as the
    ``(H, W)`` structured points of :func:`organized_xyzrgb`; no copy."""
    array = np.asarray(array)
    if array.ndim != 3 or array.shape[-1] != 4 or array.dtype != np.float32 or not array.flags.c_contiguous:
        raise ValueError(f"array: expected a C-contiguous (H, W, 4) float32 array, got shape {array.shape} dtype {array.dtype}")
    return array.view(_XYZRGB)[..., 0]


def to_open3d(points: np.ndarray, colors: np.ndarray | None = None) -> "open3d.geometry.PointCloud":
    """An Open3D cloud from ``(N, 3)`` or organised ``(H, W, 3)`` points; NaN/inf points are dropped.

    Args:
        points: ``(N, 3)`` or ``(H, W, 3)`` metres.
        colors: matching ``(..., 3)`` uint8 (0-255) or float (0-1) colours, optional.
    """
    o3d = _open3d()
    points = np.asarray(points)
    if points.shape[-1:] != (3,) or points.ndim not in (2, 3):
        raise ValueError(f"points: expected (N, 3) or (H, W, 3), got shape {points.shape}")
    flat = points.reshape(-1, 3).astype(np.float64)
    keep = np.isfinite(flat).all(axis=1)
    cloud = o3d.geometry.PointCloud(o3d.utility.Vector3dVector(flat[keep]))
    if colors is not None:
        colors = np.asarray(colors)
        if colors.shape != points.shape:
            raise ValueError(f"colors: expected shape {points.shape} like points, got {colors.shape}")
        c = colors.reshape(-1, 3)[keep].astype(np.float64)
        if np.issubdtype(colors.dtype, np.integer):
            c = c / 255.0
        cloud.colors = o3d.utility.Vector3dVector(np.clip(c, 0.0, 1.0))
    return cloud


def from_open3d(cloud: "open3d.geometry.PointCloud") -> tuple[np.ndarray, np.ndarray | None]:
    """``(points (N, 3) float32, colors (N, 3) uint8 or None)`` from an Open3D cloud."""
    o3d = _open3d()
    if not isinstance(cloud, o3d.geometry.PointCloud):
        raise ValueError(f"cloud: expected an open3d.geometry.PointCloud, got {type(cloud).__name__}")
    points = np.asarray(cloud.points, dtype=np.float32)
    colors = None
    if cloud.has_colors():
        colors = np.clip(np.round(np.asarray(cloud.colors) * 255.0), 0, 255).astype(np.uint8)
    return points, colors


def voxel_downsample(cloud: "open3d.geometry.PointCloud", voxel_size: float) -> "open3d.geometry.PointCloud":
    """Average the points in each ``voxel_size`` (metres) cube."""
    if not float(voxel_size) > 0:
        raise ValueError(f"voxel_size: expected a positive size in metres, got {voxel_size}")
    return cloud.voxel_down_sample(float(voxel_size))


def remove_outliers(
    cloud: "open3d.geometry.PointCloud", neighbours: int = 20, std_ratio: float = 2.0
) -> "open3d.geometry.PointCloud":
    """Statistical outlier removal: drop points whose mean neighbour distance is beyond
    ``mean + std_ratio * std`` over ``neighbours`` nearest neighbours."""
    if int(neighbours) < 1:
        raise ValueError(f"neighbours: expected at least 1, got {neighbours}")
    if not float(std_ratio) > 0:
        raise ValueError(f"std_ratio: expected a positive number, got {std_ratio}")
    filtered, _ = cloud.remove_statistical_outlier(nb_neighbors=int(neighbours), std_ratio=float(std_ratio))
    return filtered


@dataclass(frozen=True)
class IcpResult:
    """Outcome of :func:`icp_residual`.

    Attributes:
        transformation: ``(4, 4)`` float64 ``target_T_source`` that aligns source onto target.
        rmse: inlier RMSE in metres after alignment (the 3D consistency figure).
        fitness: fraction of source points with a correspondence within the distance.
        num_points: number of source points used.
    """

    transformation: np.ndarray
    rmse: float
    fitness: float
    num_points: int


def icp_residual(
    source: np.ndarray | "open3d.geometry.PointCloud",
    target: np.ndarray | "open3d.geometry.PointCloud",
    max_correspondence_distance: float = 0.05,
    num_samples: int | None = 1000,
    init: np.ndarray | None = None,
    seed: int = 0,
    max_iterations: int = 50,
) -> IcpResult:
    """Point-to-point ICP between two clouds; its residual is a 3D consistency measure.

    Args:
        source, target: ``(N, 3)`` / ``(H, W, 3)`` arrays (NaN dropped) or Open3D clouds.
        max_correspondence_distance: metres.
        num_samples: random subset of source points to align (None = all), e.g. ~1000 for speed.
        init: ``(4, 4)`` initial ``target_T_source`` (identity by default).
        seed: seed of the sub-sampling.
        max_iterations: ICP iterations.

    Returns:
        :class:`IcpResult` (rmse NaN and fitness 0 when nothing corresponds).
    """
    o3d = _open3d()
    if not float(max_correspondence_distance) > 0:
        raise ValueError(f"max_correspondence_distance: expected a positive distance in metres, got {max_correspondence_distance}")
    src = source if isinstance(source, o3d.geometry.PointCloud) else to_open3d(source)
    tgt = target if isinstance(target, o3d.geometry.PointCloud) else to_open3d(target)
    if len(src.points) == 0 or len(tgt.points) == 0:
        raise ValueError(f"icp_residual: expected non-empty clouds, got {len(src.points)} source and {len(tgt.points)} target points")
    if num_samples is not None and len(src.points) > num_samples:
        rng = np.random.default_rng(seed)
        idx = np.sort(rng.choice(len(src.points), size=int(num_samples), replace=False))
        src = src.select_by_index(idx.tolist())
    init_T = np.eye(4) if init is None else np.asarray(init, dtype=np.float64)
    if init_T.shape != (4, 4):
        raise ValueError(f"init: expected a (4, 4) transform, got shape {init_T.shape}")
    result = o3d.pipelines.registration.registration_icp(
        src,
        tgt,
        float(max_correspondence_distance),
        init_T,
        o3d.pipelines.registration.TransformationEstimationPointToPoint(),
        o3d.pipelines.registration.ICPConvergenceCriteria(max_iteration=int(max_iterations)),
    )
    rmse = float(result.inlier_rmse) if result.fitness > 0 else float("nan")
    return IcpResult(
        transformation=np.asarray(result.transformation).copy(),
        rmse=rmse,
        fitness=float(result.fitness),
        num_points=len(src.points),
    )
