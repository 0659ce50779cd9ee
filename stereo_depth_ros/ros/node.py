"""StereoDepthNode: synchronised stereo in; depth, disparity, point cloud and diagnostics out.

Thin glue: the subscription callback only stores the newest synchronised set (an older one not yet
started is dropped and counted, so latency never grows with a backlog); a processing thread
decodes, validates, runs the core (network, validity masks, depth, point cloud) and publishes;
online adaptation runs in its own worker thread (:class:`~stereo_depth_ros.core.adaptation.AdaptationWorker`).
Bad input never stops the node: the frame is skipped with a throttled log line naming the problem,
counted, and reported on ``/diagnostics``.
"""

from __future__ import annotations

import collections
import gc
import logging
import sys
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

import numpy as np
import rclpy
import torch
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
from rcl_interfaces.msg import SetParametersResult
from rclpy.executors import ExternalShutdownException, MultiThreadedExecutor
from rclpy.node import Node
from rclpy.parameter import Parameter
from rclpy.qos import QoSProfile, QoSReliabilityPolicy, qos_profile_sensor_data, qos_profile_system_default
from rclpy.qos_overriding_options import QoSOverridingOptions
from sensor_msgs.msg import CameraInfo, Image, PointCloud2
from std_srvs.srv import SetBool, Trigger
from stereo_msgs.msg import DisparityImage

from ..core import pointcloud
from ..core.adaptation import (AdaptationWorker, OnlineAdapter, StepResult, load_adapted_or_default, proxy_matcher,
                               proxy_settings)
from ..core.allocator import keep_freed_memory
from ..core.camera import StereoCamera
from ..core.cpu_threads import ThreadCountTuner
from ..core.fusion import SOURCE_NAMES, source_shares
from ..core.network.weights import DEFAULT_WEIGHTS, remove_stale_temp_files
from ..core.cuda_graph import CudaGraphRunner
from ..core.pinned_buffers import PinnedBuffers
from ..core.pipeline import (adaptation_labels, fuse_and_validate, outputs_from_disparities, predict_disparities,
                             resize_images, run_matcher, weights_inference_scale)
from ..core.sgbm import SgbmBackend
from .conversions import (
    ConversionError,
    camera_from_info,
    camera_info_msg,
    depth_image_msg,
    disparity_image_msg,
    image_to_rgb8,
    image_to_rgb_float,
    numpy_to_image,
    pointcloud2_msg,
)
from .params import (MIN_IMAGE_SIZE, NodeConfig, config_from_values, declare_parameters, inference_size,
                     max_image_size, validate_values)
from .params import PARAMS as PARAM_SPECS
from .log_bridge import RosLogBridge
from .sync import StereoSubscriber

__all__ = ["StereoDepthNode", "FrameRejected", "main"]


class FrameRejected(ValueError):
    """A synchronised set the node will not process; ``key`` groups the counters."""

    def __init__(self, key: str, message: str) -> None:
        super().__init__(message)
        self.key = key


@dataclass
class _Frame:
    left: Image
    right: Image
    left_info: CameraInfo | None  # None: cache_camera_info before the first camera_info
    right_info: CameraInfo | None
    received: float


@dataclass
class _Stats:
    received: int = 0
    processed: int = 0
    dropped: int = 0
    rejected: collections.Counter = field(default_factory=collections.Counter)
    last_rejection: str = ""
    last_rejection_time: float = 0.0
    time_jumps: int = 0
    last_input_time: float = 0.0
    last_output_time: float = 0.0
    latencies_ms: collections.deque = field(default_factory=lambda: collections.deque(maxlen=400))
    processing_ms: collections.deque = field(default_factory=lambda: collections.deque(maxlen=400))
    valid_ratio: float = float("nan")
    # Share of the published pixels from each source of the fused output (:mod:`core.fusion`):
    # network, sgbm, agree; empty while the node publishes the network alone.
    source_shares: dict = field(default_factory=dict)
    photometric_error: float = float("nan")
    icp_rmse: float = float("nan")
    icp_fitness: float = float("nan")
    input_times: collections.deque = field(default_factory=lambda: collections.deque(maxlen=400))
    output_times: collections.deque = field(default_factory=lambda: collections.deque(maxlen=400))
    stage_ms: dict = field(default_factory=lambda: collections.defaultdict(lambda: collections.deque(maxlen=400)))
    adaptation_ms: collections.deque = field(default_factory=lambda: collections.deque(maxlen=400))
    # (monotonic time, latency ms) of the frames after the first (whose one-time start-up costs
    # would hold a p95 over a frame count up for hundreds of frames): diagnostics judge the last
    # LATENCY_WINDOW_S seconds.
    recent_latencies: collections.deque = field(default_factory=lambda: collections.deque(maxlen=2000))


def _stamp_ns(msg: Any) -> int:
    return int(msg.header.stamp.sec) * 1_000_000_000 + int(msg.header.stamp.nanosec)


LATENCY_WINDOW_S = 10.0
"""Diagnostics judge the latency of the frames published in the last this many seconds."""


def _rate(times: collections.deque, now: float, window: float = 5.0) -> float:
    recent = [t for t in times if now - t <= window]
    if len(recent) < 2:
        return 0.0
    return (len(recent) - 1) / max(recent[-1] - recent[0], 1e-6)


_DEFAULT_TORCH_THREADS = torch.get_num_threads()  # before main() restricts its own thread

ADAPTATION_CPU_THREADS = 1
"""Torch CPU threads of the adaptation thread: the frame path keeps the others (see below)."""


def single_thread_outside_processing() -> None:
    """Give the calling thread (the executor's, in ``main``) one torch CPU thread.

    PyTorch's OpenMP threads are per calling thread. When more threads run OpenMP teams than there
    are cores, GNU OpenMP stops spin-waiting and every tensor operation pays a thread wake-up:
    measured on 2 cores, a 640x480 add took 62 us from the processing thread once the main thread
    had run a two-thread team, and 24 us when it had not; the node's masks (about a hundred such
    operations) slowed down accordingly. So only the processing thread runs a multi-threaded team:
    the thread that builds the node (model loading) and the adaptation thread use one thread.
    """
    torch.set_num_threads(1)


def set_gil_switch_interval(milliseconds: float) -> None:
    """Set Python's thread switch interval for the process (``0`` leaves it as it is).

    A thread that waits for the GIL asks its holder to drop it only after the switch interval
    (Python's default 5 ms), and every hand-over between the frame thread, the executor thread and
    its callback workers can cost that much. While the frame thread ran the network (tensor
    operations re-take the GIL between kernels), the executor's hand-overs stacked up: measured on
    2 cores at 320x240, 10 Hz, half-scale inference, plain subscriptions in a process with such a
    thread saw stamp-to-callback delays up to about 480 ms (the whole SensorDataQoS history of 5)
    and lost pairs in about half of the runs, and none at 0.5 ms. The node itself, at 320x240, went
    from 8.4-10.0 frames/s with up to 21 of 150 pairs dropped to 10.0 frames/s with none in five
    runs (``stereo_depth_bench_node``; the README's "Input stalls" has the figures).
    """
    if milliseconds < 0:
        raise ValueError(f"gil_switch_interval_ms: expected >= 0 milliseconds, got {milliseconds!r}")
    if milliseconds > 0:
        sys.setswitchinterval(milliseconds / 1000.0)


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {name!r} requested but CUDA is not available")
    return device


class StereoDepthNode(Node):
    """The stereo depth node (see the module docstring and the README's interface table)."""

    def __init__(self, node_name: str = "stereo_depth", **kwargs: Any) -> None:
        super().__init__(node_name, **kwargs)
        self.config: NodeConfig = declare_parameters(self)
        # The core logs through Python logging: to /rosout, throttled, counted for diagnostics.
        self._log_bridge = RosLogBridge(self.get_logger())
        logging.getLogger("stereo_depth_ros").addHandler(self._log_bridge)
        self._param_names = {p.name for p in PARAM_SPECS}
        self.add_on_set_parameters_callback(self._validate_parameters)
        self.add_post_set_parameters_callback(self._apply_parameters)
        self.device = resolve_device(self.config.device)
        set_gil_switch_interval(self.config.gil_switch_interval_ms)  # process-wide, see its docstring
        self._network_threads = self.config.cpu_threads or _DEFAULT_TORCH_THREADS
        # cpu_threads 0: measure 1 thread against all cores while running (a shared CPU favours 1).
        self.thread_tuner = (ThreadCountTuner((1, _DEFAULT_TORCH_THREADS))
                             if self.config.cpu_threads == 0 and _DEFAULT_TORCH_THREADS > 1 else None)
        adapted = self.config.adaptation_weights_path or None
        if adapted is not None:  # temp files of saves interrupted by a kill
            for stale in remove_stale_temp_files(adapted):
                self.get_logger().info(f"removed {stale.name}, left by an interrupted save of {adapted}")
        model, meta, source = load_adapted_or_default(
            adapted if self.config.adaptation_resume else None, self.config.weights or None, self.device
        )
        self.model_source = f"{source}: {adapted if source == 'adapted' else (self.config.weights or DEFAULT_WEIGHTS)}"
        self.model_meta = meta
        try:
            self.weights_scale = weights_inference_scale(meta)
        except ValueError as exc:
            self.get_logger().error(f"{exc}; running the weights at scale 1.0")
            self.weights_scale = 1.0
        self.max_disparity = float(model.config.max_disparity)
        self.adapter = OnlineAdapter(model, self.config.adaptation())
        self.worker = AdaptationWorker(self.adapter, on_result=self._on_adaptation,
                                       cpu_threads=ADAPTATION_CPU_THREADS if self.device.type == "cpu" else None,
                                       compile=self.config.compile,
                                       nice=self.config.adaptation_thread_nice if self.device.type == "cpu" else 0)
        self.worker.set_enabled(self.config.adaptation_enabled and self.config.adaptation_mode != "none")
        cuda = self.device.type == "cuda"
        self._staging = PinnedBuffers(self.device) if cuda else None
        self._graphs = CudaGraphRunner() if cuda and self.config.cuda_graphs else None
        # SGBM of the fused output; its settings are adaptation's proxy settings, so that one run
        # per frame also gives adaptation its labels.
        self._matcher: SgbmBackend | None = None
        self._matcher_key: tuple | None = None
        self._adapt_lock = threading.Lock()
        self._last_adaptation: StepResult | None = None
        self._last_save = time.monotonic()

        out_qos = QoSProfile(depth=self.config.output_qos_depth, reliability=QoSReliabilityPolicy.RELIABLE)
        overrides = QoSOverridingOptions.with_default_policies()
        pub = lambda t, n: self.create_publisher(t, n, out_qos, qos_overriding_options=overrides)  # noqa: E731
        self.pub_depth = pub(Image, "depth/image")
        self.pub_depth_mm = pub(Image, "depth/image_mm")
        self.pub_depth_info = pub(CameraInfo, "depth/camera_info")
        self.pub_disparity = pub(DisparityImage, "disparity")
        self.pub_points = pub(PointCloud2, "points2")
        self.pub_confidence = pub(Image, "confidence")
        self.pub_error = pub(Image, "reconstruction_error")
        self.pub_diagnostics = self.create_publisher(DiagnosticArray, "/diagnostics", 10)

        if self.config.sensor_qos == "sensor_data":
            in_qos = qos_profile_sensor_data
        elif self.config.sensor_qos == "system_default":
            in_qos = qos_profile_system_default
        else:
            in_qos = QoSProfile(depth=self.config.queue_size, reliability=QoSReliabilityPolicy.RELIABLE)
        self.subscriber = StereoSubscriber(
            self, self._on_stereo, qos=in_qos, queue_size=self.config.queue_size,
            approximate=self.config.approximate_sync, slop=self.config.slop,
            jump_threshold=self.config.time_jump_threshold, on_time_jump=self._on_time_jump,
            cache_camera_info=self.config.cache_camera_info,
        )

        self.create_service(Trigger, "~/reset_adaptation", self._srv_reset)
        self.create_service(Trigger, "~/save_weights", self._srv_save)
        self.create_service(SetBool, "~/enable_adaptation", self._srv_enable)

        self.stats = _Stats()
        if self.config.diagnostics_icp_every:
            try:  # import Open3D now: importing it inside the first frame stalled it by ~0.6 s
                pointcloud.open3d_module()
            except ImportError as exc:
                self.get_logger().warning(f"3D consistency diagnostics unavailable: {exc}")
        self._started = time.monotonic()
        self._last_stamp_ns: int | None = None
        self._sync_late_seen = 0
        self._slot: _Frame | None = None
        self._cond = threading.Condition()
        self._stop = False
        self._thread = threading.Thread(target=self._process_loop, name="stereo_depth_processing", daemon=True)
        self._thread.start()
        self.create_timer(self.config.diagnostics_period, self._publish_diagnostics)
        self.get_logger().info(
            f"ready on {self.device} with {self.model_source}; adaptation "
            f"{'on' if self.config.adaptation_enabled else 'off'} ({self.config.adaptation_mode}); "
            f"sync {self.subscriber.backend} {'approximate' if self.config.approximate_sync else 'exact'}"
            + ("; torch.compile on: the first frame of each size waits for the compiler" if self.config.compile else "")
            + ("; CUDA graphs on" if self._graphs is not None else "") + f"; precision {self.config.precision}"
        )

    # ------------------------------------------------------------------ parameters
    def _current_values(self) -> dict[str, Any]:
        return {p.name: self.get_parameter(p.name).value for p in PARAM_SPECS}

    def _validate_parameters(self, params: Sequence[Parameter]) -> SetParametersResult:
        values = self._current_values()
        for p in params:
            values[p.name] = p.value
        problems = validate_values(values)
        return SetParametersResult(successful=not problems, reason="; ".join(problems))

    def _apply_parameters(self, params: Sequence[Parameter]) -> None:
        ours = [p for p in params if p.name in self._param_names]
        if not ours:
            return  # e.g. qos_overrides.* declared by the publishers
        self.config = config_from_values(self._current_values())
        self.worker.update_config(self.config.adaptation())
        self.worker.set_enabled(self.config.adaptation_enabled and self.config.adaptation_mode != "none")
        self.get_logger().info("parameters updated: " + ", ".join(f"{p.name}={p.value}" for p in ours))

    # ------------------------------------------------------------------ input
    def _on_stereo(self, left: Image, right: Image, left_info: CameraInfo, right_info: CameraInfo) -> None:
        now = time.monotonic()
        with self._cond:
            if self._slot is not None:
                self.stats.dropped += 1  # the worker is busy: only the newest set is kept
            self._slot = _Frame(left, right, left_info, right_info, now)
            self.stats.received += 1
            self.stats.last_input_time = now
            self.stats.input_times.append(now)
            self._cond.notify()

    def _process_loop(self) -> None:
        tuner = self.thread_tuner if self.device.type == "cpu" else None
        if self.device.type == "cpu":
            if tuner is not None:
                self._network_threads = tuner.threads()
            torch.set_num_threads(self._network_threads)  # this thread's OpenMP setting only
        while True:
            with self._cond:
                while self._slot is None and not self._stop:
                    self._cond.wait()
                if self._stop:
                    return
                frame, self._slot = self._slot, None
            if tuner is not None and tuner.threads() != self._network_threads:
                self._network_threads = tuner.threads()
                torch.set_num_threads(self._network_threads)
            started = time.monotonic()
            try:
                self._process(frame)
                if tuner is not None:
                    tuner.record(self._network_threads, time.monotonic() - started)
            except FrameRejected as exc:
                self._reject(exc.key, str(exc))
            except (ConversionError, ValueError) as exc:
                self._reject("invalid_input", str(exc))
            except Exception as exc:  # the node never dies on a frame
                self._reject("internal_error", f"{type(exc).__name__}: {exc}")
                self.get_logger().error(f"frame failed: {exc!r}", throttle_duration_sec=5.0)

    def _on_time_jump(self, stamp_ns: int, previous_ns: int) -> None:
        """Time started over (stamps jumped back by more than ``time_jump_threshold``): forget the
        last processed stamp so the new timeline is processed; logged once per jump."""
        self._last_stamp_ns = None
        self.stats.time_jumps += 1
        self.get_logger().warning(
            f"stamps jumped back by {(previous_ns - stamp_ns) * 1e-9:.3f} s (a bag loop or a simulator reset?): "
            f"synchroniser and stamp checks reset, carrying on from {stamp_ns * 1e-9:.3f} s")

    def _reject(self, key: str, message: str) -> None:
        self.stats.rejected[key] += 1
        self.stats.last_rejection = message
        self.stats.last_rejection_time = time.monotonic()
        self.get_logger().warning(f"skipping frame: {message}", throttle_duration_sec=2.0)

    # ------------------------------------------------------------------ processing
    def _check_frame(self, frame: _Frame) -> tuple[np.ndarray, np.ndarray, StereoCamera]:
        c = self.config
        max_width, max_height = max_image_size(c, self.device.type)
        for msg, side in ((frame.left, "left"), (frame.right, "right")):
            if msg.width > max_width or msg.height > max_height:
                raise FrameRejected("too_large", f"{side} image {msg.width}x{msg.height} exceeds the maximum "
                                                 f"{max_width}x{max_height} (max_image_width/height; 0 = by device)")
            if msg.width < MIN_IMAGE_SIZE or msg.height < MIN_IMAGE_SIZE:
                raise FrameRejected("too_small", f"{side} image {msg.width}x{msg.height} is below the minimum "
                                                 f"{MIN_IMAGE_SIZE}x{MIN_IMAGE_SIZE} pixels")
        if (frame.left.width, frame.left.height) != (frame.right.width, frame.right.height):
            raise FrameRejected("size_mismatch", f"left {frame.left.width}x{frame.left.height} and right "
                                                 f"{frame.right.width}x{frame.right.height} images differ in size")
        stamp = _stamp_ns(frame.left)
        if self._last_stamp_ns is not None and self._last_stamp_ns - stamp > c.time_jump_threshold * 1e9:
            self._on_time_jump(stamp, self._last_stamp_ns)  # (the message_filters backend does not tell)
        if self._last_stamp_ns is not None and stamp <= self._last_stamp_ns:
            kind = "duplicate" if stamp == self._last_stamp_ns else "non-monotonic"
            raise FrameRejected("bad_stamp", f"{kind} stamp {stamp * 1e-9:.9f} s (last processed "
                                             f"{self._last_stamp_ns * 1e-9:.9f} s)")
        for info, side in ((frame.left_info, "left"), (frame.right_info, "right")):
            if info is None:  # cache_camera_info, before the first camera_info of this side
                topic = self.subscriber.topics[2 if side == "left" else 3]
                raise FrameRejected("no_camera_info", f"no {side} camera_info received yet on {topic}")
            age = abs(stamp - _stamp_ns(info)) * 1e-9
            if c.camera_info_timeout and age > c.camera_info_timeout:
                raise FrameRejected("stale_camera_info", f"{side} camera_info is {age:.3f} s away from its image "
                                                         f"(camera_info_timeout {c.camera_info_timeout} s)")
            if (info.width, info.height) != (frame.left.width, frame.left.height):
                raise FrameRejected("camera_info_mismatch", f"{side} camera_info is {info.width}x{info.height} but "
                                                            f"the images are {frame.left.width}x{frame.left.height}")
        try:
            camera = camera_from_info(frame.left_info, frame.right_info)
        except ValueError as exc:
            raise FrameRejected("bad_camera_info", f"camera_info rejected: {exc}") from exc
        left = image_to_rgb_float(frame.left)
        right = image_to_rgb_float(frame.right)
        self._last_stamp_ns = stamp
        return left, right, camera

    def _process(self, frame: _Frame) -> None:
        start = time.monotonic()
        c = self.config
        marks = [("start", start)]
        cuda = self.device.type == "cuda"

        def mark(name: str) -> None:
            if cuda:  # attribute GPU work to its own stage (this thread's stream: not the adaptation's)
                torch.cuda.current_stream(self.device).synchronize()
            marks.append((name, time.monotonic()))

        left, right, camera = self._check_frame(frame)
        mark("decode")
        if cuda:
            # (H, W, 3) float32 up through pinned buffers, then (1, 3, H, W) on the device.
            left_t, right_t = (self._staging.upload(name, image).permute(2, 0, 1).unsqueeze(0).contiguous()
                               for name, image in (("left", left), ("right", right)))
            rgb8_t = self._staging.upload("rgb8", image_to_rgb8(frame.left)) if c.output_cloud else None
        else:
            # (H, W, 3) float32 is the channels-last layout the CPU network runs in: a view, no copy.
            left_t, right_t = (torch.from_numpy(image).permute(2, 0, 1).unsqueeze(0) for image in (left, right))
        mark("host_to_device")
        size = inference_size(c, left_t.shape[-2], left_t.shape[-1], self.weights_scale)
        adapting = c.adaptation_enabled and c.adaptation_mode != "none"
        fused = c.output_fusion == "sgbm"
        small = None  # the images at the network's input size, for the adaptation
        if adapting:
            small = tuple(resize_images(t, size) for t in (left_t, right_t))
        matcher_np = matcher_t = None
        if fused and not cuda:
            # SGBM of the fused output, in this thread, before the network. After the network it
            # shared the cores with torch's OpenMP threads, which spin for a few milliseconds after
            # each parallel region (320x240, 2 cores: 13.4 against 9.3 ms a pair; in the node
            # 16.5-17.0 against 14.4-14.9 ms before the network); beside the network, on a thread
            # of its own, both oversubscribed the cores (6.2 frames/s against 8.2 in turn).
            # (on the images as they are when the network's input is upsampled: see run_matcher)
            matcher_np = run_matcher(self._proxy_matcher(), left_t, right_t, size)
            matcher_t = torch.from_numpy(matcher_np)[None, None]
            mark("sgbm")
        index, model = self.worker.acquire()
        try:
            if cuda:
                disp_net = None
                graphs = self._graphs

                def run(fn: Callable[..., Any], *tensors: torch.Tensor, key: tuple) -> Any:
                    """A CUDA graph replay of ``fn`` (eagerly with ``cuda_graphs`` off)."""
                    return graphs(fn, *tensors, key=key) if graphs is not None else fn(*tensors)

                right_view = c.validity_left_right_check
                has_rgb = rgb8_t is not None

                def network_work(l: torch.Tensor, r: torch.Tensor) -> Any:
                    return predict_disparities(model, l, r, size, c.precision, right_view=right_view)

                # Fusion, masks and point cloud from the network's disparities (a second graph).
                def rest_work(l: torch.Tensor, r: torch.Tensor, dl: torch.Tensor, *extra: torch.Tensor) -> Any:
                    given = iter(extra)
                    dr, rgb, matcher = (next(given) if present else None for present in (right_view, has_rgb, fused))
                    return outputs_from_disparities(dl, dr, l, r, camera, c.validity(), c.output_cloud, rgb, matcher,
                                                    c.output_fusion_margin)

                # The network's graph is launched, not waited for: with the fused output SGBM runs on
                # the CPU while the GPU computes it (OpenCV releases the GIL), then the second graph
                # takes both.
                disp_l, disp_r = run(network_work, left_t, right_t,
                                     key=("network", index, size, c.precision, right_view))
                if fused:
                    sgbm_start = time.monotonic()
                    # From the host's copy of the images (a download of the device ones would wait
                    # for the network), resized like the network's input.
                    host = tuple(torch.from_numpy(image).permute(2, 0, 1).unsqueeze(0) for image in (left, right))
                    matcher_np = run_matcher(self._proxy_matcher(), *host, size)
                    self.stats.stage_ms["sgbm_beside_gpu"].append(1000 * (time.monotonic() - sgbm_start))
                    matcher_t = torch.from_numpy(matcher_np)[None, None].to(self.device, non_blocking=True)
                tensors = (left_t, right_t, disp_l) + tuple(t for t in (disp_r, rgb8_t, matcher_t) if t is not None)
                maps, points = run(rest_work, *tensors, key=("outputs", camera, c.validity(), right_view, has_rgb,
                                                              c.output_cloud, fused, c.output_fusion_margin))
                mark("inference")  # synchronises: the model is released only once the GPU is done with it
            else:
                disp_net, disp_r = predict_disparities(model, left_t, right_t, size, c.precision,
                                                       right_view=c.validity_left_right_check)
        finally:
            self.worker.release(index)
        if cuda:
            host_maps, host_points = self._staging.download((maps, points))  # two copies, one synchronisation
            disparity, disparity_right, mask, depth, confidence, error, source = host_maps
            mask = mask > 0.5
            mark("to_numpy")
        else:
            mark("inference")
            with torch.inference_mode():
                disp_l, validity, fusion = fuse_and_validate(disp_net, disp_r, left_t, right_t, camera, c.validity(),
                                                             matcher_t, c.output_fusion_margin)
            mark("masks")
            mask = validity.mask[0, 0].numpy()
            disparity = disp_l[0, 0].numpy()
            disparity_right = disp_r[0, 0].numpy() if disp_r is not None else None
            depth = np.where(mask, validity.depth[0, 0].float().numpy(), np.float32(np.nan))
            confidence = validity.confidence[0, 0].float().numpy()
            error = validity.photometric_error[0, 0].float().numpy()
            source = fusion.source[0, 0].numpy() if fusion is not None else None
            mark("to_numpy")
        if matcher_np is not None:  # the share of the published pixels from each source
            # uint8 on a CPU; a float channel of the maps downloaded from the GPU (np.rint on uint8
            # would cost 1.4 ms at 320x240 for nothing).
            codes = torch.from_numpy(source if source.dtype == np.uint8 else np.rint(source).astype(np.uint8))[None, None]
            self.stats.source_shares = source_shares(codes, torch.from_numpy(np.ascontiguousarray(mask))[None, None])
        else:
            self.stats.source_shares = {}
        header = frame.left.header

        self.pub_depth.publish(depth_image_msg(depth, header, "32FC1"))
        if c.output_depth_mm:
            self.pub_depth_mm.publish(depth_image_msg(depth, header, "16UC1"))
        self.pub_depth_info.publish(camera_info_msg(camera, header))
        self.pub_disparity.publish(disparity_image_msg(
            disparity, camera, header, min_disparity=0.0, max_disparity=self.max_disparity,
            delta_d=1.0 / 256.0, invalid_mask=~mask))
        self.pub_confidence.publish(numpy_to_image(confidence, "32FC1", header))
        self.pub_error.publish(numpy_to_image(error, "32FC1", header))
        mark("publish_images")
        if c.output_cloud:
            if cuda:
                cloud = pointcloud.as_xyzrgb_points(host_points)  # computed on the GPU
            else:
                cloud = pointcloud.organized_xyzrgb(depth, camera.K_numpy(), image_to_rgb8(frame.left))
            cloud_msg = pointcloud2_msg(cloud, header, organized=not c.output_cloud_dense,
                                        decimation=c.output_cloud_decimation, dense=c.output_cloud_dense,
                                        color=c.output_cloud_color)
            mark("cloud")
            self.pub_points.publish(cloud_msg)
            mark("publish_cloud")
        if adapting:
            # Adapt at the size the network runs at: what it learns is what it is used for, and a
            # step (and its SGBM proxy) at a reduced inference size costs what inference saves.
            # With the fused output SGBM already ran on this frame: its result is the proxy label.
            labels = (adaptation_labels(matcher_np, self._proxy_matcher(), left_t, right_t, size)
                      if c.adaptation_proxy == "sgbm" else None)
            self.worker.submit(*small, matcher_disparity=labels)

        now = time.monotonic()
        s = self.stats
        s.processed += 1
        s.last_output_time = now
        s.output_times.append(now)
        latency = (self.get_clock().now().nanoseconds - _stamp_ns(frame.left)) * 1e-6
        s.latencies_ms.append(latency)
        if s.processed > 1:
            s.recent_latencies.append((now, latency))
        s.processing_ms.append(1000 * (now - start))
        for (_, before), (name, after) in zip(marks, marks[1:]):
            s.stage_ms[name].append(1000 * (after - before))
        s.valid_ratio = float(mask.mean())
        s.photometric_error = float(np.mean(error))
        if c.diagnostics_icp_every and s.processed % c.diagnostics_icp_every == 1 and c.validity_left_right_check:
            self._consistency(disparity, disparity_right, camera)
        if c.adaptation_save_period and c.adaptation_weights_path and now - self._last_save > c.adaptation_save_period:
            self._save_adapted()

    def _proxy_matcher(self) -> SgbmBackend:
        """The SGBM of the fused output and of adaptation's labels (adaptation's proxy settings,
        rebuilt when they change); :func:`run_matcher` runs it at the network's input size."""
        settings = proxy_settings(self.config.adaptation())
        if self._matcher is None or self._matcher_key != settings:
            self._matcher = proxy_matcher(self.config.adaptation(), self.max_disparity)
            self._matcher_key = settings
        return self._matcher

    def _consistency(self, d_l: np.ndarray, d_r: np.ndarray, camera: StereoCamera) -> None:
        """ICP residual between the clouds back-projected from the left and the right ``(H, W)``
        disparity (pixels)."""
        scale = camera.fx * camera.baseline
        d_l, d_r = d_l - camera.doffs, d_r - camera.doffs  # Z = f B / (d - doffs)
        z_l = np.where(d_l > 0.5, scale / np.maximum(d_l, 1e-6), np.nan).astype(np.float32)
        z_r = np.where(d_r > 0.5, scale / np.maximum(d_r, 1e-6), np.nan).astype(np.float32)
        K_r = camera.K_numpy().copy()
        K_r[0, 2] = camera.cx_right
        # The target is every 4th row and column of the left cloud: with all 300k points of a
        # 640x480 frame Open3D's KD-tree made this diagnostic take 113 ms instead of 38.
        left_cloud = pointcloud.depth_to_points(z_l, camera.K_numpy())[::4, ::4].reshape(-1, 3)
        right_cloud = pointcloud.depth_to_points(z_r, K_r).reshape(-1, 3)
        right_cloud[:, 0] += camera.baseline  # right camera frame -> left camera frame
        in_range = lambda p: p[np.isfinite(p).all(1) & (p[:, 2] < self.config.validity_max_depth)]  # noqa: E731
        src, tgt = in_range(right_cloud), in_range(left_cloud)
        if len(src) < 100 or len(tgt) < 100:
            return
        distance = 0.05 * float(np.median(tgt[:, 2]))
        try:
            result = pointcloud.icp_residual(src, tgt, max_correspondence_distance=distance, num_samples=1000)
        except (ImportError, ValueError) as exc:
            self.get_logger().warning(f"3D consistency skipped: {exc}", throttle_duration_sec=60.0)
            return
        self.stats.icp_rmse, self.stats.icp_fitness = result.rmse, result.fitness

    # ------------------------------------------------------------------ adaptation
    def _on_adaptation(self, result: StepResult) -> None:
        with self._adapt_lock:
            self._last_adaptation = result
            if result.status == "adapted":
                self.stats.adaptation_ms.append(1000 * result.seconds)

    def _save_adapted(self) -> tuple[bool, str]:
        path = self.config.adaptation_weights_path
        if not path:
            return False, "adaptation.weights_path is empty: nowhere to save"
        try:
            with self.worker.paused():
                written = self.adapter.save(path, {"node": self.get_fully_qualified_name()}, self.weights_scale)
        except OSError as exc:
            return False, f"could not save adapted weights to {path}: {exc}"
        self._last_save = time.monotonic()
        return True, f"saved adapted weights to {written}"

    def _srv_reset(self, request: Trigger.Request, response: Trigger.Response) -> Trigger.Response:
        self.worker.reset()
        response.success, response.message = True, "adaptation reset to the initial weights"
        return response

    def _srv_save(self, request: Trigger.Request, response: Trigger.Response) -> Trigger.Response:
        response.success, response.message = self._save_adapted()
        return response

    def _srv_enable(self, request: SetBool.Request, response: SetBool.Response) -> SetBool.Response:
        result = self.set_parameters([Parameter("adaptation.enabled", value=bool(request.data))])[0]
        response.success = result.successful
        response.message = f"adaptation {'enabled' if request.data else 'disabled'}" if result.successful else result.reason
        return response

    # ------------------------------------------------------------------ diagnostics
    def _report_sync_drops(self, inputs: dict[str, Any]) -> None:
        """Messages the synchroniser discarded for their stamps (not newer than the last set, or a
        repeated stamp) never reach the processing thread: count and report them here."""
        late = 0
        for name, counters in inputs["inputs"].items():
            for key in ("dropped_late", "dropped_duplicate"):
                late += counters.get(key) or 0  # None with the message_filters backend
        new = late - self._sync_late_seen
        self._sync_late_seen = late
        if new > 0:
            self._reject("bad_stamp", f"{new} message(s) with a duplicate or non-monotonic stamp dropped by the synchroniser")

    def _publish_diagnostics(self) -> None:
        now = time.monotonic()
        s, c = self.stats, self.config
        name = self.get_name()
        kv = lambda k, v: KeyValue(key=k, value=f"{v:.6g}" if isinstance(v, float) else str(v))  # noqa: E731
        statuses = []

        inputs = self.subscriber.stats()
        self._report_sync_drops(inputs)
        level, message = DiagnosticStatus.OK, "receiving stereo pairs"
        since_input = now - (s.last_input_time or self._started)
        timeout = c.diagnostics_input_timeout
        last_seen = {n: v.get("last_receive_monotonic") for n, v in inputs["inputs"].items()}
        arriving = [n for n, t in last_seen.items() if t is not None and now - t <= timeout]
        if now - s.last_rejection_time < max(2 * c.diagnostics_period, 2.0) and s.last_rejection_time:
            level, message = DiagnosticStatus.ERROR, f"rejected input: {s.last_rejection}"
        elif since_input > timeout and arriving:
            # Messages do arrive, yet no synchronised set came: an input is missing, or stamps differ.
            silent = [n for n in last_seen if n not in arriving]
            why = (f"nothing on {', '.join(silent)} for {timeout:g} s" if silent
                   else "their stamps never match (cache_camera_info or approximate_sync may help)")
            level, message = DiagnosticStatus.ERROR, f"{', '.join(arriving)} arrive but never form a stereo set: {why}"
        elif since_input > timeout:
            level, message = DiagnosticStatus.WARN, f"no input for {since_input:.1f} s"
        values = [kv("input_rate_hz", _rate(s.input_times, now)), kv("pairs_received", s.received),
                  kv("frames_dropped", s.dropped), kv("frames_rejected", sum(s.rejected.values())),
                  kv("sync_backend", inputs["backend"]), kv("time_jumps", s.time_jumps)]
        values += [kv(f"rejected_{k}", v) for k, v in sorted(s.rejected.items())]
        values += [kv(f"received_{k}", v.get("received")) for k, v in inputs["inputs"].items()]
        statuses.append(DiagnosticStatus(level=level, name=f"{name}: input", message=message,
                                         hardware_id=self.get_fully_qualified_name(), values=values))

        recent = [latency for t, latency in s.recent_latencies if now - t <= LATENCY_WINDOW_S]
        if recent:
            p50, p95 = (float(v) for v in np.percentile(np.array(recent), [50, 95]))
        else:
            p50 = p95 = float("nan")
        level, message = DiagnosticStatus.OK, "publishing"
        if s.processed and now - s.last_output_time > c.diagnostics_input_timeout and now - s.last_input_time < c.diagnostics_input_timeout:
            level, message = DiagnosticStatus.ERROR, f"pipeline stalled: no output for {now - s.last_output_time:.1f} s while input arrives"
        elif np.isfinite(p95) and p95 > c.diagnostics_latency_budget_ms:
            level, message = DiagnosticStatus.WARN, f"latency p95 {p95:.0f} ms above budget {c.diagnostics_latency_budget_ms:.0f} ms"
        elif not s.processed:
            message = "waiting for the first stereo pair"
        proc = float(np.median(s.processing_ms)) if s.processing_ms else float("nan")
        statuses.append(DiagnosticStatus(level=level, name=f"{name}: pipeline", message=message,
                                         hardware_id=self.get_fully_qualified_name(), values=[
            kv("output_rate_hz", _rate(s.output_times, now)), kv("frames_processed", s.processed),
            kv("latency_p50_ms", p50), kv("latency_p95_ms", p95), kv("processing_median_ms", proc),
            kv("valid_ratio", s.valid_ratio), kv("photometric_error_mean", s.photometric_error),
            kv("fusion", c.output_fusion),
            *[kv(f"source_{name}", s.source_shares.get(name, float("nan"))) for name in SOURCE_NAMES],
            kv("consistency_icp_rmse_m", s.icp_rmse), kv("consistency_icp_fitness", s.icp_fitness),
            kv("cpu_threads", self._network_threads if self.device.type == "cpu" else 0),
            kv("cpu_threads_auto", self.thread_tuner is not None)]))

        stats = self.adapter.stats()
        logs = self._log_bridge.snapshot()
        with self._adapt_lock:
            last = self._last_adaptation
        level = DiagnosticStatus.OK
        message = f"{'enabled' if c.adaptation_enabled else 'disabled'} ({c.adaptation_mode})"
        if last is not None and last.status == "rolled_back":
            level, message = DiagnosticStatus.WARN, f"rolled back: {last.reason}"
        statuses.append(DiagnosticStatus(level=level, name=f"{name}: adaptation", message=message,
                                         hardware_id=self.get_fully_qualified_name(), values=[
            kv("enabled", c.adaptation_enabled), kv("mode", c.adaptation_mode), kv("steps", stats["steps"]),
            kv("skipped", stats["skipped"]), kv("rollbacks", stats["rollbacks"]),
            kv("loss", float(last.loss) if last is not None else float("nan")),
            kv("last_status", stats["last_status"]), kv("frames_dropped", self.worker.dropped),
            kv("busy", not self.worker.idle()), kv("learning_rate", c.adaptation_learning_rate),
            kv("proxy", c.adaptation_proxy), kv("proxy_density", float(stats["proxy_density"])),
            kv("proxy_agreement", float(stats["proxy_agreement"])),
            kv("proxy_learnable", float(stats["proxy_learnable"])),
            kv("core_log_warnings", logs.get("WARNING", 0)), kv("core_log_errors", logs.get("ERROR", 0))]))

        compile_state = self.worker.compile_state()
        if self._graphs is None:
            graphs_state = "off" if self.device.type == "cuda" else "off (cpu)"
        else:
            graphs_state = f"failed: {self._graphs.failure}" if self._graphs.failure else "on"
        level, message = DiagnosticStatus.OK, self.model_source
        if compile_state.startswith("failed"):  # still running (eagerly), but not as configured
            level, message = DiagnosticStatus.WARN, f"{self.model_source}; torch.compile {compile_state}"
        elif graphs_state.startswith("failed"):
            level, message = DiagnosticStatus.WARN, f"{self.model_source}; CUDA graphs {graphs_state}"
        statuses.append(DiagnosticStatus(level=level, name=f"{name}: model", message=message,
                                         hardware_id=self.get_fully_qualified_name(), values=[
            kv("device", str(self.device)), kv("weights", self.model_source), kv("compile", compile_state),
            kv("cuda_graphs", graphs_state),
            kv("cuda_graph_captures", self._graphs.captures if self._graphs is not None else 0),
            kv("precision", c.precision),
            kv("max_disparity_px", self.max_disparity),
            kv("inference_scale",
               "inference_width/height" if c.inference_width else c.inference_scale or self.weights_scale),
            kv("training_command", self.model_meta.get("training_command", ""))]))
        array = DiagnosticArray(status=statuses)
        array.header.stamp = self.get_clock().now().to_msg()
        self.pub_diagnostics.publish(array)

    # ------------------------------------------------------------------ shutdown
    def shutdown(self) -> None:
        """Stop the threads and save adapted weights when a path is configured."""
        with self._cond:
            self._stop = True
            self._cond.notify()
        self._thread.join(timeout=10.0)
        self.worker.stop()
        if self.config.adaptation_weights_path and self.adapter.steps:
            ok, message = self._save_adapted()
            (self.get_logger().info if ok else self.get_logger().error)(message)
        logging.getLogger("stereo_depth_ros").removeHandler(self._log_bridge)


def freeze_startup_objects() -> None:
    """Exclude every object alive now (modules, the model, the node) from garbage collection.

    After torch, Open3D and rclpy are imported a full (generation 2) collection walks over a million
    objects: measured 200 ms, every 2 s at 10 Hz input, holding the GIL and so stalling every
    thread of the node. ``gc.freeze()`` moves them to the permanent generation (they live as long
    as the process anyway), so collections only walk what was allocated since.
    """
    gc.collect()
    gc.freeze()


def main(args: Sequence[str] | None = None) -> int:
    kept = keep_freed_memory()
    single_thread_outside_processing()
    rclpy.init(args=args)
    node = StereoDepthNode()
    node.get_logger().info("malloc: freed memory kept for the next frame" if kept
                           else "malloc: the C library's defaults or the environment's tunables")
    freeze_startup_objects()
    executor = MultiThreadedExecutor(num_threads=2)
    executor.add_node(node)
    try:
        executor.spin()
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    finally:
        node.shutdown()
        node.destroy_node()
        if rclpy.ok():
            rclpy.shutdown()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
