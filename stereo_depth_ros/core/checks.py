"""Input checks shared by the core: every public function validates its arguments first and raises
``ValueError`` naming what it expected and what it got (kornia style)."""

from __future__ import annotations

from typing import Any, Sequence

import torch

__all__ = ["check_tensor", "check_same_batch_and_size", "check_intrinsics", "check_transform", "check_positive"]


def _describe(x: Any) -> str:
    if isinstance(x, torch.Tensor):
        return f"tensor of shape {tuple(x.shape)} and dtype {x.dtype}"
    return f"{type(x).__name__}"


def check_tensor(
    x: Any,
    name: str,
    shape: Sequence[int | str | None],
    floating: bool = True,
) -> torch.Tensor:
    """Check that ``x`` is a tensor matching ``shape`` and return it.

    ``shape`` entries: an int demands that size, a string or ``None`` accepts any size (strings are
    only labels used in the message, e.g. ``("B", 1, "H", "W")``).
    """
    expected = "(" + ", ".join(str(s) for s in shape) + ")"
    if not isinstance(x, torch.Tensor):
        raise ValueError(f"{name}: expected a torch.Tensor of shape {expected}, got {_describe(x)}")
    if x.dim() != len(shape) or any(isinstance(s, int) and x.shape[i] != s for i, s in enumerate(shape)):
        raise ValueError(f"{name}: expected shape {expected}, got {tuple(x.shape)}")
    if floating and not x.is_floating_point():
        raise ValueError(f"{name}: expected a floating-point tensor, got dtype {x.dtype}")
    return x


def check_same_batch_and_size(ref: torch.Tensor, ref_name: str, other: torch.Tensor, other_name: str) -> None:
    """Check that two ``(B, C, H, W)`` tensors share ``B``, ``H`` and ``W``, device and dtype."""
    if ref.shape[0] != other.shape[0] or ref.shape[-2:] != other.shape[-2:]:
        raise ValueError(
            f"{other_name}: expected batch {ref.shape[0]} and size {tuple(ref.shape[-2:])} like {ref_name}, "
            f"got shape {tuple(other.shape)} (vs {ref_name} {tuple(ref.shape)})"
        )
    if ref.device != other.device:
        raise ValueError(f"{other_name}: expected device {ref.device} like {ref_name}, got {other.device}")
    if ref.dtype != other.dtype:
        raise ValueError(f"{other_name}: expected dtype {ref.dtype} like {ref_name}, got {other.dtype}")


def check_intrinsics(K: Any, batch: int, name: str = "K") -> torch.Tensor:
    """Check intrinsics of shape ``(3, 3)`` or ``(B, 3, 3)``; return them as ``(B, 3, 3)``."""
    if not isinstance(K, torch.Tensor):
        raise ValueError(f"{name}: expected a torch.Tensor of shape (3, 3) or (B, 3, 3), got {_describe(K)}")
    if K.dim() == 2:
        K = K.unsqueeze(0)
    if K.dim() != 3 or K.shape[-2:] != (3, 3) or K.shape[0] not in (1, batch):
        raise ValueError(f"{name}: expected shape (3, 3) or ({batch}, 3, 3), got {tuple(K.shape)}")
    if not K.is_floating_point():
        raise ValueError(f"{name}: expected a floating-point tensor, got dtype {K.dtype}")
    if bool((K[:, 0, 0] <= 0).any()) or bool((K[:, 1, 1] <= 0).any()):
        raise ValueError(f"{name}: expected positive focal lengths, got fx={K[:, 0, 0].tolist()}, fy={K[:, 1, 1].tolist()}")
    return K.expand(batch, 3, 3)


def check_positive(value: float, name: str, allow_zero: bool = False) -> float:
    """Check a finite positive (or non-negative) scalar."""
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{name}: expected a number, got {type(value).__name__}") from None
    if not (v >= 0 if allow_zero else v > 0) or v != v or v == float("inf"):
        raise ValueError(f"{name}: expected a finite {'non-negative' if allow_zero else 'positive'} number, got {value}")
    return v


def check_transform(T: Any, name: str, batch: int | None = None) -> torch.Tensor:
    """Check a rigid transform ``(4, 4)`` or ``(B, 4, 4)``; return ``(B, 4, 4)`` (expanded to ``batch``)."""
    if not isinstance(T, torch.Tensor):
        raise ValueError(f"{name}: expected a torch.Tensor of shape (B, 4, 4), got {type(T).__name__}")
    if T.dim() == 2:
        T = T.unsqueeze(0)
    if T.dim() != 3 or T.shape[-2:] != (4, 4):
        raise ValueError(f"{name}: expected shape (B, 4, 4) or (4, 4), got {tuple(T.shape)}")
    if not T.is_floating_point():
        raise ValueError(f"{name}: expected a floating-point tensor, got dtype {T.dtype}")
    if batch is not None:
        if T.shape[0] not in (1, batch):
            raise ValueError(f"{name}: expected batch 1 or {batch}, got {T.shape[0]}")
        T = T.expand(batch, 4, 4)
    return T
