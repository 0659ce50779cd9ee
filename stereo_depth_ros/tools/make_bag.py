"""Write a stereo sequence as a rosbag2 (MCAP by default): synthetic, a recorded folder, or a real scene.

    python -m stereo_depth_ros.tools.make_bag OUTPUT [--frames 100] [--rate 10] [--size 640x480]
        [--domain outdoor] [--seed 0] [--storage mcap|sqlite3] [--namespace /stereo]
    python -m stereo_depth_ros.tools.make_bag OUTPUT --from-frames DIR      # left_*/right_* + calib.json
    python -m stereo_depth_ros.tools.make_bag OUTPUT --scene motorcycle --frames 60 [--noise 0.008]

Topics: <ns>/left/image_rect, <ns>/right/image_rect (rgb8), <ns>/left/camera_info,
<ns>/right/camera_info, and <ns>/ground_truth/depth (32FC1 metres) when the source has ground truth
(synthetic, a dataset scene). Readable by rosbags and ros2 bag.

``--from-frames DIR`` turns a recorded sequence into a bag with its own timestamps: rectified
``left_*.png`` / ``right_*.png`` pairs, a ``calib.json`` (``fx``, ``cx``, ``cy``, ``baseline_m``,
optional ``fy`` and ``P_right``) and an optional ``timestamps.txt`` (nanoseconds per pair) -- the
layout of the EuRoC frames in ``../shared/realdata/sequences``. ``--scene`` writes a static camera
looking at a dataset scene (a Middlebury folder or ``motorcycle``), ``--frames`` copies with
independent sensor noise. A failure leaves no partial bag.
"""

from __future__ import annotations

import argparse
import sys
import time
from typing import Sequence

from ..bags import BagError, StereoTopics, pair_folder_frames, scene_frames, write_frames, write_synthetic_bag


def topics_for(namespace: str) -> StereoTopics:
    ns = "/" + namespace.strip("/") if namespace.strip("/") else ""
    return StereoTopics(f"{ns}/left/image_rect", f"{ns}/right/image_rect", f"{ns}/left/camera_info",
                        f"{ns}/right/camera_info", f"{ns}/ground_truth/depth")


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("output")
    source = p.add_mutually_exclusive_group()
    source.add_argument("--from-frames", metavar="DIR", default=None,
                        help="a recorded sequence: left_*/right_* images, calib.json, optional timestamps.txt")
    source.add_argument("--scene", metavar="NAME_OR_DIR", default=None,
                        help="a static camera on a dataset scene: a Middlebury folder or 'motorcycle'")
    p.add_argument("--frames", type=int, default=100, help="synthetic or --scene: number of frames")
    p.add_argument("--noise", type=float, default=2.0 / 255.0, help="--scene: per-frame sensor noise (std, [0, 1])")
    p.add_argument("--rate", type=float, default=10.0, help="frames per second (without the recording's own stamps)")
    p.add_argument("--size", default="640x480", help="synthetic: image size")
    p.add_argument("--domain", default="outdoor", help="synthetic: domain")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--storage", choices=("mcap", "sqlite3"), default="mcap")
    p.add_argument("--namespace", default="/stereo")
    args = p.parse_args(argv)
    if args.frames < 1:
        p.error(f"--frames: expected at least 1, got {args.frames}")
    start = time.time()
    topics = topics_for(args.namespace)
    try:
        if args.from_frames is not None:
            frames, stamps = pair_folder_frames(args.from_frames)
            path = write_frames(args.output, frames, args.rate, args.storage, topics, stamps_ns=stamps)
            what = f"{len(frames)} recorded frames of {args.from_frames}"
        elif args.scene is not None:
            from ..core.datasets import load_scenes

            scene = next(iter(load_scenes([args.scene])))
            path = write_frames(args.output, scene_frames(scene, args.frames, args.noise, args.seed), args.rate,
                                args.storage, topics)
            what = f"{args.frames} frames of the scene {scene.name} (static camera, noise {args.noise:.4f})"
        else:
            width, height = (int(v) for v in args.size.lower().split("x"))
            path = write_synthetic_bag(args.output, args.seed, args.frames, width, height, args.domain, args.rate,
                                       args.storage, topics)
            what = f"{args.frames} synthetic frames ({width}x{height}, {args.domain})"
    except (BagError, ValueError, OSError) as exc:
        print(f"[make_bag] error: {exc}", file=sys.stderr)
        return 2
    print(f"[make_bag] wrote {what} ({args.storage}) to {path} in {time.time() - start:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
