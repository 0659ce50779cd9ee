"""Train the disparity network on the package's own synthetic stereo data (supervised), or
fine-tune it on real recordings without ground truth (``--unlabeled``, see
:mod:`stereo_depth_ros.tools.train_unlabeled`).

    python -m stereo_depth_ros.tools.train --steps 20000 --device cuda --amp \
        --output stereo_depth_ros/weights/stereo_net.safetensors
    python -m stereo_depth_ros.tools.train --unlabeled robot.bag --output robot.safetensors --max-minutes 60

The training set is generated up front in worker processes (deterministic from ``--data-seed``),
kept as uint8 images and float16 disparities (on the GPU when it fits), and sampled with random
crops, left/right swap-and-flip (which turns the right GT into the left GT) and per-view
photometric jitter. Validation on the held-out ``val`` split runs every ``--val-every`` steps;
``--checkpoint`` is written every ``--checkpoint-every`` steps (safetensors: model + optimiser +
step, with the stages and validations so far) and ``--resume`` continues from it with the same batch
sequence; the sidecar then lists every stage (command, steps, time) and the whole validation history.
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
from safetensors.torch import load_file, save_file
from tqdm import tqdm

from ..core.augmentation import jitter_views
from ..core.network import NetworkConfig, StereoNet
from ..core.network.supervision import supervised_loss
from ..core.network.weights import DEFAULT_WEIGHTS, atomic_write_bytes, load_model, save_weights
from ..core.synthetic import generate_sample, get_domain, split_seeds


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


def _render(args: tuple[int, int, int, str, float | None]) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    seed, width, height, domain, min_disparity = args
    cv2.setNumThreads(1)  # one process per core already; OpenCV's own threads would oversubscribe
    s = generate_sample(seed, width=width, height=height, domain=domain, min_disparity=min_disparity)
    to8 = lambda im: np.clip(np.round(im * 255.0), 0, 255).astype(np.uint8).transpose(2, 0, 1)  # noqa: E731
    return to8(s.left), to8(s.right), s.disparity_left.astype(np.float16)[None], s.disparity_right.astype(np.float16)[None]


def generate_dataset(seeds: Sequence[int], width: int, height: int, domain: str, workers: int, desc: str,
                     min_disparities: Sequence[float | None] | None = None) -> Dataset:
    """Render ``seeds`` in ``workers`` processes (spawned: safe after CUDA initialisation; 1 = in-process).

    ``min_disparities``: per seed, the smallest disparity in pixels at this width (None = the
    domain's); raising it moves the camera closer to the scene (more near surfaces).
    """
    n = len(seeds)
    left = torch.empty((n, 3, height, width), dtype=torch.uint8)
    right = torch.empty_like(left)
    disp_left = torch.empty((n, 1, height, width), dtype=torch.float16)
    disp_right = torch.empty_like(disp_left)
    lows = list(min_disparities) if min_disparities is not None else [None] * n
    if len(lows) != n:
        raise ValueError(f"min_disparities: expected one entry per seed ({n}), got {len(lows)}")
    jobs = [(int(s), width, height, domain, low) for s, low in zip(seeds, lows)]
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
    data: Dataset, step: int, seed: int, batch_size: int, crop: tuple[int, int], device: torch.device
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """A deterministic augmented batch for ``step``: ``left, right (B, 3, h, w)`` in [0, 1], ``gt (B, 1, h, w)``."""
    g = torch.Generator().manual_seed(seed * 1_000_003 + step)
    n, _, height, width = data.left.shape
    ch, cw = crop
    idx = torch.randint(n, (batch_size,), generator=g)
    ys = torch.randint(height - ch + 1, (batch_size,), generator=g)
    xs = torch.randint(width - cw + 1, (batch_size,), generator=g)
    swap = torch.rand(batch_size, generator=g) < 0.5
    lefts, rights, gts = [], [], []
    for i in range(batch_size):
        k, y, x = int(idx[i]), int(ys[i]), int(xs[i])
        sl = (k, slice(None), slice(y, y + ch), slice(x, x + cw))
        l, r, dl, dr = data.left[sl], data.right[sl], data.disp_left[sl], data.disp_right[sl]
        if swap[i]:  # mirrored rig: the flipped right view becomes the left one
            l, r, dl = torch.flip(r, [-1]), torch.flip(l, [-1]), torch.flip(dr, [-1])
        lefts.append(l)
        rights.append(r)
        gts.append(dl)
    left = torch.stack(lefts).to(device, non_blocking=True).float() / 255.0
    right = torch.stack(rights).to(device, non_blocking=True).float() / 255.0
    gt = torch.stack(gts).to(device, non_blocking=True).float()
    left, right = jitter_views(left, right, g)  # per-view gain, gamma, brightness, noise
    return left, right, gt


@torch.no_grad()
def validate(model: StereoNet, data: Dataset, device: torch.device, amp: bool, batch_size: int = 4) -> dict[str, float]:
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


def save_checkpoint(path: Path, model: StereoNet, optimizer: torch.optim.Optimizer, step: int, meta: dict[str, Any]) -> None:
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


def load_checkpoint(path: Path, model: StereoNet, optimizer: torch.optim.Optimizer) -> int:
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


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--output", type=Path, default=None,
                   help="final weights (.safetensors + .json sidecar); default: the shipped weights' file, or "
                        "train_output/finetuned.safetensors with --unlabeled")
    p.add_argument("--checkpoint", type=Path, default=Path("train_output/checkpoint.safetensors"))
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
    p.add_argument("--domain", default="indoor")
    p.add_argument("--near-fraction", type=float, default=0.0,
                   help="share of the training samples rendered close to the scene (validation keeps the domain's "
                        "range): the network under-reads large disparities, which the domain's range makes rare")
    p.add_argument("--near-min-disparity", type=float, default=48.0,
                   help="smallest disparity of those near samples, pixels at 640 px width (scaled with --width)")
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
    from .train_unlabeled import add_arguments, check_arguments

    add_arguments(p)
    args = p.parse_args(argv)
    check_arguments(p, args)
    if args.output is None:
        args.output = Path("train_output/finetuned.safetensors") if args.unlabeled else DEFAULT_WEIGHTS
    if args.unlabeled and args.resume and not args.checkpoint.is_file():
        p.error(f"--resume: no checkpoint at {args.checkpoint}")
    if not 0.0 <= args.near_fraction <= 1.0:
        p.error(f"--near-fraction: expected a fraction in [0, 1], got {args.near_fraction}")
    try:
        top = get_domain(args.domain).max_disparity
    except ValueError as exc:
        p.error(f"--domain: {exc}")
    if args.near_fraction > 0 and not 0.0 < args.near_min_disparity < top:
        p.error(f"--near-min-disparity: expected pixels in (0, {top:g}) (the domain's largest disparity at 640 px), "
                f"got {args.near_min_disparity}")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if args.unlabeled:
        from .train_unlabeled import run

        return run(args, argv)
    command = "python -m stereo_depth_ros.tools.train " + " ".join(shlex.quote(a) for a in (argv if argv is not None else sys.argv[1:]))
    device = torch.device(args.device)
    torch.manual_seed(args.seed)
    started = time.time()

    train_seeds = [s + args.data_seed for s in split_seeds("train", args.train_samples)]
    val_seeds = [s + args.data_seed for s in split_seeds("val", args.val_samples)]
    print(f"[train] generating {len(train_seeds)} training and {len(val_seeds)} validation samples "
          f"({args.width}x{args.height}, domain {args.domain!r}, {args.workers} workers)", file=sys.stderr)
    near = round(args.near_fraction * len(train_seeds))
    near_low = args.near_min_disparity * args.width / 640.0
    train = generate_dataset(train_seeds, args.width, args.height, args.domain, args.workers, "train data",
                             [near_low] * near + [None] * (len(train_seeds) - near))
    val = generate_dataset(val_seeds, args.width, args.height, args.domain, args.workers, "val data")
    data_seconds = time.time() - started
    if device.type == "cuda":
        train, val = train.to(device), val.to(device)
        torch.backends.cudnn.benchmark = True

    if args.init_weights is not None:
        model, init_meta = load_model(args.init_weights)
        model = model.to(device)
        print(f"[train] initialised from {args.init_weights} ({init_meta.get('steps', '?')} steps, "
              f"val {init_meta.get('validation', {})})", file=sys.stderr)
    else:
        model = StereoNet(NetworkConfig()).to(device)
    optimizer = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=1e-4)
    step = 0
    history: list[dict[str, float]] = []
    earlier_stages: list[dict[str, Any]] = []  # the runs this one --resume's, oldest first
    if args.resume and args.checkpoint.is_file():
        info = checkpoint_info(args.checkpoint)
        earlier_stages = list(info.get("stages", []))
        history = list(info.get("validation_history", []))
        step = load_checkpoint(args.checkpoint, model, optimizer)
        print(f"[train] resumed from {args.checkpoint} at step {step}", file=sys.stderr)
    max_disp = float(model.config.max_disparity)
    metrics: dict[str, float] = dict(history[-1]) if history else {}
    metrics.pop("step", None)
    train_started = time.time()
    stages = TrainingStages(command, str(device), step, earlier_stages, train_started)
    bar = tqdm(total=args.steps, initial=step, desc="train", file=sys.stderr, dynamic_ncols=True)
    model.train()
    scheduled = args.schedule_minutes is not None
    while step < args.steps:
        if scheduled:
            fraction = (time.time() - train_started) / (60 * args.schedule_minutes)
            progress, total = int(fraction * 1_000_000), 1_000_000
        else:
            progress, total = step, args.steps
        for group in optimizer.param_groups:
            group["lr"] = learning_rate(progress, total, args.lr, args.warmup if not scheduled else 20_000)
        left, right, gt = make_batch(train, step, args.seed, args.batch_size, tuple(args.crop), device)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=args.amp):
            out = model(left, right)
        loss, terms = supervised_loss(out, gt, torch.ones_like(gt, dtype=torch.bool), max_disp)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 5.0)
        optimizer.step()
        step += 1
        bar.update(1)
        if step % 50 == 0:
            bar.set_postfix(loss=f"{float(loss.detach()):.3f}", final=f"{terms['final']:.3f}", lr=f"{optimizer.param_groups[0]['lr']:.1e}")
        out_of_time = args.max_minutes is not None and (time.time() - started) > 60 * args.max_minutes
        out_of_time = out_of_time or (scheduled and time.time() - train_started > 60 * args.schedule_minutes)
        if step % args.val_every == 0 or step == args.steps or out_of_time:
            metrics = validate(model, val, device, args.amp)
            history.append({"step": step, **metrics})
            tqdm.write(f"[train] step {step}: val EPE {metrics['epe']:.3f} px, bad-1 {metrics['bad1']:.2f}%, "
                       f"bad-3 {metrics['bad3']:.2f}%", file=sys.stderr)
        if step % args.checkpoint_every == 0 or step == args.steps or out_of_time:
            save_checkpoint(args.checkpoint, model, optimizer, step,
                            {"command": command, "stages": stages.upto(step), "validation_history": history})
        if out_of_time:
            tqdm.write(f"[train] --max-minutes reached at step {step}; checkpoint kept for --resume", file=sys.stderr)
            break
    bar.close()
    train_seconds = time.time() - train_started
    meta = {
        "training_command": command,
        # The whole chain of runs (each fine-tune records the one it started from).
        "initialised_from": None if args.init_weights is None else {
            "path": str(args.init_weights), "training_command": init_meta.get("training_command"),
            "steps": init_meta.get("steps"), "training_seconds": init_meta.get("training_seconds"),
            "device": init_meta.get("device"), "initialised_from": init_meta.get("initialised_from")},
        "data": {"generator": "stereo_depth_ros.core.synthetic", "domain": args.domain, "data_seed": args.data_seed,
                 "train_samples": args.train_samples, "val_samples": args.val_samples,
                 "near_fraction": args.near_fraction, "near_min_disparity": args.near_min_disparity,
                 "resolution": [args.width, args.height]},
        "steps": step,
        "batch_size": args.batch_size,
        "crop": list(args.crop),
        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
        "amp": bool(args.amp),
        "data_generation_seconds": round(data_seconds, 1),
        "training_seconds": round(train_seconds, 1),
        "stages": stages.upto(step),
        "validation": metrics,
        "validation_history": history,
        "stopped_early": step < args.steps,
        "torch": torch.__version__,
        "finished": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    save_weights(model.cpu(), args.output, meta)
    print(f"[train] wrote {args.output} ({args.output.stat().st_size / 1e6:.1f} MB) after {step} steps, "
              f"{train_seconds / 60:.1f} min training; val EPE {metrics.get('epe', float('nan')):.3f} px", file=sys.stderr)
    atomic_write_bytes(args.checkpoint.with_suffix(".json"), (json.dumps(meta, indent=2) + "\n").encode())
    return 0


if __name__ == "__main__":
    sys.exit(main())
