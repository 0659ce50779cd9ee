"""Node parameters: one table of specs drives declaration, descriptors, validation and the config.

Every parameter is declared with a :class:`rcl_interfaces.msg.ParameterDescriptor` (description,
range or allowed values, ``read_only`` when a change needs a restart). The set-parameters callback
validates a candidate :class:`NodeConfig` and has no side effects; the node applies accepted
changes afterwards. ``config/stereo_depth.yaml`` lists every parameter with its default (a test
keeps the two in step).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Iterable, Mapping

from rcl_interfaces.msg import FloatingPointRange, IntegerRange, ParameterDescriptor

from ..core.adaptation import AdaptationConfig
from ..core.masks import ValidityConfig
from ..core.pipeline import MAX_INFERENCE_SCALE, network_size

__all__ = ["ParamSpec", "PARAMS", "NodeConfig", "declare_parameters", "config_from_values", "validate_values"]


@dataclass(frozen=True)
class ParamSpec:
    """One parameter: ROS name, default, description, limits, and whether it is live."""

    name: str
    default: Any
    description: str
    read_only: bool = False
    low: float | None = None
    high: float | None = None
    choices: tuple[str, ...] | None = None

    @property
    def field(self) -> str:
        return self.name.replace(".", "_")

    def descriptor(self) -> ParameterDescriptor:
        text = self.description
        if self.choices:
            text += f" One of: {', '.join(self.choices)}."
        # Floating-point parameters take integers too (``ros2 param set ... max_depth 20`` sends an
        # INTEGER): rclpy would refuse the type, so they are dynamically typed and checked here.
        d = ParameterDescriptor(name=self.name, description=text, read_only=self.read_only,
                                dynamic_typing=isinstance(self.default, float))
        if self.low is not None and self.high is not None:
            if isinstance(self.default, bool):
                pass
            elif isinstance(self.default, int):
                d.integer_range = [IntegerRange(from_value=int(self.low), to_value=int(self.high), step=1)]
            elif isinstance(self.default, float):
                d.floating_point_range = [FloatingPointRange(from_value=float(self.low), to_value=float(self.high), step=0.0)]
        return d

    def check(self, value: Any) -> str:
        """Empty string when ``value`` is acceptable, else the reason."""
        kind = type(self.default)
        if kind is float and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
        if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
            return f"{self.name}: expected {kind.__name__}, got {type(value).__name__} {value!r}"
        if self.choices is not None and value not in self.choices:
            return f"{self.name}: expected one of {list(self.choices)}, got {value!r}"
        if self.low is not None and not isinstance(value, bool) and not self.low <= value <= self.high:
            return f"{self.name}: expected a value in [{self.low}, {self.high}], got {value}"
        return ""


PARAMS: tuple[ParamSpec, ...] = (
    # --- model and device (restart needed)
    ParamSpec("device", "auto", "Torch device for the network: auto (cuda when present), cpu, cuda or cuda:N.", True),
    ParamSpec("weights", "", "Network weights (.safetensors); empty = the shipped weights.", True),
    ParamSpec("inference_width", 0, "Network input width in pixels (0 = the image width); disparity is rescaled.", True, 0, 4096),
    ParamSpec("inference_height", 0, "Network input height in pixels (0 = the image height).", True, 0, 4096),
    ParamSpec("inference_scale", 0.0, "Run the network at this factor of the image size (when inference_width/height "
              "are 0); disparity is resized and rescaled. 0 = the scale the weights name (the one they were "
              "fine-tuned at, 1.0 when they name none; the shipped weights name 1.2). Below 1 trades accuracy for "
              "speed on CPU; above 1 upsamples, slower, for finer matching.", True, 0.0, MAX_INFERENCE_SCALE),
    ParamSpec("cpu_threads", 0, "Torch CPU threads of the frame processing; 0 = auto: the node measures 1 thread "
              "against all cores while it runs and keeps the faster (1 wins when another process shares the CPU). "
              "The adaptation thread uses one.", True, 0, 256),
    ParamSpec("gil_switch_interval_ms", 0.5, "Python's thread switch interval for the whole process "
              "(sys.setswitchinterval, milliseconds), set when the node starts; 0 keeps the interpreter's (5 ms). "
              "Short enough that the executor gets the GIL to take incoming pairs while the frame thread computes.",
              True, 0.0, 100.0),
    ParamSpec("compile", False, "Run the network through torch.compile for the fixed input size: the first frame (and "
              "each new size) waits for the compiler (about 30 s on 2 CPU cores), later frames run up to 10 % faster; needs a C++ "
              "compiler on CPU and falls back to eager with a warning when compiling fails.", True),
    ParamSpec("cuda_graphs", True, "On CUDA, replay each frame's GPU work (both disparities, masks, point cloud) as two "
              "CUDA graphs per image size, the network's and the rest (with output.fusion sgbm, SGBM runs on the CPU "
              "while the first runs), instead of launching its kernels one by one (the first frame of a size "
              "captures them); falls back to eager with a warning when capturing fails. No effect on CPU.", True),
    ParamSpec("precision", "fp32", "Network precision: fp32, or bf16 (bfloat16 autocast; for GPUs, slower on CPU). "
              "The published disparity is float32 either way.", True, choices=("fp32", "bf16")),
    ParamSpec("max_image_width", 0, "Images wider than this are rejected (pixels); 0 = by device: 1920 on CPU, 4096 "
              "on CUDA. Images below 32x32 are always rejected.", True, 0, 16384),
    ParamSpec("max_image_height", 0, "Images taller than this are rejected (pixels); 0 = by device: 1200 on CPU, "
              "4096 on CUDA.", True, 0, 16384),
    # --- input
    ParamSpec("approximate_sync", False, "Pair left/right by approximate time (with slop) instead of exact stamps.", True),
    ParamSpec("slop", 0.01, "Approximate-sync tolerance in seconds.", True, 0.0, 1.0),
    ParamSpec("queue_size", 5, "Per-topic synchronizer queue (messages).", True, 1, 100),
    ParamSpec("sensor_qos", "sensor_data", "QoS of the image/info subscriptions: sensor_data (best effort, depth 5, "
              "as camera drivers publish), reliable (bag playback), system_default (the RMW's defaults).", True,
              choices=("sensor_data", "reliable", "system_default")),
    ParamSpec("output_qos_depth", 2, "History depth of the reliable output publishers.", True, 1, 100),
    ParamSpec("cache_camera_info", False, "Pair the two images by stamp and use the latest camera_info of each side "
              "(within camera_info_timeout of the images) instead of requiring camera_info with the images' stamp: for "
              "drivers and bags that stamp camera_info apart from the images, or publish it once.", True),
    ParamSpec("camera_info_timeout", 1.0, "With cache_camera_info or approximate_sync: a camera_info further than this "
              "from its image's stamp is stale and the frame is skipped (seconds; 0 accepts any age, e.g. a calibration "
              "published once).", False, 0.0, 3600.0),
    ParamSpec("time_jump_threshold", 1.0, "A stamp this much older than the last one (seconds) is time starting over "
              "(a bag loop, a simulator reset): the synchroniser and the stamp checks reset and the node carries on; "
              "smaller steps back are rejected as out of order.", True, 0.001, 3600.0),
    # --- validity (live)
    ParamSpec("validity.left_right_check", True, "Check every pixel against the right view's disparity (a second, "
              "mirrored network pass: about a third of the CPU frame time). false = single-pass mode: occlusion, "
              "photometric and range masks only."),
    ParamSpec("validity.lr_max_difference", 3.0, "Left-right check threshold (pixels; a 1 px check threw away more right "
              "pixels than wrong ones on real scenes).", False, 0.01, 100.0),
    ParamSpec("validity.photometric_max", 0.3, "Largest accepted photometric error (0.85 (1-SSIM)/2 + 0.15 L1).", False, 0.001, 1.0),
    ParamSpec("validity.min_depth", 0.1, "Nearest trusted depth (metres).", False, 0.0, 1000.0),
    ParamSpec("validity.max_depth", 50.0, "Farthest trusted depth (metres).", False, 0.01, 10000.0),
    ParamSpec("validity.use_occlusion", True, "Drop pixels the disparity says are occluded in the right view."),
    # --- adaptation (live unless noted)
    ParamSpec("adaptation.enabled", True, "Adapt the network online (self-supervised)."),
    ParamSpec("adaptation.mode", "full", "full: all weights; mad: one pyramid block per step (cheaper, slower to "
              "learn); none.", choices=("full", "mad", "none")),
    ParamSpec("adaptation.image_loss", "ssim_l1", "Reconstruction error of the adaptation loss.", choices=("ssim_l1", "census")),
    ParamSpec("adaptation.learning_rate", 3e-4, "Adaptation step size (Adam).", False, 1e-9, 1e-2),
    ParamSpec("adaptation.lr_warmup_steps", 5, "The step size ramps up linearly over this many steps after a start, "
              "reset or rollback.", False, 0, 10000),
    ParamSpec("adaptation.anchor", 0.01, "After every update pull the adapted weights this fraction of the way back to "
              "the initial ones (bounds drift; 0 disables).", False, 0.0, 0.99),
    ParamSpec("adaptation.proxy", "sgbm", "Proxy labels of the adaptation loss: sgbm (OpenCV SGBM's confident "
              "disparities of the adapted frame, computed on the adaptation thread) or none (photometric loss alone).",
              choices=("sgbm", "none")),
    ParamSpec("adaptation.proxy_weight", 1.0, "Weight of the proxy term in the adaptation loss.", False, 0.0, 100.0),
    ParamSpec("adaptation.proxy_truncation", 10.0, "Largest per-pixel proxy penalty (pixels at the network's input "
              "size): a wrong label pulls with a bounded force.", False, 0.1, 1000.0),
    ParamSpec("adaptation.proxy_fill_weight", 1.0, "Weight of the labels SGBM's holes get from the background (the "
              "lower of the nearest confident disparities on the row; 0: no such labels).", False, 0.0, 100.0),
    ParamSpec("adaptation.proxy_gate", "photometric", "photometric: a proxy label counts only where warping through it "
              "reconstructs the left image better than the current prediction (Depth Hints); none: every label counts.",
              choices=("photometric", "none")),
    ParamSpec("adaptation.proxy_gate_margin", 0.2, "With the photometric gate, an SGBM label must lower the per-pixel "
              "image error below (1 - margin) x the prediction's (and the reference's) to count.", False, 0.0, 0.99),
    ParamSpec("adaptation.proxy_reference", True, "With the photometric gate, the network's prediction before adaptation "
              "is a second candidate label: it holds the prediction where the images cannot tell (weak texture). One "
              "extra forward pass per adaptation step."),
    ParamSpec("adaptation.proxy_uniqueness_ratio", 10, "SGBM uniqueness margin of a confident label (percent).", False, 0, 100),
    ParamSpec("adaptation.proxy_lr_max_difference", 1, "SGBM left-right check of a confident label (pixels; -1 "
              "disables).", False, -1, 100),
    ParamSpec("adaptation.proxy_speckle_window", 100, "SGBM speckle filter: largest removed blob (pixels; 0 "
              "disables).", False, 0, 10000),
    ParamSpec("adaptation.adapt_every", 1, "Adapt on every N-th processed frame.", False, 1, 1000),
    ParamSpec("adaptation.weights_path", "", "Where adapted weights are saved (empty: never saved).", True),
    ParamSpec("adaptation.thread_nice", 6, "Raise the adaptation thread's nice value by this much on CPU (Linux; 0-19): "
              "adaptation is background work and yields the cores to the frame path and other processes.", True, 0, 19),
    ParamSpec("adaptation.resume", False, "Start from adaptation.weights_path when it loads (else the shipped weights).", True),
    ParamSpec("adaptation.save_period", 300.0, "Save adapted weights every this many seconds (0: only on shutdown/service).", False, 0.0, 86400.0),
    # --- outputs (live)
    ParamSpec("output.fusion", "sgbm", "Published disparity: sgbm = per pixel, OpenCV SGBM's left-right-checked "
              "disparity where it has one unless the network reconstructs the left image clearly better, the network "
              "in SGBM's holes (SGBM runs once per frame and also feeds adaptation's proxy labels); none = the network "
              "alone.", choices=("none", "sgbm")),
    ParamSpec("output.fusion_margin", 0.5, "With output.fusion sgbm: the network replaces an SGBM pixel only where its "
              "reconstruction error is below (1 - margin) times SGBM's.", False, 0.0, 0.99),
    ParamSpec("output.depth_mm", False, "Also publish depth/image_mm as 16UC1 millimetres (0 = invalid)."),
    ParamSpec("output.cloud", True, "Publish points2."),
    ParamSpec("output.cloud_decimation", 1, "Keep every N-th row and column of the cloud.", False, 1, 64),
    ParamSpec("output.cloud_dense", False, "Publish an unorganised cloud of valid points only (is_dense true)."),
    ParamSpec("output.cloud_color", True, "Points carry the left image's colour (x, y, z, rgb; 16 bytes, no padding); "
              "false: x, y, z only (12 bytes)."),
    # --- diagnostics
    ParamSpec("diagnostics.period", 1.0, "Diagnostics publishing period (seconds).", True, 0.05, 60.0),
    ParamSpec("diagnostics.latency_budget_ms", 250.0, "WARN when p95 latency (stamp to publish) exceeds this (ms).", False, 1.0, 60000.0),
    ParamSpec("diagnostics.input_timeout", 2.0, "WARN when no stereo pair arrived for this long (seconds).", False, 0.1, 3600.0),
    ParamSpec("diagnostics.icp_every", 30, "Compute the 3D consistency (ICP residual) every N frames (0: never).", False, 0, 100000),
)

_BY_NAME = {p.name: p for p in PARAMS}


@dataclass(frozen=True)
class NodeConfig:
    """Typed snapshot of every parameter (field = name with dots as underscores)."""

    device: str
    weights: str
    inference_width: int
    inference_height: int
    inference_scale: float
    cpu_threads: int
    gil_switch_interval_ms: float
    compile: bool
    cuda_graphs: bool
    precision: str
    max_image_width: int
    max_image_height: int
    approximate_sync: bool
    slop: float
    queue_size: int
    sensor_qos: str
    output_qos_depth: int
    cache_camera_info: bool
    camera_info_timeout: float
    time_jump_threshold: float
    validity_left_right_check: bool
    validity_lr_max_difference: float
    validity_photometric_max: float
    validity_min_depth: float
    validity_max_depth: float
    validity_use_occlusion: bool
    adaptation_enabled: bool
    adaptation_mode: str
    adaptation_image_loss: str
    adaptation_learning_rate: float
    adaptation_lr_warmup_steps: int
    adaptation_anchor: float
    adaptation_proxy: str
    adaptation_proxy_weight: float
    adaptation_proxy_truncation: float
    adaptation_proxy_fill_weight: float
    adaptation_proxy_gate: str
    adaptation_proxy_gate_margin: float
    adaptation_proxy_reference: bool
    adaptation_proxy_uniqueness_ratio: int
    adaptation_proxy_lr_max_difference: int
    adaptation_proxy_speckle_window: int
    adaptation_adapt_every: int
    adaptation_weights_path: str
    adaptation_thread_nice: int
    adaptation_resume: bool
    adaptation_save_period: float
    output_fusion: str
    output_fusion_margin: float
    output_depth_mm: bool
    output_cloud: bool
    output_cloud_decimation: int
    output_cloud_dense: bool
    output_cloud_color: bool
    diagnostics_period: float
    diagnostics_latency_budget_ms: float
    diagnostics_input_timeout: float
    diagnostics_icp_every: int

    def validity(self) -> ValidityConfig:
        return ValidityConfig(
            lr_max_difference=self.validity_lr_max_difference if self.validity_left_right_check else None,
            photometric_max=self.validity_photometric_max,
            min_depth=self.validity_min_depth,
            max_depth=self.validity_max_depth,
            use_occlusion=self.validity_use_occlusion,
        )

    def adaptation(self) -> AdaptationConfig:
        return AdaptationConfig(
            mode=self.adaptation_mode,  # type: ignore[arg-type]
            image_loss=self.adaptation_image_loss,  # type: ignore[arg-type]
            learning_rate=self.adaptation_learning_rate,
            lr_warmup_steps=self.adaptation_lr_warmup_steps,
            adapt_every=self.adaptation_adapt_every,
            anchor=self.adaptation_anchor,
            proxy=self.adaptation_proxy,  # type: ignore[arg-type]
            proxy_weight=self.adaptation_proxy_weight,
            proxy_truncation=self.adaptation_proxy_truncation,
            proxy_fill_weight=self.adaptation_proxy_fill_weight,
            proxy_gate=self.adaptation_proxy_gate,  # type: ignore[arg-type]
            proxy_gate_margin=self.adaptation_proxy_gate_margin,
            proxy_reference=self.adaptation_proxy_reference,
            proxy_uniqueness_ratio=self.adaptation_proxy_uniqueness_ratio,
            proxy_lr_max_difference=self.adaptation_proxy_lr_max_difference,
            proxy_speckle_window=self.adaptation_proxy_speckle_window,
        )


MIN_IMAGE_SIZE = 32
"""Smallest accepted image side (pixels): below it the network's pyramid and the masks' windows
have nothing to work with."""
AUTO_MAX_IMAGE = {"cpu": (1920, 1200), "cuda": (4096, 4096)}
"""``max_image_width/height = 0``: the largest image by device, ``(width, height)``. On 2 CPU cores
a 1920x1080 frame takes about 3 s and the node process 2.0 GiB (docs/performance.md); 2048x2048 took 16 s
and 2.9 GiB."""


def max_image_size(config: NodeConfig, device_type: str) -> tuple[int, int]:
    """``(width, height)`` of the largest accepted image on a device type (``"cpu"``, ``"cuda"``)."""
    auto = AUTO_MAX_IMAGE["cuda" if device_type == "cuda" else "cpu"]
    return (config.max_image_width or auto[0], config.max_image_height or auto[1])


def inference_size(config: NodeConfig, height: int, width: int, weights_scale: float = 1.0) -> tuple[int, int] | None:
    """The network's input ``(height, width)`` for a ``height x width`` image, None for the image size.

    ``inference_width/height`` when set, else ``inference_scale`` times the image size (rounded,
    at least 32 pixels per side so the pyramid keeps a few levels); ``inference_scale`` 0 takes
    ``weights_scale``, the scale the loaded weights name
    (:func:`~stereo_depth_ros.core.pipeline.weights_inference_scale`).
    """
    if config.inference_width:
        return config.inference_height, config.inference_width
    return network_size(height, width, config.inference_scale or weights_scale)


def validate_values(values: Mapping[str, Any]) -> list[str]:
    """Problems with a full set of parameter values (by ROS name); empty when acceptable."""
    problems = [reason for name, value in values.items() if name in _BY_NAME and (reason := _BY_NAME[name].check(value))]
    if problems:
        return problems
    if values["validity.min_depth"] >= values["validity.max_depth"]:
        problems.append(f"validity.min_depth ({values['validity.min_depth']}) must be below validity.max_depth ({values['validity.max_depth']})")
    if values["adaptation.resume"] and not values["adaptation.weights_path"]:
        problems.append("adaptation.resume needs adaptation.weights_path")
    device = values["device"]
    if not (device in ("auto", "cpu", "cuda") or (device.startswith("cuda:") and device[5:].isdigit())):
        problems.append(f"device: expected auto, cpu, cuda or cuda:N, got {device!r}")
    if (values["inference_width"] == 0) != (values["inference_height"] == 0):
        problems.append("inference_width and inference_height: set both or neither")
    if values["inference_width"] and values["inference_scale"] not in (0.0, 1.0):
        problems.append("inference_scale: leave it at 0 when inference_width/height give the size")
    if 0.0 < values["inference_scale"] < 0.1:
        problems.append(f"inference_scale: expected 0 (the weights' own) or a factor of at least 0.1, "
                        f"got {values['inference_scale']}")
    return problems


def config_from_values(values: Mapping[str, Any]) -> NodeConfig:
    """Build a :class:`NodeConfig` from values by ROS name; ``ValueError`` listing every problem."""
    missing = [p.name for p in PARAMS if p.name not in values]
    if missing:
        raise ValueError(f"missing parameters: {missing}")
    problems = validate_values(values)
    if problems:
        raise ValueError("; ".join(problems))
    kwargs = {p.field: (float(values[p.name]) if isinstance(p.default, float) else values[p.name]) for p in PARAMS}
    return NodeConfig(**kwargs)


@dataclass(frozen=True)
class AliasSpec:
    """A parameter name of ``stereo_image_proc`` that maps onto one of ours (read at start-up)."""

    name: str
    target: str
    description: str
    kind: type

    def value_for_target(self, value: Any) -> Any:
        """The target's value for the alias's ``value``; ``ValueError`` naming the alias when it is of the wrong type."""
        if self.kind is float and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
        if not isinstance(value, self.kind) or (self.kind is not bool and isinstance(value, bool)):
            raise ValueError(f"{self.name}: expected {self.kind.__name__}, got {type(value).__name__} {value!r}")
        if self.name == "use_system_default_qos":
            return "system_default" if value else None
        return value


ALIASES: tuple[AliasSpec, ...] = (
    AliasSpec("approximate_sync_tolerance_seconds", "slop", "stereo_image_proc's name for slop (seconds).", float),
    AliasSpec("use_system_default_qos", "sensor_qos", "stereo_image_proc's switch: true = sensor_qos system_default.",
              bool),
    AliasSpec("use_color", "output.cloud_color", "stereo_image_proc's name for output.cloud_color.", bool),
)
"""stereo_image_proc names users bring along (its ``approximate_sync`` and ``queue_size`` are ours too).
Its ``avoid_point_cloud_padding`` has no counterpart: our cloud has no padding."""


def declare_parameters(node: Any) -> NodeConfig:
    """Declare every parameter on ``node`` (an rclpy Node) and return the validated config.

    The :data:`ALIASES` are declared first (read-only, unset by default); one given at start-up
    becomes the default of the parameter it names, which a value given under our own name still
    overrides.
    """
    alias_defaults: dict[str, Any] = {}
    for a in ALIASES:
        descriptor = ParameterDescriptor(name=a.name, description=f"{a.description} Read at start-up.",
                                         read_only=True, dynamic_typing=True)
        value = node.declare_parameter(a.name, None, descriptor).value
        if value is not None:
            mapped = a.value_for_target(value)
            if mapped is not None:
                alias_defaults[a.target] = mapped
    for p in PARAMS:
        node.declare_parameter(p.name, alias_defaults.get(p.name, p.default), p.descriptor())
    values = {p.name: node.get_parameter(p.name).value for p in PARAMS}
    return config_from_values(values)


def defaults() -> dict[str, Any]:
    """Default value of every parameter by ROS name."""
    return {p.name: p.default for p in PARAMS}


def names() -> Iterable[str]:
    return (p.name for p in PARAMS)


def values_from_yaml(path: str, node_name: str = "stereo_depth") -> dict[str, Any]:
    """Parameter values (defaults overlaid with a ROS 2 params file's ``/**`` and node sections)."""
    import yaml

    with open(path) as f:
        data = yaml.safe_load(f) or {}
    values = defaults()

    def flatten(d: Mapping[str, Any], prefix: str = "") -> Iterable[tuple[str, Any]]:
        for k, v in d.items():
            if isinstance(v, dict):
                yield from flatten(v, f"{prefix}{k}.")
            else:
                yield f"{prefix}{k}", v

    for section, content in data.items():
        if section.strip("/").split("/")[-1] in ("**", node_name) and isinstance(content, dict):
            values.update(dict(flatten(content.get("ros__parameters", {}))))
    return values



# ---------------------------------------------------------------------------------------------- generated files
def _yaml_scalar(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(value, float):
        text = repr(value)
        if "e" in text:  # YAML 1.1 (PyYAML, rcl) needs the dot and the exponent's sign: 3.0e-04
            mantissa, exponent = f"{value:.6e}".split("e")
            text = f"{float(mantissa)!r}e{exponent[0]}{exponent[1:].zfill(2)}"
        return text
    return str(value)


def _description(p: ParamSpec) -> str:
    text = p.description
    if p.choices:
        text += f" One of: {', '.join(p.choices)}."
    if p.read_only:
        text += " (read-only: restart to change)"
    return text


def params_yaml() -> str:
    """``config/stereo_depth.yaml``: every parameter with its default and description."""
    lines = ["# Every parameter of stereo_depth_node with its default, generated from the parameter table",
             "# (stereo_depth_ros/ros/params.py) by: python -m stereo_depth_ros.ros.params --yaml",
             "# Use with: ros2 launch stereo_depth_ros stereo_depth.launch.py params_file:=<this file>",
             "/**:", "  ros__parameters:"]
    group = ""
    for p in PARAMS:
        prefix, _, leaf = p.name.rpartition(".")
        indent = "    " + ("  " if prefix else "")
        if prefix != group:
            if prefix:
                lines.append(f"    {prefix}:")
            group = prefix
        lines.append(f"{indent}# {_description(p)}")
        lines.append(f"{indent}{leaf}: {_yaml_scalar(p.default)}")
    return "\n".join(lines) + "\n"


def parameters_markdown() -> str:
    """``docs/parameters.md``: every parameter with its type, default, range and description."""
    lines = ["# Parameters of stereo_depth_node", "",
             "Generated from the parameter table (`stereo_depth_ros/ros/params.py`) by "
             "`python -m stereo_depth_ros.ros.params --markdown > docs/parameters.md`; a test fails when this page "
             "is out of date. Read-only parameters need a restart; the others change live "
             "(`ros2 param set`) and are validated first. `config/stereo_depth.yaml` lists them all with their "
             "defaults.", "",
             "| parameter | type | default | range / values | live | description |", "|---|---|---|---|---|---|"]
    for p in PARAMS:
        kind = type(p.default).__name__
        if p.choices:
            span = ", ".join(f"`{c}`" for c in p.choices)
        elif p.low is not None and not isinstance(p.default, bool):
            span = f"{p.low:g} .. {p.high:g}"
        else:
            span = ""
        default = f"`{_yaml_scalar(p.default)}`"
        lines.append(f"| `{p.name}` | {kind} | {default} | {span} | {'no' if p.read_only else 'yes'} | "
                     f"{p.description.replace('|', '/')} |")
    return "\n".join(lines) + "\n"


def main(argv: Iterable[str] | None = None) -> int:
    """``--yaml``: print the params file; ``--markdown``: print the parameter reference page."""
    import argparse
    import sys

    parser = argparse.ArgumentParser(description="Print the generated parameter files.")
    group = parser.add_mutually_exclusive_group(required=True)
    group.add_argument("--yaml", action="store_true", help="config/stereo_depth.yaml")
    group.add_argument("--markdown", action="store_true", help="docs/parameters.md")
    args = parser.parse_args(None if argv is None else list(argv))
    sys.stdout.write(params_yaml() if args.yaml else parameters_markdown())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
