"""Measure the node through real topics: per-stage time, overhead beyond inference, latency.

    python -m stereo_depth_ros.tools.bench_node [--size 640x480] [--rate 10] [--frames 60]

A probe node publishes a synthetic stereo pair with camera_info at ``--rate`` Hz (reliable QoS,
the node in the same process on its own executor thread) and the node's own per-stage timings and
stamp-to-publish latencies are read back. "Overhead" is everything the node does per frame beyond
the network's inference (decode, masks, depth, cloud, message building, publishing). Figures, not
assertions; the first ``--warmup`` frames are excluded.
"""

from __future__ import annotations

import argparse
import json
import sys
import threading
import time
from pathlib import Path
from typing import Sequence

import numpy as np
import rclpy
from rclpy.executors import MultiThreadedExecutor
from rclpy.node import Node
from rclpy.parameter import Parameter
from rclpy.qos import QoSProfile, QoSReliabilityPolicy
from sensor_msgs.msg import CameraInfo, Image

from ..core.camera import StereoCamera
from ..core.synthetic import generate_sample
from ..ros.conversions import camera_info_msg, numpy_to_image
from ..ros.node import StereoDepthNode


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--size", default="640x480")
    p.add_argument("--rate", type=float, default=10.0)
    p.add_argument("--frames", type=int, default=60)
    p.add_argument("--warmup", type=int, default=5)
    p.add_argument("--adaptation", action="store_true", help="adapt online while measuring")
    p.add_argument("--domain-id", type=int, default=77)
    p.add_argument("--output", type=Path, default=None)
    args = p.parse_args(argv)
    width, height = (int(v) for v in args.size.lower().split("x"))
    sample = generate_sample(5, width=width, height=height, domain="indoor")
    camera = StereoCamera.from_intrinsics(width, height, sample.focal, sample.baseline, sample.cx, sample.cy)
    context = rclpy.Context()
    rclpy.init(context=context, domain_id=args.domain_id)
    node = StereoDepthNode(context=context, parameter_overrides=[
        Parameter("adaptation.enabled", value=args.adaptation), Parameter("sensor_qos", value="reliable"),
        Parameter("device", value="cpu")])
    probe = Node("bench_probe", context=context)
    qos = QoSProfile(depth=2, reliability=QoSReliabilityPolicy.RELIABLE)
    pubs = [probe.create_publisher(t, n, qos) for t, n in ((CameraInfo, "left/camera_info"), (CameraInfo, "right/camera_info"),
                                                            (Image, "left/image_rect"), (Image, "right/image_rect"))]
    executor = MultiThreadedExecutor(num_threads=2, context=context)
    executor.add_node(node)
    executor.add_node(probe)
    spinner = threading.Thread(target=executor.spin, daemon=True)
    spinner.start()
    images = [numpy_to_image(np.clip(np.round(im * 255), 0, 255).astype(np.uint8), "rgb8") for im in (sample.left, sample.right)]
    infos = [camera_info_msg(camera), camera_info_msg(camera)]
    infos[1].p = list(camera.P_right().ravel())
    try:
        for k in range(args.frames + args.warmup):
            stamp = node.get_clock().now().to_msg()
            for msg, pub in zip(infos + images, pubs):
                msg.header.stamp = stamp
                msg.header.frame_id = "left_optical_frame"
                pub.publish(msg)
            if k == args.warmup - 1:
                time.sleep(2.0)
                node.stats.latencies_ms.clear()
                node.stats.stage_ms.clear()
                node.stats.processing_ms.clear()
            time.sleep(1.0 / args.rate)
        time.sleep(2.0)
        s = node.stats
        stages = {k: float(np.median(v)) for k, v in s.stage_ms.items()}
        total = float(np.median(s.processing_ms))
        report = {
            "size": args.size, "rate_hz": args.rate, "frames_processed": s.processed, "frames_dropped": s.dropped,
            "adaptation": args.adaptation, "stage_median_ms": stages, "processing_median_ms": total,
            # Per frame (the stage deques are aligned frame by frame), then the median.
            "overhead_beyond_network_ms": float(np.median(np.asarray(s.processing_ms) - np.asarray(s.stage_ms["inference"]))),
            "latency_p50_ms": float(np.percentile(s.latencies_ms, 50)), "latency_p95_ms": float(np.percentile(s.latencies_ms, 95)),
        }
    finally:
        node.shutdown()
        executor.shutdown()
        node.destroy_node()
        probe.destroy_node()
        rclpy.shutdown(context=context)
    lines = ["| stage | median ms |", "|---|---|"] + [f"| {k} | {v:.1f} |" for k, v in stages.items()]
    lines += [f"| total processing | {total:.1f} |",
              f"| overhead beyond the network | {report['overhead_beyond_network_ms']:.1f} |",
              f"| latency p50 / p95 (stamp -> publish) | {report['latency_p50_ms']:.0f} / {report['latency_p95_ms']:.0f} |",
              f"| frames processed / dropped | {s.processed} / {s.dropped} |"]
    print(f"node at {args.size}, {args.rate:g} Hz input, adaptation {'on' if args.adaptation else 'off'} (CPU):")
    print("\n".join(lines))
    if args.output:
        args.output.write_text(json.dumps(report, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
