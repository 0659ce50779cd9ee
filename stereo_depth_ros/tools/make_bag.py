"""Write a stereo sequence as a rosbag2 (MCAP by default): synthetic, a recorded folder, or a real scene.

    python -m stereo_depth_ros.tools.make_bag OUTPUT [--frames 100] [--rate 10] [--size 640x480]
        [--domain outdoor] [--seed 0] [--storage mcap|sqlite3] [--namespace /stereo]
    python -m stereo_depth_ros.tools.make_bag OUTPUT --from-frames DIR      # left_*/right_* + calib.json
        [--ground-truth GT_DIR] [--reverse]
    python -m stereo_depth_ros.tools.make_bag OUTPUT --scene motorcycle --frames 60 [--noise 0.008]

Topics: <ns>/left/image_rect, <ns>/right/image_rect (rgb8), <ns>/left/camera_info,
<ns>/right/camera_info, and <ns>/ground_truth/depth (32FC1 metres, NaN = no ground truth) on the
frames that have ground truth (synthetic and dataset scenes: every frame; a recorded sequence: the
frames with a ground-truth file). Readable by rosbags and ros2 bag.

``--from-frames DIR`` turns a recorded sequence into a bag with its own timestamps: rectified
``left_*.png`` / ``right_*.png`` pairs, a ``calib.json`` (``fx``, ``cx``, ``cy``, ``baseline_m``,
optional ``fy`` and ``P_right``) and an optional ``timestamps.txt`` (one per pair: nanoseconds as
EuRoC, or KITTI date-times ``2011-09-26 13:04:32.351950336``) -- the layouts of
``../shared/realdata/sequences`` and ``../shared/realdata/unlabeled/sequences``. Sparse ground-truth
disparity (KITTI uint16 / 256 PNGs, 0 = no point; also ``.pfm`` / ``.npy``) is read from ``gt/``
beside the images or the folder ``--ground-truth`` names, matched to frames by name
(``disp_lidar_000.png`` -> ``left_000.png``), and written as depth on those frames only.
``--reverse`` plays the sequence backwards (last frame first), each frame with its ground truth;
the stamps stay increasing and keep the recording's spacing, reversed (the first played frame gets
the first original stamp); without ``timestamps.txt`` the frames are ``--rate`` apart.

``--scene`` writes a static camera looking at a dataset scene (a Middlebury folder or
``motorcycle``), ``--frames`` copies with independent sensor noise. A failure leaves no partial bag.
"""

from __future__ import annotations

import argparse
import sys
import time
from typing import Sequence

from ..bags import (BagError, StereoTopics, pair_folder_frames, reverse_sequence, scene_frames, write_frames,
                    write_synthetic_bag)


def _ranges(indices: list[int]) -> str:
    """``[0, 1, 2, 5]`` -> ``"0-2, 5"``."""
    parts: list[str] = []
    for i in sorted(indices):
        if parts and i == int(parts[-1].split("-")[-1]) + 1:
            parts[-1] = f"{parts[-1].split('-')[0]}-{i}"
        else:
            parts.append(str(i))
    return ", ".join(parts)


def topics_for(namespace: str) -> StereoTopics:
    ns = "/" + namespace.strip("/") if namespace.strip("/") else ""
    return StereoTopics(f"{ns}/left/image_rect", f"{ns}/right/image_rect", f"{ns}/left/camera_info",
                        f"{ns}/right/camera_info", f"{ns}/ground_truth/depth")


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("output")
    source = p.add_mutually_exclusive_group()
    source.add_argument("--from-frames", metavar="DIR", default=None,
                        help="a recorded sequence: left_*/right_* images, calib.json, optional timestamps.txt "
                             "(nanoseconds or KITTI date-times) and gt/ (sparse disparity)")
    source.add_argument("--scene", metavar="NAME_OR_DIR", default=None,
                        help="a static camera on a dataset scene: a Middlebury folder or 'motorcycle'")
    p.add_argument("--ground-truth", metavar="GT_DIR", default=None,
                   help="--from-frames: folder of sparse ground-truth disparity (default: DIR/gt when it exists)")
    p.add_argument("--reverse", action="store_true",
                   help="--from-frames: play the sequence backwards (stamps stay increasing, spacing reversed)")
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
    if args.from_frames is None and (args.ground_truth is not None or args.reverse):
        p.error("--ground-truth and --reverse: only with --from-frames")
    start = time.time()
    topics = topics_for(args.namespace)
    try:
        if args.from_frames is not None:
            frames, stamps = pair_folder_frames(args.from_frames, args.ground_truth)
            with_gt = [i for i, frame in enumerate(frames) if frame.depth is not None]
            if args.reverse:
                frames, stamps = reverse_sequence(frames, stamps)
                with_gt = sorted(len(frames) - 1 - i for i in with_gt)
            path = write_frames(args.output, frames, args.rate, args.storage, topics, stamps_ns=stamps)
            what = f"{len(frames)} recorded frames of {args.from_frames}{' reversed' if args.reverse else ''}"
            if with_gt:
                what += f", ground truth on {len(with_gt)} (played as frames {_ranges(with_gt)})"
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
