"""Online self-supervised adaptation of the disparity network, with safeguards.

One :meth:`OnlineAdapter.step` on a rectified pair: predict the left disparity, reconstruct the left
image from the right one through it (``grid_sample``), and minimise

    w_photo * photometric (0.85 (1-SSIM)/2 + 0.15 L1, auto-masked)
    + w_smooth * edge-aware smoothness (mean-normalised disparity)
    + w_lr * left-right consistency (right disparity from the mirrored pair)
    + w_proxy * truncated L1 to proxy labels (OpenCV SGBM's confident pixels, background-filled holes)

with no ground truth (:mod:`.proxy` explains the proxy term, MAD++'s idea). Modes: ``full`` updates every parameter; ``mad`` updates one pyramid block per
step (MADNet's modular adaptation), sampled from a softmax over a running reward = the loss decrease
each block produced; ``none`` never updates.

Online adaptation is known to drift (flat depth after ~100 frames, sensitivity to the learning
rate), so every step is guarded: a non-finite loss or gradient skips the step (weights untouched);
too few valid pixels skips it (and ``patience`` such frames in a row roll back: a diverged
network's reconstruction is rejected by auto-masking everywhere); a loss that jumps above ``jump_factor`` x the running median, or stays
above ``rise_factor`` x the median for ``patience`` steps, rolls the weights back to the newest good
snapshot (a small ring of states whose loss was at or below the median and that then survived
``patience`` more steps) or, when rollbacks repeat, to
the initial (shipped) weights. Every skip and rollback is counted. When the restored weights
themselves still trip a guard on the next frame, the weights were not the cause: the scene changed
(a robot driving into a new place, the next scene of a benchmark), so the loss and prediction
statistics restart from that frame instead of rolling back again (without this, a new scene whose
loss was 4x the old median rolled back on every one of its frames and never adapted).

:class:`AdaptationWorker` runs the adapter off the inference path in a thread (on its own CUDA
stream on GPU), on the newest frame only, and hands the adapted weights to the inference model
atomically.
"""

from __future__ import annotations

import contextlib
import copy
import logging
import math
import os
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator, Literal, Sequence

import numpy as np
import torch

from .checks import check_positive, check_same_batch_and_size, check_tensor
from .losses import image_error_function, left_right_consistency, masked_mean
from .network.compiled import CompiledStereoNet
from .network.estimator import predict_left_right, prepare_for_inference
from .network.model import StereoNetwork
from .network.weights import WeightsError, load_model, save_weights
from .proxy import ProxyLabels, labels_from_disparity, sgbm_proxy
from .self_supervision import self_supervised_loss
from .sgbm import SgbmBackend
from .warping import warp_left_to_right, warp_right_to_left

__all__ = ["AdaptationConfig", "StepResult", "OnlineAdapter", "AdaptationWorker", "load_adapted_or_default", "pull_towards"]

log = logging.getLogger(__name__)

Mode = Literal["full", "mad", "none"]


@dataclass(frozen=True)
class AdaptationConfig:
    """Settings of online adaptation (every field is a node parameter).

    Attributes:
        mode: ``"full"``, ``"mad"`` or ``"none"``.
        image_loss: the reconstruction error: ``"ssim_l1"`` (``0.85 (1-SSIM)/2 + 0.15 L1``) or
            ``"census"`` (soft ternary census, invariant to gain/gamma differences between views).
        optimizer: ``"adam"`` or ``"sgd"`` (momentum 0.9).
        learning_rate: step size. Adam's first steps move every weight by about the learning rate
            (sign descent). With the proxy labels, 3e-4 (after a 5-step warm-up) was the best of
            1e-4, 3e-4, 5e-4 and 1e-3 on the real development scenes (1e-3 diverged on Teddy and was
            rolled back 12 times); with the photometric loss alone on the synthetic domain, 1e-4 broke
            the network in one step and 1e-5 did not.
        lr_warmup_steps: the rate ramps up linearly over this many steps (after a start, a reset or
            a rollback).
        grad_clip: global gradient-norm clip (0 disables).
        adapt_every: adapt on every N-th frame offered.
        photometric_weight, smoothness_weight, lr_consistency_weight: loss weights
            (left-right consistency needs a second, mirrored prediction: 0 skips it).
        multiscale: add the reconstruction error of every pyramid level's disparity on images
            downsampled to that level (MADNet): coarse levels see large errors as sub-pixel ones.
        automask: ignore pixels whose un-warped photometric error is already lower (static scenes,
            textureless regions).
        min_valid_fraction: skip the step when fewer pixels than this are usable.
        median_window: steps in the running loss median.
        warmup_steps: steps before the jump/rise rules apply.
        jump_factor: roll back at once when the loss exceeds this x the running median.
        rise_factor, patience: roll back after ``patience`` consecutive losses above
            ``rise_factor`` x the running median.
        max_in_view_drop: roll back after ``patience`` frames whose share of pixels matched inside the
            right image is this much (absolute) below its running median (disparities blowing up).
        spread_band: roll back after ``patience`` frames whose disparity spread (std / mean) is
            outside ``[median / band, median * band]`` (flat-depth drift, or noise).
        snapshot_every, snapshot_ring: keep a snapshot of good weights every N steps, at most M.
        proxy: ``"sgbm"``: add the truncated L1 to OpenCV SGBM's confident disparities of the adapted
            frame (computed on the adaptation thread, at the adaptation size, searching the network's
            ``max_disparity``); ``"none"``: the photometric loss alone.
        proxy_weight: weight of the proxy term.
        proxy_truncation: largest per-pixel proxy penalty (pixels at the adaptation size), so that
            a wrong label pulls with a bounded force.
        proxy_fill_weight: weight of the labels SGBM's holes get from the background (0: none).
        proxy_gate: ``"photometric"``: a label counts only where the right image warped through it
            reconstructs the left image better than the current prediction does (the Depth Hints
            rule, Watson et al. 2019), so that SGBM's mistakes on weakly textured surfaces, where
            its checks let many through, do not pull; ``"none"``: every label counts.
        proxy_gate_margin: with the photometric gate, a label must lower the per-pixel image error
            below ``(1 - margin)`` times the prediction's to count.
        proxy_reference: with the photometric gate, the network's own prediction before
            adaptation is a second candidate label (one extra forward pass of a frozen copy per
            step): where it reconstructs better than both SGBM and the current prediction it holds
            the prediction there, so adaptation cannot wander where the images cannot judge.
        proxy_uniqueness_ratio, proxy_lr_max_difference, proxy_speckle_window, proxy_speckle_range:
            SGBM's uniqueness margin (%), left-right check (pixels), speckle filter size (pixels, 0
            disables) and range (pixels): what makes a label confident.
        replay_memory: past frames kept (with their proxy labels) to rehearse: every step also
            minimises ``replay_weight`` x the loss of one of them, drawn at random, so that adapting
            to the current scene does not undo what earlier scenes taught (experience replay against
            forgetting). 0 disables it (each step then costs one forward and backward pass, not two).
        replay_every: a frame is offered to the memory every this many adapted steps; the memory is a
            uniform sample (reservoir) of all frames offered so far.
        replay_weight: weight of the replayed frame's loss.
        mad_temperature, mad_reward_decay: block sampling softmax temperature and reward decay.
        anchor: after every update each adapted weight is pulled this fraction of the way back to
            the initial (shipped or resumed) weights: ``w <- w + anchor (w0 - w)``, a decoupled L2
            pull that bounds how far adaptation can wander (0 disables). On three 300-frame
            unseen-domain sequences 0.05 turned ``full`` mode's slow drift (+124 % EPE on one, with
            no guard firing because the loss kept falling) into -10 % to +0.5 % (1e-5, no proxy).
            At the real-data defaults 0.01 costs nothing measurable in 100 steps (median bad-2 of
            Cones, Teddy, Tsukuba, Venus 9.3 % against 9.0 % at 0.002) and still bounds a long run.
    """

    mode: Mode = "full"
    image_loss: Literal["ssim_l1", "census"] = "ssim_l1"
    optimizer: Literal["adam", "sgd"] = "adam"
    learning_rate: float = 3e-4
    lr_warmup_steps: int = 5
    grad_clip: float = 1.0
    adapt_every: int = 1
    photometric_weight: float = 1.0
    smoothness_weight: float = 0.01
    lr_consistency_weight: float = 0.0
    automask: bool = True
    multiscale: bool = False
    min_valid_fraction: float = 0.2
    median_window: int = 50
    warmup_steps: int = 5
    jump_factor: float = 2.5
    rise_factor: float = 1.5
    patience: int = 4
    max_in_view_drop: float = 0.15
    spread_band: float = 2.0
    snapshot_every: int = 10
    snapshot_ring: int = 3
    mad_temperature: float = 0.01
    mad_reward_decay: float = 0.8
    anchor: float = 0.01
    proxy: Literal["sgbm", "none"] = "sgbm"
    proxy_weight: float = 1.0
    proxy_truncation: float = 10.0
    proxy_fill_weight: float = 1.0
    proxy_gate: Literal["photometric", "none"] = "photometric"
    proxy_reference: bool = True
    proxy_gate_margin: float = 0.2
    proxy_uniqueness_ratio: int = 10
    proxy_lr_max_difference: int = 1
    proxy_speckle_window: int = 100
    proxy_speckle_range: int = 2
    replay_memory: int = 0
    replay_every: int = 10
    replay_weight: float = 1.0

    def __post_init__(self) -> None:
        if self.mode not in ("full", "mad", "none"):
            raise ValueError(f"mode: expected 'full', 'mad' or 'none', got {self.mode!r}")
        if self.image_loss not in ("ssim_l1", "census"):
            raise ValueError(f"image_loss: expected 'ssim_l1' or 'census', got {self.image_loss!r}")
        if self.proxy not in ("sgbm", "none"):
            raise ValueError(f"proxy: expected 'sgbm' or 'none', got {self.proxy!r}")
        if not 0.0 <= self.proxy_gate_margin < 1.0:
            raise ValueError(f"proxy_gate_margin: expected a fraction in [0, 1), got {self.proxy_gate_margin!r}")
        if self.proxy_gate not in ("photometric", "none"):
            raise ValueError(f"proxy_gate: expected 'photometric' or 'none', got {self.proxy_gate!r}")
        check_positive(self.proxy_weight, "proxy_weight", allow_zero=True)
        check_positive(self.proxy_truncation, "proxy_truncation")
        check_positive(self.proxy_fill_weight, "proxy_fill_weight", allow_zero=True)
        for name in ("proxy_uniqueness_ratio", "proxy_speckle_window", "proxy_speckle_range"):
            if isinstance(getattr(self, name), bool) or int(getattr(self, name)) != getattr(self, name) or getattr(self, name) < 0:
                raise ValueError(f"{name}: expected an integer >= 0, got {getattr(self, name)!r}")
        if isinstance(self.proxy_lr_max_difference, bool) or int(self.proxy_lr_max_difference) != self.proxy_lr_max_difference:
            raise ValueError(f"proxy_lr_max_difference: expected an integer (pixels; negative disables the check), "
                             f"got {self.proxy_lr_max_difference!r}")
        if isinstance(self.replay_memory, bool) or int(self.replay_memory) != self.replay_memory or self.replay_memory < 0:
            raise ValueError(f"replay_memory: expected an integer >= 0 (frames), got {self.replay_memory!r}")
        if isinstance(self.replay_every, bool) or int(self.replay_every) != self.replay_every or self.replay_every < 1:
            raise ValueError(f"replay_every: expected an integer >= 1 (steps), got {self.replay_every!r}")
        check_positive(self.replay_weight, "replay_weight", allow_zero=True)
        if self.optimizer not in ("adam", "sgd"):
            raise ValueError(f"optimizer: expected 'adam' or 'sgd', got {self.optimizer!r}")
        check_positive(self.learning_rate, "learning_rate")
        check_positive(self.grad_clip, "grad_clip", allow_zero=True)
        for name in ("photometric_weight", "smoothness_weight", "lr_consistency_weight"):
            check_positive(getattr(self, name), name, allow_zero=True)
        if not 0.0 <= self.anchor < 1.0:
            raise ValueError(f"anchor: expected a fraction in [0, 1), got {self.anchor}")
        if int(self.lr_warmup_steps) < 0:
            raise ValueError(f"lr_warmup_steps: expected an integer >= 0, got {self.lr_warmup_steps}")
        for name in ("adapt_every", "median_window", "patience", "snapshot_every", "snapshot_ring"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"{name}: expected an integer >= 1, got {getattr(self, name)}")
        if not 0.0 <= self.min_valid_fraction < 1.0:
            raise ValueError(f"min_valid_fraction: expected a fraction in [0, 1), got {self.min_valid_fraction}")
        if self.jump_factor <= 1 or self.rise_factor <= 1:
            raise ValueError(f"jump_factor and rise_factor: expected > 1, got {self.jump_factor}, {self.rise_factor}")
        check_positive(self.mad_temperature, "mad_temperature")
        if not 0.0 < self.max_in_view_drop < 1.0:
            raise ValueError(f"max_in_view_drop: expected a fraction in (0, 1), got {self.max_in_view_drop}")
        if self.spread_band <= 1.0:
            raise ValueError(f"spread_band: expected > 1, got {self.spread_band}")
        if not 0.0 <= self.mad_reward_decay < 1.0:
            raise ValueError(f"mad_reward_decay: expected a value in [0, 1), got {self.mad_reward_decay}")


@dataclass
class StepResult:
    """What one call of :meth:`OnlineAdapter.step` did.

    Attributes:
        status: ``"adapted"``, ``"not_due"``, ``"disabled"``, ``"skipped_non_finite"``,
            ``"skipped_few_valid"`` or ``"rolled_back"``.
        loss: total loss before the update (NaN when not computed).
        terms: each loss term (``photometric``, ``smoothness``, ``lr_consistency``, ``proxy``) and, with
            a proxy, its ``proxy_density`` (share of pixels with a confident label) and
            ``proxy_agreement`` (share of those the network is within 2 px of, before the update).
        valid_fraction: share of pixels that entered the photometric term.
        block: the block updated (``mad``), ``"all"`` (``full``) or None.
        reason: why a rollback or skip happened (empty otherwise).
        seconds: wall time of the step.
    """

    status: str
    loss: float = math.nan
    terms: dict[str, float] = field(default_factory=dict)
    valid_fraction: float = math.nan
    block: str | None = None
    reason: str = ""
    seconds: float = 0.0


def proxy_settings(c: AdaptationConfig) -> tuple[int, int, int, int]:
    """The SGBM settings of the proxy labels: uniqueness, left-right check, speckle window and range."""
    return (c.proxy_uniqueness_ratio, c.proxy_lr_max_difference, c.proxy_speckle_window, c.proxy_speckle_range)


def proxy_matcher(config: AdaptationConfig, max_disparity: float) -> SgbmBackend:
    """The SGBM of the proxy labels (and of the node's fused output, so one run serves both).

    Its search range is SGBM's width-proportional default (192 px at 640 px width) capped at the
    network's ``max_disparity``: the network's full range from 640 px up, half of it at 320 px,
    where searching 192 px cost twice as much (25 against 12 ms a pair on 2 cores) for
    disparities that close to the camera.

    Args:
        config: its ``proxy_*`` settings.
        max_disparity: the largest search range in pixels (the network's ``max_disparity``).
    """
    uniqueness, lr_max, window, span = proxy_settings(config)
    return SgbmBackend(max_disparity=None, max_disparity_limit=float(max_disparity), uniqueness_ratio=uniqueness,
                       disp12_max_diff=lr_max, speckle_window_size=window, speckle_range=span)


@torch.no_grad()
def pull_towards(params: Sequence[torch.Tensor], initial: Sequence[torch.Tensor], fraction: float) -> None:
    """The anchor (decoupled L2-SP): move every parameter ``fraction`` of the way back to its
    initial value in place, ``w <- w + fraction (w0 - w)``; ``params[i]`` pairs with ``initial[i]``."""
    for p, p0 in zip(params, initial, strict=True):
        p.lerp_(p0, fraction)


def _state_copy(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


class OnlineAdapter:
    """Adapts a disparity network (:class:`~.network.model.StereoNetwork`, any architecture) in place,
    one frame at a time.

    Args:
        model: the network to adapt (its current weights are the rollback floor, "initial").
        config: adaptation settings.
        seed: seed of the MAD block sampling.
    """

    def __init__(self, model: StereoNetwork, config: AdaptationConfig | None = None, seed: int = 0) -> None:
        if not isinstance(model, StereoNetwork):
            raise ValueError(f"model: expected a disparity network (StereoNetwork), got {type(model).__name__}")
        self.model = model
        self.config = config or AdaptationConfig()
        self._initial = _state_copy(model)
        self._reference_model: StereoNetwork | None = None  # built on first use (proxy_reference)
        names = {id(p): n for n, p in model.named_parameters()}
        self._initial_params = {p: self._initial[names[id(p)]] for p in model.parameters()}
        self._snapshots: deque[dict[str, torch.Tensor]] = deque(maxlen=self.config.snapshot_ring)
        self._candidate: tuple[dict[str, torch.Tensor], int] | None = None
        self._losses: deque[float] = deque(maxlen=self.config.median_window)
        self._rng = np.random.default_rng(seed)
        self._blocks = list(model.blocks())
        self._rewards = {name: 0.0 for name in self._blocks}
        self._pending_reward: tuple[str, float] | None = None
        self._above = 0
        self._few_valid = 0
        self._drifting = 0
        self._since_reset = 0
        self._in_view = math.nan
        self._spread = math.nan
        self._in_view_history: deque[float] = deque(maxlen=self.config.median_window)
        self._spread_history: deque[float] = deque(maxlen=self.config.median_window)
        self._recent_rollbacks: deque[int] = deque(maxlen=3)
        self._just_restored = False
        self.rebaselines = 0
        # Experience replay: (left, right, proxy labels or None) of past frames, a reservoir sample.
        self._memory: list[tuple[torch.Tensor, torch.Tensor, ProxyLabels | None]] = []
        self._offered = 0
        self._last_labels: ProxyLabels | None = None
        self.frames_seen = 0
        self.steps = 0
        self.skipped = 0
        self.rollbacks = 0
        self.last: StepResult = StepResult(status="disabled" if self.config.mode == "none" else "not_due")
        self._optimizer = self._make_optimizer()
        self._proxy_matcher: SgbmBackend | None = None

    # ------------------------------------------------------------------ configuration
    def _make_optimizer(self) -> torch.optim.Optimizer:
        params = list(self.model.parameters())
        if self.config.optimizer == "adam":
            return torch.optim.Adam(params, lr=self.config.learning_rate)
        return torch.optim.SGD(params, lr=self.config.learning_rate, momentum=0.9)

    def set_config(self, config: AdaptationConfig) -> None:
        """Apply new settings live (learning rate, weights, mode...); optimiser state is kept when
        the optimiser kind is unchanged."""
        rebuild = config.optimizer != self.config.optimizer
        if proxy_settings(config) != proxy_settings(self.config):
            self._proxy_matcher = None
        self.config = config
        if rebuild:
            self._optimizer = self._make_optimizer()
        for group in self._optimizer.param_groups:
            group["lr"] = config.learning_rate
        self._losses = deque(self._losses, maxlen=config.median_window)
        self._snapshots = deque(self._snapshots, maxlen=config.snapshot_ring)

    # ------------------------------------------------------------------ loss
    def proxy_labels(self, left: torch.Tensor, right: torch.Tensor,
                     matcher_disparity: np.ndarray | None = None) -> ProxyLabels:
        """SGBM's labels of a pair ``(B, 3, H, W)`` with this adapter's settings; the search range is
        the network's ``max_disparity`` (pixels at the size it is given).

        ``matcher_disparity``: ``(B, H, W)`` SGBM's disparity of this pair already computed with the
        same settings (:func:`proxy_matcher`; the node's fused output runs SGBM once per frame and
        hands its result over), NaN in its holes; None computes it here.
        """
        fill = self.config.proxy_fill_weight > 0
        if matcher_disparity is not None:
            labels = labels_from_disparity(matcher_disparity, left.device, fill)
        else:
            if self._proxy_matcher is None:
                self._proxy_matcher = proxy_matcher(self.config, self.model.config.max_disparity)
            labels = sgbm_proxy(left, right, self._proxy_matcher, fill=fill)
        if self.config.proxy_reference and self.config.proxy_gate == "photometric":
            if self._reference_model is None:  # the weights adaptation started from, frozen
                self._reference_model = copy.deepcopy(self.model).eval()
                self._reference_model.load_state_dict(self._initial)
                for p in self._reference_model.parameters():
                    p.requires_grad_(False)
            with torch.no_grad():
                labels.reference = self._reference_model(left, right).disparity.float()
        return labels

    def compute_loss(self, left: torch.Tensor, right: torch.Tensor, matcher_disparity: np.ndarray | None = None
                     ) -> tuple[torch.Tensor, dict[str, float], float]:
        """See :meth:`_loss`; also records the prediction's statistics for the drift guards."""
        loss, terms, valid_fraction, disp = self._loss(left, right, matcher_disparity=matcher_disparity)
        with torch.no_grad():
            width = disp.shape[-1]
            u = torch.arange(width, device=disp.device, dtype=disp.dtype).view(1, 1, 1, width)
            self._in_view = float(((u - disp) >= 0).float().mean())
            self._spread = float(disp.std() / disp.mean().clamp(min=1e-3))
        return loss, terms, valid_fraction

    def _loss(
        self, left: torch.Tensor, right: torch.Tensor, precomputed: ProxyLabels | None = None,
        matcher_disparity: np.ndarray | None = None,
    ) -> tuple[torch.Tensor, dict[str, float], float, torch.Tensor]:
        """The self-supervised loss on one pair (graph kept for backward).

        Args:
            left, right: ``(B, 3, H, W)`` rectified images in ``[0, 1]``.
            precomputed: the pair's proxy labels when known (a replayed frame), else computed here.
            matcher_disparity: SGBM's disparity of the pair when already computed (see :meth:`proxy_labels`).

        Returns:
            ``(loss, terms, valid_fraction, disparity)``.
        """
        c = self.config
        if c.lr_consistency_weight > 0:
            disp, disp_right = predict_left_right(self.model, left, right)
        else:
            output = self.model(left, right)
            disp, disp_right = output.disparity, None
        labels = None
        if c.proxy != "none":
            labels = self.proxy_labels(left, right, matcher_disparity) if precomputed is None else precomputed
            if precomputed is None:
                self._last_labels = labels  # kept with the frame if it enters the replay memory
        loss, terms, valid_fraction = self_supervised_loss(disp, left, right, c, labels)
        image_error = image_error_function(c.image_loss)
        if c.multiscale and disp_right is None:
            coarse = self._multiscale_error(output, left, right, image_error)
            loss = loss + c.photometric_weight * coarse
            terms["photometric_multiscale"] = float(coarse.detach())
        if disp_right is not None:
            recon_r, _ = warp_left_to_right(left, disp_right, padding_mode="border")
            photo_r = masked_mean(image_error(recon_r, right))
            consistency = masked_mean(left_right_consistency(disp, disp_right))
            loss = loss + c.photometric_weight * photo_r + c.lr_consistency_weight * consistency
            terms["photometric_right"] = float(photo_r.detach())
            terms["lr_consistency"] = float(consistency.detach())
        return loss, terms, valid_fraction, disp.detach()

    @staticmethod
    def _multiscale_error(output: Any, left: torch.Tensor, right: torch.Tensor, image_error: Callable) -> torch.Tensor:
        """Mean reconstruction error over the pyramid levels, each at its own resolution."""
        height, width = left.shape[-2:]
        padded_h, padded_w = output.padded_size
        pad = (0, padded_w - width, 0, padded_h - height)
        left_p = torch.nn.functional.pad(left, pad, mode="replicate")
        right_p = torch.nn.functional.pad(right, pad, mode="replicate")
        errors = []
        for level, disparity in output.levels.items():
            if level > 4:  # 1/32 and 1/64 images are too small for 3x3 (or 7x7) windows
                continue
            factor = 2**level
            left_l = torch.nn.functional.avg_pool2d(left_p, factor)
            right_l = torch.nn.functional.avg_pool2d(right_p, factor)
            recon, _ = warp_right_to_left(right_l, disparity.to(right_l.dtype), padding_mode="border")
            errors.append(image_error(recon, left_l).mean())
        return torch.stack(errors).mean()

    # ------------------------------------------------------------------ step
    def _choose_block(self) -> str:
        values = np.array([self._rewards[b] for b in self._blocks])
        logits = (values - values.max()) / self.config.mad_temperature
        p = np.exp(logits)
        p /= p.sum()
        return str(self._rng.choice(self._blocks, p=p))

    def _drift_reason(self) -> str:
        c = self.config
        if not self._in_view_history:
            # The first frame is predicted with the initial weights: it is the reference, so a
            # divergence in the very first steps is caught too.
            self._in_view_history.append(self._in_view)
            self._spread_history.append(self._spread)
            return ""
        in_view = float(np.median(self._in_view_history))
        spread = float(np.median(self._spread_history))
        if self._in_view < in_view - c.max_in_view_drop:
            return f"in-view share {self._in_view:.2f} fell below its median {in_view:.2f} - {c.max_in_view_drop}"
        if not spread / c.spread_band <= self._spread <= spread * c.spread_band:
            return f"disparity spread {self._spread:.3f} left [{spread / c.spread_band:.3f}, {spread * c.spread_band:.3f}]"
        return ""

    def _median(self) -> float:
        return float(np.median(self._losses)) if self._losses else math.nan

    def step(self, left: torch.Tensor, right: torch.Tensor, matcher_disparity: np.ndarray | None = None) -> StepResult:
        """One adaptation step on a pair (or a no-op when not due / disabled).

        Args:
            left, right: ``(B, 3, H, W)`` rectified images in ``[0, 1]`` on the model's device.
            matcher_disparity: ``(B, H, W)`` SGBM's disparity of the pair at this size, computed
                with :func:`proxy_matcher`'s settings (NaN holes), when the caller already has it.

        Returns:
            :class:`StepResult`.
        """
        check_tensor(left, "left", ("B", 3, "H", "W"))
        check_tensor(right, "right", ("B", 3, "H", "W"))
        check_same_batch_and_size(left, "left", right, "right")
        start = time.perf_counter()
        self.frames_seen += 1
        c = self.config
        if c.mode == "none":
            self.last = StepResult(status="disabled")
            return self.last
        if (self.frames_seen - 1) % c.adapt_every != 0:
            self.last = StepResult(status="not_due")
            return self.last
        if not (bool(torch.isfinite(left).all()) and bool(torch.isfinite(right).all())):
            self.skipped += 1
            self.last = StepResult("skipped_non_finite", reason="input images are not finite",
                                   seconds=time.perf_counter() - start)
            return self.last
        was_training = self.model.training
        self.model.train()
        block = self._choose_block() if c.mode == "mad" else "all"
        params = list(self.model.parameters()) if c.mode == "full" else self.model.block_parameters(block)
        trainable = {id(p) for p in params}
        for p in self.model.parameters():
            p.requires_grad_(id(p) in trainable)
        try:
            self._last_labels = None
            loss, terms, valid_fraction = self.compute_loss(left, right, matcher_disparity)
            replayed = self._replay_loss()
            result = self._guarded_update(loss, terms, valid_fraction, params, block, replayed)
            if result.status == "adapted":
                self._remember(left, right, self._last_labels)
        finally:
            for p in self.model.parameters():
                p.requires_grad_(True)
            self.model.train(was_training)
        result.seconds = time.perf_counter() - start
        self.last = result
        return result

    def _replay_loss(self) -> torch.Tensor | None:
        """``replay_weight`` x the loss of a remembered frame (None without memory)."""
        if not self._memory or self.config.replay_weight == 0:
            return None
        left, right, labels = self._memory[int(self._rng.integers(len(self._memory)))]
        loss = self._loss(left, right, labels)[0]
        return self.config.replay_weight * loss

    def _remember(self, left: torch.Tensor, right: torch.Tensor, labels: ProxyLabels | None) -> None:
        """Offer the adapted frame to the memory every ``replay_every`` steps (reservoir sampling)."""
        c = self.config
        if c.replay_memory == 0 or self.steps % c.replay_every != 0:
            return
        self._offered += 1
        item = (left.detach().clone(), right.detach().clone(), labels)
        if len(self._memory) < c.replay_memory:
            self._memory.append(item)
        else:
            slot = int(self._rng.integers(self._offered))
            if slot < c.replay_memory:
                self._memory[slot] = item

    def _guarded_update(
        self, loss: torch.Tensor, terms: dict[str, float], valid_fraction: float, params: list[torch.nn.Parameter],
        block: str, replayed: torch.Tensor | None = None,
    ) -> StepResult:
        c = self.config
        value = float(loss.detach())  # the guards judge the current frame; the update also rehearses
        # Credit the previous MAD block with the loss change it produced (on this new frame).
        if self._pending_reward is not None and math.isfinite(value):
            name, before = self._pending_reward
            self._rewards[name] = c.mad_reward_decay * self._rewards[name] + (1 - c.mad_reward_decay) * (before - value)
            self._pending_reward = None
        if not math.isfinite(value):
            self.skipped += 1
            return StepResult("skipped_non_finite", value, terms, valid_fraction, block, "loss is not finite")
        median = self._median()
        warmed = len(self._losses) >= c.warmup_steps
        if self._just_restored:
            self._just_restored = False
            if warmed and (value > c.rise_factor * median or self._drift_reason()):
                self._rebaseline(value, median)
                median, warmed = math.nan, False
        if warmed and value > c.jump_factor * median:
            return self._rollback(value, terms, valid_fraction, block, f"loss {value:.4f} > {c.jump_factor} x median {median:.4f}")
        if warmed and value > c.rise_factor * median:
            self._above += 1
            if self._above >= c.patience:
                return self._rollback(value, terms, valid_fraction, block,
                                      f"loss above {c.rise_factor} x median {median:.4f} for {self._above} steps")
        else:
            self._above = 0
        # Guards on the prediction itself: the photometric loss can stay flat while the disparity
        # runs away (out of view) or flattens, which is how full adaptation failed without them.
        drift = self._drift_reason()
        if drift:
            self._drifting += 1
            if self._drifting >= c.patience:
                return self._rollback(value, terms, valid_fraction, block, drift)
        else:
            self._drifting = 0
        if valid_fraction < c.min_valid_fraction:
            # A diverged network reconstructs so badly that auto-masking rejects nearly every pixel;
            # skipping alone would keep the diverged weights forever, so a run of such frames after
            # a good history counts as divergence.
            self._few_valid += 1
            if warmed and self._few_valid >= c.patience:
                return self._rollback(value, terms, valid_fraction, block,
                                      f"{self._few_valid} frames in a row with < {100 * c.min_valid_fraction:.0f}% valid pixels")
            self.skipped += 1
            return StepResult("skipped_few_valid", value, terms, valid_fraction, block,
                              f"{100 * valid_fraction:.0f}% valid pixels < {100 * c.min_valid_fraction:.0f}%")
        self._few_valid = 0
        # A state whose loss is at or below the median becomes a candidate snapshot; it joins the
        # ring only after `patience` further steps without an anomaly (damage from a bad update
        # shows on the next frames, so an unproven snapshot could itself be poisoned).
        if self._candidate is not None and self.steps - self._candidate[1] >= c.patience:
            self._snapshots.append(self._candidate[0])
            self._candidate = None
        if self._candidate is None and (not warmed or value <= median) and self.steps % c.snapshot_every == 0:
            self._candidate = (_state_copy(self.model), self.steps)
        self._optimizer.zero_grad(set_to_none=True)
        if replayed is not None and torch.isfinite(replayed.detach()):
            terms["replay"] = float(replayed.detach())
            loss = loss + replayed
        loss.backward()
        grads = [p.grad for p in params if p.grad is not None]
        finite = all(bool(torch.isfinite(g).all()) for g in grads)
        if not finite:
            self._optimizer.zero_grad(set_to_none=True)
            self.skipped += 1
            return StepResult("skipped_non_finite", value, terms, valid_fraction, block, "gradients are not finite")
        if c.grad_clip > 0:
            torch.nn.utils.clip_grad_norm_(params, c.grad_clip)
        ramp = min(1.0, (self._since_reset + 1) / c.lr_warmup_steps) if c.lr_warmup_steps else 1.0
        for group in self._optimizer.param_groups:
            group["lr"] = c.learning_rate * ramp
        self._optimizer.step()
        if c.anchor > 0:
            pull_towards(params, [self._initial_params[p] for p in params], c.anchor)
        self._since_reset += 1
        self._optimizer.zero_grad(set_to_none=True)
        if not all(bool(torch.isfinite(p).all()) for p in params):
            return self._rollback(value, terms, valid_fraction, block, "weights became non-finite")
        self._losses.append(value)
        if not self._drifting:
            self._in_view_history.append(self._in_view)
            self._spread_history.append(self._spread)
        self.steps += 1
        if c.mode == "mad":
            self._pending_reward = (block, value)
        return StepResult("adapted", value, terms, valid_fraction, block)

    def _rollback(self, value: float, terms: dict[str, float], valid_fraction: float, block: str, reason: str) -> StepResult:
        self.rollbacks += 1
        self._recent_rollbacks.append(self.steps)
        repeated = len(self._recent_rollbacks) == self._recent_rollbacks.maxlen and (
            self._recent_rollbacks[-1] - self._recent_rollbacks[0] <= 2 * self.config.snapshot_every
        )
        if self._snapshots and not repeated:
            target, where = self._snapshots[-1], "last good snapshot"
        else:
            target, where = self._initial, "initial weights"
            self._snapshots.clear()
        self.model.load_state_dict(target)
        self._just_restored = True
        self._candidate = None
        self._optimizer = self._make_optimizer()  # moments of a diverged run are poison
        self._since_reset = 0
        self._above = 0
        self._few_valid = 0
        self._drifting = 0
        self._pending_reward = None
        log.warning("adaptation rolled back to the %s: %s", where, reason)
        return StepResult("rolled_back", value, terms, valid_fraction, block, f"{reason}; restored the {where}")

    def _rebaseline(self, value: float, median: float) -> None:
        """The restored weights trip the guards too: new data, not divergence. Restart the loss and
        prediction statistics (the weights and the snapshots stay)."""
        self.rebaselines += 1
        self._losses.clear()
        self._in_view_history.clear()
        self._spread_history.clear()
        self._above = 0
        self._drifting = 0
        log.info("adaptation: the loss stays high with the restored weights (%.4f against a median of %.4f): "
                 "new scene, loss statistics restarted", value, median)

    # ------------------------------------------------------------------ state
    def reset(self) -> None:
        """Back to the initial weights; counters of steps and rollbacks are kept."""
        self.model.load_state_dict(self._initial)
        self._optimizer = self._make_optimizer()
        self._snapshots.clear()
        self._candidate = None
        self._losses.clear()
        self._rewards = {name: 0.0 for name in self._blocks}
        self._pending_reward = None
        self._above = 0
        self._few_valid = 0
        self._drifting = 0
        self._since_reset = 0
        self._in_view_history.clear()
        self._spread_history.clear()
        self._just_restored = False
        self._memory.clear()
        self._offered = 0

    @property
    def running_median(self) -> float:
        """Running median of recent losses (NaN before the first step)."""
        return self._median()

    def stats(self) -> dict[str, Any]:
        """Counters for diagnostics."""
        return {
            "mode": self.config.mode,
            "frames_seen": self.frames_seen,
            "steps": self.steps,
            "skipped": self.skipped,
            "rollbacks": self.rollbacks,
            "rebaselines": self.rebaselines,
            "last_status": self.last.status,
            "last_loss": self.last.loss,
            "running_median_loss": self.running_median,
            "block_rewards": dict(self._rewards),
            "proxy": self.config.proxy,
            "proxy_density": self.last.terms.get("proxy_density", math.nan),
            "proxy_agreement": self.last.terms.get("proxy_agreement", math.nan),
            "proxy_learnable": self.last.terms.get("proxy_learnable", math.nan),
        }

    def save(self, path: str | Path, extra: dict[str, Any] | None = None, inference_scale: float = 1.0) -> Path:
        """Write the adapted weights atomically (safetensors) with adaptation metadata; an
        ``inference_scale`` other than 1 (the scale the initial weights name) is kept in it, so that
        resumed weights run at the scale they were adapted at."""
        meta: dict[str, Any] = {
            "adapted": {
                "frames_adapted": self.steps,
                "frames_seen": self.frames_seen,
                "rollbacks": self.rollbacks,
                "loss": self.last.loss if math.isfinite(self.last.loss) else None,
                "running_median_loss": self.running_median if math.isfinite(self.running_median) else None,
                "mode": self.config.mode,
                "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                **(extra or {}),
            }
        }
        if inference_scale != 1.0:
            meta["inference_scale"] = float(inference_scale)
        return save_weights(self.model, path, meta)


def load_adapted_or_default(
    adapted_path: str | Path | None, default_path: str | Path | None = None, device: str | torch.device = "cpu"
) -> tuple[StereoNetwork, dict[str, Any], str]:
    """Resume from adapted weights when they load; otherwise fall back to the default ones.

    Returns:
        ``(model, metadata, source)`` with ``source`` ``"adapted"`` or ``"default"``; a corrupt or
        mismatched adapted file logs a warning naming the problem and falls back.
    """
    if adapted_path is not None and Path(adapted_path).is_file():
        try:
            model, meta = load_model(adapted_path, device)
            return model, meta, "adapted"
        except (WeightsError, ValueError) as exc:
            log.warning("ignoring adapted weights %s (%s); using the default weights", adapted_path, exc)
    model, meta = load_model(default_path, device)
    return model, meta, "default"


class AdaptationWorker:
    """Runs an :class:`OnlineAdapter` in a background thread, off the inference path.

    The inference side calls :meth:`submit` with each new pair (the worker keeps only the newest:
    older unprocessed pairs are dropped and counted) and :meth:`inference_model` to get the model to
    run; after every successful step the worker copies the adapted weights into a spare inference
    copy and swaps it in under a lock, so inference never sees a half-written model.

    Args:
        adapter: the adapter; its ``model`` is the training copy.
        on_result: optional callback with every :class:`StepResult` (from the worker thread).
        cpu_threads: torch intra-op CPU threads of the worker thread (None: torch's default). With
            PyTorch's OpenMP backend this is per thread, so it does not change the caller's.
        nice: raise the worker thread's Linux nice value by this much (0-19; ignored where threads
            cannot be reniced): adaptation is background work, and on a CPU the frame path and
            other processes should win the cores when they are short.
        compile: hand out the inference models wrapped in
            :class:`~stereo_depth_ros.core.network.compiled.CompiledStereoNet` (``torch.compile``;
            the adapted weights are copied into them in place, so the compiled graphs stay valid).
    """

    def __init__(
        self,
        adapter: OnlineAdapter,
        on_result: Callable[[StepResult], None] | None = None,
        cpu_threads: int | None = None,
        compile: bool = False,
        nice: int = 0,
    ) -> None:
        self.adapter = adapter
        self.on_result = on_result
        if cpu_threads is not None and cpu_threads < 1:
            raise ValueError(f"cpu_threads: expected None or at least 1, got {cpu_threads}")
        if not 0 <= nice <= 19:
            raise ValueError(f"nice: expected 0 to 19, got {nice}")
        self._cpu_threads = cpu_threads
        self._nice = nice
        self.thread_nice: int | None = None  # the worker thread's nice value once it runs (None: unknown)
        device = next(adapter.model.parameters()).device
        self._models = [prepare_for_inference(copy.deepcopy(adapter.model), device) for _ in range(2)]
        for b in self._models:
            for p in b.parameters():
                p.requires_grad_(False)
        # What acquire() hands out: the models themselves, or compiled views of them.
        self._buffers: list[torch.nn.Module] = [CompiledStereoNet(m) if compile else m for m in self._models]
        self._current = 0
        self._in_use = [0, 0]
        self._lock = threading.Lock()
        self._cond = threading.Condition(self._lock)
        self._pending: tuple[torch.Tensor, torch.Tensor, torch.cuda.Event | None, np.ndarray | None] | None = None
        self._pending_config: AdaptationConfig | None = None
        self._step_lock = threading.Lock()
        self._stop = False
        self._busy = False
        self._enabled = True
        self.dropped = 0
        self.published = 0
        self._stream = torch.cuda.Stream(device) if device.type == "cuda" else None
        self._thread = threading.Thread(target=self._run, name="stereo_adaptation", daemon=True)
        self._thread.start()

    # ------------------------------------------------------------------ inference side
    def submit(self, left: torch.Tensor, right: torch.Tensor, matcher_disparity: np.ndarray | None = None) -> None:
        """Offer the newest pair ``(1, 3, H, W)`` each; replaces a pair not yet started.

        ``matcher_disparity``: ``(1, H, W)`` SGBM's disparity of the pair when the caller already
        computed it with :func:`proxy_matcher`'s settings (the node's fused output), so that SGBM
        runs once per frame; None: the worker computes the labels itself.

        On CUDA the pair may still be being written by work queued on the caller's stream: the
        worker's stream waits for that work (an event), and the tensors' memory is not reused
        before the worker's stream is done with them. The caller must not overwrite them in place.
        """
        ready = None
        if self._stream is not None and left.is_cuda:
            ready = torch.cuda.Event()
            ready.record(torch.cuda.current_stream(left.device))
            left.record_stream(self._stream)
            right.record_stream(self._stream)
        with self._cond:
            if self._pending is not None:
                self.dropped += 1
            self._pending = (left.detach(), right.detach(), ready, matcher_disparity)
            self._cond.notify()

    def acquire(self) -> tuple[int, StereoNetwork | CompiledStereoNet]:
        """The current inference model, marked in use; pair with :meth:`release`."""
        with self._lock:
            index = self._current
            self._in_use[index] += 1
            return index, self._buffers[index]

    def release(self, index: int) -> None:
        with self._lock:
            self._in_use[index] -= 1

    def compile_state(self) -> str:
        """``"off"``, ``"on"`` or ``"failed: <why>"`` for the inference models' ``torch.compile``."""
        failures = [b.failure for b in self._buffers if isinstance(b, CompiledStereoNet) and b.failure]
        if failures:
            return f"failed: {failures[0]}"
        return "on" if isinstance(self._buffers[0], CompiledStereoNet) else "off"

    def set_enabled(self, enabled: bool) -> None:
        with self._cond:
            self._enabled = enabled
            if not enabled:
                self._pending = None

    def update_config(self, config: AdaptationConfig) -> None:
        """New settings, applied by the worker between steps (never in the middle of one)."""
        with self._cond:
            self._pending_config = config

    @contextlib.contextmanager
    def paused(self) -> Iterator[None]:
        """Hold the worker between steps (to save or reset consistent weights)."""
        with self._step_lock:
            yield

    def reset(self) -> None:
        """Reset the adapter to its initial weights and publish them."""
        with self._step_lock:
            self.adapter.reset()
            self._publish()

    # ------------------------------------------------------------------ worker side
    def _publish(self) -> None:
        with self._lock:
            spare = 1 - self._current
            if self._in_use[spare]:
                return  # still used by a slow inference: publish on the next step instead
        # On CUDA the copy is queued on the adaptation stream, after the step that produced the
        # weights, and finished before the swap makes the copy visible to inference.
        stream = torch.cuda.stream(self._stream) if self._stream is not None else contextlib.nullcontext()
        with torch.no_grad(), stream:
            for dst, src in zip(self._models[spare].state_dict().values(), self.adapter.model.state_dict().values()):
                dst.copy_(src)
        if self._stream is not None:
            self._stream.synchronize()
        with self._lock:
            self._current = spare
            self.published += 1

    def _renice(self) -> None:
        """On Linux a thread has its own nice value: lower this one's priority by ``nice``."""
        if not hasattr(os, "setpriority"):
            return
        try:
            tid = threading.get_native_id()
            if self._nice:
                os.setpriority(os.PRIO_PROCESS, tid, min(19, os.getpriority(os.PRIO_PROCESS, tid) + self._nice))
            self.thread_nice = os.getpriority(os.PRIO_PROCESS, tid)
        except OSError as exc:
            log.warning("could not lower the adaptation thread's priority (nice +%d): %s", self._nice, exc)

    def _run(self) -> None:
        self._renice()
        if self._cpu_threads is not None:
            torch.set_num_threads(self._cpu_threads)  # this thread's OpenMP setting only
        while True:
            with self._cond:
                while not self._stop and (self._pending is None or not self._enabled):
                    self._cond.wait()
                if self._stop:
                    return
                left, right, ready, matcher_disparity = self._pending
                self._pending = None
                config, self._pending_config = self._pending_config, None
                self._busy = True
            try:
                with self._step_lock:
                    if config is not None:
                        self.adapter.set_config(config)
                    if self._stream is not None:
                        with torch.cuda.stream(self._stream):
                            if ready is not None:
                                self._stream.wait_event(ready)
                            result = self.adapter.step(left, right, matcher_disparity)
                    else:
                        result = self.adapter.step(left, right, matcher_disparity)
                    if result.status in ("adapted", "rolled_back"):
                        self._publish()
                if self.on_result is not None:
                    self.on_result(result)
            except Exception:  # never let a bad frame kill the worker; the node reports it
                log.exception("adaptation step failed")
            finally:
                with self._lock:
                    self._busy = False

    def stop(self, timeout: float = 10.0) -> None:
        """Stop the thread (the step in progress finishes first)."""
        with self._cond:
            self._stop = True
            self._cond.notify()
        self._thread.join(timeout)

    def idle(self) -> bool:
        """True when no pair waits and no step runs (used by tests and shutdown)."""
        with self._lock:
            return self._pending is None and not self._busy
