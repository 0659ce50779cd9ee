"""``stereo_depth_label_quality --path DIR [DIR ...] [motorcycle]``: how good the adaptation's proxy
labels are on scenes with ground truth, and how much of the network's error they could correct.

    python -m stereo_depth_ros.tools.label_quality --path ../shared/realdata/middlebury motorcycle
    python -m stereo_depth_ros.tools.label_quality --synthetic outdoor --num-samples 10 --size 320x240

For every scene, with the frozen network's prediction: SGBM's labels exactly as online adaptation
computes them (the network's search range, left-right check, uniqueness, speckle filter, background
fill of the holes, the frozen network as the reference; all at the scene's own size, where the node's
SGBM runs too), scored against the ground truth
(:func:`~stereo_depth_ros.core.proxy.score_labels`), and the labels the photometric gate lets through
at each ``--margins`` value. The network runs as the node runs it, at
``--inference-scale`` (0, the default: the scale the weights name), its disparity brought back to
the scene's size. A markdown table per scene and the median over scenes on stdout;
``--output`` also writes them as JSON. Bad input ends with a one-line error and no output file.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import replace
from pathlib import Path
from typing import Any, Iterator, Sequence

import numpy as np

__all__ = ["main"]

COLUMNS = (("wrong", "network wrong"), ("valid_density", "SGBM density"), ("valid_bad", "SGBM bad"),
           ("fixable_valid", "fixable: SGBM"), ("fixable_filled", "fixable: fill"), ("misleading", "wrong label"))


def _samples(args: argparse.Namespace) -> Iterator[tuple[str, np.ndarray, np.ndarray, np.ndarray]]:
    """``(name, left, right, ground-truth disparity)`` of the real scenes or the synthetic test split."""
    if args.synthetic:
        from ..core.synthetic import generate_sample, split_seeds

        width, height = args.size
        for seed in split_seeds("test", args.num_samples):
            s = generate_sample(seed, width, height, args.synthetic)
            yield f"{args.synthetic}_{seed}", s.left, s.right, s.disparity_left
        return
    from ..core.datasets import load_scenes, scale_sample

    for sample in load_scenes(args.path):
        if args.scale != 1.0:
            sample = scale_sample(sample, args.scale)
        yield sample.name, sample.left, sample.right, sample.disparity


def _scene_rows(args: argparse.Namespace) -> tuple[list[dict[str, Any]], float]:
    """The rows of every scene and the ``inference_scale`` the network ran at."""
    import torch

    from ..core.adaptation import AdaptationConfig, OnlineAdapter
    from ..core.losses import image_error_function
    from ..core.network.estimator import image_to_tensor
    from ..core.network.weights import load_model
    from ..core.pipeline import network_size, predict_left, weights_inference_scale
    from ..core.proxy import score_labels
    from ..core.self_supervision import gate_labels
    from ..core.warping import warp_right_to_left

    model, meta = load_model(args.weights, args.device)
    scale = args.inference_scale or weights_inference_scale(meta)
    # The frozen network is both the prediction scored here and the gate's reference: the adapter
    # computes SGBM's labels only, and the prediction is set as the reference (no second forward pass).
    config = AdaptationConfig()
    adapter = OnlineAdapter(model, replace(config, proxy_reference=False))
    image_error = image_error_function(config.image_loss)
    rows = []
    for name, left_image, right_image, disparity in _samples(args):
        left, right = image_to_tensor(left_image, args.device), image_to_tensor(right_image, args.device)
        with torch.no_grad():
            prediction = predict_left(model.eval(), left, right, network_size(*left.shape[-2:], scale)).float()
            recon, _ = warp_right_to_left(right, prediction, padding_mode="border")
            error = image_error(recon, left)
        labels = replace(adapter.proxy_labels(left, right), reference=prediction)
        gt = torch.from_numpy(np.asarray(disparity, dtype=np.float32))[None, None].to(args.device)
        row: dict[str, Any] = {"scene": name, **score_labels(prediction, labels, gt)}
        for margin in args.margins:
            gated = gate_labels(labels, left, right, error, image_error, margin)
            scores = score_labels(prediction, gated, gt)
            row[f"gate {margin:g}"] = {k: scores[k] for k in ("learnable", "learnable_precision", "learnable_fixes")}
        rows.append(row)
        print(f"[label_quality] {name}: done", file=sys.stderr)
    return rows, scale


def _table(rows: list[dict[str, Any]], margins: Sequence[float]) -> str:
    head = [title for _, title in COLUMNS] + [f"gate {m:g}: labelled / right / fixes" for m in margins]
    lines = ["| scene | " + " | ".join(head) + " |", "|---|" + "---|" * len(head)]

    def cells(row: dict[str, Any]) -> list[str]:
        out = [f"{row[key]:.1f}" for key, _ in COLUMNS]
        for m in margins:
            g = row[f"gate {m:g}"]
            out.append(f"{g['learnable']:.1f} / {g['learnable_precision']:.1f} / {g['learnable_fixes']:.1f}")
        return out

    for row in rows:
        lines.append(f"| {row['scene']} | " + " | ".join(cells(row)) + " |")
    median: dict[str, Any] = {key: float(np.median([r[key] for r in rows])) for key, _ in COLUMNS}
    for m in margins:
        median[f"gate {m:g}"] = {k: float(np.median([r[f"gate {m:g}"][k] for r in rows]))
                                 for k in ("learnable", "learnable_precision", "learnable_fixes")}
    lines.append("| **median** | " + " | ".join(cells(median)) + " |")
    lines.append("")
    lines.append("% of the known ground-truth pixels (network wrong, SGBM density, gate labelled), % of SGBM's "
                 "confident labels (SGBM bad), % of the gated labels (right), % of the pixels the network gets wrong "
                 "(fixable: a right SGBM or background-fill label there; wrong label; fixes: a right label that "
                 "passes the gate). Wrong / right: off by more / at most 2 px.")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    source = p.add_mutually_exclusive_group(required=True)
    source.add_argument("--path", nargs="+",
                        help="scene folders (Middlebury, KITTI, or folders of them) and/or built-in scenes (motorcycle)")
    source.add_argument("--synthetic", metavar="DOMAIN",
                        help="the synthetic test split of this domain instead (indoor = training domain, outdoor = unseen)")
    p.add_argument("--num-samples", type=int, default=10, help="with --synthetic: samples of the test split")
    p.add_argument("--size", default="320x240", help="with --synthetic: WIDTHxHEIGHT of the samples")
    p.add_argument("--margins", type=float, nargs="*", default=[0.2, 0.4],
                   help="photometric gate margins to score (adaptation.proxy_gate_margin)")
    p.add_argument("--scale", type=float, default=1.0, help="score the scenes resized by this factor")
    p.add_argument("--weights", default=None, help="network weights (.safetensors); default: the shipped weights")
    p.add_argument("--inference-scale", type=float, default=0.0,
                   help="the network's input size as a factor of the scene's (0: the scale the weights name, "
                        "as the node's inference_scale 0)")
    p.add_argument("--device", default="cpu", help="torch device of the network")
    p.add_argument("--output", type=Path, default=None, help="also write the rows as JSON here")
    args = p.parse_args(argv)
    if not 0.0 < args.scale <= 1.0:
        p.error(f"--scale: expected a fraction in (0, 1], got {args.scale}")
    from ..core.pipeline import MAX_INFERENCE_SCALE

    if not 0.0 <= args.inference_scale <= MAX_INFERENCE_SCALE:
        p.error(f"--inference-scale: expected 0 (the weights' own) or a factor in (0, {MAX_INFERENCE_SCALE:g}], "
                f"got {args.inference_scale}")
    try:
        args.size = tuple(int(v) for v in args.size.lower().split("x"))
        if len(args.size) != 2 or min(args.size) < 32:
            raise ValueError
    except ValueError:
        p.error(f"--size: expected WIDTHxHEIGHT of at least 32x32 pixels, got {args.size!r}")
    if args.num_samples < 1:
        p.error(f"--num-samples: expected a positive integer, got {args.num_samples}")
    if any(not 0.0 <= m < 1.0 for m in args.margins):
        p.error(f"--margins: expected fractions in [0, 1), got {args.margins}")
    try:
        rows, scale = _scene_rows(args)
    except (OSError, ValueError, RuntimeError) as exc:
        print(f"[label_quality] error: {exc}", file=sys.stderr)
        return 1
    if not rows:
        print(f"[label_quality] error: no scenes with ground truth under {args.path or args.synthetic}", file=sys.stderr)
        return 1
    print(_table(rows, args.margins))
    print(f"The network at inference_scale {scale:g}.")
    if args.output is not None:
        tmp = args.output.with_name(args.output.name + ".tmp")
        tmp.write_text(json.dumps({"argv": list(argv) if argv is not None else sys.argv[1:],
                                   "inference_scale": scale, "scenes": rows}, indent=2) + "\n")
        tmp.replace(args.output)
    return 0


if __name__ == "__main__":
    sys.exit(main())
