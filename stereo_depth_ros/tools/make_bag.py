"""Write a synthetic stereo sequence as a rosbag2 (MCAP by default).

    python -m stereo_depth_ros.tools.make_bag OUTPUT [--frames 100] [--rate 10] [--size 640x480]
        [--domain outdoor] [--seed 0] [--storage mcap|sqlite3] [--namespace /stereo]

Topics: <ns>/left/image_rect, <ns>/right/image_rect (rgb8), <ns>/left/camera_info,
<ns>/right/camera_info, <ns>/ground_truth/depth (32FC1 metres). Readable by rosbags and ros2 bag.
"""

from __future__ import annotations

import argparse
import sys
import time
from typing import Sequence

from ..bags import StereoTopics, write_synthetic_bag


def topics_for(namespace: str) -> StereoTopics:
    ns = "/" + namespace.strip("/") if namespace.strip("/") else ""
    return StereoTopics(f"{ns}/left/image_rect", f"{ns}/right/image_rect", f"{ns}/left/camera_info",
                        f"{ns}/right/camera_info", f"{ns}/ground_truth/depth")


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("output")
    p.add_argument("--frames", type=int, default=100)
    p.add_argument("--rate", type=float, default=10.0)
    p.add_argument("--size", default="640x480")
    p.add_argument("--domain", default="outdoor")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--storage", choices=("mcap", "sqlite3"), default="mcap")
    p.add_argument("--namespace", default="/stereo")
    args = p.parse_args(argv)
    width, height = (int(v) for v in args.size.lower().split("x"))
    start = time.time()
    path = write_synthetic_bag(args.output, args.seed, args.frames, width, height, args.domain, args.rate, args.storage,
                               topics_for(args.namespace))
    print(f"[make_bag] wrote {args.frames} frames ({width}x{height}, {args.domain}, {args.rate:g} Hz, {args.storage}) "
          f"to {path} in {time.time() - start:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
