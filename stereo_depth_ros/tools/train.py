"""Train the disparity network on the package's own synthetic stereo data (supervised), or
fine-tune it on real recordings without ground truth (``--unlabeled``, see
:mod:`stereo_depth_ros.tools.train_unlabeled`).

    python -m stereo_depth_ros.tools.train --steps 20000 --device cuda --amp \
        --output stereo_depth_ros/weights/stereo_net.safetensors
    python -m stereo_depth_ros.tools.train --architecture costvolume --steps 20000 --output cost_volume.safetensors
    python -m stereo_depth_ros.tools.train --unlabeled robot.bag --output robot.safetensors --max-minutes 60

The training set is generated up front in worker processes (deterministic from ``--data-seed``),
kept as uint8 images and float16 disparities (on the GPU when it fits), and sampled with random
crops, left/right swap-and-flip (which turns the right GT into the left GT) and per-view
photometric jitter. Validation on the held-out ``val`` split runs every ``--val-every`` steps;
``--checkpoint`` is written every ``--checkpoint-every`` steps (safetensors: model + optimiser +
step, with the stages and validations so far) and ``--resume`` continues from it with the same batch
sequence; the sidecar then lists every stage (command, steps, time) and the whole validation history.
``--architecture`` picks the network a fresh training builds (``madnet``, the default, or
``costvolume``) and ``--network-config '{"field": value}'`` changes fields of its config; the sidecar's
``config`` records both, and loading the weights rebuilds the same network. The parts both modes
share (command line, data, batches, checkpoints) live in :mod:`stereo_depth_ros.tools.training_common`.
"""

from __future__ import annotations

import json
import sys
import time
from typing import Any, Sequence

import torch
from tqdm import tqdm

from ..core.network.supervision import edge_weights, supervised_loss
from ..core.network.weights import atomic_write_bytes, save_weights
from ..core.synthetic import split_seeds
from .training_common import (Dataset, TrainingStages, build_model, checkpoint_info, command_line, generate_dataset,
                              learning_rate, load_checkpoint, make_batch, parse_args, save_checkpoint, validate)

__all__ = ["Dataset", "generate_dataset", "main", "make_batch", "parse_args", "validate"]


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if args.unlabeled:
        from .train_unlabeled import run  # the other mode of this command

        return run(args, argv)
    command = command_line(argv)
    device = torch.device(args.device)
    torch.manual_seed(args.seed)
    started = time.time()
    try:  # before the data: a bad network or checkpoint ends the command at once
        model, init_meta = build_model(args, device)
    except (OSError, ValueError, RuntimeError) as exc:  # WeightsError is a RuntimeError
        print(f"[train] error: {exc}", file=sys.stderr)
        return 2
    if init_meta is not None:
        print(f"[train] initialised from {args.init_weights} ({init_meta.get('steps', '?')} steps, "
              f"val {init_meta.get('validation', {})})", file=sys.stderr)
    else:
        print(f"[train] a fresh {model.config.architecture} network "
              f"({sum(p.numel() for p in model.parameters()) / 1e6:.2f} M parameters)", file=sys.stderr)

    train_seeds = [s + args.data_seed for s in split_seeds("train", args.train_samples)]
    val_seeds = [s + args.data_seed for s in split_seeds("val", args.val_samples)]
    print(f"[train] generating {len(train_seeds)} training and {len(val_seeds)} validation samples "
          f"({args.width}x{args.height}, domain {args.domain!r}, {args.workers} workers)", file=sys.stderr)
    near = round(args.near_fraction * len(train_seeds))
    near_low = args.near_min_disparity * args.width / 640.0
    train = generate_dataset(train_seeds, args.width, args.height, args.domain, args.workers, "train data",
                             [near_low] * near + [None] * (len(train_seeds) - near), photo_dir=args.photo_dir)
    val = generate_dataset(val_seeds, args.width, args.height, args.domain, args.workers, "val data",
                           photo_dir=args.photo_dir)
    data_seconds = time.time() - started
    if device.type == "cuda":
        train, val = train.to(device), val.to(device)
        torch.backends.cudnn.benchmark = True

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
        left, right, gt = make_batch(train, step, args.seed, args.batch_size, tuple(args.crop), device,
                                      tuple(args.scale_range))
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=args.amp):
            out = model(left, right)
        weights = edge_weights(gt, args.edge_radius, args.edge_weight) if args.edge_weight != 1.0 else None
        loss, terms = supervised_loss(out, gt, torch.ones_like(gt, dtype=torch.bool), max_disp, weights)
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
                 "resolution": [args.width, args.height],
                 **({"photo_dir": str(args.photo_dir), "photo_sources": "real photographs (*_left.*) under photo_dir: "
                     "see its MANIFEST for their sources and licences"} if args.photo_dir else {}),
                 "photographs": "scikit-image's bundled data images as textures (licences: scikit-image's data/README.txt)"},
        "steps": step,
        "batch_size": args.batch_size,
        "crop": list(args.crop),
        "edge_weight": {"weight": args.edge_weight, "radius_px": args.edge_radius},
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
