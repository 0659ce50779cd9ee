"""Evaluate disparity backends (the network and OpenCV SGBM) against ground truth, side by side.

    python -m stereo_depth_ros.tools.evaluate [--num-samples 20] [--width 640 --height 480]
        [--domain indoor] [--backend network|sgbm] [--weights PATH] [--device cpu] [--output eval_output]
    python -m stereo_depth_ros.tools.evaluate --path DIR [DIR ...] [motorcycle] [--adapt-steps 100] [--continual]

Datasets
--------
* ``synthetic`` (without ``--path``): the held-out ``"test"`` split of
  :mod:`stereo_depth_ros.core.synthetic` (``split_seeds("test", N)``), rendered at ``--width x
  --height`` in ``--domain`` ("indoor" is the training domain, "outdoor" an unseen one). Exact
  disparity, calibration and occlusion masks.
* real data (``--path``): any mix of Middlebury scene folders (``im0.png``, ``im1.png``,
  ``disp0GT.pfm``, ``mask0nocc.png``, ``calib.txt``), KITTI 2012/2015 split folders, folders in
  the package's own layout (``left/``, ``right/``, ``disparity/``), recorded sequences (their
  frames with sparse ground truth in ``gt/``), folders of any of those, and the built-in real
  Middlebury Motorcycle pair (``motorcycle``, from scikit-image). Each folder's layout is detected
  (:mod:`stereo_depth_ros.core.datasets`); ``--dataset middlebury|kitti|folder|sequence`` insists
  on one. SGBM searches each scene's own range (Middlebury ``ndisp``, else the ground
  truth's maximum).

Backends and reported numbers
-----------------------------
``--backend network`` (default) runs the network (``--weights``, ``--device``, ``--inference-scale``)
and always OpenCV SGBM in the same run; ``--backend sgbm`` runs SGBM alone. ``--adapt-steps N``
adds test-time adaptation (:mod:`stereo_depth_ros.core.test_time`): ``adapted`` (the default
adaptation settings, SGBM proxy labels included) and ``adapted_photometric`` (the same without the
proxy: the photometric loss alone), each adapting a fresh copy of the same weights for N steps on
each scene before predicting it. ``--continual`` adds ``continual``: one adapter carried through
the scenes in order (N steps each), then every scene re-evaluated with its final weights
(``continual_final``: what adaptation kept or forgot). ``--adapt-oracle`` adds ``adapted_oracle``:
the same adaptation with the scene's ground truth as its label (a ceiling, not a method).
``--adapt-set KEY=VALUE`` changes an adaptation setting for every adapting arm (an
:class:`AdaptationConfig` field).

For every method the metrics of :mod:`stereo_depth_ros.core.metrics` are reported over "all
pixels" (every GT-valid pixel, holes counted as errors) and over the method's "own valid pixels";
the network is also evaluated on SGBM's valid pixels. Real data lead with a per-scene table:
bad-2 over all GT pixels per scene and the median over scenes, then median bad-1/2/3, EPE, density
and the non-occluded bad-2 / EPE where a scene has an occlusion mask. Aggregates are also given
pixel-weighted over the whole data set. ``--exclude-occluded`` leaves occluded pixels out
everywhere (KITTI "noc"). Runtime is the mean wall time per frame of the backend call (adaptation
included for adapting arms; others after one untimed warm-up call). A second table breaks every
backend's numbers down by ground-truth disparity (``--disparity-bands``, pixels), and ``--regions``
splits every backend's bad-2 pixels by where they are (occluded, depth edges, weak texture, the
rest: :mod:`stereo_depth_ros.core.error_regions`).

Output (``--output``, default ``eval_output/``): ``metrics.json`` (configuration, per-sample and
summary metrics; NaN written as null), ``metrics.md`` (the tables, also printed at the end) and
``sample_XXX.png`` per sample (left image, GT disparity, each method's disparity and error map,
labelled); with ``--continual`` also ``continual_final/``. A progress bar follows the steps.
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
import time
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Sequence

import cv2
import numpy as np

from ..core.allocator import keep_freed_memory
from ..core.metrics import (DISPARITY_BANDS, DisparityEvaluation, aggregate, band_edges, evaluate_by_disparity,
                            evaluate_disparity, gt_valid_mask, prediction_valid_mask, sparsification)
from ..core.datasets import EvalSample, load_folder_samples, read_disparity, read_image
from ..core.error_regions import REGIONS, count_bad_by_region, error_regions
from ..core.sgbm import SGBM_MODES, SgbmBackend

__all__ = [
    "EvalSample",
    "evaluate",
    "synthetic_samples",
    "load_folder_samples",
    "read_disparity",
    "read_image",
    "render_sample",
    "markdown_table",
    "parse_args",
    "main",
]

ERROR_RANGE_PX = 5.0  # error maps saturate at this error (pixels)
HOLE_COLOUR = (128, 128, 128)  # BGR of holes in the error maps (outside the inferno palette)
MIN_TILE_WIDTH = 320  # visualisation tiles are resized to a width in [MIN, MAX] (pixels)
MAX_TILE_WIDTH = 480
SAMPLE_IMAGE = "sample_{index:03d}.png"
DEFAULT_SYNTHETIC_SAMPLES = 20

Backend = Callable[[np.ndarray, np.ndarray], np.ndarray]


# ---------------------------------------------------------------------------------------------- datasets
def synthetic_samples(
    num_samples: int, width: int = 640, height: int = 480, domain: str = "indoor", split: str = "test"
) -> Iterator[EvalSample]:
    """Render ``num_samples`` samples of ``split`` (default the held-out test split), lazily."""
    from ..core.synthetic import generate_sample, split_seeds

    for seed in split_seeds(split, num_samples):
        s = generate_sample(seed, width=width, height=height, domain=domain)
        yield EvalSample(
            left=s.left,
            right=s.right,
            disparity=s.disparity_left,
            focal=float(s.focal),
            baseline=float(s.baseline),
            occlusion=s.occlusion_left,
            name=f"{domain}_{seed}",
        )


# ---------------------------------------------------------------------------------------------- visualisation
def colorize(values: np.ndarray, lo: float, hi: float, colormap: int = cv2.COLORMAP_TURBO) -> np.ndarray:
    """``(H, W)`` values -> ``(H, W, 3)`` BGR uint8 colour map over ``[lo, hi]``, black where not finite."""
    finite = np.isfinite(values)
    scaled = np.clip((np.where(finite, values, lo) - lo) / max(hi - lo, 1e-9), 0.0, 1.0)
    image = cv2.applyColorMap((scaled * 255).astype(np.uint8), colormap)
    image[~finite] = 0
    return image


def _label(tile: np.ndarray, lines: Sequence[str]) -> np.ndarray:
    font, scale, thickness = cv2.FONT_HERSHEY_SIMPLEX, 0.45, 1
    y = 4
    for line in lines:
        (w, h), base = cv2.getTextSize(line, font, scale, thickness)
        cv2.rectangle(tile, (2, y), (8 + w, y + h + base + 4), (0, 0, 0), -1)
        cv2.putText(tile, line, (5, y + h + 2), font, scale, (255, 255, 255), thickness, cv2.LINE_AA)
        y += h + base + 6
    return tile


def render_sample(
    sample: EvalSample,
    predictions: dict[str, np.ndarray],
    evaluations: dict[str, DisparityEvaluation] | None = None,
    tile_width: tuple[int, int] = (MIN_TILE_WIDTH, MAX_TILE_WIDTH),
) -> np.ndarray:
    """A labelled BGR uint8 mosaic: row 0 left image | GT disparity; then per method prediction | error.

    Disparities share one turbo colour scale (0 to the largest GT disparity); black = no value.
    Error maps (inferno) saturate at ``ERROR_RANGE_PX``; black = no ground truth, grey = a hole
    where ground truth exists. Tiles are resized so that their width lies in ``tile_width``
    (pixels; small images are enlarged with nearest-neighbour so the labels fit).
    """
    gt = sample.disparity
    height, width = gt.shape
    out_w = int(min(max(width, tile_width[0]), tile_width[1]))
    out_h = max(1, int(round(height * out_w / width)))

    def tile(image: np.ndarray, lines: Sequence[str]) -> np.ndarray:
        if (out_w, out_h) != (width, height):
            interp = cv2.INTER_AREA if out_w < width else cv2.INTER_NEAREST
            image = cv2.resize(image, (out_w, out_h), interpolation=interp)
        return _label(np.ascontiguousarray(image), lines)

    gt_ok = gt_valid_mask(gt)
    top = float(np.max(gt[gt_ok])) if gt_ok.any() else 1.0
    left = cv2.cvtColor((np.clip(sample.left, 0, 1) * 255 + 0.5).astype(np.uint8), cv2.COLOR_RGB2BGR)
    rows = [[tile(left, [f"left  {sample.name}"]),
             tile(colorize(np.where(gt_ok, gt, np.nan), 0.0, top, cv2.COLORMAP_TURBO),
                  [f"GT disparity 0-{top:.0f} px", f"{100 * gt_ok.mean():.0f}% of pixels have GT"])]]
    for name, pred in predictions.items():
        has = prediction_valid_mask(pred)
        ev = evaluations.get(name) if evaluations else None
        text = [f"{name} disparity"]
        if ev is not None:
            text.append(f"density {ev.density:.1f}%")
        error = np.where(gt_ok & has, np.abs(np.where(has, pred, 0.0) - np.where(gt_ok, gt, 0.0)), np.nan)
        err_tile = colorize(error, 0.0, ERROR_RANGE_PX, cv2.COLORMAP_INFERNO)
        err_tile[gt_ok & ~has] = HOLE_COLOUR
        err_text = [f"{name} |error| 0-{ERROR_RANGE_PX:.0f} px, grey = hole"]
        if ev is not None:
            err_text.append(f"EPE {ev.all.epe:.2f} px (valid {ev.valid.epe:.2f}), D1 {ev.all.d1_all:.1f}%")
        rows.append([tile(colorize(np.where(has, pred, np.nan), 0.0, top, cv2.COLORMAP_TURBO), text),
                     tile(err_tile, err_text)])
    return np.vstack([np.hstack(r) for r in rows])


# ---------------------------------------------------------------------------------------------- evaluation
def _finite_or_none(x: Any) -> Any:
    """Recursively replace NaN / inf by None so that the JSON is strict."""
    if isinstance(x, float):
        return x if math.isfinite(x) else None
    if isinstance(x, dict):
        return {k: _finite_or_none(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_finite_or_none(v) for v in x]
    return x


def _backend_names(backends: Sequence[Any]) -> list[str]:
    names: list[str] = []
    for b in backends:
        base = str(getattr(b, "name", type(b).__name__))
        name, k = base, 2
        while name in names:
            name, k = f"{base}_{k}", k + 1
        names.append(name)
    return names


def _run_backend(backend: Backend, name: str, sample: EvalSample) -> tuple[np.ndarray, float]:
    start = time.perf_counter()
    if isinstance(backend, SgbmBackend) and sample.max_disparity is not None:
        pred = backend(sample.left, sample.right, max_disparity=sample.max_disparity)  # the scene's known range
    elif getattr(backend, "uses_ground_truth", False):  # the oracle arm (--adapt-oracle)
        pred = backend(sample.left, sample.right, sample.disparity)
    else:
        pred = backend(sample.left, sample.right)
    elapsed_ms = 1000.0 * (time.perf_counter() - start)
    if hasattr(pred, "detach"):  # a torch tensor
        pred = pred.detach().cpu().numpy()
    if not isinstance(pred, np.ndarray) or pred.shape != sample.disparity.shape:
        got = f"shape {pred.shape}" if isinstance(pred, np.ndarray) else type(pred).__name__
        raise ValueError(f"backend {name!r}: expected an {sample.disparity.shape} disparity array, got {got}")
    return pred.astype(np.float32, copy=False), elapsed_ms


def evaluate(
    backends: Sequence[Backend],
    samples: Iterable[EvalSample],
    output_dir: str | Path | None,
    *,
    reference: str = "sgbm",
    exclude_occluded: bool = False,
    min_depth: float = 1e-3,
    max_depth: float = 80.0,
    save_images: bool = True,
    warmup: bool = True,
    progress: bool = True,
    metadata: dict[str, Any] | None = None,
    disparity_bands: Sequence[float] | None = DISPARITY_BANDS,
    per_scene: bool = False,
    regions: bool = False,
    region_edge_px: int = 3,
) -> dict[str, Any]:
    """Run every backend on every sample, compute the metrics and (optionally) write the reports.

    Args:
        backends: callables ``(left, right) -> (H, W) disparity`` (pixels, NaN/<=0 = hole) with a
            ``name`` attribute (duplicate names get ``_2``, ``_3`` ...).
        samples: :class:`EvalSample` s (any iterable; consumed once).
        output_dir: folder for ``metrics.json``, ``metrics.md`` and ``sample_XXX.png``; ``None``
            writes nothing.
        reference: the backend whose valid pixels every other backend is also evaluated on
            (method key ``"<name>@<reference>_valid"``); ignored when no backend has that name.
        exclude_occluded: leave out pixels that a sample's ``occlusion`` mask marks.
        min_depth, max_depth: depth range (metres) of the depth metrics (see core.metrics).
        save_images: write one visualisation PNG per sample.
        warmup: run each backend once, untimed, on the first sample before timing it (not the
            backends whose ``warmup`` attribute is False: those that learn from what they see).
        progress: print one line per sample to stderr.
        metadata: extra JSON-friendly fields stored under ``"config"`` (dataset description, ...).
        disparity_bands: band edges in pixels for the per-disparity breakdown of every backend
            (:func:`~stereo_depth_ros.core.metrics.evaluate_by_disparity`); ``None`` or empty skips it.
        per_scene: put the per-scene table (bad-2 of every method on every sample, and the median
            over samples) first in the Markdown: the real-scene yardstick.
        regions: split every sample's bad-2 pixels of every backend into where they are
            (:func:`~stereo_depth_ros.core.error_regions.error_regions`: occluded, depth edges, weak
            texture, the rest); each sample report then holds ``regions`` (``pixels`` per region and
            ``bad2`` per backend and region) and the report ``regions`` their sums over samples.
        region_edge_px: with ``regions``, how far (4-connected steps, pixels) from a depth edge a
            pixel counts as ``edges``.

    Returns:
        The report: ``{"config", "methods", "summary", "samples", "backends", "table"}``;
        ``summary[method]`` holds ``all``/``valid`` metric dicts, ``density`` (%), pixel counts and
        ``runtime_ms`` (mean and median over frames; an ``@reference`` row repeats its backend's).
        ``by_disparity`` (with ``disparity_bands``): ``{"edges", "bands": {backend: [per band:
        ``share`` (% of evaluated pixels) plus the evaluation's dict]}}``.
        Metrics are pixel-weighted aggregates over all samples. ``median[method]``: the median over
        samples of bad-1/2/3, EPE and density over all GT pixels, and of bad-2 / EPE over the
        non-occluded pixels of the samples that have an occlusion mask (``nocc_*``, with
        ``nocc_samples``). Every sample report holds ``metrics`` and, with an occlusion mask,
        ``metrics_nocc``. ``table`` is the Markdown summary.

    Raises:
        ValueError: no backends, a sample that is not an :class:`EvalSample`, or a backend
            returning the wrong shape.
    """
    if not backends:
        raise ValueError("backends: expected at least one backend, got none")
    names = _backend_names(backends)
    has_reference = reference in names
    methods: list[str] = []
    for name in names:
        methods.append(name)
        if has_reference and name != reference:
            methods.append(f"{name}@{reference}_valid")
    out = Path(output_dir) if output_dir is not None else None
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
    edges = band_edges(disparity_bands) if disparity_bands else []  # bad edges fail before any work
    per_band: dict[str, list[list[DisparityEvaluation]]] = {n: [] for n in names}

    per_method: dict[str, list[DisparityEvaluation]] = {m: [] for m in methods}
    runtimes: dict[str, list[float]] = {n: [] for n in names}
    sample_reports: list[dict[str, Any]] = []
    backend_info: dict[str, Any] = {}
    for index, sample in enumerate(samples):
        if not isinstance(sample, EvalSample):
            raise ValueError(f"samples[{index}]: expected an EvalSample, got {type(sample).__name__}")
        name_s = sample.name or f"sample_{index:03d}"
        height, width = sample.disparity.shape
        if index == 0:
            for backend, name in zip(backends, names):
                params = getattr(backend, "params", None)
                info: dict[str, Any] = {"type": type(backend).__name__}
                if callable(params):
                    try:
                        info["params"] = params(width)
                    except TypeError:
                        info["params"] = params()
                meta = getattr(backend, "metadata", None)
                if isinstance(meta, dict):  # e.g. the network's weights metadata (training command, ...)
                    try:
                        info["metadata"] = json.loads(json.dumps(meta, default=str))
                    except (TypeError, ValueError):
                        info["metadata"] = str(meta)
                backend_info[name] = info
                if warmup and getattr(backend, "warmup", True):
                    _run_backend(backend, name, sample)
        predictions: dict[str, np.ndarray] = {}
        sample_times: dict[str, float] = {}
        confidences: dict[str, np.ndarray] = {}
        for backend, name in zip(backends, names):
            predictions[name], sample_times[name] = _run_backend(backend, name, sample)
            runtimes[name].append(sample_times[name])
            if getattr(backend, "last_confidence", None) is not None:  # ranks its pixels: a sparsification curve
                confidences[name] = backend.last_confidence

        base_mask = ~sample.occlusion if (exclude_occluded and sample.occlusion is not None) else None
        kwargs = dict(focal=sample.focal, baseline=sample.baseline, min_depth=min_depth, max_depth=max_depth)
        evals: dict[str, DisparityEvaluation] = {}
        for name in names:
            evals[name] = evaluate_disparity(predictions[name], sample.disparity, mask=base_mask, **kwargs)
        if has_reference:
            ref_mask = prediction_valid_mask(predictions[reference])
            if base_mask is not None:
                ref_mask &= base_mask
            for name in names:
                if name != reference:
                    evals[f"{name}@{reference}_valid"] = evaluate_disparity(
                        predictions[name], sample.disparity, mask=ref_mask, **kwargs)
        for m in methods:
            per_method[m].append(evals[m])
        nocc: dict[str, DisparityEvaluation] = {}
        if sample.occlusion is not None and not exclude_occluded:
            for name in names:
                nocc[name] = evaluate_disparity(predictions[name], sample.disparity, mask=~sample.occlusion, **kwargs)
        region_counts: dict[str, Any] | None = None
        if regions:
            masks = error_regions(sample.disparity, sample.left, sample.occlusion, edge_radius_px=region_edge_px)
            if base_mask is not None:
                masks = {r: m & base_mask for r, m in masks.items()}
            region_counts = {"pixels": {r: int(m.sum()) for r, m in masks.items()},
                             "bad2": {n: count_bad_by_region(predictions[n], sample.disparity, masks) for n in names}}
        if edges:
            for name in names:
                per_band[name].append(evaluate_by_disparity(predictions[name], sample.disparity, edges,
                                                            mask=base_mask, **kwargs))

        image_name = None
        if out is not None and save_images:
            image_name = SAMPLE_IMAGE.format(index=index)
            mosaic = render_sample(sample, predictions, evals)
            if not cv2.imwrite(str(out / image_name), mosaic):
                raise OSError(f"could not write {out / image_name}")
        sample_reports.append({
            "index": index,
            "name": name_s,
            "width": width,
            "height": height,
            "focal": sample.focal,
            "baseline": sample.baseline,
            "image": image_name,
            "runtime_ms": sample_times,
            "metrics": {m: evals[m].to_dict(include_sums=True) for m in methods},
            **({"metrics_nocc": {n: e.to_dict() for n, e in nocc.items()}} if nocc else {}),
            **({"regions": region_counts} if region_counts is not None else {}),
            **({"sparsification": _sparsification(predictions, confidences, sample.disparity, reference)}
               if confidences else {}),
        })
        if progress:
            parts = [f"{n} EPE {evals[n].all.epe:.2f} px, D1 {evals[n].all.d1_all:.1f}%, "
                     f"density {evals[n].density:.1f}%, {sample_times[n]:.0f} ms" for n in names]
            print(f"[evaluate] {index + 1}: {name_s}: " + "; ".join(parts), file=sys.stderr, flush=True)

    summary: dict[str, Any] = {}
    for m in methods:
        total = aggregate(per_method[m])
        backend_name = m.split("@", 1)[0]
        times = runtimes[backend_name]
        entry = total.to_dict()
        entry["runtime_ms"] = {
            "mean": statistics.fmean(times) if times else math.nan,
            "median": statistics.median(times) if times else math.nan,
            "frames": len(times),
        }
        summary[m] = entry
    report: dict[str, Any] = {
        "config": {
            **(metadata or {}),
            "reference": reference if has_reference else None,
            "exclude_occluded": exclude_occluded,
            "min_depth": min_depth,
            "max_depth": max_depth,
            "aggregation": "pixel-weighted (sums over all samples divided once)",
            "holes": "all: holes count as errors (EPE uses d=0, depth uses max_depth, thresholded metrics fail); "
                     "valid: holes excluded",
        },
        "backends": backend_info,
        "methods": methods,
        "num_samples": len(sample_reports),
        "summary": summary,
        "median": _medians(sample_reports, names),
        "per_scene": per_scene,
        "samples": sample_reports,
    }
    if any("sparsification" in r for r in sample_reports):
        report["sparsification"] = _sparsification_medians(sample_reports)
    if regions:
        report["regions"] = {
            "edge_px": region_edge_px,
            "pixels": {r: sum(s["regions"]["pixels"][r] for s in sample_reports) for r in REGIONS},
            "bad2": {n: {r: sum(s["regions"]["bad2"][n][r] for s in sample_reports) for r in REGIONS} for n in names},
        }
    if edges:
        total_pixels = sum(e.gt_pixels for e in per_method[names[0]])
        bands: dict[str, list[dict[str, Any]]] = {}
        for name in names:
            bands[name] = []
            for k in range(len(edges) - 1):
                band = aggregate(sample_bands[k] for sample_bands in per_band[name])
                share = 100.0 * band.gt_pixels / total_pixels if total_pixels else math.nan
                bands[name].append({"low": edges[k], "high": edges[k + 1], "share": share, **band.to_dict()})
        report["by_disparity"] = {"edges": edges, "bands": bands}
    report["table"] = markdown_table(report)
    if out is not None:
        (out / "metrics.json").write_text(json.dumps(_finite_or_none(report), indent=2))
        (out / "metrics.md").write_text(report["table"])
    return report


SPARSIFICATION_DENSITIES = (0.5, 0.6, 0.7, 0.8, 0.9, 1.0)
"""Densities (fractions of the ground-truth pixels) of the sparsification curves, besides the reference's own."""


def _sparsification(predictions: dict[str, np.ndarray], confidences: dict[str, np.ndarray], gt: np.ndarray,
                    reference: str) -> dict[str, Any]:
    """Per backend with a confidence, bad-2 (%) of its most confident pixels at each density and at
    the reference's (SGBM's) own density, next to the reference's bad-2 on its own pixels."""
    valid = gt_valid_mask(gt)
    out: dict[str, Any] = {"densities": list(SPARSIFICATION_DENSITIES)}
    if reference in predictions and valid.any():
        ref_valid = prediction_valid_mask(predictions[reference])[valid]
        ref_density = float(ref_valid.mean())
        ref_error = np.abs(np.nan_to_num(predictions[reference][valid], nan=0.0) - gt[valid])
        out["reference"] = {"name": reference, "density": 100.0 * ref_density,
                            "bad2_kept": 100.0 * float((ref_error[ref_valid] > 2.0).mean()) if ref_valid.any() else math.nan}
    for name, confidence in confidences.items():
        densities = list(SPARSIFICATION_DENSITIES)
        if "reference" in out and out["reference"]["density"] > 0:
            densities.append(out["reference"]["density"] / 100.0)
        curve = sparsification(predictions[name], confidence, gt, densities)
        out[name] = {"curve": curve[:len(SPARSIFICATION_DENSITIES)],
                     "at_reference_density": curve[-1] if len(curve) > len(SPARSIFICATION_DENSITIES) else math.nan}
    return out


def _sparsification_medians(sample_reports: list[dict[str, Any]]) -> dict[str, Any]:
    """Median over samples of every sparsification figure (see :func:`_sparsification`)."""
    rows = [r["sparsification"] for r in sample_reports if "sparsification" in r]
    med = lambda values: float(np.nanmedian(values)) if len(values) else math.nan  # noqa: E731
    out: dict[str, Any] = {"densities": rows[0]["densities"]}
    if all("reference" in r for r in rows):
        out["reference"] = {"name": rows[0]["reference"]["name"],
                            "density": med([r["reference"]["density"] for r in rows]),
                            "bad2_kept": med([r["reference"]["bad2_kept"] for r in rows])}
    for name in [k for k in rows[0] if k not in ("densities", "reference")]:
        curves = np.array([r[name]["curve"] for r in rows], dtype=np.float64)
        out[name] = {"curve": [med(curves[:, k]) for k in range(curves.shape[1])],
                     "at_reference_density": med([r[name]["at_reference_density"] for r in rows]),
                     "wins_at_reference_density": sum(
                         r[name]["at_reference_density"] < r["reference"]["bad2_kept"] for r in rows if "reference" in r)}
    return out


def _medians(sample_reports: list[dict[str, Any]], names: Sequence[str]) -> dict[str, dict[str, float]]:
    """Per backend, the median over samples of the headline metrics (see :func:`evaluate`)."""
    def median(values: list[float]) -> float:
        values = [v for v in values if v is not None and math.isfinite(v)]
        return float(statistics.median(values)) if values else math.nan

    out: dict[str, dict[str, float]] = {}
    for name in names:
        rows = [r["metrics"][name] for r in sample_reports]
        nocc = [r["metrics_nocc"][name] for r in sample_reports if name in r.get("metrics_nocc", {})]
        entry = {key: median([row["all"][key] for row in rows]) for key in ("bad1", "bad2", "bad3", "epe")}
        entry["density"] = median([row["density"] for row in rows])
        entry["valid_bad2"] = median([row["valid"]["bad2"] for row in rows if "valid" in row])
        entry["nocc_bad2"] = median([row["all"]["bad2"] for row in nocc])
        entry["nocc_epe"] = median([row["all"]["epe"] for row in nocc])
        entry["nocc_samples"] = len(nocc)
        out[name] = entry
    return out


def scene_table(report: dict[str, Any]) -> str:
    """Markdown: bad-2 (all GT pixels, holes as errors) of every backend on every sample, the
    median over samples, then the medians of the other headline metrics per backend."""
    names = [m for m in report["methods"] if "@" not in m]
    lines = ["| scene | " + " | ".join(f"{n} bad-2 %" for n in names) + " |", "|---|" + "---|" * len(names)]
    for r in report["samples"]:
        lines.append(f"| {r['name']} | " + " | ".join(_fmt(r["metrics"][n]["all"]["bad2"], 1) for n in names) + " |")
    medians = report["median"]
    lines.append("| **median** | " + " | ".join(f"**{_fmt(medians[n]['bad2'], 1)}**" for n in names) + " |")
    lines += ["", "| method | median bad-1 % | median bad-2 % | median bad-3 % | median EPE px | median density % | "
              "median bad-2 % on its trusted pixels | median bad-2 % non-occluded | median EPE px non-occluded |",
              "|---|---|---|---|---|---|---|---|---|"]
    for n in names:
        m = medians[n]
        nocc = f" ({m['nocc_samples']} scenes)" if m["nocc_samples"] and m["nocc_samples"] != report["num_samples"] else ""
        lines.append(f"| {n} | {_fmt(m['bad1'], 1)} | {_fmt(m['bad2'], 1)} | {_fmt(m['bad3'], 1)} | {_fmt(m['epe'], 2)} | "
                     f"{_fmt(m['density'], 1)} | {_fmt(m.get('valid_bad2'), 1)} | {_fmt(m['nocc_bad2'], 1)}{nocc} | {_fmt(m['nocc_epe'], 2)} |")
    lines += ["", "All GT pixels, holes and untrusted pixels counted as errors; medians over scenes.", ""]
    return "\n".join(lines)


def region_table(report: dict[str, Any]) -> str:
    """Markdown: each backend's bad-2 on every sample and on all samples together, split by where
    the pixels are (points of all GT pixels, so a row's regions add up to its total)."""
    def row(label: str, name: str, pixels: dict[str, int], bad: dict[str, int]) -> str:
        total = sum(pixels.values())
        cells = [_fmt(100.0 * sum(bad.values()) / total if total else math.nan, 1)]
        cells += [_fmt(100.0 * bad[r] / total if total else math.nan, 1) for r in REGIONS]
        return f"| {label} | {name} | " + " | ".join(cells) + " |"

    def shares(pixels: dict[str, int]) -> str:
        total = sum(pixels.values())
        return ", ".join(f"{r} {_fmt(100.0 * pixels[r] / total if total else math.nan, 0)} %" for r in REGIONS)

    names = list(report["regions"]["bad2"])
    lines = ["Where the bad-2 pixels are (points of all GT pixels, holes as errors; regions of "
             f"`core/error_regions.py`, in this order of precedence; edges: within {report['regions']['edge_px']} px "
             "of a depth edge):", "",
             "| scene | method | all | " + " | ".join(REGIONS) + " |", "|---|---|---|" + "---|" * len(REGIONS)]
    for s in report["samples"]:
        lines += [row(s["name"], n, s["regions"]["pixels"], s["regions"]["bad2"][n]) for n in names]
    total = report["regions"]
    lines += [row("**all scenes**", n, total["pixels"], total["bad2"][n]) for n in names]
    lines += ["", f"Share of the GT pixels, all scenes: {shares(total['pixels'])} (each scene's in metrics.json)."]
    return "\n".join(lines)


def _fmt(value: Any, digits: int) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "–"
    return f"{value:.{digits}f}"


def markdown_table(report: dict[str, Any]) -> str:
    """The summary of an :func:`evaluate` report as a Markdown table (methods as rows) plus notes;
    with ``per_scene``, :func:`scene_table` first."""
    config = report.get("config", {})
    prefix = scene_table(report) + "\nPixel-weighted over all scenes:\n\n" if report.get("per_scene") else ""
    reference = config.get("reference")
    header = ("| Method | Pixels | EPE (px) | bad-1 (%) | bad-2 (%) | bad-3 (%) | D1-all (%) | Density (%) | "
              "AbsRel | RMSE (m) | δ<1.25 (%) | Runtime (ms/frame) |")
    lines = [header, "|" + "---|" * 12]
    for m in report["methods"]:
        s = report["summary"][m]
        if "@" in m:
            backend = m.split("@", 1)[0]
            rows = [(f"{backend} on {reference}'s valid pixels", "all")]
        else:
            rows = [(f"{m}", "all"), (f"{m}", "valid")]
        for label, mode in rows:
            v = s[mode]
            if "@" in m:
                pixels = f"{reference} valid"
            else:
                pixels = "all GT" if mode == "all" else "own valid"
            lines.append(
                f"| {label} | {pixels} | {_fmt(v['epe'], 3)} | {_fmt(v['bad1'], 2)} | {_fmt(v['bad2'], 2)} | "
                f"{_fmt(v['bad3'], 2)} | {_fmt(v['d1_all'], 2)} | {_fmt(s['density'], 1)} | {_fmt(v['abs_rel'], 4)} | "
                f"{_fmt(v['rmse'], 3)} | {_fmt(v['delta1'], 2)} | {_fmt(s['runtime_ms']['mean'], 1)} |"
            )
    notes = [
        "",
        f"{report.get('num_samples', 0)} samples"
        + (f" ({config['dataset']})" if config.get("dataset") else "")
        + "; pixel-weighted aggregates over all samples"
        + ("; occluded pixels excluded" if config.get("exclude_occluded") else "; occluded pixels included")
        + ".",
        "\"all GT\": every GT-valid pixel, holes counted as errors (EPE with d = 0, depth clamped to "
        f"{_fmt(config.get('max_depth'), 0)} m, a failure for bad-k / D1 / δ). \"own valid\": the method's "
        "own predictions only. Density: % of the evaluated GT-valid pixels with a prediction.",
        "",
    ]
    by_disparity = report.get("by_disparity")
    if by_disparity:
        bands = by_disparity["bands"]
        names = list(bands)
        head = "| GT disparity (px) | Pixels (%) | " + " | ".join(
            f"{n} EPE | {n} bias | {n} bad-3 (%) | {n} density (%)" for n in names) + " |"
        band_lines = ["By ground-truth disparity (all GT pixels, holes as errors; bias = mean signed error, "
                      "negative = too far):", "", head, "|" + "---|" * (2 + 4 * len(names))]
        for k, first in enumerate(bands[names[0]]):
            high = "inf" if math.isinf(first["high"]) else f"{first['high']:g}"
            cells = [f"{first['low']:g}-{high}", _fmt(first["share"], 1)]
            for n in names:
                b = bands[n][k]
                cells += [_fmt(b["all"]["epe"], 2), _fmt(b["all"]["bias"], 2), _fmt(b["all"]["bad3"], 1),
                          _fmt(b["density"], 1)]
            band_lines.append("| " + " | ".join(cells) + " |")
        notes += band_lines + [""]
    if report.get("regions"):
        notes += [region_table(report), ""]
    sparse = report.get("sparsification")
    if sparse:
        ref = sparse.get("reference")
        dens = sparse["densities"]
        head = "| method | " + " | ".join(f"{100 * q:.0f} %" for q in dens) + (
            f" | at {ref['name']}'s density | {ref['name']} on its own pixels |" if ref else " |")
        sparse_lines = ["Sparsification (bad-2 % of the most confident pixels at each density of the GT pixels, "
                        "medians over scenes):", "", head, "|" + "---|" * (1 + len(dens) + (2 if ref else 0))]
        for name, entry in sparse.items():
            if name in ("densities", "reference"):
                continue
            cells = [name] + [_fmt(v, 1) for v in entry["curve"]]
            if ref:
                cells += [f"{_fmt(entry['at_reference_density'], 1)} ({entry['wins_at_reference_density']} of "
                          f"{report.get('num_samples', 0)} scenes lower)",
                          f"{_fmt(ref['bad2_kept'], 1)} at {_fmt(ref['density'], 1)} %"]
            sparse_lines.append("| " + " | ".join(cells) + " |")
        notes += sparse_lines + [""]
    return prefix + "\n".join(lines + notes)


# ---------------------------------------------------------------------------------------------- CLI
DATASETS = ("auto", "synthetic", "middlebury", "kitti", "folder", "sequence")


def parse_adapt_overrides(items: Sequence[str]) -> dict[str, Any]:
    """``KEY=VALUE`` strings -> AdaptationConfig field values (typed like the field's default)."""
    from ..core.adaptation import AdaptationConfig

    defaults = AdaptationConfig().__dict__
    out: dict[str, Any] = {}
    for item in items:
        key, sep, text = item.partition("=")
        if not sep or key not in defaults:
            raise ValueError(f"--adapt-set: expected KEY=VALUE with KEY one of {sorted(defaults)}, got {item!r}")
        kind = type(defaults[key])
        try:
            out[key] = (text.lower() in ("1", "true", "yes")) if kind is bool else kind(text)
        except ValueError:
            raise ValueError(f"--adapt-set {key}: expected a {kind.__name__}, got {text!r}") from None
    return out


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """Parse the command line (see the module docstring)."""
    p = argparse.ArgumentParser(
        prog="python -m stereo_depth_ros.tools.evaluate",
        description="Evaluate the network and OpenCV SGBM against ground truth, side by side.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("--dataset", choices=DATASETS, default="auto",
                   help="data source: auto = synthetic without --path, else each path's detected layout")
    p.add_argument("--path", nargs="+", default=None, metavar="PATH",
                   help="dataset folders (scene, split, or a folder of them) and/or built-in scene names "
                        "(motorcycle)")
    p.add_argument("--num-samples", type=int, default=None,
                   help=f"samples of the synthetic test split (default {DEFAULT_SYNTHETIC_SAMPLES}); "
                        "for real data, at most this many (default all)")
    p.add_argument("--width", type=int, default=640, help="synthetic image width (px)")
    p.add_argument("--height", type=int, default=480, help="synthetic image height (px)")
    p.add_argument("--domain", default="indoor", help="synthetic domain (indoor = training domain, outdoor = unseen)")
    p.add_argument("--backend", choices=("network", "sgbm"), default="network",
                   help="network: the network and SGBM side by side; sgbm: SGBM only")
    p.add_argument("--weights", default=None, help="network weights (.safetensors); default: the shipped weights")
    p.add_argument("--device", default="cpu", help="torch device of the network")
    p.add_argument("--inference-scale", type=float, default=0.0,
                   help="run the network (and adaptation) at this factor of each image's size (up to 2: "
                        "above 1 the images are upsampled); 0 = each network at the scale its weights name "
                        "(1.0 when they name none), as the node's inference_scale 0")
    p.add_argument("--adapt-steps", type=int, default=0,
                   help="also adapt the network N steps on each scene (test-time adaptation): 'adapted' "
                        "(default settings) and 'adapted_photometric' (no proxy labels)")
    p.add_argument("--continual", action="store_true",
                   help="with --adapt-steps: one adapter carried through the scenes in order, then every "
                        "scene re-evaluated with its final weights")
    p.add_argument("--adapt-oracle", action="store_true",
                   help="with --adapt-steps: also 'adapted_oracle', the same adaptation with the ground truth as "
                        "its label (a ceiling for this network and step count, not a method)")
    p.add_argument("--adapt-set", nargs="*", default=[], metavar="KEY=VALUE",
                   help="adaptation settings of the adapting arms (AdaptationConfig fields)")
    p.add_argument("--compare-weights", nargs="*", default=[], metavar="WEIGHTS",
                   help="also evaluate these weights (frozen), named network_<file stem>, in the same run")
    p.add_argument("--masks", action="store_true",
                   help="also evaluate what the node publishes: node_fused (its default: the network fused with "
                        "SGBM per pixel, then masked), node_fused_single_pass (the same without the left-right "
                        "check: validity.left_right_check false), and the network alone with its validity masks, "
                        "two-pass (left-right check) and single-pass; see the density, the bad-2 on the trusted "
                        "pixels and the sparsification curve")
    p.add_argument("--regions", action="store_true",
                   help="also split every method's bad-2 pixels by where they are: occluded, near a depth edge, "
                        "weakly textured, the rest (core/error_regions.py; a table in metrics.md)")
    p.add_argument("--region-edge-px", type=int, default=3, metavar="PX",
                   help="with --regions: pixels this close to a depth edge (4-connected steps) count as edges; "
                        "edge fattening reaches further than the default 3")
    p.add_argument("--seed", type=int, default=0, help="seed of the adaptation's block sampling (mad mode)")
    p.add_argument("--max-disparity", type=float, default=None,
                   help="SGBM search range (px); default: each scene's known range, else 192 * width / 640")
    p.add_argument("--sgbm-mode", choices=sorted(SGBM_MODES), default="sgbm_3way", help="OpenCV SGBM mode")
    p.add_argument("--exclude-occluded", action="store_true", help="leave occluded pixels out (KITTI 'noc')")
    p.add_argument("--max-depth", type=float, default=80.0, help="depth metrics range limit (m); holes count as this")
    p.add_argument("--no-images", action="store_true", help="do not write the per-sample PNGs")
    p.add_argument("--disparity-bands", type=float, nargs="*", default=list(DISPARITY_BANDS), metavar="PX",
                   help="edges (px at the evaluated resolution) of the per-GT-disparity breakdown; none disables")
    p.add_argument("--output", type=Path, default=Path("eval_output"), help="output folder")
    args = p.parse_args(argv)
    if args.num_samples is not None and args.num_samples <= 0:
        p.error(f"--num-samples: expected a positive integer, got {args.num_samples}")
    if args.dataset == "auto":
        args.dataset = "synthetic" if args.path is None else "real"
    if args.dataset == "synthetic" and args.path is not None:
        p.error("--dataset synthetic: takes no --path")
    if args.dataset not in ("synthetic", "real") and args.path is None:
        p.error(f"--dataset {args.dataset}: expected --path DIR")
    if args.num_samples is None and args.dataset == "synthetic":
        args.num_samples = DEFAULT_SYNTHETIC_SAMPLES
    if args.width < 32 or args.height < 32:
        p.error(f"--width/--height: expected at least 32 px, got {args.width}x{args.height}")
    from ..core.pipeline import MAX_INFERENCE_SCALE

    if not 0.0 <= args.inference_scale <= MAX_INFERENCE_SCALE:
        p.error(f"--inference-scale: expected 0 (the weights' own) or a factor in (0, {MAX_INFERENCE_SCALE:g}], "
                f"got {args.inference_scale}")
    if args.adapt_steps < 0:
        p.error(f"--adapt-steps: expected an integer >= 0, got {args.adapt_steps}")
    if (args.continual or args.adapt_set or args.adapt_oracle) and not args.adapt_steps:
        p.error("--continual, --adapt-set and --adapt-oracle: expected --adapt-steps N as well")
    if args.adapt_steps and args.backend != "network":
        p.error("--adapt-steps: adapts the network, expected --backend network")
    try:
        args.adapt_overrides = parse_adapt_overrides(args.adapt_set)
    except ValueError as exc:
        p.error(str(exc))
    if args.disparity_bands:
        try:
            band_edges(args.disparity_bands)
        except ValueError as exc:
            p.error(f"--disparity-bands: {exc} (or none to skip the breakdown)")
    if not (args.max_depth > 0 and math.isfinite(args.max_depth)):
        p.error(f"--max-depth: expected a positive number, got {args.max_depth}")
    if args.region_edge_px < 0:
        p.error(f"--region-edge-px: expected pixels >= 0, got {args.region_edge_px}")
    return args


def _samples(args: argparse.Namespace) -> tuple[list[EvalSample] | Iterable[EvalSample], str]:
    """The samples and a description of the data set (real data are loaded into a list: the
    continual arm evaluates them twice)."""
    from ..core.datasets import detect_layout, load_scenes

    if args.dataset == "synthetic":
        return (synthetic_samples(args.num_samples, args.width, args.height, args.domain),
                f"synthetic {args.domain} test split, {args.width}x{args.height}")
    if args.dataset != "real":
        for path in args.path:
            layout = detect_layout(path) if Path(path).is_dir() else "built-in"
            if layout != args.dataset:
                raise ValueError(f"{path}: expected a {args.dataset} dataset (--dataset), detected {layout}")
    samples = load_scenes(args.path, args.num_samples)
    if args.continual:
        samples = list(samples)
    return samples, "real: " + ", ".join(str(p) for p in args.path)


def _backends(args: argparse.Namespace) -> tuple[list[Any], dict[str, float]]:
    """The backends to score, and the inference scale of each network among them (by name)."""
    from ..core.test_time import AdaptingBackend, GroundTruthAdaptingBackend, MaskedNetworkBackend, NetworkBackend

    backends: list[Any] = []
    scales: dict[str, float] = {}
    if args.backend == "network":
        from dataclasses import replace

        from ..core.adaptation import AdaptationConfig
        from ..core.network.weights import load_model
        from ..core.pipeline import weights_inference_scale

        model, meta = load_model(args.weights, args.device)
        scale = scales["network"] = args.inference_scale or weights_inference_scale(meta)
        backends.append(NetworkBackend(model, args.device, scale, metadata=meta))
        for extra in args.compare_weights:
            other, other_meta = load_model(extra, args.device)
            name = f"network_{Path(extra).stem}"
            scales[name] = args.inference_scale or weights_inference_scale(other_meta)
            backends.append(NetworkBackend(other, args.device, scales[name], name=name, metadata=other_meta))
        if args.masks:
            for fusion in (False, True):  # the network alone, then fused as the node publishes
                for single_pass in (False, True):
                    backends.append(MaskedNetworkBackend(model, args.device, scale, metadata=meta,
                                                         fusion=fusion, single_pass=single_pass))
        if args.adapt_steps:
            config = replace(AdaptationConfig(), **args.adapt_overrides)
            arms = [("adapted", config, False), ("adapted_photometric", replace(config, proxy="none"), False)]
            if args.continual:
                arms.append(("continual", config, True))
            if args.adapt_oracle:
                arms.append(("adapted_oracle", config, False))
            for name, arm_config, continual in arms:
                kind = GroundTruthAdaptingBackend if name == "adapted_oracle" else AdaptingBackend
                backend = kind(model, arm_config, args.adapt_steps, continual, args.device,
                               scale, name, progress=True, seed=args.seed)
                backend.warmup = False  # it learns from what it sees: no untimed extra pass
                backends.append(backend)
    backends.append(SgbmBackend(max_disparity=args.max_disparity, mode=args.sgbm_mode))
    return backends, scales


def main(argv: Sequence[str] | None = None) -> int:
    """Command-line entry point; returns the process exit status."""
    args = parse_args(argv)
    keep_freed_memory()  # as stereo_depth_node's main() does
    try:
        backends, scales = _backends(args)
    except (ImportError, OSError, ValueError, RuntimeError) as exc:  # RuntimeError: WeightsError
        print(f"[evaluate] error: cannot load the network ({exc}); use --backend sgbm to evaluate SGBM alone",
              file=sys.stderr)
        return 1
    try:
        samples, dataset = _samples(args)
        common = dict(exclude_occluded=args.exclude_occluded, max_depth=args.max_depth, save_images=not args.no_images,
                      disparity_bands=args.disparity_bands, per_scene=args.dataset != "synthetic",
                      regions=args.regions, region_edge_px=args.region_edge_px)
        metadata = {"dataset": dataset, "argv": list(argv) if argv is not None else sys.argv[1:],
                    "weights": args.weights if args.backend == "network" else None,
                    "inference_scale": scales or None, "adapt_steps": args.adapt_steps}
        report = evaluate(backends, samples, args.output, metadata=metadata, **common)
        table = report["table"]
        adapting = [b for b in backends if hasattr(b, "history")]
        if adapting:
            report["adaptation"] = {b.name: b.history for b in adapting}
        continual = next((b for b in adapting if b.continual), None)
        if continual is not None:
            from ..core.test_time import NetworkBackend

            final = NetworkBackend(continual.model, args.device, scales["network"], name="continual_final")
            again = evaluate([backends[0], final], samples, args.output / "continual_final",
                             metadata={**metadata, "pass": "every scene with the continual arm's final weights"},
                             **{**common, "disparity_bands": None, "regions": False})
            report["continual_final"] = {"median": again["median"],
                                         "samples": [{"name": r["name"], "metrics": r["metrics"]} for r in again["samples"]]}
            table += ("\nAfter the continual pass, every scene again with its final weights (forgetting):\n\n"
                      + scene_table(again))
        report["table"] = table
        (args.output / "metrics.json").write_text(json.dumps(_finite_or_none(report), indent=2, default=str))
        (args.output / "metrics.md").write_text(table)
    except ValueError as exc:
        print(f"[evaluate] error: {exc}", file=sys.stderr)
        return 1
    print(table)
    print(f"[evaluate] wrote {args.output / 'metrics.json'}, {args.output / 'metrics.md'} and "
          f"{report['num_samples'] if not args.no_images else 0} sample images", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
