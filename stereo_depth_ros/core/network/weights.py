"""Network weights as safetensors (never pickle), written atomically, with a JSON sidecar.

The ``.safetensors`` file holds the tensors and, in its string metadata, the network config
(``"config"``, JSON) plus any extra fields; the sidecar ``<name>.json`` repeats the metadata for
people and tools (training command, data seed, validation metrics).

Atomic writes go through a temp file ``.<name>.<pid>.<random>.tmp`` in the target folder, fsynced,
renamed over the target, and the folder fsynced so that the rename itself survives a power cut. A
process killed in the middle leaves its temp file behind: :func:`remove_stale_temp_files` (the
node calls it on start for its adapted-weights path) deletes those whose writer is gone.
"""

from __future__ import annotations

import errno
import json
import os
import re
import tempfile
from pathlib import Path
from typing import Any, Mapping

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from .config import AnyNetworkConfig, config_from_dict
from .model import StereoNetwork, build_network

__all__ = ["DEFAULT_WEIGHTS", "WeightsError", "atomic_write_bytes", "interpolate_states", "remove_stale_temp_files", "save_weights",
           "load_weights", "load_model"]

DEFAULT_WEIGHTS = Path(__file__).resolve().parents[2] / "weights" / "stereo_net.safetensors"


class WeightsError(RuntimeError):
    """A weights file that exists but cannot be used (corrupt, wrong format, mismatched network)."""


def _temp_prefix(path: Path) -> str:
    return f".{path.name}.{os.getpid()}."


def _fsync_directory(folder: Path) -> None:
    """Make a rename in ``folder`` durable (POSIX); a no-op where folders cannot be opened."""
    try:
        fd = os.open(folder, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError as exc:  # some file systems refuse fsync on folders
        if exc.errno not in (errno.EINVAL, errno.EBADF, errno.ENOTSUP):
            raise
    finally:
        os.close(fd)


def atomic_write_bytes(path: str | os.PathLike[str], data: bytes) -> None:
    """Write ``data`` to ``path`` through an fsynced temp file in the same folder, a rename, and an
    fsync of the folder."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=_temp_prefix(path), suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp creates 0600; give the file ordinary permissions
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    _fsync_directory(path.parent)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # exists, owned by someone else
    return True


def remove_stale_temp_files(path: str | os.PathLike[str]) -> list[Path]:
    """Delete the temp files that writes of ``path`` (and its ``.json`` sidecar) left behind when
    their process died (``.<name>.<pid>.<random>.tmp`` whose pid is not running, or the older
    ``.<name>.<random>.tmp`` naming without a pid). Returns what was removed."""
    path = Path(path)
    if not path.parent.is_dir():
        return []
    removed = []
    for name in {path.name, path.with_suffix(".json").name}:
        pattern = re.compile(rf"^\.{re.escape(name)}\.(?:(\d+)\.)?[^.]+\.tmp$")
        for candidate in path.parent.iterdir():
            match = pattern.match(candidate.name)
            if match is None or not candidate.is_file():
                continue
            pid = int(match.group(1)) if match.group(1) else None
            if pid is not None and (pid == os.getpid() or _alive(pid)):
                continue  # a write in progress
            try:
                candidate.unlink()
                removed.append(candidate)
            except FileNotFoundError:
                pass
    return removed


def save_weights(
    model: StereoNetwork | Mapping[str, torch.Tensor],
    path: str | os.PathLike[str],
    metadata: Mapping[str, Any] | None = None,
    config: AnyNetworkConfig | None = None,
    sidecar: bool = True,
) -> Path:
    """Save weights atomically as safetensors (+ a JSON sidecar).

    Args:
        model: a network (:class:`~.model.StereoNetwork`, any architecture) or a state dict.
        path: target ``.safetensors`` path.
        metadata: JSON-serialisable extra fields (training command, metrics, frames adapted, ...).
        config: network config (taken from ``model`` when it is a network); it names the architecture,
            so :func:`load_model` rebuilds the same network.
        sidecar: also write ``<path without suffix>.json``.

    Returns:
        The path written.
    """
    path = Path(path)
    if isinstance(model, StereoNetwork):
        config = model.config
        state = model.state_dict()
    else:
        state = dict(model)
    if config is None:
        raise ValueError("save_weights: expected a network or a config alongside the state dict, got neither")
    tensors = {k: v.detach().to("cpu").contiguous().clone() for k, v in state.items()}
    meta = {"format": "stereo_depth_ros/stereo_net", "config": config.to_dict(), **dict(metadata or {})}
    string_meta = {k: v if isinstance(v, str) else json.dumps(v) for k, v in meta.items()}
    fd, tmp = tempfile.mkstemp(prefix=_temp_prefix(path), suffix=".tmp", dir=path.parent if path.parent.exists() else None)
    os.close(fd)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        save_file(tensors, tmp, metadata=string_meta)
        with open(tmp, "rb") as f:
            data = f.read()
    finally:
        os.unlink(tmp)
    atomic_write_bytes(path, data)
    if sidecar:
        atomic_write_bytes(path.with_suffix(".json"), (json.dumps(meta, indent=2, sort_keys=True) + "\n").encode())
    return path


def load_weights(path: str | os.PathLike[str] | None = None) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Load ``(state_dict, metadata)`` from a safetensors file without unpickling anything.

    Raises:
        FileNotFoundError: the file does not exist.
        WeightsError: the file is not a readable safetensors file of this network.
    """
    path = Path(path) if path is not None else DEFAULT_WEIGHTS
    if not path.is_file():
        raise FileNotFoundError(
            f"network weights not found at {path}"
            + (" (the shipped weights are missing: reinstall the package or train with "
               "`python -m stereo_depth_ros.tools.train`)" if path == DEFAULT_WEIGHTS else "")
        )
    try:
        state = load_file(str(path))
        from safetensors import safe_open

        with safe_open(str(path), framework="pt") as f:
            raw_meta = f.metadata() or {}
    except (SafetensorError, OSError, ValueError) as exc:
        raise WeightsError(f"cannot read network weights {path}: not a valid safetensors file ({exc})") from exc
    if raw_meta.get("format") != "stereo_depth_ros/stereo_net" or "config" not in raw_meta:
        raise WeightsError(f"{path} is a safetensors file but not stereo_depth_ros network weights (metadata {sorted(raw_meta)})")
    meta: dict[str, Any] = {}
    for key, value in raw_meta.items():
        try:
            meta[key] = json.loads(value)
        except json.JSONDecodeError:
            meta[key] = value
    return state, meta


def interpolate_states(initial: Mapping[str, torch.Tensor], tuned: Mapping[str, torch.Tensor],
                       alpha: float) -> dict[str, torch.Tensor]:
    """``initial + alpha (tuned - initial)`` for every tensor: weight-space interpolation between a
    network and its fine-tuned copy (WiSE-FT, Wortsman et al. 2022), which keeps most of the
    fine-tuning gain while giving back most of what the original domain lost.

    Args:
        initial, tuned: state dicts of the same network (same keys, shapes).
        alpha: 0 gives ``initial``, 1 gives ``tuned``; in ``[0, 1]``.

    Raises:
        ValueError: alpha outside ``[0, 1]``, or the two states do not match.
    """
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha: expected a fraction in [0, 1], got {alpha!r}")
    if set(initial) != set(tuned):
        raise ValueError(f"expected two states of one network, got keys differing in {sorted(set(initial) ^ set(tuned))[:5]}")
    out = {}
    for key, a in initial.items():
        b = tuned[key]
        if a.shape != b.shape:
            raise ValueError(f"{key}: expected the same shape in both states, got {tuple(a.shape)} and {tuple(b.shape)}")
        out[key] = torch.lerp(a.float(), b.float(), alpha).to(a.dtype) if a.is_floating_point() else b.clone()
    return out


def load_model(path: str | os.PathLike[str] | None = None,
               device: str | torch.device = "cpu") -> tuple[StereoNetwork, dict[str, Any]]:
    """Build the network described by a weights file and load it (strict). Returns ``(model, metadata)``.

    The config's ``architecture`` picks the network (:func:`~.model.build_network`); configs
    without one (every file written before the choice existed) are the MADNet-style network.
    """
    state, meta = load_weights(path)
    try:
        config = config_from_dict(meta["config"])
    except (TypeError, ValueError) as exc:
        raise WeightsError(f"weights {path or DEFAULT_WEIGHTS} carry an invalid network config: {exc}") from exc
    model = build_network(config)
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        raise WeightsError(f"weights {path or DEFAULT_WEIGHTS} do not match the network: {exc}") from exc
    return model.to(device), meta
