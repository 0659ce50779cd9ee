"""The network's forward pass through ``torch.compile`` for a fixed input size, eager on failure.

``torch.compile`` traces the network (:class:`~stereo_depth_ros.core.network.model.StereoNetwork`) once per input
size (``dynamic=False``: a camera's size does not change, so each graph is specialised to it) and
fuses its element-wise work into generated kernels. On a 2-core CPU the first call at a size
compiles for about 30-60 s and later calls run faster than eager (figures: ``stereo_depth_bench_inference
--compile``). The wrapper is device-agnostic, but it has only been measured on CPU. On a GPU the
node does not need it for launch overhead: it replays the whole frame as a CUDA graph
(:class:`~stereo_depth_ros.core.cuda_graph.CudaGraphRunner`, parameter ``cuda_graphs``).

The compiled graph reads the wrapped model's parameters, so updating them in place (the
adaptation worker copies adapted weights into its inference models this way) reaches the compiled
forward without a recompile. Compiling can fail at the first call (no C++ compiler on a CPU-only
machine, an unsupported operator); the wrapper then logs one warning, remembers why, and runs the
eager model from then on.
"""

from __future__ import annotations

import logging
from typing import Any, Callable

import torch
import torch.nn as nn

from .model import StereoNetwork, StereoOutput

__all__ = ["CompiledStereoNet"]

log = logging.getLogger(__name__)


def _describe(exc: BaseException) -> str:
    """``"Type: first line"`` of the innermost cause (dynamo wraps backend errors in its own)."""
    while True:
        inner = getattr(exc, "inner_exception", None) or exc.__cause__
        if inner is None or inner is exc:
            break
        exc = inner
    lines = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {lines[0] if lines else ''}"


class CompiledStereoNet(nn.Module):
    """Calls ``model`` through ``torch.compile``; a drop-in for the network at inference.

    Args:
        model: the network, already prepared for inference (eval mode, device, layout). Its
            parameters are shared, not copied: :meth:`state_dict` is the model's own, unprefixed.
        mode: ``torch.compile`` mode (None: the default; ``"reduce-overhead"``: CUDA graphs on GPU).
        backend: ``torch.compile`` backend (``"inductor"``: generated C++/OpenMP on CPU, Triton on GPU).

    Attributes:
        failure: why compiling failed (``"ExceptionType: message"``), None while the compiled
            forward is in use.
    """

    def __init__(self, model: StereoNetwork, mode: str | None = None, backend: str | Callable[..., Any] = "inductor") -> None:
        super().__init__()
        if not isinstance(model, StereoNetwork):
            raise ValueError(f"model: expected a StereoNet (or another StereoNetwork), got {type(model).__name__}")
        self.model = model
        self.failure: str | None = None
        # Kept off the module tree: the OptimizedModule holds ``model`` again, which would list every
        # parameter twice in state_dict() and parameters().
        self.__dict__["_compiled"] = torch.compile(model, dynamic=False, mode=mode, backend=backend)

    @property
    def config(self):  # noqa: ANN201 - the model's config (NetworkConfig or CostVolumeConfig)
        return self.model.config

    @property
    def compiled(self) -> bool:
        """True while calls go through the compiled forward."""
        return self.failure is None

    def forward(self, left: torch.Tensor, right: torch.Tensor) -> StereoOutput:
        """As the network's ``forward``: ``(B, 3, H, W)`` images in ``[0, 1]`` -> :class:`StereoOutput`."""
        if self.failure is None:
            try:
                return self.__dict__["_compiled"](left, right)
            except Exception as exc:  # noqa: BLE001 - any compiler failure: fall back, never lose the frame
                self.failure = _describe(exc)
                log.warning("torch.compile failed (%s); running the network eagerly from now on", self.failure)
        return self.model(left, right)

    def state_dict(self, *args: Any, **kwargs: Any) -> dict[str, Any]:  # type: ignore[override]
        """The wrapped model's state dict (same keys as the plain network)."""
        return self.model.state_dict(*args, **kwargs)

    def load_state_dict(self, state_dict: Any, strict: bool = True, assign: bool = False) -> Any:  # type: ignore[override]
        """Loads into the wrapped model (in place unless ``assign``)."""
        return self.model.load_state_dict(state_dict, strict=strict, assign=assign)
