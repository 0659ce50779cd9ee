"""Page-locked host buffers for the per-frame copies between the host and a GPU.

A copy from ordinary (pageable) host memory goes through a driver bounce buffer and blocks the
calling thread; from page-locked ("pinned") memory it is a direct DMA that can run asynchronously
(``non_blocking=True``). Pinning memory is slow, so :class:`PinnedBuffers` pins one buffer per
name and shape once and reuses it for every frame: the node's inputs go up through it and its
outputs come back through it.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import torch

__all__ = ["PinnedBuffers"]


class PinnedBuffers:
    """Named, reused pinned host buffers for asynchronous copies to and from ``device``.

    Args:
        device: the CUDA device the copies go to and come from.

    An upload returns as soon as the copy is queued; the buffer is rewritten only after that copy
    has finished (an event per buffer). A download queues every copy, then waits once.
    """

    def __init__(self, device: torch.device | str) -> None:
        device = torch.device(device)
        if device.type != "cuda":
            raise ValueError(f"device: expected a CUDA device (pinned buffers serve GPU copies), got {device}")
        self.device = device
        self._buffers: dict[str, torch.Tensor] = {}
        self._events: dict[str, torch.cuda.Event] = {}

    def _buffer(self, name: str, shape: tuple[int, ...], dtype: torch.dtype) -> torch.Tensor:
        buffer = self._buffers.get(name)
        if buffer is None or tuple(buffer.shape) != shape or buffer.dtype != dtype:
            buffer = torch.empty(shape, dtype=dtype, pin_memory=True)
            self._buffers[name] = buffer
            self._events.pop(name, None)
        return buffer

    def upload(self, name: str, array: np.ndarray) -> torch.Tensor:
        """``array`` (any shape; a numeric dtype torch knows) as a new tensor on the device.

        The values pass through the pinned buffer ``name``; the copy is queued on the current
        stream, so work queued after it on that stream sees the values.
        """
        array = np.asarray(array)
        buffer = self._buffer(name, tuple(array.shape), torch.from_numpy(np.empty(0, dtype=array.dtype)).dtype)
        event = self._events.get(name)
        if event is not None:
            event.synchronize()  # the previous copy out of this buffer has finished
        np.copyto(buffer.numpy(), array)
        out = buffer.to(self.device, non_blocking=True)
        event = torch.cuda.Event()
        event.record(torch.cuda.current_stream(self.device))
        self._events[name] = event
        return out

    def download(self, tensors: Sequence[torch.Tensor | None], prefix: str = "out") -> list[np.ndarray | None]:
        """Device ``tensors`` as numpy arrays (None stays None), valid until the next download.

        Each goes into its own pinned buffer (``prefix`` and its position name it) by a queued copy;
        then the current stream is waited for once.
        """
        hosts: list[torch.Tensor | None] = []
        for i, t in enumerate(tensors):
            if t is None:
                hosts.append(None)
                continue
            host = self._buffer(f"{prefix}{i}", tuple(t.shape), t.dtype)
            host.copy_(t, non_blocking=True)
            hosts.append(host)
        torch.cuda.current_stream(self.device).synchronize()
        return [None if h is None else h.numpy() for h in hosts]
