"""The README demo: the real node on a replayed bag of an unseen synthetic domain.

    python -m stereo_depth_ros.tools.demo [--output demo_output] [--frames 120] [--size 320x240]

Steps (each printed as it happens): generate the embedded demo sequence (the ``outdoor`` domain the
network was not trained on) as a rosbag2; start the node in its own process with
``config/demo.yaml`` (online adaptation on); replay the bag into it frame by frame (lockstep, so
the CPU-only machine drops nothing and the comparison is fair); record its outputs; evaluate them
against ground truth next to the frozen network and SGBM on the same frames; print the summary
table and the report's path.

``--pair`` runs the earlier single-pair demo of the core instead:

Single pair: generate a rectified pair with exact ground truth; predict left and right disparity with
the shipped network; validate every pixel (in view, left-right check, occlusion, photometric
error, depth range); convert to metric depth (REP 118: metres, NaN invalid; and 16-bit mm with
0 invalid); back-project to an organised XYZRGB cloud and write it as PLY through Open3D; compare
with ground truth and with OpenCV SGBM (the algorithm of ``stereo_image_proc``) in the same run.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Sequence

import cv2
import numpy as np
import torch

from ..core import pointcloud
from ..core.camera import StereoCamera
from ..core.masks import ValidityConfig, compute_validity
from ..core.metrics import evaluate_disparity
from ..core.network.estimator import StereoEstimator, image_to_tensor
from ..core.sgbm import SgbmBackend
from ..core.synthetic import generate_sample
from .evaluate import colorize


def _say(message: str) -> None:
    print(f"[demo] {message}", flush=True)


def run(args: argparse.Namespace) -> dict[str, float]:
    out = Path(args.output)
    out.mkdir(parents=True, exist_ok=True)
    torch.set_num_threads(max(1, torch.get_num_threads()))

    _say(f"generating a synthetic {args.width}x{args.height} stereo pair (domain {args.domain!r}, seed {args.seed})")
    sample = generate_sample(args.seed, width=args.width, height=args.height, domain=args.domain)
    camera = StereoCamera.from_intrinsics(sample.width, sample.height, sample.focal, sample.baseline, sample.cx, sample.cy)
    _say(f"camera: f = {camera.fx:.1f} px, B = {camera.baseline:.3f} m, GT disparity "
         f"{np.nanmin(sample.disparity_left):.1f}..{np.nanmax(sample.disparity_left):.1f} px")

    _say(f"loading the network ({args.weights or 'shipped weights'}) on {args.device}")
    estimator = StereoEstimator.from_weights(args.weights, args.device)
    left_t = image_to_tensor(sample.left, args.device)
    right_t = image_to_tensor(sample.right, args.device)
    estimator.predict_both(left_t, right_t)  # warm-up
    start = time.perf_counter()
    disp_left, disp_right = estimator.predict_both(left_t, right_t)
    net_ms = 1000 * (time.perf_counter() - start)
    _say(f"network: left + right disparity in {net_ms:.0f} ms")

    config = ValidityConfig(min_depth=args.min_depth, max_depth=args.max_depth)
    validity = compute_validity(disp_left, camera.fx, camera.baseline, left_t, right_t, disp_right, config)
    mask = validity.mask[0, 0].cpu().numpy()
    disparity = disp_left[0, 0].cpu().numpy()
    depth = np.where(mask, validity.depth[0, 0].cpu().numpy(), np.nan).astype(np.float32)
    _say(f"validity: {100 * mask.mean():.1f}% of pixels trusted "
         + ", ".join(f"{k} {100 * v.float().mean():.0f}%" for k, v in validity.components.items()))

    _say("running OpenCV SGBM on the same pair")
    sgbm = SgbmBackend()
    sgbm(sample.left, sample.right)  # warm-up
    start = time.perf_counter()
    sgbm_disp = sgbm(sample.left, sample.right)
    sgbm_ms = 1000 * (time.perf_counter() - start)

    gt = sample.disparity_left
    rows = {
        "network (all pixels)": evaluate_disparity(disparity, gt, camera.fx, camera.baseline),
        "network (trusted pixels)": evaluate_disparity(np.where(mask, disparity, np.nan), gt, camera.fx, camera.baseline),
        "sgbm": evaluate_disparity(sgbm_disp, gt, camera.fx, camera.baseline),
    }
    times = {"network (all pixels)": net_ms, "network (trusted pixels)": net_ms, "sgbm": sgbm_ms}

    _say(f"writing results to {out}/")
    np.save(out / "depth.npy", depth)
    depth_mm = np.where(np.isfinite(depth), np.clip(np.round(depth * 1000), 0, 65535), 0).astype(np.uint16)
    cv2.imwrite(str(out / "depth_mm.png"), depth_mm)
    finite = depth[np.isfinite(depth)]
    lo, hi = (float(np.percentile(finite, 2)), float(np.percentile(finite, 98))) if finite.size else (0.0, 1.0)
    cv2.imwrite(str(out / "depth_color.png"), colorize(depth, lo, hi))
    d_hi = float(np.nanmax(gt))
    cv2.imwrite(str(out / "disparity_color.png"), colorize(disparity, 0, d_hi))
    cv2.imwrite(str(out / "sgbm_disparity_color.png"), colorize(sgbm_disp, 0, d_hi))
    error = validity.photometric_error[0, 0].cpu().numpy()
    cv2.imwrite(str(out / "reconstruction_error.png"), colorize(error, 0.0, 0.3))
    cv2.imwrite(str(out / "confidence.png"), (validity.confidence[0, 0].cpu().numpy() * 255).astype(np.uint8))
    rgb8 = np.clip(np.round(sample.left * 255), 0, 255).astype(np.uint8)
    cv2.imwrite(str(out / "left.png"), cv2.cvtColor(rgb8, cv2.COLOR_RGB2BGR))

    xyz = pointcloud.depth_to_points(depth, camera.K_numpy())
    cloud = pointcloud.to_open3d(xyz, rgb8)
    cloud = pointcloud.remove_outliers(cloud, neighbours=20, std_ratio=2.0)
    import open3d as o3d

    o3d.io.write_point_cloud(str(out / "cloud.ply"), cloud)
    _say(f"point cloud: {len(cloud.points)} points -> {out / 'cloud.ply'}")

    header = f"| {'method':<26} | EPE px | bad-3 % | D1-all % | density % | AbsRel | time ms |"
    lines = [header, "|" + "|".join("-" * (len(c)) for c in header.split("|")[1:-1]) + "|"]
    for name, ev in rows.items():
        m = ev.all.metrics() if "trusted" not in name else ev.valid.metrics()
        lines.append(f"| {name:<26} | {m['epe']:6.2f} | {m['bad3']:7.2f} | {m['d1_all']:8.2f} | {ev.density:9.1f} | "
                     f"{m['abs_rel']:6.3f} | {times[name]:7.0f} |")
    table = "\n".join(lines)
    print("\n" + table + "\n(SGBM holes count as errors; 'trusted pixels' scores the network on its own valid mask)\n")
    summary = {name: {**ev.to_dict(), "time_ms": times[name]} for name, ev in rows.items()}
    (out / "summary.json").write_text(json.dumps(summary, indent=2, default=float) + "\n")
    (out / "summary.md").write_text(table + "\n")
    _say(f"done: see {out.resolve()}")
    return {"network_epe": rows["network (all pixels)"].all.metrics()["epe"], "sgbm_epe": rows["sgbm"].all.metrics()["epe"]}


def run_node_demo(args: argparse.Namespace) -> int:
    from pathlib import Path

    from ..bags import StereoTopics, write_synthetic_bag
    from ..ros.params import config_from_values, values_from_yaml
    from .replay import markdown, run_replay

    started = time.time()
    out = Path(args.output)
    out.mkdir(parents=True, exist_ok=True)
    width, height = (int(v) for v in args.size.lower().split("x"))
    bag = out / "demo_bag"
    if bag.exists():
        import shutil

        shutil.rmtree(bag)
    _say(f"1/4 generating the demo sequence: {args.frames} frames {width}x{height} of the unseen 'outdoor' domain -> {bag}")
    write_synthetic_bag(bag, args.seed, args.frames, width, height, "outdoor", rate_hz=10.0)
    params = Path(__file__).resolve().parents[2] / "config" / "demo.yaml"
    _say(f"2/4 starting the node with {params.name} and replaying the bag into it (this takes a minute or two on a CPU)")
    validity = config_from_values(values_from_yaml(str(params))).validity()
    report = run_replay(bag, out / "report", StereoTopics(), params, validity, args.weights, lockstep=True)
    _say("3/4 evaluated the node's published output, the frozen network and SGBM against ground truth")
    rows = [("with adaptation (node)", "node"), ("without adaptation", "frozen"), ("SGBM (stereo_image_proc)", "sgbm")]
    lines = ["| method | EPE px (all) | EPE px (last third) | bad-3 % | density % | ms (node: latency; others: compute) |",
             "|---|---|---|---|---|---|"]
    for name, arm in rows:
        a, last = report["summary"][arm]["all"], report["summary"][arm]["last_third"]
        lines.append(f"| {name} | {a.get('epe', float('nan')):.2f} | {last.get('epe', float('nan')):.2f} | "
                     f"{a.get('bad3', float('nan')):.1f} | {a['density']:.1f} | {a['time_ms']:.0f} |")
    adaptation = report.get("node_adaptation", {})
    print("\n" + "\n".join(lines))
    print(f"\n(holes and untrusted pixels count as errors; node adaptation: {adaptation.get('mode', '?')}, "
          f"steps {adaptation.get('steps', '?')}, rollbacks {adaptation.get('rollbacks', '?')}; "
          f"frames published {report['frames_published']}/{report['frames']})")
    (out / "summary.md").write_text("\n".join(lines) + "\n\n" + markdown(report) + "\n")
    _say(f"4/4 done in {time.time() - started:.0f} s: report {(out / 'report' / 'report.md').resolve()}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--output", default="demo_output")
    p.add_argument("--pair", action="store_true", help="the single-pair core demo instead of the node replay")
    p.add_argument("--frames", type=int, default=120, help="node demo: frames in the demo sequence")
    p.add_argument("--size", default="320x240", help="node demo: image size")
    p.add_argument("--seed", type=int, default=7)
    p.add_argument("--domain", default="indoor", help="--pair: synthetic domain")
    p.add_argument("--width", type=int, default=640)
    p.add_argument("--height", type=int, default=480)
    p.add_argument("--weights", default=None, help="network weights (default: the shipped ones)")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--min-depth", type=float, default=0.1)
    p.add_argument("--max-depth", type=float, default=100.0)
    args = p.parse_args(argv)
    if not args.pair:
        return run_node_demo(args)
    run(args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
