"""Multi-view geometry: disparity <-> depth, backprojection, projection and SE(3).

Conventions (REP 103 optical frame): x right, y down, z forward; metres; pixel ``(u, v)`` with
``u`` along the width; pixel centres at integer coordinates. A transform ``b_T_a`` (``(B, 4, 4)``)
maps points expressed in frame ``a`` into frame ``b``. Twists ``xi`` are ``(B, 6)`` =
``(v_x, v_y, v_z, w_x, w_y, w_z)``: translation part first, rotation (axis-angle) second.
"""

from __future__ import annotations

import math

import torch

from .checks import check_intrinsics, check_tensor, check_transform

__all__ = [
    "disparity_to_depth",
    "depth_to_disparity",
    "pixel_grid",
    "backproject",
    "project",
    "transform_points",
    "so3_exp",
    "so3_log",
    "se3_exp",
    "se3_log",
    "se3_compose",
    "se3_inverse",
    "stereo_transform",
]

_SMALL_ANGLE = 1e-4  # below this angle (rad) Taylor expansions replace divisions by the angle
_SERIES_ANGLE = 0.1  # below this angle (rad) series replace closed forms that cancel


def _per_batch(value: float | torch.Tensor, ref: torch.Tensor, name: str) -> torch.Tensor:
    """A positive scalar or ``(B,)`` tensor as ``(B, 1, 1, 1)`` on ``ref``'s device and dtype."""
    batch = ref.shape[0]
    if isinstance(value, torch.Tensor):
        if value.dim() > 1 or (value.dim() == 1 and value.shape[0] not in (1, batch)):
            raise ValueError(f"{name}: expected a scalar or a tensor of shape ({batch},), got {tuple(value.shape)}")
        t = value.to(device=ref.device, dtype=ref.dtype).reshape(-1, 1, 1, 1)
    else:
        # A number is checked on the host and filled in on the device: no host<->device copy or
        # synchronisation, so this also runs inside a CUDA graph capture (the node's frame graph).
        try:
            number = float(value)
        except (TypeError, ValueError):
            raise ValueError(f"{name}: expected a number or a tensor, got {type(value).__name__}") from None
        if not (math.isfinite(number) and number > 0):
            raise ValueError(f"{name}: expected finite positive values, got [{number}]")
        return torch.full((1, 1, 1, 1), number, device=ref.device, dtype=ref.dtype).expand(batch, 1, 1, 1)
    if not bool(torch.isfinite(t).all()) or bool((t <= 0).any()):
        raise ValueError(f"{name}: expected finite positive values, got {t.flatten().tolist()}")
    return t.expand(batch, 1, 1, 1)


def disparity_to_depth(
    disparity: torch.Tensor,
    focal: float | torch.Tensor,
    baseline: float | torch.Tensor,
    invalid_value: float = 0.0,
) -> torch.Tensor:
    """Depth ``Z = f * B / d`` from disparity.

    Args:
        disparity: ``(B, 1, H, W)`` disparity in pixels.
        focal: rectified focal length ``fx`` in pixels, a number or ``(B,)``.
        baseline: stereo baseline in metres, a number or ``(B,)``.
        invalid_value: depth written where ``d <= 0`` or ``d`` is not finite (0 or NaN, say).

    Returns:
        ``(B, 1, H, W)`` depth in metres. Gradients are finite everywhere (safe denominator).
    """
    check_tensor(disparity, "disparity", ("B", 1, "H", "W"))
    scale = _per_batch(focal, disparity, "focal") * _per_batch(baseline, disparity, "baseline")
    valid = torch.isfinite(disparity) & (disparity > 0)
    safe = torch.where(valid, disparity, torch.ones_like(disparity))
    return torch.where(valid, scale / safe, torch.full_like(disparity, invalid_value))


def depth_to_disparity(
    depth: torch.Tensor,
    focal: float | torch.Tensor,
    baseline: float | torch.Tensor,
    invalid_value: float = 0.0,
) -> torch.Tensor:
    """Disparity ``d = f * B / Z`` from depth; ``invalid_value`` where ``Z <= 0`` or not finite.

    Args:
        depth: ``(B, 1, H, W)`` depth in metres.
        focal: ``fx`` in pixels, a number or ``(B,)``.
        baseline: metres, a number or ``(B,)``.

    Returns:
        ``(B, 1, H, W)`` disparity in pixels.
    """
    check_tensor(depth, "depth", ("B", 1, "H", "W"))
    return disparity_to_depth(depth, focal, baseline, invalid_value)  # the same map: x -> fB / x


def pixel_grid(
    height: int, width: int, device: torch.device | str | None = None, dtype: torch.dtype = torch.float32
) -> torch.Tensor:
    """Homogeneous pixel coordinates ``(1, 3, H, W)``: rows ``u`` (0..W-1), ``v`` (0..H-1), ``1``."""
    if height <= 0 or width <= 0:
        raise ValueError(f"pixel_grid: expected a positive size, got {height}x{width}")
    v, u = torch.meshgrid(
        torch.arange(height, device=device, dtype=dtype), torch.arange(width, device=device, dtype=dtype), indexing="ij"
    )
    return torch.stack([u, v, torch.ones_like(u)], dim=0).unsqueeze(0)


def backproject(depth: torch.Tensor, K: torch.Tensor) -> torch.Tensor:
    """Back-project every pixel to a 3D point: ``X = Z * K^-1 [u, v, 1]^T``.

    Args:
        depth: ``(B, 1, H, W)`` depth (z) in metres.
        K: ``(3, 3)`` or ``(B, 3, 3)`` intrinsics.

    Returns:
        ``(B, 3, H, W)`` points in the camera frame, metres.
    """
    check_tensor(depth, "depth", ("B", 1, "H", "W"))
    batch, _, height, width = depth.shape
    K = check_intrinsics(K, batch).to(depth.dtype)
    pix = pixel_grid(height, width, depth.device, depth.dtype).reshape(1, 3, -1)
    rays = torch.linalg.solve(K, pix.expand(batch, 3, -1))  # (B, 3, H*W), z = 1
    return rays.reshape(batch, 3, height, width) * depth


def project(points: torch.Tensor, K: torch.Tensor, eps: float = 1e-6) -> torch.Tensor:
    """Project 3D points to pixels: ``(u, v) = (K X)_{xy} / Z``.

    Division is safe and sign-preserving: ``|Z|`` is clamped to ``eps`` keeping its sign, so points
    behind the camera stay on the far side rather than flipping through infinity.

    Args:
        points: ``(B, 3, *)`` points in the camera frame, metres (e.g. ``(B, 3, H, W)``).
        K: ``(3, 3)`` or ``(B, 3, 3)`` intrinsics.

    Returns:
        ``(B, 2, *)`` pixel coordinates ``(u, v)``.
    """
    if not isinstance(points, torch.Tensor) or points.dim() < 3 or points.shape[1] != 3:
        got = tuple(points.shape) if isinstance(points, torch.Tensor) else type(points).__name__
        raise ValueError(f"points: expected a tensor of shape (B, 3, *), got {got}")
    if not points.is_floating_point():
        raise ValueError(f"points: expected a floating-point tensor, got dtype {points.dtype}")
    batch = points.shape[0]
    K = check_intrinsics(K, batch).to(points.dtype)
    flat = points.reshape(batch, 3, -1)
    cam = K @ flat
    z = cam[:, 2:3]
    sign = torch.where(z < 0, -torch.ones_like(z), torch.ones_like(z))
    z_safe = sign * z.abs().clamp(min=eps)
    uv = cam[:, :2] / z_safe
    return uv.reshape(batch, 2, *points.shape[2:])


def transform_points(b_T_a: torch.Tensor, points_a: torch.Tensor) -> torch.Tensor:
    """Apply a rigid transform: ``X_b = R X_a + t``.

    Args:
        b_T_a: ``(B, 4, 4)`` (or ``(4, 4)``) transform from frame ``a`` to frame ``b``.
        points_a: ``(B, 3, *)`` points in frame ``a``.

    Returns:
        ``(B, 3, *)`` points in frame ``b``.
    """
    if not isinstance(points_a, torch.Tensor) or points_a.dim() < 3 or points_a.shape[1] != 3:
        got = tuple(points_a.shape) if isinstance(points_a, torch.Tensor) else type(points_a).__name__
        raise ValueError(f"points_a: expected a tensor of shape (B, 3, *), got {got}")
    T = check_transform(b_T_a, "b_T_a", points_a.shape[0]).to(points_a.dtype)
    flat = points_a.reshape(points_a.shape[0], 3, -1)
    out = T[:, :3, :3] @ flat + T[:, :3, 3:]
    return out.reshape(points_a.shape)


def _hat(w: torch.Tensor) -> torch.Tensor:
    """``(B, 3)`` -> skew-symmetric ``(B, 3, 3)``."""
    zero = torch.zeros_like(w[:, 0])
    return torch.stack(
        [
            torch.stack([zero, -w[:, 2], w[:, 1]], -1),
            torch.stack([w[:, 2], zero, -w[:, 0]], -1),
            torch.stack([-w[:, 1], w[:, 0], zero], -1),
        ],
        dim=1,
    )


def _angle_coefficients(theta2: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``A = sin t / t``, ``B = (1 - cos t) / t^2``, ``C = (t - sin t) / t^3`` from ``t^2``.

    ``B`` uses the half-angle form ``2 sin^2(t/2) / t^2`` (no cancellation); ``C`` switches to its
    Taylor series below ``t = 0.1`` where ``t - sin t`` cancels; every branch has finite gradients.
    """
    small = theta2 < _SMALL_ANGLE**2
    theta_safe = torch.where(small, torch.ones_like(theta2), theta2).sqrt()
    a = torch.where(small, 1 - theta2 / 6 + theta2**2 / 120, torch.sin(theta_safe) / theta_safe)
    half_sin = torch.sin(theta_safe / 2)
    b = torch.where(small, 0.5 - theta2 / 24 + theta2**2 / 720, 2 * half_sin * half_sin / (theta_safe * theta_safe))
    series = theta2 < _SERIES_ANGLE**2
    theta_c = torch.where(series, torch.ones_like(theta2), theta2).sqrt()
    c = torch.where(
        series,
        1 / 6 - theta2 / 120 + theta2**2 / 5040 - theta2**3 / 362880,
        (theta_c - torch.sin(theta_c)) / (theta_c**3),
    )
    return a, b, c


def so3_exp(w: torch.Tensor) -> torch.Tensor:
    """Rotation matrices ``(B, 3, 3)`` from axis-angle vectors ``(B, 3)`` (radians), Rodrigues."""
    check_tensor(w, "w", ("B", 3))
    a, b, _ = _angle_coefficients((w * w).sum(-1))
    W = _hat(w)
    eye = torch.eye(3, dtype=w.dtype, device=w.device).expand_as(W)
    return eye + a[:, None, None] * W + b[:, None, None] * (W @ W)


def so3_log(R: torch.Tensor) -> torch.Tensor:
    """Axis-angle vectors ``(B, 3)`` from rotation matrices ``(B, 3, 3)``; angles in ``[0, pi]``.

    Stable at tiny angles (Taylor) and near ``pi`` (axis from the symmetric part ``(R + R^T)/2``,
    its sign from the skew part).
    """
    check_tensor(R, "R", ("B", 3, 3))
    trace = R[:, 0, 0] + R[:, 1, 1] + R[:, 2, 2]
    cos = ((trace - 1) / 2).clamp(-1.0, 1.0)
    s = 0.5 * torch.stack([R[:, 2, 1] - R[:, 1, 2], R[:, 0, 2] - R[:, 2, 0], R[:, 1, 0] - R[:, 0, 1]], -1)
    sin = s.norm(dim=-1)
    theta = torch.atan2(sin, cos)

    # Regular and small angles: w = theta / sin(theta) * s.
    small = theta < _SMALL_ANGLE
    sin_safe = torch.where(small, torch.ones_like(sin), sin)
    factor = torch.where(small, 1 + theta**2 / 6 + 7 * theta**4 / 360, theta / sin_safe)
    w_regular = factor[:, None] * s

    # Near pi: (R + R^T)/2 - cos I = (1 - cos) n n^T; take the column with the largest diagonal.
    near_pi = cos < -0.9
    sym = 0.5 * (R + R.transpose(1, 2)) - cos[:, None, None] * torch.eye(3, dtype=R.dtype, device=R.device)
    diag = torch.diagonal(sym, dim1=1, dim2=2)
    k = diag.argmax(dim=-1)
    col = torch.gather(sym, 2, k[:, None, None].expand(-1, 3, 1)).squeeze(-1)  # (B, 3) = (1-cos) n_k n
    col_norm = col.norm(dim=-1, keepdim=True).clamp(min=1e-30)
    n = col / col_norm
    sign = torch.where((n * s).sum(-1, keepdim=True) < 0, -torch.ones_like(theta[:, None]), torch.ones_like(theta[:, None]))
    w_pi = sign * n * theta[:, None]
    return torch.where(near_pi[:, None], w_pi, w_regular)


def se3_exp(xi: torch.Tensor) -> torch.Tensor:
    """Transforms ``(B, 4, 4)`` from twists ``(B, 6)`` = ``(v, w)`` (metres, radians)."""
    check_tensor(xi, "xi", ("B", 6))
    v, w = xi[:, :3], xi[:, 3:]
    a, b, c = _angle_coefficients((w * w).sum(-1))
    W = _hat(w)
    W2 = W @ W
    eye = torch.eye(3, dtype=xi.dtype, device=xi.device).expand_as(W)
    R = eye + a[:, None, None] * W + b[:, None, None] * W2
    V = eye + b[:, None, None] * W + c[:, None, None] * W2
    t = (V @ v.unsqueeze(-1)).squeeze(-1)
    return _assemble(R, t)


def se3_log(T: torch.Tensor) -> torch.Tensor:
    """Twists ``(B, 6)`` = ``(v, w)`` from transforms ``(B, 4, 4)``; inverse of :func:`se3_exp`."""
    T = check_transform(T, "T")
    R, t = T[:, :3, :3], T[:, :3, 3]
    w = so3_log(R)
    theta2 = (w * w).sum(-1)
    # V^-1 = I - W/2 + coef W^2 with coef = (1 - (t/2) cot(t/2)) / t^2 (series below 0.1 rad).
    series = theta2 < _SERIES_ANGLE**2
    theta = torch.where(series, torch.ones_like(theta2), theta2).sqrt()
    half = theta / 2
    coef = torch.where(
        series,
        1 / 12 + theta2 / 720 + theta2**2 / 30240,
        (1 - half * torch.cos(half) / torch.sin(half)) / (theta * theta),
    )
    W = _hat(w)
    eye = torch.eye(3, dtype=T.dtype, device=T.device).expand_as(W)
    V_inv = eye - 0.5 * W + coef[:, None, None] * (W @ W)
    v = (V_inv @ t.unsqueeze(-1)).squeeze(-1)
    return torch.cat([v, w], dim=-1)


def _assemble(R: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    bottom = torch.zeros(R.shape[0], 1, 4, dtype=R.dtype, device=R.device)
    bottom[:, 0, 3] = 1
    return torch.cat([torch.cat([R, t.unsqueeze(-1)], dim=-1), bottom], dim=1)


def se3_compose(c_T_b: torch.Tensor, b_T_a: torch.Tensor) -> torch.Tensor:
    """``c_T_a = c_T_b @ b_T_a``, both ``(B, 4, 4)`` (or ``(4, 4)``)."""
    c_T_b = check_transform(c_T_b, "c_T_b")
    b_T_a = check_transform(b_T_a, "b_T_a")
    if c_T_b.shape[0] != b_T_a.shape[0] and 1 not in (c_T_b.shape[0], b_T_a.shape[0]):
        raise ValueError(f"se3_compose: batch sizes disagree: {c_T_b.shape[0]} vs {b_T_a.shape[0]}")
    R = c_T_b[:, :3, :3] @ b_T_a[:, :3, :3]
    t = (c_T_b[:, :3, :3] @ b_T_a[:, :3, 3:]).squeeze(-1) + c_T_b[:, :3, 3]
    return _assemble(R, t)


def se3_inverse(b_T_a: torch.Tensor) -> torch.Tensor:
    """``a_T_b`` from ``b_T_a`` (``(B, 4, 4)``), using ``R^T`` rather than a general inverse."""
    T = check_transform(b_T_a, "b_T_a")
    Rt = T[:, :3, :3].transpose(1, 2)
    t = -(Rt @ T[:, :3, 3:]).squeeze(-1)
    return _assemble(Rt, t)


def stereo_transform(
    baseline: float | torch.Tensor, batch: int = 1, dtype: torch.dtype = torch.float32, device: torch.device | str | None = None
) -> torch.Tensor:
    """``right_T_left`` of a rectified pair: a pure translation by ``-B`` along x, ``(B, 4, 4)``.

    A point ``X`` in the left camera frame is at ``X - (B, 0, 0)`` in the right camera frame.
    """
    if isinstance(baseline, torch.Tensor):
        b = baseline.to(dtype=dtype, device=device).reshape(-1)
    else:
        b = torch.tensor([float(baseline)], dtype=dtype, device=device)
    if not bool(torch.isfinite(b).all()) or bool((b <= 0).any()):
        raise ValueError(f"baseline: expected finite positive metres, got {b.tolist()}")
    b = b.expand(batch) if b.shape[0] == 1 else b
    T = torch.eye(4, dtype=dtype, device=device).repeat(b.shape[0], 1, 1)
    T[:, 0, 3] = -b
    return T
