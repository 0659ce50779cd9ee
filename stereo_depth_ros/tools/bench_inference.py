"""Benchmark network inference against OpenCV SGBM on the same frames, in the same run.

    python -m stereo_depth_ros.tools.bench_inference [--sizes 640x480 1280x720] [--device cpu|cuda]
        [--compile] [--cuda-graphs] [--accuracy-samples 30] [--frame-path] [--scales 1.0 0.75 0.5] [--eval-samples 30]
        [--architecture madnet costvolume]

Prints a Markdown table and writes JSON: median and p95 per frame over ``--frames`` after
``--warmup`` untimed frames; on CUDA, fp32 and bf16 autocast, with synchronisation around each
frame; SGBM (CPU) on the same images. ``--compile`` adds the same network through
``torch.compile`` (its first call, which compiles, is timed apart and its output compared with
eager); ``--cuda-graphs`` the network replayed as a CUDA graph (likewise: the capture is timed
apart). ``--accuracy-samples`` checks bf16 against fp32 on held-out samples (EPE of each).
``--frame-path`` (CUDA) times what the node does with a frame on the GPU, without ROS: the upload
through pinned buffers, both disparities with the masks and the point cloud (eager, then replayed
as one CUDA graph), and the download. With ``--scales`` the network also runs at factors of each size (the node's
``inference_scale``: resize in, predict, resize and rescale the disparity out, all timed) and each
scale's accuracy is measured on ``--eval-samples`` held-out synthetic samples (EPE and bad-3 over
all ground-truth pixels, as the evaluation tool counts them), SGBM's beside it. ``--architecture``
times freshly initialised networks of the named architectures (default configs) instead of
``--weights``, one after the other and SGBM after them, in the same run (a network's speed does not
depend on its weights; its accuracy does, so ``--scales`` and ``--accuracy-samples`` need weights).
Figures, not assertions: run it on demand.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch

from ..core.allocator import keep_freed_memory
from ..core.cuda_graph import CudaGraphRunner
from ..core.network.compiled import CompiledStereoNet
from ..core.network.config import ARCHITECTURES, default_config
from ..core.network.estimator import prepare_for_inference
from ..core.network.model import build_network
from ..core.network.weights import load_model
from ..core.sgbm import SgbmBackend
from ..core.synthetic import generate_sample, split_seeds


def _time(fn, frames: int, warmup: int, sync: bool) -> list[float]:
    for _ in range(warmup):
        fn()
    if sync:
        torch.cuda.synchronize()
    out = []
    for _ in range(frames):
        start = time.perf_counter()
        fn()
        if sync:
            torch.cuda.synchronize()
        out.append(1000 * (time.perf_counter() - start))
    return out


def _load_all(args: argparse.Namespace) -> tuple[torch.device, list[tuple[str, torch.nn.Module, dict]]]:
    """Thread setting, device and the networks ready for inference, from the command line: the
    ``--weights`` (one), or a fresh network of each ``--architecture``; each with its architecture's name."""
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    if not args.architecture:
        model, meta = load_model(args.weights, device)
        return device, [(model.config.architecture, prepare_for_inference(model, device), meta)]
    networks = []
    for name in args.architecture:
        torch.manual_seed(0)
        model = build_network(default_config(name))
        networks.append((name, prepare_for_inference(model, device),
                         {"training_command": None, "untrained": True, "config": model.config.to_dict()}))
    return device, networks


def _load(args: argparse.Namespace) -> tuple[torch.device, torch.nn.Module, dict]:
    """As :func:`_load_all` for the modes that run one network (``--scales``, ``--frame-path``)."""
    device, networks = _load_all(args)
    if len(networks) != 1:
        raise SystemExit("--scales and --frame-path run one network: give one --architecture (or --weights)")
    return device, networks[0][1], networks[0][2]


def _precision_accuracy(model: torch.nn.Module, device: torch.device, width: int, height: int, samples: int) -> dict[str, float]:
    """EPE over all ground-truth pixels of fp32 and bf16 autocast on held-out samples, and their mean difference."""
    sums = {"fp32": 0.0, "bf16": 0.0, "diff": 0.0}
    count = 0
    for seed in split_seeds("test", samples):
        s = generate_sample(seed, width=width, height=height, domain="indoor")
        left, right = (torch.from_numpy(im).permute(2, 0, 1)[None].contiguous().to(device) for im in (s.left, s.right))
        gt = torch.from_numpy(s.disparity_left).to(device)
        valid = torch.isfinite(gt) & (gt > 0)
        out = {}
        for precision in ("fp32", "bf16"):
            with torch.inference_mode(), torch.autocast(device.type, dtype=torch.bfloat16, enabled=precision == "bf16"):
                out[precision] = model(left, right).disparity[0, 0].float()
            sums[precision] += float((out[precision] - gt).abs()[valid].sum())
        sums["diff"] += float((out["bf16"] - out["fp32"]).abs()[valid].sum())
        count += int(valid.sum())
    return {"samples": samples, "epe_fp32": sums["fp32"] / count, "epe_bf16": sums["bf16"] / count,
            "mean_abs_difference_px": sums["diff"] / count}


def _frame_path(args: argparse.Namespace) -> int:
    """The node's CUDA frame path, stage by stage, eager and as one CUDA graph (no ROS)."""
    from ..core.camera import StereoCamera
    from ..core.masks import ValidityConfig
    from ..core.pinned_buffers import PinnedBuffers
    from ..core.pipeline import frame_outputs

    device, model, meta = _load(args)
    if device.type != "cuda":
        raise SystemExit("--frame-path needs --device cuda (pinned buffers and CUDA graphs)")
    for p in model.parameters():
        p.requires_grad_(False)
    stream = torch.cuda.current_stream(device)
    rows = []
    for size in args.sizes:
        width, height = (int(v) for v in size.lower().split("x"))
        s = generate_sample(3, width=width, height=height, domain="indoor")
        camera = StereoCamera.from_intrinsics(width, height, s.focal, s.baseline, s.cx, s.cy)
        rgb8 = np.round(s.left * 255).astype(np.uint8)
        buffers = PinnedBuffers(device)
        for graphs in (False, True):
            runner = CudaGraphRunner() if graphs else None
            stages: dict[str, list[float]] = {"upload": [], "frame": [], "download": []}
            for i in range(args.warmup + args.frames):
                t0 = time.perf_counter()
                left, right = (buffers.upload(name, im).permute(2, 0, 1).unsqueeze(0).contiguous()
                               for name, im in (("left", s.left), ("right", s.right)))
                rgb = buffers.upload("rgb8", rgb8)
                stream.synchronize()
                t1 = time.perf_counter()
                work = lambda l, r, c: frame_outputs(model, l, r, camera, ValidityConfig(), rgb=c)  # noqa: E731
                with torch.inference_mode():
                    maps, points = runner(work, left, right, rgb, key=size) if runner is not None else work(left, right, rgb)
                stream.synchronize()
                t2 = time.perf_counter()
                buffers.download((maps, points))
                t3 = time.perf_counter()
                if i >= args.warmup:
                    for name, seconds in zip(stages, (t1 - t0, t2 - t1, t3 - t2)):
                        stages[name].append(1000 * seconds)
            total = [sum(v) for v in zip(*stages.values())]
            rows.append({"size": size, "device": torch.cuda.get_device_name(device), "cuda_graph": graphs,
                         **{f"{k}_median_ms": float(np.median(v)) for k, v in stages.items()},
                         "total_median_ms": float(np.median(total)), "total_p95_ms": float(np.percentile(total, 95)),
                         "fps": 1000.0 / float(np.median(total))})
    lines = ["| size | device | frame work | upload ms | frame ms (network x2 + masks + cloud) | download ms | "
             "total median ms | p95 ms | FPS |", "|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['size']} | {r['device']} | {'CUDA graph' if r['cuda_graph'] else 'eager'} | "
                     f"{r['upload_median_ms']:.2f} | {r['frame_median_ms']:.2f} | {r['download_median_ms']:.2f} | "
                     f"{r['total_median_ms']:.2f} | {r['total_p95_ms']:.2f} | {r['fps']:.0f} |")
    return _report(args, lines, rows, meta)


def _report(args: argparse.Namespace, lines: list[str], rows: list[dict], meta: dict) -> int:
    """Print the Markdown table; write the rows and the weights' training command as JSON."""
    print("\n".join(lines))
    if args.output:
        extra = {"precision_accuracy": meta["precision_accuracy"]} if meta.get("precision_accuracy") else {}
        args.output.write_text(json.dumps({"rows": rows, "weights": meta.get("training_command"), **extra}, indent=2) + "\n")
    return 0


def _scale_table(args: argparse.Namespace) -> int:
    """Scale vs accuracy vs time at each size, SGBM in the same run."""
    from ..core.metrics import aggregate, evaluate_disparity
    from ..core.pipeline import predict_left, scaled_size
    from ..core.synthetic import split_seeds

    device, model, meta = _load(args)
    sgbm = SgbmBackend()
    rows = []

    def predict(left: torch.Tensor, right: torch.Tensor, scale: float) -> torch.Tensor:
        return predict_left(model, left, right, scaled_size(*left.shape[-2:], scale))

    for size in args.sizes:
        width, height = (int(v) for v in size.lower().split("x"))
        samples = [generate_sample(seed, width=width, height=height, domain="indoor")
                   for seed in split_seeds("test", args.eval_samples)]
        tensors = [(torch.from_numpy(s.left).permute(2, 0, 1)[None].contiguous().to(device),
                    torch.from_numpy(s.right).permute(2, 0, 1)[None].contiguous().to(device)) for s in samples]
        for scale in args.scales:
            with torch.inference_mode():
                ms = _time(lambda: predict(*tensors[0], scale), args.frames, args.warmup, device.type == "cuda")
                evaluations = [evaluate_disparity(predict(l, r, scale)[0, 0].float().cpu().numpy(), s.disparity_left)
                               for s, (l, r) in zip(samples, tensors)]
            total = aggregate(evaluations).all
            rows.append({"size": size, "method": f"network x{scale:g}", "scale": scale, "median_ms": float(np.median(ms)),
                         "p95_ms": float(np.percentile(ms, 95)), "epe": total.epe, "bad3_pct": total.bad3_pct})
        # SGBM after the network (see main()).
        ms = _time(lambda: sgbm(samples[0].left, samples[0].right), args.sgbm_frames, 1, False)
        total = aggregate(evaluate_disparity(sgbm(s.left, s.right), s.disparity_left) for s in samples).all
        sgbm_row = {"size": size, "method": "OpenCV SGBM", "scale": 1.0, "median_ms": float(np.median(ms)),
                    "p95_ms": float(np.percentile(ms, 95)), "epe": total.epe, "bad3_pct": total.bad3_pct}
        for row in rows:
            if row["size"] == size:
                row["ratio_to_sgbm"] = row["median_ms"] / sgbm_row["median_ms"]
        sgbm_row["ratio_to_sgbm"] = 1.0
        rows.append(sgbm_row)
    where = torch.cuda.get_device_name(device) if device.type == "cuda" else f"CPU, {torch.get_num_threads()} threads"
    lines = [f"network (left disparity, fp32) at fractions of the image size vs SGBM on {where}; accuracy over "
             f"{args.eval_samples} held-out samples, all GT pixels, holes as errors", "",
             "| size | method | median ms | p95 ms | time / SGBM | EPE px | bad-3 % |", "|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['size']} | {r['method']} | {r['median_ms']:.1f} | {r['p95_ms']:.1f} | "
                     f"{r['ratio_to_sgbm']:.2f} | {r['epe']:.2f} | {r['bad3_pct']:.1f} |")
    return _report(args, lines, rows, meta)


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--sizes", nargs="+", default=["640x480", "1280x720"])
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--weights", default=None)
    p.add_argument("--frames", type=int, default=50)
    p.add_argument("--warmup", type=int, default=5)
    p.add_argument("--sgbm-frames", type=int, default=10)
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    p.add_argument("--scales", nargs="+", type=float, default=None,
                   help="also run the network at these factors of each size (up to 2), with accuracy (fp32)")
    p.add_argument("--eval-samples", type=int, default=30, help="held-out samples for the --scales accuracy")
    p.add_argument("--compile", action="store_true",
                   help="also time the network through torch.compile (the node's compile parameter); not with --scales")
    p.add_argument("--cuda-graphs", action="store_true",
                   help="also time the network replayed as a CUDA graph (the node's cuda_graphs parameter; CUDA only)")
    p.add_argument("--accuracy-samples", type=int, default=0,
                   help="CUDA: EPE of fp32 and bf16 (and their mean difference) on this many held-out samples per size")
    p.add_argument("--frame-path", action="store_true",
                   help="CUDA: time the node's whole GPU frame path without ROS (pinned upload, both disparities + "
                        "masks + point cloud eagerly and as one CUDA graph, download), instead of the network alone")
    p.add_argument("--architecture", nargs="+", choices=sorted(ARCHITECTURES), default=None,
                   help="time freshly initialised networks of these architectures (default configs) instead of "
                        "--weights, one after the other, SGBM after them; speed only (untrained)")
    p.add_argument("--output", type=Path, default=None, help="JSON file")
    args = p.parse_args(argv)
    if args.architecture and args.weights is not None:
        p.error("--architecture times untrained networks; leave out --weights")
    if args.architecture and (args.scales is not None or args.accuracy_samples):
        p.error("--scales and --accuracy-samples measure accuracy, which needs --weights, not --architecture")
    if args.compile and args.scales is not None:
        p.error("--compile times the full-size network; run it without --scales")
    # As stereo_depth_node's main() does; the environment's own malloc tunables stand (core/allocator.py).
    kept = keep_freed_memory()
    print("malloc: freed memory kept for the next frame" if kept
          else "malloc: the C library's defaults or the environment's tunables")
    if args.scales is not None:
        return _scale_table(args)
    if args.frame_path:
        return _frame_path(args)
    device, networks = _load_all(args)
    meta = networks[0][2]
    rows = []
    accuracy: dict[str, dict[str, float]] = {}
    for size in args.sizes:
        width, height = (int(v) for v in size.lower().split("x"))
        if args.accuracy_samples and device.type == "cuda":
            accuracy[size] = _precision_accuracy(networks[0][1], device, width, height, args.accuracy_samples)
        sample = generate_sample(3, width=width, height=height, domain="indoor")
        left = torch.from_numpy(sample.left).permute(2, 0, 1)[None].contiguous().to(device)
        right = torch.from_numpy(sample.right).permute(2, 0, 1)[None].contiguous().to(device)
        precisions = ["fp32", "bf16"] if device.type == "cuda" else ["fp32"]
        timings: list[tuple[str, str, list[float], dict[str, float]]] = []
        for architecture, model, _ in networks:
            variants: list[tuple[str, Any]] = [("", model)]
            if args.compile:
                variants.append((" compiled", CompiledStereoNet(model)))
            if args.cuda_graphs and device.type == "cuda":
                runner = CudaGraphRunner()
                variants.append((" CUDA graph", lambda l, r, runner=runner, model=model: runner(lambda a, b: model(a, b), l, r)))
            for precision in precisions:
                for label, net in variants:
                    def run(precision: str = precision, net: Any = net) -> torch.Tensor:
                        with torch.inference_mode(), torch.autocast(device.type, dtype=torch.bfloat16, enabled=precision == "bf16"):
                            return net(left, right).disparity
                    extra: dict[str, float] = {}
                    if label:  # the first call compiles/captures for this size and precision: timed apart, output checked
                        start = time.perf_counter()
                        out = run()
                        extra["compile_seconds"] = time.perf_counter() - start
                        failure = net.failure if isinstance(net, CompiledStereoNet) else runner.failure
                        if failure is not None:
                            raise SystemExit(f"{label.strip()} failed: {failure}")
                        extra["max_abs_difference_to_eager_px"] = float((out.float() - run(net=model).float()).abs().max())
                    ms = _time(run, args.frames, args.warmup, device.type == "cuda")
                    timings.append((architecture, precision + label, ms, extra))
        # SGBM after the network: OpenCV's worker threads linger after a parallel call and slowed the
        # network by up to a third when it ran second on 2 cores (the node never runs SGBM).
        sgbm = SgbmBackend()
        sgbm_ms = _time(lambda: sgbm(sample.left, sample.right), args.sgbm_frames, 1, False)
        for architecture, precision, ms, extra in timings:
            rows.append({**extra,
                "size": size, "device": torch.cuda.get_device_name(device) if device.type == "cuda" else f"cpu ({torch.get_num_threads()} threads)",
                "network": architecture, "precision": precision, "median_ms": float(np.median(ms)),
                "p95_ms": float(np.percentile(ms, 95)),
                "fps": 1000.0 / float(np.median(ms)), "sgbm_median_ms": float(np.median(sgbm_ms)),
                "ratio_to_sgbm": float(np.median(ms)) / float(np.median(sgbm_ms)),
            })
    lines = ["| size | device | network | precision | network median ms | p95 ms | FPS | SGBM median ms (CPU) | network / SGBM |",
             "|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['size']} | {r['device']} | {r['network']} | {r['precision']} | {r['median_ms']:.2f} | "
                     f"{r['p95_ms']:.2f} | {r['fps']:.0f} | {r['sgbm_median_ms']:.1f} | {r['ratio_to_sgbm']:.2f} |")
    for r in rows:
        if "compile_seconds" in r:
            lines.append(f"\n{r['size']} {r['network']} {r['precision']}: first call (compiling or capturing) {r['compile_seconds']:.1f} s; "
                         f"largest difference to eager {r['max_abs_difference_to_eager_px']:.2g} px")
    for size, acc in accuracy.items():
        lines.append(f"\n{size}, {acc['samples']} held-out samples: EPE fp32 {acc['epe_fp32']:.4f} px, bf16 "
                     f"{acc['epe_bf16']:.4f} px (change {acc['epe_bf16'] - acc['epe_fp32']:+.4f} px); mean |bf16 - fp32| "
                     f"{acc['mean_abs_difference_px']:.4f} px")
    meta = {**meta, "precision_accuracy": accuracy}
    return _report(args, lines, rows, meta)


if __name__ == "__main__":
    sys.exit(main())
