"""Replay a frame's GPU work as one CUDA graph per input signature.

At robot frame sizes the network is launch-bound on a big GPU: an eager forward pass issues
hundreds of small kernels, and the CPU time to launch them (about 10 ms at 640x480 on an H100)
exceeds the GPU time to run them. A CUDA graph records those launches once and replays them with a
single call. :class:`CudaGraphRunner` captures any function of tensors (the network, or the node's
whole frame: both disparities, the masks and the point cloud) the first time it sees a signature
(shapes, dtypes, device, autocast state and a caller-given ``key`` for everything else the
function depends on), then replays it: the inputs are copied into the graph's static input tensors,
the graph runs, and the returned object is the one the capture produced, whose tensors the replay
has refilled.

Rules that follow from replaying instead of running (callers must keep them):

* the function does only tensor work on the GPU: no host synchronisation (``.item()``, ``.cpu()``,
  data-dependent Python branches), no randomness; its non-tensor inputs (model, thresholds,
  camera) belong in ``key``;
* parameters read by the graph may change *in place* (``copy_``: the adaptation worker publishes
  weights this way) and the replay sees the new values; replacing a parameter tensor does not;
* the returned tensors are the graph's static outputs: valid until the next call with the same
  signature, so copy out what must outlive it.

If capturing fails (an operation that syncs with the host, say) the runner logs one warning,
remembers why (:attr:`CudaGraphRunner.failure`) and runs the function eagerly from then on. On a
CPU the runner simply calls the function.
"""

from __future__ import annotations

import collections
import logging
from typing import Any, Callable, Hashable

import torch

__all__ = ["CudaGraphRunner"]

log = logging.getLogger(__name__)


class _Graph:
    """One captured graph: its static inputs and the object its capture returned."""

    def __init__(self, graph: torch.cuda.CUDAGraph, inputs: tuple[torch.Tensor, ...], output: Any) -> None:
        self.graph = graph
        self.inputs = inputs
        self.output = output


def _autocast_state(device: torch.device) -> tuple[bool, torch.dtype | None]:
    if not torch.is_autocast_enabled(device.type):
        return False, None
    return True, torch.get_autocast_dtype(device.type)


class CudaGraphRunner:
    """Runs ``fn(*tensors)`` as a replayed CUDA graph, one graph per input signature.

    Args:
        warmup: eager calls on a side stream before capturing (cuDNN picks its algorithms and
            lazily created state settles there, not inside the graph).
        max_graphs: graphs kept; the least recently used is dropped beyond this (each holds the
            memory of its intermediate tensors).

    Attributes:
        failure: why capturing failed (``"ExceptionType: message"``), None while graphs are used.
        captures: how many graphs were captured (a new size, key or autocast state captures again).
    """

    def __init__(self, warmup: int = 2, max_graphs: int = 4) -> None:
        if int(warmup) != warmup or warmup < 1:
            raise ValueError(f"warmup: expected an integer >= 1, got {warmup!r}")
        if int(max_graphs) != max_graphs or max_graphs < 1:
            raise ValueError(f"max_graphs: expected an integer >= 1, got {max_graphs!r}")
        self.warmup = int(warmup)
        self.max_graphs = int(max_graphs)
        self.failure: str | None = None
        self.captures = 0
        self._graphs: collections.OrderedDict[Hashable, _Graph] = collections.OrderedDict()

    @property
    def active(self) -> bool:
        """False once capturing has failed (calls then run eagerly)."""
        return self.failure is None

    @property
    def num_graphs(self) -> int:
        """Graphs held now (not ``__len__``: an empty runner must not be falsy)."""
        return len(self._graphs)

    def __call__(self, fn: Callable[..., Any], *tensors: torch.Tensor, key: Hashable = None) -> Any:
        """``fn(*tensors)``, replayed from a graph captured for this signature.

        Args:
            fn: tensor work on the GPU; called only to warm up and capture (and on fallback).
            tensors: its tensor arguments, all on one CUDA device (any other device: ``fn`` is
                called directly).
            key: hashable description of everything else ``fn`` depends on (same key, same work).

        Returns:
            What ``fn`` returned at capture, its tensors refilled by this replay.
        """
        if not tensors:
            raise ValueError("tensors: expected at least one tensor argument, got none")
        for i, t in enumerate(tensors):
            if not isinstance(t, torch.Tensor):
                raise ValueError(f"tensors[{i}]: expected a torch.Tensor, got {type(t).__name__}")
        device = tensors[0].device
        if device.type != "cuda" or self.failure is not None or any(t.device != device for t in tensors):
            return fn(*tensors)
        signature = (key, _autocast_state(device), torch.is_inference_mode_enabled(),
                     tuple((tuple(t.shape), t.dtype, t.device, t.stride()) for t in tensors))
        entry = self._graphs.get(signature)
        if entry is None:
            try:
                entry = self._capture(fn, tensors, device)
            except Exception as exc:  # noqa: BLE001 - any capture failure: run eagerly, never lose the frame
                self.failure = f"{type(exc).__name__}: {(str(exc).strip().splitlines() or [''])[0]}"
                self._graphs.clear()
                log.warning("CUDA graph capture failed (%s); running eagerly from now on", self.failure)
                torch.cuda.synchronize(device)
                return fn(*tensors)
            self._graphs[signature] = entry
            while len(self._graphs) > self.max_graphs:
                self._graphs.popitem(last=False)
        else:
            self._graphs.move_to_end(signature)
        for static, t in zip(entry.inputs, tensors):
            static.copy_(t, non_blocking=True)
        entry.graph.replay()
        return entry.output

    def _capture(self, fn: Callable[..., Any], tensors: tuple[torch.Tensor, ...], device: torch.device) -> _Graph:
        inputs = tuple(t.detach().clone() for t in tensors)
        enabled, dtype = _autocast_state(device)

        def autocast() -> Any:
            # The caller's autocast, without its weight-cast cache: cached casts made during capture
            # would be stale or freed at replay (PyTorch's documented rule for autocast + graphs).
            return torch.autocast(device.type, dtype=dtype, enabled=enabled, cache_enabled=False) if enabled \
                else torch.autocast(device.type, enabled=False)

        side = torch.cuda.Stream(device)
        side.wait_stream(torch.cuda.current_stream(device))
        with torch.cuda.stream(side), autocast():
            for _ in range(self.warmup):
                fn(*inputs)
        torch.cuda.current_stream(device).wait_stream(side)
        graph = torch.cuda.CUDAGraph()
        # thread_local: only this thread's capture-unsafe calls are errors; the adaptation thread
        # keeps allocating and synchronising on its own stream while a frame graph is captured.
        with torch.cuda.graph(graph, capture_error_mode="thread_local"), autocast():
            output = fn(*inputs)
        self.captures += 1
        return _Graph(graph, inputs, output)
