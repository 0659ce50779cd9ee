"""``stereo_depth_train --unlabeled SOURCE...``: fine-tune the network on real stereo without ground truth.

(The options of this mode and what it shares with supervised training are in
:mod:`stereo_depth_ros.tools.training_common`; the network is the initial weights' own.)

    python -m stereo_depth_ros.tools.train --unlabeled robot.bag frames/ ../some/middlebury/Scene \
        --output robot.safetensors [--val-path labelled/ motorcycle] [--synthetic-fraction 0.25] \
        [--max-minutes 60] [--resume]

Sources: rosbag2 files or folders (sqlite3 and MCAP; the node's default topic names, remappable with
``--left-image-topic`` ...), dataset folders in the layouts ``stereo_depth_evaluate`` reads (their
ground truth is never read), plain folders of ``left_*.png`` / ``right_*.png`` pairs, and the
built-in ``motorcycle``. Every frame's proxy labels (SGBM's confident disparities, background-filled
holes; for the frame and its mirror) are computed once up front.

Each step minimises the adapter's self-supervised loss (photometric + SGBM proxy + smoothness,
:mod:`stereo_depth_ros.core.self_supervision`) on a batch of random crops with per-view colour
jitter and mirror flips. ``--synthetic-fraction`` of the training is supervised on the package's
synthetic data, so the synthetic prior is not forgotten: by default that share of every batch
(``--synthetic-mix batch``: one step minimises the sum of both losses, so the optimiser follows
their joint gradient), or that share of the steps (``--synthetic-mix steps``); the synthetic
crops are supervised with their ground truth, or with ``--synthetic-target teacher`` with the
initial network's own prediction (distillation, as in Learning without Forgetting: it keeps what
the network did on synthetic data instead of fitting it anew with small CPU batches). With
``--teacher-scale S`` the initial network run on every real frame (and its mirror) upsampled ``S``
times, computed once up front, is the photometric gate's second hypothesis: where SGBM's label does
not clearly win and the prediction does not reconstruct better, it is the label (its finer
matching carried to the frame's own size). With ``--frame-scale S`` every real frame is resized
``S`` times first (as the node's ``inference_scale`` resizes its input), so the network is
fine-tuned at the scale it is to run at. ``--anchor`` pulls
every weight back towards the initial ones after each step (a decoupled L2-SP). Validation every
``--val-every`` steps: bad-2 / EPE on labelled held-out scenes (``--val-path``) when given,
otherwise the photometric error and the proxy agreement on the held-out share of the frames
(``--holdout-fraction``); with synthetic data also the EPE on ``--synthetic-val-samples`` samples
of the synthetic validation split. Checkpoints (``--checkpoint``, every ``--checkpoint-every`` steps and at
the end) allow ``--resume`` (the sidecar then lists every stage: command, steps, time);
``--max-minutes`` is a time budget. The weights are written once, at
the end, atomically, with a JSON sidecar recording the command, every source (path, size,
SHA-256), the frames used and held out, and the validation history. Bad input (a bag without the
topics, pairs of different sizes, an empty folder, an unreadable image) ends with a one-line error
before any file is written.
"""

from __future__ import annotations

import argparse
import copy
import math
import statistics
import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
from tqdm import tqdm

from ..core.adaptation import AdaptationConfig, pull_towards
from ..core.network.model import StereoOutput
from ..core.network.supervision import edge_weights, supervised_loss
from ..core.network.weights import DEFAULT_WEIGHTS, atomic_write_bytes, load_model, save_weights
from ..core.self_supervision import self_supervised_loss
from ..core.sgbm import SgbmBackend
from ..core.unlabeled import (Teacher, UnlabeledFrame, UnlabeledSet, describe_source, load_folder_source,
                              make_unlabeled_batch, prepare_unlabeled_set, scale_frame)
from .training_common import (Dataset, TrainingStages, checkpoint_info, command_line, generate_dataset, learning_rate,
                              load_checkpoint, make_batch, save_checkpoint)
from .training_common import validate as validate_synthetic

__all__ = ["gather_frames", "run", "synthetic_loss"]


def _is_bag(path: Path) -> bool:
    return (path.is_dir() and (path / "metadata.yaml").is_file()) or path.suffix in (".mcap", ".db3")


def gather_frames(args: argparse.Namespace) -> tuple[list[UnlabeledFrame], list[dict[str, Any]]]:
    """Every source's frames, in order, and its description for the sidecar.

    Raises:
        ValueError: a source that cannot be used (the message names it); ``BagError`` is one.
    """
    from ..bags import StereoTopics, unlabeled_frames_from_bag

    topics = StereoTopics(args.left_image, args.right_image, args.left_info, args.right_info)
    frames: list[UnlabeledFrame] = []
    sources = []
    for source in args.unlabeled:
        path = Path(source)
        if path.exists() and _is_bag(path):
            got, kind = unlabeled_frames_from_bag(path, topics, args.bag_every), "rosbag2"
        else:
            kind, got = load_folder_source(source)
        if not got:
            raise ValueError(f"{source}: expected stereo pairs, found none")
        frames += got
        sources.append(describe_source(source, kind, len(got)))
    return frames, sources


def _split(frames: list[UnlabeledFrame], fraction: float) -> tuple[list[UnlabeledFrame], list[UnlabeledFrame]]:
    """Every k-th frame held out (k = 1 / fraction, at most the frame count: one at least), the rest
    for training."""
    if fraction <= 0 or len(frames) < 2:
        return frames, []
    k = max(2, min(round(1 / fraction), len(frames)))
    held = [f for i, f in enumerate(frames) if i % k == k - 1]
    return [f for i, f in enumerate(frames) if i % k != k - 1], held


@torch.no_grad()
def _validate_scenes(model: torch.nn.Module, scenes: list[Any], device: torch.device) -> dict[str, Any]:
    """bad-2 (all GT pixels) and EPE per labelled scene, their medians."""
    from ..core.metrics import evaluate_disparity
    from ..core.network.estimator import image_to_tensor

    model.eval()
    per_scene = {}
    for s in scenes:
        pred = model(image_to_tensor(s.left, device), image_to_tensor(s.right, device)).disparity[0, 0].cpu().numpy()
        e = evaluate_disparity(pred, s.disparity).all
        per_scene[s.name] = {"bad2": e.bad2_pct, "epe": e.epe}
    model.train()
    return {"median_bad2": statistics.median(v["bad2"] for v in per_scene.values()),
            "median_epe": statistics.median(v["epe"] for v in per_scene.values()), "scenes": per_scene}


@torch.no_grad()
def _validate_frames(model: torch.nn.Module, data: UnlabeledSet, config: AdaptationConfig,
                     device: torch.device) -> dict[str, Any]:
    """Photometric error and proxy agreement on held-out unlabeled frames (no ground truth)."""
    model.eval()
    photometric, agreement = [], []
    for frame, (labels, _) in zip(data.frames, data.labels):
        left = torch.from_numpy(frame.left).permute(2, 0, 1)[None].float().div(255).to(device)
        right = torch.from_numpy(frame.right).permute(2, 0, 1)[None].float().div(255).to(device)
        disparity = model(left, right).disparity
        on = replace(labels, disparity=labels.disparity.to(device), valid=labels.valid.to(device),
                     filled=labels.filled.to(device))
        _, terms, _ = self_supervised_loss(disparity, left, right, replace(config, automask=False), on)
        photometric.append(terms["photometric"])
        agreement.append(terms["proxy_agreement"])
    model.train()
    return {"photometric": float(np.mean(photometric)), "proxy_agreement": float(np.nanmean(agreement)),
            "frames": len(data)}


def run(args: argparse.Namespace, argv: Sequence[str] | None) -> int:
    """Fine-tune on the unlabeled sources (see the module docstring); returns the exit status."""
    from ..bags import BagError

    command = command_line(argv)
    device = torch.device(args.device)
    torch.manual_seed(args.seed)
    started = time.time()
    try:
        frames, sources = gather_frames(args)
        val_scenes = []
        if args.val_path:
            from ..core.datasets import load_scenes

            val_scenes = list(load_scenes(args.val_path))
        init = args.init_weights if args.init_weights is not None else DEFAULT_WEIGHTS
        model, init_meta = load_model(init, device)
    except (BagError, ValueError, OSError, RuntimeError) as exc:
        print(f"[train] error: {exc}", file=sys.stderr)
        return 2
    if args.frame_scale != 1.0:
        frames = [scale_frame(frame, args.frame_scale) for frame in frames]
    train_frames, held = _split(frames, 0.0 if val_scenes else args.holdout_fraction)
    print(f"[train] {len(frames)} unlabeled frames from {len(sources)} source(s): {len(train_frames)} for training, "
          f"{len(held)} held out; {len(val_scenes)} labelled validation scene(s)", file=sys.stderr)
    config = AdaptationConfig()
    matcher = SgbmBackend(max_disparity=float(model.config.max_disparity), uniqueness_ratio=config.proxy_uniqueness_ratio,
                          disp12_max_diff=config.proxy_lr_max_difference,
                          speckle_window_size=config.proxy_speckle_window, speckle_range=config.proxy_speckle_range)
    scale_teacher = None
    if args.teacher_scale:
        scale_teacher = _scaled_teacher(copy.deepcopy(model).eval().requires_grad_(False), args.teacher_scale, device)
    data = prepare_unlabeled_set(train_frames, matcher, progress=True, teacher=scale_teacher)
    held_data = prepare_unlabeled_set(held, matcher) if held else None
    synthetic: Dataset | None = None
    synthetic_val: Dataset | None = None
    if args.synthetic_fraction > 0:
        from ..core.synthetic import split_seeds

        seeds = [s + args.data_seed for s in split_seeds("train", args.train_samples)]
        synthetic = generate_dataset(seeds, args.width, args.height, args.domain, args.workers, "synthetic data")
        if args.synthetic_val_samples:
            synthetic_val = generate_dataset(split_seeds("val", args.synthetic_val_samples), args.width, args.height,
                                             args.domain, args.workers, "synthetic validation data")
    steps_mix = args.synthetic_mix == "steps"
    every_synthetic = round(1 / args.synthetic_fraction) if args.synthetic_fraction > 0 and steps_mix else 0
    batch_mix = synthetic is not None and not steps_mix
    data_seconds = time.time() - started

    optimizer = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=1e-4)
    # The anchor and the distillation teacher are the initial weights, also when a run resumes;
    # with both, the frozen teacher's parameters are the anchor's (one copy of the initial weights).
    teacher = (copy.deepcopy(model).eval().requires_grad_(False)
               if synthetic is not None and args.synthetic_target == "teacher" else None)
    initial = ([] if args.anchor <= 0 else list(teacher.parameters()) if teacher is not None
               else [p.detach().clone() for p in model.parameters()])
    step = 0
    earlier_stages: list[dict[str, Any]] = []  # the runs this one --resume's, oldest first
    if args.resume and args.checkpoint.is_file():
        earlier_stages = list(checkpoint_info(args.checkpoint).get("stages", []))
        step = load_checkpoint(args.checkpoint, model, optimizer)
        print(f"[train] resumed from {args.checkpoint} at step {step}", file=sys.stderr)
    def validate() -> dict[str, Any]:
        result: dict[str, Any] = {}
        if val_scenes:
            result = _validate_scenes(model, val_scenes, device)
        elif held_data is not None:
            result = _validate_frames(model, held_data, config, device)
        if synthetic_val is not None:
            result["synthetic_epe"] = validate_synthetic(model, synthetic_val, device, amp=False)["epe"]
        return result

    history = [{"step": step, **validate()}]
    tqdm.write(f"[train] step {step}: validation {_short(history[-1])}", file=sys.stderr)
    max_disp = float(model.config.max_disparity)
    edge = (args.edge_radius, args.edge_weight)
    crop = tuple(args.crop)
    model.train()
    train_started = time.time()
    stages = TrainingStages(command, str(device), step, earlier_stages, train_started)
    step_seconds: list[float] = []
    bar = tqdm(total=args.steps, initial=step, desc="train --unlabeled", file=sys.stderr, dynamic_ncols=True)
    scheduled = args.schedule_minutes is not None
    out_of_time = False
    while step < args.steps:
        t0 = time.perf_counter()
        if scheduled:
            progress, total = int((time.time() - train_started) / (60 * args.schedule_minutes) * 1_000_000), 1_000_000
        else:
            progress, total = step, args.steps
        for group in optimizer.param_groups:
            group["lr"] = learning_rate(progress, total, args.lr, args.warmup if not scheduled else 20_000)
        if batch_mix:
            n_synthetic = _synthetic_in_batch(step, args.batch_size, args.synthetic_fraction)
        else:  # --synthetic-mix steps: every k-th batch wholly synthetic
            n_synthetic = args.batch_size if every_synthetic and step % every_synthetic == every_synthetic - 1 else 0
        if n_synthetic == args.batch_size:
            left, right, gt = make_batch(synthetic, step, args.seed, args.batch_size, crop, device,
                                         tuple(args.scale_range))
            loss, terms = synthetic_loss(model(left, right), left, right, gt, teacher, max_disp, edge)
            kind = "synthetic"
        elif n_synthetic:  # one forward pass over real + synthetic crops, the sum of both losses
            left, right, labels = make_unlabeled_batch(data, step, args.seed, args.batch_size - n_synthetic, crop, device)
            s_left, s_right, gt = make_batch(synthetic, step, args.seed, n_synthetic, crop, device,
                                             tuple(args.scale_range))
            output = model(torch.cat([left, s_left]), torch.cat([right, s_right]))
            real = len(left)
            loss, terms, _ = self_supervised_loss(output.disparity[:real], left, right, config, labels)
            s_loss, _ = synthetic_loss(output.select(slice(real, None)), s_left, s_right, gt, teacher, max_disp, edge)
            loss = loss + s_loss
            kind = "real + synthetic"
        else:
            left, right, labels = make_unlabeled_batch(data, step, args.seed, args.batch_size, crop, device)
            loss, terms, _ = self_supervised_loss(model(left, right).disparity, left, right, config, labels)
            kind = "real"
        optimizer.zero_grad(set_to_none=True)
        if not torch.isfinite(loss):
            raise RuntimeError(f"step {step}: the {kind} loss is not finite; lower --lr")
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 5.0)
        optimizer.step()
        if initial:
            pull_towards(list(model.parameters()), initial, args.anchor)
        step += 1
        step_seconds.append(time.perf_counter() - t0)
        bar.update(1)
        if step % 20 == 0:
            bar.set_postfix(loss=f"{float(loss.detach()):.3f}", lr=f"{optimizer.param_groups[0]['lr']:.1e}")
        out_of_time = args.max_minutes is not None and (time.time() - started) > 60 * args.max_minutes
        out_of_time = out_of_time or (scheduled and time.time() - train_started > 60 * args.schedule_minutes)
        if step % args.val_every == 0 or step == args.steps or out_of_time:
            history.append({"step": step, **validate()})
            tqdm.write(f"[train] step {step}: validation {_short(history[-1])}", file=sys.stderr)
        if step % args.checkpoint_every == 0 or step == args.steps or out_of_time:
            save_checkpoint(args.checkpoint, model, optimizer, step, {"command": command, "stages": stages.upto(step)})
        if out_of_time:
            tqdm.write(f"[train] time budget reached at step {step}; checkpoint kept for --resume", file=sys.stderr)
            break
    bar.close()
    train_seconds = time.time() - train_started
    frame_names = lambda fs: [f.name for f in fs]  # noqa: E731
    meta = {
        "training_command": command,
        "mode": "unlabeled fine-tuning (photometric + SGBM proxy + smoothness)",
        "initialised_from": {"path": str(init), "training_command": init_meta.get("training_command"),
                             "steps": init_meta.get("steps"), "initialised_from": init_meta.get("initialised_from")},
        # What these weights have seen, as blend_weights records it: the initial weights' data and this
        # run's sources (path, kind, frames, bytes, SHA-256).
        "data": {"initial": init_meta.get("data"), "fine_tuning": sources},
        "frames": {"train": frame_names(train_frames), "held_out": frame_names(held)},
        "validation_scenes": [s.name for s in val_scenes],
        "loss": {k: v for k, v in config.__dict__.items() if k.startswith(("proxy", "photometric", "smoothness",
                                                                             "image_loss", "automask"))},
        "anchor": args.anchor,
        "teacher_scale": args.teacher_scale or None,
        "frame_scale": args.frame_scale,
        # the node and the tools run weights at the scale they name (inference_scale 0)
        **({"inference_scale": args.frame_scale} if args.frame_scale != 1.0 else {}),
        "synthetic": ({"fraction": args.synthetic_fraction, "mix": args.synthetic_mix, "target": args.synthetic_target, "domain": args.domain, "train_samples": args.train_samples,
                       "data_seed": args.data_seed, "resolution": [args.width, args.height]}
                      if synthetic is not None else None),
        "steps": step,
        "batch_size": args.batch_size,
        "crop": list(crop),
        "lr": args.lr,
        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
        "cpu_threads": torch.get_num_threads(),
        "step_seconds_median": float(np.median(step_seconds)) if step_seconds else math.nan,
        "data_preparation_seconds": round(data_seconds, 1),
        "training_seconds": round(train_seconds, 1),
        "stages": stages.upto(step),
        "validation": history[-1],
        "validation_history": history,
        "stopped_early": step < args.steps,
        "torch": torch.__version__,
        "finished": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    save_weights(model.cpu(), args.output, meta)
    import json

    atomic_write_bytes(args.checkpoint.with_suffix(".json"), (json.dumps(meta, indent=2, default=str) + "\n").encode())
    print(f"[train] wrote {args.output} after {step} steps ({train_seconds / 60:.1f} min, "
          f"{1000 * meta['step_seconds_median']:.0f} ms/step); validation {_short(history[-1])}", file=sys.stderr)
    return 0


def _scaled_teacher(model: torch.nn.Module, scale: float, device: torch.device) -> Teacher:
    """The frozen ``model`` run at ``scale`` times each frame's size (``--teacher-scale``), its
    disparity brought back to the frame's size and pixels: ``(1, 3, H, W)`` pair -> ``(1, 1, H, W)``."""
    from ..core.pipeline import predict_left, scaled_size

    def teacher(left: torch.Tensor, right: torch.Tensor) -> torch.Tensor:
        size = scaled_size(*left.shape[-2:], scale)
        return predict_left(model, left.to(device), right.to(device), size)

    return teacher


def synthetic_loss(output: StereoOutput, left: torch.Tensor, right: torch.Tensor, gt: torch.Tensor,
                   teacher: torch.nn.Module | None, max_disparity: float,
                   edge: tuple[int, float] = (16, 1.0)) -> tuple[torch.Tensor, dict[str, float]]:
    """The supervised loss on synthetic crops: against their ground truth, or, given a frozen
    ``teacher`` (the initial network), against its prediction (distillation).

    Args:
        output: the network's output for the ``(B, 3, H, W)`` crops ``left`` / ``right``.
        gt: ``(B, 1, H, W)`` ground-truth disparity in pixels (unused with a teacher).
        teacher: frozen network whose disparity becomes the target, or ``None``.
        max_disparity: targets above this (pixels) are ignored.
        edge: ``(radius_px, weight)`` of :func:`~stereo_depth_ros.core.network.supervision.edge_weights`
            around the ground truth's depth edges (weight 1: every pixel alike; not with a teacher).
    """
    weights = None
    if teacher is not None:
        with torch.no_grad():
            gt = teacher(left, right).disparity
    elif edge[1] != 1.0:
        weights = edge_weights(gt, edge[0], edge[1])
    return supervised_loss(output, gt, torch.ones_like(gt, dtype=torch.bool), max_disparity, weights)


def _synthetic_in_batch(step: int, batch_size: int, fraction: float) -> int:
    """How many of step ``step``'s ``batch_size`` crops are synthetic so that, over the steps, the
    share is ``fraction`` (``floor((k + 1) f B) - floor(k f B)``: 0.25 of a batch of 2 is one
    synthetic crop every other step)."""
    return math.floor((step + 1) * fraction * batch_size + 1e-9) - math.floor(step * fraction * batch_size + 1e-9)


def _short(v: dict[str, Any]) -> str:
    parts = []
    if "median_bad2" in v:
        parts.append(f"median bad-2 {v['median_bad2']:.2f} %, EPE {v['median_epe']:.2f} px")
    if "photometric" in v:
        parts.append(f"photometric {v['photometric']:.4f}, proxy agreement {100 * v['proxy_agreement']:.1f} %")
    if "synthetic_epe" in v:
        parts.append(f"synthetic EPE {v['synthetic_epe']:.3f} px")
    return "; ".join(parts) or "none (no held-out data)"
