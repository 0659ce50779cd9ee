"""``stereo_depth_blend_weights INITIAL TUNED --alpha A --output OUT``: interpolate two weights files.

    python -m stereo_depth_ros.tools.blend_weights stereo_net.safetensors finetuned.safetensors \
        --alpha 0.5 --output blended.safetensors

Writes ``INITIAL + A (TUNED - INITIAL)`` (weight-space interpolation, WiSE-FT): after fine-tuning on
real recordings this keeps most of the gain on them while giving back most of what the synthetic
prior lost. Both files must hold the same network. The output is written atomically with a JSON
sidecar naming both inputs (path, SHA-256, their own sidecars' training commands) and alpha; bad
input ends with a one-line error and no output file.
"""

from __future__ import annotations

import argparse
import hashlib
import shlex
import sys
from pathlib import Path
from typing import Any, Sequence

from ..core.network.config import config_from_dict
from ..core.network.weights import WeightsError, interpolate_states, load_weights, save_weights

__all__ = ["main"]


def _sha256(path: Path) -> str:
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def _fine_tuning_data(meta: dict[str, Any]) -> Any:
    """What the tuned weights were fine-tuned on: ``data.fine_tuning`` (``train --unlabeled``), a
    top-level ``sources`` (sidecars written before that), or the whole ``data`` (a supervised run)."""
    data = meta.get("data")
    if isinstance(data, dict) and "fine_tuning" in data:
        return data["fine_tuning"]
    return meta.get("sources", data)


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("initial", type=Path, help="the weights fine-tuning started from")
    p.add_argument("tuned", type=Path, help="the fine-tuned weights")
    p.add_argument("--alpha", type=float, required=True, help="0 = initial, 1 = tuned")
    p.add_argument("--output", type=Path, required=True)
    args = p.parse_args(argv)
    try:
        initial, initial_meta = load_weights(args.initial)
        tuned, tuned_meta = load_weights(args.tuned)
        # Compared as configs: a sidecar written before the architecture field existed equals its MADNet one.
        config = config_from_dict(tuned_meta["config"])
        if config_from_dict(initial_meta["config"]) != config:
            raise ValueError(f"{args.tuned}: expected the network of {args.initial}, got another configuration")
        state = interpolate_states(initial, tuned, args.alpha)
    except (FileNotFoundError, WeightsError, ValueError, KeyError) as exc:
        print(f"[blend] error: {exc}", file=sys.stderr)
        return 2
    inputs = {name: {"path": str(path), "sha256": _sha256(path), "training_command": meta.get("training_command")}
              for name, path, meta in (("initial", args.initial, initial_meta), ("tuned", args.tuned, tuned_meta))}
    meta = {"training_command": "stereo_depth_blend_weights " + " ".join(shlex.quote(a) for a in (argv or sys.argv[1:])),
            "mode": "weight interpolation (WiSE-FT)", "alpha": args.alpha, "inputs": inputs,
            "tuned": {k: tuned_meta.get(k) for k in ("frames", "steps", "synthetic", "validation", "lr", "anchor")
                      if k in tuned_meta},
            # What the blend has seen: the initial weights' data and the fine-tuning's sources.
            "data": {"initial": initial_meta.get("data"), "fine_tuning": _fine_tuning_data(tuned_meta)}}
    save_weights(state, args.output, meta, config=config)
    print(f"[blend] wrote {args.output} = {args.initial} + {args.alpha:g} x ({args.tuned} - {args.initial})", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
