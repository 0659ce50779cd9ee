"""Evaluate the stereo pipeline on a rosbag2, frame by frame.

    python -m stereo_depth_ros.tools.replay BAG --mode replay|offline --output replay_report [--adaptation mad]

``offline``: runs the node's own per-frame pipeline (:func:`~stereo_depth_ros.core.pipeline.process_frame`)
on the bag's frames without a ROS graph, as fast as the machine allows, in three arms on the same
frames: the network with online adaptation, the frozen network, and OpenCV SGBM. Adaptation steps
run in line after each frame (deterministic).

Scoring, per frame and per arm (what the arm publishes: invalid pixels are holes):

* on the frames that carry ground-truth depth (dense, or sparse like a LiDAR scan: NaN = no
  point), over the ground-truth pixels only: EPE, bad-2, bad-3, D1-all and density, holes counting
  as errors (a hole reads as ``d = 0`` in ``epe``), ``epe_valid`` over the pixels the arm gives,
  AbsRel, RMSE, delta<1.25 (depth) and ``gt_pixels`` (how many pixels were scored);
* on every frame, with or without ground truth (so that adaptation can be followed where nothing
  else says what is true): ``photometric_error``, the mean per-pixel image error (the adaptation's
  ``image_loss``, :func:`~stereo_depth_ros.core.losses.image_error_function`) of the right image
  warped into the left view through the arm's disparity, over the arm's valid pixels whose sample
  lies in the right image; ``sgbm_agreement``, the % of SGBM's confident pixels where the arm is
  within :data:`~stereo_depth_ros.core.proxy.AGREEMENT_PX` pixels (its holes disagree); and
  ``image_density``, the % of all pixels the arm gives.

Summaries over the whole sequence and over its first, middle and last thirds of the played frames
(adaptation at work), each naming the frames with ground truth it holds (``gt_frames``); accuracy
is pixel-weighted over those frames, the image scores are means over the part's frames. Writes
``metrics.json``, ``metrics.csv``, ``report.md``, PNG figures (error over time and photometric
error over time per arm; the last frame's depth colour map, reconstruction error and rendered point
cloud) and the last frame's cloud as ``.ply``.

``replay``: starts the real node in its own process from a params file (the one users launch
with), plays the bag into the ROS graph with its original timing x ``--rate`` (optionally
publishing ``/clock`` for ``use_sim_time``), records the node's outputs (disparity, depth,
diagnostics) into ``<output>/node_output`` (a rosbag2), and evaluates them; the frozen network and
SGBM run on the same frames in this process for comparison. Frames the node skipped or dropped
count as all-hole frames in the node's scores.
"""

from __future__ import annotations

import argparse
import copy
import csv
import json
import math
import sys
import time
from dataclasses import dataclass, replace
from functools import partial
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

import numpy as np
import torch

from ..bags import BagError, StereoTopics, raw_messages, read_stereo_bag
from ..core.adaptation import AdaptationConfig, OnlineAdapter, proxy_matcher
from ..core.allocator import keep_freed_memory
from ..core.losses import image_error_function
from ..core.masks import ValidityConfig
from ..core.metrics import aggregate, evaluate_disparity
from ..core.network.estimator import image_to_tensor, prepare_for_inference
from ..core.network.weights import load_model, load_weights
from ..core.pipeline import adaptation_labels, process_frame, resize_images, run_matcher, weights_inference_scale
from ..core.proxy import AGREEMENT_PX
from ..core.sgbm import SgbmBackend
from ..core.warping import warp_right_to_left
from ..ros.params import config_from_values, inference_size, values_from_yaml
from ..ros.conversions import image_to_rgb_float

ARMS = ("adapted", "frozen", "sgbm")
ImageError = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
"""``error(pred, target)``: ``(B, 3, H, W)`` images in [0, 1] -> ``(B, 1, H, W)`` per-pixel error."""
NetworkSize = Callable[[int, int], "tuple[int, int] | None"]
"""``(height, width)`` of a frame -> the network's input size, None for the frame's own."""


def _say(message: str) -> None:
    print(f"[replay] {message}", file=sys.stderr, flush=True)


def _frame_metrics(pred: np.ndarray, gt_disp: np.ndarray | None, camera: Any) -> dict[str, Any]:
    """Accuracy of an ``(H, W)`` disparity (pixels, NaN = hole) on the frame's ground-truth pixels
    (``gt_disp``, NaN where there is none; None: a frame without ground truth, density only)."""
    if gt_disp is None:
        valid = np.isfinite(pred) & (pred > 0)
        return {"scored": False, "density": 100.0 * float(valid.mean()), "evaluation": None}
    ev = evaluate_disparity(pred, gt_disp, camera.fx, camera.baseline, doffs=camera.doffs)
    m = ev.all.metrics()
    return {"scored": ev.gt_pixels > 0, "gt_pixels": ev.gt_pixels, "epe": m["epe"], "epe_valid": ev.valid.epe,
            "bad2": m["bad2"], "bad3": m["bad3"], "d1_all": m["d1_all"], "abs_rel": m["abs_rel"], "rmse": m["rmse"],
            "delta1": m["delta1"], "density": ev.density, "evaluation": ev}


@torch.no_grad()
def _image_scores(pred: np.ndarray, f: "_Frame", sgbm_pred: np.ndarray | None, image_error: ImageError) -> dict[str, Any]:
    """Scores that need no ground truth, for an ``(H, W)`` disparity (pixels, NaN = hole) of the
    frame's left view: ``photometric_error`` (mean image error of the right image warped into the
    left view through it, over its valid in-view pixels; NaN without any), ``sgbm_agreement`` (%
    of SGBM's confident pixels within ``AGREEMENT_PX`` of it, holes disagreeing; None for SGBM
    itself) and ``image_density`` (% of all pixels it gives)."""
    valid = np.isfinite(pred) & (pred > 0)
    disparity = torch.from_numpy(np.where(valid, pred, 0.0).astype(np.float32)).to(f.right_t.device)[None, None]
    warped, in_view = warp_right_to_left(f.right_t, disparity)
    error = image_error(warped, f.left_t)[0, 0]
    use = torch.from_numpy(valid).to(error.device) & in_view[0, 0]
    out: dict[str, Any] = {"photometric_error": float(error[use].mean()) if bool(use.any()) else float("nan"),
                           "image_density": 100.0 * float(valid.mean()), "sgbm_agreement": None}
    if sgbm_pred is not None:
        confident = np.isfinite(sgbm_pred) & (sgbm_pred > 0)
        close = np.abs(np.where(valid, pred, np.inf) - np.where(confident, sgbm_pred, 0.0)) <= AGREEMENT_PX
        agree = int(np.count_nonzero(close & valid & confident))
        count = int(np.count_nonzero(confident))
        out["sgbm_agreement"] = 100.0 * agree / count if count else float("nan")
    return out


def _mean(rows: list[dict[str, Any]], key: str) -> float | None:
    values = [r[key] for r in rows if r.get(key) is not None and np.isfinite(r[key])]
    return float(np.mean(values)) if values else None


def _summary(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """A part of the sequence: accuracy pixel-weighted over its frames with ground truth (``gt_frames``),
    image scores and density averaged over its frames, median time."""
    if not rows:
        return {"frames": 0, "gt_frames": []}
    evaluations = [r["evaluation"] for r in rows if r.get("evaluation") is not None]
    times = [r["time_ms"] for r in rows if r.get("time_ms") is not None and np.isfinite(r["time_ms"])]
    out: dict[str, Any] = {"frames": len(rows), "time_ms": float(np.median(times)) if times else float("nan"),
                           "gt_frames": [r["frame"] for r in rows if r.get("scored")]}
    if evaluations:
        ev = aggregate(evaluations)
        m = ev.all.metrics()
        out.update({k: m[k] for k in ("epe", "bad2", "bad3", "d1_all", "abs_rel", "rmse", "delta1")})
        out.update(epe_valid=ev.valid.epe, density=ev.density, gt_pixels=ev.gt_pixels)
    else:
        out["density"] = float(np.mean([r["density"] for r in rows]))
    for key in ("photometric_error", "sgbm_agreement", "image_density"):
        value = _mean(rows, key)
        if value is not None:
            out[key] = value
    return out


@dataclass
class _Frame:
    index: int
    stamp_ns: int
    camera: Any
    left: np.ndarray
    right: np.ndarray
    left_t: Any
    right_t: Any
    gt_disp: np.ndarray | None


def _frames(bag: Path, topics: StereoTopics, device: str, max_frames: int | None) -> Iterator[_Frame]:
    from tqdm import tqdm

    for index, frame in enumerate(tqdm(read_stereo_bag(bag, topics), desc="evaluating", unit="frame", file=sys.stderr,
                                       total=max_frames, leave=False)):
        if max_frames is not None and index >= max_frames:
            return
        camera = frame.camera()
        left, right = image_to_rgb_float(frame.left), image_to_rgb_float(frame.right)
        gt_disp = None
        if frame.ground_truth_depth is not None:
            z = frame.ground_truth_depth
            ok = np.isfinite(z) & (z > 0)
            # d = f B / Z + doffs (doffs = cx_left - cx_right, 0 for most rigs)
            gt_disp = np.where(ok, camera.fx * camera.baseline / np.where(ok, z, 1.0) + camera.doffs, np.nan).astype(np.float32)
        yield _Frame(index, frame.stamp_ns, camera, left, right, image_to_tensor(left, device), image_to_tensor(right, device), gt_disp)


class _Fusion:
    """The node's fused output (``output.fusion``) offline: its SGBM (adaptation's proxy settings, the
    network's search range, at the network's input size), run once per frame for every network arm
    and for the adaptation's labels, as the node does."""

    def __init__(self, adaptation: AdaptationConfig, max_disparity: float, margin: float | None) -> None:
        self.margin = margin
        self.matcher = proxy_matcher(adaptation, max_disparity) if margin is not None else None

    def disparity(self, f: _Frame, size: tuple[int, int] | None) -> np.ndarray | None:
        """``(h, w)`` SGBM disparity (NaN holes) of the frame at the network's input size, or None without fusion."""
        if self.matcher is None:
            return None
        return run_matcher(self.matcher, f.left_t, f.right_t, size)


def _network_row(model: Any, f: _Frame, validity: ValidityConfig, network_size: NetworkSize | None,
                 sgbm_pred: np.ndarray, image_error: ImageError, matcher: np.ndarray | None = None,
                 fusion_margin: float = 0.5) -> tuple[dict[str, Any], Any]:
    """What the node publishes from this network on a frame (fused with ``matcher``, SGBM's
    disparity at the network's input size, when given; its validity mask applied), scored; and the
    pipeline's result."""
    start = time.perf_counter()
    was_training = model.training
    model.eval()
    size = network_size(*f.left_t.shape[-2:]) if network_size is not None else None
    matcher_t = torch.from_numpy(matcher)[None, None].to(f.left_t.device) if matcher is not None else None
    result = process_frame(model, f.left_t, f.right_t, f.camera, validity, size, matcher_disparity=matcher_t,
                           fusion_margin=fusion_margin)
    model.train(was_training)
    elapsed = 1000 * (time.perf_counter() - start)
    mask = result.validity.mask[0, 0].cpu().numpy()
    pred = np.where(mask, result.disparity_left[0, 0].float().cpu().numpy(), np.nan)
    row = {"frame": f.index, "stamp_ns": f.stamp_ns, "time_ms": elapsed,
           **_image_scores(pred, f, sgbm_pred, image_error), **_frame_metrics(pred, f.gt_disp, f.camera)}
    return row, result


def _sgbm_row(sgbm: SgbmBackend, f: _Frame, image_error: ImageError) -> tuple[dict[str, Any], np.ndarray]:
    """SGBM's disparity (NaN holes) on a frame, scored; and the disparity (the other arms' reference)."""
    start = time.perf_counter()
    pred = sgbm(f.left, f.right)
    elapsed = 1000 * (time.perf_counter() - start)
    return {"frame": f.index, "stamp_ns": f.stamp_ns, "time_ms": elapsed, **_image_scores(pred, f, None, image_error),
            **_frame_metrics(pred, f.gt_disp, f.camera)}, pred


def _progress(per_frame: dict[str, list[dict[str, Any]]], index: int) -> None:
    if (index + 1) % 10 == 0:
        key, name = ("epe", "EPE") if per_frame["frozen"][-1].get("scored") else ("photometric_error", "photometric")
        value = lambda row: float("nan") if row.get(key) is None else row[key]  # noqa: E731
        _say(f"frame {index + 1}: {name} " + ", ".join(f"{arm} {value(rows[-1]):.3f}"
                                                       for arm, rows in per_frame.items() if rows))


def _finish(output: Path, mode: str, bag: Path, per_frame: dict[str, list[dict[str, Any]]], last: Any, has_gt: bool,
            extra: dict[str, Any]) -> dict[str, Any]:
    n = len(per_frame["frozen"])
    if n == 0:
        raise BagError(f"{bag} holds no complete stereo frame on the chosen topics")
    third = max(1, n // 3)
    spans = {"all": (0, n), "first_third": (0, third), "middle_third": (third, max(third, n - third)),
             "last_third": (n - third, n)}
    summary = {arm: {part: _summary(rows[lo:hi]) for part, (lo, hi) in spans.items()} for arm, rows in per_frame.items()}
    if "adaptation_steps" in extra and "adapted" in summary:
        summary["adapted"]["all"].update(steps=extra["adaptation_steps"], rollbacks=extra["rollbacks"])
    scored = [r["frame"] for r in per_frame["frozen"] if r.get("scored")]
    parts = {part: {"frames": [lo, hi - 1] if hi > lo else [], "gt_frames": [i for i in scored if lo <= i < hi]}
             for part, (lo, hi) in spans.items()}
    report = {"bag": str(bag), "mode": mode, "frames": n, "ground_truth": bool(has_gt), "ground_truth_frames": scored,
              "parts": parts, **extra, "summary": summary,
              "frames_detail": {arm: [{k: v for k, v in r.items() if k != "evaluation"} for r in rows]
                                for arm, rows in per_frame.items()}}
    with open(output / "metrics.csv", "w", newline="") as f:
        keys = sorted({k for rows in report["frames_detail"].values() for r in rows for k in r})
        writer = csv.DictWriter(f, fieldnames=["arm"] + keys)
        writer.writeheader()
        for arm, rows in report["frames_detail"].items():
            for r in rows:
                writer.writerow({"arm": arm, **r})
    report["figures"] = write_figures(output, per_frame, last, bool(has_gt))
    report["figures_source"] = "adapted network (offline)" if mode == "offline" else "frozen network, recomputed offline"
    (output / "metrics.json").write_text(json.dumps(report, indent=2, default=float) + "\n")
    (output / "report.md").write_text(markdown(report) + "\n")
    return report


def run_offline(bag: Path, output: Path, topics: StereoTopics, adaptation: AdaptationConfig, validity: ValidityConfig,
                weights: str | None = None, max_frames: int | None = None, device: str = "cpu",
                network_size: NetworkSize | None = None, save_weights: Path | None = None,
                fusion_margin: float | None = None) -> dict[str, Any]:
    """Evaluate the adapted and frozen network and SGBM on the bag's frames; write the report.

    ``network_size(height, width)`` gives the network's input size for a frame (the node's
    ``inference_*`` parameters; None or returning None: the frame's size); adaptation runs at that
    size, as in the node. ``save_weights``: write the adapted weights there at the end
    (safetensors, atomically, with a JSON sidecar naming the bag and the settings).
    ``fusion_margin``: the network arms publish the node's fused output (``output.fusion: sgbm``
    with that margin; its SGBM also gives the adaptation its labels); None: the network alone."""
    output.mkdir(parents=True, exist_ok=True)
    adapted_model, meta = load_model(weights, device)
    frozen_model = prepare_for_inference(copy.deepcopy(adapted_model), device)
    adapter = OnlineAdapter(adapted_model, adaptation)
    sgbm = SgbmBackend()
    fusion = _Fusion(adaptation, adapted_model.config.max_disparity, fusion_margin)
    margin = fusion_margin if fusion_margin is not None else 0.5
    label_matcher = proxy_matcher(adaptation, adapted_model.config.max_disparity)  # labels of an upsampled frame
    image_error = image_error_function(adaptation.image_loss)
    per_frame: dict[str, list[dict[str, Any]]] = {arm: [] for arm in ARMS}
    has_gt, last = False, None
    for f in _frames(bag, topics, device, max_frames):
        has_gt = has_gt or f.gt_disp is not None
        sgbm_row, sgbm_pred = _sgbm_row(sgbm, f, image_error)
        size = network_size(*f.left_t.shape[-2:]) if network_size is not None else None
        matcher = fusion.disparity(f, size)
        row, result = _network_row(adapted_model, f, validity, network_size, sgbm_pred, image_error, matcher, margin)
        labels = (adaptation_labels(matcher, label_matcher, f.left_t, f.right_t, size)  # as the node's
                  if adaptation.proxy == "sgbm" else None)
        step = adapter.step(resize_images(f.left_t, size), resize_images(f.right_t, size), labels)
        row.update({"adaptation_status": step.status, "adaptation_loss": step.loss,
                    "adaptation_ms": 1000 * step.seconds, "rollbacks": adapter.rollbacks})
        per_frame["adapted"].append(row)
        last = (f.left, f.camera, result)
        per_frame["frozen"].append(_network_row(frozen_model, f, validity, network_size, sgbm_pred, image_error,
                                                matcher, margin)[0])
        per_frame["sgbm"].append(sgbm_row)
        _progress(per_frame, f.index)
    extra = {"adaptation": adaptation.__dict__, "validity": validity.__dict__, "weights": meta.get("training_command"),
             "fusion": "none" if fusion_margin is None else f"sgbm (margin {fusion_margin:g})",
             "photometric_error_function": adaptation.image_loss,
             "adaptation_steps": adapter.steps, "rollbacks": adapter.rollbacks}
    if save_weights is not None and per_frame["adapted"]:
        extra_meta = {"source": "stereo_depth_replay --mode offline", "bag": str(bag),
                      "frames": len(per_frame["adapted"]), "initial_weights": weights or "shipped"}
        written = adapter.save(save_weights, extra_meta, weights_inference_scale(meta))
        extra["saved_weights"] = str(written)
        _say(f"adapted weights written to {written}")
    return _finish(output, "offline", bag, per_frame, last, has_gt, extra)


@dataclass
class PlayResult:
    """What a replay through the live node produced."""

    disparities: dict[int, Any]
    received_at: dict[int, float]
    latency_ms: dict[int, float]
    recorded: list[tuple[str, str, int, bytes]]
    diagnostics: list[Any]
    node_log: str
    node_returncode: int | None


def play_into_node(bag: Path, topics: StereoTopics, params_file: Path, namespace: str = "/stereo", rate: float = 1.0,
                   clock: bool = False, domain_id: int | None = None, settle: float = 5.0, timeout: float = 120.0,
                   lockstep: bool = False, lockstep_wait: float = 60.0) -> PlayResult:
    """Start the node (own process), play the bag into it, record its outputs, stop it with SIGINT.

    With ``lockstep`` each frame is published once the previous frame's output arrived (or after
    ``lockstep_wait`` seconds, for a frame the node skipped): no frame is dropped, for
    deterministic evaluation through the live node, however slow a frame is (on a busy 2-core CPU
    the demo's first frames took more than 5 s, the earlier limit, and one was superseded);
    otherwise the bag's timing x ``rate`` is kept and the node drops what it cannot keep up with.
    ``settle``: after the last frame, how long without output ends the wait for the rest.
    """
    import os
    import signal
    import subprocess
    import threading

    import rclpy
    from rclpy.executors import SingleThreadedExecutor
    from rclpy.node import Node
    from rclpy.qos import QoSProfile, QoSReliabilityPolicy
    from rclpy.serialization import deserialize_message, serialize_message
    from rosgraph_msgs.msg import Clock
    from sensor_msgs.msg import CameraInfo, Image
    from diagnostic_msgs.msg import DiagnosticArray
    from stereo_msgs.msg import DisparityImage

    if rate <= 0:
        raise ValueError(f"rate: expected a positive factor, got {rate}")
    domain = domain_id if domain_id is not None else 100 + os.getpid() % 100
    ns = "/" + namespace.strip("/") if namespace.strip("/") else ""
    profile = Path(__file__).resolve().parents[2] / "config" / "fastdds_profile.xml"
    env = dict(os.environ, ROS_DOMAIN_ID=str(domain), ROS_AUTOMATIC_DISCOVERY_RANGE="LOCALHOST", PYTHONUNBUFFERED="1")
    if profile.is_file():
        env.setdefault("FASTDDS_DEFAULT_PROFILES_FILE", str(profile))
    command = [sys.executable, "-m", "stereo_depth_ros.ros.node", "--ros-args", "--params-file", str(params_file),
               "-r", f"__ns:={ns or '/'}", "-r", f"left/image_rect:={topics.left_image}", "-r", f"right/image_rect:={topics.right_image}",
               "-r", f"left/camera_info:={topics.left_info}", "-r", f"right/camera_info:={topics.right_info}"]
    if clock:
        command += ["-p", "use_sim_time:=true"]
    _say(f"starting the node: {' '.join(command[2:])}")
    process = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    log_lines: list[str] = []
    reader = threading.Thread(target=lambda: log_lines.extend(process.stdout), daemon=True)
    reader.start()

    context = rclpy.Context()
    rclpy.init(context=context, domain_id=domain)
    player = Node("stereo_depth_replay", context=context)
    qos = QoSProfile(depth=10, reliability=QoSReliabilityPolicy.RELIABLE)
    types = {topics.left_image: Image, topics.right_image: Image, topics.left_info: CameraInfo, topics.right_info: CameraInfo}
    publishers = {topic: player.create_publisher(t, topic, qos) for topic, t in types.items()}
    clock_pub = player.create_publisher(Clock, "/clock", 10) if clock else None
    lock = threading.Lock()
    disparities: dict[int, Any] = {}
    received_at: dict[int, float] = {}
    recorded: list[tuple[str, str, int, bytes]] = []
    diagnostics: list[Any] = []
    last_output = [time.monotonic()]

    def record(topic: str, msgtype: str, msg: Any) -> None:
        with lock:
            recorded.append((topic, msgtype, time.time_ns(), bytes(serialize_message(msg))))
            if msgtype == "stereo_msgs/msg/DisparityImage":
                stamp = msg.header.stamp.sec * 1_000_000_000 + msg.header.stamp.nanosec
                disparities[stamp] = msg
                received_at[stamp] = time.monotonic()
                last_output[0] = time.monotonic()
            elif msgtype == "diagnostic_msgs/msg/DiagnosticArray":
                diagnostics.append((time.monotonic(), msg))

    player.create_subscription(DisparityImage, f"{ns}/disparity", lambda m: record(f"{ns}/disparity", "stereo_msgs/msg/DisparityImage", m), qos)
    player.create_subscription(Image, f"{ns}/depth/image", lambda m: record(f"{ns}/depth/image", "sensor_msgs/msg/Image", m), qos)
    player.create_subscription(DiagnosticArray, "/diagnostics", lambda m: record("/diagnostics", "diagnostic_msgs/msg/DiagnosticArray", m), 10)
    executor = SingleThreadedExecutor(context=context)
    executor.add_node(player)
    spinner = threading.Thread(target=executor.spin, daemon=True)
    spinner.start()
    published_at: dict[int, float] = {}
    try:
        deadline = time.monotonic() + timeout
        while not all(p.get_subscription_count() > 0 for p in publishers.values()) or player.count_publishers(f"{ns}/disparity") == 0:
            if process.poll() is not None:
                raise RuntimeError("the node exited before the replay started:\n" + "".join(log_lines[-30:]))
            if time.monotonic() > deadline:
                raise RuntimeError("the node did not connect within the timeout:\n" + "".join(log_lines[-30:]))
            time.sleep(0.1)
        messages = list(raw_messages(bag, list(types)))
        if not messages:
            raise BagError(f"{bag} holds no messages on {list(types)}")
        _say(f"playing {len(messages)} messages at x{rate:g}{' with /clock' if clock else ''}")
        bag_start, wall_start = messages[0][2], time.monotonic()
        last_clock = None
        waiting_for: int | None = None
        for topic, _, timestamp, raw in messages:
            if lockstep:
                if waiting_for is not None and topic == topics.left_info:
                    end = time.monotonic() + lockstep_wait
                    while time.monotonic() < end:
                        with lock:
                            if waiting_for in disparities:
                                break
                        time.sleep(0.01)
                    waiting_for = None
            else:
                delay = wall_start + (timestamp - bag_start) / 1e9 / rate - time.monotonic()
                if delay > 0:
                    time.sleep(delay)
            if clock_pub is not None and timestamp != last_clock:
                tick = Clock()
                tick.clock.sec, tick.clock.nanosec = timestamp // 1_000_000_000, timestamp % 1_000_000_000
                clock_pub.publish(tick)
                last_clock = timestamp
            msg = deserialize_message(raw, types[topic])
            if topic == topics.left_image:
                stamp = msg.header.stamp.sec * 1_000_000_000 + msg.header.stamp.nanosec
                published_at[stamp] = time.monotonic()
                waiting_for = stamp
            publishers[topic].publish(msg)
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            with lock:
                done = len(disparities) >= len(published_at)
                quiet = time.monotonic() - last_output[0] > settle
            if done or quiet:
                break
            time.sleep(0.1)
        # Adaptation runs beside the frame path: let the node finish the step in flight, so that its
        # final diagnostics (the report's adaptation summary) count every step it took.
        outputs_done = time.monotonic()
        end = time.monotonic() + timeout
        while time.monotonic() < end and process.poll() is None:
            with lock:
                latest = diagnostics[-1] if diagnostics else None
            if latest is not None and latest[0] > outputs_done and not _adaptation_busy(latest[1]):
                break
            time.sleep(0.05)
    finally:
        process.send_signal(signal.SIGINT)
        try:
            process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        reader.join(timeout=5)
        executor.shutdown()
        player.destroy_node()
        rclpy.shutdown(context=context)
    latency = {s: 1000 * (received_at[s] - published_at[s]) for s in disparities if s in published_at}
    return PlayResult(disparities, received_at, latency, recorded, diagnostics, "".join(log_lines), process.returncode)


def _adaptation_busy(array: Any) -> bool:
    """Whether a DiagnosticArray says the node's adaptation worker has a step pending or running
    (False when it does not say: older nodes, adaptation status missing)."""
    for status in array.status:
        if status.name.endswith(": adaptation"):
            return any(kv.key == "busy" and kv.value == "True" for kv in status.values)
    return False


def _adaptation_at(played: PlayResult, when: float | None) -> dict[str, Any]:
    """The node's adaptation state (mode, steps, loss, rollbacks) from its latest diagnostics
    received before ``when`` (the frame's output); empty when none came yet."""
    if when is None:  # the node never published this frame
        return {}
    latest = None
    for received, array in played.diagnostics:
        if received > when:
            break
        latest = array
    if latest is None:
        return {}
    for status in latest.status:
        if status.name.endswith(": adaptation"):
            values = {kv.key: kv.value for kv in status.values}
            out: dict[str, Any] = {"adaptation_mode": values.get("mode")}
            for key, name in (("steps", "adaptation_steps"), ("rollbacks", "rollbacks"), ("loss", "adaptation_loss")):
                try:
                    out[name] = float(values[key])
                except (KeyError, ValueError):
                    pass
            return out
    return {}


def run_replay(bag: Path, output: Path, topics: StereoTopics, params_file: Path, validity: ValidityConfig,
               weights: str | None = None, rate: float = 1.0, clock: bool = False, namespace: str = "/stereo",
               domain_id: int | None = None, lockstep: bool = False,
               network_size: NetworkSize | None = None, sgbm_max_disparity: float | None = None,
               image_loss: str = "ssim_l1", fusion_margin: float | None = None,
               adaptation: AdaptationConfig | None = None) -> dict[str, Any]:
    """Replay the bag through the live node, then score its outputs next to the frozen network and SGBM
    (run at ``network_size``, as in :func:`run_offline`; SGBM searches ``sgbm_max_disparity`` pixels,
    None: its default for the width). ``image_loss`` names the photometric error of every arm
    (:func:`~stereo_depth_ros.core.losses.image_error_function`; the node's adaptation's, as a rule).
    ``fusion_margin``: the frozen arm is fused with SGBM as the node's ``output.fusion: sgbm`` is
    (with ``adaptation``'s proxy SGBM settings), None: the network alone."""
    from ..bags import write_raw
    from ..ros.conversions import image_to_numpy

    output.mkdir(parents=True, exist_ok=True)
    played = play_into_node(bag, topics, params_file, namespace, rate, clock, domain_id, lockstep=lockstep)
    (output / "node.log").write_text(played.node_log)
    recorded_bag = output / "node_output"
    if recorded_bag.exists():
        import shutil

        shutil.rmtree(recorded_bag)
    write_raw(recorded_bag, played.recorded)
    frozen_model, meta = load_model(weights)
    frozen_model = prepare_for_inference(frozen_model, "cpu")
    sgbm = SgbmBackend(max_disparity=sgbm_max_disparity)
    fusion = _Fusion(adaptation or AdaptationConfig(), frozen_model.config.max_disparity, fusion_margin)
    image_error = image_error_function(image_loss)
    per_frame: dict[str, list[dict[str, Any]]] = {"node": [], "frozen": [], "sgbm": []}
    has_gt, last = False, None
    for f in _frames(bag, topics, "cpu", None):
        has_gt = has_gt or f.gt_disp is not None
        sgbm_row, sgbm_pred = _sgbm_row(sgbm, f, image_error)
        msg = played.disparities.get(f.stamp_ns)
        if msg is not None:
            d = image_to_numpy(msg.image).astype(np.float32)
            pred = np.where(np.isfinite(d) & (d >= msg.min_disparity) & (d > 0), d, np.nan)
        else:
            pred = np.full(f.left.shape[:2], np.nan, np.float32)  # skipped or dropped by the node
        row = {"frame": f.index, "stamp_ns": f.stamp_ns, "time_ms": played.latency_ms.get(f.stamp_ns, float("nan")),
               "published": msg is not None, **_adaptation_at(played, played.received_at.get(f.stamp_ns)),
               **_image_scores(pred, f, sgbm_pred, image_error), **_frame_metrics(pred, f.gt_disp, f.camera)}
        per_frame["node"].append(row)
        size = network_size(*f.left_t.shape[-2:]) if network_size is not None else None
        frozen_row, result = _network_row(frozen_model, f, validity, network_size, sgbm_pred, image_error,
                                          fusion.disparity(f, size), fusion_margin if fusion_margin is not None else 0.5)
        per_frame["frozen"].append(frozen_row)
        last = (f.left, f.camera, result)
        per_frame["sgbm"].append(sgbm_row)
        _progress(per_frame, f.index)
    adaptation = [kv for _, array in played.diagnostics[-1:] for status in array.status if status.name.endswith(": adaptation")
                  for kv in status.values]
    extra = {"params_file": str(params_file), "rate": rate, "clock": clock, "lockstep": lockstep, "node_returncode": played.node_returncode,
             "frames_published": sum(r["published"] for r in per_frame["node"]),
             "node_adaptation": {kv.key: kv.value for kv in adaptation}, "recorded_bag": str(recorded_bag),
             "weights": meta.get("training_command"), "photometric_error_function": image_loss}
    return _finish(output, "replay", bag, per_frame, last, has_gt, extra)


def write_figures(output: Path, per_frame: dict[str, list[dict[str, Any]]], last: Any, has_gt: bool) -> list[str]:
    """Error over time (bad-2 with ground truth, else photometric error), photometric error over
    time (every frame), the last frame's depth colour map, reconstruction error, a rendered cloud
    and the cloud as PLY (the adapted arm's published output)."""
    import cv2

    from ..core import pointcloud
    from .evaluate import colorize
    from .plots import line_plot, render_cloud

    names = []
    key, label = ("bad2", "bad-2 %, holes count") if has_gt else ("photometric_error", "photometric error")
    curve = lambda rows, k: [np.nan if r.get(k) is None else r[k] for r in rows]  # noqa: E731
    series = {arm: curve(rows, key) for arm, rows in per_frame.items()}
    cv2.imwrite(str(output / "error_over_time.png"), line_plot(series, "error over time", label))
    photometric = {arm: curve(rows, "photometric_error") for arm, rows in per_frame.items()}
    cv2.imwrite(str(output / "photometric_error_over_time.png"),
                line_plot(photometric, "right image warped through each arm's disparity", "photometric error"))
    names += ["error_over_time.png", "photometric_error_over_time.png"]
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


def _frame_list(frames: list[int]) -> str:
    """``[86, 87, 88, 90]`` -> ``"86-88, 90"`` (``"none"`` when empty)."""
    runs: list[list[int]] = []
    for i in frames:
        if runs and i == runs[-1][-1] + 1:
            runs[-1].append(i)
        else:
            runs.append([i])
    return ", ".join(f"{r[0]}-{r[-1]}" if len(r) > 1 else str(r[0]) for r in runs) or "none"


def _cell(value: Any, digits: int = 3) -> str:
    return "–" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:.{digits}f}"


def markdown(report: dict[str, Any]) -> str:
    """The summary table of a report, which frames carry ground truth, and per-frame scores of
    those frames when the ground truth is on some frames only."""
    cols = (("epe", "EPE px"), ("epe_valid", "EPE px (given)"), ("bad2", "bad-2 %"), ("bad3", "bad-3 %"),
            ("d1_all", "D1-all %"), ("density", "density %"), ("abs_rel", "AbsRel"), ("delta1", "δ<1.25 %"),
            ("photometric_error", "photometric"), ("sgbm_agreement", "SGBM agreement %"), ("time_ms", "ms/frame"))
    lines = [f"# Replay of `{report['bag']}` ({report['frames']} frames, {report['mode']})", ""]
    scored = report.get("ground_truth_frames", [])
    if report["ground_truth"]:
        parts = report.get("parts", {})
        where = "; ".join(f"{part.replace('_', ' ')} (frames {_frame_list(list(range(p['frames'][0], p['frames'][1] + 1)))})"
                          f": {_frame_list(p['gt_frames'])}" for part, p in parts.items() if part != "all" and p["frames"])
        lines += [f"Ground truth on {len(scored)} of {report['frames']} frames ({_frame_list(scored)}); by third: {where}.", ""]
    lines += ["| arm | part | " + " | ".join(c[1] for c in cols) + " |", "|---|---|" + "---|" * len(cols)]
    for arm, parts in report["summary"].items():
        for part, values in parts.items():
            if not values.get("frames"):
                continue
            lines.append(f"| {arm} | {part.replace('_', ' ')} | " + " | ".join(_cell(values.get(k)) for k, _ in cols) + " |")
    if scored and len(scored) < report["frames"]:
        lines += ["", "Frames with ground truth, per frame:", "",
                  "| frame | stamp s | arm | GT px | bad-2 % | bad-3 % | EPE px | EPE px (given) | density % |",
                  "|---|---|---|---|---|---|---|---|---|"]
        for arm, rows in report["frames_detail"].items():
            for r in rows:
                if r.get("scored"):
                    lines.append(f"| {r['frame']} | {r['stamp_ns'] * 1e-9:.3f} | {arm} | {r['gt_pixels']} | "
                                 + " | ".join(_cell(r.get(k), 2) for k in ("bad2", "bad3", "epe", "epe_valid", "density"))
                                 + " |")
    if report.get("figures"):
        lines += ["", *[f"![{name}]({name})" for name in report["figures"] if name.endswith(".png")],
                  "", f"Last-frame depth, reconstruction error and point cloud (`cloud_last_frame.ply`) of the "
                  f"{report.get('figures_source', 'network')}."]
    if not report["ground_truth"]:
        lines += ["", "The frames scored here carry no ground-truth depth: accuracy columns are empty; photometric "
                  "error, SGBM agreement, density (% of all pixels) and time remain."]
    lines += ["", "Accuracy on the ground-truth pixels only (a sparse ground truth's points), pixel-weighted over "
              "a part's frames with ground truth; holes and invalid pixels count as errors (in 'EPE px' a hole "
              "reads as d = 0; 'EPE px (given)' is over the pixels the arm gives). density: % of ground-truth "
              "pixels the arm gives (a part without ground truth: % of all pixels). photometric: mean "
              f"{report.get('photometric_error_function', 'ssim_l1')} error of the right image warped into the "
              "left view through the arm's disparity, over its valid pixels; SGBM agreement: % of SGBM's "
              f"confident pixels where the arm is within {AGREEMENT_PX:g} px (holes disagree); both are means "
              "over the part's frames, ground truth or not.",
              "", "'adapted' adapts online after each frame; "
              "'frozen' is the shipped network; 'node' is the live node's published output (replay mode); "
              "'sgbm' is OpenCV SGBM (stereo_image_proc's algorithm)."]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("bag", type=Path)
    p.add_argument("--mode", choices=("replay", "offline"), default="offline")
    p.add_argument("--params-file", type=Path, default=Path(__file__).resolve().parents[2] / "config" / "stereo_depth.yaml",
                   help="node parameters (the file users launch with): the node's in --mode replay, and the "
                        "validity thresholds of every arm in both modes")
    p.add_argument("--rate", type=float, default=1.0, help="playback speed factor (--mode replay)")
    p.add_argument("--clock", action="store_true", help="publish /clock and run the node with use_sim_time")
    p.add_argument("--lockstep", action="store_true",
                   help="--mode replay: publish each frame after the previous output (no drops; ignores timing)")
    p.add_argument("--namespace", default="/stereo", help="node namespace (--mode replay)")
    p.add_argument("--output", type=Path, default=Path("replay_report"))
    p.add_argument("--adaptation", choices=("full", "mad", "none"), default=None,
                   help="--mode offline: adaptation mode (default: the params file's adaptation.mode)")
    p.add_argument("--image-loss", choices=("ssim_l1", "census"), default=None,
                   help="reconstruction error of --mode offline's adaptation and of every arm's photometric "
                        "score (default: the params file's)")
    p.add_argument("--learning-rate", type=float, default=None,
                   help="--mode offline: adaptation step size (default: the params file's)")
    p.add_argument("--proxy", choices=("sgbm", "none"), default=None,
                   help="--mode offline: proxy labels of the adaptation loss (default: the params file's)")
    p.add_argument("--save-weights", type=Path, default=None,
                   help="--mode offline: write the adapted weights here at the end (.safetensors + .json sidecar)")
    p.add_argument("--max-frames", type=int, default=None)
    p.add_argument("--weights", default=None)
    p.add_argument("--device", default="cpu")
    for field, default in StereoTopics().__dict__.items():
        p.add_argument(f"--{field.replace('_', '-')}-topic", dest=field, default=default)
    args = p.parse_args(argv)
    keep_freed_memory()  # as stereo_depth_node's main() does
    topics = StereoTopics(**{k: getattr(args, k) for k in StereoTopics().__dict__})
    if args.save_weights is not None and args.mode != "offline":
        p.error("--save-weights: only with --mode offline (the live node saves through adaptation.weights_path)")
    # The thresholds, adaptation settings and network input size the node runs with (its params
    # file), so every arm is masked alike and the network arms run as the node does.
    config = config_from_values(values_from_yaml(str(args.params_file)))
    validity = config.validity()
    overrides = {"mode": args.adaptation, "image_loss": args.image_loss, "learning_rate": args.learning_rate,
                 "proxy": args.proxy}
    adaptation = replace(config.adaptation(), **{k: v for k, v in overrides.items() if v is not None})
    weights_scale = 1.0
    if config.inference_scale == 0.0 and not config.inference_width:  # the scale the weights name
        try:
            weights_scale = weights_inference_scale(load_weights(args.weights)[1])
        except (OSError, ValueError, RuntimeError) as exc:  # RuntimeError: WeightsError
            print(f"[replay] error: {exc}", file=sys.stderr)
            return 2
    network_size = partial(inference_size, config, weights_scale=weights_scale)
    fusion_margin = config.output_fusion_margin if config.output_fusion == "sgbm" else None
    try:
        if args.mode == "offline":
            report = run_offline(args.bag, args.output, topics, adaptation, validity, args.weights, args.max_frames,
                                 args.device, network_size, args.save_weights, fusion_margin)
        else:
            report = run_replay(args.bag, args.output, topics, args.params_file, validity, args.weights, args.rate,
                                args.clock, args.namespace, lockstep=args.lockstep, network_size=network_size,
                                image_loss=adaptation.image_loss, fusion_margin=fusion_margin, adaptation=adaptation)
    except BagError as exc:
        print(f"[replay] {exc}", file=sys.stderr)
        return 2
    print(markdown(report))
    _say(f"report in {args.output.resolve()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
