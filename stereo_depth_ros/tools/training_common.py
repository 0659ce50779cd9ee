"""What the two training modes of ``stereo_depth_train`` share: the command line, the network to train,
the synthetic data, batches, validation, the learning-rate schedule, checkpoints and the stages record.

:mod:`stereo_depth_ros.tools.train` (supervised pretraining on synthetic data) and
:mod:`stereo_depth_ros.tools.train_unlabeled` (``--unlabeled``: fine-tuning without ground truth) both
import from here; neither imports the other's internals (``train.main`` only hands ``--unlabeled``
runs to ``train_unlabeled.run``).
"""

from __future__ import annotations

import argparse
import json
import math
import multiprocessing as mp
import os
import shlex
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import cv2
import numpy as np
import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file
from tqdm import tqdm

from ..core.augmentation import jitter_views
from ..core.network.config import ARCHITECTURES, AnyNetworkConfig, config_from_dict
from ..core.network.model import StereoNetwork, build_network
from ..core.network.weights import DEFAULT_WEIGHTS, WeightsError, load_model
from ..core.synthetic import generate_sample, get_domain

__all__ = ["Dataset", "TrainingStages", "add_unlabeled_arguments", "build_model", "checkpoint_info", "command_line",
           "generate_dataset", "learning_rate", "load_checkpoint", "make_batch", "network_config", "parse_args",
           "save_checkpoint", "validate"]


def command_line(argv: Sequence[str] | None) -> str:
    """The command as the sidecar records it (``python -m stereo_depth_ros.tools.train ...``)."""
    return "python -m stereo_depth_ros.tools.train " + " ".join(
        shlex.quote(a) for a in (argv if argv is not None else sys.argv[1:]))


@dataclass
class Dataset:
    """Stereo samples as tensors: ``left``/``right`` ``(N, 3, H, W)`` uint8, ``disp_left``/``disp_right``
    ``(N, 1, H, W)`` float16 pixels."""

    left: torch.Tensor
    right: torch.Tensor
    disp_left: torch.Tensor
    disp_right: torch.Tensor

    def __len__(self) -> int:
        return self.left.shape[0]

    def to(self, device: torch.device) -> "Dataset":
        return Dataset(*(t.to(device) for t in (self.left, self.right, self.disp_left, self.disp_right)))


def domain_list(domain: str) -> list[str]:
    """The domains of a ``--domain`` value: one name, or several separated by commas (a mix).

    Raises:
        ValueError: an empty or unknown name (the message lists the known ones).
    """
    names = [name.strip() for name in domain.split(",")]
    for name in names:
        get_domain(name)  # raises ValueError naming the known domains
    return names


def _render(args: tuple[int, int, int, str, float | None, str | None]) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    seed, width, height, domain, min_disparity, photo_dir = args
    cv2.setNumThreads(1)  # one process per core already; OpenCV's own threads would oversubscribe
    s = generate_sample(seed, width=width, height=height, domain=domain, min_disparity=min_disparity,
                        **({"photo_dir": photo_dir} if photo_dir else {}))
    to8 = lambda im: np.clip(np.round(im * 255.0), 0, 255).astype(np.uint8).transpose(2, 0, 1)  # noqa: E731
    return to8(s.left), to8(s.right), s.disparity_left.astype(np.float16)[None], s.disparity_right.astype(np.float16)[None]


def generate_dataset(seeds: Sequence[int], width: int, height: int, domain: str, workers: int, desc: str,
                     min_disparities: Sequence[float | None] | None = None, photo_dir: str | None = None) -> Dataset:
    """Render ``seeds`` in ``workers`` processes (spawned: safe after CUDA initialisation; 1 = in-process).

    ``domain``: one domain, or several separated by commas: sample ``i`` is then of the
    ``i % n``-th (an equal mix, the same for every run with these seeds).

    ``min_disparities``: per seed, the smallest disparity in pixels at this width (None = the
    domain's); raising it moves the camera closer to the scene (more near surfaces).
    ``photo_dir``: the objects domain also textures its surfaces with crops of the real photographs
    (``*_left.*``) in this folder (``core/scenes/objects.py``); None: scikit-image's photographs only.
    """
    n = len(seeds)
    left = torch.empty((n, 3, height, width), dtype=torch.uint8)
    right = torch.empty_like(left)
    disp_left = torch.empty((n, 1, height, width), dtype=torch.float16)
    disp_right = torch.empty_like(disp_left)
    lows = list(min_disparities) if min_disparities is not None else [None] * n
    if len(lows) != n:
        raise ValueError(f"min_disparities: expected one entry per seed ({n}), got {len(lows)}")
    # Each domain with the photo folder if its generator reads one (the objects scenes); samples cycle through them.
    kinds = [(name, photo_dir if get_domain(name).generator == "objects" else None) for name in domain_list(domain)]
    jobs = []
    for i, (s, low) in enumerate(zip(seeds, lows)):
        name, photos = kinds[i % len(kinds)]
        jobs.append((int(s), width, height, name, low, photos))
    def fill(results: Any) -> None:
        for i, (l, r, dl, dr) in enumerate(tqdm(results, total=n, desc=desc, file=sys.stderr)):
            left[i], right[i] = torch.from_numpy(l), torch.from_numpy(r)
            disp_left[i], disp_right[i] = torch.from_numpy(dl), torch.from_numpy(dr)

    if workers <= 1:
        fill(map(_render, jobs))
    else:
        with mp.get_context("spawn").Pool(workers) as pool:
            fill(pool.imap(_render, jobs, chunksize=4))
    return Dataset(left, right, disp_left, disp_right)


def make_batch(
    data: Dataset, step: int, seed: int, batch_size: int, crop: tuple[int, int], device: torch.device,
    scale_range: tuple[float, float] = (1.0, 1.0),
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """A deterministic augmented batch for ``step``: ``left, right (B, 3, h, w)`` in [0, 1], ``gt (B, 1, h, w)``.

    Args:
        data: the rendered samples.
        step, seed: the batch's identity (the same pair gives the same batch).
        batch_size: samples in the batch.
        crop: ``(h, w)`` of the batch, pixels.
        device: where the batch goes.
        scale_range: ``(low, high)`` in ``(0, 1]``: each sample is shrunk by a factor drawn uniformly
            from it (a region of ``crop / factor`` resized to ``crop``, the disparity scaled with it),
            so the network also sees finer structures and smaller disparities than the renders have;
            the region is bounded by the render, so a factor below ``crop / render size`` (on
            either axis) acts as that bound, the same on both axes.
            ``(1, 1)`` (default): plain crops, the same batches as before the option existed.
    """
    low, high = (float(v) for v in scale_range)
    if not 0.0 < low <= high <= 1.0:
        raise ValueError(f"scale_range: expected 0 < low <= high <= 1, got {scale_range!r}")
    g = torch.Generator().manual_seed(seed * 1_000_003 + step)
    n, _, height, width = data.left.shape
    ch, cw = crop
    idx = torch.randint(n, (batch_size,), generator=g)
    ys = torch.randint(height - ch + 1, (batch_size,), generator=g)
    xs = torch.randint(width - cw + 1, (batch_size,), generator=g)
    swap = torch.rand(batch_size, generator=g) < 0.5
    scales = low + (high - low) * torch.rand(batch_size, generator=g) if low < 1.0 else torch.ones(batch_size)
    lefts, rights, gts = [], [], []
    for i in range(batch_size):
        k, y, x = int(idx[i]), int(ys[i]), int(xs[i])
        factor = max(float(scales[i]), ch / height, cw / width)  # the region stays inside the render
        rh, rw = min(height, round(ch / factor)), min(width, round(cw / factor))
        if (rh, rw) != (ch, cw):  # the same relative position in the larger region's range
            y = round(y * (height - rh) / max(height - ch, 1))
            x = round(x * (width - rw) / max(width - cw, 1))
        sl = (k, slice(None), slice(y, y + rh), slice(x, x + rw))
        l, r, dl, dr = data.left[sl], data.right[sl], data.disp_left[sl], data.disp_right[sl]
        if (rh, rw) != (ch, cw):
            l, r = (F.interpolate(t[None].float(), size=(ch, cw), mode="bilinear", align_corners=False,
                                  antialias=True)[0] for t in (l, r))
            # Nearest: no disparity is invented across an occlusion boundary; pixels of the crop's width.
            dl, dr = (F.interpolate(t[None].float(), size=(ch, cw), mode="nearest-exact")[0] * (cw / rw)
                      for t in (dl, dr))
        if swap[i]:  # mirrored rig: the flipped right view becomes the left one
            l, r, dl = torch.flip(r, [-1]), torch.flip(l, [-1]), torch.flip(dr, [-1])
        lefts.append(l.float())
        rights.append(r.float())
        gts.append(dl.float())
    left = torch.stack(lefts).to(device, non_blocking=True) / 255.0
    right = torch.stack(rights).to(device, non_blocking=True) / 255.0
    gt = torch.stack(gts).to(device, non_blocking=True)
    left, right = jitter_views(left, right, g)  # per-view gain, gamma, brightness, noise
    return left, right, gt


@torch.no_grad()
def validate(model: StereoNetwork, data: Dataset, device: torch.device, amp: bool, batch_size: int = 4) -> dict[str, float]:
    """EPE and bad-1/3 (%) over all valid GT pixels of ``data`` at full resolution."""
    model.eval()
    abs_sum, bad1, bad3, count = 0.0, 0.0, 0.0, 0.0
    for start in range(0, len(data), batch_size):
        sl = slice(start, start + batch_size)
        left = data.left[sl].to(device).float() / 255.0
        right = data.right[sl].to(device).float() / 255.0
        gt = data.disp_left[sl].to(device).float()
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp):
            pred = model(left, right).disparity.float()
        valid = torch.isfinite(gt) & (gt > 0)
        err = (pred - gt).abs()[valid]
        abs_sum += float(err.sum())
        bad1 += float((err > 1).sum())
        bad3 += float((err > 3).sum())
        count += float(valid.sum())
    model.train()
    return {"epe": abs_sum / count, "bad1": 100 * bad1 / count, "bad3": 100 * bad3 / count}


def learning_rate(step: int, total: int, base: float, warmup: int) -> float:
    """Linear warm-up then cosine decay to 2% of ``base``."""
    if step < warmup:
        return base * (step + 1) / warmup
    t = min(1.0, (step - warmup) / max(1, total - warmup))
    return base * (0.02 + 0.98 * 0.5 * (1 + math.cos(math.pi * t)))


def save_checkpoint(path: Path, model: StereoNetwork, optimizer: torch.optim.Optimizer, step: int, meta: dict[str, Any]) -> None:
    """Model + optimiser state as safetensors (flattened), metadata as JSON strings; atomic."""
    tensors = {f"model.{k}": v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    opt_state = optimizer.state_dict()
    for pid, state in opt_state["state"].items():
        for name, value in state.items():
            t = value if isinstance(value, torch.Tensor) else torch.tensor(value)
            tensors[f"optim.{pid}.{name}"] = t.detach().cpu().contiguous().reshape(t.shape)
    info = {"step": step, "param_groups": opt_state["param_groups"], "config": model.config.to_dict(), **meta}
    tmp = path.with_name(f".{path.name}.tmp")
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file(tensors, str(tmp), metadata={"checkpoint": json.dumps(info)})
    os.replace(tmp, path)


@dataclass
class TrainingStages:
    """The stages of one training, for checkpoints and the sidecar: the runs a ``--resume``
    continues (read from the checkpoint, oldest first) and this one, from ``first_step``."""

    command: str
    device: str
    first_step: int
    earlier: list[dict[str, Any]]
    started: float  # time.time() when this run's training began

    def upto(self, step: int) -> list[dict[str, Any]]:
        """Every stage so far, this run's last (ending at ``step``)."""
        return [*self.earlier, {"command": self.command, "from_step": self.first_step, "to_step": step,
                                "training_seconds": round(time.time() - self.started, 1), "device": self.device}]


def checkpoint_info(path: Path) -> dict[str, Any]:
    """The metadata :func:`save_checkpoint` stored (step, optimiser groups, config, the caller's keys)."""
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as f:
        return json.loads(f.metadata()["checkpoint"])


def load_checkpoint(path: Path, model: StereoNetwork, optimizer: torch.optim.Optimizer) -> int:
    """Restore model and optimiser from :func:`save_checkpoint`; returns the step to continue from."""
    info = checkpoint_info(path)
    tensors = load_file(str(path))
    model.load_state_dict({k[len("model."):]: v for k, v in tensors.items() if k.startswith("model.")}, strict=True)
    state: dict[int, dict[str, torch.Tensor]] = {}
    for key, value in tensors.items():
        if key.startswith("optim."):
            _, pid, name = key.split(".", 2)
            state.setdefault(int(pid), {})[name] = value
    optimizer.load_state_dict({"state": state, "param_groups": info["param_groups"]})
    return int(info["step"])


def add_unlabeled_arguments(p: argparse.ArgumentParser) -> None:
    """The options of the unlabeled mode (``--unlabeled``, :mod:`.train_unlabeled`)."""
    from ..bags import StereoTopics

    g = p.add_argument_group("fine-tuning without ground truth (--unlabeled)")
    g.add_argument("--unlabeled", nargs="+", default=None, metavar="SOURCE",
                   help="rosbag2s, dataset folders, folders of left_*/right_* pairs, or 'motorcycle'")
    g.add_argument("--synthetic-fraction", type=float, default=0.25,
                   help="share of the training on supervised synthetic crops (0 = none); see --synthetic-mix")
    g.add_argument("--synthetic-mix", choices=("batch", "steps"), default="batch",
                   help="batch: that share of every batch is synthetic (joint gradient); steps: that share of the steps")
    g.add_argument("--synthetic-target", choices=("gt", "teacher"), default="gt",
                   help="what the synthetic crops are supervised with: their ground truth, or the initial network's "
                        "own prediction (distillation: keeps what the network did on synthetic data, not a new fit)")
    g.add_argument("--teacher-scale", type=float, default=0.0,
                   help="also label every real frame with the initial network run at this factor of the frame's "
                        "size (e.g. 1.25: upsampled, it matches finer detail), as the second hypothesis of the "
                        "photometric gate: where SGBM's label does not clearly win and the prediction does not "
                        "reconstruct better, the upsampled prediction is the label (0 = off)")
    g.add_argument("--frame-scale", type=float, default=1.0,
                   help="resize every real frame (and held-out frame) by this factor before its proxy labels and "
                        "crops, as the node's inference_scale resizes its input: fine-tuning at the scale the "
                        "network is to run at (e.g. 1.25); synthetic crops keep their size")
    g.add_argument("--synthetic-val-samples", type=int, default=8,
                   help="synthetic validation-split samples whose EPE is tracked at every validation (0 = none)")
    g.add_argument("--anchor", type=float, default=0.0,
                   help="after every step pull each weight this fraction of the way back to the initial weights")
    g.add_argument("--val-path", nargs="*", default=None, metavar="PATH",
                   help="labelled held-out scenes (dataset folders or 'motorcycle') for bad-2 / EPE validation")
    g.add_argument("--holdout-fraction", type=float, default=0.1,
                   help="without --val-path: the share of the frames held out for the photometric validation")
    g.add_argument("--bag-every", type=int, default=1, help="use every N-th frame of the bags")
    for field, default in StereoTopics().__dict__.items():
        if field != "ground_truth_depth":
            g.add_argument(f"--{field.replace('_', '-')}-topic", dest=field, default=default,
                           help=f"bag topic ({default})")


def check_unlabeled_arguments(p: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    if not 0.0 <= args.synthetic_fraction < 1.0:
        p.error(f"--synthetic-fraction: expected a fraction in [0, 1), got {args.synthetic_fraction}")
    if not 0.0 <= args.anchor < 1.0:
        p.error(f"--anchor: expected a fraction in [0, 1), got {args.anchor}")
    if args.synthetic_val_samples < 0:
        p.error(f"--synthetic-val-samples: expected an integer >= 0, got {args.synthetic_val_samples}")
    if not 0.0 <= args.holdout_fraction < 1.0:
        p.error(f"--holdout-fraction: expected a fraction in [0, 1), got {args.holdout_fraction}")
    if args.bag_every < 1:
        p.error(f"--bag-every: expected an integer >= 1, got {args.bag_every}")
    from ..core.pipeline import MAX_INFERENCE_SCALE

    if not 0.0 < args.frame_scale <= MAX_INFERENCE_SCALE:
        p.error(f"--frame-scale: expected a factor in (0, {MAX_INFERENCE_SCALE:g}], got {args.frame_scale}")
    if args.teacher_scale and not 0.0 < args.teacher_scale <= MAX_INFERENCE_SCALE:
        p.error(f"--teacher-scale: expected 0 (off) or a factor in (0, {MAX_INFERENCE_SCALE:g}], "
                f"got {args.teacher_scale}")


def add_network_arguments(p: argparse.ArgumentParser) -> None:
    """Which network a fresh training builds."""
    g = p.add_argument_group("network (a fresh training; --resume and --unlabeled take the weights' own, --init-weights "
                             "too unless --network-config changes it, e.g. adds a stage)")
    g.add_argument("--architecture", choices=sorted(ARCHITECTURES), default=None,
                   help="madnet: the coarse-to-fine network (default); costvolume: the full-range cost-volume network")
    g.add_argument("--network-config", default=None, metavar="JSON",
                   help='fields of the architecture\'s config to change, as a JSON object, e.g. \'{"groups": 4}\' '
                        "(see NetworkConfig / CostVolumeConfig in stereo_depth_ros/core/network/config.py); with "
                        "--init-weights, changes to the weights' config: every weight must still fit, the stages it "
                        'adds start fresh (e.g. \'{"context_level": 2}\')')


def _parse_overrides(overrides: str | None) -> dict[str, Any]:
    """``--network-config``'s JSON object of config fields (empty for None)."""
    if overrides is None:
        return {}
    try:
        values = json.loads(overrides)
    except json.JSONDecodeError as exc:
        raise ValueError(f"expected a JSON object of config fields, got {overrides!r} ({exc})") from None
    if not isinstance(values, dict):
        raise ValueError(f"expected a JSON object of config fields, got {overrides!r}")
    return values


def network_config(architecture: str | None, overrides: str | None) -> AnyNetworkConfig:
    """The config of a fresh network: ``architecture`` (None: ``"madnet"``) with the JSON ``overrides``.

    Raises:
        ValueError: overrides that are not a JSON object, name another architecture, or are invalid.
    """
    values = _parse_overrides(overrides)
    named = values.get("architecture")
    if named is not None and architecture is not None and named != architecture:
        raise ValueError(f"names architecture {named!r} but --architecture is {architecture!r}")
    values["architecture"] = architecture or named or "madnet"
    return config_from_dict(values)


def extended_config(base: AnyNetworkConfig, overrides: str) -> AnyNetworkConfig:
    """``base`` (a weights file's config) with the JSON ``overrides`` applied, e.g. a stage added.

    Raises:
        ValueError: overrides that are not a JSON object, name another architecture, or are invalid.
    """
    values = _parse_overrides(overrides)
    if values.get("architecture", base.architecture) != base.architecture:
        raise ValueError(f"names architecture {values['architecture']!r}, the weights are {base.architecture!r}")
    return config_from_dict({**base.to_dict(), **values})


def extend_network(model: StereoNetwork, config: AnyNetworkConfig) -> StereoNetwork:
    """A network of ``config`` holding ``model``'s weights: every weight of ``model`` must fit it,
    and only the stages ``config`` adds start fresh (their own initialisation).

    Raises:
        ValueError: a weight of ``model`` that the new network lacks or holds in another shape.
    """
    extended = build_network(config).to(next(model.parameters()).device)
    try:
        _, unexpected = extended.load_state_dict(model.state_dict(), strict=False)
    except RuntimeError as exc:  # a shape mismatch
        raise ValueError(f"the weights do not fit the changed config: {str(exc).strip().splitlines()[0]}") from None
    if unexpected:
        raise ValueError(f"the changed config drops weights of the network: {sorted(unexpected)[:4]}...")
    return extended


def check_network_arguments(p: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """``--architecture`` / ``--network-config`` describe a fresh network; with ``--init-weights``,
    ``--network-config`` changes the weights' own config (e.g. adds a stage) and ``--architecture`` is
    refused, as both are with ``--unlabeled``. The config is built (and, with ``--init-weights``,
    the weights fitted to it) here, so a bad one ends the command before any data is generated."""
    fresh = args.architecture is not None or args.network_config is not None
    if fresh and args.unlabeled:
        p.error("--architecture / --network-config: the network comes from the weights with --unlabeled; leave them out")
    if args.architecture is not None and args.init_weights is not None:
        p.error("--architecture: the network comes from the weights with --init-weights; leave it out "
                "(--network-config may change it, e.g. add a stage)")
    try:
        if args.init_weights is not None and args.network_config is not None:
            base, _ = load_model(args.init_weights)
            args.network = extended_config(base.config, args.network_config)
            extend_network(base, args.network)  # the weights must fit: checked now
        else:
            args.network = network_config(args.architecture, args.network_config)
    except (ValueError, OSError, KeyError, WeightsError) as exc:
        p.error(f"--network-config: {exc}")


def build_model(args: argparse.Namespace, device: torch.device) -> tuple[StereoNetwork, dict[str, Any] | None]:
    """The network a supervised run trains and the metadata of the weights it starts from (None for a
    fresh network): ``--init-weights`` when given, else a fresh network of ``args.network``; with
    ``--resume`` the checkpoint's config (the weights come from the checkpoint afterwards).

    Raises:
        ValueError: ``--resume`` from a checkpoint of another network than the command line asks for.
    """
    if args.init_weights is not None:
        model, meta = load_model(args.init_weights)
        if args.network_config is not None:  # the weights' network with the changes (e.g. a stage added)
            model = extend_network(model, args.network)
        return model.to(device), meta
    config = args.network
    if args.resume and args.checkpoint.is_file():
        saved = checkpoint_info(args.checkpoint).get("config")
        if saved is not None:
            saved_config = config_from_dict(saved)
            named = args.architecture is not None or args.network_config is not None
            if named and saved_config != config:
                raise ValueError(f"--resume: {args.checkpoint} holds a {saved_config.architecture} network of another "
                                 f"configuration than --architecture / --network-config describe")
            config = saved_config
    return build_network(config).to(device), None


DESCRIPTION = ("Train the disparity network on the package's own synthetic stereo data (supervised), or "
               "fine-tune it on real recordings without ground truth (``--unlabeled``).")


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    """``stereo_depth_train``'s command line (both modes), checked: a bad value ends with argparse's error."""
    p = argparse.ArgumentParser(description=DESCRIPTION, formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--output", type=Path, default=None,
                   help="final weights (.safetensors + .json sidecar); default: the shipped weights' file, or "
                        "train_output/finetuned.safetensors with --unlabeled")
    p.add_argument("--checkpoint", type=Path, default=None,
                   help="the resumable checkpoint (weights, optimiser, step); default: "
                        "train_output/<output's name>_checkpoint.safetensors, so that runs with different --output "
                        "beside each other keep their own")
    p.add_argument("--resume", action="store_true", help="continue from --checkpoint")
    p.add_argument("--init-weights", type=Path, default=None,
                   help="start from these network weights (fine-tuning) instead of a random initialisation")
    p.add_argument("--steps", type=int, default=20000)
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--crop", type=int, nargs=2, default=(320, 576), metavar=("H", "W"))
    p.add_argument("--lr", type=float, default=3e-4)
    p.add_argument("--warmup", type=int, default=300)
    p.add_argument("--train-samples", type=int, default=3000)
    p.add_argument("--val-samples", type=int, default=48)
    p.add_argument("--width", type=int, default=640)
    p.add_argument("--height", type=int, default=480)
    p.add_argument("--domain", default="indoor",
                   help="synthetic data: a planar domain (indoor, outdoor, ...) or objects (FlyingThings-like); "
                        "several separated by commas are mixed in equal shares (e.g. objects,indoor)")
    p.add_argument("--photo-dir", default=None, metavar="DIR",
                   help="--domain objects: also texture surfaces with crops of the real photographs (*_left.*) under "
                        "DIR, e.g. ../shared/realdata/unlabeled/pairs (the development scenes are refused)")
    p.add_argument("--near-fraction", type=float, default=0.0,
                   help="share of the training samples rendered close to the scene (validation keeps the domain's "
                        "range): the network under-reads large disparities, which the domain's range makes rare")
    p.add_argument("--near-min-disparity", type=float, default=48.0,
                   help="smallest disparity of those near samples, pixels at 640 px width (scaled with --width)")
    p.add_argument("--scale-range", type=float, nargs=2, default=(1.0, 1.0), metavar=("LOW", "HIGH"),
                   help="shrink each training crop by a factor drawn from [LOW, HIGH] (a larger region resized to "
                        "the crop, disparity scaled): finer structures and smaller disparities than the renders have; "
                        "1 1 = plain crops")
    p.add_argument("--edge-weight", type=float, default=1.0, metavar="W",
                   help="synthetic ground truth: pixels near a depth edge weigh W in the supervised loss (1 = every "
                        "pixel alike): the network spreads the foreground's disparity onto the background there")
    p.add_argument("--edge-radius", type=int, default=16, metavar="PX",
                   help="with --edge-weight: the band's reach around each depth edge, pixels of the crop")
    p.add_argument("--data-seed", type=int, default=0, help="offsets the train/val seed lists")
    p.add_argument("--seed", type=int, default=0, help="initialisation and batch sampling")
    p.add_argument("--workers", type=int, default=max(1, (os.cpu_count() or 2) - 1))
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--amp", action="store_true", help="bf16 autocast (GPU)")
    p.add_argument("--val-every", type=int, default=1000)
    p.add_argument("--checkpoint-every", type=int, default=1000)
    p.add_argument("--max-minutes", type=float, default=None, help="stop early (checkpoint kept) after this long")
    p.add_argument("--schedule-minutes", type=float, default=None,
                   help="train for this many minutes: the learning-rate schedule follows elapsed time instead of "
                        "steps (--steps becomes a cap); for a fixed device-time budget")
    add_network_arguments(p)
    add_unlabeled_arguments(p)
    args = p.parse_args(argv)
    check_unlabeled_arguments(p, args)
    check_network_arguments(p, args)
    if args.output is None:
        args.output = Path("train_output/finetuned.safetensors") if args.unlabeled else DEFAULT_WEIGHTS
    if args.checkpoint is None:
        args.checkpoint = Path("train_output") / f"{args.output.stem}_checkpoint.safetensors"
    if args.unlabeled and args.resume and not args.checkpoint.is_file():
        p.error(f"--resume: no checkpoint at {args.checkpoint}")
    if not 0.0 < args.scale_range[0] <= args.scale_range[1] <= 1.0:
        p.error(f"--scale-range: expected 0 < LOW <= HIGH <= 1, got {args.scale_range[0]:g} {args.scale_range[1]:g}")
    if not args.edge_weight >= 1.0:
        p.error(f"--edge-weight: expected a weight >= 1, got {args.edge_weight:g}")
    if args.edge_radius < 0:
        p.error(f"--edge-radius: expected pixels >= 0, got {args.edge_radius}")
    if not 0.0 <= args.near_fraction <= 1.0:
        p.error(f"--near-fraction: expected a fraction in [0, 1], got {args.near_fraction}")
    try:
        top = min(get_domain(name).max_disparity for name in domain_list(args.domain))
    except ValueError as exc:
        p.error(f"--domain: {exc}")
    if args.near_fraction > 0 and not 0.0 < args.near_min_disparity < top:
        p.error(f"--near-min-disparity: expected pixels in (0, {top:g}) (the domain's largest disparity at 640 px), "
                f"got {args.near_min_disparity}")
    return args


