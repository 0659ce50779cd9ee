"""Benchmark the node through real topics: where every millisecond goes, beside OpenCV SGBM.

    python -m stereo_depth_ros.tools.bench_node [--sizes 320x240 640x480 1280x720] [--frames 100]
        [--rate 10] [--adaptation] [--device cpu|cuda] [--inference-scale 1.0]
        [--output bench.json] [--markdown bench.md]

For each size a separate publisher process (a camera driver stand-in: its own rclpy context and
DDS participant) publishes one synthetic stereo pair with camera_info at ``--rate`` Hz with
SensorDataQoS, as camera drivers do and the node subscribes by default (``--qos reliable``: both
sides reliable, as for bag playback), through the shipped Fast DDS profile. The node runs in this
process on its own executor, exactly as ``stereo_depth_node`` runs it. After ``--warmup`` processed frames the node's
statistics are cleared and the next ``--frames`` processed frames are measured:

- the node's own per-stage times (decode, host_to_device, inference, masks, to_numpy,
  publish_images = message building + publishing, cloud, publish_cloud) as median and p95; the
  overhead beyond the network (processing minus inference, per frame); the adaptation step time
  when ``--adaptation`` is on (it runs on its own thread, beside the frame path);
- end-to-end latency (header stamp to publish, p50/p95) and output throughput (frames per second
  over the measured window; when the node is slower than ``--rate`` this is its capacity and the
  newest-frame policy drops the rest);
- peak host memory (max RSS of this process, the node included) and, on CUDA, peak device memory;
- OpenCV SGBM (the algorithm of ``stereo_image_proc``) on the same pair in the same run, and the
  ratios network/SGBM and node processing/SGBM.

Figures, not assertions: run it on demand; it prints a Markdown table and writes JSON. While it
waits it prints a progress line every ``--progress-every`` seconds (pairs received and processed,
stage medians so far) and each size's table as soon as that size is done, so a run stopped by an
outer time limit still shows where its time went.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import resource
import sys
import threading
import time
from pathlib import Path
from typing import Any, Sequence

import numpy as np

_PROFILE = Path(__file__).resolve().parents[2] / "config" / "fastdds_profile.xml"
_SEED = 5


def _parse_size(text: str) -> tuple[int, int]:
    try:
        width, height = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected WIDTHxHEIGHT like 640x480, got {text!r}") from None
    if width < 32 or height < 32:
        raise argparse.ArgumentTypeError(f"expected at least 32x32 pixels, got {text!r}")
    return width, height


def _parse_param(text: str) -> tuple[str, Any]:
    import yaml

    from ..ros.params import defaults

    name, sep, value = text.partition("=")
    if not sep or not name:
        raise argparse.ArgumentTypeError(f"expected NAME=VALUE, got {text!r}")
    parsed = yaml.safe_load(value)
    declared = defaults()
    if name not in declared and not name.startswith("qos_overrides."):  # rclpy would ignore an undeclared override
        raise argparse.ArgumentTypeError(f"unknown node parameter {name!r}: see config/stereo_depth.yaml")
    if isinstance(declared.get(name), float) and isinstance(parsed, int) and not isinstance(parsed, bool):
        parsed = float(parsed)  # "=0" for a floating-point parameter: rclpy would refuse an INTEGER override
    return name, parsed


def _publisher(width: int, height: int, rate: float, domain_id: int, stop: Any, ready: Any, parent: int,
               qos_name: str) -> None:
    """Child process: publish the synthetic pair at ``rate`` Hz until ``stop`` is set or the
    benchmark process (pid ``parent``) is gone."""
    import rclpy
    from rclpy.qos import QoSProfile, QoSReliabilityPolicy, qos_profile_sensor_data
    from sensor_msgs.msg import CameraInfo, Image

    from ..core.camera import StereoCamera
    from ..core.synthetic import generate_sample
    from ..ros.conversions import camera_info_msg, numpy_to_image

    sample = generate_sample(_SEED, width=width, height=height, domain="indoor")
    camera = StereoCamera.from_intrinsics(width, height, sample.focal, sample.baseline, sample.cx, sample.cy)
    context = rclpy.Context()
    rclpy.init(context=context, domain_id=domain_id)
    node = rclpy.create_node("bench_camera", context=context)
    qos = (QoSProfile(depth=2, reliability=QoSReliabilityPolicy.RELIABLE) if qos_name == "reliable"
           else qos_profile_sensor_data)
    pubs = [node.create_publisher(t, n, qos) for t, n in ((CameraInfo, "left/camera_info"), (CameraInfo, "right/camera_info"),
                                                           (Image, "left/image_rect"), (Image, "right/image_rect"))]
    images = [numpy_to_image(np.clip(np.round(im * 255), 0, 255).astype(np.uint8), "rgb8") for im in (sample.left, sample.right)]
    infos = [camera_info_msg(camera), camera_info_msg(camera)]
    infos[1].p = list(camera.P_right().ravel())
    ready.set()
    period = 1.0 / rate
    next_time = time.monotonic()
    try:
        while not stop.is_set() and os.getppid() == parent:  # never outlive a killed benchmark
            stamp = node.get_clock().now().to_msg()
            for msg, pub in zip(infos + images, pubs):
                msg.header.stamp = stamp
                msg.header.frame_id = "left_optical_frame"
                pub.publish(msg)
            next_time += period
            time.sleep(max(0.0, next_time - time.monotonic()))
    finally:
        node.destroy_node()
        rclpy.shutdown(context=context)


def _summary(values: Sequence[float]) -> dict[str, float]:
    a = np.asarray(values, dtype=np.float64)
    if a.size == 0:
        return {"median": float("nan"), "p95": float("nan"), "n": 0}
    return {"median": float(np.median(a)), "p95": float(np.percentile(a, 95)), "n": int(a.size)}


def _sgbm_ms(width: int, height: int, frames: int) -> dict[str, float]:
    from ..core.sgbm import SgbmBackend
    from ..core.synthetic import generate_sample

    sample = generate_sample(_SEED, width=width, height=height, domain="indoor")
    # The images as the node receives them (rgb8), back in [0, 1] for the backend.
    left, right = (np.clip(np.round(im * 255), 0, 255).astype(np.float32) / 255 for im in (sample.left, sample.right))
    sgbm = SgbmBackend()  # the evaluation's settings (disparity range scaled with the width)
    sgbm(left, right)
    times = []
    for _ in range(frames):
        start = time.perf_counter()
        sgbm(left, right)
        times.append(1000 * (time.perf_counter() - start))
    return _summary(times)


def _bench_size(args: argparse.Namespace, width: int, height: int, domain_id: int) -> dict[str, Any]:
    import rclpy
    import torch
    from rclpy.executors import MultiThreadedExecutor
    from rclpy.parameter import Parameter

    from ..ros.node import StereoDepthNode, freeze_startup_objects

    context = rclpy.Context()
    rclpy.init(context=context, domain_id=domain_id)
    overrides = [Parameter("adaptation.enabled", value=args.adaptation), Parameter("sensor_qos", value=args.qos),
                 Parameter("device", value=args.device), Parameter("inference_scale", value=float(args.inference_scale)),
                 Parameter("adaptation.mode", value=args.adaptation_mode),
                 Parameter("max_image_width", value=max(2048, width)), Parameter("max_image_height", value=max(2048, height))]
    overrides += [Parameter(name, value=value) for name, value in args.param]
    node = StereoDepthNode(context=context, parameter_overrides=overrides)
    freeze_startup_objects()  # as stereo_depth_node's main() does
    executor = MultiThreadedExecutor(num_threads=2, context=context)
    executor.add_node(node)
    spinner = threading.Thread(target=executor.spin, daemon=True)
    spinner.start()
    spawn = mp.get_context("spawn")
    stop, ready = spawn.Event(), spawn.Event()
    publisher = spawn.Process(target=_publisher, args=(width, height, args.rate, domain_id, stop, ready, os.getpid(), args.qos),
                              daemon=True)
    publisher.start()
    s = node.stats
    try:
        if not ready.wait(120):
            raise RuntimeError("the publisher process did not start within 120 s")
        deadline = time.monotonic() + args.timeout

        next_progress = time.monotonic() + args.progress_every

        def wait_for(count: int) -> None:
            nonlocal next_progress
            while s.processed < count:
                now = time.monotonic()
                if now > deadline:
                    raise RuntimeError(f"{width}x{height}: only {s.processed} of {count} frames processed in {args.timeout} s")
                if now > next_progress:  # a slow run says where its time goes before any time limit stops it
                    next_progress = now + args.progress_every
                    stages = ", ".join(f"{k} {np.median(list(v)):.1f}" for k, v in list(s.stage_ms.items()) if v)
                    print(f"[bench_node] {width}x{height}: {s.received} pairs received, {s.processed} processed, "
                          f"{s.dropped} dropped, {sum(s.rejected.values())} rejected; stage medians ms: {stages or '-'}",
                          file=sys.stderr, flush=True)
                time.sleep(0.01)

        wait_for(args.warmup)
        if node.device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(node.device)
        for queue in (s.latencies_ms, s.processing_ms, s.adaptation_ms, *s.stage_ms.values()):
            queue.clear()
        start_count, start_dropped, started = s.processed, s.dropped, time.monotonic()
        wait_for(start_count + args.frames)
        elapsed = time.monotonic() - started
        processed = s.processed - start_count
        stop.set()
        publisher.join(10)
        stages = {name: _summary(values) for name, values in s.stage_ms.items()}
        processing = np.asarray(s.processing_ms)
        inference = np.asarray(s.stage_ms["inference"])
        n = min(processing.size, inference.size)
        report: dict[str, Any] = {
            "size": f"{width}x{height}", "device": str(node.device),
            "inference_scale": args.inference_scale or node.weights_scale,
            "processing_cpu_threads": node._network_threads,
            "rate_hz": args.rate, "frames_measured": processed, "frames_dropped": s.dropped - start_dropped,
            "adaptation": args.adaptation_mode if args.adaptation else "off",
            "stages_ms": stages, "processing_ms": _summary(processing),
            # Per frame (the deques are aligned frame by frame), then the statistics.
            "overhead_beyond_network_ms": _summary(processing[-n:] - inference[-n:]),
            "adaptation_step_ms": _summary(s.adaptation_ms),
            "latency_ms": _summary(s.latencies_ms), "throughput_fps": processed / elapsed,
            # Gaps between synchronised stereo sets reaching the node: 1/rate when delivery is even.
            "input_interval_ms": _summary(1000 * np.diff([t for t in s.input_times if t >= started])),
            "peak_host_memory_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        }
        if node.device.type == "cuda":
            report["peak_device_memory_mib"] = torch.cuda.max_memory_allocated(node.device) / 2**20
    finally:
        stop.set()
        if publisher.is_alive():
            publisher.terminate()
        node.shutdown()
        executor.shutdown()
        node.destroy_node()
        rclpy.shutdown(context=context)
    report["sgbm_ms"] = _sgbm_ms(width, height, args.sgbm_frames)
    sgbm = report["sgbm_ms"]["median"]
    report["network_over_sgbm"] = report["stages_ms"]["inference"]["median"] / sgbm
    report["node_over_sgbm"] = report["processing_ms"]["median"] / sgbm
    return report


def _markdown(reports: list[dict[str, Any]]) -> str:
    stage_names: list[str] = []
    for r in reports:
        stage_names += [k for k in r["stages_ms"] if k not in stage_names]
    head = "| ms (median / p95) | " + " | ".join(r["size"] for r in reports) + " |"
    lines = [head, "|---" * (len(reports) + 1) + "|"]

    def row(label: str, cells: list[str]) -> None:
        lines.append(f"| {label} | " + " | ".join(cells) + " |")

    def fmt(stat: dict[str, float]) -> str:
        return "-" if not stat or stat.get("n", 0) == 0 else f"{stat['median']:.1f} / {stat['p95']:.1f}"

    for name in stage_names:
        row(name, [fmt(r["stages_ms"].get(name, {})) for r in reports])
    row("**processing per frame**", [fmt(r["processing_ms"]) for r in reports])
    row("**overhead beyond the network**", [fmt(r["overhead_beyond_network_ms"]) for r in reports])
    row("adaptation step (own thread)", [fmt(r["adaptation_step_ms"]) for r in reports])
    row("latency stamp -> publish", [fmt(r["latency_ms"]) for r in reports])
    row("throughput (frames/s)", [f"{r['throughput_fps']:.1f}" for r in reports])
    row("input interval at the node", [fmt(r["input_interval_ms"]) for r in reports])
    row("frames measured / dropped", [f"{r['frames_measured']} / {r['frames_dropped']}" for r in reports])
    row("OpenCV SGBM, same pair", [fmt(r["sgbm_ms"]) for r in reports])
    row("network / SGBM", [f"{r['network_over_sgbm']:.2f}x" for r in reports])
    row("node processing / SGBM", [f"{r['node_over_sgbm']:.2f}x" for r in reports])
    row("peak host memory (MiB, process)", [f"{r['peak_host_memory_mib']:.0f}" for r in reports])
    if any("peak_device_memory_mib" in r for r in reports):
        row("peak device memory (MiB)", [f"{r.get('peak_device_memory_mib', float('nan')):.0f}" for r in reports])
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--sizes", nargs="+", type=_parse_size, default=[(320, 240), (640, 480), (1280, 720)], metavar="WxH")
    p.add_argument("--frames", type=int, default=100, help="measured frames per size (after --warmup)")
    p.add_argument("--warmup", type=int, default=5, help="processed frames excluded before measuring")
    p.add_argument("--rate", type=float, default=10.0, help="input rate in Hz")
    p.add_argument("--device", default="cpu", help="node device: cpu, cuda, auto")
    p.add_argument("--inference-scale", type=float, default=0.0,
                   help="the node's inference_scale parameter (0: the scale the weights name)")
    p.add_argument("--adaptation", action="store_true", help="adapt online while measuring")
    p.add_argument("--adaptation-mode", default="mad", choices=("mad", "full"))
    p.add_argument("--qos", choices=("reliable", "sensor_data"), default="sensor_data",
                   help="QoS of the camera topics on both sides (sensor_data = best effort, as camera drivers publish)")
    p.add_argument("--param", type=_parse_param, action="append", default=[], metavar="NAME=VALUE",
                   help="any other node parameter (repeatable), e.g. diagnostics.icp_every=0")
    p.add_argument("--sgbm-frames", type=int, default=20)
    p.add_argument("--timeout", type=float, default=900.0, help="seconds allowed per size")
    p.add_argument("--domain-id", type=int, default=77)
    p.add_argument("--progress-every", type=float, default=10.0,
                   help="seconds between progress lines (pairs received/processed, stage medians so far) on stderr")
    p.add_argument("--output", type=Path, default=None, help="JSON file")
    p.add_argument("--markdown", type=Path, default=None, help="Markdown file")
    args = p.parse_args(argv)
    if args.frames < 1 or args.warmup < 1 or args.rate <= 0:
        p.error("--frames and --warmup must be at least 1 and --rate positive")
    os.environ.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")
    if _PROFILE.is_file():  # large messages on one host; inherited by the publisher process
        os.environ.setdefault("FASTDDS_DEFAULT_PROFILES_FILE", str(_PROFILE))
    import torch

    from ..core.allocator import keep_freed_memory
    from ..ros.node import single_thread_outside_processing

    keep_freed_memory()  # as stereo_depth_node's main() does
    single_thread_outside_processing()
    reports = []
    for width, height in args.sizes:
        print(f"[bench_node] {width}x{height}: {args.warmup} + {args.frames} frames at {args.rate:g} Hz ...", file=sys.stderr)
        reports.append(_bench_size(args, width, height, args.domain_id))
        # Each size's table as soon as it is done: a later size that hangs loses only itself.
        print(f"[bench_node] {width}x{height} done:\n{_markdown(reports[-1:])}", file=sys.stderr, flush=True)
    device = reports[0]["device"]
    name = (torch.cuda.get_device_name(device) if device.startswith("cuda")
            else f"CPU, {reports[0]['processing_cpu_threads']} torch threads for the frame path")
    title = (f"node through real topics on {name}: {args.rate:g} Hz input, adaptation "
             f"{reports[0]['adaptation']}, inference_scale {reports[0]['inference_scale']:g}")
    table = _markdown(reports)
    print(title)
    print(table)
    if args.output:
        args.output.write_text(json.dumps({"title": title, "reports": reports}, indent=2) + "\n")
    if args.markdown:
        args.markdown.write_text(f"{title}\n\n{table}\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
