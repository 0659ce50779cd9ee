"""Stereo pairs with ground truth from the standard dataset layouts (ROS-free, torch-free).

Readers, each giving :class:`EvalSample` s (left, right, ground-truth disparity, calibration,
occlusion, search range):

* **Middlebury** (2001-2014 scenes in the 2014 layout), one folder per scene::

      SCENE/im0.png  im1.png            rectified left / right
            disp0GT.pfm | disp0.pfm     left disparity (PFM, rows bottom-up, inf = unknown)
            mask0nocc.png               optional: 255 non-occluded, 128 occluded, 0 unknown
            calib.txt                   cam0, cam1, doffs, baseline (mm), width, height, ndisp, ...

* **KITTI 2012 / 2015**, one folder per split (``training/``)::

      colored_0/ | image_2/   NNNNNN_10.png   left
      colored_1/ | image_3/   NNNNNN_10.png   right
      disp_occ/  | disp_occ_0/ NNNNNN_10.png  uint16 disparity * 256, 0 = unknown
      disp_noc/  | disp_noc_0/                optional: non-occluded ground truth (gives the occlusion mask)
      calib/NNNNNN.txt (P2, P3) | calib_cam_to_cam/NNNNNN.txt (P_rect_02, P_rect_03)   optional

* **folder**: the package's own layout (``left/``, ``right/``, ``disparity/``, optional
  ``occlusion/`` and ``calib.json``; see :func:`load_folder_samples`).
* **sequence**: a recorded drive, the layout ``stereo_depth_make_bag --from-frames`` reads
  (``left_NNN.png``, ``right_NNN.png``, ``calib.json``, sparse ground truth in ``gt/``); its frames
  that have ground truth, each as a still pair (see :func:`load_sequence_samples`).
* **motorcycle**: the real Middlebury 2014 Motorcycle pair that scikit-image ships inside its wheel
  (quarter size, 741x500, with ground truth), built in under that name.

:func:`detect_layout` tells a folder's layout; :func:`load_scenes` takes any mix of scene folders,
folders of scenes and the name ``motorcycle``. Every reader checks its files before returning the
first sample, so a broken dataset fails at once with a ``ValueError`` naming the file.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Sequence

import cv2
import numpy as np

from .metrics import gt_valid_mask

__all__ = [
    "EvalSample",
    "read_image",
    "read_pfm",
    "read_disparity",
    "read_middlebury_calib",
    "load_middlebury_scene",
    "load_kitti_samples",
    "load_folder_samples",
    "SequenceCalibration",
    "read_sequence_calibration",
    "frame_key",
    "ground_truth_files",
    "is_sequence_folder",
    "load_sequence_samples",
    "motorcycle_sample",
    "detect_layout",
    "load_scenes",
    "scale_sample",
    "BUILTIN_SCENES",
    "LAYOUTS",
]

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".ppm", ".pgm")
DISPARITY_EXTENSIONS = (".npy", ".png", ".pfm")
BUILTIN_SCENES = ("motorcycle",)
LAYOUTS = ("middlebury", "kitti", "folder", "sequence")
_KITTI_DIRS = (("colored_0", "colored_1", "disp_occ", "disp_noc", "calib"),  # 2012
               ("image_2", "image_3", "disp_occ_0", "disp_noc_0", "calib_cam_to_cam"))  # 2015

# skimage.data.stereo_motorcycle's docstring: the calibration of the quarter-size pair.
MOTORCYCLE_CALIBRATION = {"focal": 994.978, "cx": 311.193, "cy": 254.877, "cx_right_minus_left": 31.086,
                          "baseline": 0.193001, "ndisp": 270 / 4}


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
        max_disparity: the scene's disparity search range in pixels (Middlebury ``ndisp``, or from
            the ground truth), for SGBM; None: the matcher's default.
        doffs: ``cx_left - cx_right`` in pixels (:attr:`StereoCamera.doffs`; Middlebury's
            ``calib.txt`` ``doffs`` is ``cx1 - cx0``, the negative): depth ``Z = f B / (d - doffs)``.
        cx, cy: left principal point in pixels (None: the image centre).
    """

    left: np.ndarray
    right: np.ndarray
    disparity: np.ndarray
    focal: float | None = None
    baseline: float | None = None
    occlusion: np.ndarray | None = None
    name: str = ""
    max_disparity: float | None = None
    doffs: float = 0.0
    cx: float | None = None
    cy: float | None = None

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
        if self.max_disparity is not None and not (math.isfinite(self.max_disparity) and self.max_disparity > 0):
            raise ValueError(f"EvalSample.max_disparity: expected a positive number of pixels or None, "
                             f"got {self.max_disparity}")


# ---------------------------------------------------------------------------------------------- files
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


def read_pfm(path: str | Path) -> np.ndarray:
    """A single-channel PFM (``Pf``; of ``PF`` the first channel) as ``(H, W)`` float32, top row first.

    PFM stores rows bottom to top; a negative scale means little-endian data.
    """
    path = Path(path)
    with open(path, "rb") as f:
        header = f.readline().strip()
        if header not in (b"Pf", b"PF"):
            raise ValueError(f"{path}: expected a PFM file (header Pf or PF), got {header[:8]!r}")
        dims = f.readline().split()
        while not dims:  # tolerate blank lines
            dims = f.readline().split()
        try:
            width, height = int(dims[0]), int(dims[1])
            scale = float(f.readline().strip())
        except (ValueError, IndexError):
            raise ValueError(f"{path}: expected 'width height' and a scale in the PFM header, got {dims!r}") from None
        channels = 3 if header == b"PF" else 1
        data = np.fromfile(f, dtype="<f4" if scale < 0 else ">f4", count=width * height * channels)
    if data.size != width * height * channels:
        raise ValueError(f"{path}: expected {width * height * channels} floats, got {data.size}")
    data = data.reshape(height, width, channels)[::-1, :, 0]  # PFM rows run bottom to top
    return np.ascontiguousarray(data, dtype=np.float32)


def read_disparity(path: str | Path) -> np.ndarray:
    """Read ground-truth disparity as ``(H, W)`` float32 pixels with NaN where there is none.

    ``.npy``: float array (non-finite or ``<= 0`` = invalid). ``.png``: 16-bit, value / 256, 0 =
    invalid (KITTI). ``.pfm``: float (inf = invalid, Middlebury).
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
        disparity = read_pfm(path)
    else:
        raise ValueError(f"{path}: expected a .npy, .png or .pfm disparity file, got {suffix or 'no extension'}")
    disparity[~gt_valid_mask(disparity)] = np.nan
    return disparity


def _read_grey(path: Path, shape: tuple[int, int]) -> np.ndarray:
    image = cv2.imread(str(path), cv2.IMREAD_GRAYSCALE)
    if image is None or image.shape != shape:
        got = "an unreadable file" if image is None else f"size {image.shape}"
        raise ValueError(f"{path}: expected a readable mask of size {shape}, got {got}")
    return image


def _gt_max_disparity(disparity: np.ndarray) -> float | None:
    valid = gt_valid_mask(disparity)
    return float(math.ceil(np.max(disparity[valid]) * 1.05)) if valid.any() else None


# ---------------------------------------------------------------------------------------------- Middlebury
_MATRIX = re.compile(r"\[([^\]]*)\]")


def read_middlebury_calib(path: str | Path) -> dict[str, Any]:
    """Parse a Middlebury ``calib.txt``: ``{"cam0": (3, 3) array, "cam1": ..., "doffs": px,
    "baseline": mm, "ndisp": px, ...}`` (every other ``key=value`` as a number when it is one)."""
    path = Path(path)
    out: dict[str, Any] = {}
    for number, line in enumerate(path.read_text().splitlines(), 1):
        line = line.strip()
        if not line:
            continue
        if "=" not in line:
            raise ValueError(f"{path}:{number}: expected key=value, got {line!r}")
        key, value = (part.strip() for part in line.split("=", 1))
        matrix = _MATRIX.fullmatch(value)
        if matrix:
            rows = [r.split() for r in matrix.group(1).split(";")]
            try:
                array = np.array([[float(v) for v in r] for r in rows], dtype=np.float64)
            except ValueError:
                raise ValueError(f"{path}:{number}: expected a numeric 3x3 matrix for {key}, got {value!r}") from None
            if array.shape != (3, 3):
                raise ValueError(f"{path}:{number}: expected a 3x3 matrix for {key}, got shape {array.shape}")
            out[key] = array
        else:
            try:
                out[key] = float(value)
            except ValueError:
                out[key] = value
    for key in ("cam0", "cam1", "baseline"):
        if key not in out:
            raise ValueError(f"{path}: expected a {key}= line, found none")
    if not (isinstance(out["baseline"], float) and out["baseline"] > 0):
        raise ValueError(f"{path}: expected a positive baseline in mm, got {out['baseline']!r}")
    return out


def load_middlebury_scene(path: str | Path) -> EvalSample:
    """One Middlebury scene folder (layout in the module docstring) as an :class:`EvalSample`.

    The focal length is ``cam0[0, 0]``, the baseline ``calib.txt``'s millimetres in metres, the
    search range ``ndisp`` (else from the ground truth); ``mask0nocc.png``'s 128 pixels are the
    occlusion mask.
    """
    root = Path(path)
    files = {name: root / name for name in ("im0.png", "im1.png", "calib.txt")}
    for name, file in files.items():
        if not file.is_file():
            raise ValueError(f"{root}: expected the Middlebury file {name}, it is missing")
    gt_path = next((root / n for n in ("disp0GT.pfm", "disp0.pfm") if (root / n).is_file()), None)
    if gt_path is None:
        raise ValueError(f"{root}: expected disp0GT.pfm or disp0.pfm (ground truth), found neither")
    calib = read_middlebury_calib(files["calib.txt"])
    left, right, gt = read_image(files["im0.png"]), read_image(files["im1.png"]), read_disparity(gt_path)
    if right.shape != left.shape or gt.shape != left.shape[:2]:
        raise ValueError(f"{root}: expected equal sizes, got im0 {left.shape[:2]}, im1 {right.shape[:2]}, "
                         f"{gt_path.name} {gt.shape}")
    occlusion = None
    if (root / "mask0nocc.png").is_file():
        occlusion = _read_grey(root / "mask0nocc.png", gt.shape) == 128
    ndisp = calib.get("ndisp")
    max_disparity = float(ndisp) if isinstance(ndisp, float) and ndisp > 0 else _gt_max_disparity(gt)
    cam0, cam1 = calib["cam0"], calib["cam1"]
    doffs = float(calib.get("doffs", cam1[0, 2] - cam0[0, 2]))
    return EvalSample(left, right, gt, focal=float(cam0[0, 0]), baseline=calib["baseline"] / 1000.0,
                      occlusion=occlusion, name=root.name, max_disparity=max_disparity, doffs=-doffs,
                      cx=float(cam0[0, 2]), cy=float(cam0[1, 2]))


def is_middlebury_scene(path: Path) -> bool:
    return (path / "im0.png").is_file() and (path / "im1.png").is_file()


# ---------------------------------------------------------------------------------------------- KITTI
def _kitti_dirs(root: Path) -> tuple[str, str, str, str, str] | None:
    for dirs in _KITTI_DIRS:
        if all((root / d).is_dir() for d in dirs[:3]):
            return dirs
    return None


def _kitti_calib(path: Path, year_2015: bool) -> tuple[float, float, float, float, float] | None:
    """``(focal, baseline m, cx, cy, doffs)`` of the colour pair from a KITTI calibration file."""
    keys = ("P_rect_02", "P_rect_03") if year_2015 else ("P2", "P3")
    values: dict[str, np.ndarray] = {}
    for line in path.read_text().splitlines():
        if ":" not in line:
            continue
        key, rest = line.split(":", 1)
        if key.strip() in keys:
            try:
                values[key.strip()] = np.array([float(v) for v in rest.split()], dtype=np.float64).reshape(3, 4)
            except ValueError:
                raise ValueError(f"{path}: expected 12 numbers for {key.strip()}, got {rest.strip()!r}") from None
    if not all(k in values for k in keys):
        return None
    p_left, p_right = values[keys[0]], values[keys[1]]
    focal = float(p_left[0, 0])
    baseline = float(p_left[0, 3] - p_right[0, 3]) / focal
    if baseline <= 0:
        raise ValueError(f"{path}: expected a positive baseline between {keys[0]} and {keys[1]}, got {baseline}")
    return focal, baseline, float(p_left[0, 2]), float(p_left[1, 2]), float(p_left[0, 2] - p_right[0, 2])


def load_kitti_samples(path: str | Path, num_samples: int | None = None) -> Iterator[EvalSample]:
    """The frames with ground truth (``*_10.png``) of a KITTI 2012 or 2015 split folder, lazily.

    Occlusion: pixels with ``disp_occ`` but no ``disp_noc`` ground truth (when ``disp_noc`` exists).
    The search range is taken from each frame's ground truth (KITTI publishes none).
    """
    root = Path(path)
    dirs = _kitti_dirs(root)
    if dirs is None:
        raise ValueError(f"{root}: expected KITTI folders colored_0/colored_1/disp_occ (2012) or "
                         f"image_2/image_3/disp_occ_0 (2015), found neither set")
    left_dir, right_dir, occ_dir, noc_dir, calib_dir = (root / d for d in dirs)
    year_2015 = dirs is _KITTI_DIRS[1]
    stems = sorted(p.stem for p in occ_dir.glob("*_10.png"))
    if not stems:
        raise ValueError(f"{occ_dir}: expected ground-truth files NNNNNN_10.png, found none")
    if num_samples is not None:
        stems = stems[: int(num_samples)]
    for stem in stems:
        for folder in (left_dir, right_dir):
            if not (folder / f"{stem}.png").is_file():
                raise ValueError(f"{folder}: expected {stem}.png (the pair of {occ_dir.name}/{stem}.png), it is missing")

    def generate() -> Iterator[EvalSample]:
        for stem in stems:
            left, right = read_image(left_dir / f"{stem}.png"), read_image(right_dir / f"{stem}.png")
            gt = read_disparity(occ_dir / f"{stem}.png")
            if right.shape != left.shape or gt.shape != left.shape[:2]:
                raise ValueError(f"{stem}: expected equal sizes, got left {left.shape[:2]}, right {right.shape[:2]}, "
                                 f"disparity {gt.shape}")
            occlusion = None
            if (noc_dir / f"{stem}.png").is_file():
                noc = read_disparity(noc_dir / f"{stem}.png")
                occlusion = gt_valid_mask(gt) & ~gt_valid_mask(noc)
            calib = None
            calib_file = calib_dir / f"{stem.split('_')[0]}.txt"
            if calib_file.is_file():
                calib = _kitti_calib(calib_file, year_2015)
            focal, baseline, cx, cy, doffs = calib if calib is not None else (None, None, None, None, 0.0)
            yield EvalSample(left, right, gt, focal, baseline, occlusion, name=stem,
                             max_disparity=_gt_max_disparity(gt), doffs=doffs, cx=cx, cy=cy)

    return generate()


# ---------------------------------------------------------------------------------------------- folder
def _find_by_stem(folder: Path, stem: str, extensions: Sequence[str], preferred: str | None = None) -> Path | None:
    if preferred is not None and (folder / preferred).is_file():
        return folder / preferred
    for ext in extensions:
        for candidate in (folder / f"{stem}{ext}", folder / f"{stem}{ext.upper()}"):
            if candidate.is_file():
                return candidate
    return None


def is_folder_dataset(path: Path) -> bool:
    return all((path / sub).is_dir() for sub in ("left", "right", "disparity"))


def load_folder_samples(path: str | Path, num_samples: int | None = None) -> Iterator[EvalSample]:
    """Samples of the package's folder layout, loaded lazily in name order::

        DIR/left/NAME.png        rectified left images (PNG/JPG/BMP/PPM; 8- or 16-bit, grey or colour)
            right/NAME.png       rectified right images, same file name (or same stem) as in left/
            disparity/NAME.npy   ground truth: NAME.npy (float px), NAME.png (uint16 * 256, KITTI) or NAME.pfm
            occlusion/NAME.png   optional: non-zero where the left pixel is occluded in the right view
            calib.json           optional: {"focal": px, "baseline": m}, per sample {"samples": {"NAME": {...}}}

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
            occ = _read_grey(occlusion, gt.shape) > 0 if occlusion is not None else None
            yield EvalSample(left_image, right_image, gt, None if focal is None else float(focal),
                             None if baseline is None else float(baseline), occ, stem)

    return generate()


# ---------------------------------------------------------------------------------------------- sequence
@dataclass(frozen=True)
class SequenceCalibration:
    """The rectified rig of a recorded sequence (its ``calib.json``).

    Attributes:
        fx, fy: focal lengths in pixels (``fy`` defaults to ``fx``).
        cx, cy: left principal point in pixels.
        cx_right: right principal point x in pixels (``P_right[0][2]`` when given, else ``cx``).
        baseline_m: distance between the optical centres in metres.
    """

    fx: float
    fy: float
    cx: float
    cy: float
    cx_right: float
    baseline_m: float

    @property
    def doffs(self) -> float:
        """``cx - cx_right`` in pixels: depth is ``fx B / (d - doffs)``."""
        return self.cx - self.cx_right


def read_sequence_calibration(root: str | Path) -> SequenceCalibration:
    """``root/calib.json``: numbers ``fx``, ``cx``, ``cy``, ``baseline_m``, optional ``fy`` and
    ``P_right`` (a 3x4 matrix whose ``[0][2]`` is the right principal point).

    Raises:
        ValueError: the file is missing, is not JSON, or lacks a number (the message names the file).
    """
    path = Path(root) / "calib.json"
    if not path.is_file():
        raise ValueError(f"{Path(root)}: expected calib.json (fx, cx, cy, baseline_m) beside the left_*/right_* images")
    try:
        calib = json.loads(path.read_text())
        fx, cx, cy, baseline = (float(calib[k]) for k in ("fx", "cx", "cy", "baseline_m"))
        fy = float(calib.get("fy", fx))
        cx_right = float(calib["P_right"][0][2]) if "P_right" in calib else cx
    except (json.JSONDecodeError, KeyError, IndexError, TypeError, ValueError) as exc:
        raise ValueError(f"{path}: expected JSON with numbers fx, cx, cy, baseline_m, got {exc!r}") from None
    if not all(math.isfinite(v) for v in (fx, fy, cx, cy, cx_right, baseline)) or fx <= 0 or baseline <= 0:
        raise ValueError(f"{path}: expected finite numbers with fx > 0 and baseline_m > 0, got fx={fx}, "
                         f"baseline_m={baseline}")
    return SequenceCalibration(fx, fy, cx, cy, cx_right, baseline)


def frame_key(name: str) -> str:
    """``left_000.png`` (or ``folder/left_000.png``) -> ``000``: what pairs a frame with its files."""
    stem = Path(name).stem
    return stem[len("left_"):] if stem.startswith("left_") else stem


def ground_truth_files(folder: str | Path, keys: Sequence[str]) -> dict[str, Path]:
    """The ground-truth file of each frame key in ``folder``: a ``.png`` / ``.pfm`` / ``.npy`` whose
    stem is the key or ends with ``_<key>`` (``disp_lidar_000.png`` for ``left_000.png``).

    Raises:
        ValueError: no such files, a file that names no frame (or several), or two files for one frame.
    """
    folder = Path(folder)
    files = sorted(p for p in folder.iterdir() if p.suffix.lower() in DISPARITY_EXTENSIONS and p.is_file())
    if not files:
        raise ValueError(f"{folder}: expected ground-truth disparity files (uint16/256 .png, .pfm, .npy), found none")
    by_key: dict[str, Path] = {}
    unmatched = []
    for file in files:
        matches = [k for k in keys if file.stem == k or file.stem.endswith("_" + k)]
        if len(matches) != 1:
            unmatched.append(file.name)
            continue
        if matches[0] in by_key:
            raise ValueError(f"{folder}: expected one ground-truth file per frame, got {by_key[matches[0]].name} and "
                             f"{file.name} for left_{matches[0]}")
        by_key[matches[0]] = file
    if unmatched:
        raise ValueError(f"{folder}: expected each ground-truth file to name one frame (..._NNN for left_NNN), "
                         f"got {unmatched[:5]}{' ...' if len(unmatched) > 5 else ''}")
    return by_key


def _sequence_lefts(root: Path) -> list[Path]:
    return sorted(p for p in root.iterdir()
                  if p.is_file() and p.stem.startswith("left_") and p.suffix.lower() in IMAGE_EXTENSIONS)


def is_sequence_folder(path: Path) -> bool:
    """A recorded sequence with ground truth: ``calib.json``, ``gt/`` and ``left_*`` images."""
    return (path / "calib.json").is_file() and (path / "gt").is_dir() and bool(_sequence_lefts(path))


def load_sequence_samples(path: str | Path, num_samples: int | None = None) -> Iterator[EvalSample]:
    """The frames of a recorded sequence that have ground truth, in name order, each a still pair::

        DIR/left_NNN.png, right_NNN.png   rectified pairs (the layout ``stereo_depth_make_bag --from-frames`` reads)
            calib.json                    fx, cx, cy, baseline_m (optional fy, P_right):
                                          see :func:`read_sequence_calibration`
            gt/disp_*_NNN.png             sparse ground-truth disparity of frame NNN (KITTI uint16 / 256,
                                          0 = none; or .pfm / .npy), matched by :func:`ground_truth_files`

    Frames without a ground-truth file are skipped: this scores a drive's labelled frames one by
    one (``stereo_depth_evaluate``, ``stereo_depth_label_quality``); playing the whole drive with
    the node is ``stereo_depth_replay``'s. Files are checked before the first sample is returned.

    Raises:
        ValueError: no ``gt/`` or no ground-truth files, a ground-truth file naming no frame, a
            frame whose right image is missing, or a bad ``calib.json``.
    """
    root = Path(path)
    if not root.is_dir():
        raise ValueError(f"{root}: expected a recorded sequence folder, got no such folder")
    calib = read_sequence_calibration(root)
    if not (root / "gt").is_dir():
        raise ValueError(f"{root}: expected a gt/ folder of ground-truth disparity files, it is missing")
    lefts = _sequence_lefts(root)
    if not lefts:
        raise ValueError(f"{root}: expected left_*.png / right_*.png image pairs, found none")
    by_key = {frame_key(p.name): p for p in lefts}
    gt_files = ground_truth_files(root / "gt", list(by_key))
    entries = []
    for key in sorted(gt_files):
        right = _find_by_stem(root, "right_" + key, IMAGE_EXTENSIONS,
                              preferred=by_key[key].name.replace("left_", "right_", 1))
        if right is None:
            raise ValueError(f"{root}: expected right_{key} (the pair of {by_key[key].name}), it is missing")
        entries.append((key, by_key[key], right, gt_files[key]))
    if num_samples is not None:
        entries = entries[: int(num_samples)]

    def generate() -> Iterator[EvalSample]:
        for key, left, right, gt_path in entries:
            left_image, right_image, gt = read_image(left), read_image(right), read_disparity(gt_path)
            if right_image.shape != left_image.shape or gt.shape != left_image.shape[:2]:
                raise ValueError(f"{root.name}/{key}: expected equal sizes, got left {left_image.shape[:2]}, "
                                 f"right {right_image.shape[:2]}, ground truth {gt.shape}")
            yield EvalSample(left_image, right_image, gt, focal=calib.fx, baseline=calib.baseline_m,
                             name=f"{root.name}/{key}", max_disparity=_gt_max_disparity(gt), doffs=calib.doffs,
                             cx=calib.cx, cy=calib.cy)

    return generate()


# ---------------------------------------------------------------------------------------------- built-in
def motorcycle_sample() -> EvalSample:
    """The real Middlebury 2014 Motorcycle pair shipped inside scikit-image (quarter size, 741x500).

    Calibration from ``skimage.data.stereo_motorcycle``'s documentation: f = 994.978 px, baseline
    193.001 mm, principal points 31.086 px apart (``doffs = cx_left - cx_right = -31.086``); the
    search range is the full-size scene's ``ndisp`` (270) / 4. No occlusion mask is shipped.

    Raises:
        ValueError: scikit-image is not installed.
    """
    try:
        from skimage.data import stereo_motorcycle
    except ImportError as exc:
        raise ValueError(f"motorcycle: the built-in scene needs scikit-image (pip install scikit-image): {exc}") from None
    left, right, disparity = stereo_motorcycle()
    gt = np.asarray(disparity, dtype=np.float32).copy()
    gt[~gt_valid_mask(gt)] = np.nan
    c = MOTORCYCLE_CALIBRATION
    return EvalSample(left.astype(np.float32) / 255.0, right.astype(np.float32) / 255.0, gt, focal=c["focal"],
                      baseline=c["baseline"], name="motorcycle", max_disparity=c["ndisp"],
                      doffs=-c["cx_right_minus_left"], cx=c["cx"], cy=c["cy"])


# ---------------------------------------------------------------------------------------------- detection
def detect_layout(path: str | Path) -> str:
    """``"middlebury"`` (a scene folder), ``"kitti"`` (a split folder), ``"folder"`` (the package's
    layout), ``"sequence"`` (a recorded sequence with ``gt/``) or ``"scenes"`` (a folder whose
    sub-folders are any of those); ``ValueError`` otherwise."""
    root = Path(path)
    if not root.is_dir():
        raise ValueError(f"{root}: expected a dataset folder or one of {list(BUILTIN_SCENES)}, got no such folder")
    if is_middlebury_scene(root):
        return "middlebury"
    if _kitti_dirs(root) is not None:
        return "kitti"
    if is_folder_dataset(root):
        return "folder"
    if is_sequence_folder(root):
        return "sequence"
    children = [c for c in sorted(root.iterdir()) if c.is_dir()]
    if any(is_middlebury_scene(c) or _kitti_dirs(c) is not None or is_folder_dataset(c) or is_sequence_folder(c)
           for c in children):
        return "scenes"
    raise ValueError(f"{root}: expected a Middlebury scene (im0.png, im1.png, disp0GT.pfm, calib.txt), a KITTI "
                     f"split (colored_0|image_2, colored_1|image_3, disp_occ|disp_occ_0), the folder layout "
                     f"(left/, right/, disparity/), a recorded sequence with ground truth (left_*, right_*, "
                     f"calib.json, gt/) or a folder of those; found none")


def _scene_sources(path: str | Path) -> list[tuple[str, Path | str]]:
    """``(layout, path)`` of every dataset under ``path`` (checked, nothing loaded)."""
    if str(path) in BUILTIN_SCENES and not Path(path).is_dir():
        return [("builtin", str(path))]
    root = Path(path)
    layout = detect_layout(root)
    if layout != "scenes":
        return [(layout, root)]
    sources: list[tuple[str, Path | str]] = []
    for child in sorted(c for c in root.iterdir() if c.is_dir()):
        try:
            kind = detect_layout(child)
        except ValueError:
            continue  # not a dataset (e.g. a README folder): skipped
        if kind != "scenes":
            sources.append((kind, child))
    return sources


def load_scenes(paths: Sequence[str | Path], num_samples: int | None = None) -> Iterator[EvalSample]:
    """Every sample of ``paths`` in order: scene folders, folders of scenes, KITTI splits, the
    folder layout, recorded sequences (their frames with ground truth), or the built-in name
    ``motorcycle``. Layouts are detected (and broken paths
    rejected) before the first sample is returned; ``num_samples`` caps the total."""
    if not paths:
        raise ValueError("paths: expected at least one dataset path or built-in scene name, got none")
    sources = [s for p in paths for s in _scene_sources(p)]
    for kind, source in sources:  # fail fast on files missing anywhere
        if kind == "middlebury":
            for name in ("im0.png", "im1.png", "calib.txt"):
                if not (Path(source) / name).is_file():
                    raise ValueError(f"{source}: expected the Middlebury file {name}, it is missing")
    iterators = []
    for kind, source in sources:
        if kind == "kitti":
            iterators.append(load_kitti_samples(source))
        elif kind == "folder":
            iterators.append(load_folder_samples(source))
        elif kind == "sequence":
            iterators.append(load_sequence_samples(source))

    def generate() -> Iterator[EvalSample]:
        count = 0
        others = iter(iterators)
        for kind, source in sources:
            if kind == "middlebury":
                batch: Iterator[EvalSample] = iter([load_middlebury_scene(source)])
            elif kind == "builtin":
                batch = iter([motorcycle_sample()])
            else:
                batch = next(others)
            for sample in batch:
                if num_samples is not None and count >= num_samples:
                    return
                count += 1
                yield sample

    return generate()


def scale_sample(sample: EvalSample, factor: float) -> EvalSample:
    """The sample resized by ``factor`` (images area-averaged, ground truth and occlusion nearest,
    disparities and calibration in the new pixels)."""
    if not 0.0 < factor <= 4.0:
        raise ValueError(f"factor: expected a scale in (0, 4], got {factor}")
    if factor == 1.0:
        return sample
    height, width = sample.disparity.shape
    size = (max(8, round(width * factor)), max(8, round(height * factor)))  # OpenCV: (width, height)
    sx, sy = size[0] / width, size[1] / height
    image = lambda x: cv2.resize(x, size, interpolation=cv2.INTER_AREA if factor < 1 else cv2.INTER_LINEAR)  # noqa: E731
    disparity = cv2.resize(sample.disparity, size, interpolation=cv2.INTER_NEAREST) * sx
    occlusion = (None if sample.occlusion is None else
                 cv2.resize(sample.occlusion.astype(np.uint8), size, interpolation=cv2.INTER_NEAREST) > 0)
    centre = lambda c, s_: None if c is None else (c + 0.5) * s_ - 0.5  # noqa: E731
    return EvalSample(image(sample.left), image(sample.right), disparity.astype(np.float32),
                      None if sample.focal is None else sample.focal * sx, sample.baseline, occlusion,
                      sample.name, None if sample.max_disparity is None else sample.max_disparity * sx,
                      sample.doffs * sx, centre(sample.cx, sx), centre(sample.cy, sy))
