"""The README demo: the real node, adapting online, on a real stereo scene replayed as a bag.

    python -m stereo_depth_ros.tools.demo [--output demo_output] [--frames 60] [--scale 1.0] [--synthetic]

Steps (each printed as it happens): write the real Middlebury 2014 Motorcycle pair that
scikit-image ships (quarter size, 741x500, with ground truth; f = 994.978 px, B = 193 mm, principal
points 31.086 px apart) as a rosbag2 of ``--frames`` frames from a static camera, each with its
own sensor noise; start the node in its own process with ``config/demo.yaml`` (the shipped
defaults with online adaptation on and bag-friendly input QoS); replay the bag into it frame by
frame (lockstep, so the CPU-only machine drops nothing and the comparison is fair); record its
outputs; score them per frame against the ground truth next to the frozen network and OpenCV SGBM
(the algorithm of ``stereo_image_proc``, searching the scene's range) on the same frames; print
the summary table (bad-2 over the last third of the frames, when adaptation has had its steps)
and the report's path, with the error-over-time plot. ``--synthetic`` also replays the earlier
synthetic sequence of a domain the network was not trained on.

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
from ..core.allocator import keep_freed_memory
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


def _summary_table(report: dict, rows: Sequence[tuple[str, str]]) -> list[str]:
    lines = ["| method | bad-2 % (last third) | bad-2 % (all frames) | EPE px (last third) | density % (last third) | "
             "ms (node: latency; others: compute) |", "|---|---|---|---|---|---|"]
    for name, arm in rows:
        a, last = report["summary"][arm]["all"], report["summary"][arm]["last_third"]
        lines.append(f"| {name} | {last.get('bad2', float('nan')):.1f} | {a.get('bad2', float('nan')):.1f} | "
                     f"{last.get('epe', float('nan')):.2f} | {last['density']:.1f} | {a['time_ms']:.0f} |")
    return lines


def readme_images(left_rgb: np.ndarray, report_dir: Path, images_dir: Path, tile_width: int = 360) -> list[Path]:
    """The README's pictures from a demo report: ``demo.png`` (left image, depth, reconstruction
    error and the rendered point cloud of the last frame, 2x2) and ``error_over_time.png``, as
    256-colour PNGs (small enough to commit)."""
    tiles = [cv2.cvtColor(left_rgb, cv2.COLOR_RGB2BGR)]
    for name in ("depth_last_frame.png", "reconstruction_error_last_frame.png", "cloud_last_frame.png"):
        tile = cv2.imread(str(report_dir / name), cv2.IMREAD_COLOR)
        if tile is None:
            raise FileNotFoundError(f"the demo report has no {name} in {report_dir}")
        tiles.append(tile)
    height = round(tile_width * tiles[0].shape[0] / tiles[0].shape[1])
    tiles = [cv2.resize(t, (tile_width, height), interpolation=cv2.INTER_AREA) for t in tiles]
    for tile, label in zip(tiles, ("left image", "depth (node)", "reconstruction error", "point cloud")):
        cv2.putText(tile, label, (8, 22), cv2.FONT_HERSHEY_SIMPLEX, 0.6, (255, 255, 255), 2, cv2.LINE_AA)
    mosaic = np.vstack([np.hstack(tiles[:2]), np.hstack(tiles[2:])])
    plot = cv2.imread(str(report_dir / "error_over_time.png"), cv2.IMREAD_COLOR)
    if plot is None:
        raise FileNotFoundError(f"the demo report has no error_over_time.png in {report_dir}")
    plot = cv2.resize(plot, (2 * tile_width, round(2 * tile_width * plot.shape[0] / plot.shape[1])),
                      interpolation=cv2.INTER_AREA)
    images_dir.mkdir(parents=True, exist_ok=True)
    written = []
    from PIL import Image  # scikit-image's dependency

    for name, image in (("demo.png", mosaic), ("error_over_time.png", plot)):
        rgb = Image.fromarray(cv2.cvtColor(image, cv2.COLOR_BGR2RGB))
        rgb.quantize(colors=256, method=Image.Quantize.MEDIANCUT).save(images_dir / name, optimize=True)
        written.append(images_dir / name)
    return written


def run_node_demo(args: argparse.Namespace) -> int:
    """The real-scene demo (see the module docstring), then the synthetic part with ``--synthetic``."""
    from ..bags import StereoTopics, scene_frames, write_frames, write_synthetic_bag
    from ..core.datasets import motorcycle_sample, scale_sample
    from ..ros.params import config_from_values, values_from_yaml
    from .replay import markdown, run_replay

    started = time.time()
    out = Path(args.output)
    out.mkdir(parents=True, exist_ok=True)
    params = Path(__file__).resolve().parents[2] / "config" / "demo.yaml"
    config = config_from_values(values_from_yaml(str(params)))
    validity = config.validity()
    # The frozen arm publishes what the node would without adaptation: the same fused output.
    fusion_margin = config.output_fusion_margin if config.output_fusion == "sgbm" else None
    rows = [("with adaptation (node)", "node"), ("without adaptation", "frozen"), ("SGBM (stereo_image_proc)", "sgbm")]
    import shutil

    scene = scale_sample(motorcycle_sample(), args.scale)
    height, width = scene.disparity.shape
    bag = out / "demo_bag"
    if bag.exists():
        shutil.rmtree(bag)
    _say(f"1/4 writing the real Middlebury Motorcycle pair ({width}x{height}, from scikit-image) as {args.frames} "
         f"frames of a static camera with sensor noise (sigma {255 * args.noise:.1f}/255 per frame) -> {bag}")
    write_frames(bag, scene_frames(scene, args.frames, args.noise, args.seed), rate_hz=10.0)
    _say(f"2/4 starting the node with {params.name} (online adaptation on) and replaying the bag into it, "
         "frame by frame (a few minutes on a CPU)")
    report = run_replay(bag, out / "report", StereoTopics(), params, validity, args.weights, lockstep=True,
                        sgbm_max_disparity=scene.max_disparity, fusion_margin=fusion_margin,
                        adaptation=config.adaptation())
    _say("3/4 evaluated the node's published output, the frozen network and SGBM against the ground truth")
    lines = _summary_table(report, rows)
    adaptation = report.get("node_adaptation", {})
    print("\n" + "\n".join(lines))
    print(f"\n(Motorcycle, real Middlebury 2014 pair; bad-2 = % of ground-truth pixels off by more than 2 px, holes "
          f"and untrusted pixels count as errors; the node and the frozen network publish "
          f"{'the network fused with SGBM per pixel' if fusion_margin is not None else 'the network alone'} "
          f"(output.fusion {config.output_fusion}); node adaptation: {adaptation.get('mode', '?')}, proxy "
          f"{adaptation.get('proxy', '?')}, steps {adaptation.get('steps', '?')}, rollbacks "
          f"{adaptation.get('rollbacks', '?')}; frames published {report['frames_published']}/{report['frames']})")
    text = ["# Demo: the node on the real Motorcycle pair", "", *lines, "", markdown(report)]
    if args.images:
        written = readme_images((np.clip(scene.left, 0, 1) * 255).round().astype(np.uint8), out / "report", Path(args.images))
        _say("README pictures: " + ", ".join(str(p) for p in written))
    if args.synthetic:
        synthetic_bag = out / "synthetic_bag"
        if synthetic_bag.exists():
            shutil.rmtree(synthetic_bag)
        sw, sh = (int(v) for v in args.size.lower().split("x"))
        _say(f"4/4 synthetic part: {args.synthetic_frames} frames {sw}x{sh} of the unseen 'outdoor' domain")
        write_synthetic_bag(synthetic_bag, args.seed, args.synthetic_frames, sw, sh, "outdoor", rate_hz=10.0)
        synthetic = run_replay(synthetic_bag, out / "synthetic_report", StereoTopics(), params, validity, args.weights,
                               lockstep=True)
        synthetic_lines = _summary_table(synthetic, rows)
        print("\nSynthetic unseen domain (procedural, mostly textureless surfaces):\n" + "\n".join(synthetic_lines))
        text += ["", "## Synthetic unseen domain", "", *synthetic_lines, "", markdown(synthetic)]
    (out / "summary.md").write_text("\n".join(text) + "\n")
    _say(f"{'4/4' if not args.synthetic else 'done'}: {time.time() - started:.0f} s; report "
         f"{(out / 'report' / 'report.md').resolve()} (error over time: report/error_over_time.png)")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--output", default="demo_output")
    p.add_argument("--pair", action="store_true", help="the single-pair core demo instead of the node replay")
    p.add_argument("--frames", type=int, default=60, help="node demo: frames of the real scene")
    p.add_argument("--scale", type=float, default=1.0,
                   help="node demo: resize the real scene (1.0 = the 741x500 pair scikit-image ships)")
    p.add_argument("--noise", type=float, default=2.0 / 255.0,
                   help="node demo: per-frame sensor noise (standard deviation, images in [0, 1])")
    p.add_argument("--synthetic", action="store_true",
                   help="node demo: also replay a synthetic sequence of the unseen 'outdoor' domain")
    p.add_argument("--synthetic-frames", type=int, default=120, help="node demo: frames of the synthetic part")
    p.add_argument("--size", default="320x240", help="node demo: image size of the synthetic part")
    p.add_argument("--images", default=None, metavar="DIR",
                   help="node demo: also write the README's pictures (demo.png, error_over_time.png) into DIR, "
                        "e.g. docs/images")
    p.add_argument("--seed", type=int, default=7)
    p.add_argument("--domain", default="indoor", help="--pair: synthetic domain")
    p.add_argument("--width", type=int, default=640)
    p.add_argument("--height", type=int, default=480)
    p.add_argument("--weights", default=None, help="network weights (default: the shipped ones)")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--min-depth", type=float, default=0.1)
    p.add_argument("--max-depth", type=float, default=100.0)
    args = p.parse_args(argv)
    keep_freed_memory()  # as stereo_depth_node's main() does
    if args.frames < 1 or args.synthetic_frames < 1:
        p.error("--frames/--synthetic-frames: expected at least 1")
    if not 0.0 < args.scale <= 1.0:
        p.error(f"--scale: expected a factor in (0, 1], got {args.scale}")
    if not 0.0 <= args.noise < 0.5:
        p.error(f"--noise: expected a standard deviation in [0, 0.5), got {args.noise}")
    if not args.pair:
        return run_node_demo(args)
    run(args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
