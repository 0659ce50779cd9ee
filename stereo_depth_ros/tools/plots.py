"""Small figures drawn with OpenCV only (no plotting dependency): line plots and cloud renders."""

from __future__ import annotations

from typing import Sequence

import cv2
import numpy as np

__all__ = ["line_plot", "render_cloud"]

_COLOURS = [(46, 125, 232), (80, 175, 76), (60, 60, 220), (180, 119, 31), (128, 0, 128)]  # BGR


def line_plot(series: dict[str, Sequence[float]], title: str, ylabel: str, size: tuple[int, int] = (900, 420)) -> np.ndarray:
    """A BGR image of one line per series (x = index), with axes, ticks and a legend."""
    width, height = size
    image = np.full((height, width, 3), 255, np.uint8)
    left, right, top, bottom = 70, 20, 40, 45
    values = [np.asarray(v, dtype=float) for v in series.values()]
    finite = np.concatenate([v[np.isfinite(v)] for v in values]) if values else np.array([])
    lo, hi = (0.0, 1.0) if finite.size == 0 else (0.0, float(np.percentile(finite, 99)) * 1.1 or 1.0)
    n = max((len(v) for v in values), default=1)
    to_px = lambda i, y: (int(left + (width - left - right) * i / max(n - 1, 1)),  # noqa: E731
                          int(height - bottom - (height - top - bottom) * (min(y, hi) - lo) / (hi - lo)))
    cv2.rectangle(image, (left, top), (width - right, height - bottom), (0, 0, 0), 1)
    for k in range(6):
        y = lo + (hi - lo) * k / 5
        _, py = to_px(0, y)
        cv2.line(image, (left - 4, py), (left, py), (0, 0, 0), 1)
        cv2.putText(image, f"{y:.2f}", (5, py + 4), cv2.FONT_HERSHEY_SIMPLEX, 0.4, (0, 0, 0), 1, cv2.LINE_AA)
    for k in range(6):
        i = (n - 1) * k / 5
        px, _ = to_px(i, lo)
        cv2.putText(image, f"{int(round(i))}", (px - 8, height - bottom + 18), cv2.FONT_HERSHEY_SIMPLEX, 0.4, (0, 0, 0), 1, cv2.LINE_AA)
    cv2.putText(image, "frame", (width // 2 - 20, height - 8), cv2.FONT_HERSHEY_SIMPLEX, 0.45, (0, 0, 0), 1, cv2.LINE_AA)
    cv2.putText(image, f"{title} ({ylabel})", (left, 25), cv2.FONT_HERSHEY_SIMPLEX, 0.55, (0, 0, 0), 1, cv2.LINE_AA)
    lines: list[tuple[int, int]] = []  # every plotted pixel, for placing the legend
    for k, (name, v) in enumerate(zip(series, values)):
        colour = _COLOURS[k % len(_COLOURS)]
        points = [to_px(i, y) for i, y in enumerate(v) if np.isfinite(y)]
        if len(points) > 1:
            cv2.polylines(image, [np.array(points, np.int32)], False, colour, 2, cv2.LINE_AA)
        for (xa, ya), (xb, yb) in zip(points, points[1:]):  # the segments too, not only the vertices
            steps = max(abs(xb - xa), abs(yb - ya), 1)
            lines.extend(zip(np.linspace(xa, xb, steps + 1).round().astype(int).tolist(),
                             np.linspace(ya, yb, steps + 1).round().astype(int).tolist()))
        lines.extend(points)  # (a series of one point has no segment)
    _legend(image, list(series), (left, top, width - right, height - bottom), lines)
    return image


def _legend(image: np.ndarray, names: list[str], plot_box: tuple[int, int, int, int],
            points: list[tuple[int, int]]) -> None:
    """A boxed legend (a swatch and a name per series) in the plot corner that covers the fewest
    plotted points, drawn over the lines so that every name stays readable."""
    if not names:
        return
    font, scale, row = cv2.FONT_HERSHEY_SIMPLEX, 0.5, 18
    text_width = max(cv2.getTextSize(name, font, scale, 1)[0][0] for name in names)
    box_w, box_h = text_width + 44, row * len(names) + 8
    x0, y0, x1, y1 = plot_box
    corners = [(x1 - box_w - 6, y0 + 6), (x0 + 6, y0 + 6), (x1 - box_w - 6, y1 - box_h - 6), (x0 + 6, y1 - box_h - 6)]
    xy = np.asarray(points, dtype=np.int64).reshape(-1, 2)

    def covered(corner: tuple[int, int]) -> int:
        cx, cy = corner
        return int(np.count_nonzero((xy[:, 0] >= cx) & (xy[:, 0] <= cx + box_w) & (xy[:, 1] >= cy) & (xy[:, 1] <= cy + box_h)))

    bx, by = min(corners, key=covered)  # ties keep the first: top right
    cv2.rectangle(image, (bx, by), (bx + box_w, by + box_h), (255, 255, 255), -1)
    cv2.rectangle(image, (bx, by), (bx + box_w, by + box_h), (160, 160, 160), 1)
    for k, name in enumerate(names):
        colour = _COLOURS[k % len(_COLOURS)]
        y = by + 4 + row * k + row // 2
        cv2.line(image, (bx + 8, y), (bx + 30, y), colour, 2, cv2.LINE_AA)
        cv2.putText(image, name, (bx + 36, y + 5), font, scale, colour, 1, cv2.LINE_AA)


def render_cloud(points: np.ndarray, colours: np.ndarray, size: tuple[int, int] = (640, 480), yaw_deg: float = 25.0,
                 pitch_deg: float = 15.0) -> np.ndarray:
    """Render ``(N, 3)`` points (optical frame, metres) with ``(N, 3)`` uint8 RGB colours, seen from
    the camera orbited by ``yaw``/``pitch`` about the cloud's median point and fitted to the canvas;
    nearest point wins per pixel (2x2 splats)."""
    width, height = size
    image = np.full((height, width, 3), 30, np.uint8)
    keep = np.isfinite(points).all(axis=1)
    points, colours = points[keep], colours[keep]
    if len(points) == 0:
        return image
    centre = np.median(points, axis=0)
    yaw, pitch = np.radians(yaw_deg), np.radians(pitch_deg)
    ry = np.array([[np.cos(yaw), 0, np.sin(yaw)], [0, 1, 0], [-np.sin(yaw), 0, np.cos(yaw)]])
    rx = np.array([[1, 0, 0], [0, np.cos(pitch), -np.sin(pitch)], [0, np.sin(pitch), np.cos(pitch)]])
    view = (points - centre) @ (rx @ ry).T + np.array([0.0, 0.0, float(centre[2])])
    front = view[:, 2] > 1e-3
    view, colours = view[front], colours[front]
    x, y = view[:, 0] / view[:, 2], view[:, 1] / view[:, 2]
    (x0, x1), (y0, y1) = np.percentile(x, [1, 99]), np.percentile(y, [1, 99])
    scale = 0.9 * min(width / max(x1 - x0, 1e-6), height / max(y1 - y0, 1e-6))
    u = ((x - (x0 + x1) / 2) * scale + width / 2).astype(int)
    v = ((y - (y0 + y1) / 2) * scale + height / 2).astype(int)
    order = np.argsort(-view[:, 2])  # far first, near overwrite
    for du in (0, 1):
        for dv in (0, 1):
            uu, vv = u[order] + du, v[order] + dv
            inside = (uu >= 0) & (uu < width) & (vv >= 0) & (vv < height)
            image[vv[inside], uu[inside]] = colours[order][inside][:, ::-1]
    return image
