"""Test-time adaptation on still pairs: the yardstick of online adaptation on real scenes.

Two disparity backends with the ``(left, right) -> (H, W) disparity`` interface of the evaluation
tool (numpy ``(H, W, 3)`` float images in ``[0, 1]`` in, pixels out):

* :class:`NetworkBackend`: the network as it is (frozen), at an optional inference scale;
* :class:`MaskedNetworkBackend`: the same, with the node's validity masks applied (untrusted
  pixels NaN), in its two-pass (left-right check) or single-pass mode, and with ``fusion`` what
  the node publishes by default: the network fused with SGBM per pixel (:mod:`.fusion`);
* :class:`AdaptingBackend`: adapts the network with :class:`~.adaptation.OnlineAdapter` for
  ``steps`` steps on the pair it is given, then predicts it. Per scene (``continual=False``)
  every pair starts from the same initial weights; ``continual=True`` carries one adapter (and
  its weights) from pair to pair, in order, as a robot would through changing scenes;
* :class:`GroundTruthAdaptingBackend`: the same update rule with the ground truth as the label
  (an oracle, not a method): how far this network can move in that many steps, so that a gap
  between it and :class:`AdaptingBackend` is the labels' share of the error.

Adaptation runs at the size the network predicts at (the inference scale), like the node.
"""

from __future__ import annotations

import copy
import sys
import time
from dataclasses import replace
from typing import Any

import numpy as np
import torch

from .adaptation import AdaptationConfig, OnlineAdapter, proxy_matcher
from .proxy import ProxyLabels
from .network.estimator import image_to_tensor, prepare_for_inference
from .network.model import StereoNetwork
from .camera import StereoCamera
from .masks import ValidityConfig
from .pipeline import (network_size, predict_left, process_frame, resize_images, run_matcher, scaled_size,
                       upsampled_labels)

__all__ = ["NetworkBackend", "MaskedNetworkBackend", "AdaptingBackend", "GroundTruthAdaptingBackend"]


def _pair(left: np.ndarray, right: np.ndarray, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    lt, rt = image_to_tensor(left, device), image_to_tensor(right, device)
    if lt.shape != rt.shape:
        raise ValueError(f"left/right: expected equal sizes, got {tuple(left.shape)} and {tuple(right.shape)}")
    return lt, rt


class NetworkBackend:
    """The network on numpy pairs, run at ``inference_scale`` of each pair's size.

    Args:
        model: the network (a private inference copy is made).
        device: torch device.
        inference_scale: network input size as a factor of the image size, in ``(0, 2]`` (above 1 upsampled).
        name: the backend's name in reports.
        metadata: weights metadata shown in reports.
    """

    def __init__(self, model: StereoNetwork, device: str | torch.device = "cpu", inference_scale: float = 1.0,
                 name: str = "network", metadata: dict[str, Any] | None = None) -> None:
        scaled_size(64, 64, inference_scale)  # checks the scale
        self.device = torch.device(device)
        self.model = prepare_for_inference(copy.deepcopy(model), self.device)
        self.inference_scale = float(inference_scale)
        self.name = name
        self.metadata = metadata or {}

    def size_for(self, height: int, width: int) -> tuple[int, int] | None:
        return network_size(height, width, self.inference_scale)

    def __call__(self, left: np.ndarray, right: np.ndarray) -> np.ndarray:
        """``(H, W, 3)`` images -> ``(H, W)`` float32 disparity in pixels at the image size."""
        lt, rt = _pair(left, right, self.device)
        return predict_left(self.model, lt, rt, self.size_for(*lt.shape[-2:]))[0, 0].float().cpu().numpy()


class MaskedNetworkBackend(NetworkBackend):
    """The network with the node's validity masks: what the node publishes as valid, NaN elsewhere.

    The masks' image tests (left-right check unless ``single_pass``, occlusion, photometric error)
    use the node's default thresholds; the depth-range test is left out (it needs the rig's metric
    calibration and removes nothing on a dataset scene).

    Args:
        model, device, inference_scale, name, metadata: as :class:`NetworkBackend`.
        single_pass: no left-right check, so no second (mirrored) network pass, as the node with
            ``validity.left_right_check: false``.
        fusion, fusion_margin: fuse with SGBM as the node's ``output.fusion: sgbm`` (its default)
            does; :attr:`last_confidence` then holds the confidence of the last pair (0 = not published).
    """

    def __init__(self, model: StereoNetwork, device: str | torch.device = "cpu", inference_scale: float = 1.0,
                 name: str | None = None, metadata: dict[str, Any] | None = None, single_pass: bool = False,
                 fusion: bool = False, fusion_margin: float = 0.5) -> None:
        names = {(False, False): "network_masked", (False, True): "network_single_pass",
                 (True, False): "node_fused", (True, True): "node_fused_single_pass"}
        default_name = names[(bool(fusion), bool(single_pass))]
        super().__init__(model, device, inference_scale, name or default_name, metadata)
        self.single_pass = bool(single_pass)
        # The node's SGBM: adaptation's proxy settings, the network's search range (pixels at the
        # size the network runs at), run at that size.
        self.matcher = proxy_matcher(AdaptationConfig(), model.config.max_disparity) if fusion else None
        self.fusion_margin = float(fusion_margin)
        self.last_confidence: np.ndarray | None = None
        defaults = ValidityConfig()
        self.validity_config = ValidityConfig(lr_max_difference=None if single_pass else defaults.lr_max_difference,
                                              photometric_max=defaults.photometric_max, min_depth=0.0, max_depth=1e12)

    def __call__(self, left: np.ndarray, right: np.ndarray) -> np.ndarray:
        """``(H, W, 3)`` images -> ``(H, W)`` float32 disparity in pixels, NaN where not trusted."""
        lt, rt = _pair(left, right, self.device)
        height, width = lt.shape[-2:]
        # Unit focal length and baseline: only image-space tests are active (see the class docstring).
        camera = StereoCamera(width, height, 1.0, 1.0, (width - 1) / 2.0, (height - 1) / 2.0, (width - 1) / 2.0, 1.0)
        size = self.size_for(height, width)
        matcher = None
        if self.matcher is not None:
            matcher = torch.from_numpy(run_matcher(self.matcher, lt, rt, size))[None, None]
        with torch.no_grad():
            result = process_frame(self.model, lt, rt, camera, self.validity_config, size, matcher_disparity=matcher,
                                   fusion_margin=self.fusion_margin)
        disparity = result.disparity_left[0, 0].float().cpu().numpy()
        mask = result.validity.mask[0, 0].cpu().numpy()
        self.last_confidence = np.where(mask, result.validity.confidence[0, 0].float().cpu().numpy(), 0.0)
        return np.where(mask, disparity, np.nan).astype(np.float32)


class AdaptingBackend:
    """Adapts the network on each pair it is given, then predicts the pair.

    Args:
        model: the initial network (copied; the argument is never changed).
        config: adaptation settings (their ``mode`` must not be ``"none"``).
        steps: adaptation steps per pair (> 0).
        continual: carry the adapted weights from pair to pair instead of restarting each pair
            from the initial weights.
        device: torch device.
        inference_scale: as :class:`NetworkBackend`; adaptation runs at that size too.
        name: the backend's name in reports.
        progress: show a progress bar of the steps on stderr.
        seed: seed of the MAD block sampling.

    Attributes:
        history: one dict per pair: ``steps``, ``statuses`` (count per step status), ``rollbacks``,
            ``loss_first`` / ``loss_last``, ``proxy_density`` / ``proxy_agreement`` of the last step,
            ``seconds`` and ``ms_per_step``.
    """

    uses_ground_truth = False  # called as backend(left, right); the oracle subclass also takes the ground truth

    def __init__(self, model: StereoNetwork, config: AdaptationConfig, steps: int, continual: bool = False,
                 device: str | torch.device = "cpu", inference_scale: float = 1.0, name: str = "adapted",
                 progress: bool = False, seed: int = 0) -> None:
        if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
            raise ValueError(f"steps: expected a positive integer, got {steps!r}")
        if config.mode == "none":
            raise ValueError("config.mode: expected 'full' or 'mad' for an adapting backend, got 'none'")
        scaled_size(64, 64, inference_scale)
        self.device = torch.device(device)
        self._initial = copy.deepcopy(model).to(self.device)
        self.config = config
        self.steps = steps
        self.continual = continual
        self.inference_scale = float(inference_scale)
        self.name = name
        self.progress = progress
        self.seed = seed
        self.adapter: OnlineAdapter | None = None
        self.history: list[dict[str, Any]] = []
        self.metadata = {"adaptation": dict(config.__dict__), "steps": steps, "continual": continual}
        # SGBM's labels of an upsampled pair (the oracle's labels are the ground truth)
        self._label_matcher = (proxy_matcher(config, model.config.max_disparity)
                               if config.proxy == "sgbm" and not self.uses_ground_truth else None)

    @property
    def model(self) -> StereoNetwork:
        """The current adapted network (the initial one before the first pair)."""
        return self.adapter.model if self.adapter is not None else self._initial

    def _new_adapter(self) -> OnlineAdapter:
        return OnlineAdapter(copy.deepcopy(self._initial), self.config, seed=self.seed)

    def _adapt(self, left: torch.Tensor, right: torch.Tensor,
               matcher_disparity: np.ndarray | None = None) -> dict[str, Any]:
        if self.adapter is None or not self.continual:
            self.adapter = self._new_adapter()
        adapter = self.adapter
        rollbacks_before = adapter.rollbacks
        statuses: dict[str, int] = {}
        losses: list[float] = []
        steps = range(self.steps)
        if self.progress:
            from tqdm import tqdm

            steps = tqdm(steps, desc=f"{self.name} steps", unit="step", leave=False, file=sys.stderr)
        start = time.perf_counter()
        for _ in steps:
            result = adapter.step(left, right, matcher_disparity)
            statuses[result.status] = statuses.get(result.status, 0) + 1
            losses.append(result.loss)
        seconds = time.perf_counter() - start
        terms = adapter.last.terms
        return {"steps": self.steps, "statuses": statuses, "rollbacks": adapter.rollbacks - rollbacks_before,
                "loss_first": losses[0], "loss_last": losses[-1], "proxy_density": terms.get("proxy_density"),
                "proxy_agreement": terms.get("proxy_agreement"), "seconds": seconds,
                "ms_per_step": 1000.0 * seconds / self.steps}

    def __call__(self, left: np.ndarray, right: np.ndarray) -> np.ndarray:
        """Adapt on the pair, then return its ``(H, W)`` float32 disparity in pixels."""
        lt, rt = _pair(left, right, self.device)
        size = network_size(*lt.shape[-2:], self.inference_scale)
        labels = upsampled_labels(self._label_matcher, lt, rt, size)  # SGBM as the node runs it
        self.history.append(self._adapt(resize_images(lt, size), resize_images(rt, size), labels))
        model = self.adapter.model
        was_training = model.training
        model.eval()
        try:
            return predict_left(model, lt, rt, size)[0, 0].float().cpu().numpy()
        finally:
            model.train(was_training)


class _GroundTruthAdapter(OnlineAdapter):
    """An :class:`OnlineAdapter` whose proxy labels are the ground truth of the pair being adapted."""

    labels: ProxyLabels | None = None

    def proxy_labels(self, left: torch.Tensor, right: torch.Tensor, matcher_disparity: Any = None) -> ProxyLabels:
        if self.labels is None or self.labels.disparity.shape[-2:] != left.shape[-2:]:
            raise ValueError(f"ground truth: expected labels of size {tuple(left.shape[-2:])}, got "
                             f"{None if self.labels is None else tuple(self.labels.disparity.shape[-2:])}")
        return self.labels


class GroundTruthAdaptingBackend(AdaptingBackend):
    """:class:`AdaptingBackend` with the ground truth as the proxy label: the ceiling of test-time
    adaptation for this network, update rule and number of steps (a diagnostic, never a method).

    The adapter's loss is unchanged (photometric + smoothness + truncated L1 to the labels) but its
    labels are the scene's ground-truth disparity on every known pixel, without the photometric gate
    and without a background fill. It is called with the ground truth
    (``backend(left, right, ground_truth)``; the evaluation tool does so for backends whose
    ``uses_ground_truth`` is True).

    Args: as :class:`AdaptingBackend` (``config`` gets ``proxy="sgbm"``, ``proxy_gate="none"`` and
        ``proxy_fill_weight=0`` so that the labels enter the loss as they are).
    """

    uses_ground_truth = True

    def __init__(self, model: StereoNetwork, config: AdaptationConfig, steps: int, continual: bool = False,
                 device: str | torch.device = "cpu", inference_scale: float = 1.0, name: str = "adapted_oracle",
                 progress: bool = False, seed: int = 0) -> None:
        config = replace(config, proxy="sgbm", proxy_gate="none", proxy_fill_weight=0.0)
        super().__init__(model, config, steps, continual, device, inference_scale, name, progress, seed)
        self.metadata["labels"] = "ground truth (oracle)"
        self._labels: ProxyLabels | None = None

    def _new_adapter(self) -> OnlineAdapter:
        adapter = _GroundTruthAdapter(copy.deepcopy(self._initial), self.config, seed=self.seed)
        adapter.labels = self._labels
        return adapter

    def __call__(self, left: np.ndarray, right: np.ndarray, ground_truth: np.ndarray | None = None) -> np.ndarray:
        """Adapt on the pair with ``ground_truth`` (``(H, W)`` pixels, non-finite or <= 0 unknown) as
        the label, then return its ``(H, W)`` float32 disparity in pixels."""
        if ground_truth is None or np.shape(ground_truth) != np.shape(left)[:2]:
            raise ValueError(f"ground_truth: expected an {np.shape(left)[:2]} disparity, got "
                             f"{None if ground_truth is None else np.shape(ground_truth)}")
        height, width = np.shape(left)[:2]
        gt = torch.from_numpy(np.asarray(ground_truth, dtype=np.float32))[None, None].to(self.device)
        known = torch.isfinite(gt) & (gt > 0)
        gt = torch.where(known, gt, torch.zeros_like(gt))
        if self.inference_scale != 1.0:  # labels at the adaptation size, in its pixels
            size = scaled_size(height, width, self.inference_scale)
            gt = torch.nn.functional.interpolate(gt, size=size, mode="nearest-exact") * (size[1] / width)
            known = torch.nn.functional.interpolate(known.float(), size=size, mode="nearest-exact") > 0.5
        self._labels = ProxyLabels(gt, known, torch.zeros_like(known))
        if isinstance(self.adapter, _GroundTruthAdapter):  # continual: the carried adapter gets the new labels
            self.adapter.labels = self._labels
        return super().__call__(left, right)
