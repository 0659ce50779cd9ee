"""Evaluate the stereo pipeline on a rosbag2, frame by frame.

    python -m stereo_depth_ros.tools.replay BAG --mode offline --output replay_report [--adaptation mad]

``offline``: runs the node's own per-frame pipeline (:func:`~stereo_depth_ros.core.pipeline.process_frame`)
on the bag's frames without a ROS graph, as fast as the machine allows, in three arms on the same
frames: the network with online adaptation, the frozen network, and OpenCV SGBM. Adaptation steps
run in line after each frame (deterministic). Per frame: EPE, bad-3, D1-all, density (disparity,
holes and invalid pixels count as errors) and AbsRel, RMSE, delta<1.25 (depth) when the bag has
ground-truth depth; otherwise the photometric error, density and time only. Summaries over the whole
sequence and over its first and last thirds (adaptation at work). Writes ``metrics.json``,
``metrics.csv``, ``report.md``, PNG figures (error over time per arm; the last frame's depth colour
map, reconstruction error and rendered point cloud) and the last frame's cloud as ``.ply``.

(The ``replay`` mode through a live node is not implemented yet.)
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from ..bags import BagError, StereoTopics, read_stereo_bag
from ..core.adaptation import AdaptationConfig, OnlineAdapter
from ..core.masks import ValidityConfig
from ..core.metrics import aggregate, evaluate_disparity
from ..core.network.estimator import image_to_tensor, prepare_for_inference
from ..core.network.weights import load_model
from ..core.pipeline import process_frame
from ..core.sgbm import SgbmBackend
from ..ros.conversions import image_to_rgb_float

ARMS = ("adapted", "frozen", "sgbm")


def _say(message: str) -> None:
    print(f"[replay] {message}", file=sys.stderr, flush=True)


def _frame_metrics(pred: np.ndarray, gt_disp: np.ndarray | None, focal: float, baseline: float) -> dict[str, Any]:
    if gt_disp is None:
        valid = np.isfinite(pred) & (pred > 0)
        return {"density": 100.0 * float(valid.mean()), "evaluation": None}
    ev = evaluate_disparity(pred, gt_disp, focal, baseline)
    m = ev.all.metrics()
    return {"epe": m["epe"], "bad3": m["bad3"], "d1_all": m["d1_all"], "abs_rel": m["abs_rel"], "rmse": m["rmse"],
            "delta1": m["delta1"], "density": ev.density, "evaluation": ev}


def _summary(rows: list[dict[str, Any]]) -> dict[str, float]:
    evaluations = [r["evaluation"] for r in rows if r.get("evaluation") is not None]
    out: dict[str, float] = {"frames": len(rows), "time_ms": float(np.median([r["time_ms"] for r in rows]))}
    if evaluations:
        ev = aggregate(evaluations)
        m = ev.all.metrics()
        out.update({k: m[k] for k in ("epe", "bad3", "d1_all", "abs_rel", "rmse", "delta1")})
        out["density"] = ev.density
    else:
        out["density"] = float(np.mean([r["density"] for r in rows]))
    errors = [r["photometric_error"] for r in rows if r.get("photometric_error") is not None]
    if errors:
        out["photometric_error"] = float(np.mean(errors))
    return out


def run_offline(bag: Path, output: Path, topics: StereoTopics, adaptation: AdaptationConfig, validity: ValidityConfig,
                weights: str | None = None, max_frames: int | None = None, device: str = "cpu") -> dict[str, Any]:
    """Evaluate the three arms on the bag's frames; write the report; return its content."""
    output.mkdir(parents=True, exist_ok=True)
    adapted_model, meta = load_model(weights, device)
    frozen_model = prepare_for_inference(load_model(weights, device)[0], device)
    adapter = OnlineAdapter(adapted_model, adaptation)
    sgbm = SgbmBackend()
    per_frame: dict[str, list[dict[str, Any]]] = {arm: [] for arm in ARMS}
    has_gt = None
    last_products = None
    for index, frame in enumerate(read_stereo_bag(bag, topics)):
        if max_frames is not None and index >= max_frames:
            break
        camera = frame.camera()
        left, right = image_to_rgb_float(frame.left), image_to_rgb_float(frame.right)
        left_t, right_t = image_to_tensor(left, device), image_to_tensor(right, device)
        gt_disp = None
        if frame.ground_truth_depth is not None:
            z = frame.ground_truth_depth
            gt_disp = np.where(np.isfinite(z) & (z > 0), camera.fx * camera.baseline / np.where(z > 0, z, 1.0), np.nan).astype(np.float32)
        has_gt = gt_disp is not None if has_gt is None else has_gt
        for arm, model in (("adapted", adapted_model), ("frozen", frozen_model)):
            start = time.perf_counter()
            was_training = model.training
            model.eval()
            result = process_frame(model, left_t, right_t, camera, validity)
            model.train(was_training)
            elapsed = 1000 * (time.perf_counter() - start)
            mask = result.validity.mask[0, 0].cpu().numpy()
            pred = np.where(mask, result.disparity_left[0, 0].float().cpu().numpy(), np.nan)
            row = {"frame": index, "stamp_ns": frame.stamp_ns, "time_ms": elapsed,
                   "photometric_error": float(result.validity.photometric_error.mean()),
                   **_frame_metrics(pred, gt_disp, camera.fx, camera.baseline)}
            if arm == "adapted":
                last_products = (left, camera, result)
                step = adapter.step(left_t, right_t)
                row.update({"adaptation_status": step.status, "adaptation_loss": step.loss,
                            "adaptation_ms": 1000 * step.seconds, "rollbacks": adapter.rollbacks})
            per_frame[arm].append(row)
        start = time.perf_counter()
        pred = sgbm(left, right)
        per_frame["sgbm"].append({"frame": index, "stamp_ns": frame.stamp_ns, "time_ms": 1000 * (time.perf_counter() - start),
                                  "photometric_error": None, **_frame_metrics(pred, gt_disp, camera.fx, camera.baseline)})
        if (index + 1) % 10 == 0:
            _say(f"frame {index + 1}: EPE adapted {per_frame['adapted'][-1].get('epe', float('nan')):.2f}, "
                 f"frozen {per_frame['frozen'][-1].get('epe', float('nan')):.2f}, sgbm {per_frame['sgbm'][-1].get('epe', float('nan')):.2f}")
    n = len(per_frame["frozen"])
    if n == 0:
        raise BagError(f"{bag} holds no complete stereo frame on the chosen topics")
    third = max(1, n // 3)
    summary = {arm: {"all": _summary(rows), "first_third": _summary(rows[:third]), "last_third": _summary(rows[-third:])}
               for arm, rows in per_frame.items()}
    summary["adapted"]["all"]["rollbacks"] = adapter.rollbacks
    summary["adapted"]["all"]["steps"] = adapter.steps
    report = {
        "bag": str(bag), "mode": "offline", "frames": n, "ground_truth": bool(has_gt),
        "adaptation": adaptation.__dict__, "validity": validity.__dict__, "weights": meta.get("training_command"),
        "summary": summary,
        "frames_detail": {arm: [{k: v for k, v in r.items() if k != "evaluation"} for r in rows] for arm, rows in per_frame.items()},
    }
    (output / "metrics.json").write_text(json.dumps(report, indent=2, default=float) + "\n")
    with open(output / "metrics.csv", "w", newline="") as f:
        keys = sorted({k for rows in report["frames_detail"].values() for r in rows for k in r})
        writer = csv.DictWriter(f, fieldnames=["arm"] + keys)
        writer.writeheader()
        for arm, rows in report["frames_detail"].items():
            for r in rows:
                writer.writerow({"arm": arm, **r})
    figures = write_figures(output, per_frame, last_products, bool(has_gt))
    report["figures"] = figures
    (output / "metrics.json").write_text(json.dumps(report, indent=2, default=float) + "\n")
    (output / "report.md").write_text(markdown(report) + "\n")
    return report


def write_figures(output: Path, per_frame: dict[str, list[dict[str, Any]]], last: Any, has_gt: bool) -> list[str]:
    """Error over time, the last frame's depth colour map, reconstruction error, a rendered cloud
    and the cloud as PLY (the adapted arm's published output)."""
    import cv2

    from ..core import pointcloud
    from .evaluate import colorize
    from .plots import line_plot, render_cloud

    names = []
    key, label = ("epe", "EPE px, holes count") if has_gt else ("photometric_error", "photometric error")
    series = {arm: [r.get(key, np.nan) if r.get(key) is not None else np.nan for r in rows] for arm, rows in per_frame.items()}
    if not has_gt:
        series.pop("sgbm", None)
    cv2.imwrite(str(output / "error_over_time.png"), line_plot(series, "error over time", label))
    names.append("error_over_time.png")
    if last is not None:
        left, camera, result = last
        mask = result.validity.mask[0, 0].cpu().numpy()
        depth = np.where(mask, result.validity.depth[0, 0].cpu().numpy(), np.nan).astype(np.float32)
        finite = depth[np.isfinite(depth)]
        lo, hi = (float(np.percentile(finite, 2)), float(np.percentile(finite, 98))) if finite.size else (0.0, 1.0)
        cv2.imwrite(str(output / "depth_last_frame.png"), colorize(depth, lo, hi))
        error = result.validity.photometric_error[0, 0].cpu().numpy()
        cv2.imwrite(str(output / "reconstruction_error_last_frame.png"), colorize(error, 0.0, 0.3, cv2.COLORMAP_INFERNO))
        rgb8 = np.clip(np.round(left * 255.0), 0, 255).astype(np.uint8)
        xyz = pointcloud.depth_to_points(depth, camera.K_numpy())
        cv2.imwrite(str(output / "cloud_last_frame.png"), render_cloud(xyz.reshape(-1, 3), rgb8.reshape(-1, 3)))
        names += ["depth_last_frame.png", "reconstruction_error_last_frame.png", "cloud_last_frame.png"]
        try:
            import open3d as o3d

            o3d.io.write_point_cloud(str(output / "cloud_last_frame.ply"), pointcloud.to_open3d(xyz, rgb8))
            names.append("cloud_last_frame.ply")
        except ImportError as exc:  # the report stays useful without Open3D
            _say(f"no .ply written: {exc}")
    return names


def markdown(report: dict[str, Any]) -> str:
    """The summary table of a report."""
    cols = (("epe", "EPE px"), ("bad3", "bad-3 %"), ("d1_all", "D1-all %"), ("density", "density %"),
            ("abs_rel", "AbsRel"), ("delta1", "δ<1.25 %"), ("photometric_error", "photometric"), ("time_ms", "ms/frame"))
    lines = [f"# Replay of `{report['bag']}` ({report['frames']} frames, {report['mode']})", "",
             "| arm | part | " + " | ".join(c[1] for c in cols) + " |", "|---|---|" + "---|" * len(cols)]
    for arm, parts in report["summary"].items():
        for part, values in parts.items():
            cells = []
            for key, _ in cols:
                v = values.get(key)
                cells.append("–" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{v:.3f}")
            lines.append(f"| {arm} | {part.replace('_', ' ')} | " + " | ".join(cells) + " |")
    if report.get("figures"):
        lines += ["", *[f"![{name}]({name})" for name in report["figures"] if name.endswith(".png")],
                  "", "Point cloud of the last frame: `cloud_last_frame.ply`."]
    if not report["ground_truth"]:
        lines += ["", "The bag has no ground-truth depth: accuracy columns are empty; photometric error, density and time remain."]
    lines += ["", "Holes and invalid pixels count as errors (all GT pixels). 'adapted' adapts online after each frame; "
              "'frozen' is the shipped network; 'sgbm' is OpenCV SGBM (stereo_image_proc's algorithm)."]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("bag", type=Path)
    p.add_argument("--mode", choices=("offline",), default="offline")
    p.add_argument("--output", type=Path, default=Path("replay_report"))
    p.add_argument("--adaptation", choices=("full", "mad", "none"), default="mad")
    p.add_argument("--image-loss", choices=("ssim_l1", "census"), default="ssim_l1")
    p.add_argument("--learning-rate", type=float, default=AdaptationConfig().learning_rate)
    p.add_argument("--max-frames", type=int, default=None)
    p.add_argument("--weights", default=None)
    p.add_argument("--device", default="cpu")
    for field, default in StereoTopics().__dict__.items():
        p.add_argument(f"--{field.replace('_', '-')}-topic", dest=field, default=default)
    args = p.parse_args(argv)
    topics = StereoTopics(**{k: getattr(args, k) for k in StereoTopics().__dict__})
    adaptation = replace(AdaptationConfig(), mode=args.adaptation, image_loss=args.image_loss, learning_rate=args.learning_rate)
    try:
        report = run_offline(args.bag, args.output, topics, adaptation, ValidityConfig(), args.weights, args.max_frames, args.device)
    except BagError as exc:
        print(f"[replay] {exc}", file=sys.stderr)
        return 2
    print(markdown(report))
    _say(f"report in {args.output.resolve()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
