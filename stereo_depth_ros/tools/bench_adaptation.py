"""Measure online adaptation: EPE curves per mode on an unseen domain, forgetting, step time.

    python -m stereo_depth_ros.tools.bench_adaptation [--frames 300] [--size 320x240] [--domain outdoor] [--device cuda]
        [--disparity-range LO HI]

For each mode (``none``, ``full``, ``mad``) a fresh copy of the shipped network runs over the same
synthetic sequence: each frame is first predicted with the current weights (the depth the node
would publish, scored against ground truth) and then offered to the adapter. Afterwards the adapted
network is scored on the training domain's test split (forgetting). Prints a Markdown table and
writes JSON with every per-frame curve. Figures, not assertions.

The network runs as the node runs it, at ``--inference-scale`` (0, the default: the scale the
weights name, ``inference_scale`` in their metadata): above 1 every frame is upsampled for the
network and the adapter, SGBM's proxy labels come from the frame as it is (``run_matcher``), and the
disparity is scored at the frame's own size; the step times include those labels.

Before adapting, it measures whether the sequence offers the adapter anything to learn from: on
the pixels where the frozen network is wrong (error > 3 px, not occluded), the reconstruction error
through the ground truth against the one through the frozen prediction. Where the two are equal,
no image loss can tell the right disparity from the wrong one (textureless or periodic surfaces)
and self-supervised adaptation cannot be expected to fix those pixels.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from ..core.adaptation import AdaptationConfig, OnlineAdapter, proxy_matcher
from ..core.allocator import keep_freed_memory
from ..core.losses import image_error_function
from ..core.network.estimator import image_to_tensor
from ..core.network.weights import load_model
from ..core.pipeline import (MAX_INFERENCE_SCALE, network_size, predict_left, resize_images, scaled_size,
                             upsampled_labels, weights_inference_scale)
from ..core.sgbm import SgbmBackend
from ..core.synthetic import generate_sample, generate_sequence, split_seeds
from ..core.warping import warp_right_to_left


def _epe(model: torch.nn.Module, left: torch.Tensor, right: torch.Tensor, gt: np.ndarray,
         scale: float = 1.0) -> float:
    """Mean absolute error (pixels) of the network's disparity of ``(1, 3, H, W)`` images against the
    ``(H, W)`` ground truth, the network run at ``scale`` times the images' size."""
    pred = predict_left(model, left, right, network_size(*left.shape[-2:], scale))[0, 0].cpu().numpy()
    return float(np.abs(pred - gt).mean())


def adaptation_inputs(left: torch.Tensor, right: torch.Tensor, scale: float,
                      matcher: SgbmBackend | None) -> tuple[torch.Tensor, torch.Tensor, np.ndarray | None]:
    """What the node's adapter gets for a ``(1, 3, H, W)`` pair at ``inference_scale`` ``scale``: the
    images at the network's size and, when that is upsampled, ``matcher``'s (the SGBM of the proxy
    labels, :func:`~stereo_depth_ros.core.adaptation.proxy_matcher`; None: no SGBM labels) ``(1, h, w)``
    disparity of the pair as it is, brought to that size (:func:`~stereo_depth_ros.core.pipeline.run_matcher`;
    None: the adapter computes its labels itself, on the images it is given)."""
    size = network_size(*left.shape[-2:], scale)
    return resize_images(left, size), resize_images(right, size), upsampled_labels(matcher, left, right, size)


def photometric_signal(model: torch.nn.Module, frames: Sequence[tuple[torch.Tensor, torch.Tensor, np.ndarray, np.ndarray]],
                       image_loss: str = "ssim_l1", wrong_px: float = 3.0, scale: float = 1.0) -> dict[str, float]:
    """Does the image loss prefer the ground truth where the frozen network is wrong?

    Args:
        model: the frozen network.
        frames: ``(left, right, gt, occluded)``: ``(1, 3, H, W)`` images in [0, 1], ``(H, W)`` ground
            truth disparity (pixels) and ``(H, W)`` bool occlusion of the left pixels.
        image_loss: ``"ssim_l1"`` or ``"census"``, the adapter's reconstruction error.
        wrong_px: a pixel is wrong when its error exceeds this (pixels).
        scale: the network runs at this factor of the images' size (its disparity is scored at theirs).

    Returns:
        ``wrong_share`` (of non-occluded pixels), the mean reconstruction error through the ground
        truth (``loss_gt``) and through the prediction (``loss_pred``) on the wrong pixels, and
        ``gt_better``: the share of wrong pixels whose error through the ground truth is lower by
        more than 1e-4 (about 0.5 or less = no preference: nothing to learn there). NaN without
        wrong pixels.
    """
    error = image_error_function(image_loss)
    wrong, loss_gt, loss_pred, better, visible = 0, 0.0, 0.0, 0, 0
    for left, right, gt, occluded in frames:
        target = torch.as_tensor(gt, dtype=left.dtype, device=left.device)[None, None]
        with torch.no_grad():
            pred = predict_left(model, left, right, network_size(*left.shape[-2:], scale))
            e_gt = error(warp_right_to_left(right, target)[0], left).mean(1)[0].cpu().numpy()
            e_pred = error(warp_right_to_left(right, pred)[0], left).mean(1)[0].cpu().numpy()
        seen = ~np.asarray(occluded, dtype=bool)
        bad = seen & (np.abs(pred[0, 0].cpu().numpy() - gt) > wrong_px)
        visible += int(seen.sum())
        wrong += int(bad.sum())
        loss_gt += float(e_gt[bad].sum())
        loss_pred += float(e_pred[bad].sum())
        better += int((e_gt[bad] < e_pred[bad] - 1e-4).sum())  # rounding-level differences are no signal
    nan = float("nan")
    return {"wrong_share": wrong / visible if visible else nan,
            "loss_gt": loss_gt / wrong if wrong else nan, "loss_pred": loss_pred / wrong if wrong else nan,
            "gt_better": better / wrong if wrong else nan}


def single_frame(args: argparse.Namespace, width: int, height: int) -> int:
    """Adapt repeatedly on ONE frame and compare the loss with the ground truth's own loss.

    If the loss falls below the GT's while EPE rises, the objective is exploitable on that data
    (guards off, so the optimiser shows what the objective rewards).
    """
    from ..core.losses import edge_aware_smoothness
    from ..core.warping import warp_right_to_left

    sample = generate_sample(args.seed, width, height, args.domain)
    left, right = image_to_tensor(sample.left), image_to_tensor(sample.right)
    gt = torch.from_numpy(sample.disparity_left)[None, None]
    config = AdaptationConfig(mode="full", learning_rate=args.lr, image_loss=args.image_loss, automask=False,
                              lr_warmup_steps=1, jump_factor=1e9, rise_factor=1e9, max_in_view_drop=0.99, spread_band=1e9)
    error = image_error_function(args.image_loss)
    with torch.no_grad():
        gt_loss = float(error(warp_right_to_left(right, gt)[0], left).mean() + config.smoothness_weight * edge_aware_smoothness(gt, left).mean())
    model, _ = load_model(args.weights)
    adapter = OnlineAdapter(model, config)
    print(f"single {args.domain} frame (seed {args.seed}), {args.image_loss}, lr {args.lr:g}: loss of the ground truth {gt_loss:.4f}")
    for step in range(args.single_frame + 1):
        with torch.no_grad():
            epe = float((model(left, right).disparity - gt).abs().mean())
        result = adapter.step(left, right)
        if step % max(1, args.single_frame // 4) == 0:
            print(f"  step {step:3d}: loss {result.loss:.4f}  EPE {epe:.2f} px")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--frames", type=int, default=300)
    p.add_argument("--size", default="320x240")
    p.add_argument("--domain", default="outdoor")
    p.add_argument("--disparity-range", type=float, nargs=2, default=None, metavar=("LO", "HI"),
                   help="disparities of the unseen sequence in pixels at --size (default: the domain's range); "
                        "e.g. 10 95 at 320x240 puts the camera close to the scene")
    p.add_argument("--seed", type=int, default=11)
    p.add_argument("--modes", nargs="+", default=["none", "full", "mad"])
    p.add_argument("--lr", type=float, default=AdaptationConfig().learning_rate)
    p.add_argument("--forgetting-samples", type=int, default=10)
    p.add_argument("--step-time-sizes", nargs="*", default=["320x240", "640x480"])
    p.add_argument("--weights", default=None)
    p.add_argument("--inference-scale", type=float, default=0.0,
                   help="the network's input size as a factor of the frames' (0: the scale the weights name, "
                        "as the node's inference_scale 0)")
    p.add_argument("--device", default="cpu", help="torch device of the network and the adapter (cpu, cuda)")
    p.add_argument("--output", type=Path, default=Path("bench_adaptation.json"))
    p.add_argument("--single-frame", type=int, default=0, metavar="STEPS",
                   help="instead: adapt STEPS times on one frame (seed --seed) and compare with the GT's loss")
    p.add_argument("--image-loss", default="ssim_l1", choices=("ssim_l1", "census"))
    p.add_argument("--no-automask", action="store_true", help="adapt without auto-masking")
    p.add_argument("--proxy", choices=("sgbm", "none"), default=AdaptationConfig().proxy,
                   help="proxy labels of the adaptation loss (none: photometric only)")
    p.add_argument("--adapt-set", nargs="*", default=[], metavar="KEY=VALUE",
                   help="any other AdaptationConfig field, e.g. proxy_fill_weight=0")
    p.add_argument("--anchor", type=float, default=AdaptationConfig().anchor,
                   help="pull towards the initial weights after every update (fraction)")
    args = p.parse_args(argv)
    keep_freed_memory()  # as stereo_depth_node's main() does
    from .evaluate import parse_adapt_overrides

    try:
        args.adapt_overrides = parse_adapt_overrides(args.adapt_set)
    except ValueError as exc:
        p.error(str(exc))
    width, height = (int(v) for v in args.size.lower().split("x"))
    if not 0.0 <= args.inference_scale <= MAX_INFERENCE_SCALE:
        p.error(f"--inference-scale: expected 0 (the weights' own) or a factor in (0, {MAX_INFERENCE_SCALE:g}], "
                f"got {args.inference_scale}")
    if args.single_frame:
        return single_frame(args, width, height)

    print(f"[bench] rendering {args.frames} frames of an unseen-domain sequence ({args.domain}, {width}x{height})", file=sys.stderr)
    device = torch.device(args.device)
    lo, hi = args.disparity_range if args.disparity_range else (None, None)
    try:
        sequence = list(generate_sequence(args.seed, args.frames, width, height, args.domain,
                                          min_disparity=lo, max_disparity=hi))
    except ValueError as exc:
        p.error(str(exc))
    frames = [(image_to_tensor(f.left, device), image_to_tensor(f.right, device), f.disparity_left) for f in sequence]
    model, meta = load_model(args.weights, device)
    try:
        scale = args.inference_scale or weights_inference_scale(meta)
        scaled_size(height, width, scale)
    except ValueError as exc:
        p.error(str(exc))
    signal = photometric_signal(model, [(*frames[k], sequence[k].occlusion_left) for k in range(0, len(frames), 10)],
                                args.image_loss, scale=scale)
    del sequence
    home = [(image_to_tensor(s.left, device), image_to_tensor(s.right, device), s.disparity_left)
            for s in (generate_sample(seed, width, height, "indoor") for seed in split_seeds("test", args.forgetting_samples))]
    base_config = AdaptationConfig(learning_rate=args.lr, image_loss=args.image_loss, automask=not args.no_automask,
                                   anchor=args.anchor, proxy=args.proxy)
    base_config = replace(base_config, **args.adapt_overrides)
    matcher = proxy_matcher(base_config, float(model.config.max_disparity)) if base_config.proxy == "sgbm" else None
    results: dict[str, dict] = {}
    for mode in args.modes:
        model, _ = load_model(args.weights, device)
        adapter = OnlineAdapter(model, replace(base_config, mode=mode))
        home_before = float(np.mean([_epe(model, *h, scale) for h in home]))
        curve, losses, seconds = [], [], []
        start = time.time()
        for k, (left, right, gt) in enumerate(frames):
            curve.append(_epe(model, left, right, gt, scale))
            result = adapter.step(*adaptation_inputs(left, right, scale, matcher))
            losses.append(result.loss)
            seconds.append(result.seconds)
            if (k + 1) % 50 == 0:
                print(f"[bench] {mode}: frame {k + 1}/{len(frames)}, EPE {np.mean(curve[-50:]):.3f} px, "
                      f"rollbacks {adapter.rollbacks}", file=sys.stderr)
        home_after = float(np.mean([_epe(model, *h, scale) for h in home]))
        n = max(1, len(curve) // 6)
        results[mode] = {
            "epe_curve": curve, "loss_curve": losses, "epe_first": float(np.mean(curve[:n])),
            "epe_last": float(np.mean(curve[-n:])), "epe_mean": float(np.mean(curve)),
            "home_epe_before": home_before, "home_epe_after": home_after,
            "steps": adapter.steps, "skipped": adapter.skipped, "rollbacks": adapter.rollbacks,
            "step_seconds_median": float(np.median([s for s in seconds if s > 0] or [0.0])),
            "wall_seconds": time.time() - start,
        }
    step_times = {}
    for size in args.step_time_sizes:
        w, h = (int(v) for v in size.lower().split("x"))
        s = generate_sample(1, w, h, args.domain)
        left, right = image_to_tensor(s.left, device), image_to_tensor(s.right, device)
        for mode in ("full", "mad"):
            model, _ = load_model(args.weights, device)
            adapter = OnlineAdapter(model, replace(base_config, mode=mode))
            times = []
            for _ in range(6):  # wall time to the end of the step's GPU work (its own clock stops at the host)
                t0 = time.perf_counter()
                adapter.step(*adaptation_inputs(left, right, scale, matcher))
                if device.type == "cuda":
                    torch.cuda.synchronize(device)
                times.append(time.perf_counter() - t0)
            times = times[1:]
            step_times[f"{mode}@{size}"] = 1000 * float(np.median(times))
        model, _ = load_model(args.weights, device)
        input_size = network_size(*left.shape[-2:], scale)
        predict_left(model, left, right, input_size)
        sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
        sync()
        t0 = time.perf_counter()
        for _ in range(3):
            predict_left(model, left, right, input_size)
        sync()
        step_times[f"inference@{size}"] = 1000 * (time.perf_counter() - t0) / 3

    reference = results.get("none")
    lines = ["| mode | EPE first 1/6 | EPE last 1/6 | change vs none (last 1/6) | training-domain EPE before -> after | steps | rollbacks | step ms |",
             "|---|---|---|---|---|---|---|---|"]
    for mode, r in results.items():
        change = (100 * (r["epe_last"] / reference["epe_last"] - 1)) if reference else float("nan")
        lines.append(f"| {mode} | {r['epe_first']:.3f} | {r['epe_last']:.3f} | {change:+.1f}% | "
                     f"{r['home_epe_before']:.3f} -> {r['home_epe_after']:.3f} | {r['steps']} | {r['rollbacks']} | "
                     f"{1000 * r['step_seconds_median']:.0f} |")
    if step_times:
        lines.append("")
        lines.append("| step | " + " | ".join(step_times) + " |")
        lines.append("|---|" + "---|" * len(step_times))
        where = torch.cuda.get_device_name(device) if device.type == "cuda" else f"CPU, {torch.get_num_threads()} threads"
        lines.append(f"| median ms ({where}, inference_scale {scale:g}) | "
                     + " | ".join(f"{v:.0f}" for v in step_times.values()) + " |")
    lines.append("")
    lines.append(f"Signal (every 10th frame, frozen network): {100 * signal['wrong_share']:.1f} % of the visible pixels "
                 f"are wrong by > 3 px; there the {args.image_loss} error is {signal['loss_gt']:.4f} through the ground "
                 f"truth and {signal['loss_pred']:.4f} through the prediction, and the ground truth is the better "
                 f"reconstruction on {100 * signal['gt_better']:.0f} % of them (50 % = nothing to learn).")
    print("\n".join(lines))
    args.output.write_text(json.dumps({"config": vars(args) | {"output": str(args.output), "inference_scale": scale},
                                       "modes": results,
                                       "step_ms": step_times, "signal": signal}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
