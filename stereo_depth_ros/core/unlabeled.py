"""Unlabeled real stereo for fine-tuning without ground truth: sources, proxy labels, batches.

Sources (what ``stereo_depth_train --unlabeled`` reads; ROS bags are read by
:func:`stereo_depth_ros.bags.unlabeled_frames_from_bag`, everything else here):

* dataset folders in the layouts :mod:`.datasets` reads (Middlebury scenes, KITTI splits, the
  package's folder layout, folders of those, and the built-in ``motorcycle``) -- their ground
  truth is never used;
* plain folders of ``left_*.png`` / ``right_*.png`` pairs (same suffix: ``left_000.png`` with
  ``right_000.png``), e.g. frames dumped from a robot, or of ``*_left.png`` / ``*_right.png`` pairs
  (same stem: ``piano_left.png`` with ``piano_right.png``), the layout of collected pairs.

Every frame's proxy labels (:mod:`.proxy`: SGBM's confident disparities with background-filled
holes) are computed once, for the frame and for its mirror image (the flipped right view becomes
the left one), so that batches can flip without running SGBM again; so is, when a teacher is
given, a second hypothesis for the photometric gate (the labels' ``reference``, e.g. the initial
network run on the upsampled frame). :func:`make_unlabeled_batch` draws random crops with
per-view colour jitter and that flip.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable, Iterator, Sequence

import numpy as np
import torch

from .datasets import BUILTIN_SCENES, IMAGE_EXTENSIONS, EvalSample, detect_layout, load_scenes, read_image
from .augmentation import jitter_views
from .proxy import ProxyLabels, sgbm_proxy
from .sgbm import SgbmBackend

__all__ = ["UnlabeledFrame", "UnlabeledSet", "Teacher", "load_pair_folder", "frames_from_samples", "describe_source",
           "prepare_unlabeled_set", "make_unlabeled_batch", "is_pair_folder", "scale_frame"]

_LEFT = re.compile(r"^left_(.+)$|^(.+)_left$")


def _right_name(left: Path) -> str:
    """The file name of the right view that pairs with ``left`` (a name :data:`_LEFT` matches)."""
    prefixed, suffixed = _LEFT.match(left.stem).groups()
    return ("right_" + prefixed if prefixed is not None else suffixed + "_right") + left.suffix


@dataclass
class UnlabeledFrame:
    """A rectified pair without ground truth.

    Attributes:
        left, right: ``(H, W, 3)`` uint8 RGB.
        name: where it came from (for reports).
    """

    left: np.ndarray
    right: np.ndarray
    name: str

    def __post_init__(self) -> None:
        for side in ("left", "right"):
            image = getattr(self, side)
            if not isinstance(image, np.ndarray) or image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
                got = f"{image.dtype} {image.shape}" if isinstance(image, np.ndarray) else type(image).__name__
                raise ValueError(f"{self.name}: expected {side} as (H, W, 3) uint8 RGB, got {got}")
        if self.left.shape != self.right.shape:
            raise ValueError(f"{self.name}: expected left and right of one size, got {self.left.shape[:2]} and "
                             f"{self.right.shape[:2]}")


def _to_uint8(image: np.ndarray) -> np.ndarray:
    return np.clip(np.round(image * 255.0), 0, 255).astype(np.uint8)


def is_pair_folder(path: Path) -> bool:
    return path.is_dir() and any(_LEFT.match(p.stem) and p.suffix.lower() in IMAGE_EXTENSIONS for p in path.iterdir())


def load_pair_folder(path: str | Path) -> list[UnlabeledFrame]:
    """The ``left_*`` / ``right_*`` (or ``*_left`` / ``*_right``) image pairs of a folder in name order.

    Raises:
        ValueError: no pairs, a left image without its right one, unreadable images or pairs of
            different sizes (the message names the file).
    """
    root = Path(path)
    if not root.is_dir():
        raise ValueError(f"{root}: expected a folder of left_*.png / right_*.png (or *_left.png / *_right.png) pairs, got no such folder")
    lefts = sorted(p for p in root.iterdir() if _LEFT.match(p.stem) and p.suffix.lower() in IMAGE_EXTENSIONS)
    if not lefts:
        raise ValueError(f"{root}: expected left_*.png / right_*.png (or *_left.png / *_right.png) image pairs, found none")
    frames = []
    for left in lefts:
        right = left.with_name(_right_name(left))
        if not right.is_file():
            raise ValueError(f"{root}: expected {right.name} (the pair of {left.name}), it is missing")
        frames.append(UnlabeledFrame(_to_uint8(read_image(left)), _to_uint8(read_image(right)), f"{root.name}/{left.name}"))
    return frames


def frames_from_samples(samples: Iterable[EvalSample]) -> Iterator[UnlabeledFrame]:
    """Dataset samples as unlabeled frames (their ground truth is dropped)."""
    for sample in samples:
        yield UnlabeledFrame(_to_uint8(sample.left), _to_uint8(sample.right), sample.name)


def _hash_path(path: Path) -> tuple[int, str]:
    """Total size in bytes and a SHA-256 over the files under ``path`` (names and contents, sorted)."""
    digest = hashlib.sha256()
    size = 0
    files = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file())
    for file in files:
        digest.update(str(file.relative_to(path) if file != path else file.name).encode())
        with open(file, "rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                digest.update(chunk)
        size += file.stat().st_size
    return size, digest.hexdigest()


def describe_source(source: str | Path, kind: str, frames: int) -> dict:
    """A source for the weights' sidecar: path, kind, frames, bytes and a SHA-256 of its files."""
    if str(source) in BUILTIN_SCENES and not Path(source).exists():
        return {"path": str(source), "kind": "built-in scene (scikit-image)", "frames": frames}
    path = Path(source)
    size, digest = _hash_path(path)
    return {"path": str(path.resolve()), "kind": kind, "frames": frames, "bytes": size, "sha256": digest}


def load_folder_source(source: str | Path) -> tuple[str, list[UnlabeledFrame]]:
    """``(kind, frames)`` of a non-bag source: a pair folder, a dataset folder or a built-in scene."""
    if str(source) in BUILTIN_SCENES and not Path(source).exists():
        return "dataset", list(frames_from_samples(load_scenes([source])))
    path = Path(source)
    if not path.exists():
        raise ValueError(f"{path}: expected a rosbag2, a dataset folder or a folder of left_*/right_* pairs, "
                         f"got no such file or folder")
    if is_pair_folder(path):
        return "pairs", load_pair_folder(path)
    try:
        detect_layout(path)
    except ValueError:
        raise ValueError(f"{path}: expected a rosbag2, a dataset folder (Middlebury, KITTI, left/right/disparity) "
                         f"or a folder of left_*.png / right_*.png pairs; found none of those") from None
    frames = list(frames_from_samples(load_scenes([path])))
    if not frames:
        raise ValueError(f"{path}: expected stereo pairs, found none")
    return "dataset", frames


@dataclass
class UnlabeledSet:
    """Frames with their proxy labels, for both the pair and its mirror.

    Attributes:
        frames: the frames.
        labels: per frame ``(labels of the pair, labels of the mirrored pair)``, each a
            :class:`ProxyLabels` of batch 1 on the CPU.
    """

    frames: list[UnlabeledFrame]
    labels: list[tuple[ProxyLabels, ProxyLabels]] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.frames)


def _tensor(image: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(image).permute(2, 0, 1)[None].float() / 255.0


def scale_frame(frame: UnlabeledFrame, scale: float) -> UnlabeledFrame:
    """``frame`` resized by ``scale`` (``(0, MAX_INFERENCE_SCALE]``) the way the node resizes its input
    for ``inference_scale`` (antialiased bilinear, :func:`~.pipeline.scaled_size`): fine-tuning on
    frames at the scale the network will run at (``stereo_depth_train --frame-scale``). The frame
    itself when ``scale`` is 1."""
    from .pipeline import resize_images, scaled_size

    size = scaled_size(*frame.left.shape[:2], scale)  # raises ValueError for a scale out of range
    if size == frame.left.shape[:2]:
        return frame

    def resized(image: np.ndarray) -> np.ndarray:
        out = resize_images(_tensor(image), size)[0].permute(1, 2, 0).mul(255.0).round().clamp(0, 255)
        return out.to(torch.uint8).numpy()

    return UnlabeledFrame(resized(frame.left), resized(frame.right), f"{frame.name}@x{float(scale):g}")


Teacher = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
"""``(left, right)`` ``(1, 3, H, W)`` images in ``[0, 1]`` -> ``(1, 1, H, W)`` left disparity in pixels."""


def prepare_unlabeled_set(frames: Sequence[UnlabeledFrame], matcher: SgbmBackend,
                          progress: bool = False, teacher: Teacher | None = None) -> UnlabeledSet:
    """Compute the proxy labels of every frame and of its mirror (two SGBM runs per frame).

    With ``teacher``, its disparity of the pair (and of the mirrored pair) becomes the labels'
    ``reference``: the photometric gate's second hypothesis
    (:func:`~stereo_depth_ros.core.self_supervision.gate_labels`).
    """
    if not frames:
        raise ValueError("frames: expected at least one unlabeled stereo pair, got none")
    out = UnlabeledSet(list(frames))
    iterator: Iterable[UnlabeledFrame] = frames
    if progress:
        import sys

        from tqdm import tqdm

        iterator = tqdm(frames, desc="proxy labels", unit="frame", file=sys.stderr, leave=False)
    for frame in iterator:
        left, right = _tensor(frame.left), _tensor(frame.right)
        m_left, m_right = torch.flip(right, [-1]), torch.flip(left, [-1])
        pair = sgbm_proxy(left, right, matcher)
        mirrored = sgbm_proxy(m_left, m_right, matcher)
        if teacher is not None:
            pair.reference = _teacher_disparity(teacher, left, right)
            mirrored.reference = _teacher_disparity(teacher, m_left, m_right)
        out.labels.append((pair, mirrored))
    return out


def _teacher_disparity(teacher: Teacher, left: torch.Tensor, right: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        disparity = teacher(left, right).detach().float().cpu()
    if disparity.shape != (1, 1) + tuple(left.shape[-2:]) or not torch.isfinite(disparity).all():
        raise ValueError(f"teacher: expected a finite (1, 1, {left.shape[-2]}, {left.shape[-1]}) disparity, "
                         f"got shape {tuple(disparity.shape)}")
    return disparity


def make_unlabeled_batch(data: UnlabeledSet, step: int, seed: int, batch_size: int, crop: tuple[int, int],
                         device: torch.device) -> tuple[torch.Tensor, torch.Tensor, ProxyLabels]:
    """A deterministic augmented batch for ``step``: random crops (the whole frame when it is smaller
    than the crop, resized up), a flip that swaps the views (half of the time), per-view colour
    jitter (gain per channel, gamma, brightness, noise).

    Returns:
        ``(left, right, labels)``: ``(B, 3, h, w)`` images in ``[0, 1]`` and their proxy labels
        (with their ``reference`` cropped alike when the set has one).
    """
    g = torch.Generator().manual_seed(seed * 1_000_003 + step)
    ch, cw = crop
    lefts, rights, disps, valids, filleds, references = [], [], [], [], [], []
    for _ in range(batch_size):
        k = int(torch.randint(len(data), (1,), generator=g))
        frame = data.frames[k]
        mirror = bool(torch.rand(1, generator=g) < 0.5)
        left, right = _tensor(frame.left), _tensor(frame.right)
        labels = data.labels[k][1 if mirror else 0]
        if mirror:  # the flipped right view becomes the left one
            left, right = torch.flip(right, [-1]), torch.flip(left, [-1])
        disp, valid, filled, reference = labels.disparity, labels.valid, labels.filled, labels.reference
        height, width = left.shape[-2:]
        if height < ch or width < cw:  # too small: scale up (disparities with the width)
            scale = max(ch / height, cw / width)
            size = (int(np.ceil(height * scale)), int(np.ceil(width * scale)))
            resize = lambda x: torch.nn.functional.interpolate(x, size=size, mode="bilinear", align_corners=False)  # noqa: E731
            nearest = lambda x: torch.nn.functional.interpolate(  # noqa: E731
                x.float(), size=size, mode="nearest-exact")
            left, right = resize(left), resize(right)
            disp = nearest(disp) * (size[1] / width)
            valid, filled = nearest(valid) > 0.5, nearest(filled) > 0.5
            if reference is not None:
                reference = resize(reference) * (size[1] / width)
            height, width = size
        y = int(torch.randint(height - ch + 1, (1,), generator=g))
        x = int(torch.randint(width - cw + 1, (1,), generator=g))
        window = (..., slice(y, y + ch), slice(x, x + cw))
        lefts.append(left[window])
        rights.append(right[window])
        disps.append(disp[window])
        valids.append(valid[window])
        filleds.append(filled[window])
        if reference is not None:
            references.append(reference[window])
    left, right = torch.cat(lefts).to(device), torch.cat(rights).to(device)
    left, right = jitter_views(left, right, g, gain=(0.85, 0.3), gamma=(0.8, 0.4), bias=0.08, noise=0.015)
    labels = ProxyLabels(torch.cat(disps).to(device), torch.cat(valids).to(device), torch.cat(filleds).to(device),
                         torch.cat(references).to(device) if references else None)
    return left, right, labels
