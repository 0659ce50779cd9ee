"""Evaluate disparity backends (the network and OpenCV SGBM) against ground truth, side by side.

    python -m stereo_depth_ros.tools.evaluate [--dataset synthetic] [--num-samples 20]
        [--width 640 --height 480] [--domain indoor] [--backend network|sgbm]
        [--weights PATH] [--device cpu] [--output eval_output]
    python -m stereo_depth_ros.tools.evaluate --dataset folder --path DIR [--backend sgbm]

Datasets
--------
* ``synthetic``: the held-out ``"test"`` split of :mod:`stereo_depth_ros.core.synthetic`
  (``split_seeds("test", N)``), rendered at ``--width x --height`` in ``--domain`` ("indoor" is the
  training domain, "outdoor" an unseen one). Exact disparity, calibration and occlusion masks.
* ``folder``: a directory laid out as::

      DIR/
        left/NAME.png          rectified left images (PNG/JPG/BMP/PPM; 8- or 16-bit, grey or colour)
        right/NAME.png         rectified right images, same file name (or same stem) as in left/
        disparity/NAME.npy     ground-truth left disparity, one of (by stem):
                                 NAME.npy  (H, W) float32 pixels; NaN, inf or <= 0 = no ground truth
                                 NAME.png  16-bit PNG holding disparity * 256, 0 = no ground truth
                                           (the KITTI format)
                                 NAME.pfm  PFM float disparity (Middlebury / SceneFlow); inf = invalid
        occlusion/NAME.png     optional: non-zero where the left pixel is occluded in the right view
        calib.json             optional: {"focal": px, "baseline": m} for the depth metrics;
                               per-sample overrides as {"samples": {"NAME": {"focal": .., "baseline": ..}}}

  Samples are the stems of ``left/`` in sorted order. Without ``calib.json`` the depth metrics are
  NaN (null in JSON).

Backends and reported numbers
-----------------------------
``--backend network`` (default) runs :class:`StereoEstimator` (``--weights``, ``--device``) and always
:class:`SgbmBackend` in the same run; ``--backend sgbm`` runs SGBM alone. For every method the
metrics of :mod:`stereo_depth_ros.core.metrics` are reported over "all pixels" (every GT-valid pixel,
holes counted as errors) and over the method's "own valid pixels"; the network is also evaluated on
SGBM's valid pixels (the fair like-for-like comparison). Aggregates are pixel-weighted over the
whole data set. ``--exclude-occluded`` leaves occluded pixels out (KITTI "noc"); by default they are
evaluated (KITTI "all"). Runtime is the mean wall time per frame of the backend call (after one
untimed warm-up call). A second table breaks every backend's numbers down by ground-truth disparity
(``--disparity-bands``, pixels): share of pixels, EPE, bias (mean signed error; negative = the
method reads the surface as too far), bad-3 and density per band, because the whole-image EPE is
dominated by the many small disparities and hides how a method does on near surfaces.

Output (``--output``, default ``eval_output/``): ``metrics.json`` (configuration, per-sample and
summary metrics; NaN written as null), ``metrics.md`` (Markdown table, methods as rows, also
printed at the end) and ``sample_XXX.png`` per sample (left image, GT disparity, each method's
disparity and error map, labelled).
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Sequence

import cv2
import numpy as np

from ..core.metrics import (DISPARITY_BANDS, DisparityEvaluation, aggregate, band_edges, evaluate_by_disparity,
                            evaluate_disparity, gt_valid_mask, prediction_valid_mask)
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

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".ppm", ".pgm")
DISPARITY_EXTENSIONS = (".npy", ".png", ".pfm")
ERROR_RANGE_PX = 5.0  # error maps saturate at this error (pixels)
HOLE_COLOUR = (128, 128, 128)  # BGR of holes in the error maps (outside the inferno palette)
MIN_TILE_WIDTH = 320  # visualisation tiles are resized to a width in [MIN, MAX] (pixels)
MAX_TILE_WIDTH = 480
SAMPLE_IMAGE = "sample_{index:03d}.png"
DEFAULT_SYNTHETIC_SAMPLES = 20

Backend = Callable[[np.ndarray, np.ndarray], np.ndarray]


@dataclass
class EvalSample:
    """One rectified stereo pair with ground truth.

    Attributes:
        left, right: ``(H, W, 3)`` float32 RGB images in ``[0, 1]``.
        disparity: ``(H, W)`` ground-truth left disparity in pixels; finite ``> 0`` = valid.
        focal: rectified focal length in pixels (``None``: no depth metrics).
        baseline: stereo baseline in metres (``None``: no depth metrics).
        occlusion: optional ``(H, W)`` bool, True where the left pixel is occluded in the right view.
        name: label used in reports.
    """

    left: np.ndarray
    right: np.ndarray
    disparity: np.ndarray
    focal: float | None = None
    baseline: float | None = None
    occlusion: np.ndarray | None = None
    name: str = ""

    def __post_init__(self) -> None:
        for field_name in ("left", "right"):
            image = getattr(self, field_name)
            if not isinstance(image, np.ndarray) or image.ndim != 3 or image.shape[2] != 3:
                got = f"shape {image.shape}" if isinstance(image, np.ndarray) else type(image).__name__
                raise ValueError(f"EvalSample.{field_name}: expected an (H, W, 3) array, got {got}")
        if self.right.shape != self.left.shape:
            raise ValueError(f"EvalSample.right: expected shape {self.left.shape} like left, got {self.right.shape}")
        size = self.left.shape[:2]
        if not isinstance(self.disparity, np.ndarray) or self.disparity.shape != size:
            d = self.disparity
            got = f"shape {d.shape}" if isinstance(d, np.ndarray) else type(d).__name__
            raise ValueError(f"EvalSample.disparity: expected an array of shape {size}, got {got}")
        if self.occlusion is not None:
            if not isinstance(self.occlusion, np.ndarray) or self.occlusion.shape != size:
                raise ValueError(f"EvalSample.occlusion: expected a bool array of shape {size} or None")
            self.occlusion = self.occlusion.astype(bool, copy=False)
        if (self.focal is None) != (self.baseline is None):
            raise ValueError(
                f"EvalSample: expected both focal and baseline or neither, "
                f"got focal={self.focal}, baseline={self.baseline}"
            )


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


def read_image(path: str | Path) -> np.ndarray:
    """Read an image file as ``(H, W, 3)`` float32 RGB in ``[0, 1]`` (grey is replicated, alpha dropped)."""
    image = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if image is None:
        raise ValueError(f"{path}: expected a readable image file, got nothing from OpenCV")
    if image.dtype == np.uint8:
        scale = 255.0
    elif image.dtype == np.uint16:
        scale = 65535.0
    else:
        raise ValueError(f"{path}: expected an 8- or 16-bit image, got dtype {image.dtype}")
    if image.ndim == 2:
        image = np.repeat(image[..., None], 3, axis=2)
    elif image.shape[2] == 4:
        image = cv2.cvtColor(image, cv2.COLOR_BGRA2RGB)
    elif image.shape[2] == 3:
        image = cv2.cvtColor(image, cv2.COLOR_BGR2RGB)
    else:
        raise ValueError(f"{path}: expected 1, 3 or 4 channels, got {image.shape[2]}")
    return image.astype(np.float32) / scale


def _read_pfm(path: Path) -> np.ndarray:
    with open(path, "rb") as f:
        header = f.readline().strip()
        if header not in (b"Pf", b"PF"):
            raise ValueError(f"{path}: expected a PFM file (header Pf or PF), got {header[:8]!r}")
        dims = f.readline().split()
        while not dims:  # tolerate blank lines
            dims = f.readline().split()
        width, height = int(dims[0]), int(dims[1])
        scale = float(f.readline().strip())
        channels = 3 if header == b"PF" else 1
        data = np.fromfile(f, dtype="<f4" if scale < 0 else ">f4", count=width * height * channels)
    if data.size != width * height * channels:
        raise ValueError(f"{path}: expected {width * height * channels} floats, got {data.size}")
    data = data.reshape(height, width, channels)[::-1, :, 0]  # PFM rows run bottom to top
    return np.ascontiguousarray(data, dtype=np.float32)


def read_disparity(path: str | Path) -> np.ndarray:
    """Read ground-truth disparity as ``(H, W)`` float32 pixels with NaN where there is none.

    ``.npy``: float array (non-finite or ``<= 0`` = invalid). ``.png``: 16-bit, value / 256, 0 =
    invalid (KITTI). ``.pfm``: float (inf = invalid).
    """
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix == ".npy":
        disparity = np.load(path, allow_pickle=False)
        real = np.issubdtype(disparity.dtype, np.floating) or np.issubdtype(disparity.dtype, np.integer)
        if disparity.ndim != 2 or not real:
            raise ValueError(
                f"{path}: expected an (H, W) float array, got shape {disparity.shape} dtype {disparity.dtype}"
            )
        disparity = disparity.astype(np.float32)
    elif suffix == ".png":
        raw = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
        if raw is None or raw.dtype != np.uint16 or raw.ndim != 2:
            got = "an unreadable file" if raw is None else f"dtype {raw.dtype}, shape {raw.shape}"
            raise ValueError(f"{path}: expected a single-channel 16-bit PNG (disparity * 256), got {got}")
        disparity = raw.astype(np.float32) / 256.0
        disparity[raw == 0] = np.nan
    elif suffix == ".pfm":
        disparity = _read_pfm(path)
    else:
        raise ValueError(f"{path}: expected a .npy, .png or .pfm disparity file, got {suffix or 'no extension'}")
    disparity[~gt_valid_mask(disparity)] = np.nan
    return disparity


def _find_by_stem(folder: Path, stem: str, extensions: Sequence[str], preferred: str | None = None) -> Path | None:
    if preferred is not None and (folder / preferred).is_file():
        return folder / preferred
    for ext in extensions:
        for candidate in (folder / f"{stem}{ext}", folder / f"{stem}{ext.upper()}"):
            if candidate.is_file():
                return candidate
    return None


def load_folder_samples(path: str | Path, num_samples: int | None = None) -> Iterator[EvalSample]:
    """Samples of a folder dataset (layout in the module docstring), loaded lazily in name order.

    The layout (sub-folders, matching files, ``calib.json``) is checked before the first sample is
    returned, so a broken dataset fails at once with a ``ValueError`` naming the missing file.
    """
    root = Path(path)
    if not root.is_dir():
        raise ValueError(f"--path: expected a dataset directory, got {str(root)!r} (not a directory)")
    for sub in ("left", "right", "disparity"):
        if not (root / sub).is_dir():
            raise ValueError(f"{root}: expected a sub-folder {sub}/ (left/, right/, disparity/), it is missing")
    lefts = sorted(p for p in (root / "left").iterdir() if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS)
    if not lefts:
        raise ValueError(f"{root / 'left'}: expected images ({', '.join(IMAGE_EXTENSIONS)}), found none")
    if num_samples is not None:
        lefts = lefts[: int(num_samples)]

    calib: dict[str, Any] = {}
    calib_path = root / "calib.json"
    if calib_path.is_file():
        try:
            calib = json.loads(calib_path.read_text())
        except json.JSONDecodeError as exc:
            raise ValueError(f"{calib_path}: expected JSON with focal and baseline, got a parse error: {exc}") from None
        if not isinstance(calib, dict):
            raise ValueError(
                f"{calib_path}: expected a JSON object with focal and baseline, got {type(calib).__name__}"
            )
    per_sample = calib.get("samples", {}) if isinstance(calib.get("samples", {}), dict) else {}

    entries = []
    for left in lefts:
        stem = left.stem
        right = _find_by_stem(root / "right", stem, IMAGE_EXTENSIONS, preferred=left.name)
        if right is None:
            raise ValueError(f"{root / 'right'}: expected an image named like {left.name}, found none")
        disparity = _find_by_stem(root / "disparity", stem, DISPARITY_EXTENSIONS)
        if disparity is None:
            raise ValueError(
                f"{root / 'disparity'}: expected {stem}.npy, {stem}.png or {stem}.pfm for {left.name}, found none"
            )
        occlusion = _find_by_stem(root / "occlusion", stem, IMAGE_EXTENSIONS) if (root / "occlusion").is_dir() else None
        cal = {**{k: calib[k] for k in ("focal", "baseline") if k in calib}, **per_sample.get(stem, {})}
        focal, baseline = cal.get("focal"), cal.get("baseline")
        for key, value in (("focal", focal), ("baseline", baseline)):
            if value is not None and not (isinstance(value, (int, float)) and math.isfinite(value) and value > 0):
                raise ValueError(f"{calib_path}: expected a positive number for {key} ({stem}), got {value!r}")
        if (focal is None) != (baseline is None):
            raise ValueError(
                f"{calib_path}: expected both focal and baseline for {stem}, got focal={focal}, baseline={baseline}"
            )
        entries.append((stem, left, right, disparity, occlusion, focal, baseline))

    def generate() -> Iterator[EvalSample]:
        for stem, left, right, disparity, occlusion, focal, baseline in entries:
            left_image, right_image, gt = read_image(left), read_image(right), read_disparity(disparity)
            if right_image.shape != left_image.shape or gt.shape != left_image.shape[:2]:
                raise ValueError(
                    f"{stem}: expected equal sizes, got left {left_image.shape[:2]}, right {right_image.shape[:2]}, "
                    f"disparity {gt.shape}"
                )
            occ = None
            if occlusion is not None:
                occ_image = cv2.imread(str(occlusion), cv2.IMREAD_GRAYSCALE)
                if occ_image is None or occ_image.shape != gt.shape:
                    raise ValueError(f"{occlusion}: expected a readable mask of size {gt.shape}")
                occ = occ_image > 0
            yield EvalSample(left_image, right_image, gt, None if focal is None else float(focal),
                             None if baseline is None else float(baseline), occ, stem)

    return generate()


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
        warmup: run each backend once, untimed, on the first sample before timing it.
        progress: print one line per sample to stderr.
        metadata: extra JSON-friendly fields stored under ``"config"`` (dataset description, ...).
        disparity_bands: band edges in pixels for the per-disparity breakdown of every backend
            (:func:`~stereo_depth_ros.core.metrics.evaluate_by_disparity`); ``None`` or empty skips it.

    Returns:
        The report: ``{"config", "methods", "summary", "samples", "backends", "table"}``;
        ``summary[method]`` holds ``all``/``valid`` metric dicts, ``density`` (%), pixel counts and
        ``runtime_ms`` (mean and median over frames; an ``@reference`` row repeats its backend's).
        ``by_disparity`` (with ``disparity_bands``): ``{"edges", "bands": {backend: [per band:
        ``share`` (% of evaluated pixels) plus the evaluation's dict]}}``.
        Metrics are pixel-weighted aggregates over all samples. ``table`` is the Markdown summary.

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
                if warmup:
                    _run_backend(backend, name, sample)
        predictions: dict[str, np.ndarray] = {}
        sample_times: dict[str, float] = {}
        for backend, name in zip(backends, names):
            predictions[name], sample_times[name] = _run_backend(backend, name, sample)
            runtimes[name].append(sample_times[name])

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
        "samples": sample_reports,
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


def _fmt(value: Any, digits: int) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "–"
    return f"{value:.{digits}f}"


def markdown_table(report: dict[str, Any]) -> str:
    """The summary of an :func:`evaluate` report as a Markdown table (methods as rows) plus notes."""
    config = report.get("config", {})
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
    return "\n".join(lines + notes)


# ---------------------------------------------------------------------------------------------- CLI
def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """Parse the command line (see the module docstring)."""
    p = argparse.ArgumentParser(
        prog="python -m stereo_depth_ros.tools.evaluate",
        description="Evaluate the network and OpenCV SGBM against ground truth, side by side.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("--dataset", choices=("synthetic", "folder"), default="synthetic", help="data source")
    p.add_argument("--path", type=Path, default=None, help="dataset folder (--dataset folder)")
    p.add_argument("--num-samples", type=int, default=None,
                   help=f"samples of the synthetic test split (default {DEFAULT_SYNTHETIC_SAMPLES}); "
                        "for a folder, at most this many (default all)")
    p.add_argument("--width", type=int, default=640, help="synthetic image width (px)")
    p.add_argument("--height", type=int, default=480, help="synthetic image height (px)")
    p.add_argument("--domain", default="indoor", help="synthetic domain (indoor = training domain, outdoor = unseen)")
    p.add_argument("--backend", choices=("network", "sgbm"), default="network",
                   help="network: the network and SGBM side by side; sgbm: SGBM only")
    p.add_argument("--weights", default=None, help="network weights (.safetensors); default: the shipped weights")
    p.add_argument("--device", default="cpu", help="torch device of the network")
    p.add_argument("--max-disparity", type=float, default=None,
                   help="SGBM search range (px); default 192 * width / 640")
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
    if args.num_samples is None and args.dataset == "synthetic":
        args.num_samples = DEFAULT_SYNTHETIC_SAMPLES
    if args.width < 32 or args.height < 32:
        p.error(f"--width/--height: expected at least 32 px, got {args.width}x{args.height}")
    if args.dataset == "folder" and args.path is None:
        p.error("--dataset folder: expected --path DIR")
    if args.disparity_bands:
        try:
            band_edges(args.disparity_bands)
        except ValueError as exc:
            p.error(f"--disparity-bands: {exc} (or none to skip the breakdown)")
    if not (args.max_depth > 0 and math.isfinite(args.max_depth)):
        p.error(f"--max-depth: expected a positive number, got {args.max_depth}")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    """Command-line entry point; returns the process exit status."""
    args = parse_args(argv)
    backends: list[Any] = []
    if args.backend == "network":
        try:
            from ..core.network.estimator import StereoEstimator

            backends.append(StereoEstimator.from_weights(args.weights, device=args.device))
        except (ImportError, OSError, ValueError, RuntimeError) as exc:  # RuntimeError: WeightsError
            print(f"[evaluate] error: cannot load the network ({exc}); use --backend sgbm to evaluate SGBM alone",
                  file=sys.stderr)
            return 1
    backends.append(SgbmBackend(max_disparity=args.max_disparity, mode=args.sgbm_mode))

    try:
        if args.dataset == "synthetic":
            samples: Iterable[EvalSample] = synthetic_samples(args.num_samples, args.width, args.height, args.domain)
            dataset = f"synthetic {args.domain} test split, {args.width}x{args.height}"
        else:
            samples = load_folder_samples(args.path, args.num_samples)
            dataset = f"folder {args.path}"
        report = evaluate(
            backends, samples, args.output,
            exclude_occluded=args.exclude_occluded, max_depth=args.max_depth, save_images=not args.no_images,
            disparity_bands=args.disparity_bands,
            metadata={"dataset": dataset, "argv": list(argv) if argv is not None else sys.argv[1:],
                      "weights": args.weights if args.backend == "network" else None},
        )
    except ValueError as exc:
        print(f"[evaluate] error: {exc}", file=sys.stderr)
        return 1
    print(report["table"])
    print(f"[evaluate] wrote {args.output / 'metrics.json'}, {args.output / 'metrics.md'} and "
          f"{report['num_samples'] if not args.no_images else 0} sample images", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
